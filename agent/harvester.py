"""Reading one file: a :class:`Harvester` reads one file identity from an offset, in bounded steps.

The harvester of Filebeat's vocabulary. It hands out lines (or joined multiline events) and
notices truncation, deletion, rename and a recycled inode; it survives close and reopen without
handing anything out twice. Which files to read, and when, is agent/tailer.py's business.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable
from typing import Any

from agent.fingerprint import (
    FINGERPRINT_BYTES,
    birth_ns,
    digest,
    fp_hash,
    identity_of_stat,
    is_fp,
    is_ino,
    may_have_grown_into,
)
from agent.lines import LineSplitter
from agent.multiline import MultilineJoiner

__all__ = ["DEFAULT_MAX_LINE_BYTES", "FileChanged", "Harvester", "Record"]

log = logging.getLogger("logagent.tailer")  # the name operators grep for since 0.1

DEFAULT_MAX_LINE_BYTES = 1024 * 1024
READ_CHUNK = 256 * 1024

#: While inotify tells which files changed, a file read to its end and named by no event since
#: is still checked (an ``fstat``) this often: the safety net for writes inotify does not report
#: (through a hard link or a symlink in another directory, a network filesystem, a lost event).
RECHECK_S = 2.0

# A record coming out of a harvester: agent.lines.Line or agent.multiline.Joined; both have
# .offset .raw .truncated .next_offset .lines
Record = Any


class FileChanged(Exception):
    """The path no longer leads to the file this harvester was reading (rotated or recycled inode)."""


class Harvester:
    """Reads one file identity from ``offset``, in bounded steps, surviving close and reopen.

    ``offset`` is always the end of what has been handed out: closing (to save descriptors,
    or because ``max_line_bytes``/multiline settings changed) drops the buffered partial line
    or pending multiline event and a reopen reads them again from there, so nothing is handed
    out twice or lost. :meth:`open` refuses (:class:`FileChanged`) a path that now holds
    another file.

    Notices for the owner, valid after each :meth:`read_lines`: ``truncated_now`` (the file
    was truncated: the records returned by that call are the old content's last ones, and the
    next call reads the new content from 0), a changed ``identity`` (grown from ``ino:`` to
    ``fp:``), ``finished`` (a draining file reached EOF and was closed).
    """

    def __init__(
        self,
        path: str,
        identity: str | None = None,
        offset: int = 0,
        *,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        multiline: Callable[[], MultilineJoiner] | None = None,
        partial_flush_s: float = 5.0,
        fingerprint_bytes: int = FINGERPRINT_BYTES,
        head_len: int = 0,
        head: str = "",
        after_flush: bool = False,
    ) -> None:
        self.path = path
        self.identity = identity
        self.offset = offset
        self.max_line_bytes = max_line_bytes
        self.multiline = multiline
        self.partial_flush_s = partial_flush_s
        self.fingerprint_bytes = fingerprint_bytes
        self.head_len = head_len
        self.head = head
        self.fd: int | None = None
        self.dev: int | None = None
        self.ino: int | None = None
        self.size = 0
        self.mtime_ns = 0
        self.at_eof = False
        self.draining = False
        self.finished = False
        self.deleted = False
        self.truncations = 0
        self.truncated_now = False
        self.last_read_bytes = 0
        self.last_data_at = time.monotonic()
        #: inotify named the file since the last read (or something else says a read is due)
        self.poked = True
        #: the path reaches this file through a symlink or it has other hard links: writes through
        #: another name are reported on another directory, so inotify cannot be trusted for it
        self.linked = False
        self._unannounced = 0
        self._link_checked = ""
        self._verified: tuple[int, int] | None = None  # (size, mtime) at which the head last matched
        self._head_raw: tuple[str, bytes] | None = None  # (fp: identity, the head bytes that hash to it)
        self.next_check = 0.0
        self._pos = offset  # bytes fed to the splitter
        self._seen_upto = offset  # furthest byte ever read: re-reads after a reopen are not "new data"
        self._resume_after_flush = after_flush
        self._held_at_close = False
        self._splitter: LineSplitter | None = None
        self._joiner: MultilineJoiner | None = None

    # --- state ---

    @property
    def is_open(self) -> bool:
        return self.fd is not None

    @property
    def holds_unflushed(self) -> bool:
        """A partial line or a pending multiline event waits (or waited, when closed) for its end."""
        if self._splitter is None:
            return self._held_at_close
        return self._splitter.has_partial or (self._joiner is not None and self._joiner.pending)

    def flush_deadline(self) -> float | None:
        """Monotonic time when :meth:`flush` will hand out a held partial line or event."""
        if not self.holds_unflushed:
            return None
        if self._splitter is not None and self._splitter.has_partial:
            return self.last_data_at + self.partial_flush_s  # the partial line goes first
        timeout = self.partial_flush_s
        joiner = self._joiner
        if joiner is None and self.multiline is not None:
            joiner = self.multiline()  # closed: the earliest it may be due
        if joiner is not None:
            timeout = min(timeout, joiner.flush_timeout_s)
        return self.last_data_at + timeout

    def poke(self) -> None:
        """Something (inotify, a scan) says the file may have changed: read it at the next poll."""
        self.poked = True

    def due(self, now: float, notified: bool) -> bool:
        """Is a read worth its syscalls now? Always without inotify (``notified`` False).

        With inotify, a file read to its end is read again only once an event named it
        (:meth:`poke`), or every :data:`RECHECK_S` as a safety net; a file with bytes left, a
        draining one and one reached by a link are read at every poll, as before.
        """
        return (not notified or self.poked or not self.at_eof or self.draining or self.linked
                or now >= self.next_check)

    def idle_s(self, now: float | None = None) -> float:
        """Seconds since new bytes last arrived."""
        return (time.monotonic() if now is None else now) - self.last_data_at

    # --- opening and closing ---

    def open(self) -> None:
        """Open the path and position at :attr:`offset`; raises OSError or :class:`FileChanged`."""
        if self.fd is not None:
            return
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise FileChanged(f"{self.path} is no longer a regular file")
            current = identity_of_stat(fd, st, self.fingerprint_bytes)
            self._verify(fd, st, current)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.dev, self.ino = st.st_dev, st.st_ino
        self.size, self.mtime_ns = st.st_size, st.st_mtime_ns
        # the fingerprint just matched: the head is known good for this size and mtime
        self._verified = (st.st_size, st.st_mtime_ns) if is_fp(current) else None
        self.poked = True
        if self._link_checked != self.path or st.st_nlink > 1:  # (an lstat once per path, not per open)
            self._link_checked = self.path
            self.linked = st.st_nlink > 1 or _lstat_ino(self.path) != (st.st_dev, st.st_ino)
        self.identity = current
        self._pos = self.offset
        self._splitter = LineSplitter(self.max_line_bytes, self.offset, self._resume_after_flush)
        self._joiner = self.multiline() if self.multiline is not None else None
        self.at_eof = False
        if is_ino(current):
            self._update_head(st.st_size)

    def _verify(self, fd: int, st: os.stat_result, current: str) -> None:
        expected = self.identity
        if expected is None or (expected == current and is_fp(current)):
            return
        grown = is_ino(expected) and may_have_grown_into(expected, st, self.fingerprint_bytes, birth_ns(fd))
        if expected == current or grown:
            # Same inode number (or grown into a fingerprint): not a recycled inode holding another file?
            if self.head_len and digest(os.pread(fd, self.head_len, 0)) != self.head:
                raise FileChanged(f"{self.path}: inode {st.st_ino} now holds a different file")
            return
        raise FileChanged(f"{self.path}: is now {current}, was {expected}")

    def close(self) -> None:
        """Release the descriptor; held (unflushed) bytes will be read again from :attr:`offset`."""
        self._held_at_close = self.holds_unflushed
        if self.fd is not None:
            try:
                os.close(self.fd)
            finally:
                self.fd = None
        self._splitter = None
        self._joiner = None
        self._pos = self.offset
        self.at_eof = False

    def start_draining(self) -> None:
        """Read what is left, then close for good (the file was rotated away or deleted)."""
        self.draining = True
        self.poked = True

    def check_path(self) -> str:
        """Does the path still lead to this file? ``"same"``, ``"replaced"`` or ``"gone"``.

        Anything but ``"same"`` starts draining an open harvester: the old descriptor is read
        to EOF and closed, the file now at the path is another harvester's business.
        """
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            state = "gone"
        else:
            state = "same" if (st.st_dev, st.st_ino) == (self.dev, self.ino) else "replaced"
        if state != "same" and self.fd is not None:
            self.draining = True
        return state

    # --- reading ---

    def read_lines(self, max_bytes: int, now: float | None = None) -> list[Record]:
        """Read at most ``max_bytes`` new bytes; returns the records they completed.

        Never blocks on the file: reads what is there. Opens the file if closed.
        """
        now = time.monotonic() if now is None else now
        self.truncated_now = False
        self.last_read_bytes = 0
        if self.finished:
            return []
        if self.fd is None:
            self.open()
        unannounced = not self.poked and self.at_eof and now >= self.next_check  # a safety-net read
        self.poked = False
        self.next_check = now + RECHECK_S
        fd = self.fd
        assert fd is not None and self._splitter is not None
        st = os.fstat(fd)
        size = st.st_size
        # (rewritten to the very size we had read, between two reads: only the mtime says so)
        touched = size > self._pos or (size == self._pos and st.st_mtime_ns != self.mtime_ns)
        self.size, self.mtime_ns = size, st.st_mtime_ns
        if st.st_nlink == 0 and not self.deleted:
            self.deleted = True
            self.draining = True
        if size < self._pos or (touched and (size, st.st_mtime_ns) != self._verified
                                and self._content_replaced(fd, st)):
            return self._restart_truncated(now)
        if is_ino(self.identity or "") and size >= self.fingerprint_bytes:
            self.identity = identity_of_stat(fd, st, self.fingerprint_bytes)
        out: list[Record] = []
        got = 0
        eof = False
        while got < max_bytes:
            want = min(READ_CHUNK, max_bytes - got)
            data = os.pread(fd, want, self._pos)
            if not data:
                eof = True
                break
            self._pos += len(data)
            got += len(data)
            lines = self._splitter.feed(data)
            if lines:
                self._hand_out(self._join(lines, now) if self._joiner is not None else lines, out)
            if len(data) < want:
                eof = True
                break
        self.at_eof = eof or self._pos >= size
        self.last_read_bytes = got
        if self._pos > self._seen_upto:
            self._seen_upto = self._pos
            self.last_data_at = now
            if unannounced and not self.linked:
                # new bytes no event named: inotify does not see this file's writes (a name in
                # another directory, a network filesystem); twice, and it is read at every poll
                self._unannounced += 1
                self.linked = self._unannounced >= 2
        if got and is_ino(self.identity or "") and self.head_len < min(self._pos, self.fingerprint_bytes):
            self._update_head(max(size, self._pos))
        if self.draining and self.at_eof:
            out.extend(self._flush_everything())
            self.close()
            self.finished = True
        return out

    def flush(self, now: float | None = None, force: bool = False) -> list[Record]:
        """Hand out a held partial line / pending multiline event once its timeout passed (or now)."""
        if self._splitter is None:
            return []
        now = time.monotonic() if now is None else now
        idle = now - self.last_data_at
        # A timeout hands out only what waits at the *end* of the file. A partial line cut by a
        # read quantum, or followed by bytes written since, has its rest in the file, not read
        # yet (the agent is behind on this file, e.g. round-robin over many busy files): the
        # next read completes it. Flushing it would ship one line as two records.
        partial_due = self._splitter.has_partial and (force or idle >= self.partial_flush_s)
        event_due = self._joiner is not None and self._joiner.pending and (
            force or idle >= self._joiner.flush_timeout_s)
        if not (partial_due or event_due):
            return []  # the common case, checked first: this runs for every open file at every poll
        if not force and (not self.at_eof or self._unread_bytes()):
            return []
        out: list[Record] = []
        if partial_due:
            out.extend(self._flush_everything())
        else:
            assert self._joiner is not None
            self._hand_out(self._joiner.flush_all(), out)
        return out

    def _unread_bytes(self) -> bool:
        """True if the open file holds bytes past what was read (checked with fstat, not cached)."""
        if self.fd is None:
            return False
        try:
            return os.fstat(self.fd).st_size > self._pos
        except OSError:
            return False

    def _flush_everything(self, keep_partial: bool = True) -> list[Record]:
        out: list[Record] = []
        assert self._splitter is not None
        partial = self._splitter.flush_partial()
        if not keep_partial:
            partial = None
        if self._joiner is not None:
            recs = self._joiner.feed(partial) if partial is not None else []
            recs += self._joiner.flush_all()
            self._hand_out(recs, out)
        elif partial is not None:
            self._hand_out([partial], out)
        if partial is not None:
            self._resume_after_flush = True
        return out

    def _join(self, lines: list[Any], now: float) -> list[Record]:
        joiner = self._joiner
        assert joiner is not None
        out: list[Record] = []
        for line in lines:
            out += joiner.feed(line, now)
        return out

    def _hand_out(self, records: list[Record], out: list[Record]) -> None:
        if records:
            self.offset = records[-1].next_offset
            self._resume_after_flush = False
            out.extend(records)

    def _content_replaced(self, fd: int, st: os.stat_result) -> bool:
        # Truncated and regrown past our offset between two reads: only the head tells.
        ident = self.identity or ""
        if is_fp(ident):  # (same descriptor, same inode: only the head can differ)
            head = os.pread(fd, self.fingerprint_bytes, 0)
            if self._head_raw is not None and self._head_raw[0] == ident and self._head_raw[1] == head:
                return False  # (the bytes that hashed to it last time: no hash needed)
            if len(head) < self.fingerprint_bytes or digest(head) != fp_hash(ident):
                return True
            self._head_raw = (ident, head)
            return False
        if self.head_len:
            return digest(os.pread(fd, self.head_len, 0)) != self.head
        return False

    def _restart_truncated(self, now: float) -> list[Record]:
        # The old content's last bytes are handed out, not dropped, when they were its end (an
        # unterminated last line). A partial line cut by a read quantum is not: its rest is gone
        # with the truncation, and handed out it would carry the id of the whole line, which an
        # earlier run may have sent (a crash, then a re-read in smaller pieces): Elasticsearch
        # would replace that line by its start. It is in the window copytruncate can lose.
        assert self._splitter is not None
        cut = "" if self.at_eof or not self._splitter.has_partial else \
            "; the line it was reading in part is lost with the old content"
        out = self._flush_everything(keep_partial=self.at_eof)
        log.info("%s: truncated (size %d < offset %d or head changed): reading again from 0%s",
                 self.path, self.size, self._pos, cut)
        fd = self.fd
        assert fd is not None
        st = os.fstat(fd)
        self.truncations += 1
        self.truncated_now = True
        self.offset = self._pos = self._seen_upto = 0
        self._resume_after_flush = False
        self._splitter = LineSplitter(self.max_line_bytes, 0)
        self._joiner = self.multiline() if self.multiline is not None else None
        self.identity = identity_of_stat(fd, st, self.fingerprint_bytes)
        self._verified = None  # (new content: its head is checked again at the next growth)
        self.head_len, self.head = 0, ""
        if is_ino(self.identity):
            self._update_head(st.st_size)
        self.at_eof = False
        self.last_data_at = now
        return out

    def _update_head(self, size: int) -> None:
        assert self.fd is not None
        data = os.pread(self.fd, min(size, self.fingerprint_bytes), 0)
        self.head_len, self.head = len(data), digest(data)


def _lstat_ino(path: str) -> tuple[int, int] | None:
    """(device, inode) of the path itself, not of what a symlink leads to; None if it is gone."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
