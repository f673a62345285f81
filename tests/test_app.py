"""The whole path on the emulated rig: pty MCUs + emulated I2C -> features -> SQLite."""

import asyncio
import io
import math
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from broker import Broker
from uplink_helpers import FakeReceiver, read_retained, running
from waiting import wait_until

from appliance.cli import main
from appliance.config import parse_config
from appliance.detect.assets import open_scorings
from appliance.rig import run_appliance
from appliance.rig.demo import demo_config, demo_uplink
from appliance.status import StatusBoard
from appliance.store import Store, StoreSettings
from appliance.uplink.schema import decode_status

DEADLINE_S = 60.0


async def run_demo_until(tmp_path: Path, faults: list[str], vectors_each: int) -> StatusBoard:
    config = demo_config(tmp_path, faults)
    board = StatusBoard(config.gateway.id)
    stop = asyncio.Event()
    run = asyncio.create_task(run_appliance(config, stop=stop, board=board))
    await wait_until(
        lambda: (
            len(board.assets) == 2 and all(a.vectors >= vectors_each for a in board.assets.values())
        ),
        f"{vectors_each} feature vectors per asset",
    )
    stop.set()
    await run
    return board


async def stored_vectors(
    tmp_path: Path, name: str = "appliance.db"
) -> dict[str, list[tuple[int, dict[str, float]]]]:
    store = await Store.open(StoreSettings(path=tmp_path / name))
    try:
        rows = await store.history.features(limit=100_000)
    finally:
        await store.close()
    by_asset: dict[str, list[tuple[int, dict[str, float]]]] = {}
    for seq, vector in rows:
        by_asset.setdefault(vector.asset, []).append((seq, vector.as_dict()))
    return by_asset


async def test_demo_rig_stores_every_vector_with_plausible_features(tmp_path: Path) -> None:
    board = await run_demo_until(tmp_path, [], vectors_each=4)

    stored = await stored_vectors(tmp_path)
    assert {a: len(v) for a, v in stored.items()} == {
        name: status.vectors for name, status in board.assets.items()
    }
    for asset, rows in stored.items():
        seqs = [seq for seq, _ in rows]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert len({tuple(features) for _, features in rows}) == 1, f"{asset}: names changed"
        last = rows[-1][1]
        # The emulated machine turns at ~29.6 Hz with gravity on z.
        assert abs(last["accel_x.dominant_freq_hz"] - 29.6) < 4.0
        assert 0.9 < last["accel_z.mean"] < 1.1
        assert 10.0 < last["bearing_temp.mean"] < 90.0
    for name, link in board.serial.items():
        assert link.frames > 0 and link.seq_gaps == 0 and link.crc_errors == 0, name


async def test_injected_imbalance_and_drops_show_up_and_are_counted(tmp_path: Path) -> None:
    faults = ["imbalance=0.2", "drop=0.05", "garbage=0.05"]
    board = await run_demo_until(tmp_path, faults, vectors_each=4)

    stored = await stored_vectors(tmp_path)
    healthy = stored["pump-1"][-1][1]["accel_x.rms"]
    faulty = stored["compressor-2"][-1][1]["accel_x.rms"]
    assert faulty > 2 * healthy
    assert board.serial["mcu0"].seq_gaps == 0
    assert board.assets["compressor-2"].anomalous_windows > 0
    assert board.assets["compressor-2"].alarm is not None
    assert board.assets["pump-1"].scores > 0 and board.assets["pump-1"].alarm is None
    faulty_link = board.serial["mcu1"]
    assert faulty_link.seq_gaps > 0 and faulty_link.dropped_samples > 0
    assert faulty_link.garbage_bytes > 0
    assert all(math.isfinite(v) for v in stored["compressor-2"][-1][1].values())


def test_demo_command_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "appliance.cli", "demo", "--data-dir", str(tmp_path)]
    command += ["--summary-every", "0.5"]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            flowing = re.search(r"vectors\s+(\d+)", line)
            if flowing and int(flowing.group(1)) > 0:
                break
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=DEADLINE_S)
    assert process.returncode == 0, err
    assert "appliance_stopped" in err and "Traceback" not in err
    assert "serial mcu0: up" in out or "serial mcu0: DOWN" in out


