"""logtransfer on the real stack: exact counts through replays, an ES outage, dead letters, a hot
config change and a kill -9 in a group of two.

Each test runs real ``logtransfer`` processes (``.venv/bin/logtransfer --config <ini>``) with its
own etcd prefix, consumer group, topics, index pattern and dead-letter topic, and produces
envelopes into Kafka itself. Every record has a unique ``event.id``; "exactly N" means the index
holds N documents AND those N are exactly the ids produced (counted by an ids query), so nothing
is missing and nothing is there twice.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import elasticsearch
import pytest
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, KafkaException, Producer, TopicPartition

from integration.agents import wait_for
from integration.conftest import StackHandle
from integration.harness import Daemon, daemon
from logferry.envelope import encode_record
from logferry.etcd import EtcdClient
from transfer.template import index_patterns, template_name

TS = 1714564800.0  # 2024-05-01T12:00:00Z: every test record lands in one index per topic


# ------------------------------------------------------------------------------ processes
def transfer_ini(stack: StackHandle, *, prefix: str, group: str, tid: str, data_dir: Path,
                 kafka_extra: dict[str, str] | None = None, metrics_address: str = "") -> str:
    kafka = {"bootstrap_servers": stack.kafka_bootstrap} | (kafka_extra or {})
    lines = [
        "[etcd]", f"endpoints = {','.join(stack.etcd_endpoints)}", f"prefix = {prefix}", "",
        "[kafka]", *(f"{k} = {v}" for k, v in kafka.items()), "",
        "[transfer]", f"es_hosts = {stack.es_url}", f"id = {tid}", f"group_id = {group}",
        f"metrics_address = {metrics_address}",
        f"data_dir = {data_dir}", "log_level = INFO", "status_interval_s = 1", "",
    ]
    return "\n".join(lines)


def transfer_process(home: Path, ini_text: str) -> Daemon:
    """A logtransfer subprocess with its INI and data dir under ``home`` (the shared harness)."""
    return daemon("logtransfer", home, ini_text, name=f"transfer-{home.name}")


# ------------------------------------------------------------------------------ fixtures
@pytest.fixture
def prefix(unique: str) -> str:
    return f"/it-{unique}"


@pytest.fixture
def index_pattern(unique: str) -> str:
    return f"it-{unique}-{{topic}}-{{yyyy.MM.dd}}"


@pytest.fixture
def indices(es, unique: str, index_pattern: str) -> Iterator[str]:
    """The wildcard of this test's indices; they and their template are deleted afterwards."""
    wildcard = f"it-{unique}-*"
    yield wildcard
    es.options(ignore_status=[404]).indices.delete(index=wildcard, expand_wildcards="all")
    es.options(ignore_status=[404]).indices.delete_index_template(
        name=template_name(index_patterns(index_pattern)))


@pytest.fixture
def transfers(stack: StackHandle, tmp_path: Path, prefix: str, unique: str, indices: str):
    """Factory of transfer processes in this test's group; all stopped at the end (logs printed),
    before the test's indices are deleted."""
    made: list[Daemon] = []

    def make(name: str = "a", kafka_extra: dict[str, str] | None = None, metrics_address: str = "") -> Daemon:
        home = tmp_path / f"transfer-{name}"
        ini = transfer_ini(stack, prefix=prefix, group=f"it-transfer-{unique}", tid=f"{name}-{unique}",
                           data_dir=home / "data", kafka_extra=kafka_extra, metrics_address=metrics_address)
        t = transfer_process(home, ini)
        made.append(t)
        return t

    yield make
    for t in made:
        if t.proc is not None and t.alive():
            t.signal(signal.SIGCONT)
            try:
                t.stop(timeout=90)
            except subprocess.TimeoutExpired:
                t.kill9()
        print(f"----- {t.home.name} log (tail)\n" + "\n".join(t.log_text().splitlines()[-40:]))


def put_config(etcd: EtcdClient, prefix: str, cfg: dict | str) -> None:
    etcd.put(f"{prefix}/transfer/config", (cfg if isinstance(cfg, str) else json.dumps(cfg)).encode())


