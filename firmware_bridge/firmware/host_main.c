/*
 * Host build of the firmware's frame code, used by the Python tests.
 *
 *   frame_host vectors                 one line per encodable test vector: "<name> <wire hex>"
 *   frame_host stream N [FIRST_SEQ]    0x00, a HELLO (seq FIRST_SEQ), then N SAMPLES frames
 *                                      (seq FIRST_SEQ+1.., wrapping) as raw bytes on stdout
 *   frame_host adxl355 HEX             decode ADXL355 FIFO bytes, print "x y z" per sample
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adxl355.h"
#include "frame.h"
#include "host_vectors.h"

#define STREAM_CHANNELS 3u
#define STREAM_SAMPLES 32u
#define STREAM_RATE_HZ 1000u
#define STREAM_SCALE 3.9e-6f

static frame_buffer_t frame_buffer;

static size_t encode_vector(const host_vector_t *v)
{
    if (v->type == FRAME_TYPE_HELLO) {
        return frame_encode_hello(&frame_buffer, v->seq, v->mcu_time_us, v->reset_cause,
                                  v->firmware);
    }
    frame_samples_t samples = {v->seq,           v->mcu_time_us, v->rate_hz,
                               v->n_channels,    v->channel_ids, v->sample_format,
                               v->n_samples,     v->scale,       v->counts};
    return frame_encode_samples(&frame_buffer, &samples);
}

static int print_vectors(void)
{
    for (size_t i = 0; i < HOST_VECTOR_COUNT; i++) {
        size_t len = encode_vector(&HOST_VECTORS[i]);
        if (len == 0u) {
            fprintf(stderr, "vector %s: encoder refused it\n", HOST_VECTORS[i].name);
            return 1;
        }
        printf("%s ", HOST_VECTORS[i].name);
        for (size_t j = 0; j < len; j++) {
            printf("%02x", frame_buffer.wire[j]);
        }
        printf("\n");
    }
    return 0;
}

/* The synthetic signal; tests/firmware_bridge computes the same values. */
static int32_t synthetic_count(uint32_t sample_index, uint32_t channel)
{
    return (int32_t)((sample_index * 7919u + channel * 104729u) % (1u << 20)) - (1 << 19);
}

static int write_wire(size_t len)
{
    return len != 0u && fwrite(frame_buffer.wire, 1, len, stdout) == len ? 0 : 1;
}

static int write_stream(unsigned long n_frames, uint32_t first_seq)
{
    static const uint8_t channel_ids[STREAM_CHANNELS] = {0u, 1u, 2u};
    int32_t counts[STREAM_SAMPLES * STREAM_CHANNELS];
    uint32_t seq = first_seq;
    uint64_t time_us = 1000u;
    if (fputc(0x00, stdout) == EOF ||
        write_wire(frame_encode_hello(&frame_buffer, seq++, time_us, FRAME_RESET_POWER_ON,
                                      "frame_host synthetic"))) {
        return 1;
    }
    for (unsigned long frame = 0; frame < n_frames; frame++) {
        for (uint32_t s = 0; s < STREAM_SAMPLES; s++) {
            for (uint32_t c = 0; c < STREAM_CHANNELS; c++) {
                uint32_t sample_index = (uint32_t)frame * STREAM_SAMPLES + s;
                counts[s * STREAM_CHANNELS + c] = synthetic_count(sample_index, c);
            }
        }
        frame_samples_t samples = {seq++,           time_us,      STREAM_RATE_HZ,
                                   STREAM_CHANNELS, channel_ids,  FRAME_FORMAT_INT32,
                                   STREAM_SAMPLES,  STREAM_SCALE, counts};
        if (write_wire(frame_encode_samples(&frame_buffer, &samples))) {
            return 1;
        }
        time_us += STREAM_SAMPLES * 1000000u / STREAM_RATE_HZ;
    }
    return fflush(stdout) == 0 ? 0 : 1;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

static int print_adxl355(const char *hex)
{
    uint8_t fifo[96 * 3];
    size_t n_bytes = strlen(hex) / 2u;
    if (strlen(hex) % 2u != 0u || n_bytes > sizeof fifo) {
        return 2;
    }
    for (size_t i = 0; i < n_bytes; i++) {
        int high = hex_value(hex[2 * i]);
        int low = hex_value(hex[2 * i + 1]);
        if (high < 0 || low < 0) {
            return 2;
        }
        fifo[i] = (uint8_t)(high * 16 + low);
    }
    int32_t xyz[96];
    size_t n_samples = adxl355_parse_fifo(fifo, n_bytes / 3u, xyz);
    for (size_t i = 0; i < n_samples; i++) {
        printf("%ld %ld %ld\n", (long)xyz[3 * i], (long)xyz[3 * i + 1], (long)xyz[3 * i + 2]);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "vectors") == 0) {
        return print_vectors();
    }
    if ((argc == 3 || argc == 4) && strcmp(argv[1], "stream") == 0) {
        uint32_t first_seq = argc == 4 ? (uint32_t)strtoul(argv[3], NULL, 0) : 0u;
        return write_stream(strtoul(argv[2], NULL, 0), first_seq);
    }
    if (argc == 3 && strcmp(argv[1], "adxl355") == 0) {
        return print_adxl355(argv[2]);
    }
    fprintf(stderr, "usage: %s vectors | stream N [FIRST_SEQ] | adxl355 HEX\n", argv[0]);
    return 2;
}
