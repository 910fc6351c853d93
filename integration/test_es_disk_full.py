"""Elasticsearch disk full, and the index retention that prevents it (issue 12 item 2), on the real stack.

1. Flood stage: the test makes the node pass its flood-stage watermark without filling a disk:
   the disk watermarks become absolute *free-space* amounts no machine has (``998tb``), so the
   node's next disk check (``cluster.info.update.interval``, 10 s, ES's minimum) finds it over
   flood stage and puts ``index.blocks.read_only_allow_delete`` on the indices. Bulk items then
   come back ``429 cluster_block_exception``. The transfer must hold them (nothing committed past
   them, nothing dead-lettered), say ``blocked`` in its status key, ``logctl status`` and metric,
   and resume by itself when the watermarks are reset: Elasticsearch 8 lifts the block on its
   own once disk usage is below the high watermark (measured on 8.19: ~7 s after the reset). Every
   record must then be in Elasticsearch exactly once (counted by ``event.id``).
2. Retention with two transfers started together: the index of an old day goes, a recent one and
   every decoy (same prefix, not the pattern; another prefix) stay, and exactly one transfer of
   the two ran it (the other found the etcd lock taken).
3. The etcd lock itself, raced by threads: of each round of contenders exactly one wins.

Every cluster setting changed is reset in a ``finally`` (other tests share the cluster), and any
block left on an index is lifted there.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

from integration.agents import wait_for
from integration.conftest import topic_size
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
)
from logferry.etcd import EtcdClient
from transfer.retention import lock_key, release_lock, take_lock

_FLOOD = {
    "cluster.routing.allocation.disk.threshold_enabled": True,
    # byte values are free space: a node with less than this free is past the watermark
    "cluster.routing.allocation.disk.watermark.low": "1000tb",
    "cluster.routing.allocation.disk.watermark.high": "999tb",
    "cluster.routing.allocation.disk.watermark.flood_stage": "998tb",
    "cluster.info.update.interval": "10s",  # the smallest ES 8 accepts
}
_WATERMARKS = [k for k in _FLOOD if ".watermark." in k]


def _blocked(es, wildcard: str) -> bool:
    resp = es.indices.get_settings(index=wildcard, name="index.blocks.read_only_allow_delete",
                                   allow_no_indices=True, expand_wildcards="open")
    return any(str(v.get("settings", {}).get("index", {}).get("blocks", {}).get("read_only_allow_delete")) == "true"
               for v in resp.body.values())


def _restore(es) -> None:
    """Reset every setting _FLOOD changed, and make sure no index is left blocked."""
    es.cluster.put_settings(transient=dict.fromkeys(_WATERMARKS))
    # with the threshold still enabled ES lifts the flood-stage blocks by itself; give it its check
    deadline = time.monotonic() + 60
    while _blocked(es, "*") and time.monotonic() < deadline:
        time.sleep(1)
    es.cluster.put_settings(transient=dict.fromkeys(_FLOOD))
    if _blocked(es, "*"):
        print("a flood-stage block was not lifted by Elasticsearch; lifting it by hand")
        es.indices.put_settings(index="*", settings={"index.blocks.read_only_allow_delete": None},
                                expand_wildcards="all")


def test_flood_stage_holds_reports_blocked_and_resumes_exactly_once(
        stack, es, etcd, kafka_admin, topic_factory, transfers, prefix, unique, index_pattern, indices,  # noqa: F811
        logctl) -> None:  # noqa: F811
    topic = topic_factory("disk", 2)
    dlq = topic_factory("dlq", 1)
    put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq, bulk_max_docs=500))
    address = f"127.0.0.1:{free_port()}"
    t = transfers("a", metrics_address=address).start()
    tid = f"a-{unique}"
    group = f"it-transfer-{unique}"
    feed = Feed(stack, topic, "disk")
    before = feed.produce(2000)
    wait_for(lambda: es_count(es, indices) == len(before), 120, "the first 2000 documents")
    wait_for(lambda: sum(committed(stack, kafka_admin, group, topic, 2).values()) == len(before), 60,
             "the first 2000 records committed")
    try:
        es.cluster.put_settings(transient=_FLOOD)
        t0 = time.monotonic()
        wait_for(lambda: _blocked(es, indices), 120, "Elasticsearch to block the index (flood stage)", interval=1)
        print(f"flood-stage block on {indices} after {time.monotonic() - t0:.1f}s")
        during = feed.produce(3000)

        def blocked_status() -> dict | None:
            doc = status_of(etcd, prefix, tid)
            return doc if doc and (doc.get("elasticsearch") or {}).get("state") == "blocked" else None

        doc = wait_for(blocked_status, 120, "the status key to say elasticsearch blocked", interval=0.5)
        es_state = doc["elasticsearch"]
        print(f"status while blocked: {es_state}")
        assert "flood-stage" in es_state["reason"] and "free disk space" in es_state["reason"], es_state
        assert es_state["held_documents"] > 0
        wait_for(lambda: scrape(address).get("logtransfer_elasticsearch_blocked") == 1.0, 30, "the blocked gauge")
        shown = logctl("status").stdout
        assert "BLOCKED since" in shown, shown
        # held, not lost and not dead-lettered: nothing new indexed, nothing committed past the first 2000
        assert es_count(es, indices) == len(before)
        assert sum(committed(stack, kafka_admin, group, topic, 2).values()) == len(before)
        assert topic_size(stack, dlq) == 0
        blocked_for = time.monotonic()
        es.cluster.put_settings(transient=dict.fromkeys(_WATERMARKS))  # "space returns"
        wait_for(lambda: not _blocked(es, indices), 120, "Elasticsearch to lift the block", interval=1)
        print(f"block lifted by Elasticsearch {time.monotonic() - blocked_for:.1f}s after the watermarks were reset")
    finally:
        _restore(es)
    everything = before + during
    wait_for(lambda: es_count(es, indices) == len(everything), 120, f"all {len(everything)} documents")
    wait_for(lambda: sum(committed(stack, kafka_admin, group, topic, 2).values()) == len(everything), 60,
             "everything committed")
    total, present = es_count(es, indices), es_count_ids(es, indices, everything)
    print(f"after the block: {total} documents, {present} of the {len(everything)} ids produced; "
          f"dead letters {topic_size(stack, dlq)}")
    assert (total, present) == (len(everything), len(everything))
    assert topic_size(stack, dlq) == 0
    wait_for(lambda: (status_of(etcd, prefix, tid) or {}).get("elasticsearch", {}).get("state") == "ok", 30,
             "the status key to say elasticsearch ok again")
    assert scrape(address).get("logtransfer_elasticsearch_blocked") == 0.0
    log = t.log_text()
    assert log.count("writes BLOCKED") == 1, log[-3000:]
    assert log.count("writes accepted again") == 1, log[-3000:]


def test_retention_deletes_only_old_own_indices_once_with_two_transfers(
        stack, es, etcd, topic_factory, transfers, prefix, unique, index_pattern,  # noqa: F811
        indices) -> None:  # noqa: F811
    topic = topic_factory("ret", 1)
    dlq = topic_factory("dlq", 1)
    today = datetime.now(UTC)

    def name(day: datetime, tail: str = "") -> str:
        return f"it-{unique}-{topic}-{day:%Y.%m.%d}{tail}".lower()

    old = [name(today - timedelta(days=40)), name(today - timedelta(days=4))]
    kept = [name(today), name(today - timedelta(days=3)),  # recent enough for retention_days = 3
            name(today - timedelta(days=40), "-restored"),  # same prefix, not the pattern
            f"it-{unique}-{topic}-keep".lower(), f"it-{unique}-{topic}-2020.13.45".lower()]  # not a date
    other = f"other-{unique}-{topic}-{today - timedelta(days=40):%Y.%m.%d}".lower()  # not our prefix
    for n in [*old, *kept, other]:
        es.indices.create(index=n)
    try:
        put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq, retention_days=3))
        a, b = transfers("a").start(), transfers("b").start()

        def checked() -> list[dict] | None:
            docs = [status_of(etcd, prefix, f"{x}-{unique}") for x in "ab"]
            rets = [(d or {}).get("index_retention") or {} for d in docs]
            return rets if all(r.get("outcome") for r in rets) else None

        rets = wait_for(checked, 120, "both transfers to check the retention", interval=0.5)
        print(f"retention status: a={rets[0]} b={rets[1]}")
        ran = [r for r in rets if r["outcome"] == "ran"]
        skipped = [r for r in rets if r["outcome"].startswith("skipped: another transfer")]
        assert (len(ran), len(skipped)) == (1, 1), rets
        assert sorted(ran[0]["deleted"]) == sorted(old)
        for n in old:
            assert not es.indices.exists(index=n), f"{n} should have been deleted"
        for n in [*kept, other]:
            assert es.indices.exists(index=n), f"{n} must not be deleted"
        value, _ = etcd.get(lock_key(prefix))
        assert value is not None and b'"holder"' in value
        logs = a.log_text() + b.log_text()
        assert sum(logs.count(f"deleted index {n}") for n in old) == len(old), logs[-3000:]
    finally:
        es.options(ignore_status=[404]).indices.delete(index=other)


def test_retention_lock_race_has_one_winner(etcd: EtcdClient, prefix: str) -> None:  # noqa: F811
    key = lock_key(prefix)
    for rnd in range(10):
        wins: list[int] = []
        start = threading.Barrier(4)

        def contend(n: int, wins: list[int] = wins, start: threading.Barrier = start) -> None:
            start.wait()
            lease = take_lock(etcd, key, f"contender {n}".encode(), 30)
            if lease is not None:
                wins.append(lease)

        threads = [threading.Thread(target=contend, args=(n,)) for n in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(30)
        assert len(wins) == 1, f"round {rnd}: {len(wins)} winners"
        release_lock(etcd, wins[0])
        assert etcd.get(key)[0] is None
    print("10 rounds of 4 racing contenders: exactly one winner each")
