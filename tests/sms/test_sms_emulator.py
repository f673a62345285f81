"""EmulatedModem on its own, spoken to byte by byte over its pty, and both command lines."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import serial_asyncio
from sms_helpers import emulator_settings, symlink_target, wait_until, within_deadline

from appliance.rig.modem import EmulatedModem, EmulatorSettings
from appliance.sms.pdu import encode_sms

NUMBER = "+491701234567"


class Raw:
    """A plain serial connection to the emulator: write bytes, read until a marker."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.buffer = b""

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def until(self, marker: bytes) -> bytes:
        async def read() -> bytes:
            while marker not in self.buffer:
                self.buffer += await self.reader.read(4096)
            head, _, self.buffer = self.buffer.partition(marker)
            return head + marker

        result = asyncio.get_running_loop().create_future()
        await within_deadline(_into(read(), result), f"{marker!r} from the emulator")
        return bytes(result.result())

    async def command(self, line: str, final: bytes = b"OK\r\n") -> bytes:
        await self.send(line.encode() + b"\r")
        return await self.until(final)


async def _into(coro: object, future: asyncio.Future[bytes]) -> None:
    future.set_result(await coro)  # type: ignore[misc]


@contextlib.asynccontextmanager
async def raw_to(modem: EmulatedModem) -> AsyncIterator[Raw]:
    reader, writer = await serial_asyncio.open_serial_connection(url=modem.path, baudrate=115200)
    try:
        yield Raw(reader, writer)
    finally:
        writer.close()


async def booted(raw: Raw) -> None:
    await raw.until(b"SMS Ready\r\n")


async def test_input_is_ignored_until_boot_and_echo_lasts_until_ate0(by_id: Path) -> None:
    async with (
        EmulatedModem(link_path=by_id, settings=emulator_settings(boot_s=math.inf)) as modem,
        raw_to(modem) as raw,
    ):
        await raw.send(b"AT\r")
        await wait_until(lambda: modem.counts.ignored_bytes >= 3, "input ignored while booting")
        modem.settings = emulator_settings()
        modem.power_cycle()
        await raw.until(b"RDY\r\n")
        await booted(raw)
        assert await raw.command("AT") == b"AT\r\r\nOK\r\n"
        assert await raw.command("ATE0") == b"ATE0\r\r\nOK\r\n"
        modem.set_signal(20)
        assert await raw.command("AT+CSQ") == b"\r\n+CSQ: 20,0\r\n\r\nOK\r\n"
    assert modem.commands == ["AT", "ATE0", "AT+CSQ"]


async def test_sim_busy_error_formats(by_id: Path) -> None:
    settings = emulator_settings(sim_busy_s=math.inf)
    async with EmulatedModem(link_path=by_id, settings=settings) as modem, raw_to(modem) as raw:
        await raw.until(b"RDY\r\n")
        await raw.command("ATE0")
        assert await raw.command("AT+CPIN?", b"ERROR\r\n") == b"\r\nERROR\r\n"
        await raw.command("AT+CMEE=1")
        assert b"+CME ERROR: 14" in await raw.command("AT+CPIN?", b"14\r\n")
        await raw.command("AT+CMEE=2")
        assert b"+CME ERROR: SIM busy" in await raw.command("AT+CPIN?", b"busy\r\n")
        modem.finish_sim_init()
        assert b"+CPIN: READY" in await raw.command("AT+CPIN?")
    assert modem.counts.sim_busy_answers == 3


async def test_text_mode_takes_the_length_for_a_number_like_a_real_modem(by_id: Path) -> None:
    """Power-on default: text mode. AT+CMGS=<n> names the destination, the line is the text."""
    pdu = encode_sms(NUMBER, "meant for the PDU", 1)[0]
    async with (
        EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem,
        raw_to(modem) as raw,
    ):
        await booted(raw)
        await raw.command("ATE0")
        await raw.command("AT+CMEE=1")
        await wait_until(lambda: modem._state.registration == 1, "registered")
        assert b"+CMS ERROR: 305" in await raw.command("AT+CMGS=", b"305\r\n")
        await raw.command(f"AT+CMGS={pdu.tpdu_length}", b"> ")
        await raw.send(pdu.hex.encode() + b"\x1a")
        assert b"+CMGS: 0" in await raw.until(b"OK\r\n")
        await raw.command('AT+CMGS="+4917099",145', b"> ")
        await raw.send(b"plain text\x1a")
        await raw.until(b"OK\r\n")
    assert [(sms.number, sms.text) for sms in modem.delivered] == [
        (str(pdu.tpdu_length), pdu.hex),
        ("+4917099", "plain text"),
    ]
    assert modem.counts.text_mode_sends == 2 and modem.parts == []


