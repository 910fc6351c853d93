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

So a file long enough is named by both: ``fp:<hash of its first 1024 bytes>@<dev>:<ino>``. Two
files that exist at the same time are two sources whatever their first bytes (different inodes);
a file renamed by rotation keeps its identity (same inode, same head); a new file on a recycled
inode gets a new identity as soon as its first KiB differs. (Known limit: a recycled inode whose
new file starts with the very same KiB *and* is at least as long as the old offset is taken for
the old file; one shorter than the old offset is seen as truncated and read from 0.) The
hash part alone still recognises a file whose device number changed across a reboot: see
:func:`fp_hash` and the tailer's first scan.

A file shorter than that has no fingerprint yet, so it goes by ``ino:<dev>:<ino>`` meanwhile.
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

import hashlib
import os

__all__ = [
    "FINGERPRINT_BYTES",
    "digest",
    "fp_hash",
    "fp_inode",
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


def fp_hash(ident: str) -> str | None:
    """The content part of an ``fp:`` identity (the same for every file starting alike), else None."""
    if not is_fp(ident):
        return None
    return ident[3:].split("@", 1)[0]


def fp_inode(ident: str) -> tuple[int, int] | None:
    """(device, inode) of an ``fp:`` identity; None for ``ino:`` and for plain ``fp:<hash>`` (pre-0.2)."""
    if not is_fp(ident) or "@" not in ident:
        return None
    dev, _, ino = ident.split("@", 1)[1].partition(":")
    try:
        return int(dev), int(ino)
    except ValueError:
        return None


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
            return f"fp:{digest(head)}@{st.st_dev}:{st.st_ino}"
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