def transfer_config(topics: list[str], index_pattern: str, dlq: str, **extra: object) -> dict:
    return {"topics": topics, "index": index_pattern, "dead_letter_topic": dlq, "flush_interval_s": 0.5,
            "bulk_max_docs": 5000, **extra}


def status_of(etcd: EtcdClient, prefix: str, tid: str) -> dict | None:
    value, _ = etcd.get(f"{prefix}/transfers/{tid}/status")
    return json.loads(value) if value else None


# ------------------------------------------------------------------------------ Kafka helpers
class Feed:
    """Produces envelopes with ids ``<tag>-<n>`` and remembers where each one landed."""

    def __init__(self, stack: StackHandle, topic: str, tag: str) -> None:
        self.topic = topic
        self.tag = tag
        self.n = 0
        self.where: dict[str, tuple[int, int]] = {}  # event id -> (partition, offset)
        self.errors: list[str] = []
        self.producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "acks": "all",
                                  "enable.idempotence": True, "linger.ms": 20})

    def envelope(self, i: int, **over: object) -> bytes:
        raw = encode_record(message=f"{self.tag} line {i}", timestamp=TS, host_name="it-host", host_ip="10.9.0.1",
                            path=f"/var/log/{self.tag}.log", offset=i * 100, file_identity=f"fp-{self.tag}-{i % 16}",
                            fields={"test": self.tag}, agent_version="test", event_id=f"{self.tag}-{i:07d}")
        if over:
            doc = json.loads(raw)
            for k, v in over.items():
                doc[k] = v
            raw = json.dumps(doc).encode()
        return raw

    def produce_raw(self, value: bytes, key: bytes, eid: str) -> None:
        def cb(err, msg) -> None:
            if err is not None:
                self.errors.append(err.str())
            else:
                self.where[eid] = (msg.partition(), msg.offset())

        while True:
            try:
                self.producer.produce(self.topic, value=value, key=key, on_delivery=cb, **self.produce_extra())
                return
            except BufferError:
                self.producer.poll(0.05)

    def produce_extra(self) -> dict[str, object]:
        """More ``Producer.produce`` arguments (a partition, a timestamp) for feeds that need them."""
        return {}

    def produce(self, count: int, rate_per_s: float | None = None) -> list[str]:
        ids = []
        started = time.monotonic()
        for _ in range(count):
            i = self.n
            self.n += 1
            eid = f"{self.tag}-{i:07d}"
            self.produce_raw(self.envelope(i), f"key-{i % 16}".encode(), eid)
            ids.append(eid)
            if i % 500 == 0:
                self.producer.poll(0)
            if rate_per_s:
                ahead = (len(ids) / rate_per_s) - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        self.flush()
        return ids

    def flush(self) -> None:
        assert self.producer.flush(60) == 0, "producer could not deliver everything"
        assert not self.errors, self.errors[:5]

    def ids(self) -> list[str]:
        return [f"{self.tag}-{i:07d}" for i in range(self.n)]


