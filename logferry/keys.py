"""The etcd key layout of docs/design.md, in one place.

The agent, the transfer, logctl and the Ansible seeding must all spell keys the same way, and an
IPv6 address can be written many ways (``2001:DB8::1``, ``2001:db8:0::1``), so every ``<ip>`` goes
through ``ipaddress`` and is written in its canonical compressed form. Keys are ``str``; encode
them (UTF-8) where a client wants bytes.
"""

from __future__ import annotations

import ipaddress

__all__ = ["AGENT_KINDS", "Keys", "canonical_ip"]

AGENT_KINDS = ("collect", "status")


def canonical_ip(ip: str) -> str:
    """The one spelling of an address used in keys; ``ValueError`` naming it when it is not one."""
    try:
        if not isinstance(ip, str):
            raise ValueError(ip)
        return str(ipaddress.ip_address(ip.strip()))
    except ValueError:
        raise ValueError(f"{ip!r} is not an IPv4 or IPv6 address (such as 10.0.0.5 or 2001:db8::5)") from None


def _segment(value: str, what: str) -> str:
    if not isinstance(value, str) or not value or "/" in value or value != value.strip() or any(
        ord(c) < 32 or c == "\x7f" for c in value
    ):
        raise ValueError(f"{what} {value!r} cannot be used in an etcd key: it must be non-empty, "
                         "without '/', spaces at the ends or control characters")
    return value


class Keys:
    """Builds and parses logferry's etcd keys under one prefix (``/logferry`` by default).

    The prefix is normalised to one leading slash and no trailing one, so ``logferry/`` and
    ``/logferry`` name the same tree; ``/`` alone means the root (keys like ``/agents/...``).
    The ``*_prefix`` methods end in ``/`` so a range read of ``/logferry/agents/`` cannot pick
    up a sibling such as ``/logferry/agents-old/``.
    """

    def __init__(self, prefix: str = "/logferry") -> None:
        if not isinstance(prefix, str) or any(ord(c) < 32 or c == "\x7f" or c == " " for c in prefix):
            raise ValueError(f"etcd prefix {prefix!r} must be a path such as /logferry, without spaces "
                             "or control characters")
        parts = prefix.strip("/").split("/")
        if "" in parts and parts != [""]:
            raise ValueError(f"etcd prefix {prefix!r} has an empty segment ('//'); write it like /logferry")
        self.prefix = "" if parts == [""] else "/" + "/".join(parts)

    def __repr__(self) -> str:
        return f"Keys({self.prefix or '/'!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Keys) and other.prefix == self.prefix

    def __hash__(self) -> int:
        return hash(self.prefix)

    def agents_prefix(self) -> str:
        """Range/watch prefix covering every host's collect and status keys."""
        return f"{self.prefix}/agents/"

    def agent_collect(self, ip: str) -> str:
        """Where the operator's collect list for host ``ip`` lives."""
        return f"{self.prefix}/agents/{canonical_ip(ip)}/collect"

    def agent_status(self, ip: str) -> str:
        """Where the agent on ``ip`` reports itself (under a lease)."""
        return f"{self.prefix}/agents/{canonical_ip(ip)}/status"

    def transfer_config(self) -> str:
        """The one transfer config shared by every logtransfer."""
        return f"{self.prefix}/transfer/config"

    def transfers_prefix(self) -> str:
        """Range/watch prefix covering every logtransfer's status key."""
        return f"{self.prefix}/transfers/"

    def transfer_status(self, transfer_id: str) -> str:
        """Where logtransfer ``transfer_id`` reports itself (under a lease)."""
        return f"{self.prefix}/transfers/{_segment(transfer_id, 'transfer id')}/status"

    def saved_searches_prefix(self) -> str:
        """Range prefix of the searches saved in the console, shared by the team."""
        return f"{self.prefix}/console/searches/"

    def saved_search(self, name: str) -> str:
        """One saved search (JSON: the page's URL state, who saved it, when)."""
        return f"{self.prefix}/console/searches/{_segment(name, 'saved search name')}"

    def parse_agent_key(self, key: str | bytes) -> tuple[str, str] | None:
        """``(canonical ip, "collect"|"status")`` for an agent key, ``None`` for any other key.

        Watchers of the agents prefix see both kinds of key; this tells them apart and ignores
        anything else (a stray key must not crash a watcher), including non-IP host segments.
        """
        rest = self._strip(key, self.agents_prefix())
        if rest is None:
            return None
        ip, sep, kind = rest.partition("/")
        if not sep or kind not in AGENT_KINDS:
            return None
        try:
            return canonical_ip(ip), kind
        except ValueError:
            return None

    def parse_transfer_key(self, key: str | bytes) -> str | None:
        """The transfer id of a ``transfers/<id>/status`` key, ``None`` for any other key."""
        rest = self._strip(key, self.transfers_prefix())
        if rest is None:
            return None
        tid, sep, kind = rest.partition("/")
        return tid if sep and tid and kind == "status" else None

    @staticmethod
    def _strip(key: str | bytes, prefix: str) -> str | None:
        if isinstance(key, bytes | bytearray):
            try:
                key = bytes(key).decode("utf-8")
            except UnicodeDecodeError:
                return None
        if not isinstance(key, str) or not key.startswith(prefix):
            return None
        return key[len(prefix):]
