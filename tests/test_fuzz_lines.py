"""Fuzzing the line splitter and the multiline joiner where the agent uses them: in a Harvester.

tests/test_lines.py fuzzes :class:`LineSplitter` alone (any chunking, flushes) and
tests/test_multiline.py fuzzes :class:`MultilineJoiner` alone. Here both run inside
:class:`agent.harvester.Harvester` on a real file that grows in random steps, read with random
byte budgets, closed and reopened at random points (the offset it resumes from is the end of
what it handed out), with tiny ``max_line_bytes`` and fingerprint sizes so that truncation and
the ``ino:`` → ``fp:`` identity change happen all the time. Properties:

- without flushes in between: exactly the lines of a one-shot split of the whole file (the
  last partial line handed out by the final flush), whatever the steps;
- with multiline: the events' lines are exactly those lines, joined with ``\\n``, in order,
  their byte ranges contiguous, none over ``max_lines`` or ``max_bytes``;
- with partial-line flushes at random points: byte ranges contiguous from 0 to the end (but a
  bare terminator after the last flush), each record the text of its range, never over the
  limit.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.harvester import Harvester
from agent.lines import Line
from agent.multiline import MultilineJoiner

FUZZ = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])

pieces = st.one_of(
    st.sampled_from([b"\n", b"\r\n", b"\r", b"a", b" b", b"\x00", b"\xff", b"\xc3\xa9", b"END", b"\\"]),
    st.integers(1, 40).map(lambda n: b"x" * n),
    st.binary(max_size=6),
)
contents = st.lists(pieces, max_size=60).map(b"".join)
ops = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(1, 40)),
    st.tuples(st.just("read"), st.integers(1, 64)),
    st.tuples(st.just("close"), st.just(0)),
), max_size=30)


def reference(data: bytes, limit: int) -> list[Line]:
    """One-shot split; the last partial line (if any) as the final flush hands it out."""
    out = []
    off = 0
    parts = data.split(b"\n")
    for i, piece in enumerate(parts):
        last = i == len(parts) - 1
        if last and not piece:
            break
        nxt = off + len(piece) + (0 if last else 1)
        if piece.endswith(b"\r"):
            piece = piece[:-1]
        out.append(Line(off, piece[:limit], len(piece) > limit, nxt))
        off = nxt
    return out


def run(data: bytes, steps: list[tuple[str, int]], limit: int, multiline: Any = None,
        flush_at: set[int] | None = None) -> list[Any]:
    """Grow a file by the steps, reading with a Harvester; then read to the end and flush."""
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "f.log")
        open(path, "wb").close()
        h = Harvester(path, max_line_bytes=limit, multiline=multiline, fingerprint_bytes=8)
        out: list[Any] = []
        written = 0
        for n, (op, arg) in enumerate(steps):
            if op == "append" and written < len(data):
                with open(path, "ab") as f:
                    f.write(data[written:written + arg])
                written += arg
            elif op == "read":
                out += h.read_lines(arg, now=0.0)
            elif op == "close":
                h.close()
            if flush_at and n in flush_at:
                out += h.flush(now=0.0, force=True)
        with open(path, "ab") as f:
            f.write(data[written:])
        for _ in range(len(data) + 2):
            got = h.read_lines(64, now=0.0)
            out += got
            if not got and h.at_eof:
                break
        out += h.flush(now=0.0, force=True)
        h.close()
        return out


@FUZZ
@given(contents, ops, st.integers(1, 12))
def test_fuzz_harvester_gives_the_one_shot_lines(data: bytes, steps: list[tuple[str, int]], limit: int) -> None:
    assert run(data, steps, limit) == reference(data, limit)


@FUZZ
@given(contents, ops, st.integers(1, 12), st.sampled_from([r"^\s", r"\\$", r"END$", r"^$", r"^x", r"."]),
       st.booleans(), st.sampled_from(["after", "before"]), st.integers(1, 4))
def test_fuzz_harvester_with_multiline(data: bytes, steps: list[tuple[str, int]], limit: int, pattern: str,
                                       negate: bool, match: str, max_lines: int) -> None:
    def factory() -> MultilineJoiner:
        return MultilineJoiner(pattern, negate, match, max_lines, 5.0, max_bytes=limit)

    events = run(data, steps, limit, multiline=factory)
    lines = reference(data, limit)
    assert sum(e.lines for e in events) == len(lines)
    assert b"\n".join(e.raw for e in events) == b"\n".join(x.raw for x in lines)
    off = 0
    for e in events:
        assert e.offset == off and 1 <= e.lines <= max_lines
        assert len(e.raw) <= limit or e.lines == 1
        off = e.next_offset
    assert off == (lines[-1].next_offset if lines else 0)


def _content(seg: bytes) -> bytes:
    if seg.endswith(b"\n"):
        seg = seg[:-1]
    return seg[:-1] if seg.endswith(b"\r") else seg


@FUZZ
@given(contents, ops, st.integers(1, 12), st.sets(st.integers(0, 30)))
def test_fuzz_harvester_with_flushes_keeps_ranges_contiguous(data: bytes, steps: list[tuple[str, int]], limit: int,
                                                             flush_at: set[int]) -> None:
    recs = run(data, steps, limit, flush_at=flush_at)
    off = 0
    for r in recs:
        assert r.offset == off, (r, off)
        seg = data[r.offset:r.next_offset]
        # after a flushed partial line, the bare terminator that ends it is folded into the next line
        candidates = [seg] + [seg[len(t):] for t in (b"\n", b"\r\n") if seg.startswith(t)]
        assert any(_content(c)[:limit] == r.raw and (len(_content(c)) > limit) == r.truncated
                   for c in candidates), (r, seg)
        off = r.next_offset
    assert data[off:] in (b"", b"\n", b"\r\n"), (off, data[off:])
