"""Why an MQTT connection failed, in one sentence an operator can act on (logged, and shown on the
gateway's status). The gateway's uplink and the receiver both use it."""

from __future__ import annotations

import asyncio
import re
import ssl

from aiomqtt.exceptions import MqttConnectError
from paho.mqtt.reasoncodes import ReasonCode

BAD_CREDENTIALS = {4: "bad user name or password", 134: "bad user name or password"}
"""CONNACK codes, MQTT 3.1.1 and 5."""
NOT_AUTHORISED = {5, 135}
VERIFY_FAILED = re.compile(r"certificate verify failed: ([^(]*)")


def describe_failure(exc: BaseException, host: str, port: int, *, connected: bool) -> str:
    """One clear sentence for why the connection to host:port failed; `connected`: it had been
    up (a lost connection rather than a failed connect)."""
    where = f"{host}:{port}"
    refused = refused_connect(exc)
    if refused is not None:
        return refused
    text = str(exc)
    verify = VERIFY_FAILED.search(text)
    if verify:
        return f"TLS: certificate verify failed for host {host}: {verify.group(1).strip()}"
    if "[SSL" in text or isinstance(exc, ssl.SSLError):
        return f"TLS: handshake with {where} failed: {text}"
    if "Connection refused" in text:
        return f"connection refused by {where} (is the broker running?)"
    if "Name or service not known" in text or "Temporary failure in name resolution" in text:
        return f"cannot resolve broker host {host}"
    if connected:
        if exc.__cause__ is not None and "during message iteration" in text:
            text = str(exc.__cause__) or type(exc.__cause__).__name__  # why it disconnected
        if "timed out" in text:
            return f"broker {where} stopped answering (timed out)"
        return f"connection to {where} lost ({text or type(exc).__name__})"
    if "timed out" in text:
        return f"timed out connecting to {where}"
    return f"cannot connect to {where}: {text or type(exc).__name__}"


def refused_connect(exc: BaseException) -> str | None:
    """The broker's refusal in words, when `exc` is a refused CONNECT; else None."""
    if not isinstance(exc, MqttConnectError):
        return None
    code = exc.rc.value if isinstance(exc.rc, ReasonCode) else exc.rc
    if code in NOT_AUTHORISED:
        return "broker refused our credentials (not authorised)"
    if code in BAD_CREDENTIALS:
        return f"broker refused our credentials ({BAD_CREDENTIALS[code]})"
    return f"broker refused the connection: {exc}"


def innermost(exc: BaseException) -> BaseException:
    """The first real error inside (nested) exception groups; cancellations are skipped."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = [innermost(inner) for inner in exc.exceptions]
        real = [leaf for leaf in leaves if not isinstance(leaf, asyncio.CancelledError)]
        return (real or leaves)[0]
    return exc
