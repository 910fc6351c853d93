"""The transfer's status key, ``<prefix>/transfers/<id>/status``, bound to a lease.

The document (JSON) says who this transfer is (id, host, pid, version, group), which config it
runs (revision, what was refused and why), which partitions it holds with their committed offset
and lag, its counters, the records Kafka deleted before the group read them (``retention_gaps``,
see ``gaps``), the state of Elasticsearch (``ok``, ``unavailable``, or ``blocked`` with its reason
while it refuses writes, e.g. at the disk flood stage: see ``esblock``), this transfer's last index
retention check (``index_retention``, see ``retention``), and the last error. The main loop
rebuilds it every ``status_interval_s`` and right after anything notable; the lease keeper (on
the etcd thread) only copies the bytes.
"""

from __future__ import annotations

import json
import os
import socket
from datetime import UTC, datetime
from typing import Any

from logferry import __version__
from logferry.etcd import EtcdClient, LeaseKeeper

__all__ = ["StatusKey"]


class StatusKey:
    def __init__(self, transfer_id: str, group_id: str, key: str) -> None:
        self.transfer_id = transfer_id
        self.group_id = group_id
        self.key = key
        self.host = socket.gethostname()
        self.started_at = _now()
        self._doc = self.render({})
        self.lease: LeaseKeeper | None = None
        self.last: dict[str, Any] = {}

    def render(self, fields: dict[str, Any]) -> bytes:
        doc = {
            "id": self.transfer_id,
            "host": self.host,
            "pid": os.getpid(),
            "version": __version__,
            "group_id": self.group_id,
            "started_at": self.started_at,
            "updated_at": _now(),
            **fields,
        }
        self.last = doc
        return json.dumps(doc, separators=(",", ":"), default=str).encode()

    def update(self, fields: dict[str, Any], push: bool = False) -> None:
        self._doc = self.render(fields)
        if push and self.lease is not None:
            self.lease.refresh()

    def value(self) -> bytes:
        return self._doc

    def keep(self, etcd: EtcdClient, refresh_s: float) -> None:
        self.lease = LeaseKeeper(etcd, self.key, self.value, ttl_s=10, refresh_s=max(1.0, refresh_s))

    def stop(self) -> None:
        if self.lease is not None:
            self.lease.stop(delete=True)
            self.lease = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
