"""Chaos: nothing the appliance stored is lost, duplicated or reordered on its way to the receiver,
whatever is killed or restarted meanwhile (issue 4, the chaos bar).

    .venv/bin/python -m pytest -m slow tests/chaos -q        (3-8 minutes a profile; CHAOS_SEED=n
                                                              repeats a run, CHAOS_SCALE=3 runs
                                                              longer; -k summary one profile)

Once per uplink profile ([uplink] detail): in `summary` a record need not reach the receiver in
full: every seq must then be in full or in a complete range with a summary part whose parts add
up to its span, every alert and every window of an alarm episode (and the margin before its
raise) in full, and nothing in full twice or different.

A real mosquitto (TLS, passwords, the shipped ACL), a real receiver process on SQLite and the
appliance as a process (`appliance run --config`, the emulated rig with a 0.1 s feature stride
and an [uplink]) stream while a seeded schedule of events hits them, with outages overlapping:
kill -9 of the appliance (at random times, and as it enters a write to its WAL, i.e. in the
middle of a transaction), broker restarts (SIGTERM) and kills (SIGKILL), receiver kills. After
every kill the database it left is checked on a copy: integrity_check, Store.open. Then the
schedule ends, everything drains while the appliance goes on streaming, it is stopped at a moment
its acknowledged seq is its last seq, and every record in its store is compared with the
receiver's database.
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from broker import Broker, BrokerFactory
from chaos_rig import (
    GATEWAY,
    STRACE,
    Child,
    DiskCheck,
    OutboxState,
    appliance_child,
    chaos_config,
    check_copy,
    child_env,
    integrity_check,
    json_lines,
    kill_in_wal_write,
    read_outbox_state,
    receiver_child,
    wait_for,
)
from delivery_check import (
    Comparison,
    GatewayStore,
    ReceiverDb,
    alarm_windows,
    compare,
    first,
    read_gateway_store,
    read_receiver_db,
    summary_accounting,
)

SCHEDULE = {
    "appliance_kill": 10,
    "appliance_kill_in_write": 5,
    "broker_restart": 5,
    "broker_kill": 5,
    "receiver_kill": 9,
}
COMPONENT = {
    "appliance_kill": "appliance",
    "appliance_kill_in_write": "appliance",
    "broker_restart": "broker",
    "broker_kill": "broker",
    "receiver_kill": "receiver",
}
DWELL_S = (2.5, 10.0)
"""Between two events (the workload: streaming goes on)."""
DOWN_S = {"appliance": (0.0, 3.0), "broker": (0.5, 8.0), "receiver": (0.5, 12.0)}
"""How long a component stays down after its event (outages of different components overlap)."""
STRIDE_S = 0.1
SUMMARY_MARGIN_S = 60.0
"""[uplink] summary_margin_s's default, which the summary run keeps."""
ACK_TIMEOUT_S = 2.0
WAL_WRITES = (3, 60)
"""The kill lands on the n-th write to the WAL after strace attached, n drawn from this range
(from 3: a frame of this run is complete, so what the WAL holds unfinished is this kill's)."""
EXTRA_WAL_KILLS = 6
"""More kills in WAL writes if none of the scheduled ones cut a transaction short."""
STRACE_WAIT_S = 30.0
START_DEADLINE_S = 90.0
DRAIN_DEADLINE_S = 300.0
SCALE = float(os.environ.get("CHAOS_SCALE", "1"))
"""Multiplies the schedule: CHAOS_SCALE=3 for a longer soak (below 1 only to try changes)."""

Say = Callable[[str], None]


@dataclass
class Rig:
    broker: Broker
    appliance: Child
    receiver: Child
    appliance_db: Path
    receiver_db: Path
    scratch: Path

    def acked(self) -> int:
        state = read_outbox_state(self.appliance_db)
        return 0 if state is None else state.acked_seq


def build_rig(broker: Broker, tmp_path: Path, detail: str = "full") -> Rig:
    data, logs = tmp_path / "appliance", tmp_path / "logs"
    data.mkdir()
    logs.mkdir()
    config = tmp_path / "gateway.toml"
    config.write_text(
        chaos_config(data, broker, stride_s=STRIDE_S, ack_timeout_s=ACK_TIMEOUT_S, detail=detail)
    )
    env = child_env(tmp_path / "tmp")
    receiver_db = tmp_path / "receiver" / "receiver.db"
    receiver_db.parent.mkdir()
    return Rig(
        broker,
        appliance_child(config, logs, env),
        receiver_child(broker, receiver_db, logs, env),
        data / "appliance.db",
        receiver_db,
        tmp_path / "scratch",
    )


