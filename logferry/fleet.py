"""The fleet as etcd tells it: hosts (collect list + agent status) and transfers, read into views.

A host is any IP with a collect list or a status key under ``<prefix>/agents/``. An agent is
live while its status key exists: the key is bound to a lease of about 10 s that the agent
keeps alive, so it vanishes by itself when the agent dies or hangs, and at once on a clean
stop. Transfers are the same under ``<prefix>/transfers/<id>/status``.

One range read per prefix; the rest is pure. ``logctl hosts``/``status`` render these views as
text, the console as pages: both read them here, so they can never disagree.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from logferry.etcd import EtcdClient
from logferry.keys import Keys
from logferry.schema import InputSpec, SchemaError, parse_collect_list

__all__ = [
    "HostView",
    "age_s",
    "config_state",
    "decode_status",
    "gather_hosts",
    "gather_transfers",
    "host_json",
    "host_sort_key",
    "hosts_json",
    "lag_bytes",
    "last_error",
    "parse_iso",
]


@dataclass
class HostView:
    """One host IP: its collect list (as stored) and its agent's status (when live)."""

    ip: str
    collect_raw: bytes | None = None
    collect_revision: int = 0
    inputs: list[InputSpec] | None = None
    collect_error: str | None = None
    status: dict[str, Any] | None = None
    status_revision: int = 0
    status_error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_list(self) -> bool:
        return self.collect_raw is not None

    @property
    def live(self) -> bool:
        return self.status is not None or self.status_error is not None


def host_sort_key(ip: str) -> tuple[int, int]:
    a = ipaddress.ip_address(ip)
    return a.version, int(a)


def decode_status(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        return None, f"status key is not JSON ({e})"
    if not isinstance(doc, dict):
        return None, "status key is not a JSON object"
    return doc, None


def gather_hosts(client: EtcdClient, keys: Keys) -> dict[str, HostView]:
    """Every host under the agents prefix, from one range read."""
    items, _ = client.get_prefix(keys.agents_prefix())
    hosts: dict[str, HostView] = {}
    for key, value, rev in items:
        parsed = keys.parse_agent_key(key)
        if parsed is None:
            continue
        ip, kind = parsed
        h = hosts.setdefault(ip, HostView(ip))
        if kind == "collect":
            h.collect_raw, h.collect_revision = value, rev
            try:
                h.inputs = parse_collect_list(value)
            except SchemaError as e:
                h.collect_error = str(e)
        else:
            h.status_revision = rev
            h.status, h.status_error = decode_status(value)
    return dict(sorted(hosts.items(), key=lambda kv: host_sort_key(kv[0])))


def gather_transfers(client: EtcdClient, keys: Keys) -> dict[str, dict[str, Any]]:
    """transfer id → its status document (``{"error": …}`` when the key holds no JSON object)."""
    items, _ = client.get_prefix(keys.transfers_prefix())
    out: dict[str, dict[str, Any]] = {}
    for key, value, _rev in items:
        tid = keys.parse_transfer_key(key)
        if tid is None:
            continue
        doc, err = decode_status(value)
        out[tid] = doc if doc is not None else {"id": tid, "last_error": err}
    return dict(sorted(out.items()))


def parse_iso(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        t = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def age_s(text: Any, now: datetime) -> float | None:
    t = parse_iso(text)
    return None if t is None else (now - t).total_seconds()


def config_state(h: HostView) -> str:
    """How the agent's applied list compares with the stored one, in a few words."""
    st = h.status or {}
    cfg = st.get("config") if isinstance(st.get("config"), dict) else {}
    if not h.live:
        return "-"
    applied = cfg.get("revision")
    rejected = cfg.get("rejected_revision")
    source = cfg.get("source")
    if rejected:
        return f"rejected rev {rejected}, runs rev {applied}"
    if source == "disk":
        return f"rev {applied} from disk (etcd not read)"
    if not h.has_list:
        return "no list: collects nothing" if not applied else f"rev {applied}, key deleted since"
    if applied == h.collect_revision:
        return f"rev {applied} (current)"
    if isinstance(applied, int) and applied < h.collect_revision:
        return f"rev {applied} (behind {h.collect_revision})"
    return f"rev {applied}"


def last_error(h: HostView) -> str | None:
    if h.status_error:
        return h.status_error
    if h.status and h.status.get("last_error"):
        return str(h.status["last_error"])
    if h.collect_error and not h.live:
        return h.collect_error
    return None


def host_json(h: HostView) -> dict[str, Any]:
    """One host as ``logctl hosts --json`` and the console's hosts page give it."""
    st = h.status or {}
    return {
        "ip": h.ip,
        "live": h.live,
        "hostname": st.get("hostname"),
        "version": st.get("version"),
        "collect_revision": h.collect_revision or None,
        "inputs": None if h.inputs is None else len(h.inputs),
        "collect_valid": h.collect_error is None if h.has_list else None,
        "collect_error": h.collect_error,
        "config": config_state(h),
        "applied_revision": (st.get("config") or {}).get("revision") if h.live else None,
        "last_error": last_error(h),
        "lag_bytes": lag_bytes(h),
    }


def lag_bytes(h: HostView) -> int | None:
    """Bytes written to the host's collected files that Kafka has not acknowledged yet (None: no agent).

    The one number that says a host is falling behind (a throttled agent, a refusing topic),
    summed from the files of its status document, as the agent reports them.
    """
    if not h.live or not isinstance(h.status, dict):
        return None
    files = h.status.get("files")
    if not isinstance(files, list):
        return 0
    return sum(f.get("lag_bytes") or 0 for f in files if isinstance(f, dict) and isinstance(f.get("lag_bytes"), int))


def hosts_json(hosts: dict[str, HostView]) -> list[dict[str, Any]]:
    return [host_json(h) for h in hosts.values()]
