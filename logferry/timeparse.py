"""Durations and points in time as people type them (``15m``, ``-2h``, ``2024-05-01T12:00Z``).

``logctl search --since`` and the console's from/to read times the same way, through here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

__all__ = ["DURATION_HELP", "parse_duration", "parse_time"]


_UNITS = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h|d|w)", re.IGNORECASE)
DURATION_HELP = "a duration such as 90s, 15m, 2h, 1d or 1h30m"


def parse_duration(text: str) -> timedelta:
    """``"15m"`` → 15 minutes. Units ms, s, m, h, d, w; parts may be combined (``1h30m``).

    A bare number is refused: "15" could be seconds or minutes, and a wrong guess silently
    searches the wrong window.
    """
    s = text.strip().lower()
    if not s:
        raise ValueError(f"empty duration; write {DURATION_HELP}")
    pos = 0
    total = 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos and s[pos:m.start()].strip():
            break
        total += float(m.group(1)) * _UNITS[m.group(2).lower()]
        pos = m.end()
    if pos != len(s) or pos == 0:
        if re.fullmatch(r"\d+(\.\d+)?", s):
            raise ValueError(f"{text!r} has no unit; write {DURATION_HELP}")
        raise ValueError(f"{text!r} is not a duration; write {DURATION_HELP}")
    return timedelta(seconds=total)


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """A point in time for ``--since``/``--until``, as an aware UTC datetime.

    Accepted: ``now``; a duration meaning that long ago (``15m``, ``2h``, also ``15m ago``
    and ``-15m``); an ISO-8601 date or time (``2024-05-01``, ``2024-05-01T12:00``,
    ``2024-05-01 12:00:00Z``, with or without an offset; without one it is this machine's
    local time, as ``date`` prints it).
    """
    now = now or datetime.now(UTC)
    s = text.strip()
    if s.lower() == "now":
        return now
    rel = s[1:] if s.startswith("-") else s
    if rel.lower().endswith(" ago"):
        rel = rel[:-4]
    try:
        return now - parse_duration(rel)
    except ValueError:
        pass
    if re.fullmatch(r"-?\d+(\.\d+)?", s):
        raise ValueError(f"{text!r} has no unit; write {DURATION_HELP} (meaning that long ago), or a time")
    iso = s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s
    try:
        t = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"{text!r} is not a time; write {DURATION_HELP} (meaning that long ago), "
                         "now, or an ISO-8601 time such as 2024-05-01T12:00:00Z") from None
    if t.tzinfo is None:
        t = t.astimezone()  # local time, as the operator's clock shows it
    return t.astimezone(UTC)
