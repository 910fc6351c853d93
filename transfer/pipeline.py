"""Consumed records → batch → Elasticsearch / dead-letter topic → offset commit.

The delivery rule lives here. Records are buffered as they are consumed (prepared at once: bulk
lines built, or a dead-letter reason found). A full or old enough buffer becomes a batch in
flight (:meth:`Pipeline.dispatch`), as does any buffer once the consumer has caught up while no
batch is in flight (:meth:`Pipeline.ready`), and settling a batch means:

1. every document is accepted by Elasticsearch, or rejected for good (``indexer``; retryable
   failures are retried with backoff, forever if need be);
2. every rejected document and every record that is not an envelope is acknowledged by the
   dead-letter topic (``deadletter``);
3. only then are the batch's records marked settled, and the offsets committed
   (``offsets.OffsetTracker`` computes, per partition, how far every record is settled).

Batches in flight. Up to ``indexer.in_flight`` (2) batches are in flight at once, oldest first
in ``Pipeline.in_flight``. A dispatched batch's first bulk request is sent by a sender thread
(``indexer.BulkSender``) while the main loop goes on consuming and preparing the next batch;
:meth:`Pipeline.reap` settles, in order, the batches at the head whose request was answered, and
commits. A batch that needs a retry is retried on the main loop exactly as before (backoff,
keepalive, forever), holding every batch behind it. With the queue full, dispatching first
settles the oldest batch: at most ``in_flight`` batches plus the buffer are ever held. Why: one
bulk at a time left Elasticsearch idle while we prepared a batch and us idle while it indexed,
and kept a single-shard index on one write thread (measured: see ``indexer.BulkSender``).
Two in flight keep both busy on a 2-core node; three were not measurably better on the
(shared, noisy) bench machine, and each more holds another batch in memory and re-sends it after
a crash. Commits stay in order by construction (settling is in order), and would be right
anyway: the tracker commits only past a contiguous settled run.

Rebalances. ``on_revoke`` runs inside a consumer call: it settles the batch in flight and the
buffer, commits, and only then lets the partitions go. That callback may fire while ``flush``
itself is waiting between retries (the keepalive polls the consumer), so settling is re-entrant:
every step records that it is done, and the outer call finds the work finished. If the work
cannot be finished within ``REVOKE_BUDGET_S`` (Elasticsearch down), the partitions are given up
without committing past it: the new owner consumes those records again and, ``_id`` being
``event.id``, they overwrite themselves. ``on_lost`` (the group already gave the partitions
away) drops them without committing.

Records Kafka deleted unread (:mod:`transfer.gaps`). ``on_assign`` compares each new
partition's committed offset with its low watermark, reports a gap, and tells the tracker where
the partition starts; a record that later arrives past the offset expected is checked against
the low watermark the broker sent with it. A gap is committed over (records that do not exist
are not waited for), so it is reported once, not again by every next owner.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from logferry.schema import TransferConfig

from .deadletter import DeadLetterProducer
from .gaps import RetentionGaps, lost_range
from .indexer import BulkJob, Indexer
from .metrics import TransferMetrics
from .offsets import OffsetTracker
from .records import DeadLetter, IndexItem, Source, prepare

__all__ = ["ASSIGN_CHECK_BUDGET_S", "REVOKE_BUDGET_S", "Batch", "Pipeline"]

log = logging.getLogger("logtransfer.pipeline")

#: How long a rebalance callback may spend finishing in-flight work. The group waits for us
#: (up to max.poll.interval.ms, 5 min by default); past this budget the partitions are let go.
REVOKE_BUDGET_S = 30.0
#: How long the look for deleted records may wait for Kafka when partitions are assigned (one
#: committed-offsets request, one low-watermark request per partition). Partitions it had no time
#: for are still checked, at their first record (the committed offset is what they expect).
ASSIGN_CHECK_BUDGET_S = 10.0
#: When the broker did not send a low watermark with a fetch (old protocol), how long to ask.
SKIP_CHECK_TIMEOUT_S = 2.0

TP = tuple[str, int]
Keepalive = Callable[[float], None]


@dataclass
class Batch:
    """The records in flight: their documents, their dead letters, and where they came from."""

    bulk: BulkJob
    dead: list[DeadLetter]
    sources: list[Source]
    dead_letter_topic: str
    rejects_collected: bool = False
    settled: bool = False
    started: float = field(default_factory=time.monotonic)


#: Least age of a partial buffer sent because the consumer caught up (see ``Pipeline.ready``).
CAUGHT_UP_LINGER_S = 0.1


class Pipeline:
    """Buffers consumed records and settles them in batches; see the module docstring."""

    def __init__(self, indexer: Indexer, deadletters: DeadLetterProducer, metrics: TransferMetrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.indexer = indexer
        self.deadletters = deadletters
        self.metrics = metrics
        self.clock = clock
        self.consumer: Any = None  # GroupConsumer; set by the daemon (they refer to each other)
        self.cfg: TransferConfig | None = None
        self.tracker = OffsetTracker()
        self.in_flight: deque[Batch] = deque()  # oldest first; at most indexer.in_flight
        self._items: list[IndexItem] = []
        self._dead: list[DeadLetter] = []
        self._sources: list[Source] = []
        self._bytes = 0
        self._since = 0.0
        self.abandoned = False  # shutting down past the grace period: settle nothing more
        self._dropped_in_call: set[TP] | None = None  # partitions dropped during add_messages
        self.hard_stop: Callable[[], bool] = lambda: False
        #: reports records Kafka deleted before they were read; None: not looked for (unit tests)
        self.gaps: RetentionGaps | None = None

    # ------------------------------------------------------------------ buffering
    @property
    def buffered(self) -> int:
        return len(self._sources)

    @property
    def batch(self) -> Batch | None:
        """The oldest batch in flight (None when none is)."""
        return self.in_flight[0] if self.in_flight else None

    def add_message(self, m: Any) -> None:
        """A record from the consumer (a confluent_kafka.Message)."""
        ts_type, ts = m.timestamp()
        self.add(Source(m.topic(), m.partition(), m.offset(), m.key(), m.value(), ts if ts_type else None))

    def add_messages(self, msgs: Iterable[Any], keepalive: Keepalive | None, abort: Callable[[], bool]) -> None:
        """Records from one consume call; a buffer that fills up is dispatched on the way."""
        n = 0
        # A dispatch on the way may poll the consumer (keepalive), which may run a revoke: the
        # rest of this call's records of a revoked partition belong to its next owner now, and
        # are not ours to index or commit (a late commit would move the group's offset back).
        gone: set[TP] = set()
        self._dropped_in_call = gone
        # (full() inlined and the lookups hoisted: this loop runs once per record; the config
        # changes only between calls, in the main loop)
        cfg = self.cfg
        max_docs, max_bytes = (cfg.bulk_max_docs, cfg.bulk_max_bytes) if cfg is not None else (0, 0)
        add = self._add
        try:
            for m in msgs:
                topic, partition = m.topic(), m.partition()
                if gone and (topic, partition) in gone:
                    continue
                ts_type, ts = m.timestamp()
                add(Source(topic, partition, m.offset(), m.key(), m.value(), ts if ts_type else None))
                n += 1
                if len(self._sources) >= max_docs or self._bytes >= max_bytes:
                    self.dispatch(keepalive, abort)
        finally:
            self._dropped_in_call = None
            self.metrics.consumed.inc(n)

    def add(self, src: Source) -> None:
        self._add(src)
        self.metrics.consumed.inc()

    def _add(self, src: Source) -> None:
        assert self.cfg is not None, "records consumed before a transfer config was applied"
        tp = src.tp
        try:
            skipped_from = self.tracker.add(tp, src.offset)
        except ValueError as e:
            # The consumer went back (an offset reset): what we hold of that partition is stale.
            log.warning("%s; forgetting the records of %s[%d] in flight, they are consumed again", e,
                        src.topic, src.partition)
            self.drop({tp})
            skipped_from = self.tracker.add(tp, src.offset)
        if skipped_from is not None and self.gaps is not None:
            self._check_skip(src, skipped_from)
        if not self._sources:
            self._since = self.clock()
        self._sources.append(src)
        prepared = prepare(src, self.cfg)
        if type(prepared) is IndexItem:
            self._items.append(prepared)
            self._bytes += len(prepared.lines)
        else:
            self._dead.append(prepared)

    def full(self) -> bool:
        cfg = self.cfg
        return cfg is not None and (len(self._sources) >= cfg.bulk_max_docs or self._bytes >= cfg.bulk_max_bytes)

    def room(self) -> int:
        """How many more records fit in the buffer by count."""
        return max(0, self.cfg.bulk_max_docs - len(self._sources)) if self.cfg else 0

    def ready(self, caught_up: bool) -> bool:
        """Dispatch now? When due (full or old), or when the consumer is ``caught_up`` (its last call
        gave fewer records than asked for) with something buffered and no batch in flight.

        Why: waiting out ``flush_interval_s`` with nothing more coming only adds latency (append →
        searchable was mostly that wait plus ES's refresh; measured p99 1.86 s → 1.21 s at 1,000
        lines/s and 1.86 s → 1.46 s at 10,000). Only with nothing in flight: while a bulk is being
        indexed the buffer keeps growing, so a live stream goes out as one bulk per round trip,
        bigger when Elasticsearch is slower. Sending into any free slot (two small bulks in
        flight, each queueing behind the other and paying ES's per-request costs) was measured
        worse at 10,000 lines/s: p99 2.4 s and 7 s. Under a backlog the consumer is never caught
        up: bulks stay full and two stay in flight. The buffer is at least ``CAUGHT_UP_LINGER_S``
        old first: without it a stream of 1,000 lines/s went out as ~20 bulks (and offset
        commits) a second, which doubled ES's CPU for it (6.4 against 3.4 CPU-s in a 30 s run),
        for a visibility that ES's 1 s refresh rounds anyway.
        """
        if self.due():
            return True
        if not caught_up or not self._sources or self.in_flight or self.cfg is None:
            return False
        return self.clock() - self._since >= min(CAUGHT_UP_LINGER_S, self.cfg.flush_interval_s)

    def time_to_due(self) -> float | None:
        """Seconds until the buffer must be flushed by age; None when it is empty."""
        if not self._sources or self.cfg is None:
            return None
        return max(0.0, self._since + self.cfg.flush_interval_s - self.clock())

    def due(self) -> bool:
        """The buffer is full or old enough to be dispatched."""
        if self.full():
            return True
        left = self.time_to_due()
        return left is not None and left <= 0

    # ------------------------------------------------------------------ settling
    def dispatch(self, keepalive: Keepalive | None, abort: Callable[[], bool]) -> bool:
        """The buffer becomes a batch in flight, its bulk request sent by a sender thread.

        With ``in_flight`` batches already in flight, the oldest is settled (and committed) first.
        False if ``abort()`` said stop while settling it (the buffer is then kept as it is).
        """
        ok = False
        try:
            settled = False
            while len(self.in_flight) >= self.indexer.in_flight:
                if not self._settle(self.in_flight[0], keepalive, abort):
                    return False
                settled = True
            if settled:
                self.commit()
            if self._sources:
                b = self._take_buffer()
                self.in_flight.append(b)
                self.indexer.start(b.bulk)
            ok = True
            return True
        finally:
            self._resume(keepalive, ok)

    def reap(self, keepalive: Keepalive | None, abort: Callable[[], bool]) -> bool:
        """Settle, oldest first, the batches whose bulk request was answered; commit. Does not wait
        for a request still in flight (it does retry one that failed). False if aborted."""
        ok = False
        settled = False
        try:
            while self.in_flight:
                b = self.in_flight[0]
                if b.bulk.future is not None and not b.bulk.future.done():
                    break
                if not self._settle(b, keepalive, abort):
                    return False
                settled = True
            ok = True
            return True
        finally:
            if settled:
                self.commit()
            self._resume(keepalive, ok)

    def flush(self, keepalive: Keepalive | None, abort: Callable[[], bool]) -> bool:
        """Settle every batch in flight and everything buffered, then commit. False if aborted first."""
        ok = False
        try:
            while self.in_flight:
                if not self._settle(self.in_flight[0], keepalive, abort):
                    return False
            if self._sources:
                b = self._take_buffer()
                self.in_flight.append(b)
                if not self._settle(b, keepalive, abort):
                    return False
            self.commit()
            ok = True
            return True
        finally:
            self._resume(keepalive, ok)

    def _resume(self, keepalive: Keepalive | None, ok: bool) -> None:
        """After waiting with the partitions paused (retries): fetch again, unless stuck and not stopping."""
        if keepalive is not None and self.consumer is not None and (ok or self.abandoned):
            self.consumer.resume()

    def _take_buffer(self) -> Batch:
        assert self.cfg is not None
        b = Batch(BulkJob(self._items), self._dead, self._sources, self.cfg.dead_letter_topic)
        self._items, self._dead, self._sources, self._bytes = [], [], [], 0
        return b

    def _settle(self, b: Batch, keepalive: Keepalive | None, abort: Callable[[], bool]) -> bool:
        """Finish ``b`` (bulk, then dead letters), mark its records settled, take it out of ``in_flight``.

        Re-entrant: a rebalance callback run by ``keepalive`` may settle ``b`` (and the batches
        after it) meanwhile; each step records that it is done.
        """
        if not b.settled:
            if (not b.bulk.done or b.bulk.future is not None) and not self.indexer.run(b.bulk, keepalive, abort):
                return False
            if not b.rejects_collected:
                b.rejects_collected = True
                for i, reason in b.bulk.rejected:
                    item = b.bulk.items[i]
                    b.dead.append(DeadLetter(item.src, reason, "rejected", index=item.index))
            if b.dead and not self.deadletters.send(b.dead_letter_topic, b.dead, keepalive, abort):
                return False
        if not b.settled:
            b.settled = True
            for src in b.sources:
                self.tracker.settle(src.tp, src.offset)
            log.debug("batch of %d records settled in %.2fs (%d indexed, %d dead-lettered)", len(b.sources),
                      self.clock() - b.started, b.bulk.accepted, len(b.dead))
        if b in self.in_flight:
            self.in_flight.remove(b)
        return True

    def commit(self) -> None:
        offsets = self.tracker.committable()
        if not offsets or self.consumer is None:
            return
        if self.consumer.commit(offsets):
            self.tracker.mark_committed(offsets)
            self.metrics.commits.labels("ok").inc()
        else:
            self.metrics.commits.labels("failed").inc()

    # ------------------------------------------------------------------ rebalances
    def on_assign(self, tps: list[TP]) -> None:
        if tps:
            self.metrics.rebalances.labels("assigned").inc()
            log.info("partitions assigned: %s", _names(tps))
            if self.gaps is not None and self.consumer is not None:
                self._check_assigned(tps)

    def _check_assigned(self, tps: list[TP]) -> None:
        """Committed offset against low watermark for each partition just assigned; seed the tracker.

        Runs inside the rebalance callback, before any record of these partitions is handed out.
        """
        assert self.gaps is not None
        deadline = self.clock() + ASSIGN_CHECK_BUDGET_S
        try:
            committed = self.consumer.committed_offsets(tps, ASSIGN_CHECK_BUDGET_S)
        except KafkaException as e:
            committed = {}
            err = e.args[0] if e.args else None
            error: str | None = err.str() if isinstance(err, KafkaError) else str(e)
        else:
            error = None
        unknown = [tp for tp in tps if tp not in committed]
        if unknown:
            log.warning("could not read the committed offsets of %s from the group coordinator (%s): records "
                        "Kafka deleted from them before this transfer group read them are not reported this "
                        "time; check the brokers (kafka consumer lines) if this repeats", _names(unknown),
                        error or "refused")
        for tp in tps:
            start = committed.get(tp)
            if start is None:
                continue  # unknown, or never committed: read from its first record by design
            left = deadline - self.clock()
            low = self.consumer.low_watermark(tp, left) if left > 0 else None
            lost = lost_range(start, low)
            if lost is not None:
                self.gaps.report(tp, *lost, found="at assignment")
            self.tracker.expect(tp, start, lost[1] + 1 if lost is not None else start)

    def _check_skip(self, src: Source, expected: int) -> None:
        """A record came past the offset expected: did Kafka delete the ones in between?"""
        assert self.gaps is not None
        if self.consumer is None:
            return
        low = self.consumer.low_watermark(src.tp, None)
        if low is None:
            low = self.consumer.low_watermark(src.tp, SKIP_CHECK_TIMEOUT_S)
        if low is None:
            log.warning("%s[%d]: offsets %d..%d were skipped (the consumer moved ahead) and Kafka did not say "
                        "its first offset: if the topic's retention deleted them, they are not in Elasticsearch",
                        src.topic, src.partition, expected, src.offset - 1)
            return
        lost = lost_range(expected, low, seen=src.offset)
        if lost is not None:
            self.gaps.report(src.tp, *lost, found="while consuming")

    def on_revoke(self, tps: list[TP]) -> None:
        if not tps:
            return
        self.metrics.rebalances.labels("revoked").inc()
        pending = self.tracker.pending()
        if self.abandoned:
            log.info("partitions revoked: %s; %d unsettled record(s) are left uncommitted for the next owner",
                     _names(tps), pending)
            self.drop(set(tps))
            return
        log.info("partitions revoked: %s; settling %d record(s) in flight and committing first", _names(tps),
                 pending)
        deadline = self.clock() + REVOKE_BUDGET_S

        def abort() -> bool:
            return self.abandoned or self.hard_stop() or self.clock() > deadline

        t0 = self.clock()
        if pending and not self.flush(None, abort):
            self.commit()  # whatever partitions are fully settled
            left = sum(self.tracker.pending(tp) for tp in tps)
            if not self.abandoned:
                log.warning("could not settle the in-flight records within %.0fs; giving up %s with %d record(s) "
                            "not committed: their new owner consumes them again (they overwrite themselves)",
                            REVOKE_BUDGET_S, _names(tps), left)
        elif not pending:
            self.commit()
        if pending:
            log.info("revoked partitions handed over after %.2fs; committed offsets: %s", self.clock() - t0,
                     ", ".join(f"{t}[{p}]={self.tracker.committed((t, p))}" for t, p in sorted(tps)))
        self.drop(set(tps))

    def on_lost(self, tps: list[TP]) -> None:
        if not tps:
            return
        self.metrics.rebalances.labels("lost").inc()
        log.warning("partitions lost (the group gave them away, e.g. after a session timeout): %s; dropping "
                    "%d record(s) in flight without committing, their new owner consumes them again",
                    _names(tps), sum(self.tracker.pending(tp) for tp in tps))
        self.drop(set(tps))

    def drop(self, tps: set[TP]) -> None:
        """Forget everything of these partitions: buffered, in flight, tracked."""
        if not tps:
            return
        if self._dropped_in_call is not None:
            self._dropped_in_call |= tps
        for b in self.in_flight:
            b.bulk.drop_partitions(tps)
            # in place: a flush higher up the stack holds this very list; keep letters already sent
            b.dead[:] = [d for d in b.dead if d.src.tp not in tps or d.state == "sent"]
            # and never settle them later: if the partition comes back, its records are tracked anew
            b.sources = [s for s in b.sources if s.tp not in tps]
        if any(s.tp in tps for s in self._sources):
            self._items = [i for i in self._items if i.src.tp not in tps]
            self._dead = [d for d in self._dead if d.src.tp not in tps]
            self._sources = [s for s in self._sources if s.tp not in tps]
            self._bytes = sum(len(i.lines) for i in self._items)
        self.tracker.drop(tps)


def _names(tps: list[TP] | set[TP]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(tps))
