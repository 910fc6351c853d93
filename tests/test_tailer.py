"""Harvesting real temp files: rotation, truncation, deletion, caps, restarts, acks, inputs."""

from __future__ import annotations

import contextlib
import gzip
import os
import socket
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agent.fingerprint import birth_ns, is_fp, is_ino
from agent.harvester import FileChanged, Harvester
from agent.registry import Registry
from agent.scanner import FileScanner
from agent.tailer import Event, TailManager


def registry_at(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "state" / "registry.json")
    reg.load()
    return reg


def manager(tmp_path: Path, inputs: list[Any], **kw: Any) -> tuple[TailManager, Registry]:
    kw.setdefault("use_inotify", False)
    kw.setdefault("scan_interval_s", 0.0)  # scan at every poll: tests need no sleeping
    reg = registry_at(tmp_path)
    return TailManager(inputs, reg, **kw), reg


def spec(path: Path | str, topic: str = "t", **kw: Any) -> dict[str, Any]:
    return {"path": str(path), "topic": topic, **kw}


def collect(tm: TailManager, ack: bool = True, budget: int = 4 << 20, rounds: int = 50) -> list[Event]:
    """Poll until two polls in a row bring nothing; ack what came unless told not to."""
    out: list[Event] = []
    quiet = 0
    for _ in range(rounds):
        read_before = tm.counters["bytes"]
        evs = tm.poll(budget)
        out += evs
        if ack:
            for e in evs:
                assert tm.ack(e.identity, e.next_offset)
        quiet = 0 if evs or tm.counters["bytes"] != read_before else quiet + 1
        if quiet >= 2:
            break
    return out


def msgs(events: list[Event]) -> list[str]:
    return [e.message for e in events]


def write(path: Path, text: str | bytes, mode: str = "a") -> None:
    data = text.encode() if isinstance(text, str) else text
    with open(path, mode + "b") as f:
        f.write(data)


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    d = tmp_path / "logs"
    d.mkdir()
    return d


# --- the basics -------------------------------------------------------------------------------


def test_reads_lines_and_moves_offset_only_on_ack(tmp_path: Path, logs: Path) -> None:
    log = logs / "app.log"
    write(log, "one\ntwo\n")
    tm, reg = manager(tmp_path, [spec(logs / "*.log", start_at="beginning", fields={"env": "prod"})])
    evs = collect(tm, ack=False)
    assert msgs(evs) == ["one", "two"]
    e = evs[0]
    assert (e.input_id, e.topic, e.path, e.offset, e.next_offset, e.lines, e.truncated) == (
        str(logs / "*.log"), "t", str(log), 0, 4, 1, False)
    assert dict(e.fields) == {"env": "prod"} and e.source_id == e.identity
    assert reg.get(e.identity).offset == 0  # type: ignore[union-attr]
    assert tm.inflight == 2
    assert tm.ack(e.identity, 4)
    assert reg.get(e.identity).offset == 4  # type: ignore[union-attr]
    assert tm.ack(e.identity, 8) and tm.inflight == 0
    assert not tm.ack(e.identity, 8)  # twice: unknown
    assert reg.get(e.identity).offset == 8  # type: ignore[union-attr]
    write(log, "three\n")
    assert msgs(collect(tm)) == ["three"]
    tm.close()


def test_registry_entry_is_on_disk_before_its_lines_are_handed_out(tmp_path: Path, logs: Path) -> None:
    write(logs / "a.log", "x\n")
    tm, _ = manager(tmp_path, [spec(logs / "a.log", start_at="beginning")])
    evs = tm.poll()
    on_disk = registry_at(tmp_path)
    assert evs and on_disk.get(evs[0].identity) is not None
    assert on_disk.get(evs[0].identity).source == evs[0].source_id  # type: ignore[union-attr]


def test_invalid_utf8_is_replaced_in_message_and_kept_in_raw(tmp_path: Path, logs: Path) -> None:
    write(logs / "a.log", b"caf\xe9 \xff\xfe ok\n")
    tm, _ = manager(tmp_path, [spec(logs / "a.log", start_at="beginning")])
    (e,) = collect(tm)
    assert e.raw == b"caf\xe9 \xff\xfe ok"
    assert e.message == "caf\ufffd \ufffd\ufffd ok"


def test_partial_line_waits_then_flushes_after_timeout(tmp_path: Path, logs: Path) -> None:
    log = logs / "a.log"
    write(log, "complete\nhalf a li")
    tm, _ = manager(tmp_path, [spec(log, start_at="beginning")], partial_flush_s=5.0)
    t0 = time.monotonic()
    assert msgs(tm.poll(now=t0)) == ["complete"]
    assert tm.poll(now=t0 + 4.0) == []
    (flushed,) = tm.poll(now=t0 + 5.5)
    assert (flushed.message, flushed.offset, flushed.next_offset) == ("half a li", 9, 18)
    write(log, "ne\n")  # the rest of that line arrives later: a line of its own
    (rest,) = tm.poll(now=t0 + 6.0)
    assert (rest.message, rest.offset) == ("ne", 18)
    write(log, "stall")
    tm.poll(now=t0 + 7.0)
    (stalled,) = tm.poll(now=t0 + 13.0)
    write(log, "\nnext\n")  # only the terminator was missing: no empty event for it
    assert msgs(tm.poll(now=t0 + 14.0)) == ["next"]
    assert stalled.message == "stall"


def test_huge_line_is_cut_with_bounded_memory(tmp_path: Path, logs: Path) -> None:
    log = logs / "big.log"
    with open(log, "wb") as f:
        for _ in range(6):
            f.write(b"z" * (1 << 20))
        f.write(b"\nafter\n")
    tm, _ = manager(tmp_path, [spec(log, start_at="beginning", max_line_bytes=64 * 1024)])
    tracemalloc.start()
    try:
        evs = collect(tm, budget=256 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(len(e.raw), e.truncated) for e in evs] == [(64 * 1024, True), (5, False)]
    assert evs[0].next_offset == 6 * (1 << 20) + 1 == evs[1].offset
    assert peak < 4 * 1024 * 1024, peak