@dataclass
class Chaos:
    """Runs a schedule of events; each takes a component down, which comes back after a drawn
    delay while the next events go on."""

    rig: Rig
    rng: random.Random
    say: Say
    started: float = field(default_factory=time.monotonic)
    cycles: Counter[str] = field(default_factory=Counter)
    checks: list[tuple[str, DiskCheck]] = field(default_factory=list)
    """(event, check) after each kill."""
    strace_misses: int = 0
    down_until: dict[str, float] = field(default_factory=dict)

    def run(self, events: list[str]) -> None:
        next_at = time.monotonic() + self.rng.uniform(*DWELL_S)
        while events or self.down_until:
            self.restore_due()
            if events and time.monotonic() >= next_at:
                self.inject(events.pop(0))
                next_at = time.monotonic() + self.rng.uniform(*DWELL_S)
            self.fail_if_died()
            wake = min([next_at] if events else [], default=math.inf)
            wake = min([wake, *self.down_until.values(), time.monotonic() + 0.2])
            time.sleep(max(0.0, wake - time.monotonic()))

    def restore_due(self) -> None:
        for component, at in list(self.down_until.items()):
            if time.monotonic() >= at:
                self.restore(component)

    def restore(self, component: str) -> None:
        del self.down_until[component]
        if component == "broker":
            self.rig.broker.start()
        else:
            self.child(component).start()

    def child(self, component: str) -> Child:
        return self.rig.appliance if component == "appliance" else self.rig.receiver

    def inject(self, event: str) -> None:
        component = COMPONENT[event]
        if component in self.down_until:
            self.restore(component)  # already down: bring it back first, then hit it again
        note = getattr(self, event)()
        self.cycles[event] += 1
        downtime = self.rng.uniform(*DOWN_S[component])
        self.down_until[component] = time.monotonic() + downtime
        elapsed = time.monotonic() - self.started
        self.say(f"[{elapsed:6.1f} s] {event:24} down {downtime:4.1f} s  {note}")

    def appliance_kill(self) -> str:
        self.rig.appliance.kill9()
        return self.check_disk("appliance_kill")

    def appliance_kill_in_write(self) -> str:
        nth = self.rng.randint(*WAL_WRITES)
        wal = self.rig.appliance_db.with_name("appliance.db-wal")
        if STRACE is None or not kill_in_wal_write(self.rig.appliance, wal, nth, STRACE_WAIT_S):
            self.strace_misses += 1
            self.rig.appliance.kill9()
            return "(not in a write: no strace, or no write) " + self.check_disk("appliance_kill")
        check = self.check_disk("appliance_kill_in_write")
        return f"at WAL write {nth}: {check}"

    def broker_restart(self) -> str:
        self.rig.broker.stop()
        return ""

    def broker_kill(self) -> str:
        self.rig.broker.kill()
        return ""

    def receiver_kill(self) -> str:
        self.rig.receiver.kill9()
        return self.check_disk("receiver_kill")

    def check_disk(self, event: str) -> str:
        appliance = event.startswith("appliance")
        db = self.rig.appliance_db if appliance else self.rig.receiver_db
        if not db.exists():
            return "(no database yet)"
        check = check_copy(db, self.rig.scratch, open_store=appliance)
        self.checks.append((event, check))
        if event == "appliance_kill_in_write":
            return (
                f"{check.unfinished_frames} frames of an unfinished transaction in the WAL; "
                f"integrity_check {check.integrity}"
            )
        return f"integrity_check {check.integrity}"

    def fail_if_died(self) -> None:
        for component in ("appliance", "receiver"):
            if component not in self.down_until:
                died = self.child(component).died_by_itself()
                assert died is None, died

    def torn_transactions(self) -> int:
        """Kills in a WAL write that left part of a transaction in it (SQLite drops it)."""
        return sum(
            1
            for event, check in self.checks
            if event == "appliance_kill_in_write" and check.unfinished_frames
        )


def schedule(rng: random.Random, scale: float) -> list[str]:
    events = [event for event, count in SCHEDULE.items() for _ in range(round(count * scale))]
    rng.shuffle(events)
    return events


def stop_when_all_acknowledged(rig: Rig, after_seq: int, timeout_s: float) -> OutboxState:
    """Wait until the appliance has stored records beyond `after_seq` and its acknowledged seq is
    its last seq, freeze it there (SIGSTOP), check again and kill it: its store then ends with
    everything acknowledged. A transaction that committed while it was frozen (seen only after
    recovery) means: start it again and retry."""
    deadline = time.monotonic() + timeout_s
    while True:
        assert time.monotonic() < deadline, f"not drained after {timeout_s:.0f} s"
        died = rig.appliance.died_by_itself()
        assert died is None, died
        if all_acknowledged(read_outbox_state(rig.appliance_db), after_seq):
            final = freeze_and_kill(rig, after_seq)
            if final is not None:
                return final
        time.sleep(0.02)


def all_acknowledged(state: OutboxState | None, after_seq: int) -> bool:
    return state is not None and after_seq < state.last_seq == state.acked_seq


