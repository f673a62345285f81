"""On-gateway commissioning: learn normal from a stream, bounded memory, persistence, replay."""

from __future__ import annotations

import json
import math
import sys
from array import array
from collections.abc import Iterable, Iterator

import numpy as np
import pytest
from structlog.testing import capture_logs

from appliance.detect.commissioning import (
    CommissionedModel,
    Commissioner,
    CommissioningSettings,
    LinearModel,
)
from appliance.detect.scorer import AssetDetector, DetectorSettings, build_threshold
from appliance.records import FeatureVector, FloatArray
from appliance.training.synthetic import T0_UTC, LatentFactorSource

ASSET = "pump-1"
SETTINGS = CommissioningSettings(period_s=2000.0, min_windows=200)


@pytest.fixture(scope="module")
def source() -> LatentFactorSource:
    return LatentFactorSource.create(seed=7, n_features=12, n_factors=3)


def vectors(
    source: LatentFactorSource, rows: FloatArray, start: float = T0_UTC
) -> list[FeatureVector]:
    """One vector per row, 1 s apart from `start`."""
    return [
        FeatureVector(ASSET, start + i, source.feature_names, row) for i, row in enumerate(rows)
    ]


def normal_stream(source: LatentFactorSource, seed: int, n: int) -> list[FeatureVector]:
    return vectors(source, source.normal_rows(np.random.default_rng(seed), n))


def commission(
    stream: Iterable[FeatureVector], settings: CommissioningSettings = SETTINGS
) -> tuple[Commissioner, CommissionedModel | None]:
    commissioner = Commissioner(ASSET, settings, started_at=T0_UTC)
    result = None
    for vector in stream:
        result = commissioner.offer(vector)
    return commissioner, result


def full_period(source: LatentFactorSource, seed: int = 1) -> list[FeatureVector]:
    """Windows from started_at up to and including ends_at."""
    return normal_stream(source, seed, int(SETTINGS.period_s) + 1)


def break_features(source: LatentFactorSource, rows: FloatArray, columns: list[int]) -> FloatArray:
    """Move `columns` by 6 typical spreads: the correlations with the others break."""
    spread = source.unit * np.sqrt((source.mixing**2).sum(axis=0) + source.noise**2)
    broken = rows.copy()
    broken[:, columns] += 6.0 * spread[columns]
    return broken


def test_commissions_at_the_end_of_the_period_and_separates_normal_from_broken(
    source: LatentFactorSource,
) -> None:
    stream = full_period(source)
    commissioner = Commissioner(ASSET, SETTINGS, started_at=T0_UTC)
    results = [commissioner.offer(vector) for vector in stream]

    assert all(r is None for r in results[:-1])
    commissioned = results[-1]
    assert commissioned is not None
    model = commissioned.model
    assert model.model_id.startswith(f"commissioned-{ASSET}-2026")
    assert model.feature_names == source.feature_names
    assert 0 < model.components.shape[1] < len(source.feature_names)
    assert commissioned.fit_windows + commissioned.calibration_windows == len(stream)
    assert len(commissioned.seed_errors) == commissioned.calibration_windows
    assert commissioner.progress().phase == "commissioned"

    rng = np.random.default_rng(2)
    normal, _ = model.errors(source.normal_rows(rng, 2000))
    broken, _ = model.errors(break_features(source, source.normal_rows(rng, 200), [2, 7]))
    assert np.mean(normal > commissioned.fixed_threshold) < 0.02
    assert np.all(broken > commissioned.fixed_threshold)
    assert np.median(broken) > 10 * commissioned.fixed_threshold


def test_everything_louder_in_proportion_shows_although_the_correlations_hold(
    source: LatentFactorSource,
) -> None:
    """The clipped coordinates: a change along the learnt subspace (imbalance makes every
    vibration feature grow together) leaves a residual once it is beyond the learnt spread."""
    _, commissioned = commission(full_period(source))
    assert commissioned is not None
    model = commissioned.model
    rng = np.random.default_rng(5)
    normal = source.normal_rows(rng, 200)
    scaled = (normal - model.mean) / model.scale
    inside = scaled @ model.components @ model.components.T
    louder = model.mean + (8.0 * inside + (scaled - inside)) * model.scale
    errors, _ = model.errors(louder)
    assert np.mean(errors > commissioned.fixed_threshold) > 0.9


