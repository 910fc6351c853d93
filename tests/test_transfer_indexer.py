"""Result classification (retryable / rejected) and retrying only the failed items of a bulk.

Elasticsearch is scripted here (a stub with ``bulk()``): these are unit tests of the decisions;
the real server is exercised in integration/test_transfer.py.
"""

from __future__ import annotations

import json

import elastic_transport
import elasticsearch
import pytest

from transfer.backoff import Backoff
from transfer.indexer import BulkJob, Indexer, classify_exception, classify_item, describe_item_error
from transfer.metrics import TransferMetrics
from transfer.records import IndexItem, Source, action_line


def meta(status: int) -> elastic_transport.ApiResponseMeta:
    return elastic_transport.ApiResponseMeta(status=status, http_version="1.1", headers=elastic_transport.HttpHeaders(),
                                             duration=0.0, node=elastic_transport.NodeConfig("http", "localhost", 9200))


def api_error(status: int, etype: str = "x", reason: str = "y") -> elasticsearch.ApiError:
    return elasticsearch.ApiError(etype, meta(status), {"error": {"type": etype, "reason": reason}, "status": status})


@pytest.mark.parametrize(("status", "error", "verdict"), [
    (200, None, "ok"),
    (201, None, "ok"),
    (429, {"type": "es_rejected_execution_exception"}, "retry"),
    (503, {"type": "unavailable_shards_exception"}, "retry"),
    (500, {"type": "whatever"}, "retry"),
    (408, {"type": "timeout"}, "retry"),
    (403, {"type": "cluster_block_exception", "reason": "index read-only / allow delete (api)"}, "retry"),
    (400, {"type": "mapper_parsing_exception"}, "reject"),
    (400, {"type": "document_parsing_exception"}, "reject"),
    (400, {"type": "illegal_argument_exception", "reason": "mapper [x] cannot be changed"}, "reject"),
    (404, {"type": "index_not_found_exception"}, "reject"),
])
def test_classify_item(status: int, error: dict | None, verdict: str) -> None:
    assert classify_item(status, error) == verdict


def test_describe_item_error_names_the_cause() -> None:
    text = describe_item_error(400, {"type": "document_parsing_exception", "reason": "failed to parse field [host.ip]",
                                     "caused_by": {"type": "illegal_argument_exception", "reason": "'x' is not an IP"}})
    assert text == ("400 document_parsing_exception: failed to parse field [host.ip] "
                    "(caused by illegal_argument_exception: 'x' is not an IP)")


def test_classify_whole_request_failures() -> None:
    assert classify_exception(elastic_transport.ConnectionError("Connection refused"))[0] == "retry"
    assert classify_exception(elastic_transport.ConnectionTimeout("read timed out"))[0] == "retry"
    assert classify_exception(api_error(429))[0] == "retry"
    assert classify_exception(api_error(502))[0] == "retry"
    kind, desc = classify_exception(api_error(401, "security_exception", "missing authentication"))
    assert kind == "retry" and "credentials" in desc
    assert classify_exception(api_error(413))[0] == "split"
    assert classify_exception(api_error(400, "parse_exception"))[0] == "split"
    with pytest.raises(KeyError):
        classify_exception(KeyError("a bug is not an outage"))


def item(n: int, partition: int = 0) -> IndexItem:
    doc = {"n": n}
    return IndexItem(Source("t", partition, n, None, b""), "logs-t", f"id{n}",
                     action_line("logs-t", f"id{n}") + json.dumps(doc).encode() + b"\n")


class ScriptedES:
    """bulk() answers from a script: a callable per call, given the ids sent."""

    def __init__(self, *script) -> None:
        self.script = list(script)
        self.sent: list[list[str]] = []

    def bulk(self, operations: bytes, filter_path: str) -> dict:
        lines = operations.split(b"\n")[:-1]
        ids = [json.loads(lines[i])["index"]["_id"] for i in range(0, len(lines), 2)]
        self.sent.append(ids)
        answer = self.script.pop(0)
        return answer(ids)


def ok(ids):
    return {"errors": False, "items": [{"index": {"status": 201}} for _ in ids]}


def some(statuses: dict[str, tuple[int, dict]]):
    def answer(ids):
        items = []
        for i in ids:
            status, err = statuses.get(i, (201, None))
            items.append({"index": {"status": status, **({"error": err} if err else {})}})
        return {"errors": any(i in statuses for i in ids), "items": items}
    return answer


