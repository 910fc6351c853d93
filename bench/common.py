"""What every benchmark step shares: the stack, Kafka/ES/etcd helpers, process accounting, progress."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
_T0 = time.monotonic()


def say(msg: str) -> None:
    """A progress line (stderr, flushed), prefixed with the time since the bench started."""
    el = time.monotonic() - _T0
    print(f"[bench {int(el // 60):3d}:{el % 60:04.1f}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------- processes
def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (all its threads) from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / CLK_TCK


def idle_seconds() -> float:
    """CPU-seconds the whole machine spent idle (idle + iowait, all cores) since boot, from /proc/stat.

    The difference over a run says how much of the cores nobody used: on this 2-core machine the
    transfer's runs are judged against ES's capacity, so unused CPU is pacing lost, not saved.
    """
    with open("/proc/stat") as f:
        fields = f.readline().split()
    return (int(fields[4]) + int(fields[5])) / CLK_TCK


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid`` with its children: its own utime+stime, its reaped children's
    (cutime+cstime) and its live children's utime+stime. For a process without children (the file
    runs) this is :func:`cpu_seconds`; logagent's journal input runs journalctl as its child."""

    def stat(p: int) -> list[str]:
        with open(f"/proc/{p}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()

    total = sum(int(x) for x in stat(pid)[11:15])
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
    for k in kids:
        try:
            r = stat(k)
        except OSError:
            continue
        total += int(r[11]) + int(r[12])
    return total / CLK_TCK


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread name (librdkafka's are ``rdk:broker…``, ``rdk:main``; the agent's own
    main thread carries the program's name), summed over threads of the same name."""
    out: dict[str, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            raw = (task / "stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1:raw.rindex(")")]
        rest = raw.rsplit(")", 1)[1].split()
        if name.startswith("rdk:broker"):
            name = "rdk:broker*"
        out[name] = round(out.get(name, 0.0) + (int(rest[11]) + int(rest[12])) / CLK_TCK, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (does not reap it, unlike Popen.poll)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def rss_mb(pid: int, field_name: str = "VmRSS") -> float:
    """Resident set in MiB; ``VmHWM`` is the peak since the process started."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


class RssSampler:
    """Samples RSS of a pid every ``interval`` s (VmHWM covers the peak; this gives the curve's mean)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError):
                self.samples.append(rss_mb(self.pid))

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._t.join()
        s = self.samples or [0.0]
        return {"rss_mean_mb": round(sum(s) / len(s), 1), "rss_max_sampled_mb": round(max(s), 1)}


def abba(one: list[str], pairs: int) -> list[str]:
    """Runs in ABBA order: ``one`` for the first pair, reversed for the second, and so on
    (``["a", "b"]``, 2 pairs: a, b, b, a).

    Why: the machine's cores are shared and its speed drifts over a part's minutes; in ABBA order
    each variant's runs sit symmetrically in time, so a drift that is linear over the runs adds as
    much to one variant's summed time as to the other's (with :func:`summed_rate`).
    """
    out: list[str] = []
    for k in range(pairs):
        out += one if k % 2 == 0 else one[::-1]
    return out


def summed_rate(runs: list[dict], count: str) -> float | None:
    """The runs' summed ``count`` (``lines``, ``docs``) over their summed seconds; failed runs left
    out; None when none completed."""
    ok = [r for r in runs if r.get("ok")]
    secs = sum(r["seconds"] for r in ok)
    return sum(r[count] for r in ok) / secs if ok and secs > 0 else None


def docs_rate(runs: list[dict], tool: str) -> float | None:
    """One Kafka → ES contender's docs/s: its runs' summed docs over their summed seconds (one run:
    its own figure; failed runs left out; None when none completed).

    Why summed: the bench runs each contender more than once in ABBA order (``--transfer-pairs``)
    and judges the goals from these figures, like the parse part's.
    """
    return summed_rate([r for r in runs if r.get("tool") == tool], "docs")


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    osr = {}
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            k, _, v = line.partition("=")
            osr[k] = v.strip('"')
    return {"cpus": os.cpu_count(), "cpu_model": cpu, "mem_gib": round(mem_kb / 2**20, 1),
            "os": osr.get("PRETTY_NAME", "?"), "kernel": os.uname().release,
            "python": sys.version.split()[0]}


def versions() -> dict[str, str]:
    import confluent_kafka

    out = {"confluent_kafka": confluent_kafka.version()[0], "librdkafka": confluent_kafka.libversion()[0]}
    for pkg in ("rsyslog", "rsyslog-kafka", "rsyslog-elasticsearch", "kcat"):
        r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], capture_output=True, text=True)
        out[pkg] = r.stdout.strip() if r.returncode == 0 else "not installed"
    return out


# ---------------------------------------------------------------------------------- peers' packages
PEER_PACKAGES = {"rsyslog": "/usr/sbin/rsyslogd", "rsyslog-kafka": "/usr/lib/x86_64-linux-gnu/rsyslog/omkafka.so",
                 "rsyslog-elasticsearch": "/usr/lib/x86_64-linux-gnu/rsyslog/omelasticsearch.so",
                 "kcat": "/usr/bin/kcat"}


def ensure_peers() -> bool:
    """apt-get install the peers (rsyslog + its Kafka and ES modules, kcat) when missing."""
    missing = []
    for pkg, probe in PEER_PACKAGES.items():
        r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
        if "install ok installed" not in r.stdout and not Path(probe).exists():
            missing.append(pkg)
    if not missing:
        return True
    say(f"installing the peers with apt-get: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    try:
        subprocess.run([*prefix, "apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run([*prefix, "apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing],
                       check=True, env=env)
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        say(f"could not install {missing}: {e}; the peers' columns will be empty")
        return False
    return True


# ---------------------------------------------------------------------------------- the stack
@dataclass
class StackRef:
    workdir: Path
    env: dict[str, str]
    owned: bool  # started by us: stop it at the end

    @property
    def kafka(self) -> str:
        return self.env["KAFKA_BOOTSTRAP_SERVERS"]

    @property
    def etcd(self) -> list[str]:
        return self.env["ETCD_ENDPOINTS"].split(",")

    @property
    def es(self) -> str:
        return self.env["ES_URL"]

    def pid(self, service: str) -> int | None:
        data = json.loads((self.workdir / "stack.json").read_text())
        rec = data["procs"].get(service) or {}
        return rec.get("pid")


def stack_cli(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "integration.stack", "--workdir", str(workdir), *args],
                          cwd=REPO, check=check, text=True, capture_output=True)


def stack_up(workdir: Path, es_heap_mb: int, kafka_heap_mb: int) -> StackRef:
    say(f"starting the stack (etcd x3, ZooKeeper, Kafka, ES) in {workdir}")
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "integration.stack", "--workdir", str(workdir), "up",
                        "--es-heap-mb", str(es_heap_mb), "--kafka-heap-mb", str(kafka_heap_mb)],
                       cwd=REPO, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise SystemExit(f"stack up failed:\n{r.stdout[-4000:]}")
    say(f"stack up in {time.monotonic() - t:.0f}s")
    return StackRef(workdir, json.loads((workdir / "stack.env.json").read_text()), owned=True)


def stack_attach(workdir: Path) -> StackRef:
    env_file = workdir / "stack.env.json"
    if not env_file.exists():
        raise SystemExit(f"{workdir} has no stack.env.json: start one with `python -m integration.stack "
                         f"--workdir {workdir} up`")
    return StackRef(workdir, json.loads(env_file.read_text()), owned=False)


def stack_down(ref: StackRef) -> None:
    if ref.owned:
        say("stopping the stack")
        stack_cli(ref.workdir, "down", check=False)


# ---------------------------------------------------------------------------------- Kafka
def kafka_admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap: str, name: str, partitions: int = 6) -> str:
    from confluent_kafka.admin import NewTopic

    admin = kafka_admin(bootstrap)
    fut = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    fut[name].result(timeout=60)
    # wait until every partition has a leader the producer can see
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(name, timeout=10).topics.get(name)
        if md and not md.error and len(md.partitions) == partitions and \
                all(p.leader >= 0 for p in md.partitions.values()):
            return name
        time.sleep(0.2)
    return name


def delete_topics(bootstrap: str, names: list[str]) -> None:
    if not names:
        return
    for f in kafka_admin(bootstrap).delete_topics(names).values():
        with contextlib.suppress(Exception):
            f.result(timeout=60)


class OffsetWatcher:
    """Sum of a topic's end offsets (high watermarks), read cheaply and often."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self._tp = TopicPartition
        self.topic = topic
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-watch", "enable.auto.commit": False})
        md = self.c.list_topics(topic, timeout=10)
        self.partitions = sorted(md.topics[topic].partitions)

    def total(self) -> int:
        return sum(self.c.get_watermark_offsets(self._tp(self.topic, p), timeout=10, cached=False)[1]
                   for p in self.partitions)

    def close(self) -> None:
        self.c.close()


def wait_offsets(watch: OffsetWatcher, target: int, *, timeout_s: float, what: str,
                 alive: Callable[[], bool] | None = None, interval: float = 0.1,
                 extra_done: Callable[[], bool] | None = None) -> tuple[bool, float, int]:
    """Poll until the topic holds ``target`` records (and ``extra_done()``); (ok, monotonic end, count)."""
    deadline = time.monotonic() + timeout_s
    last_say = time.monotonic()
    n = 0
    while True:
        n = watch.total()
        now = time.monotonic()
        if n >= target and (extra_done is None or extra_done()):
            return True, now, n
        if now > deadline:
            say(f"{what}: timed out with {n:,}/{target:,} records")
            return False, now, n
        if alive is not None and not alive():
            time.sleep(0.5)
            n = watch.total()
            if n >= target and (extra_done is None or extra_done()):
                return True, time.monotonic(), n
            say(f"{what}: the process died with {n:,}/{target:,} records")
            return False, now, n
        if now - last_say >= 10:
            say(f"{what}: {n:,}/{target:,} records in the topic")
            last_say = now
        time.sleep(interval)


# ---------------------------------------------------------------------------------- Elasticsearch
def es_request(url: str, method: str = "GET", body: bytes | dict | None = None, timeout: float = 60,
               ndjson: bool = False) -> dict:
    data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/x-ndjson" if ndjson else "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        payload = e.read()
        try:
            return json.loads(payload) | {"_status": e.code}
        except ValueError:
            return {"_status": e.code, "_text": payload[:500].decode(errors="replace")}


def post_bulks(es: str, next_body: Callable[[], bytes | None], threads: int) -> list[str]:
    """POST NDJSON bulk bodies with ``threads`` keep-alive connections until ``next_body`` returns
    None (it is called under a lock); 429/5xx are retried. Returns the refusals' first bytes."""
    u = urlsplit(es)
    lock = threading.Lock()
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
        while True:
            with lock:
                body = next_body()
            if not body:
                break
            while True:
                conn.request("POST", "/_bulk?filter_path=errors,items.*.error", body,
                             {"Content-Type": "application/x-ndjson"})
                r = conn.getresponse()
                data = r.read()
                if r.status == 429 or r.status >= 500:
                    time.sleep(0.5)
                    continue
                if r.status != 200 or json.loads(data).get("errors"):
                    errors.append(data[:300].decode(errors="replace"))
                break
        conn.close()

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return errors


def es_count(es: str, index: str) -> int:
    r = es_request(f"{es}/{index}/_count", timeout=30)
    return int(r.get("count", 0))


def es_delete_index(es: str, pattern: str) -> None:
    es_request(f"{es}/{pattern}?ignore_unavailable=true&allow_no_indices=true", "DELETE")


# ---------------------------------------------------------------------------------- agent
#: environment added to every agent the bench starts (``--agent-src`` sets PYTHONPATH here)
AGENT_ENV: dict[str, str] = {}
#: environment added to every logtransfer the bench starts (``--src`` sets PYTHONPATH here)
TRANSFER_ENV: dict[str, str] = {}


@dataclass
class AgentRun:
    """A logagent subprocess (the shared harness, integration/harness.py) with its prefix and data dir."""

    home: Path
    prefix: str
    host_ip: str
    proc: object = None
    extra_agent: dict[str, str] = field(default_factory=dict)
    extra_kafka: dict[str, str] = field(default_factory=dict)
    #: extra environment, e.g. PYTHONPATH=<another source tree> to measure a patched agent
    env: dict[str, str] = field(default_factory=lambda: dict(AGENT_ENV))
    #: the prefix that runs it elsewhere (the journal part: nsenter into journald's namespace)
    wrap: list[str] | None = None

    def start(self, stack: StackRef) -> AgentRun:
        from integration.agents import agent_ini
        from integration.harness import daemon

        ini = agent_ini(etcd=stack.etcd, kafka=stack.kafka, data_dir=self.home / "data", prefix=self.prefix,
                        host_ip=self.host_ip,
                        extra_agent={"scan_interval_s": "1", "status_interval_s": "5", "log_level": "WARNING"}
                        | self.extra_agent,
                        extra_kafka=self.extra_kafka)
        self.proc = daemon("logagent", self.home, ini, env=self.env, wrap=self.wrap).start()
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid  # type: ignore[attr-defined]

    def alive(self) -> bool:
        return self.proc.alive()  # type: ignore[attr-defined]

    def registry_offsets(self) -> dict[str, int]:
        """path -> acknowledged offset, from the agent's saved registry (what survives a crash)."""
        reg = self.home / "data" / "registry.json"
        out: dict[str, int] = {}
        try:
            text = reg.read_text()
        except OSError:
            return out
        for line in text.splitlines():
            if line.startswith('{"identity"'):
                with contextlib.suppress(ValueError):
                    e = json.loads(line)
                    out[e["path"]] = max(out.get(e["path"], 0), int(e["offset"]))
        return out

    def stop(self) -> None:
        if self.proc is not None and self.alive():
            self.proc.stop(timeout=60)  # type: ignore[attr-defined]

    def log_tail(self, n: int = 20) -> str:
        return "\n".join(self.proc.log_text().splitlines()[-n:]) if self.proc else ""  # type: ignore[attr-defined]


def set_collect(etcd_endpoints: list[str], prefix: str, ip: str, inputs: list[dict]) -> None:
    from logferry.etcd import EtcdClient

    c = EtcdClient(etcd_endpoints)
    try:
        c.put(f"{prefix}/agents/{ip}/collect", json.dumps(inputs).encode())
    finally:
        c.close()


def put_key(etcd_endpoints: list[str], key: str, value: dict) -> None:
    from logferry.etcd import EtcdClient

    c = EtcdClient(etcd_endpoints)
    try:
        c.put(key, json.dumps(value).encode())
    finally:
        c.close()


def rmtree(p: Path) -> None:
    shutil.rmtree(p, ignore_errors=True)
