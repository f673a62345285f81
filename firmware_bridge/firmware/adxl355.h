/*
 * ADXL355 3-axis 20-bit accelerometer over SPI, read through its 96-entry FIFO.
 * Hardware access goes through adxl355_bus_t, so this file is portable C99 and builds on the host.
 */
#ifndef ADXL355_H
#define ADXL355_H

#include <stddef.h>
#include <stdint.h>

#define ADXL355_SCALE_2G 3.9e-6f /* g per LSB in the +-2 g range (256 000 LSB/g) */
#define ADXL355_FIFO_ENTRIES 96u /* 32 samples of x, y, z */
#define ADXL355_STATUS_FIFO_OVR 0x04u

typedef struct {
    void *context;
    /* Burst-read len bytes starting at register reg (FIFO_DATA does not auto-increment). */
    void (*read)(void *context, uint8_t reg, uint8_t *data, size_t len);
    void (*write)(void *context, uint8_t reg, uint8_t value);
    void (*delay_ms)(uint32_t ms);
} adxl355_bus_t;

/*
 * Reset the sensor, check its ids and start measuring: +-2 g, 1000 Hz ODR, no high-pass,
 * INT1 active high while the FIFO holds at least watermark_samples samples.
 * Returns 0 on success, -1 if the chip does not answer with the ADXL355 ids.
 */
int adxl355_start(const adxl355_bus_t *bus, uint8_t watermark_samples);

uint8_t adxl355_status(const adxl355_bus_t *bus);

/*
 * Read every complete sample in the FIFO into xyz (3 counts per sample; room for 32 samples).
 * Returns the number of samples read.
 */
size_t adxl355_read_samples(const adxl355_bus_t *bus, int32_t *xyz);

/*
 * Turn raw FIFO entries (3 bytes each) into x, y, z counts, skipping to the next x-axis marker
 * when entries are out of step and stopping at the empty marker. Returns complete samples.
 */
size_t adxl355_parse_fifo(const uint8_t *entries, size_t n_entries, int32_t *xyz);

#endif
