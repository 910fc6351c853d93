"""Which file is this? The identity under which a file's offset is saved.

Why not device+inode alone, as most shippers did: inodes are reused. Delete ``app.log`` (or
rotate it away and let the rotated copy expire) and the next file created on that filesystem
often gets the same inode number; a registry keyed by inode then "resumes" the new file at the
old file's offset and silently skips its first lines. That is the bug users of such shippers
report most.

Why not content alone, as Filebeat's fingerprint mode and Vector's checksum do: files that start
alike (CSV exports under one header, services printing the same startup banner, per-tenant
copies of one config) then collapse into one, and all but the first are skipped without a word.
That is the bug *their* users keep reporting.

So a file long enough is named by both: ``fp:<hash of its first 1024 bytes>@<dev>:<ino>+b<birth>``
(the birth time where the filesystem keeps one, see :func:`birth_ns`). Two files that exist at
the same time are two sources whatever their first bytes (different inodes); a file renamed by
rotation keeps its identity (same inode, same birth, same head); a new file on a recycled inode
is born later, so it gets a new identity even when it starts with the very same KiB. (Where no
birth time is kept, such a file with the same first KiB *and* at least as long as the old offset
is taken for the old file; one shorter than the old offset is seen as truncated and read from 0.)
The hash part alone still recognises a file whose device number changed across a reboot: see
:func:`fp_hash` and the tailer's first scan.

A file shorter than that has no fingerprint yet, so it goes by ``ino:<dev>:<ino>+b<birth>`` meanwhile.
Inode reuse is still possible for those, so whoever keeps an ``ino:`` identity also keeps a
digest of the bytes it has seen at the start of the file (:func:`head_digest`, up to the first
KiB) and checks it before trusting the identity again: a different head means a different file
on a recycled inode. When the file grows past the KiB, its identity changes from ``ino:`` to
``fp:``; :func:`may_have_grown_into` tells whether an ``ino:`` entry may be that file, so the
registry moves the entry (and its offset) instead of re-reading the file. The digest of a full
KiB head *is* the fingerprint, so the check is the same hash either way.

Registries written before 0.2 hold plain ``fp:<hash>`` identities (no inode); the tailer adopts
such an entry for the file with that hash at its first scan (see :func:`fp_inode`).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
from typing import Any

__all__ = [
    "FINGERPRINT_BYTES",
    "birth_ns",
    "digest",
    "fp_hash",
    "fp_inode",
    "head_digest",
    "identity",
    "identity_of_stat",
    "ino_identity",
    "inode_of",
    "is_fp",
    "is_ino",
    "may_have_grown_into",
]

FINGERPRINT_BYTES = 1024


def digest(data: bytes) -> str:
    """Hex digest used for fingerprints and head digests (BLAKE2b, 128 bits)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


class _StatxTimestamp(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_int64), ("tv_nsec", ctypes.c_uint32), ("pad", ctypes.c_int32)]


class _Statx(ctypes.Structure):  # struct statx, linux/stat.h (256 bytes)
    _fields_ = [("mask", ctypes.c_uint32), ("blksize", ctypes.c_uint32), ("attributes", ctypes.c_uint64),
                ("nlink", ctypes.c_uint32), ("uid", ctypes.c_uint32), ("gid", ctypes.c_uint32),
                ("mode", ctypes.c_uint16), ("pad1", ctypes.c_uint16), ("ino", ctypes.c_uint64),
                ("size", ctypes.c_uint64), ("blocks", ctypes.c_uint64), ("attributes_mask", ctypes.c_uint64),
                ("atime", _StatxTimestamp), ("btime", _StatxTimestamp), ("ctime", _StatxTimestamp),
                ("mtime", _StatxTimestamp), ("rdev_major", ctypes.c_uint32), ("rdev_minor", ctypes.c_uint32),
                ("dev_major", ctypes.c_uint32), ("dev_minor", ctypes.c_uint32), ("spare", ctypes.c_uint64 * 14)]


_STATX_BTIME = 0x800
_AT_EMPTY_PATH = 0x1000
_AT_FDCWD = -100
try:
    _statx: Any = ctypes.CDLL(None, use_errno=True).statx
    _statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_Statx)]
except (OSError, AttributeError):  # no statx in this libc (glibc < 2.28, musl < 1.2.5)
    _statx = None


