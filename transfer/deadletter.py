"""The dead-letter topic: records the transfer cannot index, kept with the reason.

Each dead letter is the ORIGINAL Kafka record — same key, same value bytes, untouched, so a
replay tool can produce it back as it was — plus headers saying why and where from:

=============================  =================================================================
``logferry.reason``            one line: what was wrong (ES's error type and reason, or why the
                               value is not a logferry envelope)
``logferry.kind``              ``invalid_record`` (not an envelope) or ``rejected`` (Elasticsearch
                               refused the document for good, e.g. a mapping conflict)
``logferry.source.topic``      topic, partition, offset and timestamp (ms) of the original record
``logferry.source.partition``
``logferry.source.offset``
``logferry.source.timestamp``
``logferry.index``             the index the document was meant for (``rejected`` only)
``logferry.transfer``          the id of the logtransfer that wrote it
=============================  =================================================================

The header names are the contract in logferry/deadletters.py, where the console reads them back.
Headers, not a JSON wrapper: the value may be any bytes (not UTF-8, not JSON), and a wrapper
would have to re-encode it. The producer is idempotent with ``acks=all``, and the transfer
waits until every dead letter of a batch is acknowledged before it commits past the batch.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from logferry import tlsdiag

from .backoff import Backoff
from .faults import FaultLog
from .metrics import TransferMetrics
from .records import DeadLetter

__all__ = ["DeadLetterProducer", "dead_letter_headers"]

log = logging.getLogger("logtransfer.deadletter")
kafka_log = logging.getLogger("logtransfer.kafka")
kafka_log.addFilter(tlsdiag.RAW_SECURITY_LINES)  # said once, clearly, by the error callback


def dead_letter_headers(d: DeadLetter, transfer_id: str) -> list[tuple[str, bytes]]:
    h = [
        ("logferry.reason", d.reason.encode("utf-8", "replace")),
        ("logferry.kind", d.kind.encode()),
        ("logferry.source.topic", d.src.topic.encode()),
        ("logferry.source.partition", str(d.src.partition).encode()),
        ("logferry.source.offset", str(d.src.offset).encode()),
    ]
    if d.src.timestamp_ms is not None:
        h.append(("logferry.source.timestamp", str(d.src.timestamp_ms).encode()))
    if d.index:
        h.append(("logferry.index", d.index.encode()))
    h.append(("logferry.transfer", transfer_id.encode("utf-8", "replace")))
    return h


class DeadLetterProducer:
    """Writes dead letters and waits for Kafka's acknowledgement, retrying failures forever."""

    def __init__(self, conf: dict[str, Any], transfer_id: str, metrics: TransferMetrics,
                 backoff: Backoff | None = None) -> None:
        self.transfer_id = transfer_id
        self.metrics = metrics
        self.backoff = backoff or Backoff(0.5, 10.0)
        self.fault = FaultLog("dead-letter topic", log)
        self._admin_conf = {k: v for k, v in conf.items() if not k.startswith(("compression", "linger"))}
        self._errors = tlsdiag.KafkaErrors(conf)
        self.producer = Producer({
            **conf,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 20,
            # Fail a delivery after 30 s instead of librdkafka's 300 s, so an outage shows in the log
            # and the status key soon; the record is produced again, nothing is dropped.
            "message.timeout.ms": conf.get("message.timeout.ms", 30000),
            "client.id": f"logtransfer-{transfer_id}-deadletter",
            "logger": kafka_log,
            "error_cb": self._on_error,
        })
        self._known_topics: set[str] = set()

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("dead-letter producer: fatal error %s", err.str())
        elif (said := self._errors(err.name(), err.str())) is not None:  # bad certificate/password: clear
            self.fault.fault(said[1] if said[0] == "security" else f"producer error: {said[1]}", key=said[0])

    def ensure_topic(self, topic: str) -> None:
        """Create the dead-letter topic if it does not exist (best effort: brokers may auto-create it)."""
        if topic in self._known_topics:
            return
        try:
            admin = AdminClient({**self._admin_conf, "logger": kafka_log})
            md = admin.list_topics(topic=topic, timeout=10)
            t = md.topics.get(topic)
            if t is not None and t.error is None:
                self._known_topics.add(topic)
                return
            futures = admin.create_topics([NewTopic(topic, num_partitions=-1, replication_factor=-1)],
                                          request_timeout=15)
            futures[topic].result(timeout=20)
            log.info("created the dead-letter topic %s (broker's default partitions and replication)", topic)
            self._known_topics.add(topic)
        except KafkaException as e:
            err = e.args[0] if e.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                self._known_topics.add(topic)
                return
            log.warning("could not check or create the dead-letter topic %s (%s); dead letters will be "
                        "produced anyway (the broker may create it)", topic, err.str() if err else e)
        except Exception as e:  # an admin call that times out must not stop the transfer
            log.warning("could not check or create the dead-letter topic %s (%s)", topic, e)

    def send(self, topic: str, letters: list[DeadLetter], keepalive: Callable[[float], None] | None = None,
             abort: Callable[[], bool] | None = None) -> bool:
        """Produce every letter not yet delivered and wait for all acknowledgements.

        True when all are in the topic; False when ``abort()`` said stop first. Re-entrant: a
        call nested in another (from a rebalance callback) only produces what is not yet sent.
        """
        while True:
            for d in letters:
                if d.state == "new":
                    self._produce(topic, d)
            waited = 0.0
            while any(d.state == "sent" for d in letters):
                if abort is not None and abort():
                    return False
                self.producer.poll(0.05)
                waited += 0.05
                if keepalive is not None and waited >= 1.0:
                    keepalive(0)  # Kafka is slow to acknowledge: stay in the consumer group meanwhile
            if all(d.state == "delivered" for d in letters):
                if letters:
                    self.fault.clear()
                    self.backoff.reset()
                    self._log_delivered(topic, letters)
                return True
            waiting = sum(d.state == "new" for d in letters)
            delay = self.backoff.next()
            self.fault.fault(f"{waiting} dead letter(s) for {topic} not acknowledged ({self._last_error}); "
                             f"producing them again (backoff up to {self.backoff.cap_s:g}s); offsets are not "
                             "committed past them", key="undelivered")
            end = delay
            while end > 0:
                if abort is not None and abort():
                    return False
                step = min(0.2, end)
                if keepalive is not None:
                    keepalive(step)
                    self.producer.poll(0)
                else:
                    self.producer.poll(step)
                end -= step

    _last_error = "no answer"

    def _produce(self, topic: str, d: DeadLetter) -> None:
        def delivered(err: KafkaError | None, _msg: Any) -> None:
            if err is None:
                d.state = "delivered"
                self.metrics.dead_lettered.labels(d.kind).inc()
            else:
                d.state = "new"
                self._last_error = err.str()

        while True:
            try:
                self.producer.produce(topic, value=d.src.value, key=d.src.key,
                                      headers=dead_letter_headers(d, self.transfer_id), on_delivery=delivered)
                d.state = "sent"
                return
            except BufferError:
                self.producer.poll(0.1)  # local queue full: serve deliveries, then try again
            except KafkaException as e:
                d.state = "new"
                self._last_error = str(e)
                return

    def _log_delivered(self, topic: str, letters: list[DeadLetter]) -> None:
        """One line per distinct reason, not one per record: a flood of bad records stays readable."""
        groups: dict[str, list[DeadLetter]] = {}
        for d in letters:
            if not d.logged:
                d.logged = True
                groups.setdefault(_reason_kind(d.reason), []).append(d)
        for same in groups.values():
            first = same[0]
            if len(same) == 1:
                log.warning("dead-lettered %s into %s: %s", first.src.where(), topic, first.reason)
            else:
                log.warning("dead-lettered %d records into %s (first %s): %s", len(same), topic, first.src.where(),
                            first.reason)

    def close(self, timeout_s: float = 10.0) -> None:
        with contextlib.suppress(Exception):
            self.producer.flush(timeout_s)


def _reason_kind(reason: str) -> str:
    """Reasons that differ only in numbers, ids or quoted values (document ids, offsets) count as one."""
    return re.sub(r"\[[^\]]*\]|'[^']*'|\d+", "#", reason)[:200]