def raise_(exc):
    def answer(ids):
        raise exc
    return answer


def indexer(es) -> tuple[Indexer, list[float]]:
    waits: list[float] = []
    clock = [0.0]

    def sleep(s: float) -> None:
        waits.append(s)
        clock[0] += s

    return Indexer(es, TransferMetrics(), Backoff(0.5, 2.0, jitter=0), clock=lambda: clock[0], sleep=sleep), waits


def test_only_failed_items_are_sent_again_and_rejects_are_returned() -> None:
    es = ScriptedES(
        some({"id1": (429, {"type": "es_rejected_execution_exception"}),
              "id3": (400, {"type": "document_parsing_exception", "reason": "bad ip"}),
              "id4": (503, {"type": "unavailable_shards_exception"})}),
        ok,
    )
    idx, waits = indexer(es)
    job = BulkJob([item(n) for n in range(6)])
    assert idx.run(job)
    assert es.sent == [["id0", "id1", "id2", "id3", "id4", "id5"], ["id1", "id4"]]
    assert [(job.items[i].doc_id, "bad ip" in r) for i, r in job.rejected] == [("id3", True)]
    assert job.accepted == 5
    assert sum(waits) == pytest.approx(0.5)
    m = idx.metrics.summary()
    assert m["indexed"] == 5 and m["retried"] == 2
    assert m["failed"] == {"retryable": 2.0, "rejected": 1.0}


def test_outage_is_retried_with_capped_backoff_until_it_ends_calling_keepalive() -> None:
    down = raise_(elastic_transport.ConnectionError("Connection refused"))
    es = ScriptedES(down, down, down, down, down, ok)
    idx, _ = indexer(es)
    slept = []
    clock = [0.0]
    idx.clock = lambda: clock[0]

    def keepalive(s: float) -> None:
        slept.append(s)
        clock[0] += s

    job = BulkJob([item(n) for n in range(3)])
    assert idx.run(job, keepalive=keepalive)
    assert len(es.sent) == 6 and all(s == ["id0", "id1", "id2"] for s in es.sent)
    assert sum(slept) == pytest.approx(0.5 + 1 + 2 + 2 + 2)  # capped at 2
    assert max(slept) <= 0.2 + 1e-9  # the consumer is polled at least every 0.2 s
    assert not idx.fault.active


def test_abort_stops_retrying_without_losing_the_pending_items() -> None:
    down = raise_(elastic_transport.ConnectionError("refused"))
    es = ScriptedES(down, down, down)
    idx, _ = indexer(es)
    calls = []
    job = BulkJob([item(n) for n in range(3)])
    assert not idx.run(job, abort=lambda: calls.append(1) or len(calls) > 5)
    assert job.pending == [0, 1, 2]


def test_request_refused_as_a_whole_is_split_to_find_the_bad_document() -> None:
    def refuse_if_bad(ids):
        if "id2" in ids:
            raise api_error(413, "request_entity_too_large", "too big")
        return ok(ids)

    es = ScriptedES(*[refuse_if_bad] * 10)
    idx, waits = indexer(es)
    job = BulkJob([item(n) for n in range(4)])
    assert idx.run(job)
    assert [job.items[i].doc_id for i, _ in job.rejected] == ["id2"]
    assert job.accepted == 3
    assert waits == []  # splitting is not a fault: no backoff


def test_drop_partitions_stops_sending_them() -> None:
    job = BulkJob([item(0, 0), item(1, 1), item(2, 0)])
    job.rejected.append((1, "x"))
    assert job.drop_partitions({("t", 1)}) == 2
    assert job.pending == [0, 2] and job.rejected == []


def test_bulk_response_serializer_counts_an_all_accepted_answer_and_parses_anything_else() -> None:
    from transfer.indexer import BulkResponseSerializer

    s = BulkResponseSerializer()
    ok_body = b'{"errors":false,"items":[' + b",".join([b'{"index":{"status":201}}'] * 5) + b"]}"
    parsed = s.loads(ok_body)
    assert parsed["errors"] is False and len(parsed["items"]) == 5
    bad = b'{"errors":true,"items":[{"index":{"status":201}},{"index":{"status":400,"error":{"type":"x"}}}]}'
    assert s.loads(bad) == json.loads(bad)
    assert s.loads(b'{"acknowledged":true}') == {"acknowledged": True}
    assert s.loads(b"") is None
    # what the indexer makes of the shortcut: all accepted, counted
    idx, _ = indexer(ScriptedES(lambda ids: s.loads(b'{"errors":false,"items":[' + b",".join(
        [b'{"index":{"status":201}}'] * len(ids)) + b"]}")))
    job = BulkJob([item(n) for n in range(4)])
    assert idx.run(job) and job.accepted == 4


