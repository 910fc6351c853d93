"""Joining continuation lines (stack traces, wrapped messages) into one event, as Filebeat does.

A line "matches" when ``pattern`` finds it (``re.search`` on the decoded text), inverted by
``negate``. Then, with Filebeat's semantics:

- ``match="after"``: a matching line is appended to the event before it; a non-matching line
  starts a new event. (``pattern="^\\s", negate=False``: indented lines continue the previous one;
  ``pattern="^\\S", negate=True`` says the same thing the other way round.)
- ``match="before"``: a matching line continues into the next line; the first non-matching line
  ends the event (``pattern="\\\\$"``: lines ending in a backslash continue).

One difference from Filebeat, on purpose: Filebeat *drops* the lines past ``max_lines``. Here an
event that reaches ``max_lines`` (or ``max_bytes``) is emitted with ``truncated=True`` and the
following lines start the next event, so no line is ever lost and the byte ranges of the events
stay contiguous, which is what lets acknowledged offsets be saved safely.

Events carry the start offset of their first line and the ``next_offset`` of their last, so an
acknowledged event moves the file's offset past all its lines at once.
"""

from __future__ import annotations

import re
import time
from typing import NamedTuple, Protocol

from agent.lines import decode_line

__all__ = ["Joined", "LineLike", "MultilineJoiner"]


class LineLike(Protocol):
    """What the joiner needs from a line (:class:`agent.lines.Line` has it)."""

    @property
    def offset(self) -> int: ...
    @property
    def raw(self) -> bytes: ...
    @property
    def truncated(self) -> bool: ...
    @property
    def next_offset(self) -> int: ...


class Joined(NamedTuple):
    """One event made of ``lines`` lines joined with ``\\n``."""

    offset: int
    raw: bytes
    truncated: bool
    next_offset: int
    lines: int


class MultilineJoiner:
    """Feed split lines in file order; get joined events out (see the module docstring).

    ``flush_timeout_s`` is how long a pending event may wait for a continuation line: the
    caller calls :meth:`flush` from its loop. ``max_bytes`` (optional) bounds the joined message
    the same way ``max_lines`` bounds the line count, so memory stays bounded.
    """

    def __init__(
        self,
        pattern: str | re.Pattern[str],
        negate: bool = False,
        match: str = "after",
        max_lines: int = 500,
        flush_timeout_s: float = 5.0,
        max_bytes: int | None = None,
    ) -> None:
        if match not in ("after", "before"):
            raise ValueError(f'match must be "after" or "before", got {match!r}')
        if max_lines < 1:
            raise ValueError(f"max_lines must be >= 1, got {max_lines}")
        self._search = (pattern if isinstance(pattern, re.Pattern) else re.compile(pattern)).search
        self.negate = bool(negate)
        self.after = match == "after"
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self.flush_timeout_s = flush_timeout_s
        self._parts: list[bytes] = []
        self._size = 0  # bytes of the joined message so far
        self._first_offset = 0
        self._next_offset = 0
        self._truncated = False
        self._last_matched = False
        self._last_fed = 0.0

    @property
    def pending(self) -> bool:
        """True while an event is being collected."""
        return bool(self._parts)

    @property
    def pending_offset(self) -> int | None:
        """Start offset of the pending event (where a reader must resume if it drops it)."""
        return self._first_offset if self._parts else None

    def deadline(self) -> float | None:
        """Monotonic time at which :meth:`flush` will emit the pending event, or None."""
        return self._last_fed + self.flush_timeout_s if self._parts else None

    def feed(self, line: LineLike, now: float | None = None) -> list[Joined]:
        """Add the next line; returns the events it completed (zero, one or two)."""
        self._last_fed = time.monotonic() if now is None else now
        matched = (self._search(decode_line(line.raw)) is not None) != self.negate
        out: list[Joined] = []
        if self.after:
            if self._parts and matched:
                self._append(line, out)
            else:
                if self._parts:
                    out.append(self._emit())
                self._begin(line)
        else:
            if self._parts and self._last_matched:
                self._append(line, out)
            else:
                if self._parts:  # only after a flush left a "before" event open; be safe
                    out.append(self._emit())
                self._begin(line)
            self._last_matched = matched
            if not matched:
                out.append(self._emit())
        return out

    def flush(self, now: float | None = None) -> list[Joined]:
        """Emit the pending event if no line came for ``flush_timeout_s``."""
        if not self._parts:
            return []
        now = time.monotonic() if now is None else now
        if now - self._last_fed >= self.flush_timeout_s:
            return [self._emit()]
        return []

    def flush_all(self) -> list[Joined]:
        """Emit the pending event now (end of a file that will not grow again)."""
        return [self._emit()] if self._parts else []

    def _begin(self, line: LineLike) -> None:
        self._parts = [line.raw]
        self._size = len(line.raw)
        self._first_offset = line.offset
        self._next_offset = line.next_offset
        self._truncated = line.truncated

    def _append(self, line: LineLike, out: list[Joined]) -> None:
        size = self._size + 1 + len(line.raw)
        too_big = self.max_bytes is not None and size > self.max_bytes
        if len(self._parts) >= self.max_lines or too_big:
            # Cut here; the rest continues as the next event instead of being dropped.
            self._truncated = True
            out.append(self._emit())
            self._begin(line)
            return
        self._parts.append(line.raw)
        self._size = size
        self._next_offset = line.next_offset
        self._truncated = self._truncated or line.truncated

    def _emit(self) -> Joined:
        parts = self._parts
        raw = parts[0] if len(parts) == 1 else b"\n".join(parts)
        event = Joined(self._first_offset, raw, self._truncated, self._next_offset, len(parts))
        self._parts = []
        self._size = 0
        self._truncated = False
        return event
