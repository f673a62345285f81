"""Compare what the gateway stored with what the receiver committed, record by record.

Both sides become {seq: comparable tuple}: the gateway's through its own Store API (every row of
features, scores and alerts, delivered or not), the receiver's from its SQLite tables. Values are
compared as the protocol carries them: times and finite numbers exactly, NaN and infinities as
"no number" (JSON has neither; the receiver stores a non-finite threshold as NULL).
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from appliance.records import Alert, FeatureVector, Score
from appliance.store import Store, StoreSettings

PAGE = 50_000
Key = tuple[Any, ...]
T = TypeVar("T")


def number(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def feature_value(value: float) -> float | None:
    """As the binary wire format carries a feature value (float32: PROTOCOL.md)."""
    with np.errstate(over="ignore"):
        return number(float(np.float32(value)))


def feature_key(v: FeatureVector) -> Key:
    return ("features", v.asset, v.window_end, v.names, tuple(feature_value(x) for x in v.values))


def score_key(s: Score) -> Key:
    return ("scores", s.asset, s.t, s.model_id, number(s.error), number(s.threshold),
            bool(s.anomalous), tuple(s.contributors))  # fmt: skip


def alert_key(a: Alert) -> Key:
    return ("alerts", a.asset, a.t, a.severity, a.kind, a.message, a.channel)


@dataclass
class Side:
    records: dict[int, Key] = field(default_factory=dict)
    duplicates: int = 0
    """Seqs found more than once (in one table or across tables)."""

    def add(self, seq: int, key: Key) -> None:
        if seq in self.records:
            self.duplicates += 1
        self.records[seq] = key

    def by_kind(self) -> Counter[str]:
        return Counter(key[0] for key in self.records.values())


@dataclass(frozen=True)
class GatewayStore:
    side: Side
    last_seq: int
    acked_seq: int
    lost_before_delivery: int


async def read_gateway_store(path: Path) -> GatewayStore:
    side = Side()
    async with await Store.open(StoreSettings(path)) as store:
        for seq, vector in await read_all(store.history.features):
            side.add(seq, feature_key(vector))
        for seq, score in await read_all(store.history.scores):
            side.add(seq, score_key(score))
        for seq, alert in await read_all(store.history.alerts):
            side.add(seq, alert_key(alert))
        stats = await store.delivery.outbox_stats()
    return GatewayStore(side, stats.last_seq, stats.acked_seq, stats.lost_before_delivery)


async def read_all(
    read: Callable[..., Awaitable[list[tuple[int, T]]]],
) -> list[tuple[int, T]]:
    rows: list[tuple[int, T]] = []
    while True:
        page = await read(after_seq=rows[-1][0] if rows else 0, limit=PAGE)
        rows.extend(page)
        if len(page) < PAGE:
            return rows


FEATURES = (
    "SELECT f.seq, f.asset, f.t, s.names_json, f.feature_values FROM features AS f"
    " JOIN feature_schemas AS s ON s.id = f.schema_id WHERE f.gateway = ?"
)
SCORES = (
    "SELECT seq, asset, t, model_id, error, threshold, anomalous, contributors_json FROM scores"
    " WHERE gateway = ?"
)
ALERTS = "SELECT seq, asset, t, severity, kind, message, channel FROM alerts WHERE gateway = ?"


@dataclass(frozen=True)
class ReceiverDb:
    side: Side
    acked_seq: int
    status: dict[str, Any]


def read_receiver_db(path: Path, gateway: str) -> ReceiverDb:
    side = Side()
    with sqlite3.connect(path) as db:
        for seq, asset, t, names_json, blob in db.execute(FEATURES, (gateway,)):
            values = np.frombuffer(blob, dtype="<f8")
            names = tuple(json.loads(names_json))
            side.add(seq, ("features", asset, t, names, tuple(feature_value(x) for x in values)))
        for seq, asset, t, model, error, threshold, anomalous, contributors in db.execute(
            SCORES, (gateway,)
        ):
            side.add(seq, ("scores", asset, t, model, number(error), number(threshold),
                           bool(anomalous), tuple(json.loads(contributors))))  # fmt: skip
        for seq, *alert in db.execute(ALERTS, (gateway,)):
            side.add(seq, ("alerts", *alert))
        cursor = db.execute("SELECT * FROM gateway_status WHERE gateway = ?", (gateway,))
        row = cursor.fetchone()
        columns = [column[0] for column in cursor.description]
        found = {} if row is None else dict(zip(columns, row, strict=True))
    db.close()
    return ReceiverDb(side, int(found.get("acked_seq", 0)), found)


@dataclass(frozen=True)
class Comparison:
    by_kind: Counter[str]
    """Gateway records compared, per kind."""
    missing: list[int]
    """At the gateway, not at the receiver."""
    unexpected: list[int]
    """At the receiver, not at the gateway."""
    different: list[int]
    """At both, with different content."""
    duplicates: int
    gateway_gaps: list[int]
    """Seqs in 1..last_seq the gateway does not have (evicted or never written)."""


def compare(gateway: Side, last_seq: int, receiver: Side) -> Comparison:
    mine, theirs = gateway.records, receiver.records
    return Comparison(
        by_kind=gateway.by_kind(),
        missing=sorted(mine.keys() - theirs.keys()),
        unexpected=sorted(theirs.keys() - mine.keys()),
        different=sorted(s for s in mine.keys() & theirs.keys() if mine[s] != theirs[s]),
        duplicates=gateway.duplicates + receiver.duplicates,
        gateway_gaps=sorted(set(range(1, last_seq + 1)) - mine.keys()),
    )


def first(seqs: Sequence[int], n: int = 10) -> str:
    return ", ".join(map(str, seqs[:n])) + (" ..." if len(seqs) > n else "")


# --- the summary uplink profile (PROTOCOL.md, "Uplink profiles") ------------------------------

COMPLETE_SUMMARISED_RANGES = """
SELECT lo, hi, sum(records), max(kind = 'summary') FROM parts WHERE gateway = ?
GROUP BY lo, hi, parts HAVING count(*) = parts
"""


@dataclass(frozen=True)
class SummaryAccounting:
    summarised: set[int]
    """Seqs of complete ranges with a summary part that the receiver has not in full."""
    ranges_not_adding_up: int
    """Complete ranges with a summary part whose parts account for other than hi - lo seqs."""
    minutes: int


def summary_accounting(path: Path, gateway: str, in_full: set[int]) -> SummaryAccounting:
    """From the receiver's parts table: which seqs complete ranges summarised (no eviction:
    absent seqs are none), and whether each such range's parts add up to its span."""
    summarised: set[int] = set()
    wrong = 0
    with sqlite3.connect(path) as db:
        for lo, hi, records, has_summary in db.execute(COMPLETE_SUMMARISED_RANGES, (gateway,)):
            if has_summary:
                summarised |= set(range(lo + 1, hi + 1))
                wrong += int(records) != hi - lo
        (minutes,) = db.execute("SELECT count(*) FROM summaries WHERE gateway = ?", (gateway,))
    db.close()
    return SummaryAccounting(summarised - in_full, wrong, int(minutes[0]))


def alarm_windows(gateway: Side, margin_s: float) -> set[int]:
    """The gateway's windows (features and scores) in one of their asset's alarm episodes, or
    within margin_s before its raise: `<family>_raised` to `<family>_cleared` per channel."""
    spans: dict[str, list[tuple[float, float]]] = {}
    opened: dict[tuple[str, str, Any], float] = {}
    for _, key in sorted(gateway.records.items()):
        if key[0] != "alerts":
            continue
        _, asset, t, _, kind, _, channel = key
        family, _, edge = str(kind).rpartition("_")
        if edge == "raised":
            opened.setdefault((asset, family, channel), t)
        elif edge == "cleared" and (asset, family, channel) in opened:
            spans.setdefault(asset, []).append((opened.pop((asset, family, channel)), t))
    for (asset, _, _), t in opened.items():
        spans.setdefault(asset, []).append((t, math.inf))
    return {
        seq
        for seq, key in gateway.records.items()
        if key[0] != "alerts" and any(a - margin_s <= key[2] <= b for a, b in spans.get(key[1], []))
    }
