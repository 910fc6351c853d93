"""The Kafka record: ECS shape, escaping equal to json.dumps, stable ids, strict decoding."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logferry.envelope import (
    EnvelopeError,
    SourceEncoder,
    check_record,
    decode_record,
    encode_record,
    event_id,
    format_timestamp,
    source_key,
    timestamp_json,
)

BASE: dict[str, Any] = dict(
    message="GET /index.html 200", timestamp=1714564800.123, host_name="web1", host_ip="10.0.0.5",
    path="/var/log/nginx/access.log", offset=4096, file_identity="fp:0123abcd", fields=None,
    agent_version="0.1.0",
)


def record(**kw: Any) -> dict[str, Any]:
    return json.loads(encode_record(**{**BASE, **kw}))


def reference(**kw: Any) -> bytes:
    """The same record through json.dumps: encode_record must produce exactly these bytes."""
    k = {**BASE, **kw}
    log: dict[str, Any] = {"file": {"path": k["path"]}, "offset": k["offset"]}
    flags = (["multiline"] if (k.get("multiline_lines") or 0) > 1 else []) + (
        ["truncated"] if k.get("truncated") else [])
    if flags:
        log["flags"] = flags
    doc: dict[str, Any] = {
        "@timestamp": format_timestamp(k["timestamp"]), "message": k["message"],
        "host": {"name": k["host_name"], "ip": k["host_ip"]}, "log": log,
        "event": {"id": k.get("event_id") or event_id(k["host_ip"], k["file_identity"], k["offset"])},
    }
    if k["fields"]:
        doc["fields"] = dict(k["fields"])
    doc["agent"] = {"type": "logferry", "version": k["agent_version"]}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def test_ecs_shape() -> None:
    rec = record(fields={"env": "prod"})
    assert rec == {
        "@timestamp": "2024-05-01T12:00:00.123Z",
        "message": "GET /index.html 200",
        "host": {"name": "web1", "ip": "10.0.0.5"},
        "log": {"file": {"path": "/var/log/nginx/access.log"}, "offset": 4096},
        "event": {"id": event_id("10.0.0.5", "fp:0123abcd", 4096)},
        "fields": {"env": "prod"},
        "agent": {"type": "logferry", "version": "0.1.0"},
    }
    assert list(rec) == ["@timestamp", "message", "host", "log", "event", "fields", "agent"]


def test_fields_omitted_when_empty_and_tuple_pairs_accepted() -> None:
    assert "fields" not in record(fields=None)
    assert "fields" not in record(fields={})
    pairs = (("a", "1"), ("b", "2"))
    assert encode_record(**{**BASE, "fields": pairs}) == encode_record(**{**BASE, "fields": dict(pairs)})


@pytest.mark.parametrize(("kw", "flags"), [
    ({"truncated": True}, ["truncated"]),
    ({"multiline_lines": 3}, ["multiline"]),
    ({"multiline_lines": 3, "truncated": True}, ["multiline", "truncated"]),
    ({"multiline_lines": 1}, None),
    ({}, None),
])
def test_log_flags(kw: dict[str, Any], flags: list[str] | None) -> None:
    assert record(**kw)["log"].get("flags") == flags


def test_explicit_event_id_is_used() -> None:
    assert record(event_id="abc")["event"]["id"] == "abc"


def test_escaping_of_awkward_text() -> None:
    msg = 'quote " backslash \\ tab \t nl \n nul \x00 del \x7f bell \x07 ümlaut 日本 \u2028 emoji 🚀'
    raw = encode_record(**{**BASE, "message": msg, "path": '/var/log/"odd"\\name.log'})
    assert raw == reference(message=msg, path='/var/log/"odd"\\name.log')
    assert json.loads(raw)["message"] == msg


def test_invalid_unicode_becomes_replacement_character() -> None:
    broken = b"bad \xff\xfe bytes".decode("utf-8", "surrogateescape")
    raw = encode_record(**{**BASE, "message": broken, "fields": {"k": "\ud800"}})
    raw.decode("utf-8")  # valid UTF-8
    rec = json.loads(raw)
    assert rec["message"] == "bad \ufffd\ufffd bytes"
    assert rec["fields"] == {"k": "\ufffd"}


@settings(max_examples=200, deadline=None)
@given(
    message=st.text(max_size=80), host_name=st.text(max_size=10), path=st.text(max_size=20),
    offset=st.integers(0, 2**63), fields=st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=5),
                                                                      max_size=3),
    truncated=st.booleans(), multiline_lines=st.none() | st.integers(0, 5),
    timestamp=st.floats(0, 4102444800, allow_nan=False),
)
def test_byte_identical_to_json_dumps(**kw: Any) -> None:
    assert encode_record(**{**BASE, **kw}) == reference(**kw)


def _source_encoder(k: dict[str, Any]) -> SourceEncoder:
    return SourceEncoder(host_name=k["host_name"], host_ip=k["host_ip"], path=k["path"],
                         file_identity=k["file_identity"], fields=k["fields"], agent_version=k["agent_version"])


@settings(max_examples=300, deadline=None)
@given(
    raw=st.binary(max_size=80) | st.text(max_size=60).map(lambda t: t.encode("utf-8", "surrogatepass")),
    host_name=st.text(max_size=10), host_ip=st.sampled_from(["10.0.0.5", "::1", "h\udcff"]),
    path=st.text(max_size=20), file_identity=st.text(max_size=12), offset=st.integers(0, 2**63),
    fields=st.none() | st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3)
    | st.lists(st.tuples(st.text(max_size=4), st.text(max_size=4)), max_size=2).map(tuple),
    truncated=st.booleans(), lines=st.integers(1, 5), timestamp=st.floats(0, 4102444800, allow_nan=False),
)
def test_source_encoder_is_byte_identical_to_encode_record(raw: bytes, lines: int, **kw: Any) -> None:
    """The agent's per-file encoder: same bytes as encode_record (hence json.dumps), same key."""
    k = {**BASE, **kw}
    enc = _source_encoder(k)
    got = enc.encode(raw, k["offset"], timestamp_json(k["timestamp"]), k["truncated"], lines)
    want = encode_record(**{**k, "message": raw.decode("utf-8", "replace"),
                            "multiline_lines": lines if lines > 1 else None})
    assert got == want
    assert enc.key == source_key(k["host_ip"], k["file_identity"])
    # the encoder keeps no per-line state: a second line of the same file is as encode_record says
    assert enc.encode(b'a "b" \\ \xff', 7, timestamp_json(1.5)) == encode_record(
        **{**k, "message": 'a "b" \\ \ufffd', "offset": 7, "timestamp": 1.5, "truncated": False})


