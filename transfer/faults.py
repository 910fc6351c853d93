"""One log line per fault, not one per retry and never a traceback for an expected fault.

Elasticsearch down for ten minutes is one WARNING when it starts, a reminder now and then while
it lasts (so ``journalctl --since`` shows it is still going on), and one INFO line when it is
over, with how long it took.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["FaultLog"]

REMIND_EVERY_S = 60.0


class FaultLog:
    """Tracks one kind of fault (e.g. "elasticsearch") and logs its start, reminders and end."""

    def __init__(self, what: str, log: logging.Logger, clock: Callable[[], float] = time.monotonic,
                 remind_every_s: float = REMIND_EVERY_S) -> None:
        self.what = what
        self.log = log
        self.clock = clock
        self.remind_every_s = remind_every_s
        self.since: float | None = None
        self.last_logged = 0.0
        self.last_key = ""
        self.count = 0
        self.last_error: str | None = None
        self.last_at = 0.0

    @property
    def active(self) -> bool:
        return self.since is not None

    def fault(self, message: str, key: str | None = None, quiet: bool = False) -> None:
        """Record one failed attempt; logs when the fault starts, changes kind, or for a reminder.

        ``quiet``: the caller already logged the start of this fault in its own words (a write
        block, see esblock), so only reminders are logged here.
        """
        now = self.clock()
        key = key if key is not None else message
        self.count += 1
        self.last_error = message
        self.last_at = now
        if self.since is None:
            self.since = now
            if not quiet:
                self.log.warning("%s: %s", self.what, message)
        elif key != self.last_key:
            if not quiet:
                self.log.warning("%s: %s", self.what, message)
        elif now - self.last_logged >= self.remind_every_s:
            self.log.warning("%s: still failing after %.0fs (%d attempts): %s", self.what, now - self.since,
                             self.count, message)
        else:
            return
        self.last_logged = now
        self.last_key = key

    def clear(self, quiet: bool = False) -> None:
        """The operation succeeded: log the end of the fault, if there was one (and not ``quiet``)."""
        if self.since is not None and not quiet:
            self.log.info("%s: working again after %.1fs (%d failed attempts)", self.what,
                          self.clock() - self.since, self.count)
        self.since = None
        self.count = 0
        self.last_key = ""
