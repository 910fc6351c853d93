"""The pipeline's delivery rule: commit only past settled records, also across a revoke that fires
while a bulk is being retried (the keepalive polls the consumer, which runs the callback)."""

from __future__ import annotations

import elastic_transport
from test_transfer_indexer import ScriptedES, ok, raise_, some

from logferry.envelope import encode_record
from logferry.schema import TransferConfig
from transfer.backoff import Backoff
from transfer.indexer import Indexer
from transfer.metrics import TransferMetrics
from transfer.pipeline import Pipeline
from transfer.records import Source

CFG = TransferConfig(topics=("t",), index="logs-{topic}", bulk_max_docs=100, dead_letter_topic="dlq")


def rec(partition: int, offset: int, value: bytes | None = None) -> Source:
    v = value if value is not None else encode_record(
        message=f"m{partition}-{offset}", timestamp=1714564800.0, host_name="h", host_ip="10.0.0.1", path="/a",
        offset=offset, file_identity=f"fp{partition}", fields=None, agent_version="t")
    return Source("t", partition, offset, None, v)


class FakeDLQ:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    def send(self, topic, letters, keepalive=None, abort=None) -> bool:
        for d in letters:
            if d.state != "delivered":
                d.state = "delivered"
                self.sent.append((topic, d.src.where(), d.kind))
        return True


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict] = []
        self.paused = False
        self.on_poll = None

    def commit(self, offsets) -> bool:
        self.commits.append(dict(offsets))
        return True

    def keepalive(self, t: float) -> None:
        self.paused = True
        if self.on_poll:
            cb, self.on_poll = self.on_poll, None
            cb()

    def resume(self) -> None:
        self.paused = False


def make(es) -> tuple[Pipeline, FakeConsumer, FakeDLQ]:
    dlq = FakeDLQ()
    idx = Indexer(es, TransferMetrics(), Backoff(0.01, 0.02, jitter=0))
    p = Pipeline(idx, dlq, idx.metrics)
    p.cfg = CFG
    c = FakeConsumer()
    p.consumer = c
    return p, c, dlq


def test_flush_indexes_dead_letters_then_commits_per_partition() -> None:
    es = ScriptedES(some({}))
    p, c, dlq = make(es)
    for o in range(3):
        p.add(rec(0, o))
    p.add(rec(1, 10, b"garbage"))
    p.add(rec(1, 11))
    assert p.flush(c.keepalive, lambda: False)
    assert es.sent and len(es.sent[0]) == 4
    assert dlq.sent == [("dlq", "t[1]@10", "invalid_record")]
    assert c.commits == [{("t", 0): 3, ("t", 1): 12}]
    assert p.tracker.pending() == 0 and p.batch is None


def test_rejected_documents_go_to_the_dead_letter_topic_before_the_commit() -> None:
    es = ScriptedES(lambda ids: some({ids[1]: (400, {"type": "mapper_parsing_exception", "reason": "x"})})(ids))
    p, c, dlq = make(es)
    for o in range(3):
        p.add(rec(0, o))
    assert p.flush(None, lambda: False)
    assert dlq.sent == [("dlq", "t[0]@1", "rejected")]
    assert c.commits == [{("t", 0): 3}]


def test_nothing_is_committed_while_elasticsearch_is_down() -> None:
    down = raise_(elastic_transport.ConnectionError("refused"))
    es = ScriptedES(*[down] * 50)
    p, c, _ = make(es)
    p.add(rec(0, 0))
    tries = []
    assert not p.flush(c.keepalive, lambda: tries.append(1) or len(tries) > 30)
    assert c.commits == []
    assert p.batch is not None and p.tracker.pending() == 1


def test_revoke_during_a_retry_finishes_the_batch_and_commits_before_returning() -> None:
    down = raise_(elastic_transport.ConnectionError("refused"))
    es = ScriptedES(down, ok, ok)
    p, c, _ = make(es)
    for o in range(5):
        p.add(rec(0, o))
    p.add(rec(1, 0))
    seen_at_revoke = {}

    def revoke() -> None:
        p.on_revoke([("t", 1)])
        seen_at_revoke["commits"] = list(c.commits)

    c.on_poll = revoke  # the first keepalive poll runs the rebalance callback
    assert p.flush(c.keepalive, lambda: False)
    # the callback settled the whole batch (no second bulk from the outer flush) and committed
    assert seen_at_revoke["commits"] == [{("t", 0): 5, ("t", 1): 1}]
    assert len(es.sent) == 2
    assert c.commits == [{("t", 0): 5, ("t", 1): 1}]  # outer flush found nothing more to commit
    assert ("t", 1) not in p.tracker.partitions()
    assert not c.paused


def test_lost_partitions_are_dropped_without_commit() -> None:
    es = ScriptedES(ok)
    p, c, _ = make(es)
    p.add(rec(0, 0))
    p.add(rec(1, 0))
    p.on_lost([("t", 1)])
    assert p.buffered == 1
    assert p.flush(None, lambda: False)
    assert c.commits == [{("t", 0): 1}]
    assert es.sent == [[es.sent[0][0]]]


def test_buffer_is_due_by_count_bytes_or_age() -> None:
    clock = [0.0]
    p, _, _ = make(ScriptedES())
    p.clock = lambda: clock[0]
    p.cfg = TransferConfig(topics=("t",), bulk_max_docs=3, bulk_max_bytes=1024, flush_interval_s=2.0)
    assert not p.due() and p.time_to_due() is None
    p.add(rec(0, 0))
    assert not p.due() and p.time_to_due() == 2.0
    clock[0] = 2.0
    assert p.due()
    p.add(rec(0, 1))
    p.add(rec(0, 2))
    assert p.full() and p.room() == 0


def test_a_revoked_partition_that_comes_back_is_not_settled_by_the_old_batch() -> None:
    down = raise_(elastic_transport.ConnectionError("refused"))
    es = ScriptedES(down, down, ok, ok)
    p, c, _ = make(es)
    p.add(rec(0, 0))
    p.add(rec(1, 0))
    p.add(rec(1, 1))
    polls = []

    def keepalive(t: float) -> None:
        polls.append(t)
        if len(polls) == 1:
            p.on_lost([("t", 1)])  # gone while ES is down...
            p.add(rec(1, 0))  # ...and back: re-consumed from the last commit, not yet indexed

    assert p.flush(keepalive, lambda: False)
    # the old batch settles partition 0 only: t[1]@0, consumed again, is not in Elasticsearch yet
    assert c.commits == [{("t", 0): 1}]
    assert p.tracker.pending() == 1 and p.buffered == 1
    assert p.flush(keepalive, lambda: False)
    assert c.commits == [{("t", 0): 1}, {("t", 1): 1}]
    assert p.tracker.pending() == 0
