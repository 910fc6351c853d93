"""LineParser.parts (the journal's objects) against the JSON members __call__ writes: the record built
from either is the same bytes, for every format, for lines that parse and lines that do not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.parsers import LineParser, Parsed
from logferry.schema import Parse, Timestamp

READ = 1764847200.25

LINES = [
    "user=bob n=3 dur=1.5", 'a="x \\"y\\"" b=-2 c=1e400', "a=1 a.b=2", "nothing here", "x=\ud800 y=1",
    "<34>Oct 11 22:14:15 mymachine su[23]: 'su root' failed", "Dec  1 00:00:01 host cron: job",
    "<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [a b=\"1\"] An application event",
    "<165>1 2003-10-11T22:14:15.003Z host app 12 - - msg", "<999>bad", "",
    "ERROR 500 12.5 /api took=3", "INFO 200 nan /x", "WARN 404 inf /y",
    '127.0.0.1 - - [04/Dec/2026:10:00:00 +0000] "GET /a HTTP/1.1" 200 12 "-" "curl/8"',
    '{"a": 1, "b": {"c": [1, 2]}, "time": "2026-12-04T10:00:00Z"}', '{"s": "\\ud800"}', "{bad", "[1]",
    '{"n": 123456789012345678901234567890}', '{"time": "not a time"}',
]

SPECS: list[tuple[Parse, Timestamp | None]] = [
    (Parse(format="kv"), None),
    (Parse(format="kv", target="app"), Timestamp(field="app.dur")),
    (Parse(format="regex", pattern=r"(?P<log__level>\w+) (?P<http__response__status_code>\d+) "
                                   r"(?P<event__duration>\S+) (?P<url__path>\S+)"), None),
    (Parse(format="syslog"), None),
    (Parse(format="syslog_rfc3164"), None),
    (Parse(format="syslog_rfc5424"), None),
    (Parse(format="nginx_combined"), None),
    (Parse(format="json"), None),
    (Parse(format="json", target="app"), Timestamp(field="time")),
]


def _members(part: bytes) -> dict[str, Any] | None:
    return json.loads(b"{" + part[1:] + b"}") if part else None


def _dumped(parts: tuple) -> str:
    return json.dumps(parts, ensure_ascii=False)


@pytest.mark.parametrize(("spec", "ts"), SPECS, ids=lambda s: getattr(s, "format", None) or str(s))
def test_parts_are_the_objects_of_the_json_members(spec: Parse, ts: Timestamp | None) -> None:
    parser = LineParser(spec, ts)
    for line in LINES:
        p: Parsed = parser(line, READ)
        want = (_members(p.log_part), _members(p.event_part), _members(p.top_part), p.ts, p.error)
        got = parser.parts(line, READ)
        # same objects, same key order, same types (an int stays an int, a float a float)
        assert _dumped(got) == _dumped(want), (spec, line)
        assert got == want


def test_the_kv_objects_are_handed_over_without_a_json_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of parts: for a dict format, no JSON is written or read (fails on a round trip)."""
    import agent.parsers as mod

    parser = LineParser(Parse(format="kv"))

    def refuse(*_a: object) -> None:
        raise AssertionError("JSON round trip")

    monkeypatch.setattr(mod, "_members", refuse)
    monkeypatch.setattr(mod, "_decode_members", refuse)
    log, event, top, ts, error = parser.parts("user=bob n=3", READ)
    assert top == {"kv": {"user": "bob", "n": "3"}} and log is None and event is None and error is None and ts is None