def test_source_encoder_nginx_line() -> None:
    line = (b'10.1.2.3 - - [25/Nov/2026:12:00:00 +0000] "GET /a?b=1 HTTP/1.1" 200 5123 "-" '
            b'"Mozilla/5.0 (X11; Linux x86_64)"')
    enc = _source_encoder(BASE)
    got = enc.encode(line, 4096, timestamp_json(BASE["timestamp"]))
    assert got == reference(message=line.decode())
    assert json.loads(got)["event"]["id"] == event_id("10.0.0.5", "fp:0123abcd", 4096)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=100))
def test_decode_accepts_what_encode_makes(message: str) -> None:
    rec = decode_record(encode_record(**{**BASE, "message": message}))
    assert rec["message"] == message


# --- timestamps ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("ts", "text"), [
    (0.0, "1970-01-01T00:00:00.000Z"),
    (1714564800.0, "2024-05-01T12:00:00.000Z"),
    (1714564800.001, "2024-05-01T12:00:00.001Z"),
    (1714564800.9999, "2024-05-01T12:00:00.999Z"),
    (1714564800.9999999, "2024-05-01T12:00:01.000Z"),
    (1714564801, "2024-05-01T12:00:01.000Z"),
    (datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), "2024-05-01T12:00:00.123Z"),
    (datetime(2024, 5, 1, 14, 0, 0, tzinfo=timezone(timedelta(hours=2))), "2024-05-01T12:00:00.000Z"),
])
def test_timestamp_format(ts: float | datetime, text: str) -> None:
    assert format_timestamp(ts) == text


def test_timestamp_cache_follows_the_clock() -> None:
    assert format_timestamp(100.5) == "1970-01-01T00:01:40.500Z"
    assert format_timestamp(101.5) == "1970-01-01T00:01:41.500Z"
    assert format_timestamp(100.25) == "1970-01-01T00:01:40.250Z"


