"""Records Kafka refused for good, held per file until the refusal goes away.

Why this exists: a permanent per-record refusal (record too large for the topic, topic not
authorised, unknown topic with auto-creation off, invalid topic name) comes back for every
record of a file, at every retry. Retrying record by record, logging each, and counting the
refused records outside the in-flight budget took a host's memory, disk (its own log) and a
core. The rules here, per file (Kafka key):

* the first refusal **pauses reading that file** (the other files go on: the tailer skips the
  sources in :attr:`Refusals.files`); the records that come back refused are *held* here, in
  order. They are what that file had in flight when the refusal came, so they are bounded by
  the in-flight cap, and they count against ``max_inflight_bytes`` for at most half of it so
  that the other files keep room to flow;
* retries are **per file, with a growing backoff** (1 s doubling to 60 s): one *probe* — the
  oldest held record — is produced again; only when Kafka accepts it are the others sent and
  the file resumed. A refusing topic costs one record per backoff, not a core;
* the log gets **one line per file and reason**, then at most one summary line a minute;
* a collect list that **removes the entry** drops its held records at once (nothing is
  acknowledged, so the registry offset stays before them: re-adding the entry reads them
  again); one that **changes its topic** re-targets them and retries at once.

Nothing here talks to Kafka: the agent feeds refusals and acknowledgements in and takes the
records that are due out, so the rules are unit-tested with plain values.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

FIRST_BACKOFF_S = 1.0
MAX_BACKOFF_S = 60.0
SUMMARY_EVERY_S = 60.0
#: a file whose refusal ends and starts again (a topic taking single records but not batches)
#: logs its refusal and its recovery again only after this long
RELOG_AFTER_S = 600.0


@dataclass(slots=True)
class HeldFile:
    """The refused records of one file (one source), oldest first, and its retry state."""

    source: str
    path: str
    topic: str
    reason: str
    since: float  # monotonic time of the first refusal
    since_wall: float  # the same, as wall-clock time (status shows it)
    records: deque[tuple[Any, bytes]] = field(default_factory=deque)  # (event, value)
    nbytes: int = 0
    backoff_s: float = FIRST_BACKOFF_S
    next_try: float = 0.0
    probe: Any = None  # the event sent as a probe, while it is in flight: hold back the rest
    attempts: int = 0

    def as_status(self, now: float) -> dict[str, Any]:
        return {"path": self.path, "topic": self.topic, "reason": self.reason, "lines": len(self.records),
                "bytes": self.nbytes, "since": self.since_wall, "retries": self.attempts,
                "next_retry_s": round(max(0.0, self.next_try - now), 1)}


class Refusals:
    """Held records per source; see the module docstring for the rules."""

    def __init__(self, *, first_backoff_s: float = FIRST_BACKOFF_S, max_backoff_s: float = MAX_BACKOFF_S,
                 summary_every_s: float = SUMMARY_EVERY_S) -> None:
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.summary_every_s = summary_every_s
        self.files: dict[str, HeldFile] = {}
        self.nbytes = 0
        self._logged: dict[tuple[str, str], float] = {}  # (source, reason or "ok") -> when logged
        self._last_summary = float("-inf")

    # --- what the agent feeds in -----------------------------------------------------------

    def refused(self, source: str, path: str, topic: str, reason: str, event: Any, value: bytes,
                now: float, wall: float) -> str | None:
        """Hold one refused record; returns the line to log if this (file, reason) is new, else None."""
        hf = self.files.get(source)
        if hf is None:
            hf = self.files[source] = HeldFile(source, path, topic, reason, now, wall)
            hf.next_try = now + self.first_backoff_s
        elif event is hf.probe:
            # the probe came back refused: wait longer before the next one
            hf.probe = None
            hf.backoff_s = min(self.max_backoff_s, hf.backoff_s * 2)
            hf.next_try = now + hf.backoff_s
        hf.reason = reason
        if event.topic != hf.topic:  # sent before the topic changed: it goes to the new one
            event = event._replace(topic=hf.topic)
        self._insert(hf, event, value)
        if not self._log_now((source, reason), now):
            return None
        return (f"kafka refuses the lines of {path} for topic {topic}: {reason}; reading that file is paused "
                f"and retried with a growing backoff (up to {self.max_backoff_s:.0f}s), its lines are held, "
                "not dropped; the other files go on")

    def _insert(self, hf: HeldFile, event: Any, value: bytes) -> None:
        # Records of a file come back in the order produced, but a probe's refusal can come after
        # records held earlier: keep them in file order so the oldest is always the probe.
        recs = hf.records
        off = event.offset
        if not recs or recs[-1][0].offset < off:
            recs.append((event, value))
        else:
            i = len(recs)
            while i > 0 and recs[i - 1][0].offset > off:
                i -= 1
            recs.insert(i, (event, value))
        n = len(value)
        hf.nbytes += n
        self.nbytes += n

    def accepted(self, event: Any, now: float) -> tuple[list[tuple[Any, bytes]], str | None]:
        """Kafka acknowledged `event`: if it was a held file's probe, the refusal is over.

        Returns the records to produce again now (the rest of the held ones) and a line to log,
        or ``([], None)`` when `event` was no probe.
        """
        source = event.source_id
        hf = self.files.get(source)
        if hf is None or hf.probe is not event:
            return [], None
        del self.files[source]
        self.nbytes -= hf.nbytes
        if not self._log_now((source, "ok"), now):
            return list(hf.records), ""
        return list(hf.records), (f"kafka accepts the lines of {hf.path} for topic {hf.topic} again after "
                                  f"{now - hf.since:.0f}s; {len(hf.records)} held line(s) sent, reading resumes")

    def due(self, now: float) -> list[tuple[Any, bytes]]:
        """The probes to produce now: the oldest held record of each file whose backoff ran out."""
        out = []
        for hf in self.files.values():
            if hf.probe is not None or hf.next_try > now or not hf.records:
                continue
            ev, value = hf.records.popleft()
            hf.nbytes -= len(value)
            self.nbytes -= len(value)
            hf.probe = ev
            hf.attempts += 1
            out.append((ev, value))
        return out

    def retarget(self, topic_of: Callable[[str], str | None], now: float) -> tuple[list[str], list[HeldFile]]:
        """After a new collect list: drop what no input reads any more, re-target a changed topic.

        `topic_of(source)` is the topic the source's file is read for now, None if it is not
        read any more. Returns log lines and the files whose topic changed (retry at once).
        """
        lines: list[str] = []
        moved: list[HeldFile] = []
        for source, hf in list(self.files.items()):
            topic = topic_of(source)
            if topic is None:
                del self.files[source]
                self.nbytes -= hf.nbytes
                self._forget_logged(source)
                lines.append(f"{hf.path} is no longer collected: its {len(hf.records)} line(s) held for topic "
                             f"{hf.topic} are dropped (none was acknowledged: the registry offset stays before them)")
            elif topic != hf.topic:
                lines.append(f"{hf.path} now goes to topic {topic} (was {hf.topic}): its {len(hf.records)} held "
                             "line(s) are sent there now")
                hf.topic = topic
                hf.records = deque((ev._replace(topic=topic), v) for ev, v in hf.records)
                hf.backoff_s = self.first_backoff_s
                hf.next_try = now
                self._forget_logged(source)
                moved.append(hf)
        return lines, moved

    def replace(self, hf: HeldFile, records: deque[tuple[Any, bytes]], now: float) -> None:
        """The held records of ``hf`` re-encoded (cut to a topic's limit): keep them, retry at once."""
        n = sum(len(v) for _, v in records)
        self.nbytes += n - hf.nbytes
        hf.records, hf.nbytes = records, n
        if hf.probe is None:
            hf.backoff_s = self.first_backoff_s
            hf.next_try = now

    def _log_now(self, key: tuple[str, str], now: float) -> bool:
        """Whether to log this (file, reason) now: the first time, then after RELOG_AFTER_S."""
        last = self._logged.get(key)
        if last is not None and now - last < RELOG_AFTER_S:
            return False
        if len(self._logged) >= 4096:
            self._logged = {k: t for k, t in self._logged.items() if now - t < RELOG_AFTER_S}
        self._logged[key] = now
        return True

    def _forget_logged(self, source: str) -> None:
        self._logged = {k: t for k, t in self._logged.items() if k[0] != source}

    # --- what the agent reads out -----------------------------------------------------------

    @property
    def error(self) -> str | None:
        """One line for ``last_error`` in the status and for /health, or None when nothing is held."""
        return f"kafka refuses the lines of {self.describe()}" if self.files else None

    def held_lines(self) -> int:
        return sum(len(hf.records) + (hf.probe is not None) for hf in self.files.values())

    def summary(self, now: float) -> str | None:
        """One line about every held file, at most once per `summary_every_s` (None otherwise)."""
        if not self.files or now - self._last_summary < self.summary_every_s:
            return None
        self._last_summary = now
        return "still refused by kafka: " + self.describe()

    def describe(self) -> str:
        parts = [f"{hf.path} → {hf.topic}: {hf.reason} ({len(hf.records) + (hf.probe is not None)} line(s) "
                 f"held, {hf.attempts} retries)" for hf in self.files.values()]
        return f"{len(self.files)} file(s): " + "; ".join(parts)

    def status(self, now: float) -> list[dict[str, Any]]:
        return [hf.as_status(now) for hf in self.files.values()]
