"""Bulk indexing into Elasticsearch with retries that never skip a document.

A :class:`BulkJob` is one batch of prepared documents. :meth:`Indexer.run` sends it with the
low-level ``es.bulk(operations=<NDJSON bytes>)`` (the lines were serialised once, in
``records.prepare``), then looks at every item:

* accepted (2xx): done;
* retryable (429, 408, 5xx, and blocks that an operator lifts, such as a full disk's
  ``cluster_block_exception``): kept, and only these items are sent again, after a capped
  exponential backoff, for as long as it takes (a block is also reported as such: ``esblock``);
* rejected for good (any other 4xx, e.g. ``mapper_parsing_exception``,
  ``document_parsing_exception``, a mapping conflict): handed back for the dead-letter topic.

A request that fails as a whole (connection refused, timeout, 429, 5xx, 401/403) is retried the
same way. A whole request refused with 400 or 413 is split in halves until the document at fault
is alone, and that one is rejected.

While waiting, ``keepalive(seconds)`` is called instead of sleeping: the daemon pauses its
partitions and polls the consumer there, so the group does not evict it during a long outage.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FuturesTimeout
from dataclasses import dataclass, field
from typing import Any

import elastic_transport
import elasticsearch
from elasticsearch.serializer import JsonSerializer, NdjsonSerializer

from logferry import tlsdiag

from .backoff import Backoff
from .esblock import BlockState, block_reason
from .faults import FaultLog
from .metrics import TransferMetrics
from .records import IndexItem

__all__ = [
    "IN_FLIGHT",
    "BulkBodySerializer",
    "BulkJob",
    "BulkResponseSerializer",
    "BulkSender",
    "Indexer",
    "classify_exception",
    "classify_item",
    "describe_item_error",
]

log = logging.getLogger("logtransfer.indexer")

OK, RETRY, REJECT, SPLIT = "ok", "retry", "reject", "split"
_FILTER_PATH = "errors,items.*.status,items.*.error"

#: Item errors that are retried whatever their status: they go away without changing the document
#: (an operator frees disk space and lifts the block; a node comes back; a queue drains).
RETRYABLE_ERROR_TYPES = frozenset({
    "cluster_block_exception",
    "es_rejected_execution_exception",
    "circuit_breaking_exception",
    "unavailable_shards_exception",
    "no_shard_available_action_exception",
    "node_not_connected_exception",
    "node_closed_exception",
    "process_cluster_event_timeout_exception",
    "primary_missing_action_exception",
    "shard_not_in_primary_mode_exception",
    "timeout_exception",
})


class _AllAccepted:
    """The ``items`` of a bulk response in which every item succeeded: only their number is kept."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n


class BulkResponseSerializer(JsonSerializer):
    """The client's JSON serializer, with a shortcut for the transfer's most frequent response.

    A bulk answer with ``_FILTER_PATH`` in which every item succeeded is
    ``{"errors":false,"items":[{"index":{"status":201}},…]}``: 5,000 two-level dicts that the
    transfer only counts (``Indexer`` looks at the items one by one only when ``errors`` is true).
    Parsing them was about 10 % of the transfer's CPU on the bench. Such a body becomes
    ``{"errors": False, "items": <its item count>}`` (one ``"status":`` per item: nothing else is
    in it); every other body, bulk answers with errors included, is parsed as usual.
    """

    _ALL_OK = b'{"errors":false,"items":[{'

    def loads(self, data: bytes) -> Any:
        if isinstance(data, bytes | bytearray) and data.startswith(self._ALL_OK) and data.endswith(b"}]}"):
            return {"errors": False, "items": _AllAccepted(data.count(b'"status":'))}
        return super().loads(data)


class BulkBodySerializer(NdjsonSerializer):
    """The client's NDJSON serializer, passing a finished bulk body through as it is.

    ``Indexer`` sends one ``bytes`` object, its lines built in ``records.prepare`` and each ending
    in a newline. The client's serializer copies any bytes it is given into a ``bytearray`` (grown
    as it goes) and that into new ``bytes``: two copies of a 2.4 MB body per bulk, ~0.37 ms, about
    4 % of the transfer's CPU on the bench. Anything else is serialised as the client does it.
    """

    def dumps(self, data: Any) -> bytes:
        if type(data) is bytes and data.endswith(b"\n"):
            return data
        return super().dumps(data)


