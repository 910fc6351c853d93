"""Registry: forward-only offsets, atomic saves with a backup, corrupt files, GC, 10,000 entries."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from agent.registry import Registry, RegistryCorruptError


def fresh(tmp_path: Path, **kw: float) -> Registry:
    r = Registry(tmp_path / "state" / "registry.json", **kw)
    r.load()
    return r


def test_missing_file_is_an_empty_registry(tmp_path: Path) -> None:
    r = fresh(tmp_path)
    assert len(r) == 0 and not r.dirty and r.loaded_from is None
    assert r.save() is False  # nothing to write
    assert not r.path.exists()


def test_roundtrip(tmp_path: Path) -> None:
    r = fresh(tmp_path)
    r.create("fp:abc", path="/var/log/a \"quoted\" é.log", offset=10, input_id="in", topic="t", size_seen=20)
    r.mark_input("in")
    assert r.save() is True
    again = fresh(tmp_path)
    e = again.get("fp:abc")
    assert e is not None
    assert (e.path, e.offset, e.input_id, e.topic, e.source, e.size_seen) == (
        '/var/log/a "quoted" é.log', 10, "in", "t", "fp:abc", 20)
    assert again.input_known("in") and not again.input_known("other")


def test_offsets_never_move_back_except_by_reset(tmp_path: Path) -> None:
    r = fresh(tmp_path)
    r.create("ino:1:2", path="/a")
    assert r.set_offset("ino:1:2", 100)
    assert not r.set_offset("ino:1:2", 50)
    assert r.get("ino:1:2").offset == 100  # type: ignore[union-attr]
    assert not r.set_offset("unknown", 5)
    e = r.reset("ino:1:2")
    assert e is not None and e.offset == 0 and e.source == "ino:1:2#r1" and e.resets == 1
    assert r.set_offset("ino:1:2", 7)


def test_rename_keeps_offset_and_source(tmp_path: Path) -> None:
    r = fresh(tmp_path)
    r.create("ino:1:2", path="/a", offset=500, head_len=500, head="h")
    r.rename("ino:1:2", "fp:xyz")
    assert "ino:1:2" not in r
    e = r.get("fp:xyz")
    assert e is not None and e.offset == 500 and e.source == "ino:1:2" and e.identity == "fp:xyz"
    r.save()
    assert set(x.identity for x in fresh(tmp_path)) == {"fp:xyz"}


def test_only_writes_when_dirty(tmp_path: Path) -> None:
    r = fresh(tmp_path)
    r.create("a", path="/a")
    assert r.save()
    mtime = r.path.stat().st_mtime_ns
    assert not r.save()
    assert not r.update("a", path="/a")  # no change, stays clean
    assert not r.set_offset("a", 0) or not r.dirty
    assert not r.save()
    assert r.path.stat().st_mtime_ns == mtime


def test_previous_file_kept_as_bak_and_used_when_main_is_corrupt(tmp_path: Path) -> None:
    r = fresh(tmp_path)
    r.create("a", path="/a", offset=1)
    r.save()
    r.set_offset("a", 2)
    r.save()
    assert r.bak.exists()
    r.path.write_text("{ this is not a registry")
    again = fresh(tmp_path)
    assert again.loaded_from == again.bak
    assert again.get("a").offset == 1  # type: ignore[union-attr]


def test_corrupt_without_usable_backup_is_refused_loudly(tmp_path: Path) -> None:
    r = fresh(tmp_path)
    r.create("a", path="/a")
    r.save()
    r.path.write_text("garbage")
    with pytest.raises(RegistryCorruptError, match=r"registry\.json"):
        fresh(tmp_path)
    r.bak.write_text("also garbage")
    with pytest.raises(RegistryCorruptError, match=r"registry\.json\.bak"):
        fresh(tmp_path)


def test_cut_file_is_recognised(tmp_path: Path) -> None:
    r = fresh(tmp_path)
    for i in range(10):
        r.create(f"id{i}", path=f"/p{i}", offset=i)
    r.save()
    text = r.path.read_text()
    r.path.write_text(text[: len(text) // 2])
    with pytest.raises(RegistryCorruptError, match=r"cut|not JSON"):
        fresh(tmp_path)


def test_crash_leftovers(tmp_path: Path) -> None:
    """A crash mid-save leaves a temp file (ignored) or, between the two renames, only the .bak."""
    r = fresh(tmp_path)
    r.create("a", path="/a", offset=42)
    r.save()
    r.tmp.write_text('{"format":"logferry-registry","version":1}\n{"identity":"half')
    again = fresh(tmp_path)
    assert again.get("a").offset == 42  # type: ignore[union-attr]
    again.set_offset("a", 43)
    assert again.save()  # the stale temp file is simply overwritten
    assert not again.tmp.exists()
    os.replace(again.path, again.bak)  # as if killed between "main -> bak" and "tmp -> main"
    third = fresh(tmp_path)
    assert third.loaded_from == third.bak and third.get("a").offset == 43  # type: ignore[union-attr]


def test_failed_save_leaves_the_old_file_and_stays_dirty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    r = fresh(tmp_path)
    r.create("a", path="/a", offset=1)
    r.save()
    r.set_offset("a", 2)

    def boom(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(OSError):
        r.save()
    monkeypatch.undo()
    assert r.dirty
    assert fresh(tmp_path).get("a").offset == 1  # type: ignore[union-attr]
    assert r.save() and fresh(tmp_path).get("a").offset == 2  # type: ignore[union-attr]


def test_gc_drops_entries_gone_longer_than_ttl(tmp_path: Path) -> None:
    r = fresh(tmp_path, gone_ttl_s=60.0)
    r.create("live", path="/l")
    r.create("gone", path="/g")
    assert r.gc({"live"}, now=1000.0) == []
    assert r.gc({"live"}, now=1059.0) == []
    assert r.gc({"live"}, now=1061.0) == ["gone"]
    assert "gone" not in r and "live" in r
    # seen again in time: the clock restarts
    r.create("back", path="/b")
    r.gc(set(), now=2000.0)
    r.gc({"back", "live"}, now=2030.0)
    assert r.gc(set(), now=2070.0) == []


def test_ten_thousand_entries_save_cheaply(tmp_path: Path) -> None:
    r = fresh(tmp_path)
    for i in range(10_000):
        r.create(f"fp:{i:032x}", path=f"/var/log/app/file-{i}.log", offset=i, input_id="in", topic="t")
    t0 = time.perf_counter()
    r.save()
    first = time.perf_counter() - t0
    for i in range(0, 10_000, 10):
        r.set_offset(f"fp:{i:032x}", i + 1)
    t0 = time.perf_counter()
    r.save()
    again = time.perf_counter() - t0
    assert first < 1.0 and again < 0.5, (first, again)
    loaded = fresh(tmp_path)
    assert len(loaded) == 10_000 and loaded.get(f"fp:{10:032x}").offset == 11  # type: ignore[union-attr]


def test_a_new_entry_never_takes_a_source_in_use(tmp_path: Path) -> None:
    r = fresh(tmp_path)
    r.create("ino:1:2", path="/a")
    r.rename("ino:1:2", "fp:x@1:2")  # keeps source ino:1:2
    e = r.create("ino:1:2", path="/a")  # the same file short again, after a truncate
    assert e.source == "ino:1:2#n1"
    assert r.reset("ino:1:2") is not None and r.get("ino:1:2").source == "ino:1:2#r1"  # type: ignore[union-attr]
    r.remove("fp:x@1:2")
    assert r.create("ino:9:9", path="/b", source="ino:1:2").source == "ino:1:2"  # free again
    r.save()
    again = fresh(tmp_path)
    assert again.create("ino:5:5", path="/c", source="ino:1:2").source == "ino:1:2#n1"  # in use after load
