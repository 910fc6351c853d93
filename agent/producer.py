"""The Kafka side of logagent: produce lines, report which ones Kafka acknowledged.

Delivery contract (docs/design.md): a file's offset moves only past lines Kafka acknowledged with
acks=all, through an idempotent producer, so librdkafka's own retries can neither reorder nor
duplicate within a partition. ``message.timeout.ms`` is 0 (never give up): while the broker is
away the records wait in librdkafka's queue, and the agent stops *reading* once
``max_inflight_bytes`` are unacknowledged. Memory is bounded by that cap, never by an outage's
length, and nothing is dropped.

A delivery that still fails (a permanent per-message error such as an unknown topic with
auto-creation off, or authorisation) is handed back to the caller as a failure; the agent holds
it and pauses that file (agent/refusals.py), so such lines are delayed and reported, never lost.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from logferry import tlsdiag

log = logging.getLogger("logagent.producer")

#: librdkafka settings the agent insists on; an INI may not weaken them.
REQUIRED = {
    "acks": "all",
    "enable.idempotence": "true",
    "message.timeout.ms": "0",
    "max.in.flight.requests.per.connection": "5",
}

RECORD_OVERHEAD_BYTES = 4096

#: Room a record needs around its key and value inside a batch of its own, uncompressed: the
#: v2 record batch header (61 bytes) and one record's framing (varints, at most 21 bytes).
BATCH_OVERHEAD_BYTES = 61 + 21 + 18  # (+18 spare)

#: Settings of the second producer, for topics whose max.message.bytes is below our batches:
#: one record per batch, uncompressed, so a record that fits the topic's limit is accepted.
NARROW = {"batch.num.messages": "1", "linger.ms": "0", "compression.type": "none"}

#: How often a topic's limit may be asked again (a refusal after a change of the topic).
LEARN_EVERY_S = 60.0

#: defaults tuned for throughput on log lines; the INI's [kafka] producer.* keys override them.
DEFAULTS = {
    "linger.ms": "20",
    "batch.size": str(1 << 20),
    "batch.num.messages": "10000",
    "queue.buffering.max.kbytes": str(512 << 10),
    "queue.buffering.max.messages": "1000000",
    "compression.type": "lz4",
    "socket.keepalive.enable": "true",
    "reconnect.backoff.max.ms": "5000",
    "statistics.interval.ms": "0",
}


#: what to do about a refusal, by librdkafka error code (the rest show Kafka's own text)
_REFUSAL_HINTS = {
    KafkaError.MSG_SIZE_TOO_LARGE: "a record is over the topic's max.message.bytes: raise the "
                                   "topic's max.message.bytes, or lower [kafka] producer.message.max.bytes so "
                                   "long lines are cut",
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "this agent's Kafka user may not write to the topic: grant it WRITE "
                                           "on the topic, or change the topic in the collect list",
    KafkaError.UNKNOWN_TOPIC_OR_PART: "the topic does not exist and the brokers do not create topics: create "
                                      "it, or change the topic in the collect list",
    KafkaError._UNKNOWN_TOPIC: "the topic does not exist and the brokers do not create topics: create it, or "
                               "change the topic in the collect list",
    KafkaError.TOPIC_EXCEPTION: "the topic name is invalid: fix it in the collect list",
}


def refusal_reason(err: KafkaError) -> str:
    """One line for a refused record: Kafka's words, then what the operator can do.

    The same for every record refused for the same cause (no sizes or offsets in it): the agent
    logs once per file and reason.
    """
    hint = _REFUSAL_HINTS.get(err.code())
    text = f"{err.str()} ({err.name()})"
    return f"{text}: {hint}" if hint else text


@dataclass(slots=True)
class Delivery:
    """A record Kafka refused for good: `token` is the caller's, `value` what was sent."""

    token: Any
    error: KafkaError
    value: bytes


