"""The stamp journal: a line re-read after a crash gets the ``@timestamp`` it was first sent with.

Why this exists: the agent stamps a line with the time it reads it, and logtransfer picks the
daily index from ``@timestamp``. Elasticsearch de-duplicates by ``_id`` only *within* an index.
After a kill -9 the agent re-reads every line acknowledged since the last registry save (about
a second's worth) plus those that were in flight (up to ``max_inflight_bytes``); same
``event.id``, but without this journal a later ``@timestamp`` — and when the two reads straddle
midnight UTC, another daily index: the same line twice in Elasticsearch.

So, before a batch of lines is produced, one journal line per file says "offsets
``[start, end)`` of source ``S`` were stamped ``T``" (a write-ahead record). After a restart,
a line re-read at an offset inside such a range gets ``T`` again. Each registry save compacts
the journal to the ranges that are not yet acknowledged (only those can be read again).

Durability: appends are plain ``write()`` calls (no fsync), which survive kill -9 of the
process; the compacted file is fsync'ed at each registry save (once a second). After a power
loss, lines of the last second may be re-read with a new ``@timestamp`` (same ``event.id``):
a duplicate only if that second straddles midnight UTC.
"""

from __future__ import annotations

import logging
import os
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from pathlib import Path

__all__ = ["StampJournal"]

log = logging.getLogger("logagent.stamps")


class StampJournal:
    """Ranges of file offsets and the timestamp their lines were sent with, per file source."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        # source -> ascending lists of range starts, ends and stamps (ranges never overlap:
        # a file's offsets are read once per process, and a replay re-uses the recorded range)
        self._ranges: dict[str, tuple[list[int], list[int], list[float]]] = {}
        self._fd: int | None = None
        self._load()
        self._open()

    # ------------------------------------------------------------------ reading
    def _load(self) -> None:
        try:
            text = self.path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return
        bad = 0
        for line in text.splitlines():
            parts = line.split("\t")
            if len(parts) != 4:
                bad += 1  # a line cut by the crash: its batch was never produced
                continue
            try:
                start, end, ts = int(parts[1]), int(parts[2]), float(parts[3])
            except ValueError:
                bad += 1
                continue
            self._add(parts[0], start, end, ts)
        if bad:
            log.info("stamp journal %s: %d incomplete line(s) ignored", self.path, bad)

    def _add(self, source: str, start: int, end: int, ts: float) -> None:
        starts, ends, stamps = self._ranges.setdefault(source, ([], [], []))
        if not starts or start >= ends[-1]:
            starts.append(start)
            ends.append(end)
            stamps.append(ts)
            return
        i = bisect_right(starts, start) - 1
        if i >= 0 and start < ends[i]:
            return  # a replayed range written again: the first stamp is the one that was sent
        starts.insert(i + 1, start)
        ends.insert(i + 1, end)
        stamps.insert(i + 1, ts)

    def none_from(self, source: str, offset: int) -> bool:
        """True when :meth:`stamp_for` is None for every offset from ``offset`` on: no line there was
        sent before. The usual case, checked once for a run of lines instead of once a line."""
        r = self._ranges.get(source)
        return r is None or not r[1] or offset >= r[1][-1]

    def stamp_for(self, source: str, offset: int) -> float | None:
        """The timestamp a line at ``offset`` of ``source`` was sent with before, if it was."""
        r = self._ranges.get(source)
        if r is None:
            return None
        starts, ends, stamps = r
        if offset >= ends[-1]:
            return None  # the usual case: a line never read before
        i = bisect_right(starts, offset) - 1
        if i >= 0 and offset < ends[i]:
            return stamps[i]
        return None

    # ------------------------------------------------------------------ writing
    def _open(self) -> None:
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)

    def record(self, batch: Iterable[tuple[str, int, int]], ts: float) -> None:
        """Write ahead: the ranges ``(source, start, end)`` about to be produced with stamp ``ts``.

        The caller passes only lines that had no stamp yet (see :meth:`stamp_for`).
        """
        lines = []
        for source, start, end in batch:
            self._add(source, start, end, ts)
            lines.append(f"{source}\t{start}\t{end}\t{ts!r}\n")
        if lines and self._fd is not None:
            os.write(self._fd, "".join(lines).encode())

    def compact(self, acked: Mapping[str, int]) -> None:
        """Keep only ranges that can still be read again: those past their source's saved offset.

        ``acked`` maps each source to the offset the registry just saved; a source the registry
        no longer knows is dropped (its file is gone or forgotten, it will not be re-read).
        """
        kept: dict[str, tuple[list[int], list[int], list[float]]] = {}
        out = []
        for source, (starts, ends, stamps) in self._ranges.items():
            done = acked.get(source)
            if done is None:
                continue
            k = ([], [], [])
            for s, e, t in zip(starts, ends, stamps, strict=True):
                if e > done:
                    k[0].append(s)
                    k[1].append(e)
                    k[2].append(t)
                    out.append(f"{source}\t{s}\t{e}\t{t!r}\n")
            if k[0]:
                kept[source] = k
        self._ranges = kept
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as f:
                f.write("".join(out))
                f.flush()
                os.fsync(f.fileno())
        except OSError:
            tmp.unlink(missing_ok=True)  # a full disk: leave the journal as it was, free what we took
            raise
        self.close()
        os.replace(tmp, self.path)
        self._open()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __len__(self) -> int:
        return sum(len(r[0]) for r in self._ranges.values())
