"""Parsers and line filters (agent/parsers.py, agent/filters.py), their schema, their records and queries."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from agent.filters import LineFilter, pipeline_for
from agent.parsers import LineParser, Parsed
from logferry.envelope import SourceEncoder, decode_record, event_id, timestamp_json
from logferry.schema import InputSpec, Parse, SchemaError, Timestamp, dump_collect_list, parse_collect_list
from logferry.search import build_query, field_clauses
from transfer.template import template_body

ENC = SourceEncoder(host_name="web1", host_ip="10.0.0.5", path="/var/log/x.log", file_identity="fp:abc",
                    fields=(("env", "prod"),), agent_version="0.2.0")
READ = datetime(2026, 12, 4, 10, 0, 0, tzinfo=UTC).timestamp()


def record(fmt: str, line: str, read_ts: float = READ, **kw: object) -> dict:
    """The decoded Kafka record of ``line`` parsed as ``fmt`` (what the transfer indexes)."""
    ts_spec = kw.pop("timestamp", None)
    p = LineParser(Parse(format=fmt, **kw), ts_spec)  # type: ignore[arg-type]
    r = p(line, read_ts)
    tj = timestamp_json(r.ts if r.ts is not None else read_ts)
    value = ENC.encode_parsed(line, 100, tj, False, 1, r.log_part, r.event_part, r.top_part, r.error is not None)
    return decode_record(value)


def flagged(doc: dict) -> bool:
    return "parse_failure" in doc["log"].get("flags", [])


# --- formats --------------------------------------------------------------------------------


NGINX = ('93.184.216.34 - alice [04/Dec/2026:11:00:00 +0100] "GET /cart?id=7 HTTP/1.1" 503 1234 '
         '"https://shop.example/" "Mozilla/5.0 (X11)"')


def test_nginx_combined_gives_ecs_fields_and_the_line_time() -> None:
    doc = record("nginx_combined", NGINX)
    assert doc["message"] == NGINX  # the raw line is kept
    assert doc["@timestamp"] == "2026-12-04T10:00:00.000Z"
    assert doc["source"] == {"address": "93.184.216.34", "ip": "93.184.216.34"}
    assert doc["user"] == {"name": "alice"}
    assert doc["http"] == {"request": {"method": "GET", "referrer": "https://shop.example/"}, "version": "1.1",
                           "response": {"status_code": 503, "body": {"bytes": 1234}}}
    assert doc["url"] == {"original": "/cart?id=7"} and doc["user_agent"] == {"original": "Mozilla/5.0 (X11)"}
    assert doc["event"]["id"] == event_id("10.0.0.5", "fp:abc", 100) and not flagged(doc)
    assert doc["host"] == {"name": "web1", "ip": "10.0.0.5"} and doc["fields"] == {"env": "prod"}


def test_the_usual_nginx_line_written_directly_is_the_same_document() -> None:
    """Lines with nothing to escape take a one-format path; others the general one: same fields."""
    line = '10.0.0.7 - - [04/Dec/2026:10:00:00 +0000] "GET /a?b=1 HTTP/2.0" 200 17 "https://r/" "ua/1 (x; y)"'
    doc = record("nginx_combined", line)
    want = {"http": {"request": {"method": "GET", "referrer": "https://r/"}, "version": "2.0",
                     "response": {"status_code": 200, "body": {"bytes": 17}}},
            "source": {"address": "10.0.0.7", "ip": "10.0.0.7"}, "url": {"original": "/a?b=1"},
            "user_agent": {"original": "ua/1 (x; y)"}}
    assert {k: doc[k] for k in want} == want and not flagged(doc)
    tab = record("nginx_combined", line.replace("(x; y)", "(x;\ty)"))  # a tab: the general path
    assert tab["user_agent"]["original"] == "ua/1 (x;\ty)" and tab["http"] == want["http"]
    odd = record("nginx_combined", line.replace("10.0.0.7", 'bad"addr', 1))
    assert odd["source"] == {"address": 'bad"addr'}
    caf = record("nginx_combined", line.replace("/a?b=1", "/café"))
    assert caf["url"]["original"] == "/café"


def test_apache_combined_is_the_same_format_and_escaped_quotes_stay_inside() -> None:
    line = '10.1.2.3 - - [04/Dec/2026:10:00:00 +0000] "GET /a\\"b HTTP/1.0" 200 - "-" "say \\"hi\\""'
    doc = record("apache_combined", line)
    assert doc["url"]["original"] == '/a\\"b' and doc["user_agent"]["original"] == 'say \\"hi\\"'
    assert "body" not in doc["http"]["response"] and "referrer" not in doc["http"]["request"]


def test_common_format_and_a_host_name_that_is_not_an_ip() -> None:
    doc = record("nginx_common", 'client.example - - [04/Dec/2026:10:00:00 -0000] "POST /x HTTP/2.0" 201 5')
    assert doc["source"] == {"address": "client.example"} and doc["http"]["response"]["status_code"] == 201
    doc = record("apache_common", '::1 - - [04/Dec/2026:10:00:00 +0000] "-" 400 0')
    assert doc["source"]["ip"] == "::1" and "url" not in doc and "request" not in doc["http"]


def test_a_line_not_in_the_access_format_goes_out_raw_flagged() -> None:
    doc = record("nginx_combined", "2026/12/04 10:00:00 [error] 12#12: *1 open() failed")
    assert flagged(doc) and "not in the combined access log format" in doc["error"]["message"]
    assert "http" not in doc and doc["@timestamp"] == "2026-12-04T10:00:00.000Z"  # read time
    doc = record("nginx_combined", '1.2.3.4 - - [04/Foo/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 1 "-" "-"')
    assert flagged(doc) and "10/Oct/2000" in doc["error"]["message"]


def test_syslog_rfc3164_with_and_without_priority() -> None:
    doc = record("syslog_rfc3164", "<34>Dec  4 09:59:58 mymachine su[230]: 'su root' failed on /dev/pts/8")
    sl = doc["log"]["syslog"]
    assert sl["priority"] == 34 and sl["facility"] == {"code": 4, "name": "auth"}
    assert sl["severity"] == {"code": 2, "name": "crit"} and doc["log"]["level"] == "crit"
    assert sl["hostname"] == "mymachine" and sl["appname"] == "su" and sl["procid"] == "230"
    assert sl["message"] == "'su root' failed on /dev/pts/8"
    expected = time.mktime((2026, 12, 4, 9, 59, 58, 0, 0, -1))
    assert doc["@timestamp"] == timestamp_json(expected).decode()
    doc = record("syslog", "Dec  4 09:59:58 web1 kernel: oops")
    assert doc["log"]["syslog"]["appname"] == "kernel" and "priority" not in doc["log"]["syslog"]
    doc = record("syslog", "2026-12-04T10:00:00.5+01:00 web1 app[1]: rsyslog's file format")
    assert doc["@timestamp"] == "2026-12-04T09:00:00.500Z"


def test_rfc3164_december_read_in_january_is_last_year() -> None:
    jan = time.mktime((2027, 1, 1, 0, 0, 5, 0, 0, -1))
    doc = record("syslog_rfc3164", "Dec 31 23:59:59 h app: late", read_ts=jan)
    assert doc["@timestamp"].startswith("2026-12-31") or doc["@timestamp"].startswith("2027-01-01")
    assert datetime.fromisoformat(doc["@timestamp"]).timestamp() < jan


def test_syslog_rfc5424() -> None:
    line = ('<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 '
            '[exampleSDID@32473 iut="3" eventSource="App"] An application event')
    for fmt in ("syslog_rfc5424", "syslog"):
        doc = record(fmt, line)
        sl = doc["log"]["syslog"]
        assert doc["@timestamp"] == "2003-10-11T22:14:15.003Z"
        assert sl["version"] == "1" and sl["appname"] == "evntslog" and sl["msgid"] == "ID47" and "procid" not in sl
        assert sl["structured_data"].startswith("[exampleSDID@32473") and sl["message"] == "An application event"
        assert doc["log"]["level"] == "notice" and sl["facility"]["name"] == "local4"
    doc = record("syslog_rfc5424", "<13>1 - - - - - -")
    assert not flagged(doc) and doc["@timestamp"] == "2026-12-04T10:00:00.000Z"
    assert flagged(record("syslog_rfc5424", "Dec  4 09:59:58 h app: not 5424"))
    assert "over 191" in record("syslog_rfc5424", "<999>1 - - - - - - x")["error"]["message"]


def test_json_under_its_target_with_depth_and_key_repairs() -> None:
    line = json.dumps({"level": "warn", "n": 1.5, "ok": True, "none": None, "a": {"b": {"c": {"d": {"e": {"f": 1}}}}},
                       "list": [1, 2], "objs": [{"x": 1}], "": "empty", "a..b.": 2})
    doc = record("json", line)
    j = doc["json"]
    assert j["level"] == "warn" and j["n"] == 1.5 and j["ok"] is True and j["none"] is None
    assert j["a"]["b"]["c"]["d"] == {"e": '{"f":1}'}  # deeper than max_depth 5: kept as JSON text
    assert j["list"] == [1, 2] and j["objs"] == '[{"x":1}]' and j["_"] == "empty" and j["a.b"] == 2
    assert record("json", line, max_depth=1)["json"]["a"] == '{"b":{"c":{"d":{"e":{"f":1}}}}}'
    assert record("json", '{"x": 1}', target="app.payload")["app"] == {"payload": {"x": 1}}


def test_json_line_text_is_reused_only_when_elasticsearch_takes_it_as_it_is() -> None:
    p = LineParser(Parse(format="json", target="app.payload"))
    r = p('{ "x" : 1 ,"y": {"z": [1, 2]} }', READ)
    assert r.top_part == b',"app":{"payload":{ "x" : 1 ,"y": {"z": [1, 2]} }}'  # the line's own text
    dup = LineParser(Parse(format="json"))('{"a": 1, "a": 2}', READ)
    assert dup.top_part == b',"json":{"a":2}'  # re-encoded: Elasticsearch refuses a duplicate key
    esc = LineParser(Parse(format="json"))('{"s": "\\ud83d\\ude00 \\ud800"}', READ)
    assert esc.top_part == ',"json":{"s":"\U0001F600 \ufffd"}'.encode()
    repaired = LineParser(Parse(format="json"))('{"a.": 1}', READ)
    assert repaired.top_part == b',"json":{"a":1}'


@pytest.mark.parametrize(("line", "words"), [
    ('{"a": ', "not JSON"),
    ("[1, 2]", "a JSON list, not an object"),
    ('{"a": NaN}', "NaN is not a JSON value"),
    ("[" * 100_000, "not JSON"),
    (json.dumps({f"k{i}": i for i in range(201)}), "more than max_fields 200"),
    (json.dumps({"a": {f"k{i}": i for i in range(201)}}), "more than max_fields 200"),
])
def test_json_lines_that_do_not_parse(line: str, words: str) -> None:
    doc = record("json", line)
    assert flagged(doc) and words in doc["error"]["message"] and "json" not in doc and doc["message"] == line


# The fast paths (orjson for the usual JSON line, one fullmatch for the usual combined line)
# must give what the general paths give: lines on both sides of each fast path's conditions.
JSON_EDGES = [
    '{"a": 1}', '{"a":1,"b":{"c":[1,2,"x"]}}', '{ "x" : 1 ,"y": {"z": [1, 2]} }', '{"a": 1, "a": 2}',
    '{"a" :1,"a":2}', '{"a":{"b":1},"a":{"b":2}}', '{"a":{"b":1,"b":2}}', '{"m": "x\\":y", "a": 1}',
    '{"m": "x\\":y", "a": 1, "a": 2}', '{"a":\t1,"a"\n:2}', '{"s": "\\ud83d\\ude00"}', '{"s": "\\ud800"}',
    '{"big": 123456789012345678901234567890}', '{"f": 1e400}', '{"f": 1.10, "g": -0, "h": 1E5}', '{"a": NaN}',
    '{}', '{"": 1}', '{" ": 1}', '{"a b": 1}', '{"a.": 1}', '{".a": 1}', '{"a..b": 1}', '{"a.b": {"c.d": 1}}',
    '{"a": {}}', '{"a": []}', '{"a": [[1]]}', '{"a": [{"b": 1}]}', '{"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}',
    '{"a": {"b": {"c": {"d": {"e": 1}}}}}', '[1]', '"x"', '{"a": 1} x', ' {"a": 1} ', '\ufeff{"a": 1}',
    '{"k\\u0000": 1}', '{"caf\u00e9": "\u00fc"}', '{"a": "\x01"}', json.dumps({f"k{i}": i for i in range(201)}),
    json.dumps({f"k{i}": i for i in range(200)}), '{"time": "2026-12-04T10:00:00Z", "n": 3}',
]


@pytest.mark.parametrize("target", ["json", "app.payload"])
def test_json_fast_path_gives_exactly_what_the_standard_decoder_gives(target: str, monkeypatch) -> None:
    import agent.parsers as parsers
    from bench.parse_bench import json_line
    lines = JSON_EDGES + [json_line(n) for n in range(0, 5000, 37)]
    ts = Timestamp(field=f"{target}.time")
    fast = [LineParser(Parse(format="json", target=target), ts), LineParser(Parse(format="json", target=target))]
    assert parsers._fast_loads is not None  # orjson is installed (a dependency): the fast path is tested
    monkeypatch.setattr(parsers, "_fast_loads", None)
    slow = [LineParser(Parse(format="json", target=target), ts), LineParser(Parse(format="json", target=target))]
    for line in lines:
        for f, s in zip(fast, slow, strict=True):
            assert f(line, READ) == s(line, READ), line


def test_usual_nginx_fast_path_gives_the_general_paths_document(monkeypatch) -> None:
    import re

    import agent.parsers as parsers
    from bench.parse_bench import nginx_line
    base = '10.0.0.7 - - [04/Dec/2026:10:00:00 +0000] "GET /a?b=1 HTTP/2.0" 200 17 "https://r/" "ua/1 (x; y)"'
    variants = [base, base.replace('"https://r/"', '"-"'), base.replace('"ua/1 (x; y)"', '"-"'),
                base.replace('"https://r/"', '""'), base.replace(" 17 ", " - "), base.replace(" - - ", " - bob "),
                base.replace("GET /a?b=1 HTTP/2.0", "GET /a?b=1"), base.replace("HTTP/2.0", "HTTP/"),
                base.replace("HTTP/2.0", "SPDY/3"), base + " extra", base.replace("/a?b=1", "/a\\x"),
                base.replace("/a?b=1", "/café"), base.replace("(x; y)", "(x;\ty)"), base.replace("(x; y)", "\x7f"),
                base.replace("10.0.0.7", "web-1.example"), base.replace("10.0.0.7", "::1"),
                base.replace("+0000", "-0730"), base.replace("04/Dec/2026:10:00:00 +0000", "4/Dec/2026:10:00:00"),
                base.replace("04/Dec/2026", "04/Foo/2026"), base.replace(" 200 ", " 2000 "),
                base.replace(" 17 ", " 0017 ")] + [nginx_line(n) for n in range(0, 3000, 7)]
    fast = LineParser(Parse(format="nginx_combined"))
    monkeypatch.setattr(parsers, "_CLF_USUAL", re.compile(r"(?!)"))
    general = LineParser(Parse(format="nginx_combined"))
    for line in variants:
        f, g = fast(line, READ), general(line, READ)
        assert (f.ts, f.error) == (g.ts, g.error), line
        assert json.loads(b"{" + f.top_part[1:] + b"}") == json.loads(b"{" + g.top_part[1:] + b"}"), line


# The shape-cached path (a line without escapes or arrays whose key structure was seen before) must
# give exactly what the general path gives, also for a line of a known shape that differs from it
# just where that path looks: lines in this order, through one parser (its cache warm).
_U = '"u": {"id": 2, "c": "de"}'
SHAPE_SEQUENCE = [
    f'{{"a": 1, {_U}, "m": "x"}}', f'{{"a": 2, {_U}, "m": "y"}}', '{"a":3,"u":{"id":2,"c":"de"},"m":"z"}',
    '{"a": 1, "u": "de", "m": "x"}', '{"a": 1, "u": "de", "m": {}}', '{"a": 1, "u": {"id": 2}, "m": "x"}',
    '{"a": 1, "u": {"c": 2, "id": 1}, "m": "x"}', '{"a": 1, "u": {"i.": 2, "c": "de"}, "m": "x"}',
    f'{{"a": 1, {_U}, "m": "x"}}', f'{{"a": 1, {_U}, "m": {{"z": 1}}}}', f'{{"a": 1, {_U}, "m": {{}}}}',
    f'{{"a": {{}}, {_U}, "m": "x"}}', '{"a": 1, "u": {"id": {}, "c": "de"}, "m": "x"}',
    f'{{"a": 1, {_U}, "m": "{{x}}"}}', f'{{"a": 1, {_U}, "m": ":x"}}', f'{{"a": 1, {_U}, "m": "x", "a": 3}}',
    '{"a": 1, "u": {"id": 2, "c": "de", "id": 3}, "m": "x"}', f'{{"a": 1, {_U}, {_U}, "m": "x"}}',
    f'{{"a" : 1, {_U}, "m": "x"}}', f'{{"a": 1, {_U}, "m" :"x", "m": 1}}', f'{{"a":\t1, {_U}, "m": "x"}}',
    f'{{"a": 123456789012345678901234567890, {_U}, "m": "x"}}', f'{{"a": NaN, {_U}, "m": "x"}}',
    f'{{"a": 1e400, {_U}, "m": "x"}}', f'{{"a": [1], {_U}, "m": "x"}}', f'{{"a": 1, {_U}, "m": "x\\"y"}}',
    f'{{"a": 1, {_U}, "m": "\\ud800"}}', f'{{"a": 1, {_U}, "m": "x"}} x',
    b'{"a": 1, "u": {"id": 2, "c": "\xff\xfe"}, "m": "caf\xc3\xa9"}'.decode("utf-8", "replace"),
    f'{{"a": 1, {_U}, "m": "x", "n": null}}', f'{{"a": 1, {_U}, "m": "x"}}',
    '{"a": {"b": {"c": {"d": {"e": 1}}}}}', '{"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}}',
    '{"a": {"b": {"c": {"d": {"e": 2}}}}}', '{"k.": 1}', '{"k..j": 1}', '{".k": 1}', '{"k j": 1}', '{"": 1}',
    '{"k": 1, "": 2}', '{"k": 1}', '{"k": {}}', '{"k": 2, "k": 1}',
]


@pytest.mark.parametrize("kw", [{}, {"target": "app.payload"}, {"max_fields": 4}, {"max_fields": 3}, {"max_depth": 1},
                                {"max_depth": 2}])
def test_json_shape_cache_gives_exactly_the_general_paths_result(kw: dict, monkeypatch) -> None:
    import agent.parsers as parsers
    from bench.parse_bench import json_line
    walks = []
    real = parsers._fields_if_fine

    def counted(*a: Any) -> int:
        walks.append(a[0])
        return real(*a)

    monkeypatch.setattr(parsers, "_fields_if_fine", counted)
    lines = SHAPE_SEQUENCE + [json_line(n) for n in range(0, 3000, 17)] + SHAPE_SEQUENCE[::-1]
    fast = [LineParser(Parse(format="json", **kw)), LineParser(Parse(format="json", **kw), Timestamp(field="k"))]
    assert parsers._fast_loads is not None
    got = [[f(line, READ) for f in fast] for line in lines]
    if not kw:
        # the usual lines took the shape-cached path: no walk of the object, no second decoding
        walks.clear()
        assert fast[0](json_line(5000), READ).error is None and fast[0](SHAPE_SEQUENCE[0], READ).error is None
        assert walks == []
    monkeypatch.setattr(parsers, "_fast_loads", None)
    slow = [LineParser(Parse(format="json", **kw)), LineParser(Parse(format="json", **kw), Timestamp(field="k"))]
    for line, results in zip(lines, got, strict=True):
        assert results == [s(line, READ) for s in slow], line


@pytest.mark.parametrize("fmt", ["unix", "unix_ms", "iso8601"])
def test_json_time_errors_name_the_lines_own_value(fmt: str, monkeypatch) -> None:
    """orjson reads a 30-digit integer as a float: the message still shows the line's integer."""
    import agent.parsers as parsers
    line = '{"time": 123456789012345678901234567890, "a": 1}'
    fast = LineParser(Parse(format="json", target="app"), Timestamp(field="app.time", format=fmt))(line, READ)
    monkeypatch.setattr(parsers, "_fast_loads", None)
    slow = LineParser(Parse(format="json", target="app"), Timestamp(field="app.time", format=fmt))(line, READ)
    assert fast == slow and fast.error is not None and "float" not in fast.error and "e+29" not in fast.error
    assert fast.top_part.startswith(b',"app":{"time": 123456789012345678901234567890, "a": 1}')


