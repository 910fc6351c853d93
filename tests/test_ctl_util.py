"""logctl's pure helpers: durations, times, tables, diffs, formatting, confirmation."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone

import pytest

from logctl.util import (
    EXIT_USAGE,
    CtlError,
    confirm,
    fmt_age,
    fmt_bytes,
    fmt_count,
    iso_utc,
    parse_duration,
    parse_time,
    render_table,
    unified_diff,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "seconds"), [
    ("15m", 900), ("90s", 90), ("2h", 7200), ("1d", 86400), ("1w", 604800), ("1h30m", 5400),
    ("1h 30m", 5400), ("500ms", 0.5), ("1.5h", 5400), ("10min", 600), ("5sec", 5), (" 3M ", 180),
])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(("text", "says"), [
    ("15", "has no unit"), ("", "empty"), ("abc", "not a duration"), ("15mo", "not a duration"),
    ("x15m", "not a duration"), ("15m x", "not a duration"), ("-5m", "not a duration"),
])
def test_parse_duration_refuses(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_duration(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("now", NOW),
    ("15m", NOW - timedelta(minutes=15)),
    ("-15m", NOW - timedelta(minutes=15)),
    ("2h ago", NOW - timedelta(hours=2)),
    ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ("2024-05-01T10:00:00+02:00", datetime(2024, 5, 1, 8, tzinfo=UTC)),
    ("2024-05-01 10:00:00.5z", datetime(2024, 5, 1, 10, 0, 0, 500000, tzinfo=UTC)),
])
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


def test_parse_time_naive_is_local() -> None:
    t = parse_time("2024-05-01T10:00:00", NOW)
    local = datetime(2024, 5, 1, 10).astimezone()
    assert t == local and t.tzinfo == UTC


def test_parse_time_refuses_with_hint() -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_time("yesterday-ish", NOW)


def test_iso_utc() -> None:
    t = datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert iso_utc(t) == "2024-05-01T12:00:00.123Z"


def test_render_table_aligns_and_fills() -> None:
    out = render_table(["IP", "N", "ERROR"], [["10.0.0.5", 3, None], ["2001:db8::1", 12, "boom\nagain"]],
                       right=[1])
    assert out.splitlines() == [
        "IP            N  ERROR",
        "10.0.0.5      3  -",
        "2001:db8::1  12  boom again",
    ]


def test_render_table_cuts_last_column_to_width() -> None:
    out = render_table(["A", "MSG"], [["x", "a" * 100]], max_width=20)
    line = out.splitlines()[1]
    assert len(line) == 20 and line.endswith("…")


def test_render_table_no_rows_and_bad_row() -> None:
    assert render_table(["A", "B"], []) == "A  B"
    with pytest.raises(ValueError, match="2 columns"):
        render_table(["A", "B"], [["only one"]])


def test_unified_diff() -> None:
    old = '[\n  {"a": 1}\n]\n'
    new = '[\n  {"a": 2}\n]'
    d = unified_diff(old, new, "old", "new")
    assert d.startswith("--- old\n+++ new\n")
    assert '-  {"a": 1}\n' in d and '+  {"a": 2}\n' in d
    assert d.endswith("\n")
    assert unified_diff(old, old, "a", "b") == ""
    assert unified_diff("", "x\n", "a", "b").endswith("+x\n")


def test_unified_diff_color() -> None:
    d = unified_diff("a\n", "b\n", "old", "new", color=True)
    assert "\x1b[31m-a\x1b[0m" in d and "\x1b[32m+b\x1b[0m" in d


def test_formatting() -> None:
    assert fmt_bytes(None) == "-"
    assert fmt_bytes(0) == "0 B"
    assert fmt_bytes(1536) == "1.5 KiB"
    assert fmt_bytes(64 * 1024 * 1024) == "64.0 MiB"
    assert fmt_count(1234567) == "1,234,567"
    assert fmt_count(2.5) == "2.5"
    assert fmt_count(None) == "-"
    assert [fmt_age(s) for s in (None, 5, 65, 700, 3700, 90000)] == ["-", "5s", "1m05s", "11m", "1h01m", "1d1h"]


def test_confirm(monkeypatch: pytest.MonkeyPatch) -> None:
    assert confirm("Write?", assume_yes=True) is True
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))
    with pytest.raises(CtlError) as e:  # a StringIO is no terminal
        confirm("Write?", assume_yes=False)
    assert e.value.code == EXIT_USAGE and "--yes" in str(e.value)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    for answer, expected in (("y\n", True), ("yes\n", True), ("n\n", False), ("\n", False), ("", False),
                             ("maybe\nY\n", True)):
        monkeypatch.setattr("sys.stdin", Tty(answer))
        assert confirm("Write?", assume_yes=False) is expected
    monkeypatch.setattr("sys.stdin", Tty("\n"))
    assert confirm("Again?", assume_yes=False, default=True) is True
    with pytest.raises(CtlError):
        confirm("Write?", assume_yes=False, stdin_used=True)