def test_bulk_body_serializer_passes_a_finished_body_through_and_serialises_anything_else() -> None:
    from transfer.indexer import BulkBodySerializer

    s = BulkBodySerializer()
    body = action_line("i", "a") + b'{"message":"m"}\n'
    assert s.dumps(body) is body  # not copied
    assert s.dumps(b'{"a":1}') == b'{"a":1}\n'  # no final newline: the client's way, which adds it
    assert s.dumps([{"index": {"_id": "a"}}, {"m": 1}]) == b'{"index":{"_id":"a"}}\n{"m":1}\n'
    assert s.dumps("x\n") == b"x\n"


def test_the_transfer_client_uses_the_bulk_serializers_for_both_mimetypes() -> None:
    from types import SimpleNamespace

    from transfer.indexer import BulkBodySerializer, BulkResponseSerializer
    from transfer.main import make_es_client

    t = SimpleNamespace(es_hosts=["http://127.0.0.1:9"], es_api_key=None, es_username=None, es_password=None,
                        es_ca_file=None, es_verify_certs=True)
    col = make_es_client(t).transport.serializers
    for sub, cls in (("x-ndjson", BulkBodySerializer), ("json", BulkResponseSerializer)):
        assert isinstance(col.get_serializer(f"application/{sub}"), cls)
        assert isinstance(col.get_serializer(f"application/vnd.elasticsearch+{sub}; compatible-with=8"), cls)


def test_an_attempt_started_on_a_sender_thread_is_collected_and_its_failures_retried() -> None:
    es = ScriptedES(some({"id1": (429, {"type": "es_rejected_execution_exception"}),
                          "id2": (400, {"type": "mapper_parsing_exception", "reason": "bad"})}), ok)
    idx, waits = indexer(es)
    job = BulkJob([item(n) for n in range(4)])
    assert idx.start(job) and not idx.start(job)  # one request in flight per job
    assert idx.run(job)
    assert es.sent == [["id0", "id1", "id2", "id3"], ["id1"]]
    assert [i for i, _ in job.rejected] == [2] and job.accepted == 3 and job.future is None
    assert sum(waits) == pytest.approx(0.5)  # one backoff, in 0.2 s steps


def test_an_answer_for_dropped_partitions_is_ignored() -> None:
    import threading

    gate = threading.Event()

    def slow_ok(ids):
        gate.wait(5)
        return some({"id1": (400, {"type": "mapper_parsing_exception"})})(ids)

    es = ScriptedES(slow_ok)
    idx, _ = indexer(es)
    job = BulkJob([item(0, 0), item(1, 1), item(2, 0)])
    assert idx.start(job)
    job.drop_partitions({("t", 1)})  # revoked while the request is in flight
    gate.set()
    assert idx.run(job)
    assert job.rejected == [] and job.accepted == 2 and job.done


def test_a_guard_holds_documents_like_an_outage_and_nothing_is_sent_meanwhile() -> None:
    """transfer/template.py's guard says an index would get wrong mappings: nothing is sent, the
    reason is the fault, and the documents go as soon as the guard lets them."""
    es = ScriptedES(ok)
    idx, waits = indexer(es)
    answers = ["index logs-t would be created as a data stream: held"] * 2 + [None]
    asked: list[set[str]] = []

    def guard(names) -> str | None:
        asked.append(set(names))
        return answers.pop(0)

    idx.guard = guard
    job = BulkJob([item(n) for n in range(3)])
    assert not idx.start(job)  # held: no request started
    assert idx.run(job)
    assert es.sent == [["id0", "id1", "id2"]] and job.accepted == 3
    assert asked[0] == {"logs-t"} and len(waits) > 0
    assert idx.fault.last_error is not None and "data stream" in idx.fault.last_error
    assert not idx.fault.active
