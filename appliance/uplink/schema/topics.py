"""Topic names: data, status, ack and the receivers' shared subscription."""

from __future__ import annotations

from dataclasses import dataclass

from appliance.uplink.errors import SchemaError
from appliance.uplink.schema.values import Kind, check_kind, check_name, check_prefix


def data_topic(prefix: str, gateway: str, kind: str, asset: str) -> str:
    """`<prefix>/<gateway>/<kind>/<asset>`; a gap part uses asset "_"."""
    check_prefix(prefix)
    check_name(gateway, "gateway")
    check_kind(kind)
    check_name(asset, "asset")
    return f"{prefix}/{gateway}/{kind}/{asset}"


def status_topic(prefix: str, gateway: str) -> str:
    """The gateway's retained status (its last will says offline)."""
    return f"{check_prefix(prefix)}/{check_name(gateway, 'gateway')}/status"


def ack_topic(prefix: str, gateway: str) -> str:
    """The receiver's retained acknowledgement for one gateway."""
    return f"{check_prefix(prefix)}/{check_name(gateway, 'gateway')}/ack"


def shared_subscription(group: str, prefix: str) -> str:
    """What receivers subscribe to: every data topic, shared among the group's members."""
    return f"$share/{check_name(group, 'group')}/{check_prefix(prefix)}/+/+/+"


@dataclass(frozen=True, slots=True)
class DataTopic:
    prefix: str
    gateway: str
    kind: Kind
    asset: str


def parse_data_topic(topic: str) -> DataTopic:
    """Split a data topic (the prefix may have several levels); SchemaError("bad_topic")."""
    levels = topic.rsplit("/", 3)
    if len(levels) != 4:
        raise SchemaError(f"topic {topic!r} is not <prefix>/<gateway>/<kind>/<asset>", "bad_topic")
    prefix, gateway, kind, asset = levels
    try:
        return DataTopic(
            prefix=check_prefix(prefix),
            gateway=check_name(gateway, "gateway"),
            kind=check_kind(kind),
            asset=check_name(asset, "asset"),
        )
    except SchemaError as exc:
        raise SchemaError(f"topic {topic!r}: {exc}", "bad_topic") from exc
