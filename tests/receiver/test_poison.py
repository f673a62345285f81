"""Issue 12: no message a gateway login can publish ends or wedges the receiver. Each poison
message is refused with its reason, counted, logged, kept in dead_letters, PUBACKed (not
redelivered), and the gateway's stream goes on: a part with a valid header is accounted in its
range, so the ack moves past it. A real mosquitto and real SQLite/PostgreSQL databases."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from broker import Broker
from poison import Poison, binary_poisons, issue_12_poisons, poison, record
from receiver_helpers import (
    GatewayFactory,
    ReceiverFactory,
    outbox_rows,
    receiver_settings,
    wait_until,
)
from structlog.testing import capture_logs

from appliance.records import FeatureVector
from appliance.uplink.schema import encode_part, split_range
from receiver.db import open_database
from receiver.db.rows import MAX_STORED_PAYLOAD_BYTES
from receiver.service import Receiver
from receiver.settings import PASSWORD_ENV

FEATURES_UP_TO_10 = [seq for seq, r in outbox_rows(0, 10) if isinstance(r, FeatureVector)]


@pytest.mark.parametrize("case", issue_12_poisons() + binary_poisons(), ids=lambda case: case.name)
async def test_a_poison_message_is_refused_kept_counted_and_the_stream_goes_on(
    case: Poison, start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    rx = await start_receiver(client_id="rx-1")
    gw = await gateway("gw-a")
    expected_ack = 20 if case.accounted else 10

    with capture_logs() as logs:
        await gw.publish_raw(case.topic, case.payload)
        await gw.send_range(0, 10)
        await gw.wait_ack(expected_ack)

    assert rx.task is not None and not rx.task.done() and rx.receiver.subscribed.is_set()
    assert rx.stats.rejected == {case.reason: 1}
    assert (rx.stats.dead_lettered, rx.stats.refused_parts_accounted) == (1, case.accounted)
    (letter,) = await rx.database.dead_letters()
    assert (letter["gateway"], letter["topic"], letter["reason"]) == ("gw-a", case.topic,
                                                                      case.reason)  # fmt: skip
    assert bytes(letter["payload"]) == case.payload[:MAX_STORED_PAYLOAD_BYTES]
    assert letter["payload_bytes"] == len(case.payload)
    (row,) = await rx.database.gateway_status()
    assert (row["acked_seq"], row["refused_parts"], row["dead_letters"]) == (
        expected_ack, int(case.accounted), 1)  # fmt: skip
    stored = await rx.database.features("gw-a", "pump-1", 0, 1e11)
    assert [feature.seq for feature in stored] == FEATURES_UP_TO_10
    (entry,) = [e for e in logs if e["event"] == "receiver_rejected_payload"]
    assert (entry["reason"], entry["topic"], entry["accounted"]) == (case.reason, case.topic,
                                                                     case.accounted)  # fmt: skip
    assert len(entry["detail"]) < 2000


async def test_a_refused_part_inside_a_range_does_not_hold_the_ack(
    start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    rx = await start_receiver()
    gw = await gateway("gw-a")
    features, scores, alerts = split_range("gw-a", 0, 30, outbox_rows(0, 30))
    bad_scores = json.loads(encode_part(scores))
    bad_scores["records"][2]["model_id"] = "@RAW@"
    payload = json.dumps(bad_scores).replace('"@RAW@"', '"ae\\ud800"').encode()

    await gw.publish([features])
    await gw.publish_raw(scores.topic("appliance"), payload)
    await gw.publish([alerts])
    await gw.wait_ack(30)

    assert rx.stats.rejected == {"bad_text": 1} and rx.stats.parts_committed == 2
    (row,) = await rx.database.gateway_status()
    assert (row["acked_seq"], row["refused_parts"], row["holes"]) == (30, 1, 0)
    (letter,) = await rx.database.dead_letters()
    assert "records[2]: model_id has a lone surrogate" in letter["detail"]


async def test_a_part_the_database_refuses_is_kept_and_its_range_completes(
    any_db_url: str, broker: Broker
) -> None:
    """PostgreSQL's text cannot hold NUL (SQLite's can): there the alert part is refused by the
    database for good, dead-lettered, and accounted; on SQLite it is stored."""
    database = await open_database(any_db_url)
    try:
        receiver = Receiver(receiver_settings(broker, any_db_url), database)
        nul = poison("NUL in a message", "alerts", record("message", "a\x00b"), "db_refused", True)
        gap = split_range("gw-a", 0, 10, [])[0]

        await receiver.handle(nul.topic, nul.payload)
        await receiver.handle(gap.topic("appliance"), encode_part(gap))

        assert await database.acked_seq("gw-a") == 20
        refused = any_db_url.startswith("postgresql")
        assert receiver.stats.rejected == ({"db_refused": 1} if refused else {})
        (row,) = await database.gateway_status()
        assert (row["refused_parts"], row["dead_letters"]) == (int(refused), int(refused))
    finally:
        await database.close()


async def test_a_full_dead_letter_table_drops_its_oldest_rows_and_counts_them(
    start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    rx = await start_receiver()
    rx.database.dead_letter_limits = type(rx.database.dead_letter_limits)(max_rows=3)
    gw = await gateway("gw-a")

    for n in range(5):
        await gw.publish_raw("appliance/gw-a/scores/pump-1", f"not json {n}".encode())
    await gw.send_range(0, 10)
    await gw.wait_ack(10)

    letters = await rx.database.dead_letters()
    assert [bytes(letter["payload"]) for letter in letters] == [b"not json 4", b"not json 3",
                                                                b"not json 2"]  # fmt: skip
    assert await rx.database.counters() == {
        "dead_letters_dropped": 2,
        "dead_letter_bytes_dropped": 20,
        "dead_letter_rows": 3,
        "dead_letter_bytes": 30,
    }
    assert (rx.stats.dead_lettered, rx.stats.dead_letters_dropped) == (5, 2)


# --- the crash loop, with the real command ----------------------------------------------------


def log_events(path: Path) -> list[dict[str, object]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.startswith("{")]


async def start_process(
    broker: Broker, db: str, password_file: Path, log: Path
) -> asyncio.subprocess.Process:
    url = f"{broker.scheme}://receiver@{broker.host}:{broker.port}"  # no password in ps
    args = ["--broker", url, "--password-file", str(password_file), "--ca", str(broker.ca_path),
            "--db", db, "--client-id", "rx-cli", "--group", "rx"]  # fmt: skip
    environment = {key: value for key, value in os.environ.items() if key != PASSWORD_ENV}
    with log.open("a") as stream:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "receiver", *args, stderr=stream, env=environment
        )
    await wait_until(
        lambda: (
            sum(e["event"] == "receiver_subscribed" for e in log_events(log))
            > sum(e["event"] == "receiver_stopped" for e in log_events(log))
        ),
        "the receiver process subscribed",
    )
    return process


async def stop_process(process: asyncio.subprocess.Process) -> int:
    process.send_signal(signal.SIGTERM)
    return await asyncio.wait_for(process.wait(), timeout=30)


async def test_the_receiver_process_survives_every_poison_and_they_are_not_redelivered(
    broker: Broker, gateway: GatewayFactory, tmp_path: Path
) -> None:
    """On 234b5a8 the first of these ended the process, and the persistent session gave it back
    at every start (a crash loop for the whole fleet)."""
    db = f"sqlite:///{tmp_path / 'rx.db'}"
    password_file = tmp_path / "broker-password"
    password_file.write_text(broker.credentials["receiver"].password + "\n")
    log = tmp_path / "receiver.log"
    poisons = issue_12_poisons()
    process = await start_process(broker, db, password_file, log)
    try:
        gw = await gateway("gw-a")
        for case in poisons:
            await gw.publish_raw(case.topic, case.payload)
        await gw.send_range(0, 10)
        await gw.wait_ack(20)  # (10, 20] is made only of refused parts
        assert process.returncode is None
        command_line = await asyncio.to_thread(Path(f"/proc/{process.pid}/cmdline").read_bytes)
        assert broker.credentials["receiver"].password.encode() not in command_line
    finally:
        assert await stop_process(process) == 0

    process = await start_process(broker, db, password_file, log)  # same persistent session
    try:
        await gw.send_range(20, 30)
        await gw.wait_ack(30)
    finally:
        assert await stop_process(process) == 0

    stopped = [e for e in log_events(log) if e["event"] == "receiver_stopped"]
    assert [e["rejected"] for e in stopped] == [
        {
            reason: sum(c.reason == reason for c in poisons)
            for reason in {c.reason for c in poisons}
        },
        {},  # nothing redelivered
    ]
    code, out = await run_cli("dead-letters", "--db", db, "--limit", "100")
    assert code == 0
    summary, *letters = [json.loads(line) for line in out.splitlines()]
    kept_bytes = sum(min(len(c.payload), MAX_STORED_PAYLOAD_BYTES) for c in poisons)
    assert summary == {"kept": len(poisons), "kept_bytes": kept_bytes, "dropped": 0,
                       "dropped_bytes": 0}  # fmt: skip
    assert sorted(letter["reason"] for letter in letters) == sorted(c.reason for c in poisons)
    assert broker.credentials["receiver"].password not in log.read_text()


async def run_cli(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", *args, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode()


async def test_a_message_above_the_size_limit_is_refused_unread(
    start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    rx = await start_receiver(max_payload_bytes=2048)
    gw = await gateway("gw-a")
    (big,) = split_range("gw-a", 10, 400, [r for r in outbox_rows(10, 400) if r[0] % 7 == 0])
    payload = encode_part(big)
    assert len(payload) > 2048

    await gw.publish_raw(big.topic("appliance"), payload)
    await gw.send_range(0, 10)
    await gw.wait_ack(10)

    assert rx.stats.rejected == {"too_large": 1}
    (letter,) = await rx.database.dead_letters()
    assert (letter["payload_bytes"], bytes(letter["payload"])) == (len(payload), payload)
    assert f"{len(payload)} bytes, more than 2048" in letter["detail"]
