"""Part 2: Kafka → Elasticsearch throughput of logtransfer, rsyslog (imkafka → omelasticsearch)
and a direct-bulk ceiling (the same documents, pre-serialised, posted by parallel bulk requests).

All three read the same records (the agent's envelopes, copied into one 6-partition source
topic), index into a single-node ES with the same mappings (logtransfer's index template), and
use the record's ``event.id`` as ``_id`` (what makes re-delivery idempotent, and what costs ES an
id lookup per document). The clock runs from process start (or first request) until ``_count``
of the index equals the record count, i.e. until everything is searchable.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

from integration.harness import Daemon

from .common import (
    TRANSFER_ENV,
    RssSampler,
    StackRef,
    abba,
    cpu_seconds,
    docs_rate,
    es_count,
    es_delete_index,
    es_request,
    idle_seconds,
    post_bulks,
    put_key,
    rss_mb,
    say,
    thread_cpu,
)

BULK_DOCS = 5000  # the transfer's default bulk_max_docs


def install_peer_template(es: str, patterns: list[str]) -> None:
    """logtransfer's own index template body, for the peers' indices: identical mappings."""
    from transfer.template import template_body

    body = template_body(patterns)
    body.pop("_meta", None)
    r = es_request(f"{es}/_index_template/bench-peers-{uuid.uuid4().hex[:6]}", "PUT", body)
    if not r.get("acknowledged"):
        raise RuntimeError(f"ES refused the peers' template: {r}")


def wait_count(es: str, index: str, target: int, *, timeout_s: float, what: str, alive=None,
               interval: float = 0.1) -> tuple[bool, float, int]:
    """Poll ``_count`` until it reaches ``target``; ``(ok, when, count)``.

    Every contender is polled at the same ``interval``: the finish is seen up to one interval late
    (direct bulk was polled every 0.1 s and the others every 0.25 s, which charged them ~0.1 s more
    on average).
    """
    deadline = time.monotonic() + timeout_s
    last_say = time.monotonic()
    n = 0
    while True:
        n = es_count(es, index)
        now = time.monotonic()
        if n >= target:
            return True, now, n
        if now > deadline or (alive is not None and not alive()):
            say(f"{what}: stopped waiting with {n:,}/{target:,} documents")
            return False, now, n
        if now - last_say >= 10:
            say(f"{what}: {n:,}/{target:,} documents searchable")
            last_say = now
        time.sleep(interval)


def wait_first(es: str, index: str, t0: float, *, timeout_s: float = 120, alive=None) -> float | None:
    """Seconds from ``t0`` until the first document of ``index`` is searchable (None: not within timeout).

    Why: logtransfer and rsyslog are timed from process start, direct bulk from its first request.
    Measured on the bench, logtransfer needs ~2.5 s to its first searchable document (interpreter and
    client imports, etcd, the template check, the group join, the first fetch, ES's first refresh):
    a fifth of a 300k-document run, and most of its gap to direct bulk. ``docs_per_s_after_first``
    is the rate without it.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and (alive is None or alive()):
        if es_count(es, index) > 0:
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def _first_fields(docs: int, seconds: float, first: float | None) -> dict:
    """``first_doc_s`` and ``docs_per_s_after_first`` of a run timed from process start."""
    return {"first_doc_s": None if first is None else round(first, 2),
            "docs_per_s_after_first": round(docs / (seconds - first)) if first is not None and seconds > first
            else None}


def _result(tool: str, docs: int, seconds: float, ok: bool, cpu: float | None, peak: float | None,
            es_cpu: float | None, **extra) -> dict:
    return {"tool": tool, "docs": docs, "ok": ok, "seconds": round(seconds, 2),
            "docs_per_s": round(docs / seconds) if ok else None,
            "cpu_s": None if cpu is None else round(cpu, 2),
            "peak_rss_mb": None if peak is None else round(peak, 1),
            "es_cpu_s": None if es_cpu is None else round(es_cpu, 1)} | extra


def es_jit_cpu(stack: StackRef) -> float | None:
    """CPU seconds ES's JVM spent in its JIT compiler threads (``C2 CompilerThread…``, ``C1 …``).

    Why it is reported: on a fresh JVM, the first big indexing run pays the compilation of ES's
    indexing code (measured: 9.4 of the 23.1 ES CPU-s of a 300k-document logtransfer run right
    after a 50k warm-up, 0.8–2.4 s in the runs after it). Without this column a contender that
    runs first looks like it costs ES twice the CPU per document.
    """
    pid = stack.pid("es1")
    try:
        return sum(cpu for name, cpu in thread_cpu(pid).items() if "Compiler" in name) if pid else None
    except OSError:
        return None


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 1)


