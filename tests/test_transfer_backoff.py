"""Capped exponential backoff with jitter."""

from __future__ import annotations

import pytest

from transfer.backoff import Backoff


def test_doubles_up_to_the_cap_and_resets() -> None:
    b = Backoff(0.5, 10.0, jitter=0.0)
    assert [b.next() for _ in range(7)] == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert b.attempts == 7
    b.reset()
    assert b.next() == 0.5


def test_jitter_stays_within_bounds_and_under_the_cap() -> None:
    lo = Backoff(1.0, 4.0, jitter=0.2, rand=lambda: 0.0)
    hi = Backoff(1.0, 4.0, jitter=0.2, rand=lambda: 0.999999)
    assert lo.next() == pytest.approx(0.8)
    assert hi.next() == pytest.approx(1.2, rel=1e-5)
    for _ in range(10):
        assert hi.next() <= 4.0


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        Backoff(0, 1)
    with pytest.raises(ValueError):
        Backoff(2, 1)
    with pytest.raises(ValueError):
        Backoff(1, 2, jitter=1.5)
