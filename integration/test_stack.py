"""The servers under every other test are real and sound.

etcd is spoken to through its own v3 JSON gateway here (not our client), so these tests say
something about the servers, not about logferry's code.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import pytest

from integration.conftest import StackHandle, consume_all


def _etcd(endpoint: str, path: str, body: dict) -> dict:
    req = urllib.request.Request(
        f"http://{endpoint}{path}", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _etcd_get(endpoint: str, key: str) -> str | None:
    kvs = _etcd(endpoint, "/v3/kv/range", {"key": _b64(key)}).get("kvs", [])
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


# ------------------------------------------------------------------------------ etcd
def test_etcd_has_three_healthy_members(stack: StackHandle) -> None:
    members = _etcd(stack.etcd_endpoints[0], "/v3/cluster/member/list", {})["members"]
    assert len(members) == 3
    for ep in stack.etcd_endpoints:
        status = _etcd(ep, "/v3/maintenance/status", {})
        assert status["leader"], f"member {ep} sees no leader"


def test_etcd_write_through_one_member_read_through_another(stack: StackHandle, unique: str) -> None:
    first, *others = stack.etcd_endpoints
    key = f"/it/{unique}/k"
    _etcd(first, "/v3/kv/put", {"key": _b64(key), "value": _b64("hello")})
    for ep in others:
        assert _etcd_get(ep, key) == "hello"


def test_etcd_stays_writable_after_leader_killed(stack: StackHandle, unique: str) -> None:
    st = stack.require_servers()
    leader = st.etcd_leader()
    assert leader in st.etcd_names
    st.stop_service(leader, kill=True)
    try:
        survivors = [f"127.0.0.1:{st.ports[f'{n}_client']}" for n in st.etcd_names if n != leader]
        key = f"/it/{unique}/after-leader-kill"
        deadline = time.monotonic() + 20
        while True:
            try:
                _etcd(survivors[0], "/v3/kv/put", {"key": _b64(key), "value": _b64("still-writable")})
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert _etcd_get(survivors[1], key) == "still-writable"
        new_leader = st.etcd_leader()
        assert new_leader is not None and new_leader != leader
    finally:
        st.start_service(leader)
    # the old leader rejoined and caught up
    assert _etcd_get(f"127.0.0.1:{st.ports[f'{leader}_client']}", key) == "still-writable"


# ------------------------------------------------------------------------------ Kafka
def test_kafka_10000_messages_acks_all_through_a_consumer_group(
    stack: StackHandle, topic_factory, kafka_producer, kafka_consumer_factory
) -> None:
    topic = topic_factory("sound", partitions=3)
    errors = []

    def on_delivery(err, _msg) -> None:
        if err is not None:
            errors.append(err)

    for i in range(10_000):
        kafka_producer.produce(topic, key=str(i % 97).encode(), value=f"msg-{i}".encode(), on_delivery=on_delivery)
        if i % 1000 == 0:
            kafka_producer.poll(0)
    assert kafka_producer.flush(60) == 0
    assert errors == []
    msgs = consume_all(kafka_consumer_factory(), [topic], expect=10_000)
    values = [m.value().decode() for m in msgs]
    assert len(values) == 10_000
    assert set(values) == {f"msg-{i}" for i in range(10_000)}
    assert {m.partition() for m in msgs} == {0, 1, 2}


def test_kafka_broker_registered_in_zookeeper(stack: StackHandle) -> None:
    st = stack.require_servers()
    if st.options.kraft:
        pytest.skip("KRaft mode has no ZooKeeper")
    from integration.stack.services import zk_command

    dump = zk_command(st.ports["zookeeper"], "dump")
    assert "/brokers/ids/0" in dump, dump


# ------------------------------------------------------------------------------ Elasticsearch
def test_es_template_bulk_count_and_date_histogram(es, index_name: str) -> None:
    from elasticsearch import helpers

    es.indices.put_index_template(
        name=f"{index_name}-tpl",
        index_patterns=[f"{index_name}*"],
        template={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {"properties": {
                "@timestamp": {"type": "date"}, "message": {"type": "text"},
                "host": {"properties": {"ip": {"type": "ip"}}}, "n": {"type": "long"},
            }},
        },
    )
    try:
        base = datetime(2026, 11, 1, tzinfo=UTC)
        docs = (
            {"_index": index_name, "_id": str(i), "_source": {
                "@timestamp": (base + timedelta(minutes=i)).isoformat(), "message": f"line {i}",
                "host": {"ip": "10.1.2.3"}, "n": i}}
            for i in range(10_000)
        )
        ok, errors = helpers.bulk(es, docs, chunk_size=2000, raise_on_error=False)
        assert (ok, errors) == (10_000, [])
        es.indices.refresh(index=index_name)
        assert es.count(index=index_name)["count"] == 10_000
        mapping = es.indices.get_mapping(index=index_name)[index_name]["mappings"]["properties"]
        assert mapping["host"]["properties"]["ip"]["type"] == "ip"  # the template applied
        res = es.search(index=index_name, size=0, aggs={"per_day": {"date_histogram": {
            "field": "@timestamp", "calendar_interval": "day"}}})
        buckets = res["aggregations"]["per_day"]["buckets"]
        # 10,000 minutes from midnight = 6 full days of 1,440 plus 1,360 on the 7th
        assert [b["doc_count"] for b in buckets] == [1440] * 6 + [1360]
    finally:
        es.indices.delete_index_template(name=f"{index_name}-tpl")