# --- start_at and files appearing -----------------------------------------------------------------


def test_start_at_end_only_for_files_found_at_the_inputs_first_start(tmp_path: Path, logs: Path) -> None:
    old = logs / "old.log"
    write(old, "history\n" * 3)
    tm, reg = manager(tmp_path, [spec(logs / "*.log")])  # start_at defaults to end
    assert collect(tm) == []
    write(old, "fresh\n")
    new = logs / "new.log"
    write(new, "born\nlater\n")  # appears after the input started: from 0, always
    got = collect(tm)
    assert sorted(msgs(got)) == ["born", "fresh", "later"]
    reg.save()
    tm.close()
    # A file created while the agent was down is also "later": read from 0 after a restart.
    write(logs / "while-down.log", "missed?\n")
    write(old, "tail\n")
    tm2, _ = manager(tmp_path, [spec(logs / "*.log")])
    assert sorted(msgs(collect(tm2))) == ["missed?", "tail"]


def test_start_at_beginning(tmp_path: Path, logs: Path) -> None:
    write(logs / "a.log", "1\n2\n")
    tm, _ = manager(tmp_path, [spec(logs / "*.log", start_at="beginning")])
    assert msgs(collect(tm)) == ["1", "2"]


def test_restart_resumes_and_resends_unacked_with_same_ids(tmp_path: Path, logs: Path) -> None:
    log = logs / "a.log"
    write(log, "a\nb\nc\n")
    tm, reg = manager(tmp_path, [spec(log, start_at="beginning")])
    evs = collect(tm, ack=False)
    tm.ack(evs[0].identity, evs[0].next_offset)
    reg.save()
    tm.close()  # "kill": b and c were handed out, never acknowledged
    tm2, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    again = collect(tm2)
    assert [(e.message, e.source_id, e.offset) for e in again] == [
        (e.message, e.source_id, e.offset) for e in evs[1:]]


# --- rotation -------------------------------------------------------------------------------------


def test_rename_rotation_new_file_created_before_we_notice(tmp_path: Path, logs: Path) -> None:
    log = logs / "app.log"
    write(log, "".join(f"old-{i}\n" for i in range(5)))
    tm, reg = manager(tmp_path, [spec(log, start_at="beginning")])
    assert len(collect(tm)) == 5
    writer = open(log, "ab")  # noqa: SIM115 - the application's descriptor, kept across the rename
    writer.write(b"old-5\nold-6\n")
    writer.flush()
    os.rename(log, logs / "app.log.1")
    writer.write(b"old-7\n")  # still lands in the renamed file
    writer.close()
    write(log, "new-0\nnew-1\n", "w")
    got = collect(tm)
    assert msgs(got) == ["old-5", "old-6", "old-7", "new-0", "new-1"]  # finish the old, then the new
    assert got[3].offset == 0 and got[3].identity != got[0].identity
    assert tm.open_files == 1  # the old descriptor was closed at its EOF
    assert tm.counters["rotations"] == 1
    assert reg.get(got[-1].identity).offset == got[-1].next_offset  # type: ignore[union-attr]


def test_rename_to_a_name_that_still_matches_is_followed_not_reread(tmp_path: Path, logs: Path) -> None:
    log = logs / "app.log"
    write(log, "a\nb\n")
    tm, reg = manager(tmp_path, [spec(logs / "app.log*", start_at="beginning")])
    first = collect(tm)
    os.rename(log, logs / "app.log.1")
    write(logs / "app.log.1", "c\n")
    write(log, "fresh\n", "w")
    got = collect(tm)
    assert sorted(msgs(got)) == ["c", "fresh"]
    moved = next(e for e in got if e.message == "c")
    assert moved.path == str(logs / "app.log.1") and moved.identity == first[0].identity
    assert reg.get(moved.identity).path == str(logs / "app.log.1")  # type: ignore[union-attr]


def test_copytruncate_restarts_at_zero_with_a_new_source(tmp_path: Path, logs: Path) -> None:
    log = logs / "app.log"
    write(log, "".join(f"old line {i}\n" for i in range(10)))
    tm, reg = manager(tmp_path, [spec(log, start_at="beginning")])
    old = collect(tm, ack=False)  # handed out, acks still to come
    with open(log, "r+b") as f:
        f.truncate(0)
    write(log, "new 0\nnew 1\nnew 2\n")
    new = collect(tm, ack=False)
    assert msgs(new) == ["new 0", "new 1", "new 2"] and new[0].offset == 0
    assert new[0].source_id != old[0].source_id
    assert tm.counters["truncations"] == 1
    ident = new[0].identity
    for e in old:  # late acks of the old content must not push the new content's offset
        assert tm.ack(e.identity, e.next_offset)
    assert reg.get(ident).offset == 0  # type: ignore[union-attr]
    for e in new:
        tm.ack(e.identity, e.next_offset)
    assert reg.get(ident).offset == new[-1].next_offset  # type: ignore[union-attr]


def test_copytruncate_regrown_past_offset_is_seen_by_fingerprint(tmp_path: Path, logs: Path) -> None:
    log = logs / "app.log"
    write(log, "".join(f"first generation line {i:04d}\n" for i in range(100)))
    tm, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    assert len(collect(tm)) == 100
    with open(log, "r+b") as f:
        f.truncate(0)
    second = [f"second generation, a longer line this time {i:04d}" for i in range(200)]
    write(log, "".join(s + "\n" for s in second))  # larger than before: size alone cannot tell
    got = collect(tm)
    assert msgs(got) == second
    assert is_fp(got[0].identity) and got[0].offset == 0


def test_delete_while_reading_finishes_the_file_then_closes(tmp_path: Path, logs: Path) -> None:
    log = logs / "a.log"
    write(log, "1\n")
    tm, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    assert msgs(collect(tm)) == ["1"]
    writer = open(log, "ab")  # noqa: SIM115
    writer.write(b"2\n3\n")
    writer.flush()
    os.unlink(log)
    writer.write(b"4\n")
    writer.close()
    assert msgs(collect(tm)) == ["2", "3", "4"]
    assert tm.open_files == 0 and tm.errors == []


