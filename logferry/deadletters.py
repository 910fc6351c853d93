"""The dead-letter topic's contract: the headers logtransfer writes, and reading the latest records back.

logtransfer (transfer/deadletter.py) writes each record it cannot index to the dead-letter
topic unchanged, with headers saying why and where from; the console shows the latest ones.
The header names live here so that writer and reader cannot drift apart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

__all__ = ["HEADERS", "DeadLetterView", "recent_dead_letters"]

#: header name -> what it holds
HEADERS = {
    "logferry.reason": "one line: what was wrong",
    "logferry.kind": "invalid_record (not an envelope) or rejected (Elasticsearch refused the document)",
    "logferry.source.topic": "the original record's topic",
    "logferry.source.partition": "... partition",
    "logferry.source.offset": "... offset",
    "logferry.source.timestamp": "... timestamp (ms)",
    "logferry.index": "the index the document was meant for (rejected only)",
    "logferry.transfer": "the id of the logtransfer that wrote it",
}
PREVIEW_BYTES = 600


@dataclass(frozen=True)
class DeadLetterView:
    partition: int
    offset: int
    timestamp_ms: int | None
    reason: str
    kind: str
    source: str  # topic[partition]@offset
    index: str
    transfer: str
    value: str  # the first PREVIEW_BYTES of the original value, as text (invalid UTF-8 replaced)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _view(msg: Any) -> DeadLetterView:
    h = {k: (v or b"").decode("utf-8", "replace") for k, v in (msg.headers() or [])}
    ts_type, ts = msg.timestamp()
    return DeadLetterView(
        partition=msg.partition(), offset=msg.offset(), timestamp_ms=ts if ts_type else None,
        reason=h.get("logferry.reason", ""), kind=h.get("logferry.kind", ""),
        source=f"{h.get('logferry.source.topic', '?')}[{h.get('logferry.source.partition', '?')}]"
               f"@{h.get('logferry.source.offset', '?')}",
        index=h.get("logferry.index", ""), transfer=h.get("logferry.transfer", ""),
        value=(msg.value() or b"")[:PREVIEW_BYTES].decode("utf-8", "replace"))


def recent_dead_letters(consumer_config: dict[str, str], topic: str, count: int = 50,
                        timeout_s: float = 5.0) -> list[DeadLetterView]:
    """The latest ``count`` records of each partition of ``topic``, newest first.

    Read without a consumer group (assigned partitions, nothing committed), so looking never
    moves anyone's offsets. An unknown topic is an empty list: no record was ever dead-lettered.
    """
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    conf = dict(consumer_config) | {"group.id": "logferry-console-peek", "enable.auto.commit": "false",
                                    "enable.partition.eof": "true"}
    c = Consumer(conf)
    try:
        md = c.list_topics(topic, timeout=timeout_s)
        t = md.topics.get(topic)
        if t is None or t.error is not None or not t.partitions:
            return []
        want: dict[int, int] = {}
        assign = []
        for p in t.partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                want[p] = high
                assign.append(TopicPartition(topic, p, max(low, high - count)))
        if not assign:
            return []
        c.assign(assign)
        out: list[DeadLetterView] = []
        deadline = time.monotonic() + timeout_s
        while want and time.monotonic() < deadline:
            msg = c.poll(0.2)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    want.pop(msg.partition(), None)
                continue
            out.append(_view(msg))
            if msg.offset() + 1 >= want.get(msg.partition(), 0):
                want.pop(msg.partition(), None)
        out.sort(key=lambda d: (d.timestamp_ms or 0, d.offset), reverse=True)
        return out[:count]
    finally:
        c.close()
