"""Paced appends: ``rate`` lines/s for ``seconds``, spread over files, each line stamped.

Each line is a realistic nginx line whose request carries its sequence number and the wall-clock
time it was written (``seq=…&sent=<epoch µs>``); every ``probe_every``-th line also carries the
word ``lfprobe`` so Elasticsearch can be searched for the sample. Lines are written in ticks of
10 ms (one ``write`` per file per tick), and each line's stamp is taken just before its write.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from .gen import lines as gen_lines

TICK_S = 0.01


class PacedWriter(threading.Thread):
    def __init__(self, paths: list[Path], rate: int, seconds: float, probe_every: int = 100, seed: int = 7) -> None:
        super().__init__(daemon=True)
        self.paths, self.rate, self.seconds, self.probe_every = paths, rate, seconds, probe_every
        self.template = list(gen_lines(1000, seed))  # recycled bodies: the text does not matter here
        self.written = 0
        self.behind_max_s = 0.0
        self.done = threading.Event()
        self.fds = [os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644) for p in paths]
        #: byte offset in the first file → (seq, sent epoch s) of each probe line written there
        #: (this writer is the file's only one, so offsets are known without reading back)
        self.probes: dict[int, tuple[int, float]] = {}
        self._pos0 = os.fstat(self.fds[0]).st_size

    def _line(self, seq: int, now_us: int) -> str:
        body = self.template[seq % 1000]
        # insert the stamp into the request path: '"GET /x HTTP/1.1"' -> '"GET /x?seq=..&sent=.. HTTP/1.1"'
        probe = "&lfprobe=1" if seq % self.probe_every == 0 else ""
        i = body.index(" HTTP/1.1")
        sep = "&" if "?" in body[:i] else "?"
        return f"{body[:i]}{sep}seq={seq}&sent={now_us}{probe}{body[i:]}\n"

    def run(self) -> None:
        try:
            start = time.monotonic()
            total = int(self.rate * self.seconds)
            nfiles = len(self.fds)
            fi = 0
            while self.written < total:
                due = min(total, int((time.monotonic() - start) * self.rate) + 1)
                n = due - self.written
                if n > 0:
                    # spread this tick's lines over the next files, round-robin
                    per_file: dict[int, list[str]] = {}
                    seqs0: list[int] = []  # the sequence numbers of the lines for file 0
                    now_us = time.time_ns() // 1000
                    for _ in range(n):
                        per_file.setdefault(fi, []).append(self._line(self.written, now_us))
                        if fi == 0:
                            seqs0.append(self.written)
                        self.written += 1
                        fi = fi + 1 if fi + 1 < nfiles else 0
                    for k, chunk in per_file.items():
                        data = "".join(chunk).encode()
                        if k == 0:
                            pos = self._pos0
                            for seq, line in zip(seqs0, chunk, strict=True):
                                if seq % self.probe_every == 0:
                                    self.probes[pos] = (seq, now_us / 1e6)
                                pos += len(line.encode())
                            self._pos0 += len(data)
                        os.write(self.fds[k], data)
                behind = (time.monotonic() - start) - self.written / self.rate
                self.behind_max_s = max(self.behind_max_s, behind)
                next_t = start + (self.written + max(1, int(self.rate * TICK_S))) / self.rate
                time.sleep(max(0.0, next_t - time.monotonic()))
        finally:
            for fd in self.fds:
                os.close(fd)
            self.done.set()
