"""Reconnect backoff (appliance/net/backoff.py): doubling up to a ceiling, equal jitter, reset."""

import random

from appliance.net.backoff import Backoff, doubling_s


def test_the_delay_doubles_per_failure_up_to_its_cap() -> None:
    assert [doubling_s(n, 0.5, 10.0) for n in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    assert doubling_s(10_000, 1.0, 60.0) == 60.0, "no overflow however long it failed"
    assert doubling_s(-3, 1.0, 60.0) == 1.0


def test_each_delay_lies_between_half_and_all_of_its_ceiling_and_varies() -> None:
    backoff = Backoff(1.0, 60.0, random.Random(7))
    for ceiling in [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]:
        delay = backoff.next_delay()
        assert ceiling / 2 <= delay <= ceiling, (ceiling, delay)
    delays = [Backoff(1.0, 60.0, random.Random(seed)).next_delay() for seed in range(50)]
    assert all(0.5 <= delay <= 1.0 for delay in delays)
    assert len(set(delays)) > 1, "jittered: a fleet does not come back in step"


def test_reset_starts_again_from_the_first_delay() -> None:
    backoff = Backoff(1.0, 60.0, random.Random(3))
    for _ in range(10):
        backoff.next_delay()
    assert backoff.next_delay() >= 30.0
    backoff.reset()
    assert 0.5 <= backoff.next_delay() <= 1.0
    assert 1.0 <= backoff.next_delay() <= 2.0
