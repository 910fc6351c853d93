"""Hosts for the agents: network namespaces on a bridge, so each agent has its own IP.

The layout (made and removed by the harness; needs root, ``ip`` from iproute2)::

    root namespace:  bridge lfchaos0  10.78.0.1/24   <- the stack binds here (--bind 10.78.0.1)
    namespace lfc-h0: veth peer       10.78.0.10/24  <- logagent of host 0 (its host IP)
    namespace lfc-h1: veth peer       10.78.0.11/24
    ...

An agent started with ``ip netns exec lfc-hN logagent ...`` finds its host IP the way it does
in production: the source address of a UDP "connect" to the first etcd endpoint. No INI
override is involved. ``ip netns exec`` execs the command, so the PID we hold is the agent's.

When namespaces cannot be made (no CAP_NET_ADMIN) or the stack is bound to loopback (the
session stack of ``make test``), :class:`OverrideHosts` gives each agent a distinct
``host_ip`` in its INI instead, and says so in the report.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
from dataclasses import dataclass

BRIDGE = "lfchaos0"
SUBNET = "10.78.0.0/24"
BRIDGE_IP = "10.78.0.1"
NS_PREFIX = "lfc-h"


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


@dataclass
class Host:
    """One simulated host: its IP, and the command prefix that runs a process there."""

    index: int
    ip: str
    netns: str | None  # None: same namespace as the harness, IP given to the agent as host_ip

    @property
    def name(self) -> str:
        return f"h{self.index}"

    def wrap(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *argv] if self.netns else list(argv)

    @property
    def host_ip_override(self) -> str | None:
        return None if self.netns else self.ip


class NetnsHosts:
    """Creates the bridge and one namespace per host; :meth:`teardown` removes exactly those."""

    mode = "netns"

    def __init__(self, count: int, bridge: str = BRIDGE, bridge_ip: str = BRIDGE_IP, subnet: str = SUBNET,
                 first_host: int = 10, tag: str = "lfc") -> None:
        # ``tag`` names the namespaces (<tag>-h<i>) and veths (v<tag><i>): another run (bench.scale
        # beside a chaos run) uses its own tag, bridge and subnet so neither removes the other's.
        self.bridge = bridge
        self.bridge_ip = bridge_ip
        self.tag = tag
        self.net = ipaddress.ip_network(subnet)
        self.hosts = [Host(i, str(self.net.network_address + first_host + i), f"{tag}-h{i}")
                      for i in range(count)]
        self._made_bridge = False
        self._made_ns: list[str] = []

    @staticmethod
    def available() -> tuple[bool, str]:
        """Can we make namespaces here? (root with CAP_NET_ADMIN and iproute2)."""
        try:
            r = _ip("netns", "add", "lfc-probe", check=False)
        except FileNotFoundError:
            return False, "no `ip` command (iproute2)"
        if r.returncode != 0:
            return False, f"`ip netns add` failed: {r.stderr.strip()}"
        _ip("netns", "del", "lfc-probe", check=False)
        return True, "ok"

    def _bridge_exists(self) -> bool:
        return _ip("link", "show", self.bridge, check=False).returncode == 0

    def setup(self) -> None:
        """Make the namespaces; make the bridge too unless it exists (a stack may be bound to it)."""
        self._remove_namespaces()
        prefix = self.net.prefixlen
        if not self._bridge_exists():
            _ip("link", "add", self.bridge, "type", "bridge")
            self._made_bridge = True
            _ip("addr", "add", f"{self.bridge_ip}/{prefix}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        elif self.bridge_ip not in _ip("-br", "addr", "show", self.bridge).stdout:
            _ip("addr", "add", f"{self.bridge_ip}/{prefix}", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        for h in self.hosts:
            assert h.netns
            veth, peer = f"v{self.tag}{h.index}", f"v{self.tag}{h.index}p"
            _ip("netns", "add", h.netns)
            self._made_ns.append(h.netns)
            _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
            _ip("link", "set", veth, "master", self.bridge, "up")
            _ip("link", "set", peer, "netns", h.netns)
            _ip("-n", h.netns, "addr", "add", f"{h.ip}/{prefix}", "dev", peer)
            _ip("-n", h.netns, "link", "set", peer, "up")
            _ip("-n", h.netns, "link", "set", "lo", "up")
            _ip("-n", h.netns, "route", "add", "default", "via", self.bridge_ip)

    def _remove_namespaces(self) -> None:
        # Same names as ours by construction: leftovers of a run killed before its teardown.
        for h in self.hosts:
            if h.netns:
                _ip("netns", "del", h.netns, check=False)
            _ip("link", "del", f"v{self.tag}{h.index}", check=False)
        self._made_ns.clear()

    def teardown(self, stale: bool = False) -> None:
        """Remove our namespaces (their veth ends go with them), and the bridge if we made it.

        ``stale=True`` (``python -m chaos net-down``) removes the bridge whoever made it.
        """
        self._remove_namespaces()
        if self._made_bridge or stale:
            _ip("link", "del", self.bridge, check=False)
        self._made_bridge = False

    def __enter__(self) -> NetnsHosts:
        self.setup()
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            self.teardown()


class OverrideHosts:
    """Same-namespace hosts told their IP through the INI (``[agent] host_ip``)."""

    mode = "host_ip override"

    def __init__(self, count: int, base: str = "10.79.0.10") -> None:
        start = ipaddress.ip_address(base)
        self.hosts = [Host(i, str(start + i), None) for i in range(count)]

    def setup(self) -> None:
        pass

    def teardown(self, stale: bool = False) -> None:
        pass

    def __enter__(self) -> OverrideHosts:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
