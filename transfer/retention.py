"""Index retention: delete logferry's own daily indices older than the transfer config's ``retention_days``.

Why here: the transfer group is what creates the indices (from the config's ``index`` pattern,
e.g. ``logferry-{topic}-{yyyy.MM.dd}``), so it knows exactly which names are its own. Without a
retention the disk fills until Elasticsearch passes its flood-stage watermark and blocks every
write (see ``esblock``).

Safety, because deleting an index cannot be undone:

* only names that match the *whole* pattern are candidates: the literal parts, a topic-like
  part where ``{topic}`` is, and a well-formed date where the date placeholder is. A decoy such
  as ``logferry-nginx-keep`` or ``logferry-nginx-2024.05.01-restored`` is never touched;
* hidden and system indices (leading ``.``) and data stream backing indices are never touched;
* an index is deleted only when its whole period is older than the cut-off: with
  ``retention_days = 14`` the index of day D goes when D < today (UTC) - 14 days;
* ``retention_days`` absent (the default) means keep everything: nothing runs.

One transfer of the group at a time, and at most once per ``RUN_EVERY_S``: the run is guarded by
the etcd key ``<prefix>/transfer/retention-lock``, created in a transaction only if it does not
exist, bound to a lease of ``RUN_EVERY_S``. The transfer that creates it runs the retention and
leaves the key to expire (that is the "at most hourly" for the whole group); the others see it
and skip. A transfer that dies mid-run leaves the key until its lease expires; a run that failed
(Elasticsearch unavailable) revokes the lease so that the next check of any transfer retries.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from logferry.estemplates import index_patterns
from logferry.etcd import EtcdClient, EtcdError

__all__ = ["FIRST_CHECK_S", "RUN_EVERY_S", "RetentionConfig", "RetentionRunner", "expired_indices", "index_regex",
           "lock_key", "release_lock", "take_lock"]

log = logging.getLogger("logtransfer.retention")

#: The group runs the retention at most this often (the lock's lease).
RUN_EVERY_S = 3600
#: Each transfer looks whether the lock is free this often (with ±20 % jitter) ...
CHECK_EVERY_S = 300.0
#: ... and the first time this long after a config with retention_days is in force.
FIRST_CHECK_S = 15.0
#: A run stops deleting after this long (what is left is deleted by the next run).
RUN_BUDGET_S = 600.0

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_DATE_TOKEN = re.compile(r"yyyy|MM|dd|HH|[._-]")
_GROUPS = {"yyyy": ("y", 4), "MM": ("m", 2), "dd": ("d", 2), "HH": ("h", 2)}


def lock_key(prefix: str) -> str:
    """The group's retention lock key, ``<prefix>/transfer/retention-lock``."""
    return f"{prefix}/transfer/retention-lock"


def index_regex(pattern: str) -> re.Pattern[str] | None:
    """A regex matching exactly the index names ``pattern`` produces, with the date in named groups.

    None when the pattern has no date placeholder (nothing can be told old from new).
    """
    out: list[str] = []
    seen: set[str] = set()
    pos = 0
    for m in _PLACEHOLDER.finditer(pattern):
        out.append(re.escape(pattern[pos:m.start()].lower()))
        pos = m.end()
        if m.group(1) == "topic":
            out.append("[a-z0-9._-]+?")
            continue
        for tok in _DATE_TOKEN.findall(m.group(1)):
            if tok in _GROUPS:
                name, width = _GROUPS[tok]
                out.append(rf"\d{{{width}}}" if name in seen else rf"(?P<{name}>\d{{{width}}})")
                seen.add(name)
            else:
                out.append(re.escape(tok))
    out.append(re.escape(pattern[pos:].lower()))
    if "y" not in seen:
        return None
    return re.compile("".join(out))


def _period_end(m: re.Match[str]) -> datetime | None:
    """The first instant after the period an index name covers (day, hour, month or year); None if no date."""
    g = m.groupdict()
    try:
        y = int(g["y"])
        if g.get("m") is None:
            return datetime(y + 1, 1, 1, tzinfo=UTC)
        mo = int(g["m"])
        if g.get("d") is None:
            return datetime(y + (mo == 12), mo % 12 + 1, 1, tzinfo=UTC)
        start = datetime(y, mo, int(g["d"]), tzinfo=UTC)
        if g.get("h") is None:
            return start + timedelta(days=1)
        return start + timedelta(hours=int(g["h"]) + 1)
    except ValueError:  # 2024.13.45: not a date, so not one of ours
        return None


def expired_indices(names: Iterable[str], pattern: str, days: int, now: datetime) -> list[str]:
    """The names among ``names`` produced by ``pattern`` whose whole period ended before the cut-off.

    The cut-off is midnight UTC ``days`` days before ``now``'s day: with ``days = 14`` on
    2024-05-20 the daily index of 2024-05-05 is kept and the one of 2024-05-05 - 1 day goes.
    """
    rx = index_regex(pattern)
    if rx is None:
        return []
    cutoff = datetime(now.year, now.month, now.day, tzinfo=UTC) - timedelta(days=days)
    out = []
    for name in names:
        if name.startswith("."):
            continue
        m = rx.fullmatch(name)
        if m is None:
            continue
        end = _period_end(m)
        if end is not None and end <= cutoff:
            out.append(name)
    return sorted(out)


def take_lock(etcd: EtcdClient, key: str, value: bytes, ttl_s: int) -> int | None:
    """The retention lock: ``key`` on a lease of ``ttl_s`` if nobody holds it (:meth:`EtcdClient.create_on_lease`)."""
    return etcd.create_on_lease(key, value, ttl_s)


