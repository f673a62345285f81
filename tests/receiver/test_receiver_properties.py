"""Property (issue 12): whatever payload arrives on a gateway's data topic, Receiver.handle commits
it or refuses it with one reason that is counted, logged and kept in dead_letters; and the state
stays intact: every record accepted before is still there unchanged, the ack never goes back and
never moves beyond what the payload itself claimed. A real SQLite database, no broker."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from receiver_helpers import outbox_rows
from structlog.testing import capture_logs

from appliance.uplink.schema import encode_part, record_kind, split_range
from receiver.db import Database, StoredFeature, open_database
from receiver.db.ingest import MAX_SEQ_AHEAD
from receiver.db.rows import MAX_DETAIL_CHARS, MAX_STORED_PAYLOAD_BYTES, storable_text
from receiver.service import Receiver
from receiver.settings import ReceiverSettings, parse_broker_url

KINDS = ("features", "scores", "alerts", "gap")

surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
raw_values = st.one_of(
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(2**53, 10**400).map(str),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["1e400", "-1e999", "1e-400", "-0.0", "4102444800", "null", '"\\u0000"']),
    surrogates.map(json.dumps),
    st.text(max_size=5).map(json.dumps),
    st.integers(0, 2**42).map(str),
)


def good_body(kind: str) -> dict[str, Any]:
    """A valid one-part range (20, 30] of `kind` (or a gap)."""
    rows = [row for row in outbox_rows(20, 30) if record_kind(row[1]) == kind]
    (part,) = split_range("gw-a", 20, 30, [] if kind == "gap" else rows)
    return {**json.loads(encode_part(part)), "part": 0, "parts": 1}


def places(body: Any) -> list[tuple[Any, ...]]:
    found: list[tuple[Any, ...]] = []
    stack: list[tuple[tuple[Any, ...], Any]] = [((), body)]
    while stack:
        path, value = stack.pop()
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            found.append((*path, key))
            if isinstance(item, dict | list):
                stack.append(((*path, key), item))
    return found


def poisoned(body: dict[str, Any], path: tuple[Any, ...], raw: str) -> bytes:
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = "@RAW@"
    return json.dumps(body).replace('"@RAW@"', raw).encode()


async def stored(database: Database) -> list[StoredFeature]:
    return await database.features("gw-a", "pump-1", 0, 1e11)


def same_features(now: list[StoredFeature], before: list[StoredFeature]) -> bool:
    """Everything stored before is still there, unchanged (more may have come)."""
    kept = {feature.seq: feature for feature in now}
    return all(
        f.seq in kept
        and kept[f.seq].t == f.t
        and np.array_equal(kept[f.seq].values, f.values, equal_nan=True)
        for f in before
    )


def test_any_payload_is_committed_or_refused_with_a_reason_and_the_state_stays_intact(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'rx.db'}"
    with asyncio.Runner() as runner:
        database = runner.run(open_database(url))
        try:
            settings_ = ReceiverSettings(broker=parse_broker_url("mqtt://rx@127.0.0.1"), db_url=url)
            receiver = Receiver(settings_, database)
            for part in split_range("gw-a", 0, 20, outbox_rows(0, 20)):
                runner.run(receiver.handle(part.topic("appliance"), encode_part(part)))
            assert runner.run(database.acked_seq("gw-a")) == 20
            check_every_payload(runner, receiver, database)
        finally:
            runner.run(database.close())


def check_every_payload(runner: asyncio.Runner, receiver: Receiver, database: Database) -> None:
    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data(), kind=st.sampled_from(KINDS))
    def one_payload(data: st.DataObject, kind: str) -> None:
        body = good_body(kind)
        path = data.draw(st.sampled_from(places(body)), label="path")
        raw = data.draw(raw_values, label="raw")
        payload = poisoned(body, path, raw)
        topic = f"appliance/gw-a/{kind}/{'_' if kind == 'gap' else 'pump-1'}"
        claimed = body["hi"] if path != ("hi",) else json.loads(raw) if raw.isdigit() else 0

        before = runner.run(stored(database))
        ack_before = runner.run(database.acked_seq("gw-a")) or 0
        rejected_before = Counter(receiver.stats.rejected)
        committed_before = receiver.stats.parts_committed
        with capture_logs() as logs:
            runner.run(receiver.handle(topic, payload))

        ack = runner.run(database.acked_seq("gw-a")) or 0
        assert ack_before <= ack <= max(ack_before, claimed) and ack <= ack_before + MAX_SEQ_AHEAD
        assert same_features(runner.run(stored(database)), before)
        assert receiver.stats.dead_letter_failures == 0
        if receiver.stats.parts_committed > committed_before:
            assert receiver.stats.rejected == rejected_before
            return
        (reason,) = (receiver.stats.rejected - rejected_before).elements()  # exactly one
        newest = runner.run(database.dead_letters(1))[0]
        assert (newest["reason"], newest["topic"]) == (reason, topic)
        assert bytes(newest["payload"]) == payload[:MAX_STORED_PAYLOAD_BYTES]
        (entry,) = [e for e in logs if e["event"] == "receiver_rejected_payload"]
        assert entry["reason"] == reason
        assert storable_text(entry["detail"], MAX_DETAIL_CHARS) == newest["detail"]
        assert receiver.stats.dead_lettered == receiver.stats.rejected_total

    one_payload()
    assert receiver.stats.parts_committed > 3 and receiver.stats.rejected_total > 10  # both ways
