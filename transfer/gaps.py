"""Records Kafka deleted before this transfer group read them: found, counted, reported.

Kafka keeps a topic's records for ``retention.ms`` (or ``retention.bytes``) whether anyone read
them or not. A transfer group that is down, or stuck behind an Elasticsearch outage, for longer
than that comes back to a committed offset below the partition's first record (its *low
watermark*, the log start offset): the records in between are gone. librdkafka then answers
the fetch with OFFSET_OUT_OF_RANGE and, under ``auto.offset.reset=earliest``, quietly starts
again at the low watermark. Nothing would say that records were skipped.

So the transfer looks for such gaps itself, in two places:

* **when partitions are assigned**: the group's committed offset ``C`` against the low watermark
  ``L`` (both asked of the broker); ``C < L`` means offsets ``C .. L-1`` were deleted unread;
* **while consuming**: a record whose offset is past the next one expected (the consumer was
  reset forward, e.g. its position fell out of retention during a long Elasticsearch outage)
  is checked against the low watermark the broker sent with that very fetch.

A partition the group never committed (a new group or a new topic) has no expectation and is
never a gap: ``auto.offset.reset=earliest`` reads it from its first record, and what Kafka
deleted before the group existed was never this group's to read.

Each gap is one WARNING line (topic, partition, offsets, count, what to do), the Prometheus
counter ``logtransfer_records_lost_to_retention`` (by topic), and an entry in the status key's
``retention_gaps`` (the last :data:`KEPT`), shown as ``LOST`` by ``logctl status``.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Counter

__all__ = ["KEPT", "RetentionGap", "RetentionGaps", "lost_range"]

log = logging.getLogger("logtransfer.gaps")

#: How many gaps the status key lists (the counter counts all of them).
KEPT = 20

TP = tuple[str, int]


def lost_range(expected: int | None, low: int | None, seen: int | None = None) -> tuple[int, int] | None:
    """The offsets ``(first, last)`` Kafka deleted before they were read, or None when there are none.

    ``expected`` is the next offset the group was to read: its committed offset at assignment,
    or one past the last record consumed. None or negative (librdkafka's OFFSET_INVALID, -1001)
    means no committed offset — a new group or topic, read from its start by design: never a gap.
    ``low`` is the partition's low watermark; None or negative (unknown) proves nothing. ``seen``
    is the offset of the record that arrived instead, when there is one: the range stops before
    it (a low watermark read later may have moved past records that were read).
    """
    if expected is None or expected < 0 or low is None or low < 0:
        return None
    end = low if seen is None else min(low, seen)
    if end <= expected:
        return None
    return expected, end - 1


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RetentionGap:
    """One range of offsets of one partition that Kafka deleted before the group read it."""

    topic: str
    partition: int
    first: int
    last: int
    count: int
    at: str
    found: str  # "at assignment" or "while consuming"


class RetentionGaps:
    """Reports gaps (log line, metric, status list); the transfer's one place that knows of them."""

    def __init__(self, counter: Counter, clock: Callable[[], str] = _now, kept: int = KEPT) -> None:
        self.counter = counter
        self.clock = clock
        self.recent: deque[RetentionGap] = deque(maxlen=kept)
        self.records_lost = 0

    def report(self, tp: TP, first: int, last: int, found: str) -> RetentionGap:
        """Count and log one gap; returns it (as the status key shows it)."""
        topic, partition = tp
        count = last - first + 1
        gap = RetentionGap(topic, partition, first, last, count, self.clock(), found)
        self.recent.append(gap)
        self.records_lost += count
        self.counter.labels(topic).inc(count)
        log.warning("kafka deleted %d record(s) of %s[%d] before this transfer group read them (offsets %d..%d, "
                    "found %s): the topic's retention is shorter than the time the group did not consume it; "
                    "these records are not in Elasticsearch. Ship them again from the hosts if their files "
                    "still exist, and give the topic a longer retention.ms than the longest transfer or "
                    "Elasticsearch outage (docs/runbook.md, records deleted by Kafka retention)",
                    count, topic, partition, first, last, found)
        return gap

    def status(self) -> list[dict[str, Any]]:
        """The last gaps, oldest first, for the status key's ``retention_gaps``."""
        return [asdict(g) for g in self.recent]