def classify_item(status: int, error: Any = None) -> str:
    """``ok``, ``retry`` or ``reject`` for one item of a bulk response."""
    if 200 <= status < 300 and not error:
        return OK
    etype = error.get("type") if isinstance(error, dict) else None
    if status in (408, 429) or status >= 500 or etype in RETRYABLE_ERROR_TYPES:
        return RETRY
    return REJECT


def describe_item_error(status: int, error: Any) -> str:
    """One line: status, error type and reason, and the cause ES gives (which names the field)."""
    if not isinstance(error, dict):
        return f"{status} {error or 'error'}"
    text = f"{status} {error.get('type', 'error')}: {error.get('reason', '')}".rstrip(": ")
    cause = error.get("caused_by")
    if isinstance(cause, dict) and cause.get("reason"):
        text += f" (caused by {cause.get('type', 'error')}: {cause['reason']})"
    return text[:2000]


def _status_of(exc: BaseException) -> int | None:
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return status
    meta = getattr(exc, "meta", None)
    return getattr(meta, "status", None)


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """What to do when a whole bulk request failed: (``retry`` | ``split``, one-line description)."""
    if isinstance(exc, elasticsearch.ApiError | elastic_transport.ApiError):
        status = _status_of(exc) or 0
        err = None
        body = getattr(exc, "body", None)
        if isinstance(body, dict):
            err = body.get("error")
        desc = describe_item_error(status, err if isinstance(err, dict) else (getattr(exc, "message", "") or err))
        if status in (400, 413):
            return SPLIT, desc
        if isinstance(err, dict) and block_reason(status, err) is not None:
            return RETRY, desc  # a 403 block is not a credentials problem (see esblock)
        if status == 401:
            return RETRY, ("Elasticsearch refused the credentials (HTTP 401): wrong user name, password or API key; "
                           "set [transfer] es_password (or es_password_file) or es_api_key to valid ones")
        if status == 403:
            return RETRY, f"{desc}; check the credentials in the INI ([transfer] es_api_key / es_username)"
        return RETRY, desc
    if isinstance(exc, elastic_transport.ConnectionTimeout):
        return RETRY, f"timed out ({_first_line(exc)})"
    if isinstance(exc, elastic_transport.TlsError):
        clear = tlsdiag.es_tls_explain(_first_line(exc), ca_key="[transfer] es_ca_file")
        return RETRY, clear or f"TLS error ({_first_line(exc)}); check [transfer] es_ca_file and the server certificate"
    if isinstance(exc, elastic_transport.ConnectionError):
        return RETRY, f"cannot connect ({_first_line(exc)})"
    if isinstance(exc, elasticsearch.UnsupportedProductError):
        return RETRY, f"{_first_line(exc)}; is es_hosts an Elasticsearch 8/9 or OpenSearch 2 server?"
    if isinstance(exc, elastic_transport.TransportError | elastic_transport.SerializationError):
        return RETRY, f"{type(exc).__name__}: {_first_line(exc)}"
    if isinstance(exc, OSError | TimeoutError):
        return RETRY, f"{type(exc).__name__}: {_first_line(exc)}"
    raise exc


def _first_line(exc: BaseException) -> str:
    # elastic_transport keeps the useful part ("[Errno 111] Connection refused") in .message
    message = getattr(exc, "message", None)
    text = message if isinstance(message, str) and message else (str(exc) or type(exc).__name__)
    return text.splitlines()[0][:500]


