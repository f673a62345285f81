"""The receiver at fleet scale (issue 16, item 4): N simulated gateways
(tests/receiver/fleet_sim.py: one asyncio process, the gateway's own encoder and ack rules)
against a real mosquitto (the deployed config: TLS, passwords, the shipped ACL, persistence)
and `--receivers` instances of `appliance-receiver` (persistent sessions, one shared
subscription; a list such as 1,4 runs the last fleet size once per count) into PostgreSQL
(fsync and synchronous_commit on, track_commit_timestamp on).

Each phase (one per fleet size in `--gateways`) gets a fresh broker and database. Timeline:
every gateway connects (a connect storm of its own); 30 s to settle; the steady part
(`--minutes` for the last size, `--baseline-minutes` for the others) with `--flap-share` of the
fleet losing its link per minute for 10-60 s (a socket shut under the client: the broker
publishes the last will; the gateway keeps making records and replays its backlog when back);
then, `--pre-storm-s` later, the broker is restarted (SIGTERM, `--outage-s` down, started on
its persistence) and all N reconnect with the gateway's backoff; `--storm-window-s` after the
restart the records stop and the fleet drains (every record acknowledged, or
`--drain-deadline-s`); then the database is checked: every (gateway, seq) up to the receiver's
ack stored once, none twice.

Figures per phase: ingest rate (rows committed per second of the steady part); lag from
PostgreSQL's commit timestamps, record time -> commit (includes the gateway's batching wait of
up to `--live-batch-s`) and first send -> commit (the broker's, receivers' and database's
share), p50/p99 over the steady part, its last minute ("at the end") and the storm window's
last minute, leaving out gateways whose link was dropped in the span (their lag is the link's);
the same as the gateways saw it (record time -> the ack that covered it); CPU per component from
/proc (mosquitto across its restart, each receiver, every postgres process, the simulator = this
process) in cores; the load average (sampled every 10 s); the database's size per
gateway-day; the storm: until every gateway was connected again, and until the lag was under
5 s for good (the end of the last 5-second window, by ack time, whose p99 of first send -> ack
was over 5 s).

The first fleet size is the baseline, measured in the same run: the ratios say what a larger
fleet costs per record.

    .venv/bin/python bench/bench_fleet_scale.py [--gateways 250,2500] [--minutes 10]
        [--baseline-minutes 2] [--receivers 2[,4]] [--live-batch-s 5] [--outage-s 30]
        [--append-results bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import platform
import random
import resource
import shlex
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests" / "receiver")]

from bench_receiver import new_postgres_database, postgres_server, postgres_version  # noqa: E402
from fleet_sim import (  # noqa: E402
    Fleet,
    FleetSettings,
    check_database,
    flap_links,
    gateway_names,
    percentile,
)
from uplink_bench_common import (  # noqa: E402
    Broker,
    ReceiverProcess,
    new_tls,
    start_receiver,
)

from receiver.db import open_database  # noqa: E402

LAG_BAR_S = 5.0
STORM_BAR_S = 120.0
CONNECT_DEADLINE_S = 300.0
WINDOW_S = 5.0
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


# --- CPU from /proc -----------------------------------------------------------------------------


def proc_cpu_s(pid: int, children: bool = False) -> float:
    """utime + stime of a process (and of its reaped children); 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICK


