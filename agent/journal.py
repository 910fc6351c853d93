"""The systemd journal as an input: ``journalctl -o json`` as a child process, read without blocking.

Why a child process and not python3-systemd (docs/journal.md): journalctl is on every systemd host
already (no compiled module to build or match to the host's libsystemd), it reads every journal
file format and rotation the host's own systemd writes, and a crash or hang of it cannot take the
agent with it. Its stdout is a pipe set non-blocking and read inside the agent's one main loop.

Delivery is as for files, with the entry's cursor as the offset:

- Each entry read gets a local number; :meth:`JournalInput.ack` marks it acknowledged, and the
  registry's cursor (:meth:`agent.registry.Registry.set_journal_cursor`) moves only past entries
  acknowledged together with every entry before them.
- At (re)start journalctl is given ``--cursor=<last acknowledged>`` (not ``--after-cursor``) and the
  first entry it prints is checked: the saved entry itself (skipped: it was delivered), or another
  one, which means the saved entry is no longer in the journal (vacuumed or rotated away while the
  agent was down): a **gap**, reported with its time range. ``--after-cursor`` cannot tell, and
  with a vanished cursor it silently skips the first entry still there as well (systemd 252: it
  seeks to the nearest entry and skips one, whether or not it is the cursor's).
- Memory is bounded: the pipe is read only while the caller has room (``budget``), journalctl blocks
  on a full pipe and the entries wait in the journal; a partial line longer than
  :data:`MAX_LINE_BYTES` is dropped, counted and logged.
- journalctl dies with the agent (``setpriv --pdeathsig`` where it works: :func:`die_with_agent`).
- journalctl is always started at a cursor, even on an input's first start (then the cursor of the
  journal's last entry, or its first for ``start_at: beginning``, read unfiltered): systemd 252's
  ``journalctl --follow`` with matches (``-u``, ``-t``, ``-p``, ``FIELD=value``) silently misses the
  first matching entry written after it started when no entry matched at its start (found by
  integration/test_journal.py; not with a cursor).
- A journalctl that prints nothing for :data:`STALL_CHECK_S` (the check backs off to
  :data:`STALL_CHECK_MAX_S` while it finds nothing: a quiet input costs a process a few minutes,
  not every 10 s) while the journal holds a newer matching
  entry (``journalctl --lines=1`` with the same filter says so) is started again from the last entry
  read: systemd 252's ``journalctl --follow`` can miss a ``journalctl --rotate`` made while it starts
  and then follow the archived file forever (seen in integration/test_journal.py).
- Each start from a cursor is in two steps: first a *catch-up* journalctl without ``--follow``
  (it prints every entry from the cursor to the journal's end and exits 0), then one with
  ``--follow`` from the last entry read. systemd 252's ``journalctl --follow --cursor=C`` starts at
  the current boot's first entry when C is from an earlier boot (found by ``make lab``'s reboot
  check: every entry between C and the reboot would be skipped and reported as a gap); without
  ``--follow`` it reads across boots. The follower's first entry, when not the cursor's, is kept and
  is no gap: the catch-up read everything up to the cursor.
- A journalctl that exits is restarted with a growing backoff (1 s … 60 s) from the last entry read,
  and each exit is logged with its status and stderr.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any, NamedTuple

from logferry.envelope import parse_cursor
from logferry.schema import InputSpec

from .registry import Registry

log = logging.getLogger("logagent.journal")

#: the journalctl binary (the environment may name another, e.g. for a test)
JOURNALCTL = os.environ.get("LOGFERRY_JOURNALCTL", "journalctl")
#: journalctl is started through util-linux's ``setpriv --pdeathsig TERM``: the kernel ends it when
#: the agent dies, even by kill -9 outside systemd. Without it, an orphaned ``journalctl --follow``
#: lived until it next had an entry to print. setpriv also calls ``capset``, which a seccomp filter
#: may refuse (logagent.service's ``SystemCallFilter=~@privileged`` does, and there the unit's
#: cgroup is cleaned anyway): :func:`die_with_agent` tries it once and uses it only if it works.
SETPRIV = shutil.which("setpriv")
_setpriv_works: bool | None = None

#: a journalctl JSON line longer than this is dropped (journald's own entries are far smaller)
MAX_LINE_BYTES = 64 << 20
BACKOFF_MIN_S, BACKOFF_MAX_S = 1.0, 60.0
READ_CHUNK = 256 << 10
#: after this long without output, check that journalctl has not missed newer entries
STALL_CHECK_S = 10.0
#: the longest wait between two such checks of a quiet input (the wait doubles while they find nothing)
STALL_CHECK_MAX_S = 300.0


def die_with_agent() -> list[str]:
    """The prefix that makes a child die with the agent (``setpriv --pdeathsig TERM --``), or none
    where setpriv is missing or refused here; tried once per process (about 2 ms)."""
    global _setpriv_works
    if SETPRIV is None:
        return []
    prefix = [SETPRIV, "--pdeathsig", "TERM", "--"]
    if _setpriv_works is None:
        try:
            _setpriv_works = subprocess.run([*prefix, "true"], timeout=10, stdin=subprocess.DEVNULL,
                                            capture_output=True).returncode == 0
        except (OSError, subprocess.SubprocessError):
            _setpriv_works = False
        if not _setpriv_works:
            log.info("journal: setpriv --pdeathsig does not work here; journalctl is started without it")
    return prefix if _setpriv_works else []


class JournalEvent(NamedTuple):
    """One journal entry read for an input: the token the Kafka sink hands back on delivery.

    ``source_id``/``path`` are the input id (``journal:…``), so the refusal holding of
    agent/refusals.py treats an input like a file; ``n`` is the entry's local number for acks.
    """

    source_id: str
    path: str
    topic: str
    input_id: str
    n: int
    cursor: str
    realtime_us: int
    entry: dict
    nbytes: int


def iso_us(realtime_us: int | None) -> str | None:
    """A journal time (µs since the epoch) as ISO-8601 UTC, for status and log lines."""
    if realtime_us is None:
        return None
    return datetime.fromtimestamp(realtime_us / 1e6, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cursor_realtime(cursor: str) -> int | None:
    """The realtime (µs) written in a cursor (``t=`` hex), or None."""
    try:
        return int(parse_cursor(cursor)["t"], 16)
    except (KeyError, ValueError):
        return None


def same_entry(a: str, b: str) -> bool:
    """Whether two cursors name the same entry (same sequence number id and number; else the same text)."""
    ca, cb = parse_cursor(a), parse_cursor(b)
    if "s" in ca and "i" in ca:
        return ca.get("s") == cb.get("s") and ca.get("i") == cb.get("i")
    return a == b


def journal_position(start_at: str, timeout: float = 10.0) -> str | None:
    """The cursor of the journal's last entry (``start_at`` end) or first (beginning), unfiltered;
    None for an empty (or unreadable) journal."""
    base = [JOURNALCTL, "--output=json", "--no-pager", "--quiet"]
    try:
        if start_at != "beginning":
            r = subprocess.run([*base, "--lines=1"], capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
            line = r.stdout.strip().splitlines()[-1:] or [b""]
            first = line[0]
        else:
            with subprocess.Popen(base, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                  stdin=subprocess.DEVNULL) as p:
                assert p.stdout is not None
                first = p.stdout.readline()
                p.kill()
        return json.loads(first)["__CURSOR"] if first.strip() else None
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return None


def journalctl_command(spec: InputSpec, cursor: str | None, start_at: str, *, follow: bool = True) -> list[str]:
    """The journalctl command line of an input, resuming at ``cursor`` (the entry itself is printed
    again and checked: see the module docstring) or, without one, per ``start_at``; ``follow``
    False for the catch-up run that reads to the journal's end and exits."""
    assert spec.journal is not None
    cmd = [JOURNALCTL, "--output=json", "--all", *(["--follow"] if follow else []), "--no-pager", "--quiet"]
    if cursor:
        cmd.append(f"--cursor={cursor}")
    elif start_at == "beginning":
        cmd.append("--no-tail")
    else:
        cmd.append("--lines=0")
    return cmd + spec.journal.journalctl_args()


