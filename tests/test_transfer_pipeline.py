"""The pipeline's delivery rule: commit only past settled records, also across a revoke that fires
while a bulk is being retried (the keepalive polls the consumer, which runs the callback)."""

from __future__ import annotations

import json

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


# ---------------------------------------------------------------------- batches in flight
def test_dispatched_batches_are_sent_in_the_background_settled_in_order_and_bounded() -> None:
    import threading

    class GatedES:
        """Answers a request once the gate of its first record's offset is open."""

        def __init__(self) -> None:
            self.gates = {o: threading.Event() for o in range(0, 10, 2)}
            self.sent: list[int] = []

        def bulk(self, operations: bytes, filter_path: str) -> dict:
            lines = operations.split(b"\n")[:-1]
            offsets = [json.loads(lines[i])["log"]["offset"] for i in range(1, len(lines), 2)]
            self.sent.append(offsets[0])
            self.gates[offsets[0]].wait(5)
            return {"errors": False, "items": [{"index": {"status": 201}} for _ in offsets]}

    def wait_done(b) -> None:
        for _ in range(500):
            if b.bulk.future is None or b.bulk.future.done():
                return
            threading.Event().wait(0.01)

    es = GatedES()
    p, c, _ = make(es)
    p.cfg = TransferConfig(topics=("t",), bulk_max_docs=2, dead_letter_topic="dlq")
    stop = lambda: False  # noqa: E731
    for o in range(4):
        p.add(rec(0, o))
        if p.full():
            assert p.dispatch(c.keepalive, stop)
    assert len(p.in_flight) == 2 and p.buffered == 0
    assert p.reap(c.keepalive, stop) and c.commits == []  # nothing answered yet: nothing settled
    es.gates[2].set()  # the second batch is answered first...
    wait_done(p.in_flight[1])
    assert p.reap(c.keepalive, stop) and c.commits == []  # ...but settling (and committing) is in order
    es.gates[0].set()
    wait_done(p.in_flight[0])
    assert p.reap(c.keepalive, stop)
    assert c.commits == [{("t", 0): 4}] and not p.in_flight
    # bounded: with two batches in flight, dispatching a third settles the oldest first
    for o in range(4, 8):
        p.add(rec(0, o))
        if p.full():
            assert p.dispatch(c.keepalive, stop)
    assert len(p.in_flight) == 2
    es.gates[4].set()
    p.add(rec(0, 8))
    p.add(rec(0, 9))
    assert p.dispatch(c.keepalive, stop)  # waited for the batch of offsets 4-5
    assert c.commits[-1] == {("t", 0): 6} and len(p.in_flight) == 2
    es.gates[6].set()
    es.gates[8].set()
    assert p.flush(c.keepalive, stop)
    assert c.commits[-1] == {("t", 0): 10} and p.tracker.pending() == 0
    assert sorted(es.sent) == [0, 2, 4, 6, 8]


def test_a_background_attempt_that_fails_is_retried_before_anything_after_it_is_committed() -> None:
    down = raise_(elastic_transport.ConnectionError("refused"))
    es = ScriptedES(down, ok, ok)
    p, c, _ = make(es)
    p.cfg = TransferConfig(topics=("t",), bulk_max_docs=2, dead_letter_topic="dlq")
    stop = lambda: False  # noqa: E731
    p.add(rec(0, 0))
    p.add(rec(0, 1))
    assert p.dispatch(c.keepalive, stop)
    p.add(rec(0, 2))
    assert p.flush(c.keepalive, stop)
    assert len(es.sent) == 3 and c.commits == [{("t", 0): 3}]
    assert not c.paused  # resumed after the retry


def test_revoke_settles_every_batch_in_flight_before_letting_go() -> None:
    es = ScriptedES(ok, ok, ok)
    p, c, _ = make(es)
    p.cfg = TransferConfig(topics=("t",), bulk_max_docs=2, dead_letter_topic="dlq")
    stop = lambda: False  # noqa: E731
    for o in range(4):
        p.add(rec(o % 2, o))
        if p.full():
            assert p.dispatch(c.keepalive, stop)
    p.add(rec(1, 5))
    p.on_revoke([("t", 1)])
    assert c.commits == [{("t", 0): 3, ("t", 1): 6}]
    assert not p.in_flight and p.buffered == 0 and ("t", 1) not in p.tracker.partitions()


