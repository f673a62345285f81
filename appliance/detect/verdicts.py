"""Operators' verdicts on anomaly episodes: "this was not a fault" / "this was a real fault".

`EpisodeVerdicts` keeps them (in the store's episode_verdicts, with their alert record in the
outbox, one transaction: DetectorStates.add_verdict) and hands each new "not a fault" to the
detect stage, the one owner of the detectors. There, before the asset's next window is scored,
`apply_not_a_fault` teaches the adaptive threshold that the episode's windows were normal (their
errors join the baseline, so the next windows like them stop alarming) and, if the episode is
still open, clears it with an anomaly_cleared alert that says why. `EpisodeErrors` keeps the
errors of each asset's recent episodes for that (bounded; in memory, so a verdict on an episode
from before a restart is kept and sent but teaches the threshold nothing).

A "real fault" changes nothing on the gateway; like every verdict it labels the episode's
windows for training (`appliance train`, the receiver's export).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

import structlog

from appliance.detect.acks import check_name
from appliance.detect.scorer import AssetDetector, CommissionedDuringWarmup
from appliance.records import Alert, EpisodeVerdict, Score, Severity
from appliance.store import DetectorStates
from appliance.uplink.schema.verdicts import VERDICT_WORDS, verdict_alert

log = structlog.get_logger(__name__)

MAX_NOTE_CHARS = 200
EPISODES_KEPT = 8
"""Recent episodes per asset whose errors are kept for a verdict."""
ERRORS_KEPT = 1000
"""Errors kept per episode (the adaptive baseline's default window): the latest ones."""


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
        self._pending: dict[str, list[EpisodeVerdict]] = {}
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
            self._pending.setdefault(verdict.asset, []).append(verdict)
        log.info(
            "episode_judged", asset=verdict.asset, raised_t=verdict.raised_t,
            verdict=verdict.verdict, by=verdict.by,
        )  # fmt: skip
        return verdict

    def take_pending(self, asset: str) -> list[EpisodeVerdict]:
        """The "not a fault" verdicts on `asset` not yet applied (the detect stage's inbox)."""
        return self._pending.pop(asset, [])


def check_note(note: str) -> str:
    if len(note) > MAX_NOTE_CHARS:
        raise ValueError(f"note: must be at most {MAX_NOTE_CHARS} characters, got {len(note)}")
    if not note.isprintable():
        raise ValueError("note: must be printable text")
    return note


class EpisodeErrors:
    """The errors of each asset's recent alarm episodes, by raise time (the detect stage's)."""

    def __init__(self) -> None:
        self._episodes: dict[str, OrderedDict[float, list[float]]] = {}

    def record(self, detector: AssetDetector, scored: object) -> None:
        """After a window: keep its error if `scored` (the window's last record) is its Score
        and the window belongs to an open episode."""
        alarm = detector.alarm
        if not (isinstance(scored, Score) and alarm.active and math.isfinite(scored.error)):
            return
        error = scored.error
        episodes = self._episodes.setdefault(detector.asset, OrderedDict())
        errors = episodes.setdefault(alarm.since, [])
        errors.append(error)
        if len(errors) > ERRORS_KEPT:
            del errors[0]
        while len(episodes) > EPISODES_KEPT:
            episodes.popitem(last=False)

    def of(self, asset: str, raised_t: float) -> list[float]:
        episodes = self._episodes.get(asset)
        return list(episodes.get(raised_t, [])) if episodes is not None else []


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
        else "the threshold learnt nothing from it (fixed threshold, or its windows are not "
        "kept since a restart)"
    )
    message = (
        f"{verdict.asset}: anomaly cleared: {verdict.by} said it was "
        f"{VERDICT_WORDS[verdict.verdict]}; {taught}"
    )
    return Alert(verdict.asset, t, severity, "anomaly_cleared", message)
