/*
 * Raspberry Pi Pico (RP2040): ADXL355 at 1000 Hz -> SAMPLES frames (int32, 32 samples) over USB CDC.
 *
 * Nothing else may write to stdout: the USB serial line carries only frames (PROTOCOL.md).
 * Wiring (SPI0): GP16 MISO, GP17 CS, GP18 SCK, GP19 MOSI, GP20 <- ADXL355 INT1, 3V3, GND.
 */
#include <stdbool.h>
#include <stdint.h>

#include "hardware/gpio.h"
#include "hardware/spi.h"
#include "hardware/structs/vreg_and_chip_reset.h"
#include "hardware/watchdog.h"
#include "pico/stdio_usb.h"
#include "pico/stdlib.h"

#include "adxl355.h"
#include "frame.h"

#define PIN_MISO 16u
#define PIN_CS 17u
#define PIN_SCK 18u
#define PIN_MOSI 19u
#define PIN_INT1 20u
#define SPI_BAUD_HZ 5000000u

#define FIRMWARE_ID "vibration-bridge 0.1.0 adxl355"
#define RATE_HZ 1000u
#define SAMPLES_PER_FRAME 32u
#define CHANNELS 3u
/* INT1 fires at 8 samples: leaves 24 ms of FIFO for a slow USB write before samples are lost. */
#define WATERMARK_SAMPLES 8u
/* The watchdog is fed only when samples arrive, so a silent sensor resets the board. */
#define WATCHDOG_MS 500u

typedef struct {
    uint32_t seq;
    uint64_t first_sample_us;
    uint16_t n_samples;
    int32_t counts[SAMPLES_PER_FRAME * CHANNELS];
} frame_accumulator_t;

static void spi_read_registers(void *context, uint8_t reg, uint8_t *data, size_t len)
{
    (void)context;
    uint8_t command = (uint8_t)((reg << 1) | 1u);
    gpio_put(PIN_CS, 0);
    spi_write_blocking(spi0, &command, 1);
    spi_read_blocking(spi0, 0x00, data, len);
    gpio_put(PIN_CS, 1);
}

static void spi_write_register(void *context, uint8_t reg, uint8_t value)
{
    (void)context;
    uint8_t command[2] = {(uint8_t)(reg << 1), value};
    gpio_put(PIN_CS, 0);
    spi_write_blocking(spi0, command, sizeof command);
    gpio_put(PIN_CS, 1);
}

static void delay_ms(uint32_t ms)
{
    sleep_ms(ms);
}

static void setup_pins(void)
{
    spi_init(spi0, SPI_BAUD_HZ);
    spi_set_format(spi0, 8, SPI_CPOL_0, SPI_CPHA_0, SPI_MSB_FIRST);
    gpio_set_function(PIN_MISO, GPIO_FUNC_SPI);
    gpio_set_function(PIN_SCK, GPIO_FUNC_SPI);
    gpio_set_function(PIN_MOSI, GPIO_FUNC_SPI);
    gpio_init(PIN_CS);
    gpio_set_dir(PIN_CS, GPIO_OUT);
    gpio_put(PIN_CS, 1);
    gpio_init(PIN_INT1);
    gpio_set_dir(PIN_INT1, GPIO_IN);
}

static uint8_t reset_cause(void)
{
    if (watchdog_enable_caused_reboot()) {
        return FRAME_RESET_WATCHDOG;
    }
    if (watchdog_caused_reboot()) {
        return FRAME_RESET_SOFTWARE;
    }
    if (vreg_and_chip_reset_hw->chip_reset & VREG_AND_CHIP_RESET_CHIP_RESET_HAD_POR_BITS) {
        return FRAME_RESET_POWER_ON;
    }
    return FRAME_RESET_UNKNOWN;
}

/* A frame that cannot go out is dropped whole; its seq is already used, so the host sees a gap. */
static void send_wire(const uint8_t *wire, size_t len)
{
    if (len > 0u && stdio_usb_connected()) {
        stdio_usb.out_chars((const char *)wire, (int)len);
    }
}

static void send_hello(frame_buffer_t *buffer, uint32_t seq, uint8_t cause)
{
    static const uint8_t delimiter = 0x00;
    send_wire(&delimiter, 1u); /* closes any partial frame the host may hold */
    send_wire(buffer->wire, frame_encode_hello(buffer, seq, time_us_64(), cause, FIRMWARE_ID));
}

static void send_samples(frame_buffer_t *buffer, const frame_accumulator_t *frame)
{
    static const uint8_t channel_ids[CHANNELS] = {0u, 1u, 2u}; /* x, y, z */
    frame_samples_t samples = {frame->seq,       frame->first_sample_us, RATE_HZ,
                               CHANNELS,         channel_ids,            FRAME_FORMAT_INT32,
                               frame->n_samples, ADXL355_SCALE_2G,       frame->counts};
    send_wire(buffer->wire, frame_encode_samples(buffer, &samples));
}

/* Append samples read at read_us (the newest was taken about then); send each full frame. */
static void add_samples(frame_buffer_t *buffer, frame_accumulator_t *frame, const int32_t *xyz,
                        size_t n_samples, uint64_t read_us)
{
    const uint64_t period_us = 1000000u / RATE_HZ;
    for (size_t i = 0; i < n_samples; i++) {
        if (frame->n_samples == 0u) {
            frame->first_sample_us = read_us - (uint64_t)(n_samples - 1u - i) * period_us;
        }
        for (size_t c = 0; c < CHANNELS; c++) {
            frame->counts[frame->n_samples * CHANNELS + c] = xyz[i * CHANNELS + c];
        }
        if (++frame->n_samples == SAMPLES_PER_FRAME) {
            send_samples(buffer, frame);
            frame->seq++;
            frame->n_samples = 0u;
        }
    }
}

int main(void)
{
    /* Static: the frame buffer (8 KB) and FIFO copy do not fit the default 2 KB stack. */
    static frame_buffer_t buffer;
    static frame_accumulator_t frame;
    static int32_t xyz[ADXL355_FIFO_ENTRIES];
    const adxl355_bus_t bus = {NULL, spi_read_registers, spi_write_register, delay_ms};
    const uint8_t cause = reset_cause();
    bool host_was_connected = false;

    stdio_init_all();
    setup_pins();
    watchdog_enable(WATCHDOG_MS, true);
    while (adxl355_start(&bus, WATERMARK_SAMPLES) != 0) {
        watchdog_update();
        sleep_ms(100);
    }
    for (;;) {
        /* Bytes sent before the host opens the port are lost, so each opening starts a stream. */
        bool host_connected = stdio_usb_connected();
        if (host_connected && !host_was_connected) {
            send_hello(&buffer, frame.seq++, cause);
            frame.n_samples = 0u;
        }
        host_was_connected = host_connected;
        if (!gpio_get(PIN_INT1)) {
            tight_loop_contents();
            continue;
        }
        const uint64_t read_us = time_us_64();
        const uint8_t status = adxl355_status(&bus); /* reading STATUS clears FIFO_OVR */
        const size_t n_samples = adxl355_read_samples(&bus, xyz);
        if (n_samples > 0u) {
            watchdog_update();
        }
        if (!host_connected) {
            continue;
        }
        if (status & ADXL355_STATUS_FIFO_OVR) {
            /* Samples were lost inside the sensor: drop the partial frame, skip a seq number. */
            frame.n_samples = 0u;
            frame.seq++;
        }
        add_samples(&buffer, &frame, xyz, n_samples, read_us);
    }
}
