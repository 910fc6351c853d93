"""The registry: for every file identity, how far its lines are acknowledged by Kafka.

This file is what makes "no loss, no duplicates" survive kill -9 and power loss, so:

- An offset only moves forward (:meth:`Registry.set_offset`), and only the caller that saw the
  Kafka acknowledgement moves it. Going back needs an explicit :meth:`Registry.reset`
  (the file was truncated, or the identity turned out to be a recycled inode).
- :meth:`Registry.save` is atomic: the new content goes to a temporary file in the same
  directory, is flushed and fsync'ed, then renamed over the old one and the directory is
  fsync'ed. A crash leaves either the old or the new registry, never a mix. The previous file
  is kept as ``<name>.bak``; a leftover ``<name>.tmp`` from a crash is ignored (and replaced).
- :meth:`Registry.load` tolerates a missing file (first start). A file that does not parse is
  refused loudly, unless the backup parses: then the backup is used (offsets one save older
  mean a few lines re-sent with the same event ids, which Elasticsearch overwrites).

The format is JSON lines: a header, one line per entry, and a trailer with the entry count
(so a cut file is recognised as cut). Each entry's line is cached and rebuilt only when the
entry changed, so saving 10,000 entries once a second costs a join and a write, and
:meth:`Registry.save` does nothing at all when nothing changed.

Besides offsets, the registry remembers which inputs have already run (``start_at`` applies
only to an input's first start) and, for short files known by inode, a digest of their first
bytes (see :mod:`agent.fingerprint` on inode reuse).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _q  # C-accelerated string quoting
from pathlib import Path

from agent.fingerprint import inode_of

__all__ = ["Registry", "RegistryCorruptError", "RegistryEntry"]

log = logging.getLogger("logagent.registry")

FORMAT = "logferry-registry"
VERSION = 1
DEFAULT_GONE_TTL_S = 24 * 3600.0


class RegistryCorruptError(RuntimeError):
    """The registry file and its backup are both unreadable: refuse to guess offsets."""


@dataclass(slots=True)
class RegistryEntry:
    """One file's saved state. Treat as read-only: change it through :class:`Registry` methods.

    ``source`` is the stable name used for the Kafka key and event ids: the identity the file
    had when first seen, kept when the identity moves from ``ino:`` to ``fp:`` (so ids of
    re-sent lines do not change), and renewed on :meth:`Registry.reset` (so a truncated file's
    new lines never reuse the old lines' ids). ``head``/``head_len`` are the digest of the
    file's first ``head_len`` bytes, kept for ``ino:`` identities.
    """

    identity: str
    path: str
    offset: int = 0
    size_seen: int = 0
    input_id: str = ""
    topic: str = ""
    updated_at: float = 0.0  # wall clock of the save that first wrote the entry's current state
    source: str = ""
    head_len: int = 0
    head: str = ""
    resets: int = 0

    def to_json_line(self) -> str:
        # Hand-built: about 5x faster than json.dumps of a dict, and this runs per changed entry.
        return (
            f'{{"identity":{_q(self.identity)},"path":{_q(self.path)},"offset":{int(self.offset)},'
            f'"size_seen":{int(self.size_seen)},"input_id":{_q(self.input_id)},"topic":{_q(self.topic)},'
            f'"updated_at":{float(self.updated_at)!r},"source":{_q(self.source)},'
            f'"head_len":{int(self.head_len)},"head":{_q(self.head)},"resets":{int(self.resets)}}}'
        )

    @classmethod
    def from_json(cls, obj: object) -> RegistryEntry:
        if not isinstance(obj, dict):
            raise ValueError(f"entry is not an object: {obj!r:.80}")
        ident, path, offset = obj.get("identity"), obj.get("path"), obj.get("offset")
        if not isinstance(ident, str) or not ident:
            raise ValueError(f"entry without identity: {obj!r:.80}")
        if not isinstance(path, str) or not isinstance(offset, int) or offset < 0:
            raise ValueError(f"entry {ident}: bad path or offset")
        return cls(
            identity=ident,
            path=path,
            offset=offset,
            size_seen=int(obj.get("size_seen", 0)),
            input_id=str(obj.get("input_id", "")),
            topic=str(obj.get("topic", "")),
            updated_at=float(obj.get("updated_at", 0.0)),
            source=str(obj.get("source") or ident),
            head_len=int(obj.get("head_len", 0)),
            head=str(obj.get("head", "")),
            resets=int(obj.get("resets", 0)),
        )


class Registry:
    """Offsets by file identity, saved atomically to ``path`` (see the module docstring).

    ``gone_ttl_s``: an entry whose file has not been seen for that long is dropped by
    :meth:`gc`. Not seen means "not in the ``live`` set the caller passes", counted in memory
    from this process's start, so a restart gives every entry a full TTL again.
    """

    def __init__(self, path: str | os.PathLike[str], gone_ttl_s: float = DEFAULT_GONE_TTL_S) -> None:
        self.path = Path(path)
        self.bak = self.path.with_name(self.path.name + ".bak")
        self.tmp = self.path.with_name(self.path.name + ".tmp")
        self.gone_ttl_s = gone_ttl_s
        self._entries: dict[str, RegistryEntry] = {}
        #: sources in use -> entries using them. A new entry never takes a source in use: an entry
        #: keeps its source when its identity changes (``ino:`` → ``fp:``), so a later file under
        #: the old identity (the same file truncated and short again, say) would otherwise share
        #: event ids with it
        self._sources: dict[str, int] = {}
        #: (device, inode, birth) -> identities of entries naming that inode (see :meth:`same_inode`)
        self._by_inode: dict[tuple, set[str]] = {}
        self._lines: dict[str, str] = {}  # serialized entries, rebuilt only for _changed ones
        self._changed: set[str] = set()
        self._inputs: dict[str, float] = {}  # input id -> first start (wall clock)
        #: journal input id -> {"cursor": last acknowledged entry's cursor, "realtime": its µs} (agent/journal.py)
        self._journals: dict[str, dict] = {}
        self._gone_since: dict[str, float] = {}
        self._dirty = False
        self.loaded_from: Path | None = None

    # --- reading ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, identity: object) -> bool:
        return identity in self._entries

    def __iter__(self) -> Iterator[RegistryEntry]:
        return iter(list(self._entries.values()))

    def get(self, identity: str) -> RegistryEntry | None:
        """The entry for ``identity``, or None."""
        return self._entries.get(identity)

    @property
    def dirty(self) -> bool:
        """True when something changed since the last save (or load)."""
        return self._dirty

    def input_known(self, input_id: str) -> bool:
        """Whether this input has run before (on this host, with this registry)."""
        return input_id in self._inputs

    def journal_cursor(self, input_id: str) -> dict | None:
        """The journal input's last acknowledged position: ``{"cursor": str, "realtime": µs}``, or None."""
        return self._journals.get(input_id)

    # --- changing ---------------------------------------------------------------------------

    def set_journal_cursor(self, input_id: str, cursor: str, realtime_us: int, *, start: str | None = None) -> None:
        """Record the cursor of a journal entry Kafka acknowledged (and every entry before it); with
        ``start`` (``before``/``from``), the place an input started at before it read any entry."""
        old = self._journals.get(input_id)
        if old is None or old.get("cursor") != cursor or old.get("start") != start:
            self._journals[input_id] = {"cursor": cursor, "realtime": int(realtime_us)}
            if start is not None:
                self._journals[input_id]["start"] = start
            self._dirty = True

    def mark_input(self, input_id: str) -> None:
        """Remember that ``input_id`` has started, so a restart no longer applies ``start_at``."""
        if input_id not in self._inputs:
            self._inputs[input_id] = time.time()
            self._dirty = True

    def create(
        self,
        identity: str,
        *,
        path: str,
        offset: int = 0,
        size_seen: int = 0,
        input_id: str = "",
        topic: str = "",
        source: str | None = None,
        head_len: int = 0,
        head: str = "",
    ) -> RegistryEntry:
        """Add (or replace) the entry for a file seen for the first time."""
        old = self._entries.get(identity)
        if old is not None:
            self._unuse(old.source)
        entry = RegistryEntry(
            identity=identity,
            path=path,
            offset=offset,
            size_seen=size_seen,
            input_id=input_id,
            topic=topic,
            source=self._unused(source or identity),
            head_len=head_len,
            head=head,
        )
        self._use(entry.source)
        self._entries[identity] = entry
        self._index(identity)
        self._gone_since.pop(identity, None)
        self._touch(identity)
        return entry

    def update(
        self,
        identity: str,
        *,
        path: str | None = None,
        size_seen: int | None = None,
        input_id: str | None = None,
        topic: str | None = None,
        head_len: int | None = None,
        head: str | None = None,
    ) -> bool:
        """Change an entry's descriptive fields (not its offset); True if something changed."""
        e = self._entries.get(identity)
        if e is None:
            return False
        changed = False
        for name, value in (("path", path), ("size_seen", size_seen), ("input_id", input_id),
                            ("topic", topic), ("head_len", head_len), ("head", head)):
            if value is not None and getattr(e, name) != value:
                setattr(e, name, value)
                changed = True
        if changed:
            self._touch(identity)
        return changed

    def set_offset(self, identity: str, offset: int) -> bool:
        """Move the acknowledged offset forward; refuses (False) to move it back or for unknown files.

        Backwards would re-send acknowledged lines; only :meth:`reset` may do that on purpose.
        """
        e = self._entries.get(identity)
        if e is None:
            return False
        if offset < e.offset:
            log.debug("refusing to move %s back from %d to %d", identity, e.offset, offset)
            return False
        if offset > e.offset:
            e.offset = offset
            self._touch(identity)
        return True

    def reset(self, identity: str, offset: int = 0) -> RegistryEntry | None:
        """Set the offset back on purpose (truncation, recycled inode); gives the file a new ``source``.

        The new source keeps event ids of the new content apart from those of the content
        that was there before at the same offsets.
        """
        e = self._entries.get(identity)
        if e is None:
            return None
        e.resets += 1
        e.offset = offset
        self._unuse(e.source)
        e.source = self._unused(f"{identity}#r{e.resets}")
        self._use(e.source)
        e.head_len = 0
        e.head = ""
        self._touch(identity)
        return e

    def rename(self, old: str, new: str) -> RegistryEntry | None:
        """Move an entry to a new identity (``ino:`` grown into ``fp:``), keeping offset and source."""
        e = self._entries.pop(old, None)
        if e is None:
            return None
        self._touch(old)
        self._gone_since.pop(old, None)
        self._unindex(old)
        e.identity = new
        self._entries[new] = e
        self._index(new)
        self._gone_since.pop(new, None)
        self._touch(new)
        return e

    def remove(self, identity: str) -> bool:
        """Forget a file; True if it was known."""
        e = self._entries.pop(identity, None)
        if e is None:
            return False
        self._unindex(identity)
        self._unuse(e.source)
        self._gone_since.pop(identity, None)
        self._touch(identity)
        return True

    def gc(self, live: Iterable[str], now: float | None = None) -> list[str]:
        """Drop entries not in ``live`` for longer than ``gone_ttl_s``; returns their identities.

        Call it after each full scan with the identities of every file still found (or still
        owed acknowledgements). ``now`` is monotonic time.
        """
        now = time.monotonic() if now is None else now
        live = live if isinstance(live, set | frozenset | dict) else set(live)
        removed: list[str] = []
        gone = self._gone_since
        for ident in self._entries:
            if ident in live:
                gone.pop(ident, None)
            else:
                since = gone.setdefault(ident, now)
                if now - since > self.gone_ttl_s:
                    removed.append(ident)
        for ident in removed:
            self.remove(ident)
        return removed

    def same_inode(self, identity: str) -> RegistryEntry | None:
        """Another entry naming the same device, inode and birth time as ``identity``, if any.

        Why: a file known as ``fp:…`` (past its fingerprint) that is short again after a
        truncation while the agent was down, or while no input collected it, is found as a
        new ``ino:`` identity. Without this it would get a fresh entry whose source is that
        ``ino:`` identity, which the same file may already have used for other lines before
        it grew (the source then moved to ``fp:…#r1``): two lines under one event id.
        """
        key = _inode_key(identity)
        if key is None:
            return None
        for other in self._by_inode.get(key, ()):
            if other != identity:
                return self._entries.get(other)
        return None

    def _index(self, identity: str) -> None:
        key = _inode_key(identity)
        if key is not None:
            self._by_inode.setdefault(key, set()).add(identity)

    def _unindex(self, identity: str) -> None:
        key = _inode_key(identity)
        ids = self._by_inode.get(key) if key is not None else None
        if ids is not None:
            ids.discard(identity)
            if not ids:
                del self._by_inode[key]

    def _unused(self, source: str) -> str:
        if source not in self._sources:
            return source
        k = 1
        while f"{source}#n{k}" in self._sources:
            k += 1
        return f"{source}#n{k}"

    def _use(self, source: str) -> None:
        self._sources[source] = self._sources.get(source, 0) + 1

    def _unuse(self, source: str) -> None:
        n = self._sources.get(source, 0) - 1
        if n > 0:
            self._sources[source] = n
        else:
            self._sources.pop(source, None)

    def _touch(self, identity: str) -> None:
        self._changed.add(identity)
        self._dirty = True

    # --- files ------------------------------------------------------------------------------

    def load(self) -> None:
        """Read the registry file (or its backup, see the module docstring); missing means empty."""
        errors: list[str] = []
        for candidate in (self.path, self.bak):
            try:
                text = candidate.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue
            except (OSError, UnicodeDecodeError) as e:
                errors.append(f"{candidate}: {e}")
                continue
            try:
                inputs, entries, lines = _parse(text)
            except ValueError as e:
                errors.append(f"{candidate}: {e}")
                continue
            if errors:
                log.error("registry %s; using the backup %s", "; ".join(errors), candidate)
            elif candidate == self.bak:
                log.warning("registry %s missing; using the backup %s", self.path, self.bak)
            self._inputs = inputs
            journals = json.loads(text.split("\n", 1)[0]).get("journals")
            journals = journals if isinstance(journals, dict) else {}
            self._journals = {str(k): v for k, v in journals.items()
                              if isinstance(v, dict) and isinstance(v.get("cursor"), str)}
            self._entries = {e.identity: e for e in entries}
            self._sources = {}
            self._by_inode = {}
            for e in entries:
                self._use(e.source)
                self._index(e.identity)
            self._lines = lines
            self._changed.clear()
            self._gone_since.clear()
            self._dirty = False
            self.loaded_from = candidate
            return
        if errors:
            raise RegistryCorruptError(
                "registry unreadable and no usable backup; refusing to guess offsets (move the file "
                "away to start over, which re-reads files per start_at): " + "; ".join(errors)
            )
        self._entries, self._lines, self._inputs, self._sources = {}, {}, {}, {}
        self._by_inode = {}
        self._journals = {}
        self._changed.clear()
        self._dirty = False
        self.loaded_from = None

    def save(self, force: bool = False) -> bool:
        """Write the registry atomically if it changed (or ``force``); True if written.

        On an OSError (disk full, read-only) the registry stays dirty and the error is raised:
        the caller logs it and calls again later.
        """
        if not self._dirty and not force:
            return False
        now = time.time()
        for ident in self._changed:
            e = self._entries.get(ident)
            if e is None:
                self._lines.pop(ident, None)
            else:
                e.updated_at = now  # stamped here, not per change: set_offset runs once per ack
                self._lines[ident] = e.to_json_line()
        self._changed.clear()
        header = json.dumps({"format": FORMAT, "version": VERSION, "saved_at": time.time(),
                             "inputs": self._inputs, "journals": self._journals}, separators=(",", ":"))
        parts = [header, *self._lines.values(), f'{{"end":{len(self._lines)}}}', ""]
        data = "\n".join(parts).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.path.exists():
            os.replace(self.path, self.bak)  # a crash right here leaves the .bak, which load() uses
        os.replace(self.tmp, self.path)
        _fsync_dir(self.path.parent)
        self._dirty = False
        return True


def _parse(text: str) -> tuple[dict[str, float], list[RegistryEntry], dict[str, str]]:
    rows = text.split("\n")
    if rows and rows[-1] == "":
        rows.pop()
    if len(rows) < 2:
        raise ValueError("too short (no header or no trailer): cut or empty file")
    try:
        header = json.loads(rows[0])
        trailer = json.loads(rows[-1])
    except json.JSONDecodeError as e:
        raise ValueError(f"header/trailer not JSON ({e})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError("not a logferry registry (header)")
    if header.get("version") != VERSION:
        raise ValueError(f"registry version {header.get('version')!r}, this agent reads {VERSION}")
    if not isinstance(trailer, dict) or trailer.get("end") != len(rows) - 2:
        raise ValueError(f"trailer says {trailer!r:.40} but {len(rows) - 2} entries follow: cut file")
    inputs = header.get("inputs") or {}
    if not isinstance(inputs, dict):
        raise ValueError("header inputs is not an object")
    entries: list[RegistryEntry] = []
    lines: dict[str, str] = {}
    for n, row in enumerate(rows[1:-1], 2):
        try:
            e = RegistryEntry.from_json(json.loads(row))
        except (json.JSONDecodeError, ValueError, TypeError) as err:
            raise ValueError(f"line {n}: {err}") from None
        entries.append(e)
        lines[e.identity] = row
    return {str(k): float(v) for k, v in inputs.items()}, entries, lines


def _inode_key(identity: str) -> tuple | None:
    inode, birth = inode_of(identity)
    return None if inode is None else (inode, birth)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
