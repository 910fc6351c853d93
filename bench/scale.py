"""``make scale``: a fleet of agent hosts, 1 → 2 → 3 logtransfers, a broker and an ES node killed
under load, one hot file against the same rate spread over files (issue 14).

Why one module in ``bench/`` and not a ``scale/`` package: every piece it needs exists already and
is imported, not copied — the hosts (network namespaces with their own addresses,
:mod:`chaos.netns`), the daemons (:mod:`integration.harness`), the paced stamped writer and the
append→searchable poller (:mod:`bench.writer`, :mod:`bench.latency`), /proc accounting
(:mod:`bench.common`), the partition-leader lookup of the failover test
(:func:`integration.test_failover.partition_state`). What is left is the run's plan and its
report, one file.

The plan, on one stack of 3 brokers (topics RF 3, ``min.insync.replicas`` 2) and 3 ES nodes (one
replica), all bound to the run's bridge so the namespaced agents reach it:

1. **Fleet steps** N = 1, 2, 3 transfers. Each step: writers start (every host's files, a steady
   total rate) while no transfer runs, for ``backlog_s``; then N transfers start in one group and
   the backlog drains (the drain rate is what N transfers can do); once lag is back to about a
   second of input the steady window starts: lines/s into ES, CPU per line of agents and
   transfers, every process's share of a core, consumer lag sampled, p99 append→searchable
   (bench/latency.py's probe poller on host 0's first file).
2. **Host behind**: one agent throttled (SIGSTOP/SIGCONT duty cycle, then stopped outright);
   ``logctl hosts``, ``logctl status <ip>`` and the console's hosts view captured.
3. **Kills**: under the fleet's load with 3 transfers, kill -9 the broker leading partition 0,
   wait for a new leader and the daemons' status keys naming the lost broker, start it again,
   wait for the full ISR; then kill -9 the ES node holding a primary, wait for the cluster to go
   on with 2 nodes, start it, wait for green.
4. **Exact count** of everything the fleet wrote: documents = distinct event.id = distinct lines =
   lines written, every writer's sequence complete; the topic's records = lines written.
5. **Hot file**: the same number of lines in 1 file and in 10 files on a 12-partition topic;
   agent → Kafka rate, then 3 transfers → ES rate, and how many partitions (transfers) did the work.

The report goes to ``bench/results/scale-<date>.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import REPO, VENV_BIN, cpu_seconds, loadavg, machine, say
from bench.gen import lines as gen_lines
from bench.latency import Poller, percentile
from bench.writer import PacedWriter
from chaos.netns import NetnsHosts, OverrideHosts
from integration.agents import agent_ini, wait_for
from integration.harness import Daemon, daemon

BRIDGE, BRIDGE_IP, SUBNET, TAG = "lfscale0", "10.81.0.1", "10.81.0.0/24", "lfs"
RESULTS = REPO / "bench" / "results"
LINE_RE = re.compile(r"[?&]w=([a-z0-9]+)&seq=(\d+)&sent=")


@dataclass
class Plan:
    hosts: int = 10
    files: int = 100
    # 500 lines/s: what this 2-core machine, shared with other engineers' stacks (CPU pressure 95%),
    # carries through 3 brokers (RF 3) and 3 ES nodes (1 replica) beside 10 agents: development runs at
    # 600/s kept it 100% busy, and 3 transfers settled 810 docs/s at most.
    rate: int = 500  # lines/s, all hosts together
    partitions: int = 12
    backlog_s: float = 20
    drain_max_s: float = 90
    steady_s: float = 60
    kill_load_s: float = 120
    behind_s: float = 60
    hot_lines: int = 60_000
    hot_spread_files: int = 10
    steps: tuple[int, ...] = (1, 2, 3)

    @classmethod
    def quick(cls) -> Plan:
        return cls(hosts=4, files=10, rate=300, partitions=6, backlog_s=5, drain_max_s=20, steady_s=12,
                   kill_load_s=60, behind_s=24, hot_lines=5_000, hot_spread_files=10)


class FleetWriter(PacedWriter):
    """bench/writer.py's paced, stamped writer; each line also names its writer (``w=<tag>``), so a
    line is identified by (writer, seq) across the run's phases and missing/duplicate lines show."""

    def __init__(self, tag: str, paths: list[Path], rate: float, seconds: float, probe_every: int) -> None:
        super().__init__(paths, rate, seconds, probe_every=probe_every, seed=int(uuid.uuid4().int % 1000))
        self.tag = tag

    def _line(self, seq: int, now_us: int) -> str:
        return super()._line(seq, now_us).replace(f"seq={seq}&sent=", f"w={self.tag}&seq={seq}&sent=", 1)


