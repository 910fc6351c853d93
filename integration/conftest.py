"""One real stack per test session, and client fixtures on it.

Native (default): the stack of ``integration/stack`` (etcd x3, ZooKeeper, Kafka, Elasticsearch as
local processes). If ``LOGFERRY_STACK_DIR`` names a work dir whose stack is already running
(``make stack-up``), it is reused and left running; otherwise one is started in a temp dir and
stopped at the end of the session.

``LOGFERRY_STACK=docker``: the same fixtures on testcontainers with the official images, when a
Docker engine answers; every test is skipped with the reason when none does. Tests that inject
faults into the servers (kill -9 a member, stop the broker) need the native stack and skip on
Docker.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from integration.stack import Stack, StackOptions


@dataclass
class StackHandle:
    """Where the servers are, and (native only) the handle to hurt them."""

    env: dict[str, str]
    native: Stack | None = None
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def etcd_endpoints(self) -> list[str]:
        return self.env["ETCD_ENDPOINTS"].split(",")

    @property
    def kafka_bootstrap(self) -> str:
        return self.env["KAFKA_BOOTSTRAP_SERVERS"]

    @property
    def es_url(self) -> str:
        return self.env["ES_URL"]

    def require_native(self) -> Stack:
        if self.native is None:
            pytest.skip("fault injection needs the native stack (LOGFERRY_STACK=docker cannot kill members)")
        return self.native


def _log(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


def _native_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    reuse = os.environ.get("LOGFERRY_STACK_DIR")
    if reuse:
        st = Stack.load(Path(reuse), log=_log)
        if st and set(st.running()) == set(st.service_names):
            _log(f"reusing the running stack in {reuse}")
            yield StackHandle(env=st.env(), native=st)
            return
    workdir = tmp_path_factory.mktemp("stack")
    st = Stack(workdir=workdir, options=StackOptions(es_nodes=1), log=_log)
    started = time.monotonic()
    st.up()
    _log(f"stack up in {time.monotonic() - started:.1f}s in {workdir}")
    try:
        yield StackHandle(env=st.env(), native=st)
    finally:
        st.down()


def _docker_stack() -> Iterator[StackHandle]:
    try:
        import docker  # testcontainers depends on it

        docker.from_env().ping()
    except Exception as e:  # no engine, no client library, no permission: all mean "cannot run"
        pytest.skip(f"LOGFERRY_STACK=docker but no Docker engine answers ({type(e).__name__}: {e})")
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.waiting_utils import wait_for_logs
    from testcontainers.elasticsearch import ElasticSearchContainer
    from testcontainers.kafka import KafkaContainer

    containers = []
    # etcd: three members on one user-defined network, as in the native stack.
    from testcontainers.core.network import Network

    net = Network().create()
    cluster = ",".join(f"etcd{i}=http://etcd{i}:2380" for i in (1, 2, 3))
    etcds = []
    for i in (1, 2, 3):
        c = (
            DockerContainer("quay.io/coreos/etcd:v3.5.17")
            .with_network(net)
            .with_network_aliases(f"etcd{i}")
            .with_exposed_ports(2379)
            .with_command(
                f"etcd --name etcd{i} --listen-client-urls http://0.0.0.0:2379 "
                f"--advertise-client-urls http://etcd{i}:2379 --listen-peer-urls http://0.0.0.0:2380 "
                f"--initial-advertise-peer-urls http://etcd{i}:2380 --initial-cluster {cluster} "
                "--initial-cluster-state new --initial-cluster-token logferry"
            )
        )
        c.start()
        etcds.append(c)
        containers.append(c)
    for c in etcds:
        wait_for_logs(c, "ready to serve client requests", timeout=60)
    kafka = KafkaContainer("confluentinc/cp-kafka:7.7.1").start()
    containers.append(kafka)
    es = ElasticSearchContainer("docker.elastic.co/elasticsearch/elasticsearch:8.19.3", mem_limit="1g").start()
    containers.append(es)
    env = {
        "ETCD_ENDPOINTS": ",".join(f"{c.get_container_host_ip()}:{c.get_exposed_port(2379)}" for c in etcds),
        "KAFKA_BOOTSTRAP_SERVERS": kafka.get_bootstrap_server(),
        "ES_URL": es.get_url(),
    }
    try:
        yield StackHandle(env=env)
    finally:
        for c in reversed(containers):
            c.stop()
        net.remove()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    if os.environ.get("LOGFERRY_STACK", "native") == "docker":
        yield from _docker_stack()
    else:
        yield from _native_stack(tmp_path_factory)


# ------------------------------------------------------------------------------ names
@pytest.fixture
def etcd(stack: StackHandle) -> Iterator:
    """A client of the session's etcd cluster (all three members), closed after the test."""
    from logferry.etcd import EtcdClient

    client = EtcdClient(stack.etcd_endpoints)
    yield client
    client.close()


