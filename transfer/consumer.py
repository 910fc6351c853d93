"""The Kafka side of logtransfer: a group consumer that commits only what the pipeline settled.

Settings logferry fixes (the INI may not change them): ``group.id`` from ``[transfer] group_id``,
``enable.auto.commit=false`` and ``enable.auto.offset.store=false`` — offsets are committed
explicitly, synchronously, and only up to records that are in Elasticsearch or in the
dead-letter topic.

Defaults the INI may override with ``consumer.<key>``:

* ``partition.assignment.strategy=cooperative-sticky``. Several transfers share a group; with the
  cooperative protocol a rebalance (a transfer started, stopped, or killed; a topic added) moves
  only the partitions that change owner, and the other partitions keep being consumed and
  indexed meanwhile. The eager protocol revokes *every* partition of *every* member on each
  rebalance: the whole group stops, every member must drain and commit all its work, and then
  starts again. Sticky assignment also keeps partitions where they were, so little is
  re-consumed. (All members of a group must use the same protocol; they are all logtransfers.)
* ``auto.offset.reset=earliest``: a partition without a committed offset (a new topic) is read
  from its first record, so records produced before the transfer subscribed are not lost.
* ``topic.metadata.refresh.interval.ms=30000``: a topic that appears and matches
  ``topics_regex`` is picked up within 30 s (librdkafka's default is 5 min).
* ``fetch.wait.max.ms=100``: how long the broker may hold a fetch while it has nothing new.
  With librdkafka's 500 ms the first records of a freshly assigned partition arrived about
  0.7 s after the assignment on the bench's stack, against 0.2 s with 100 ms; a partition
  that goes quiet and gets a line also waits less. The price is an empty fetch every 100 ms
  per broker while idle.

While the pipeline waits for Elasticsearch (retries), :meth:`keepalive` pauses every assigned
partition and polls: the consumer stays in the group (``max.poll.interval.ms`` is about calls to
poll), fetches nothing, and rebalance callbacks still run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, Message, TopicPartition

from logferry import tlsdiag

from .faults import FaultLog

__all__ = ["CONSUMER_DEFAULTS", "GroupConsumer", "consumer_config"]

log = logging.getLogger("logtransfer.consumer")
kafka_log = logging.getLogger("logtransfer.kafka")
kafka_log.addFilter(tlsdiag.RAW_SECURITY_LINES)  # said once, clearly, by the error callback

CONSUMER_DEFAULTS: dict[str, Any] = {
    "partition.assignment.strategy": "cooperative-sticky",
    "auto.offset.reset": "earliest",
    "topic.metadata.refresh.interval.ms": 30000,
    "fetch.wait.max.ms": 100,
}

TP = tuple[str, int]


def consumer_config(base: dict[str, Any], group_id: str, transfer_id: str) -> dict[str, Any]:
    """The librdkafka settings: INI's common/consumer settings over our defaults, then the fixed keys."""
    conf = dict(CONSUMER_DEFAULTS)
    conf.update(base)
    conf.update({
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "client.id": f"logtransfer-{transfer_id}",
    })
    return conf


