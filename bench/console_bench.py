"""Part 5: the console's speed, next to Elasticsearch answering the same requests directly.

1. ``docs`` logferry documents (default 1,000,000) over the last 24 hours, 20 hosts × 5 files, 3
   topics, bulk-loaded into indices named by a transfer config in etcd (as the transfer names
   them, logferry's template on them), and a logconsole for that prefix.
2. Search: the search page's request (``/api/search``: 100 lines newest first, the histogram,
   the topic/host/file counts, the total) for a 24-hour range, several queries, ``rounds`` times
   each; and the same search bodies posted to Elasticsearch directly (the ceiling: the console
   can only add to it). p50/p95 of both, and their ratio.
3. Context: ``/api/context`` (a line and its 10 neighbours each side) for random lines.
4. Live tail: a paced writer appends probe lines to a file collected by a real logagent, a real
   logtransfer indexes them, and a client reads the console's ``/api/tail`` stream: append →
   shown, p50/p99.

Measured on a warm cache (one warm-up round first), as an operator working in the page sees it.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from .common import (
    AgentRun,
    StackRef,
    create_topic,
    delete_topics,
    es_delete_index,
    es_request,
    post_bulks,
    put_key,
    say,
    set_collect,
)
from .latency import percentile
from .transfer_bench import TransferRun, install_peer_template

QUERIES = ["", "error", "GET AND 500", "host.name:web-07", '"/api/orders"']
BULK = 5000


def _docs(n: int, index_of, now: datetime):
    """NDJSON lines (action + source) for ``n`` documents spread over the 24 hours before ``now``."""
    rng = random.Random(7)
    paths = ["/", "/api/orders", "/api/cart", "/login", "/static/app.js"]
    offsets: dict[tuple[int, int], int] = {}
    t0 = now - timedelta(hours=24)
    step = 86_400_000 / n
    for i in range(n):
        h, f = rng.randrange(20), rng.randrange(5)
        topic = ("nginx", "app", "audit")[f % 3]
        ts = t0 + timedelta(milliseconds=i * step)
        off = offsets.get((h, f), 0)
        status = rng.choice((200, 200, 200, 200, 301, 404, 500))
        word = "error" if status == 500 and rng.random() < 0.5 else "ok"
        msg = (f'192.0.2.{rng.randrange(1, 255)} "GET {rng.choice(paths)}?n={i} HTTP/1.1" {status} {word} '
               f"{rng.randrange(9000)}")
        offsets[(h, f)] = off + len(msg) + 1
        eid = uuid.UUID(int=rng.getrandbits(128)).hex
        src = {
            "@timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "message": msg,
            "host": {"name": f"web-{h:02d}", "ip": f"10.9.0.{h + 1}"},
            "log": {"file": {"path": f"/var/log/app/file{f}.log"}, "offset": off},
            "event": {"id": eid},
            "agent": {"type": "logferry", "version": "bench"},
        }
        yield (
            json.dumps({"index": {"_index": index_of(topic, ts), "_id": eid}}) + "\n" + json.dumps(src) + "\n"
        ).encode()


def load(es: str, n: int, pattern: str, now: datetime, threads: int = 3) -> float:
    """Bulk-load the documents; returns seconds taken."""

    def index_of(topic: str, ts: datetime) -> str:
        return pattern.replace("{topic}", topic).replace("{yyyy.MM.dd}", ts.strftime("%Y.%m.%d"))

    gen = _docs(n, index_of, now)
    t = time.monotonic()
    errors = post_bulks(es, lambda: b"".join(line for _, line in zip(range(BULK), gen, strict=False)), threads)
    if errors:
        raise RuntimeError(f"bulk load refused: {errors[0]}")
    es_request(f"{es}/{pattern.split('{')[0]}*/_refresh", "POST")
    es_request(f"{es}/{pattern.split('{')[0]}*/_forcemerge?max_num_segments=1", "POST", timeout=600)
    return time.monotonic() - t


class Console:
    """A logconsole (the shared harness) for one prefix, on a free port."""

    def __init__(self, stack: StackRef, home: Path, prefix: str) -> None:
        from integration.harness import daemon

        self.port = _free_port()
        ini = (f"[console]\nlisten = 127.0.0.1:{self.port}\nlog_level = WARNING\n\n[etcd]\n"
               f"endpoints = {','.join(stack.etcd)}\nprefix = {prefix}\n\n[elasticsearch]\nhosts = {stack.es}\n")
        self.proc = daemon("logconsole", home, ini).start()
        self.log = self.proc.log
        deadline = time.monotonic() + 30
        while True:
            try:
                self.get("/healthz")
                break
            except OSError:
                if time.monotonic() > deadline or not self.proc.alive():
                    raise RuntimeError(f"logconsole did not start: {self.proc.log_tail(30)}") from None
                time.sleep(0.2)

    def get(self, path: str) -> tuple[float, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        t = time.perf_counter()
        conn.request("GET", path)
        r = conn.getresponse()
        data = r.read()
        ms = (time.perf_counter() - t) * 1000
        conn.close()
        if r.status != 200:
            raise OSError(f"{path}: HTTP {r.status}: {data[:300]!r}")
        return ms, json.loads(data)

    def stop(self) -> None:
        self.proc.stop(15)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_search_context(stack: StackRef, work: Path, docs: int, rounds: int) -> dict:
    from logferry.search import build_query, facet_aggs, histogram_interval, sort_spec

    tag = uuid.uuid4().hex[:8]
    prefix = f"/bench-con-{tag}"
    pattern = f"bench-con-{tag}-{{topic}}-{{yyyy.MM.dd}}"
    install_peer_template(stack.es, [f"bench-con-{tag}-*-*"])
    put_key(stack.etcd, f"{prefix}/transfer/config", {"topics": ["nginx", "app", "audit"], "index": pattern})
    now = datetime.now(UTC)
    say(f"console: loading {docs:,} documents over 24 h into {pattern}")
    load_s = load(stack.es, docs, pattern, now)
    say(f"console: loaded in {load_s:.0f}s (with a force-merge)")
    con = Console(stack, work / f"console-{tag}", prefix)
    try:
        target = f"bench-con-{tag}-*-*"
        search_ms: list[float] = []
        direct_ms: list[float] = []
        took_es: list[float] = []
        totals: dict[str, int] = {}
        for r in range(rounds + 1):
            for q in QUERIES:
                ms, body = con.get(f"/api/search?range=24h&q={quote(q)}")
                if r:
                    search_ms.append(ms)
                totals[q] = body["total"]
                until = datetime.now(UTC)
                since = until - timedelta(hours=24)
                req = {
                    "query": build_query(since=since, until=until, host=None, text=q or None),
                    "sort": sort_spec("desc", "event.id"),
                    "size": 100,
                    "track_total_hits": True,
                    "aggs": facet_aggs(histogram_interval(since, until), since, until),
                }
                t = time.perf_counter()
                d = es_request(
                    f"{stack.es}/{target}/_search?ignore_unavailable=true&allow_no_indices=true",
                    "POST",
                    req,
                    timeout=120,
                )
                if r:
                    direct_ms.append((time.perf_counter() - t) * 1000)
                    took_es.append(d.get("took", 0))
        # context of random lines
        sample = es_request(
            f"{stack.es}/{target}/_search",
            "POST",
            {
                "size": 200,
                "_source": False,
                "query": {"function_score": {"random_score": {"seed": 3, "field": "_seq_no"}}},
            },
        )
        hits = sample["hits"]["hits"]
        ctx_ms: list[float] = []
        sizes: list[int] = []
        for i, h in enumerate(hits[: rounds * 20 + 5]):
            ms, body = con.get(f"/api/context?index={h['_index']}&id={h['_id']}&size=10")
            if i >= 5:
                ctx_ms.append(ms)
                sizes.append(len(body["before"]) + len(body["after"]) + 1)
    finally:
        con.stop()
        es_delete_index(stack.es, f"bench-con-{tag}-*")
    res = {
        "docs": docs,
        "load_s": round(load_s, 1),
        "queries": QUERIES,
        "totals": totals,
        "rounds": rounds,
        "search_p50_ms": round(percentile(search_ms, 50), 1),
        "search_p95_ms": round(percentile(search_ms, 95), 1),
        "direct_p50_ms": round(percentile(direct_ms, 50), 1),
        "direct_p95_ms": round(percentile(direct_ms, 95), 1),
        "es_took_p50_ms": round(percentile(took_es, 50), 1),
        "context_p50_ms": round(percentile(ctx_ms, 50), 1),
        "context_p95_ms": round(percentile(ctx_ms, 95), 1),
        "context_lines_mean": round(sum(sizes) / len(sizes), 1) if sizes else None,
        "searches": len(search_ms),
        "contexts": len(ctx_ms),
    }
    res["search_p95_vs_direct"] = (
        round(res["search_p95_ms"] / res["direct_p95_ms"], 2) if res["direct_p95_ms"] else None
    )
    say(
        f"console search (24 h, {docs:,} docs): p50 {res['search_p50_ms']} ms p95 {res['search_p95_ms']} ms; "
        f"ES directly p50 {res['direct_p50_ms']} ms p95 {res['direct_p95_ms']} ms; "
        f"context p95 {res['context_p95_ms']} ms"
    )
    return res


def run_tail(stack: StackRef, work: Path, rate: int, seconds: float) -> dict:
    """append → shown in the console's live tail, through a real agent and transfer."""
    tag = uuid.uuid4().hex[:8]
    topic = create_topic(stack.kafka, f"bench-tail-{tag}", 3)
    index = f"bench-tail-{tag}"
    prefix = f"/bench-tail-{tag}"
    d = work / f"tail-{tag}"
    d.mkdir(parents=True)
    path = d / "app.log"
    path.touch()
    set_collect(stack.etcd, prefix, "127.0.0.1", [{"path": str(path), "topic": topic, "start_at": "beginning"}])
    agent = AgentRun(work / f"tail-agent-{tag}", prefix, "127.0.0.1").start(stack)
    transfer = TransferRun(
        stack, work / f"tail-transfer-{tag}", prefix, [topic], index, overrides={"flush_interval_s": 0.25}
    ).start()
    sent: dict[str, float] = {}
    seen: dict[str, float] = {}
    stop = threading.Event()
    con = Console(stack, work / f"tail-console-{tag}", prefix)

    def reader() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", con.port, timeout=300)
        conn.request("GET", "/api/tail?range=15m&q=tailprobe")
        r = conn.getresponse()
        while not stop.is_set():
            line = r.fp.readline()
            if not line:
                break
            if line.startswith(b"data: "):
                msg = json.loads(line[6:])["message"]
                seen.setdefault(msg.split()[1], time.time())
        conn.close()

    th = threading.Thread(target=reader, daemon=True)
    try:
        # warm-up: a line through the whole chain before the clock starts
        th.start()
        with open(path, "a") as f:
            f.write("tailprobe warmup\n")
        deadline = time.monotonic() + 120
        while "warmup" not in seen and time.monotonic() < deadline:
            time.sleep(0.1)
        if "warmup" not in seen:
            raise RuntimeError(
                f"the warm-up line never reached the live tail; console log:\n"
                f"{con.log.read_text()[-1500:]}\ntransfer:\n{transfer.log_tail()}"
            )
        say(f"console tail: {rate} lines/s for {seconds:.0f}s through logagent → Kafka → logtransfer → ES → /api/tail")
        n = int(rate * seconds)
        t0 = time.monotonic()
        with open(path, "a") as f:
            for i in range(n):
                key = f"p{i:07d}"
                f.write(f"tailprobe {key} GET /api/orders 200\n")
                f.flush()
                sent[key] = time.time()
                delay = t0 + (i + 1) / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        deadline = time.monotonic() + 60
        while len(set(sent) & set(seen)) < n and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        con.stop()
        transfer.stop()
        agent.stop()
        delete_topics(stack.kafka, [topic])
        es_delete_index(stack.es, index)
    lat = [seen[k] - sent[k] for k in sent if k in seen]
    res = {
        "rate": rate,
        "seconds": seconds,
        "lines": len(sent),
        "shown": len(lat),
        "p50_s": round(percentile(lat, 50), 3),
        "p99_s": round(percentile(lat, 99), 3),
        "max_s": round(max(lat), 3) if lat else None,
    }
    say(f"console tail at {rate}/s: {len(lat)}/{len(sent)} shown, p50 {res['p50_s']}s p99 {res['p99_s']}s")
    return res
