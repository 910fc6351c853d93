"""Bulk body building: one NDJSON action + document per record, or a dead letter with the reason."""

from __future__ import annotations

import json

import pytest

from logferry.envelope import encode_record
from logferry.schema import TransferConfig
from transfer.records import DeadLetter, IndexItem, Source, action_line, document_line, prepare

CFG = TransferConfig(topics=("app",), index="logs-{topic}-{yyyy.MM.dd}")


def envelope(msg: str = "hello", offset: int = 0, ts: float = 1714564800.5) -> bytes:
    return encode_record(message=msg, timestamp=ts, host_name="web1", host_ip="10.0.0.5", path="/var/log/a.log",
                         offset=offset, file_identity="fp:1", fields={"env": "prod"}, agent_version="0.1.0")


def src(value: bytes | None, topic: str = "app", offset: int = 7) -> Source:
    return Source(topic, 2, offset, b"k", value, 1714564800000)


def test_valid_envelope_becomes_index_item_with_id_and_dated_index() -> None:
    raw = envelope()
    item = prepare(src(raw), CFG)
    assert isinstance(item, IndexItem)
    doc = json.loads(raw)
    assert item.doc_id == doc["event"]["id"]
    assert item.index == "logs-app-2024.05.01"
    action, body, end = item.lines.split(b"\n")
    assert end == b""
    assert json.loads(action) == {"index": {"_index": "logs-app-2024.05.01", "_id": item.doc_id}}
    assert body == raw  # the agent's compact JSON is sent as it is, not re-serialised


def test_bulk_body_is_valid_ndjson_for_many_records() -> None:
    items = [prepare(src(envelope(f"line {i} \u00e9 \"q\"", offset=i * 10), offset=i), CFG) for i in range(50)]
    body = b"".join(i.lines for i in items)
    lines = body.split(b"\n")
    assert lines[-1] == b"" and len(lines) == 101
    for n in range(0, 100, 2):
        assert "index" in json.loads(lines[n])
        assert json.loads(lines[n + 1])["message"].startswith("line ")


def test_pretty_printed_json_is_reserialised_on_one_line() -> None:
    doc = json.loads(envelope())
    pretty = json.dumps(doc, indent=2).encode()
    item = prepare(src(pretty), CFG)
    assert isinstance(item, IndexItem)
    assert item.lines.count(b"\n") == 2
    assert json.loads(item.lines.split(b"\n")[1]) == doc
    assert document_line(b'{"a":1}', {"a": 1}) == b'{"a":1}\n'


@pytest.mark.parametrize("raw", [b'{"a":\n1}', b'{"a":\r1}', b'{"a":1}\r', b'\r\n{"a":1}'])
def test_a_value_with_a_carriage_return_or_a_newline_is_reserialised(raw: bytes) -> None:
    """(The test looks for the byte values 10 and 13, not a one-byte string: same answer, memchr's speed.)"""
    assert document_line(raw, {"a": 1}) == b'{"a":1}\n'


def test_action_line_escapes_ids() -> None:
    line = action_line("logs-x", 'a"b\\c\u00e9')
    assert json.loads(line) == {"index": {"_index": "logs-x", "_id": 'a"b\\c\u00e9'}}
    assert line.endswith(b"\n")


def test_invalid_records_become_dead_letters_with_reason() -> None:
    for value, words in ((b"not json", "not JSON"), (b"[1,2]", "not an object"), (None, "tombstone"),
                         (b'{"message": "x", "@timestamp": "2024-05-01T00:00:00Z"}', "event.id"),
                         (b"\xff\xfe", "not UTF-8")):
        d = prepare(src(value), CFG)
        assert isinstance(d, DeadLetter), value
        assert d.kind == "invalid_record"
        assert words in d.reason
        assert d.src.value == value  # original bytes kept


