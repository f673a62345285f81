"""The chaos rig: the appliance and the receiver as real processes, and what we do to them.

The appliance runs `appliance run --config` on the emulated rig of `appliance demo` (emulated MCUs
and I2C bus, the bundled models) with an [uplink] to the test broker; the receiver runs
`appliance-receiver` on SQLite. Both are started, killed with SIGKILL and started again as often
as a test likes; each start logs to a file of its own. A database left by a kill is checked on a
copy (so the next start still recovers the original itself): `PRAGMA integrity_check`, then
Store.open. `kill_in_wal_write` lets strace deliver the SIGKILL as the appliance enters its n-th
write to the WAL, i.e. in the middle of SQLite writing a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker import Broker

from appliance.rig.demo import demo_config, demo_uplink
from appliance.store import Store, StoreSettings

GATEWAY = "chaos-gw"
STOP_TIMEOUT_S = 30.0
STRACE = shutil.which("strace")
WAL_HEADER_BYTES = 32
WAL_FRAME_HEADER_BYTES = 24


def console_script(name: str, module: str) -> list[str]:
    """The installed console script next to this interpreter, else `python -m module`."""
    script = Path(sys.executable).with_name(name)
    return [str(script)] if script.exists() else [sys.executable, "-m", module]


# --- the appliance's configuration -------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A TOML value for what a pydantic model_dump holds (None keys are left out by the caller)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else "inf")
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(toml_pairs(value)) + " }"
    raise TypeError(f"no TOML for {value!r}")


def toml_pairs(table: Mapping[str, Any]) -> list[str]:
    return [f"{json.dumps(k)} = {toml_value(v)}" for k, v in table.items() if v is not None]


LIVE_BATCH_S = 0.5


def chaos_config(
    data_dir: Path, broker: Broker, *, stride_s: float, ack_timeout_s: float, detail: str = "full"
) -> str:
    """`appliance demo`'s rig as a config file: a short feature stride (many records), spikes on
    the second asset (alerts too), a size cap far above what the test writes (no eviction)."""
    uplink = demo_uplink(broker.url(GATEWAY), broker.ca_path)
    document = demo_config(data_dir, ["spikes=0.3"], uplink=uplink).model_dump()
    document.pop("sms", None)  # the uplink's chaos, not the SMS path's (tests/sms)
    document["gateway"]["id"] = GATEWAY
    document["store"].update(max_mb=4096.0, retention_days=None)
    document["features"]["stride_s"] = stride_s
    document["uplink"]["ack_timeout_s"] = ack_timeout_s
    # The drain ends at a moment when everything stored is acknowledged: at 40 records a second
    # the default 5 s live batch leaves such a moment only by chance (a batch always waits).
    document["uplink"]["live_batch_s"] = LIVE_BATCH_S
    if detail != "full":
        document["uplink"]["detail"] = detail
    return "\n".join(toml_pairs(document)) + "\n"


# --- processes ---------------------------------------------------------------------------------


class Child:
    """One program started, killed and restarted; every start writes its own log file."""

    def __init__(self, name: str, command: list[str], log_dir: Path, env: dict[str, str]) -> None:
        self.name = name
        self.command = command
        self.log_dir = log_dir
        self.env = env
        self.starts = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def log_paths(self) -> list[Path]:
        return sorted(self.log_dir.glob(f"{self.name}-*.log"))

    def start(self) -> None:
        assert not self.running, f"{self.name} is already running"
        self.starts += 1
        log_path = self.log_dir / f"{self.name}-{self.starts:03d}.log"
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                start_new_session=True,
            )  # fmt: skip

    def kill9(self) -> None:
        """SIGKILL and reap (a no-op if it is not running)."""
        if self.running:
            assert self.process is not None
            self.process.kill()
            self.process.wait()

    def terminate(self) -> int:
        """SIGTERM, wait for the exit; the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=STOP_TIMEOUT_S)

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def died_by_itself(self) -> str | None:
        """The log tail if the process exited although nobody stopped it."""
        if self.process is None or self.process.poll() is None:
            return None
        return f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}"

    def log_tail(self, lines: int = 40) -> str:
        paths = self.log_paths()
        if not paths:
            return "(no log)"
        return "\n".join(paths[-1].read_text(errors="replace").splitlines()[-lines:])

    def log_events(self) -> list[dict[str, Any]]:
        """Every JSON log line of every start, in order."""
        return [event for path in self.log_paths() for event in json_lines(path)]


def json_lines(path: Path) -> list[dict[str, Any]]:
    """The JSON objects logged in `path`, one per line (other lines are skipped)."""
    events: list[dict[str, Any]] = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):  # the line a SIGKILL cut short
                events.append(json.loads(line))
    return events


def child_env(tmp_dir: Path) -> dict[str, str]:
    """Unbuffered logs (a SIGKILL loses nothing already logged) and temp dirs under the test's."""
    tmp_dir.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_dir)}


def appliance_child(config_path: Path, log_dir: Path, env: dict[str, str]) -> Child:
    command = [*console_script("appliance", "appliance.cli"), "run", "--config", str(config_path)]
    return Child("appliance", command, log_dir, env)


