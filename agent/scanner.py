"""Finding files: which regular files an input's globs match now, and where a rotated file went.

The prospector of Filebeat's vocabulary: :class:`FileScanner` lists the regular, readable files
matching an input's globs (minus its excludes) and the directories to watch for changes;
:class:`DirIndex` finds a file by identity among a directory's entries (a file rotated to a name
no glob matches). No file is read here: identities and reading are agent/harvester.py's.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass

from agent.fingerprint import birth_ns, inode_of

__all__ = ["DirIndex", "FileScanner", "ScanError"]


@dataclass(frozen=True, slots=True)
class ScanError:
    """A file the globs match but that cannot be read, reported instead of raised."""

    path: str
    errno: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message} (errno {self.errno})"


class FileScanner:
    """The regular, readable files matching ``globs`` minus those an exclude regex finds.

    Directories, sockets, FIFOs and devices are skipped silently (a glob like ``/var/log/*``
    matches them); files that exist but cannot be stat'ed or read come back as
    :class:`ScanError` so the agent can report them in its status instead of crashing.
    """

    def __init__(
        self, globs: str | Iterable[str], exclude_regexes: Iterable[str | re.Pattern[str]] = ()
    ) -> None:
        self.globs = (globs,) if isinstance(globs, str) else tuple(globs)
        self.excludes = tuple(r if isinstance(r, re.Pattern) else re.compile(r) for r in exclude_regexes)

    def scan(self) -> tuple[dict[str, os.stat_result], list[ScanError]]:
        """``({path: stat}, errors)`` for the files matching now."""
        found: dict[str, os.stat_result] = {}
        errors: list[ScanError] = []
        for pattern in self.globs:
            for path in sorted(glob.glob(pattern, recursive=True)):
                if path in found or any(r.search(path) for r in self.excludes):
                    continue
                try:
                    st = os.stat(path)
                except FileNotFoundError:
                    continue  # vanished between listing and stat, or a dangling symlink
                except OSError as e:
                    errors.append(ScanError(path, e.errno or 0, e.strerror or str(e)))
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                # effective ids: access(2) drops a non-root process's capabilities, so a unit
                # granted CAP_DAC_READ_SEARCH would be told "denied" for a file it can open
                if not os.access(path, os.R_OK, effective_ids=True):
                    errors.append(ScanError(path, errno.EACCES, os.strerror(errno.EACCES)))
                    continue
                found[path] = st
        return found, errors

    def matches(self, path: str) -> bool:
        """Could ``path`` be found by :meth:`scan`? (By name only: ``*`` may also cross a ``/`` here.)"""
        return any(fnmatch.fnmatchcase(path, g) for g in self.globs) and not any(
            r.search(path) for r in self.excludes)

    def watch_dirs(self) -> set[str]:
        """Existing directories whose changes can change what :meth:`scan` finds (for inotify).

        The glob's parent directories; every directory below a ``**``; and for a parent that
        does not exist yet, its nearest existing ancestor, so that creating it wakes the loop.
        """
        dirs: set[str] = set()
        for pattern in self.globs:
            parent = os.path.dirname(pattern) or "."
            recursive = "**" in parent
            if recursive:
                parent = parent[: parent.index("**")].rstrip("/") or "/"
            if glob.has_magic(parent):
                bases = [d for d in glob.glob(parent) if os.path.isdir(d)]
                if not bases:
                    dirs.add(_existing_ancestor(_static_prefix(parent)))
            elif os.path.isdir(parent):
                bases = [parent]
            else:
                bases = []
                dirs.add(_existing_ancestor(parent))
            for base in bases:
                dirs.add(base)
                if recursive:
                    below = glob.glob(os.path.join(glob.escape(base), "**", ""), recursive=True)
                    dirs.update(d.rstrip("/") or "/" for d in below)
        return dirs


def _static_prefix(pattern: str) -> str:
    """The directories of ``pattern`` before its first wildcard."""
    parts = []
    for part in pattern.split("/"):
        if glob.has_magic(part):
            break
        parts.append(part)
    return "/".join(parts) or "/"


def _existing_ancestor(path: str) -> str:
    path = os.path.abspath(path)
    while not os.path.isdir(path) and path != "/":
        path = os.path.dirname(path)
    return path


class DirIndex:
    """Finds a file by identity among a directory's entries; each directory listed once per scan.

    ``readdir`` gives inode numbers without a ``stat`` per entry, so looking for a rotated file
    in a directory of thousands costs one listing, then a ``stat`` (and ``statx`` for the birth
    time) of the one candidate.
    """

    def __init__(self) -> None:
        self._dirs: dict[str, dict[int, list[str]]] = {}

    def find(self, directory: str, identity: str) -> tuple[str, os.stat_result] | None:
        """``(path, stat)`` of the regular file in ``directory`` with this identity's device, inode and birth."""
        inode, born = inode_of(identity)
        if inode is None:
            return None
        by_ino = self._dirs.get(directory)
        if by_ino is None:
            by_ino = {}
            try:
                with os.scandir(directory or ".") as it:
                    for d in it:
                        by_ino.setdefault(d.inode(), []).append(d.path)
            except OSError:
                pass
            self._dirs[directory] = by_ino
        for path in by_ino.get(inode[1], ()):
            try:
                st = os.stat(path)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != inode or not stat.S_ISREG(st.st_mode):
                continue
            if born is not None and birth_ns(path) not in (None, born):
                continue  # the inode number of a file gone, given to another one
            return path, st
        return None


