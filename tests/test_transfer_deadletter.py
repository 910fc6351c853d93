"""Dead-letter headers, and one log line per fault or per kind of dead letter, not per record."""

from __future__ import annotations

import logging

import pytest

from transfer.deadletter import _reason_kind, dead_letter_headers
from transfer.faults import FaultLog
from transfer.records import DeadLetter, Source


def test_headers_carry_reason_and_source_and_the_value_stays_untouched() -> None:
    d = DeadLetter(Source("app", 3, 1234, b"key", b"\xff raw bytes", 1714564800000),
                   "refused by Elasticsearch: 400 document_parsing_exception: failed to parse field [host.ip]",
                   "rejected", index="logs-app-2024.05.01")
    h = dict(dead_letter_headers(d, "transfer-1"))
    assert h == {
        "logferry.reason": d.reason.encode(),
        "logferry.kind": b"rejected",
        "logferry.source.topic": b"app",
        "logferry.source.partition": b"3",
        "logferry.source.offset": b"1234",
        "logferry.source.timestamp": b"1714564800000",
        "logferry.index": b"logs-app-2024.05.01",
        "logferry.transfer": b"transfer-1",
    }
    assert d.src.value == b"\xff raw bytes"


def test_reasons_differing_only_in_ids_group_together() -> None:
    a = "refused by Elasticsearch: 400 document_parsing_exception: [1:15] failed to parse field [host.ip] in " \
        "document with id 'abc'. Preview of field's value: 'x'"
    b = a.replace("'abc'", "'def'").replace("[1:15]", "[1:99]")
    assert _reason_kind(a) == _reason_kind(b)
    assert _reason_kind("not a logferry record: not JSON (Expecting value at line 1 column 1)") != _reason_kind(a)


def test_fault_log_is_one_line_per_fault_with_reminders_and_an_end(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    f = FaultLog("elasticsearch", logging.getLogger("t"), clock=lambda: now[0], remind_every_s=60)
    with caplog.at_level(logging.INFO, logger="t"):
        for _ in range(10):  # ten failed attempts over 50 s: one line
            f.fault("cannot connect (refused)", key="conn")
            now[0] += 5
        assert len(caplog.records) == 1
        f.fault("429 es_rejected_execution_exception", key="429")  # another kind of fault: a line
        now[0] += 20
        f.fault("429 es_rejected_execution_exception", key="429")  # reminder after 60 s since the last line
        now[0] += 60
        f.fault("429 es_rejected_execution_exception", key="429")
        f.clear()
        f.clear()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines
    assert "still failing" in lines[2]
    assert lines[3].startswith("elasticsearch: working again after 130.0s (13 failed attempts)")
    assert not f.active
