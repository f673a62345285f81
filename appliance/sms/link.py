"""The link that keeps a modem session open (`ModemLink`), for the life of the app.

It opens the port by path (a stable /dev/serial/by-id link), initialises the modem, runs the
watchdog (`check()` every `check_interval_s`), and when the session dies closes it and reopens
by path with doubling backoff and jitter (appliance.net.backoff), calling an optional
power-cycle hook after `power_cycle_after` consecutive failures. Senders call
`link.send_sms()`; `await link.wait_ready()` waits until a send can be tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable

import structlog

from appliance.net.backoff import Backoff
from appliance.sms.at import Urc
from appliance.sms.errors import ModemGone, ModemNotReady, PinRejected, SmsError
from appliance.sms.health import ModemHealth
from appliance.sms.session import ModemSession, ModemSettings, PartSent, UrcHandler

log = structlog.get_logger(__name__)

PowerCycle = Callable[[], Awaitable[None]]
PinRejectedHandler = Callable[[PinRejected], None]


class ModemLink:
    """Keeps a session open on `path`: connect, watchdog, reopen with backoff, power cycle.

    Run `run()` as a task for the life of the app. `health` is the status board entry.
    `on_urc` is called in the reader task and must not block. `on_pin_rejected(error)` is
    called (without blocking) when the SIM refused the configured PIN: the link stops using
    it at once; the caller may persist that, so a restart does not try it again either.
    """

    def __init__(
        self,
        path: str,
        settings: ModemSettings | None = None,
        *,
        power_cycle: PowerCycle | None = None,
        on_urc: UrcHandler | None = None,
        on_pin_rejected: PinRejectedHandler | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.path = path
        self.settings = settings if settings is not None else ModemSettings()
        self.health = ModemHealth(path=path)
        self._power_cycle = power_cycle
        self._on_urc = on_urc
        self._on_pin_rejected = on_pin_rejected
        self._rng = rng if rng is not None else random.Random()
        self._backoff = Backoff(
            self.settings.reopen_initial_s, self.settings.reopen_max_s, self._rng
        )
        self._pin = self.settings.pin
        self._session: ModemSession | None = None
        self._ready = asyncio.Event()
        self._has_connected = False
        self._next_reference = self._rng.randrange(256)

    # --- for senders -------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """A session is up, registered and with a known signal (what `wait_ready` waits for)."""
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        """Until a session is up, registered and with a known signal."""
        await self._ready.wait()

    def next_reference(self) -> int:
        """A concatenation reference (0-255) for a sender that does not keep its own."""
        reference = self._next_reference
        self._next_reference = (reference + 1) % 256
        return reference

    async def send_sms(
        self,
        number: str,
        text: str,
        *,
        reference: int | None = None,
        first_part: int = 0,
        on_part: PartSent | None = None,
        setup_checked: bool = False,
    ) -> list[int]:
        """Send `text`; the TP-MR of each part sent. Raises an SmsError (see errors.py).
        `on_part(parts_done)` is awaited after each part the modem accepted. `setup_checked`:
        `check_setup()` has just passed, so the first part goes without asking again."""
        session = self._connected_session()
        chosen = reference if reference is not None else self.next_reference()
        try:
            return await session.send_sms(
                number,
                text,
                reference=chosen,
                first_part=first_part,
                on_part=on_part,
                setup_checked=setup_checked,
            )
        except SmsError as error:
            self._note_error(error)
            raise
        finally:
            self._update_ready()

    async def check_setup(self) -> None:
        """The check that precedes each part (PDU mode; set up again after a silent restart),
        on its own: a sender runs it while it commits the message's `sending` state, then
        sends with `setup_checked=True`. Raises an SmsError as a send would."""
        session = self._connected_session()
        try:
            await session.ensure_setup()
        except SmsError as error:
            self._note_error(error)
            raise
        finally:
            self._update_ready()

    def _connected_session(self) -> ModemSession:
        session = self._session
        if session is None or not session.alive:
            raise ModemNotReady(f"modem not connected: {self.health.last_error or 'starting'}")
        return session

    # --- supervision -------------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, supervise, reconnect; until cancelled."""
        while True:
            session = await self._connect()
            if session is not None:
                self._backoff.reset()
                await self._supervise(session)
            await self._after_failure()
            await asyncio.sleep(self._backoff.next_delay())

    async def _connect(self) -> ModemSession | None:
        try:
            session = await ModemSession.open(self.path, self.settings, self.health, self._urc)
        except ModemGone as error:
            self._note_open_failure(error)
            return None
        try:
            await session.initialise(self._pin)
        except SmsError as error:
            self._note_open_failure(error)
        except BaseException:
            await session.close()
            raise
        else:
            self._note_connected()
            return session
        await session.close()
        return None

    async def _supervise(self, session: ModemSession) -> None:
        self._session = session
        try:
            with contextlib.suppress(ModemNotReady):
                await session.wait_ready(self.settings.registration_timeout_s)
            self._update_ready()
            while True:
                await self._wait_for_next_check(session)
                await session.check()
                await session.refresh()
                await session.ensure_setup()
                self._update_ready()
        except SmsError as error:
            self._note_error(error)
        finally:
            self._session = None
            self.health.connected = False
            self._update_ready()
            await session.close()

    async def _wait_for_next_check(self, session: ModemSession) -> None:
        try:
            async with asyncio.timeout(self.settings.check_interval_s):
                await session.wait_closed()
        except TimeoutError:
            return
        raise ModemGone(session.gone_reason or "closed")

    async def _after_failure(self) -> None:
        self.health.consecutive_failures += 1
        if self._power_cycle is None:
            return
        if self.health.consecutive_failures < self.settings.power_cycle_after:
            return
        self.health.consecutive_failures = 0
        self.health.power_cycles += 1
        log.warning("modem_power_cycle", path=self.path, count=self.health.power_cycles)
        try:
            await self._power_cycle()
        except Exception:
            log.exception("modem_power_cycle_failed", path=self.path)

    # --- bookkeeping -------------------------------------------------------------------------

    def _urc(self, urc: Urc) -> None:
        self._update_ready()
        if self._on_urc is not None:
            self._on_urc(urc)

    def _update_ready(self) -> None:
        if self.health.ready:
            self._ready.set()
        else:
            self._ready.clear()

    def _note_connected(self) -> None:
        if self._has_connected:
            self.health.reopens += 1
        self._has_connected = True
        self.health.connected = True
        self.health.consecutive_failures = 0
        log.info("modem_connected", path=self.path, reopens=self.health.reopens)

    def _note_open_failure(self, error: SmsError) -> None:
        self.health.open_failures += 1
        self._note_error(error)

    def _note_error(self, error: SmsError) -> None:
        """Record the error; log it when it differs from the last one (a modem that stays
        away would otherwise log every reopen attempt). A refused PIN is dropped at once,
        whether initialisation or setting up again after a restart met the refusal."""
        text = f"{type(error).__name__}: {error}"
        if text != self.health.last_error:
            log.warning("modem_error", path=self.path, error=text)
        self.health.last_error = text
        self.health.last_error_utc = time.time()
        if isinstance(error, PinRejected):
            self._drop_pin(error)

    def _drop_pin(self, error: PinRejected) -> None:
        had_pin, self._pin = self._pin is not None, None  # tried again it would lock the SIM
        if had_pin and self._on_pin_rejected is not None:
            self._on_pin_rejected(error)
