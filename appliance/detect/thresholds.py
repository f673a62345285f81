"""Thresholds on the model's reconstruction error (pure: values in, values out).

Two rules share one small interface (`Threshold`):

- `FixedThreshold`: one value calibrated at commissioning (`calibrate_fixed`: a high quantile of
  the errors on normal data, times a margin).
- `AdaptiveThreshold`: centre + k * spread over a ring of recent *admitted* errors, where centre and
  spread are mean and standard deviation, or median and 1.4826 * MAD (the robust option).

Each step is strictly causal and runs in this order (`appliance.detect.alarms.decide`):

    threshold = rule.current()                # from errors before this step only
    decision  = alarm.update(t, error, threshold)
    rule.observe(error, alarmed=decision.anomalous)

`observe` admits the error into the baseline only when it is not alarmed and not above the
threshold: a long anomaly cannot teach the threshold that it is normal (the seed design's rule
admitted everything and so cleared itself during long anomalies). The price is that a lasting
change of operating point would stay alarmed for ever: once the error has moved up, nothing is
admitted again, so the threshold never moves again either (SKAB valve1 files 0, 2, 8 and 12: the
whole normal segment after the anomaly stayed alarmed). Re-baselining ends that: when at least
`rebaseline_share` of the last `rebaseline_after` errors were refused (1: every one, in a row),
the baseline is replaced by them, the level the error has held for that long
(docs/DETECTION.md). With share 1 the run "in a row" has a hysteresis: it ends only after
`rebaseline_reset` admitted errors in a row, and once it has held such a short return it
re-baselines after `rebaseline_after_return` refused errors (an alarm that lets go briefly
inside an anomaly does not restart the count). An alarm has been raised by then; what the
re-baselining gives up is holding it, not raising it.

Warm-up: while the ring holds fewer than `warmup` errors, `current()` is None (no decision) and
every finite error is admitted. Seeding the ring with a commissioning baseline, or restoring
persisted state, carries the admitted errors over, so no warm-up is repeated.

The floor keeps a very quiet baseline (spread near 0) from producing a hair trigger: the threshold
is never below `floor_ratio` times the reference (commissioning) threshold.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Literal, Protocol, TypeGuard, get_args

import numpy as np

from appliance.records import FloatArray

Statistic = Literal["mean_std", "median_mad"]
STATE_VERSION = 1
MAD_TO_SIGMA = 1.4826
"""Scales the median absolute deviation to the standard deviation of normally distributed data."""


class Threshold(Protocol):
    """What the scorer needs from a threshold rule."""

    def current(self) -> float | None:
        """Threshold for the next error, computed from earlier errors; None while warming up."""
        ...

    def observe(self, error: float, *, alarmed: bool) -> bool:
        """Offer the error just decided on to the baseline; True if it was admitted."""
        ...


@dataclass(frozen=True, slots=True)
class FixedThreshold:
    """A threshold that never moves."""

    value: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.value) and self.value > 0):
            raise ValueError(f"value: must be finite and positive, got {self.value}")

    def current(self) -> float:
        return self.value

    def observe(self, error: float, *, alarmed: bool) -> bool:
        return False


def calibrate_fixed(
    errors: Iterable[float], quantile: float = 0.995, margin: float = 1.0
) -> FixedThreshold:
    """The `quantile` of errors measured on normal data, times `margin`."""
    values = _finite_array(errors, "errors")
    if len(values) == 0:
        raise ValueError("errors: need at least one finite error to calibrate")
    if not 0.0 < quantile <= 1.0:
        raise ValueError(f"quantile: must be in (0, 1], got {quantile}")
    if not margin > 0.0:
        raise ValueError(f"margin: must be positive, got {margin}")
    return FixedThreshold(float(np.quantile(values, quantile)) * margin)


@dataclass(frozen=True, slots=True)
class AdaptiveSettings:
    """How the adaptive threshold learns; defaults are to be confirmed by measurement on SKAB."""

    window: int = 1000
    """Most recent admitted errors kept in the baseline ring."""
    warmup: int = 100
    """Admitted errors needed before the first decision."""
    k: float = 4.0
    """Threshold = centre + k * spread."""
    statistic: Statistic = "median_mad"
    floor_ratio: float = 0.8
    """The threshold is never below floor_ratio * reference (when a reference is given)."""
    gate_baseline: bool = True
    """False reproduces the seed design's rule (every error joins the baseline); for comparison."""
    rebaseline_after: int = 0
    """Length of the trailing span of errors that can replace the baseline (0: never)."""
    rebaseline_share: float = 1.0
    """Re-baseline when at least this share of that span was refused (1: all, in a row): a
    few windows admitted during a lasting change do not start the count again."""
    rebaseline_reset: int = 1
    """With share 1: admitted errors in a row that end a run of refused ones (1: any admitted
    error, the run is "in a row"); a shorter return inside the run does not restart its count."""
    rebaseline_after_return: int = 0
    """Refused errors that re-baseline a run that such a short return interrupted (0: as many
    as rebaseline_after)."""

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError(f"window: must be at least 2, got {self.window}")
        if not 1 <= self.warmup <= self.window:
            raise ValueError(f"warmup: must be in [1, window={self.window}], got {self.warmup}")
        if not (math.isfinite(self.k) and self.k > 0):
            raise ValueError(f"k: must be finite and positive, got {self.k}")
        if self.statistic not in get_args(Statistic):
            raise ValueError(f"statistic: must be one of {get_args(Statistic)}")
        if not (math.isfinite(self.floor_ratio) and self.floor_ratio >= 0):
            raise ValueError(f"floor_ratio: must be finite and >= 0, got {self.floor_ratio}")
        after = self.rebaseline_after
        if after != 0 and not self.warmup <= after <= self.window:
            raise ValueError(
                f"rebaseline_after: must be 0 or in [warmup={self.warmup}, window={self.window}],"
                f" got {after}"
            )
        if not 0.0 < self.rebaseline_share <= 1.0:
            raise ValueError(f"rebaseline_share: must be in (0, 1], got {self.rebaseline_share}")
        if self.rebaseline_reset < 1:
            raise ValueError(f"rebaseline_reset: must be at least 1, got {self.rebaseline_reset}")
        back = self.rebaseline_after_return
        if back != 0 and not (after != 0 and self.warmup <= back <= after):
            raise ValueError(
                f"rebaseline_after_return: must be 0 or in [warmup={self.warmup},"
                f" rebaseline_after={after}] with rebaseline_after on, got {back}"
            )

    @property
    def rebaseline_refusals(self) -> int:
        """Refused errors in the span that make it a candidate baseline."""
        return math.ceil(self.rebaseline_share * self.rebaseline_after - 1e-9)