@pytest.fixture
def unique() -> str:
    """A short unique suffix, so tests never see each other's topics, indices or keys."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def topic_factory(stack: StackHandle, unique: str) -> Iterator[Callable[..., str]]:
    """Create topics unique to this test (deleted afterwards)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    made: list[str] = []

    def make(name: str = "t", partitions: int = 1) -> str:
        topic = f"it-{name}-{unique}-{len(made)}"
        fut = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        fut[topic].result(timeout=30)
        made.append(topic)
        return topic

    yield make
    if made:
        for f in admin.delete_topics(made).values():
            with contextlib.suppress(Exception):
                f.result(timeout=30)


@pytest.fixture
def topic(topic_factory: Callable[..., str]) -> str:
    return topic_factory("t", 3)


@pytest.fixture
def kafka_admin(stack: StackHandle):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": stack.kafka_bootstrap})


@pytest.fixture
def kafka_producer(stack: StackHandle):
    from confluent_kafka import Producer

    p = Producer(
        {"bootstrap.servers": stack.kafka_bootstrap, "acks": "all", "enable.idempotence": True,
         "linger.ms": 5}
    )
    yield p
    p.flush(30)


@pytest.fixture
def kafka_consumer_factory(stack: StackHandle, unique: str) -> Iterator[Callable[..., object]]:
    from confluent_kafka import Consumer

    made = []

    def make(group: str | None = None, **extra) -> Consumer:
        conf = {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": group or f"it-group-{unique}-{len(made)}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        } | extra
        c = Consumer(conf)
        made.append(c)
        return c

    yield make
    for c in made:
        with contextlib.suppress(Exception):
            c.close()


@pytest.fixture
def es(stack: StackHandle):
    from elasticsearch import Elasticsearch

    client = Elasticsearch(stack.es_url, request_timeout=60)
    yield client
    client.close()


@pytest.fixture
def index_name(es, unique: str) -> Iterator[str]:
    name = f"it-{unique}"
    yield name
    es.options(ignore_status=[404]).indices.delete(index=f"{name}*")


def consume_all(consumer, topics: list[str], expect: int, timeout_s: float = 60) -> list:
    """Every record of `topics`, from the beginning to their end, once at least `expect` arrived.

    To the end of each partition, not just `expect` records: a test that counts duplicates must see
    every record, and after a kill -9 the topic legitimately holds more than `expect` (replays).
    Stopping at `expect` cut off the tail of a partition and reported those lines as missing.
    Returns what was read when the timeout ends first (the caller's count then fails).
    """
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    deadline = time.monotonic() + timeout_s
    assigned: dict[tuple[str, int], int] = {}  # partition -> next offset to read
    got: list = []
    next_meta = 0.0
    while True:
        now = time.monotonic()
        if len({t for t, _ in assigned}) < len(set(topics)) and now >= next_meta:
            # (re)assign: a topic the producer has not created yet is picked up when it appears
            md = consumer.list_topics(timeout=5)
            for t in topics:
                tm = md.topics.get(t)
                if tm is None or tm.error is not None:
                    continue
                for p in tm.partitions:
                    assigned.setdefault((t, p), -1)
            consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING if off < 0 else off)
                             for (t, p), off in assigned.items()])
            next_meta = now + 0.5
        for m in consumer.consume(num_messages=10000, timeout=0.2) if assigned else []:
            if m.error():
                continue
            got.append(m)
            assigned[(m.topic(), m.partition())] = m.offset() + 1
        if len(got) >= expect and _at_end(consumer, assigned):
            return got
        if time.monotonic() > deadline:
            return got
        if not assigned:
            time.sleep(0.2)


def _at_end(consumer, assigned: dict[tuple[str, int], int]) -> bool:
    from confluent_kafka import TopicPartition

    for (t, p), nxt in assigned.items():
        low, high = consumer.get_watermark_offsets(TopicPartition(t, p), timeout=5, cached=False)
        if max(nxt, low) < high:
            return False
    return True


def read_topic(stack: StackHandle, topics: list[str], expect: int, timeout_s: float = 60) -> list[dict]:
    """All records of `topics` as decoded JSON values, read by a fresh consumer group."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": f"reader-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        msgs = consume_all(c, topics, expect, timeout_s)
        return [json.loads(m.value()) | {"_topic": m.topic(), "_key": m.key()} for m in msgs]
    finally:
        c.close()


def topic_size(stack: StackHandle, topic: str) -> int:
    """Records in `topic` now (the sum of its partitions' end offsets); 0 while it does not exist.

    Cheap enough to poll every few ms: a test that must act while a producer is mid-stream (kill -9
    the agent after some, not all, lines) cannot afford to read the whole topic to find out.
    """
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": stack.kafka_bootstrap, "group.id": f"size-{uuid.uuid4().hex}"})
    try:
        tm = c.list_topics(topic, timeout=5).topics.get(topic)
        if tm is None or tm.error is not None:
            return 0
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=False)[1]
                   for p in tm.partitions)
    finally:
        c.close()