class JournalInput:
    """One journal input: its journalctl, the entries in flight, its acknowledged cursor, its counts."""

    def __init__(self, spec: InputSpec, registry: Registry, *, clock: Any = time.monotonic) -> None:
        self.spec = spec
        self.id = spec.path
        self.registry = registry
        self.clock = clock
        saved = registry.journal_cursor(self.id)
        #: where the first journalctl started, before any entry was read (kept in the registry, so a
        #: restart before the first entry starts there again, not per start_at)
        self._position: tuple[str | None, str] | None = None
        if saved and saved.get("start"):
            self._position, saved = (saved["cursor"], saved["start"]), None
        self.acked_cursor: str | None = saved["cursor"] if saved else None
        self.acked_realtime: int | None = saved.get("realtime") if saved else None
        #: where the next journalctl starts: the last entry read (or, before any, the acknowledged one)
        self.read_cursor = self.acked_cursor
        self.start_at = spec.start_at
        registry.mark_input(self.id)
        self.proc: subprocess.Popen[bytes] | None = None
        self._buf = bytearray()
        self._skipping = False  # inside an over-long line: drop until its newline
        self._stderr = b""
        #: (cursor, how) the next journalctl's first entry is checked against: "delivered" (read before:
        #: skipped; another entry first means it is gone: a gap), "before" (the journal's last entry at
        #: the first start: skipped), "from" (its first entry, start_at beginning: kept)
        self._check_first: tuple[str, str] | None = None
        self._next_start = 0.0
        #: the journalctl running is the catch-up one (no --follow; exits 0 at the journal's end)
        self._catching_up = False
        self._backoff = BACKOFF_MIN_S
        self._n = 0
        self._last_output = self._last_check = clock()
        self._stall_every = STALL_CHECK_S
        self._inflight: deque[list] = deque()  # [n, cursor, realtime_us, acked], in order read
        self.read = self.acked = self.dropped = self.oversize = self.restarts = 0
        self.gap: dict[str, Any] | None = None
        self.gaps = 0
        self.error: str | None = None

    # --- the child process --------------------------------------------------------------------

    def start(self, *, follow: bool = False) -> None:
        """Start journalctl from the last entry read (or the saved cursor, or per ``start_at``): the
        catch-up run first (``follow`` False; without a cursor there is nothing to catch up), the
        follower once it has read to the end (:meth:`_exited`)."""
        cursor, how = self.read_cursor, "delivered"
        if cursor is None:
            if self._position is None:  # (once: a restart before any entry resumes at the same place)
                self._position = (journal_position(self.start_at),
                                  "from" if self.start_at == "beginning" else "before")
                if self._position[0]:
                    self.registry.set_journal_cursor(self.id, self._position[0],
                                                     cursor_realtime(self._position[0]) or 0,
                                                     start=self._position[1])
            cursor, how = self._position
        follow = follow or not cursor
        if follow and cursor and how != "from":
            how = "caughtup"  # the catch-up read up to here: another first entry is newer, not a gap
        cmd = journalctl_command(self.spec, cursor, self.start_at, follow=follow)
        exe = shutil.which(cmd[0])
        try:
            if exe is None:
                raise FileNotFoundError(f"not found on PATH={os.environ.get('PATH', '')}")
            self.proc = subprocess.Popen([*die_with_agent(), exe, *cmd[1:]], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True)
        except OSError as e:
            self.proc = None
            self._failed(f"cannot start {cmd[0]}: {e} (install systemd's journalctl, or set "
                         f"LOGFERRY_JOURNALCTL)")
            return
        for f in (self.proc.stdout, self.proc.stderr):
            os.set_blocking(f.fileno(), False)
        self._buf.clear()
        self._skipping = False
        self._check_first = (cursor, how) if cursor else None
        self._catching_up = not follow
        self._last_output = self._last_check = self.clock()
        log.info("journal input %s: %s with %s", self.id, "following" if follow else "catching up",
                 " ".join(cmd[1:]))

    def _failed(self, why: str) -> None:
        self.error = why
        self._next_start = self.clock() + self._backoff
        log.warning("journal input %s: %s; starting it again in %.0fs", self.id, why, self._backoff)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    def stop(self) -> None:
        """End journalctl (the input left the collect list, or the agent stops)."""
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.terminate()
            try:
                p.wait(2.0)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p is not None:
            for f in (p.stdout, p.stderr):
                if f is not None:
                    f.close()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def fileno(self) -> int | None:
        """journalctl's stdout, for the caller's wait (select); None when not running."""
        return self.proc.stdout.fileno() if self.proc is not None and self.proc.stdout is not None else None

    # --- reading ------------------------------------------------------------------------------

    def poll(self, budget: int) -> list[JournalEvent]:
        """The entries journalctl printed since the last call, reading at most about ``budget`` bytes."""
        if self.proc is None:
            if self.clock() >= self._next_start:
                self.start()
            if self.proc is None:
                return []
        out: list[JournalEvent] = []
        stdout = self.proc.stdout
        assert stdout is not None
        eof = False
        while budget > 0:
            try:
                chunk = os.read(stdout.fileno(), min(READ_CHUNK, budget))
            except BlockingIOError:
                break
            if not chunk:
                eof = True
                break
            budget -= len(chunk)
            self._feed(chunk, out)
        self._drain_stderr()
        if eof or (not out and self.proc.poll() is not None):
            self._exited()
        elif out:
            self._backoff = BACKOFF_MIN_S
            self.error = None
            self._last_output = self.clock()
            self._stall_every = STALL_CHECK_S
        else:
            now = self.clock()
            if now - self._last_output >= STALL_CHECK_S and now - self._last_check >= self._stall_every:
                self._last_check = now
                if not self._check_stall():
                    self._stall_every = min(self._stall_every * 2, STALL_CHECK_MAX_S)
        return out

    def _check_stall(self) -> bool:
        """journalctl has printed nothing for a while: if the journal has a matching entry newer than
        the last one read, journalctl lost track of the journal files: start it again from there
        (True)."""
        assert self.spec.journal is not None
        cmd = [JOURNALCTL, "--output=json", "--no-pager", "--quiet", "--lines=1",
               *self.spec.journal.journalctl_args()]
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
            last = json.loads(r.stdout.strip().splitlines()[-1])["__CURSOR"] if r.stdout.strip() else None
        except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError, IndexError):
            return False
        ref = self.read_cursor or (self._position[0] if self._position else None)
        if last is None or (ref is not None and same_entry(last, ref)):
            return False
        known = cursor_realtime(ref) if ref else None
        newer = cursor_realtime(last)
        if known is not None and newer is not None and newer <= known:
            return False
        log.warning("journal input %s: journalctl printed nothing for %.0fs though the journal holds a newer "
                    "matching entry (%s): starting it again from the last entry read", self.id,
                    self.clock() - self._last_output, iso_us(newer))
        self.stop()
        self.restarts += 1
        self._last_output = self.clock()
        self.start()
        return True

    def _drain_stderr(self) -> None:
        err = self.proc.stderr if self.proc is not None else None
        if err is None:
            return
        try:
            data = os.read(err.fileno(), 65536)
        except BlockingIOError:
            return
        if data:
            self._stderr = (self._stderr + data)[-2048:]

    def _exited(self) -> None:
        p = self.proc
        assert p is not None
        try:
            code = p.wait(1.0)
        except subprocess.TimeoutExpired:
            p.kill()
            code = p.wait()
        self._drain_stderr()
        self.stop()
        if code == 0 and self._catching_up:
            self._stderr = b""
            self.start(follow=True)  # read to the journal's end: follow from the last entry read
            return
        self.restarts += 1
        text = self._stderr.decode("utf-8", "replace").strip().replace("\n", " | ")
        self._stderr = b""
        self._failed(f"journalctl exited with status {code}" + (f": {text}" if text else ""))

    def _feed(self, chunk: bytes, out: list[JournalEvent]) -> None:
        buf = self._buf
        start = 0
        while True:
            nl = chunk.find(b"\n", start)
            if nl < 0:
                if not self._skipping:
                    buf += chunk[start:]
                    if len(buf) > MAX_LINE_BYTES:
                        self._oversize()
                return
            if self._skipping:
                self._skipping = False
            else:
                if buf:
                    buf += chunk[start:nl]
                    line = bytes(buf)
                    buf.clear()
                else:
                    line = chunk[start:nl]
                self._line(line, out)
            start = nl + 1

    def _oversize(self) -> None:
        self._buf.clear()
        self._skipping = True
        self.oversize += 1
        log.error("journal input %s: an entry's JSON line is over %d bytes: dropped (entry number %d after "
                  "cursor %s)", self.id, MAX_LINE_BYTES, self.read + 1, self.read_cursor)

    def _line(self, line: bytes, out: list[JournalEvent]) -> None:
        if not line.strip():
            return
        try:
            entry = json.loads(line)
            cursor = entry["__CURSOR"]
        except (ValueError, KeyError, TypeError):
            log.warning("journal input %s: journalctl printed a line that is not a journal entry: %.200r",
                        self.id, line)
            return
        if not isinstance(cursor, str):
            return
        try:
            realtime = int(entry.get("__REALTIME_TIMESTAMP"))
        except (TypeError, ValueError):
            realtime = cursor_realtime(cursor) or 0
        check, self._check_first = self._check_first, None
        if check is not None:
            if same_entry(check[0], cursor):
                if check[1] != "from":
                    return  # the entry we resumed at: read (or delivered) before, or older than the input
            elif check[1] == "delivered":
                self._gap(check[0], realtime)
        self.read_cursor = cursor
        self._n += 1
        self.read += 1
        self._inflight.append([self._n, cursor, realtime, False])
        out.append(JournalEvent(self.id, self.id, self.spec.topic, self.id, self._n, cursor, realtime, entry,
                                len(line)))

    def _gap(self, cursor: str, first_realtime: int) -> None:
        """The entry at ``cursor`` is gone from the journal: what lay between it and the first entry
        still there was never read. Said once, in the log, the status and a metric."""
        since = self.acked_realtime if cursor == self.acked_cursor and self.acked_realtime else cursor_realtime(cursor)
        self.gaps += 1
        self.gap = {"from": iso_us(since), "to": iso_us(first_realtime), "cursor": cursor,
                    "detected_at": datetime.now(UTC).isoformat(timespec="seconds")}
        log.error("journal input %s: GAP: entries from %s to %s were never read: the last entry read (cursor %s) "
                  "is no longer in the journal (vacuumed or rotated away first); reading goes on from %s",
                  self.id, self.gap["from"], self.gap["to"], cursor, self.gap["to"])

    # --- delivery -----------------------------------------------------------------------------

    def ack(self, n: int) -> None:
        """Entry ``n`` was acknowledged by Kafka (or dropped by a filter): move the saved cursor past
        every entry acknowledged together with all before it."""
        q = self._inflight
        if not q:
            return
        i = n - q[0][0]
        if i < 0 or i >= len(q):
            return  # read by an earlier journalctl of a removed input: nothing to do
        q[i][3] = True
        self.acked += 1
        last = None
        while q and q[0][3]:
            last = q.popleft()
        if last is not None:
            self.acked_cursor, self.acked_realtime = last[1], last[2]
            self.registry.set_journal_cursor(self.id, last[1], last[2])

    def status(self) -> dict[str, Any]:
        """The input in the agent's status key (``journals``): position, counts, gap, error."""
        return {"input": self.id, "topic": self.spec.topic, "running": self.running,
                "cursor": self.acked_cursor, "acked_time": iso_us(self.acked_realtime),
                "entries_read": self.read, "entries_acked": self.acked, "entries_dropped": self.dropped,
                "in_flight": len(self._inflight), "restarts": self.restarts, "gaps": self.gaps, "gap": self.gap,
                "oversize_dropped": self.oversize, "error": self.error}


