"""Records Kafka deleted before the transfer group read them (issue 12.3): found, counted, reported.

The decision is pure (committed offset, low watermark, the record that came instead → a range or
nothing); the pipeline applies it when partitions are assigned and when a record skips ahead,
with a fake consumer standing in for librdkafka's answers. The real-stack test is
``integration/test_kafka_retention_gap.py``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaError, KafkaException
from test_transfer_indexer import ScriptedES, ok
from test_transfer_pipeline import FakeConsumer, make, rec

from logctl.status import transfer_lines
from transfer.gaps import KEPT, RetentionGaps, lost_range
from transfer.metrics import TransferMetrics
from transfer.offsets import OffsetTracker

OFFSET_INVALID = -1001  # librdkafka: no committed offset
A = ("t", 0)


# ------------------------------------------------------------------------------ the decision
@pytest.mark.parametrize(("expected", "low", "seen", "gap"), [
    (100, 160, None, (100, 159)),      # committed below the first record left: 60 deleted unread
    (100, 101, None, (100, 100)),      # one record
    (100, 100, None, None),            # committed exactly at the first record: nothing lost
    (100, 40, None, None),             # records the group read were deleted: nothing lost
    (0, 0, None, None),                # an empty, never-trimmed partition
    (None, 500, None, None),           # no committed offset (a new group): read from the start by design
    (OFFSET_INVALID, 500, None, None),  # the same as librdkafka says it
    (100, None, None, None),           # low watermark unknown: proves nothing
    (100, -1, None, None),             # the same as librdkafka says it
    (100, 160, 160, (100, 159)),       # the record after the gap is the first one left
    (100, 200, 160, (100, 159)),       # the low watermark moved on since: only up to the record seen
    (100, 90, 103, None),              # skipped offsets that Kafka still has (transaction markers, compaction)
])
def test_lost_range(expected: int | None, low: int | None, seen: int | None, gap: tuple[int, int] | None) -> None:
    assert lost_range(expected, low, seen) == gap


def test_a_gap_is_one_warning_a_counter_and_a_status_entry(caplog: pytest.LogCaptureFixture) -> None:
    m = TransferMetrics()
    gaps = RetentionGaps(m.lost_to_retention, clock=lambda: "2024-05-01T12:00:00+00:00")
    with caplog.at_level(logging.WARNING, logger="logtransfer.gaps"):
        gaps.report(("app", 2), 100, 159, found="at assignment")
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("kafka deleted 60 record(s) of app[2] before this transfer group read them "
                           "(offsets 100..159, found at assignment)")
    assert "not in Elasticsearch" in line and "retention.ms" in line and "docs/runbook.md" in line
    assert gaps.status() == [{"topic": "app", "partition": 2, "first": 100, "last": 159, "count": 60,
                              "at": "2024-05-01T12:00:00+00:00", "found": "at assignment"}]
    assert m.summary()["records_lost_to_retention"] == 60
    gaps.report(("web", 0), 0, 9, found="while consuming")
    assert m.summary()["records_lost_to_retention"] == 70
    assert m.lost_to_retention.labels("web")._value.get() == 10


def test_the_status_keeps_the_last_gaps_and_the_counter_all_of_them() -> None:
    m = TransferMetrics()
    gaps = RetentionGaps(m.lost_to_retention)
    for i in range(KEPT + 5):
        gaps.report(A, i * 10, i * 10 + 1, found="at assignment")
    listed = gaps.status()
    assert len(listed) == KEPT and listed[0]["first"] == 50 and listed[-1]["first"] == (KEPT + 4) * 10
    assert gaps.records_lost == 2 * (KEPT + 5) == m.summary()["records_lost_to_retention"]


def test_no_gap_no_counter() -> None:
    assert TransferMetrics().summary()["records_lost_to_retention"] == 0


# ------------------------------------------------------------------------------ the tracker
def test_the_tracker_says_which_offset_was_expected_when_a_record_skips_ahead() -> None:
    t = OffsetTracker()
    assert t.add(A, 7) is None  # nothing expected yet
    assert t.add(A, 8) is None
    assert t.add(A, 12) == 9


def test_a_partition_seeded_with_its_committed_offset_expects_it() -> None:
    t = OffsetTracker()
    t.expect(A, 100, 100)
    assert t.committed(A) == 100 and t.committable() == {}
    assert t.add(A, 100) is None
    t.settle(A, 100)
    assert t.committable() == {A: 101}
    t2 = OffsetTracker()
    t2.expect(A, 100, 100)
    assert t2.add(A, 160) == 100


def test_a_reported_gap_is_committed_over_once() -> None:
    t = OffsetTracker()
    t.expect(A, 100, 160)
    assert t.committable() == {A: 160}  # nothing below 160 exists: committing it loses nothing
    assert t.add(A, 160) is None
    t.expect(A, 0, 0)  # already tracked: ignored
    assert t.committed(A) == 100


# ------------------------------------------------------------------------------ the pipeline
class GapConsumer(FakeConsumer):
    """The pipeline's consumer with the group's committed offsets and the partitions' low watermarks."""

    def __init__(self, committed: dict, low: dict, cached_low: dict | None = None) -> None:
        super().__init__()
        self.committed = committed
        self.low = low
        self.cached_low = cached_low if cached_low is not None else dict(low)
        self.asked: list[tuple] = []

    def committed_offsets(self, tps, timeout_s):
        if isinstance(self.committed, Exception):
            raise self.committed
        return {tp: self.committed[tp] for tp in tps if tp in self.committed}

    def low_watermark(self, tp, timeout_s):
        self.asked.append((tp, timeout_s))
        return (self.cached_low if timeout_s is None else self.low).get(tp)