def test_json_with_10000_keys_parses_only_under_a_limit_that_allows_it() -> None:
    line = json.dumps({f"k{i}": i for i in range(10_000)})
    assert flagged(record("json", line))
    assert len(record("json", line, max_fields=10_000)["json"]) == 10_000


def test_kv() -> None:
    doc = record("kv", 'level=ERROR service=checkout msg="card \\"x\\" declined" took=2.5s empty=')
    assert doc["kv"] == {"level": "ERROR", "service": "checkout", "msg": 'card "x" declined', "took": "2.5s",
                         "empty": ""}
    assert record("kv", "a=1", target="t")["t"] == {"a": "1"}
    assert "no key=value" in record("kv", "just words")["error"]["message"]
    assert "below key a" in record("kv", "a=1 a.b=2")["error"]["message"]
    assert "max_fields 2" in record("kv", "a=1 b=2 c=3", max_fields=2)["error"]["message"]


def test_regex_named_groups_become_fields_typed_by_ecs() -> None:
    pat = r"^(?P<log__level>[A-Z]+) \[(?P<service__name>[\w-]+)\] (?P<http__response__status_code>\d+) " \
          r"(?P<event__duration>\d+)ns(?: (?P<opt>\S+))?"
    doc = record("regex", "ERROR [check-out] 502 1500ns", pattern=pat)
    assert doc["log"]["level"] == "ERROR" and doc["service"] == {"name": "check-out"}
    assert doc["http"]["response"]["status_code"] == 502 and doc["event"]["duration"] == 1500
    assert "opt" not in doc and doc["log"]["file"]["path"] == "/var/log/x.log"
    doc = record("regex", "nothing here", pattern=pat)
    assert flagged(doc) and "does not match" in doc["error"]["message"]