def proc_stat_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine (every engineer's processes, not only ours)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = f[3] + f[4]
    return sum(f) - idle, sum(f)


class Scale:
    """The whole run: hosts, stack, fleet, phases, counts, report."""

    def __init__(self, plan: Plan, workdir: Path, quick: bool, stack_dir: Path | None) -> None:
        self.plan, self.quick = plan, quick
        self.rid = "s" + uuid.uuid4().hex[:6]
        self.work = workdir / self.rid
        self.stack_dir = stack_dir
        self.prefix = f"/scale-{self.rid}"
        self.topic = f"scale-{self.rid}-fleet"
        self.group = f"scale-{self.rid}"
        self.index = f"logferry-scale-{self.rid}-*"
        self.stack: Any = None
        self.own_stack = False
        self.hosts: NetnsHosts | OverrideHosts | None = None
        self.agents: list[Daemon] = []
        self.transfers: list[Daemon] = []
        self.writers: list[FleetWriter] = []  # every writer of the run, for the exact count
        self.others: list[Daemon] = []  # the hot-file runs' daemons: stopped by down() whatever happens
        self.lag_samples: list[dict] = []
        self.report: dict[str, Any] = {"plan": plan.__dict__ | {"steps": list(plan.steps)}, "quick": quick,
                                       "machine": machine(), "loadavg": {}}
        self.t0 = time.monotonic()
        self._lag_stop = threading.Event()
        self.phase = "setup"

    # ------------------------------------------------------------------------------- infrastructure
    def up(self) -> None:
        from confluent_kafka.admin import AdminClient
        from elasticsearch import Elasticsearch

        from integration.stack import Stack, StackOptions
        from logferry.etcd import EtcdClient

        ok, why = NetnsHosts.available()
        self.hosts = NetnsHosts(self.plan.hosts, bridge=BRIDGE, bridge_ip=BRIDGE_IP, subnet=SUBNET, tag=TAG) if ok \
            else OverrideHosts(self.plan.hosts, base="10.81.0.10")
        if not ok:
            say(f"network namespaces unavailable ({why}): agents get distinct host_ip overrides instead")
        self.hosts.setup()
        self.report["hosts_mode"] = self.hosts.mode
        if self.stack_dir:
            self.stack = Stack.load(self.stack_dir, log=lambda m: say(f"[stack] {m}"))
            if self.stack is None or self.stack.options.kafka_brokers != 3 or self.stack.options.es_nodes != 3:
                raise SystemExit(f"{self.stack_dir}: need a running stack with --kafka-brokers 3 --es-nodes 3 "
                                 f"--bind {BRIDGE_IP}")
        else:
            sw = self.work / "stack"
            self.stack = Stack(workdir=sw, options=StackOptions(
                kafka_brokers=3, es_nodes=3, kafka_heap_mb=256, es_heap_mb=384,
                bind=BRIDGE_IP if ok else "127.0.0.1"), log=lambda m: say(f"[stack] {m}"))
            t = time.monotonic()
            self.own_stack = True
            self.stack.up()
            say(f"stack up in {time.monotonic() - t:.0f}s (3 brokers, 3 ES nodes, bound to {self.stack.options.bind})")
        env = self.stack.env()
        self.etcd_eps = env["ETCD_ENDPOINTS"].split(",")
        self.kafka = env["KAFKA_BOOTSTRAP_SERVERS"]
        self.es_urls = env["ES_URLS"].split(",")
        self.etcd = EtcdClient(self.etcd_eps, timeout_s=5)
        self.es = Elasticsearch(self.es_urls, request_timeout=60, max_retries=3, retry_on_timeout=True,
                                max_dead_node_backoff=1.0)
        logging.getLogger("elastic_transport").setLevel(logging.CRITICAL)
        quiet = logging.getLogger("scale.kafka")  # librdkafka's "connection refused" lines while a broker is down
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
        self.quiet = quiet
        self.admin = AdminClient({"bootstrap.servers": self.kafka, "logger": quiet})

    def down(self) -> None:
        self._lag_stop.set()
        for d in [*self.agents, *self.transfers, *self.others]:
            with contextlib.suppress(Exception):
                d.signal(signal.SIGCONT)
                d.stop(timeout=30)
        if self.own_stack and self.stack is not None:
            say("stopping the stack")
            self.stack.down()
        if self.hosts is not None:
            self.hosts.teardown()
        if self.own_stack:
            shutil.rmtree(self.work / "stack", ignore_errors=True)
        shutil.rmtree(self.work / "hosts", ignore_errors=True)

    def create_topic(self, name: str, partitions: int) -> None:
        from confluent_kafka.admin import NewTopic

        self.admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=3,
                                           config={"min.insync.replicas": "2"})])[name].result(60)

    def put(self, key: str, value: object) -> None:
        self.etcd.put(key, json.dumps(value).encode())

    def status(self, kind: str, name: str, prefix: str | None = None) -> dict | None:
        with contextlib.suppress(Exception):
            value, _ = self.etcd.get(f"{prefix or self.prefix}/{kind}/{name}/status")
            return json.loads(value) if value else None
        return None

    def wait(self, cond: Any, timeout: float, what: str, interval: float = 0.5) -> Any:
        return wait_for(cond, timeout, what, interval, error=TimeoutError)

    def transfer_daemon(self, j: int, prefix: str, group: str) -> Daemon:
        home = self.work / f"transfer-{group}-t{j}"
        ini = "\n".join([
            "[etcd]", f"endpoints = {','.join(self.etcd_eps)}", f"prefix = {prefix}", "",
            "[kafka]", f"bootstrap_servers = {self.kafka}", "consumer.session.timeout.ms = 10000", "",
            "[transfer]", f"es_hosts = {','.join(self.es_urls)}", f"id = t{j}", f"group_id = {group}",
            f"data_dir = {home / 'data'}", "metrics_address =", "status_interval_s = 1", "log_level = WARNING", ""])
        return daemon("logtransfer", home, ini, name=f"transfer-t{j}")

    # ------------------------------------------------------------------------------- measuring
    def service_pids(self) -> dict[str, int]:
        out = {}
        for name, rec in self.stack.procs.items():
            if rec.pid and name in self.stack.running():
                out[name] = rec.pid
        return out

    def cpu_snapshot(self) -> dict[str, float]:
        pids = {d.name: d.pid for d in [*self.agents, *self.transfers] if d.alive()} | self.service_pids()
        snap: dict[str, float] = {}
        for name, pid in pids.items():
            with contextlib.suppress(OSError, IndexError, ValueError):
                snap[name] = cpu_seconds(pid)
        t = os.times()
        snap["bench (writers, poller)"] = t.user + t.system
        busy, total = proc_stat_busy()
        snap["_machine_busy"], snap["_machine_total"] = busy, total
        snap["_t"] = time.monotonic()
        return snap

    @staticmethod
    def cpu_delta(a: dict[str, float], b: dict[str, float]) -> dict[str, Any]:
        dt = b["_t"] - a["_t"]
        share = {k: round((b[k] - a[k]) / dt, 3) for k in b if not k.startswith("_") and k in a}
        machine_busy = (b["_machine_busy"] - a["_machine_busy"]) / max(1, b["_machine_total"] - a["_machine_total"])
        return {"seconds": round(dt, 1), "core_share": dict(sorted(share.items(), key=lambda kv: -kv[1])),
                "machine_busy_pct": round(100 * machine_busy, 1)}

    def committed_and_end(self) -> tuple[int, int]:
        """(sum of the group's committed offsets, sum of end offsets) over the fleet topic."""
        tps = [self._tp(self.topic, p) for p in range(self.plan.partitions)]
        deadline = time.monotonic() + 60
        while True:
            try:  # right after a broker's return the client may not know a partition's leader for a moment
                committed = self._lagc.committed(tps, timeout=10)
                c = sum(max(0, t.offset) for t in committed)
                e = sum(self._lagc.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in tps)
                return c, e
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def lag_sampler(self) -> None:
        while not self._lag_stop.wait(2.0):
            with contextlib.suppress(Exception):
                c, e = self.committed_and_end()
                self.lag_samples.append({"t": round(time.monotonic() - self.t0, 1), "phase": self.phase,
                                         "lag": e - c, "end": e})

    def lag(self) -> int:
        try:
            c, e = self.committed_and_end()
            return e - c
        except Exception:
            return 1 << 40

    def es_count(self) -> int:
        # refreshed first: a primary and its replica refresh apart, and a count from either may lag;
        # a refresh that fails (a node away) still leaves a count to read
        with contextlib.suppress(Exception):
            self.es.indices.refresh(index=self.index, allow_no_indices=True, ignore_unavailable=True)
        try:
            return int(self.es.count(index=self.index, allow_no_indices=True, ignore_unavailable=True)["count"])
        except Exception:
            return -1

    # ------------------------------------------------------------------------------- the fleet
    def setup_fleet(self) -> None:
        from confluent_kafka import Consumer, TopicPartition

        self.create_topic(self.topic, self.plan.partitions)
        self.put(f"{self.prefix}/transfer/config", {"topics": [self.topic], "index": "logferry-{topic}-{yyyy.MM.dd}",
                                                    "dead_letter_topic": f"{self.topic}-dlq", "flush_interval_s": 1.0})
        self.host_files: list[list[Path]] = []
        for h in self.hosts.hosts:
            logs = self.work / "hosts" / h.name
            logs.mkdir(parents=True)
            files = [logs / f"app{k:03d}.log" for k in range(self.plan.files)]
            for f in files:
                f.touch()
            self.host_files.append(files)
            self.put(f"{self.prefix}/agents/{h.ip}/collect",
                     [{"path": f"{logs}/*.log", "topic": self.topic, "start_at": "beginning"}])
            home = self.work / f"agent-{h.name}"
            ini = agent_ini(etcd=self.etcd_eps, kafka=self.kafka, data_dir=home / "data", prefix=self.prefix,
                            host_ip=h.host_ip_override,
                            extra_agent={"hostname": f"scale-{h.name}", "status_interval_s": "2",
                                         "log_level": "WARNING"})
            self.agents.append(daemon("logagent", home, ini, name=f"agent-{h.name}", wrap=h.wrap([])).start())
        for i, (h, d) in enumerate(zip(self.hosts.hosts, self.agents, strict=True)):
            st = self.wait(lambda h=h, d=d: (s := self.status("agents", h.ip)) and s.get("pid") == d.pid and s, 90,
                           f"agent {h.name}'s status key")
            if st.get("ip") != h.ip:
                raise RuntimeError(f"agent {i} reports ip {st.get('ip')}, expected {h.ip}")
        say(f"{len(self.agents)} agents up ({self.hosts.mode}: {self.hosts.hosts[0].ip} … {self.hosts.hosts[-1].ip}),"
            f" {self.plan.files} files each, topic {self.topic} ({self.plan.partitions} partitions, RF 3, min ISR 2)")
        self.transfers = [self.transfer_daemon(j, self.prefix, self.group) for j in (1, 2, 3)]
        self._tp = TopicPartition
        self._lagc = Consumer({"bootstrap.servers": self.kafka, "group.id": self.group, "enable.auto.commit": False,
                               "logger": self.quiet})
        threading.Thread(target=self.lag_sampler, daemon=True).start()

    def start_writers(self, phase: str, seconds: float) -> list[FleetWriter]:
        """One paced writer per host (rate / hosts), over its files; host 0's first file carries the probes."""
        per_host = self.plan.rate / self.plan.hosts
        ws = []
        for i, files in enumerate(self.host_files):
            w = FleetWriter(f"{phase}h{i}", files, per_host, seconds,
                            probe_every=self.plan.files if i == 0 else 10**12)
            ws.append(w)
        for w in ws:
            w.start()
        self.writers += ws
        return ws

    def written(self) -> int:
        return sum(w.written for w in self.writers)

    def wait_all_in_es(self, timeout: float) -> int:
        target = self.written()
        self.wait(lambda: self.es_count() >= target, timeout, f"{target:,} documents in {self.index}", interval=2)
        return target

    def fleet_step(self, n: int) -> dict[str, Any]:
        p = self.plan
        self.phase = f"step{n}"
        for d in self.transfers:
            if d.alive():
                d.stop(timeout=60)
        seconds = p.backlog_s + p.drain_max_s + p.steady_s
        ws = self.start_writers(f"s{n}x", seconds)
        poller = Poller(self.es_urls[0], self.index, ws[0].probes)  # host 0's first file: offset → probe
        poller.start()
        time.sleep(p.backlog_s)
        lag0 = self.lag()
        say(f"step {n}: backlog {lag0:,} lines after {p.backlog_s:.0f}s with no transfer; starting {n} transfer(s)")
        c_drain0 = self.cpu_snapshot()
        t_start = time.monotonic()
        consumed0, _ = self.committed_and_end()
        for d in self.transfers[:n]:
            d.start()
        threshold = max(200, int(p.rate * 1.5))
        drained = None
        t_first = None
        while time.monotonic() - t_start < p.drain_max_s:
            lg = self.lag()
            if t_first is None:
                c, _ = self.committed_and_end()
                if c > consumed0:
                    t_first = time.monotonic()
            if lg <= threshold:
                drained = time.monotonic()
                break
            time.sleep(1)
        consumed1, _ = self.committed_and_end()
        c_drain1 = self.cpu_snapshot()
        t_end = drained or time.monotonic()
        drain = {"backlog_lines": lag0, "drained": drained is not None,
                 "seconds_from_start": round(t_end - t_start, 1),
                 "seconds_first_commit": round(t_first - t_start, 1) if t_first else None,
                 "lines_consumed": consumed1 - consumed0,
                 "lines_per_s": round((consumed1 - consumed0) / max(0.1, t_end - (t_first or t_start)))}
        drain["cpu"] = self.cpu_delta(c_drain0, c_drain1)
        say(f"step {n}: drain {drain['lines_consumed']:,} lines in {drain['seconds_from_start']}s from start "
            f"({drain['lines_per_s']:,} lines/s after the first commit; drained: {drain['drained']})")
        time.sleep(3)
        # the steady window: until the writers end
        c0, count0, written0, t0 = self.cpu_snapshot(), self.es_count(), self.written(), time.monotonic()
        lag_from = time.monotonic() - self.t0
        for w in ws:
            w.done.wait(seconds + 60)
        c1, count1, written1, t1 = self.cpu_snapshot(), self.es_count(), self.written(), time.monotonic()
        window_start_wall = time.time() - (t1 - t0)
        time.sleep(3)
        # latency: probes written in the steady window
        self.wait(lambda: self.es_count() >= self.written(), 180, "the step's lines in ES", interval=1)
        time.sleep(2)
        poller.stop_evt.set()
        lat = [poller.first_seen[s] - poller.sent[s] for s in poller.first_seen
               if s > 0 and poller.sent[s] >= window_start_wall]
        cpu = self.cpu_delta(c0, c1)
        dt = t1 - t0
        lines = written1 - written0
        agents_cpu = sum(v for k, v in cpu["core_share"].items() if k.startswith("agent-")) * dt
        transfers_cpu = sum(v for k, v in cpu["core_share"].items() if k.startswith("transfer-")) * dt
        docs = count1 - count0 if min(count0, count1) >= 0 else 0  # -1: ES could not count (reported as 0)
        es_cpu = sum(v for k, v in cpu["core_share"].items() if re.fullmatch(r"es\d+", k)) * dt
        kafka_cpu = sum(v for k, v in cpu["core_share"].items() if k.startswith("kafka") or k == "zookeeper") * dt
        lags = [s["lag"] for s in self.lag_samples if s["t"] >= lag_from and s["phase"] == self.phase]
        top_name, top_share = next(iter(cpu["core_share"].items()))
        if top_share >= 0.85:
            sat = f"{top_name} ({top_share:.0%} of a core)"
        elif cpu["machine_busy_pct"] >= 90:
            sat = f"the machine ({cpu['machine_busy_pct']}% of 2 cores busy; top process {top_name} {top_share:.0%})"
        else:
            sat = f"none (top process {top_name} {top_share:.0%} of a core, machine {cpu['machine_busy_pct']}% busy)"
        dcs = drain["cpu"]["core_share"]
        dtop, dshare = next(iter(dcs.items()))
        if dshare >= 0.85:
            dsat = f"{dtop} ({dshare:.0%} of a core)"
        else:
            dsat = (f"the machine ({drain['cpu']['machine_busy_pct']}% of 2 cores; top {dtop} {dshare:.0%})"
                    if drain["cpu"]["machine_busy_pct"] >= 90 else f"none (top {dtop} {dshare:.0%})")
        res = {"transfers": n, "steady": {
            "seconds": round(dt, 1), "lines_written": lines, "docs_indexed": docs,
            "lines_per_s": round(lines / dt), "docs_per_s": round(docs / dt),
            "agent_cpu_us_per_line": round(1e6 * agents_cpu / max(1, lines), 1),
            "transfer_cpu_us_per_doc": round(1e6 * transfers_cpu / max(1, docs), 1),
            "es_cpu_us_per_doc": round(1e6 * es_cpu / max(1, docs), 1),
            "kafka_cpu_us_per_line": round(1e6 * kafka_cpu / max(1, lines), 1),
            "lag_max": max(lags) if lags else None, "lag_mean": round(sum(lags) / len(lags)) if lags else None,
            "lag_samples": len(lags),
            "probes": len(lat), "p50_s": round(percentile(lat, 50), 3) if lat else None,
            "p99_s": round(percentile(lat, 99), 3) if lat else None, "max_s": round(max(lat), 3) if lat else None,
            "cpu": cpu, "saturates": sat}, "drain": drain | {"saturates": dsat}, "loadavg": loadavg()}
        say(f"step {n}: steady {res['steady']['lines_per_s']:,} lines/s, {res['steady']['docs_per_s']:,} docs/s, "
            f"agents {res['steady']['agent_cpu_us_per_line']} µs/line, transfers "
            f"{res['steady']['transfer_cpu_us_per_doc']} µs/doc, p99 {res['steady']['p99_s']}s "
            f"({len(lat)} probes), lag max {res['steady']['lag_max']}; saturates: {sat}; load {loadavg()}")
        return res

    # ------------------------------------------------------------------------------- host behind
    def logctl(self, *args: str) -> str:
        r = subprocess.run([str(VENV_BIN / "logctl"), "--etcd", ",".join(self.etcd_eps), "--prefix", self.prefix,
                            *args], capture_output=True, text=True, timeout=60)
        return (r.stdout + r.stderr).rstrip()

    def hosts_lag(self) -> dict[str, Any]:
        """host → (live, lag bytes summed over its files, status age): what the console's hosts view reads."""
        from console.views import hosts_page
        from logferry.keys import Keys

        page = hosts_page(self.etcd, Keys(self.prefix))
        out = {}
        for row in page["hosts"]:
            files = row.get("files") or []
            out[row["ip"]] = {"live": row.get("live"), "lag_bytes": sum(f.get("lag_bytes") or 0 for f in files),
                              "updated_at": row.get("updated_at"), "last_error": row.get("last_error")}
        return out

    def host_behind(self) -> dict[str, Any]:
        p = self.plan
        self.phase = "behind"
        victim = self.agents[-1]
        vh = self.hosts.hosts[-1]
        normal = self.hosts.hosts[0]
        ws = self.start_writers("bh", p.behind_s)
        out: dict[str, Any] = {"host": vh.ip, "agent": victim.name}
        halt = threading.Event()

        def throttle() -> None:  # 20% duty cycle: the agent is live (lease kept) but slower than its files
            while not halt.is_set():
                victim.signal(signal.SIGSTOP)
                halt.wait(0.8)
                victim.signal(signal.SIGCONT)
                halt.wait(0.2)

        time.sleep(3)
        th = threading.Thread(target=throttle, daemon=True)
        th.start()
        time.sleep(p.behind_s * 0.4)
        out["throttled"] = {"hosts_view": self.hosts_lag(), "logctl_hosts": self.logctl("hosts"),
                            "logctl_status_victim": self.logctl("status", vh.ip),
                            "logctl_status_normal": self.logctl("status", normal.ip)}
        halt.set()
        th.join()
        victim.signal(signal.SIGSTOP)
        say(f"host behind: {vh.ip} throttled, now stopped (SIGSTOP); waiting for its status lease to lapse")
        with contextlib.suppress(TimeoutError):
            self.wait(lambda: self.status("agents", vh.ip) is None, 30, f"{vh.ip}'s status key to lapse")
        out["stopped"] = {"hosts_view": {vh.ip: self.hosts_lag().get(vh.ip)}, "logctl_hosts": self.logctl("hosts"),
                          "logctl_status_victim": self.logctl("status", vh.ip)}
        victim.signal(signal.SIGCONT)
        resumed = datetime.now(UTC).replace(microsecond=0)
        for w in ws:
            w.done.wait(p.behind_s + 60)

        def caught_up() -> bool:
            v = self.hosts_lag().get(vh.ip) or {}
            return bool(v.get("live") and v.get("updated_at") and v["lag_bytes"] == 0
                        and datetime.fromisoformat(v["updated_at"]) > resumed)

        t = time.monotonic()
        with contextlib.suppress(TimeoutError):
            self.wait(caught_up, 180, f"{vh.ip} caught up")
        out["caught_up_s_after_writers"] = round(time.monotonic() - t, 1)
        out["after"] = {"hosts_view": {vh.ip: self.hosts_lag().get(vh.ip)}}
        say(f"host behind: {vh.ip} caught up again: {out['after']['hosts_view']}")
        return out

    # ------------------------------------------------------------------------------- kills
    def kill_broker(self) -> dict[str, Any]:
        from integration.test_failover import partition_state

        self.phase = "broker-kill"
        ws = self.start_writers("kb", self.plan.kill_load_s)
        st = self.stack
        out: dict[str, Any] = {}
        time.sleep(10)
        leader, isr = partition_state(self.admin, self.topic)
        victim = f"kafka{leader}"
        port = st.ports[victim]
        at = self.written()
        t = time.monotonic()
        st.stop_service(victim, kill=True)
        say(f"broker kill: kill -9 {victim} (broker {leader}, leader of {self.topic}/0, ISR {isr}) at {at:,} lines")

        def new_leader() -> int | None:
            led, _ = partition_state(self.admin, self.topic)
            return led if led not in (leader, -1) else None

        took = self.wait(new_leader, 60, "a new leader of partition 0")
        out |= {"victim": victim, "broker_id": leader, "isr_before": isr, "lines_at_kill": at, "new_leader": took,
                "new_leader_after_s": round(time.monotonic() - t, 1)}
        named: dict[str, Any] = {}

        def agents_naming() -> list[str]:
            return [h.ip for h in self.hosts.hosts
                    if f":{port}/" in str(((self.status("agents", h.ip) or {}).get("kafka") or {}).get("last_error"))]

        with contextlib.suppress(TimeoutError):
            self.wait(agents_naming, 45, f"an agent's status naming {victim}")
        named["agents"] = agents_naming()
        with contextlib.suppress(TimeoutError):
            self.wait(lambda: any(f":{port}" in str((self.status("transfers", f"t{j}") or {}).get("last_error"))
                                  for j in (1, 2, 3)), 45, f"a transfer's status naming {victim}")
        h0 = next((ip for ip in named["agents"]), self.hosts.hosts[0].ip)
        named["agent_example"] = {"ip": h0, "kafka": (self.status("agents", h0) or {}).get("kafka")}
        named["transfers"] = {f"t{j}": (self.status("transfers", f"t{j}") or {}).get("last_error") for j in (1, 2, 3)}
        out["status"] = named
        say(f"broker kill: {len(named['agents'])} agent status keys name {victim}; transfers: {named['transfers']}")
        time.sleep(5)
        st.start_service(victim)
        out["down_s"] = round(time.monotonic() - t, 1)
        self.wait(lambda: partition_state(self.admin, self.topic)[1] == [1, 2, 3], 120, f"{victim} back in the ISR")
        out["back_in_isr_after_s"] = round(time.monotonic() - t, 1)
        out["lines_written_while_down"] = self.written() - at
        say(f"broker kill: {victim} back in the ISR after {out['back_in_isr_after_s']}s")
        for w in ws:
            w.done.wait(self.plan.kill_load_s + 60)
        out["load_ended_after_recovery"] = True
        return out

    def kill_es_node(self) -> dict[str, Any]:
        self.phase = "es-kill"
        ws = self.start_writers("ke", self.plan.kill_load_s)
        st = self.stack
        time.sleep(10)
        index = sorted(self.es.indices.get(index=self.index))[-1]
        self.es.cluster.health(index=index, wait_for_status="green", timeout="60s")
        shards = self.es.cat.shards(index=index, format="json")
        victim = next(s["node"] for s in shards if s["prirep"] == "p")
        at = self.written()
        t = time.monotonic()
        st.stop_service(victim, kill=True)
        say(f"ES kill: kill -9 {victim} (holds the primary of {index}) at {at:,} lines")
        self.wait(lambda: self.es.cluster.health()["number_of_nodes"] == 2, 90, f"the cluster to drop {victim}")
        out: dict[str, Any] = {"victim": victim, "index": index, "lines_at_kill": at,
                               "dropped_after_s": round(time.monotonic() - t, 1)}
        c = self.es_count()
        with contextlib.suppress(TimeoutError):
            self.wait(lambda: self.es_count() >= c + self.plan.rate * 5, 90, "documents indexed with 2 nodes")
        out["indexing_with_2_nodes"] = self.es_count() > c
        out["transfers_status"] = {f"t{j}": (self.status("transfers", f"t{j}") or {}).get("last_error")
                                   for j in (1, 2, 3)}
        st.start_service(victim)
        out["down_s"] = round(time.monotonic() - t, 1)
        self.es.cluster.health(index=index, wait_for_status="green", timeout="120s")
        out["green_after_s"] = round(time.monotonic() - t, 1)
        out["lines_written_while_down"] = self.written() - at
        say(f"ES kill: {victim} back, {index} green after {out['green_after_s']}s")
        for w in ws:
            w.done.wait(self.plan.kill_load_s + 60)
        return out

    # ------------------------------------------------------------------------------- exact count
    def exact_count(self) -> dict[str, Any]:
        from elasticsearch.helpers import scan

        self.phase = "count"
        total = self.wait_all_in_es(600)
        time.sleep(5)
        self.es.indices.refresh(index=self.index)
        c, e = self.committed_and_end()
        say(f"exact count: {total:,} lines written; reading every document back")
        ids: set[str] = set()
        seen: dict[str, set[int]] = {}
        docs = dup_lines = 0
        t = time.monotonic()
        for d in scan(self.es, index=self.index, query={"query": {"match_all": {}}}, size=5000,
                      _source=["event.id", "message"]):
            s = d["_source"]
            docs += 1
            ids.add(s["event"]["id"])
            m = LINE_RE.search(s["message"])
            if m:
                got = seen.setdefault(m.group(1), set())
                n = int(m.group(2))
                if n in got:
                    dup_lines += 1
                got.add(n)
        missing = 0
        for w in self.writers:
            missing += w.written - len(seen.get(w.tag, set()) & set(range(w.written)))
        out = {"lines_written": total, "topic_records": e, "group_committed": c, "es_docs": docs,
               "es_distinct_event_ids": len(ids), "es_distinct_lines": sum(len(v) for v in seen.values()),
               "missing": missing, "duplicate_lines": dup_lines, "scan_s": round(time.monotonic() - t, 1)}
        out["exact"] = (missing == 0 and dup_lines == 0 and docs == len(ids) == total and e == total)
        say(f"exact count: {json.dumps(out)}")
        return out

    def sizes(self) -> dict[str, Any]:
        """Bytes per document in the index (primaries, and with the replica) and per record in Kafka."""
        from confluent_kafka import Consumer, TopicPartition

        st = self.es.indices.stats(index=self.index, metric="store,docs")["_all"]
        pri, tot = st["primaries"], st["total"]
        out = {"es_docs": pri["docs"]["count"], "es_primary_bytes": pri["store"]["size_in_bytes"],
               "es_total_bytes_with_replica": tot["store"]["size_in_bytes"]}
        out["es_bytes_per_doc_primary"] = round(out["es_primary_bytes"] / max(1, out["es_docs"]), 1)
        c = Consumer({"bootstrap.servers": self.kafka, "group.id": f"{self.group}-size",
                      "auto.offset.reset": "earliest", "enable.auto.commit": False})
        c.assign([TopicPartition(self.topic, 0, 0)])
        vals = keys = n = 0
        deadline = time.monotonic() + 30
        while n < 2000 and time.monotonic() < deadline:
            m = c.poll(1)
            if m is None or m.error():
                continue
            vals += len(m.value() or b"")
            keys += len(m.key() or b"")
            n += 1
        c.close()
        out["kafka_record_value_bytes"] = round(vals / max(1, n), 1)
        out["kafka_record_key_bytes"] = round(keys / max(1, n), 1)
        disk = 0
        for root, _dirs, files in os.walk(self.stack.workdir):
            if os.path.basename(root).startswith(f"{self.topic}-") and "kafka1" in root:
                disk += sum(os.path.getsize(os.path.join(root, f)) for f in files if f.endswith(".log"))
        out["kafka_disk_bytes_per_record_one_replica"] = round(disk / max(1, out["es_docs"]) * 1, 1) if disk else None
        out["line_bytes_mean"] = round(sum(len(x) + 1 for x in gen_lines(2000, 7)) / 2000, 1)
        say(f"sizes: {out}")
        return out

    # ------------------------------------------------------------------------------- hot file
    def hot(self, files: int) -> dict[str, Any]:
        """``hot_lines`` lines in ``files`` files → a 12-partition topic → 3 transfers → ES."""
        from confluent_kafka import Consumer, TopicPartition

        tag = f"{self.rid}h{files}"
        prefix, topic, group = f"/scale-{tag}", f"scale-{tag}", f"scale-{tag}"
        parts = 12
        self.create_topic(topic, parts)
        self.put(f"{prefix}/transfer/config", {"topics": [topic], "index": "logferry-{topic}-{yyyy.MM.dd}",
                                               "dead_letter_topic": f"{topic}-dlq", "flush_interval_s": 1.0})
        d = self.work / "hosts" / f"hot{files}"
        d.mkdir(parents=True)
        n = self.plan.hot_lines
        body = list(gen_lines(n, 5))
        per = n // files
        for k in range(files):
            (d / f"hot{k:02d}.log").write_text("".join(x + "\n" for x in body[k * per:(k + 1) * per]))
        total = per * files
        ip = f"10.81.1.{files}"
        self.put(f"{prefix}/agents/{ip}/collect", [{"path": f"{d}/*.log", "topic": topic, "start_at": "beginning"}])
        tps = [TopicPartition(topic, p) for p in range(parts)]
        c = Consumer({"bootstrap.servers": self.kafka, "group.id": group, "enable.auto.commit": False,
                      "logger": self.quiet})

        def ends() -> list[int]:
            try:
                return [c.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in tps]
            except Exception:  # a topic made a moment ago: its partitions not in the client's metadata yet
                return [0] * parts

        home = self.work / f"agent-hot{files}"
        agent = daemon("logagent", home, agent_ini(etcd=self.etcd_eps, kafka=self.kafka, data_dir=home / "data",
                                                   prefix=prefix, host_ip=ip,
                                                   extra_agent={"status_interval_s": "2", "log_level": "WARNING"}),
                       name=f"agent-hot{files}")
        self.others.append(agent)
        t = time.monotonic()
        agent.start()
        self.wait(lambda: sum(ends()) >= total, 600, f"{total:,} records in {topic}", interval=0.2)
        agent_s = time.monotonic() - t
        agent_cpu = cpu_seconds(agent.pid)
        agent.stop(timeout=30)
        per_part = ends()
        transfers = [self.transfer_daemon(j, prefix, group) for j in (1, 2, 3)]
        self.others += transfers
        index = f"logferry-{topic}-*"
        t = time.monotonic()
        for tr in transfers:
            tr.start()

        def in_es() -> int:
            try:
                return int(self.es.count(index=index, allow_no_indices=True)["count"])
            except Exception:
                return -1

        self.wait(lambda: in_es() >= total, 900, f"{total:,} documents in {index}", interval=0.5)
        transfer_s = time.monotonic() - t
        cpu = {tr.name: round(cpu_seconds(tr.pid), 2) for tr in transfers}
        busy = {f"t{j}": len((self.status("transfers", f"t{j}", prefix) or {}).get("assigned_partitions") or [])
                for j in (1, 2, 3)}
        for tr in transfers:
            tr.stop(timeout=30)
        c.close()
        self.es.indices.refresh(index=index)
        docs = in_es()
        out = {"files": files, "lines": total, "partitions_used": sum(1 for x in per_part if x),
               "records_per_partition": per_part, "agent_s": round(agent_s, 2),
               "agent_lines_per_s": round(total / agent_s), "agent_cpu_s": round(agent_cpu, 2),
               "transfer_s": round(transfer_s, 2), "transfer_docs_per_s": round(total / transfer_s),
               "transfer_cpu_s": cpu, "assigned_partitions": busy, "es_docs": docs, "loadavg": loadavg()}
        say(f"hot ({files} file(s)): agent {out['agent_lines_per_s']:,} lines/s, {out['partitions_used']} "
            f"partition(s); transfers {out['transfer_docs_per_s']:,} docs/s, CPU {cpu}; ES docs {docs:,}/{total:,}")
        return out

    # ------------------------------------------------------------------------------- the run
    def execute(self, skip: set[str]) -> dict[str, Any]:
        self.report["started_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        self.report["loadavg"]["start"] = loadavg()
        self.up()
        self.setup_fleet()
        # warm-up: the day's index is made (template, shards on 3 nodes) and the first bulks go through
        # before any step is timed; under load that alone took 40+ s in the development runs
        self.phase = "warm-up"
        t = time.monotonic()
        ws = self.start_writers("wu", 5)
        self.transfers[0].start()
        for w in ws:
            w.done.wait(60)
        self.wait_all_in_es(300)
        self.report["warm_up_s"] = round(time.monotonic() - t, 1)
        say(f"warm-up: {self.written():,} lines in ES after {self.report['warm_up_s']}s (index made, first bulks)")
        self.report["steps"] = []
        for n in self.plan.steps:
            self.report["steps"].append(self.fleet_step(n))
        for d in self.transfers:
            if not d.alive():
                d.start()
        if "behind" not in skip:
            self.report["behind"] = self.host_behind()
        if "kills" not in skip:
            self.report["broker_kill"] = self.kill_broker()
            self.report["es_kill"] = self.kill_es_node()
        self.report["count"] = self.exact_count()
        self.report["lag_timeline"] = self.lag_samples
        self.report["sizes"] = self.sizes()
        self.report["loadavg"]["after_fleet"] = loadavg()
        for d in [*self.agents, *self.transfers]:
            d.stop(timeout=60)
        crashes = [{"name": d.name, "code": e.code, "log": e.log_tail} for d in [*self.agents, *self.transfers]
                   for e in d.exits if not e.expected]
        self.report["crashes"] = crashes
        if "hot" not in skip:
            self.report["hot"] = [self.hot(1), self.hot(self.plan.hot_spread_files)]
        self.report["loadavg"]["end"] = loadavg()
        self.report["duration_s"] = round(time.monotonic() - self.t0)
        return self.report


# ----------------------------------------------------------------------------------- report
def _n(x: Any) -> str:
    return "—" if x is None else (f"{x:,}" if isinstance(x, int) else str(x))


def markdown(r: dict[str, Any]) -> str:
    p = r["plan"]
    m = r["machine"]
    la = r["loadavg"]
    out = [f"# Scale-out run of {r['started_at']}{' (--quick)' if r['quick'] else ''}", "",
           f"`python -m bench.scale{' --quick' if r['quick'] else ''}`, {r.get('duration_s', 0) / 60:.1f} min. "
           f"Machine: {m['cpus']} × {m['cpu_model']}, {m['mem_gib']} GiB, {m['os']}, shared with other engineers' "
           f"stacks and benches. Load average (1/5/15 min): start {la.get('start')}, after the fleet "
           f"{la.get('after_fleet')}, end {la.get('end')}.", "",
           f"Stack: 3 Kafka brokers on one ZooKeeper (topics RF 3, min.insync.replicas 2), 3 Elasticsearch nodes "
           f"(1 replica), etcd ×3 — all on this machine. Fleet: {p['hosts']} agent hosts ({r.get('hosts_mode')}) × "
           f"{p['files']} files, {p['rate']:,} lines/s in total (nginx lines, "
           f"~{r.get('sizes', {}).get('line_bytes_mean')} bytes), topic of {p['partitions']} partitions.", "",
           "## Transfer steps", "",
           "Each step: the writers run with no transfer for the backlog time, then N transfers start in one group "
           "(drain = what N transfers index from a backlog, after their first commit); once lag is back under "
           "~1.5 s of input, the steady window (the same rate) measures CPU, lag and append→searchable.", "",
           "| transfers | backlog lines | drain lines/s | drain: busiest / saturates | steady lines/s | docs/s "
           "| agent µs CPU/line | transfer µs CPU/doc | ES (3 nodes) µs CPU/doc | Kafka (3 brokers + ZK) µs CPU/line "
           "| lag max / mean (samples) | p50 / p99 / max s (probes) | steady: saturates | load 1-min |",
           "|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---|---|---|---:|"]
    for s in r.get("steps", []):
        d, st = s["drain"], s["steady"]
        out.append(f"| {s['transfers']} | {_n(d['backlog_lines'])} | {_n(d['lines_per_s'])}"
                   f"{'' if d['drained'] else ' (not drained)'} | {d['saturates']} | {_n(st['lines_per_s'])} | "
                   f"{_n(st['docs_per_s'])} | {st['agent_cpu_us_per_line']} | {st['transfer_cpu_us_per_doc']} | "
                   f"{st.get('es_cpu_us_per_doc')} | {st.get('kafka_cpu_us_per_line')} | "
                   f"{_n(st['lag_max'])} / {_n(st['lag_mean'])} ({st['lag_samples']}) | {st['p50_s']} / "
                   f"{st['p99_s']} / {st['max_s']} ({st['probes']}) | {st['saturates']} | {s['loadavg'][0]} |")
    out += ["", "Share of a core per process (top 8), drain window and steady window:", "", "```"]
    for s in r.get("steps", []):
        for what, cpu in (("drain", s["drain"]["cpu"]), ("steady", s["steady"]["cpu"])):
            top = ", ".join(f"{k} {v:.2f}" for k, v in list(cpu["core_share"].items())[:8])
            out.append(f"{s['transfers']} transfer(s) {what:6s} {cpu['seconds']:5.0f}s machine "
                       f"{cpu['machine_busy_pct']:5.1f}% busy: {top}")
    out += ["```", ""]
    b = r.get("behind")
    if b:
        out += ["## Which host is behind", "",
                f"Agent of {b['host']} throttled to ~20% of the time (SIGSTOP 0.8 s / SIGCONT 0.2 s) while every "
                "host writes at the same rate. The console's hosts view (lag bytes summed over each host's files, "
                "from the same status keys):", "", "```"]
        for ip, v in b["throttled"]["hosts_view"].items():
            out.append(f"{ip:12s} live={v['live']} lag_bytes={v['lag_bytes']:>10,} updated_at={v['updated_at']}")
        out += ["```", "", "`logctl hosts`:", "", "```", b["throttled"]["logctl_hosts"], "```", "",
                f"`logctl status {b['host']}` (the throttled host; first 40 lines):", "", "```",
                *b["throttled"]["logctl_status_victim"].splitlines()[:40], "```", "",
                "`logctl status` of a normal host (first 12 lines):", "", "```",
                *b["throttled"]["logctl_status_normal"].splitlines()[:12], "```", "",
                "Then the agent stopped outright (SIGSTOP): its status key's lease lapses and `logctl hosts` says:",
                "", "```", b["stopped"]["logctl_hosts"], "```", "",
                f"After SIGCONT: {b['after']['hosts_view']}", ""]
    bk, ek = r.get("broker_kill"), r.get("es_kill")
    if bk:
        out += ["## Kills under the fleet's load (3 transfers)", "",
                f"- **Broker**: kill -9 {bk['victim']} (leader of partition 0, ISR {bk['isr_before']}) at "
                f"{bk['lines_at_kill']:,} lines; new leader broker {bk['new_leader']} after "
                f"{bk['new_leader_after_s']} s; "
                f"started again after {bk['down_s']} s, back in the ISR after {bk['back_in_isr_after_s']} s; "
                f"{bk['lines_written_while_down']:,} lines written meanwhile. Agent status keys naming the lost "
                "broker: "
                f"{len(bk['status']['agents'])} of {p['hosts']}. Example agent status `kafka`: "
                f"`{json.dumps(bk['status']['agent_example'])}`. Transfers' `last_error`: "
                f"`{json.dumps(bk['status']['transfers'])}`."]
    if ek:
        out += [f"- **ES node**: kill -9 {ek['victim']} (held a primary of {ek['index']}) at {ek['lines_at_kill']:,} "
                f"lines; cluster of 2 after {ek['dropped_after_s']} s, indexing went on: "
                f"{ek['indexing_with_2_nodes']}; "
                f"started again after {ek['down_s']} s, green after {ek['green_after_s']} s; "
                f"{ek['lines_written_while_down']:,} lines written meanwhile. Transfers' `last_error`: "
                f"`{json.dumps(ek['transfers_status'])}`.", ""]
    c = r.get("count")
    if c:
        out += ["## Exact count (every line the run wrote: all steps, the slow host, both kills)", "",
                "| lines written | topic records | ES docs | distinct event.id | distinct lines | missing "
                "| duplicates | exact |",
                "|---:|---:|---:|---:|---:|---:|---:|:---:|",
                f"| {c['lines_written']:,} | {c['topic_records']:,} | {c['es_docs']:,} | "
                f"{c['es_distinct_event_ids']:,} | {c['es_distinct_lines']:,} | {c['missing']} | "
                f"{c['duplicate_lines']} | {'yes' if c['exact'] else '**no**'} |",
                ""]
        if r.get("crashes"):
            out += [f"Crashes: {r['crashes']}", ""]
    sz = r.get("sizes")
    if sz:
        out += ["## Sizes", "",
                f"- Elasticsearch: {sz['es_bytes_per_doc_primary']} bytes per document (primaries, "
                f"{sz['es_docs']:,} docs, not force-merged); {sz['es_total_bytes_with_replica']:,} bytes with "
                "the replica.",
                f"- Kafka record: value {sz['kafka_record_value_bytes']} bytes, key "
                f"{sz['kafka_record_key_bytes']} bytes (uncompressed); on one broker's disk "
                f"{sz['kafka_disk_bytes_per_record_one_replica']} bytes per record (lz4 batches).",
                f"- Raw line: {sz['line_bytes_mean']} bytes.", ""]
    hot = r.get("hot")
    if hot:
        out += ["## One hot file vs the same lines over several files (12-partition topic, 3 transfers)", "",
                "| files | lines | partitions used | agent → Kafka lines/s | agent CPU s | transfers → ES docs/s "
                "| transfers' CPU s | partitions assigned | load 1-min |",
                "|---:|---:|---:|---:|---:|---:|---|---|---:|"]
        for h in hot:
            out.append(f"| {h['files']} | {h['lines']:,} | {h['partitions_used']} | {h['agent_lines_per_s']:,} | "
                       f"{h['agent_cpu_s']} | {h['transfer_docs_per_s']:,} | {h['transfer_cpu_s']} | "
                       f"{h['assigned_partitions']} | {h['loadavg'][0]} |")
        out.append("")
    if r.get("error"):
        out += ["## The run failed", "", f"`{r['error']}`: the sections above are what it measured before.", ""]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true",
                    help="small (about 10 min on the shared 2-core machine): 4 hosts × 10 files, 300 lines/s")
    ap.add_argument("--rate", type=int, help="lines/s of the whole fleet")
    ap.add_argument("--hosts", type=int)
    ap.add_argument("--files", type=int, help="files per host")
    ap.add_argument("--steady-s", type=float, help="seconds of each step's steady window")
    ap.add_argument("--steps", help="transfer counts of the fleet steps, comma list (default 1,2,3)")
    ap.add_argument("--skip", default="", help="comma list of: behind, kills, hot")
    ap.add_argument("--workdir", default="/tmp/logferry-scale")
    ap.add_argument("--stack-dir", help=f"a running stack (--kafka-brokers 3 --es-nodes 3 --bind {BRIDGE_IP})")
    ap.add_argument("--results", default=str(RESULTS), help="directory for scale-<date>.md/.json ('' for none)")
    a = ap.parse_args(argv)
    plan = Plan.quick() if a.quick else Plan()
    for k in ("rate", "hosts", "files", "steady_s"):
        if getattr(a, k) is not None:
            setattr(plan, k, getattr(a, k))
    if a.steps:
        plan.steps = tuple(int(x) for x in a.steps.split(","))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    run = Scale(plan, Path(a.workdir), a.quick, Path(a.stack_dir) if a.stack_dir else None)
    try:
        report = run.execute({x for x in a.skip.split(",") if x})
    except Exception as e:  # a partial report still says what was measured before the failure
        import traceback

        traceback.print_exc()
        report = run.report | {"error": f"{type(e).__name__}: {e}", "duration_s": round(time.monotonic() - run.t0)}
        report.setdefault("started_at", "?")
    finally:
        run.down()
    md = markdown(report)
    print(md)
    if a.results:
        d = Path(a.results)
        d.mkdir(parents=True, exist_ok=True)
        stem = f"scale-{datetime.now(UTC):%Y-%m-%d}{'-quick' if a.quick else ''}"
        (d / f"{stem}.json").write_text(json.dumps(report, indent=1, default=str))
        (d / f"{stem}.md").write_text(md)
        say(f"report: {d / stem}.md and .json")
    c = report.get("count") or {}
    return 0 if c.get("exact") and not report.get("crashes") else 1


if __name__ == "__main__":
    sys.exit(main())