def birth_ns(file: int | str) -> int | None:
    """A file's birth time in ns (statx ``stx_btime``), or None where the filesystem or libc has none.

    Why: an inode number is reused once its file is gone, but the new file is born later. With
    the birth time in the identity, a new file on a recycled inode is a new identity even if it
    starts with the very same bytes, and even if the agent crashed before saving anything about
    the old one (then nothing else could tell them apart). ext4, xfs, btrfs and tmpfs keep it.
    """
    if _statx is None:
        return None
    buf = _Statx()
    if isinstance(file, int):
        rc = _statx(file, b"", _AT_EMPTY_PATH, _STATX_BTIME, ctypes.byref(buf))
    else:
        rc = _statx(_AT_FDCWD, os.fsencode(file), 0, _STATX_BTIME, ctypes.byref(buf))
    if rc != 0 or not buf.mask & _STATX_BTIME:
        return None
    return buf.btime.tv_sec * 1_000_000_000 + buf.btime.tv_nsec


def _inode_key(st: os.stat_result, birth: int | None) -> str:
    return f"{st.st_dev}:{st.st_ino}" if birth is None else f"{st.st_dev}:{st.st_ino}+b{birth}"


def ino_identity(st: os.stat_result, birth: int | None = None) -> str:
    """``ino:<dev>:<ino>[+b<birth ns>]`` of a stat result (see :func:`birth_ns`)."""
    return "ino:" + _inode_key(st, birth)


def is_fp(ident: str) -> bool:
    """True for a content fingerprint identity."""
    return ident.startswith("fp:")


def is_ino(ident: str) -> bool:
    """True for a device+inode identity (a file shorter than the fingerprint size)."""
    return ident.startswith("ino:")


def fp_hash(ident: str) -> str | None:
    """The content part of an ``fp:`` identity (the same for every file starting alike), else None."""
    if not is_fp(ident):
        return None
    return ident[3:].split("@", 1)[0]


def fp_inode(ident: str) -> tuple[int, int] | None:
    """(device, inode) of an ``fp:`` identity; None for ``ino:`` and for plain ``fp:<hash>`` (pre-0.2)."""
    return inode_of(ident)[0] if is_fp(ident) else None


def inode_of(ident: str) -> tuple[tuple[int, int] | None, int | None]:
    """((device, inode), birth ns) of an ``fp:`` or ``ino:`` identity; Nones for what it lacks."""
    if is_ino(ident):
        return _parse_inode(ident[4:])
    if is_fp(ident) and "@" in ident:
        return _parse_inode(ident.split("@", 1)[1])
    return None, None


def _parse_inode(text: str) -> tuple[tuple[int, int] | None, int | None]:
    key, _, birth = text.partition("+b")
    dev, _, ino = key.partition(":")
    try:
        return (int(dev), int(ino)), (int(birth) if birth else None)
    except ValueError:
        return None, None


def head_digest(fd: int, length: int) -> str:
    """Digest of the first ``length`` bytes of an open file (fewer if the file is shorter)."""
    return digest(os.pread(fd, length, 0)) if length > 0 else digest(b"")


def identity_of_stat(fd: int, st: os.stat_result, fingerprint_bytes: int = FINGERPRINT_BYTES) -> str:
    """Identity of the open file ``fd`` whose stat is ``st`` (saves a syscall for callers with one)."""
    return _identity(fd, st.st_size, st, fingerprint_bytes)


def identity(
    file: int | str | os.PathLike[str],
    size: int | None = None,
    fingerprint_bytes: int = FINGERPRINT_BYTES,
) -> str:
    """Identity of a file given as an open descriptor or a path (opened and closed here).

    ``size`` is the size the caller already knows (from its own stat); by default the file
    is stat'ed. A file that shrinks below ``fingerprint_bytes`` between the stat and the read
    gets its ``ino:`` identity.
    """
    if isinstance(file, int):
        st = os.fstat(file)
        return _identity(file, st.st_size if size is None else size, st, fingerprint_bytes)
    fd = os.open(file, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        return _identity(fd, st.st_size if size is None else size, st, fingerprint_bytes)
    finally:
        os.close(fd)


def _identity(fd: int, size: int, st: os.stat_result, fingerprint_bytes: int) -> str:
    if size >= fingerprint_bytes:
        head = os.pread(fd, fingerprint_bytes, 0)
        if len(head) == fingerprint_bytes:  # else it shrank since the stat: not fingerprintable yet
            return f"fp:{digest(head)}@{_inode_key(st, birth_ns(fd))}"
    return ino_identity(st, birth_ns(fd))


def may_have_grown_into(
    old_identity: str, st: os.stat_result, fingerprint_bytes: int = FINGERPRINT_BYTES, birth: int | None = None
) -> bool:
    """Whether a saved ``ino:`` identity may be the file with stat ``st``, now long enough for a fingerprint.

    True when the device and inode match and the file has reached ``fingerprint_bytes``. It
    is only "may": the inode could have been reused; confirm with the head digest saved with
    the old entry (the first ``head_len`` bytes must hash the same) before moving its offset.
    """
    if not is_ino(old_identity):
        return False
    return old_identity == ino_identity(st, birth) and st.st_size >= fingerprint_bytes