def gap_pipeline(consumer: GapConsumer):
    p, _, _ = make(ScriptedES(ok, ok, ok))
    p.consumer = consumer
    p.gaps = RetentionGaps(p.metrics.lost_to_retention)
    return p


def test_assigned_below_the_low_watermark_reports_the_gap_and_commits_over_it(
        caplog: pytest.LogCaptureFixture) -> None:
    c = GapConsumer(committed={("t", 0): 100, ("t", 1): 50}, low={("t", 0): 160, ("t", 1): 50})
    p = gap_pipeline(c)
    with caplog.at_level(logging.WARNING):
        p.on_assign([("t", 0), ("t", 1)])
    assert [(g["partition"], g["first"], g["last"], g["count"], g["found"]) for g in p.gaps.status()] == \
        [(0, 100, 159, 60, "at assignment")]
    assert p.metrics.summary()["records_lost_to_retention"] == 60
    assert sum("t[0] before this transfer group read them (offsets 100..159" in r.getMessage()
               for r in caplog.records) == 1
    assert p.tracker.committed(("t", 0)) == 100 and p.tracker.committed(("t", 1)) == 50
    p.commit()
    assert c.commits == [{("t", 0): 160}]  # the next owner does not report it again
    for o in range(160, 163):  # reading starts at the low watermark: no second report
        p.add(rec(0, o))
    p.add(rec(1, 50))
    assert p.flush(None, lambda: False)
    assert c.commits[-1] == {("t", 0): 163, ("t", 1): 51}
    assert len(p.gaps.status()) == 1


def test_a_new_group_is_not_a_gap() -> None:
    c = GapConsumer(committed={("t", 0): None}, low={("t", 0): 5000})
    p = gap_pipeline(c)
    p.on_assign([("t", 0)])
    p.add(rec(0, 5000))  # auto.offset.reset=earliest: starts at the first record there is
    assert p.gaps.status() == [] and p.metrics.summary()["records_lost_to_retention"] == 0
    assert c.asked == []  # nothing to compare: no low watermark asked for


def test_committed_at_the_low_watermark_is_not_a_gap() -> None:
    c = GapConsumer(committed={("t", 0): 300}, low={("t", 0): 300})
    p = gap_pipeline(c)
    p.on_assign([("t", 0)])
    p.add(rec(0, 300))
    assert p.gaps.status() == []