def test_progress_names_the_phases(source: LatentFactorSource) -> None:
    stream = full_period(source)
    commissioner = Commissioner(ASSET, SETTINGS, started_at=T0_UTC)
    fit_at = T0_UTC + SETTINGS.fit_fraction * SETTINGS.period_s
    phases = []
    for vector in stream:
        commissioner.offer(vector)
        phases.append(commissioner.progress().phase)

    learning = sum(v.window_end < fit_at for v in stream)
    assert phases[:learning] == ["learning normal"] * learning
    assert set(phases[learning:-1]) == {"calibrating threshold"}
    progress = commissioner.progress()
    assert progress.windows == len(stream)
    assert (progress.started_at, progress.ends_at) == (T0_UTC, T0_UTC + SETTINGS.period_s)
    assert progress.waiting_for == 0
    assert "2026-01-01T00:00:00Z" in progress.describe()


def test_the_commissioned_model_scores_through_the_asset_detector(
    source: LatentFactorSource,
) -> None:
    _, commissioned = commission(full_period(source))
    assert commissioned is not None
    settings = DetectorSettings()
    threshold = build_threshold(commissioned.model, settings, commissioned.seed_errors)
    detector = AssetDetector(ASSET, commissioned.model, settings, threshold)

    rng = np.random.default_rng(3)
    quiet = [detector.score_vector(v) for v in vectors(source, source.normal_rows(rng, 300), 1e9)]
    broken_rows = break_features(source, source.normal_rows(rng, 3), [2, 7])
    broken = [detector.score_vector(v) for v in vectors(source, broken_rows, 2e9)]

    assert sum(v.score.anomalous for v in quiet) <= 3
    assert all(v.score.anomalous for v in broken)
    assert {v.score.model_id for v in quiet} == {commissioned.model.model_id}
    assert {"feature_02", "feature_07"} <= set(broken[0].score.contributors)


def test_a_constant_feature_does_not_explode_and_its_change_shows(
    source: LatentFactorSource,
) -> None:
    names = (*source.feature_names, "speed_setpoint")
    rows = source.normal_rows(np.random.default_rng(4), int(SETTINGS.period_s) + 1)
    with_constant = np.column_stack([rows, np.full(len(rows), 1450.0)])
    stream = [FeatureVector(ASSET, T0_UTC + i, names, r) for i, r in enumerate(with_constant)]
    _, commissioned = commission(stream)
    assert commissioned is not None

    fresh = source.normal_rows(np.random.default_rng(5), 500)
    normal, _ = commissioned.model.errors(np.column_stack([fresh, np.full(500, 1450.0)]))
    changed, _ = commissioned.model.errors(np.column_stack([fresh[:5], np.full(5, 1500.0)]))
    assert np.isfinite(normal).all()
    assert np.mean(normal > commissioned.fixed_threshold) < 0.02
    assert np.all(changed > 10 * commissioned.fixed_threshold)


