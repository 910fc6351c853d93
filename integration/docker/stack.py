"""The card's shape on a Docker engine: 3 etcd members, ZooKeeper + Kafka, Elasticsearch, as containers.

Started with testcontainers (its ``Network``, ``DockerContainer``, container logs), the servers
configured exactly as the native stack configures its processes (``kafka_properties`` and the
readiness checks are shared with ``integration/stack/services.py``). It offers the same
fault-injection calls as the native ``Stack`` — ``stop_service`` (``docker kill``/``stop``),
``start_service``, ``pause_service`` (``docker pause``: the cgroup freezer, as SIGSTOP freezes a
process), ``etcd_leader`` — so the tests that hurt servers run on containers too.

Every host port is chosen before the start and bound explicitly, so a container that is killed and
started again comes back on the same port, as a restarted process does. Without testcontainers'
reaper (it needs an image from Docker Hub), the stack removes its own containers and network in
``down()``; each container carries the label ``org.logferry.stack=<id>``, so ``python -m
integration.docker down-all`` removes what a killed test session left behind.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from integration.stack.procs import free_ports
from integration.stack.services import StackError, etcd_leader, kafka_properties, service_ready

# testcontainers' reaper is an image from Docker Hub; this stack removes its own containers.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

Log = Callable[[str], None]
STACK_LABEL = "org.logferry.stack"


@dataclass
class DockerOptions:
    """What tests read from a stack's options (same names as the native StackOptions)."""

    kraft: bool = False
    bind: str = "127.0.0.1"
    es_nodes: int = 1


