"""A separate 3-member etcd cluster, only for the etcd client's own tests.

Why not the session stack: these tests stop every member, SIGSTOP one, and compact the
history; doing that to the shared stack would disturb the other tests' daemons. The members
are real Debian etcd processes, like the stack's. The tests rely on two fixtures:
``etcd_endpoints`` (list of "host:port") and ``etcd_cluster`` (kill/stop/start).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.stack.procs import free_ports

ETCD_BIN = "/usr/bin/etcd"
ETCDCTL_BIN = "/usr/bin/etcdctl"


class EtcdCluster:
    """Three etcd processes on 127.0.0.1; members can be killed, stopped and restarted."""

    def __init__(self, base: Path, size: int = 3) -> None:
        self.base = base
        ports = free_ports(2 * size)
        self.names = [f"m{i}" for i in range(size)]
        self.client_ports = ports[:size]
        self.peer_ports = ports[size:]
        self.token = f"logferry-test-{os.getpid()}-{ports[0]}"
        self.initial_cluster = ",".join(
            f"{n}=http://127.0.0.1:{p}" for n, p in zip(self.names, self.peer_ports, strict=True)
        )
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * size

    @property
    def endpoints(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.client_ports]

    def _start(self, i: int) -> None:
        name = self.names[i]
        cport, pport = self.client_ports[i], self.peer_ports[i]
        log = open(self.base / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        self.procs[i] = subprocess.Popen(
            [
                ETCD_BIN,
                "--name", name,
                "--data-dir", str(self.base / f"{name}.data"),
                "--listen-client-urls", f"http://127.0.0.1:{cport}",
                "--advertise-client-urls", f"http://127.0.0.1:{cport}",
                "--listen-peer-urls", f"http://127.0.0.1:{pport}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
                "--initial-cluster", self.initial_cluster,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", self.token,
                "--log-level", "warn",
                "--logger", "zap",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()

    def start_all(self, wait: bool = True) -> None:
        for i, p in enumerate(self.procs):
            if p is None or p.poll() is not None:
                self._start(i)
        if wait:
            self.wait_healthy()

    def start(self, i: int) -> None:
        p = self.procs[i]
        if p is None or p.poll() is not None:
            self._start(i)

    def kill(self, i: int) -> None:
        """kill -9 one member (no goodbye to its peers or clients)."""
        p = self.procs[i]
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait(10)

    def stop_all(self) -> None:
        """SIGTERM the members one after the other.

        All at once takes ~7 s (each member waits for its dying peers); one by one ~0.1 s each.
        """
        t0 = time.monotonic()
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
        print(f"[etcd] stop_all took {time.monotonic() - t0:.2f}s")

    def running(self) -> list[int]:
        return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]

    def wait_healthy(self, timeout: float = 30.0) -> float:
        """Wait until a quorum answers a linearizable read through every running member."""
        t0 = time.monotonic()
        eps = ",".join(f"http://{self.endpoints[i]}" for i in self.running())
        last = ""
        while time.monotonic() - t0 < timeout:
            r = subprocess.run(
                [ETCDCTL_BIN, "--endpoints", eps, "--command-timeout=1s", "endpoint", "health"],
                check=False,
                capture_output=True,
                text=True,
                env={**os.environ, "ETCDCTL_API": "3"},
            )
            if r.returncode == 0:
                return time.monotonic() - t0
            last = r.stdout + r.stderr
            time.sleep(0.1)
        raise RuntimeError(f"etcd cluster not healthy after {timeout}s: {last}")


@pytest.fixture(scope="session")
def etcd_cluster() -> Iterator[EtcdCluster]:
    from integration.stack.downloads import ensure_etcd

    ensure_etcd(print)  # a clean machine: apt-get install etcd-server etcd-client
    base = Path(tempfile.mkdtemp(prefix="etcdwork-"))
    cluster = EtcdCluster(base)
    try:
        t0 = time.monotonic()
        cluster.start_all()
        print(f"\n[etcd] 3-member cluster healthy in {time.monotonic() - t0:.2f}s at {cluster.endpoints}")
        yield cluster
    finally:
        cluster.stop_all()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def etcd_endpoints(etcd_cluster: EtcdCluster) -> list[str]:
    return etcd_cluster.endpoints