def _proc_cpu(stack: StackRef, service: str) -> float | None:
    pid = stack.pid(service)
    try:
        return cpu_seconds(pid) if pid else None
    except OSError:
        return None


Sample = tuple[float | None, float | None, float | None, float]


def _sample(stack: StackRef) -> Sample:
    """Before or after a run: ES's CPU seconds (all threads, JIT compiler threads), the Kafka broker's,
    and the machine's idle CPU-seconds."""
    return _proc_cpu(stack, "es1"), es_jit_cpu(stack), _proc_cpu(stack, "kafka"), idle_seconds()


def _spent(before: Sample, after: Sample) -> dict:
    """What a run cost ES (``es_cpu`` for :func:`_result`, ``es_jit_cpu_s``), the broker
    (``kafka_cpu_s``) and how much CPU nobody used meanwhile (``idle_cpu_s``)."""
    return {"es_cpu": _delta(before[0], after[0]), "es_jit_cpu_s": _delta(before[1], after[1]),
            "kafka_cpu_s": _delta(before[2], after[2]), "idle_cpu_s": _delta(before[3], after[3])}


def warm_up_es(stack: StackRef, values: list[bytes], *, rounds: int = 3, timeout_s: float = 300) -> list[dict]:
    """Direct bulks of ``values`` until ES's JIT has little left to compile (< 1 CPU-s per round).

    A 50k-document warm-up left 9 CPU-s of JIT compilation to the first contender (see
    ``es_jit_cpu``); one pass over the whole record set leaves about 2.
    """
    out = []
    for _ in range(rounds):
        res = run_direct_bulk(stack, values, threads=3, timeout_s=timeout_s)
        out.append(res)
        jit = res["es_jit_cpu_s"]
        say(f"ES warm-up: {jit} CPU-s of JIT compilation in this round")
        if jit is None or jit < 1.0:
            break
    return out


# ------------------------------------------------------------------------------------ source topic
def fill_source_topic(stack: StackRef, topic: str, values: list[bytes], keys: list[bytes]) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": stack.kafka, "acks": "all", "enable.idempotence": True,
                  "compression.type": "lz4", "linger.ms": 50, "batch.size": 1 << 20,
                  "queue.buffering.max.messages": 1_000_000, "queue.buffering.max.kbytes": 1 << 20})
    for i, (k, v) in enumerate(zip(keys, values, strict=True)):
        while True:
            try:
                p.produce(topic, v, k)
                break
            except BufferError:
                p.poll(0.05)
        if i % 50000 == 0:
            p.poll(0)
    left = p.flush(120)
    if left:
        raise RuntimeError(f"{left} records not acknowledged while filling {topic}")


