"""A SIM PIN the SIM refused is never tried again, not after a restart either: the sender
persists a salted hash of it (flag `sms.pin_rejected`), and `usable_pin()` refuses that PIN at
the next start, until the configured PIN changes (a wrong PIN tried again would lock the SIM)."""

from __future__ import annotations

import hashlib
import hmac
import os

import structlog

from appliance.store import SmsQueue

log = structlog.get_logger(__name__)

PIN_FLAG = "sms.pin_rejected"
PIN_HASH_ITERATIONS = 100_000


def pin_digest(pin: str, salt: bytes | None = None) -> str:
    """A salted PBKDF2 hash of the PIN, as stored in the flag ("pbkdf2$<salt>$<hash>")."""
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt, PIN_HASH_ITERATIONS)
    return f"pbkdf2${salt.hex()}${digest.hex()}"


def pin_matches(stored: str, pin: str) -> bool:
    try:
        scheme, salt, _ = stored.split("$")
        expected = pin_digest(pin, bytes.fromhex(salt))
    except ValueError:
        return False
    return scheme == "pbkdf2" and hmac.compare_digest(stored, expected)


async def usable_pin(store: SmsQueue, pin: str | None) -> tuple[str | None, bool]:
    """(the PIN to use, whether the configured PIN is refused). A PIN the SIM refused before
    is not used again; a different PIN clears the flag."""
    flag = await store.flag(PIN_FLAG)
    if pin is None or flag is None:
        return pin, False
    if pin_matches(flag, pin):
        log.error(
            "sms_pin_refused_before",
            advice="the SIM refused this PIN before; it is not tried again (the SIM would "
            "lock). Put the right PIN in the config (or unlock the SIM) and restart.",
        )
        return None, True
    await store.set_flag(PIN_FLAG, None)
    log.info("sms_pin_changed", advice="the PIN refused earlier was replaced; trying the new one")
    return pin, False
