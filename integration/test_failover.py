"""Replicated Kafka and Elasticsearch under load: kill -9 a broker or a node, bring it back, every line once.

Issue 14, items 2 and 3 in their short form. The session stack here is its own (3 brokers on one
ZooKeeper, 3 ES nodes: ``python -m integration.stack up --kafka-brokers 3 --es-nodes 3``), reused
when ``LOGFERRY_STACK_DIR`` names a running stack of that shape, otherwise started in a temp dir.
A real logagent tails a file that a thread appends to steadily; a real logtransfer indexes the
topic. Each test kills one server while lines flow, waits for the cluster to go on without it
(a new partition leader / the shards served by the survivors), starts it again, waits for it to
be back in sync, then counts: the topic holds every line once (the agent's idempotent, acks=all
producer), and Elasticsearch holds as many documents as lines, one per event id, every line.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
from elasticsearch import Elasticsearch
from elasticsearch.helpers import scan

from integration.agents import LineWriter, agent_ini, agent_process, wait_for
from integration.conftest import StackHandle, _log, native_stack, read_topic, topic_size
from integration.harness import Daemon
from integration.stack import StackOptions
from integration.test_agent import set_list
from integration.test_agent import status as agent_status
from integration.test_transfer import put_config, status_of, transfer_config, transfer_ini, transfer_process
from logferry.etcd import EtcdClient

BROKERS, ES_NODES = 3, 3
ALL_BROKERS = list(range(1, BROKERS + 1))  # the stack numbers its brokers kafka1..N = broker.id 1..N
RATE = 200  # lines/s the writer appends, in batches of 20
HOST_IP = "10.214.0.1"

pytestmark = pytest.mark.skipif(os.environ.get("LOGFERRY_STACK", "native") == "docker",
                                reason="the failover stack is native processes only (3 brokers, 3 ES nodes)")


@pytest.fixture(scope="module")
def replicated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    """A stack with 3 brokers and 3 ES nodes: the running one of $LOGFERRY_STACK_DIR if it has that
    shape, else one of our own (smaller heaps: 6 JVMs share 2 cores with the other tests)."""
    yield from native_stack(tmp_path_factory, StackOptions(kafka_brokers=BROKERS, es_nodes=ES_NODES, kafka_heap_mb=256,
                                                           es_heap_mb=384),
                            what="replicated stack", shape=("kafka_brokers", "es_nodes"))


class SteadyWriter(threading.Thread):
    """Appends numbered lines at ``RATE`` lines/s until stopped: the load a kill lands in."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__(daemon=True)
        self.writer = writer
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(20 / RATE):
            self.writer.write(20)

    def stop(self) -> int:
        self.halt.set()
        self.join(10)
        return self.writer.n


