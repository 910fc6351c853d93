"""The end-to-end delivery test that ``make compat`` runs on every cell of the version matrix.

agent → Kafka → transfer → index, on whatever stack the session runs on (``LOGFERRY_STACK_DIR``:
Kafka 3.9 + ZooKeeper or Kafka 4 KRaft; Elasticsearch 8.19, 9.x or OpenSearch 2.19; etcd 3.4 or
3.6, see docs/compatibility.md). Both daemons are killed with kill -9 while they hold work that
is not yet acknowledged, arranged rather than hoped for: the search engine and the broker are
frozen (SIGSTOP) first, so the transfer has a bulk request in flight and uncommitted offsets, and
the agent has read lines Kafka has not acknowledged. After both restart, the index must hold
exactly the lines written: every one, once (its ``event.id`` is the document ``_id``).

Only the engine client of logferry/engine.py is used (the ``es`` fixture's plain client refuses
OpenSearch), so the same test serves every engine.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.agents import LineWriter, agent_ini, agent_process, wait_for
from integration.conftest import StackHandle, topic_size
from integration.test_transfer import committed, transfer_ini, transfer_process
from logferry import engine
from logferry.etcd import EtcdClient
from transfer.template import index_patterns, template_name

FIRST, SECOND = 10_000, 10_000


@pytest.fixture
def search(stack: StackHandle, unique: str) -> Iterator:
    """An engine client (ES 8, ES 9 or OpenSearch); the test's indices and template deleted afterwards."""
    es = engine.client(stack.es_url, request_timeout=60)
    yield es
    es.options(ignore_status=[404]).indices.delete(index=f"it-{unique}-*", expand_wildcards="all")
    es.options(ignore_status=[404]).indices.delete_index_template(
        name=template_name(index_patterns(f"it-{unique}-{{topic}}-{{yyyy.MM.dd}}")))
    es.close()


def _count(es, wildcard: str) -> int:
    """Documents in the test's indices; -1 while an index just created has no started shard yet
    (OpenSearch answers 503 ``search_phase_execution_exception`` then: a state to wait out)."""
    import elasticsearch

    try:
        es.options(ignore_status=[404]).indices.refresh(index=wildcard, expand_wildcards="all")
        return int(es.options(ignore_status=[404]).count(index=wildcard).get("count", 0))
    except elasticsearch.ApiError as e:
        if e.meta.status == 503:
            return -1
        raise


def _messages(es, wildcard: str) -> list[str]:
    """Every document's message, paged by ``log.offset`` (one file: unique per line)."""
    out: list[str] = []
    after = None
    while True:
        extra = {"search_after": after} if after is not None else {}
        hits = es.search(index=wildcard, size=10_000, sort=[{"log.offset": "asc"}], source=["message"],
                         query={"match_all": {}}, **extra)["hits"]["hits"]
        if not hits:
            return out
        out += [h["_source"]["message"] for h in hits]
        after = hits[-1]["sort"]


def _agent_status(etcd: EtcdClient, prefix: str, ip: str) -> dict:
    value, _ = etcd.get(f"{prefix}/agents/{ip}/status")
    return json.loads(value) if value else {}


