"""The log writers: numbered lines into rotating files, and the ledger that makes counting exact.

Every line is unique and says where it belongs::

    h0a 000012345 g003 xxxxxxxx…\n          (about 100 bytes)
    ^tag ^seq      ^generation of the file

``tag`` is host + file letter (one token for Elasticsearch's standard analyzer, so a ``match``
query counts one file's lines), ``seq`` numbers the file's lines from 0 across rotations, and
the generation changes at each rotation. From a document's message alone the verifier knows
which line it is; the ledger knows which lines were written, in which generation, and which
generation ended with an "honest" copytruncate (the only lines the run may lose, see
:class:`Ledger`).

Rotations, each under the file's lock (the writer skips a locked file for that tick, so the
other files take its share and the total rate holds):

- ``rename``: ``a.log`` → ``a.log.N`` (no longer matched by ``*.log``) and a new ``a.log``:
  the agent must finish the old file from its open descriptor, then read the new one from 0.
- ``rename_matching``: ``c.log`` → ``c-N.log`` (still matched): the agent follows the file to
  its new name by its identity and reads the new ``c.log`` from 0.
- ``copytruncate`` (exact): the writer pauses this file, the caller waits until the agent has
  acknowledged every byte (status key), then copy to ``b.log.ctN`` and truncate to 0.
- ``copytruncate`` (honest): copy and truncate at once, as logrotate does; lines the agent had
  not read yet are only in the copy, which nobody ships. They are measured, not failed.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

LINE_BYTES = 100  # including the newline


@dataclass
class Generation:
    """One stretch of a file between rotations: lines ``[first, end)``."""

    number: int
    first: int
    end: int = -1  # -1 while current
    ended_by: str | None = None  # rename | rename_matching | copytruncate | copytruncate_honest
    rotated_to: str | None = None
    at_risk: int = 0  # honest copytruncate: lines beyond the agent's acknowledged offset at truncation


class LogFile:
    """One file the writer appends to; ``seq`` counts its lines over all generations."""

    def __init__(self, host: int, letter: str, path: Path, rotation: str | None) -> None:
        self.host = host
        self.letter = letter
        self.tag = f"h{host}{letter}"
        self.path = Path(path)
        self.rotation = rotation
        self.lock = threading.Lock()
        self.seq = 0
        self.gens: list[Generation] = [Generation(0, 0)]
        self.rotations = 0
        self.since_rotation = 0
        self.paths_seen: set[str] = {str(self.path)}
        self._pad = b"x" * (LINE_BYTES - len(f"{self.tag} 000000000 g000 ") - 1)

    @property
    def gen(self) -> Generation:
        return self.gens[-1]

    def append(self, count: int) -> int:
        """Append ``count`` lines in one write; the caller holds ``lock``."""
        g = self.gen.number
        start = self.seq
        tag = self.tag
        pad = self._pad
        blob = b"".join(f"{tag} {s:09d} g{g:03d} ".encode() + pad + b"\n" for s in range(start, start + count))
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(blob)
            while view:
                n = os.write(fd, view)
                view = view[n:]
        finally:
            os.close(fd)
        self.seq += count
        self.since_rotation += count
        return count

    def _close_gen(self, how: str, to: str | None) -> Generation:
        g = self.gen
        g.end = self.seq
        g.ended_by = how
        g.rotated_to = to
        self.gens.append(Generation(g.number + 1, self.seq))
        self.rotations += 1
        self.since_rotation = 0
        return g

    # --- rotations (caller holds lock) -------------------------------------------------------
    def rotate_rename(self) -> tuple[Generation, Path]:
        to = self.path.with_name(f"{self.path.name}.{self.rotations + 1}")
        os.rename(self.path, to)
        self.path.touch()
        return self._close_gen("rename", str(to)), to

    def rotate_rename_matching(self) -> tuple[Generation, Path]:
        stem = self.path.name.split(".")[0]
        to = self.path.with_name(f"{stem}-{self.rotations + 1}.log")
        os.rename(self.path, to)
        self.path.touch()
        self.paths_seen.add(str(to))
        return self._close_gen("rename_matching", str(to)), to

    def rotate_copytruncate(self, honest: bool = False, at_risk: int = 0) -> Generation:
        to = self.path.with_name(f"{self.path.name}.ct{self.rotations + 1}")
        shutil.copyfile(self.path, to)
        with open(self.path, "r+b") as f:
            f.truncate(0)
        g = self._close_gen("copytruncate_honest" if honest else "copytruncate", str(to))
        g.at_risk = at_risk
        return g

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def line_count_upto(self, offset: int) -> int:
        """Lines of the current generation wholly before byte ``offset`` (lines are fixed-size)."""
        return offset // LINE_BYTES


@dataclass
class Ledger:
    """Everything written: files by tag, and the rate bookkeeping of the writer thread."""

    files: dict[str, LogFile] = field(default_factory=dict)

    def add(self, f: LogFile) -> None:
        self.files[f.tag] = f

    @property
    def written(self) -> int:
        return sum(f.seq for f in self.files.values())

    def written_by_tag(self) -> dict[str, int]:
        return {t: f.seq for t, f in self.files.items()}


class Writer(threading.Thread):
    """Appends lines to every file at ``rate`` lines/s in total until ``total`` lines are written.

    Lines go to the files in turn, in small batches each tick; a file whose lock is taken (a
    rotation in progress) is skipped that tick. ``gate`` (set by the harness) is the number of
    lines the writer may reach before the next fault of the schedule has started: the writer
    waits there (the time waited does not count for the rate, so it does not burst afterwards),
    which keeps every fault at its place in the stream, with lines being written during it.
    """

    def __init__(self, ledger: Ledger, total: int, rate: float, tick_s: float = 0.05) -> None:
        super().__init__(name="chaos-writer", daemon=True)
        self.ledger = ledger
        self.total = total
        self.rate = rate
        self.tick_s = tick_s
        self.stop_evt = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.started_at = 0.0
        self.finished_at = 0.0
        self.gate: int | None = None
        self.gated_s = 0.0

    @property
    def written(self) -> int:
        return self.ledger.written

    @property
    def progress(self) -> float:
        return self.written / self.total if self.total else 1.0

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by the harness
            self.error = e
        finally:
            self.finished_at = time.monotonic()
            self.done.set()

    def _run(self) -> None:
        files = list(self.ledger.files.values())
        self.started_at = time.monotonic()
        written = 0
        turn = 0
        while written < self.total and not self.stop_evt.is_set():
            gate = self.gate
            if gate is not None and written >= gate:
                time.sleep(self.tick_s)
                self.gated_s += self.tick_s
                continue
            elapsed = time.monotonic() - self.started_at - self.gated_s
            due = min(self.total, int(elapsed * self.rate) + 1, gate if gate is not None else self.total)
            want = due - written
            if want <= 0:
                time.sleep(self.tick_s)
                continue
            # one batch per file per round, at most ~1/20 s of the file's share
            batch = max(1, min(want, int(self.rate * self.tick_s / len(files)) + 1))
            progressed = False
            for _ in range(len(files)):
                f = files[turn % len(files)]
                turn += 1
                if want <= 0:
                    break
                if not f.lock.acquire(blocking=False):
                    continue
                try:
                    n = f.append(min(batch, want))
                finally:
                    f.lock.release()
                written += n
                want -= n
                progressed = True
            if not progressed or want <= 0:
                time.sleep(self.tick_s)
