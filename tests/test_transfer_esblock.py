"""Elasticsearch write blocks (disk flood stage): held and retried, never dead-lettered, and shown.

Elasticsearch is scripted (the stub of test_transfer_indexer); the real flood stage is reached in
integration/test_es_disk_full.py.
"""

from __future__ import annotations

import logging

import pytest

from tests.test_transfer_indexer import ScriptedES, api_error, indexer, item, ok, raise_, some
from transfer.esblock import BlockState, block_reason
from transfer.indexer import BulkJob, classify_exception

FLOOD = {"type": "cluster_block_exception",
         "reason": "index [logs-t] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, "
                   "index has read-only-allow-delete block; for more information, see https://www.elastic.co/x];"}
WRITE_REASON = "index [logs-t] blocked by: [FORBIDDEN/8/index write (api)];"
WRITE_BLOCK = {"type": "cluster_block_exception", "reason": WRITE_REASON}


def flood_all(ids):
    return some({i: (429, FLOOD) for i in ids})(ids)


def test_block_reason_names_the_block_and_what_to_do() -> None:
    r = block_reason(429, FLOOD)
    assert r is not None and "flood-stage" in r and "free disk space" in r
    w = block_reason(403, WRITE_BLOCK)
    assert w is not None and "index.blocks" in w
    assert block_reason(429, {"type": "es_rejected_execution_exception"}) is None
    assert block_reason(400, None) is None


def test_flood_stage_items_are_held_until_accepted_never_rejected(caplog: pytest.LogCaptureFixture) -> None:
    es = ScriptedES(flood_all, flood_all, flood_all, ok)
    idx, _ = indexer(es)
    job = BulkJob([item(n) for n in range(4)])
    caplog.set_level(logging.INFO, "logtransfer")
    assert idx.run(job)
    assert job.accepted == 4 and job.rejected == []
    assert len(es.sent) == 4 and all(len(s) == 4 for s in es.sent)
    assert not idx.block.active
    assert idx.metrics.es_blocked._value.get() == 0
    text = caplog.text
    # one line when it starts and one when it ends: not one per retry, not the generic fault lines
    assert text.count("writes BLOCKED") == 1 and text.count("writes accepted again") == 1, text
    assert "working again" not in text


def test_block_state_is_visible_while_it_lasts() -> None:
    seen: list[dict | None] = []
    es = ScriptedES(flood_all, flood_all, ok)
    idx, _ = indexer(es)

    def keepalive(s: float) -> None:
        seen.append(idx.block.status())
        idx.sleep(s)  # (advances the scripted clock)

    assert idx.run(BulkJob([item(0)]), keepalive=keepalive)
    assert seen and all(s is not None and "flood-stage" in s["reason"] and s["held_documents"] == 1 for s in seen)
    assert idx.block.status() is None and idx.block.episodes == 1


def test_whole_request_block_is_not_a_credentials_problem() -> None:
    kind, desc = classify_exception(api_error(403, "cluster_block_exception", WRITE_REASON))
    assert kind == "retry" and "credentials" not in desc
    es = ScriptedES(raise_(api_error(403, "cluster_block_exception", WRITE_REASON)), ok)
    idx, _ = indexer(es)
    seen: list[bool] = []
    job = BulkJob([item(0), item(1)])

    def keepalive(s: float) -> None:
        seen.append(idx.block.active)
        idx.sleep(s)

    assert idx.run(job, keepalive=keepalive)
    assert seen and all(seen) and job.accepted == 2 and not job.rejected


def test_a_stale_answer_does_not_start_the_block_again() -> None:
    gauge_values: list[int] = []

    class Gauge:
        def set(self, v: int) -> None:
            gauge_values.append(v)

    b = BlockState(Gauge(), clock=lambda: 100.0)
    b.blocked("r", 10, seq=1)
    b.blocked("r", 10, seq=2)
    b.clear(seq=4)  # request 4, sent after the space came back, went through
    b.blocked("r", 10, seq=3)  # request 3 was sent before: its answer is old news
    assert not b.active and b.episodes == 1 and gauge_values == [1, 0]
    b.blocked("r", 10, seq=5)
    assert b.active and b.episodes == 2


def test_logctl_status_renders_the_block_and_the_retention() -> None:
    from datetime import UTC, datetime

    from logctl.status import transfer_lines
    from tests.test_ctl_status import transfer_doc

    now = datetime(2024, 5, 1, 12, 0, 10, tzinfo=UTC)
    doc = transfer_doc(elasticsearch={"state": "blocked", "error": "x", "reason": block_reason(429, FLOOD),
                                      "since": "2024-05-01T12:00:00Z", "held_documents": 5000},
                       index_retention={"retention_days": 14, "deleted_total": 2, "checked_at": "2024-05-01T11:00:00",
                                        "outcome": "ran", "deleted": ["a", "b"], "deleted_count": 2})
    text = "\n".join(transfer_lines("t1", doc, now))
    assert "es         BLOCKED since 2024-05-01T12:00:00Z, 5,000 document(s) held" in text
    assert "flood-stage" in text and "free disk space" in text
    assert "retention  14 days; last check 2024-05-01T11:00:00: ran, 2 index(es) deleted" in text
    assert "index_retention" not in text  # rendered, not dumped as raw JSON