def test_timestamp_option_formats_and_failures() -> None:
    t = Timestamp(field="json.t")
    assert record("json", '{"t": "2026-01-02T03:04:05.678+02:00"}', timestamp=t)["@timestamp"] == \
        "2026-01-02T01:04:05.678Z"
    naive = Timestamp(field="json.t", timezone="Europe/Berlin")
    assert record("json", '{"t": "2026-07-01 12:00:00"}', timestamp=naive)["@timestamp"] == "2026-07-01T10:00:00.000Z"
    assert record("json", '{"t": 1700000000}', timestamp=Timestamp("json.t", "unix"))["@timestamp"] == \
        "2023-11-14T22:13:20.000Z"
    assert record("json", '{"t": 1700000000123}', timestamp=Timestamp("json.t", "unix_ms"))["@timestamp"] == \
        "2023-11-14T22:13:20.123Z"
    fmt = Timestamp("kv.when", "%d/%m/%Y %H:%M")
    assert record("kv", 'when="02/01/2026 03:04"', timestamp=fmt)["@timestamp"] == "2026-01-02T03:04:00.000Z"
    # unreadable: fields kept, read time kept, flagged with the reason
    doc = record("json", '{"t": "yesterday", "x": 1}', timestamp=t)
    assert doc["json"]["x"] == 1 and flagged(doc) and "not ISO-8601" in doc["error"]["message"]
    assert doc["@timestamp"] == "2026-12-04T10:00:00.000Z"
    assert "not in the line" in record("json", '{"x": 1}', timestamp=t)["error"]["message"]
    assert "years 1 to 9999" in record("json", '{"t": 1e15}', timestamp=Timestamp("json.t", "unix"))["error"][
        "message"]