def committed(stack: StackHandle, kafka_admin, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset per partition (0 where nothing is committed yet)."""
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in range(partitions)])
    res = kafka_admin.list_consumer_group_offsets([req])[group].result(timeout=30)
    return {tp.partition: max(0, tp.offset) for tp in res.topic_partitions}


def reset_group_to_beginning(kafka_admin, group: str, topic: str, partitions: int) -> None:
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p, 0) for p in range(partitions)])
    deadline = time.monotonic() + 60
    while True:
        try:
            kafka_admin.alter_consumer_group_offsets([req])[group].result(timeout=30)
            return
        except KafkaException as e:  # the member that just left may still be listed for a moment
            if time.monotonic() > deadline:
                raise
            print(f"alter offsets: {e}; retrying")
            time.sleep(1)


def read_dead_letters(stack: StackHandle, topic: str, expect: int, timeout_s: float = 30) -> list:
    c = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": f"dlq-reader-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        c.subscribe([topic])
        got = []
        deadline = time.monotonic() + timeout_s
        while len(got) < expect and time.monotonic() < deadline:
            got += [m for m in c.consume(100, 0.5) if m.error() is None]
        got += [m for m in c.consume(100, 2.0) if m.error() is None]  # anything beyond shows up here
        return got
    finally:
        c.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def scrape(address: str) -> dict[str, float]:
    """A daemon's /metrics, parsed by prometheus_client's own parser: {"name{labels}": value}."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[sample.name + (f"{{{labels}}}" if labels else "")] = sample.value
    return out


def health(address: str) -> tuple[int, dict]:
    """A daemon's /health: (HTTP status, its JSON document)."""
    try:
        with urllib.request.urlopen(f"http://{address}/health", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


# ------------------------------------------------------------------------------ ES helpers
def es_count(es, wildcard: str) -> int:
    es.options(ignore_status=[404]).indices.refresh(index=wildcard, allow_no_indices=True)
    return es.count(index=wildcard, allow_no_indices=True)["count"]


def es_count_soon(es, wildcard: str) -> int:
    """es_count for polling loops: a shard still starting (503) counts as nothing yet."""
    try:
        return es_count(es, wildcard)
    except (elasticsearch.ApiError, elasticsearch.TransportError) as e:
        print(f"count not possible yet: {e}")
        return -1


def es_count_ids(es, wildcard: str, ids: list[str]) -> int:
    es.indices.refresh(index=wildcard, allow_no_indices=True)
    total = 0
    for i in range(0, len(ids), 10_000):
        total += es.count(index=wildcard, query={"ids": {"values": ids[i:i + 10_000]}})["count"]
    return total


def assert_exactly(es, wildcard: str, ids: list[str]) -> None:
    total = es_count(es, wildcard)
    present = es_count_ids(es, wildcard, ids)
    assert (total, present) == (len(ids), len(ids)), \
        f"index holds {total} documents, {present} of the {len(ids)} produced ids"


def wait_committed(stack, kafka_admin, group, topic, partitions, total: int, timeout: float,
                   procs: list[Daemon]) -> None:
    def done() -> bool:
        for p in procs:
            assert p.alive() or p.proc.returncode == -9, f"{p.home.name} exited: {p.log_text()[-3000:]}"
        return sum(committed(stack, kafka_admin, group, topic, partitions).values()) >= total

    wait_for(done, timeout, f"the group to commit {total} records", interval=1.0)


# ------------------------------------------------------------------------------ 1
def test_100k_records_exactly_100k_documents_also_after_consuming_everything_again(
        stack, es, etcd, kafka_admin, topic_factory, transfers, prefix, unique, index_pattern, indices) -> None:
    n = 100_000
    topic = topic_factory("bulk", 3)
    dlq = topic_factory("dlq", 1)
    put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq))
    group = f"it-transfer-{unique}"
    t = transfers("a").start()
    feed = Feed(stack, topic, f"b{unique}")
    started = time.monotonic()
    ids = feed.produce(n)
    print(f"produced {n} in {time.monotonic() - started:.1f}s")
    wait_committed(stack, kafka_admin, group, topic, 3, n, 180, [t])
    print(f"indexed and committed {n} in {time.monotonic() - started:.1f}s")
    assert t.stop() == 0
    assert_exactly(es, indices, ids)

    # Consume everything again from offset 0: the documents overwrite themselves (same _id).
    reset_group_to_beginning(kafka_admin, group, topic, 3)
    assert sum(committed(stack, kafka_admin, group, topic, 3).values()) == 0
    again = time.monotonic()
    t2 = transfers("a2").start()
    wait_committed(stack, kafka_admin, group, topic, 3, n, 180, [t2])
    print(f"re-consumed {n} in {time.monotonic() - again:.1f}s")
    assert t2.stop() == 0
    assert_exactly(es, indices, ids)
    stats = es.indices.stats(index=indices, metric="indexing")["_all"]["primaries"]["indexing"]
    assert stats["index_total"] >= 2 * n  # really indexed twice, and still n documents
    doc = es.search(index=indices, query={"ids": {"values": [ids[0]]}}, version=True)["hits"]["hits"][0]
    assert doc["_version"] >= 2
    assert "Traceback" not in t.log_text() + t2.log_text()