class AdaptiveThreshold:
    """centre + k * spread over a ring of admitted errors, floored by the reference threshold."""

    def __init__(
        self,
        settings: AdaptiveSettings,
        reference: float | None = None,
        baseline: Iterable[float] = (),
    ) -> None:
        """`reference`: the commissioning (fixed) threshold the floor is relative to.

        `baseline`: errors on known-normal data, oldest first (e.g. the commissioning period);
        they fill the ring as if observed, so at least `warmup` of them skip the warm-up.
        """
        if reference is not None and not (math.isfinite(reference) and reference > 0):
            raise ValueError(f"reference: must be finite and positive, got {reference}")
        self.settings = settings
        self.reference = reference
        self._ring = np.zeros(settings.window)
        self._count = 0
        self._next_slot = 0
        self._cached: float | None = None
        self._span: deque[tuple[float, bool]] = deque(maxlen=settings.rebaseline_after or 1)
        """The last rebaseline_after errors offered, each with whether it was refused."""
        self._span_refused = 0
        self._run = RefusedRun()
        for error in _finite_array(baseline, "baseline")[-settings.window :]:
            self._admit(float(error))

    @property
    def warming_up(self) -> bool:
        return self._count < self.settings.warmup

    @property
    def floor(self) -> float:
        return 0.0 if self.reference is None else self.settings.floor_ratio * self.reference

    def baseline(self) -> FloatArray:
        """The admitted errors in the ring, oldest first (a copy)."""
        if self._count < self.settings.window:
            return self._ring[: self._count].copy()
        return np.roll(self._ring, -self._next_slot)

    def current(self) -> float | None:
        if self.warming_up:
            return None
        if self._cached is None:
            self._cached = max(self._statistical_threshold(), self.floor)
        return self._cached

    def observe(self, error: float, *, alarmed: bool) -> bool:
        if not math.isfinite(error):
            return False
        refused = bool(self.settings.gate_baseline and self._excluded(error, alarmed))
        if not refused:
            self._admit(error)
        if self.settings.rebaseline_after:
            self._remember(error, refused)
            if refused and self._lasting_change():
                self._rebaseline()
        return not refused

    def refused_run(self) -> list[float]:
        """The errors refused since the last admitted one, oldest first (a copy; only kept when
        re-baselining is on)."""
        run: list[float] = []
        for error, refused in reversed(self._span):
            if not refused:
                break
            run.append(error)
        return run[::-1]

    @property
    def run(self) -> RefusedRun:
        """The current run of refused errors (with share 1; short returns kept inside it)."""
        return self._run

    def admit(self, errors: Iterable[float]) -> int:
        """Take `errors` into the baseline as normal, oldest first, whatever the gate said of
        them (an operator's "not a fault": appliance/detect/verdicts.py); the number taken (the
        finite ones, at most `window`)."""
        taken = [float(error) for error in errors if math.isfinite(error)]
        for error in taken[-self.settings.window :]:
            self._admit(error)
        return min(len(taken), self.settings.window)

    def to_state(self) -> dict[str, object]:
        """JSON-able state; `from_state` continues exactly where this left off."""
        return {
            "version": STATE_VERSION,
            "kind": "adaptive_threshold",
            "settings": asdict(self.settings),
            "reference": self.reference,
            "baseline": [float(v) for v in self.baseline()],
            "span": [[error, refused] for error, refused in self._span],
            "run": asdict(self._run),
        }

    @classmethod
    def from_state(cls, state: Mapping[str, object]) -> AdaptiveThreshold:
        """Rebuild from `to_state()`; ValueError naming the field if anything is off."""
        check_state_header(state, "adaptive_threshold")
        settings = _settings_from_state(state.get("settings"))
        reference = state.get("reference")
        if reference is not None and not is_number(reference):
            raise ValueError("reference: must be a number or null")
        baseline = state.get("baseline")
        if not isinstance(baseline, list) or not all(is_number(v) for v in baseline):
            raise ValueError("baseline: must be a list of numbers")
        if len(baseline) > settings.window:
            raise ValueError(f"baseline: {len(baseline)} values exceed window {settings.window}")
        if not all(math.isfinite(v) for v in baseline):
            raise ValueError("baseline: values must be finite")
        span = _span_from_state(state)
        if len(span) > settings.rebaseline_after:
            raise ValueError(f"span: {len(span)} errors exceed rebaseline_after")
        threshold = cls(settings, None if reference is None else float(reference), baseline)
        for error, refused in span:
            threshold._remember(error, refused)
        if "run" in state:
            threshold._run = _run_from_state(state["run"])
        return threshold

    def _excluded(self, error: float, alarmed: bool) -> bool:
        threshold = self.current()
        return alarmed or (threshold is not None and error > threshold)

    def _remember(self, error: float, refused: bool) -> None:
        if len(self._span) == self._span.maxlen and self._span[0][1]:
            self._span_refused -= 1
        self._span.append((error, refused))
        self._span_refused += refused
        self._run.offer(refused, self.settings.rebaseline_reset)

    def _lasting_change(self) -> bool:
        settings = self.settings
        if settings.rebaseline_share < 1.0:
            full = len(self._span) == settings.rebaseline_after
            return full and self._span_refused >= settings.rebaseline_refusals
        needed = settings.rebaseline_after
        if self._run.returned and settings.rebaseline_after_return:
            needed = settings.rebaseline_after_return
        return self._run.refused >= needed

    def _rebaseline(self) -> None:
        # The error has held this level for the whole run: that is the normal now.
        self._count = 0
        self._next_slot = 0
        since_run = self._span if self.settings.rebaseline_share < 1.0 else self._run_tail()
        for error, _ in since_run:
            self._admit(error)
        self._span.clear()
        self._span_refused = 0
        self._run = RefusedRun()

    def _run_tail(self) -> list[tuple[float, bool]]:
        """The span's errors offered since the run began (at most the whole span)."""
        length = min(self._run.length, len(self._span))
        return list(self._span)[len(self._span) - length :]

    def _admit(self, error: float) -> None:
        self._ring[self._next_slot] = error
        self._next_slot = (self._next_slot + 1) % self.settings.window
        self._count = min(self._count + 1, self.settings.window)
        self._cached = None

    def _statistical_threshold(self) -> float:
        # Oldest first, as persisted: a restored ring then sums in the same order, bit for bit.
        values = self.baseline()
        if self.settings.statistic == "mean_std":
            return float(values.mean() + self.settings.k * values.std())
        median = float(np.median(values))
        mad = float(np.median(np.abs(values - median)))
        return median + self.settings.k * MAD_TO_SIGMA * mad