def test_deleted_after_the_assignment_is_found_at_the_first_record() -> None:
    # Kafka deleted more between the assignment's check and the first fetch (or the check had no
    # time for this partition): the first record skips ahead, the low watermark that came with it
    # says why.
    c = GapConsumer(committed={("t", 0): 100}, low={("t", 0): 160}, cached_low={("t", 0): 230})
    p = gap_pipeline(c)
    p.on_assign([("t", 0)])
    p.add(rec(0, 230))
    assert [(g["first"], g["last"], g["found"]) for g in p.gaps.status()] == \
        [(100, 159, "at assignment"), (160, 229, "while consuming")]
    assert p.metrics.summary()["records_lost_to_retention"] == 130  # = 230 - 100, exactly


def test_a_consumer_reset_forward_while_consuming_is_reported() -> None:
    # Elasticsearch was down longer than the retention: the fetch position fell out of range and
    # librdkafka started again at the low watermark, silently.
    c = GapConsumer(committed={}, low={}, cached_low={("t", 0): 900})
    p = gap_pipeline(c)
    for o in range(3):
        p.add(rec(0, o))
    p.add(rec(0, 900))
    assert [(g["first"], g["last"], g["count"]) for g in p.gaps.status()] == [(3, 899, 897)]
    assert c.asked == [(("t", 0), None)]  # the cached value, no request on the consuming path


def test_skipped_offsets_kafka_still_has_are_not_a_gap() -> None:
    c = GapConsumer(committed={}, low={("t", 0): 0}, cached_low={("t", 0): 0})
    p = gap_pipeline(c)
    p.add(rec(0, 0))
    p.add(rec(0, 2))  # a transaction marker at 1
    assert p.gaps.status() == []


def test_unknown_low_watermark_at_a_skip_is_said(caplog: pytest.LogCaptureFixture) -> None:
    c = GapConsumer(committed={}, low={}, cached_low={})
    p = gap_pipeline(c)
    p.add(rec(0, 0))
    with caplog.at_level(logging.WARNING):
        p.add(rec(0, 50))
    assert p.gaps.status() == []
    assert c.asked == [(("t", 0), None), (("t", 0), 2.0)]  # cached, then asked
    assert any("t[0]: offsets 1..49 were skipped" in r.getMessage() for r in caplog.records)


def test_committed_offsets_not_read_is_said(caplog: pytest.LogCaptureFixture) -> None:
    c = GapConsumer(committed=KafkaException(KafkaError(KafkaError._TIMED_OUT)), low={("t", 0): 10})
    p = gap_pipeline(c)
    with caplog.at_level(logging.WARNING):
        p.on_assign([("t", 0)])
    assert any("could not read the committed offsets of t[0]" in r.getMessage() for r in caplog.records)
    p.add(rec(0, 10))  # no expectation: nothing reported, nothing broken
    assert p.gaps.status() == []


def test_without_gap_reporting_the_pipeline_asks_nothing() -> None:
    c = GapConsumer(committed={("t", 0): 1}, low={("t", 0): 10})
    p, _, _ = make(ScriptedES(ok))
    p.consumer = c
    p.on_assign([("t", 0)])
    p.add(rec(0, 0))
    p.add(rec(0, 10))
    assert c.asked == []


# ------------------------------------------------------------------------------ logctl status
def test_logctl_status_shows_each_gap_as_lost() -> None:
    now = datetime(2024, 5, 1, 12, 0, 10, tzinfo=UTC)
    doc = {"id": "t1", "started_at": "2024-05-01T11:00:00+00:00", "updated_at": "2024-05-01T12:00:08+00:00",
           "counters": {"consumed": 10, "records_lost_to_retention": 60},
           "retention_gaps": [{"topic": "app", "partition": 2, "first": 100, "last": 159, "count": 60,
                               "at": "2024-05-01T12:00:00+00:00", "found": "at assignment"}]}
    text = "\n".join(transfer_lines("t1", doc, now))
    assert ("  LOST       app[2] offsets 100..159: 60 record(s) deleted by Kafka retention before this group "
            "read them (found at assignment, 2024-05-01T12:00:00+00:00)") in text
    assert "records lost to retention 60;" in text  # a count, no rate
    assert "retention_gaps" not in text  # shown as LOST lines, not as raw JSON
    many = doc | {"retention_gaps": [doc["retention_gaps"][0] | {"first": i} for i in range(8)] + ["junk"]}
    assert "\n".join(transfer_lines("t1", many, now)).count("  LOST  ") == 4  # the last five entries, junk skipped