def test_run_command_with_a_config_file_of_emulated_devices(tmp_path: Path) -> None:
    """`appliance run --config` takes the example config with only the devices swapped."""
    example = (Path(__file__).resolve().parents[1] / "examples" / "gateway.toml").read_text()
    config = (
        example.replace('port = "/dev/serial/by-id/', '# port = "/dev/serial/by-id/')
        .replace("# [serial.emulate]\n# channels = 3", "[serial.emulate]\nchannels = 3")
        .replace("bus = 1 ", 'bus = "emulated" ')
        .replace("/var/lib/appliance/appliance.db", str(tmp_path / "run.db"))
    )
    path = tmp_path / "gateway.toml"
    path.write_text(config)
    assert main(["check-config", str(path)]) == 0

    command = [sys.executable, "-m", "appliance.cli", "run", "--config", str(path)]
    result = subprocess.run(
        [*command, "--seconds", "12"], capture_output=True, text=True, timeout=DEADLINE_S
    )

    assert result.returncode == 0, result.stderr
    rows = asyncio.run(stored_vectors(tmp_path, "run.db"))
    assert list(rows) == ["pump-1"] and len(rows["pump-1"]) >= 1
    assert "motor_current.mean" in rows["pump-1"][-1][1]


async def test_a_missing_or_broken_bundle_is_refused_and_named_on_the_status(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "broken-bundle"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    document = demo_config(tmp_path, []).model_dump()
    document["assets"][0]["model"] = {"bundle": str(tmp_path / "nowhere")}
    document["assets"][1]["model"] = {"bundle": str(broken)}
    config = parse_config(document)
    board = StatusBoard(config.gateway.id)

    async with await Store.open(StoreSettings(path=tmp_path / "refused.db")) as store:
        scorings = await open_scorings(config, store.history, board, {})

    assert all(s.detector is None and s.commissioner is None for s in scorings.values())
    assert board.assets["pump-1"].model.startswith("model refused:")
    assert "nowhere" in board.assets["pump-1"].model
    assert "manifest.json" in board.assets["compressor-2"].model


# --- the uplink in the running appliance ---------------------------------------------------------


async def test_the_appliance_uplinks_its_records_and_the_summary_shows_it(
    make_broker: Callable[..., Broker], tmp_path: Path
) -> None:
    broker = make_broker(users=("demo-gw",))
    config = demo_config(tmp_path, [], uplink=demo_uplink(broker.url("demo-gw"), broker.ca_path))
    board = StatusBoard(config.gateway.id)
    summary = io.StringIO()
    receiver = FakeReceiver(broker, gateway="demo-gw")
    stop = asyncio.Event()

    async with running(receiver.run()):
        run = asyncio.create_task(
            run_appliance(config, stop=stop, board=board, summary_every=60.0, summary_out=summary)
        )
        await wait_until(
            lambda: board.uplink is not None and board.uplink.acked_seq >= 10,
            "ten records acknowledged by the receiver",
        )
        stop.set()
        await run

    store = await Store.open(StoreSettings(path=tmp_path / "appliance.db"))
    try:
        acked = await store.delivery.acked_seq()
        stored = {seq: record for seq, record in await store.history.outbox(limit=100_000)}
    finally:
        await store.close()
    assert acked >= 10
    assert all(seq in receiver.records for seq in stored if seq <= acked)
    final = summary.getvalue().splitlines()
    uplink_line = next(line for line in final if line.startswith("uplink "))
    assert uplink_line.startswith(f"uplink mqtts://127.0.0.1:{broker.port}: ")
    assert f"acked seq {acked} of " in uplink_line and "(ack by receiver)" in uplink_line
    assert decode_status(await read_retained(broker, "appliance/demo-gw/status")).state == "offline"


async def test_demo_command_with_a_broker_shows_uplink_state_backlog_and_ack(
    make_broker: Callable[..., Broker], tmp_path: Path
) -> None:
    broker = make_broker(users=("demo-gw",))
    receiver = FakeReceiver(broker, gateway="demo-gw")
    command = [sys.executable, "-m", "appliance.cli", "demo", "--data-dir", str(tmp_path)]
    command += ["--summary-every", "0.5", "--broker", broker.url("demo-gw")]
    command += ["--ca", str(broker.ca_path)]
    acked_line = re.compile(
        r"^uplink mqtts://\S+: connected\s+backlog \d+ records.*acked seq (\d+) of"
    )

    async with running(receiver.run()):
        process = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        assert process.stdout is not None and process.stderr is not None
        try:
            async with asyncio.timeout(DEADLINE_S):
                while line := (await process.stdout.readline()).decode():
                    shown = acked_line.match(line)
                    if shown and int(shown.group(1)) > 0:
                        break
                process.send_signal(signal.SIGINT)
                out, err = await process.communicate()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    assert shown is not None, "a summary showed the uplink connected with records acknowledged"
    assert process.returncode == 0, err.decode()
    assert broker.credentials["demo-gw"].password not in (out + err).decode()
    assert "uplink_connected" in err.decode()
