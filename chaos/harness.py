"""One chaos run: agents, transfers, writers, a fault schedule; then drain, count, report.

What is measured, and how:

- **lines written**: the writers' ledger (:mod:`chaos.writer`), every line unique.
- **documents in ES**: every document of the run's indices is read back (point in time +
  ``search_after``); its message names the line (file tag, sequence number, generation).
- **missing**: lines written and not found; **duplicates**: lines found in more than one
  document (same content and origin under two ids, or in two indices). Either fails the run,
  except lines of a generation ended by the one *honest* copytruncate: those are reported as
  ``copytruncate_honest.lost`` (and must be a tail of that generation, and at most the lines
  the agent had not acknowledged when the file was truncated).
- **origin**: each document's ``host.ip`` must be its writer's host and ``log.file.path`` one of
  the file's names; anything else fails the run (``wrong_origin``).
- **recovery after each fault**: from the fault's start until Elasticsearch holds, for every
  file being collected, at least as many lines as had been written to it when the fault began
  (counts per file come from a ``filters`` aggregation on the file's tag, sampled each second;
  a file's lines are consumed in order from its partition, so "as many" means "all of them").
  ``down_s`` is how long the service was away.
- **peak RSS**: the largest VmHWM of each daemon over all its incarnations, and of each server.
- **crashes**: a daemon that exits without being told fails the run (it is restarted so the
  count can finish).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from integration.agents import made_after, wait_for
from integration.harness import VENV_BIN, Daemon, proc_mem_kb

from .netns import Host, NetnsHosts, OverrideHosts
from .schedule import SCHEDULES, Step
from .writer import LINE_BYTES, Generation, Ledger, LogFile, Writer

log = logging.getLogger("chaos")

REPO = Path(__file__).resolve().parent.parent
DEFAULT_RESULTS = REPO / "chaos" / "results" / "latest.json"


def start_failure(err: str) -> str:
    """The line of a start-up error that says why: the stack's error is one line naming the log and
    then the log's tail, whose last ERROR or Exception line is the cause (Kafka's NodeExists after a
    kill -9); without one, the error's first line."""
    lines = [ln.strip() for ln in err.splitlines() if ln.strip()]
    for ln in reversed(lines[1:]):
        if any(w in ln for w in ("ERROR", "FATAL", "Exception")):
            return ln[:200]
    return lines[0][:200] if lines else "no message"


# ------------------------------------------------------------------------------------------------
@dataclass
class Endpoints:
    etcd: list[str]
    kafka: str
    es: str
    stack: Any = None  # integration.stack.Stack, for fault injection
    bind: str = "127.0.0.1"


@dataclass
class ChaosConfig:
    lines: int = 1_000_000
    agents: int = 3
    transfers: int = 2
    rate: float = 2000.0  # lines per second, all files together
    schedule: str = "full"
    rotate_every: int = 0  # lines per file between rotations; 0: about 4 per file over the run
    workdir: Path = Path("/tmp/logferry-chaos")
    results: Path | None = DEFAULT_RESULTS
    drain_timeout_s: float = 600.0
    session_timeout_ms: int = 10000
    partitions: int = 3
    keep_indices: bool = True
    settle_timeout_s: float = 90.0  # wait at most this long for a fault's recovery before the next


@dataclass
class FaultRecord:
    step: str
    action: str
    target: str
    progress: float
    at_s: float  # since the run started
    down_s: float | None = None
    ready_s: float | None = None  # restarted daemon: start -> its status key shows the new pid
    recovered_s: float | None = None  # service back -> ES holds every line written until then
    note: str = ""
    # internal
    t0: float = 0.0
    restored: float | None = None
    targets: dict[str, int] = field(default_factory=dict)