class GroupConsumer:
    """confluent-kafka ``Consumer`` with the callbacks and the pause/poll keepalive the pipeline needs.

    ``on_assign``, ``on_revoke`` and ``on_lost`` get lists of ``(topic, partition)``; they run
    inside :meth:`consume`, :meth:`keepalive` or :meth:`close`, on the caller's thread.
    """

    def __init__(self, conf: dict[str, Any], on_assign: Callable[[list[TP]], None],
                 on_revoke: Callable[[list[TP]], None], on_lost: Callable[[list[TP]], None],
                 on_message: Callable[[Message], None]) -> None:
        self.fault = FaultLog("kafka consumer", log)
        self.commit_fault = FaultLog("kafka offset commit", log)
        self._on_assign = on_assign
        self._on_revoke = on_revoke
        self._on_lost = on_lost
        self._on_message = on_message
        self.paused = False
        self.assignment: set[TP] = set()
        self.subscription: list[str] = []
        strategies = [s.strip() for s in str(conf.get("partition.assignment.strategy", "")).split(",")]
        #: librdkafka uses the cooperative protocol only when every configured strategy is cooperative
        self.cooperative = bool(strategies) and all(s == "cooperative-sticky" for s in strategies)
        self._errors = tlsdiag.KafkaErrors(conf)
        self.consumer = Consumer({**conf, "logger": kafka_log, "error_cb": self._on_error})
        self.closed = False

    # ------------------------------------------------------------------ callbacks
    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            raise KafkaException(err)
        said = self._errors(err.name(), err.str())  # a bad certificate/password: one clear line
        if said is not None:
            self.fault.fault(said[1], key=said[0])

    def _assign_cb(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        if self.cooperative:
            consumer.incremental_assign(partitions)
            self.assignment.update(tps)
        else:
            consumer.assign(partitions)
            self.assignment = set(tps)  # eager: the whole assignment, every time
        if partitions:
            # librdkafka keeps a partition's pause flag across unassign/assign: set it explicitly,
            # paused during an outage (fetch nothing yet), else resumed.
            if self.paused:
                consumer.pause(partitions)
            else:
                consumer.resume(partitions)
        self._on_assign(tps)

    def _revoke_cb(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        try:
            self._on_revoke(tps)
        finally:
            self._release(consumer, partitions, tps)

    def _release(self, consumer: Consumer, partitions: list[TopicPartition], tps: list[TP]) -> None:
        """Unassign; a paused partition is resumed first, so it is not still paused if it comes back."""
        try:
            if self.paused and partitions:
                consumer.resume(partitions)
        finally:
            self.assignment.difference_update(tps)
            if self.cooperative:
                consumer.incremental_unassign(partitions)
            else:
                consumer.unassign()

    def _lost_cb(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        try:
            self._on_lost(tps)
        finally:
            self._release(consumer, partitions, tps)

    # ------------------------------------------------------------------ use
    def subscribe(self, topics: list[str]) -> None:
        self.consumer.subscribe(topics, on_assign=self._assign_cb, on_revoke=self._revoke_cb,
                                on_lost=self._lost_cb)
        self.subscription = list(topics)

    def consume(self, max_messages: int, timeout_s: float) -> list[Message]:
        """Records (errors are logged here, not returned)."""
        msgs = self.consumer.consume(num_messages=max(1, max_messages), timeout=timeout_s)
        out = []
        for m in msgs:
            err = m.error()
            if err is None:
                out.append(m)
                continue
            self._message_error(m, err)
        if out and self.fault.active:
            self.fault.clear()
        return out

    def _message_error(self, m: Message, err: KafkaError) -> None:
        if err.fatal():
            raise KafkaException(err)
        if err.code() == KafkaError._PARTITION_EOF:
            return
        where = f" ({m.topic()}[{m.partition()}])" if m.topic() else ""
        self.fault.fault(f"{err.str()}{where}", key=f"{err.name()}{where}")

    def keepalive(self, timeout_s: float) -> None:
        """Poll with every assigned partition paused: stay in the group, fetch nothing."""
        if not self.paused:
            parts = self._assigned_tps()
            if parts:
                self.consumer.pause(parts)
            self.paused = True
        m = self.consumer.poll(timeout_s)
        # Paused partitions deliver nothing; a record that was already on its way is kept, in order.
        while m is not None:
            err = m.error()
            if err is None:
                self._on_message(m)
            else:
                self._message_error(m, err)
            m = self.consumer.poll(0)

    def resume(self) -> None:
        if self.paused:
            parts = self._assigned_tps()
            if parts:
                self.consumer.resume(parts)
            self.paused = False

    def _assigned_tps(self) -> list[TopicPartition]:
        try:
            return self.consumer.assignment()
        except KafkaException:
            return [TopicPartition(t, p) for t, p in self.assignment]

    def commit(self, offsets: dict[TP, int]) -> bool:
        """Synchronous commit of ``{(topic, partition): next offset}``; False (logged) if Kafka refused."""
        if not offsets:
            return True
        tps = [TopicPartition(t, p, off) for (t, p), off in offsets.items()]
        try:
            result = self.consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as e:
            err = e.args[0] if e.args else None
            text = err.str() if isinstance(err, KafkaError) else str(e)
            if isinstance(err, KafkaError) and err.code() == KafkaError._NO_OFFSET:
                return True
            self.commit_fault.fault(f"failed ({text}); tried again every second and with the next batch (records "
                                    "after the last commit would be consumed again and overwrite themselves)",
                                    key=err.name() if isinstance(err, KafkaError) else text)
            return False
        bad = [r for r in (result or []) if r.error is not None]
        if bad:
            self.commit_fault.fault("refused for " + ", ".join(f"{r.topic}[{r.partition}]: {r.error.str()}"
                                                               for r in bad), key="refused")
            return False
        self.commit_fault.clear()
        return True

    def committed_offsets(self, tps: list[TP], timeout_s: float) -> dict[TP, int | None]:
        """The group's committed offset of each partition, asked of the group coordinator.

        None where the group never committed one (librdkafka's OFFSET_INVALID); a partition the
        coordinator answered with an error is left out (unknown). Raises ``KafkaException`` when
        the coordinator does not answer within ``timeout_s``. Used when partitions are assigned,
        to find records Kafka deleted before the group read them (:mod:`transfer.gaps`).
        """
        if not tps:
            return {}
        res = self.consumer.committed([TopicPartition(t, p) for t, p in tps], timeout=timeout_s)
        return {(r.topic, r.partition): (r.offset if r.offset >= 0 else None) for r in res if r.error is None}

    def low_watermark(self, tp: TP, timeout_s: float | None) -> int | None:
        """The partition's first offset still in Kafka (log start offset); None if unknown.

        ``timeout_s`` None: the value the broker sent with the latest fetch response (librdkafka
        keeps it; no request). Otherwise a ListOffsets request answered within ``timeout_s``.
        """
        try:
            if timeout_s is None:
                wm = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
            else:
                wm = self.consumer.get_watermark_offsets(TopicPartition(*tp), timeout=timeout_s, cached=False)
        except KafkaException:
            return None
        if not wm or wm[0] < 0:
            return None
        return int(wm[0])

    def lag(self, committed: Callable[[TP], int | None]) -> dict[TP, int | None]:
        """High watermark minus committed offset (or position) per assigned partition, from cached values."""
        out: dict[TP, int | None] = {}
        try:
            positions = {(p.topic, p.partition): p.offset for p in self.consumer.position(self._assigned_tps())}
        except KafkaException:
            positions = {}
        for tp in sorted(self.assignment):
            try:
                wm = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
            except KafkaException:
                wm = None
            if not wm or wm[1] < 0:
                out[tp] = None
                continue
            base = committed(tp)
            if base is None:
                pos = positions.get(tp, OFFSET_INVALID)
                base = pos if pos is not None and pos >= 0 else None
            out[tp] = max(0, wm[1] - base) if base is not None else None
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.consumer.close()
