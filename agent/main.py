"""logagent's daemon: one synchronous main loop from files to Kafka, configured from etcd.

The loop, in Vector's vocabulary source → sink:

1. drain etcd watch events (a background thread of the etcd client puts them in a queue) and
   apply a changed collect list — validated first; a bad one is refused and the last good one
   stays;
2. read lines from the tail manager, but only while fewer than ``max_inflight_bytes`` are
   unacknowledged (backpressure: when Kafka is slow or down we stop reading instead of buffering);
3. produce them; serve delivery reports; hand each acknowledged offset back to the tail manager,
   which moves the registry (so a saved offset never passes an unacknowledged line);
4. save the registry about once a second, refresh the status key, sleep on inotify when idle.

SIGTERM/SIGINT: stop reading, wait (bounded) for what is in flight, save the registry, delete
the status key, exit 0.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import chain, groupby, repeat
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError

from logferry import __version__
from logferry.config import AgentConfig, ConfigError, load_agent_config
from logferry.envelope import SourceEncoder, journal_document, journal_record, source_key, timestamp_json
from logferry.etcd import EtcdClient, EtcdError, LeaseKeeper, WatchEvent

from .collectlist import CollectList
from .diskstate import DiskState
from .filters import InputPipeline, pipeline_for
from .hostip import host_ip
from .journal import JournalEvent, JournalInputs
from .metrics import AgentMetrics
from .parsers import ParsedTuple
from .producer import KafkaSink, refusal_reason
from .refusals import Refusals
from .registry import Registry, RegistryCorruptError
from .stamps import StampJournal
from .tailer import TailManager

log = logging.getLogger("logagent")

DEFAULT_CONFIG = "/etc/logferry/logagent.ini"
#: how long SIGTERM waits for Kafka to acknowledge what is in flight (systemd's TimeoutStopSec is above)
SHUTDOWN_FLUSH_S = 15.0
#: most file bytes one poll reads: a poll's lines, their records and their tokens are all alive at
#: once; 4 MiB made peak RSS 118 MB on one busy file, 1 MiB 83 MB at the same lines/s and CPU
POLL_BYTES = 1 << 20
#: lines of one input parsed together (Agent._parse_runs): a few of the JSON run path's chunks
PARSE_CHUNK = 256
#: what makes consecutive events one run of produce_events (one encoder, key and sink call)
_run_key = attrgetter("source_id", "path", "fields", "topic", "input_id")
_raw, _offset, _next_offset = attrgetter("raw"), attrgetter("offset"), attrgetter("next_offset")
_truncated, _lines = attrgetter("truncated"), attrgetter("lines")
#: longest sleep of an idle loop between polls (inotify, a flush deadline or a scan wakes it sooner)
IDLE_WAIT_S = 1.0
#: least time between two polls that read files to their end, per file read, and at most (the
#: latency it adds: 0.5 ms for one file, the most from 500 files on). 0.25 ms per file cost
#: 22.8 µs CPU/line over 1,000 files at 10,000 lines/s, 0.5 ms 17.1-17.6 (fewer, fuller reads)
GATHER_PER_FILE_S = 0.0005
GATHER_S = 0.25


class Agent:
    """State of one running agent; `run()` is the main loop."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        a = cfg.agent
        self.data_dir = Path(a.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.ip = host_ip(cfg.etcd.endpoints, a.host_ip)
        self.hostname = a.hostname or socket.gethostname()
        self.keys = cfg.etcd.keys()
        self.collect_key = self.keys.agent_collect(self.ip)
        self.metrics = AgentMetrics()
        self.collect = CollectList(self.data_dir)
        self.disk = DiskState(str(self.data_dir))
        self.registry = Registry(self.data_dir / "registry.json")
        self.registry.load()
        self.stamps = StampJournal(self.data_dir / "stamps.journal")
        self.tail = TailManager(
            [],
            self.registry,
            scan_interval_s=a.scan_interval_s,
            close_inactive_s=a.close_inactive_s,
            max_open_files=a.max_open_files,
        )
        self.tail.on_save_error = lambda e: self.save_failed("registry", self.registry.path, e)
        self.journals = JournalInputs(self.registry)  # the journal inputs (agent/journal.py)
        self._journal_sent = False  # a journal entry was produced: acks may hold JournalEvents
        self.sink = KafkaSink(cfg.kafka.producer_config(), client_id=f"logagent-{self.hostname}")
        self.events: queue.Queue[WatchEvent] = queue.Queue()
        self.stopping = threading.Event()
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.etcd_state = "connecting"
        self.last_error: str | None = None
        self._status_doc = b"{}"
        self._health: list[str] = ["starting"]  # reasons /health answers 503 (refresh_status)
        self._last_ack = time.monotonic()
        self._cuts: dict[str, list] = {}  # path -> [last warning time, lines cut since] (fit's log)
        self.refusals = Refusals()  # records Kafka refused for good, held per file (agent/refusals.py)
        self.tail.paused = self.refusals.files  # a held file is not read until its refusal is over
        self._encoders: dict[str, SourceEncoder] = {}  # source_id -> its encoder (and Kafka key)
        #: input id (its path) -> its filter/parser and counts; only inputs that filter or parse
        self._pipes: dict[str, InputPipeline] = {}
        self._filtering = False  # some input has include_lines/exclude_lines
        self.etcd: EtcdClient | None = None
        self.watch = None
        self.lease: LeaseKeeper | None = None

    # ----------------------------------------------------------------- etcd side
    def connect_etcd(self) -> None:
        """Read the collect list (or fall back to the saved one), then follow the key."""
        e = self.cfg.etcd
        self.etcd = EtcdClient(
            e.endpoints, user=e.user, password=e.password, ca_file=e.ca_file,
            cert_file=e.cert_file, key_file=e.key_file, timeout_s=e.dial_timeout_s,
        )
        start_revision = 0
        try:
            value, mod_rev, header_rev = self.etcd.get_with_revision(self.collect_key)
            self.etcd_state = "connected"
            self.apply_list(value, mod_rev)
            start_revision = header_rev + 1
        except EtcdError as exc:
            self.etcd_state = "unavailable"
            saved = self.collect.load_saved()
            self.note_error(f"etcd unavailable at start ({exc}); "
                            + (f"using the saved collect list of revision {saved.revision}" if saved
                               else "no saved collect list: collecting nothing until etcd answers"))
            if saved:
                self.set_inputs(saved.inputs)
            # Follow from just after what we have: the watch replays what we missed, or resyncs.
            start_revision = (saved.revision + 1) if saved else 1
        self.watch = self.etcd.watch(self.collect_key, prefix=False, start_revision=start_revision,
                                     sink=self.events)
        self.lease = LeaseKeeper(self.etcd, self.keys.agent_status(self.ip), lambda: self._status_doc,
                                 ttl_s=10, refresh_s=max(1.0, self.cfg.agent.status_interval_s))

    def set_inputs(self, inputs: list) -> None:
        """Hand the inputs to the tail manager and build each one's filter and parser (compiled once)."""
        self.tail.set_inputs([s for s in inputs if s.journal is None])
        self.journals.set_inputs(inputs)
        old = self._pipes
        pipes = {}
        for spec in inputs:
            pipe = pipeline_for(spec, old.get(spec.path))
            if pipe is not None:
                pipes[spec.path] = pipe
        self._pipes = pipes
        self._filtering = any(p.filter is not None for p in pipes.values())

    def apply_list(self, raw: bytes | None, revision: int) -> None:
        if revision and revision <= self.collect.applied.revision and self.collect.applied.source == "etcd":
            return  # already applied (a replay after a re-watch)
        if self.collect.offer(raw, revision):
            if self.collect.save_error is not None:
                self.save_failed("collect list", self.collect.path, self.collect.save_error)
            else:
                self.save_ok("collect list")
            if self.last_error and "collect list" in self.last_error:
                self.last_error = None  # a refused (or unreachable) list was replaced by a good one
            self.set_inputs(self.collect.applied.inputs)
            self.retarget_refused()
            log.info("collect list of revision %d applied: %d input(s) %s", revision,
                     len(self.collect.applied.inputs), [i.path for i in self.collect.applied.inputs])
        else:
            self.metrics.config_rejected.inc()
            self.last_error = self.collect.last_error
            if self.collect.applied.source == "none":
                # Starting with a bad list in etcd: go on with the last good one this host saved,
                # as when etcd is down at start, rather than collect nothing.
                saved = self.collect.load_saved()
                if saved:
                    self.set_inputs(saved.inputs)
                    log.warning("collect list in etcd refused at start; using the saved collect list of "
                                "revision %d (%d input(s)) until a good one is written", saved.revision,
                                len(saved.inputs))
        self.refresh_status(force=True)

    def drain_watch(self) -> None:
        latest: WatchEvent | None = None
        while True:
            try:
                ev = self.events.get_nowait()
            except queue.Empty:
                break
            if ev.kind in ("put", "delete"):
                latest = ev  # coalesce a burst (e.g. a replay) into its last state
            elif ev.kind == "error":
                if self.etcd_state != "unavailable":
                    log.warning("etcd watch broken: %s (collection goes on with the list in force)", ev.detail)
                self.etcd_state = "unavailable"
            elif ev.kind in ("restored", "resync"):
                log.info("etcd watch %s: %s", ev.kind, ev.detail)
                self.etcd_state = "connected"
        if latest is not None:
            self.etcd_state = "connected"
            self.apply_list(latest.value if latest.kind == "put" else None, latest.mod_revision)

    def retarget_refused(self) -> None:
        """A new collect list: drop held records no input reads any more, move a changed topic's."""
        if not self.refusals.files:
            return
        lines, moved = self.refusals.retarget(
            lambda src: self.journals.topic_of(src) or self.tail.topic_of(src), time.monotonic())
        for line in lines:
            log.info("%s", line)
        if moved:
            self.resend_due()

    # ----------------------------------------------------------------- own files
    def save_failed(self, what: str, path: Path, exc: OSError) -> None:
        """A write to the data directory failed: keep going, say so (once a minute at most)."""
        self.metrics.save_failures.inc()
        line = self.disk.failed(what, str(path), exc)
        if line is not None:
            log.error("%s", line)
            self.refresh_status(force=True)

    def save_ok(self, what: str) -> None:
        line = self.disk.ok(what)
        if line is not None:
            log.info("%s", line)
            self.refresh_status(force=True)

    # ----------------------------------------------------------------- status
    def note_error(self, msg: str) -> None:
        self.last_error = msg
        log.warning("%s", msg)

    def refresh_status(self, force: bool = False) -> None:
        files = []
        for input_id, entries in self.tail.snapshot().items():
            for f in entries:
                acked = f["acked_offset"] or 0
                files.append({"input": input_id, "path": f["path"], "offset": acked, "size": f["size"],
                              "lag_bytes": max(0, (f["size"] or 0) - acked), "open": f["open"]})
        files += [{"path": e.path, "error": str(e)} for e in self.tail.errors]
        journals = self.journals.status()
        # A journal input is a row of the files table too (OFFSET/SIZE: entries acknowledged/read),
        # so logctl status and the console list it beside the files; the details are in "journals".
        files += [{"input": j["input"], "path": j["input"], "offset": j["entries_acked"], "size": j["entries_read"],
                   "lag_bytes": 0, "open": j["running"], "journal": True} for j in journals]
        self.metrics.sync_journals(journals)
        self.metrics.files_tracked.set(len(files))
        self.metrics.sync_tracker(self.tail.counters)
        self.metrics.sync_inputs(self._pipes.values())
        self.metrics.lag_bytes.set(sum(f.get("lag_bytes", 0) for f in files))
        applied = self.collect.applied
        held = self.refusals.held_lines()
        self.metrics.blocked_files.set(len(self.refusals.files))
        self.metrics.held_lines.set(held)
        doc = {
            "hostname": self.hostname,
            "ip": self.ip,
            "version": __version__,
            "pid": os.getpid(),
            "started_at": self.started_at,
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "config": {"revision": applied.revision, "source": applied.source,
                       "inputs": len(applied.inputs), "rejected_revision": self.collect.rejected_revision,
                       "error": self.collect.last_error},
            "etcd": self.etcd_state,
            "kafka": {"inflight_lines": self.sink.inflight_count, "inflight_bytes": self.sink.inflight_bytes,
                      "held_lines": held, "held_bytes": self.refusals.nbytes,
                      "last_error": self.sink.last_error,
                      "blocked": self.refusals.status(time.monotonic())},
            "files": files,
            "files_lost": list(self.tail.losses),
            "journals": journals,
            "disk": self.disk.status(),
            "counters": self.metrics.summary(),
            "inputs": [{"path": p.path, **p.counts()} for p in self._pipes.values()],
            "last_error": self.collect.last_error or self.disk.error or self.refusals.error or self.last_error,
        }
        self._status_doc = json.dumps(doc, separators=(",", ":")).encode()
        self._health = self.health_reasons()
        if force and self.lease is not None:
            self.lease.refresh()

    def health_reasons(self) -> list[str]:
        """What keeps lines from being delivered now (empty: healthy); /health answers 503 with it."""
        reasons = []
        if self.collect.applied.source == "none":
            reasons.append(self.collect.last_error or "no collect list in force")
        waited = time.monotonic() - self._last_ack
        if self.sink.inflight_count and waited > 30:
            reasons.append(f"kafka: no acknowledgement for {waited:.0f}s with {self.sink.inflight_count} line(s) "
                           f"in flight ({self.sink.last_error or 'no error reported'})")
        return reasons + [e for e in (self.refusals.error, self.disk.error) if e]

    # ----------------------------------------------------------------- data path
    def drop_filtered(self, events: list) -> list:
        """The events the inputs' ``include_lines``/``exclude_lines`` keep; the others are counted
        and acknowledged at once (their offsets move as if Kafka had taken them), never sent."""
        pipes = self._pipes
        kept, dropped = [], []
        for ev in events:
            pipe = pipes.get(ev.input_id)
            if pipe is None or pipe.filter is None or pipe.filter.keep(ev.raw.decode("utf-8", "replace")):
                kept.append(ev)
            else:
                pipe.dropped += 1
                dropped.append(ev)
        if dropped:
            self.tail.ack_events(dropped)
            self.metrics.lines_read.inc(len(dropped))
            self.metrics.bytes_read.inc(sum(ev.next_offset - ev.offset for ev in dropped))
        return kept

    def produce_events(self, events: list) -> None:
        if self._filtering and events:
            events = self.drop_filtered(events)
        if not events:
            return
        # Consecutive events of one file (same source, path, fields, topic, input) form a run: one
        # encoder, one Kafka key, one call into the sink. groupby and attrgetter find the runs in C.
        runs = [list(g) for _, g in groupby(events, _run_key)]
        # One stamp per batch. A line read before a crash gets the stamp it was sent with (the
        # stamp journal, written ahead of producing): same @timestamp, same daily index, so
        # Elasticsearch overwrites the replayed copy instead of keeping it twice.
        now = time.time()
        stamps = self.stamps
        stamp_for = stamps.stamp_for
        run_stamps: list[list[float | None] | None] = []  # per run; None: every line `now`
        fresh: dict[str, list[int]] = {}  # source -> [start, end) of the lines stamped `now`
        for run in runs:
            src = run[0].source_id
            if stamps.none_from(src, min(map(_offset, run))):
                # the usual case, lines never read before: no lookup a line
                run_stamps.append(None)
                span = fresh.get(src)
                if span is None:
                    fresh[src] = [run[0].offset, run[-1].next_offset]
                else:
                    span[1] = run[-1].next_offset
                continue
            ts_list: list[float | None] = []
            for ev in run:
                ts = stamp_for(src, ev.offset)
                if ts is None:
                    span = fresh.get(src)
                    if span is None:
                        fresh[src] = [ev.offset, ev.next_offset]
                    else:
                        span[1] = ev.next_offset
                ts_list.append(ts)
            run_stamps.append(ts_list)
        if fresh:
            try:
                stamps.record(((src, a, b) for src, (a, b) in fresh.items()), now)
            except OSError as e:  # the stamps are kept in memory; only a crash would lose them
                self.save_failed("stamp journal", stamps.path, e)
        now_json = timestamp_json(now)
        ts_json: dict[float, bytes] = {}  # replayed stamps
        value_limit = self.sink.value_limit
        produce_many = self.sink.produce_many
        encoders = self._encoders
        nbytes = truncated = 0
        pipes = self._pipes
        parsed = None
        if pipes:  # (text, Parsed) of each parsed line, in the order of `events`
            flat: list[float | None] = []
            for run, ts_list in zip(runs, run_stamps, strict=True):
                flat.extend([None] * len(run) if ts_list is None else ts_list)
            parsed = self._parse_runs(events, flat, now)
        for run, ts_list in zip(runs, run_stamps, strict=True):
            ev0 = run[0]
            topic = ev0.topic
            enc = encoders.get(ev0.source_id)
            if enc is None or enc.path != ev0.path or enc.fields is not ev0.fields:
                enc = self._encoder(ev0)
            limit = value_limit(topic, len(enc.key))
            pipe = pipes.get(ev0.input_id) if pipes else None
            parser = pipe.parser if pipe is not None else None
            nbytes += sum(map(_next_offset, run)) - sum(map(_offset, run))
            if parser is None and ts_list is None:
                # Plain fresh lines, the bulk of any agent's work: encoded by map in C, no bytecode a line.
                values = list(map(enc.encode, map(_raw, run), map(_offset, run), repeat(now_json),
                                  map(_truncated, run), map(_lines, run)))
                if max(map(len, values)) <= limit:
                    truncated += sum(map(bool, map(_truncated, run)))
                    produce_many(topic, enc.key, list(zip(values, run, strict=True)))
                    continue
                # a record over Kafka's limit (rare): the per-line path below cuts it to fit
            out: list[tuple[bytes, Any]] = []
            for i, ev in enumerate(run):
                ts = None if ts_list is None else ts_list[i]
                if ts is None:
                    tj = now_json
                else:
                    tj = ts_json.get(ts)
                    if tj is None:
                        tj = ts_json[ts] = timestamp_json(ts)
                if parser is None:
                    value = enc.encode(ev.raw, ev.offset, tj, ev.truncated, ev.lines)
                else:
                    # Parsed from the line alone (and its journalled read time): a line read again
                    # after a crash gets the same fields, @timestamp and event.id.
                    # (p: log_part, event_part, top_part, ts, error; the counts are _parse_runs')
                    text, p = next(parsed)  # type: ignore[arg-type]
                    if p[3] is not None:  # (lines of one second share their time: formatted once a batch)
                        tj = ts_json.get(p[3])
                        if tj is None:
                            tj = ts_json[p[3]] = timestamp_json(p[3])
                    value = enc.encode_parsed(text, ev.offset, tj, ev.truncated, ev.lines, p[0], p[1], p[2],
                                              p[4] is not None)
                if len(value) > limit:
                    value = self.fit(enc, ev, tj, value, limit)
                    truncated += 1
                elif ev.truncated:
                    truncated += 1
                out.append((value, ev))
            produce_many(topic, enc.key, out)
        # prometheus' inc() takes a lock: once per batch
        self.metrics.lines_read.inc(len(events))
        self.metrics.bytes_read.inc(nbytes)
        if truncated:
            self.metrics.lines_truncated.inc(truncated)

    def _parse_runs(self, events: list, stamps: list[float | None], now: float) -> Iterator[tuple[str, ParsedTuple]]:
        """Each parsed line's text and result (a :class:`~agent.parsers.Parsed`, or the plain tuple
        equal to it), in the order of ``events``; the input's ``parsed`` and ``failed`` counts go up
        as each chunk is parsed.

        Why: the parser takes consecutive lines of one input at once (``LineParser.many_tuples``),
        which does per run what it would otherwise do per line (the JSON checks' text scans, the
        calls, the result's construction). The results are what parsing each line alone gives, with
        its read time (its journalled stamp, or ``now``). Lazily, :data:`PARSE_CHUNK` lines at a
        time: a poll's results all held at once (megabytes) would leave the CPU's caches before they
        are encoded. The lines of a chunk are handed out by ``zip`` under ``chain`` (C), and counted
        a chunk at a time, not in Python a line at a time."""

        def chunks() -> Iterator[Iterator[tuple[str, ParsedTuple]]]:
            pipes = self._pipes
            error = itemgetter(4)  # (Parsed.error)
            i, n = 0, len(events)
            while i < n:
                inp = events[i].input_id
                j = i + 1
                while j < n and events[j].input_id == inp:
                    j += 1
                pipe = pipes.get(inp)
                if pipe is not None and pipe.parser is not None:
                    many = pipe.parser.many_tuples
                    for a in range(i, j, PARSE_CHUNK):
                        b = min(j, a + PARSE_CHUNK)
                        texts = [ev.raw.decode("utf-8", "replace") for ev in events[a:b]]
                        reads = stamps[a:b]
                        # (fresh lines have no stamp: `now` for all, without a test a line)
                        reads = [now] * (b - a) if reads.count(None) == b - a else \
                            [now if ts is None else ts for ts in reads]
                        results = many(texts, reads)
                        failed = b - a - list(map(error, results)).count(None)
                        pipe.parsed += b - a - failed
                        pipe.failed += failed
                        yield zip(texts, results, strict=True)
                i = j

        return chain.from_iterable(chunks())

    def produce_journal(self, events: list[JournalEvent]) -> None:
        """Journal entries to Kafka: filtered and parsed on their MESSAGE like a file's lines, one
        record each (logferry/envelope.py journal_document), keyed by host IP and input id."""
        pipes = self._pipes
        value_limit = self.sink.value_limit
        dropped: list[JournalEvent] = []
        truncated = 0
        for ev in events:
            spec = self.journals.inputs[ev.input_id].spec if ev.input_id in self.journals.inputs else None
            if spec is None:
                continue
            doc = journal_document(ev.entry, host_name=self.hostname, host_ip=self.ip, fields=spec.fields,
                                   agent_version=__version__, max_message_bytes=spec.max_line_bytes)
            pipe = pipes.get(ev.input_id)
            if pipe is not None:
                text = doc["message"]
                if pipe.filter is not None and not pipe.filter.keep(text):
                    pipe.dropped += 1
                    self.journals.inputs[ev.input_id].dropped += 1
                    dropped.append(ev)
                    continue
                if pipe.parser is not None:
                    self._parse_journal(pipe, doc, ev)
            value = journal_record(doc)
            key = source_key(self.ip, ev.source_id)
            limit = value_limit(ev.topic, len(key))
            if len(value) > limit:  # cut the message to fit the topic's record limit, flagged truncated
                msg = doc["message"]
                while len(value) > limit and msg:
                    msg = msg[: int(len(msg) * (limit / len(value)) * 0.95)]
                    doc["message"] = msg
                    flags = doc["log"].setdefault("flags", [])
                    if "truncated" not in flags:
                        flags.append("truncated")
                    value = journal_record(doc)
            if "truncated" in doc["log"].get("flags", ()):
                truncated += 1
            self.sink.produce(ev.topic, key, value, ev)
            self._journal_sent = True
        if dropped:
            self.journals.ack(dropped)
        self.metrics.lines_read.inc(len(events))
        self.metrics.bytes_read.inc(sum(ev.nbytes for ev in events))
        if truncated:
            self.metrics.lines_truncated.inc(truncated)

    @staticmethod
    def _parse_journal(pipe: InputPipeline, doc: dict, ev: JournalEvent) -> None:
        """The input's parse applied to MESSAGE: the fields merged in (the journal's own win), a time
        the message carries becomes @timestamp, a failure flags parse_failure."""
        log, event, top, ts, error = pipe.parser.parts(doc["message"], ev.realtime_us / 1e6)  # (objects, not JSON)
        if error is None:
            pipe.parsed += 1
        else:
            pipe.failed += 1
            doc["log"].setdefault("flags", []).append("parse_failure")
        if ts is not None:
            doc["@timestamp"] = timestamp_json(ts).decode("ascii")

        def merge(dst: dict, src: dict) -> None:
            for k, v in src.items():
                if k not in dst:
                    dst[k] = v
                elif isinstance(dst[k], dict) and isinstance(v, dict):
                    merge(dst[k], v)

        for target, part in ((doc["log"], log), (doc["event"], event), (doc, top)):
            if part:
                merge(target, part)

    def _encoder(self, ev: Any) -> SourceEncoder:
        if len(self._encoders) >= 4096:
            self._encoders.clear()  # sources come and go (rotation): keep the cache bounded
        enc = self._encoders[ev.source_id] = SourceEncoder(
            host_name=self.hostname, host_ip=self.ip, path=ev.path, file_identity=ev.source_id,
            fields=ev.fields, agent_version=__version__)
        return enc

    def fit(self, enc: SourceEncoder, ev: Any, ts_json: bytes, value: bytes, limit: int) -> bytes:
        """Cut a line whose record is over Kafka's size limit, and mark it truncated.

        ``max_line_bytes`` bounds the raw line, but Kafka bounds the JSON record, which can be
        far larger (NUL becomes ``\\u0000``, 6 bytes). Refused by librdkafka, such a line would
        stop the file forever; cut to fit, it is shipped and flagged like any over-long line.
        """
        raw = ev.raw
        while len(value) > limit and raw:
            # (a cut inside a UTF-8 sequence becomes U+FFFD, as at max_line_bytes)
            raw = raw[: int(len(raw) * (limit / len(value)) * 0.95)]
            value = enc.encode(raw, ev.offset, ts_json, True, ev.lines)
        # one line per file a minute, with the count: a topic with a small limit may cut many
        now = time.monotonic()
        seen = self._cuts.get(ev.path)
        if seen is None or now - seen[0] >= 60.0:
            if len(self._cuts) >= 4096:
                self._cuts.clear()
            more = f" (and {seen[1]} more line(s) of this file since the last such message)" if seen and seen[1] else ""
            self._cuts[ev.path] = [now, 0]
            log.warning("a line of %s at offset %d makes a Kafka record over %d bytes: cut to %d bytes and "
                        "marked truncated%s (raise [kafka] producer.message.max.bytes and the topic's "
                        "max.message.bytes to keep such lines whole)", ev.path, ev.offset, limit, len(raw), more)
        else:
            seen[1] += 1
        return value

    def fit_held(self, topics: set[str]) -> None:
        """Records held because ``topics`` refused them as too large: learn each topic's limit,
        cut what is over it, and retry at once (through the one-record-per-batch producer)."""
        for topic in topics:
            if self.sink.learn_limit(topic) is None:
                continue
            for hf in self.refusals.files.values():
                if hf.topic != topic or not hf.records:
                    continue
                ev0, value0 = hf.records[0]
                if isinstance(ev0, JournalEvent):
                    continue  # (journal records are cut to the learned limit when produced again)
                enc = self._encoders.get(ev0.source_id) or self._encoder(ev0)
                limit = self.sink.value_limit(topic, len(enc.key))
                ts0 = json.loads(value0)["@timestamp"].encode("ascii")
                least = len(enc.encode(b"", ev0.offset, ts0, True, ev0.lines))
                if least > limit:  # even an empty line's record is over it: nothing to cut
                    hf.reason = (f"MSG_SIZE_TOO_LARGE: a record for topic {topic} cannot be smaller than {least} "
                                 f"bytes (an empty line's), and the topic takes at most "
                                 f"{self.sink.topic_max[topic]} bytes a batch: raise its max.message.bytes")
                    continue
                refit = deque()
                for ev, value in hf.records:
                    if len(value) > limit:
                        ts_json = json.loads(value)["@timestamp"].encode("ascii")
                        value = self.fit(enc, ev, ts_json, value, limit)
                    refit.append((ev, value))
                self.refusals.replace(hf, refit, time.monotonic())

    def handle_deliveries(self, deliveries: tuple[list, list]) -> None:
        acked, failed = deliveries
        if acked:
            self._last_ack = time.monotonic()
            if self._journal_sent:
                jacked = [ev for ev in acked if type(ev) is JournalEvent]
                if jacked:
                    self.journals.ack(jacked)
                    acked = [ev for ev in acked if type(ev) is not JournalEvent]
                    self.metrics.lines_sent.inc(len(jacked))
                    if self.refusals.files:
                        self._probes_accepted(jacked)
            self.tail.ack_events(acked)
            self.metrics.lines_sent.inc(len(acked))
            if self.refusals.files:
                self._probes_accepted(acked)
        if failed:
            # Not acknowledged: the file offset stays before these lines. They are held (per
            # file, reading that file paused) and retried by a probe with a growing backoff.
            now, wall = time.monotonic(), time.time()
            refused = self.refusals.refused
            too_large: set[str] = set()
            for d in failed:
                ev = d.token
                line = refused(ev.source_id, ev.path, ev.topic, refusal_reason(d.error), ev,
                               d.value, now, wall)
                if line is not None:
                    log.warning("%s", line)
                if d.error.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    too_large.add(ev.topic)
            self.metrics.send_failures.inc(len(failed))
            if too_large:
                self.fit_held(too_large)

    def _probes_accepted(self, acked: list) -> None:
        now = time.monotonic()
        resumed = False
        for ev in acked:
            if ev.source_id in self.refusals.files:
                records, line = self.refusals.accepted(ev, now)
                if line is not None:  # "" when said lately (a refusal that comes and goes)
                    if line:
                        log.info("%s", line)
                    resumed = True
                    self._produce_again(records)
        if resumed:
            self.refresh_status(force=True)

    def _produce_again(self, records: list[tuple[Any, bytes]]) -> None:
        produce = self.sink.produce
        for ev, value in records:
            produce(ev.topic, source_key(self.ip, ev.source_id), value, ev)
        self.metrics.retries.inc(len(records))

    def resend_due(self) -> None:
        """Produce the probe of each held file whose backoff ran out; log the summary when due."""
        if not self.refusals.files:
            return
        now = time.monotonic()
        due = self.refusals.due(now)
        if due:
            self._produce_again(due)
        summary = self.refusals.summary(now)
        if summary is not None:
            log.warning("%s", summary)

    def save_registry(self) -> None:
        """Save the offsets, then drop the stamps of lines that can no longer be read again.

        A full or read-only data directory is no reason to stop shipping: the offsets are in
        memory, the save is tried again a second later, and the status says what a restart
        now would send again.
        """
        try:
            saved = self.registry.save()
        except OSError as e:
            self.save_failed("registry", self.registry.path, e)
            return
        self.save_ok("registry")
        if saved:
            try:
                self.stamps.compact({e.source: e.offset for e in self.registry})
            except OSError as e:
                self.save_failed("stamp journal", self.stamps.path, e)
                return
            self.save_ok("stamp journal")

    def run(self) -> int:
        a = self.cfg.agent
        self.metrics.serve(a.metrics_address or "", lambda: self._health)
        log.info("logagent %s starting: host %s ip %s, collect key %s, data dir %s",
                 __version__, self.hostname, self.ip, self.collect_key, self.data_dir)
        self.connect_etcd()
        last_save = last_status = time.monotonic()
        while not self.stopping.is_set():
            self.drain_watch()
            # Records held for a refusing topic are memory too: they count against the cap, but
            # for at most half of it, so that the files whose topics take their lines go on.
            budget = (a.max_inflight_bytes - self.sink.inflight_bytes
                      - min(self.refusals.nbytes, a.max_inflight_bytes // 2))
            read_any = False
            if budget > 0:
                self.metrics.backpressure.set(0)
                poll_at = time.monotonic()
                events = self.tail.poll(min(budget, POLL_BYTES))
                if events:
                    read_any = True
                    self.produce_events(events)
                if self.journals.inputs:
                    jevents = self.journals.poll(min(budget, 4 << 20), self.refusals.files)
                    if jevents:
                        read_any = True
                        self.produce_journal(jevents)
            else:
                self.metrics.backpressure.set(1)
            self.handle_deliveries(self.sink.poll(0))
            self.resend_due()
            self.metrics.inflight_bytes.set(self.sink.inflight_bytes)
            self.metrics.inflight_lines.set(self.sink.inflight_count)
            now = time.monotonic()
            if now - last_save >= 1.0:
                self.save_registry()
                last_save = now
            if now - last_status >= a.status_interval_s:
                self.refresh_status()
                last_status = now
            if not read_any:
                if self.sink.inflight_count or budget <= 0:
                    self.handle_deliveries(self.sink.poll(0.05))
                else:  # (inotify wakes it; journal inputs are read from a pipe inotify does not watch)
                    self.tail.wait(0.1 if self.journals.inputs else IDLE_WAIT_S)
            elif not self.tail.busy and not self.journals.inputs:
                # Every file read to its end: let lines gather for a time in proportion to the
                # files read (a read costs the same for one line as for a hundred), so many slow
                # files are not read a line at a time; one busy file waits a fraction of a ms.
                gather = min(GATHER_S, self.tail.files_read * GATHER_PER_FILE_S)
                time.sleep(max(0.0, poll_at + gather - time.monotonic()))
        return self.shutdown()

    def shutdown(self) -> int:
        log.info("stopping: %d line(s) in flight, waiting up to %.0fs for Kafka", self.sink.inflight_count,
                 SHUTDOWN_FLUSH_S)
        deadline = time.monotonic() + SHUTDOWN_FLUSH_S
        while self.sink.inflight_count and time.monotonic() < deadline:
            self.handle_deliveries(self.sink.poll(0.1))
        left = self.sink.inflight_count + self.refusals.held_lines()
        self.save_registry()
        self.stamps.close()
        self.tail.close()
        self.journals.close()
        if self.lease is not None:
            self.lease.stop(delete=True)
        if self.etcd is not None:
            self.etcd.close()
        if left:
            log.warning("stopped with %d unacknowledged line(s): they are read again at the next start "
                        "(same event.id, so Elasticsearch keeps one copy)", left)
        log.info("stopped")
        return 0


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO), stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="logagent",
        description="Tail the files this host's collect list in etcd names and produce each line to Kafka. "
                    "The list lives at <prefix>/agents/<host-ip>/collect and is followed live.",
    )
    ap.add_argument("--config", default=DEFAULT_CONFIG, help=f"bootstrap INI (default {DEFAULT_CONFIG})")
    ap.add_argument("--check-config", action="store_true", help="validate the INI, print the host IP, and exit")
    ap.add_argument("--version", action="version", version=f"logagent {__version__}")
    args = ap.parse_args(argv)
    try:
        cfg = load_agent_config(args.config)
    except ConfigError as e:
        print(f"logagent: {e}", file=sys.stderr)
        return 2
    setup_logging(cfg.agent.log_level)
    if args.check_config:
        print(f"{args.config}: OK; host ip {host_ip(cfg.etcd.endpoints, cfg.agent.host_ip)}")
        return 0
    # The hot path allocates many short-lived objects and no cycles: a higher gen-0 threshold
    # makes the collector run far less often (measured ~1.6x faster poll+ack).
    gc.set_threshold(100_000, 50, 100)
    try:
        agent = Agent(cfg)
    except RegistryCorruptError as e:
        log.error("%s", e)
        return 1
    except OSError as e:
        log.error("cannot start: %s (check [agent] data_dir in %s and its permissions)", e, args.config)
        return 1

    def on_signal(signum: int, _frame: object) -> None:
        log.info("received %s", signal.Signals(signum).name)
        agent.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        return agent.run()
    except EtcdError as e:
        log.error("etcd: %s", e)
        return 1


if __name__ == "__main__":
    sys.exit(main())
