"""Kafka retention shorter than a transfer outage (issue 12.3): the gap is reported with its exact size.

A transfer group that is down longer than a topic's retention comes back to a committed offset
Kafka has deleted past. librdkafka answers OFFSET_OUT_OF_RANGE and, under
``auto.offset.reset=earliest``, starts again at the first record left: before this change the
records in between vanished without a word. Here, on the real stack (one broker, etcd,
Elasticsearch, real ``logtransfer`` processes):

1. a topic with 16 KiB segments (so retention deletes in small steps) and no retention yet;
2. N records, indexed and committed by a transfer, which is then stopped (the outage);
3. M1 more records during the outage, then M2 records "now";
4. the topic's retention is shortened to one hour. The N and M1 records carry a Kafka timestamp
   two hours old (retention compares a segment's newest timestamp with the clock), the M2 ones
   the current time: the outage is longer than the retention for the first ones, not for the
   last. Which segments Kafka deletes is decided by the data, not by timing, and the test waits
   for the state — the low watermark past the committed offset — not for a time;
5. a transfer starts again: the gap it reports must be exactly ``low watermark - committed``
   records, in its log line (topic, partition, offsets), its status key (``retention_gaps``,
   ``LOST`` in ``logctl status``) and its metric; and Elasticsearch must then hold exactly the
   records that were still in Kafka plus the N indexed before (by ``event.id``).

The second test falls behind the retention the other way: the transfer runs, Elasticsearch is
down, and Kafka deletes past the records the transfer holds; the gap is found when the consumer,
reset by librdkafka, hands out a record past the one expected.

The stack's broker checks retention every second (``log.retention.check.interval.ms`` in
``integration/stack``); on a broker with the 5-minute default the wait is longer, not different.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
    ResourceType,
)

from integration.agents import wait_for
from integration.conftest import StackHandle
from integration.test_logctl import logctl  # noqa: F401
from integration.test_transfer import (  # noqa: F401
    Feed,
    committed,
    es_count,
    es_count_ids,
    free_port,
    index_pattern,
    indices,
    prefix,
    put_config,
    scrape,
    status_of,
    transfer_config,
    transfers,
    wait_committed,
)

HOUR_MS = 3_600_000


class StampedFeed(Feed):
    """Feed (envelopes ``<tag>-<n>``, where each landed) with a chosen Kafka timestamp, in small batches."""

    def __init__(self, stack: StackHandle, topic: str, tag: str) -> None:
        super().__init__(stack, topic, tag)
        # small batches: a 16 KiB segment holds a few of them, so segments end every ~40 records
        self.producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "acks": "all",
                                  "enable.idempotence": True, "linger.ms": 5, "batch.size": 4096})
        self.timestamp_ms: int | None = None

    def produce_extra(self) -> dict[str, object]:
        return {"partition": 0, "timestamp": self.timestamp_ms or 0}


def watermarks(stack: StackHandle, topic: str) -> tuple[int, int]:
    """(low, high) of partition 0, asked of the broker (not cached)."""
    c = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": f"wm-{time.time_ns()}"})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    finally:
        c.close()


def retention_check_interval_s(kafka_admin) -> float:
    """The broker's log.retention.check.interval.ms, in seconds (how long deleting may take to start)."""
    broker = next(iter(kafka_admin.list_topics(timeout=10).brokers))
    res = ConfigResource(ResourceType.BROKER, str(broker))
    entries = kafka_admin.describe_configs([res])[res].result(timeout=30)
    return int(entries["log.retention.check.interval.ms"].value) / 1000


def shorten_retention_and_wait(stack: StackHandle, kafka_admin, topic: str, past: int) -> tuple[int, int]:
    """Set the topic's retention.ms to one hour; wait until Kafka deleted past offset ``past``; (low, high).

    Kafka deletes every segment whose newest record is older than the retention in one pass, so
    the first low watermark seen past ``past`` is the last one (checked again by the caller).
    """
    res = ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", str(HOUR_MS), incremental_operation=AlterConfigOpType.SET)])
    kafka_admin.incremental_alter_configs([res])[res].result(timeout=30)
    check_s = retention_check_interval_s(kafka_admin)
    started = time.monotonic()
    wait_for(lambda: watermarks(stack, topic)[0] > past, check_s + 60,
             f"Kafka's retention to delete past offset {past} (it checks every {check_s:g}s)", interval=0.5)
    low, high = watermarks(stack, topic)
    print(f"retention deleted offsets 0..{low - 1} in {time.monotonic() - started:.1f}s; end {high}")
    return low, high