class Pipeline:
    """One agent and one transfer on a topic of replication factor 3 (min.insync.replicas 2)."""

    def __init__(self, h: StackHandle, home: Path, es_hosts: str) -> None:
        self.h = h
        self.u = uuid.uuid4().hex[:8]
        self.prefix, self.topic, self.tid = f"/fo-{self.u}", f"it-fo-{self.u}", f"fo-{self.u}"
        self.wildcard = f"it-fo-{self.u}-*"
        self.admin = AdminClient({"bootstrap.servers": h.kafka_bootstrap})
        self.admin.create_topics([NewTopic(self.topic, num_partitions=1, replication_factor=BROKERS,
                                           config={"min.insync.replicas": "2"})])[self.topic].result(30)
        self.etcd = EtcdClient(h.etcd_endpoints)
        self.es = Elasticsearch(h.env["ES_URLS"].split(","), request_timeout=30, max_retries=2,
                                retry_on_timeout=True)
        logs = home / "logs"
        logs.mkdir(parents=True)
        self.lines = LineWriter(logs / "app.log", f"F{self.u}")
        set_list(self.etcd, self.prefix, HOST_IP, [{"path": f"{logs}/*.log", "topic": self.topic,
                                                    "start_at": "beginning"}])
        put_config(self.etcd, self.prefix, transfer_config([self.topic], f"it-fo-{self.u}-{{topic}}-{{yyyy.MM.dd}}",
                                                           f"{self.topic}-dlq"))
        self.agent: Daemon = agent_process(home / "agent", agent_ini(
            etcd=h.etcd_endpoints, kafka=h.kafka_bootstrap, data_dir=home / "agent" / "data", prefix=self.prefix,
            host_ip=HOST_IP)).start()
        es_handle = StackHandle(env=h.env | {"ES_URL": es_hosts})
        self.transfer: Daemon = transfer_process(home / "transfer", transfer_ini(
            es_handle, prefix=self.prefix, group=f"it-fo-{self.u}", tid=self.tid,
            data_dir=home / "transfer" / "data")).start()
        self.load = SteadyWriter(self.lines)
        self.load.start()

    def in_topic(self) -> int:
        try:
            return topic_size(self.h, self.topic)
        except KafkaException as e:  # a new leader answers "high watermark not caught up" for a moment
            print(f"size not known yet: {e}")
            return -1

    def in_es(self) -> int:
        try:
            self.es.indices.refresh(index=self.wildcard, allow_no_indices=True)
            return self.es.count(index=self.wildcard, allow_no_indices=True)["count"]
        except Exception as e:  # a shard moving to a survivor answers 503 for a moment
            print(f"count not possible yet: {e}")
            return -1

    def grows(self, count: object, by: int, timeout: float, what: str) -> None:
        """Wait until ``count()`` is ``by`` above what it is now: lines still flow."""
        start = wait_for(lambda: (c := count()) >= 0 and (c,), 30, f"{what} to be countable")[0]
        wait_for(lambda: count() >= start + by, timeout, f"{what} to grow by {by} from {start}", interval=0.2)

    def finish(self) -> dict[str, int]:
        """Stop the writer, wait for every line in ES, and count in Kafka and in ES."""
        total = self.load.stop()
        wait_for(lambda: self.in_es() >= total, 120, f"{total} documents in {self.wildcard}", interval=0.5)
        records = read_topic(self.h, [self.topic], total, 60)
        docs = [d["_source"] for d in scan(self.es, index=self.wildcard, query={"query": {"match_all": {}}},
                                           _source=["event.id", "message"])]
        counts = {"lines": total, "topic_records": len(records),
                  "topic_distinct_lines": len({r["message"] for r in records}),
                  "es_docs": len(docs), "es_distinct_ids": len({d["event"]["id"] for d in docs}),
                  "es_distinct_lines": len({d["message"] for d in docs})}
        print(f"counts: {json.dumps(counts)}")
        assert {d["message"] for d in docs} == self.lines.expected(), "ES lacks some lines or has others"
        return counts

    def close(self) -> None:
        self.load.stop()
        for d in (self.agent, self.transfer):
            if d.alive():
                d.stop(timeout=30)
            print(f"----- {d.name} log (tail)\n" + "\n".join(d.log_text().splitlines()[-25:]))
        self.es.options(ignore_status=[404]).indices.delete(index=self.wildcard, expand_wildcards="all")
        self.admin.delete_topics([self.topic, f"{self.topic}-dlq"])
        self.etcd.close()
        self.es.close()