@dataclass
class DockerStack:
    images: dict[str, str]
    log: Log = print
    options: DockerOptions = field(default_factory=DockerOptions)
    ports: dict[str, int] = field(default_factory=dict)
    containers: dict[str, object] = field(default_factory=dict)  # name -> testcontainers DockerContainer
    procs: dict = field(default_factory=dict)  # no host processes: chaos's RSS sampling finds none
    stack_id: str = field(default_factory=lambda: secrets.token_hex(4))
    network: object = None
    started_at: float = 0.0

    @property
    def etcd_names(self) -> list[str]:
        return ["etcd1", "etcd2", "etcd3"]

    @property
    def es_names(self) -> list[str]:
        return ["es1"]

    @property
    def service_names(self) -> list[str]:
        return [*self.etcd_names, "zookeeper", "kafka", *self.es_names]

    def resolve(self, name: str) -> list[str]:
        groups = {"etcd": self.etcd_names, "es": self.es_names, "elasticsearch": self.es_names}
        if name in groups:
            return groups[name]
        if name not in self.containers:
            raise StackError(f"no service named {name!r}; known: {', '.join(self.service_names)}, etcd, es")
        return [name]

    def env(self) -> dict[str, str]:
        p, b = self.ports, self.options.bind
        return {
            "ETCD_ENDPOINTS": ",".join(f"{b}:{p[f'{n}_client']}" for n in self.etcd_names),
            "KAFKA_BOOTSTRAP_SERVERS": f"{b}:{p['kafka']}",
            "ZOOKEEPER_CONNECT": f"{b}:{p['zookeeper']}",
            "ES_URL": f"http://{b}:{p['es1_http']}",
            "ES_URLS": f"http://{b}:{p['es1_http']}",
        }

    # ----------------------------------------------------------------- start
    def _container(self, name: str, image: str, port: int, port_name: str):
        """A container on the stack's network, its `port` published on bind:ports[port_name] only."""
        from testcontainers.core.container import DockerContainer

        c = DockerContainer(image).with_network(self.network).with_network_aliases(name)
        # with_bind_ports takes a host port only (docker would listen on every address); the
        # docker API's (address, port) form keeps it on the stack's bind address, like the native stack.
        c.with_bind_ports(port, self.ports[port_name])
        c.ports[str(port)] = (self.options.bind, self.ports[port_name])
        c.with_name(f"logferry-{self.stack_id}-{name}")
        c.with_kwargs(labels={STACK_LABEL: self.stack_id})
        return c

    def up(self) -> None:
        from testcontainers.core.network import Network

        self.started_at = time.monotonic()
        names = [f"{n}_client" for n in self.etcd_names] + ["zookeeper", "kafka", "es1_http"]
        self.ports = dict(zip(names, free_ports(len(names)), strict=True))
        self.network = Network(docker_network_kw={"labels": {STACK_LABEL: self.stack_id}})
        self.network.create()
        b = self.options.bind
        try:
            token = "logferry-" + self.stack_id
            cluster = ",".join(f"{n}=http://{n}:2380" for n in self.etcd_names)
            for n in self.etcd_names:
                c = self._container(n, self.images["etcd"], 2379, f"{n}_client")
                client_url = f"http://{b}:{self.ports[f'{n}_client']}"
                c.with_command(
                    f"etcd --name {n} --data-dir /var/lib/etcd/{n} "
                    f"--listen-client-urls http://0.0.0.0:2379 --advertise-client-urls {client_url} "
                    f"--listen-peer-urls http://0.0.0.0:2380 --initial-advertise-peer-urls http://{n}:2380 "
                    f"--initial-cluster {cluster} --initial-cluster-state new --initial-cluster-token {token} "
                    f"--auto-compaction-retention 1h --quota-backend-bytes {1 << 30}"
                )
                self._start(n, c)
            zk_conf = ["dataDir=/tmp/zookeeper", "clientPort=2181", "tickTime=2000", "maxClientCnxns=0",
                       "admin.enableServer=false", "4lw.commands.whitelist=ruok,srvr,dump,stat,mntr"]
            zk = self._container("zookeeper", self.images["kafka"], 2181, "zookeeper")
            zk.with_env("KAFKA_HEAP_OPTS", "-Xmx256m -Xms128m")
            zk.with_kwargs(labels={STACK_LABEL: self.stack_id}, entrypoint=["sh", "-c", _write_and_exec(
                "/tmp/zookeeper.properties", "/opt/kafka/bin/zookeeper-server-start.sh"), "sh", *zk_conf])
            self._start("zookeeper", zk)
            es = self._container("es1", self.images["elasticsearch"], 9200, "es1_http")
            for k, v in {"discovery.type": "single-node", "xpack.security.enabled": "false",
                         "ES_JAVA_OPTS": "-Xms512m -Xmx512m", "action.destructive_requires_name": "false",
                         "cluster.routing.allocation.disk.threshold_enabled": "false",
                         "node.name": "es1"}.items():
                es.with_env(k, v)
            self._start("es1", es)
            self.wait_ready(["zookeeper"], 90)
            props = kafka_properties("/tmp/kafka-logs") | {
                "broker.id": "0",
                "zookeeper.connect": "zookeeper:2181",
                "zookeeper.connection.timeout.ms": "30000",
                # Clients on the host use the published port; the broker reaches itself by its alias.
                "listeners": "CLIENT://0.0.0.0:9092,BROKER://0.0.0.0:9093",
                "advertised.listeners": f"CLIENT://{b}:{self.ports['kafka']},BROKER://kafka:9093",
                "listener.security.protocol.map": "CLIENT:PLAINTEXT,BROKER:PLAINTEXT",
                "inter.broker.listener.name": "BROKER",
            }
            kafka = self._container("kafka", self.images["kafka"], 9092, "kafka")
            kafka.with_env("KAFKA_HEAP_OPTS", "-Xmx512m -Xms256m")
            kafka.with_kwargs(labels={STACK_LABEL: self.stack_id}, entrypoint=["sh", "-c", _write_and_exec(
                "/tmp/server.properties", "/opt/kafka/bin/kafka-server-start.sh"), "sh",
                *(f"{k}={v}" for k, v in props.items())])
            self._start("kafka", kafka)
            self.wait_ready(self.etcd_names, 90)
            self.wait_ready(["kafka"], 120)
            self.wait_ready(self.es_names, 180)
        except BaseException:
            self.log("start-up failed; removing what was started")
            self.down()
            raise
        self.log(f"containers up in {time.monotonic() - self.started_at:.1f}s (stack {self.stack_id})")

    def _start(self, name: str, c) -> None:
        c.start()
        self.containers[name] = c

    def _docker(self, name: str):
        return self.containers[name].get_wrapped_container()

    def wait_ready(self, names: list[str], timeout_s: float) -> None:
        pending = list(names)
        deadline = time.monotonic() + timeout_s
        while pending:
            for n in list(pending):
                ct = self._docker(n)
                ct.reload()
                if ct.status == "exited":
                    raise StackError(f"container {n} exited during start-up; its last lines:\n{self.logs(n)}")
                if service_ready(n, self.ports, self.options.bind, 1):
                    pending.remove(n)
                    self.log(f"  {n} ready ({time.monotonic() - self.started_at:.1f}s)")
            if pending and time.monotonic() > deadline:
                raise StackError(f"container {pending[0]} did not serve within {timeout_s:.0f}s; its last lines:\n"
                                 f"{self.logs(pending[0])}")
            if pending:
                time.sleep(0.25)

    def logs(self, name: str, lines: int = 30) -> str:
        try:
            out, err = self.containers[name].get_logs()
            text = (out or b"").decode(errors="replace") + (err or b"").decode(errors="replace")
        except Exception as e:  # a removed container has no logs: say so rather than fail again
            return f"(no logs: {e})"
        return "\n".join(text.splitlines()[-lines:])

    def down(self) -> list[str]:
        removed = []
        for n in ["kafka", *self.es_names, "zookeeper", *self.etcd_names]:
            c = self.containers.pop(n, None)
            if c is None:
                continue
            try:
                c.stop(force=True, delete_volume=True)
                removed.append(n)
            except Exception as e:  # already gone: nothing to remove
                self.log(f"removing {n}: {e}")
        if self.network is not None:
            try:
                self.network.remove()
            except Exception as e:
                self.log(f"removing the network: {e}")
            self.network = None
        return removed

    # ----------------------------------------------------------------- faults (same calls as Stack)
    def running(self) -> list[str]:
        out = []
        for n in self.containers:
            ct = self._docker(n)
            ct.reload()
            if ct.status in ("running", "paused"):
                out.append(n)
        return out

    def stop_service(self, name: str, *, kill: bool = False) -> list[str]:
        done = []
        for n in self.resolve(name):
            ct = self._docker(n)
            ct.reload()
            if ct.status == "paused":
                ct.unpause()
            if ct.status in ("running", "paused"):
                if kill:
                    ct.kill()  # SIGKILL, as kill -9 of the native process
                else:
                    ct.stop(timeout=30)
                done.append(n)
        return done

    def start_service(self, name: str, *, wait: bool = True, timeout_s: float = 120) -> list[str]:
        started = []
        for n in self.resolve(name):
            ct = self._docker(n)
            ct.reload()
            if ct.status not in ("running", "paused"):
                ct.start()
                started.append(n)
        if wait and started:
            self.started_at = time.monotonic()
            self.wait_ready(started, timeout_s)
        return started

    def restart_service(self, name: str, *, kill: bool = False) -> list[str]:
        self.stop_service(name, kill=kill)
        return self.start_service(name)

    def pause_service(self, name: str) -> list[str]:
        """docker pause: the cgroup freezer holds every process, as SIGSTOP holds the native one."""
        return self._in_state(name, "running", lambda ct: ct.pause())

    def unpause_service(self, name: str) -> list[str]:
        return self._in_state(name, "paused", lambda ct: ct.unpause())

    def _in_state(self, name: str, state: str, action: Callable[[Any], None]) -> list[str]:
        """Apply `action` to the named containers that are in `state`; their names."""
        done = []
        for n in self.resolve(name):
            ct = self._docker(n)
            ct.reload()
            if ct.status == state:
                action(ct)
                done.append(n)
        return done

    def etcd_leader(self) -> str | None:
        live = set(self.running())
        return etcd_leader([n for n in self.etcd_names if n in live], self.ports, self.options.bind)


def _write_and_exec(path: str, program: str) -> str:
    """A shell line that writes its arguments as a properties file and starts `program` with it.

    Both the official image and the local one get their settings this way, so neither depends on
    what the image's own config file holds.
    """
    return f'printf "%s\\n" "$@" > {path} && exec {program} {path}'


def remove_all(log: Log = print) -> int:
    """Remove every container and network a logferry Docker stack left (a killed session's)."""
    import docker

    client = docker.from_env()
    n = 0
    for ct in client.containers.list(all=True, filters={"label": STACK_LABEL}):
        ct.remove(force=True)
        n += 1
    nets = client.networks.list(filters={"label": STACK_LABEL})
    for net in nets:
        net.remove()
    log(f"removed {n} container(s) and {len(nets)} network(s)")
    return n
