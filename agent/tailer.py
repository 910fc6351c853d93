"""The file side of logagent: find files, read their new lines, remember what Kafka acknowledged.

Three pieces, in Filebeat's vocabulary, all synchronous (the agent has one main loop), each in
its own module:

- :class:`agent.scanner.FileScanner` lists the regular files an input's globs match now
  (the prospector), and :class:`agent.scanner.DirIndex` finds a rotated file in its directory.
- :class:`agent.harvester.Harvester` reads one file (one identity, see :mod:`agent.fingerprint`)
  from an offset: lines or joined multiline events, a bounded number of bytes per call so the
  caller can apply backpressure, with truncation, deletion and rename detection.
- :class:`TailManager`, here, runs the inputs: which file is which across scans, rotations and
  restarts, opens and closes harvesters under a cap on open descriptors (a busy file keeps its
  descriptor for a time slice, ``OPEN_SLICE_S``, before a waiting file takes it), reads round-robin,
  hands out :class:`Event` objects, and moves the registry offset only when
  :meth:`TailManager.ack` says Kafka has them. It is one idea (the file tracker, the part the
  model test in tests/test_tracker_model.py checks) and stays one module.

Rotation cases, and what happens:

- rename + create: the old file keeps its identity under its new name. If the new name still
  matches a glob it is simply followed there; otherwise its open descriptor is read to EOF and
  closed ("finish the old file"), and the new file at the path, a new identity, is read from 0
  once the old one is finished. This holds even when the new file was created before we noticed.
  A file renamed while it was closed (close_inactive, the open-files cap) or while the agent was
  down (kill -9, reboot) is looked for where rotation puts it, in its own directory by device,
  inode and birth time, and read there to its end if it holds unread bytes: the plain path
  ``/var/log/nginx/access.log`` loses nothing to a rotation during a crash. Files already read
  to their end are left alone there; a file that cannot be found with bytes unread (deleted or
  compressed meanwhile) is reported by name (log line, status ``files_lost``, a metric).
- copytruncate: shows only as size < read offset (or, if it regrew meanwhile, as a changed
  fingerprint): the file is read again from 0 under a new ``source_id`` so the new lines'
  event ids do not collide with the old ones'.
- delete: an open descriptor stays readable; it is read to EOF, then closed.
- files that appear later: read from 0, always. ``start_at`` ("end" by default) only applies to
  files found by an input's very first scan ever (the registry remembers which inputs ran).

inotify wakes the loop and names the files written to: a file read to its end is read again
when an event names it (a truncation is a write event too), or at the harvester's recheck
(agent/harvester.py ``RECHECK_S``), or after a scan. The periodic stat scan stays the source
of truth (every ``SWEEP_S`` at least while inotify watches every directory): inotify can miss
writes made through another name and its queue can overflow (an overflow forces a scan).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from array import array
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter, itemgetter
from types import MappingProxyType
from typing import Any, NamedTuple

from agent.fingerprint import (
    FINGERPRINT_BYTES,
    birth_ns,
    digest,
    fp_hash,
    identity_of_stat,
    ino_identity,
    inode_of,
    is_fp,
    is_ino,
    may_have_grown_into,
)
from agent.harvester import DEFAULT_MAX_LINE_BYTES, FileChanged, Harvester, Record
from agent.inotify import read_events
from agent.lines import decode_line
from agent.multiline import MultilineJoiner
from agent.registry import Registry
from agent.scanner import DirIndex, FileScanner, ScanError

__all__ = ["Event", "TailManager"]

log = logging.getLogger("logagent.tailer")

MIN_QUANTUM = 64 * 1024
#: seconds between full scans (at least) while inotify watches every directory of the inputs
SWEEP_S = 10.0
#: With more files to read than ``max_open_files``, a file keeps its descriptor at least this
#: long after it was opened while it keeps bringing lines, before a waiting file may take it:
#: 1,000 busy files over 512 descriptors would otherwise close and reopen (fstat, fingerprint)
#: half of them at every poll. A file read quiet (to its end, nothing new) gives its descriptor
#: up at once. Waiting files are served first come, first served: a file waits at most about
#: (files waiting / max_open_files) slices, never for ever.
OPEN_SLICE_S = 1.0

_tuple_new = tuple.__new__  # builds the Event named tuple without its Python-level __new__

_first = itemgetter(0)
_identity = attrgetter("identity")
_next_offset = attrgetter("next_offset")

# --- many files ---------------------------------------------------------------------------------


class Event(NamedTuple):
    """One line (or joined multiline event) ready for Kafka.

    ``source_id`` is the stable name of the file to build the Kafka key and the event id from
    (it survives the ``ino:`` to ``fp:`` identity change; a truncated file gets a new one).
    ``identity`` + ``next_offset`` are what :meth:`TailManager.ack` wants back. ``fields`` is
    the input's extra fields, shared read-only between events.
    """

    input_id: str
    topic: str
    path: str
    identity: str
    source_id: str
    offset: int
    next_offset: int
    raw: bytes
    truncated: bool
    lines: int
    fields: Mapping[str, str]

    @property
    def message(self) -> str:
        """The text (invalid UTF-8 replaced by U+FFFD)."""
        return decode_line(self.raw)


@dataclass(eq=False, slots=True)
class _Input:
    id: str
    globs: tuple[str, ...]
    excludes: tuple[str, ...]
    topic: str
    fields: Mapping[str, str]
    start_at: str
    max_line_bytes: int
    multiline: tuple[Any, ...] | None
    scanner: FileScanner
    first_run: bool = False  # this input never ran before (start_at applies to its first scan)
    scanned: bool = False

    def make_joiner(self) -> MultilineJoiner:
        assert self.multiline is not None
        pattern, negate, match, max_lines, timeout = self.multiline
        return MultilineJoiner(pattern, negate, match, max_lines, timeout, max_bytes=self.max_line_bytes)

    def joiner_factory(self) -> Callable[[], MultilineJoiner] | None:
        return self.make_joiner if self.multiline is not None else None


class _Pending:
    """The ``next_offset`` of each event handed out for one file generation, and which are acked.

    8 bytes per event in flight (an ``array``), O(1) per in-order ack, O(log n) for one that
    overtook others (a retried record): a file with 100,000 lines in flight stays cheap.
    """

    __slots__ = ("acked", "done", "gen", "head", "offs")

    def __init__(self, gen: int) -> None:
        self.gen = gen
        self.offs = array("q")  # strictly increasing within a generation
        self.head = 0  # offs[:head] are acknowledged
        self.acked: set[int] = set()  # indexes >= head acknowledged out of order
        self.done: int | None = None  # highest offset below which everything is acknowledged

    def __len__(self) -> int:
        return len(self.offs) - self.head - len(self.acked)

    def ack(self, next_offset: int) -> bool:
        offs, h = self.offs, self.head
        if h < len(offs) and offs[h] == next_offset:
            h += 1
            acked = self.acked
            while acked and h in acked:
                acked.remove(h)
                h += 1
            self.done = offs[h - 1]
            if h > 4096 and h * 2 > len(offs):
                del offs[:h]
                self.acked = {i - h for i in acked}
                h = 0
            self.head = h
            return True
        i = bisect_left(offs, next_offset, h)
        if i < len(offs) and offs[i] == next_offset and i not in self.acked:
            self.acked.add(i)
            return True
        return False

    def ack_run(self, next_offsets: list[int]) -> bool:
        """:meth:`ack` of each of ``next_offsets``, when they are exactly the next unacknowledged
        offsets and none was acknowledged out of order; False (nothing changed) otherwise."""
        if self.acked or not next_offsets:
            return False
        offs, h = self.offs, self.head
        end = h + len(next_offsets)
        if end > len(offs) or offs[h:end] != array("q", next_offsets):
            return False
        self.done = offs[end - 1]
        if end > 4096 and end * 2 > len(offs):
            del offs[:end]
            end = 0
        self.head = end
        return True


@dataclass(eq=False, slots=True)
class _File:
    harv: Harvester
    input: _Input | None
    source: str
    gen: int = 0
    pending: deque[_Pending] = field(default_factory=deque)  # one per generation with events in flight
    routes: set[str] = field(default_factory=set)
    wants_read: bool = True
    waiting_since: float = 0.0
    opened_at: float = float("-inf")  # when _open_waiting last gave it a descriptor (its slice starts)
    closed_size: int = -1
    closed_mtime: int = -1
    head_checked: tuple[int, int] = (-1, -1)
    after: _File | None = None  # the file that was at our path before: finish it first
    moved: bool = False  # read at a name no input matches (rotated away while closed or down)
    retired: bool = False
    acked_upto: int | None = None  # the current generation's contiguously acknowledged offset
    synced_upto: int | None = None  # ... as last written to the registry

    def inflight(self) -> int:
        return sum(len(p) for p in self.pending)


def _attr(obj: Any, name: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name, default)
    return getattr(obj, name, default)


class TailManager:
    """Runs the inputs: scan, harvest round-robin under an open-files cap, ack, save offsets.

    Inputs are any objects (or dicts) with the attributes of ``logferry.schema.InputSpec``:
    ``path`` (a glob, or a list of globs), ``topic``, ``multiline`` (None or an object/dict
    with ``pattern``, ``negate``, ``match``, ``max_lines``, ``flush_timeout_s``), ``fields``,
    ``exclude_files``, ``start_at``, ``max_line_bytes``; optionally ``id`` (default: the path,
    which a collect list keeps unique).

    The registry is saved by :meth:`poll` itself whenever a file entry was created, moved or
    reset, before the events of that poll are handed out: event ids depend on an entry's
    ``source``, so the entry must be on disk before any of its lines can reach Kafka. Offsets
    moved by :meth:`ack` are saved by the caller's own periodic ``registry.save()``.

    The loop it is made for::

        while running:
            for e in tm.poll(budget_bytes=room_in_the_producer):
                produce(e.topic, key=(host_ip, e.source_id), id=(host_ip, e.source_id, e.offset),
                        token=(e.identity, e.next_offset))
            tm.ack_many(token for token in delivered_ok())
            registry.save()            # at most once a second; a no-op when nothing moved
            tm.wait(0.5)               # inotify or timeout
    """

    def __init__(
        self,
        inputs: Iterable[Any],
        registry: Registry,
        *,
        use_inotify: bool = True,
        scan_interval_s: float = 5.0,
        close_inactive_s: float = 300.0,
        partial_flush_s: float = 5.0,
        max_open_files: int = 256,
        fingerprint_bytes: int = FINGERPRINT_BYTES,
        min_rescan_interval_s: float = 0.1,
        open_slice_s: float = OPEN_SLICE_S,
    ) -> None:
        self.registry = registry
        self.scan_interval_s = scan_interval_s
        self.close_inactive_s = close_inactive_s
        self.partial_flush_s = partial_flush_s
        self.max_open_files = max(1, max_open_files)
        self.open_slice_s = max(0.0, open_slice_s)
        self._slice_wake = float("inf")  # a file waits for a descriptor until an open one's slice ends
        self.fingerprint_bytes = fingerprint_bytes
        self.min_rescan_interval_s = min_rescan_interval_s
        self._scan_errors: list[ScanError] = []
        self._read_errors: dict[str, ScanError] = {}
        self.counters = {"lines": 0, "bytes": 0, "truncations": 0, "rotations": 0, "files_opened": 0,
                         "files_followed": 0, "files_lost": 0, "bytes_lost": 0}
        #: the last files that vanished with bytes never read (deleted or compressed before we
        #: could read them): {"path", "identity", "bytes", "reason"}, newest last, for the status
        self.losses: deque[dict[str, Any]] = deque(maxlen=20)
        self._lost_reported: set[str] = set()
        self._inputs: dict[str, _Input] = {}
        self._files: dict[str, _File] = {}  # current identity -> file being tracked
        self._routes: dict[str, list[_File]] = {}  # any identity an event carried -> files (acks)
        self._by_path: dict[str, _File] = {}
        self._idcache: dict[str, tuple[int, int, int, int, str]] = {}
        self._reported: set[tuple[str, int]] = set()
        self._next_scan = 0.0
        self._last_scan = float("-inf")
        self._rr = 0
        self._more = False
        self._finished_some = False
        self._must_save = False
        self._adopted = False  # the first scan looks for entries saved under another device/format
        #: sources (``Event.source_id``) not to read for now: Kafka refuses their records. The
        #: agent hands in agent/refusals.py's own dict of held files; a source taken out of it
        #: is read again
        self.paused: Collection[str] = frozenset()
        #: called with the OSError when saving the registry fails (disk full, read-only); the
        #: agent reports it once a minute (agent/diskstate.py) instead of a line per poll
        self.on_save_error: Callable[[OSError], None] | None = None
        self._inotify: Any = None
        self._all_watched = False  # inotify watches every directory the inputs need
        self.files_read = 0  #: files the last poll read (those inotify named, or all without it)
        self._watches: dict[str, int] = {}
        self._wd_dirs: dict[int, str] = {}
        if use_inotify:
            self._start_inotify()
        self.set_inputs(inputs)

    # --- inputs -----------------------------------------------------------------------------

    def set_inputs(self, new_inputs: Iterable[Any]) -> None:
        """Apply a new input list without losing lines already read.

        A removed input stops reading at once (its handed-out lines can still be acked); a
        changed topic or fields apply to events handed out after the change; changed globs are
        picked up by the next scan (made at the next :meth:`poll`); a changed
        ``max_line_bytes`` or multiline setting reopens the files at their handed-out offset.
        """
        fresh: dict[str, _Input] = {}
        for spec in new_inputs:
            inp = self._make_input(spec)
            if inp.id in fresh:
                n = 2
                while f"{inp.id}#{n}" in fresh:
                    n += 1
                inp.id = f"{inp.id}#{n}"
            fresh[inp.id] = inp
        for old in list(self._inputs.values()):
            new = fresh.get(old.id)
            files = [f for f in self._files.values() if f.input is old]
            if new is None:
                log.info("input %s removed: stopping its %d files", old.id, len(files))
                for f in files:
                    self._drop(f)
                continue
            new.first_run, new.scanned = old.first_run, old.scanned
            reopen = (old.max_line_bytes, old.multiline) != (new.max_line_bytes, new.multiline)
            for f in files:
                f.input = new
                if reopen:
                    f.harv.max_line_bytes = new.max_line_bytes
                    f.harv.multiline = new.joiner_factory()
                    if f.harv.is_open:
                        self._close(f)
                        f.wants_read = True
        for inp in fresh.values():
            if inp.id not in self._inputs:
                inp.first_run = not self.registry.input_known(inp.id)
        self._inputs = fresh
        self._next_scan = 0.0  # rescan at the next poll

    def _make_input(self, spec: Any) -> _Input:
        path = _attr(spec, "path")
        globs = (path,) if isinstance(path, str) else tuple(path)
        excludes = tuple(_attr(spec, "exclude_files", None) or ())
        raw_fields = _attr(spec, "fields", None) or {}
        fields = dict(raw_fields.items()) if isinstance(raw_fields, Mapping) else dict(raw_fields)
        ml = _attr(spec, "multiline", None)
        multiline = None
        if ml is not None:
            pattern = _attr(ml, "regex", None) or _attr(ml, "pattern")
            timeout = _attr(ml, "flush_timeout_s", None)
            if timeout is None:
                timeout = _attr(ml, "timeout", 5.0)
            multiline = (pattern, bool(_attr(ml, "negate", False)), _attr(ml, "match", "after"),
                         int(_attr(ml, "max_lines", 500)), float(timeout))
        input_id = _attr(spec, "id", None) or ",".join(globs)
        return _Input(
            id=str(input_id),
            globs=globs,
            excludes=excludes,
            topic=str(_attr(spec, "topic", "")),
            fields=MappingProxyType(fields),
            start_at=str(_attr(spec, "start_at", None) or "end"),
            max_line_bytes=int(_attr(spec, "max_line_bytes", None) or DEFAULT_MAX_LINE_BYTES),
            multiline=multiline,
            scanner=FileScanner(globs, excludes),
        )

    # --- the loop's calls -------------------------------------------------------------------

    def poll(self, budget_bytes: int = 4 * 1024 * 1024, now: float | None = None) -> list[Event]:
        """Read up to ``budget_bytes`` across the files (round-robin) and return the ready events.

        Also scans when due, opens/closes files under the cap, flushes timed-out partial lines
        and multiline events. Pass a smaller budget when Kafka is behind (0 reads nothing but
        still scans and flushes): bytes not read stay in the files, nothing is buffered here
        beyond a line (or a multiline event) per file.
        """
        now = time.monotonic() if now is None else now
        events: list[Event] = []
        self._more = False
        if self._all_watched:
            self._take_events()  # which files changed since the last poll (a busy loop calls no wait)
        if now >= self._next_scan:
            self._scan(now)
        self._open_waiting(now)
        self._finished_some = False
        left = self._read_round_robin(budget_bytes, now, events) if budget_bytes > 0 else 0
        if self._finished_some and left > 0:
            # A rotated-away file just finished: its successor at the same path may start now.
            self._open_waiting(now)
            self._read_round_robin(left, now, events)
        self._flush_and_close(now, events)
        if self._must_save:
            try:
                self.registry.save()
                self._must_save = False
            except OSError as e:
                if self.on_save_error is not None:
                    self.on_save_error(e)
                else:
                    log.error("registry %s: cannot save (%s); will retry", self.registry.path, e)
        return events

    @property
    def busy(self) -> bool:
        """The last :meth:`poll` stopped on its budget or left files waiting for a descriptor."""
        return self._more

    def topic_of(self, source_id: str) -> str | None:
        """The topic the file with this ``source_id`` is read for now; None if no input reads it."""
        for f in self._files.values():
            if f.source == source_id and f.input is not None:
                return f.input.topic
        return None

    def ack(self, identity: str, next_offset: int) -> bool:
        """Kafka acknowledged the event (``event.identity``, ``event.next_offset``).

        Acks may come in any order; a file's registry offset moves to the highest offset
        below which every handed-out event is acknowledged. False for an unknown event.
        """
        f = self._ack(identity, next_offset)
        if f is None:
            return False
        self._sync_offset(f)
        return True

    def ack_many(self, acks: Iterable[tuple[str, int]]) -> int:
        """:meth:`ack` for a batch of ``(identity, next_offset)``; the registry moves once per file.

        Returns how many were known.
        """
        return self._ack_runs((identity, [off for _, off in run]) for identity, run in groupby(acks, _first))

    def ack_events(self, events: Iterable[Any]) -> int:
        """:meth:`ack_many` for delivered :class:`Event` s themselves (their ``identity`` and
        ``next_offset``), without a tuple per event: the agent acknowledges every line it ships."""
        return self._ack_runs((identity, list(map(_next_offset, run)))
                              for identity, run in groupby(events, _identity))

    def _ack_runs(self, runs: Iterable[tuple[str, list[int]]]) -> int:
        touched: dict[int, _File] = {}
        known = 0
        for identity, offsets in runs:
            f = self._ack_in_order(identity, offsets)
            if f is not None:  # the usual case: a file's acks arrive as they were handed out
                known += len(offsets)
                touched[id(f)] = f
                continue
            for next_offset in offsets:
                f = self._ack(identity, next_offset)
                if f is not None:
                    known += 1
                    touched[id(f)] = f
        for f in touched.values():
            self._sync_offset(f)
        return known

    def _ack_in_order(self, identity: str, offsets: list[int]) -> _File | None:
        """:meth:`_ack` of each of ``offsets`` in turn, in one step, when that is what it would do:
        the first segment :meth:`_ack` looks at holds exactly these offsets next, with nothing
        acknowledged out of order. None (nothing changed) otherwise, for the caller to ack one by one.

        Why: the agent acknowledges every line; one slice comparison per run instead of a method
        call per line.
        """
        for f in self._routes.get(identity, ()):
            if not f.pending:
                continue
            seg = f.pending[0]
            if not seg.ack_run(offsets):
                return None
            self._acked_in(f, seg)
            return f
        return None

    def _acked_in(self, f: _File, seg: _Pending) -> None:
        """After ``seg`` of ``f`` took acknowledgements: move the file's acknowledged offset, and
        drop the segment once every event of it is acknowledged."""
        if seg.gen == f.gen:
            f.acked_upto = seg.done
        if seg.head == len(seg.offs) and not seg.acked:
            f.pending.remove(seg)
            if not f.pending:
                self._settle(f)

    def wait(self, timeout_s: float) -> bool:
        """Sleep until a watched directory changes or ``timeout_s`` passes; True if woken by a change.

        Returns at once when the last :meth:`poll` stopped on its budget or files wait for a
        descriptor, and never sleeps past the next scan or flush deadline.
        """
        if self._more:
            return True
        now = time.monotonic()
        deadline = min(now + max(0.0, timeout_s), self._next_scan, self._slice_wake)
        paused = self.paused
        for f in self._files.values():
            if paused and f.source in paused:
                continue  # not read now: its partial line waits for bytes we do not read yet
            d = f.harv.flush_deadline()
            if d is not None and d < deadline:
                deadline = d
        t = max(0.0, deadline - now)
        if self._inotify is None:
            if t:
                time.sleep(t)
            return False
        try:
            evs = self._inotify.read(timeout=int(t * 1000))
        except OSError as e:
            log.warning("inotify read failed (%s); falling back to scanning", e)
            self._stop_inotify()
            return False
        if evs:
            self._on_inotify(evs)
        return bool(evs)

    def close(self) -> None:
        """Close every file and the inotify descriptor (the registry is the caller's to save)."""
        for f in list(self._files.values()):
            f.harv.close()
        self._stop_inotify()

    # --- what the status key wants --------------------------------------------------------------

    @property
    def inflight(self) -> int:
        """Events handed out and not yet acknowledged."""
        return sum(f.inflight() for f in self._unique_routed())

    @property
    def errors(self) -> list[ScanError]:
        """Files that match but cannot be read, as of the last scan and the reads since."""
        return [*self._scan_errors, *self._read_errors.values()]

    @property
    def open_files(self) -> int:
        return sum(1 for f in self._files.values() if f.harv.fd is not None)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Per input: its files with path, identity, read/acked offsets, size, open or not."""
        out: dict[str, list[dict[str, Any]]] = {i: [] for i in self._inputs}
        for ident, f in self._files.items():
            if f.input is None:
                continue
            entry = self.registry.get(ident)
            out.setdefault(f.input.id, []).append({
                "path": f.harv.path,
                "identity": ident,
                "read_offset": f.harv.offset,
                "acked_offset": entry.offset if entry else None,
                "size": f.harv.size,
                "open": f.harv.is_open,
                "pending": f.inflight(),
            })
        return out

    # --- scanning ---------------------------------------------------------------------------

    def _scan(self, now: float) -> None:
        self._last_scan = now
        # inotify finds new, renamed and deleted files at once: the full sweep is then a safety net
        self._next_scan = now + (max(self.scan_interval_s, SWEEP_S) if self._all_watched else self.scan_interval_s)
        open_by_inode = {(f.harv.dev, f.harv.ino): f for f in self._files.values() if f.harv.is_open}
        seen: dict[str, tuple[str, os.stat_result, _Input]] = {}
        errors: list[ScanError] = []
        paths_now: set[str] = set()
        first_scans: list[_Input] = []
        for inp in self._inputs.values():
            found, errs = inp.scanner.scan()
            errors.extend(errs)
            for path, st in found.items():
                paths_now.add(path)
                f_open = open_by_inode.get((st.st_dev, st.st_ino))
                if f_open is not None and f_open.harv.identity:
                    ident = f_open.harv.identity
                else:
                    try:
                        ident = self._identity_for(path, st)
                    except FileNotFoundError:
                        continue
                    except OSError as e:
                        errors.append(ScanError(path, e.errno or 0, e.strerror or str(e)))
                        continue
                prev = seen.get(ident)
                if prev is None:
                    seen[ident] = (path, st, inp)
                else:
                    known = self._files.get(ident)
                    if known is not None and known.harv.path == path and prev[2] is inp:
                        seen[ident] = (path, st, inp)
            if not inp.scanned:
                first_scans.append(inp)
        for path in list(self._idcache):
            if path not in paths_now:
                del self._idcache[path]
        self._read_errors.clear()
        self._report_errors(errors)
        if not self._adopted:
            self._adopted = True
            self._adopt_saved_entries(seen)

        # Same inode, new content identity, harvester closed: grown past the fingerprint size
        # (keep the entry) or a recycled inode (a new file: forget the old one).
        for ident, (path, st, _inp) in seen.items():
            if ident in self._files:
                f = self._files[ident]
                if is_ino(ident) and not f.harv.is_open and not self._head_ok(f, path, st):
                    log.info("%s: inode %d was reused by a new file; reading it from 0", path, st.st_ino)
                    self._drop(f)
                continue
            if is_ino(ident):
                continue  # (an ino: identity not tracked: a new file, nothing grew)
            birth = birth_ns(path)
            old = ino_identity(st, birth)
            g = self._files.get(old)
            if (g is not None and not g.harv.is_open
                    and may_have_grown_into(old, st, self.fingerprint_bytes, birth) and self._head_ok(g, path, st)):
                g.harv.identity = ident
                self._rekey(g, old, ident)

        # Files no longer found: finish the open ones (rotated away / deleted); a closed one is
        # looked for where rotation put it and finished there; forget the others.
        draining_at: dict[str, _File] = {}
        dirs = DirIndex()
        for ident, f in list(self._files.items()):
            if ident in seen:
                continue
            if f.harv.is_open and not f.harv.finished:
                if not f.harv.draining:
                    log.info("%s: rotated away or deleted; reading it to the end", f.harv.path)
                    self.counters["rotations"] += 1
                    f.harv.start_draining()
                draining_at[f.harv.path] = f
                continue
            old_path = f.harv.path
            if not f.harv.finished and f.input is not None and self._follow_moved(f, ident, dirs, now):
                draining_at[old_path] = f
            else:
                self._drop(f)
        if first_scans:
            self._resume_moved(seen, first_scans, dirs, draining_at, now)

        self._by_path = {}
        for ident, (path, st, inp) in seen.items():
            f = self._files.get(ident)
            if f is None:
                is_first = inp in first_scans and inp.first_run
                f = self._new_file(ident, path, st, inp, is_first, now)
                if f is None:
                    continue
                f.after = draining_at.get(path)
            else:
                self._update_file(f, path, st, inp, now)
            self._by_path[path] = f

        for inp in first_scans:
            inp.scanned = True
            if not self.registry.input_known(inp.id):
                self.registry.mark_input(inp.id)
                self._must_save = True
        live = set(self._files)
        for ident, fs in self._routes.items():
            if any(f.pending for f in fs):  # acks still to come
                live.add(ident)
        self.registry.gc(live, now)
        if self._lost_reported:
            self._lost_reported.intersection_update(e.identity for e in self.registry)
        self._update_watches()

    def _adopt_saved_entries(self, seen: Mapping[str, tuple[str, os.stat_result, _Input]]) -> None:
        """First scan after a start: saved ``fp:`` entries whose inode is gone find their file again.

        Two cases keep a file's content hash but change its identity while the agent is away:
        the device number changed across a reboot (LVM, btrfs, some cloud disks), or the
        registry was written by a version that named files by their hash alone (before 0.2).
        Such an entry is moved to the file with the same hash (for a new device number, also the
        same inode number; the same path preferred), so the file resumes at its offset instead
        of being read again. Only at the first scan: later, a new inode is a new file, even when
        it starts like a file that went away (a daily export under the same header).
        """
        waiting: dict[str, list[tuple[str, str, os.stat_result]]] = {}
        present: set[tuple[int, int]] = set()
        for ident, (path, st, _inp) in seen.items():
            present.add((st.st_dev, st.st_ino))
            h = fp_hash(ident)
            if h is not None and self.registry.get(ident) is None:
                waiting.setdefault(h, []).append((ident, path, st))
        if not waiting:
            return
        for entry in list(self.registry):
            files = waiting.get(fp_hash(entry.identity) or "")
            if not files:
                continue
            inode, born = inode_of(entry.identity)  # (None, None) for a 0.1 entry: fp:<hash> only
            if inode in present:
                continue  # its own file is here under its identity

            # a new device number keeps the inode number; the same path alone is no proof
            # (logrotate's new app.log, alike, has the old one's path and another inode)
            files_here = files if inode is None else [
                f for f in files if f[2].st_ino == inode[1] and born in (None, inode_of(f[0])[1])]
            if not files_here:
                continue
            best = max(files_here, key=lambda f, path=entry.path: f[1] == path)
            files.remove(best)
            log.info("%s: resuming at offset %d saved as %s (%s)", best[1], entry.offset, entry.identity,
                     "saved by an older version" if inode is None else "device number changed")
            self.registry.rename(entry.identity, best[0])
            self._must_save = True

    def _find_moved(self, dirs: DirIndex, old_path: str, ident: str) -> tuple[str, os.stat_result, str] | None:
        """``(path, stat, identity now)`` of the file ``ident`` if rotation left it beside ``old_path``."""
        found = dirs.find(os.path.dirname(old_path), ident)
        if found is None:
            return None
        path, st = found
        try:
            return path, st, self._identity_for(path, st)
        except OSError:
            return None

    def _still(self, ident: str, current: str, path: str, st: os.stat_result, f: _File | None) -> bool:
        """Does the file found by ``ident``'s inode still hold the content known as ``ident``?"""
        if current != ident:
            return is_ino(ident) and may_have_grown_into(ident, st, self.fingerprint_bytes, birth_ns(path)) and (
                f is None or self._head_ok(f, path, st))
        return not is_ino(ident) or f is None or self._head_ok(f, path, st)

    def _follow_moved(self, f: _File, ident: str, dirs: DirIndex, now: float) -> bool:
        """A closed file left its path: if rotation put it beside it with bytes unread, read it there.

        True if ``f`` is kept (draining at its new name). A file read to its end (the usual
        case for an old rotated file) is let go; one not found with bytes known unread is
        reported as lost (deleted, or compressed into another file, while it was closed). One
        rewritten while closed (truncated and written again) is new content: read from 0 as a
        new file.
        """
        h = f.harv
        inp = f.input
        assert inp is not None
        found = self._find_moved(dirs, h.path, ident)
        if found is None:
            entry = self.registry.get(ident)
            seen_size = max(f.closed_size, entry.size_seen if entry is not None else 0)
            if seen_size > h.offset:
                self._report_lost(h.path, ident, seen_size - h.offset,
                                  "deleted or moved out of its directory while closed")
            return False
        path, st, current = found
        if not self._still(ident, current, path, st, f):
            if current not in self._files:
                entry = self.registry.get(ident)
                old_path = entry.path if entry is not None else h.path
                self._drop(f)
                self._new_file(current, path, st, inp, False, now, moved_from=old_path)
            return False
        if st.st_size <= h.offset and not h.holds_unflushed:
            return False  # read to its end: an old rotated file, let go
        if not f.moved:
            log.info("%s: rotated to %s with %d bytes unread while closed; reading it there to its end",
                     h.path, path, st.st_size - h.offset)
            self.counters["files_followed"] += 1
            self.counters["rotations"] += 1
            f.moved = True
        h.path = path
        h.start_draining()
        if not f.wants_read:
            f.wants_read = True
            f.waiting_since = now
        return True

    def _resume_moved(self, seen: Mapping[str, tuple[str, os.stat_result, _Input]], first_scans: list[_Input],
                      dirs: DirIndex, draining_at: dict[str, _File], now: float) -> None:
        """An input's first scan (a start, or the input added): finish its files rotated meanwhile.

        A registry entry whose saved path this input collects, whose file is no longer at a
        matching path (rotated while the agent was down, or while the input was not in the
        list) is looked for in the same directory by device, inode and birth time. Found with
        bytes past its saved offset, it is read from there to its end under its saved
        ``source`` (the same event ids as before the crash), before the file now at its old
        path; found rewritten, it is new content, read from 0.
        """
        present = {(st.st_dev, st.st_ino) for _path, st, _inp in seen.values()}
        for entry in list(self.registry):
            ident = entry.identity
            if ident in seen or ident in self._files:
                continue
            inode, _born = inode_of(ident)
            if inode is None or inode in present:
                continue  # a 0.1 entry (no inode), or its file is here under another identity
            inp = next((i for i in first_scans if i.scanner.matches(entry.path)), None)
            if inp is None:
                continue  # not a path this new input collects
            found = self._find_moved(dirs, entry.path, ident)
            if found is None:
                if entry.size_seen > entry.offset:
                    self._report_lost(entry.path, ident, entry.size_seen - entry.offset,
                                      "deleted or compressed while the agent was down or the input absent")
                continue
            path, st, current = found
            if current in seen or current in self._files:
                continue
            if current == ident and st.st_size == entry.offset:
                continue  # read to its end before: an old rotated file, left alone
            f = self._new_file(current, path, st, inp, False, now, moved_from=entry.path)
            if f is None:
                continue
            log.info("%s: rotated to %s while the agent was away; reading it there from offset %d to its end",
                     entry.path, path, f.harv.offset)
            draining_at[entry.path] = f

    def _report_lost(self, path: str, ident: str, nbytes: int, why: str) -> None:
        if ident in self._lost_reported:
            return
        self._lost_reported.add(ident)
        log.warning("%s: at least %d bytes never read are lost: the file was %s (collect rotated names too, "
                    "e.g. a glob ending in '*', or rotate with delaycompress)", path, nbytes, why)
        self.counters["files_lost"] += 1
        self.counters["bytes_lost"] += nbytes
        self.losses.append({"path": path, "identity": ident, "bytes": nbytes, "reason": why})

    def _identity_for(self, path: str, st: os.stat_result) -> str:
        key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        cached = self._idcache.get(path)
        if cached is not None and cached[:4] == key:
            return cached[4]
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            ident = identity_of_stat(fd, os.fstat(fd), self.fingerprint_bytes)
        finally:
            os.close(fd)
        self._idcache[path] = (*key, ident)
        return ident

    def _head_ok(self, f: _File, path: str, st: os.stat_result) -> bool:
        """For an ``ino:`` file not open: do its first bytes still hash as we saw them?"""
        h = f.harv
        if not h.head_len:
            return True
        if f.head_checked == (st.st_size, st.st_mtime_ns):
            return True
        ok = _head_matches(path, h.head_len, h.head)
        if ok:
            f.head_checked = (st.st_size, st.st_mtime_ns)
        return ok

    def _new_file(
        self, ident: str, path: str, st: os.stat_result, inp: _Input, first_scan: bool, now: float,
        moved_from: str | None = None,
    ) -> _File | None:
        """Track a file found at ``path`` (``moved_from``: rotated there from that collected path).

        A moved file is read to its end, then let go; its registry entry keeps the collected
        path, so that a crash while reading it finds it there again.
        """
        reg = self.registry
        reg_path = moved_from or path
        entry = reg.get(ident)
        if entry is not None and is_ino(ident) and entry.head_len and not _head_matches(
            path, entry.head_len, entry.head
        ):
            log.info("%s: inode %d was reused by a new file; reading it from 0", path, st.st_ino)
            entry = reg.reset(ident)
        if entry is None and is_fp(ident):
            birth = birth_ns(path)
            old = ino_identity(st, birth)
            e2 = reg.get(old)
            if e2 is not None and may_have_grown_into(old, st, self.fingerprint_bytes, birth) and (
                not e2.head_len or _head_matches(path, e2.head_len, e2.head)
            ):
                entry = reg.rename(old, ident)
        if entry is None and is_ino(ident):
            known = reg.same_inode(ident)
            if known is not None and is_fp(known.identity) and known.identity not in self._files:
                # Known past its fingerprint, short again now: truncated while away. Its old
                # ``ino:`` source may be on lines already sent, so take the entry and reset it.
                log.info("%s: shorter (%d) than the fingerprint it had when last read: truncated while "
                         "away, reading from 0", path, st.st_size)
                reg.rename(known.identity, ident)
                entry = reg.reset(ident)
        if entry is not None and entry.offset > st.st_size:
            log.info("%s: shorter (%d) than its saved offset (%d): truncated while away, reading from 0",
                     path, st.st_size, entry.offset)
            entry = reg.reset(ident)
        if entry is not None:
            offset = entry.offset
            reg.update(ident, path=reg_path, input_id=inp.id, topic=inp.topic, size_seen=st.st_size)
        else:
            offset = st.st_size if first_scan and inp.start_at == "end" else 0
            entry = reg.create(ident, path=reg_path, offset=offset, size_seen=st.st_size,
                               input_id=inp.id, topic=inp.topic)
        if is_ino(ident) and not entry.head_len and st.st_size:
            # Remember the head now, so a recycled inode is recognised even if we never read this file.
            head = _read_head(path, min(st.st_size, self.fingerprint_bytes))
            if head is not None:
                reg.update(ident, head_len=head[0], head=head[1])
        self._must_save = True
        harv = Harvester(
            path, ident, offset,
            max_line_bytes=inp.max_line_bytes,
            multiline=inp.joiner_factory(),
            partial_flush_s=self.partial_flush_s,
            fingerprint_bytes=self.fingerprint_bytes,
            head_len=entry.head_len,
            head=entry.head,
        )
        f = _File(harv=harv, input=inp, source=entry.source)
        f.wants_read = st.st_size != offset
        f.waiting_since = now
        if moved_from is not None:
            harv.start_draining()
            f.moved = True
            self.counters["files_followed"] += 1
        self._files[ident] = f
        self._route(f, ident)
        return f

    def _update_file(self, f: _File, path: str, st: os.stat_result, inp: _Input, now: float) -> None:
        h = f.harv
        if f.input is None or f.input.id not in self._inputs:
            f.input = inp
        if h.path != path:
            log.info("%s: now at %s (renamed, still matching)", h.path, path)
            h.path = path
            self.registry.update(h.identity or "", path=path)
        if h.draining and not h.finished and not h.deleted:
            h.draining = False  # it came back under a matching name
            f.moved = False
        h.poke()  # (the scan is the safety net for a write inotify did not report)
        changed = (st.st_size, st.st_mtime_ns) != (f.closed_size, f.closed_mtime)
        if not h.is_open and changed and not f.wants_read:
            f.wants_read = True
            f.waiting_since = now

    # --- opening, reading, closing ----------------------------------------------------------

    def _open_waiting(self, now: float) -> None:
        self._slice_wake = float("inf")
        waiting = []
        for f in self._files.values():
            h = f.harv
            if h.fd is not None or h.finished or f.input is None or not self._may_read(f):  # (fd: is_open)
                continue
            if not f.wants_read and h.holds_unflushed:
                due = h.flush_deadline()
                if due is not None and now >= due:
                    f.wants_read = True
                    f.waiting_since = now
            if f.wants_read:
                waiting.append(f)
        if not waiting:
            return
        waiting.sort(key=lambda f: f.waiting_since)
        open_files = [f for f in self._files.values() if f.harv.fd is not None]
        free = self.max_open_files - len(open_files)
        slice_wake = float("inf")
        if free < len(waiting):
            idle = []
            notified = self._all_watched
            for f in open_files:
                h = f.harv
                if not h.at_eof or h.draining:
                    continue
                if self._holds_slice(f, now, notified):
                    slice_wake = min(slice_wake, f.opened_at + self.open_slice_s)
                else:
                    idle.append(f)
            idle.sort(key=lambda f: (f.harv.poked, f.harv.last_data_at))  # (poked: has lines to read)
            for f in idle[: len(waiting) - free]:
                self._close(f, now)
                free += 1
        opened = 0
        for f in waiting[: max(0, free)]:
            before = f.harv.identity or ""
            try:
                f.harv.open()
            except FileChanged as e:
                log.info("%s", e)
                f.wants_read = False
                continue
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE):
                    log.warning("out of file descriptors (%s): %d open; lower max_open_files",
                                e, self.open_files)
                    break
                f.wants_read = False
                if not (f.moved and e.errno == errno.ENOENT):  # (moved on again: the next scan finds it)
                    self._read_error(f, e)
                continue
            self.counters["files_opened"] += 1
            opened += 1
            f.opened_at = now
            f.wants_read = False
            self._after_identity_change(f, before)
        # Files left waiting only because the open ones are within their slice: no busy loop,
        # wait() wakes when the first slice ends.
        left = len(waiting) > free
        if left and opened:
            slice_wake = min(slice_wake, now + self.open_slice_s)  # (the ones just opened)
        self._slice_wake = slice_wake if left else float("inf")
        self._more = left and slice_wake == float("inf")

    def _holds_slice(self, f: _File, now: float, notified: bool) -> bool:
        """Does the open file ``f`` (read to its end) keep its descriptor against a waiting file?

        Yes within :data:`OPEN_SLICE_S` of its opening while it is busy: it brought new bytes
        since it was opened and was not read quiet since (its last read found nothing new; with
        inotify, no event named it since either). Otherwise it gives its descriptor up.
        """
        h = f.harv
        if now - f.opened_at >= self.open_slice_s or h.last_data_at < f.opened_at:
            return False
        quiet = h.last_read_bytes == 0 and (not notified or not h.poked)
        return not quiet

    def _may_read(self, f: _File) -> bool:
        a = f.after
        if a is None:
            return True
        if a.harv.finished or (a.retired and not a.harv.is_open):
            f.after = None
            return True
        return False

    def _read_round_robin(self, budget: int, now: float, events: list[Event]) -> int:
        """Read open files in turn, a fair share each, until the budget is spent; returns what is left."""
        paused = self.paused
        notified = self._all_watched  # inotify names the files that changed: read only those
        active = [f for f in self._files.values()
                  if f.harv.fd is not None and f.harv.due(now, notified) and f.input is not None
                  and self._may_read(f)
                  and f.source not in paused]
        n = self.files_read = len(active)
        if not n:
            return budget
        start = self._rr % n
        self._rr += 1
        order = active[start:] + active[:start]
        quantum = max(MIN_QUANTUM, budget // n)
        remaining = budget
        done: set[int] = set()
        while remaining > 0:
            progressed = False
            for f in order:
                if remaining <= 0:
                    break
                if id(f) in done:
                    continue
                self._read(f, min(quantum, remaining), now, events)
                h = f.harv
                remaining -= h.last_read_bytes
                if h.truncated_now:
                    progressed = True
                elif h.at_eof or not h.is_open or h.last_read_bytes == 0:
                    done.add(id(f))
                else:
                    progressed = True
            if not progressed:
                break
        self._more = self._more or (remaining <= 0 and len(done) < n)
        return max(0, remaining)

    def _read(self, f: _File, max_bytes: int, now: float, events: list[Event]) -> None:
        h = f.harv
        old = h.identity or ""
        try:
            recs = h.read_lines(max_bytes, now)
        except FileChanged as e:
            log.info("%s", e)
            self._close(f)
            f.wants_read = False
            return
        except OSError as e:
            self._read_error(f, e)
            self._close(f)
            f.wants_read = False
            return
        if recs:
            self._emit(f, old if h.truncated_now else h.identity or old, recs, events)
        self.counters["bytes"] += h.last_read_bytes
        if h.truncated_now:
            self._truncated(f, old)
        elif h.identity != old:
            self._after_identity_change(f, old)
        if h.last_read_bytes:
            ident = h.identity or ""
            if is_ino(ident):  # (an fp: file's head is its identity: it does not change)
                self.registry.update(ident, size_seen=h.size, head_len=h.head_len, head=h.head)
            else:
                self.registry.update(ident, size_seen=h.size)
        if h.finished:
            self._finished_some = True
            self._drop(f)

    def _flush_and_close(self, now: float, events: list[Event]) -> None:
        for f in list(self._files.values()):
            h = f.harv
            if h.fd is None or f.input is None:
                continue
            recs = h.flush(now)
            if recs:
                self._emit(f, h.identity or "", recs, events)
            if h.at_eof and not h.draining and h.idle_s(now) >= self.close_inactive_s:
                recs = h.flush(now, force=True)
                if recs:
                    self._emit(f, h.identity or "", recs, events)
                self._close(f)

    def _close(self, f: _File, now: float | None = None) -> None:
        h = f.harv
        f.closed_size, f.closed_mtime = h.size, h.mtime_ns
        if h.poked and not f.wants_read and not h.finished:
            # inotify named it since its last read: that event is spent, so reopen it for the read
            f.wants_read = True
            f.waiting_since = time.monotonic() if now is None else now
        h.close()

    def _emit(self, f: _File, ident: str, recs: list[Record], events: list[Event]) -> None:
        inp = f.input
        assert inp is not None
        topic, fields, input_id = inp.topic, inp.fields, inp.id
        path, source, gen = f.harv.path, f.source, f.gen
        if not f.pending or f.pending[-1].gen != gen:
            f.pending.append(_Pending(gen))
        pend = f.pending[-1].offs.append
        add = events.append
        new = _tuple_new
        for r in recs:
            nxt = r.next_offset
            add(new(Event, (input_id, topic, path, ident, source, r.offset, nxt, r.raw, r.truncated,
                            r.lines, fields)))
            pend(nxt)
        self.counters["lines"] += len(recs)
        if ident not in f.routes:
            self._route(f, ident)

    # --- identities, acks, forgetting ------------------------------------------------------------

    def _after_identity_change(self, f: _File, old: str) -> None:
        new = f.harv.identity or old
        if new != old:
            self._rekey(f, old, new)
        if is_ino(new):
            self.registry.update(new, head_len=f.harv.head_len, head=f.harv.head)

    def _rekey(self, f: _File, old: str, new: str) -> None:
        """The file's identity changed without its content changing (ino: grew into fp:)."""
        if self._files.get(old) is f:
            del self._files[old]
        self._claim(f, new)
        if self.registry.get(old) is not None:
            self.registry.rename(old, new)
        elif self.registry.get(new) is None:
            inp = f.input
            self.registry.create(new, path=f.harv.path, offset=0, source=f.source,
                                 input_id=inp.id if inp else "", topic=inp.topic if inp else "")
        self._route(f, new)
        self._must_save = True

    def _truncated(self, f: _File, old: str) -> None:
        new = f.harv.identity or old
        self.counters["truncations"] += 1
        f.gen += 1
        f.acked_upto = f.synced_upto = None
        reg = self.registry
        if self._files.get(old) is f and new != old:
            del self._files[old]
            self._claim(f, new)
        if new != old:
            if reg.get(new) is not None:
                reg.remove(new)
            reg.rename(old, new)
        entry = reg.reset(new) if reg.get(new) is not None else None
        if entry is None:
            inp = f.input
            entry = reg.create(new, path=f.harv.path, offset=0, input_id=inp.id if inp else "",
                               topic=inp.topic if inp else "", source=f"{new}#t{f.gen}")
        f.source = entry.source
        if is_ino(new):
            reg.update(new, head_len=f.harv.head_len, head=f.harv.head)
        self._route(f, new)
        self._must_save = True

    def _claim(self, f: _File, ident: str) -> None:
        """Track ``f`` under ``ident``; another file already there starts with the same KiB: same file."""
        other = self._files.get(ident)
        if other is not None and other is not f:
            log.warning("%s and %s share their first %d bytes: taken for the same file",
                        other.harv.path, f.harv.path, self.fingerprint_bytes)
            self._drop(other)
        self._files[ident] = f

    def _route(self, f: _File, ident: str) -> None:
        fs = self._routes.setdefault(ident, [])
        if f not in fs:
            fs.append(f)
        f.routes.add(ident)

    def _unroute(self, f: _File) -> None:
        for ident in f.routes:
            fs = self._routes.get(ident)
            if fs is not None and f in fs:
                fs.remove(f)
                if not fs:
                    del self._routes[ident]
        f.routes.clear()

    def _unique_routed(self) -> list[_File]:
        seen: dict[int, _File] = {}
        for fs in self._routes.values():
            for f in fs:
                seen[id(f)] = f
        return list(seen.values())

    def _ack(self, identity: str, next_offset: int) -> _File | None:
        for f in self._routes.get(identity, ()):
            for seg in f.pending:
                if seg.ack(next_offset):
                    self._acked_in(f, seg)
                    return f
        return None

    def _sync_offset(self, f: _File) -> None:
        upto = f.acked_upto
        if upto is None or upto == f.synced_upto:
            return
        f.synced_upto = upto
        # Only while the entry is still this file's: a recycled inode's new file has its own.
        entry = self.registry.get(f.harv.identity or "")
        if entry is not None and entry.source == f.source:
            self.registry.set_offset(entry.identity, upto)

    def _settle(self, f: _File) -> None:
        """Nothing of ``f`` in flight any more: forget identities no event carries now."""
        if f.retired:
            self._unroute(f)
        elif len(f.routes) > 1:
            current = f.harv.identity or ""
            self._unroute(f)
            self._route(f, current)

    def _drop(self, f: _File) -> None:
        """Stop tracking a file (gone, recycled inode, or its input removed); acks still count."""
        h = f.harv
        if h.is_open:
            self._close(f)
        ident = h.identity or ""
        if self._files.get(ident) is f:
            del self._files[ident]
        if self._by_path.get(h.path) is f:
            del self._by_path[h.path]
        f.retired = True
        f.input = None
        if not f.pending:
            self._unroute(f)

    # --- inotify --------------------------------------------------------------------------------

    def _start_inotify(self) -> None:
        try:
            from inotify_simple import INotify, flags
        except ImportError:  # pragma: no cover - a dependency, but scanning works without it
            log.warning("inotify_simple not installed; relying on periodic scans")
            return
        try:
            self._inotify = INotify()
        except OSError as e:
            log.warning("inotify unavailable (%s); relying on periodic scans", e)
            return
        self._flags = flags
        self._mask = (flags.CREATE | flags.MOVED_TO | flags.MOVED_FROM | flags.DELETE | flags.MODIFY
                      | flags.ATTRIB | flags.DELETE_SELF | flags.MOVE_SELF)
        self._dir_events = (flags.CREATE | flags.MOVED_TO | flags.MOVED_FROM | flags.DELETE
                            | flags.ATTRIB | flags.DELETE_SELF | flags.MOVE_SELF | flags.Q_OVERFLOW
                            | flags.IGNORED)

    def _stop_inotify(self) -> None:
        if self._inotify is not None:
            with contextlib.suppress(OSError):
                self._inotify.close()
        self._inotify = None
        self._all_watched = False
        self._watches.clear()
        self._wd_dirs.clear()

    def _update_watches(self) -> None:
        if self._inotify is None:
            return
        wanted: set[str] = set()
        for inp in self._inputs.values():
            wanted |= inp.scanner.watch_dirs()
        for d in list(self._watches):
            if d not in wanted:
                wd = self._watches.pop(d)
                self._wd_dirs.pop(wd, None)
                with contextlib.suppress(OSError):
                    self._inotify.rm_watch(wd)
        for d in wanted - set(self._watches):
            try:
                wd = self._inotify.add_watch(d, self._mask)
            except OSError as e:
                log.warning("cannot watch %s (%s); the periodic scan covers it", d, e)
                continue
            self._watches[d] = wd
            self._wd_dirs[wd] = d
        self._all_watched = bool(self._watches) and not wanted - set(self._watches)

    def _take_events(self) -> None:
        """The inotify events waiting now, without blocking."""
        try:
            evs = read_events(self._inotify.fileno())  # (each file written to named once)
        except OSError as e:
            log.warning("inotify read failed (%s); falling back to scanning", e)
            self._stop_inotify()
            return
        if evs:
            self._on_inotify(evs)

    def _on_inotify(self, evs: list[Any]) -> None:
        now = time.monotonic()
        rescan = False
        prefixes: dict[int, str] = {}  # wd -> its directory with a trailing separator (no join per event)
        by_path = self._by_path
        for ev in evs:
            if ev.mask & self._dir_events:
                rescan = True
                if ev.mask & self._flags.IGNORED:
                    d = self._wd_dirs.pop(ev.wd, None)
                    if d is not None:
                        self._watches.pop(d, None)
                continue
            if not ev.name:
                continue
            d = prefixes.get(ev.wd)
            if d is None:
                d = self._wd_dirs.get(ev.wd)
                if d is None:
                    continue
                d = prefixes[ev.wd] = os.path.join(d, "")
            f = by_path.get(d + ev.name)
            if f is not None and f.harv.fd is not None:
                f.harv.poke()
            elif f is not None and not f.wants_read:
                f.wants_read = True
                f.waiting_since = now
        if rescan:
            soon = max(now, self._last_scan + self.min_rescan_interval_s)
            self._next_scan = min(self._next_scan, soon)

    def _report_errors(self, errors: list[ScanError]) -> None:
        """The scan's findings: log each problem once, not at every scan."""
        self._scan_errors = errors
        current = {(e.path, e.errno) for e in errors}
        for e in errors:
            if (e.path, e.errno) not in self._reported:
                log.warning("cannot read %s", e)
        self._reported = current

    def _read_error(self, f: _File, e: OSError) -> None:
        err = ScanError(f.harv.path, e.errno or 0, e.strerror or str(e))
        if f.harv.path not in self._read_errors:
            log.warning("cannot read %s", err)
        self._read_errors[f.harv.path] = err


def _read_head(path: str, length: int) -> tuple[int, str] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.pread(fd, length, 0)
    finally:
        os.close(fd)
    return len(data), digest(data)


def _head_matches(path: str, length: int, expected: str) -> bool:
    head = _read_head(path, length)
    return head is not None and head[0] == length and head[1] == expected
