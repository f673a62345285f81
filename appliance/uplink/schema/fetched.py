"""Topics of fetched records (PROTOCOL.md, "Fetch on demand"): a part of a fetch travels on
`<prefix>/<gateway>/fetched/<kind>/<asset>`, one level deeper than a data topic, so neither the
receivers' data subscription (`<prefix>/+/+/+`) nor the acknowledgement chain ever sees it."""

from __future__ import annotations

from appliance.uplink.schema.topics import data_topic
from appliance.uplink.schema.values import check_name, check_prefix

FETCHED_LEVEL = "fetched"


def fetched_topic(prefix: str, gateway: str, kind: str, asset: str) -> str:
    """The data topic of (kind, asset) with the `fetched` level before the kind."""
    base = data_topic(prefix, gateway, kind, asset)
    return f"{prefix}/{gateway}/{FETCHED_LEVEL}/{base[len(prefix) + len(gateway) + 2 :]}"


def fetched_subscription(group: str, prefix: str) -> str:
    """What receivers subscribe to for fetched parts, shared among the group's members."""
    return f"$share/{check_name(group, 'group')}/{check_prefix(prefix)}/+/{FETCHED_LEVEL}/+/+"


def data_topic_of_fetched(prefix: str, topic: str) -> str | None:
    """`<prefix>/<gateway>/<kind>/<asset>` for a fetched topic under `prefix` (its parts are
    decoded against it), None if `topic` is not one."""
    if not topic.startswith(f"{prefix}/"):
        return None
    levels = topic[len(prefix) + 1 :].split("/")
    if len(levels) != 4 or levels[1] != FETCHED_LEVEL:
        return None
    gateway, _, kind, asset = levels
    return f"{prefix}/{gateway}/{kind}/{asset}"
