"""Helpers for the SMS tests: fast settings, an emulated modem on a by-id symlink, and a
running ModemLink. Delays are shrunk through the settings dataclasses; tests wait for
events or poll a condition with a generous deadline, never for a fixed time."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import waiting

from appliance.rig.modem import EmulatedModem, EmulatorSettings
from appliance.sms.modem import ModemLink, ModemSettings, UrcHandler

Waiter = Callable[..., Awaitable[None]]
DEADLINE_S = 20.0

FAST_LINK = ModemSettings(
    probe_timeout_s=0.25,
    boot_timeout_s=3.0,
    command_timeout_s=5.0,
    sim_timeout_s=10.0,
    registration_timeout_s=10.0,
    ready_timeout_s=10.0,
    send_timeout_s=5.0,
    poll_interval_s=0.01,
    check_interval_s=0.05,
    check_timeout_s=2.0,
    reopen_initial_s=0.01,
    reopen_max_s=0.05,
    power_cycle_after=3,
)


def link_settings(**changes: object) -> ModemSettings:
    return dataclasses.replace(FAST_LINK, **changes)  # type: ignore[arg-type]


def emulator_settings(**changes: object) -> EmulatorSettings:
    return EmulatorSettings.fast(**changes)


async def wait_until(
    predicate: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S
) -> None:
    """tests/waiting.py's wait_until with the SMS tests' deadline."""
    await waiting.wait_until(predicate, what, timeout_s)


def symlink_target(path: Path) -> str | None:
    """Where the by-id symlink points, None if it is absent (a sync helper for async tests)."""
    return os.path.realpath(path) if os.path.lexists(path) else None


async def within_deadline(awaitable: Awaitable[object], what: str) -> None:
    try:
        await asyncio.wait_for(awaitable, DEADLINE_S)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for: {what}") from None


@contextlib.asynccontextmanager
async def running(link: ModemLink) -> AsyncIterator[ModemLink]:
    """Run the link's supervisor for the duration of the block."""
    task = asyncio.create_task(link.run())
    try:
        yield link
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@contextlib.asynccontextmanager
async def modem_and_link(
    by_id: Path,
    emulator: EmulatorSettings | None = None,
    settings: ModemSettings | None = None,
    on_urc: UrcHandler | None = None,
    **modem_options: object,
) -> AsyncIterator[tuple[EmulatedModem, ModemLink]]:
    """An emulated modem and a running link to it; waits until the link is ready."""
    modem = EmulatedModem(
        link_path=by_id,
        settings=emulator if emulator is not None else emulator_settings(),
        **modem_options,  # type: ignore[arg-type]
    )
    async with modem:
        link = ModemLink(str(by_id), settings if settings is not None else FAST_LINK, on_urc=on_urc)
        async with running(link):
            await within_deadline(link.wait_ready(), "link ready")
            yield modem, link
