"""Capped exponential backoff with jitter, for everything logtransfer retries.

Elasticsearch down or saying 429, the dead-letter producer failing, the template not installable
yet: the transfer never skips, it waits and tries again. The wait doubles from ``first_s`` up to
``cap_s`` (so a transfer is back within ``cap_s`` of the server) with ±20 % jitter, so that the
transfers of one group do not retry in step against an overloaded cluster.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """``next()`` gives the wait before the next attempt; ``reset()`` after a success."""

    def __init__(self, first_s: float = 0.5, cap_s: float = 10.0, jitter: float = 0.2,
                 rand: Callable[[], float] = random.random) -> None:
        if first_s <= 0 or cap_s < first_s:
            raise ValueError("backoff needs 0 < first_s <= cap_s")
        if not 0 <= jitter < 1:
            raise ValueError("jitter is a fraction from 0 to below 1")
        self.first_s = first_s
        self.cap_s = cap_s
        self.jitter = jitter
        self._rand = rand
        self._next = first_s
        self.attempts = 0

    def reset(self) -> None:
        self._next = self.first_s
        self.attempts = 0

    def peek(self) -> float:
        """The un-jittered wait ``next()`` would start from."""
        return self._next

    def next(self) -> float:
        base = self._next
        self._next = min(self._next * 2, self.cap_s)
        self.attempts += 1
        spread = 1 + self.jitter * (2 * self._rand() - 1)
        return min(self.cap_s, base * spread)