def freeze_and_kill(rig: Rig, after_seq: int) -> OutboxState | None:
    """The final state if the appliance, frozen, still has everything acknowledged; else None
    (and it runs on)."""
    rig.appliance.freeze()
    if not all_acknowledged(read_outbox_state(rig.appliance_db), after_seq):
        rig.appliance.thaw()
        return None
    rig.appliance.kill9()
    final = read_outbox_state(rig.appliance_db)
    if final is not None and all_acknowledged(final, after_seq):
        return final
    rig.appliance.start()
    return None


@dataclass(frozen=True)
class Outcome:
    gateway: GatewayStore
    receiver: ReceiverDb
    comparison: Comparison
    integrity: dict[str, str]


def compared(rig: Rig) -> Outcome:
    integrity = {
        "appliance": integrity_check(rig.appliance_db),
        "receiver": integrity_check(rig.receiver_db),
    }
    gateway = asyncio.run(read_gateway_store(rig.appliance_db))
    receiver = read_receiver_db(rig.receiver_db, GATEWAY)
    comparison = compare(gateway.side, gateway.last_seq, receiver.side)
    return Outcome(gateway, receiver, comparison, integrity)


def receiver_totals(receiver: Child) -> Counter[str]:
    """Summed over the receiver's runs: the last stats line of each (for a killed run its last
    periodic line, so a lower bound) and every rejected payload."""
    totals: Counter[str] = Counter()
    for path in receiver.log_paths():
        events = json_lines(path)
        totals["rejected"] += sum(e.get("event") == "receiver_rejected_payload" for e in events)
        stats = [e for e in events if e.get("event") in ("receiver_stats", "receiver_stopped")]
        if stats:
            totals["records_inserted"] += int(stats[-1]["records_inserted"])
            totals["duplicates_ignored"] += int(stats[-1]["duplicates_ignored"])
    return totals


def report(seed: int, chaos: Chaos, outcome: Outcome, rig: Rig, timings: dict[str, float]) -> str:
    gateway, comparison = outcome.gateway, outcome.comparison
    logged = Counter(e.get("event") for e in rig.appliance.log_events())
    checks = Counter(f"{e.split('_')[0]} {check.integrity}" for e, check in chaos.checks)
    opened = sum(check.store_opens for e, check in chaos.checks if e.startswith("appliance"))
    rx = receiver_totals(rig.receiver)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(comparison.by_kind.items()))
    in_write = chaos.cycles["appliance_kill_in_write"] - chaos.strace_misses
    cycles = sum(chaos.cycles.values())
    lines = [
        f"chaos seed {seed}: {cycles} cycles in {timings['chaos']:.0f} s; then "
        f"{timings['outstanding']:.0f} records not yet acknowledged, and all acknowledged "
        f"{timings['drain']:.1f} s later; {timings['total']:.0f} s in all",
        "  cycles: " + ", ".join(f"{e} {n}" for e, n in sorted(chaos.cycles.items())),
        f"  appliance starts {rig.appliance.starts}, receiver starts {rig.receiver.starts}, "
        f"uplink connections {logged['uplink_connected']}, resends {logged['uplink_resending']}",
        f"  kills in a WAL write {in_write}, of which left an unfinished transaction "
        f"{chaos.torn_transactions()}",
        "  databases left by kills: "
        + ", ".join(f"{k}: {n}" for k, n in sorted(checks.items()))
        + f"; Store.open ok {opened}",
        f"  final integrity_check: appliance {outcome.integrity['appliance']}, "
        f"receiver {outcome.integrity['receiver']}",
        f"  compared {len(gateway.side.records)} records, seq 1..{gateway.last_seq} ({kinds}); "
        f"appliance acked {gateway.acked_seq}, receiver acked {outcome.receiver.acked_seq}",
        f"  missing {len(comparison.missing)}, unexpected {len(comparison.unexpected)}, "
        f"different {len(comparison.different)}, duplicates {comparison.duplicates}; "
        f"re-sent records the receiver ignored {rx['duplicates_ignored']}+, "
        f"payloads rejected {rx['rejected']}",
    ]
    return "\n".join(lines)


@pytest.mark.slow
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("detail", ["full", "summary"])
def test_nothing_is_lost_duplicated_or_reordered_under_chaos(
    make_broker: BrokerFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str], detail: str
) -> None:
    seed = int(os.environ.get("CHAOS_SEED") or random.SystemRandom().randrange(2**32))

    def say(text: str) -> None:
        with capsys.disabled():
            print(text, flush=True)

    say(f"\nchaos seed {seed} (CHAOS_SEED={seed} repeats the schedule)")
    rig = build_rig(make_broker(users=(GATEWAY,)), tmp_path, detail)
    chaos = Chaos(rig, random.Random(seed), say)
    try:
        final, timings = run_chaos(rig, chaos)
    finally:
        rig.appliance.kill9()
        rig.receiver.kill9()
    outcome = compared(rig)
    say(f"uplink profile: {detail}\n" + report(seed, chaos, outcome, rig, timings))
    if detail == "summary":
        check_summary_outcome(chaos, outcome, final, rig, say)
    else:
        check_outcome(chaos, outcome, final)