def test_inode_reuse_is_a_new_file(tmp_path: Path, logs: Path) -> None:
    log = logs / "a.log"
    write(log, "first file\n")
    tm, _ = manager(tmp_path, [spec(log, start_at="beginning")], close_inactive_s=1.0)
    t0 = time.monotonic()
    assert msgs(tm.poll(now=t0)) == ["first file"]
    tm.poll(now=t0 + 2.0)  # inactive: closed, so nothing holds the inode any more
    assert tm.open_files == 0
    ino = os.stat(log).st_ino
    os.unlink(log)
    reused = recreate_with_inode(logs, ino, "second, a different file\nwith two lines\n")
    os.rename(reused, log)
    got = []
    for k in range(3):
        got += tm.poll(now=t0 + 3.0 + k)
    assert msgs(got) == ["second, a different file", "with two lines"]
    assert got[0].offset == 0


def test_inode_reuse_while_the_agent_was_down(tmp_path: Path, logs: Path) -> None:
    log = logs / "a.log"
    write(log, "first file\n")
    tm, reg = manager(tmp_path, [spec(log, start_at="beginning")])
    (old,) = collect(tm)
    reg.save()
    tm.close()
    ino = os.stat(log).st_ino
    os.unlink(log)
    reused = recreate_with_inode(logs, ino, "another file!\nlonger than the first\n")
    os.rename(reused, log)
    tm2, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    got = collect(tm2)
    assert msgs(got) == ["another file!", "longer than the first"]
    # not the old file's event ids: a new source (a new birth time in the identity where the
    # filesystem keeps one, else the old entry reset by its different first bytes: "#r1")
    assert got[0].source_id != old.source_id
    assert got[0].identity != old.identity or got[0].source_id.endswith("#r1")


def test_model_found_a_line_cut_by_a_read_quantum_is_not_handed_out_at_truncation(tmp_path: Path,
                                                                                   logs: Path) -> None:
    """Found by tests/test_tracker_model.py (shrunk): a 300-byte line read 64 bytes at a time,
    the file truncated in between. Handed out, the 64 bytes would carry the id of the whole line
    (sent whole by a run before a crash, say) and replace it in Elasticsearch; or, cut inside a
    UTF-8 sequence, arrive as "\ufffd\ufffd". They are in copytruncate's window instead."""
    log = logs / "a.log"
    write(log, "L000001 " + "日本" * 100 + "\n")
    tm, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    assert tm.poll(64) == []  # the start of the line, held: its rest is not read yet
    os.truncate(log, 0)
    write(log, "after\n")
    assert msgs(collect(tm)) == ["after"]


def test_model_found_a_new_file_on_the_inode_of_an_unsaved_one_gets_its_own_ids(tmp_path: Path,
                                                                                 logs: Path) -> None:
    """Found by tests/test_tracker_model.py (shrunk): a short file read, the agent killed before
    its first registry save, the file deleted and a new one created on the same inode while it
    was down. Nothing on disk tells them apart but the birth time: without it the new file's
    first line got the old one's event id (and replaced it in Elasticsearch)."""
    log = logs / "a.log"
    write(log, "L000001 x\n")
    tm, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    (old,) = collect(tm, ack=False)
    tm.close()  # killed: the registry was never saved
    if birth_ns(str(log)) is None:
        pytest.skip("this filesystem keeps no birth time")
    ino = os.stat(log).st_ino
    os.unlink(log)
    reused = recreate_with_inode(logs, ino, "L000003 x\n")
    os.rename(reused, log)
    tm2, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    (new,) = collect(tm2)
    assert new.message == "L000003 x" and new.offset == old.offset == 0
    assert new.source_id != old.source_id


def test_model_found_a_file_rewritten_to_the_size_already_read_is_read_again(tmp_path: Path,
                                                                             logs: Path) -> None:
    """Found by tests/test_tracker_model.py (shrunk): lines read, the file truncated, and as many
    bytes written again before the next read. The size says nothing; the changed mtime makes the
    agent compare the head, which tells."""
    log = logs / "b.log"
    write(log, "L000001 x\nL000002 x\n")
    tm, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    assert msgs(collect(tm)) == ["L000001 x", "L000002 x"]
    before = os.stat(log).st_mtime_ns
    write(log, "L000005 x\nL000006 x\n", "w")
    os.utime(log, ns=(before + 10_000_000, before + 10_000_000))  # a tick later, as in practice
    assert msgs(collect(tm)) == ["L000005 x", "L000006 x"]


@pytest.mark.parametrize("noticed_first", [False, True], ids=["grown", "truncated-and-noticed"])
def test_model_found_a_file_short_again_after_a_truncate_gets_its_own_ids(tmp_path: Path, logs: Path,
                                                                          noticed_first: bool) -> None:
    """Found by tests/test_tracker_model.py (shrunk, twice): a short file read (source ``ino:…``),
    then past the fingerprint (identity ``fp:…``) — grown in place (the source kept), or truncated
    and rewritten long while the agent runs (it notices: source ``fp:…#r1``, ``ino:…`` freed) —
    then truncated and written short again, the agent killed before it noticed. At restart the
    short file is ``ino:…`` again: it must take its inode's entry, not a fresh one whose source is
    ``ino:…``, the event ids its first line was sent with."""
    log = logs / "c.log"
    write(log, "L000001 x\n")
    tm, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    (first,) = collect(tm, ack=False)
    if noticed_first:
        time.sleep(0.02)
        os.truncate(log, 0)
        write(log, "L000002 " + "z" * 2000 + "\n")
    else:
        write(log, "z" * 2000 + "\n")
    collect(tm, ack=False)
    assert tm.counters["truncations"] == (1 if noticed_first else 0)
    os.truncate(log, 0)
    write(log, "L000003 x\n")
    tm.close()  # killed before its next poll
    tm2, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    (again,) = collect(tm2)
    assert again.message == "L000003 x" and again.offset == first.offset == 0
    assert again.source_id != first.source_id


# --- the plain path (issue 12): a file rotated while the agent was down or the file closed -------