def test_record_whose_index_name_is_refused_is_dead_lettered() -> None:
    cfg = TransferConfig(topics=("_bad",), index="{topic}-{yyyy.MM.dd}")
    d = prepare(src(envelope(), topic="_bad"), cfg)
    assert isinstance(d, DeadLetter)
    assert "index" in d.reason


def test_memoised_index_names_equal_index_name() -> None:
    from logferry.schema import index_name
    from transfer.records import _index_for

    hourly = TransferConfig(topics=("app",), index="h-{topic}-{yyyy.MM.dd.HH}")
    for cfg in (CFG, hourly):
        for ts in ("2024-05-01T23:59:59.999Z", "2024-05-02T00:00:00.000Z", "2024-05-01T23:30:00+02:00",
                   "2024-05-01T22:00:00-05:00", "2024-05-01T12:00:00Z", "2024-05-01"):
            for _ in range(2):  # second time from the cache
                assert _index_for(cfg, "app", ts) == index_name(cfg, "app", ts), (cfg.index, ts)


def test_decode_record_accepts_and_refuses_exactly_what_json_loads_did(monkeypatch) -> None:
    """decode_record parses with a decoder built once and a one-scan fast path; json.loads(...,
    parse_constant=…) built a decoder per call. Verdicts and reasons must not change."""
    import logferry.envelope as envelope_module
    from logferry.envelope import EnvelopeError, decode_record

    def per_call(text: str) -> object:
        return json.loads(text, parse_constant=envelope_module._reject_constant)

    good = envelope()
    doc = json.loads(good)
    cases = [
        good, envelope("é \"quoted\" \\ tab\t"), b" " + good, good + b" ", good + b"\n", good + b"x",
        b"\xef\xbb\xbf" + good,
        b"", b"null", b"[]", b'"s"', b"not json", b"\xff", b'{"a":NaN}', b'{"a":Infinity}',
        json.dumps({**doc, "message": 1}).encode(),
        json.dumps({k: v for k, v in doc.items() if k != "message"}).encode(),
        json.dumps({**doc, "@timestamp": "yesterday"}).encode(), json.dumps({**doc, "@timestamp": 5}).encode(),
        json.dumps({**doc, "event": {"id": ""}}).encode(), json.dumps({**doc, "event": {"id": 7}}).encode(),
        json.dumps({**doc, "event": "x"}).encode(), json.dumps({**doc, "event": {"id": "x" * 512}}).encode(),
        json.dumps({**doc, "event": {"id": "é" * 256}}).encode(),
        json.dumps({**doc, "event": {"id": "é" * 257}}).encode(),
        json.dumps({**doc, "event": {"id": "\ud83d\ude00" * 128}}).encode(),
        json.dumps({**doc, "event": {"id": "\ud83d\ude00" * 129}}).encode(), b"[" * 100000 + b"]" * 100000,
        json.dumps(doc, indent=2).encode(),
    ]
    def verdict(raw: bytes) -> object:
        try:
            return decode_record(raw)
        except EnvelopeError as e:
            return ("refused", e.reason)

    got = [verdict(raw) for raw in cases]
    with monkeypatch.context() as m:
        m.setattr(envelope_module, "_parse", per_call)
        want = [verdict(raw) for raw in cases]
    for raw, g, w in zip(cases, got, want, strict=True):
        assert g == w, raw[:80]
    # the event.id length limit is in bytes (512), whatever the characters
    ids = {"x" * 512: True, "é" * 256: True, "é" * 257: False, "\ud83d\ude00" * 128: True,
           "\ud83d\ude00" * 129: False}
    for eid, ok in ids.items():
        assert isinstance(verdict(json.dumps({**doc, "event": {"id": eid}}).encode()), dict) is ok, len(eid)


