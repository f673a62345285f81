"""`appliance-receiver` as a real process (python -m receiver): run, status, export, errors,
forget-session."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from broker import Broker
from receiver_helpers import GatewayFactory, ReceiverFactory, outbox_rows, wait_until

from appliance.uplink.schema import split_range
from receiver.db import open_database
from receiver.export import read_export


async def run_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "receiver", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def log_events(path: Path) -> list[dict[str, object]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line) for line in lines if line.startswith("{")]


async def test_the_command_runs_an_instance_until_sigterm(
    broker: Broker, gateway: GatewayFactory, tmp_path: Path
) -> None:
    log_path = tmp_path / "receiver.log"
    db = f"sqlite:///{tmp_path / 'rx.db'}"
    args = ["--broker", broker.url("receiver"), "--ca", str(broker.ca_path), "--db", db,
            "--client-id", "rx-cli", "--group", "rx", "--stats-interval", "0.2"]  # fmt: skip
    with log_path.open("w") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "receiver", *args, stderr=log
        )
    try:
        await wait_until(
            lambda: any(e["event"] == "receiver_subscribed" for e in log_events(log_path)),
            "the receiver process subscribed",
        )
        gw = await gateway("gw-a")
        await gw.send_range(0, 25)
        await gw.wait_ack(25)
        await wait_until(
            lambda: any(e["event"] == "receiver_stats" and e["records_inserted"] == 25
                        for e in log_events(log_path)),
            "a stats line with the records",
        )  # fmt: skip
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), timeout=30)

    assert code == 0
    stopped = [e for e in log_events(log_path) if e["event"] == "receiver_stopped"]
    assert stopped and stopped[0]["records_inserted"] == 25

    code, out, _ = await run_cli("status", "--db", db)
    assert code == 0
    row = json.loads(out)
    assert (row["gateway"], row["acked_seq"], row["holes"]) == ("gw-a", 25, 0)


async def test_bad_arguments_end_with_a_clear_message(tmp_path: Path) -> None:
    code, _, err = await run_cli("--broker", "http://x", "--db", f"sqlite:///{tmp_path}/x.db")
    assert code == 2
    assert "broker URL must start with mqtt:// or mqtts://" in err

    code, _, err = await run_cli("--broker", "mqtt://h", "--db", "x.db")
    assert code == 2
    assert "database URL must start with sqlite:/// or postgresql://" in err


async def test_export_writes_the_asset_and_names_what_is_missing(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'rx.db'}"
    database = await open_database(db)
    try:
        for part in split_range("gw-a", 0, 40, outbox_rows(0, 40)):
            await database.ingest(part, 0.0)
    finally:
        await database.close()
    out = tmp_path / "export" / "pump-1.npz"

    code, stdout, _ = await run_cli(
        "export", "--db", db, "--gateway", "gw-a", "--asset", "pump-1", "--out", str(out)
    )

    assert code == 0, stdout
    export = read_export(out)
    assert len(export.seq) == 17  # odd seqs not divisible by 7 among 1..40
    assert f"{len(export.seq)} rows x 4 features" in stdout

    code, _, err = await run_cli(
        "export", "--db", db, "--gateway", "gw-z", "--asset", "pump-1", "--out", str(out)
    )
    assert code == 2 and "no gateway 'gw-z' in the database (it has: gw-a)" in err
    code, _, err = await run_cli(
        "export", "--db", db, "--gateway", "gw-a", "--asset", "fan", "--out", str(out)
    )
    assert code == 2 and "assets with features: pump-1" in err


async def test_forgetting_a_retired_instance_stops_the_broker_routing_to_it(
    broker: Broker, start_receiver: ReceiverFactory, gateway: GatewayFactory
) -> None:
    """Mosquitto routes a share of the group's messages to every persistent member, also one
    that is offline; a retired instance's session must be forgotten."""
    retired = await start_receiver(client_id="rx-retired")
    await retired.stop()
    code, out, err = await run_cli(
        "forget-session", "--broker", broker.url("receiver"), "--ca", str(broker.ca_path),
        "--client-id", "rx-retired",
    )  # fmt: skip
    assert code == 0, err
    assert "session of rx-retired removed" in out

    await start_receiver(client_id="rx-live")
    gw = await gateway("gw-a")
    for lo in range(0, 100, 10):
        await gw.send_range(lo, lo + 10)
    await gw.wait_ack(100)
