"""The chaos run of ``make chaos``, shortened for ``make test`` (a few minutes on 2 cores).

30,000 lines into 10 files of 3 agent hosts, with rename and copytruncate rotations, while
each kind of fault happens once: kill -9 of agents and of a transfer (2 transfers in one
group), a Kafka broker restart, Elasticsearch stopped and started, an etcd member and the etcd
leader killed, a collect list changing its topic and gaining an input mid-run, one honest
copytruncate. Then every document is read back: nothing missing, nothing twice (what the honest
copytruncate could lose is measured apart).

On the session stack the servers listen on loopback, which network namespaces cannot reach,
so here the agents get distinct ``host_ip`` overrides in their INI (``make chaos`` runs them
in namespaces of their own). The report goes to ``chaos/results/short.json``.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from chaos.harness import REPO, ChaosConfig, Endpoints, Run, summary
from chaos.netns import OverrideHosts
from integration.agents import LineWriter, agent_ini, agent_process, wait_for
from integration.conftest import read_topic, topic_size
from logferry.etcd import EtcdClient

LINES = 30_000
RATE = 300.0  # lines/s: 100 s of writing; the writer waits at each fault point for the fault to start


def test_chaos_short(stack, tmp_path: Path) -> None:
    st = stack.require_servers()
    cfg = ChaosConfig(lines=LINES, agents=3, transfers=2, rate=RATE, schedule="short", rotate_every=1000,
                      workdir=tmp_path / "chaos", results=REPO / "chaos" / "results" / "short.json",
                      drain_timeout_s=180, keep_indices=False, settle_timeout_s=45)
    ep = Endpoints(etcd=stack.etcd_endpoints, kafka=stack.kafka_bootstrap, es=stack.es_url, stack=st,
                   bind=st.options.bind)
    t0 = time.monotonic()
    report = Run(cfg, ep, OverrideHosts(3), say=lambda m: print(m, flush=True)).execute()
    print(summary(report))
    print(f"short chaos run took {time.monotonic() - t0:.0f}s")
    failures = "\n".join(report["failures"])
    assert report["passed"], f"chaos run failed:\n{failures}\n{json.dumps(report['faults'], indent=1)[:3000]}"
    assert report["lines_written"] == LINES
    assert report["missing"] == 0 and report["duplicates"] == 0
    assert report["documents_in_es"] == report["expected_documents"]
    kinds = report["rotations"]["count"]
    assert kinds.get("rename") and kinds.get("rename_matching") and kinds.get("copytruncate"), kinds
    assert kinds.get("copytruncate_honest") == 1, kinds


def test_a_line_replayed_after_kill9_keeps_its_timestamp(stack, tmp_path: Path) -> None:
    """A line the agent sends again after kill -9 must be the same document, @timestamp included.

    The transfer picks the index from the record's @timestamp (``logs-{topic}-{yyyy.MM.dd}``),
    and ES deduplicates by ``_id`` only within one index. The agent stamps a line with the time
    it *reads* it, so the copy re-read after a restart carries a later @timestamp; if the two
    reads straddle midnight UTC, the copies go to two daily indices: the same line twice in
    Elasticsearch. (The replay window is every line acknowledged since the last registry save,
    about a second's worth, plus those in flight at the kill, up to ``max_inflight_bytes``: tens
    of thousands of lines when the agent is catching up.)
    """
    u = uuid.uuid4().hex[:8]
    prefix, topic, ip = f"/replay-{u}", f"it-replay-{u}", "10.213.0.1"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(30)
    etcd = EtcdClient(stack.etcd_endpoints)
    agent = None
    try:
        d = tmp_path / "logs"
        d.mkdir()
        w = LineWriter(d / "a.log", "T")
        w.write(150_000, size=60)
        etcd.put(f"{prefix}/agents/{ip}/collect",
                 json.dumps([{"path": f"{d}/*.log", "topic": topic, "start_at": "beginning"}]).encode())
        agent = agent_process(tmp_path / "agent", agent_ini(etcd=stack.etcd_endpoints, kafka=stack.kafka_bootstrap,
                                                           data_dir=tmp_path / "agent" / "data", prefix=prefix,
                                                           host_ip=ip)).start()
        wait_for(lambda: topic_size(stack, topic) >= 20_000, 90, "20,000 lines shipped", interval=0.02)
        agent.kill9()
        time.sleep(1.5)  # the replayed copies are read at least this much later
        agent.start()
        recs = read_topic(stack, [topic], 150_000, 60)
        by_id: dict[str, list[dict]] = {}
        for r in recs:
            by_id.setdefault(r["event"]["id"], []).append(r)
        replayed = [v for v in by_id.values() if len(v) > 1]
        if not replayed:
            pytest.skip("the kill landed where nothing was replayed: nothing to compare")
        differ = [v for v in replayed if len({r["@timestamp"] for r in v}) > 1]
        assert not differ, (f"{len(differ)} of {len(replayed)} replayed lines carry a new @timestamp, e.g. "
                            f"{[r['@timestamp'] for r in differ[0]]} for {differ[0][0]['message'][:30]!r}: "
                            "across midnight UTC they go to another daily index, a duplicate in Elasticsearch")
    finally:
        if agent is not None and agent.alive():
            agent.stop()
        etcd.close()
        admin.delete_topics([topic])
