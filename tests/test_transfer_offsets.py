"""Offset tracking per partition: commit only past records that are all settled."""

from __future__ import annotations

import pytest

from transfer.offsets import OffsetTracker

A, B = ("t", 0), ("t", 1)


def test_in_order_settling_moves_the_commit_point() -> None:
    t = OffsetTracker()
    for o in range(5):
        t.add(A, o)
    assert t.committable() == {}
    t.settle(A, 0)
    t.settle(A, 1)
    assert t.committable() == {A: 2}
    assert t.pending(A) == 3


def test_out_of_order_settling_waits_for_the_gap() -> None:
    t = OffsetTracker()
    for o in (10, 11, 12, 13):
        t.add(A, o)
    t.settle(A, 12)
    t.settle(A, 13)
    assert t.committable() == {}  # 10 and 11 are still out there
    t.settle(A, 11)
    assert t.committable() == {}
    t.settle(A, 10)
    assert t.committable() == {A: 14}
    assert t.pending() == 0


def test_partitions_are_independent_and_offsets_may_have_gaps() -> None:
    t = OffsetTracker()
    for o in (3, 7, 9):  # compacted topic / transaction markers: offsets skip
        t.add(A, o)
    t.add(B, 0)
    t.settle(A, 3)
    t.settle(A, 7)
    assert t.committable() == {A: 8}
    t.settle(B, 0)
    t.settle(A, 9)
    assert t.committable() == {A: 10, B: 1}


def test_mark_committed_hides_what_was_committed_until_it_moves() -> None:
    t = OffsetTracker()
    t.add(A, 0)
    t.settle(A, 0)
    t.mark_committed(t.committable())
    assert t.committable() == {}
    assert t.committed(A) == 1
    t.add(A, 1)
    assert t.committable() == {}
    t.settle(A, 1)
    assert t.committable() == {A: 2}
    assert t.position(A) == 2


def test_failed_commit_is_offered_again() -> None:
    t = OffsetTracker()
    t.add(A, 0)
    t.settle(A, 0)
    assert t.committable() == {A: 1}
    assert t.committable() == {A: 1}  # nothing marked: still to commit


def test_going_back_is_refused_and_drop_forgets() -> None:
    t = OffsetTracker()
    t.add(A, 5)
    with pytest.raises(ValueError, match="not after 5"):
        t.add(A, 5)
    t.drop({A})
    t.add(A, 0)  # after a drop (revoked, rewound) the partition starts over
    t.settle(A, 99)  # unknown offsets of a dropped partition are ignored by the commit point
    assert t.committable() == {}
    t.settle(("gone", 0), 1)  # a partition never seen: ignored
    assert t.partitions() == [A]


def test_many_records_are_cheap() -> None:
    t = OffsetTracker()
    for o in range(100_000):
        t.add(A, o)
    for o in range(99_999, -1, -1):
        t.settle(A, o)
    assert t.committable() == {A: 100_000}