class KafkaSink:
    """One idempotent producer for the whole agent, with a byte count of what is unacknowledged."""

    def __init__(self, config: Mapping[str, str], *, client_id: str = "logagent") -> None:
        conf: dict[str, Any] = {"client.id": client_id, **DEFAULTS, **dict(config), **REQUIRED}
        # librdkafka logs every failed connect attempt (one a second per broker while it is down);
        # error_cb below reports the same faults once per 10 s, so its own log keeps only CRITICAL.
        rdlog = logging.getLogger("logagent.librdkafka")
        rdlog.setLevel(logging.CRITICAL)
        conf["logger"] = rdlog
        conf["error_cb"] = self._on_error
        self._conf = conf
        self._producer = Producer(conf)
        self._narrow: Any = None  # Producer, made when a topic's limit is learned
        #: topic -> its max.message.bytes, for topics that refused records as too large; their
        #: records go through the narrow producer, cut to fit (see :meth:`value_limit`)
        self.topic_max: dict[str, int] = {}
        #: topics sent one record per batch: those that refused a record as too large
        self.narrow_topics: set[str] = set()
        self._asked: dict[str, float] = {}
        #: librdkafka refuses a larger record at produce(); the room for key, headers and the
        #: record's framing is kept free (a line is cut to fit, see ``Agent.produce_events``)
        self.max_value_bytes = int(conf.get("message.max.bytes", 1_000_000)) - RECORD_OVERHEAD_BYTES
        #: key -> (value, token) of its records not yet reported, in the order produced
        self._sent: dict[bytes, deque[tuple[bytes, Any]]] = {}
        self._acked: list[Any] = []
        self._failed: list[Delivery] = []
        self._done_bytes = 0
        self._done_count = 0
        self.inflight_bytes = 0
        self.inflight_count = 0
        self.last_error: str | None = None
        self._last_error_logged = 0.0
        self._errors = tlsdiag.KafkaErrors(conf)
        self._security_logged: str | None = None  # the clear TLS/login line last logged

    def _on_error(self, err: KafkaError) -> None:
        # Broker-down and similar are expected faults: one log line, rate-limited, no traceback.
        # logferry.tlsdiag.KafkaErrors (shared with the transfer's clients) turns a bad
        # certificate or password into its clear line and drops the "brokers are down" echoes
        # that follow it; what is logged when stays the agent's: the clear line when it starts or
        # changes and as a reminder a minute, other faults at most every 10 s.
        now = time.monotonic()
        if err.fatal():
            self.last_error = f"kafka: {err.str()}"
            log.error("kafka: %s (fatal for the producer)", err.str())
            raise KafkaException(err)
        said = self._errors(err.name(), err.str())
        if said is None:
            return  # the echo of a problem just reported, or another client's to report
        key, text = said
        self.last_error = f"kafka: {text}"
        if key == "security":
            if text != self._security_logged or now - self._last_error_logged > 60:
                self._last_error_logged, self._security_logged = now, text
                log.error("%s (will keep retrying; lines wait, nothing is dropped)", text)
            return
        self._security_logged = None
        if now - self._last_error_logged > 10:
            self._last_error_logged = now
            log.warning("kafka: %s (will keep retrying; lines wait, nothing is dropped)", text)

    def produce(self, topic: str, key: bytes, value: bytes, token: Any) -> None:
        """Queue one record; blocks (serving callbacks) only if librdkafka's own queue is full.

        `token` comes back from :meth:`poll`, in ``acked`` or in a failed :class:`Delivery`.
        """
        self.produce_many(topic, key, [(value, token)])

    def value_limit(self, topic: str, key_len: int) -> int:
        """Largest record value for ``topic`` with a key of ``key_len`` bytes."""
        top = self.topic_max.get(topic)
        if top is None:
            return self.max_value_bytes
        return min(self.max_value_bytes, top - BATCH_OVERHEAD_BYTES - key_len)

    def learn_limit(self, topic: str, timeout: float = 5.0) -> int | None:
        """Ask the brokers for ``topic``'s ``max.message.bytes`` after it refused a record as too large.

        From then on the topic's records go one per batch (a batch of many is what most often
        exceeds a small limit) and lines are cut to fit, marked truncated, instead of being
        refused forever. None when the config cannot be read (no DescribeConfigs right, say):
        the records stay held, with Kafka's reason. Asked at most once a minute per topic.
        """
        now = time.monotonic()
        if now - self._asked.get(topic, float("-inf")) < LEARN_EVERY_S:
            return self.topic_max.get(topic)
        self._asked[topic] = now
        from confluent_kafka.admin import AdminClient, ConfigResource

        conf = {k: v for k, v in self._conf.items()
                if k not in DEFAULTS and k not in REQUIRED and k not in NARROW and k != "error_cb"}
        self.narrow_topics.add(topic)  # one per batch even if the limit stays unknown
        try:
            res = ConfigResource(ConfigResource.Type.TOPIC, topic)
            admin = AdminClient(conf)  # (kept referenced until the answer: a destroyed handle fails it)
            entries = admin.describe_configs([res], request_timeout=timeout)[res].result(timeout)
            limit = int(entries["max.message.bytes"].value)
        except Exception as e:  # a missing right or an outage: keep holding, say why
            log.warning("cannot read the max.message.bytes of topic %s (%s): its refused records stay held",
                        topic, e)
            return self.topic_max.get(topic)
        if self.topic_max.get(topic) != limit:
            log.info("topic %s takes records of at most %d bytes (max.message.bytes): its records now go one "
                     "per batch, longer lines cut to fit and marked truncated", topic, limit)
        self.topic_max[topic] = limit
        return limit

    def produce_many(self, topic: str, key: bytes, records: list[tuple[bytes, Any]]) -> None:
        """:meth:`produce` for ``(value, token)`` pairs of one key (one file), in order."""
        q = self._sent.get(key)
        if q is None:
            q = self._sent[key] = deque()
        producer = self._producer if topic not in self.narrow_topics else self._narrow_producer()
        produce = producer.produce
        cb = self._on_delivery  # one bound callback for every record (a closure each costs more)
        klen = len(key)
        size = count = 0
        try:
            for rec in records:
                value = rec[0]
                q.append(rec)
                try:
                    try:
                        # positional arguments: keywords cost more to parse
                        produce(topic, value, key, -1, cb)
                    except BufferError:
                        while True:
                            producer.poll(0.05)
                            try:
                                produce(topic, value, key, -1, cb)
                                break
                            except BufferError:
                                continue
                except KafkaException as e:
                    # Refused before queueing: librdkafka already knows the topic does not exist
                    # (auto-creation off) or the record is invalid. A refusal like any other:
                    # handed back from poll(), held by the agent. Only a fatal error stops it.
                    q.pop()
                    err = e.args[0] if e.args else None
                    if not isinstance(err, KafkaError) or err.fatal():
                        raise
                    self._failed.append(Delivery(rec[1], err, value))
                    continue
                except BaseException:
                    q.pop()
                    raise
                size += len(value) + klen
                count += 1
        finally:
            if not q:
                del self._sent[key]
            self.inflight_bytes += size
            self.inflight_count += count

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        # Which record is this? One key is one file, whose records librdkafka reports in the
        # order they were produced, so it is normally the oldest of its key; the value (which
        # holds the line's event.id, unique per file and offset) confirms it, and a report out
        # of that order is found by its value instead.
        key = msg.key()
        value = msg.value()
        q = self._sent[key]
        item = q[0]
        if item[0] == value:
            q.popleft()
        else:
            for i, it in enumerate(q):
                if it[0] == value:
                    item = it
                    del q[i]
                    break
            else:
                raise RuntimeError(f"delivery report for a record never produced (key {key!r})")
        if not q:
            del self._sent[key]
        self._done_bytes += len(value) + len(key)
        self._done_count += 1
        if err is None:
            self._acked.append(item[1])
        else:
            self._failed.append(Delivery(item[1], err, item[0]))

    def _narrow_producer(self) -> Any:
        if self._narrow is None:
            self._narrow = Producer({**self._conf, **NARROW, "client.id": f"{self._conf['client.id']}-narrow"})
        return self._narrow

    def poll(self, timeout: float = 0.0) -> tuple[list[Any], list[Delivery]]:
        """Serve delivery reports: ``(tokens acknowledged, records refused)`` since the last call."""
        narrow = self._narrow
        if narrow is not None and len(narrow):
            if len(self._producer):
                narrow.poll(min(timeout, 0.005))
                self._producer.poll(timeout)
            else:
                narrow.poll(timeout)
                self._producer.poll(0)
        else:
            self._producer.poll(timeout)
        acked, failed = self._acked, self._failed
        if not acked and not failed:
            return [], []
        self._acked, self._failed = [], []
        self.inflight_bytes -= self._done_bytes
        self.inflight_count -= self._done_count
        self._done_bytes = self._done_count = 0
        return acked, failed

    def flush(self, timeout: float) -> tuple[list[Any], list[Delivery]]:
        """Wait up to `timeout` for everything queued; returns the reports that arrived."""
        if self._narrow is not None:
            self._narrow.flush(timeout)
        self._producer.flush(timeout)
        return self.poll(0)

    def ping(self, timeout: float = 2.0) -> bool:
        """True if a broker answers a metadata request (used for the status key)."""
        try:
            self._producer.list_topics(timeout=timeout)
            return True
        except KafkaException:
            return False