def check_summary_outcome(
    chaos: Chaos, outcome: Outcome, final: OutboxState, rig: Rig, say: Say
) -> None:
    """The summary profile's bar: the accounting closes with no hole, nothing missing (in full
    or summarised), alerts and alarm windows in full, nothing twice or different."""
    gateway, comparison, receiver = outcome.gateway, outcome.comparison, outcome.receiver
    in_full = set(receiver.side.records)
    accounting = summary_accounting(rig.receiver_db, GATEWAY, in_full)
    alerts = {s for s, key in gateway.side.records.items() if key[0] == "alerts"}
    wanted = alerts | alarm_windows(gateway.side, SUMMARY_MARGIN_S)
    missing = sorted(set(comparison.missing) - accounting.summarised)
    figures = {
        "records": gateway.last_seq,
        "in_full": len(in_full),
        "summarised": len(accounting.summarised),
        "minutes": accounting.minutes,
        "missing": len(missing),
        "alerts_and_alarm_windows_not_in_full": len(wanted - in_full),
        "ranges_not_adding_up": accounting.ranges_not_adding_up,
        "unexpected": len(comparison.unexpected),
        "different": len(comparison.different),
        "duplicates": comparison.duplicates,
    }
    say("  summary profile: " + ", ".join(f"{k} {v}" for k, v in figures.items()))
    assert sum(chaos.cycles.values()) >= 30 * min(1.0, SCALE)
    assert outcome.integrity == {"appliance": "ok", "receiver": "ok"}
    assert (gateway.last_seq, gateway.acked_seq) == (final.last_seq, final.last_seq)
    assert gateway.lost_before_delivery == 0 and comparison.gateway_gaps == [], "no eviction"
    assert receiver.acked_seq == gateway.last_seq and receiver.status["holes"] == 0
    assert missing == [], f"missing: {first(missing)}"
    assert figures["alerts_and_alarm_windows_not_in_full"] == 0
    assert figures["ranges_not_adding_up"] == 0
    assert (figures["unexpected"], figures["different"], figures["duplicates"]) == (0, 0, 0)


def run_chaos(rig: Rig, chaos: Chaos) -> tuple[OutboxState, dict[str, float]]:
    started = time.monotonic()
    rig.receiver.start()
    rig.appliance.start()
    wait_for(lambda: rig.acked() > 0, "the first records acknowledged", START_DEADLINE_S)
    chaos.run(schedule(chaos.rng, SCALE))
    for _ in range(EXTRA_WAL_KILLS):
        if chaos.torn_transactions() or STRACE is None:
            break
        chaos.run(["appliance_kill_in_write"])
    chaos_end = time.monotonic()
    at_end = read_outbox_state(rig.appliance_db)
    assert at_end is not None
    final = stop_when_all_acknowledged(rig, at_end.last_seq, DRAIN_DEADLINE_S)
    drained = time.monotonic()
    assert rig.receiver.terminate() == 0, rig.receiver.log_tail()
    timings = {
        "chaos": chaos_end - started,
        "drain": drained - chaos_end,
        "total": time.monotonic() - started,
        "outstanding": at_end.last_seq - at_end.acked_seq,
    }
    return final, timings


def check_outcome(chaos: Chaos, outcome: Outcome, final: OutboxState) -> None:
    gateway, comparison = outcome.gateway, outcome.comparison
    assert sum(chaos.cycles.values()) >= 30 * min(1.0, SCALE)
    assert all(check.integrity == "ok" and check.store_opens for _, check in chaos.checks)
    assert outcome.integrity == {"appliance": "ok", "receiver": "ok"}
    if STRACE is not None:
        assert chaos.torn_transactions() > 0, "no kill landed in the middle of a transaction"
    assert (gateway.last_seq, gateway.acked_seq) == (final.last_seq, final.last_seq)
    assert gateway.lost_before_delivery == 0 and comparison.gateway_gaps == [], "no eviction"
    assert comparison.missing == [], f"missing at the receiver: {first(comparison.missing)}"
    assert comparison.unexpected == [], f"unexpected: {first(comparison.unexpected)}"
    assert comparison.different == [], f"different: {first(comparison.different)}"
    assert comparison.duplicates == 0
    assert sorted(outcome.receiver.side.records) == list(range(1, gateway.last_seq + 1))
    assert outcome.receiver.acked_seq == gateway.last_seq
    assert outcome.receiver.status["holes"] == 0