def test_lost_partitions_in_flight_are_not_settled_by_the_late_answer() -> None:
    import threading

    gate = threading.Event()

    def slow(ids):
        gate.wait(5)
        return ok(ids)

    es = ScriptedES(slow, ok)
    p, c, _ = make(es)
    p.cfg = TransferConfig(topics=("t",), bulk_max_docs=3, dead_letter_topic="dlq")
    stop = lambda: False  # noqa: E731
    p.add(rec(0, 0))
    p.add(rec(1, 0))
    p.add(rec(1, 1))
    assert p.dispatch(c.keepalive, stop)
    p.on_lost([("t", 1)])
    p.add(rec(1, 0))  # back again, consumed anew, not yet in Elasticsearch
    gate.set()
    while p.in_flight:
        assert p.reap(c.keepalive, stop)
    assert c.commits == [{("t", 0): 1}]
    assert p.tracker.pending() == 1
    assert p.flush(c.keepalive, stop)
    assert c.commits[-1] == {("t", 1): 1}


class Msg:
    """The few methods of a confluent_kafka.Message the pipeline reads."""

    def __init__(self, src: Source) -> None:
        self.src = src

    def topic(self) -> str:
        return self.src.topic

    def partition(self) -> int:
        return self.src.partition

    def offset(self) -> int:
        return self.src.offset

    def key(self) -> bytes | None:
        return self.src.key

    def value(self) -> bytes:
        return self.src.value

    def timestamp(self) -> tuple[int, int]:
        return (0, 0)


def test_records_of_a_partition_revoked_during_the_consume_call_are_not_taken() -> None:
    es = ScriptedES(ok, ok, ok)
    p, c, _ = make(es)

    def messages():
        yield Msg(rec(0, 0))
        yield Msg(rec(1, 0))
        p.on_revoke([("t", 1)])  # a keepalive poll on the way ran the rebalance callback
        yield Msg(rec(1, 1))  # fetched before the revoke: the next owner's now
        yield Msg(rec(0, 1))

    p.add_messages(messages(), c.keepalive, lambda: False)
    assert [(s.partition, s.offset) for s in p._sources] == [(0, 1)]
    assert p.flush(None, lambda: False)
    assert ("t", 1) not in p.tracker.partitions()
    assert all(("t", 1) not in commit or commit[("t", 1)] == 1 for commit in c.commits), c.commits
    assert c.commits[-1][("t", 0)] == 2


def test_a_caught_up_consumer_dispatches_at_once_but_only_with_nothing_in_flight() -> None:
    """Latency: a live stream is not held for flush_interval_s; while a bulk is indexed the buffer grows."""
    import threading

    gate = threading.Event()

    class HeldES:
        def bulk(self, operations: bytes, filter_path: str) -> dict:
            gate.wait(5)
            n = operations.count(b"\n") // 2
            return {"errors": False, "items": [{"index": {"status": 201}} for _ in range(n)]}

    clock = [0.0]
    p, c, _ = make(HeldES())
    p.clock = lambda: clock[0]
    p.cfg = TransferConfig(topics=("t",), bulk_max_docs=100, flush_interval_s=60.0)
    stop = lambda: False  # noqa: E731
    assert not p.ready(caught_up=True)  # nothing buffered
    p.add(rec(0, 0))
    assert not p.ready(caught_up=False)  # more is coming: keep filling the bulk
    assert not p.ready(caught_up=True)  # younger than CAUGHT_UP_LINGER_S
    clock[0] = 0.1
    assert p.ready(caught_up=True)
    assert p.dispatch(c.keepalive, stop)
    p.add(rec(0, 1))
    p.add(rec(0, 2))
    assert not p.ready(caught_up=True)  # a bulk is being indexed: the buffer grows
    clock[0] = 60.1
    assert p.ready(caught_up=False)  # the age limit still holds (two in flight, as under a backlog)
    assert p.dispatch(c.keepalive, stop) and len(p.in_flight) == 2
    gate.set()
    assert p.flush(c.keepalive, stop)
    assert c.commits[-1] == {("t", 0): 3}
    p.add(rec(0, 3))
    clock[0] = 60.2
    assert p.ready(caught_up=True)  # answered and settled: a caught-up stream goes out at once
