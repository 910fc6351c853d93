"""The real servers of the stack: what command starts each, and how we know it serves.

Every service runs as its own process group with its own data dir and log file under the
work dir, on free loopback ports picked at start. The stack's state (ports, argv, PIDs) is
kept in ``<workdir>/stack.json`` so any later command (status, kill, restart, down) acts on
exactly those processes, and ``stack.env`` / ``stack.env.json`` tell clients where to connect.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import downloads, security
from .procs import ProcRecord, free_ports, spawn, stop, tail

Log = Callable[[str], None]

ETCD_MEMBERS = 3


class StackError(RuntimeError):
    """A service did not come up or a request named something the stack does not have."""


@dataclass
class StackOptions:
    es_nodes: int = 1
    # Brokers on one ZooKeeper: 1 is `kafka` (broker.id 0); N > 1 are kafka1..kafkaN (broker.id i).
    kafka_brokers: int = 1
    kraft: bool = False
    kafka_heap_mb: int = 512
    es_heap_mb: int = 512
    with_es: bool = True
    # The address clients use: etcd's client URLs, Kafka's listener and ES's HTTP bind here.
    # Peer/transport/ZooKeeper ports stay on loopback. Default loopback; `--bind 10.77.0.1`
    # lets the lab's containers reach the stack.
    bind: str = "127.0.0.1"
    # TLS and authentication on every service (integration/stack/security.py; ZooKeeper mode only).
    secure: bool = False
    # Server versions (docs/compatibility.md): Kafka "3" (3.9.2, ZooKeeper unless kraft) or "4"
    # (4.x, KRaft only); search "es8" (8.19), "es9" (9.x, needs a JDK 21+) or "opensearch" (2.19);
    # etcd "3.4" (Debian's) or "3.6" (built from its Go modules).
    kafka: str = "3"
    search: str = "es8"
    etcd: str = "3.4"

    def to_json(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Stack:
    """A running (or recorded) stack under one work dir."""

    workdir: Path
    options: StackOptions = field(default_factory=StackOptions)
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, ProcRecord] = field(default_factory=dict)
    started_at: float = 0.0
    log: Log = print
    # the secured stack's certificates and secrets, while `up` defines the services
    material: security.Material | None = field(default=None, repr=False)

    # ----------------------------------------------------------------- state file
    @property
    def state_file(self) -> Path:
        return self.workdir / "stack.json"

    def save(self) -> None:
        data = {
            "options": self.options.to_json(),
            "ports": self.ports,
            "procs": {n: r.to_json() for n, r in self.procs.items()},
            "started_at": self.started_at,
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(self.state_file)

    @classmethod
    def load(cls, workdir: Path, log: Log = print) -> Stack | None:
        state = Path(workdir) / "stack.json"
        if not state.exists():
            return None
        data = json.loads(state.read_text())
        return cls(
            workdir=Path(workdir),
            options=StackOptions(**data["options"]),
            ports=data["ports"],
            procs={n: ProcRecord(**r) for n, r in data["procs"].items()},
            started_at=data.get("started_at", 0.0),
            log=log,
        )

    # ----------------------------------------------------------------- names
    @property
    def etcd_names(self) -> list[str]:
        return [f"etcd{i}" for i in range(1, ETCD_MEMBERS + 1)]

    @property
    def kafka_names(self) -> list[str]:
        n = self.options.kafka_brokers
        return ["kafka"] if n <= 1 else [f"kafka{i}" for i in range(1, n + 1)]

    @property
    def es_names(self) -> list[str]:
        return [f"es{i}" for i in range(1, self.options.es_nodes + 1)] if self.options.with_es else []

    @property
    def service_names(self) -> list[str]:
        names = [*self.etcd_names]
        if not self.options.kraft:
            names.append("zookeeper")
        names += self.kafka_names
        return names + self.es_names + (["esproxy"] if self.options.secure and self.es_names else [])

    def resolve(self, name: str) -> list[str]:
        """Turn a service or group name (`etcd`, `es`) into member names."""
        groups = {"etcd": self.etcd_names, "es": self.es_names, "elasticsearch": self.es_names,
                  "kafka": self.kafka_names}
        if name in groups:
            return groups[name]
        if name == "esproxy" and "esproxy" not in self.procs:
            raise StackError("no service named 'esproxy': it runs only in a stack started with --secure")
        if name not in self.procs:
            raise StackError(f"no service named {name!r}; known: {', '.join(self.service_names)}, etcd, kafka, es")
        return [name]

    # ----------------------------------------------------------------- endpoints
    def env(self) -> dict[str, str]:
        p = self.ports
        b = self.options.bind
        env = {
            "LOGFERRY_STACK_DIR": str(self.workdir),
            "ETCD_ENDPOINTS": ",".join(f"{b}:{p[f'{n}_client']}" for n in self.etcd_names),
            "KAFKA_BOOTSTRAP_SERVERS": ",".join(f"{b}:{p[n]}" for n in self.kafka_names),
        }
        if not self.options.kraft:
            env["ZOOKEEPER_CONNECT"] = f"127.0.0.1:{p['zookeeper']}"
        if self.es_names:
            env["ES_URL"] = f"http://{b}:{p['es1_http']}"
            env["ES_URLS"] = ",".join(f"http://{b}:{p[f'{n}_http']}" for n in self.es_names)
        o = self.options
        env["LOGFERRY_STACK_VERSIONS"] = f"kafka={o.kafka} search={o.search} etcd={o.etcd}"
        if self.options.secure:
            env |= self._secure_env()
        return env

    def _secure_env(self) -> dict[str, str]:
        """Clients use the secured endpoints; the plain ones stay for the stack's own admin."""
        p, b = self.ports, self.options.bind
        env = {
            "ETCD_ENDPOINTS": ",".join(f"https://{b}:{p[f'{n}_client']}" for n in self.etcd_names),
            "KAFKA_BOOTSTRAP_SERVERS": f"{b}:{p['kafka']}",
            "KAFKA_ADMIN_BOOTSTRAP_SERVERS": f"127.0.0.1:{p['kafka_plain']}",
        }
        for kind in security.BAD_KINDS:
            env[f"KAFKA_BAD_{kind.upper()}"] = f"{b}:{p[f'kafka_bad_{kind}']}"
        if self.es_names:
            env["ES_DIRECT_URL"] = f"http://127.0.0.1:{p['es1_http']}"
            env["ES_URL"] = env["ES_URLS"] = f"https://{b}:{p['esproxy']}"
            for kind in security.BAD_KINDS:
                env[f"ES_BAD_{kind.upper()}"] = f"https://{b}:{p[f'esproxy_bad_{kind}']}"
        return env | security.Material.load(self.workdir).env()

    def write_env(self) -> None:
        env = self.env()
        (self.workdir / "stack.env").write_text(
            "# written by `python -m integration.stack up`; source it: . .stack/stack.env\n"
            + "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
        )
        (self.workdir / "stack.env.json").write_text(json.dumps(env, indent=2) + "\n")
        if self.options.secure:  # it holds the secured stack's passwords
            for f in ("stack.env", "stack.env.json"):
                (self.workdir / f).chmod(0o600)

    # ----------------------------------------------------------------- definitions
    def _allocate_ports(self) -> None:
        names = [f"{n}_{k}" for n in self.etcd_names for k in ("client", "peer")]
        names += [*self.kafka_names, "kafka_controller", "zookeeper"]
        names += [f"{n}_{k}" for n in self.es_names for k in ("http", "transport")]
        if self.options.secure:
            names += ["kafka_plain", "esproxy"]
            names += [f"{s}_bad_{k}" for s in ("kafka", "esproxy") for k in security.BAD_KINDS]
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))

    def _define_etcd(self, etcd_bin: str) -> None:
        p = self.ports
        cluster = ",".join(f"{n}=http://127.0.0.1:{p[f'{n}_peer']}" for n in self.etcd_names)
        token = "logferry-" + secrets.token_hex(4)
        for n in self.etcd_names:
            data = self.workdir / n
            client = f"{'https' if self.options.secure else 'http'}://{self.options.bind}:{p[f'{n}_client']}"
            peer = f"http://127.0.0.1:{p[f'{n}_peer']}"
            self.procs[n] = ProcRecord(
                name=n,
                argv=[
                    etcd_bin, "--name", n, "--data-dir", str(data / "data"),
                    "--listen-client-urls", client, "--advertise-client-urls", client,
                    "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                    "--initial-cluster", cluster, "--initial-cluster-state", "new",
                    "--initial-cluster-token", token, "--logger", "zap",
                    "--log-outputs", "stderr", "--auto-compaction-retention", "1h",
                    "--quota-backend-bytes", str(1 << 30),
                    *(security.etcd_tls_args(self.material) if self.options.secure else []),
                ],
                log=str(data / "etcd.log"),
                cwd=str(data),
            )
            data.mkdir(parents=True, exist_ok=True)

    def _java_opts(self, heap_mb: int, logdir: Path) -> list[str]:
        return [
            f"-Xms{heap_mb // 2}m", f"-Xmx{heap_mb}m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", "-Djava.net.preferIPv4Stack=true",
            f"-Djava.io.tmpdir={logdir}",
        ]

    def _define_kafka(self, java: str, lib: Path) -> None:
        p = self.ports
        cp = str(lib / "*")
        log4j = self.workdir / "log4j.properties"
        log4j.write_text(
            "log4j.rootLogger=INFO, stdout\n"
            "log4j.appender.stdout=org.apache.log4j.ConsoleAppender\n"
            "log4j.appender.stdout.layout=org.apache.log4j.PatternLayout\n"
            "log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n\n"
            "log4j.logger.kafka.request.logger=WARN\nlog4j.logger.state.change.logger=WARN\n"
            "log4j.logger.org.apache.zookeeper=WARN\nlog4j.logger.kafka.log.LogCleaner=WARN\n"
        )
        common_jvm = [f"-Dlog4j.configuration=file:{log4j}"]
        if self.options.kafka == "4":  # Kafka 4 logs with log4j2
            log4j2 = self.workdir / "log4j2.properties"
            log4j2.write_text(
                "status = error\nappender.console.type = Console\nappender.console.name = stdout\n"
                "appender.console.layout.type = PatternLayout\n"
                "appender.console.layout.pattern = [%d] %p %m (%c)%n\n"
                "rootLogger.level = info\nrootLogger.appenderRef.console.ref = stdout\n"
                "logger.req.name = kafka.request.logger\nlogger.req.level = warn\n"
                "logger.state.name = state.change.logger\nlogger.state.level = warn\n"
            )
            common_jvm = [f"-Dlog4j2.configurationFile={log4j2}"]
        if not self.options.kraft:
            zdir = self.workdir / "zookeeper"
            zdir.mkdir(parents=True, exist_ok=True)
            (zdir / "zoo.cfg").write_text(
                f"dataDir={zdir / 'data'}\nclientPort={p['zookeeper']}\nclientPortAddress=127.0.0.1\n"
                "tickTime=2000\nmaxClientCnxns=0\nadmin.enableServer=false\n"
                "4lw.commands.whitelist=ruok,srvr,dump,stat,mntr\n"
            )
            self.procs["zookeeper"] = ProcRecord(
                name="zookeeper",
                argv=[java, *self._java_opts(256, zdir), *common_jvm, "-cp", cp,
                      "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(zdir / "zoo.cfg")],
                log=str(zdir / "zookeeper.log"),
                cwd=str(zdir),
            )
        for i, name in enumerate(self.kafka_names):
            self._define_broker(name, i + 1 if len(self.kafka_names) > 1 else 0, java, cp, common_jvm)

    def _define_broker(self, name: str, broker_id: int, java: str, cp: str, common_jvm: list[str]) -> None:
        """One broker with its own port and data dir; several share the ZooKeeper (see kafka_names)."""
        p = self.ports
        kdir = self.workdir / name
        kdir.mkdir(parents=True, exist_ok=True)
        props = kafka_properties(str(kdir / "data"))
        if len(self.kafka_names) > 1:
            # Internal topics replicated like the test topics: a dead broker must not take the
            # consumer groups' offsets with it.
            rf = str(min(3, len(self.kafka_names)))
            props |= {"offsets.topic.replication.factor": rf, "transaction.state.log.replication.factor": rf}
        if self.options.kraft:
            props |= {
                "process.roles": "broker,controller",
                "node.id": "1",
                "controller.quorum.voters": f"1@127.0.0.1:{p['kafka_controller']}",
                "listeners": f"PLAINTEXT://{self.options.bind}:{p['kafka']},"
                             f"CONTROLLER://127.0.0.1:{p['kafka_controller']}",
                "advertised.listeners": f"PLAINTEXT://{self.options.bind}:{p['kafka']}",
                "controller.listener.names": "CONTROLLER",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            }
        else:
            props |= {
                "broker.id": str(broker_id),
                "listeners": f"PLAINTEXT://{self.options.bind}:{p[name]}",
                "zookeeper.connect": f"127.0.0.1:{p['zookeeper']}",
                "zookeeper.connection.timeout.ms": "30000",
            }
        if self.options.secure:
            props |= security.kafka_listener_props(self.material, self.options.bind, p)
            self._kafka_admin_cmd = (java, [*common_jvm, "-Xmx256m"], cp)
        (kdir / "server.properties").write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self.procs[name] = ProcRecord(
            name=name,
            argv=[java, *self._java_opts(self.options.kafka_heap_mb, kdir), *common_jvm, "-cp", cp,
                  "kafka.Kafka", str(kdir / "server.properties")],
            log=str(kdir / "kafka.log"),
            cwd=str(kdir),
        )
        if self.options.kraft:
            # KRaft needs its log dir formatted with a cluster id before the first start.
            import subprocess

            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            subprocess.run(
                [java, *common_jvm, "-cp", cp, "kafka.tools.StorageTool", "format", "-t", cluster_id,
                 "-c", str(kdir / "server.properties")],
                check=True, capture_output=True,
            )

    def _define_es(self) -> None:
        from . import elasticsearch as es

        try:
            if self.options.search == "opensearch":
                from . import opensearch

                runtime = opensearch.prepare(downloads.cache_dir(), self.log)
            elif self.options.search == "es9":
                runtime = es.prepare(downloads.cache_dir(), self.log, es.ES9_VERSION)
            elif self.options.search == "es8":
                runtime = es.prepare(downloads.cache_dir(), self.log)
            else:
                raise StackError(f"--search {self.options.search}: the stack runs es8, es9 or opensearch")
        except RuntimeError as e:  # a missing JDK 21 for ES 9, a failed fetch: one clear line, no traceback
            if isinstance(e, StackError):
                raise
            raise StackError(f"{self.options.search}: {e}") from e
        p = self.ports
        names = self.es_names
        for n in names:
            home = self.workdir / n
            home.mkdir(parents=True, exist_ok=True)
            argv = runtime.node_command(
                node_name=n,
                home_dir=home,
                http_port=p[f"{n}_http"],
                transport_port=p[f"{n}_transport"],
                seed_transport_ports=[p[f"{m}_transport"] for m in names] if len(names) > 1 else [],
                initial_master_nodes=names if len(names) > 1 else [],
                heap_mb=self.options.es_heap_mb,
                # Tests clean up their indices by pattern (it-<unique>*): allow wildcard deletes.
                # Secured: only the TLS proxy in front of ES listens on the clients' address.
                extra_settings={"action.destructive_requires_name": "false",
                                "http.host": "127.0.0.1" if self.options.secure else self.options.bind},
            )
            self.procs[n] = ProcRecord(name=n, argv=argv, log=str(home / "elasticsearch.log"), cwd=str(home))

    # ----------------------------------------------------------------- readiness
    def _ready(self, name: str) -> bool:
        if self.options.secure:
            return security.service_ready(name, self.ports, self.options.bind, len(self.es_names), self.workdir)
        return service_ready(name, self.ports, self.options.bind, len(self.es_names),
                             kafka_brokers=len(self.kafka_names))

    def wait_ready(self, names: list[str], timeout_s: float) -> None:
        """Wait until every named service answers; fail naming the first one that does not."""
        pending = list(names)
        deadline = time.monotonic() + timeout_s
        while pending:
            for n in list(pending):
                rec = self.procs[n]
                if not rec.alive():
                    raise StackError(f"{n} exited during start-up; last lines of {rec.log}:\n{tail(rec.log)}")
                if self._ready(n):
                    pending.remove(n)
                    self.log(f"  {n} ready ({time.monotonic() - self.started_at:.1f}s)")
            if pending and time.monotonic() > deadline:
                n = pending[0]
                raise StackError(
                    f"{n} did not serve within {timeout_s:.0f}s; last lines of {self.procs[n].log}:\n"
                    f"{tail(self.procs[n].log)}"
                )
            if pending:
                time.sleep(0.25)

    # ----------------------------------------------------------------- lifecycle
    def running(self) -> list[str]:
        return [n for n, r in self.procs.items() if r.alive()]

    def up(self) -> None:
        """Install what is missing, start every service, wait until each one serves."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic()
        # A new stack gets new ports: data left by an earlier stack in this work dir names the
        # old peers (etcd would wait forever for them), so it goes. Logs are kept (appended).
        for name in ("etcd1", "etcd2", "etcd3", "zookeeper", *self.kafka_names, "es1", "es2", "es3"):
            shutil.rmtree(self.workdir / name / "data", ignore_errors=True)
        if self.options.kafka == "4" and not self.options.kraft:
            self.options.kraft = True  # Kafka 4 has no ZooKeeper mode
        try:
            etcd_bin = downloads.ensure_etcd_version(self.options.etcd, self.log)
            java = downloads.ensure_java(self.log)
            kafka_lib, _ = downloads.ensure_kafka_version(self.options.kafka, self.log)
        except RuntimeError as e:
            raise StackError(str(e)) from e
        if self.options.kafka_brokers > 1 and (self.options.kraft or self.options.secure):
            raise StackError("--kafka-brokers > 1 runs the brokers on ZooKeeper without TLS; drop --kraft/--secure")
        self._allocate_ports()
        if self.options.secure:
            if self.options.kraft:
                raise StackError("--secure runs Kafka with ZooKeeper (SCRAM users are made there); drop --kraft")
            self.log("making certificates and users for the secured stack (openssl)")
            self.material = security.prepare(self.workdir, self.options.bind)
        self._define_etcd(etcd_bin)
        self._define_kafka(java, kafka_lib)
        if self.es_names:
            self._define_es()
            if self.options.secure:
                security.ensure_nginx(self.log)
                self.procs["esproxy"] = security.nginx_define(self.material, self.options.bind, self.ports,
                                                              self.ports["es1_http"])
        self.started_at = time.monotonic()
        try:
            # Boot in dependency order but overlap the slow JVMs: ES and ZooKeeper start at
            # once with etcd; Kafka needs ZooKeeper (or nothing in KRaft mode).
            first = [*self.etcd_names, *self.es_names] + ([] if self.options.kraft else ["zookeeper"])
            for n in first:
                spawn(self.procs[n])
            self.save()
            if not self.options.kraft:
                self.wait_ready(["zookeeper"], 60)
            if self.options.secure:
                java_bin, jvm, cp = self._kafka_admin_cmd
                security.kafka_add_users(self.material, java_bin, cp, f"127.0.0.1:{self.ports['zookeeper']}", jvm)
            for n in self.kafka_names:
                spawn(self.procs[n])
            self.save()
            self.wait_ready(self.etcd_names, 60)
            if self.options.secure:
                security.etcd_enable_auth(self.material, f"{self.options.bind}:{self.ports['etcd1_client']}")
            self.wait_ready(self.kafka_names, 90)
            self.wait_ready(self.es_names, 150)
            if "esproxy" in self.procs:
                spawn(self.procs["esproxy"])
                self.save()
                self.wait_ready(["esproxy"], 30)
        except BaseException:
            self.save()
            self.log("start-up failed; stopping what was started")
            self.down()
            raise
        self.write_env()
        self.save()

    def down(self) -> list[str]:
        """Stop exactly the recorded processes: Kafka before ZooKeeper, so it can deregister."""
        order = ["esproxy", *self.kafka_names, *self.es_names, "zookeeper", *self.etcd_names]
        stopped = []
        for n in order:
            rec = self.procs.get(n)
            if rec and stop(rec, timeout_s=30):
                stopped.append(n)
        for n, rec in self.procs.items():  # anything not in the usual order
            if n not in order and stop(rec):
                stopped.append(n)
        return stopped

    def stop_service(self, name: str, *, kill: bool = False) -> list[str]:
        done = []
        for n in self.resolve(name):
            if stop(self.procs[n], sig=signal.SIGKILL if kill else signal.SIGTERM):
                done.append(n)
        self.save()
        return done

    def start_service(self, name: str, *, wait: bool = True, timeout_s: float = 120) -> list[str]:
        started = []
        for n in self.resolve(name):
            if not self.procs[n].alive():
                spawn(self.procs[n])
                started.append(n)
        self.save()
        if wait and started:
            self.started_at = time.monotonic()
            self.wait_ready(started, timeout_s)
        return started

    def pause_service(self, name: str) -> list[str]:
        """SIGSTOP the service's processes: it holds its connections but answers nothing.

        Tests use it to *arrange* a state (e.g. the agent waiting at its in-flight cap) instead
        of hoping a machine is slow enough to be caught in it.
        """
        return self._signal_service(name, signal.SIGSTOP)

    def unpause_service(self, name: str) -> list[str]:
        return self._signal_service(name, signal.SIGCONT)

    def _signal_service(self, name: str, sig: signal.Signals) -> list[str]:
        done = []
        for n in self.resolve(name):
            rec = self.procs[n]
            if rec.alive():
                os.kill(rec.pid, sig)
                done.append(n)
        return done

    def restart_service(self, name: str, *, kill: bool = False) -> list[str]:
        self.stop_service(name, kill=kill)
        return self.start_service(name)

    def etcd_leader(self) -> str | None:
        """The member name of the current etcd leader, asked from each live member's HTTP API."""
        live = [n for n in self.etcd_names if self.procs[n].alive()]
        if self.options.secure:
            return security.etcd_leader(self.workdir, live, self.ports, self.options.bind)
        return etcd_leader(live, self.ports, self.options.bind)

    def status_rows(self) -> list[tuple[str, str, str, str]]:
        rows = []
        for n in self.service_names:
            rec = self.procs.get(n)
            alive = bool(rec and rec.alive())
            port = self.ports.get(f"{n}_client") or self.ports.get(f"{n}_http") or self.ports.get(n)
            state = ("serving" if self._ready(n) else "starting/unhealthy") if alive else "stopped"
            host = "127.0.0.1" if n == "zookeeper" else self.options.bind
            rows.append((n, str(rec.pid if rec and alive else "-"), f"{host}:{port}", state))
        return rows


# --------------------------------------------------------------------------- shared by both stacks
def kafka_properties(log_dirs: str) -> dict[str, str]:
    """The broker settings every stack shares (native or containers); listeners are added by each."""
    return {
        "log.dirs": log_dirs,
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "delete.topic.enable": "true",
        "log.retention.hours": "24",
        "log.segment.bytes": str(256 << 20),
        # Retention is checked every second instead of every 5 minutes, so a test that shortens
        # a topic's retention.ms sees its old segments deleted at once (it is read-only: only
        # server.properties sets it). Nothing else changes: topics keep 24 h, and no test
        # runs that long or produces records older than that except on purpose.
        "log.retention.check.interval.ms": "1000",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "socket.request.max.bytes": str(200 << 20),
        "message.max.bytes": str(16 << 20),
        "replica.fetch.max.bytes": str(16 << 20),
    }


def service_ready(name: str, ports: dict[str, int], bind: str, es_nodes: int, *, kafka_brokers: int = 1) -> bool:
    """Whether one service answers as a client needs it to (same checks for processes and containers).

    A broker (``kafka``, ``kafka2``...) is ready when its metadata lists all ``kafka_brokers``
    brokers: a cluster with one still unregistered would refuse a replication factor of N.
    """
    p = ports
    try:
        if name.startswith("etcd"):
            body = _http_get(f"http://{bind}:{p[f'{name}_client']}/health", 1.0)
            return json.loads(body).get("health") == "true"
        if name == "zookeeper":
            return zk_command(p["zookeeper"], "ruok") == "imok"
        if name.startswith("kafka"):
            return len(kafka_broker_ids(f"{bind}:{p[name]}", 2.0)) >= max(1, kafka_brokers)
        if name.startswith("es"):
            body = _http_get(f"http://{bind}:{p[f'{name}_http']}/_cluster/health", 2.0)
            health = json.loads(body)
            return health.get("status") in ("yellow", "green") and health.get("number_of_nodes", 0) >= es_nodes
    except (OSError, ValueError):
        return False
    return False


def etcd_leader(members: list[str], ports: dict[str, int], bind: str) -> str | None:
    """The name of the etcd leader, asked from the given members' HTTP APIs (the first that answers)."""
    for n in members:
        url = f"http://{bind}:{ports[f'{n}_client']}"
        try:
            st = json.loads(_http_post(f"{url}/v3/maintenance/status", b"{}"))
            leader_id = st.get("leader")
            if leader_id and leader_id == st.get("header", {}).get("member_id"):
                return n
            members_list = json.loads(_http_post(f"{url}/v3/cluster/member/list", b"{}")).get("members", [])
        except (OSError, ValueError):
            continue
        for m in members_list:
            if m.get("ID") == leader_id:
                return m.get("name")
    return None


# --------------------------------------------------------------------------- small clients
def _http_get(url: str, timeout: float) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read()


def _http_post(url: str, body: bytes, timeout: float = 2.0) -> bytes:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.read()


def zk_command(port: int, cmd: str, timeout: float = 2.0) -> str:
    """Send one of ZooKeeper's four-letter words and return its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(cmd.encode())
        chunks = []
        with contextlib.suppress(TimeoutError):
            while True:
                data = s.recv(65536)
                if not data:
                    break
                chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace").strip()


def kafka_broker_ids(bootstrap: str, timeout: float) -> list[int]:
    """Broker ids from a metadata request: proof the broker answers the Kafka protocol."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0, "logger": _quiet_logger()})
    try:
        md = admin.list_topics(timeout=timeout)
    except Exception:
        return []
    return sorted(md.brokers)


def _quiet_logger():
    import logging

    lg = logging.getLogger("logferry.stack.kafka")
    lg.addHandler(logging.NullHandler())
    lg.propagate = False
    return lg


def default_workdir() -> Path:
    return Path(os.environ.get("LOGFERRY_STACK_DIR", ".stack")).absolute()
