"""The receiver reads both wire formats, always (PROTOCOL.md, "Wire formats"): binary and JSON
parts of the same gateways side by side on a real mosquitto into a real SQLite file (hostile
binary payloads are among test_poison.py's cases); the messages waiting at once are committed in
one transaction, and a part the database refuses in such a batch refuses only itself."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from receiver_helpers import (
    NAMES,
    GatewayFactory,
    ReceiverFactory,
    outbox_rows,
    wait_until,
)

from appliance.records import FeatureVector
from appliance.uplink.schema import Part, encode_part, schema_ref, split_range
from appliance.uplink.schema.summary_part import SUMMARY_ASSET, MinuteSummary, SummaryBody
from receiver.db import Database


def as_float32(values: np.ndarray) -> np.ndarray:  # type: ignore[type-arg]
    return values.astype(np.float32).astype(np.float64)


async def test_binary_and_json_parts_are_ingested_side_by_side(
    start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    rx = await start_receiver(client_id="rx-1")
    gw_a, gw_b = await gateway("gw-a"), await gateway("gw-b")
    binary = {"gw-a": [(0, 20), (40, 60)], "gw-b": [(30, 60)]}

    for lo, hi, fmt in ((0, 20, "binary"), (20, 40, "json"), (40, 60, "binary")):
        await gw_a.send_range(lo, hi, fmt=fmt)  # type: ignore[arg-type]
    await gw_b.send_range(0, 30, fmt="json")
    await gw_b.send_range(30, 60, fmt="binary")
    await gw_a.wait_ack(60)
    await gw_b.wait_ack(60)

    assert rx.stats.rejected == {} and rx.stats.records_inserted == 120
    sent = {seq: r.values for seq, r in outbox_rows(0, 60) if isinstance(r, FeatureVector)}
    for name, ranges in binary.items():
        stored = {f.seq: f.values for f in await rx.database.features(name, "pump-1", 0, 1e11)}
        assert sorted(stored) == sorted(sent)
        for seq, values in stored.items():
            over_binary = any(lo < seq <= hi for lo, hi in ranges)
            np.testing.assert_array_equal(values, as_float32(sent[seq]) if over_binary
                                          else sent[seq])  # fmt: skip
    for row in await rx.database.gateway_status():
        assert (row["acked_seq"], row["holes"], row["refused_parts"]) == (60, 0, 0)


async def test_a_batch_commits_its_good_parts_when_the_database_refuses_one_of_them(
    start_receiver: ReceiverFactory,
) -> None:
    rx = await start_receiver(client_id="rx-1", start=False)
    first = split_range("gw-a", 0, 10, outbox_rows(0, 10))
    implausible = split_range("gw-a", 10, 2**41, outbox_rows(10, 20))  # hi 2**41 above the ack
    last = split_range("gw-b", 0, 10, outbox_rows(0, 10))
    messages = [(p.topic("appliance"), encode_part(p, "binary")) for p in first]
    messages += [(p.topic("appliance"), encode_part(p, "json")) for p in implausible]
    messages += [(p.topic("appliance"), encode_part(p, "binary")) for p in last]

    results = await rx.receiver.handle_batch(messages)

    refused = len(implausible)
    assert [r is None for r in results] == [False] * len(first) + [True] * refused + [False] * len(
        last
    )
    assert rx.stats.rejected == {"implausible": refused}
    assert rx.stats.parts_committed == len(first) + len(last)
    assert await rx.database.acks() == {"gw-a": 10, "gw-b": 10}
    assert len(await rx.database.dead_letters()) == refused


async def test_a_batch_of_parts_completing_each_others_range_moves_the_ack_once_committed(
    start_receiver: ReceiverFactory,
) -> None:
    rx = await start_receiver(client_id="rx-1", start=False)
    ranges = [(lo, lo + 10) for lo in range(0, 40, 10)]
    parts = [p for lo, hi in ranges for p in split_range("gw-a", lo, hi, outbox_rows(lo, hi))]
    messages = [(p.topic("appliance"), encode_part(p, "binary")) for p in reversed(parts)]

    results = await rx.receiver.handle_batch(messages)

    assert all(result is not None for result in results)
    assert await rx.database.acks() == {"gw-a": 40}
    assert rx.stats.records_inserted == 40


async def test_a_schema_reference_resolves_after_a_restart_and_a_new_database_asks_for_names(
    start_receiver: ReceiverFactory, gateway: GatewayFactory, tmp_path: Path
) -> None:
    """PROTOCOL.md, "Schema references": a receiver with an empty memory finds the names in its
    database; one with a new database refuses the part without accounting it (nothing written
    off) and asks the gateway, whose part with the names is then stored."""
    gw = await gateway("gw-a")
    ref = schema_ref(NAMES)
    first = await start_receiver()  # clean sessions: a stopped one takes no share
    await gw.send_range(0, 10, fmt="binary")  # the names
    await gw.wait_ack(10)
    await first.stop()

    restarted = await start_receiver()
    await gw.send_range(10, 20, fmt="binary", known={ref})
    await gw.wait_ack(20)
    assert restarted.stats.rejected == {} and restarted.stats.records_inserted == 10
    await restarted.stop()

    new_db = await start_receiver(url=f"sqlite:///{tmp_path / 'new.db'}")
    await gw.send_range(0, 20, rows=[], fmt="binary")  # the gap a gateway declares at connect
    by_ref = await gw.send_range(20, 30, fmt="binary", known={ref})
    await wait_until(lambda: gw.schema_requests == [{ref}], "the gateway asked for names")
    features_parts = [p for p in by_ref if p.kind == "features"]
    assert new_db.stats.rejected == {"unknown_schema": len(features_parts)}
    assert new_db.stats.refused_parts_accounted == 0 and gw.acked == 20
    await gw.send_range(20, 30, fmt="binary")  # again, with the names
    await gw.wait_ack(30)
    stored = await new_db.database.features("gw-a", "pump-1", 0, 1e11)
    assert sorted(f.seq for f in stored) == [seq for seq, r in outbox_rows(20, 30)
                                               if isinstance(r, FeatureVector)]  # fmt: skip


def summary_range(lo: int, hi: int, minute: int) -> list[Part]:
    """(lo, hi] as one summary part: every seq summarised, one minute of NAMES closed."""
    stats = np.arange(len(NAMES), dtype=np.float64)
    aggregate = MinuteSummary("pump-1", minute, 60, NAMES, stats, stats + 1, stats + 2, 60,
                              1.5, 2.0, 0, False)  # fmt: skip
    body = SummaryBody(hi - lo, minutes=[aggregate])
    return [Part("gw-a", lo, hi, 0, 1, "summary", SUMMARY_ASSET, [], body)]


async def test_a_summary_parts_schema_reference_is_resolved_or_asked_for_then_stored(
    start_receiver: ReceiverFactory, gateway: GatewayFactory, tmp_path: Path
) -> None:
    """A summary part names its minutes' features by reference like a features part: resolved
    from the names the receiver has; a new database refuses it unaccounted and asks, and the
    part sent again with the names is stored (its minute too: nothing lost)."""
    gw = await gateway("gw-a")
    ref = schema_ref(NAMES)
    minute = 1_767_225_600
    rx = await start_receiver()
    await gw.send_range(0, 10, fmt="binary")  # the names
    await gw.wait_ack(10)
    await gw.publish(summary_range(10, 20, minute), "binary", {ref})
    await gw.wait_ack(20)
    assert rx.stats.rejected == {}
    assert await stored_minutes(rx.database) == [(minute, NAMES)]
    await rx.stop()

    new_db = await start_receiver(url=f"sqlite:///{tmp_path / 'new.db'}")
    await gw.send_range(0, 20, rows=[], fmt="binary")  # the gap a gateway declares at connect
    await gw.publish(summary_range(20, 30, minute + 60), "binary", {ref})
    await wait_until(lambda: gw.schema_requests == [{ref}], "the gateway asked for names")
    assert new_db.stats.rejected == {"unknown_schema": 1}
    assert new_db.stats.refused_parts_accounted == 0 and gw.acked == 20
    await gw.publish(summary_range(20, 30, minute + 60), "binary", ())  # again, with the names
    await gw.wait_ack(30)
    assert await stored_minutes(new_db.database) == [(minute + 60, NAMES)]


async def stored_minutes(db: Database) -> list[tuple[int, tuple[str, ...]]]:
    minutes = await db.summaries("gw-a", "pump-1", 0, 1e11)
    return [(m.minute, await db.schema_names(m.schema_id or 0)) for m in minutes]