def test_naive_datetime_and_nan_refused() -> None:
    with pytest.raises(ValueError, match="has no time zone"):
        format_timestamp(datetime(2024, 5, 1))
    with pytest.raises(ValueError, match="not a finite number"):
        format_timestamp(float("nan"))


# --- ids and keys -------------------------------------------------------------------------------


def test_event_id_is_stable_and_position_based() -> None:
    a = event_id("10.0.0.5", "fp:1", 100)
    assert a == event_id("10.0.0.5", "fp:1", 100)
    assert len(a) == 32 and int(a, 16) >= 0
    assert len({a, event_id("10.0.0.6", "fp:1", 100), event_id("10.0.0.5", "fp:2", 100),
                event_id("10.0.0.5", "fp:1", 101)}) == 4
    # no ambiguity from joining the parts
    assert event_id("1", "23", 4) != event_id("12", "3", 4)


def test_event_id_refuses_non_integer_offsets() -> None:
    with pytest.raises(TypeError):
        event_id("10.0.0.5", "fp:1", 1.5)  # type: ignore[arg-type]


def test_source_key() -> None:
    assert source_key("10.0.0.5", "fp:ab") == b"10.0.0.5/fp:ab"
    assert source_key("10.0.0.5", "fp:ab") != source_key("10.0.0.5", "fp:ac")


# --- decoding -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "reason"), [
    (b"not json", "not JSON (Expecting value at line 1 column 1)"),
    (b"\xff", "not UTF-8 (bad byte at offset 0)"),
    (b"[1]", "a JSON list, not an object"),
    (b'{"@timestamp": "2024-05-01T00:00:00Z", "event": {"id": "x"}}', 'missing "message"'),
    (b'{"message": 1, "@timestamp": "2024-05-01T00:00:00Z", "event": {"id": "x"}}',
     '"message" is not a string'),
    (b'{"message": "m", "event": {"id": "x"}}', 'missing "@timestamp"'),
    (b'{"message": "m", "@timestamp": 5, "event": {"id": "x"}}', '"@timestamp" is not a string'),
    (b'{"message": "m", "@timestamp": "yesterday", "event": {"id": "x"}}',
     "\"@timestamp\" 'yesterday' is not ISO"),
    (b'{"message": "m", "@timestamp": "2024-05-01T00:00:00Z"}', 'missing "event.id"'),
    (b'{"message": "m", "@timestamp": "2024-05-01T00:00:00Z", "event": "x"}', 'missing "event.id"'),
    (b'{"message": "m", "@timestamp": "2024-05-01T00:00:00Z", "event": {"id": ""}}', '"event.id" must be a'),
    (b'{"message": "m", "@timestamp": "2024-05-01T00:00:00Z", "event": {"id": "' + b"x" * 513 + b'"}}',
     "at most 512 bytes"),
    (b'{"message": "m", "@timestamp": "2024-05-01T00:00:00Z", "event": {"id": "x"}, "n": NaN}',
     "NaN is not valid JSON for Elasticsearch"),
    (b"[" * 100_000, "nested too deeply"),
])
def test_decode_refusals(raw: bytes, reason: str) -> None:
    with pytest.raises(EnvelopeError) as info:
        decode_record(raw)
    assert reason in info.value.reason
    assert str(info.value).startswith("not a logferry record: ")


def test_decode_passes_other_fields_through() -> None:
    raw = encode_record(**{**BASE, "fields": {"env": "prod"}, "truncated": True})
    rec = decode_record(raw)
    assert rec["fields"] == {"env": "prod"} and rec["log"]["flags"] == ["truncated"]
    assert decode_record(raw.decode()) == decode_record(memoryview(raw)) == rec


def _decoded(decode: Any, raw: bytes) -> Any:
    try:
        return decode(raw)
    except EnvelopeError as e:
        return e.reason


_OK = b'{"message": "m", "@timestamp": "2024-05-01T00:00:00Z", "event": {"id": "x"}'