def children_of(parent: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == parent:
            found.append(int(entry.name))
    return found


@dataclass
class Components:
    broker: Broker
    receivers: list[ReceiverProcess]
    postmaster: int
    broker_before_s: float = 0.0
    """CPU of the broker's earlier processes (it is restarted)."""

    def broker_cpu_s(self) -> float:
        process = self.broker._process
        return self.broker_before_s + (proc_cpu_s(process.pid) if process else 0.0)

    def restart_broker(self, outage_s: float) -> None:
        before = self.broker_cpu_s()
        self.broker.stop()
        self.broker_before_s = before
        time.sleep(outage_s)
        self.broker.start()

    def sample(self) -> dict[str, float]:
        """Cumulative CPU seconds per component."""
        postgres = proc_cpu_s(self.postmaster, children=True) + sum(
            proc_cpu_s(pid) for pid in children_of(self.postmaster)
        )
        times = os.times()
        cpu = {"mosquitto": self.broker_cpu_s(), "postgres": postgres,
               "simulator": times.user + times.system}  # fmt: skip
        for receiver in self.receivers:
            cpu[receiver.name] = proc_cpu_s(receiver.process.pid)
        return cpu


def cpu_per_s(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    return {name: (after[name] - before[name]) / seconds for name in after}


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


# --- PostgreSQL figures -------------------------------------------------------------------------

SIZE_SQL = """
SELECT relname, pg_total_relation_size(c.oid) AS bytes FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind = 'r' ORDER BY bytes DESC
"""


COMMITS_SQL = """
SELECT gateway, seq, extract(epoch FROM t)::float8,
       extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8
FROM features WHERE t >= to_timestamp(%s) AND t < to_timestamp(%s)
UNION ALL
SELECT gateway, seq, extract(epoch FROM t)::float8,
       extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8
FROM scores WHERE t >= to_timestamp(%s) AND t < to_timestamp(%s)
"""
LINK_DOWN_MAX_S = 60.0


@dataclass(frozen=True)
class Lags:
    """Record time -> commit and first send -> commit (without the gateway's batching wait),
    over the records made in a span by gateways whose link was not dropped in it."""

    p50: float
    p99: float
    worst: float
    sent_p50: float
    sent_p99: float
    records: int
    left_out: int
    """Records of gateways whose link was dropped (their lag is the link's, by design)."""

    def text(self) -> str:
        return (
            f"record->commit p50 {self.p50:.2f} s, p99 {self.p99:.2f} s, max {self.worst:.1f} s; "
            f"first send->commit p50 {self.sent_p50:.2f} s, p99 {self.sent_p99:.2f} s "
            f"({self.records:,} records; {self.left_out:,} of gateways with a dropped link "
            "left out)"
        )


def commit_lags(db_url: str, fleet: Fleet, start: float, end: float) -> Lags:
    """From PostgreSQL's commit timestamps (track_commit_timestamp = on)."""
    import psycopg

    flapped = {g.name for g in fleet.gateways
               if any(start - LINK_DOWN_MAX_S <= at < end for at in g.dropped_at)}  # fmt: skip
    gateways = {gateway.name: gateway for gateway in fleet.gateways}
    with psycopg.connect(db_url) as connection:
        rows = connection.execute(COMMITS_SQL, (start, end, start, end)).fetchall()
    kept = [row for row in rows if row[0] not in flapped]
    lags = [committed - t for _, _, t, committed in kept]
    sent = [committed - gateways[name].first_sent(seq) for name, seq, _, committed in kept]
    return Lags(percentile(lags, 50), percentile(lags, 99), max(lags, default=float("nan")),
                percentile(sent, 50), percentile(sent, 99), len(kept),
                len(rows) - len(kept))  # fmt: skip


def table_sizes(db_url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")  # a settled size, as a day later
        return {name: int(size) for name, size in connection.execute(SIZE_SQL).fetchall()}


# --- one phase ----------------------------------------------------------------------------------


@dataclass
class Phase:
    gateways: int
    receivers: int
    steady_s: float
    records_steady: int = 0
    ingest_per_s: float = 0.0
    lag_steady: Lags | None = None
    lag_end: Lags | None = None
    lag_after_storm: Lags | None = None
    drained: bool = True
    ack_lag_end_p99: float = 0.0
    cpu_steady: dict[str, float] = field(default_factory=dict)
    cpu_storm: dict[str, float] = field(default_factory=dict)
    load: list[float] = field(default_factory=list)
    connect_s: float = 0.0
    reconnect_s: float = float("nan")
    absorbed_s: float = float("nan")
    storm_windows: list[tuple[float, float, int]] = field(default_factory=list)
    drain_s: float = 0.0
    check: Any = None
    sizes: dict[str, int] = field(default_factory=dict)
    records_total: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    split: list[int] = field(default_factory=list)

    @property
    def bytes_per_record(self) -> float:
        return sum(self.sizes.values()) / max(1, self.check.rows if self.check else 0)

    def cpu_per_record_ms(self, name: str) -> float:
        return 1000 * self.cpu_steady.get(name, 0.0) / max(self.ingest_per_s, 1e-9)


async def wait_for(predicate: Any, what: str, deadline_s: float) -> float:
    """Poll until predicate(); the seconds it took. Raises after the deadline."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > deadline_s:
            raise TimeoutError(f"timed out after {deadline_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.2)
    return time.monotonic() - started


def storm_windows(fleet: Fleet, restart: float, end: float) -> list[tuple[float, float, int]]:
    """(seconds after the restart, p99 of first send -> ack, records) per WINDOW_S window by ack
    time (first send, not record time: the gateway's batching alone is up to 5 s)."""
    windows = []
    start = restart
    while start < end:
        lags = fleet.ack_lags_between(start, start + WINDOW_S, from_send=True)
        windows.append((start - restart, percentile(lags, 99), len(lags)))
        start += WINDOW_S
    return windows


async def sample_load(phase: Phase, stop: asyncio.Event) -> None:
    while not stop.is_set():
        phase.load.append(load_average())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 10)


async def run_phase(args: argparse.Namespace, gateways: int, receiver_count: int, minutes: float,
                    server: str, work: Path) -> Phase:  # fmt: skip
    phase = Phase(gateways, receiver_count, minutes * 60)
    names = gateway_names(gateways)
    tls = new_tls(work / f"tls-{gateways}") if args.tls else None
    broker = Broker.create(names, tls=tls)
    broker.start()
    db_url = new_postgres_database(server)
    receivers: list[ReceiverProcess] = []
    stop, load_stop = asyncio.Event(), asyncio.Event()
    try:
        for index in range(receiver_count):
            name, run = f"rx-{index + 1}", f"{gateways}-{receiver_count}"
            receivers.append(start_receiver(broker, db_url, work / f"{name}-{run}.log",
                                            name=name, client_id=f"{name}-{run}",
                                            stats_interval_s=30))  # fmt: skip
        postmaster = int((work / "pg" / "data" / "postmaster.pid").read_text().split()[0])
        components = Components(broker, receivers, postmaster)
        passwords = {name: broker.credentials[name].password for name in names}
        settings = FleetSettings(broker.host, broker.port, passwords, tls=broker.tls_context(),
                                 records_per_s=args.records_per_s,
                                 live_batch_s=args.live_batch_s, seed=gateways)  # fmt: skip
        fleet = Fleet(names, settings)
        loader = asyncio.create_task(sample_load(phase, load_stop))
        running = asyncio.create_task(fleet.run(stop))
        phase.connect_s = await wait_for(lambda: fleet.connected == gateways,
                                         "every gateway connected", CONNECT_DEADLINE_S)  # fmt: skip
        print(f"  N={gateways}: all connected in {phase.connect_s:.1f} s", flush=True)
        flapper = asyncio.create_task(flap_links(fleet, stop, args.flap_share, (10.0, 60.0),
                                                 rng=random.Random(gateways)))  # fmt: skip
        await asyncio.sleep(min(30.0, phase.steady_s / 4))  # the connect storm settles
        steady_start, cpu0, made0 = time.time(), components.sample(), fleet.counters.made
        rows0 = await count_rows(db_url)
        while time.time() < steady_start + phase.steady_s:
            await asyncio.sleep(min(60.0, steady_start + phase.steady_s - time.time()))
            print(f"  N={gateways}: t+{time.time() - steady_start:.0f} s, unacked "
                  f"{fleet.unacked}, connected {fleet.connected}, load {load_average():.2f}",
                  flush=True)  # fmt: skip
        steady_end, cpu1 = time.time(), components.sample()
        rows1 = await count_rows(db_url)
        phase.records_steady = fleet.counters.made - made0
        phase.ingest_per_s = (rows1 - rows0) / (steady_end - steady_start)
        phase.cpu_steady = cpu_per_s(cpu0, cpu1, steady_end - steady_start)
        phase.ack_lag_end_p99 = percentile(fleet.ack_lags_between(steady_end - 60, steady_end),
                                           99)  # fmt: skip
        flapper.cancel()
        # The last steady minute's records get their time before the broker goes down (else a
        # record cut just before it would count the storm's lag as the steady state's).
        await asyncio.sleep(args.pre_storm_s)

        await asyncio.to_thread(components.restart_broker, args.outage_s)
        restart = time.time()
        phase.reconnect_s = await wait_for(
            lambda: fleet.connected == gateways, "every gateway reconnected", CONNECT_DEADLINE_S
        )
        print(f"  N={gateways}: broker back; all reconnected in {phase.reconnect_s:.1f} s",
              flush=True)  # fmt: skip
        await asyncio.sleep(max(0.0, restart + args.storm_window_s - time.time()))
        storm_end, cpu2 = time.time(), components.sample()
        phase.cpu_storm = cpu_per_s(cpu1, cpu2, storm_end - steady_end)
        fleet.producing = False
        try:
            phase.drain_s = await wait_for(fleet.all_acked, "every record acknowledged",
                                           args.drain_deadline_s)  # fmt: skip
        except TimeoutError:
            phase.drained, phase.drain_s = False, args.drain_deadline_s
        phase.storm_windows = storm_windows(fleet, restart, time.time())
        late = [start for start, p99, _ in phase.storm_windows if p99 > LAG_BAR_S]
        phase.absorbed_s = (max(late) + WINDOW_S) if late else 0.0
        stop.set()
        await running
        phase.counters = {key: value for key, value in vars(fleet.counters).items()
                          if isinstance(value, int)}  # fmt: skip
        phase.lag_steady = commit_lags(db_url, fleet, steady_start, steady_end)
        phase.lag_end = commit_lags(db_url, fleet, steady_end - 60, steady_end)
        phase.lag_after_storm = commit_lags(db_url, fleet, storm_end - 60, storm_end)
        database = await open_database(db_url)
        try:
            phase.check = await check_database(database, fleet.last_seqs())
        finally:
            await database.close()
        phase.records_total = fleet.counters.made
        phase.sizes = table_sizes(db_url)
    finally:
        stop.set()
        load_stop.set()
        for receiver in receivers:
            stats = receiver.stop()
            phase.split.append(int(stats.get("records_inserted", 0)))
        broker.close()
    await loader
    return phase


async def count_rows(db_url: str) -> int:
    import psycopg

    def count() -> int:
        with psycopg.connect(db_url) as connection:
            row = connection.execute("SELECT (SELECT count(*) FROM features) +"
                                     " (SELECT count(*) FROM scores)").fetchone()  # fmt: skip
        return int(row[0]) if row else 0

    return await asyncio.to_thread(count)


# --- the receiver's database path alone ----------------------------------------------------------


async def ingest_probe(server: str, gateways: int = 64, rounds: int = 20) -> str:
    """Database.ingest_many in this process (no MQTT) of the parts `gateways` simulated gateways
    send in `rounds` live ranges of 5 records, 64 parts a transaction as the receiver batches
    them: wall and CPU per part, what one receiver instance's database path can take."""
    from appliance.uplink.schema import decode_part

    names = gateway_names(gateways)
    fleet = Fleet(names, FleetSettings("unused", 1, dict.fromkeys(names, "")))
    parts = []
    for _ in range(rounds):
        now = time.time()
        for gateway in fleet.gateways:
            for _ in range(5):
                gateway.make_record(now)
            for entry in gateway.cut_ranges(now):
                parts += [decode_part(payload, topic) for topic, payload in entry.messages]
    database = await open_database(new_postgres_database(server))
    try:
        cpu0, started = os.times(), time.perf_counter()
        for start in range(0, len(parts), 64):
            await database.ingest_many(parts[start : start + 64], time.time())
        wall, cpu1 = time.perf_counter() - started, os.times()
    finally:
        await database.close()
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    return (
        f"in process, no MQTT: {len(parts):,} parts of 2-3 records, 64 a transaction: "
        f"{1000 * wall / len(parts):.2f} ms wall and {1000 * cpu / len(parts):.2f} ms of the "
        f"receiver's CPU per part = {len(parts) / wall:,.0f} parts/s for one instance "
        f"(load {os.getloadavg()[0]:.1f})"
    )


# --- report -------------------------------------------------------------------------------------


def phase_lines(phase: Phase, records_per_s: float) -> list[str]:
    day_bytes = phase.bytes_per_record * records_per_s * 86_400
    cpu = ", ".join(f"{name} {value:.2f}" for name, value in phase.cpu_steady.items())
    storm_cpu = ", ".join(f"{name} {value:.2f}" for name, value in phase.cpu_storm.items())
    check = phase.check
    counted = [window for window in phase.storm_windows if window[2]]
    worst = max(counted, key=lambda window: window[1], default=(0.0, 0.0, 0))
    return [
        f"N = {phase.gateways:,} gateways, {phase.receivers} receiver(s), "
        f"{phase.steady_s / 60:.0f} min steady",
        f"  ingest: {phase.ingest_per_s:,.0f} records/s committed "
        f"({phase.records_steady:,} made in the steady part)",
        f"  lag, steady: {phase.lag_steady.text()}",
        f"  lag, last minute before the storm: {phase.lag_end.text()}",
        f"  lag, last minute of the storm window: {phase.lag_after_storm.text()}",
        f"  lag record->ack at the gateway, last steady minute: p99 {phase.ack_lag_end_p99:.2f} s",
        f"  CPU (cores) steady: {cpu}",
        f"  CPU (cores) storm window: {storm_cpu}",
        "  CPU ms per record (steady): "
        + ", ".join(f"{n} {phase.cpu_per_record_ms(n):.3f}" for n in phase.cpu_steady),
        f"  load average: start {phase.load[0]:.2f}, max {max(phase.load):.2f}, "
        f"end {phase.load[-1]:.2f}"
        if phase.load
        else "  load average: -",
        f"  connect at start {phase.connect_s:.1f} s; after the broker restart all reconnected "
        f"in {phase.reconnect_s:.1f} s, send->ack p99 under {LAG_BAR_S:.0f} s for good after "
        f"{phase.absorbed_s:.0f} s (worst window +{worst[0]:.0f} s: p99 {worst[1]:.1f} s); "
        f"drain {phase.drain_s:.1f} s{'' if phase.drained else ' (NOT drained: deadline)'}",
        f"  database: {check.rows:,} rows for {check.made:,} records made, {check.acked:,} "
        f"acknowledged; missing {check.missing}, duplicates {check.duplicates}, unexpected "
        f"{check.unexpected}: {'ok' if check.ok else 'WRONG'}"
        f"{'' if check.complete else ' (not every record acknowledged yet)'}",
        f"  size: {phase.bytes_per_record:.0f} bytes/record = {day_bytes / 1e6:.1f} MB per "
        f"gateway-day at {records_per_s:g} record/s ("
        + ", ".join(
            f"{name} {size / 1e6:.1f} MB" for name, size in phase.sizes.items() if size > 100_000
        )
        + ")",
        f"  receivers' split (records inserted): {phase.split}; fleet: {phase.counters}",
    ]


def ratio_lines(base: Phase, main: Phase) -> list[str]:
    lines = [f"ratios N={main.gateways:,} x{main.receivers} / N={base.gateways:,} "
             f"x{base.receivers} receivers (same run):"]  # fmt: skip
    lines.append(f"  ingest {main.ingest_per_s / base.ingest_per_s:.2f}x for "
                 f"{main.gateways / base.gateways:.1f}x the gateways")  # fmt: skip
    for name in main.cpu_steady:
        if name in base.cpu_steady and base.cpu_per_record_ms(name) > 0:
            ratio = main.cpu_per_record_ms(name) / base.cpu_per_record_ms(name)
            lines.append(f"  {name} CPU per record: {ratio:.2f}x")
    assert main.lag_end is not None and base.lag_end is not None
    lines.append(f"  lag p99 at the end: {main.lag_end.p99:.2f} s vs {base.lag_end.p99:.2f} s")
    return lines


@contextlib.contextmanager
def more_files() -> Iterator[None]:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    yield


async def bench(args: argparse.Namespace) -> None:
    command = shlex.join([".venv/bin/python", "bench/bench_fleet_scale.py", *sys.argv[1:]])
    work = Path(tempfile.mkdtemp(prefix="fleet-scale-"))
    os.chmod(work, 0o755)  # the postgres user reaches its directory inside
    phases = []
    with more_files(), postgres_server(work, "-c track_commit_timestamp=on") as server:
        if server is None:
            raise SystemExit("PostgreSQL is needed")
        probe = await ingest_probe(server)
        print(probe, flush=True)
        if args.probe_only:
            return
        sizes = [int(n) for n in args.gateways.split(",")]
        counts = [int(n) for n in args.receivers.split(",")]
        plan = [(n, counts[0], args.baseline_minutes) for n in sizes[:-1]]
        plan += [(sizes[-1], count, args.minutes) for count in counts]
        for gateways, receiver_count, minutes in plan:
            print(f"phase N={gateways}, {receiver_count} receivers ({minutes} min)", flush=True)
            phases.append(await run_phase(args, gateways, receiver_count, minutes, server, work))
            print("\n".join(phase_lines(phases[-1], args.records_per_s)), flush=True)
    lines = [f"Command: `{command}`", machine_line(args), f"Receiver database path: {probe}"]
    for phase in phases:
        lines += phase_lines(phase, args.records_per_s)
    for phase in phases[1:]:
        lines += ratio_lines(phases[0], phase)
    print("\n" + "\n".join(lines))
    if args.append_results:
        section = "\n## Fleet scale (issue 16, item 4)\n\n```\n" + "\n".join(lines) + "\n```\n"
        with open(args.append_results, "a") as out:  # noqa: ASYNC230 (once, at the end)
            out.write(section)


def machine_line(args: argparse.Namespace) -> str:
    return (
        f"Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs shared with "
        f"other jobs, Python {platform.python_version()}, PostgreSQL {postgres_version()} "
        f"(fsync and synchronous_commit on), mosquitto with "
        f"{'TLS, ' if args.tls else ''}passwords, the shipped ACL, persistence; each gateway "
        f"{args.records_per_s:g} record/s (a 49-feature vector and a score in turn), live ranges "
        f"every {args.live_batch_s:g} s, binary wire format; links dropped: "
        f"{args.flap_share:.0%} of the fleet a minute for 10-60 s; broker down "
        f"{args.outage_s:g} s for the storm."
    )


def main() -> None:
    logging.getLogger("mqtt").setLevel(logging.CRITICAL)  # paho's line per dropped link
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--gateways",
        default="250,2500",
        help="fleet sizes, comma-separated: the first is the baseline, the "
        "last runs --minutes, the others --baseline-minutes",
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--baseline-minutes", type=float, default=2.0)
    parser.add_argument(
        "--receivers",
        default="2",
        help="receiver instances, comma-separated: the baseline sizes run with "
        "the first, the last size with each",
    )
    parser.add_argument("--records-per-s", type=float, default=1.0)
    parser.add_argument("--live-batch-s", type=float, default=5.0)
    parser.add_argument("--flap-share", type=float, default=0.02)
    parser.add_argument("--outage-s", type=float, default=30.0)
    parser.add_argument(
        "--pre-storm-s",
        type=float,
        default=15.0,
        help="between the steady part and the broker's restart (no links dropped)",
    )
    parser.add_argument("--storm-window-s", type=float, default=150.0)
    parser.add_argument("--drain-deadline-s", type=float, default=300.0)
    parser.add_argument("--no-tls", dest="tls", action="store_false")
    parser.add_argument(
        "--probe-only",
        action="store_true",
        help="only the in-process ingest probe (no MQTT, no fleet)",
    )
    parser.add_argument("--append-results", default=None)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()
