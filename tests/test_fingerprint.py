"""File identity: inode while short, content fingerprint + inode from 1 KiB on, and the growth check."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent.fingerprint import (
    FINGERPRINT_BYTES,
    birth_ns,
    digest,
    fp_hash,
    fp_inode,
    head_digest,
    identity,
    ino_identity,
    inode_of,
    is_fp,
    is_ino,
    may_have_grown_into,
)


def test_short_file_goes_by_inode(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    p.write_bytes(b"x" * (FINGERPRINT_BYTES - 1))
    st = os.stat(p)
    birth = birth_ns(str(p))
    assert identity(p) == ino_identity(st, birth) == (
        f"ino:{st.st_dev}:{st.st_ino}" + (f"+b{birth}" if birth is not None else ""))
    assert is_ino(identity(str(p))) and not is_fp(identity(p))
    assert inode_of(identity(p)) == ((st.st_dev, st.st_ino), birth)


def test_fingerprint_from_one_kib_and_same_by_fd_or_path(tmp_path: Path) -> None:
    p = tmp_path / "a.log"
    head = bytes(range(256)) * 4
    p.write_bytes(head + b"more lines\n")
    ident = identity(p)
    st = os.stat(p)
    birth = birth_ns(str(p))
    assert ident == f"fp:{digest(head)}@{st.st_dev}:{st.st_ino}" + (f"+b{birth}" if birth is not None else "")
    assert fp_hash(ident) == digest(head) and fp_inode(ident) == (st.st_dev, st.st_ino)
    fd = os.open(p, os.O_RDONLY)
    try:
        assert identity(fd) == ident
        assert head_digest(fd, FINGERPRINT_BYTES) == fp_hash(ident)
        # a size known to the caller (smaller than now) is honoured: not yet fingerprintable
        assert is_ino(identity(fd, size=100))
    finally:
        os.close(fd)


def test_files_alike_are_two_files_and_a_rename_is_the_same(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    a.write_bytes(b"2024-01-01 first line\n" * 100)
    b.write_bytes(b"2024-01-01 first line\n" * 100)
    c.write_bytes(b"2024-01-02 other line\n" * 100)
    assert identity(a) != identity(b)  # same first KiB, two inodes: two files
    assert fp_hash(identity(a)) == fp_hash(identity(b)) != fp_hash(identity(c))
    before = identity(a)
    moved = tmp_path / "moved"
    os.rename(a, moved)
    assert identity(moved) == before  # rotation by rename keeps the identity


def test_plain_and_short_identities_have_no_inode_part() -> None:
    assert fp_inode("fp:0123") is None and fp_hash("fp:0123") == "0123"  # written before 0.2
    assert fp_inode("ino:1:2") is None and fp_hash("ino:1:2") is None
    assert fp_inode("fp:ab@x:y") is None


def test_fingerprint_ignores_bytes_after_the_head(tmp_path: Path) -> None:
    p = tmp_path / "grow.log"
    p.write_bytes(b"y" * 2000)
    before = identity(p)
    with p.open("ab") as f:
        f.write(b"appended\n")
    assert identity(p) == before


def test_may_have_grown_into(tmp_path: Path) -> None:
    p = tmp_path / "grow.log"
    p.write_bytes(b"short\n")
    old = identity(p)
    assert not may_have_grown_into(old, os.stat(p))  # still short
    with p.open("ab") as f:
        f.write(b"z" * 2000)
    st = os.stat(p)
    assert is_fp(identity(p))
    assert may_have_grown_into(old, st, birth=birth_ns(str(p)))
    other = tmp_path / "other.log"
    other.write_bytes(b"q" * 2000)
    assert not may_have_grown_into(old, os.stat(other))  # another inode
    assert not may_have_grown_into(identity(p), st)  # only ino: identities grow


def test_head_digest_is_the_prefix_check(tmp_path: Path) -> None:
    p = tmp_path / "h.log"
    p.write_bytes(b"hello world\n")
    fd = os.open(p, os.O_RDONLY)
    try:
        assert head_digest(fd, 5) == digest(b"hello")
        assert head_digest(fd, 0) == digest(b"")
    finally:
        os.close(fd)


def test_a_new_file_on_a_recycled_inode_is_a_new_identity(tmp_path: Path) -> None:
    """Same path, same first KiB, same inode number: told apart by the birth time (where kept)."""
    body = b"2024-01-01 same banner\n" * 100
    p = tmp_path / "a.log"
    p.write_bytes(body)
    before, ino = identity(p), os.stat(p).st_ino
    if birth_ns(str(p)) is None:
        pytest.skip("this filesystem keeps no birth time")
    for _ in range(50):
        p.unlink()
        p.write_bytes(body)
        if os.stat(p).st_ino == ino:
            break
    else:
        pytest.skip("the inode was not reused")
    assert identity(p) != before and fp_hash(identity(p)) == fp_hash(before)
