"""MultilineJoiner: Filebeat's four pattern/negate/match combinations, limits, timeouts, no loss."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.lines import Line, LineSplitter
from agent.multiline import Joined, MultilineJoiner


def lines_of(text: str) -> list[Line]:
    return LineSplitter(1000).feed(text.encode())


def join(joiner: MultilineJoiner, text: str) -> list[Joined]:
    out: list[Joined] = []
    for line in lines_of(text):
        out += joiner.feed(line, now=0.0)
    return out + joiner.flush_all()


def messages(events: list[Joined]) -> list[str]:
    return [e.raw.decode() for e in events]


JAVA = (
    "2024-01-01 ERROR boom\n"
    "java.lang.IllegalStateException: bad\n"
    "    at a.B.c(B.java:1)\n"
    "    at a.B.d(B.java:2)\n"
    "2024-01-01 INFO fine\n"
)


def test_after_indented_lines_continue_previous() -> None:
    j = MultilineJoiner(r"^\s", negate=False, match="after")
    out = join(j, "head\n  cont1\n  cont2\nnext\n")
    assert messages(out) == ["head\n  cont1\n  cont2", "next"]
    assert [(e.offset, e.next_offset, e.lines) for e in out] == [(0, 21, 3), (21, 26, 1)]


def test_after_negate_lines_not_starting_with_a_date_continue() -> None:
    j = MultilineJoiner(r"^\d{4}-\d{2}-\d{2}", negate=True, match="after")
    out = join(j, JAVA)
    assert len(out) == 2
    assert out[0].raw.decode().startswith("2024-01-01 ERROR boom\njava.lang")
    assert out[0].lines == 4 and out[1].raw == b"2024-01-01 INFO fine"


def test_before_backslash_continues_into_next() -> None:
    j = MultilineJoiner(r"\\$", negate=False, match="before")
    out = join(j, "a \\\nb \\\nc\nd\n")
    assert messages(out) == ["a \\\nb \\\nc", "d"]


def test_before_negate_lines_wait_for_the_matching_one() -> None:
    j = MultilineJoiner(r"END$", negate=True, match="before")
    out = join(j, "one\ntwo\nthree END\nsolo END\n")
    assert messages(out) == ["one\ntwo\nthree END", "solo END"]


def test_max_lines_cuts_and_keeps_the_rest() -> None:
    j = MultilineJoiner(r"^\s", match="after", max_lines=3)
    out = join(j, "h\n 1\n 2\n 3\n 4\nx\n")
    assert messages(out) == ["h\n 1\n 2", " 3\n 4", "x"]
    assert [e.truncated for e in out] == [True, False, False]
    assert out[0].next_offset == out[1].offset


def test_max_bytes_cuts_too() -> None:
    j = MultilineJoiner(r"^\s", match="after", max_bytes=10)
    out = join(j, "head\n 12345\n 6\n")
    assert messages(out) == ["head", " 12345\n 6"]
    assert out[0].truncated


def test_truncated_line_marks_the_event() -> None:
    j = MultilineJoiner(r"^\s")
    events = j.feed(Line(0, b"head", False, 5), 0.0) + j.feed(Line(5, b" long", True, 500), 0.0)
    events += j.flush_all()
    assert events == [Joined(0, b"head\n long", True, 500, 2)]


def test_flush_timeout() -> None:
    j = MultilineJoiner(r"^\s", flush_timeout_s=5.0)
    assert j.feed(Line(0, b"head", False, 5), now=100.0) == []
    assert j.feed(Line(5, b" more", False, 11), now=101.0) == []
    assert j.deadline() == 106.0
    assert j.flush(now=105.9) == []
    assert j.flush(now=106.0) == [Joined(0, b"head\n more", False, 11, 2)]
    assert not j.pending and j.flush(now=1000.0) == []


def test_invalid_utf8_still_matches() -> None:
    j = MultilineJoiner(r"^\s")
    out = j.feed(Line(0, b"\xff head", False, 7), 0.0) + j.feed(Line(7, b" \xfe", False, 10), 0.0)
    out += j.flush_all()
    assert out == [Joined(0, b"\xff head\n \xfe", False, 10, 2)]


def test_bad_match_refused() -> None:
    with pytest.raises(ValueError):
        MultilineJoiner("x", match="around")


@settings(max_examples=300, deadline=None)
@given(
    words=st.lists(st.sampled_from(["a", " b", "c\\", "", " ", "d END", "\udcff"]), max_size=40),
    negate=st.booleans(),
    match=st.sampled_from(["after", "before"]),
    pattern=st.sampled_from([r"^\s", r"\\$", r"END$", r"^$", r"."]),
    max_lines=st.integers(min_value=1, max_value=5),
    flush_at=st.sets(st.integers(min_value=0, max_value=40)),
)
def test_fuzz_never_loses_a_line(
    words: list[str], negate: bool, match: str, pattern: str, max_lines: int, flush_at: set[int]
) -> None:
    data = b"".join(w.encode("utf-8", "surrogateescape") + b"\n" for w in words)
    lines = LineSplitter(50).feed(data)
    j = MultilineJoiner(pattern, negate=negate, match=match, max_lines=max_lines, flush_timeout_s=1.0)
    out: list[Joined] = []
    for i, line in enumerate(lines):
        out += j.feed(line, now=float(i))
        if i in flush_at:
            out += j.flush(now=float(i) + 1.0)
    out += j.flush_all()
    assert sum(e.lines for e in out) == len(lines)
    assert b"\n".join(e.raw for e in out) == b"\n".join(line.raw for line in lines)
    off = 0
    for e in out:
        assert e.offset == off and 1 <= e.lines <= max_lines
        off = e.next_offset
    assert off == len(data)