def held_bytes(value: object, seen: set[int] | None = None) -> int:
    """Bytes an object holds, following attributes and containers (arrays by their data)."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return 0
    seen.add(id(value))
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, array):
        return value.itemsize * len(value)
    if isinstance(value, list | tuple | set | frozenset):
        return sys.getsizeof(value) + sum(held_bytes(v, seen) for v in value)
    if isinstance(value, dict):
        return sys.getsizeof(value) + sum(held_bytes(v, seen) for v in value.values())
    if hasattr(value, "__dict__"):
        return sum(held_bytes(v, seen) for v in vars(value).values())
    return sys.getsizeof(value)


def test_learning_holds_no_per_window_state_and_calibration_one_float_per_window(
    source: LatentFactorSource,
) -> None:
    settings = CommissioningSettings(period_s=100_000.0, min_windows=200, fit_fraction=0.1)
    stream = iter(normal_stream(source, 6, 30_000))
    commissioner = Commissioner(ASSET, settings, started_at=T0_UTC)

    def offer(count: int, stream: Iterator[FeatureVector] = stream) -> int:
        for _ in range(count):
            commissioner.offer(next(stream))
        return held_bytes(commissioner)

    after_1000 = offer(1000)
    after_10000 = offer(9000)
    assert commissioner.progress().phase == "learning normal"
    assert after_10000 == after_1000

    calibrating_1 = offer(1)  # the first window at fit_at: the model is fitted on it
    calibrating_1001 = offer(1000)
    calibrating_10001 = offer(9000)
    assert commissioner.progress().phase == "calibrating threshold"
    assert calibrating_10001 - calibrating_1001 <= 9000 * np.dtype(np.float64).itemsize
    assert calibrating_1001 > calibrating_1


def test_state_round_trip_gives_identical_errors(source: LatentFactorSource) -> None:
    _, commissioned = commission(full_period(source))
    assert commissioned is not None
    text = json.dumps(commissioned.model.to_state(), allow_nan=False)
    restored = LinearModel.from_state(json.loads(text))

    rows = np.vstack(
        [
            source.normal_rows(np.random.default_rng(7), 100),
            break_features(source, source.normal_rows(np.random.default_rng(8), 10), [0]),
        ]
    )
    errors, per_feature = commissioned.model.errors(rows)
    restored_errors, restored_per_feature = restored.errors(rows)
    assert np.array_equal(errors, restored_errors)
    assert np.array_equal(per_feature, restored_per_feature)
    assert restored.model_id == commissioned.model.model_id
    assert restored.commissioned_threshold == commissioned.fixed_threshold


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "adaptive_threshold"),
        ("version", 99),
        ("model_id", ""),
        ("feature_names", ["a", "a"]),
        ("mean", [0.0]),
        ("scale", "many"),
        ("components", [[1.0]]),
        ("commissioned_threshold", -1.0),
    ],
)
def test_a_bad_state_is_refused_naming_the_field(
    source: LatentFactorSource, field: str, value: object
) -> None:
    _, commissioned = commission(full_period(source))
    assert commissioned is not None
    state = commissioned.model.to_state()
    state[field] = value
    with pytest.raises(ValueError, match=field):
        LinearModel.from_state(state)


def test_components_that_are_not_orthonormal_are_refused(source: LatentFactorSource) -> None:
    _, commissioned = commission(full_period(source))
    assert commissioned is not None
    state = commissioned.model.to_state()
    components = state["components"]
    assert isinstance(components, list)
    state["components"] = [[2.0 * v for v in row] for row in components]
    with pytest.raises(ValueError, match="components: columns must be orthonormal"):
        LinearModel.from_state(state)


def with_bad_windows(stream: list[FeatureVector]) -> tuple[list[FeatureVector], int]:
    """`stream` with a bad window half a second after every 97th window."""
    out: list[FeatureVector] = []
    bad = 0
    broken_values = [
        lambda v: np.where(np.arange(len(v)) == 3, math.nan, v),
        lambda v: np.where(np.arange(len(v)) == 0, math.inf, v),
        lambda v: v[:-1],
        lambda v: np.full(len(v), 1e300),
    ]
    for i, vector in enumerate(stream):
        out.append(vector)
        if i % 97 == 0:
            values = broken_values[bad % len(broken_values)](vector.values)
            out.append(FeatureVector(ASSET, vector.window_end + 0.5, vector.names, values))
            bad += 1
    return out, bad


def test_bad_windows_are_counted_and_change_nothing(source: LatentFactorSource) -> None:
    clean = full_period(source)
    dirty, bad = with_bad_windows(clean)

    clean_commissioner, clean_result = commission(clean)
    dirty_commissioner, dirty_result = commission(dirty)

    assert clean_result is not None and dirty_result is not None
    assert dirty_commissioner.progress().bad_windows == bad
    assert f"{bad} bad windows skipped" in dirty_commissioner.progress().describe()
    assert dirty_commissioner.progress().windows == clean_commissioner.progress().windows
    assert dirty_result.model.to_state() == clean_result.model.to_state()
    assert np.array_equal(dirty_result.seed_errors, clean_result.seed_errors)


@pytest.mark.parametrize("interrupted_at", [700, 1700])
def test_replay_after_a_restart_gives_exactly_the_uninterrupted_model(
    source: LatentFactorSource, interrupted_at: int
) -> None:
    """The lead's restart: persist started_at, replay the stored vectors since then, go on."""
    stream, _ = with_bad_windows(full_period(source))
    _, uninterrupted = commission(stream)

    before_restart = Commissioner(ASSET, SETTINGS, started_at=T0_UTC)
    for vector in stream[:interrupted_at]:
        before_restart.offer(vector)
    persisted_started_at = before_restart.started_at
    stored = [v for v in stream[:interrupted_at] if v.window_end >= persisted_started_at]

    after_restart = Commissioner(ASSET, SETTINGS, started_at=persisted_started_at)
    for vector in stored:
        assert after_restart.offer(vector) is None
    assert after_restart.progress() == before_restart.progress()
    replayed = None
    for vector in stream[interrupted_at:]:
        replayed = after_restart.offer(vector)

    assert uninterrupted is not None and replayed is not None
    assert replayed.model.to_state() == uninterrupted.model.to_state()
    assert np.array_equal(replayed.seed_errors, uninterrupted.seed_errors)
    assert (replayed.fit_windows, replayed.calibration_windows) == (
        uninterrupted.fit_windows,
        uninterrupted.calibration_windows,
    )