def _odd_records() -> list[bytes | None]:
    """Records the fast path must either read as check_record does or leave to it."""
    good = envelope()
    doc = json.loads(good)
    base = good[:-1]
    return [
        good, envelope("é \"quoted\" \\ tab\t"), envelope("\ud83d\ude00 emoji"), b" " + good, good + b"  ",
        good + b"\n", good + b"\r", good + b"x", b"\xef\xbb\xbf" + good, None, b"", b"null", b"[]", b'"s"',
        b"not json", b"\xff",
        base + b',"f":NaN}', base + b',"f":Infinity}', base + b',"f":"\\ud800"}', base + b',"f":"\xff\xfe"}',
        base + b',"f":"\\x"}', base + b',"f":01}', base + b',"f":"a\x01b"}', base + b',"f":[1,2}',
        base + b',"f":123456789012345678901234567890}', base + b',"f":' + b"[" * 3000 + b"]" * 3000 + b"}",
        base + b',"message":"last one wins"}', base + b',"@timestamp":"2024-06-01T00:00:00Z"}',
        base + b',"@timestamp":"not a date"}', base + b',"event":{"id":"second"}}',
        base + b',"message":7}', base + b',"event":{"id":""}}', base + b',"event":{"other":1}}',
        json.dumps({**doc, "message": 1}).encode(),
        json.dumps({k: v for k, v in doc.items() if k != "message"}).encode(),
        json.dumps({**doc, "@timestamp": "yesterday"}).encode(), json.dumps({**doc, "@timestamp": 5}).encode(),
        json.dumps({**doc, "event": {"id": 7}}).encode(), json.dumps({**doc, "event": "x"}).encode(),
        json.dumps({**doc, "event": {"id": "x" * 512}}).encode(),
        json.dumps({**doc, "event": {"id": "x" * 513}}).encode(),
        json.dumps({**doc, "event": {"id": "é" * 256}}).encode(),
        json.dumps({**doc, "event": {"id": "é" * 257}}).encode(),
        json.dumps({**doc, "event": {"id": "\ud83d\ude00" * 129}}).encode(),
        json.dumps({**doc, "@timestamp": "2024-05-01T23:30:00+02:00"}).encode(), json.dumps(doc, indent=2).encode(),
    ]


def test_the_fast_path_decides_exactly_as_check_record(monkeypatch) -> None:
    """record_keys (msgspec, three fields) must give the same IndexItem or DeadLetter as the full
    decode for every record: it reads only all-ASCII values without CR/LF and leaves anything it
    does not accept to check_record, whose words say what is wrong."""
    import transfer.records as records_module

    cases = _odd_records()
    fast = [prepare(src(raw), CFG) for raw in cases]
    with monkeypatch.context() as m:
        m.setattr(records_module, "record_keys", lambda raw: None)
        full = [prepare(src(raw), CFG) for raw in cases]
    assert sum(isinstance(f, IndexItem) for f in full) >= 15  # the battery holds many good records
    for raw, f, w in zip(cases, fast, full, strict=True):
        assert type(f) is type(w), raw[:80] if raw else raw
        if isinstance(w, IndexItem):
            assert (f.index, f.doc_id, f.lines) == (w.index, w.doc_id, w.lines), raw[:80]
        else:
            assert (f.reason, f.kind) == (w.reason, w.kind), raw[:80] if raw else raw


def test_record_keys_reads_the_usual_record_and_leaves_the_rest_to_check_record() -> None:
    from logferry.envelope import check_record, record_keys

    good = envelope()
    doc = check_record(good)
    assert record_keys(good) == (doc["@timestamp"], doc["event"]["id"])
    base = good[:-1]
    assert record_keys(base + b',"@timestamp":"2024-06-01T00:00:00Z"}')[0] == "2024-06-01T00:00:00Z"  # the last
    for raw in (None, "text", bytearray(good), good + b"\n", b"\r" + good, envelope("é"), base + b',"f":"\xff"}',
                base + b',"f":NaN}', base + b',"f":"\\ud800"}', good + b"x", b"[]", base + b',"message":7}',
                base + b',"@timestamp":"not a date"}', base + b',"event":{"id":""}}',
                json.dumps({**json.loads(good), "event": {"id": "x" * 513}}).encode()):
        assert record_keys(raw) is None, raw