# ------------------------------------------------------------------------------ 2
def test_elasticsearch_down_60s_commits_never_pass_what_es_has(
        stack, es, etcd, kafka_admin, topic_factory, transfers, prefix, unique, index_pattern, indices) -> None:
    servers = stack.require_servers()
    n = 20_000
    topic = topic_factory("esdown", 3)
    dlq = topic_factory("dlq", 1)
    put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq, bulk_max_docs=1000))
    group = f"it-transfer-{unique}"
    # max.poll.interval.ms well below the outage: only the pause + poll keepalive keeps it in the group.
    t = transfers("a", kafka_extra={"consumer.max.poll.interval.ms": "20000",
                                    "consumer.session.timeout.ms": "10000"}).start()
    tid = f"a-{unique}"
    feed = Feed(stack, topic, f"e{unique}")
    producer = threading.Thread(target=feed.produce, args=(n, 500.0), daemon=True)  # ~40 s of traffic
    producer.start()
    wait_for(lambda: es_count_soon(es, indices) >= 3000, 60, "3000 documents before the outage")

    servers.stop_service("es1")
    down_at = time.monotonic()
    samples: list[dict[int, int]] = []
    outage_status = None
    while time.monotonic() - down_at < 60:
        samples.append(committed(stack, kafka_admin, group, topic, 3))
        st = status_of(etcd, prefix, tid)
        if st and st["elasticsearch"]["state"] == "unavailable":
            outage_status = st
        time.sleep(2)
    producer.join(60)
    feed.flush()
    log_during_outage = t.log_text()
    t.signal(signal.SIGSTOP)  # nothing may write to ES between its restart and the check below
    try:
        servers.start_service("es1")
        wait_for(lambda: es.cluster.health(wait_for_status="yellow", timeout="5s")["status"] != "red", 60,
                 "es1 serving")
        worst = {p: max(s[p] for s in samples) for p in range(3)}
        print(f"committed during the outage: first {samples[0]}, last {samples[-1]}")
        must_be_in_es = [eid for eid, (p, off) in feed.where.items() if off < worst[p]]
        assert must_be_in_es, "nothing was committed before the outage: the test proves nothing"
        assert es_count_ids(es, indices, must_be_in_es) == len(must_be_in_es), \
            "an offset was committed for a record Elasticsearch did not have"
        assert samples[-1] == samples[len(samples) // 2], "commits moved while Elasticsearch was down"
    finally:
        t.signal(signal.SIGCONT)

    wait_committed(stack, kafka_admin, group, topic, 3, n, 120, [t])
    assert_exactly(es, indices, feed.ids())
    assert outage_status is not None, "the status key never showed Elasticsearch as unavailable"
    assert outage_status["assigned_partitions"], outage_status
    # The outage stayed a few log lines, the consumer stayed in its group, no traceback.
    assert "partitions lost" not in log_during_outage and "revoked" not in log_during_outage
    es_lines = [ln for ln in log_during_outage.splitlines() if "logtransfer.indexer" in ln]
    assert 1 <= len(es_lines) <= 10, es_lines
    assert "Traceback" not in t.log_text()
    assert t.stop() == 0


# ------------------------------------------------------------------------------ 3
def test_mapping_conflict_and_non_json_go_to_the_dead_letter_topic_the_rest_is_indexed(
        stack, es, etcd, kafka_admin, topic_factory, transfers, prefix, unique, index_pattern, indices) -> None:
    topic = topic_factory("dlq-src", 1)
    dlq = topic_factory("dlq", 1)
    put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq))
    group = f"it-transfer-{unique}"
    metrics = f"127.0.0.1:{free_port()}"
    t = transfers("a", metrics_address=metrics).start()
    feed = Feed(stack, topic, f"d{unique}")
    good = feed.produce(500)
    conflict_i = feed.n
    feed.n += 1
    conflict = feed.envelope(conflict_i, host={"name": "it-host", "ip": "not-an-ip"})
    feed.produce_raw(conflict, b"k-conflict", "conflict")
    good += feed.produce(500)
    garbage = b"\x00this is not JSON \xff at all"
    feed.produce_raw(garbage, b"k-garbage", "garbage")
    good += feed.produce(500)
    feed.flush()
    wait_committed(stack, kafka_admin, group, topic, 1, 1502, 90, [t])
    assert_exactly(es, indices, good)

    letters = read_dead_letters(stack, dlq, 2)
    assert len(letters) == 2, [m.value() for m in letters]
    by_value = {m.value(): dict((k, v.decode()) for k, v in m.headers()) for m in letters}
    h = by_value[conflict]
    assert h["logferry.kind"] == "rejected"
    assert "host.ip" in h["logferry.reason"] and "parsing_exception" in h["logferry.reason"]
    assert (h["logferry.source.topic"], int(h["logferry.source.partition"]), int(h["logferry.source.offset"])) == \
        (topic, *feed.where["conflict"])
    assert h["logferry.index"].startswith(f"it-{unique}-")
    g = by_value[garbage]
    assert g["logferry.kind"] == "invalid_record"
    assert "not UTF-8" in g["logferry.reason"]
    assert int(g["logferry.source.offset"]) == feed.where["garbage"][1]

    # The consumer did not stop at them.
    good += feed.produce(100)
    wait_committed(stack, kafka_admin, group, topic, 1, 1602, 60, [t])
    assert_exactly(es, indices, good)
    st = status_of(etcd, prefix, f"a-{unique}")
    assert st["counters"]["dead_lettered"] == {"invalid_record": 1.0, "rejected": 1.0}
    scraped = scrape(metrics)
    assert scraped["logtransfer_documents_indexed_total"] == 1600
    assert scraped['logtransfer_dead_lettered_total{kind="invalid_record"}'] == 1
    assert scraped['logtransfer_dead_lettered_total{kind="rejected"}'] == 1
    assert scraped['logtransfer_documents_failed_total{kind="rejected"}'] == 1
    assert scraped["logtransfer_bulk_seconds_count"] >= 1
    assert "logtransfer_consumer_lag_total" in scraped
    assert health(metrics) == (200, {"status": "ok", "reasons": []})
    assert t.stop() == 0


