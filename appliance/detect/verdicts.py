"""Operators' verdicts on anomaly episodes: "this was not a fault" / "this was a real fault".

`EpisodeVerdicts` keeps them (in the store's episode_verdicts, with their alert record in the
outbox, one transaction: DetectorStates.add_verdict) and hands each new "not a fault" to the
detect stage, the one owner of the detectors. There, before the asset's next window is scored,
`apply_not_a_fault` teaches the adaptive threshold that the episode's windows were normal (their
errors join the baseline, so the next windows like them stop alarming) and, if the episode is
still open, clears it with an anomaly_cleared alert that says why. The episode's errors come
from two places, merged by window time: `EpisodeErrors`, the detect stage's memory of each
asset's recent episodes (bounded; what the store writer may not have written yet), and the
store's scores, read when the verdict is given (the windows from before a restart).

A "real fault" changes nothing on the gateway; like every verdict it labels the episode's
windows for training (`appliance train`, the receiver's export).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import structlog

from appliance.detect.acks import check_name
from appliance.detect.scorer import AssetDetector, CommissionedDuringWarmup
from appliance.errors import StoreError
from appliance.records import Alert, EpisodeVerdict, Score, Severity
from appliance.store import DetectorStates
from appliance.uplink.schema.verdicts import VERDICT_WORDS, verdict_alert

log = structlog.get_logger(__name__)

MAX_NOTE_CHARS = 200
EPISODES_KEPT = 8
"""Recent episodes per asset whose errors are kept for a verdict."""
ERRORS_KEPT = 1000
"""Errors kept per episode (the adaptive baseline's default window): the latest ones."""

TimedError = tuple[float, float]
"""(window time, error) of one scored window."""


@dataclass(frozen=True, slots=True)
class FalseAlarm:
    """A first "not a fault" on an episode, for the detect stage, with the episode's errors the
    store held when it was given."""

    verdict: EpisodeVerdict
    stored_errors: tuple[TimedError, ...] = ()


class EpisodeVerdicts:
    """The verdicts by (asset, raise time); with a store they are durable (without one, tests
    and a page without an alert stage, they live in memory)."""

    def __init__(
        self,
        store: DetectorStates | None = None,
        on_stored: Callable[[], None] | None = None,
        stored: Iterable[EpisodeVerdict] = (),
    ) -> None:
        """`on_stored` is called once a verdict's record is in the outbox (it wakes the uplink)."""
        self._store = store
        self._on_stored = on_stored
        self._verdicts = {(v.asset, v.raised_t): v for v in stored}
        self._pending: dict[str, list[FalseAlarm]] = {}
        self._taught: set[tuple[str, float]] = set()
        """Episodes already handed to the detect stage: a false alarm teaches the threshold once."""

    @classmethod
    async def load(
        cls, store: DetectorStates, on_stored: Callable[[], None] | None = None
    ) -> EpisodeVerdicts:
        return cls(store, on_stored, await store.verdicts())

    def of(self, asset: str, raised_t: float) -> EpisodeVerdict | None:
        return self._verdicts.get((asset, raised_t))

    async def judge(self, verdict: EpisodeVerdict, severity: Severity) -> EpisodeVerdict:
        """Keep `verdict` on the episode it names (`severity`: the one the episode reached),
        send it, and, the first time it says "not a fault", hand it to the detect stage (a
        later "real fault" does not undo what the threshold learnt). ValueError
        naming the field if `by` or `note` is not short printable text; StoreError (nothing
        kept) if the store fails."""
        check_name(verdict.by)
        check_note(verdict.note)
        if self._store is not None:
            await self._store.add_verdict(verdict, verdict_alert(verdict, severity))
            if self._on_stored is not None:
                self._on_stored()
        episode = (verdict.asset, verdict.raised_t)
        self._verdicts[episode] = verdict
        if verdict.verdict == "not_a_fault" and episode not in self._taught:
            self._taught.add(episode)
            false_alarm = FalseAlarm(verdict, await self._stored_errors(verdict))
            self._pending.setdefault(verdict.asset, []).append(false_alarm)
        log.info(
            "episode_judged", asset=verdict.asset, raised_t=verdict.raised_t,
            verdict=verdict.verdict, by=verdict.by,
        )  # fmt: skip
        return verdict

    def take_pending(self, asset: str) -> list[FalseAlarm]:
        """The "not a fault" verdicts on `asset` not yet applied (the detect stage's inbox)."""
        return self._pending.pop(asset, [])

    async def _stored_errors(self, verdict: EpisodeVerdict) -> tuple[TimedError, ...]:
        """The episode's windows in the store; none (logged) if it cannot be read: the verdict
        is kept all the same and teaches what the detect stage still holds."""
        if self._store is None:
            return ()
        try:
            errors = await self._store.episode_errors(verdict.asset, verdict.raised_t, ERRORS_KEPT)
        except StoreError as exc:
            log.error(
                "episode_errors_unreadable", asset=verdict.asset, raised_t=verdict.raised_t,
                reason=str(exc),
            )  # fmt: skip
            return ()
        return tuple(errors)


def check_note(note: str) -> str:
    if len(note) > MAX_NOTE_CHARS:
        raise ValueError(f"note: must be at most {MAX_NOTE_CHARS} characters, got {len(note)}")
    if not note.isprintable():
        raise ValueError("note: must be printable text")
    return note


class EpisodeErrors:
    """The errors of each asset's recent alarm episodes, by raise time (the detect stage's)."""

    def __init__(self) -> None:
        self._episodes: dict[str, OrderedDict[float, list[TimedError]]] = {}

    def record(self, detector: AssetDetector, scored: object) -> None:
        """After a window: keep its error if `scored` (the window's last record) is its Score
        and the window belongs to an open episode."""
        alarm = detector.alarm
        if not (isinstance(scored, Score) and alarm.active and math.isfinite(scored.error)):
            return
        episodes = self._episodes.setdefault(detector.asset, OrderedDict())
        errors = episodes.setdefault(alarm.since, [])
        errors.append((scored.t, scored.error))
        if len(errors) > ERRORS_KEPT:
            del errors[0]
        while len(episodes) > EPISODES_KEPT:
            episodes.popitem(last=False)

    def of(self, false_alarm: FalseAlarm) -> list[float]:
        """The errors of the episode `false_alarm` names, oldest first, the latest ERRORS_KEPT:
        the store's and those kept here, one per window."""
        verdict = false_alarm.verdict
        episodes = self._episodes.get(verdict.asset)
        kept = episodes.get(verdict.raised_t, []) if episodes is not None else []
        by_t = dict(false_alarm.stored_errors) | dict(kept)
        return [by_t[t] for t in sorted(by_t)][-ERRORS_KEPT:]


def apply_not_a_fault(
    detector: AssetDetector, verdict: EpisodeVerdict, errors: Sequence[float], t: float
) -> Alert | None:
    """Teach `detector`'s adaptive threshold that the episode's `errors` were normal, and close
    the episode if it is still open (at `t`, the window about to be scored): the
    anomaly_cleared alert, or None if the episode had already cleared."""
    threshold = detector.threshold
    learnt = 0
    if isinstance(threshold, CommissionedDuringWarmup):
        learnt = threshold.adaptive.admit(errors)
    log.info(
        "threshold_rebaselined_by_verdict", asset=verdict.asset, raised_t=verdict.raised_t,
        errors_admitted=learnt, threshold=threshold.current(),
    )  # fmt: skip
    alarm = detector.alarm
    if alarm.severity is None or alarm.since != verdict.raised_t:
        return None
    severity = alarm.severity
    alarm.align(None, math.nan)
    taught = (
        f"the threshold learnt {learnt} of its windows as normal"
        if learnt
        else "the threshold learnt nothing from it (a fixed threshold, or none of its windows "
        "is stored)"
    )
    message = (
        f"{verdict.asset}: anomaly cleared: {verdict.by} said it was "
        f"{VERDICT_WORDS[verdict.verdict]}; {taught}"
    )
    return Alert(verdict.asset, t, severity, "anomaly_cleared", message)
