"""Receiver ingest rate: `appliance-receiver` on one core into SQLite; two instances on a shared
subscription; the same on PostgreSQL; against a decode-only baseline in the same run; for both
wire formats (binary, the gateway's default, and JSON) in the same run.

Messages: `--seconds` (86,400) of one asset, a feature vector of the demo's 49 features and its
score per second, split and encoded as the gateway's Uplink sends them (encode_range: 500
records and 256 KiB per range, one part per kind), in each format, pre-encoded and untimed.

Each MQTT run gets a fresh broker (deployed config: TLS, passwords, the shipped ACL) and a fresh
database. The receiver instances (subprocesses, `appliance-receiver run`) start and subscribe
first; then a separate publisher process (this file with `publish`) sends every part as fast as
QoS 1 with 32 in flight allows, so the broker holds a queue and the receivers run flat out. The
bench follows the receivers' retained ack (as the gateway would): the rate is records / (time of
the ack of the last seq - time the publisher began). Each run ends by checking the database
(every seq exactly once). With `taskset`, a single receiver is pinned to CPU 1 and the
publisher, broker and bench to CPU 0; two instances are pinned to CPU 0 and CPU 1 (a 2-CPU
machine has no third core: they then share with the publisher and broker).

Baselines, same run, same messages, in this process on one core: decode only (decode_part), and
decode + the receiver's Database.ingest_many into SQLite without MQTT (32 parts a transaction).
The headline ratio is the receiver's rate / decode-only rate; the binary/JSON ratio compares the
formats.

    .venv/bin/python bench/bench_receiver.py [--seconds 86400] [--skip-postgres] [--skip-two]
        [--formats binary,json] [--repeat 3] [--append-results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pickle
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt
from uplink_bench_common import (
    GATEWAY,
    PREFIX,
    Broker,
    ReceiverProcess,
    TlsFiles,
    demo_records,
    deployed_broker,
    free_port,
    new_tls,
    start_receiver,
)

from appliance.config import BrokerAddress
from appliance.store import OutboxRange
from appliance.uplink.ranges import encode_range
from appliance.uplink.schema import WireFormat, ack_topic, decode_ack, decode_part
from appliance.uplink.settings import UplinkSettings
from receiver.db import open_database

BAR_RECORDS_PER_S = 100_000
"""With the binary format (issue 15); JSON is measured beside it."""
WINDOW = 32
PG_BIN = Path("/usr/lib/postgresql/15/bin")
RUN_DEADLINE_S = 900.0
HAS_TASKSET = shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


# --- messages ---------------------------------------------------------------------------------


def uplink_messages(seconds: int, fmt: WireFormat) -> tuple[list[tuple[str, bytes]], int]:
    """The parts of `seconds` of feature vectors + scores, cut as the Uplink cuts them."""
    settings = UplinkSettings(GATEWAY, BrokerAddress(True, "unused", 1))
    rows = list(enumerate(demo_records(seconds), start=1))
    messages: list[tuple[str, bytes]] = []
    lo = 0
    while lo < len(rows):
        chunk = rows[lo : lo + settings.max_records_per_message]
        found = OutboxRange(lo, chunk[-1][0], chunk)
        prepared = encode_range(found, GATEWAY, PREFIX, settings.max_message_bytes, fmt)
        messages += prepared.messages
        lo = prepared.hi
    return messages, len(rows)


# --- in-process baselines -----------------------------------------------------------------------


@contextlib.contextmanager
def pinned(cpus: set[int]) -> Iterator[None]:
    """Run this process (all its threads) on `cpus` for a while (if the OS lets us)."""
    if not HAS_TASKSET:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def decode_only(messages: Sequence[tuple[str, bytes]], records: int) -> float:
    with pinned({1}):
        started = time.perf_counter()
        decoded = sum(len(decode_part(payload, topic).records) for topic, payload in messages)
        seconds = time.perf_counter() - started
    assert decoded == records
    return records / seconds


async def ingest_in_process(messages: Sequence[tuple[str, bytes]], records: int, db: Path) -> float:
    """decode_part + Database.ingest_many (the receiver's code path without MQTT: the messages
    a publisher with WINDOW in flight leaves waiting, committed together), one core."""
    database = await open_database(f"sqlite:///{db}")
    try:
        with pinned({1}):
            started = time.perf_counter()
            inserted = 0
            for start in range(0, len(messages), WINDOW):
                parts = [decode_part(payload, topic)
                         for topic, payload in messages[start : start + WINDOW]]  # fmt: skip
                results = await database.ingest_many(parts, time.time())
                inserted += sum(result.inserted for result in results)
            seconds = time.perf_counter() - started
        assert inserted == records and await database.acked_seq(GATEWAY) == records
    finally:
        await database.close()
    return records / seconds


# --- the publisher process ----------------------------------------------------------------------


async def publish(args: argparse.Namespace) -> None:
    """`bench_receiver.py publish`: send every pre-encoded part; print when it began and ended."""
    messages: list[tuple[str, bytes]] = pickle.loads(Path(args.messages).read_bytes())  # noqa: ASYNC240
    import ssl

    tls = ssl.create_default_context(cafile=args.ca)
    async with aiomqtt.Client(args.host, args.port, username=GATEWAY, password=args.password,
                              identifier=GATEWAY, tls_context=tls,
                              max_inflight_messages=WINDOW) as client:  # fmt: skip
        client.pending_calls_threshold = WINDOW + 2
        room = asyncio.Semaphore(WINDOW)

        async def one(topic: str, payload: bytes) -> None:
            try:
                await client.publish(topic, payload, qos=1, timeout=RUN_DEADLINE_S)
            finally:
                room.release()

        print(f"began {time.time():.6f}", flush=True)
        async with asyncio.TaskGroup() as group:
            for topic, payload in messages:
                await room.acquire()
                group.create_task(one(topic, payload))
        print(f"ended {time.time():.6f}", flush=True)


# --- one MQTT run -------------------------------------------------------------------------------


@dataclass
class Run:
    backend: str
    instances: int
    records: int
    seconds: float
    publish_s: float
    per_instance: list[dict[str, Any]] = field(default_factory=list)
    db_ok: bool = False
    db_detail: str = ""
    pinning: str = ""
    rates: list[float] = field(default_factory=list)
    """records/s of every repetition (this run is the median one)."""
    fmt: str = "binary"
    cpu_s: float = 0.0
    """CPU seconds (user + system) the receiver processes used from the publisher's start to the
    ack of the last seq."""

    @property
    def records_per_cpu_s(self) -> float:
        return self.records / self.cpu_s if self.cpu_s > 0 else 0.0

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds


async def watch_acks(broker: Broker, last_seq: int, done: asyncio.Future[float]) -> None:
    """Follow the retained ack as the gateway does; resolve `done` with the time of the last."""
    async with aiomqtt.Client(**broker.client_args(GATEWAY, identifier=f"{GATEWAY}-watch")) as c:
        await c.subscribe(ack_topic(PREFIX, GATEWAY), qos=1)
        async for message in c.messages:
            if decode_ack(bytes(message.payload), GATEWAY).seq >= last_seq:  # type: ignore[arg-type]
                done.set_result(time.time())
                return


def start_publisher(broker: Broker, messages_file: Path, cpu: int | None) -> subprocess.Popen[str]:
    command = [sys.executable, str(Path(__file__).resolve()), "publish",
               "--messages", str(messages_file), "--host", broker.host,
               "--port", str(broker.port), "--ca", str(broker.ca_path),
               f"--password={broker.credentials[GATEWAY].password}"]  # fmt: skip
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def pin_pid(pid: int, cpu: int) -> None:
    if HAS_TASKSET:
        subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(pid)], check=False,
                       capture_output=True)  # fmt: skip


async def mqtt_run(
    backend: str,
    db_url: str,
    instances: int,
    messages_file: Path,
    records: int,
    tls: TlsFiles,
    work: Path,
) -> Run:
    with deployed_broker(tls) as broker:
        assert broker._process is not None
        if instances == 1:
            rx_cpus: list[int | None] = [1] if HAS_TASKSET else [None]
            side_cpu: int | None = 0 if HAS_TASKSET else None
            pinning = "receiver on CPU 1; publisher, broker, bench on CPU 0"
        else:
            rx_cpus = [i % 2 for i in range(instances)] if HAS_TASKSET else [None] * instances
            side_cpu = None
            pinning = "receivers on CPU 0 and CPU 1; publisher and broker unpinned"
        if side_cpu is not None:
            pin_pid(broker._process.pid, side_cpu)
        if not HAS_TASKSET:
            pinning = "not pinned (no taskset or one CPU)"
        receivers: list[ReceiverProcess] = []
        stats: list[dict[str, Any]] = []
        try:
            for index, cpu in enumerate(rx_cpus):
                receivers.append(start_receiver(
                    broker, db_url, work / f"{backend}-{instances}-rx{index}.log",
                    name=f"rx-{index}", cpu=cpu, stats_interval_s=3600,
                ))  # fmt: skip
            loop = asyncio.get_running_loop()
            done: asyncio.Future[float] = loop.create_future()
            with pinned({side_cpu} if side_cpu is not None else set(range(os.cpu_count() or 1))):
                watcher = asyncio.create_task(watch_acks(broker, records, done))
                await asyncio.sleep(0.2)  # the watcher's subscription is in place
                cpu_before = sum(receiver.cpu_seconds() for receiver in receivers)
                publisher = start_publisher(broker, messages_file, side_cpu)
                began = float(await read_stamp(publisher, "began"))
                finished_at = await asyncio.wait_for(done, RUN_DEADLINE_S)
                cpu_s = sum(receiver.cpu_seconds() for receiver in receivers) - cpu_before
                ended = float(await read_stamp(publisher, "ended"))
                publisher.wait(timeout=60)
                await watcher
        finally:
            for receiver in receivers:
                stats.append(receiver.stop())
        ok, detail = await check_database(db_url, records)
    return Run(backend, instances, records, finished_at - began, ended - began, stats, ok, detail,
               pinning, cpu_s=cpu_s)  # fmt: skip


async def read_stamp(publisher: subprocess.Popen[str], word: str) -> str:
    assert publisher.stdout is not None
    line = await asyncio.to_thread(publisher.stdout.readline)
    if not line.startswith(word):
        raise RuntimeError(f"publisher said {line!r}, expected {word!r} (exit {publisher.poll()})")
    return line.split()[1]


async def check_database(db_url: str, records: int) -> tuple[bool, str]:
    """Every seq 1..records exactly once (features + scores), and the stored ack."""
    database = await open_database(db_url)
    try:
        rows = await database._query(
            "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM"
            " (SELECT seq FROM features UNION ALL SELECT seq FROM scores) AS s"
        )
        acked = await database.acked_seq(GATEWAY)
    finally:
        await database.close()
    count, distinct, low, high = (int(v) for v in rows[0])
    ok = count == distinct == records and (low, high) == (1, records) and acked == records
    return ok, f"{count:,} rows, {distinct:,} distinct seqs {low}..{high}, acked {acked}"


# --- PostgreSQL ---------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_server(work: Path, settings: str = "") -> Iterator[str | None]:
    """A throwaway PostgreSQL 15 (defaults: fsync and synchronous_commit on; `settings`: more
    `-c name=value` options); its base URL, or None (with the reason printed) when it cannot
    be started here."""
    if not (PG_BIN / "initdb").exists():
        print(f"PostgreSQL skipped: no server binaries in {PG_BIN}")
        yield None
        return
    owner = "postgres" if os.geteuid() == 0 else None

    def as_owner(*command: str) -> list[str]:
        return ["runuser", "-u", owner, "--", *command] if owner else list(command)

    directory = work / "pg"
    directory.mkdir()
    if owner:
        shutil.chown(directory, owner)
    data, port = directory / "data", free_port()
    try:
        subprocess.run(as_owner(str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                                "--auth=trust", "-E", "UTF8"),
                       check=True, capture_output=True)  # fmt: skip
        options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 {settings}"
        subprocess.run(as_owner(str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l",
                                str(directory / "log"), "-w", "-t", "60", "start"),
                       check=True, capture_output=True)  # fmt: skip
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"PostgreSQL skipped: the server could not be started here: {exc}")
        yield None
        return
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run(as_owner(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"),
                       check=False, capture_output=True)  # fmt: skip


async def postgres_values_ab(
    server: str, messages: Sequence[tuple[str, bytes]], records: int
) -> dict[str, float]:
    """Database.ingest of the pre-decoded parts on PostgreSQL with the feature values passed as
    a Python list (psycopg's float8[] list dumper: how the receiver did it before) and as the
    array literal it sends now (receiver/db/postgres.py values_to_array_text)."""
    from dataclasses import replace

    import numpy as np

    def as_list(values: Any) -> list[float]:
        listed: list[float] = np.asarray(values, dtype=np.float64).tolist()
        return listed

    parts = [decode_part(payload, topic) for topic, payload in messages]
    rates = {}
    for label in ("a list (psycopg's list dumper, before)", "an array literal (now)"):
        database = await open_database(new_postgres_database(server))
        if label.startswith("a list"):
            sql = database.dialect.statements
            database.dialect = replace(
                database.dialect,
                values_param=as_list,
                statements=replace(
                    sql, insert_features=sql.insert_features.replace("%s::float8[]", "%s")
                ),
            )
        try:
            started = time.perf_counter()
            for part in parts:
                await database.ingest(part, time.time())
            rates[label] = records / (time.perf_counter() - started)
        finally:
            await database.close()
    return rates


def new_postgres_database(server: str) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return f"{server}/{name}"


def postgres_version() -> str:
    try:
        out = subprocess.run([str(PG_BIN / "postgres"), "--version"], capture_output=True,
                             text=True, check=True).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return out.split()[2] if len(out.split()) > 2 else out.strip()  # postgres (PostgreSQL) 15.x


# --- report -------------------------------------------------------------------------------------


def split_text(run: Run) -> str:
    if run.instances == 1:
        return "-"
    parts = [
        f"{s.get('messages', '?')} msgs / {s.get('records_inserted', 0):,} rec"
        for s in run.per_instance
    ]
    return " + ".join(parts)


def rates_text(run: Run) -> str:
    return ", ".join(f"{rate:,.0f}" for rate in run.rates)


def run_line(run: Run, decode_rate: float) -> str:
    return (
        f"{run.fmt:6} {run.backend:10} x{run.instances}: median of [{rates_text(run)}] "
        f"records/s: {run.records:,} records in {run.seconds:.2f} s = "
        f"{run.records_per_s:,.0f} records/s ({run.records_per_s / decode_rate:.2f} of decode-only;"
        f" {run.records_per_cpu_s:,.0f} records per receiver CPU-second;"
        f" publisher done after {run.publish_s:.2f} s); split {split_text(run)}; "
        f"DB {run.db_detail} {'OK' if run.db_ok else 'WRONG'}"
    )


@dataclass
class FormatFigures:
    """One wire format's messages and in-process baselines."""

    fmt: WireFormat
    messages: list[tuple[str, bytes]]
    records: int
    decode_rate: float = 0.0
    in_process_rate: float = 0.0

    @property
    def size(self) -> int:
        return sum(len(payload) for _, payload in self.messages)


def headline(runs: list[Run], fmt: str) -> Run | None:
    return next((r for r in runs if r.fmt == fmt and r.backend == "sqlite" and r.instances == 1),
                None)  # fmt: skip


def results_section(
    command: str,
    figures: list[FormatFigures],
    runs: list[Run],
    pg_note: str,
    loads: tuple[tuple[float, ...], tuple[float, ...]],
) -> str:
    from datetime import UTC, datetime

    records = figures[0].records
    repeats = max(len(run.rates) for run in runs)
    out = [
        f"\n## Receiver ingest, binary and JSON ({datetime.now(UTC):%Y-%m-%d})\n",
        f"Command: `{command}`\n",
        f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}; mosquitto deployed as receiver/mosquitto/mosquitto.conf "
        f"(TLS, passwords, shipped ACL); SQLite WAL synchronous=FULL; PostgreSQL "
        f"{postgres_version()} (initdb defaults: fsync and synchronous_commit on). Load average "
        f"{loads[0][0]:.2f} at the start, {loads[1][0]:.2f} at the end (the machine is shared "
        "with other jobs: every run's figure is listed).\n",
        f"Messages: {records:,} records (a 24-hour backlog's worth: one asset, a 49-feature "
        "vector + its score per second) as the Uplink cuts them (500 records per range), "
        + "; ".join(
            f"{f.fmt}: {len(f.messages)} parts, {f.size / 1e6:.1f} MB "
            f"({f.size / records:.0f} bytes/record)"
            for f in figures
        )
        + ". A publisher process sends them all at once (QoS 1, 32 in flight); the rate is "
        "records / (ack of the last seq - publisher start), each run with a fresh broker and "
        "database, checked afterwards (every seq exactly once). The receiver commits the "
        "messages waiting at once in one transaction (at most 64).\n",
        f"| format | path | instances | pinning | records/s, median of {repeats} (all runs) "
        "| records per receiver CPU-second | / decode-only | split (messages / records per "
        "instance) | database check |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        out += [
            f"| {f.fmt} | decode only (decode_part), in process | 1 | CPU 1 | "
            f"{f.decode_rate:,.0f} | - | 1.00 | - | - |",
            f"| {f.fmt} | decode + Database.ingest_many (SQLite, {WINDOW} parts a transaction), "
            "in process, no MQTT | 1 | CPU 1 | "
            f"{f.in_process_rate:,.0f} | - | {f.in_process_rate / f.decode_rate:.2f} | - | - |",
        ]
    decode = {f.fmt: f.decode_rate for f in figures}
    for run in runs:
        bold = "**" if run is headline(runs, run.fmt) else ""
        out.append(
            f"| {run.fmt} | `appliance-receiver` -> {run.backend} | {run.instances} | "
            f"{run.pinning} | {bold}{run.records_per_s:,.0f}{bold} ({rates_text(run)}) | "
            f"{run.records_per_cpu_s:,.0f} | {run.records_per_s / decode[run.fmt]:.2f} | "
            f"{split_text(run)} | "
            f"{run.db_detail}: {'ok' if run.db_ok else 'WRONG'} |"
        )
    out.append("")
    binary, as_json = headline(runs, "binary"), headline(runs, "json")
    if binary is not None:
        met = binary.records_per_s >= BAR_RECORDS_PER_S and binary.db_ok
        ratio = f" = {binary.records_per_s / as_json.records_per_s:.1f}x JSON's " + (
            f"{as_json.records_per_s:,.0f}") if as_json is not None else ""  # fmt: skip
        out.append(
            f"Bar (>= {BAR_RECORDS_PER_S:,} records/s with binary on one core into SQLite): "
            f"**{'met' if met else 'not met'}** ({binary.records_per_s:,.0f} records/s{ratio}; "
            f"{binary.records_per_cpu_s:,.0f} records per CPU-second of the receiver process)."
            + (f" {pg_note}" if pg_note else "")
            + "\n"
        )
    return "\n".join(out)