def test_parsed_record_keeps_the_event_id_and_flags_of_the_plain_one() -> None:
    """The id depends on where the line is, never on what it says: exact delivery does not change."""
    plain = decode_record(ENC.encode(b"x", 7, b"2026-01-01T00:00:00.000Z", True, 3))
    r = LineParser(Parse(format="json"))("x", READ)
    parsed = decode_record(ENC.encode_parsed("x", 7, b"2026-01-01T00:00:00.000Z", True, 3, r.log_part, r.event_part,
                                             r.top_part, True))
    assert parsed["event"]["id"] == plain["event"]["id"]
    assert parsed["log"]["flags"] == ["multiline", "truncated", "parse_failure"]
    assert {k: v for k, v in parsed.items() if k != "error"} == \
        {**plain, "log": {**plain["log"], "flags": ["multiline", "truncated", "parse_failure"]}}
    # a lone surrogate from a JSON escape is written as U+FFFD, the record stays valid UTF-8
    r = LineParser(Parse(format="json"))('{"s": "\\ud800"}', READ)
    assert isinstance(r, Parsed) and "\ufffd".encode() in r.top_part


def test_every_field_a_builtin_parser_writes_is_mapped_with_its_type() -> None:
    props = template_body(["x-*"])["template"]["mappings"]["properties"]

    def mapped(path: str) -> str:
        node: dict = {"properties": props}
        for part in path.split("."):
            node = node["properties"][part]
        return node["type"]

    want = {"http.response.status_code": "long", "http.response.body.bytes": "long", "source.ip": "ip",
            "source.address": "keyword", "url.original": "keyword", "user_agent.original": "keyword",
            "http.request.method": "keyword", "http.request.referrer": "keyword", "http.version": "keyword",
            "user.name": "keyword", "log.level": "keyword", "log.syslog.priority": "long",
            "log.syslog.facility.code": "long", "log.syslog.severity.name": "keyword",
            "log.syslog.message": "text", "log.syslog.hostname": "keyword", "event.duration": "long",
            "error.message": "text", "@timestamp": "date"}
    assert {k: mapped(k) for k in want} == want

    def leaves(doc: dict, base: str = "") -> list[str]:
        out = []
        for k, v in doc.items():
            out += leaves(v, f"{base}{k}.") if isinstance(v, dict) else [base + k]
        return out

    docs = [record("nginx_combined", NGINX), record("syslog", "<34>Dec  4 09:59:58 h su[1]: x"),
            record("syslog", "<165>1 2003-10-11T22:14:15.003Z h app 1 ID47 [a b=\"c\"] m"),
            record("json", "{")]
    for doc in docs:
        for path in leaves(doc):
            if not path.startswith("fields."):
                assert mapped(path), path
    settings = template_body(["x-*"])["template"]["settings"]
    assert settings["index.mapping.total_fields.ignore_dynamic_beyond_limit"] is True
    # a parsed value of the wrong type is left unindexed, never refused; logferry's own fields stay strict
    assert props["http"]["properties"]["response"]["properties"]["status_code"]["ignore_malformed"] is True
    assert props["source"]["properties"]["ip"]["ignore_malformed"] is True
    assert "ignore_malformed" not in props["host"]["properties"]["ip"]
    dyn = [next(iter(t)) for t in template_body(["x-*"])["template"]["mappings"]["dynamic_templates"]]
    assert dyn == ["strings_as_keyword", "longs_lenient", "doubles_lenient", "dates_lenient"]