def test_agent_kafka_transfer_index_exact_count_through_kill9_of_both(
        stack: StackHandle, etcd: EtcdClient, search, unique: str, topic_factory, kafka_admin, tmp_path: Path):
    st = stack.require_servers()
    found = engine.detect(search)
    versions = stack.env.get("LOGFERRY_STACK_VERSIONS", "?")
    print(f"cell: {versions}; search engine answers as {found.label}")
    prefix, ip, group = f"/it-{unique}", "10.219.0.1", f"it-compat-{unique}"
    topic = topic_factory("compat", 3)
    dlq = topic_factory("compat-dlq", 1)
    wildcard = f"it-{unique}-*"
    logs = tmp_path / "logs"
    logs.mkdir()
    w = LineWriter(logs / "app.log", "C")
    w.write(FIRST, size=60)

    etcd.put(f"{prefix}/agents/{ip}/collect",
             json.dumps([{"path": f"{logs}/*.log", "topic": topic, "start_at": "beginning"}]).encode())
    etcd.put(f"{prefix}/transfer/config", json.dumps({
        "topics": [topic], "index": f"it-{unique}-{{topic}}-{{yyyy.MM.dd}}", "dead_letter_topic": dlq,
        "flush_interval_s": 0.5, "bulk_max_docs": 2000}).encode())
    agent = agent_process(tmp_path / "agent", agent_ini(
        etcd=stack.etcd_endpoints, kafka=stack.kafka_bootstrap, data_dir=tmp_path / "agent" / "data",
        prefix=prefix, host_ip=ip, extra_agent={"max_inflight_bytes": "1MiB"}))
    xfer = transfer_process(tmp_path / "transfer", transfer_ini(
        stack, prefix=prefix, group=group, tid=f"c-{unique}", data_dir=tmp_path / "transfer" / "data"))
    started = time.monotonic()
    try:
        msgs = _deliver_through_kills(stack, st, etcd, search, kafka_admin, agent, xfer, w,
                                      prefix=prefix, ip=ip, group=group, topic=topic, wildcard=wildcard)
    finally:
        for d in (agent, xfer):
            if d.alive():
                d.stop(timeout=60)
            print(f"----- {d.name} log (tail)\n" + "\n".join(d.log_text().splitlines()[-25:]))
    total = FIRST + SECOND
    expected = {m + "x" * 60 for m in w.expected()}
    assert len(msgs) == total, f"{len(msgs)} documents for {total} lines ({len(msgs) - total:+d})"
    assert set(msgs) == expected, f"{len(expected - set(msgs))} lines missing"
    result = {"cell": versions, "engine": found.label, "lines": total, "documents": len(msgs),
              "seconds": round(time.monotonic() - started, 1)}
    print(f"COMPAT-RESULT {json.dumps(result)}")
    if os.environ.get("LOGFERRY_COMPAT_RESULT"):
        Path(os.environ["LOGFERRY_COMPAT_RESULT"]).write_text(json.dumps(result) + "\n")


def _deliver_through_kills(stack: StackHandle, st, etcd: EtcdClient, search, kafka_admin, agent, xfer,
                           w: LineWriter, *, prefix: str, ip: str, group: str, topic: str,
                           wildcard: str) -> list[str]:
    """Start both, kill -9 both holding unacknowledged work, restart; the messages indexed in the end."""
    paused: list[str] = []
    try:
        agent.start()
        xfer.start()
        wait_for(lambda: _count(search, wildcard) >= 2000, 120, "the first 2,000 documents indexed")
        # Freeze the engine: the transfer's next bulk hangs in flight, its offsets uncommitted.
        st.pause_service("es")
        paused.append("es")
        # Freeze Kafka (once it holds every line so far) and write more: the agent then reads lines
        # Kafka cannot acknowledge.
        wait_for(lambda: topic_size(stack, topic) >= FIRST, 120, f"the first {FIRST} lines in Kafka")
        st.pause_service("kafka")
        paused.append("kafka")
        w.write(SECOND, size=60)
        wait_for(lambda: int((_agent_status(etcd, prefix, ip).get("counters") or {}).get("lines_read", 0))
                 > FIRST, 60, f"the agent to read past the first {FIRST} lines")
        agent.kill9()
        xfer.kill9()
    finally:
        for name in reversed(paused):
            st.unpause_service(name)
    total = FIRST + SECOND
    done = sum(committed(stack, kafka_admin, group, topic, 3).values())
    in_kafka = topic_size(stack, topic)
    assert done < in_kafka, "the transfer had committed everything before its kill: the test proved nothing"
    assert in_kafka < total, "the agent had shipped everything before its kill: the test proved nothing"
    print(f"killed both: the transfer had committed {done} of the {in_kafka} records in Kafka; "
          f"the agent had shipped {in_kafka} of {total} lines")
    agent.start()
    xfer.start()
    wait_for(lambda: _count(search, wildcard) >= total, 240, f"{total} documents indexed", interval=1.0)
    return _messages(search, wildcard)
