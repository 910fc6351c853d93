"""Reporting a full or read-only data directory (agent/diskstate.py), with plain values."""

from __future__ import annotations

import errno

from agent.diskstate import DiskState


def test_said_once_then_once_a_minute_then_recovery(tmp_path) -> None:
    d = DiskState(str(tmp_path), log_every_s=60.0)
    full = OSError(errno.ENOSPC, "No space left on device")
    first = d.failed("registry", str(tmp_path / "registry.json"), full, now=0.0)
    assert first is not None
    assert first.startswith(f"cannot save the registry to {tmp_path}: no space left; ")
    assert "bytes free; lines acknowledged since " in first and "would be sent again after a restart" in first
    assert [d.failed("registry", "r", full, now=t) for t in (1.0, 30.0, 59.0)] == [None, None, None]
    again = d.failed("registry", "r", full, now=61.0)
    assert again is not None and "5 failed attempts" in again
    assert d.failed_saves == 5
    assert d.error is not None and "registry" in d.error
    assert d.status()["failing"]["registry"]["attempts"] == 5
    back = d.ok("registry")
    assert back is not None and "again after 5 failed attempt(s)" in back
    assert d.ok("registry") is None and d.error is None


def test_read_only_and_each_file_on_its_own(tmp_path) -> None:
    d = DiskState(str(tmp_path))
    d.failed("registry", "r", OSError(errno.EROFS, "Read-only file system"), now=0.0)
    d.failed("stamp journal", "s", OSError(errno.ENOSPC, "No space"), now=0.0)
    assert "read-only file system" in (d.error or "") and "stamp journal" in (d.error or "")
    d.ok("registry")
    assert d.error is not None and "registry" not in d.error