# --- filters ----------------------------------------------------------------------------------


def test_include_then_exclude_as_filebeat() -> None:
    f = LineFilter(include=("ERROR", "WARN"), exclude=("healthcheck",))
    assert f.keep("ERROR boom") and f.keep("x WARN y")
    assert not f.keep("INFO fine") and not f.keep("ERROR healthcheck failed")
    only_ex = LineFilter(exclude=("^DEBUG ", "(?i)trace"))
    assert not only_ex.keep("DEBUG x") and not only_ex.keep("a TRACE b") and only_ex.keep("INFO DEBUG x")
    alt = LineFilter(exclude=("a|b", "^c"))
    assert not alt.keep("xbx") and not alt.keep("cx") and alt.keep("xc")


def test_pipeline_only_for_inputs_that_filter_or_parse_and_counts_survive_a_change() -> None:
    assert pipeline_for(InputSpec(path="/a/*.log", topic="t")) is None
    p = pipeline_for(InputSpec(path="/a/*.log", topic="t", exclude_lines=("DEBUG",)))
    assert p is not None and p.parser is None and p.filter is not None
    p.dropped = 5
    q = pipeline_for(InputSpec(path="/a/*.log", topic="t", parse=Parse(format="json")), p)
    assert q is not None and q.filter is None and q.counts() == {"lines_dropped": 5, "lines_parsed": 0,
                                                                  "parse_failures": 0}


