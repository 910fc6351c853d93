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
                # (the stream's own events, "started" and "problem", carry no line: only lines count)
                hit = json.loads(line[6:])
                if isinstance(hit, dict) and isinstance(hit.get("message"), str):
                    seen.setdefault(hit["message"].split()[1], time.time())
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


# --- issue 21: cancellation, deep paging, 100,000 lines in the page, export ------------------------

SLOW_Q = '"w w w w w w x x x x x x y y y y y y"~6'
#: terms a line of the slow index: Elasticsearch checks for cancellation every 4,096 lines, so the
#: cost of a line bounds how soon a cancel can take (about 0.05 ms a line here: 0.2 s per check)
TOKENS = 100


def _rss_kb(pid: int) -> int:
    from integration.harness import proc_mem_kb

    return proc_mem_kb(pid)[0]


def _es_opaque_tasks(es: str, opaque: str) -> list[str]:
    got = es_request(f"{es}/_tasks?actions=indices:data/read/search*&detailed=true", "GET")
    return [tid for n in got.get("nodes", {}).values() for tid, t in n.get("tasks", {}).items()
            if (t.get("headers") or {}).get("X-Opaque-Id") == opaque]


def _console_search_opaque(es: str, pattern_prefix: str = "logconsole/", min_s: float = 0.5,
                           timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = es_request(f"{es}/_tasks?actions=indices:data/read/search&detailed=true", "GET")
        for n in got.get("nodes", {}).values():
            for t in n.get("tasks", {}).values():
                oid = (t.get("headers") or {}).get("X-Opaque-Id", "")
                if oid.startswith(pattern_prefix) and t["running_time_in_nanos"] >= min_s * 1e9:
                    return oid
        time.sleep(0.05)
    raise RuntimeError("the console's slow search never showed in ES's tasks API")


def run_cancel(stack: StackRef, con: Console, slow_docs: int, rounds: int, tag: str) -> dict:
    """The page moves on while a slow search runs: seconds until ES's tasks API shows it gone.

    Two ways the page moves on: a newer search from the same page (same ``sid``), and the
    browser dropping the request (the tab closed: the connection closes). The slow search is a
    sloppy phrase of repeated terms over ``slow_docs`` lines of TOKENS such terms.
    """
    rng = random.Random(5)
    now = datetime.now(UTC)
    index = f"bench-con-{tag}-slow-{now:%Y.%m.%d}"

    def gen():
        for i in range(slow_docs):
            src = {"@timestamp": (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                   "message": " ".join(rng.choice("wxyz") for _ in range(TOKENS)),
                   "host": {"name": "slow-1", "ip": "10.9.9.9"}, "log": {"file": {"path": "/slow.log"}, "offset": i},
                   "event": {"id": f"slow-{i}"}}
            action = json.dumps({"index": {"_index": index, "_id": f"slow-{i}"}})
            yield (action + "\n" + json.dumps(src) + "\n").encode()
    g = gen()
    errors = post_bulks(stack.es, lambda: b"".join(line for line in (next(g, None) for _ in range(2000)) if line), 2)
    if errors:
        raise RuntimeError(f"bulk load refused: {errors[0]}")
    es_request(f"{stack.es}/{index}/_refresh", "POST")
    slow_url = f"/api/search?range=1h&topic=slow&q={quote(SLOW_Q)}"
    newer: list[float] = []
    dropped: list[float] = []
    natural = None
    # the query's own time, uncancelled (once): what the cancel saves
    t = time.perf_counter()
    con.get(slow_url + "&sid=natural")
    natural = time.perf_counter() - t
    for r in range(rounds):
        sid = f"bench{r}"
        # (a) a newer search from the same page
        th = threading.Thread(target=lambda sid=sid: _get_quiet(con, slow_url + f"&sid={sid}"), daemon=True)
        th.start()
        oid = _console_search_opaque(stack.es)
        t = time.perf_counter()
        threading.Thread(target=lambda sid=sid: _get_quiet(con, f"/api/search?range=1h&topic=slow&q=w&sid={sid}"),
                         daemon=True).start()
        while _es_opaque_tasks(stack.es, oid):
            time.sleep(0.02)
        newer.append(time.perf_counter() - t)
        th.join(60)
        # (b) the browser drops the request
        conn = http.client.HTTPConnection("127.0.0.1", con.port, timeout=120)
        conn.request("GET", slow_url + f"&sid={sid}b")
        oid = _console_search_opaque(stack.es)
        t = time.perf_counter()
        conn.sock.shutdown(2)
        conn.close()
        while _es_opaque_tasks(stack.es, oid):
            time.sleep(0.02)
        dropped.append(time.perf_counter() - t)
    res = {"slow_docs": slow_docs, "slow_query_s": round(natural, 2), "rounds": rounds,
           "newer_search_p50_s": round(percentile(newer, 50), 3), "newer_search_max_s": round(max(newer), 3),
           "dropped_request_p50_s": round(percentile(dropped, 50), 3), "dropped_request_max_s": round(max(dropped), 3)}
    say(f"console cancel: the slow search ({natural:.1f}s uncancelled) gone from ES's tasks "
        f"{res['newer_search_p50_s']}s (max {res['newer_search_max_s']}s) after a newer search, "
        f"{res['dropped_request_p50_s']}s (max {res['dropped_request_max_s']}s) after the request was dropped")
    return res


def _get_quiet(con: Console, path: str) -> None:
    import contextlib

    with contextlib.suppress(OSError):  # a cancelled search answers 499
        con.get(path)


def run_deep_pages(stack: StackRef, con: Console, target: str, docs: int, samples: int) -> dict:
    """The next page (100 lines, and the page's 2,000 when scrolling) at depths spread over the result set."""
    from logferry.search import sort_spec

    now = datetime.now(UTC)
    since = now - timedelta(hours=24)
    page100: list[float] = []
    page2000: list[float] = []
    depths = []
    # a warm-up round first, at other depths (as an operator's page is warm): measured from the second
    for k in [k + 0.25 for k in range(samples)] + [k + 0.5 for k in range(samples)]:
        warm = k % 1 == 0.25
        frac = k / samples
        # the hit at this depth (documents are spread evenly over the 24 h): its sort values
        t_d = now - timedelta(hours=24) * frac
        d = es_request(f"{stack.es}/{target}/_search", "POST", {
            "size": 1, "_source": False, "sort": sort_spec("desc", "event.id"),
            "query": {"range": {"@timestamp": {"lte": t_d.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                                               "gte": since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")}}}})
        hits = d["hits"]["hits"]
        if not hits:
            continue
        after = quote(json.dumps(hits[0]["sort"]))
        if not warm:
            depths.append(int(docs * frac))
        for size, out in ((100, page100), (2000, page2000)):
            ms, body = con.get(f"/api/search?range=24h&size={size}&after={after}")
            if not warm:
                out.append(ms)
            if len(body["hits"]) != size:
                raise RuntimeError(f"a page at depth {int(docs * frac)} held {len(body['hits'])} lines, not {size}")
    res = {"samples": len(depths), "deepest": max(depths) if depths else None,
           "next_page_100_p50_ms": round(percentile(page100, 50), 1),
           "next_page_100_p95_ms": round(percentile(page100, 95), 1),
           "next_page_2000_p50_ms": round(percentile(page2000, 50), 1),
           "next_page_2000_p95_ms": round(percentile(page2000, 95), 1)}
    say(f"console next page at depths up to {res['deepest']:,}: 100 lines p95 {res['next_page_100_p95_ms']} ms, "
        f"2,000 lines p95 {res['next_page_2000_p95_ms']} ms")
    return res


def run_export(stack: StackRef, con: Console, docs: int) -> dict:
    """/api/export of every line of 24 h (NDJSON): lines/s, and the console's RSS while it streams."""
    pid = con.proc.pid
    base_rss = _rss_kb(pid)
    peak = [base_rss]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_kb(pid))
            time.sleep(0.1)
    th = threading.Thread(target=sample, daemon=True)
    th.start()
    conn = http.client.HTTPConnection("127.0.0.1", con.port, timeout=600)
    t = time.perf_counter()
    conn.request("GET", "/api/export?range=24h&format=ndjson")
    r = conn.getresponse()
    lines = 0
    size = 0
    while True:
        chunk = r.read(1 << 20)
        if not chunk:
            break
        lines += chunk.count(b"\n")
        size += len(chunk)
    secs = time.perf_counter() - t
    conn.close()
    stop.set()
    th.join()
    res = {"lines": lines, "bytes": size, "seconds": round(secs, 1), "lines_per_s": round(lines / secs),
           "rss_before_mb": round(base_rss / 1024, 1), "rss_peak_mb": round(peak[0] / 1024, 1),
           "rss_growth_mb": round((peak[0] - base_rss) / 1024, 1)}
    if lines != docs:
        res["note"] = f"exported {lines:,} of {docs:,}"
    say(f"console export: {lines:,} lines ({size / 1e6:.0f} MB) in {secs:.1f}s = {res['lines_per_s']:,} lines/s; "
        f"RSS {res['rss_before_mb']} → {res['rss_peak_mb']} MB (+{res['rss_growth_mb']} MB)")
    return res


SCROLL_JS = """
const done = arguments[arguments.length - 1];
const seconds = arguments[0], step = arguments[1];
const vp = document.getElementById('viewport');
const longs = [];
let obs = null;
try {
  obs = new PerformanceObserver((l) => { for (const e of l.getEntries()) longs.push(e.duration); });
  obs.observe({type: 'long-animation-frame', buffered: false});
} catch (e) {
  obs = new PerformanceObserver((l) => { for (const e of l.getEntries()) longs.push(e.duration); });
  obs.observe({type: 'longtask', buffered: false});
}
performance.mark('scroll-start');
const frames = [];
let dir = 1;
function tick(ts) {
  frames.push(ts);
  vp.scrollTop += dir * step;
  if (vp.scrollTop + vp.clientHeight >= vp.scrollHeight - 1) dir = -1;
  if (vp.scrollTop <= 0) dir = 1;
  if (ts - frames[0] < seconds * 1000) requestAnimationFrame(tick);
  else {
    performance.mark('scroll-end');
    performance.measure('scroll', 'scroll-start', 'scroll-end');
    obs.disconnect();
    const gaps = frames.slice(1).map((t, i) => t - frames[i]).sort((a, b) => a - b);
    const m = performance.getEntriesByName('scroll')[0];
    const span = (frames[frames.length - 1] - frames[0]) / 1000;
    done({frames: frames.length, ms: m.duration, fps: (frames.length - 1) / span,
          gap_p50: gaps[Math.floor(gaps.length * 0.5)], gap_p95: gaps[Math.floor(gaps.length * 0.95)],
          gap_max: gaps[gaps.length - 1], long_frames: longs.length,
          long_max: longs.length ? Math.max(...longs) : 0,
          rows: document.querySelectorAll('#hits .row').length,
          loaded: Number(document.getElementById('hits').dataset.loaded)});
  }
}
requestAnimationFrame(tick);
"""


def run_scroll(con: Console, lines: int, since_min: int) -> dict:
    """100,000 lines loaded in headless Chromium, then scrolled: frames per second from the page's own
    performance timeline (requestAnimationFrame timestamps, a performance.measure, long frames)."""
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,900"):
        opts.add_argument(a)
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=opts)
    try:
        drv.set_script_timeout(120)
        drv.get(f"http://127.0.0.1:{con.port}/?from=-{since_min}m")
        t = time.monotonic()
        deadline = t + 600
        while True:
            loaded, more = drv.execute_script(
                "const v = document.getElementById('viewport'); v.scrollTop = v.scrollHeight;"
                "return [Number(document.getElementById('hits').dataset.loaded || 0), searchPage.more]")
            if loaded >= lines or (loaded and not more) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        load_s = time.monotonic() - t
        drv.execute_script("document.getElementById('viewport').scrollTop = 0")
        slow = drv.execute_async_script(SCROLL_JS, 5, 200)   # 200 px a frame: 9 rows, a fast wheel
        fling = drv.execute_async_script(SCROLL_JS, 5, 2000)  # 2,000 px a frame: dragging the scrollbar
    finally:
        drv.quit()
    res = {"lines_loaded": slow["loaded"], "load_s": round(load_s, 1),
           "fps_200px": round(slow["fps"], 1), "frame_p95_ms_200px": round(slow["gap_p95"], 1),
           "long_frames_200px": slow["long_frames"],
           "fps_2000px": round(fling["fps"], 1), "frame_p95_ms_2000px": round(fling["gap_p95"], 1),
           "long_frames_2000px": fling["long_frames"], "dom_rows": max(slow["rows"], fling["rows"])}
    say(f"console 100k lines: {res['lines_loaded']:,} loaded in {res['load_s']}s; scrolling {res['fps_200px']} fps "
        f"(200 px/frame, p95 frame {res['frame_p95_ms_200px']} ms), {res['fps_2000px']} fps (2,000 px/frame); "
        f"{res['dom_rows']} rows in the DOM")
    return res


def run_issue21(stack: StackRef, work: Path, docs: int, slow_docs: int, rounds: int) -> dict:
    """Cancel, deep pages, 100k lines scrolled, export: on ``docs`` documents over 24 h."""
    tag = uuid.uuid4().hex[:8]
    prefix = f"/bench-con-{tag}"
    pattern = f"bench-con-{tag}-{{topic}}-{{yyyy.MM.dd}}"
    install_peer_template(stack.es, [f"bench-con-{tag}-*-*"])
    put_key(stack.etcd, f"{prefix}/transfer/config",
            {"topics": ["nginx", "app", "audit", "slow"], "index": pattern})
    now = datetime.now(UTC)
    say(f"console: loading {docs:,} documents over 24 h into {pattern}")
    load_s = load(stack.es, docs, pattern, now)
    say(f"console: loaded in {load_s:.0f}s (with a force-merge)")
    con = Console(stack, work / f"console21-{tag}", prefix)
    res: dict = {"docs": docs, "load_s": round(load_s, 1)}
    try:
        target = f"bench-con-{tag}-nginx-*,bench-con-{tag}-app-*,bench-con-{tag}-audit-*"
        res["deep_pages"] = run_deep_pages(stack, con, target, docs, 20)
        res["export"] = run_export(stack, con, docs)
        # a range holding a little more than 100,000 lines: the page stops at 100,000
        res["scroll"] = run_scroll(con, 100_000, int(24 * 60 * 100_000 / docs * 1.05) + 1)
        res["cancel"] = run_cancel(stack, con, slow_docs, rounds, tag)
    finally:
        con.stop()
        es_delete_index(stack.es, f"bench-con-{tag}-*")
    return res


def main(argv: list[str] | None = None) -> None:
    import argparse

    from .common import stack_attach

    ap = argparse.ArgumentParser(prog="python -m bench.console_bench",
                                 description="The console's issue-21 figures on a running stack: cancel, next page "
                                             "at depth, 100,000 lines scrolled in headless Chromium, export.")
    ap.add_argument("--stack-dir", type=Path, required=True, help="a stack started with make stack-up STACK_DIR=…")
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--slow-docs", type=int, default=200_000, help="lines of the slow query's index")
    ap.add_argument("--rounds", type=int, default=5, help="cancellations measured of each kind")
    ap.add_argument("--out", type=Path, default=None, help="write the figures here as JSON")
    a = ap.parse_args(argv)
    import tempfile
    with tempfile.TemporaryDirectory(prefix="console-bench-") as work:
        res = run_issue21(stack_attach(a.stack_dir), Path(work), a.docs, a.slow_docs, a.rounds)
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
