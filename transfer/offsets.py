"""Which Kafka offsets may be committed: the delivery rule of docs/design.md, per partition.

An offset ``N`` is committed for a partition only when every record of that partition below
``N`` that this transfer consumed is settled: in Elasticsearch, or in the dead-letter topic.
Records are registered in the order the consumer hands them out (ascending per partition) and
may be settled in any order (a bulk's items succeed or fail independently); the commit point is
one past the longest settled run from the oldest record.

Per record this is O(1) amortised: a deque of outstanding offsets per partition and a set of the
ones settled out of order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

__all__ = ["OffsetTracker", "TopicPartitionKey"]

TopicPartitionKey = tuple[str, int]


@dataclass
class _Partition:
    outstanding: deque[int] = field(default_factory=deque)
    settled: set[int] = field(default_factory=set)
    next_commit: int | None = None  # one past the last settled record of the settled run
    committed: int | None = None  # what we last committed successfully


class OffsetTracker:
    """Tracks consumed-but-unsettled records and says what may be committed."""

    def __init__(self) -> None:
        self._parts: dict[TopicPartitionKey, _Partition] = {}

    def add(self, tp: TopicPartitionKey, offset: int) -> int | None:
        """A record was consumed. Offsets of one partition must come in ascending order.

        Returns the offset that was expected instead when this one skips ahead of it (None when
        it follows on, or nothing was expected yet): the caller finds out whether Kafka deleted
        the records in between (:mod:`transfer.gaps`) — a skip may also be harmless (transaction
        markers, compaction).
        """
        p = self._parts.get(tp)
        if p is None:
            p = self._parts[tp] = _Partition()
        last = p.outstanding[-1] if p.outstanding else (p.next_commit - 1 if p.next_commit is not None else None)
        if last is not None and offset <= last:
            raise ValueError(f"offset {offset} of {tp[0]}[{tp[1]}] is not after {last}: the consumer went back "
                             "without the tracker being reset")
        p.outstanding.append(offset)
        return last + 1 if last is not None and offset != last + 1 else None

    def expect(self, tp: TopicPartitionKey, committed: int, start: int) -> None:
        """A partition just assigned: the group's committed offset, and where its records start.

        ``start`` is above ``committed`` when Kafka deleted the records in between (they were
        reported): the commit point then moves past them, so the gap is committed over once and
        not reported again by the next owner. A record later than ``start`` shows up as a skip
        in :meth:`add`. Ignored if the partition is already tracked.
        """
        if tp not in self._parts:
            self._parts[tp] = _Partition(next_commit=max(start, committed), committed=committed)

    def settle(self, tp: TopicPartitionKey, offset: int) -> None:
        """The record is in Elasticsearch or in the dead-letter topic."""
        p = self._parts.get(tp)
        if p is None:
            return  # partition dropped meanwhile (revoked or lost): nothing to commit for it
        if p.outstanding and p.outstanding[0] == offset:
            p.outstanding.popleft()
            p.next_commit = offset + 1
            while p.outstanding and p.outstanding[0] in p.settled:
                done = p.outstanding.popleft()
                p.settled.discard(done)
                p.next_commit = done + 1
        else:
            p.settled.add(offset)

    def pending(self, tp: TopicPartitionKey | None = None) -> int:
        """Records consumed and not yet settled (of one partition, or of all)."""
        if tp is not None:
            p = self._parts.get(tp)
            return len(p.outstanding) - len(p.settled) if p else 0
        return sum(len(p.outstanding) - len(p.settled) for p in self._parts.values())

    def committable(self) -> dict[TopicPartitionKey, int]:
        """Partitions whose commit point moved past what was last committed: ``{tp: offset}``."""
        out = {}
        for tp, p in self._parts.items():
            if p.next_commit is not None and (p.committed is None or p.next_commit > p.committed):
                out[tp] = p.next_commit
        return out

    def mark_committed(self, offsets: dict[TopicPartitionKey, int]) -> None:
        """Kafka accepted these commits."""
        for tp, off in offsets.items():
            p = self._parts.get(tp)
            if p is not None and (p.committed is None or off > p.committed):
                p.committed = off

    def committed(self, tp: TopicPartitionKey) -> int | None:
        p = self._parts.get(tp)
        return p.committed if p else None

    def position(self, tp: TopicPartitionKey) -> int | None:
        """One past the newest record consumed from ``tp`` (None when none was)."""
        p = self._parts.get(tp)
        if p is None:
            return None
        if p.outstanding:
            return p.outstanding[-1] + 1
        return p.next_commit

    def drop(self, tps: list[TopicPartitionKey] | set[TopicPartitionKey]) -> None:
        """Forget partitions this transfer no longer owns (revoked, lost, or rewound)."""
        for tp in tps:
            self._parts.pop(tp, None)

    def partitions(self) -> list[TopicPartitionKey]:
        return list(self._parts)
