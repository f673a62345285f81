#include "adxl355.h"

/* Register addresses and values from the ADXL355 datasheet (register map). */
#define REG_DEVID_AD 0x00u
#define REG_STATUS 0x04u
#define REG_FIFO_ENTRIES 0x05u
#define REG_FIFO_DATA 0x11u
#define REG_FILTER 0x28u
#define REG_FIFO_SAMPLES 0x29u
#define REG_INT_MAP 0x2Au
#define REG_RANGE 0x2Cu
#define REG_POWER_CTL 0x2Du
#define REG_RESET 0x2Fu

#define DEVID_AD 0xADu
#define DEVID_MST 0x1Du
#define PARTID 0xEDu
#define RESET_CODE 0x52u
#define FILTER_ODR_1000HZ 0x02u  /* no high-pass, ODR 1000 Hz, low-pass 250 Hz */
#define RANGE_2G_INT_ACTIVE_HIGH 0x41u
#define INT_MAP_FIFO_FULL_ON_INT1 0x02u
#define POWER_CTL_MEASURE 0x00u

#define FIFO_MARKER_X 0x01u
#define FIFO_MARKER_EMPTY 0x02u

int adxl355_start(const adxl355_bus_t *bus, uint8_t watermark_samples)
{
    uint8_t ids[3];
    bus->write(bus->context, REG_RESET, RESET_CODE);
    bus->delay_ms(10u);
    bus->read(bus->context, REG_DEVID_AD, ids, sizeof ids);
    if (ids[0] != DEVID_AD || ids[1] != DEVID_MST || ids[2] != PARTID) {
        return -1;
    }
    if (watermark_samples < 1u || watermark_samples > ADXL355_FIFO_ENTRIES / 3u) {
        watermark_samples = (uint8_t)(ADXL355_FIFO_ENTRIES / 3u);
    }
    bus->write(bus->context, REG_FILTER, FILTER_ODR_1000HZ);
    bus->write(bus->context, REG_RANGE, RANGE_2G_INT_ACTIVE_HIGH);
    bus->write(bus->context, REG_FIFO_SAMPLES, (uint8_t)(watermark_samples * 3u));
    bus->write(bus->context, REG_INT_MAP, INT_MAP_FIFO_FULL_ON_INT1);
    bus->write(bus->context, REG_POWER_CTL, POWER_CTL_MEASURE);
    return 0;
}

uint8_t adxl355_status(const adxl355_bus_t *bus)
{
    uint8_t status;
    bus->read(bus->context, REG_STATUS, &status, 1u);
    return status;
}

size_t adxl355_read_samples(const adxl355_bus_t *bus, int32_t *xyz)
{
    uint8_t entries[ADXL355_FIFO_ENTRIES * 3u];
    uint8_t n_entries;
    bus->read(bus->context, REG_FIFO_ENTRIES, &n_entries, 1u);
    if (n_entries > ADXL355_FIFO_ENTRIES) {
        n_entries = ADXL355_FIFO_ENTRIES;
    }
    n_entries = (uint8_t)(n_entries - n_entries % 3u);
    if (n_entries == 0u) {
        return 0u;
    }
    bus->read(bus->context, REG_FIFO_DATA, entries, (size_t)n_entries * 3u);
    return adxl355_parse_fifo(entries, n_entries, xyz);
}

/* 20-bit two's complement, left-justified in 24 bits; the low nibble holds the markers. */
static int32_t entry_count(const uint8_t *entry)
{
    uint32_t raw = ((uint32_t)entry[0] << 12) | ((uint32_t)entry[1] << 4) | ((uint32_t)entry[2] >> 4);
    return (int32_t)(raw ^ 0x80000u) - 0x80000;
}

static int entry_is_x(const uint8_t *entry)
{
    return (entry[2] & (FIFO_MARKER_X | FIFO_MARKER_EMPTY)) == FIFO_MARKER_X;
}

static int entry_is_y_or_z(const uint8_t *entry)
{
    return (entry[2] & (FIFO_MARKER_X | FIFO_MARKER_EMPTY)) == 0u;
}

size_t adxl355_parse_fifo(const uint8_t *entries, size_t n_entries, int32_t *xyz)
{
    size_t n_samples = 0;
    size_t i = 0;
    while (i + 3u <= n_entries) {
        const uint8_t *x = entries + 3u * i;
        if (entries[3u * i + 2u] & FIFO_MARKER_EMPTY) {
            break;
        }
        if (!entry_is_x(x) || !entry_is_y_or_z(x + 3) || !entry_is_y_or_z(x + 6)) {
            i++;
            continue;
        }
        xyz[3u * n_samples] = entry_count(x);
        xyz[3u * n_samples + 1u] = entry_count(x + 3);
        xyz[3u * n_samples + 2u] = entry_count(x + 6);
        n_samples++;
        i += 3u;
    }
    return n_samples;
}
