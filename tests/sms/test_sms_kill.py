"""kill -9 in the middle of a send: a child process runs the real sender on the store against the
emulated modem (which lives in this process), the modem's own traffic decides the moment of the
kill, then a new child takes over the same store. After the restart every queued SMS is
delivered, and at most one of them twice (checked against the emulator's delivered list)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from sms_helpers import DEADLINE_S, emulator_settings, wait_until

from appliance.records import Alert
from appliance.rig.modem import DeliveredSms, EmulatedModem
from appliance.store import Store, StoreSettings
from appliance.store.sms import NewSms, QueuedSms

CHILD = Path(__file__).with_name("sms_sender_child.py")
NUMBER = "+491701234567"
LONG = "Bearing temperature on pump-1 rising past its limit, check lubrication. " * 6


class Child:
    """The sender process; `kill()` is safe to call from an emulator callback."""

    def __init__(self, db: Path, port: Path, log: Path) -> None:
        self.db, self.port, self.log = db, port, log
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("a") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, str(CHILD), str(self.db), str(self.port),
                stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

    def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)

    async def exit_code(self) -> int:
        assert self.process is not None
        return await asyncio.wait_for(self.process.wait(), DEADLINE_S)

    async def reap(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()

    async def stop(self) -> int:
        assert self.process is not None
        if self.process.returncode is None:
            self.process.terminate()
        return await self.exit_code()


async def queue(db: Path, texts: Sequence[str]) -> list[int]:
    now = time.time()  # the child's clock: the messages are due at once
    alert = Alert("pump-1", now, "critical", "anomaly_raised", "pump-1: anomaly")
    async with await Store.open(StoreSettings(db)) as store:
        rows = await store.sms_queue.enqueue_sms(
            [NewSms(NUMBER, t, alert) for t in texts], now, 3600.0
        )
    return [row.id for row in rows]


async def rows(db: Path, count: int) -> list[QueuedSms]:
    async with await Store.open(StoreSettings(db)) as store:
        return [await store.sms_queue.sms(sms_id) for sms_id in range(1, count + 1)]


async def run_killed_then_restarted(
    tmp_path: Path,
    by_id: Path,
    texts: Sequence[str],
    kill_when: Callable[[EmulatedModem, str], bool],
) -> tuple[list[QueuedSms], EmulatedModem]:
    """Queue `texts`; run a child until `kill_when(modem, command_line)` says kill -9 (checked on
    every command line the modem receives and after every message it delivers); then run a
    second child until everything is sent. Returns the rows as the first child left them."""
    db = tmp_path / "sms.db"
    await queue(db, texts)
    child = Child(db, by_id, tmp_path / "child.log")
    armed = True

    def check(modem: EmulatedModem, line: str) -> None:
        nonlocal armed
        if armed and kill_when(modem, line):
            armed = False
            child.kill()

    modem = EmulatedModem(
        link_path=by_id,
        settings=emulator_settings(),
        on_command=lambda line: check(modem, line),
        on_delivered=lambda sms: check(modem, f"delivered {sms.text}"),
    )
    async with modem:
        try:
            await child.start()
            assert await child.exit_code() == -signal.SIGKILL, (tmp_path / "child.log").read_text()
            left = await rows(db, len(texts))
            await child.start()
            await wait_until(
                lambda: len({s.text for s in modem.delivered}) == len(texts), "all sent"
            )
            assert await child.stop() == 0
        finally:
            await child.reap()  # a failed test leaves no sender running
    assert [row.state for row in await rows(db, len(texts))] == ["sent"] * len(texts)
    return left, modem


def duplicates(texts: Sequence[str], delivered: Sequence[DeliveredSms]) -> Counter[str]:
    """Each queued text delivered at least once; the extra deliveries by text."""
    counts = Counter(sms.text for sms in delivered)
    assert set(counts) == set(texts)
    return counts - Counter(set(texts))


def cmgs_count(modem: EmulatedModem) -> int:
    return sum(1 for command in modem.commands if command.startswith("AT+CMGS="))


async def test_killed_at_the_prompt_nothing_is_lost_or_repeated(
    tmp_path: Path, by_id: Path
) -> None:
    texts = ["alert one", "alert two", "alert three"]
    left, modem = await run_killed_then_restarted(
        tmp_path, by_id, texts, lambda m, line: line.startswith("AT+CMGS=") and cmgs_count(m) == 2
    )
    assert [(r.state, r.attempts) for r in left] == [("sent", 1), ("sending", 1), ("queued", 0)]
    assert duplicates(texts, modem.delivered) == Counter()  # the PDU never left
    assert [sms.text for sms in modem.delivered] == texts  # in order


async def test_killed_after_the_pdu_was_written_at_most_one_sms_arrives_twice(
    tmp_path: Path, by_id: Path
) -> None:
    """The modem took the PDU (and delivered it) but the sender died before the answer: it
    cannot know the SMS left, so it sends it again after the restart."""
    texts = ["alert one", "alert two", "alert three"]
    left, modem = await run_killed_then_restarted(
        tmp_path, by_id, texts, lambda m, line: line == "delivered alert two"
    )
    assert [r.state for r in left] == ["sent", "sending", "queued"]
    assert duplicates(texts, modem.delivered) == Counter({"alert two": 1})


async def test_killed_between_the_parts_of_a_long_sms_it_resumes_at_the_next_part(
    tmp_path: Path, by_id: Path
) -> None:
    texts = ["short one", LONG, "after"]
    # AT+CMGS #1 is "short one", #2-#4 the three parts of LONG: die asking for part 3
    left, modem = await run_killed_then_restarted(
        tmp_path, by_id, texts, lambda m, line: line.startswith("AT+CMGS=") and cmgs_count(m) == 4
    )
    assert [(r.state, r.parts_done) for r in left] == [("sent", 1), ("sending", 2), ("queued", 0)]
    assert duplicates(texts, modem.delivered) == Counter()
    assert modem.counts.duplicate_parts == 0
    long_sms = next(sms for sms in modem.delivered if sms.text == LONG)
    assert long_sms.parts == 3 and long_sms.reference == left[1].reference