class Failure(AssertionError):
    pass


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------------------------
class Run:
    """Everything of one run. ``execute()`` does it all and returns the report (a dict)."""

    def __init__(self, cfg: ChaosConfig, ep: Endpoints, hosts: NetnsHosts | OverrideHosts,
                 say: Callable[[str], None] = print) -> None:
        if ep.stack is None:
            raise ValueError("the chaos run injects faults into the servers: it needs the native stack")
        self.cfg = cfg
        self.ep = ep
        self.hosts = hosts
        self.say = say
        self.run_id = "c" + uuid.uuid4().hex[:8]
        self.prefix = f"/chaos-{self.run_id}"
        self.home = Path(cfg.workdir) / self.run_id
        self.topic_base = f"chaos-{self.run_id}"
        self.index_pattern = f"logferry-{self.topic_base}-*"
        self.t_start = 0.0
        self.ledger = Ledger()
        self.agents: dict[int, Daemon] = {}
        self.transfers: dict[int, Daemon] = {}
        self.guards: dict[int, threading.RLock] = {}
        self.lists: dict[int, list[dict]] = {}
        self.collected: set[str] = set()
        self.faults: list[FaultRecord] = []
        self.config_changes: list[dict] = []
        self.rotation_log: list[dict] = []
        self.anomalies: list[str] = []
        self.crashes: list[dict] = []
        self.timeline: list[dict] = []
        self.counts: dict[str, int] = {}
        self.counts_at = 0.0
        self.probes: list[dict[str, Any]] = []
        self._last_probe = -1e9
        self.honest: list[tuple[LogFile, Generation]] = []
        self.honest_requests: dict[str, threading.Event] = {}
        self.planned_down: set[str] = set()
        self.stop_evt = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.etcd = None
        self.es = None
        self.admin = None

    # ================================================================== helpers
    def t(self) -> float:
        return time.monotonic() - self.t_start

    def note(self, msg: str) -> None:
        self.say(f"[chaos {self.t():7.1f}s] {msg}")

    def topic(self, name: str) -> str:
        return f"{self.topic_base}-{name}"

    def host(self, i: int) -> Host:
        return self.hosts.hosts[i]

    def etcd_retry(self, fn: Callable[[], Any], what: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return fn()
            except Exception as e:
                if time.monotonic() > deadline:
                    raise Failure(f"etcd {what}: {e}") from e
                time.sleep(0.5)

    def agent_status(self, i: int) -> dict | None:
        try:
            value, _ = self.etcd.get(f"{self.prefix}/agents/{self.host(i).ip}/status")
        except Exception:
            return None
        return json.loads(value) if value else None

    def transfer_status(self, j: int) -> dict | None:
        try:
            value, _ = self.etcd.get(f"{self.prefix}/transfers/t{j}/status")
        except Exception:
            return None
        return json.loads(value) if value else None

    def put_list(self, i: int, inputs: list[dict] | str) -> int:
        body = inputs if isinstance(inputs, str) else json.dumps(inputs)
        rev = self.etcd_retry(lambda: self.etcd.put(f"{self.prefix}/agents/{self.host(i).ip}/collect",
                                                    body.encode()), "put collect list")
        if not isinstance(inputs, str):
            self.lists[i] = inputs
        return rev

    def wait(self, cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
        return wait_for(cond, timeout, what, interval, error=Failure)

    # ================================================================== setup
    def setup(self) -> None:
        from confluent_kafka.admin import AdminClient, NewTopic
        from elasticsearch import Elasticsearch

        from integration.agents import agent_ini
        from logferry.etcd import EtcdClient

        cfg = self.cfg
        self.home.mkdir(parents=True, exist_ok=True)
        self.etcd = EtcdClient(self.ep.etcd, timeout_s=5)
        # A node that failed is tried again after at most 1 s (the client's default pauses it up
        # to 30 s, which would show as slow recovery after the Elasticsearch restart).
        self.es = Elasticsearch(self.ep.es, request_timeout=30, max_dead_node_backoff=1.0)
        logging.getLogger("elastic_transport").setLevel(logging.CRITICAL)
        quiet = logging.getLogger("chaos.kafka")
        quiet.addHandler(logging.NullHandler())
        quiet.propagate = False
        self.admin = AdminClient({"bootstrap.servers": self.ep.kafka, "logger": quiet})
        n = cfg.agents
        extra_host = n - 1
        names = [f"h{i}" for i in range(n)] + ["h1b" if n > 1 else "h0b", "x"]
        topics = [self.topic(x) for x in names]
        futs = self.admin.create_topics([NewTopic(t, num_partitions=cfg.partitions, replication_factor=1)
                                         for t in topics])
        for f in futs.values():
            f.result(60)
        self.topics = topics
        self.etcd_retry(lambda: self.etcd.put(f"{self.prefix}/transfer/config", json.dumps({
            "topics": topics, "index": "logferry-{topic}-{yyyy.MM.dd}", "flush_interval_s": 1.0,
            "dead_letter_topic": self.topic("dead-letter"),
        }).encode()), "put transfer config")

        # files: a (rename away), b (copytruncate), c (rename, still matching); x (extra input, later)
        files_per_host = 3
        total_files = n * files_per_host + 1
        self.rotate_every = cfg.rotate_every or max(200, cfg.lines // total_files // 5)
        for i in range(n):
            logs = self.home / "hosts" / f"h{i}" / "logs"
            logs.mkdir(parents=True)
            for letter, rot in (("a", "rename"), ("b", "copytruncate"), ("c", "rename_matching")):
                self.ledger.add(LogFile(i, letter, logs / f"{letter}.log", rot))
            self.guards[i] = threading.RLock()
        extra = self.home / "hosts" / f"h{extra_host}" / "extra"
        extra.mkdir(parents=True)
        self.ledger.add(LogFile(extra_host, "x", extra / "x.log", None))
        self.collected = {t for t in self.ledger.files if not t.endswith("x")}

        for i in range(n):
            self.put_list(i, [self.base_input(i, self.topic(f"h{i}"))])
            h = self.host(i)
            home = self.home / f"agent-h{i}"
            ini = agent_ini(etcd=self.ep.etcd, kafka=self.ep.kafka, data_dir=home / "data", prefix=self.prefix,
                            host_ip=h.host_ip_override, extra_agent={"hostname": f"chaos-h{i}"})
            home.mkdir(parents=True)
            (home / "logagent.ini").write_text(ini)
            self.agents[i] = Daemon(f"agent-h{i}", h.wrap([str(VENV_BIN / "logagent"), "--config",
                                                           str(home / "logagent.ini")]), home / "logagent.log")
        for j in range(1, cfg.transfers + 1):
            home = self.home / f"transfer-t{j}"
            home.mkdir(parents=True)
            (home / "logtransfer.ini").write_text("\n".join([
                "[etcd]", f"endpoints = {','.join(self.ep.etcd)}", f"prefix = {self.prefix}", "",
                "[kafka]", f"bootstrap_servers = {self.ep.kafka}",
                f"consumer.session.timeout.ms = {cfg.session_timeout_ms}", "",
                "[transfer]", f"es_hosts = {self.ep.es}", f"id = t{j}", f"group_id = chaos-{self.run_id}",
                f"data_dir = {home / 'data'}", "metrics_address =", "status_interval_s = 1", "",
            ]))
            self.transfers[j] = Daemon(f"transfer-t{j}", [str(VENV_BIN / "logtransfer"), "--config",
                                                          str(home / "logtransfer.ini")], home / "logtransfer.log")

    def base_input(self, i: int, topic: str) -> dict:
        logs = self.home / "hosts" / f"h{i}" / "logs"
        return {"path": f"{logs}/*.log", "topic": topic, "start_at": "beginning"}

    def start_daemons(self) -> None:
        for d in self.transfers.values():
            d.start()
        for d in self.agents.values():
            d.start()
        for i, d in self.agents.items():
            st = self.wait(lambda i=i, d=d: (s := self.agent_status(i)) and s.get("pid") == d.pid and s, 60,
                           f"agent h{i}'s status key")
            if st.get("ip") != self.host(i).ip:
                raise Failure(f"agent h{i} reports ip {st.get('ip')}, expected {self.host(i).ip}")
        for j, d in self.transfers.items():
            self.wait(lambda j=j, d=d: (s := self.transfer_status(j)) and s.get("pid") == d.pid, 60,
                      f"transfer t{j}'s status key")
        self.wait(lambda: sum(len((self.transfer_status(j) or {}).get("assigned_partitions") or [])
                              for j in self.transfers) >= len(self.topics) * self.cfg.partitions, 90,
                  "the transfers to share every partition")

    # ================================================================== background threads
    def thread(self, target: Callable[[], None], name: str, fatal: bool = False) -> None:
        """Run ``target`` in a thread; its failure fails the run (and stops it, if ``fatal``)."""

        def body() -> None:
            try:
                target()
            except Exception as e:
                log.exception("%s failed", name)
                self.anomalies.append(f"{name} thread failed: {type(e).__name__}: {str(e)[:2000]}")
                if fatal:
                    self.stop_evt.set()

        th = threading.Thread(target=body, name=name, daemon=True)
        th.start()
        self._threads.append(th)

    def es_counts(self) -> dict[str, int] | None:
        tags = list(self.ledger.files)
        try:
            resp = self.es.options(request_timeout=10).search(index=self.index_pattern, size=0,
                                  ignore_unavailable=True, allow_no_indices=True,
                                  aggs={"f": {"filters": {"filters": {
                                      t: {"match": {"message": t}} for t in tags}}}})
        except Exception:
            return None
        buckets = resp["aggregations"]["f"]["buckets"] if "aggregations" in resp else {}
        return {t: buckets.get(t, {}).get("doc_count", 0) for t in tags}

    def allowance(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f, g in self.honest:
            out[f.tag] = out.get(f.tag, 0) + g.at_risk
        return out

    def probe(self, now: float) -> None:
        """Every 15 s without a fault in progress: how long until ES holds what is written now."""
        with self._lock:
            if any(fr.recovered_s is None for fr in self.faults) or self.writer.done.is_set():
                return
            pending = [p for p in self.probes if p["latency_s"] is None]
            if pending or now - self._last_probe < 15:
                return
            self._last_probe = now
            targets = {t: n for t, n in self.ledger.written_by_tag().items() if t in self.collected}
            self.probes.append({"at_s": round(now, 1), "latency_s": None, "t0": time.monotonic(),
                                "targets": targets})

    def monitor(self) -> None:
        last_timeline = -10.0
        stack = self.ep.stack
        while not self.stop_evt.is_set():
            t0 = time.monotonic()
            for d in [*self.agents.values(), *self.transfers.values()]:
                d.sample()
                crash = d.check_crash()
                if crash is not None:
                    self.crashes.append({"daemon": d.name, "at_s": round(self.t(), 1), "code": crash.code,
                                         "log_tail": crash.log_tail})
                    self.note(f"UNEXPECTED EXIT of {d.name} (code {crash.code}); restarting it")
                    with contextlib.suppress(Exception):
                        d.start()
            for name, rec in stack.procs.items():
                if rec.alive():
                    rss, hwm = proc_mem_kb(rec.pid)
                    self.server_peaks[name] = max(self.server_peaks.get(name, 0), rss, hwm)
            counts = self.es_counts()
            if counts is not None:
                now = self.t()
                with self._lock:
                    self.counts, self.counts_at = counts, now
                    allow = self.allowance()
                    for fr in self.faults:
                        if fr.recovered_s is None and fr.restored is not None and all(
                            counts.get(tag, 0) >= n - allow.get(tag, 0) for tag, n in fr.targets.items()
                        ):
                            fr.recovered_s = round(max(0.0, time.monotonic() - fr.restored), 1)
                    for pr in self.probes:
                        if pr["latency_s"] is None and all(
                            counts.get(tag, 0) >= n - allow.get(tag, 0) for tag, n in pr["targets"].items()
                        ):
                            pr["latency_s"] = round(time.monotonic() - pr["t0"], 1)
                self.probe(now)
                if now - last_timeline >= 5:
                    last_timeline = now
                    self.timeline.append({"t": round(now, 1), "written": self.ledger.written,
                                          "indexed": sum(counts.values())})
            self.stop_evt.wait(max(0.0, 1.0 - (time.monotonic() - t0)))

    # ------------------------------------------------------------------ rotations
    def rotator(self) -> None:
        files = [f for f in self.ledger.files.values() if f.rotation]
        while not self.stop_evt.is_set() and not (self.writer.done.is_set() and self.schedule_done.is_set()):
            for f in files:
                if self.stop_evt.is_set():
                    return
                honest = self.honest_requests.get(f.tag)
                if honest is not None and not honest.is_set():
                    self.rotate(f, honest=True)
                    honest.set()
                elif (f.since_rotation >= self.rotate_every and self.writer.progress < 0.97
                      and not self.writer.done.is_set()):
                    self.rotate(f)
            self.stop_evt.wait(0.2)

    def rotate(self, f: LogFile, honest: bool = False) -> None:
        guard = self.guards[f.host]
        with guard:
            t0 = time.monotonic()
            entry: dict[str, Any] = {"file": f.tag, "kind": f.rotation, "at_s": round(self.t(), 1)}
            if honest:
                with contextlib.suppress(Failure):  # a just-restarted agent may not list the file yet
                    self.wait(lambda: self.acked_offset(f) is not None, 10, f"{f.tag} in the agent's status")
                with f.lock:
                    size = f.size()
                    acked = self.acked_offset(f) or 0
                    at_risk = max(0, size - acked) // LINE_BYTES
                    g = f.rotate_copytruncate(honest=True, at_risk=at_risk)
                self.honest.append((f, g))
                entry |= {"kind": "copytruncate_honest", "lines_in_generation": g.end - g.first,
                          "unacknowledged_at_truncate": at_risk}
            elif f.rotation == "rename":
                with f.lock:
                    g, to = f.rotate_rename()
                settled = self.wait_settled(f, to)
                entry |= {"generation_lines": g.end - g.first, "settled_s": settled}
            elif f.rotation == "rename_matching":
                with f.lock:
                    g, _to = f.rotate_rename_matching()
                entry |= {"generation_lines": g.end - g.first}
            elif f.rotation == "copytruncate":
                with f.lock:
                    if not self.wait_caught_up(f, timeout=240):
                        self.anomalies.append(f"{f.tag}: the agent did not catch up within 240 s; "
                                              "copytruncate skipped")
                        f.since_rotation = 0
                        return
                    g = f.rotate_copytruncate()
                entry |= {"generation_lines": g.end - g.first}
            entry["took_s"] = round(time.monotonic() - t0, 1)
            self.rotation_log.append(entry)

    def acked_offset(self, f: LogFile, after: datetime | None = None) -> int | None:
        """``f``'s acknowledged offset in its agent's status (only a status made after ``after``)."""
        st = self.agent_status(f.host) or {}
        if after is not None and not made_after(st, after):
            return None
        for e in st.get("files", []):
            if e.get("path") == str(f.path):
                return e.get("offset")
        return None

    def wait_caught_up(self, f: LogFile, timeout: float) -> bool:
        """The writer is paused on ``f``: wait until the agent acknowledged all of it (status key).

        Only a status made after the pause counts (integration.agents.made_after says why).
        """
        began = datetime.now(UTC).replace(microsecond=0)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.stop_evt.is_set():
            if self.acked_offset(f, after=began) == f.size():
                return True
            time.sleep(0.2)
        return False

    def wait_settled(self, f: LogFile, renamed: Path) -> float | None:
        """After a rename away from the glob: wait until the agent's registry (on disk) has every
        byte of the renamed file acknowledged. Until then a kill -9 of this agent would lose the
        file's unread tail (it is no longer matched after a restart): the host's guard is held.
        """
        from agent.fingerprint import identity
        from agent.registry import Registry

        t0 = time.monotonic()
        ident = identity(str(renamed))
        size = renamed.stat().st_size
        reg_path = self.home / f"agent-h{f.host}" / "data" / "registry.json"
        deadline = t0 + 300
        while time.monotonic() < deadline and not self.stop_evt.is_set():
            try:
                reg = Registry(reg_path)
                reg.load()
                e = reg.get(ident)
                if e is not None and e.offset >= size:
                    return round(time.monotonic() - t0, 1)
            except Exception:
                pass
            time.sleep(0.3)
        self.anomalies.append(f"{f.tag}: rotated file {renamed.name} not fully acknowledged after 300 s")
        return None

    # ================================================================== the schedule
    def begin_fault(self, step: Step, action: str, target: str) -> FaultRecord:
        with self._lock:
            fr = FaultRecord(step=step.describe(), action=action, target=target,
                             progress=round(self.writer.progress, 3), at_s=round(self.t(), 1), t0=time.monotonic())
            self.faults.append(fr)
        self.note(f"fault: {fr.step} at {fr.progress:.0%} of the lines")
        return fr

    def restored(self, fr: FaultRecord, targets: dict[str, int] | None = None) -> None:
        """The service is back: from now on, wait for ES to hold every line written so far."""
        with self._lock:
            fr.targets = targets if targets is not None else {
                tag: n for tag, n in self.ledger.written_by_tag().items() if tag in self.collected}
            fr.restored = time.monotonic()
            fr.down_s = round(fr.restored - fr.t0, 1)

    def run_schedule(self) -> None:
        try:
            self._run_schedule()
        finally:
            self.schedule_done.set()

    def _run_schedule(self) -> None:
        steps = SCHEDULES[self.cfg.schedule](self.cfg.agents)
        settle = self.cfg.settle_timeout_s
        for step in steps:
            self.writer.gate = int(step.at * self.cfg.lines)  # the writer waits there for this step
            while self.writer.written < self.writer.gate and not self.writer.done.is_set():
                if self.stop_evt.wait(0.1):
                    return
            # Faults one at a time: the previous one's recovery is measured alone (up to a limit).
            deadline = time.monotonic() + settle
            while (any(fr.recovered_s is None for fr in self.faults) and time.monotonic() < deadline
                   and not self.stop_evt.is_set()):
                time.sleep(0.2)
            self.writer.gate = None  # lines keep coming during the fault
            getattr(self, f"do_{step.action}")(step, **step.args)

    def _restart_agent(self, i: int, fr: FaultRecord) -> None:
        d = self.agents[i]
        d.start()
        t_start = time.monotonic()
        with contextlib.suppress(Failure):
            self.wait(lambda: (self.agent_status(i) or {}).get("pid") == d.pid, 60, f"agent h{i} status")
            fr.ready_s = round(time.monotonic() - t_start, 1)

    def _restart_transfer(self, j: int, fr: FaultRecord) -> None:
        d = self.transfers[j]
        d.start()
        t_start = time.monotonic()
        with contextlib.suppress(Failure):
            self.wait(lambda: (self.transfer_status(j) or {}).get("pid") == d.pid, 60, f"transfer t{j} status")
            fr.ready_s = round(time.monotonic() - t_start, 1)

    def do_kill_agent(self, step: Step, host: int, down_s: float) -> None:
        with self.guards[host]:
            fr = self.begin_fault(step, "kill -9 agent", f"agent-h{host}")
            self.agents[host].kill9()
            time.sleep(down_s)
            self.restored(fr)
            self._restart_agent(host, fr)

    def do_kill_transfer(self, step: Step, transfer: int, down_s: float) -> None:
        fr = self.begin_fault(step, "kill -9 transfer", f"transfer-t{transfer}")
        self.transfers[transfer].kill9()
        time.sleep(down_s)
        self.restored(fr)
        self._restart_transfer(transfer, fr)

    def do_kill_agent_transfer(self, step: Step, host: int, transfer: int, down_s: float) -> None:
        with self.guards[host]:
            fr = self.begin_fault(step, "kill -9 agent and transfer", f"agent-h{host}+transfer-t{transfer}")
            self.agents[host].kill9()
            self.transfers[transfer].kill9()
            time.sleep(down_s)
            self.restored(fr)
            self._restart_transfer(transfer, fr)
            self._restart_agent(host, fr)

    def start_service(self, name: str, timeout_s: float, attempts: int = 5) -> int:
        """Start a stopped server; try again if it exits during start-up. Returns the attempts made.

        After a kill -9, Kafka (ZooKeeper mode) finds its own ephemeral registration still there
        until ZooKeeper expires the dead session (18 s) and exits with NodeExists: a supervisor
        such as systemd (Restart=on-failure) starts it again, and so do we.
        """
        from integration.stack import StackError

        for n in range(1, attempts + 1):
            try:
                self.ep.stack.start_service(name, timeout_s=timeout_s)
                return n
            except StackError as e:
                if n == attempts:
                    raise
                self.note(f"{name} did not start ({start_failure(str(e))}); starting it again in 10 s")
                time.sleep(10)
        return attempts

    def do_restart_kafka(self, step: Step, kill: bool = False) -> None:
        fr = self.begin_fault(step, "kafka broker " + ("kill -9 + start" if kill else "restart"), "kafka")
        self.ep.stack.stop_service("kafka", kill=kill)
        n = self.start_service("kafka", timeout_s=180)
        if n > 1:
            fr.note = f"started at attempt {n} (its old ZooKeeper session had to expire)"
        self.restored(fr)

    def do_stop_es(self, step: Step, down_s: float) -> None:
        fr = self.begin_fault(step, "elasticsearch stop + start", "es1")
        self.ep.stack.stop_service("es")
        time.sleep(down_s)
        self.start_service("es", timeout_s=240)
        self.restored(fr)

    def _etcd_kill(self, step: Step, leader: bool, down_s: float) -> None:
        st = self.ep.stack
        current = self.etcd_retry(lambda: st.etcd_leader() or (_ for _ in ()).throw(RuntimeError("no leader")),
                                  "leader")
        victim = current if leader else next(n for n in st.etcd_names if n != current)
        fr = self.begin_fault(step, "kill -9 etcd " + ("leader" if leader else "member"), victim)
        st.stop_service(victim, kill=True)
        if leader:
            t0 = time.monotonic()
            with contextlib.suppress(Failure):
                new = self.wait(lambda: (n := st.etcd_leader()) and n != victim and n, 30, "a new etcd leader",
                                interval=0.1)
                fr.note = f"new leader {new} after {time.monotonic() - t0:.1f}s"
        # the cluster must keep serving with one member down: a write through our client
        t0 = time.monotonic()
        self.etcd_retry(lambda: self.etcd.put(f"{self.prefix}/chaos/probe", str(time.time()).encode()), "probe", 60)
        fr.note = (fr.note + "; " if fr.note else "") + f"writes served again after {time.monotonic() - t0:.1f}s"
        time.sleep(down_s)
        self.start_service(victim, timeout_s=120)
        self.restored(fr)

    def do_kill_etcd_member(self, step: Step, down_s: float) -> None:
        self._etcd_kill(step, False, down_s)

    def do_kill_etcd_leader(self, step: Step, down_s: float) -> None:
        self._etcd_kill(step, True, down_s)

    def _wait_applied(self, i: int, rev: int, timeout: float = 60) -> float | None:
        t0 = time.monotonic()
        try:
            self.wait(lambda: ((self.agent_status(i) or {}).get("config") or {}).get("revision", 0) >= rev,
                      timeout, f"agent h{i} to apply revision {rev}")
        except Failure:
            self.anomalies.append(f"agent h{i} did not apply collect-list revision {rev} within {timeout:.0f}s")
            return None
        return round(time.monotonic() - t0, 1)

    def do_set_topic(self, step: Step, host: int) -> None:
        new_topic = self.topic("h1b" if self.cfg.agents > 1 else "h0b")
        inputs = [dict(x) for x in self.lists[host]]
        inputs[0]["topic"] = new_topic
        t = self.t()
        rev = self.put_list(host, inputs)
        applied = self._wait_applied(host, rev)
        self.config_changes.append({"step": step.describe(), "at_s": round(t, 1), "host": f"h{host}",
                                    "change": f"input 1 now to topic {new_topic}", "applied_s": applied})
        self.note(f"collect list of h{host}: topic -> {new_topic}, applied in {applied}s")

    def do_add_input(self, step: Step, host: int) -> None:
        xf = next(f for f in self.ledger.files.values() if f.letter == "x")
        inputs = [*self.lists[host], {"path": f"{xf.path.parent}/*.log", "topic": self.topic("x"),
                                      "start_at": "beginning"}]
        with self._lock:
            fr = FaultRecord(step=step.describe(), action="collect list: new input", target=f"agent-h{host}",
                             progress=round(self.writer.progress, 3), at_s=round(self.t(), 1), t0=time.monotonic(),
                             note=f"backlog of {xf.seq} lines in {xf.path.name}")
            self.faults.append(fr)
        rev = self.put_list(host, inputs)
        applied = self._wait_applied(host, rev)
        with self._lock:
            self.collected.add(xf.tag)
        self.restored(fr, {xf.tag: xf.seq})
        self.config_changes.append({"step": step.describe(), "at_s": fr.at_s, "host": f"h{host}",
                                    "change": f"new input {xf.path.parent}/*.log", "applied_s": applied})
        self.note(f"collect list of h{host}: new input for {xf.path.parent}, applied in {applied}s")

    def do_bad_list(self, step: Step, host: int, hold_s: float) -> None:
        good = self.lists[host]
        bad = [dict(good[0], max_line_bytes="1MB"), {"paths": "/var/log/*.log", "topic": 7}]
        h0 = [f.tag for f in self.ledger.files.values() if f.host == host and f.tag in self.collected]
        before = sum(self.counts.get(t, 0) for t in h0)
        written_before = sum(self.ledger.files[t].seq for t in h0)
        t = self.t()
        rev = self.put_list(host, json.dumps(bad))
        result: dict[str, Any] = {"step": step.describe(), "at_s": round(t, 1), "host": f"h{host}",
                                  "change": "bad list (max_line_bytes as a string, unknown key, topic a number)"}
        try:
            st = self.wait(lambda: (s := self.agent_status(host)) and (s.get("config") or {}).get(
                "rejected_revision") == rev and s, 30, "the bad list to be refused")
            result["refused_with"] = st["config"]["error"]
        except Failure as e:
            self.anomalies.append(f"bad collect list for h{host} was not reported as refused: {e}")
        time.sleep(hold_s)
        after = sum(self.counts.get(t, 0) for t in h0)
        result["lines_indexed_meanwhile"] = after - before
        if after <= before and written_before > before:
            self.anomalies.append(f"h{host}: no line of it indexed while a bad collect list was in etcd")
        rev = self.put_list(host, good)
        result["good_list_applied_s"] = self._wait_applied(host, rev)
        self.config_changes.append(result)
        self.note(f"bad collect list for h{host}: {result.get('refused_with', '?')[:100]}")

    def do_honest_copytruncate(self, step: Step, host: int) -> None:
        f = self.ledger.files[f"h{host}b"]
        ev = threading.Event()
        self.honest_requests[f.tag] = ev
        self.note(f"honest copytruncate of {f.path} requested")
        ev.wait(300)

    # ================================================================== drain and count
    def drain(self) -> float:
        """Wait until every file's count is complete and stable; returns seconds waited."""
        t0 = time.monotonic()
        stable_since = None
        last = None
        while time.monotonic() - t0 < self.cfg.drain_timeout_s:
            with self._lock:
                counts = dict(self.counts)
                at = self.counts_at
            allow = self.allowance()
            written = self.ledger.written_by_tag()
            complete = all(counts.get(tag, 0) >= n - allow.get(tag, 0) for tag, n in written.items())
            if counts != last:
                last, stable_since = counts, time.monotonic()
            if complete and time.monotonic() - stable_since >= 5 and self.t() - at < 2:
                break
            time.sleep(0.5)
        else:
            self.anomalies.append(f"drain did not complete within {self.cfg.drain_timeout_s:.0f}s")
        return time.monotonic() - t0

    def scan_es(self) -> dict[str, Any]:
        """Read every document back and account for every line."""
        es = self.es
        es.indices.refresh(index=self.index_pattern, ignore_unavailable=True, allow_no_indices=True)
        files = self.ledger.files
        seen = {tag: bytearray(f.seq) for tag, f in files.items()}
        paths = {tag: self.allowed_paths(f) for tag, f in files.items()}
        gen_of = {tag: self.gen_lookup(f) for tag, f in files.items()}
        ips = {tag: self.host(f.host).ip for tag, f in files.items()}
        docs = unexpected = wrong_origin = 0
        truncated_flags = 0
        examples: dict[str, list] = {"unexpected": [], "wrong_origin": []}
        pit = es.open_point_in_time(index=self.index_pattern, keep_alive="5m")["id"]
        after = None
        try:
            while True:
                kw: dict[str, Any] = {"size": 10000, "pit": {"id": pit, "keep_alive": "5m"},
                                      "sort": [{"_shard_doc": "asc"}],
                                      "source": ["message", "host.ip", "log.file.path", "log.flags"],
                                      "track_total_hits": False}
                if after is not None:
                    kw["search_after"] = after
                resp = es.options(request_timeout=120).search(**kw)
                hits = resp["hits"]["hits"]
                if not hits:
                    break
                pit = resp.get("pit_id", pit)
                after = hits[-1]["sort"]
                for hit in hits:
                    docs += 1
                    src = hit["_source"]
                    msg = src.get("message", "")
                    parts = msg.split(" ", 3)
                    tag = parts[0] if parts else ""
                    try:
                        seq = int(parts[1])
                        gen = int(parts[2][1:])
                    except (IndexError, ValueError):
                        tag = ""
                    if tag not in seen or not 0 <= seq < len(seen[tag]) or gen_of[tag](seq) != gen:
                        unexpected += 1
                        if len(examples["unexpected"]) < 5:
                            examples["unexpected"].append(msg[:120])
                        continue
                    arr = seen[tag]
                    if arr[seq] < 255:
                        arr[seq] += 1
                    host_ip = (src.get("host") or {}).get("ip")
                    path = ((src.get("log") or {}).get("file") or {}).get("path")
                    if host_ip != ips[tag] or path not in paths[tag]:
                        wrong_origin += 1
                        if len(examples["wrong_origin"]) < 5:
                            examples["wrong_origin"].append({"message": msg[:40], "ip": host_ip, "path": path})
                    if "truncated" in ((src.get("log") or {}).get("flags") or []):
                        truncated_flags += 1
        finally:
            with contextlib.suppress(Exception):
                es.close_point_in_time(id=pit)
        honest_ranges = {(f.tag, g.first, g.end) for f, g in self.honest}
        missing = duplicates = 0
        honest_lost: dict[str, Any] = {}
        miss_examples: list[str] = []
        dup_examples: list[str] = []
        for tag, arr in seen.items():
            hr = [(a, b) for (t, a, b) in honest_ranges if t == tag]
            lost_in_honest: list[int] = []
            for seq, c in enumerate(arr):
                if c == 0:
                    if any(a <= seq < b for a, b in hr):
                        lost_in_honest.append(seq)
                    else:
                        missing += 1
                        if len(miss_examples) < 10:
                            miss_examples.append(f"{tag} {seq:09d}")
                elif c > 1:
                    duplicates += c - 1
                    if len(dup_examples) < 10:
                        dup_examples.append(f"{tag} {seq:09d} x{c}")
            for a, b in hr:
                lost = [s for s in lost_in_honest if a <= s < b]
                shipped = [s for s in range(a, b) if arr[s]]
                honest_lost = {
                    "file": tag, "generation_lines": b - a, "lost": len(lost),
                    "unacknowledged_at_truncate": next(g.at_risk for f, g in self.honest if f.tag == tag),
                    "lost_is_tail": not lost or not shipped or min(lost) > max(shipped),
                }
        return {"documents": docs, "missing": missing, "duplicates": duplicates, "unexpected": unexpected,
                "wrong_origin": wrong_origin, "truncated_flags": truncated_flags, "honest": honest_lost,
                "examples": {"missing": miss_examples, "duplicates": dup_examples, **examples}}

    def allowed_paths(self, f: LogFile) -> set[str]:
        out = set(f.paths_seen)
        out.add(str(f.path))
        return out

    def gen_lookup(self, f: LogFile) -> Callable[[int], int]:
        bounds = [(g.first, g.end if g.end >= 0 else f.seq, g.number) for g in f.gens]

        def lookup(seq: int) -> int:
            for a, b, n in bounds:
                if a <= seq < b:
                    return n
            return -1

        return lookup

    # ================================================================== all of it
    def execute(self) -> dict[str, Any]:
        cfg = self.cfg
        self.t_start = time.monotonic()
        started_at = _now_iso()
        self.server_peaks: dict[str, int] = {}
        self.schedule_done = threading.Event()
        report: dict[str, Any] = {}
        try:
            self.setup()
            self.note(f"run {self.run_id}: {cfg.lines:,} lines at {cfg.rate:g}/s into {len(self.ledger.files)} files "
                      f"of {cfg.agents} hosts ({self.hosts.mode}), {cfg.transfers} transfers, schedule "
                      f"{cfg.schedule}, a rotation every {self.rotate_every:,} lines per file; work dir {self.home}")
            self.start_daemons()
            self.note("agents and transfers up")
            self.writer = Writer(self.ledger, cfg.lines, cfg.rate)
            self.thread(self.monitor, "monitor", fatal=True)
            self.writer.start()
            self.thread(self.rotator, "rotator")
            self.thread(self.run_schedule, "schedule")
            while not (self.writer.done.is_set() and self.schedule_done.is_set()):
                if self.stop_evt.wait(1.0):
                    break
                if self.writer.error:
                    raise self.writer.error
            t_written = self.t()
            self.note(f"all {self.ledger.written:,} lines written in {t_written:.0f}s; draining")
            drain_s = self.drain()
            self.note(f"drained in {drain_s:.0f}s; reading every document back")
            t0 = time.monotonic()
            self.stop_evt.set()  # the monitor's count queries stop: the scan has ES to itself
            for th in self._threads:
                th.join(15)
            scan = self.scan_es()
            scan_s = time.monotonic() - t0
            self.stop_daemons()
            report = self.make_report(started_at, t_written, drain_s, scan_s, scan)
        finally:
            self.stop_evt.set()
            self.writer_stop()
            self.shutdown()
        return report

    def writer_stop(self) -> None:
        w = getattr(self, "writer", None)
        if w is not None and w.is_alive():
            w.stop_evt.set()
            w.join(10)

    def stop_daemons(self) -> None:
        """SIGTERM every daemon (the clean path) and note how each one ended."""
        self.clean_stops: dict[str, Any] = {}
        for d in [*self.agents.values(), *self.transfers.values()]:
            if not d.alive():
                continue
            t0 = time.monotonic()
            try:
                code = d.stop(60)
            except Exception as e:
                code = f"{type(e).__name__}: {e}"
            self.clean_stops[d.name] = {"exit_code": code, "took_s": round(time.monotonic() - t0, 1)}
            if code != 0:
                self.anomalies.append(f"{d.name} did not stop cleanly on SIGTERM: exit {code}")

    def shutdown(self) -> None:
        for d in [*self.agents.values(), *self.transfers.values()]:
            with contextlib.suppress(Exception):
                d.stop(30)
        for th in self._threads:
            th.join(15)
        if not self.cfg.keep_indices and self.es is not None:
            with contextlib.suppress(Exception):
                self.es.options(ignore_status=[404]).indices.delete(index=self.index_pattern)
        if self.admin is not None and not self.cfg.keep_indices:
            with contextlib.suppress(Exception):
                for f in self.admin.delete_topics([*getattr(self, "topics", []), self.topic("dead-letter")]).values():
                    with contextlib.suppress(Exception):
                        f.result(30)
        for c in (self.etcd, self.es):
            with contextlib.suppress(Exception):
                if c is not None:
                    c.close()

    def make_report(self, started_at: str, t_written: float, drain_s: float, scan_s: float,
                    scan: dict[str, Any]) -> dict[str, Any]:
        cfg = self.cfg
        honest = scan["honest"]
        failures = []
        if scan["missing"]:
            failures.append(f"{scan['missing']} line(s) missing, e.g. {scan['examples']['missing'][:3]}")
        if scan["duplicates"]:
            failures.append(f"{scan['duplicates']} duplicate(s), e.g. {scan['examples']['duplicates'][:3]}")
        if scan["unexpected"]:
            failures.append(f"{scan['unexpected']} document(s) that are no line written, e.g. "
                            f"{scan['examples']['unexpected'][:3]}")
        if scan["wrong_origin"]:
            failures.append(f"{scan['wrong_origin']} document(s) with a wrong host.ip or path, e.g. "
                            f"{scan['examples']['wrong_origin'][:2]}")
        if honest and (honest["lost"] > honest["unacknowledged_at_truncate"] or not honest["lost_is_tail"]):
            failures.append(f"honest copytruncate lost more than it could have: {honest}")
        for c in self.crashes:
            failures.append(f"{c['daemon']} exited by itself at {c['at_s']}s (code {c['code']})")
        failures += self.anomalies
        for fr in self.faults:
            if fr.recovered_s is None:
                failures.append(f"no recovery measured after {fr.step}")
        peaks = {d.name: round(d.peak_rss_kb / 1024, 1) for d in [*self.agents.values(), *self.transfers.values()]}
        kinds: dict[str, int] = {}
        for r in self.rotation_log:
            kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
        written = self.ledger.written
        report = {
            "run_id": self.run_id,
            "started_at": started_at,
            "passed": not failures,
            "failures": failures,
            "lines_written": written,
            "documents_in_es": scan["documents"],
            "missing": scan["missing"],
            "duplicates": scan["duplicates"],
            "unexpected_documents": scan["unexpected"],
            "wrong_origin": scan["wrong_origin"],
            "copytruncate_honest": honest or None,
            "expected_documents": written - (honest.get("lost", 0) if honest else 0),
            "durations_s": {"total": round(self.t(), 1),
                            "writing": round(self.writer.finished_at - self.writer.started_at, 1),
                            "writing_and_faults": round(t_written, 1),
                            "drain": round(drain_s, 1), "verify": round(scan_s, 1)},
            "config": {"lines": cfg.lines, "rate_lines_per_s": cfg.rate, "agents": cfg.agents,
                       "transfers": cfg.transfers, "files": len(self.ledger.files), "line_bytes": LINE_BYTES,
                       "schedule": cfg.schedule, "rotate_every_lines": self.rotate_every,
                       "hosts": self.hosts.mode, "host_ips": [h.ip for h in self.hosts.hosts],
                       "stack_bind": self.ep.bind, "partitions_per_topic": cfg.partitions,
                       "consumer_session_timeout_ms": cfg.session_timeout_ms,
                       "topics": self.topics, "index_pattern": self.index_pattern, "work_dir": str(self.home)},
            "faults": [{k: v for k, v in asdict(fr).items() if k not in ("t0", "restored", "targets")}
                       for fr in self.faults],
            "baseline_latency_s": baseline_latency(self.probes),
            "config_changes": self.config_changes,
            "rotations": {"count": kinds, "log": self.rotation_log},
            "peak_rss_mb": peaks,
            "servers_peak_rss_mb": {k: round(v / 1024, 1) for k, v in self.server_peaks.items()},
            "daemon_starts": {d.name: d.starts for d in [*self.agents.values(), *self.transfers.values()]},
            "crashes": self.crashes,
            "clean_stops": getattr(self, "clean_stops", {}),
            "timeline": self.timeline,
        }
        if cfg.results is not None:
            cfg.results.parent.mkdir(parents=True, exist_ok=True)
            tmp = cfg.results.with_suffix(".tmp")
            tmp.write_text(json.dumps(report, indent=1) + "\n")
            os.replace(tmp, cfg.results)
        return report


def baseline_latency(probes: list[dict[str, Any]]) -> dict[str, Any]:
    """End-to-end latency with no fault in progress (write -> searchable), from the probes."""
    done = sorted(p["latency_s"] for p in probes if p["latency_s"] is not None)
    if not done:
        return {"probes": 0}
    return {"probes": len(done), "median": done[len(done) // 2], "max": done[-1]}


def summary(report: dict[str, Any]) -> str:
    """The report as a few lines of text."""
    r = report
    lines = [
        f"chaos run {r['run_id']}: {'PASSED' if r['passed'] else 'FAILED'} in {r['durations_s']['total']:.0f}s "
        f"(writing {r['durations_s']['writing']:.0f}s, faults until {r['durations_s']['writing_and_faults']:.0f}s, "
        f"drain {r['durations_s']['drain']:.0f}s, "
        f"verify {r['durations_s']['verify']:.0f}s)",
        f"  lines written      {r['lines_written']:>10,}",
        f"  documents in ES    {r['documents_in_es']:>10,}",
        f"  missing            {r['missing']:>10,}",
        f"  duplicates         {r['duplicates']:>10,}",
        f"  unexpected / wrong origin  {r['unexpected_documents']} / {r['wrong_origin']}",
    ]
    h = r.get("copytruncate_honest")
    if h:
        lines.append(f"  honest copytruncate of {h['file']}: {h['lost']} line(s) lost of {h['generation_lines']:,} "
                     f"in that generation ({h['unacknowledged_at_truncate']} unacknowledged at truncate; "
                     f"tail only: {h['lost_is_tail']})")
    lines.append(f"  rotations: {r['rotations']['count']}")
    b = r.get("baseline_latency_s") or {}
    if b.get("probes"):
        lines.append(f"  end-to-end latency without faults (write -> searchable): median {b['median']}s, "
                     f"max {b['max']}s over {b['probes']} probes")
    lines.append("  faults (down = fault start -> service back; recovered = service back -> ES holds every line "
                 "written until then):")
    for f in r["faults"]:
        rec = "never" if f["recovered_s"] is None else f"{f['recovered_s']:.1f}s"
        extra = f", ready {f['ready_s']}s" if f.get("ready_s") is not None else ""
        lines.append(f"    {f['at_s']:7.1f}s {f['action']:<30} {f['target']:<28} down {f['down_s']}s{extra}, "
                     f"recovered {rec}{'  (' + f['note'] + ')' if f['note'] else ''}")
    for c in r["config_changes"]:
        lines.append(f"    {c['at_s']:7.1f}s {c['change']} on {c['host']}: applied "
                     f"{c.get('applied_s', c.get('good_list_applied_s'))}s")
    lines.append("  peak RSS MB: " + ", ".join(f"{k} {v}" for k, v in r["peak_rss_mb"].items()))
    lines.append("  servers peak RSS MB: " + ", ".join(f"{k} {v}" for k, v in r["servers_peak_rss_mb"].items()))
    for f in r["failures"]:
        lines.append(f"  FAILURE: {f}")
    return "\n".join(lines)


def workdir_cleanup(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(path)