def produce_fresh(feed: StampedFeed, count: int) -> int:
    """``count`` records stamped now; the offset of the first.

    The first goes alone, in a batch small enough to join the last old records' segment (when it
    has room): that segment then stays, old records included, so the gap does not simply end at
    the first fresh record.
    """
    feed.timestamp_ms = None
    start = feed.n
    feed.produce(1)
    feed.produce(count - 1)
    return feed.where[f"{feed.tag}-{start:07d}"][1]


@pytest.fixture
def gap_topic(kafka_admin, unique: str) -> Iterator[str]:
    """One partition, 16 KiB segments (retention deletes in small steps), no retention until the test sets it."""
    topic = f"it-gap-{unique}"
    fut = kafka_admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1,
                                              config={"segment.bytes": "16384", "retention.ms": "-1"})])
    fut[topic].result(timeout=30)
    yield topic
    for f in kafka_admin.delete_topics([topic]).values():
        with contextlib.suppress(Exception):
            f.result(timeout=30)


def test_records_deleted_by_retention_while_the_transfer_is_down_are_reported_exactly(
        stack, es, etcd, kafka_admin, topic_factory, gap_topic, transfers, prefix, unique,  # noqa: F811
        index_pattern, indices, logctl) -> None:  # noqa: F811
    n, m1, m2 = 1_000, 1_000, 300
    topic = gap_topic
    dlq = topic_factory("dlq", 1)
    put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq))
    group = f"it-transfer-{unique}"
    feed = StampedFeed(stack, topic, f"g{unique}")
    old_ms = int(time.time() * 1000) - 2 * HOUR_MS

    # 1-2: N records indexed and committed, then the transfer stops: the outage begins
    t1 = transfers("a").start()
    feed.timestamp_ms = old_ms
    feed.produce(n)
    wait_committed(stack, kafka_admin, group, topic, 1, n, 120, [t1])
    assert t1.stop() == 0
    committed_at_stop = committed(stack, kafka_admin, group, topic, 1)[0]
    assert committed_at_stop == n

    # 3: M1 records during the outage (they will be older than the retention), M2 fresh ones
    feed.produce(m1)
    first_fresh = produce_fresh(feed, m2)
    assert len(feed.where) == n + m1 + m2 and first_fresh == n + m1

    # 4: retention shortened to 1 h; wait until Kafka deleted past the committed offset
    low, high = shorten_retention_and_wait(stack, kafka_admin, topic, committed_at_stop)
    print(f"committed {n}, first record left {low} ({first_fresh - low} old ones kept with the fresh ones), "
          f"end {high}: expected gap {low - n} record(s)")
    # only segments holding nothing but old records went: the deletion is over, and no fresh record went
    assert n < low <= first_fresh and high == n + m1 + m2
    assert watermarks(stack, topic)[0] == low

    # 5: the transfer comes back
    metrics_address = f"127.0.0.1:{free_port()}"
    t2 = transfers("b", metrics_address=metrics_address).start()
    tid = f"b-{unique}"
    st = wait_for(lambda: (s := status_of(etcd, prefix, tid)) and s.get("retention_gaps") and s, 60,
                  "the gap in the transfer's status key")
    gaps = st["retention_gaps"]
    print(f"status retention_gaps: {gaps}")
    assert [(g["topic"], g["partition"], g["first"], g["last"], g["count"], g["found"]) for g in gaps] == \
        [(topic, 0, n, low - 1, low - n, "at assignment")]
    wait_committed(stack, kafka_admin, group, topic, 1, high, 120, [t2])
    st = status_of(etcd, prefix, tid)
    assert st["counters"]["records_lost_to_retention"] == low - n
    assert len(st["retention_gaps"]) == 1  # reported once: reading from the low watermark is no second gap
    lost_metric = scrape(metrics_address)[f'logtransfer_records_lost_to_retention_total{{topic="{topic}"}}']
    assert lost_metric == low - n

    log = t2.log_text()
    lines = [ln for ln in log.splitlines() if "before this transfer group read them" in ln]
    print("log: " + "\n".join(lines))
    assert len(lines) == 1
    assert (f"WARNING logtransfer.gaps: kafka deleted {low - n} record(s) of {topic}[0] before this transfer "
            f"group read them (offsets {n}..{low - 1}, found at assignment)") in lines[0]

    out = logctl("status").stdout
    lost_lines = [ln for ln in out.splitlines() if ln.strip().startswith("LOST")]
    assert lost_lines == [f"  LOST       {topic}[0] offsets {n}..{low - 1}: {low - n:,} record(s) deleted by Kafka "
                          f"retention before this group read them (found at assignment, {gaps[0]['at']})"]

    # Elasticsearch: the N indexed before the outage and every record Kafka still had, nothing else
    ids = feed.ids()
    kept = [eid for eid, (_, off) in feed.where.items() if off < n or off >= low]
    total, present = es_count(es, indices), es_count_ids(es, indices, kept)
    print(f"produced {len(ids)}, lost to retention {low - n}, in Elasticsearch {total} "
          f"({present} of the {len(kept)} expected ids)")
    assert (total, present) == (len(kept), len(kept)) == (n + high - low, n + high - low)
    assert t2.stop() == 0
    assert "Traceback" not in log