@dataclass(slots=True)
class RefusedRun:
    """A run of refused errors, which short returns (fewer admitted errors in a row than the
    reset) interrupt without ending; persisted with the threshold."""

    refused: int = 0
    """Refused errors in the run."""
    length: int = 0
    """Errors offered since the run's first refused one, the admitted ones of returns too."""
    admitted_in_a_row: int = 0
    """Admitted errors since the last refused one."""
    returned: bool = False
    """Whether an admitted error has come inside the run (a short return)."""

    def offer(self, refused: bool, reset: int) -> None:
        if refused:
            self.returned = self.returned or self.admitted_in_a_row > 0
            self.refused += 1
            self.length += 1
            self.admitted_in_a_row = 0
            return
        if self.refused == 0:
            return
        self.admitted_in_a_row += 1
        self.length += 1
        if self.admitted_in_a_row >= reset:
            self.refused = self.length = self.admitted_in_a_row = 0
            self.returned = False


def _run_from_state(raw: object) -> RefusedRun:
    if not isinstance(raw, dict) or set(raw) != set(RefusedRun.__dataclass_fields__):
        raise ValueError(f"run: expected keys {sorted(RefusedRun.__dataclass_fields__)}")
    counts = [raw[name] for name in ("refused", "length", "admitted_in_a_row")]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
        raise ValueError("run: refused, length and admitted_in_a_row must be integers >= 0")
    if not isinstance(raw["returned"], bool):
        raise ValueError("run.returned: must be true or false")
    return RefusedRun(**raw)


