"""Parts of the page's JSON copied from the snapshot, each with the text a person reads beside
the raw value ("68.8 GB", "2026-12-07 14:03:12 CET"): alerts, store, uplink, SMS, models, the
overview in the header and the time zone."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, tzinfo
from typing import Any

from appliance.records import Alert
from appliance.status import OutcomeView
from appliance.status_snapshot import (
    ModelsSnapshot,
    OpenAlert,
    Overview,
    SmsSnapshot,
    StoreSnapshot,
    UplinkSnapshot,
)
from appliance.status_snapshot.humanize import duration, size, time_text

RECENT_MODEL_OUTCOMES_SHOWN = 10


def zone_json(zone: tzinfo, now: float) -> dict[str, Any]:
    """The zone the texts use: its IANA name (None when the system's has none) and its offset
    from UTC now, for a chart that labels its own time axis."""
    key = getattr(zone, "key", None)
    name = key if key and key != "localtime" else ("UTC" if str(zone) == "UTC" else None)
    offset = datetime.fromtimestamp(now, zone).utcoffset()
    return {"name": name, "utc_offset_s": offset.total_seconds() if offset is not None else 0.0}


def overview_json(view: Overview, zone: tzinfo) -> dict[str, Any]:
    newest = view.newest_alert
    return {
        "state": view.condition,
        "words": view.words,
        "headline": view.headline,
        "assets": {condition: list(names) for condition, names in view.assets.items()},
        "problems": list(view.problems),
        "newest_alert": None
        if newest is None
        else {**alert_json(newest, zone), "open": view.newest_alert_open},
    }


def alert_json(alert: Alert, zone: tzinfo) -> dict[str, Any]:
    return {
        "asset": alert.asset,
        "channel": alert.channel,
        "severity": alert.severity,
        "kind": alert.kind,
        "message": alert.message,
        "t": alert.t,
        "time_text": time_text(alert.t, zone),
    }


def open_alert_json(open_alert: OpenAlert, zone: tzinfo) -> dict[str, Any]:
    out = alert_json(open_alert.alert, zone)
    out["id"] = open_alert.id
    ack = open_alert.ack
    out["ack"] = None if ack is None else {**asdict(ack), "at_text": time_text(ack.at, zone)}
    return out


def store_json(st: StoreSnapshot | None) -> dict[str, Any] | None:
    if st is None:
        return None
    return {
        "bytes": st.bytes,
        "bytes_text": size(st.bytes),
        "rows_written": st.rows_written,
        "evicted": st.evicted,
        "lost_before_delivery": st.lost_before_delivery,
        "write_errors": st.write_errors,
    }


def uplink_json(up: UplinkSnapshot | None) -> dict[str, Any] | None:
    if up is None:
        return None
    return {
        "broker": up.broker,
        "connected": up.connected,
        "state": up.state,
        "backlog_records": up.backlog_records,
        "backlog_age_s": up.backlog_age_s,
        "backlog_age_text": duration(up.backlog_age_s) if up.backlog_age_s else None,
        "acked_seq": up.acked_seq,
        "last_seq": up.last_seq,
        "reconnects": up.reconnects,
        "last_error": up.last_error,
    }


def sms_json(sms: SmsSnapshot | None) -> dict[str, Any] | None:
    if sms is None:
        return None
    modem = sms.modem
    return {
        "emulated": sms.emulated,
        "queued": sms.queued,
        "sent": sms.sent,
        "given_up": sms.given_up,
        "modem_ready": modem.ready,
        "registration": modem.registration,
        "signal_dbm": modem.signal_dbm,
        "operator": modem.operator,
        "last_error": sms.last_send_error or modem.last_error,
    }


def models_json(status: ModelsSnapshot | None, zone: tzinfo) -> dict[str, Any]:
    """Which model each asset uses and where from, what a rollback restores, the counters and
    the newest outcomes first."""
    if status is None:
        return {"enabled": False}
    outcomes = list(status.outcomes)[-RECENT_MODEL_OUTCOMES_SHOWN:]
    return {
        "enabled": True,
        "assets": {
            asset: {
                "active": model,
                "origin": status.origin.get(asset),
                "previous": status.previous.get(asset),
            }
            for asset, model in status.active.items()
        },
        "installs": status.installs,
        "refusals": status.refusals,
        "rollbacks": status.rollbacks,
        "automatic_rollbacks": status.automatic_rollbacks,
        "outcomes": [outcome_json(o, zone) for o in reversed(outcomes)],
    }


def outcome_json(o: OutcomeView, zone: tzinfo) -> dict[str, Any]:
    return {
        "accepted": o.accepted,
        "action": o.action,
        "source": o.source,
        "asset": o.asset,
        "model": o.model,
        "message": o.message,
        "at": o.at,
        "at_text": time_text(o.at, zone),
    }