def test_plain_path_rotated_twice_while_down_is_finished_where_rotation_put_it(tmp_path: Path,
                                                                              logs: Path) -> None:
    """``/var/log/nginx/access.log`` as users write it: killed with lines unread, rotated twice
    while down. The restarted agent finds the file as ``access.log.2`` (same directory, inode and
    birth time), reads it from the saved offset under the saved source (the same event ids), then
    the new ``access.log``; the finished ``access.log.1`` is not collected."""
    log = logs / "access.log"
    write(log, "".join(f"old {i}\n" for i in range(3)))
    tm, reg = manager(tmp_path, [spec(log, start_at="beginning")])
    first = collect(tm)
    assert msgs(first) == ["old 0", "old 1", "old 2"]
    write(log, "".join(f"unread {i}\n" for i in range(5)))
    reg.save()
    tm.close()  # kill -9 with five lines unread
    os.rename(log, logs / "access.log.1")
    write(log, "middle\n")
    os.rename(logs / "access.log.1", logs / "access.log.2")
    os.rename(log, logs / "access.log.1")
    write(log, "new 0\n")
    tm2, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    again = collect(tm2)
    # "middle" sat in a file the agent never knew (written and rotated away while it was down)
    assert msgs(again) == [*(f"unread {i}" for i in range(5)), "new 0"]
    assert {e.source_id for e in again[:5]} == {first[0].source_id}
    assert again[0].offset == first[-1].next_offset
    assert tm2.counters["files_followed"] == 1 and tm2.counters["files_lost"] == 0
    again2 = collect(tm2)
    assert again2 == []  # read to its end and let go: nothing twice


def test_plain_path_rotated_while_closed_is_read_to_its_end(tmp_path: Path, logs: Path) -> None:
    """Closed (close_inactive), written again and rotated before the next scan: read at its new name."""
    log = logs / "app.log"
    write(log, "one\n")
    tm, _ = manager(tmp_path, [spec(log, start_at="beginning")], close_inactive_s=0.0)
    assert msgs(collect(tm)) == ["one"]
    assert tm.open_files == 0
    write(log, "two\nthree\n")
    os.rename(log, logs / "app.log.1")
    write(log, "four\n")
    assert msgs(collect(tm)) == ["two", "three", "four"]
    assert tm.counters["files_followed"] == 1


def test_plain_path_rotated_and_compressed_while_down_is_reported_by_name(tmp_path: Path, logs: Path) -> None:
    log = logs / "app.log"
    write(log, "one\n")
    tm, reg = manager(tmp_path, [spec(log, start_at="beginning")])
    collect(tm)
    write(log, "two\n")
    tm.poll()  # read, never acknowledged
    reg.save()
    tm.close()
    os.rename(log, logs / "app.log.1")
    with open(logs / "app.log.1", "rb") as src, gzip.open(logs / "app.log.1.gz", "wb") as dst:
        dst.write(src.read())
    os.unlink(logs / "app.log.1")
    tm2, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    assert collect(tm2) == []
    assert tm2.counters["files_lost"] == 1 and tm2.counters["bytes_lost"] == 4
    (loss,) = tm2.losses
    assert loss["path"] == str(log) and loss["bytes"] == 4 and "compressed" in loss["reason"]


def test_plain_path_old_rotated_files_read_to_their_end_are_left_alone(tmp_path: Path, logs: Path) -> None:
    log = logs / "app.log"
    write(log, "one\n")
    tm, reg = manager(tmp_path, [spec(log, start_at="beginning")])
    collect(tm)
    os.rename(log, logs / "app.log.1")
    write(log, "two\n")
    assert msgs(collect(tm)) == ["two"]
    reg.save()
    tm.close()
    tm2, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    write(log, "three\n")
    assert msgs(collect(tm2)) == ["three"]
    assert tm2.counters["files_followed"] == 0 and tm2.counters["files_opened"] == 1


def recreate_with_inode(directory: Path, ino: int, text: str) -> Path:
    """Create files (in the same directory) until the filesystem hands out ``ino`` again.

    ext4 gives a new file the lowest free inode of its directory's block group, so the freed
    one comes back once the free inodes below it are used up: usually at once, after more
    tries when the test run just deleted many files.
    """
    spares: list[Path] = []
    deadline = time.monotonic() + 5.0
    try:
        while time.monotonic() < deadline:
            p = directory / f".spare-{len(spares)}"
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                if os.fstat(fd).st_ino == ino:
                    os.write(fd, text.encode())
                    return p
            finally:
                os.close(fd)
            spares.append(p)
    finally:
        for sp in spares:
            sp.unlink()
    pytest.skip(f"this filesystem did not reuse inode {ino} in {len(spares)} tries")


def test_short_file_grows_into_a_fingerprint_without_rereading(tmp_path: Path, logs: Path) -> None:
    log = logs / "a.log"
    write(log, "short start\n")
    tm, reg = manager(tmp_path, [spec(log, start_at="beginning")])
    (first,) = collect(tm)
    assert is_ino(first.identity)
    write(log, "".join(f"growing line {i:04d} padding padding\n" for i in range(60)))
    grown = collect(tm)
    assert len(grown) == 60 and is_fp(grown[-1].identity)
    assert {e.source_id for e in grown} == {first.source_id}  # same Kafka key, same id scheme
    assert first.identity not in reg and reg.get(grown[-1].identity).offset == os.path.getsize(log)  # type: ignore[union-attr]
    reg.save()
    tm.close()
    tm2, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    assert collect(tm2) == []
    write(log, "after restart\n")
    (e,) = collect(tm2)
    assert e.source_id == first.source_id


def test_short_file_grew_while_the_agent_was_down(tmp_path: Path, logs: Path) -> None:
    log = logs / "a.log"
    write(log, "short start\n")
    tm, reg = manager(tmp_path, [spec(log, start_at="beginning")])
    (first,) = collect(tm)
    reg.save()
    tm.close()
    write(log, "x" * 2000 + "\n")
    tm2, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    got = collect(tm2)
    assert [len(e.raw) for e in got] == [2000]
    assert got[0].source_id == first.source_id and is_fp(got[0].identity)


BANNER = "".join(f"# export banner line {i:02d} ............................................\n" for i in range(24))