# --- schema -----------------------------------------------------------------------------------


def refused(**kw: object) -> str:
    with pytest.raises(SchemaError) as info:
        parse_collect_list(json.dumps([{"path": "/var/log/x/*.log", "topic": "app", **kw}]))
    return str(info.value)


ENTRY = 'collect list entry 1 ("/var/log/x/*.log"): '


@pytest.mark.parametrize(("kw", "message"), [
    ({"parse": "json"}, 'field "parse": must be an object like {"format": "nginx_combined"}; got "json"'),
    ({"parse": {}}, 'field "parse.format": missing; give one of json, kv, regex, nginx_combined'),
    ({"parse": {"format": "xml"}}, 'field "parse.format": must be "json" or "kv" or "regex"'),
    ({"parse": {"format": "json", "tagret": "a"}}, 'field "parse.tagret": unknown field (did you mean "target"?)'),
    ({"parse": {"format": "json", "target": "message"}},
     'field "parse.target": "message" would overwrite logferry\'s own field message'),
    ({"parse": {"format": "json", "target": "log.file.x"}},
     'field "parse.target": "log.file.x" would overwrite logferry\'s own field log.file'),
    ({"parse": {"format": "json", "target": "a b"}}, 'field "parse.target": must be a dotted field name'),
    ({"parse": {"format": "nginx_combined", "target": "x"}},
     'field "parse.target": applies to formats "json" and "kv" only, not "nginx_combined"'),
    ({"parse": {"format": "json", "max_depth": 0}}, 'field "parse.max_depth": must be a whole number from 1 to 20'),
    ({"parse": {"format": "json", "max_fields": 20_000}},
     'field "parse.max_fields": must be a whole number from 1 to 10000; got 20000'),
    ({"parse": {"format": "regex"}}, 'field "parse.pattern": missing; format "regex" needs a pattern'),
    ({"parse": {"format": "regex", "pattern": "(a"}}, 'field "parse.pattern": not a valid regular expression'),
    ({"parse": {"format": "regex", "pattern": "(a)"}}, 'field "parse.pattern": has no named group'),
    ({"parse": {"format": "regex", "pattern": "(?P<event__id>a)"}},
     'field "parse.pattern": group event__id: "event.id" would overwrite logferry\'s own field event.id'),
    ({"parse": {"format": "json", "pattern": "(?P<a>a)"}}, 'field "parse.pattern": applies to format "regex" only'),
    ({"timestamp": {"field": "t"}}, 'field "timestamp": needs "parse"'),
    ({"parse": {"format": "syslog"}, "timestamp": {"field": "t"}},
     'field "timestamp": syslog lines carry their own time, which becomes @timestamp; remove timestamp'),
    ({"parse": {"format": "json"}, "timestamp": {"format": "unix"}}, 'field "timestamp.field": missing'),
    ({"parse": {"format": "json"}, "timestamp": {"field": "json.t", "format": "dd/MM"}},
     'field "timestamp.format": "dd/MM" is neither "iso8601", "unix", "unix_ms" nor a strptime format'),
    ({"parse": {"format": "json"}, "timestamp": {"field": "json.t", "timezone": "CEST"}},
     'field "timestamp.timezone": unknown time zone "CEST"'),
    ({"parse": {"format": "json"}, "timestamp": {"field": "json.t", "zone": "UTC"}},
     'field "timestamp.zone": unknown field'),
    ({"exclude_lines": "DEBUG"}, 'field "exclude_lines": must be an array of regular expressions'),
    ({"include_lines": ["ok", "(bad"]}, 'field "include_lines": item 2: not a valid regular expression'),
])
def test_schema_refusals_name_the_entry_and_the_field(kw: dict, message: str) -> None:
    text = refused(**kw)
    assert text.startswith(ENTRY) and message in text, text


