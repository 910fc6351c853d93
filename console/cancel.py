"""Searches the page no longer needs are cancelled in Elasticsearch, not only in the browser.

A search that keeps running after the page moved on holds a search thread on every shard it
touches; a few impatient users re-running a heavy query can stall a cluster (the complaint
Graylog's users make). So every ``/api/search`` runs with an ``X-Opaque-Id`` naming the page
(``logconsole/<page id>/<n>``), and the console cancels its Elasticsearch task through the tasks
API when

- the same page starts a newer search (the query, the range or a filter changed),
- the browser gives up on it (it closes the connection, or says so on ``/api/search/cancel``:
  an abort, or the tab closing), or
- it runs past ``search_timeout_s`` without Elasticsearch's own ``timeout`` ending it.

A cancel keeps looking for the task until the search call has returned: the task may not be
registered yet when the cancel comes (the request is still on its way), and cancelling the
parent search task makes Elasticsearch cancel its shard tasks.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Running", "SearchTracker", "cancel_es_tasks", "es_search_tasks", "valid_page_id"]

log = logging.getLogger("logconsole")
SEARCH_ACTIONS = "indices:data/read/search*"
_PAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The tasks API has been "technical preview" since 5.x and stable in practice: no warning per cancel.
warnings.filterwarnings("ignore", message="This API is in technical preview")


def valid_page_id(value: str | None) -> bool:
    return bool(value) and _PAGE_ID.fullmatch(value or "") is not None


def es_search_tasks(es: Any, opaque_id: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(task id, task) of the search tasks running in the cluster, those of ``opaque_id`` only when given."""
    resp = es.tasks.list(actions=SEARCH_ACTIONS, detailed=True)
    body = resp.body if hasattr(resp, "body") else resp
    out = []
    for node in (body.get("nodes") or {}).values():
        for tid, task in (node.get("tasks") or {}).items():
            if opaque_id is None or (task.get("headers") or {}).get("X-Opaque-Id") == opaque_id:
                out.append((tid, task))
    return out


def cancel_es_tasks(es: Any, opaque_id: str) -> int:
    """Cancel the search tasks carrying ``opaque_id``; returns how many were asked to stop.

    The parent task first (Elasticsearch then cancels its children); a child whose parent is
    already gone is cancelled on its own.
    """
    tasks = es_search_tasks(es, opaque_id)
    parents = [tid for tid, t in tasks if not t.get("parent_task_id") and not t.get("cancelled")]
    orphans = [tid for tid, t in tasks if t.get("parent_task_id") and not t.get("cancelled")
               and t["parent_task_id"] not in dict(tasks)]
    n = 0
    for tid in parents + orphans:
        with contextlib.suppress(Exception):  # finished meanwhile: nothing to cancel
            es.tasks.cancel(task_id=tid)
            n += 1
    return n


@dataclass
class Running:
    """One search in flight: its opaque id, and whether it finished or was cancelled (and why)."""

    key: tuple[str, str]
    opaque_id: str
    started: float = field(default_factory=time.monotonic)
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: str | None = None  # the reason, once cancelled


class SearchTracker:
    """The search each page has in flight, so that a newer one, or the page itself, can cancel it."""

    def __init__(self, es: Any, give_up_s: float = 120.0, poll_s: float = 0.2) -> None:
        self.es = es
        self.give_up_s = give_up_s
        self.poll_s = poll_s
        self._lock = threading.Lock()
        self._by_page: dict[tuple[str, str], Running] = {}
        self._seq = itertools.count(1)

    def begin(self, user: str, page_id: str | None) -> Running:
        """A new search for (user, page): the page's previous one, when still running, is cancelled."""
        page = page_id if valid_page_id(page_id) else f"anon{next(self._seq)}"
        key = (user, page)
        run = Running(key, f"logconsole/{page}/{next(self._seq)}")
        with self._lock:
            old = self._by_page.get(key)
            self._by_page[key] = run
        if old is not None and not old.done.is_set():
            self.cancel(old, "a newer search from the same page replaced it")
        return run

    def finish(self, run: Running) -> None:
        run.done.set()
        with self._lock:
            if self._by_page.get(run.key) is run:
                del self._by_page[run.key]

    def cancel_page(self, user: str, page_id: str, reason: str) -> bool:
        """Cancel the page's search in flight, if any (``/api/search/cancel``)."""
        with self._lock:
            run = self._by_page.get((user, page_id))
        if run is None or run.done.is_set():
            return False
        self.cancel(run, reason)
        return True

    def cancel(self, run: Running, reason: str) -> None:
        """Cancel ``run``'s Elasticsearch task, in the background, until its search call returns."""
        if run.cancelled is not None:
            return
        run.cancelled = reason
        threading.Thread(target=self._cancel_loop, args=(run,), name=f"cancel {run.opaque_id}", daemon=True).start()

    def _cancel_loop(self, run: Running) -> None:
        deadline = time.monotonic() + self.give_up_s
        asked = 0
        while not run.done.is_set() and time.monotonic() < deadline:
            try:
                asked += cancel_es_tasks(self.es, run.opaque_id)
            except Exception as e:  # Elasticsearch away: its own timeouts end the search
                log.warning("cannot cancel search %s in Elasticsearch: %s", run.opaque_id, str(e).splitlines()[0][:200])
            run.done.wait(self.poll_s)
        log.info("search %s cancelled (%s): %d task(s) cancelled in Elasticsearch, %.1f s after it began",
                 run.opaque_id, run.cancelled, asked, time.monotonic() - run.started)
