"""The rules for records Kafka refuses for good (agent/refusals.py), with plain values."""

from __future__ import annotations

from typing import NamedTuple

from agent.refusals import RELOG_AFTER_S, Refusals


class Ev(NamedTuple):
    source_id: str
    path: str
    topic: str
    offset: int


def ev(off: int, src: str = "s1", topic: str = "t") -> Ev:
    return Ev(src, f"/var/log/{src}.log", topic, off)


def refuse(r: Refusals, e: Ev, now: float, reason: str = "too large") -> str | None:
    return r.refused(e.source_id, e.path, e.topic, reason, e, b"x" * 10, now, 1000.0 + now)


def test_first_refusal_logs_once_per_file_and_reason_and_holds_in_order() -> None:
    r = Refusals()
    lines = [refuse(r, ev(o), 0.0) for o in (30, 10, 20)]
    assert lines[0] is not None and "/var/log/s1.log" in lines[0] and "topic t" in lines[0]
    assert lines[1:] == [None, None]
    assert [e.offset for e, _ in r.files["s1"].records] == [10, 20, 30]
    assert r.nbytes == 30 and r.held_lines() == 3 and set(r.files) == {"s1"}
    assert refuse(r, ev(40), 0.1, reason="not authorised") is not None  # a new reason is said once


def test_one_probe_per_backoff_growing_to_the_cap() -> None:
    r = Refusals(first_backoff_s=1.0, max_backoff_s=8.0)
    for o in range(5):
        refuse(r, ev(o), 0.0)
    assert r.due(0.5) == []  # backoff not over
    waits = []
    now = 1.0
    for _ in range(6):
        probe = r.due(now)
        assert len(probe) == 1 and probe[0][0].offset == 0  # always the oldest line
        assert r.due(now) == []  # no second probe while one is in flight
        refuse(r, probe[0][0], now)
        nxt = r.files["s1"].next_try
        waits.append(nxt - now)
        now = nxt
    assert waits == [2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert r.held_lines() == 5 and r.nbytes == 50


def test_accepted_probe_releases_the_rest_and_resumes() -> None:
    r = Refusals()
    for o in range(3):
        refuse(r, ev(o), 0.0)
    (probe,) = r.due(1.0)
    assert r.accepted(ev(1), 1.1) == ([], None)  # not the probe: nothing happens
    rest, line = r.accepted(probe[0], 1.2)
    assert [e.offset for e, _ in rest] == [1, 2]
    assert line is not None and "again" in line
    assert r.files == {} and r.nbytes == 0 and r.error is None
    # refused again soon (a topic taking single records, not batches): not said again for 10
    # minutes, nor its recovery; after that, said again
    assert refuse(r, ev(9), 2.0) is None
    (probe,) = r.due(3.5)
    assert r.accepted(probe[0], 3.6) == ([], "")
    assert refuse(r, ev(10), 2.0 + RELOG_AFTER_S) is not None


def test_removed_entry_drops_and_changed_topic_moves_at_once() -> None:
    r = Refusals()
    refuse(r, ev(0, "gone"), 0.0)
    refuse(r, ev(0, "moved"), 0.0)
    refuse(r, ev(5, "kept"), 0.0)
    topics = {"moved": "t2", "kept": "t"}
    lines, moved = r.retarget(topics.get, 0.5)
    assert set(r.files) == {"moved", "kept"}
    assert [hf.source for hf in moved] == ["moved"]
    assert any("no longer collected" in ln for ln in lines) and any("t2" in ln for ln in lines)
    (probe,) = r.due(0.5)  # the moved file is due at once, the kept one is not
    assert probe[0].source_id == "moved" and probe[0].topic == "t2"
    assert r.nbytes == 10  # "gone" freed, "moved"'s line is in flight, "kept" holds 10


def test_a_probe_sent_before_a_topic_change_comes_back_for_the_new_topic() -> None:
    r = Refusals()
    refuse(r, ev(0), 0.0)
    refuse(r, ev(1), 0.0)
    (probe,) = r.due(1.0)
    r.retarget({"s1": "t2"}.get, 1.5)
    refuse(r, probe[0], 1.6)
    assert [e.topic for e, _ in r.files["s1"].records] == ["t2", "t2"]


def test_summary_at_most_once_a_minute() -> None:
    r = Refusals(summary_every_s=60.0)
    assert r.summary(0.0) is None  # nothing held
    refuse(r, ev(0), 0.0)
    first = r.summary(1.0)
    assert first is not None and "1 file(s)" in first
    assert r.summary(30.0) is None
    assert r.summary(61.5) is not None
    status = r.status(61.5)
    assert status[0]["path"] == "/var/log/s1.log" and status[0]["lines"] == 1 and status[0]["reason"] == "too large"