def receiver_child(broker: Broker, db_path: Path, log_dir: Path, env: dict[str, str]) -> Child:
    """A persistent session (--client-id): what the broker routes to it while it is down waits."""
    assert broker.ca_path is not None
    command = [
        *console_script("appliance-receiver", "receiver"),
        "--broker", broker.url("receiver"), "--ca", str(broker.ca_path),
        "--db", f"sqlite:///{db_path}", "--client-id", "rx-chaos", "--stats-interval", "2",
    ]  # fmt: skip
    return Child("receiver", command, log_dir, env)


def kill_in_wal_write(child: Child, wal: Path, nth: int, timeout_s: float) -> bool:
    """Have strace SIGKILL `child` as it enters its `nth` pwrite64 to `wal` (that write never
    happens). False if it did not get there within `timeout_s` (the caller kills it then)."""
    assert STRACE is not None
    tracer = subprocess.Popen(
        [STRACE, "-f", "-qq", "-o", "/dev/null", "-p", str(child.pid), "-P", str(wal),
         "-e", "trace=pwrite64", "-e", f"inject=pwrite64:signal=KILL:when={nth}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    assert child.process is not None
    try:
        child.process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return False
    finally:
        tracer.kill()
        tracer.wait()
    return child.process.returncode == -signal.SIGKILL


# --- what a kill left on disk ------------------------------------------------------------------


def unfinished_wal_frames(wal: Path) -> int:
    """Frames SQLite's recovery will find valid in `wal` (its salts, an unbroken checksum chain)
    after the last commit frame: a transaction that was being written when the process died."""
    try:
        data = wal.read_bytes()
    except FileNotFoundError:
        return 0
    if len(data) < WAL_HEADER_BYTES:
        return 0
    big_endian = data[3] == 0x83  # magic 0x377f0683; 0x377f0682: little-endian checksums
    frame_bytes = WAL_FRAME_HEADER_BYTES + int.from_bytes(data[8:12], "big")
    salts = data[16:24]
    checksum = wal_checksum(data[:24], (0, 0), big_endian)
    unfinished = 0
    for offset in range(WAL_HEADER_BYTES, len(data) - frame_bytes + 1, frame_bytes):
        header = data[offset : offset + WAL_FRAME_HEADER_BYTES]
        page = data[offset + WAL_FRAME_HEADER_BYTES : offset + frame_bytes]
        checksum = wal_checksum(header[:8] + page, checksum, big_endian)
        if header[8:16] != salts or header[16:24] != pack_checksum(checksum):
            break  # where recovery stops: a frame of an earlier run, or never fully written
        unfinished = 0 if int.from_bytes(header[4:8], "big") else unfinished + 1
    return unfinished


def wal_checksum(data: bytes, start: tuple[int, int], big_endian: bool) -> tuple[int, int]:
    """SQLite's WAL checksum over `data`, continuing the chain from `start`."""
    words = struct.unpack(f"{'>' if big_endian else '<'}{len(data) // 4}I", data)
    s0, s1 = start
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def pack_checksum(checksum: tuple[int, int]) -> bytes:
    return struct.pack(">II", *checksum)


def integrity_check(path: Path) -> str:
    """`PRAGMA integrity_check` ("ok" when intact) of a database, read where it is."""
    with sqlite3.connect(path) as db:
        rows = db.execute("PRAGMA integrity_check").fetchall()
    db.close()
    return "; ".join(str(row[0]) for row in rows)


@dataclass(frozen=True)
class DiskCheck:
    integrity: str
    """integrity_check of the copy: "ok" when intact."""
    store_opens: bool
    """Store.open (configure, migrations) succeeded on the copy (None: not tried)."""
    unfinished_frames: int
    """Frames recovery finds valid after the WAL's last commit: a transaction that was being
    written (SQLite drops it at open)."""


def check_copy(db: Path, scratch: Path, *, open_store: bool) -> DiskCheck:
    """Copy the database and its WAL as a kill left them (not the -shm: SQLite rebuilds it, as
    after a power cut), recover the copy by opening it and check it; the original is untouched."""
    wal = db.with_name(db.name + "-wal")
    unfinished = unfinished_wal_frames(wal)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    copy = scratch / db.name
    shutil.copyfile(db, copy)
    if wal.exists():
        shutil.copyfile(wal, copy.with_name(copy.name + "-wal"))
    integrity = integrity_check(copy)
    opens = asyncio.run(store_opens(copy)) if open_store else True
    return DiskCheck(integrity, opens, unfinished)


async def store_opens(path: Path) -> bool:
    store = await Store.open(StoreSettings(path))
    await store.close()
    return True


@dataclass(frozen=True)
class OutboxState:
    last_seq: int
    acked_seq: int


def read_outbox_state(db: Path) -> OutboxState | None:
    """The appliance's last and acknowledged seqs, read together (None if the file is busy)."""
    try:
        with sqlite3.connect(db, timeout=1.0) as connection:
            row = connection.execute(
                "SELECT (SELECT last_seq FROM outbox_sequence),"
                " (SELECT acked_seq FROM uplink_state)"
            ).fetchone()
        connection.close()
    except sqlite3.Error:
        return None
    return OutboxState(int(row[0]), int(row[1]))


def wait_for(condition: Any, what: str, timeout_s: float, poll_s: float = 0.1) -> None:
    """Poll `condition()` until it is true; AssertionError naming `what` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:.0f} s waiting for {what}"
        time.sleep(poll_s)
