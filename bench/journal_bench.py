"""Part 7: the systemd journal → Kafka (issue 23), logagent beside rsyslog's imjournal → omkafka.

One real systemd-journald (``integration/journald.py``: a private mount namespace, volatile
storage, no rate limit) is filled by the test with ``systemd-cat`` (one stream, identifier
``bench-journal``); then each shipper reads every entry of that identifier from the journal's
beginning into a fresh topic, in turn, on the same journal:

- logagent with a journal input ``{"journal": {"identifiers": ["bench-journal"]},
  "start_at": "beginning"}`` (it runs ``journalctl -o json`` as a child: that child's CPU is counted
  with the agent's, the catch-up run's through the agent's reaped-children time: ``common.tree_cpu``);
- rsyslog with ``imjournal`` (reads the journal in-process through libsystemd) and a filter on
  the identifier, ``omkafka`` with the same producer settings as part 1's rsyslog run.

Both run through part 1's runners (bench/throughput.py ``run_logagent``, ``run_rsyslogd``): the
clock runs from the shipper's start to the last record in the topic; CPU is the process tree's.
Needs root (the namespace); without it the part says why and is skipped.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .common import StackRef, say
from .throughput import ACKS_ALL, run_logagent, run_rsyslogd

if TYPE_CHECKING:
    from integration.journald import Journald

IDENTIFIER = "bench-journal"


def fill(journald: Journald, work: Path, entries: int) -> float:
    """Write ``entries`` lines through ``systemd-cat``; seconds until journald holds the last one."""
    data = work / "journal-data.txt"
    with open(data, "w") as f:
        for start in range(0, entries, 10_000):
            f.write("".join(f"bench-journal entry {n:09d} GET /api/v1/items/{n % 977}/reviews?page=2 status=200 "
                            f"duration_ms={n % 1200} user={n % 5000}\n"
                            for n in range(start, min(entries, start + 10_000))))
    t0 = time.monotonic()
    with open(data, "rb") as f:
        subprocess.run([*journald.wrap, "systemd-cat", "-t", IDENTIFIER, "-p", "info"], stdin=f, check=True)
    want = f"bench-journal entry {entries - 1:09d} "
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        last = subprocess.run([*journald.wrap, "journalctl", "-t", IDENTIFIER, "-n", "1", "-o", "cat", "--no-pager"],
                              capture_output=True, text=True).stdout
        if last.startswith(want):
            return time.monotonic() - t0
        time.sleep(0.5)
    raise RuntimeError(f"journald did not hold the {entries:,} entries written within 300 s")


def rsyslog_conf(workdir: Path, broker: str, topic: str) -> str:
    params = ",".join(f'"{p}"' for p in ACKS_ALL)
    return (
        f'global(workDirectory="{workdir}" maxMessageSize="64k")\n'
        'module(load="imjournal" StateFile="imjournal.state" IgnorePreviousMessages="off" '
        'Ratelimit.Interval="0" PersistStateInterval="10000")\n'
        'module(load="omkafka")\n'
        'template(name="ecsj" type="string" string="{\\"@timestamp\\":\\"%timereported:::date-rfc3339%\\",'
        '\\"message\\":\\"%msg:::json%\\",\\"host\\":{\\"name\\":\\"%hostname:::json%\\"},'
        '\\"log\\":{\\"syslog\\":{\\"appname\\":\\"%programname:::json%\\"},\\"level\\":\\"%syslogseverity-text%\\"},'
        '\\"process\\":{\\"pid\\":\\"%procid:::json%\\"},\\"agent\\":{\\"type\\":\\"rsyslog\\"}}")\n'
        'main_queue(queue.type="LinkedList" queue.size="200000" queue.dequeueBatchSize="4096")\n'
        f'if $programname == "{IDENTIFIER}" then {{\n'
        f'  action(type="omkafka" broker=["{broker}"] topic="{topic}" template="ecsj" partitions.auto="on" '
        f'confParam=[{params},"linger.ms=20","batch.num.messages=10000"])\n'
        '}\n'
    )


def run_journal(stack: StackRef, work: Path, entries: int, *, timeout_s: float, peers: bool) -> dict:
    """Fill one journal, then ship it with logagent and (``peers``) rsyslog; their ratio."""
    from integration import journald as jmod

    why = jmod.unavailable()
    if why:
        say(f"journal part skipped: a journald cannot run here ({why})")
        return {"skipped": why}
    jd = jmod.Journald(work / "journald").start()
    try:
        fill_s = fill(jd, work, entries)
        say(f"journal: {entries:,} entries written by systemd-cat and held by journald in {fill_s:.1f}s")
        out: dict = {"entries": entries, "fill_s": round(fill_s, 1), "runs": []}
        source = {"journal": {"identifiers": [IDENTIFIER]}, "start_at": "beginning"}
        out["runs"].append(run_logagent(stack, [], entries, work, timeout_s=timeout_s, label="logagent journal",
                                        source=source, wrap=jd.wrap))
        if peers:
            out["runs"].append(run_rsyslogd(stack, lambda workdir, topic: rsyslog_conf(workdir, stack.kafka, topic),
                                            entries, work, timeout_s=timeout_s, label="rsyslog imjournal",
                                            wrap=jd.wrap))
        a, r = (out["runs"] + [None, None])[:2]
        if a and r and a.get("lines_per_s") and r.get("lines_per_s"):
            out["ratio_vs_rsyslog"] = round(a["lines_per_s"] / r["lines_per_s"], 2)
            out["cpu_ratio_vs_rsyslog"] = round(r["cpu_us_per_line"] / a["cpu_us_per_line"], 2)
            say(f"journal: logagent {out['ratio_vs_rsyslog']}x rsyslog imjournal's entries/s; CPU per entry "
                f"{a['cpu_us_per_line']} vs {r['cpu_us_per_line']} µs")
        return out
    finally:
        jd.stop()