# ------------------------------------------------------------------------------ 4
def test_topic_added_in_etcd_is_consumed_without_restart_and_bad_config_is_refused(
        stack, es, etcd, kafka_admin, topic_factory, transfers, prefix, unique, index_pattern, indices) -> None:
    topic_a = topic_factory("a", 1)
    topic_b = topic_factory("b", 2)
    dlq = topic_factory("dlq", 1)
    put_config(etcd, prefix, transfer_config([topic_a], index_pattern, dlq))
    group = f"it-transfer-{unique}"
    t = transfers("a").start()
    tid = f"a-{unique}"
    feed_a = Feed(stack, topic_a, f"a{unique}")
    feed_b = Feed(stack, topic_b, f"x{unique}")
    feed_a.produce(200)
    feed_b.produce(150)  # produced before the topic is configured: read from its beginning later
    wait_committed(stack, kafka_admin, group, topic_a, 1, 200, 60, [t])
    assert_exactly(es, indices, feed_a.ids())

    # An invalid config is refused; the last good one stays in force.
    put_config(etcd, prefix, {"topics": topic_b})
    wait_for(lambda: (status_of(etcd, prefix, tid) or {}).get("config", {}).get("error"), 20,
             "the refusal in the status key")
    st = status_of(etcd, prefix, tid)
    assert 'field "topics"' in st["config"]["error"] and st["last_error"]
    assert st["config"]["topics"] == [topic_a]
    feed_a.produce(100)
    wait_committed(stack, kafka_admin, group, topic_a, 1, 300, 60, [t])

    put_config(etcd, prefix, transfer_config([topic_a, topic_b], index_pattern, dlq))
    feed_b.produce(50)
    feed_a.produce(100)
    wait_committed(stack, kafka_admin, group, topic_b, 2, 200, 90, [t])
    wait_committed(stack, kafka_admin, group, topic_a, 1, 400, 30, [t])
    assert_exactly(es, indices, feed_a.ids() + feed_b.ids())
    st = wait_for(lambda: (lambda s: s if s and s["consumer_lag"] == 0 else None)(status_of(etcd, prefix, tid)), 20,
                  "consumer lag 0 in the status key")
    assert st["pid"] == t.pid and st["config"]["error"] is None
    assert sorted(st["assigned_partitions"]) == sorted([f"{topic_a}[0]", f"{topic_b}[0]", f"{topic_b}[1]"])
    assert t.log_text().count("applied") == 2
    assert t.stop() == 0