def _finite_array(values: Iterable[float], name: str) -> FloatArray:
    array = np.asarray(list(values), dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name}: must be a flat sequence of numbers")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name}: values must be finite")
    return array


def is_number(value: object) -> TypeGuard[int | float]:
    """A JSON number (bool is an int to Python but not a number here)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_state_header(state: Mapping[str, object], kind: str) -> None:
    """Shared by the persisted states of the detect modules: version and kind must match."""
    if state.get("version") != STATE_VERSION:
        raise ValueError(f"version: expected {STATE_VERSION}, got {state.get('version')!r}")
    if state.get("kind") != kind:
        raise ValueError(f"kind: expected {kind!r}, got {state.get('kind')!r}")


def _span_from_state(state: Mapping[str, object]) -> list[tuple[float, bool]]:
    if "span" not in state:  # saved when only the run of refused errors was kept
        refused = state.get("refused", [])
        if not isinstance(refused, list):
            raise ValueError("refused: must be a list of numbers")
        state = {"span": [[error, True] for error in refused]}
    raw = state["span"]
    if not isinstance(raw, list):
        raise ValueError("span: must be a list")
    span: list[tuple[float, bool]] = []
    for entry in raw:
        if not (isinstance(entry, list) and len(entry) == 2):
            raise ValueError("span: each entry must be [error, refused]")
        error, refused = entry
        if not (is_number(error) and math.isfinite(error) and isinstance(refused, bool)):
            raise ValueError("span: each entry must be [finite number, true|false]")
        span.append((float(error), refused))
    return span


def _settings_from_state(raw: object) -> AdaptiveSettings:
    if not isinstance(raw, dict):
        raise ValueError("settings: must be an object")
    expected = set(AdaptiveSettings.__dataclass_fields__)
    raw = dict(raw)
    # States saved before re-baselining, or its share, existed:
    raw.setdefault("rebaseline_after", 0)
    raw.setdefault("rebaseline_share", 1.0)
    raw.setdefault("rebaseline_reset", 1)
    raw.setdefault("rebaseline_after_return", 0)
    if set(raw) != expected:
        raise ValueError(f"settings: expected keys {sorted(expected)}, got {sorted(raw)}")
    for name in (
        "window",
        "warmup",
        "rebaseline_after",
        "rebaseline_reset",
        "rebaseline_after_return",
    ):
        if not isinstance(raw[name], int) or isinstance(raw[name], bool):
            raise ValueError(f"settings.{name}: must be an integer")
    for name in ("k", "floor_ratio", "rebaseline_share"):
        if not is_number(raw[name]):
            raise ValueError(f"settings.{name}: must be a number")
    if not isinstance(raw["gate_baseline"], bool):
        raise ValueError("settings.gate_baseline: must be true or false")
    try:
        return AdaptiveSettings(**raw)
    except ValueError as error:
        raise ValueError(f"settings.{error}") from None