@dataclass
class BulkJob:
    """One batch of documents on its way into Elasticsearch.

    ``pending`` are the positions in ``items`` still to send; ``rejected`` are (position,
    reason) pairs Elasticsearch refused for good. The job is done when nothing is pending.
    ``future`` is set while an attempt started by :meth:`Indexer.start` is being sent by a
    sender thread; its answer is applied to the job by :meth:`Indexer.run` on the main thread.
    """

    items: list[IndexItem]
    pending: list[int] = field(default_factory=list)
    rejected: list[tuple[int, str]] = field(default_factory=list)
    accepted: int = 0
    attempts: int = 0
    chunk: int | None = None  # send at most this many per request (after a 400/413 on the whole)
    future: Future[_Answer] | None = field(default=None, repr=False)
    sent: list[int] = field(default_factory=list, repr=False)  # what ``future`` carries
    seq: int = field(default=0, repr=False)  # ``Indexer`` sequence number of the request in flight
    indices: frozenset[str] | None = field(default=None, repr=False)  # its items' index names, once

    def __post_init__(self) -> None:
        if not self.pending:
            self.pending = list(range(len(self.items)))

    @property
    def done(self) -> bool:
        return not self.pending

    def drop_partitions(self, tps: set[tuple[str, int]]) -> int:
        """Stop sending documents of partitions this transfer gave up; returns how many were dropped.

        An answer still on its way for them is ignored when it arrives (see ``Indexer.collect``).
        """
        before = len(self.pending) + len(self.rejected)
        self.pending = [i for i in self.pending if self.items[i].src.tp not in tps]
        self.rejected = [(i, r) for i, r in self.rejected if self.items[i].src.tp not in tps]
        return before - len(self.pending) - len(self.rejected)


@dataclass
class AttemptResult:
    retry_reason: str | None = None  # set when some items must be retried after a backoff
    split: bool = False  # the request was too big or refused as a whole: retry at once, smaller
    held: bool = False  # not sent: the guard holds it (the reason says why and what to do)
    blocked: str | None = None  # Elasticsearch answered with a write block (see esblock): why
    seq: int = 0  # the (last) request this result is the answer to, in sending order


#: What a bulk request came back with: (response or None, exception or None, seconds it took).
_Answer = tuple[Any, "BaseException | None", float]

#: Bulk requests in flight at once (see ``BulkSender`` and ``pipeline.Pipeline``).
IN_FLIGHT = 2


