"""A model on probation after an over-the-air install: its verdicts, and its state across a
restart."""

from __future__ import annotations

import json

import pytest

from appliance.detect.assets import Probation


def probation() -> Probation:
    return Probation("v2-abc", until=100.0, min_windows=4, max_fraction=0.25)


def test_fails_only_after_min_windows_and_above_the_bound() -> None:
    watched = probation()
    verdicts = [watched.observe(float(t), anomalous=True) for t in range(4)]
    assert verdicts == ["watching", "watching", "watching", "failed"]
    assert "100.0 % (4 of 4 windows) is above the bound 25.0 %" in watched.failure()


def test_passes_after_its_time_whatever_came_before() -> None:
    watched = probation()
    assert [watched.observe(t, anomalous=t == 1.0) for t in (0.0, 1.0, 2.0, 3.0)] == [
        "watching"
    ] * 4  # 1 of 4 is exactly the bound: not above it
    assert watched.observe(100.5, anomalous=True) == "passed"


def test_state_round_trips_through_json_and_bad_states_are_named() -> None:
    watched = probation()
    watched.observe(1.0, anomalous=True)
    restored = Probation.from_state(json.loads(json.dumps(watched.to_state())))
    assert restored == watched
    with pytest.raises(ValueError, match="kind"):
        Probation.from_state({**watched.to_state(), "kind": "detector"})
    with pytest.raises(ValueError, match="probation: "):
        Probation.from_state({**watched.to_state(), "extra": 1})
    with pytest.raises(ValueError, match="wrong type"):
        Probation.from_state({**watched.to_state(), "scored": "3"})
