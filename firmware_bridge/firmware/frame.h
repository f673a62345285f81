/*
 * Frame encoder for the MCU -> gateway protocol (firmware_bridge/PROTOCOL.md).
 * Portable C99, no hardware dependencies: the same file builds for the RP2040 and the host.
 */
#ifndef FRAME_H
#define FRAME_H

#include <stddef.h>
#include <stdint.h>

#define FRAME_VERSION 1u
#define FRAME_TYPE_SAMPLES 1u
#define FRAME_TYPE_HELLO 2u
#define FRAME_FORMAT_INT16 1u
#define FRAME_FORMAT_INT32 2u
#define FRAME_MAX_CHANNELS 32u
#define FRAME_MAX_PAYLOAD 4096u
/* Worst-case COBS size of the largest payload, plus the 0x00 delimiter. */
#define FRAME_MAX_WIRE (FRAME_MAX_PAYLOAD + (FRAME_MAX_PAYLOAD + 253u) / 254u + 1u)

#define FRAME_RESET_UNKNOWN 0u
#define FRAME_RESET_POWER_ON 1u
#define FRAME_RESET_WATCHDOG 2u
#define FRAME_RESET_SOFTWARE 3u

/* One SAMPLES frame's content. counts holds n_samples * n_channels values, sample-major. */
typedef struct {
    uint32_t seq;
    uint64_t mcu_time_us;
    uint32_t rate_hz;
    uint8_t n_channels;
    const uint8_t *channel_ids;
    uint8_t sample_format;
    uint16_t n_samples;
    float scale;
    const int32_t *counts;
} frame_samples_t;

/*
 * Scratch space for one frame: too big for the RP2040's default 2 KB stack, so callers keep one
 * in static storage. wire[] receives the finished frame.
 */
typedef struct {
    uint8_t payload[FRAME_MAX_PAYLOAD];
    uint8_t wire[FRAME_MAX_WIRE];
} frame_buffer_t;

/* CRC-32 (IEEE 802.3, as zlib.crc32). Start with crc = 0; pass the result to continue. */
uint32_t frame_crc32(uint32_t crc, const uint8_t *data, size_t len);

/* Canonical COBS of src into dst (dst needs len + len / 254 + 1 bytes). Returns bytes written. */
size_t frame_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst);

/*
 * Encode a complete wire frame (COBS + trailing 0x00) into buffer->wire.
 * Return its length, or 0 if the input breaks a rule of PROTOCOL.md (nothing is written then).
 */
size_t frame_encode_samples(frame_buffer_t *buffer, const frame_samples_t *samples);
size_t frame_encode_hello(frame_buffer_t *buffer, uint32_t seq, uint64_t mcu_time_us,
                          uint8_t reset_cause, const char *firmware);

#endif