def test_records_deleted_while_the_transfer_waits_for_elasticsearch_are_reported_exactly(
        stack, es, etcd, kafka_admin, topic_factory, gap_topic, transfers, prefix, unique,  # noqa: F811
        index_pattern, indices) -> None:  # noqa: F811
    """The other way to fall behind the retention: the transfer runs, but Elasticsearch is down.

    The transfer holds the records it consumed (retried, partitions paused) while Kafka deletes
    the ones after them. When Elasticsearch is back, librdkafka's fetch is out of range and it
    resets to the first record left, silently: the record that arrives skips ahead, and the low
    watermark the broker sent with it says the records in between were deleted. The gap reported
    must be exactly the records missing from Elasticsearch.
    """
    servers = stack.require_servers()
    n, m1, m2 = 200, 1_000, 300
    topic = gap_topic
    dlq = topic_factory("dlq", 1)
    put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq, bulk_max_docs=100))
    group = f"it-transfer-{unique}"
    tid = f"a-{unique}"
    feed = StampedFeed(stack, topic, f"w{unique}")
    feed.timestamp_ms = int(time.time() * 1000) - 2 * HOUR_MS
    t = transfers("a").start()
    feed.produce(n)
    wait_committed(stack, kafka_admin, group, topic, 1, n, 120, [t])

    servers.stop_service("es1")
    try:
        feed.produce(m1)  # the transfer takes a few batches of them, then waits for Elasticsearch
        wait_for(lambda: (s := status_of(etcd, prefix, tid)) and s["elasticsearch"]["state"] == "unavailable"
                 and s["in_flight"] > 0, 90, "the transfer to hold records for Elasticsearch")
        first_fresh = produce_fresh(feed, m2)
        held = status_of(etcd, prefix, tid)["in_flight"]
        low, high = shorten_retention_and_wait(stack, kafka_admin, topic, n + held)
        print(f"committed {n}, {held} record(s) held for Elasticsearch, first record left {low}, end {high}")
        assert low <= first_fresh and high == n + m1 + m2
        assert committed(stack, kafka_admin, group, topic, 1)[0] == n  # nothing moved while ES was down
    finally:
        servers.start_service("es1")
    wait_for(lambda: es.options(ignore_status=[503]).cluster.health(wait_for_status="yellow", timeout="5s")
             .get("status") in ("yellow", "green"), 120, "es1 serving")

    wait_committed(stack, kafka_admin, group, topic, 1, high, 180, [t])
    # the status key is rewritten every status_interval_s: wait for the one written after the gap
    st = wait_for(lambda: (s := status_of(etcd, prefix, tid)) and s.get("retention_gaps") and s, 30,
                  "the gap in the transfer's status key")
    gaps = st["retention_gaps"]
    print(f"status retention_gaps: {gaps}")
    assert [(g["topic"], g["partition"], g["last"], g["found"]) for g in gaps] == \
        [(topic, 0, low - 1, "while consuming")]
    first, count = gaps[0]["first"], gaps[0]["count"]
    assert n + held <= first < low and count == low - first
    assert st["counters"]["records_lost_to_retention"] == count

    # exactly the records of the gap are missing from Elasticsearch: everything else is there, once
    kept = [eid for eid, (_, off) in feed.where.items() if not first <= off < low]
    total, present = es_count(es, indices), es_count_ids(es, indices, kept)
    print(f"produced {len(feed.where)}, the transfer had read up to offset {first - 1} when Elasticsearch went "
          f"down; lost to retention {count}; in Elasticsearch {total} ({present} of the {len(kept)} expected ids)")
    assert (total, present) == (len(kept), len(kept)) == (len(feed.where) - count,) * 2
    log = t.log_text()
    lines = [ln for ln in log.splitlines() if "before this transfer group read them" in ln]
    assert len(lines) == 1 and f"offsets {first}..{low - 1}, found while consuming" in lines[0], lines
    assert "Traceback" not in log
    assert t.stop() == 0