def test_schema_accepts_and_round_trips_parse_filters_and_timestamp() -> None:
    raw = json.dumps([
        {"path": "/var/log/nginx/access.log", "topic": "web", "parse": {"format": "nginx_combined"},
         "exclude_lines": ["GET /health"]},
        {"path": "/var/log/app/*.log", "topic": "app", "parse": {"format": "json", "target": "app", "max_depth": 3},
         "timestamp": {"field": "app.ts", "format": "unix_ms"}, "include_lines": ["^\\{"]},
        {"path": "/var/log/svc.log", "topic": "svc",
         "parse": {"format": "regex", "pattern": "^(?P<log__level>\\w+)"}},
    ])
    specs = parse_collect_list(raw)
    assert specs[1].parse == Parse(format="json", target="app", max_depth=3)
    assert specs[1].timestamp == Timestamp(field="app.ts", format="unix_ms")
    assert specs[0].exclude_lines == ("GET /health",) and specs[1].include_lines == ("^\\{",)
    assert parse_collect_list(dump_collect_list(specs)) == specs
    assert json.loads(dump_collect_list(specs))[1]["parse"] == {"format": "json", "target": "app", "max_depth": 3}
    assert specs[2].parse is not None and specs[2].parse.target is None
    assert InputSpec(path="/a", topic="t", parse=Parse("kv")).parse.target == "kv"  # type: ignore[union-attr]


