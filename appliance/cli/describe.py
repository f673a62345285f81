"""The one-line description of a config: what check-config prints and the demo starts with."""

from __future__ import annotations

from appliance.config import ApplianceConfig


def describe(config: ApplianceConfig) -> str:
    channels = sum(len(a.channels) for a in config.assets)
    return (
        f"gateway {config.gateway.id}, {len(config.assets)} asset(s), {channels} channel(s), "
        f"{len(config.serial)} serial device(s), {len(config.i2c)} I2C bus(es), "
        f"{_describe_sms(config)}, {_describe_uplink(config)}, {_describe_models(config)}"
    )


def _describe_models(config: ApplianceConfig) -> str:
    models = config.models
    if models is None:
        return "no model updates over the air"
    keys = len(models.public_keys) + len(models.public_key_files)
    return f"model updates over the air signed by {keys} key(s)"


def _describe_sms(config: ApplianceConfig) -> str:
    sms = config.sms
    if sms is None:
        return "no SMS"
    modem = "an emulated modem" if sms.emulate else sms.port
    return (
        f"SMS of {'/'.join(sms.severities)} alerts to {len(sms.recipients)} recipient(s) "
        f"through {modem}"
    )


def _describe_uplink(config: ApplianceConfig) -> str:
    uplink = config.uplink
    if uplink is None:
        return "no uplink (records stay on the gateway)"
    if uplink.client_cert is not None:
        identity = f"client certificate {uplink.client_cert}"
    elif uplink.username is not None:
        identity = f"user {uplink.username}"
    else:
        identity = "no credentials"
    return (
        f"uplink to {uplink.address.url} as {identity}, topics {uplink.topic_prefix}/"
        f"{config.gateway.id}/..., ack by {uplink.ack}"
    )
