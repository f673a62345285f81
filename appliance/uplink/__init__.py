"""Uplink: the topic/payload schema (pure, shared with the cloud receiver) and the publisher.

Nothing is imported here on purpose: the receiver imports `appliance.uplink.schema` without
pulling in the gateway's MQTT or store code.
"""