class BulkSender:
    """A small fixed set of daemon threads that do nothing but send bulk requests and wait.

    Why threads at all: with one synchronous request at a time, Elasticsearch indexes a batch
    while the transfer waits, and the transfer consumes and prepares the next batch while
    Elasticsearch waits. A single-shard index is written by one ``write`` thread per request, so
    one request at a time also leaves all but one of the node's cores idle. Measured on the
    bench (one node, 2 cores), that serialisation — not the cost of our documents, which is the
    same per document as the direct-bulk ceiling's — is what held logtransfer at a fraction of
    the ceiling.

    Why so little: the threads only perform the HTTP request (the elasticsearch client is
    thread-safe); every decision (what was accepted, retried, rejected, dead-lettered,
    committed) is taken on the main thread, in order, by ``Indexer.collect``. Daemon threads: a
    transfer that must stop without waiting (second signal, grace period over) is not held by
    a request in flight; what that request carried is not committed and is consumed again.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._q: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
        self._started = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        if not self._started:
            self._started = True
            for n in range(self.threads):
                threading.Thread(target=self._work, name=f"logtransfer-bulk-{n}", daemon=True).start()
        f: Future[Any] = Future()
        self._q.put((f, fn, args))
        return f

    def _work(self) -> None:
        while True:
            f, fn, args = self._q.get()
            if not f.set_running_or_notify_cancel():
                continue
            try:
                f.set_result(fn(*args))
            except BaseException as e:  # a bug: handed to the main thread, raised there
                f.set_exception(e)


class Indexer:
    """Sends :class:`BulkJob` s to Elasticsearch until every document is accepted or rejected."""

    def __init__(self, es: Any, metrics: TransferMetrics, backoff: Backoff | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                 in_flight: int = IN_FLIGHT) -> None:
        self.es = es
        self.metrics = metrics
        self.backoff = backoff or Backoff(0.5, 10.0)
        self.fault = FaultLog("elasticsearch", log)
        self.clock = clock
        self.sleep = sleep
        self.answered = False  # the last attempt got an answer from Elasticsearch
        self.in_flight = max(1, in_flight)
        self.sender = BulkSender(self.in_flight)
        #: asked with a request's index names before it is sent: None to send, or why to hold
        #: the documents (retried like an outage); transfer/template.py's TemplateGuard
        self.guard: Callable[[Iterable[str]], str | None] | None = None
        #: Elasticsearch refusing writes with a block (disk flood stage): held and retried, shown
        self.block = BlockState(getattr(metrics, "es_blocked", None))
        self._block_fault = False  # the fault going on was started by a block (BlockState logs it)
        self._seq = 0  # requests in sending order (main thread only), see BlockState.changed_by

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _held(self, job: BulkJob) -> str | None:
        if self.guard is None:
            return None
        if job.indices is None:  # (once per job, not per attempt: a bulk holds thousands of items)
            job.indices = frozenset(item.index for item in job.items)
        return self.guard(job.indices)

    # ------------------------------------------------------------------ one request
    def _send(self, items: list[IndexItem], group: list[int]) -> _Answer:
        """The HTTP part of an attempt; runs on a sender thread or on the main thread. No state."""
        body = b"".join(items[i].lines for i in group)
        started = time.monotonic()
        try:
            resp = self.es.bulk(operations=body, filter_path=_FILTER_PATH)
        except Exception as e:
            return None, e, time.monotonic() - started
        return resp, None, time.monotonic() - started

    def _apply(self, job: BulkJob, group: list[int], answer: _Answer, result: AttemptResult,
               remaining: int, alive: set[int] | None = None) -> list[int]:
        """Book one request's answer into ``job`` and ``result``; returns the positions to send again.

        ``alive``: positions still wanted (an answer that arrives after ``drop_partitions`` is
        applied to the others only); None means all of ``group``.
        """
        resp, exc, seconds = answer
        self.metrics.bulk_seconds.observe(seconds)
        wanted = group if alive is None else [i for i in group if i in alive]
        if exc is not None:
            self.metrics.bulk_requests.labels("error").inc()
            kind, desc = classify_exception(exc)  # raises what is a bug, not an outage
            body = getattr(exc, "body", None)
            err = body.get("error") if isinstance(body, dict) else None
            blocked = block_reason(_status_of(exc) or 0, err) if kind == RETRY else None
            if blocked is not None:
                result.blocked = blocked
            if kind == RETRY:
                self.metrics.failed.labels("retryable").inc(len(wanted))
            if kind == SPLIT:
                self.answered = True
                if len(group) == 1:
                    if wanted:
                        job.rejected.append((group[0], f"refused by Elasticsearch: {desc}"))
                        self.metrics.failed.labels("rejected").inc()
                    return []
                job.chunk = max(1, len(group) // 2)
                result.split = True
                log.info("elasticsearch refused a bulk request of %d documents as a whole (%s); "
                         "splitting it to find the document at fault", len(group), desc)
            else:
                result.retry_reason = f"bulk request of {remaining} documents failed: {desc}"
            return wanted
        self.answered = True
        body_resp = resp.body if hasattr(resp, "body") else resp
        items = body_resp.get("items") or []
        if len(items) != len(group):
            self.metrics.bulk_requests.labels("error").inc()
            result.retry_reason = (f"bulk response has {len(items)} items for {len(group)} documents; "
                                   "sending them again")
            return wanted
        if not body_resp.get("errors"):
            self.block.clear(result.seq)
            self.metrics.bulk_requests.labels("ok").inc()
            self.metrics.indexed.inc(len(wanted))
            job.accepted += len(wanted)
            return []
        self.metrics.bulk_requests.labels("partial").inc()
        retry_desc = None
        blocked = None
        accepted = 0
        still: list[int] = []
        for i, entry in zip(group, items, strict=True):
            if alive is not None and i not in alive:
                continue
            r = next(iter(entry.values())) if isinstance(entry, dict) and entry else {}
            status = r.get("status", 0) if isinstance(r, dict) else 0
            error = r.get("error") if isinstance(r, dict) else None
            verdict = classify_item(status, error)
            if verdict == OK:
                accepted += 1
            elif verdict == RETRY:
                still.append(i)
                if retry_desc is None:
                    retry_desc = describe_item_error(status, error)
                if blocked is None:
                    blocked = block_reason(status, error)
            else:
                job.rejected.append((i, f"refused by Elasticsearch: {describe_item_error(status, error)}"))
                self.metrics.failed.labels("rejected").inc()
        self.metrics.indexed.inc(accepted)
        job.accepted += accepted
        if retry_desc is not None:
            self.metrics.failed.labels("retryable").inc(len(still))
            result.retry_reason = f"{len(still)} of {len(group)} documents not accepted ({retry_desc})"
        if blocked is not None:
            result.blocked = blocked
        else:
            self.block.clear(result.seq)
        return still

    # ------------------------------------------------------------------ one attempt
    def attempt(self, job: BulkJob) -> AttemptResult:
        """Send every pending item once (in chunks if the job was split), on this thread; update the job."""
        result = AttemptResult()
        self.answered = False
        held = self._held(job)
        if held is not None:
            result.retry_reason, result.held = held, True
            return result
        if job.attempts:
            self.metrics.retried.inc(len(job.pending))
        job.attempts += 1
        todo = job.pending
        size = job.chunk or len(todo) or 1
        groups = [todo[i:i + size] for i in range(0, len(todo), size)]
        still: list[int] = []
        for n, group in enumerate(groups):
            if result.retry_reason or result.split:
                still.extend(group)
                continue
            remaining = sum(len(g) for g in groups[n:])
            result.seq = self._next_seq()
            still.extend(self._apply(job, group, self._send(job.items, group), result, remaining))
        job.pending = still
        return result

    def start(self, job: BulkJob) -> bool:
        """Begin an attempt of the whole job on a sender thread; ``run`` (or ``collect``) finishes it.

        False (nothing started) when the job is done, already has a request in flight, or was
        split (a split job is sent piece by piece, synchronously).
        """
        if job.done or job.future is not None or job.chunk is not None or self._held(job) is not None:
            return False
        if job.attempts:
            self.metrics.retried.inc(len(job.pending))
        job.attempts += 1
        job.sent = list(job.pending)
        job.seq = self._next_seq()
        job.future = self.sender.submit(self._send, job.items, job.sent)
        return True

    def collect(self, job: BulkJob, abort: Callable[[], bool] | None = None) -> AttemptResult | None:
        """Wait for the attempt ``start`` began and apply its answer; None if ``abort()`` said stop first
        (the request stays in flight and a later ``collect`` picks its answer up)."""
        f = job.future
        assert f is not None
        while True:
            try:
                answer = f.result(timeout=0.2)
                break
            except FuturesTimeout:
                if abort is not None and abort():
                    return None
        job.future = None
        result = AttemptResult(seq=job.seq)
        self.answered = False
        alive = set(job.pending)
        still = self._apply(job, job.sent, answer, result, len(job.sent), alive)
        # the request carried every pending position; since then positions were only ever dropped
        job.pending = [i for i in still if i in alive]
        job.sent = []
        return result

    # ------------------------------------------------------------------ until done
    def run(self, job: BulkJob, keepalive: Callable[[float], None] | None = None,
            abort: Callable[[], bool] | None = None) -> bool:
        """Send ``job`` until nothing is pending; False if ``abort()`` said stop first.

        An attempt started by :meth:`start` is collected first. ``keepalive(seconds)`` replaces
        sleeping between attempts (it may itself finish the job, re-entrantly, from a rebalance
        callback: the loop then simply ends).
        """
        while not job.done:
            if abort is not None and abort():
                return False
            if job.future is not None:
                collected = self.collect(job, abort)
                if collected is None:
                    return False
                result = collected
            else:
                result = self.attempt(job)
            if job.done:
                break
            if result.split:
                continue
            assert result.retry_reason is not None
            if result.blocked is not None:
                self.block.blocked(result.blocked, len(job.pending), result.seq)
                if not self.fault.active:
                    self._block_fault = True  # the block's own lines say when it starts and ends
            delay = self.backoff.next()
            self.fault.fault(result.retry_reason if result.held else
                             f"{result.retry_reason}; retrying with backoff (up to {self.backoff.cap_s:g}s), "
                             "offsets are not committed past them", key=_fault_key(result.retry_reason),
                             quiet=result.blocked is not None)
            if not self._wait(delay, job, keepalive, abort):
                return False
        if job.attempts and self.answered:
            self.fault.clear(quiet=self._block_fault)
            self._block_fault = False
            self.backoff.reset()
        return True

    def _wait(self, delay: float, job: BulkJob, keepalive: Callable[[float], None] | None,
              abort: Callable[[], bool] | None) -> bool:
        end = self.clock() + delay
        while True:
            if abort is not None and abort():
                return False
            left = end - self.clock()
            if left <= 0 or job.done:
                return True
            step = min(0.2, left)
            if keepalive is not None:
                keepalive(step)
            else:
                self.sleep(step)


def _fault_key(reason: str) -> str:
    """Group retry messages by kind, so a changing count does not log a new line each time."""
    head = reason.split("(", 1)[-1] if "(" in reason else reason
    return "".join(c for c in head if not c.isdigit())[:80]