def read_topic_values(stack: StackRef, topic: str, count: int,
                      timeout_s: float = 300) -> tuple[list[bytes], list[bytes]]:
    """The first ``count`` records of ``topic`` (all partitions), values and keys."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": stack.kafka, "group.id": f"bench-read-{uuid.uuid4().hex}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 16 << 20})
    c.subscribe([topic])
    vals: list[bytes] = []
    keys: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(vals) < count and time.monotonic() < deadline:
            for m in c.consume(10000, 1.0):
                if m.error() is None:
                    vals.append(m.value())
                    keys.append(m.key())
    finally:
        c.close()
    return vals[:count], keys[:count]


# ------------------------------------------------------------------------------------ logtransfer
def transfer_ini(stack: StackRef, prefix: str, data_dir: Path, group: str, tid: str) -> str:
    return "\n".join([
        "[etcd]", f"endpoints = {','.join(stack.etcd)}", f"prefix = {prefix}", "",
        "[kafka]", f"bootstrap_servers = {stack.kafka}", "",
        "[transfer]", f"id = {tid}", f"group_id = {group}", f"es_hosts = {stack.es}",
        "metrics_address =", f"data_dir = {data_dir}", "log_level = WARNING", "status_interval_s = 5", "",
    ])


class TransferRun:
    """A logtransfer subprocess with its transfer config in etcd at ``<prefix>/transfer/config``."""

    def __init__(self, stack: StackRef, home: Path, prefix: str, topics: list[str], index: str,
                 overrides: dict | None = None, env: dict | None = None) -> None:
        self.stack, self.home, self.prefix = stack, home, prefix
        self.config = {"topics": topics, "index": index} | (overrides or {})
        self.env = dict(TRANSFER_ENV) if env is None else env
        self.proc: Daemon | None = None
        self.log = home / "logtransfer.log"

    def start(self) -> TransferRun:
        from integration.harness import daemon

        put_key(self.stack.etcd, f"{self.prefix}/transfer/config", self.config)
        tag = uuid.uuid4().hex[:6]
        ini = transfer_ini(self.stack, self.prefix, self.home / "data", f"bench-{tag}", f"bench-{tag}")
        self.proc = daemon("logtransfer", self.home, ini, env=self.env).start()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.alive()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(90)

    def log_tail(self, n: int = 20) -> str:
        return self.proc.log_tail(n) if self.proc is not None else ""


def run_logtransfer(stack: StackRef, work: Path, topic: str, docs: int, *, timeout_s: float,
                    overrides: dict | None = None, label: str = "logtransfer", env: dict | None = None) -> dict:
    tag = uuid.uuid4().hex[:8]
    index = f"bench-es-lt-{tag}"
    run = TransferRun(stack, work / f"transfer-{tag}", f"/bench-tr-{tag}", [topic], index, overrides, env)
    say(f"{label}: {docs:,} records from {topic} → index {index}")
    es0 = _sample(stack)
    t0 = time.monotonic()
    run.start()
    sampler = RssSampler(run.pid)
    cpu = peak = first = None
    try:
        first = wait_first(stack.es, index, t0, alive=run.alive)
        ok, t1, n = wait_count(stack.es, index, docs, timeout_s=timeout_s, what=label, alive=run.alive)
        if run.alive():
            cpu, peak = cpu_seconds(run.pid), rss_mb(run.pid, "VmHWM")
    finally:
        rs = sampler.stop()
        es1 = _sample(stack)
        run.stop()
    if not ok:
        say(f"{label} log tail:\n{run.log_tail()}")
    es_delete_index(stack.es, index)
    res = _result(label, docs, t1 - t0, ok and n == docs, cpu, peak, **_spent(es0, es1), count=n,
                  config=run.config, **_first_fields(docs, t1 - t0, first), **rs)
    say(f"{label}: {res['docs_per_s'] or 0:,} docs/s ({res['docs_per_s_after_first'] or 0:,} after the first "
        f"document at {first or 0:.1f}s), cpu {cpu or 0:.1f}s, ES cpu {res['es_cpu_s']}s "
        f"(JIT {res['es_jit_cpu_s']}s) ({t1 - t0:.1f}s)")
    return res


# ------------------------------------------------------------------------------------ rsyslog
def rsyslog_es_conf(workdir: Path, stack: StackRef, topic: str, index: str, group: str) -> str:
    es = urlsplit(stack.es)
    return (
        f'global(workDirectory="{workdir}" maxMessageSize="64k")\n'
        'module(load="imkafka")\n'
        'module(load="mmjsonparse")\n'
        'module(load="omelasticsearch")\n'
        'template(name="doc" type="string" string="%rawmsg%")\n'
        'template(name="docid" type="string" string="%$!event!id%")\n'
        f'input(type="imkafka" topic="{topic}" broker="{stack.kafka}" consumergroup="{group}" '
        'ruleset="toes" confParam=["auto.offset.reset=earliest"])\n'
        # The same bulk size as logtransfer (5,000 docs), two workers posting bulks in parallel.
        'ruleset(name="toes" queue.type="LinkedList" queue.size="100000" queue.dequeueBatchSize="5000" '
        'queue.workerThreads="2") {\n'
        '  action(type="mmjsonparse" cookie="" useRawMsg="on")\n'
        f'  action(type="omelasticsearch" server="{es.hostname}" serverport="{es.port}" searchIndex="{index}" '
        'esVersion.major="8" template="doc" bulkmode="on" maxbytes="100m" dynbulkid="on" bulkid="docid" '
        'writeoperation="index" '
        'errorfile="' + str(workdir / "es-errors.json") + '")\n'
        '}\n'
    )


def run_rsyslog_es(stack: StackRef, work: Path, topic: str, docs: int, *, timeout_s: float) -> dict:
    tag = uuid.uuid4().hex[:8]
    index = f"bench-es-rs-{tag}"
    install_peer_template(stack.es, [index])
    home = work / f"rsyslog-es-{tag}"
    (home / "work").mkdir(parents=True)
    conf = home / "rsyslog.conf"
    conf.write_text(rsyslog_es_conf(home / "work", stack, topic, index, f"bench-rs-{tag}"))
    check = subprocess.run(["/usr/sbin/rsyslogd", "-N1", "-f", str(conf)], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"rsyslog refuses its config: {check.stderr or check.stdout}")
    say(f"rsyslog imkafka→omelasticsearch: {docs:,} records → index {index}")
    es0 = _sample(stack)
    t0 = time.monotonic()
    log = open(home / "rsyslogd.log", "wb")  # noqa: SIM115 (closed in finally, after the daemon)
    proc = subprocess.Popen(["/usr/sbin/rsyslogd", "-n", "-f", str(conf), "-i", str(home / "rsyslogd.pid")],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    sampler = RssSampler(proc.pid)
    cpu = peak = first = None
    try:
        first = wait_first(stack.es, index, t0, alive=lambda: proc.poll() is None)
        ok, t1, n = wait_count(stack.es, index, docs, timeout_s=timeout_s, what="rsyslog-es",
                               alive=lambda: proc.poll() is None)
        if proc.poll() is None:
            cpu, peak = cpu_seconds(proc.pid), rss_mb(proc.pid, "VmHWM")
    finally:
        rs = sampler.stop()
        es1 = _sample(stack)
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    if not ok:
        say("rsyslogd log tail:\n" + "\n".join((home / "rsyslogd.log").read_text(errors="replace").splitlines()[-20:]))
    es_delete_index(stack.es, index)
    res = _result("rsyslog", docs, t1 - t0, ok and n == docs, cpu, peak, **_spent(es0, es1), count=n,
                  **_first_fields(docs, t1 - t0, first), **rs)
    say(f"rsyslog-es: {res['docs_per_s'] or 0:,} docs/s, cpu {cpu or 0:.1f}s ({t1 - t0:.1f}s)")
    return res


# ------------------------------------------------------------------------------------ direct bulk
def run_direct_bulk(stack: StackRef, values: list[bytes], *, threads: int = 3, timeout_s: float) -> dict:
    """The ceiling: NDJSON bodies built before the clock starts, ``threads`` keep-alive connections."""
    from transfer.records import action_line

    tag = uuid.uuid4().hex[:8]
    index = f"bench-es-direct-{tag}"
    install_peer_template(stack.es, [index])
    bodies = []
    for i in range(0, len(values), BULK_DOCS):
        parts = []
        for v in values[i:i + BULK_DOCS]:
            eid = json.loads(v)["event"]["id"]
            parts.append(action_line(index, eid) + v + b"\n")
        bodies.append(b"".join(parts))
    say(f"direct bulk: {len(values):,} docs in {len(bodies)} bulks of {BULK_DOCS}, {threads} threads → {index}")
    todo = list(reversed(bodies))
    es0 = _sample(stack)
    t0 = time.monotonic()
    errors = post_bulks(stack.es, lambda: todo.pop() if todo else None, threads)
    t_posted = time.monotonic()
    ok, t1, n = wait_count(stack.es, index, len(values), timeout_s=timeout_s, what="direct bulk")
    es1 = _sample(stack)
    es_delete_index(stack.es, index)
    res = _result("direct bulk", len(values), t1 - t0, ok and not errors, None, None, **_spent(es0, es1),
                  count=n, threads=threads, posted_s=round(t_posted - t0, 2), errors=errors[:3])
    say(f"direct bulk: {res['docs_per_s'] or 0:,} docs/s ({t1 - t0:.1f}s; all posted after {t_posted - t0:.1f}s)")
    return res


# ------------------------------------------------------------------------------------ ES on its own core
def _pin(pid: int | None, cores: set[int]) -> None:
    """Every thread of ``pid`` on ``cores`` (``taskset -a -p``); a thread that ended meanwhile is skipped."""
    if not pid:
        return
    for tid in os.listdir(f"/proc/{pid}/task"):
        with suppress(OSError):
            os.sched_setaffinity(int(tid), cores)


@contextmanager
def es_on_own_core(stack: StackRef) -> Iterator[bool]:
    """Elasticsearch on the first core; Kafka, this thread and what it starts (the contender: the
    logtransfer process, direct bulk's posting threads) on the others. Yields False (nothing
    pinned) on a one-core machine.

    Why: with every process on both cores, the contender's own CPU is taken from ES, which is
    CPU-bound here; direct bulk posts bodies built before its clock starts and takes almost none.
    That measures the transfer's CPU cost, not whether it feeds ES as fast as ES can take, which
    is the question where ES runs on its own nodes. Pinned, ES has the same one core for both.
    """
    all_cores = os.sched_getaffinity(0)
    cores = sorted(all_cores)
    if len(cores) < 2:
        yield False
        return
    es, kafka = stack.pid("es1"), stack.pid("kafka")
    rest = set(cores[1:])
    _pin(es, {cores[0]})
    _pin(kafka, rest)
    os.sched_setaffinity(0, rest)
    try:
        yield True
    finally:
        os.sched_setaffinity(0, all_cores)
        _pin(kafka, all_cores)
        _pin(es, all_cores)


def run_es_own_core(stack: StackRef, work: Path, topic: str, values: list[bytes], *, timeout_s: float,
                    pairs: int = 2) -> dict | None:
    """logtransfer and direct bulk with ES on its own core, in ABBA order (``common.abba``: direct,
    logtransfer, logtransfer, direct for 2 pairs); the ratio is summed documents over summed
    seconds, so a drift of the machine's speed weighs on both alike. None on a one-core machine."""
    runs: list[dict] = []
    with es_on_own_core(stack) as pinned:
        if not pinned:
            return None
        say("Kafka → ES with Elasticsearch on its own core (ES: core 0; Kafka and the contender: the rest)")
        for tool in abba(["direct bulk", "logtransfer"], pairs):
            if tool == "direct bulk":
                runs.append(run_direct_bulk(stack, values, threads=3, timeout_s=timeout_s))
            else:
                runs.append(run_logtransfer(stack, work, topic, len(values), timeout_s=timeout_s))
    return {"runs": runs, "ratio": es_own_core_ratio(runs)}


def es_own_core_ratio(runs: list[dict]) -> float | None:
    """logtransfer's summed docs over summed seconds against direct bulk's (runs that failed left out)."""
    lt, d = docs_rate(runs, "logtransfer"), docs_rate(runs, "direct bulk")
    return round(lt / d, 2) if lt and d else None
