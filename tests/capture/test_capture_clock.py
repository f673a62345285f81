"""McuClock against synthetic streams with known truth: jitter, drift, resets, clock steps."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pytest

from appliance.capture.clock import McuClock, UtcOffsetTracker, theil_sen

FRAME_US = 32_000  # 32 samples at 1 kHz
WALL_MINUS_MONO = 1.7e9
MS = 1e-3


@dataclass(frozen=True)
class Observation:
    mcu_start_us: int  # time of the frame's first sample
    mcu_end_us: int  # time the frame's data was complete
    true_start_mono: float  # host monotonic time of the first sample (truth)
    rx_mono: float  # host monotonic time the frame arrived


def stream(
    *,
    seconds: float,
    drift_ppm: float = 50.0,
    jitter_scale_s: float = 10 * MS,
    mcu_start_us: int = 0,
    host_start: float = 1000.0,
    seed: int = 1,
) -> Iterator[Observation]:
    """An MCU whose crystal runs `drift_ppm` fast, received with exponential delays."""
    rng = np.random.default_rng(seed)
    n_frames = int(seconds * 1e6 / FRAME_US)
    delays = np.minimum(rng.exponential(jitter_scale_s, n_frames), 0.08)
    for k in range(n_frames):
        start_us = mcu_start_us + k * FRAME_US
        end_us = start_us + FRAME_US
        mcu_to_host = 1.0 / (1.0 + drift_ppm * 1e-6)
        true_start = host_start + (start_us - mcu_start_us) * 1e-6 * mcu_to_host
        true_end = host_start + (end_us - mcu_start_us) * 1e-6 * mcu_to_host
        yield Observation(start_us, end_us, true_start, true_end + float(delays[k]))


def errors_after_warmup(
    clock: McuClock, observations: Iterator[Observation], warmup_s: float = 3.0
) -> np.ndarray:
    errors = []
    first_rx: float | None = None
    for obs in observations:
        first_rx = obs.rx_mono if first_rx is None else first_rx
        clock.observe(obs.mcu_end_us, obs.rx_mono, obs.rx_mono + WALL_MINUS_MONO)
        mapped = clock.to_mono(obs.mcu_start_us)
        if obs.rx_mono - first_rx > warmup_s:
            errors.append(mapped - obs.true_start_mono)
    return np.asarray(errors)


def test_jitter_and_50ppm_drift_map_within_a_few_ms() -> None:
    clock = McuClock()
    errors = errors_after_warmup(clock, stream(seconds=600.0, drift_ppm=50.0))
    assert np.max(np.abs(errors)) < 3 * MS
    assert clock.drift_ppm == pytest.approx(-50.0, abs=5.0)
    assert clock.discontinuities == 0


def test_drift_beyond_the_bound_is_not_followed() -> None:
    """Proves the drift test can fail: with slope clamped at 200 ppm, 1000 ppm drifts away."""
    clock = McuClock(max_drift_ppm=200.0)
    errors = errors_after_warmup(clock, stream(seconds=120.0, drift_ppm=1000.0))
    assert np.max(np.abs(errors)) > 10 * MS
    assert clock.drift_ppm == pytest.approx(-200.0)


def test_output_is_monotonic_under_jitter() -> None:
    clock = McuClock()
    previous = -np.inf
    for obs in stream(seconds=120.0, jitter_scale_s=30 * MS, seed=7):
        clock.observe(obs.mcu_end_us, obs.rx_mono, obs.rx_mono + WALL_MINUS_MONO)
        mapped = clock.to_utc(obs.mcu_start_us)
        assert mapped > previous
        previous = mapped


def test_mcu_time_going_backwards_reanchors() -> None:
    clock = McuClock()
    before = list(stream(seconds=30.0, host_start=1000.0))
    after = list(stream(seconds=30.0, host_start=1031.0, mcu_start_us=0, seed=2))
    errors_after_warmup(clock, iter(before))
    last_output = clock.to_mono(before[-1].mcu_start_us)
    errors = errors_after_warmup(clock, iter(after))
    assert clock.discontinuities == 1
    assert np.max(np.abs(errors)) < 3 * MS
    assert clock.to_mono(after[0].mcu_start_us) >= last_output


def test_reanchor_on_hello_starts_new_session() -> None:
    clock = McuClock()
    errors_after_warmup(clock, stream(seconds=10.0, host_start=1000.0))
    clock.reanchor()
    errors = errors_after_warmup(
        clock, stream(seconds=20.0, host_start=1011.0, mcu_start_us=5_000_000, seed=3)
    )
    assert clock.sessions == 2
    assert clock.discontinuities == 0
    assert np.max(np.abs(errors)) < 3 * MS


def test_mcu_time_jumping_far_ahead_reanchors() -> None:
    clock = McuClock()
    errors_after_warmup(clock, stream(seconds=10.0, host_start=1000.0))
    jumped = stream(seconds=20.0, host_start=1010.0, mcu_start_us=3_600_000_000, seed=4)
    errors = errors_after_warmup(clock, jumped)
    assert clock.discontinuities == 1
    assert np.max(np.abs(errors)) < 3 * MS


def test_unseen_reboot_with_consistent_looking_time_is_caught_by_late_arrivals() -> None:
    """MCU rebooted while unplugged and its new uptime exceeds the old: time looks continuous."""
    clock = McuClock()
    errors_after_warmup(clock, stream(seconds=5.0, host_start=1000.0))
    # Rebooted at host 1003 -> MCU time 8 s at host 1011 when data resumes (after 5 s seen).
    rebooted = stream(seconds=20.0, host_start=1011.0, mcu_start_us=8_000_000, seed=5)
    errors = errors_after_warmup(clock, rebooted, warmup_s=6.0)
    assert clock.discontinuities == 1
    assert np.max(np.abs(errors)) < 3 * MS


@pytest.mark.parametrize("mcu_start_us", [2**32 - 1_000_000, 2**63 - 10**12])
def test_large_mcu_times_keep_microsecond_resolution(mcu_start_us: int) -> None:
    clock = McuClock()
    errors = errors_after_warmup(clock, stream(seconds=10.0, mcu_start_us=mcu_start_us))
    assert clock.discontinuities == 0
    assert np.max(np.abs(errors)) < 3 * MS
    t = mcu_start_us + 9_000_000
    step = clock.to_mono(t + 1) - clock.to_mono(t)
    assert step == pytest.approx(1e-6, abs=1e-8)


def test_utc_follows_small_host_clock_changes_by_slewing() -> None:
    tracker = UtcOffsetTracker(max_slew_ppm=1000.0, step_threshold_s=1.0)
    tracker.update(100.0, 100.0 + WALL_MINUS_MONO)
    tracker.update(101.0, 101.0 + WALL_MINUS_MONO - 0.5)  # NTP stepped the wall clock back
    assert tracker.utc(101.0) == pytest.approx(101.0 + WALL_MINUS_MONO - 0.001)
    assert tracker.steps == 0
    for second in range(102, 700):
        tracker.update(float(second), second + WALL_MINUS_MONO - 0.5)
    assert tracker.utc(700.0) == pytest.approx(700.0 + WALL_MINUS_MONO - 0.5)


def test_utc_takes_big_host_clock_steps_at_once() -> None:
    tracker = UtcOffsetTracker(step_threshold_s=1.0)
    tracker.update(100.0, 100.0)  # booted without RTC: wall clock near 1970
    tracker.update(101.0, 101.0 + WALL_MINUS_MONO)  # first NTP fix
    assert tracker.steps == 1
    assert tracker.utc(101.0) == pytest.approx(101.0 + WALL_MINUS_MONO)


def test_mapping_ignores_wall_clock_step_between_observations() -> None:
    clock = McuClock()
    outputs = []
    for k, obs in enumerate(stream(seconds=20.0, jitter_scale_s=1 * MS)):
        wall_step = -0.3 if k > 300 else 0.0
        clock.observe(obs.mcu_end_us, obs.rx_mono, obs.rx_mono + WALL_MINUS_MONO + wall_step)
        outputs.append(clock.to_utc(obs.mcu_start_us))
    assert np.all(np.diff(outputs) > 0)


def test_theil_sen_ignores_one_late_bucket_and_clamps_slope() -> None:
    points = [(float(x), 0.5 + 1e-5 * x) for x in range(30)]
    points[10] = (10.0, 0.9)
    line = theil_sen(points, max_slope=1.0)
    assert line.slope == pytest.approx(1e-5, rel=1e-6)
    assert line.intercept == pytest.approx(0.5)
    assert theil_sen(points, max_slope=1e-6).slope == pytest.approx(1e-6)


def test_to_utc_before_any_observation_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        McuClock().to_utc(0)
