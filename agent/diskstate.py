"""The agent's own files when its data directory is full or read-only (issue 22).

Why: the registry, the stamp journal and the saved collect list are written to ``data_dir``.
A full or read-only disk used to end the daemon with a traceback, and systemd restarted it
into the same wall every 5 s with no collection meanwhile. Offsets live in memory too, so the
agent can keep shipping: only a restart would send again the lines acknowledged since the
last good save (same event ids, Elasticsearch keeps one copy). This module keeps what failed,
since when, and says it once, then at most once a minute, and once more when it recovers.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass

LOG_EVERY_S = 60.0


@dataclass(slots=True)
class _Failure:
    path: str
    reason: str
    since_wall: float
    last_logged: float
    count: int = 1

    @property
    def since(self) -> str:
        return time.strftime("%H:%M:%S", time.localtime(self.since_wall))


def _reason(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "no space left"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno == errno.EDQUOT:
        return "disk quota exceeded"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


def free_bytes(path: str) -> int | None:
    """Bytes an unprivileged writer may still use on `path`'s file system (None if unknown)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


class DiskState:
    """Which of the agent's files cannot be saved, for the log, the status and the metrics."""

    def __init__(self, data_dir: str, *, log_every_s: float = LOG_EVERY_S) -> None:
        self.data_dir = data_dir
        self.log_every_s = log_every_s
        self.failures: dict[str, _Failure] = {}  # what ("registry", "stamp journal", …) -> failure
        self.failed_saves = 0

    def failed(self, what: str, path: str, exc: OSError, now: float | None = None) -> str | None:
        """Note a failed save; returns the line to log (the first time, then once a minute) or None."""
        now = time.monotonic() if now is None else now
        self.failed_saves += 1
        reason = _reason(exc)
        f = self.failures.get(what)
        if f is None:
            self.failures[what] = _Failure(path, reason, time.time(), now)
            return self.describe(what) + " (retried every second; collection goes on)"
        f.count += 1
        f.reason = reason
        if now - f.last_logged >= self.log_every_s:
            f.last_logged = now
            return self.describe(what) + f" ({f.count} failed attempts so far; collection goes on)"
        return None

    def ok(self, what: str) -> str | None:
        """A save succeeded; returns the line to log if `what` had been failing."""
        f = self.failures.pop(what, None)
        if f is None:
            return None
        return f"{what} saved to {f.path} again after {f.count} failed attempt(s) since {f.since}"

    def describe(self, what: str) -> str:
        f = self.failures[what]
        free = free_bytes(self.data_dir)
        since = f.since
        tail = {"registry": f"lines acknowledged since {since} would be sent again after a restart",
                "stamp journal": f"lines read since {since} may get a new @timestamp if sent again after a crash",
                }.get(what, f"failing since {since}")
        todo = (f"make {self.data_dir} writable again" if f.reason in ("read-only file system", "permission denied")
                else f"free space in {self.data_dir}")
        return (f"cannot save the {what} to {self.data_dir}: {f.reason}; "
                f"{'?' if free is None else free} bytes free; {tail}; {todo}")

    @property
    def error(self) -> str | None:
        """One line for ``last_error`` in the status, or None when every save works."""
        if not self.failures:
            return None
        return "; ".join(self.describe(w) for w in self.failures)

    def status(self) -> dict[str, object]:
        return {"data_dir": self.data_dir, "free_bytes": free_bytes(self.data_dir), "failed_saves": self.failed_saves,
                "failing": {w: {"path": f.path, "reason": f.reason, "since": f.since_wall, "attempts": f.count}
                            for w, f in self.failures.items()}}
