"""The gateway at a glance: its overall state, how many machines are in alarm or have a sensor
fault (named), what is wrong with the gateway itself, and the newest alert. The page's header."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from appliance.records import Alert
from appliance.status_snapshot.board_copy import AssetSnapshot, StatusSnapshot
from appliance.status_snapshot.states import CONDITIONS, WORDS, Condition

PHRASES: dict[Condition, str] = {
    "alarm": "in alarm",
    "sensor_fault": "with a sensor fault",
    "warning": "with a warning",
    "no_data": "without data",
}
"""The conditions the headline counts and names, worst first."""
NAMES_SHOWN = 3


@dataclass(frozen=True)
class Overview:
    condition: Condition
    """The worst asset's; "warning" when every asset is fine but the gateway has a problem."""
    headline: str
    """"1 machine in alarm: compressor-2", "all 2 machines ok"."""
    assets: Mapping[Condition, tuple[str, ...]]
    """Asset names by condition (every condition, in the config's order)."""
    problems: tuple[str, ...]
    """The gateway's own: a serial link down, the uplink failing, store write errors."""
    newest_alert: Alert | None
    """The newest open alert, else the newest recent one (then closed)."""
    newest_alert_open: bool

    @property
    def words(self) -> str:
        return WORDS[self.condition]


def overview(status: StatusSnapshot) -> Overview:
    by_condition: dict[Condition, tuple[str, ...]] = {
        c: tuple(a.name for a in status.assets if a.state.condition == c) for c in CONDITIONS
    }
    problems = gateway_problems(status)
    worst = min((a.state.rank for a in status.assets), default=CONDITIONS.index("ok"))
    condition = CONDITIONS[worst]
    if problems and condition in ("commissioning", "ok"):
        condition = "warning"
    newest, is_open = _newest_alert(status)
    return Overview(
        condition, headline(status.assets, by_condition), by_condition, problems, newest, is_open
    )


def headline(
    assets: Sequence[AssetSnapshot], by_condition: Mapping[Condition, Sequence[str]]
) -> str:
    parts = [
        f"{_machines(len(names))} {phrase}: {_names(names)}"
        for condition, phrase in PHRASES.items()
        if (names := by_condition.get(condition))
    ]
    if parts:
        return "; ".join(parts)
    commissioning = len(by_condition.get("commissioning", ()))
    if not commissioning:
        return f"all {_machines(len(assets))} ok"
    return f"{_machines(len(assets) - commissioning)} ok, {commissioning} commissioning"


def gateway_problems(status: StatusSnapshot) -> tuple[str, ...]:
    """What is wrong with the gateway itself, one phrase each (empty when nothing is)."""
    problems = [
        f"serial {name} disconnected" for name, s in status.serial.items() if not s.connected
    ]
    problems += [
        f"i2c {bus} {sensor.name} failed"
        for bus, sensors in status.i2c.items()
        for sensor in sensors
        if sensor.failed
    ]
    up = status.uplink
    if up is not None and not up.connected and up.last_error is not None:
        problems.append(f"uplink {up.state}")
    if status.store is not None and status.store.write_errors:
        problems.append(f"store: {status.store.write_errors} write errors")
    sms = status.sms
    if sms is not None and sms.pin_rejected:
        problems.append("SMS: the SIM refused its PIN")
    elif sms is not None and not sms.modem.ready and sms.modem.last_error is not None:
        problems.append(f"SMS modem not ready: {sms.modem.last_error}")
    return tuple(problems)


def _newest_alert(status: StatusSnapshot) -> tuple[Alert | None, bool]:
    alerts = status.alerts
    if alerts is None:
        return None, False
    if alerts.open:
        return max((o.alert for o in alerts.open), key=lambda a: a.t), True
    return (alerts.recent[-1], False) if alerts.recent else (None, False)


def _machines(n: int) -> str:
    return f"{n} machine" if n == 1 else f"{n} machines"


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN])
    return shown if len(names) <= NAMES_SHOWN else f"{shown} +{len(names) - NAMES_SHOWN} more"
