"""LineSplitter: offsets, partial lines, \\r\\n, overlong lines, and chunking independence."""

from __future__ import annotations

import itertools
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.lines import Line, LineSplitter, decode_line


def feed_all(splitter: LineSplitter, chunks: list[bytes]) -> list[Line]:
    out: list[Line] = []
    for c in chunks:
        out.extend(splitter.feed(c))
    return out


def test_lines_and_offsets() -> None:
    s = LineSplitter(100)
    lines = s.feed(b"one\ntwo\nthree")
    assert lines == [Line(0, b"one", False, 4), Line(4, b"two", False, 8)]
    assert s.has_partial and s.partial_start == 8 and s.offset == 13
    assert s.feed(b" and more\n") == [Line(8, b"three and more", False, 23)]
    assert not s.has_partial


def test_start_offset_and_empty_lines() -> None:
    s = LineSplitter(100, offset=1000)
    assert s.feed(b"\n\nx\n") == [Line(1000, b"", False, 1001), Line(1001, b"", False, 1002),
                                  Line(1002, b"x", False, 1004)]


def test_crlf_stripped_even_across_chunks() -> None:
    s = LineSplitter(100)
    out = feed_all(s, [b"a\r\nb\r", b"\nc\r\n"])
    assert [(x.raw, x.next_offset) for x in out] == [(b"a", 3), (b"b", 6), (b"c", 9)]
    assert LineSplitter(100).feed(b"lone\rcr\n") == [Line(0, b"lone\rcr", False, 8)]


def test_limit_is_on_content_not_terminator() -> None:
    s = LineSplitter(4)
    assert s.feed(b"abcd\r\nabcde\n") == [Line(0, b"abcd", False, 6), Line(6, b"abcd", True, 12)]
    # the same through the slow path (line begun in an earlier chunk)
    s = LineSplitter(4)
    assert feed_all(s, [b"ab", b"cd\r\nab", b"cde\n"]) == [Line(0, b"abcd", False, 6),
                                                        Line(6, b"abcd", True, 12)]


def test_partial_flush_then_rest_is_a_new_line() -> None:
    s = LineSplitter(100)
    assert s.feed(b"start of a line") == []
    flushed = s.flush_partial()
    assert flushed == Line(0, b"start of a line", False, 15)
    assert s.flush_partial() is None
    assert s.feed(b" continued\nnext\n") == [Line(15, b" continued", False, 26), Line(26, b"next", False, 31)]


def test_bare_terminator_after_flush_is_folded_into_next_line() -> None:
    s = LineSplitter(100)
    s.feed(b"stalled")
    assert s.flush_partial() == Line(0, b"stalled", False, 7)
    assert s.feed(b"\r") == []
    assert s.feed(b"\nnext\n") == [Line(7, b"next", False, 14)]  # range covers the \r\n, no empty event
    # and only the first line after a flush: later empty lines are real
    assert s.feed(b"\n") == [Line(14, b"", False, 15)]


def test_after_flush_survives_a_reopen() -> None:
    s = LineSplitter(100, offset=7, after_flush=True)
    assert s.feed(b"\nnext\n") == [Line(7, b"next", False, 13)]


def test_flush_of_overlong_partial_is_truncated() -> None:
    s = LineSplitter(3)
    s.feed(b"abcdefgh")
    assert s.flush_partial() == Line(0, b"abc", True, 8)
    assert s.feed(b"ij\n") == [Line(8, b"ij", False, 11)]


def test_huge_line_costs_bounded_memory() -> None:
    limit = 64 * 1024
    chunk = b"x" * (256 * 1024)
    s = LineSplitter(limit)
    tracemalloc.start()
    try:
        out: list[Line] = []
        for _ in range(5 * 4):  # 5 MiB of one line
            out += s.feed(chunk)
            assert len(s._buf) <= limit + 1
        out += s.feed(b"tail\nshort\n")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = 5 * 1024 * 1024 + 4
    assert out[0] == Line(0, b"x" * limit, True, size + 1)
    assert out[1] == Line(size + 1, b"short", False, size + 7)
    assert peak < 2 * 1024 * 1024


def test_decode_line_replaces_invalid_utf8() -> None:
    assert decode_line(b"caf\xe9 ok \xc3\xa9") == "caf\ufffd ok \u00e9"
    assert decode_line(b"\xff\xfe") == "\ufffd\ufffd"


def reference(data: bytes, limit: int) -> list[Line]:
    """The obvious one-shot split, to compare the streaming splitter against."""
    out = []
    off = 0
    pieces = data.split(b"\n")
    for piece in pieces[:-1]:
        nxt = off + len(piece) + 1
        content = piece[:-1] if piece.endswith(b"\r") else piece
        out.append(Line(off, content[:limit], len(content) > limit, nxt))
        off = nxt
    return out


@settings(max_examples=300, deadline=None)
@given(
    data=st.binary(max_size=300).map(lambda b: b.replace(b"a", b"\n").replace(b"b", b"\r")),
    cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=12),
    limit=st.integers(min_value=1, max_value=12),
)
def test_fuzz_any_chunking_gives_the_one_shot_lines(data: bytes, cuts: list[int], limit: int) -> None:
    points = sorted({c for c in cuts if c <= len(data)} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    s = LineSplitter(limit)
    got = feed_all(s, chunks)
    assert got == reference(data, limit)
    # contiguous: each line starts where the previous ended; the rest is the partial line
    off = 0
    for line in got:
        assert line.offset == off and line.next_offset > off
        off = line.next_offset
    assert s.partial_start == off and s.offset == len(data)
    assert s.has_partial == (off < len(data))


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(max_size=200).map(lambda b: b.replace(b"a", b"\n")),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=8),
    flush_after=st.sets(st.integers(min_value=0, max_value=8)),
    limit=st.integers(min_value=1, max_value=10),
)
def test_fuzz_flushes_keep_ranges_contiguous(
    data: bytes, cuts: list[int], flush_after: set[int], limit: int
) -> None:
    points = sorted({c for c in cuts if c <= len(data)} | {0, len(data)})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    s = LineSplitter(limit)
    got: list[Line] = []
    for i, c in enumerate(chunks):
        got += s.feed(c)
        if i in flush_after:
            flushed = s.flush_partial()
            if flushed is not None:
                got.append(flushed)
    last = s.flush_partial()
    if last is not None:
        got.append(last)
    off = 0
    for line in got:
        assert line.offset == off
        assert len(line.raw) <= limit
        off = line.next_offset
    # everything is covered, except possibly a bare terminator waiting after the last flush
    assert off <= len(data)
    assert data[off:].replace(b"\r", b"") in (b"", b"\n")
