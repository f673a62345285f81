"""Host-side codec, test vectors and MCU firmware for the serial frame protocol."""
