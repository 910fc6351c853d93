"""Part 3: append → searchable latency through logagent → Kafka → logtransfer → Elasticsearch.

A paced writer appends stamped lines; every 100 ms a search asks Elasticsearch for the newest
probe lines (1 in ``probe_every``), and the first time each probe is seen minus the time it was
written is its latency. The poll period bounds the resolution (+0 to +100 ms, plus the search's
own time); Elasticsearch's refresh interval (1 s by default) is part of what is measured.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

from .common import AgentRun, StackRef, create_topic, delete_topics, es_delete_index, es_request, say, set_collect
from .transfer_bench import TransferRun
from .writer import PacedWriter


def percentile(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


class Poller(threading.Thread):
    """Every ``interval`` s, fetch the probe documents that became searchable since the last poll.

    Only sort values come back (``@timestamp``, ``log.offset``: doc values), never ``_source``:
    the writer knows which offset holds which probe. Only probes at or after the newest one seen
    (minus 1 s) are asked for, oldest first and paged. Reading the newest 1,000 documents'
    ``_source`` every 100 ms, as a first version did, cost ES as much CPU as the indexing it
    measured, and slowed it.
    """

    def __init__(self, es: str, index: str, writer_probes: dict[int, tuple[int, float]],
                 interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.es, self.index, self.interval = es, index, interval
        self.probes = writer_probes  # offset -> (seq, sent); filled by the writer as it goes
        self.first_seen: dict[int, float] = {}  # seq -> wall clock when first searchable
        self.sent: dict[int, float] = {}
        self.read_at: dict[int, float] = {}  # the record's @timestamp: when logagent read the line
        self.stop_evt = threading.Event()
        self.polls = 0
        self.search_ms: list[float] = []
        self.errors = 0
        self.last_error = ""

    def run(self) -> None:
        url = f"{self.es}/{self.index}/_search?ignore_unavailable=true&allow_no_indices=true"
        hwm_ms = 0
        while not self.stop_evt.is_set():
            t = time.monotonic()
            after = None
            now = None
            try:
                while True:
                    body = {"size": 500, "_source": False, "track_total_hits": False,
                            "query": {"bool": {"filter": [
                                {"match": {"message": "lfprobe"}},
                                {"range": {"@timestamp": {"gte": max(0, hwm_ms - 1000), "format": "epoch_millis"}}},
                            ]}},
                            "sort": [{"@timestamp": "asc"}, {"log.offset": "asc"}]}
                    if after is not None:
                        body["search_after"] = after
                    r = es_request(url, "POST", body, timeout=30)
                    now = now or time.time()
                    hits = (r.get("hits") or {}).get("hits", [])
                    for hit in hits:
                        ts_ms, offset = hit["sort"][0], hit["sort"][1]
                        hwm_ms = max(hwm_ms, ts_ms)
                        probe = self.probes.get(offset)
                        if probe is not None and probe[0] not in self.first_seen:
                            self.first_seen[probe[0]] = now
                            self.sent[probe[0]] = probe[1]
                            self.read_at[probe[0]] = ts_ms / 1000
                    if len(hits) < 500:
                        break
                    after = hits[-1]["sort"]
            except (OSError, KeyError, TypeError, IndexError) as e:  # a failed search must not end the poller
                self.errors += 1
                self.last_error = repr(e)
            self.polls += 1
            self.search_ms.append((time.monotonic() - t) * 1000)
            self.stop_evt.wait(max(0.0, self.interval - (time.monotonic() - t)))


def run_latency(stack: StackRef, work: Path, rate: int, seconds: float, *, probe_every: int = 100,
                transfer_overrides: dict | None = None, label: str = "defaults") -> dict:
    tag = uuid.uuid4().hex[:8]
    topic = create_topic(stack.kafka, f"bench-lat-{tag}", 6)
    index = f"bench-lat-{tag}"
    prefix = f"/bench-lat-{tag}"
    d = work / f"lat-{tag}"
    d.mkdir(parents=True)
    path = d / "app.log"
    path.touch()
    set_collect(stack.etcd, prefix, "127.0.0.1",
                [{"path": str(d / "*.log"), "topic": topic, "start_at": "beginning"}])
    agent = AgentRun(work / f"lat-agent-{tag}", prefix, "127.0.0.1").start(stack)
    transfer = TransferRun(stack, work / f"lat-transfer-{tag}", prefix, [topic], index,
                           overrides=transfer_overrides or {}).start()
    probes: dict[int, tuple[int, float]] = {}
    poller = Poller(stack.es, index, probes)
    try:
        # both daemons up and following: wait until a warm-up line is searchable
        writer0 = PacedWriter([path], 100, 1.0, probe_every=1, seed=3)
        writer0.probes = probes
        poller.start()
        writer0.start()
        deadline = time.monotonic() + 180
        while not poller.first_seen and time.monotonic() < deadline:
            time.sleep(0.2)
        if not poller.first_seen:
            raise RuntimeError(f"warm-up lines never became searchable (search errors: {poller.errors} "
                               f"{poller.last_error}): "
                               f"agent log:\n{agent.log_tail()}\ntransfer log:\n{transfer.log_tail()}")
        writer0.done.wait(10)
        time.sleep(2)
        poller.first_seen.clear()
        poller.sent.clear()
        say(f"latency {label}: {rate:,} lines/s for {seconds:.0f}s, probing 1 in {probe_every}")
        writer = PacedWriter([path], rate, seconds, probe_every=probe_every, seed=11)
        probes.clear()
        writer.probes = probes
        writer.start()
        t_start = time.time()
        writer.done.wait(seconds + 120)
        expected = {s for s in range(0, writer.written, probe_every)}
        wait_until = time.monotonic() + 120
        while time.monotonic() < wait_until and not expected <= set(poller.first_seen):
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        poller.stop_evt.set()
        transfer.stop()
        agent.stop()
        delete_topics(stack.kafka, [topic])
    seen = {s: poller.first_seen[s] - poller.sent[s] for s in expected if s in poller.first_seen
            and poller.sent[s] >= t_start - 1}
    lat = list(seen.values())
    to_agent = [poller.read_at[s] - poller.sent[s] for s in seen if s in poller.read_at]
    after_agent = [poller.first_seen[s] - poller.read_at[s] for s in seen if s in poller.read_at]
    es_delete_index(stack.es, index)
    res = {
        "rate": rate, "seconds": seconds, "lines": writer.written, "probes": len(expected),
        "probes_seen": len(seen), "writer_max_behind_s": round(writer.behind_max_s, 3),
        "p50_s": round(percentile(lat, 50), 3), "p99_s": round(percentile(lat, 99), 3),
        "max_s": round(max(lat), 3) if lat else None, "min_s": round(min(lat), 3) if lat else None,
        # where the time goes: append → read by logagent (@timestamp, ms resolution), then
        # read → searchable (Kafka, logtransfer's batching, the bulk, ES's refresh)
        "append_to_read_p50_s": round(percentile(to_agent, 50), 3),
        "append_to_read_p99_s": round(percentile(to_agent, 99), 3),
        "read_to_searchable_p50_s": round(percentile(after_agent, 50), 3),
        "read_to_searchable_p99_s": round(percentile(after_agent, 99), 3),
        "search_ms_p50": round(percentile(poller.search_ms, 50), 1), "polls": poller.polls,
        "search_errors": poller.errors,
        "transfer_config": transfer.config, "tuned": bool(transfer_overrides), "label": label,
    }
    say(f"latency {label} at {rate:,}/s: p50 {res['p50_s']}s p99 {res['p99_s']}s max {res['max_s']}s "
        f"({len(seen)}/{len(expected)} probes)")
    return res