def update_lock(etcd: EtcdClient, key: str, value: bytes, lease_id: int) -> None:
    """Rewrite the lock's value (the run's outcome), keeping it on its lease."""
    etcd.put_on_lease(key, value, lease_id)


def release_lock(etcd: EtcdClient, lease_id: int) -> None:
    """Revoke the lock's lease: the key goes at once and the next check of any transfer may run."""
    etcd.revoke_lease(lease_id)


def list_indices(es: Any, pattern: str) -> list[str]:
    """Concrete index names that may belong to ``pattern`` (its wildcards), data stream backing indices left out."""
    names: list[str] = []
    for wildcard in index_patterns(pattern):
        resp = es.indices.resolve_index(name=wildcard, expand_wildcards="open,closed")
        body = resp.body if hasattr(resp, "body") else resp
        for entry in body.get("indices", []):
            if entry.get("data_stream"):
                continue
            names.append(entry["name"])
    return sorted(set(names))


@dataclass
class RetentionConfig:
    """What a run needs from the transfer config."""

    index: str
    days: int


class RetentionRunner:
    """Checks every ``CHECK_EVERY_S`` whether the group's retention is due, on its own daemon thread.

    A thread, because listing and deleting indices may wait on Elasticsearch (60 s timeouts) and
    must never hold up consuming and committing. ``config()`` gives the config in force (None or
    ``days`` None: nothing to do); ``etcd()`` the client (None before it is connected).
    """

    def __init__(self, es: Any, etcd: Callable[[], EtcdClient | None], key: str, holder: str,
                 config: Callable[[], RetentionConfig | None], deleted_counter: Any = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.es = es
        self.etcd = etcd
        self.key = key
        self.holder = holder
        self.config = config
        self.deleted_counter = deleted_counter
        self.clock = clock
        self.last: dict[str, Any] | None = None  # the last check, for the status key
        self.deleted_total = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="logtransfer-retention", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        wait = FIRST_CHECK_S
        while not self._stop.wait(wait):
            try:
                self.check()
            except Exception as e:  # a bug must not end the thread silently, nor the transfer
                log.exception("retention check failed: %s", e)
            wait = CHECK_EVERY_S * random.uniform(0.8, 1.2)

    def status(self) -> dict[str, Any] | None:
        cfg = self.config()
        if cfg is None or not cfg.days:
            return None
        return {"retention_days": cfg.days, "deleted_total": self.deleted_total, **(self.last or {})}

    def check(self) -> dict[str, Any]:
        """Run the retention if this transfer gets the group's lock; returns (and keeps) what happened."""
        cfg = self.config()
        etcd = self.etcd()
        now = self.clock()
        at = datetime.fromtimestamp(now, UTC)
        result: dict[str, Any] = {"checked_at": at.isoformat(timespec="seconds")}
        if cfg is None or not cfg.days:
            return result
        if etcd is None:
            result["outcome"] = "skipped: etcd not connected"
            self.last = result
            return result
        try:
            lease = take_lock(etcd, self.key, json.dumps({"holder": self.holder, "started_at": result["checked_at"]})
                              .encode(), RUN_EVERY_S)
        except EtcdError as e:
            result["outcome"] = f"skipped: cannot take the lock {self.key} ({e})"
            log.warning("retention: %s", result["outcome"])
            self.last = result
            return result
        if lease is None:
            result["outcome"] = "skipped: another transfer of the group ran it within the hour"
            try:
                value, _ = etcd.get(self.key)
                result["lock"] = json.loads(value) if value else None
            except (EtcdError, ValueError):
                pass
            self.last = result
            return result
        ok = self.run(cfg, at, result)
        try:
            if ok:
                update_lock(etcd, self.key, json.dumps({"holder": self.holder, **result}).encode(), lease)
            else:
                release_lock(etcd, lease)
        except EtcdError as e:
            log.warning("retention: could not %s the lock %s (%s); it expires with its lease",
                        "update" if ok else "release", self.key, e)
        self.last = result
        return result

    def run(self, cfg: RetentionConfig, at: datetime, result: dict[str, Any]) -> bool:
        """List, pick and delete; False if Elasticsearch failed before everything due was deleted."""
        started = time.monotonic()
        try:
            names = list_indices(self.es, cfg.index)
        except Exception as e:
            result["outcome"] = (f"error: cannot list the indices of {cfg.index} ({_first_line(e)}); "
                                 "retried at the next check")
            log.warning("retention: %s", result["outcome"])
            return False
        due = expired_indices(names, cfg.index, cfg.days, at)
        deleted: list[str] = []
        error = None
        for name in due:
            if time.monotonic() - started > RUN_BUDGET_S:
                break
            try:
                self.es.options(ignore_status=[404]).indices.delete(index=name, expand_wildcards="none")
            except Exception as e:
                error = f"cannot delete index {name} ({_first_line(e)})"
                break
            deleted.append(name)
            self.deleted_total += 1
            if self.deleted_counter is not None:
                self.deleted_counter.inc()
            log.info("retention: deleted index %s (older than %d days)", name, cfg.days)
        result["deleted"] = deleted[:50]
        result["deleted_count"] = len(deleted)
        if error is not None:
            result["outcome"] = f"error: {error}; the rest is retried at the next check"
            log.warning("retention: %s", result["outcome"])
            return False
        result["outcome"] = "ran"
        log.info("retention: ran for %s with retention_days=%d: %d of %d index(es) deleted", cfg.index, cfg.days,
                 len(deleted), len(names))
        return True


def _first_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]
