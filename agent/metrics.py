"""Prometheus metrics of logagent, and the same figures as a dict for the etcd status key.

One registry per process (not the global default) so tests can run several agents' code in one
interpreter without "duplicated timeseries" errors.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from logferry.httpstatus import HealthCheck, serve


class AgentMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.lines_read = Counter("logagent_lines_read", "Lines read from files", registry=r)
        self.bytes_read = Counter("logagent_bytes_read", "Bytes of lines read from files", registry=r)
        self.lines_sent = Counter("logagent_lines_sent", "Lines acknowledged by Kafka", registry=r)
        self.send_failures = Counter("logagent_send_failures", "Deliveries Kafka reported failed", registry=r)
        self.retries = Counter("logagent_send_retries", "Records produced again after a failure", registry=r)
        self.lines_truncated = Counter("logagent_lines_truncated", "Lines cut at max_line_bytes", registry=r)
        self.config_rejected = Counter("logagent_config_rejected", "Collect lists refused as invalid", registry=r)
        self.inflight_bytes = Gauge("logagent_inflight_bytes", "Bytes produced but not yet acknowledged", registry=r)
        self.inflight_lines = Gauge("logagent_inflight_lines", "Lines produced but not yet acknowledged", registry=r)
        self.files_tracked = Gauge("logagent_files", "Files currently harvested", registry=r)
        self.lag_bytes = Gauge("logagent_lag_bytes", "Bytes in files not yet acknowledged", registry=r)
        self.save_failures = Counter("logagent_save_failures", "Failed writes of the registry, stamp journal or "
                                     "saved collect list (disk full, read-only)", registry=r)
        self.blocked_files = Gauge("logagent_blocked_files", "Files paused because Kafka refuses their records",
                                   registry=r)
        self.held_lines = Gauge("logagent_held_lines", "Lines Kafka refused, held for a retry", registry=r)
        self.files_followed = Counter("logagent_files_followed", "Files rotated to a name no input matches while "
                                      "closed or while the agent was down, found and read to their end", registry=r)
        self.files_lost = Counter("logagent_files_lost", "Files gone (deleted, compressed) with bytes never read",
                                  registry=r)
        self.bytes_lost = Counter("logagent_bytes_lost", "Bytes known unread in files gone before they were read",
                                  registry=r)
        self.lines_dropped = Counter("logagent_lines_dropped", "Lines dropped by an input's include_lines/"
                                     "exclude_lines", ["input"], registry=r)
        self.lines_parsed = Counter("logagent_lines_parsed", "Lines parsed into fields by an input's parse",
                                    ["input"], registry=r)
        self.parse_failures = Counter("logagent_parse_failures", "Lines sent unparsed (flagged parse_failure) "
                                      "because they were not in their input's format", ["input"], registry=r)
        self.journal_entries_read = Counter("logagent_journal_entries_read", "Journal entries read", ["input"],
                                            registry=r)
        self.journal_entries_acked = Counter("logagent_journal_entries_acked", "Journal entries acknowledged by "
                                             "Kafka or dropped by a filter", ["input"], registry=r)
        self.journal_gaps = Counter("logagent_journal_gaps", "Times a journal input's saved cursor was gone from "
                                    "the journal (vacuumed or rotated away unread): entries lost", ["input"],
                                    registry=r)
        self.journal_restarts = Counter("logagent_journal_restarts", "Times a journal input's journalctl exited "
                                        "and was started again", ["input"], registry=r)
        self.backpressure = Gauge("logagent_backpressure", "1 while reading is paused for Kafka", registry=r)

    def serve(self, address: str, health: HealthCheck) -> None:
        """Serve /metrics and /health on "host:port" (an empty address disables it)."""
        if not address:
            return
        serve(address, self.registry, health)

    def summary(self) -> dict[str, float]:
        return {
            "lines_read": self.lines_read._value.get(),
            "bytes_read": self.bytes_read._value.get(),
            "lines_sent": self.lines_sent._value.get(),
            "send_failures": self.send_failures._value.get(),
            "retries": self.retries._value.get(),
            "lines_truncated": self.lines_truncated._value.get(),
            "config_rejected": self.config_rejected._value.get(),
            "inflight_bytes": self.inflight_bytes._value.get(),
            "inflight_lines": self.inflight_lines._value.get(),
            "files_followed": self.files_followed._value.get(),
            "files_lost": self.files_lost._value.get(),
            "bytes_lost": self.bytes_lost._value.get(),
        }

    def sync_inputs(self, pipes: Iterable[Any]) -> None:
        """Bring the inputs' filter and parse counts (agent/filters.py) into the labelled counters."""
        for pipe in pipes:
            for name, metric, now in (("dropped", self.lines_dropped, pipe.dropped),
                                      ("parsed", self.lines_parsed, pipe.parsed),
                                      ("failed", self.parse_failures, pipe.failed)):
                delta = now - pipe.exported.get(name, 0)
                if delta > 0:
                    metric.labels(input=pipe.path).inc(delta)
                    pipe.exported[name] = now

    def sync_journals(self, journals: list[dict[str, Any]]) -> None:
        """Bring the journal inputs' counts (agent/journal.py status) into the labelled counters."""
        for j in journals:
            for metric, key in ((self.journal_entries_read, "entries_read"), (self.journal_entries_acked,
                                "entries_acked"), (self.journal_gaps, "gaps"), (self.journal_restarts, "restarts")):
                c = metric.labels(input=j["input"])
                delta = (j.get(key) or 0) - c._value.get()
                if delta > 0:
                    c.inc(delta)

    def sync_tracker(self, counters: dict[str, int]) -> None:
        """Bring the file tracker's own counters (agent/tailer.py) into the Prometheus counters."""
        for name in ("files_followed", "files_lost", "bytes_lost"):
            metric = getattr(self, name)
            delta = counters.get(name, 0) - metric._value.get()
            if delta > 0:
                metric.inc(delta)