async def test_pdu_mode_prompt_escape_and_bad_pdus(by_id: Path) -> None:
    async with (
        EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem,
        raw_to(modem) as raw,
    ):
        await booted(raw)
        await raw.command("ATE0")
        await raw.command("AT+CMEE=1")
        await raw.command("AT+CMGF=0")
        await raw.command("AT+CMGS=20", b"> ")
        await raw.send(b"\x1b")  # cancelled: no answer, back to commands
        assert await raw.command("AT") == b"\r\nOK\r\n"
        await raw.command("AT+CMGS=20", b"> ")
        await raw.send(b"0011zz\x1a")
        assert b"+CMS ERROR: 304" in await raw.until(b"304\r\n")
        pdu = encode_sms(NUMBER, "length lie", 1)[0]
        await raw.command(f"AT+CMGS={pdu.tpdu_length + 1}", b"> ")
        await raw.send(pdu.hex.encode() + b"\x1a")
        assert b"+CMS ERROR: 304" in await raw.until(b"304\r\n")
    assert modem.delivered == [] and modem.counts.send_errors == 2


async def test_parts_are_reassembled_in_any_order_with_duplicates(by_id: Path) -> None:
    text = "out of order " * 20
    first, second = encode_sms(NUMBER, text, 9)
    async with (
        EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem,
        raw_to(modem) as raw,
    ):
        await booted(raw)
        for command in ("ATE0", "AT+CMEE=1", "AT+CMGF=0"):
            await raw.command(command)
        await wait_until(lambda: modem._state.registration == 1, "registered")
        for pdu in (second, second, first):
            await raw.command(f"AT+CMGS={pdu.tpdu_length}", b"> ")
            await raw.send(pdu.hex.encode() + b"\x1a")
            await raw.until(b"OK\r\n")
    [sms] = modem.delivered
    assert (sms.text, sms.parts, sms.reference) == (text, 2, 9)
    assert sms.message_references == (2, 1)  # part 1 was accepted last
    assert modem.counts.duplicate_parts == 1 and modem.counts.parts_accepted == 3


async def test_unplug_for_a_while_comes_back_under_the_same_symlink(by_id: Path) -> None:
    async with EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem:
        modem.unplug(for_s=0.05)
        assert symlink_target(by_id) is None and not modem.plugged_in
        await wait_until(lambda: modem.plugged_in, "replugged")
        assert symlink_target(by_id) == modem.path
        async with raw_to(modem) as raw:
            await raw.until(b"RDY\r\n")
    assert (modem.counts.unplugs, modem.counts.replugs) == (1, 1)


async def test_cfun_reset_reboots(by_id: Path) -> None:
    async with (
        EmulatedModem(link_path=by_id, settings=emulator_settings()) as modem,
        raw_to(modem) as raw,
    ):
        await booted(raw)
        await raw.command("AT+CFUN=1,1")
        await raw.until(b"RDY\r\n")
    assert modem.counts.boots == 2 and modem.counts.power_cycles == 1


def boot_events(settings: EmulatorSettings) -> list[str]:
    """The modem's boot events in the order they happen with these delays."""
    sim_ready = settings.boot_s + settings.sim_busy_s
    times = {
        "RDY": settings.boot_s,
        "SIM ready": sim_ready,
        "signal known": sim_ready + settings.signal_unknown_s,
        "registered": sim_ready + settings.registration_s,
    }
    return sorted(times, key=times.__getitem__)


def test_settings_fast_keeps_the_order_of_boot_events() -> None:
    """`fast` shrinks the delays only: the boot events come in the default's order, and every
    other setting is the default's."""
    fast = emulator_settings()
    default = EmulatorSettings()
    assert boot_events(fast) == boot_events(default) == [
        "RDY", "SIM ready", "signal known", "registered"
    ]  # fmt: skip
    for name, value in dataclasses.asdict(default).items():
        if name.endswith("_s"):
            assert 0 <= getattr(fast, name) <= value, name
        else:
            assert getattr(fast, name) == value, name


async def test_command_lines_show_what_would_have_been_sent(tmp_path: Path) -> None:
    """The emulator CLI prints each SMS; the modem CLI sends one through it."""
    link = tmp_path / "modem"
    emulator = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "appliance.rig.modem", "--link", str(link), "--fast",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert emulator.stdout is not None
        assert b"emulated SIM800" in await emulator.stdout.readline()
        sender = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "appliance.sms.modem", "--port", str(link), "--to", NUMBER,
            "--timeout", "20", "Pump P-101 critical: 7.9 mm/s > 4.5 €",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        out, _ = await sender.communicate()
        assert sender.returncode == 0, out
        assert b"sent, message references [0]" in out
        shown = await emulator.stdout.readline()
        assert shown.decode().endswith(
            f"SMS to {NUMBER} (1 part): Pump P-101 critical: 7.9 mm/s > 4.5 €\n"
        )
    finally:
        emulator.terminate()
        await emulator.wait()