def partition_state(admin: AdminClient, topic: str, timeout_s: float = 60) -> tuple[int, list[int]]:
    """(leader broker id, in-sync replica ids) of partition 0, from the cluster's metadata.

    Right after a broker dies the client may still ask it first, and a metadata request times out
    ("Failed to get metadata: Local: Timed out"): asked again until `timeout_s`.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            p = admin.list_topics(topic, timeout=5).topics[topic].partitions[0]
            return p.leader, sorted(p.isrs)
        except KafkaException as e:
            if time.monotonic() > deadline:
                raise
            print(f"metadata not known yet: {e}")


def test_kafka_partition_leader_killed_under_load_every_line_once(replicated: StackHandle, tmp_path: Path) -> None:
    st = replicated.require_servers()
    st.start_service("kafka")  # all up, whatever an earlier test left down
    st.start_service("es")
    run = Pipeline(replicated, tmp_path, replicated.env["ES_URL"])
    t0 = time.monotonic()
    try:
        run.grows(run.in_es, 500, 90, "documents in ES")
        leader, isr = partition_state(run.admin, run.topic)
        assert isr == ALL_BROKERS, f"partition 0 should start with 3 in-sync replicas, has {isr}"
        victim = f"kafka{leader}"
        port = st.ports[victim]
        st.stop_service(victim, kill=True)
        _log(f"killed -9 {victim} (broker {leader}, leader of {run.topic}/0) at {run.lines.n} lines")

        def new_leader() -> int | None:
            led, _ = partition_state(run.admin, run.topic)
            return led if led not in (leader, -1) else None

        took = wait_for(new_leader, 60, f"a new leader of {run.topic}/0 after {victim} died")
        _log(f"broker {took} leads {run.topic}/0 now; ISR {partition_state(run.admin, run.topic)[1]}")
        run.grows(run.in_topic, 600, 60, "the topic (2 of 3 replicas in sync, acks=all)")
        # The daemons' status keys say which broker they lost (librdkafka's error, with its address).
        wait_for(lambda: f":{port}/" in str((agent_status(run.etcd, run.prefix, HOST_IP) or {}).get("kafka", {})
                                            .get("last_error")), 30, f"the agent's status naming {victim}")
        wait_for(lambda: f":{port}" in str((status_of(run.etcd, run.prefix, run.tid) or {}).get("last_error")),
                 30, f"the transfer's status naming {victim}")
        print("agent status kafka:", json.dumps(agent_status(run.etcd, run.prefix, HOST_IP)["kafka"]))
        print("transfer status last_error:", status_of(run.etcd, run.prefix, run.tid)["last_error"])
        st.start_service(victim)
        wait_for(lambda: partition_state(run.admin, run.topic)[1] == ALL_BROKERS, 60,
                 f"{victim} back in the ISR of {run.topic}/0")
        run.grows(run.in_topic, 400, 60, "the topic after the broker's return")
        counts = run.finish()
        _log(f"broker failover run took {time.monotonic() - t0:.0f}s")
        assert counts["topic_records"] == counts["topic_distinct_lines"] == counts["lines"], \
            f"the topic should hold every line once (idempotent producer, acks=all): {counts}"
        assert counts["es_docs"] == counts["es_distinct_ids"] == counts["es_distinct_lines"] == counts["lines"], counts
    finally:
        run.close()


def test_elasticsearch_node_killed_under_load_every_line_once(replicated: StackHandle, tmp_path: Path) -> None:
    st = replicated.require_servers()
    st.start_service("kafka")  # all up, whatever an earlier test left down
    st.start_service("es")
    run = Pipeline(replicated, tmp_path, replicated.env["ES_URLS"])
    t0 = time.monotonic()
    try:
        run.grows(run.in_es, 500, 90, "documents in ES")
        index = next(iter(run.es.indices.get(index=run.wildcard)))
        replicas = run.es.indices.get_settings(index=index)[index]["settings"]["index"]["number_of_replicas"]
        assert replicas == "1", f"{index} should have one replica (ES's default), has {replicas}"
        run.es.cluster.health(index=index, wait_for_status="green", timeout="60s")
        shards = run.es.cat.shards(index=index, format="json")
        victim = next(s["node"] for s in shards if s["prirep"] == "p")
        st.stop_service(victim, kill=True)
        _log(f"killed -9 {victim} (holds the primary of {index}) at {run.lines.n} lines")
        wait_for(lambda: run.es.cluster.health()["number_of_nodes"] == ES_NODES - 1, 60,
                 f"the cluster to drop {victim}")
        run.grows(run.in_es, 600, 90, "documents in ES (replica promoted on a survivor)")
        st.start_service(victim)
        run.es.cluster.health(index=index, wait_for_status="green", timeout="90s")
        assert run.es.cluster.health(index=index)["status"] == "green", f"{index} not green after {victim} returned"
        run.grows(run.in_es, 400, 60, "documents in ES after the node's return")
        counts = run.finish()
        _log(f"ES node failover run took {time.monotonic() - t0:.0f}s")
        assert counts["es_docs"] == counts["es_distinct_ids"] == counts["es_distinct_lines"] == counts["lines"], counts
    finally:
        run.close()