def test_files_that_start_alike_are_each_read_once(tmp_path: Path, logs: Path) -> None:
    """Issue 18.2: three files with the same 1.5 KiB header (one created later, one rotated by
    rename, one shorter than the fingerprint) are four sources, each line exactly once."""
    assert len(BANNER) > 1024
    for name in ("a", "b"):
        write(logs / f"{name}.csv", BANNER + "".join(f"{name}-{i}\n" for i in range(100)))
    write(logs / "short.csv", "".join(BANNER.splitlines(keepends=True)[:4]) + "short-0\n")
    tm, reg = manager(tmp_path, [spec(logs / "*.csv*", start_at="beginning")])
    got = collect(tm)
    write(logs / "c.csv", BANNER + "".join(f"c-{i}\n" for i in range(100)))  # created later
    os.rename(logs / "a.csv", logs / "a.csv.1")  # rotated by rename, still matching: followed
    write(logs / "a.csv.1", "a-100\n")
    write(logs / "a.csv", BANNER + "a2-0\n", "w")  # the new a.csv, alike again
    write(logs / "short.csv", "short-1\n")
    got += collect(tm)
    lines = [m for m in msgs(got) if not m.startswith("# export banner")]
    want = ([f"{n}-{i}" for n in "abc" for i in range(100)] + ["a-100", "a2-0", "short-0", "short-1"])
    assert sorted(lines) == sorted(want) and len(lines) == len(set(lines))
    assert len({e.source_id for e in got}) == 5  # a, a's successor, b, c, short
    reg.save()
    tm.close()
    tm2, _ = manager(tmp_path, [spec(logs / "*.csv*", start_at="beginning")])
    assert collect(tm2) == []  # after a restart each resumes at its own offset
    write(logs / "b.csv", "b-100\n")
    assert msgs(collect(tm2)) == ["b-100"]


def test_a_new_file_alike_after_one_went_away_is_read_from_zero(tmp_path: Path, logs: Path) -> None:
    """A daily export deleted and the next one created under the same header: never "resumed"."""
    write(logs / "day1.csv", BANNER + "".join(f"d1-{i}\n" for i in range(50)))
    tm, _ = manager(tmp_path, [spec(logs / "*.csv", start_at="beginning")])
    assert len(collect(tm)) == 24 + 50
    keep = open(logs / "day1.csv", "rb")  # noqa: SIM115 - holds the inode so it cannot be reused
    try:
        (logs / "day1.csv").unlink()
        write(logs / "day2.csv", BANNER + "".join(f"d2-{i}\n" for i in range(60)))
        got = collect(tm)
    finally:
        keep.close()
    assert [m for m in msgs(got) if m.startswith("d2-")] == [f"d2-{i}" for i in range(60)]


def test_saved_entries_found_again_after_an_upgrade_or_a_new_device_number(tmp_path: Path, logs: Path) -> None:
    """An entry saved as plain ``fp:<hash>`` (before 0.2) or under another device number is
    moved to its file at the first scan: the file resumes, nothing is read twice."""
    for name in ("a", "b"):
        write(logs / f"{name}.log", BANNER + "".join(f"{name}-{i}\n" for i in range(10)))
    tm, reg = manager(tmp_path, [spec(logs / "*.log", start_at="beginning")])
    assert len(collect(tm)) == 2 * (24 + 10)
    reg.save()
    tm.close()
    by_path = {e.path: e for e in reg}
    a, b = by_path[str(logs / "a.log")], by_path[str(logs / "b.log")]
    (tmp_path / "state" / "registry.json.bak").unlink(missing_ok=True)
    text = (tmp_path / "state" / "registry.json").read_text()
    plain = a.identity.split("@")[0]  # as written before 0.2
    dev, _ino = b.identity.split("@")[1].split(":")
    moved = b.identity.replace(f"@{dev}:", f"@{int(dev) + 7}:")  # the disk came back as another device
    (tmp_path / "state" / "registry.json").write_text(text.replace(a.identity, plain).replace(b.identity, moved))
    tm2, reg2 = manager(tmp_path, [spec(logs / "*.log", start_at="beginning")])
    assert plain in reg2 and moved in reg2
    assert collect(tm2) == []
    assert plain not in reg2 and moved not in reg2 and a.identity in reg2 and b.identity in reg2
    write(logs / "a.log", "a-10\n")
    write(logs / "b.log", "b-10\n")
    got = collect(tm2)
    assert sorted(msgs(got)) == ["a-10", "b-10"]
    assert {e.source_id for e in got} == {plain, moved}  # the sources saved (rewritten above): same ids


def test_close_inactive_then_reopen_on_growth(tmp_path: Path, logs: Path) -> None:
    log = logs / "a.log"
    write(log, "1\n")
    tm, _ = manager(tmp_path, [spec(log, start_at="beginning")], close_inactive_s=10.0)
    t0 = time.monotonic()
    assert msgs(tm.poll(now=t0)) == ["1"]
    assert tm.open_files == 1
    tm.poll(now=t0 + 11.0)
    assert tm.open_files == 0
    write(log, "2\n")
    assert msgs(tm.poll(now=t0 + 12.0)) == ["2"]


# --- many files, acks, inputs ------------------------------------------------------------------