# --- queries ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "clauses", "rest"), [
    ("http.response.status_code>=500", [{"range": {"http.response.status_code": {"gte": "500"}}}], ""),
    ("event.duration>2000000000 timeout", [{"range": {"event.duration": {"gt": "2000000000"}}}], "timeout"),
    ("source.ip:10.0.0.0/8 log.level:ERROR", [{"term": {"source.ip": "10.0.0.0/8"}},
                                              {"term": {"log.level": "ERROR"}}], ""),
    ("source.ip:2001:db8::1", [{"term": {"source.ip": "2001:db8::1"}}], ""),
    ('service.name:"check out" 3<4', [{"term": {"service.name": "check out"}}], "3<4"),
    ("url.original:/cart* message:timeout", [], "url.original:/cart* message:timeout"),
    ('error.message:"not JSON"', [{"match_phrase": {"error.message": "not JSON"}}], ""),
    ("a OR http.response.status_code>=500", [], "a OR http.response.status_code:>=500"),
    ("plain words", [], "plain words"),
    ('"status code:500 failed" x.y:1', [{"term": {"x.y": "1"}}], '"status code:500 failed"'),
    ("a/b:c", [], "a/b:c"),
    ('"a b:1" OR c>=2', [], '"a b:1" OR c:>=2'),
])
def test_field_clauses(text: str, clauses: list, rest: str) -> None:
    assert field_clauses(text) == (clauses, rest)


def test_build_query_puts_field_clauses_in_the_filter() -> None:
    q = build_query(since=None, until=None, host=None, text="http.response.status_code<400 GET")
    assert {"range": {"http.response.status_code": {"lt": "400"}}} in q["bool"]["filter"]
    assert q["bool"]["must"] == [{"query_string": {"query": "GET", "default_field": "message",
                                                   "default_operator": "AND"}}]
    only = build_query(since=None, until=None, host=None, text="log.level:ERROR")
    assert only["bool"]["must"] == []
