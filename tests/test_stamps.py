"""The stamp journal: a re-read line gets its first stamp back, across a restart and compaction."""

from __future__ import annotations

from pathlib import Path

from agent.stamps import StampJournal


def test_replayed_offsets_get_their_first_stamp_after_a_restart(tmp_path: Path) -> None:
    j = StampJournal(tmp_path / "s")
    j.record([("fp:a", 0, 100), ("fp:b", 0, 40)], 1000.0)
    j.record([("fp:a", 100, 250)], 1001.5)
    # kill -9: no close, no compaction; a new process reads the journal
    j2 = StampJournal(tmp_path / "s")
    assert j2.stamp_for("fp:a", 0) == 1000.0
    assert j2.stamp_for("fp:a", 99) == 1000.0
    assert j2.stamp_for("fp:a", 100) == 1001.5
    assert j2.stamp_for("fp:a", 249) == 1001.5
    assert j2.stamp_for("fp:a", 250) is None
    assert j2.stamp_for("fp:b", 10) == 1000.0
    assert j2.stamp_for("fp:c", 0) is None


def test_a_range_recorded_twice_keeps_the_first_stamp(tmp_path: Path) -> None:
    j = StampJournal(tmp_path / "s")
    j.record([("fp:a", 0, 100)], 1.0)
    j.record([("fp:a", 0, 100)], 2.0)
    j.record([("fp:a", 50, 80)], 3.0)
    assert j.stamp_for("fp:a", 60) == 1.0
    assert StampJournal(tmp_path / "s").stamp_for("fp:a", 60) == 1.0


def test_compaction_keeps_only_what_can_be_read_again(tmp_path: Path) -> None:
    j = StampJournal(tmp_path / "s")
    j.record([("fp:a", 0, 100), ("fp:gone", 0, 10)], 1.0)
    j.record([("fp:a", 100, 200)], 2.0)
    j.compact({"fp:a": 100})
    assert len(j) == 1
    assert j.stamp_for("fp:a", 50) is None  # acknowledged: never read again
    assert j.stamp_for("fp:a", 150) == 2.0
    j.record([("fp:a", 200, 300)], 3.0)  # appends go on after a compaction
    again = StampJournal(tmp_path / "s")
    assert (again.stamp_for("fp:a", 150), again.stamp_for("fp:a", 299), again.stamp_for("fp:gone", 5)) == (
        2.0, 3.0, None)


def test_a_line_cut_by_a_crash_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("fp:a\t0\t100\t5.0\nfp:a\t100\t2")
    j = StampJournal(tmp_path / "s")
    assert j.stamp_for("fp:a", 10) == 5.0
    assert j.stamp_for("fp:a", 150) is None