def test_1200_files_with_100_open_at_most(tmp_path: Path, logs: Path) -> None:
    for i in range(1200):
        write(logs / f"f{i:04d}.log", "".join(f"{i}-{j}\n" for j in range(5)))
    # inotify on, as in the agent: a file read to its end keeps its descriptor for its slice
    # (no event says it is quiet), so the waiting files are served a slice later, not at the
    # next poll; wait() sleeps until then instead of spinning.
    tm, _ = manager(tmp_path, [spec(logs / "*.log", start_at="beginning")], max_open_files=100,
                    use_inotify=True, open_slice_s=0.05)
    def fds() -> int:
        # Descriptors on the test's own files only: other threads of this process (a librdkafka
        # client left by an earlier test reconnecting, say) open and close sockets meanwhile.
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            with contextlib.suppress(OSError):  # closed between listdir and readlink
                n += os.readlink(f"/proc/self/fd/{fd}").startswith(str(logs) + "/")
        return n

    baseline = fds()
    got: list[Event] = []
    most_open = most_fds = 0
    deadline = time.monotonic() + 60  # 12 slices of 0.05 s are needed; the deadline is for a hang
    while len(got) < 6000 and time.monotonic() < deadline:
        evs = tm.poll()
        for e in evs:
            tm.ack(e.identity, e.next_offset)
        got += evs
        most_open, most_fds = max(most_open, tm.open_files), max(most_fds, fds() - baseline)
        tm.wait(1.0)
    assert most_open <= 100 and 0 < most_fds <= 100  # (0 <: the count sees the tailer's files)
    assert len(got) == 6000 and len({(e.path, e.offset) for e in got}) == 6000
    assert tm.counters["files_opened"] == 1200  # each file opened once: none lost its slot unread
    for i in range(0, 1200, 7):  # later growth reaches closed files too
        write(logs / f"f{i:04d}.log", "more\n")
    more: list[Event] = []
    deadline = time.monotonic() + 60
    while len(more) < len(range(0, 1200, 7)) and time.monotonic() < deadline:
        more += tm.poll()
        tm.wait(1.0)
    assert len(more) == len(range(0, 1200, 7)) and set(msgs(more)) == {"more"}
    tm.close()


def test_busy_files_keep_their_descriptor_for_a_slice_and_none_starves(tmp_path: Path, logs: Path) -> None:
    """30 files written before every poll, 10 descriptors, a slice of 1 s (the manager's clock).

    Without the slice every poll closes the files read to their end to open the waiting ones
    (an open, fstat and fingerprint per file per poll); with it an open file is closed only
    once its slice is over, and a waiting file gets a descriptor within two slices (20 files
    wait for 10 descriptors) of its turn: first come, first served.
    """
    n, cap, step, slice_s = 30, 10, 0.1, 1.0
    paths = [logs / f"b{i:02d}.log" for i in range(n)]
    for p in paths:
        write(p, "start\n")
    tm, _ = manager(tmp_path, [spec(logs / "*.log", start_at="beginning")], max_open_files=cap,
                    open_slice_s=slice_s)
    t0 = time.monotonic()
    got: list[Event] = []
    opened: dict[str, float] = {}  # path -> poll time it was seen opened
    closed: dict[str, float] = {p.name: t0 for p in paths}  # path -> poll time since when it waits
    held: list[float] = []
    waited: list[float] = []
    written = n
    for k in range(120):
        now = t0 + k * step
        for p in paths:
            write(p, f"{p.name}-{k}\n")
        written += n
        got += tm.poll(now=now)
        assert tm.open_files <= cap
        is_open = {f.harv.path.rsplit("/", 1)[1] for f in tm._files.values() if f.harv.is_open}
        for name in list(closed):
            if name in is_open:
                waited.append(now - closed.pop(name))
                opened[name] = now
        for name in list(opened):
            if name not in is_open:
                held.append(now - opened.pop(name))
                closed[name] = now
        assert k == 0 or not tm.busy  # waiting for a slice to end is no reason to spin
    assert held and min(held) >= slice_s - 1e-9  # no busy file lost its descriptor within its slice
    assert waited and max(waited) <= 2 * slice_s + step + 1e-9  # and no file waited past its turn
    assert max(now - since for since in closed.values()) <= 2 * slice_s + step + 1e-9
    assert tm.counters["files_opened"] <= n + (120 * step / slice_s) * cap  # ~10 opens a slice
    for k in range(40):  # writing stopped: everything is read, once
        got += tm.poll(now=t0 + (120 + k) * step)
    assert len(got) == written and len({(e.path, e.offset) for e in got}) == written
    tm.close()


def test_acks_out_of_order_across_and_within_files(tmp_path: Path, logs: Path) -> None:
    write(logs / "a.log", "a0\na1\na2\n")
    write(logs / "b.log", "b0\nb1\n")
    tm, reg = manager(tmp_path, [spec(logs / "*.log", start_at="beginning")])
    evs = collect(tm, ack=False)
    a = [e for e in evs if e.path.endswith("a.log")]
    b = [e for e in evs if e.path.endswith("b.log")]
    for e in reversed(b):
        tm.ack(e.identity, e.next_offset)
    assert reg.get(b[0].identity).offset == 6  # type: ignore[union-attr]
    assert reg.get(a[0].identity).offset == 0  # type: ignore[union-attr]
    tm.ack(a[1].identity, a[1].next_offset)  # a retried record can overtake
    assert reg.get(a[0].identity).offset == 0  # type: ignore[union-attr]
    tm.ack(a[0].identity, a[0].next_offset)
    assert reg.get(a[0].identity).offset == a[1].next_offset  # type: ignore[union-attr]
    tm.ack(a[2].identity, a[2].next_offset)
    assert reg.get(a[0].identity).offset == 9  # type: ignore[union-attr]
    assert not tm.ack("fp:nope", 3)


def test_set_inputs_remove_change_add(tmp_path: Path, logs: Path) -> None:
    a, b, c = logs / "a.log", logs / "b.log", logs / "c.log"
    write(a, "a0\n")
    write(b, "b0\n")
    write(c, "c-old\n")
    tm, reg = manager(tmp_path, [spec(a, "ta", start_at="beginning"), spec(b, "tb", start_at="beginning")])
    collect(tm)
    write(a, "a1\n")
    write(b, "b1\n")
    in_flight = collect(tm, ack=False)
    assert sorted((e.topic, e.message) for e in in_flight) == [("ta", "a1"), ("tb", "b1")]
    tm.set_inputs([spec(a, "ta2", start_at="beginning"), spec(c, "tc")])  # b removed, a changed, c added
    assert collect(tm) == []  # c is new with start_at=end: its old line is skipped
    write(a, "a2\n")
    write(b, "b2\n")
    write(c, "c-new\n")
    got = collect(tm)
    assert sorted((e.topic, e.message) for e in got) == [("ta2", "a2"), ("tc", "c-new")]
    for e in in_flight:  # handed out before the change: still acknowledged
        assert tm.ack(e.identity, e.next_offset)
    b_ident = next(e.identity for e in in_flight if e.topic == "tb")
    assert reg.get(b_ident).offset == 6  # type: ignore[union-attr]


