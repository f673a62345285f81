"""A range in the `summary` uplink profile (PROTOCOL.md, "Uplink profiles"): which of its
records go in full and the summary part that accounts for the rest.

In full: every alert, and every window (features and score) of an asset that lies in one of
its alarm episodes or within `margin_s` before the episode's raise, as far as the alerts up
to the range's hi tell. A raise in the range also promotes the asset's windows from before
the range (seq <= lo) within the margin before it: they went summarised in an earlier range
(which could not know), and now go in full, nested in the summary part. Every other record is
summarised; the summary part says how many, lists the seqs the gateway no longer has, and
carries the per-minute aggregates the range's windows closed (store/summary_reads.py).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from appliance.records import Alert, FeatureVector
from appliance.store import StoredRecord
from appliance.store.summary_reads import Episode, SummaryInputs, episode_family, is_raise
from appliance.uplink.schema import Part, SeqRecord, split_range
from appliance.uplink.schema.summary_part import PROMOTED_KINDS, SUMMARY_ASSET, SummaryBody

Span = tuple[float, float]
Splitter = Callable[[int, int, list[tuple[int, StoredRecord]]], list[Part]]
"""(lo, hi, records) -> the range's parts."""


def record_time(record: StoredRecord) -> float:
    return record.window_end if isinstance(record, FeatureVector) else record.t


def summary_splitter(gateway: str, inputs: SummaryInputs, margin_s: float) -> Splitter:
    def split(lo: int, hi: int, records: list[tuple[int, StoredRecord]]) -> list[Part]:
        return summary_parts(gateway, lo, hi, records, inputs, margin_s)

    return split


def summary_parts(
    gateway: str,
    lo: int,
    hi: int,
    records: list[tuple[int, StoredRecord]],
    inputs: SummaryInputs,
    margin_s: float,
) -> list[Part]:
    """The parts of (lo, hi] in the summary profile: the records in full split as in the full
    profile, then one summary part (when anything is summarised, closed or promoted)."""
    spans = alarm_spans(records, inputs, margin_s)
    full: list[SeqRecord] = []
    summarised = 0
    for seq, record in records:
        t = record_time(record)
        if isinstance(record, Alert) or any(a <= t <= b for a, b in spans.get(record.asset, [])):
            full.append((seq, record))
        else:
            summarised += 1
    minutes = [minute for seq, minute in inputs.minutes if lo < seq <= hi]
    promoted = promoted_parts(gateway, lo, records, inputs, margin_s)
    if not (summarised or minutes or promoted):
        return split_range(gateway, lo, hi, full)
    parts = split_range(gateway, lo, hi, full) if full else []
    total = len(parts) + 1
    body = SummaryBody(summarised, absent_runs(lo, hi, records), minutes, promoted)
    summary = Part(gateway, lo, hi, len(parts), total, "summary", SUMMARY_ASSET, [], body)
    return [*(dataclasses.replace(part, parts=total) for part in parts), summary]


def alarm_spans(
    records: list[tuple[int, StoredRecord]], inputs: SummaryInputs, margin_s: float
) -> dict[str, list[Span]]:
    """Per asset, the times in full: each episode from margin_s before its raise to its clear
    (or on, while open), from the episodes open at lo and the alerts of the range."""
    spans: dict[str, list[Span]] = {}
    open_now: dict[str, dict[Episode, float]] = {
        asset: dict(episodes) for asset, episodes in inputs.open_at_lo.items()
    }
    for _, record in records:
        if not isinstance(record, Alert) or (family := episode_family(record.kind)) is None:
            continue
        episodes = open_now.setdefault(record.asset, {})
        key = (family[0], record.channel)
        if family[1]:
            episodes.setdefault(key, record.t)
        elif key in episodes:
            raised = episodes.pop(key)
            spans.setdefault(record.asset, []).append((raised - margin_s, record.t))
    for asset, episodes in open_now.items():
        for raised in episodes.values():
            spans.setdefault(asset, []).append((raised - margin_s, math.inf))
    return spans


def promoted_parts(
    gateway: str,
    lo: int,
    records: list[tuple[int, StoredRecord]],
    inputs: SummaryInputs,
    margin_s: float,
) -> list[Part]:
    """Per asset with a raise in the range: its windows with seq <= lo from margin_s before
    its first raise on, as a features part and a scores part of (0, lo]."""
    parts = []
    for asset, earlier in sorted(inputs.earlier.items()):
        raises = [r.t for _, r in records if isinstance(r, Alert) and is_raise(r, asset)]
        if not raises or lo < 1:
            continue
        since = min(raises) - margin_s
        chosen = [(seq, r) for seq, r in earlier if seq <= lo and record_time(r) >= since]
        for kind in PROMOTED_KINDS:
            features = kind == "features"
            rows = [(seq, r) for seq, r in chosen if features == isinstance(r, FeatureVector)]
            if rows:
                parts.append(Part(gateway, 0, lo, 0, 1, kind, asset, rows))
    return parts


def absent_runs(lo: int, hi: int, records: list[tuple[int, StoredRecord]]) -> list[tuple[int, int]]:
    """Runs (first, last) of the seqs of (lo, hi] the store no longer has."""
    runs = []
    expected = lo + 1
    for seq, _ in [*records, (hi + 1, None)]:
        if seq > expected:
            runs.append((expected, seq - 1))
        expected = seq + 1
    return runs