# --- main ---------------------------------------------------------------------------------------


async def format_figures(fmt: WireFormat, seconds: int, repeat: int, work: Path) -> FormatFigures:
    messages, records = uplink_messages(seconds, fmt)
    figures = FormatFigures(fmt, messages, records)
    print(f"{fmt}: {records:,} records in {len(messages)} parts, {figures.size / 1e6:.1f} MB "
          f"({figures.size / records:.0f} bytes/record)", flush=True)  # fmt: skip
    figures.decode_rate = statistics.median(decode_only(messages, records) for _ in range(repeat))
    print(f"{fmt}: decode only (in process, 1 core): {figures.decode_rate:,.0f} records/s",
          flush=True)  # fmt: skip
    figures.in_process_rate = statistics.median([
        await ingest_in_process(messages, records, work / f"inproc-{fmt}-{repetition}.db")
        for repetition in range(repeat)
    ])  # fmt: skip
    print(f"{fmt}: decode + Database.ingest SQLite (in process, no MQTT): "
          f"{figures.in_process_rate:,.0f} records/s", flush=True)  # fmt: skip
    return figures


async def bench(args: argparse.Namespace) -> None:
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger("mqtt").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="bench-receiver-"))
    os.chmod(work, 0o755)  # the postgres user must reach its data directory below
    formats: list[WireFormat] = [f for f in ("binary", "json") if f in args.formats.split(",")]
    try:
        load_before = os.getloadavg()
        tls = new_tls(work)
        figures: list[FormatFigures] = []
        runs: list[Run] = []

        async def measure(
            fmt: WireFormat, backend: str, instances: int, new_url: Callable[[int], str]
        ) -> None:
            f = next(f for f in figures if f.fmt == fmt)
            messages_file = work / f"messages-{fmt}.pickle"
            with messages_file.open("wb") as file:
                pickle.dump(f.messages, file)
            repeated = []
            for repetition in range(args.repeat):
                url = new_url(repetition)
                repeated.append(await mqtt_run(backend, url, instances, messages_file,
                                               f.records, tls, work))  # fmt: skip
                repeated[-1].fmt = fmt
                print(f"  {fmt} {backend} x{instances} run {repetition + 1}: "
                      f"{repeated[-1].records_per_s:,.0f} records/s", flush=True)  # fmt: skip
            repeated.sort(key=lambda run: run.records_per_s)
            median = repeated[len(repeated) // 2]
            median.rates = [run.records_per_s for run in repeated]
            median.db_ok = all(run.db_ok for run in repeated)
            runs.append(median)
            print(run_line(median, f.decode_rate), flush=True)

        for fmt in formats:
            figures.append(await format_figures(fmt, args.seconds, args.repeat, work))
        for fmt in formats:  # the headline runs of both formats first, close together
            await measure(
                fmt, "sqlite", 1, lambda r, f=fmt: f"sqlite:///{work}/sqlite-{f}-1-{r}.db"
            )
        if not args.skip_two:
            for fmt in formats:
                await measure(fmt, "sqlite", 2,
                              lambda r, f=fmt: f"sqlite:///{work}/sqlite-{f}-2-{r}.db")  # fmt: skip
        pg_note = await postgres_runs(args, figures, measure, work)
        for fmt in formats:
            single = headline(runs, fmt)
            assert single is not None
            met = single.records_per_s >= BAR_RECORDS_PER_S and single.db_ok
            bar = f"; bar >= {BAR_RECORDS_PER_S:,}: {'met' if met else 'NOT met'}"
            bar = bar if fmt == "binary" else ""
            print(f"{fmt}: one receiver on one core into SQLite: "
                  f"{single.records_per_s:,.0f} records/s{bar}")  # fmt: skip
        if args.append_results is not None:
            command = shlex.join([".venv/bin/python", "bench/bench_receiver.py", *sys.argv[1:]])
            with args.append_results.open("a", encoding="utf-8") as results:
                results.write(results_section(command, figures, runs, pg_note,
                                              (load_before, os.getloadavg())))  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def postgres_runs(
    args: argparse.Namespace,
    figures: list[FormatFigures],
    measure: Callable[..., Awaitable[None]],
    work: Path,
) -> str:
    """The PostgreSQL runs (the first format only); the note for the results."""
    if args.skip_postgres:
        return "PostgreSQL: skipped (--skip-postgres)."
    first = figures[0]
    with postgres_server(work) as server:
        if server is None:
            return "PostgreSQL: skipped (no server could be started; see the output)."
        pg_values = await postgres_values_ab(server, first.messages, first.records)
        for label, rate in pg_values.items():
            print(f"PostgreSQL ingest only, feature values as {label}: {rate:,.0f} records/s",
                  flush=True)  # fmt: skip
        for instances in (1, 2):
            await measure(first.fmt, "postgresql", instances,
                          lambda _, s=server: new_postgres_database(s))  # fmt: skip
    sent = "; as ".join(f"{label}: {rate:,.0f} records/s" for label, rate in pg_values.items())
    return f"PostgreSQL ingest only ({first.fmt}, pre-decoded, no MQTT), feature values as {sent}."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command")
    run = commands.add_parser("run", help="the bench (default)")
    for p in (parser, run):
        p.add_argument("--seconds", type=int, default=86_400, help="1 vector + 1 score per s")
        p.add_argument("--skip-postgres", action="store_true")
        p.add_argument("--skip-two", action="store_true", help="no runs with two receivers")
        p.add_argument("--formats", default="binary,json", help="wire formats, comma-separated")
        p.add_argument("--repeat", type=int, default=3, help="runs per setup; the median counts")
        p.add_argument("--append-results", type=Path, help="append a markdown section here")
    pub = commands.add_parser("publish", help="internal: the publisher process")
    pub.add_argument("--messages", required=True)
    pub.add_argument("--host", required=True)
    pub.add_argument("--port", type=int, required=True)
    pub.add_argument("--ca", required=True)
    pub.add_argument("--password", required=True)
    args = parser.parse_args()
    if args.command == "publish":
        asyncio.run(publish(args))
    else:
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
