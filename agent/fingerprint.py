"""Which file is this? The identity under which a file's offset is saved.

Why not device+inode alone, as most shippers did: inodes are reused. Delete ``app.log`` (or
rotate it away and let the rotated copy expire) and the next file created on that filesystem
often gets the same inode number; a registry keyed by inode then "resumes" the new file at the
old file's offset and silently skips its first lines. That is the bug users of such shippers
report most.

So a file is named by its content: ``fp:<hash of its first 1024 bytes>`` once it has that many
bytes. Log lines start with timestamps, so two files practically never share their first KiB,
and a new file that reuses an old inode gets a new identity and is read from 0. (Known limit, as
for Filebeat's fingerprint: two files that really do start with the same KiB, such as a
``copy`` rotation's copy, are taken for the same file.)

A file shorter than that has no fingerprint yet, so it goes by ``ino:<dev>:<ino>`` meanwhile.
Inode reuse is still possible for those, so whoever keeps an ``ino:`` identity also keeps a
digest of the bytes it has seen at the start of the file (:func:`head_digest`, up to the first
KiB) and checks it before trusting the identity again: a different head means a different file
on a recycled inode. When the file grows past the KiB, its identity changes from ``ino:`` to
``fp:``; :func:`may_have_grown_into` tells whether an ``ino:`` entry may be that file, so the
registry moves the entry (and its offset) instead of re-reading the file. The digest of a full
KiB head *is* the fingerprint, so the check is the same hash either way.
"""

from __future__ import annotations

import hashlib
import os

__all__ = [
    "FINGERPRINT_BYTES",
    "digest",
    "head_digest",
    "identity",
    "identity_of_stat",
    "ino_identity",
    "is_fp",
    "is_ino",
    "may_have_grown_into",
]

FINGERPRINT_BYTES = 1024


def digest(data: bytes) -> str:
    """Hex digest used for fingerprints and head digests (BLAKE2b, 128 bits)."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def ino_identity(st: os.stat_result) -> str:
    """``ino:<dev>:<ino>`` of a stat result."""
    return f"ino:{st.st_dev}:{st.st_ino}"


def is_fp(ident: str) -> bool:
    """True for a content fingerprint identity."""
    return ident.startswith("fp:")


def is_ino(ident: str) -> bool:
    """True for a device+inode identity (a file shorter than the fingerprint size)."""
    return ident.startswith("ino:")


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
            return "fp:" + digest(head)
    return ino_identity(st)


def may_have_grown_into(
    old_identity: str, st: os.stat_result, fingerprint_bytes: int = FINGERPRINT_BYTES
) -> bool:
    """Whether a saved ``ino:`` identity may be the file with stat ``st``, now long enough for a fingerprint.

    True when the device and inode match and the file has reached ``fingerprint_bytes``. It
    is only "may": the inode could have been reused; confirm with the head digest saved with
    the old entry (the first ``head_len`` bytes must hash the same) before moving its offset.
    """
    if not is_ino(old_identity):
        return False
    return old_identity == ino_identity(st) and st.st_size >= fingerprint_bytes
