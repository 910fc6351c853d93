"""One real stack per test session, and client fixtures on it.

Native (default): the stack of ``integration/stack`` (etcd x3, ZooKeeper, Kafka, Elasticsearch as
local processes). If ``LOGFERRY_STACK_DIR`` names a work dir whose stack is already running
(``make stack-up``), it is reused and left running; otherwise one is started in a temp dir and
stopped at the end of the session.

``LOGFERRY_STACK=docker``: the same servers as containers (``integration/docker``: testcontainers,
the official images where a registry answers, local builds of the same versions where none does),
on a Docker engine that answers or that the session starts (root); every test is skipped with the
reason in one line when there can be none. Tests that hurt servers (kill -9 a member, stop or
freeze the broker) use the same calls on both: ``stack.require_servers().stop_service(...)``.
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

from integration.docker.stack import DockerStack
from integration.stack import Stack, StackOptions


@dataclass
class StackHandle:
    """Where the servers are, and the handle to hurt them (processes or containers)."""

    env: dict[str, str]
    servers: Stack | DockerStack | None = None
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

    def require_servers(self) -> Stack | DockerStack:
        """The handle that stops, kills, pauses and restarts servers (processes or containers)."""
        if self.servers is None:
            pytest.skip("this test hurts servers, and the stack it runs on was not started by this session")
        return self.servers


def _log(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


def native_stack(tmp_path_factory: pytest.TempPathFactory, options: StackOptions, *, what: str = "stack",
                 reuse_env: str = "LOGFERRY_STACK_DIR", shape: tuple[str, ...] = ()) -> Iterator[StackHandle]:
    """A native stack: the running one of ``$reuse_env`` if every service serves and its options
    agree with ``options`` on the fields named in ``shape``; else one started with ``options`` in a
    temp dir and stopped at the end (the session stack, and the test modules' own stacks)."""
    reuse = os.environ.get(reuse_env)
    if reuse:
        st = Stack.load(Path(reuse), log=_log)
        if (st and set(st.running()) == set(st.service_names)
                and all(getattr(st.options, f) == getattr(options, f) for f in shape)):
            _log(f"reusing the running {what} in {reuse}")
            yield StackHandle(env=st.env(), servers=st)
            return
    workdir = tmp_path_factory.mktemp(what.replace(" ", "-"))
    st = Stack(workdir=workdir, options=options, log=_log)
    started = time.monotonic()
    st.up()
    _log(f"{what} up in {time.monotonic() - started:.1f}s in {workdir}")
    try:
        yield StackHandle(env=st.env(), servers=st)
    finally:
        st.down()


def _docker_stack() -> Iterator[StackHandle]:
    from integration.docker import engine, images
    from integration.docker.stack import DockerStack

    client, why = engine.client_or_reason(_log)
    if client is None:
        pytest.skip(f"LOGFERRY_STACK=docker: {why}")
    st = DockerStack(images=images.resolve_images(client, _log), log=_log)
    _log(f"images: {', '.join(f'{r}={n}' for r, n in st.images.items())}")
    st.up()
    try:
        yield StackHandle(env=st.env(), servers=st)
    finally:
        st.down()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    if os.environ.get("LOGFERRY_STACK", "native") == "docker":
        yield from _docker_stack()
    else:
        yield from native_stack(tmp_path_factory, StackOptions(es_nodes=1))


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
