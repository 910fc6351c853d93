"""Which IP this host is known by: the key of its collect list in etcd.

docs/design.md: the source address the kernel picks for a UDP "connect" to the first etcd endpoint.
A UDP connect sends no packet; it only asks the routing table, so this works before etcd
answers and picks the interface an operator would name in the inventory.
"""

from __future__ import annotations

import ipaddress
import socket


def route_source_ip(endpoint: str) -> str:
    """Source address of the route to `endpoint` ("host:port", "[v6]:port" or "host")."""
    host, port = split_host_port(endpoint, default_port=2379)
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    if not infos:
        raise OSError(f"cannot resolve etcd endpoint {endpoint!r}")
    family, _, _, _, addr = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.connect(addr)
        return s.getsockname()[0]


def split_host_port(endpoint: str, default_port: int) -> tuple[str, int]:
    ep = endpoint.strip()
    for scheme in ("http://", "https://"):
        if ep.startswith(scheme):
            ep = ep[len(scheme):]
    ep = ep.rstrip("/")
    if ep.startswith("["):
        host, _, rest = ep[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if ep.count(":") == 1:
        host, port = ep.split(":")
        return host, int(port)
    return ep, default_port


def host_ip(etcd_endpoints: list[str], override: str | None = None) -> str:
    """The override if given (validated), else the route source address to the first endpoint."""
    if override:
        return str(ipaddress.ip_address(override))
    return route_source_ip(etcd_endpoints[0])
