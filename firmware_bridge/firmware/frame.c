#include "frame.h"

#include <math.h>
#include <string.h>

#define HEADER_SIZE 16u
#define SAMPLES_HEAD_SIZE 12u
#define HELLO_HEAD_SIZE 2u
#define CRC_SIZE 4u

/* This file stores floats by copying their bits: it needs IEEE-754 binary32 floats. */
typedef char float_is_32_bits[(sizeof(float) == 4u) ? 1 : -1];

/* Nibble-at-a-time table for the reflected polynomial 0xEDB88320: 64 bytes of flash. */
static const uint32_t crc32_nibble_table[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u,
    0x4DB26158u, 0x5005713Cu, 0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t frame_crc32(uint32_t crc, const uint8_t *data, size_t len)
{
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        crc = (crc >> 4) ^ crc32_nibble_table[crc & 0x0Fu];
        crc = (crc >> 4) ^ crc32_nibble_table[crc & 0x0Fu];
    }
    return ~crc;
}

size_t frame_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst)
{
    size_t out = 1;
    size_t code_at = 0;
    uint8_t code = 1;
    for (size_t i = 0; i < len; i++) {
        if (src[i] != 0) {
            dst[out++] = src[i];
            code++;
        }
        if (src[i] == 0 || code == 0xFFu) {
            dst[code_at] = code;
            code = 1;
            code_at = out;
            /* A full block at the very end gets no trailing 0x01 (canonical COBS). */
            if (src[i] == 0 || i + 1 < len) {
                out++;
            } else {
                return out;
            }
        }
    }
    dst[code_at] = code;
    return out;
}

static uint8_t *put_u16(uint8_t *at, uint16_t value)
{
    at[0] = (uint8_t)value;
    at[1] = (uint8_t)(value >> 8);
    return at + 2;
}

static uint8_t *put_u32(uint8_t *at, uint32_t value)
{
    at = put_u16(at, (uint16_t)value);
    return put_u16(at, (uint16_t)(value >> 16));
}

static uint8_t *put_u64(uint8_t *at, uint64_t value)
{
    at = put_u32(at, (uint32_t)value);
    return put_u32(at, (uint32_t)(value >> 32));
}

static uint8_t *put_f32(uint8_t *at, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return put_u32(at, bits);
}

static uint8_t *put_header(uint8_t *at, uint8_t type, uint32_t seq, uint64_t mcu_time_us)
{
    *at++ = (uint8_t)FRAME_VERSION;
    *at++ = type;
    at = put_u16(at, 0u);
    at = put_u32(at, seq);
    return put_u64(at, mcu_time_us);
}

/* Append the CRC to payload[0..len) and COBS-encode it with its delimiter into wire[]. */
static size_t finish_frame(frame_buffer_t *buffer, size_t len)
{
    put_u32(buffer->payload + len, frame_crc32(0u, buffer->payload, len));
    size_t wire_len = frame_cobs_encode(buffer->payload, len + CRC_SIZE, buffer->wire);
    buffer->wire[wire_len] = 0x00u;
    return wire_len + 1u;
}

static int channel_ids_unique(const uint8_t *ids, uint8_t n)
{
    uint8_t seen[256] = {0};
    for (uint8_t i = 0; i < n; i++) {
        if (seen[ids[i]]) {
            return 0;
        }
        seen[ids[i]] = 1;
    }
    return 1;
}

static int counts_fit_int16(const int32_t *counts, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (counts[i] < INT16_MIN || counts[i] > INT16_MAX) {
            return 0;
        }
    }
    return 1;
}

static int samples_valid(const frame_samples_t *s, size_t width)
{
    size_t n_values = (size_t)s->n_samples * s->n_channels;
    size_t payload_len = HEADER_SIZE + SAMPLES_HEAD_SIZE + s->n_channels + n_values * width + CRC_SIZE;
    if (s->n_channels < 1u || s->n_channels > FRAME_MAX_CHANNELS || s->n_samples < 1u ||
        s->rate_hz < 1u || !isfinite(s->scale) || payload_len > FRAME_MAX_PAYLOAD) {
        return 0;
    }
    if (!channel_ids_unique(s->channel_ids, s->n_channels)) {
        return 0;
    }
    return width == 4u || counts_fit_int16(s->counts, n_values);
}

size_t frame_encode_samples(frame_buffer_t *buffer, const frame_samples_t *s)
{
    size_t width = s->sample_format == FRAME_FORMAT_INT16 ? 2u
                 : s->sample_format == FRAME_FORMAT_INT32 ? 4u
                                                          : 0u;
    if (width == 0u || !samples_valid(s, width)) {
        return 0u;
    }
    uint8_t *at = put_header(buffer->payload, (uint8_t)FRAME_TYPE_SAMPLES, s->seq, s->mcu_time_us);
    at = put_u32(at, s->rate_hz);
    *at++ = s->n_channels;
    *at++ = s->sample_format;
    at = put_u16(at, s->n_samples);
    at = put_f32(at, s->scale);
    memcpy(at, s->channel_ids, s->n_channels);
    at += s->n_channels;
    size_t n_values = (size_t)s->n_samples * s->n_channels;
    for (size_t i = 0; i < n_values; i++) {
        at = width == 2u ? put_u16(at, (uint16_t)s->counts[i]) : put_u32(at, (uint32_t)s->counts[i]);
    }
    return finish_frame(buffer, (size_t)(at - buffer->payload));
}

size_t frame_encode_hello(frame_buffer_t *buffer, uint32_t seq, uint64_t mcu_time_us,
                          uint8_t reset_cause, const char *firmware)
{
    size_t len = strlen(firmware);
    if (len > 255u) {
        return 0u;
    }
    for (size_t i = 0; i < len; i++) {
        if ((uint8_t)firmware[i] > 127u) {
            return 0u;
        }
    }
    uint8_t *at = put_header(buffer->payload, (uint8_t)FRAME_TYPE_HELLO, seq, mcu_time_us);
    *at++ = reset_cause;
    *at++ = (uint8_t)len;
    memcpy(at, firmware, len);
    return finish_frame(buffer, HEADER_SIZE + HELLO_HEAD_SIZE + len);
}