def test_changed_feature_names_restart_commissioning_with_a_logged_reason(
    source: LatentFactorSource,
) -> None:
    stream = full_period(source)
    renamed = tuple(n.replace("feature_11", "feature_11b") for n in source.feature_names)
    commissioner = Commissioner(ASSET, SETTINGS, started_at=T0_UTC)
    for vector in stream[:500]:
        commissioner.offer(vector)
    change = stream[500]

    with capture_logs() as logs:
        commissioner.offer(FeatureVector(ASSET, change.window_end, renamed, change.values))

    progress = commissioner.progress()
    assert progress.started_at == change.window_end
    assert progress.windows == 1
    assert progress.restarts == 1
    assert progress.phase == "learning normal"
    assert commissioner.names == renamed
    assert progress.restart_reason is not None and "1 added, 1 removed" in progress.restart_reason
    assert [e["event"] for e in logs] == ["commissioning_restarted"]
    assert logs[0]["reason"] == progress.restart_reason


def test_too_few_windows_at_the_end_of_the_period_keep_it_going(
    source: LatentFactorSource,
) -> None:
    settings = CommissioningSettings(period_s=100.0, min_windows=500)
    commissioner = Commissioner(ASSET, settings, started_at=T0_UTC)
    stream = normal_stream(source, 9, 2000)
    results = []
    for vector in stream:
        results.append(commissioner.offer(vector))
        if results[-1] is not None:
            break
    ended = next(i for i, v in enumerate(stream) if v.window_end >= T0_UTC + settings.period_s)
    during = Commissioner(ASSET, settings, started_at=T0_UTC)
    for vector in stream[: ended + 1]:
        during.offer(vector)

    waiting = during.progress()
    assert waiting.waiting_for == settings.min_windows - (ended + 1)
    assert "more windows needed (min_windows)" in waiting.describe()
    commissioned = results[-1]
    assert commissioned is not None
    assert commissioned.fit_windows == settings.fit_windows
    assert commissioned.calibration_windows == settings.calibration_windows
    assert len(results) == settings.min_windows


def test_windows_before_started_at_are_ignored(source: LatentFactorSource) -> None:
    stream = normal_stream(source, 10, 10)
    commissioner = Commissioner(ASSET, SETTINGS, started_at=stream[5].window_end)
    for vector in stream:
        commissioner.offer(vector)
    assert commissioner.progress().windows == 5
    assert commissioner.progress().bad_windows == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"period_s": 0.0}, "period_s"),
        ({"period_s": math.inf}, "period_s"),
        ({"fit_fraction": 1.0}, "fit_fraction"),
        ({"variance": 0.0}, "variance"),
        ({"quantile": 1.5}, "quantile"),
        ({"margin": -1.0}, "margin"),
        ({"min_windows": 2}, "min_windows"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(changes: dict[str, float], field: str) -> None:
    arguments: dict[str, float] = {"period_s": 100.0, "min_windows": 10, **changes}
    with pytest.raises(ValueError, match=field):
        CommissioningSettings(**arguments)  # type: ignore[arg-type]
