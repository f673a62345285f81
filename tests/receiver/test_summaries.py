"""The `summary` uplink profile at the receiver, on SQLite and PostgreSQL: ranges built by a
real gateway store (summary_parts, through the binary wire format) are accounted without holes
although most seqs arrive only as per-minute aggregates, a range that never came is still a
hole, the windows in full (promoted ones too) are stored once, the minutes land in their own
table (a re-sent one ignored) and are exported."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from appliance.records import Alert, FeatureVector, Score
from appliance.store import Store, StoredRecord, StoreSettings
from appliance.uplink.schema import Part, decode_part, encode_part
from appliance.uplink.summary import summary_parts
from receiver.db import Database
from receiver.summary_export import export_summaries

T0 = 1_767_225_600.0
NAMES = ("accel_x.rms", "accel_x.peak")
MARGIN_S = 20.0
NOW = 1_767_300_000.0


@pytest.fixture
async def gateway_store(tmp_path: Path) -> AsyncIterator[Store]:
    async with await Store.open(StoreSettings(tmp_path / "gateway.db")) as opened:
        yield opened


async def windows(store: Store, start: float, seconds: int) -> int:
    rng = np.random.default_rng(int(start))
    for i in range(seconds):
        error = float(rng.uniform(0.1, 1.0))
        records: list[StoredRecord] = [
            FeatureVector("pump-1", start + i, NAMES, rng.normal(1.0, 0.2, 2)),
            Score("pump-1", start + i, "m1", error, 2.0, False),
        ]
        await store.recorder.add_records(records)
    return await store.delivery.latest_seq()


async def ranges(store: Store) -> list[list[Part]]:
    """Three ranges as the gateway sends them live: the first before the alarm was raised (its
    margin's windows summarised, promoted by the second), the third after the clear."""
    his = [0, await windows(store, T0, 70)]
    alarm = [Alert("pump-1", T0 + 70, "critical", "anomaly_raised", "x")]
    await store.recorder.add_records(alarm)
    await windows(store, T0 + 70, 10)
    clear = [Alert("pump-1", T0 + 80, "warning", "anomaly_cleared", "x")]
    await store.recorder.add_records(clear)
    his.append(await windows(store, T0 + 80, 10))
    his.append(await windows(store, T0 + 90, 100))
    sent = []
    for lo, hi in itertools.pairwise(his):
        found = await store.delivery.outbox_range(lo, hi - lo, hi)
        assert found is not None
        inputs = await store.delivery.summary_inputs(found, MARGIN_S)
        parts = summary_parts("gw-a", lo, hi, found.records, inputs, MARGIN_S)
        topics = [f"appliance/gw-a/{part.kind}/{part.asset}" for part in parts]
        sent.append(
            [decode_part(encode_part(p, "binary"), t) for p, t in zip(parts, topics, strict=True)]
        )
    return sent


def through_the_wire(part: Part) -> Part:
    return decode_part(encode_part(part, "binary"), f"appliance/gw-a/{part.kind}/{part.asset}")


async def status(db: Database) -> dict[str, object]:
    (row,) = [row for row in await db.gateway_status() if row["gateway"] == "gw-a"]
    return row


async def test_summarised_seqs_are_accounted_and_windows_in_full_stored_once(
    db: Database, gateway_store: Store, tmp_path: Path
) -> None:
    sent = await ranges(gateway_store)
    last = await gateway_store.delivery.latest_seq()

    for parts in sent:
        for part in parts:
            await db.ingest(part, NOW)
    again = [await db.ingest(part, NOW) for part in sent[1]]

    row = await status(db)
    assert (row["acked_seq"], row["holes"], row["missing_seqs"]) == (last, 0, 0)
    assert row["incomplete_ranges"] == 0
    stored = await db.features("gw-a", "pump-1", 0, 1e11)
    expected = [t for t in range(50, 81)]  # margin before the raise to the clear
    assert [round(r.t - T0) for r in stored] == expected, "in full: margin and episode, once"
    assert sum(result.duplicates for result in again) == sum(
        len(p.records) + sum(len(n.records) for n in (p.summary.promoted if p.summary else []))
        for p in sent[1]
    )
    minutes = await db.summaries("gw-a", "pump-1", 0, 1e11)
    assert [m.minute for m in minutes] == [int(T0) + 60 * i for i in range(3)]
    assert [m.windows for m in minutes] == [60, 60, 60]
    assert [m.alarm for m in minutes] == [False, True, False]
    sent_minutes = [m for parts in sent for p in parts if p.summary for m in p.summary.minutes]
    for got, minute in zip(minutes, sent_minutes, strict=True):
        np.testing.assert_array_equal(got.mean, minute.mean)
        assert got.max_error == minute.max_error

    out = tmp_path / "minutes.npz"
    line = await export_summaries(db, "gw-a", "pump-1", out)
    exported = np.load(out)
    assert "3 minutes x 2 features, 1 in alarm" in line
    assert exported["mean"].shape == (3, 2) and list(exported["alarm"]) == [False, True, False]
    assert tuple(exported["names"]) == NAMES


async def test_a_range_that_never_came_is_still_a_hole(db: Database, gateway_store: Store) -> None:
    first, second, third = await ranges(gateway_store)

    for part in [*first, *third]:
        await db.ingest(part, NOW)

    row = await status(db)
    assert (row["acked_seq"], row["holes"]) == (first[0].hi, 1)
    assert row["missing_seqs"] == second[0].hi - second[0].lo