class JournalInputs:
    """Every journal input of the collect list in force, polled by the agent's main loop."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.inputs: dict[str, JournalInput] = {}

    def set_inputs(self, specs: list[InputSpec]) -> None:
        """Start the new journal inputs, stop the removed ones; an unchanged one keeps its journalctl."""
        wanted = {s.path: s for s in specs if s.journal is not None}
        for input_id in list(self.inputs):
            old = self.inputs[input_id]
            spec = wanted.get(input_id)
            if spec is None or spec != old.spec:
                old.stop()
                del self.inputs[input_id]
        for input_id, spec in wanted.items():
            if input_id not in self.inputs:
                self.inputs[input_id] = JournalInput(spec, self.registry)

    def poll(self, budget: int, paused: Any = ()) -> list[JournalEvent]:
        """Entries of every running input, at most about ``budget`` bytes in all; inputs in ``paused``
        (Kafka refuses their topic: agent/refusals.py) are not read."""
        out: list[JournalEvent] = []
        for inp in self.inputs.values():
            if budget <= 0:
                break
            if inp.id in paused:
                continue
            got = inp.poll(budget)
            budget -= sum(ev.nbytes for ev in got)
            out += got
        return out

    def ack(self, events: list[JournalEvent]) -> None:
        for ev in events:
            inp = self.inputs.get(ev.input_id)
            if inp is not None:
                inp.ack(ev.n)

    def topic_of(self, input_id: str) -> str | None:
        """The topic of the journal input ``input_id`` now; None if it is not in the collect list."""
        inp = self.inputs.get(input_id)
        return inp.spec.topic if inp is not None else None

    def filenos(self) -> list[int]:
        return [fd for inp in self.inputs.values() if (fd := inp.fileno()) is not None]

    def status(self) -> list[dict[str, Any]]:
        return [inp.status() for inp in self.inputs.values()]

    def close(self) -> None:
        for inp in self.inputs.values():
            inp.stop()
