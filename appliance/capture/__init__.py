"""Capture stage: the serial MCU link, the I2C poller and the MCU clock mapping (the emulated
devices are the rig's, appliance/rig/)."""