def test_changing_multiline_reopens_at_the_handed_out_offset(tmp_path: Path, logs: Path) -> None:
    log = logs / "a.log"
    write(log, "head\n  cont\n")
    tm, _ = manager(tmp_path, [spec(log, start_at="beginning")])
    assert msgs(collect(tm)) == ["head", "  cont"]
    tm.set_inputs([spec(log, start_at="beginning", multiline={"pattern": r"^\s", "match": "after"})])
    write(log, "next\n  more\nlast\n")
    assert msgs(collect(tm)) == ["next\n  more"]


def test_multiline_through_the_manager_with_timeout(tmp_path: Path, logs: Path) -> None:
    log = logs / "a.log"
    write(log, "Traceback (most recent call last):\n  File x\nValueError: no\n2024 next\n")
    ml = {"pattern": r"^\d{4}|^Traceback", "negate": True, "match": "after", "flush_timeout_s": 2.0}
    tm, _ = manager(tmp_path, [spec(log, start_at="beginning", multiline=ml)])
    t0 = time.monotonic()
    (tb,) = tm.poll(now=t0)
    assert tb.message == "Traceback (most recent call last):\n  File x\nValueError: no" and tb.lines == 3
    assert tm.poll(now=t0 + 1.0) == []
    (last,) = tm.poll(now=t0 + 2.5)
    assert last.message == "2024 next" and last.next_offset == os.path.getsize(log)


def test_inputspec_from_the_schema_works_as_is(tmp_path: Path, logs: Path) -> None:
    schema = pytest.importorskip("logferry.schema")
    write(logs / "a.log", "x\n  y\n")
    spec_ = schema.InputSpec(path=str(logs / "*.log"), topic="app", start_at="beginning",
                             fields={"env": "prod"}, multiline=schema.Multiline(pattern=r"^\s"))
    tm, _ = manager(tmp_path, [spec_])
    write(logs / "a.log", "z\n")
    t0 = time.monotonic()
    (e1,) = tm.poll(now=t0)
    assert (e1.message, e1.topic, dict(e1.fields), e1.input_id) == ("x\n  y", "app", {"env": "prod"},
                                                                     str(logs / "*.log"))
    (e2,) = tm.poll(now=t0 + 6.0)  # the last event waits for a continuation until the 5 s timeout
    assert e2.message == "z"


def test_inotify_wakes_the_loop(tmp_path: Path, logs: Path) -> None:
    tm, _ = manager(tmp_path, [spec(logs / "*.log")], use_inotify=True, scan_interval_s=60.0)
    assert tm.poll() == []
    t0 = time.monotonic()
    write(logs / "new.log", "hello\n")
    got: list[Event] = []
    while not got and time.monotonic() - t0 < 5:
        tm.wait(2.0)
        got = tm.poll()
    assert msgs(got) == ["hello"]
    assert time.monotonic() - t0 < 1.0  # woken by inotify, not by the 60 s scan
    tm.close()


# --- the pieces on their own ------------------------------------------------------------------


def test_scanner_skips_non_files_and_reports_unreadable(tmp_path: Path, logs: Path) -> None:
    write(logs / "good.log", "x\n")
    write(logs / "skip-me.log", "x\n")
    (logs / "dir.log").mkdir()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(logs / "sock.log"))
    os.symlink(logs / "loop.log", logs / "loop.log")  # stat fails with ELOOP
    os.symlink(logs / "missing", logs / "dangling.log")  # silently nothing
    try:
        found, errors = FileScanner([str(logs / "*.log")], [r"skip-me"]).scan()
    finally:
        sock.close()
    assert list(found) == [str(logs / "good.log")]
    assert [(e.path, e.errno) for e in errors] == [(str(logs / "loop.log"), 40)]
    assert FileScanner(str(logs / "*.log")).watch_dirs() == {str(logs)}