# ------------------------------------------------------------------------------ 5
def test_two_transfers_in_one_group_one_killed_mid_stream(
        stack, es, etcd, kafka_admin, topic_factory, transfers, prefix, unique, index_pattern, indices) -> None:
    n = 40_000
    topic = topic_factory("group", 4)
    dlq = topic_factory("dlq", 1)
    put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq, bulk_max_docs=1000))
    group = f"it-transfer-{unique}"
    fast_group = {"consumer.session.timeout.ms": "6000", "consumer.heartbeat.interval.ms": "1000"}
    a = transfers("a", kafka_extra=fast_group).start()
    feed = Feed(stack, topic, f"g{unique}")
    producer = threading.Thread(target=feed.produce, args=(n, 2000.0), daemon=True)  # ~20 s of traffic
    producer.start()
    wait_for(lambda: es_count_soon(es, indices) >= 3000, 60, "3000 documents before the second transfer")
    b = transfers("b", kafka_extra=fast_group).start()  # a rebalance mid-stream: a gives up partitions

    def both_assigned() -> bool:
        sa, sb = status_of(etcd, prefix, f"a-{unique}"), status_of(etcd, prefix, f"b-{unique}")
        pa, pb = (sa or {}).get("assigned_partitions"), (sb or {}).get("assigned_partitions")
        return bool(pa and pb and len(pa) + len(pb) == 4)

    wait_for(both_assigned, 60, "both transfers to share the 4 partitions")
    assert "partitions revoked" in a.log_text()
    wait_for(lambda: es_count_soon(es, indices) >= 12000, 60, "12000 documents before the kill")
    before_kill = sum(committed(stack, kafka_admin, group, topic, 4).values())
    a.kill9()
    assert before_kill < n - 1000, "the transfers were done before the kill: the test proves nothing"
    print(f"killed transfer a with {before_kill} of {n} records committed")
    producer.join(60)
    feed.flush()
    wait_committed(stack, kafka_admin, group, topic, 4, n, 120, [a, b])
    assert_exactly(es, indices, feed.ids())
    sb = status_of(etcd, prefix, f"b-{unique}")
    assert len(sb["assigned_partitions"]) == 4
    assert "Traceback" not in b.log_text()
    assert b.stop() == 0



# ------------------------------------------------------------------------------ 18.4
def test_restart_with_a_bad_config_in_etcd_goes_on_with_the_last_good_one(
        stack, es, etcd, kafka_admin, topic_factory, transfers, prefix, unique, index_pattern, indices) -> None:
    topic, dlq = topic_factory("lg", 1), topic_factory("lgdlq", 1)
    put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq))
    group, tid = f"it-transfer-{unique}", f"lg-{unique}"
    t = transfers("lg").start()
    feed = Feed(stack, topic, f"lg{unique}")
    feed.produce(200)
    wait_committed(stack, kafka_admin, group, topic, 1, 200, 60, [t])
    assert t.stop() == 0

    # a reboot during a bad edit: the transfer starts with an invalid config in etcd
    put_config(etcd, prefix, {"topics": "not-a-list"})
    t2 = transfers("lg").start()  # same id and data dir: the saved config is there
    feed.produce(300)
    wait_committed(stack, kafka_admin, group, topic, 1, 500, 90, [t2])
    assert_exactly(es, indices, feed.ids())
    st = wait_for(lambda: status_of(etcd, prefix, tid), 30, "the transfer's status")
    print(f"restart with a bad config: 500 of 500 indexed; status config {st['config']}")
    assert st["config"]["source"] == "saved" and 'field "topics"' in st["config"]["error"]
    assert "using the saved transfer config" in t2.log_text()

    # a good config written later is applied as usual
    put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq, bulk_max_docs=1000))
    wait_for(lambda: (status_of(etcd, prefix, tid) or {}).get("config", {}).get("source") == "etcd", 30,
             "the good config applied")
    feed.produce(100)
    wait_committed(stack, kafka_admin, group, topic, 1, 600, 60, [t2])
    assert_exactly(es, indices, feed.ids())
    assert t2.stop() == 0
