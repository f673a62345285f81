"""Capture stage: the serial MCU link, the I2C poller, their emulators and the MCU clock mapping."""