def test_scanner_watch_dirs_cover_recursive_and_missing_parents(tmp_path: Path, logs: Path) -> None:
    (logs / "a" / "b").mkdir(parents=True)
    (logs / "c").mkdir()
    scanner = FileScanner([str(logs / "**" / "*.log"), str(tmp_path / "later" / "app" / "*.log")])
    assert scanner.watch_dirs() == {str(logs), str(logs / "a"), str(logs / "a" / "b"), str(logs / "c"),
                                    str(tmp_path)}  # creating "later" must wake the loop
    write(logs / "a" / "b" / "deep.log", "x\n")
    found, _ = scanner.scan()
    assert list(found) == [str(logs / "a" / "b" / "deep.log")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads everything")
def test_scanner_reports_permission_denied(logs: Path) -> None:
    p = logs / "secret.log"
    write(p, "x\n")
    p.chmod(0)
    found, errors = FileScanner(str(logs / "*.log")).scan()
    assert found == {} and [e.errno for e in errors] == [13]


def test_harvester_drains_a_rotated_file_then_closes(logs: Path) -> None:
    log = logs / "a.log"
    write(log, "1\n2\n")
    h = Harvester(str(log), max_line_bytes=100)
    assert [r.raw for r in h.read_lines(1 << 20)] == [b"1", b"2"]
    assert h.check_path() == "same"
    write(log, "3\n")
    os.rename(log, logs / "a.log.1")
    write(log, "other file\n", "w")
    assert h.check_path() == "replaced" and h.draining
    assert [r.raw for r in h.read_lines(1 << 20)] == [b"3"]
    assert h.finished and not h.is_open and h.read_lines(100) == []


def test_harvester_budget_and_reopen_rereads_only_the_partial(logs: Path) -> None:
    log = logs / "a.log"
    write(log, "".join(f"line {i}\n" for i in range(100)) + "partial")
    h = Harvester(str(log), max_line_bytes=100)
    first = h.read_lines(50)
    assert h.last_read_bytes == 50 and not h.at_eof and len(first) == 7
    rest = h.read_lines(1 << 20)
    assert h.at_eof and len(first) + len(rest) == 100
    h.close()
    write(log, " done\n")
    assert [r.raw for r in h.read_lines(1 << 20)] == [b"partial done"]


def test_harvester_refuses_a_path_that_now_holds_another_file(logs: Path) -> None:
    log = logs / "a.log"
    write(log, "y" * 2000 + "\n")
    h = Harvester(str(log))
    h.read_lines(1 << 20)
    h.close()
    os.unlink(log)
    write(log, "z" * 2000 + "\n")
    with pytest.raises(FileChanged):
        h.open()


def test_no_event_lost_or_doubled_under_churn(tmp_path: Path, logs: Path) -> None:
    """Appends, a rename rotation, a copytruncate and a delete, interleaved with small polls."""
    log = logs / "app.log"
    tm, _ = manager(tmp_path, [spec(logs / "app.log", start_at="beginning")])
    written: list[str] = []

    def emit(n: int, tag: str) -> None:
        lines = [f"{tag}-{i}-{'p' * (i % 50)}" for i in range(n)]
        write(log, "".join(s + "\n" for s in lines))
        written.extend(lines)

    got: list[Event] = []
    emit(30, "a")
    got += tm.poll(300)
    emit(30, "b")
    os.rename(log, logs / "app.log.1")
    emit(40, "c")  # a new app.log
    for _ in range(3):
        got += tm.poll(200)
    got += collect(tm, ack=False)
    with open(log, "r+b") as f:  # copytruncate of the new file, after it was fully read
        f.truncate(0)
    emit(10, "d")
    got += collect(tm, ack=False)
    os.unlink(logs / "app.log.1")
    got += collect(tm, ack=False)
    assert Counter(msgs(got)) == Counter(written)
    for e in got:
        assert tm.ack(e.identity, e.next_offset)
    assert tm.inflight == 0


def test_fair_share_between_a_busy_and_a_quiet_file(tmp_path: Path, logs: Path) -> None:
    write(logs / "busy.log", "".join(f"busy line {i:06d}\n" for i in range(200_000)))
    write(logs / "quiet.log", "quiet\n")
    tm, _ = manager(tmp_path, [spec(logs / "*.log", start_at="beginning")])
    first = tm.poll(256 * 1024)
    assert "quiet" in msgs(first)  # not starved behind 3.4 MB of the busy file
    assert sum(len(e.raw) + 1 for e in first) <= 256 * 1024
    assert tm.wait(10.0)  # stopped on the budget: more to read, no sleeping


def test_zero_budget_reads_nothing_but_keeps_state(tmp_path: Path, logs: Path) -> None:
    write(logs / "a.log", "x\n")
    tm, _ = manager(tmp_path, [spec(logs / "a.log", start_at="beginning")])
    assert tm.poll(0) == []
    assert msgs(tm.poll(1024)) == ["x"]


def test_no_busy_wait_after_a_flushed_line_whose_terminator_came_late(tmp_path: Path, logs: Path) -> None:
    log = logs / "a.log"
    write(log, "stall")
    tm, _ = manager(tmp_path, [spec(log, start_at="beginning")], partial_flush_s=0.05, scan_interval_s=30.0)
    tm.poll()
    time.sleep(0.06)
    assert msgs(tm.poll()) == ["stall"]
    write(log, "\n")
    assert tm.poll() == []
    t0 = time.monotonic()
    tm.wait(0.2)
    assert time.monotonic() - t0 >= 0.15  # nothing is due: wait() really sleeps


def test_partial_line_of_a_file_closed_for_the_cap_is_flushed_later(tmp_path: Path, logs: Path) -> None:
    write(logs / "a.log", "a-partial")
    write(logs / "b.log", "b\n")
    tm, _ = manager(tmp_path, [spec(logs / "*.log", start_at="beginning")], max_open_files=1,
                    partial_flush_s=5.0)
    t0 = time.monotonic()
    got: list[Event] = []
    for k in range(4):
        got += tm.poll(now=t0 + 0.1 * k)
        assert tm.open_files <= 1
    assert msgs(got) == ["b"]
    for k in range(4):
        got += tm.poll(now=t0 + 6.0 + 0.1 * k)
    assert msgs(got) == ["b", "a-partial"]


def test_many_events_in_flight_with_the_first_ack_last(tmp_path: Path, logs: Path) -> None:
    write(logs / "a.log", "".join(f"{i}\n" for i in range(50_000)))
    tm, reg = manager(tmp_path, [spec(logs / "a.log", start_at="beginning")])
    evs = collect(tm, ack=False)
    assert len(evs) == 50_000 and tm.inflight == 50_000
    t0 = time.perf_counter()
    for e in evs[1:]:  # the first record is being retried; everything after it got through
        assert tm.ack(e.identity, e.next_offset)
    assert reg.get(evs[0].identity).offset == 0  # type: ignore[union-attr]
    assert tm.ack(evs[0].identity, evs[0].next_offset)
    assert time.perf_counter() - t0 < 2.0
    assert reg.get(evs[0].identity).offset == evs[-1].next_offset and tm.inflight == 0  # type: ignore[union-attr]


def test_a_line_cut_by_the_read_budget_is_not_flushed_on_timeout(logs: Path) -> None:
    """The agent behind on a file (many busy files, round robin) must not ship half a line.

    Found by the 100-file benchmark: 2,000,056 records for 2,000,000 lines, because a partial
    line cut by a read quantum waited longer than partial_flush_s for the file's next turn.
    """
    log = logs / "a.log"
    write(log, "first\n" + "x" * 30 + "\n")
    h = Harvester(str(log), partial_flush_s=5.0)
    t0 = time.monotonic()
    assert [r.raw for r in h.read_lines(20, now=t0)] == [b"first"]  # stops inside the long line
    assert not h.at_eof
    assert h.flush(now=t0 + 60) == []  # the rest is in the file: no timeout flush
    assert [r.raw for r in h.read_lines(1 << 20, now=t0 + 61)] == [b"x" * 30]
    write(log, "tail")  # a real partial line at the end of the file still goes after the timeout
    assert h.read_lines(1 << 20, now=t0 + 62) == []
    assert [r.raw for r in h.flush(now=t0 + 68)] == [b"tail"]