@pytest.mark.parametrize("raw", [
    encode_record(**BASE), encode_record(**{**BASE, "fields": {"env": "prod", "n": "1"}, "truncated": True}),
    _OK + b"}", _OK + b', "message": "second"}', _OK + b', "n": 18446744073709551615}',
    _OK + b', "n": 18446744073709551616}', _OK + b', "n": -9223372036854775809}', _OK + b', "f": 1e400}',
    _OK + b', "f": 0.1, "g": -0.0, "h": 1.7976931348623157e308, "i": 5e-324}', _OK + b', "s": "\\ud800"}',
    _OK + b', "s": "\\ud83d\\ude00 \xc3\xa9"}', _OK + b', "n": NaN}', _OK + b', "n": Infinity}', b" " + _OK + b"} ",
    b"\xef\xbb\xbf" + _OK + b"}", _OK + b',\n "x": 1}', _OK + b"}\r", b"[1]", b"not json", b"\xff", b"{" * 2000,
    _OK + b', "s": "\xed\xa0\x80"}', b'{"message": "m", "@timestamp": "2024-05-01T00:00:00Z", "event": {"id": "x"}}}',
])
def test_check_record_is_decode_records_checks(raw: bytes) -> None:
    """check_record (orjson where it can) refuses what decode_record refuses, in its words, and reads
    the three fields the same; with a newline (re-serialised) the whole object is the standard one."""
    fast, standard = _decoded(check_record, raw), _decoded(decode_record, raw)
    if isinstance(standard, str) or b"\n" in raw:
        assert fast == standard
    else:
        assert [fast["message"], fast["@timestamp"], fast["event"]["id"]] == \
            [standard["message"], standard["@timestamp"], standard["event"]["id"]]
        assert {k: v for k, v in fast.items() if k != "n"} == {k: v for k, v in standard.items() if k != "n"}


@pytest.mark.parametrize("raw", [_OK + b"}", _OK + b',\n "x": 1}', _OK + b',\r "x": 1}', _OK + b"}\r",
                                 b"\n" + _OK + b"}"])
def test_check_record_takes_orjson_only_for_a_value_without_cr_or_lf(raw: bytes, monkeypatch) -> None:
    import logferry.envelope as envelope

    seen: list[bytes] = []
    fast = envelope._fast_loads
    assert fast is not None  # orjson is installed (a dependency): the fast path is tested
    monkeypatch.setattr(envelope, "_fast_loads", lambda b: seen.append(b) or fast(b))
    assert check_record(raw)["event"]["id"] == "x"
    assert seen == ([] if b"\n" in raw or b"\r" in raw else [raw])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), st.recursive(
    st.none() | st.booleans() | st.integers(-2**63, 2**64 - 1) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8), max_size=5))
def test_fuzz_check_record_is_decode_record(extra: dict[str, Any]) -> None:
    """Within 64-bit integers (orjson's and the standard decoder's numbers agree there), the objects are equal."""
    raw = json.dumps({**extra, "message": "m", "@timestamp": "2024-05-01T00:00:00Z", "event": {"id": "x"}}).encode()
    assert _decoded(check_record, raw) == _decoded(decode_record, raw)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=120) | st.text(max_size=120).map(str.encode))
def test_fuzz_decode_raises_only_envelope_error(raw: bytes) -> None:
    with contextlib.suppress(EnvelopeError):
        decode_record(raw)


def test_message_escaper_is_encode_basestrings_for_every_code_point() -> None:
    """SourceEncoder writes ``message`` with orjson when it can: byte for byte what the standard
    escaper writes, for every code point (each escaped on its own, so one text holds them all)."""
    from json.encoder import encode_basestring

    import logferry.envelope as envelope

    assert envelope._dumps is not None  # orjson is a dependency: its path is the one tested
    every = "".join(map(chr, [*range(0xD800), *range(0xE000, 0x110000)]))
    assert envelope._quoted(every) == encode_basestring(every).encode("utf-8")
    assert envelope._quoted('a"b\\c\x00\x1f\x7f\u2028') == b'"a\\"b\\\\c\\u0000\\u001f\x7f\xe2\x80\xa8"'
    # a lone surrogate (only a caller's own text can hold one): U+FFFD, as in every other field
    assert envelope._quoted("x\ud800y") == '"x\ufffdy"'.encode()
    enc = SourceEncoder(host_name="h", host_ip="10.0.0.5", path="/p", file_identity="fp:1", fields=None,
                        agent_version="0.1.0")
    assert decode_record(enc.encode_parsed("x\udcff", 0, b"2024-05-01T12:00:00.000Z", False, 1, b"", b"", b"",
                                           False))["message"] == "x\ufffd"
