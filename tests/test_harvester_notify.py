"""Reading only the files inotify named: idle files cost no syscall per poll, and nothing is missed.

The safety nets are tested with them: a file reached through a symlink (its writes are reported on
another directory) is read at every poll; a file whose writes go unreported is found by the
periodic recheck and then read at every poll; a file closed for a descriptor after inotify named it
is reopened for that read.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from agent.harvester import RECHECK_S, Harvester
from agent.registry import Registry
from agent.tailer import Event, TailManager


def write(p: Path, text: str) -> None:
    with open(p, "a") as f:
        f.write(text)


def manager(tmp_path: Path, glob: str, **kw: Any) -> TailManager:
    reg = Registry(tmp_path / "state" / "registry.json")
    reg.load()
    kw.setdefault("scan_interval_s", 60.0)  # no scan during a test: what is read, inotify named
    return TailManager([{"path": glob, "topic": "t", "start_at": "beginning"}], reg, use_inotify=True, **kw)


def poll_until(tm: TailManager, want: int, timeout_s: float = 5.0) -> list[Event]:
    """Poll (sleeping on inotify between polls) until ``want`` events came or the timeout passed."""
    got: list[Event] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < want and time.monotonic() < deadline:
        evs = tm.poll()
        for e in evs:
            tm.ack(e.identity, e.next_offset)
        got += evs
        if len(got) < want:
            tm.wait(0.2)
    return got


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d


def test_due_only_when_named_or_at_the_recheck(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_text("x\n")
    h = Harvester(str(p), None, 0)
    t0 = time.monotonic()
    assert [r.raw for r in h.read_lines(1 << 20, t0)] == [b"x"]
    assert h.at_eof
    assert not h.due(t0 + 0.1, notified=True)
    assert h.due(t0 + 0.1, notified=False)  # without inotify: every poll, as before
    assert h.due(t0 + RECHECK_S + 0.01, notified=True)  # the safety net
    h.poke()
    assert h.due(t0 + 0.1, notified=True)
    h.start_draining()
    h.read_lines(1 << 20, t0 + 0.2)
    h.close()


def test_idle_files_cost_no_fstat_per_poll_and_a_write_is_read_at_once(
    tmp_path: Path, logs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(20):
        write(logs / f"f{i:02d}.log", f"{i}\n")
    tm = manager(tmp_path, str(logs / "*.log"))
    assert len(poll_until(tm, 20)) == 20
    calls: list[int] = []
    real_fstat = os.fstat

    def counting(fd: int) -> os.stat_result:
        calls.append(fd)
        return real_fstat(fd)

    monkeypatch.setattr(os, "fstat", counting)
    for _ in range(10):
        assert tm.poll() == []
    assert calls == []  # 20 open files at their end, nothing named: no syscall on them
    write(logs / "f07.log", "hello\n")
    got = poll_until(tm, 1)
    assert [e.message for e in got] == ["hello"]
    assert len(calls) <= 3  # the one file inotify named, not the 20
    tm.close()


def test_a_symlinked_file_is_read_at_every_poll(tmp_path: Path, logs: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    target = elsewhere / "real.log"
    write(target, "one\n")
    os.symlink(target, logs / "link.log")
    tm = manager(tmp_path, str(logs / "*.log"))
    assert [e.message for e in poll_until(tm, 1)] == ["one"]
    write(target, "two\n")  # reported on elsewhere/, which is not watched
    t0 = time.monotonic()
    assert [e.message for e in tm.poll(now=t0)] == ["two"]  # well before the recheck
    tm.close()


def test_writes_no_event_reports_make_the_file_read_at_every_poll(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_text("x\n")
    h = Harvester(str(p), None, 0)
    t = time.monotonic()
    h.read_lines(1 << 20, t)
    for k in range(2):
        write(p, f"y{k}\n")
        t += RECHECK_S + 0.01  # found by the recheck, no poke before it
        assert h.due(t, notified=True)
        assert [r.raw for r in h.read_lines(1 << 20, t)] == [f"y{k}".encode()]
    assert h.linked
    assert h.due(t + 0.01, notified=True)
    h.close()


def test_a_file_closed_for_a_descriptor_after_its_event_is_reopened(tmp_path: Path, logs: Path) -> None:
    write(logs / "a.log", "a0\n")
    write(logs / "b.log", "b0\n")
    tm = manager(tmp_path, str(logs / "*.log"), max_open_files=1)
    assert sorted(e.message for e in poll_until(tm, 2)) == ["a0", "b0"]
    for _ in range(3):  # let the descriptor settle on one of them
        tm.poll()
    write(logs / "a.log", "a1\n")
    write(logs / "b.log", "b1\n")
    # One of the two is open (its event pokes it) and is closed to open the other: the event it
    # got is spent, so without a reopen its line would wait for the 60 s scan.
    got = poll_until(tm, 2, timeout_s=5.0)
    assert sorted(e.message for e in got) == ["a1", "b1"]
    tm.close()



def test_read_events_names_each_written_file_once(tmp_path: Path) -> None:
    from inotify_simple import INotify, flags

    from agent.inotify import read_events

    ino = INotify()
    try:
        ino.add_watch(str(tmp_path), flags.MODIFY | flags.CREATE)
        for _ in range(3):  # interleaved: the kernel merges only an event equal to the one before
            write(tmp_path / "a.log", "x\n")
            write(tmp_path / "b.log", "y\n")
        evs = read_events(ino.fileno())
        assert [(e.name, e.mask) for e in evs] == [
            ("a.log", flags.CREATE), ("a.log", flags.MODIFY), ("b.log", flags.CREATE), ("b.log", flags.MODIFY)]
        assert read_events(ino.fileno()) == []  # nothing waits: no blocking
    finally:
        ino.close()
