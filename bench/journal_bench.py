"""Part 7: the systemd journal → Kafka (issue 23), logagent beside rsyslog's imjournal → omkafka.

One real systemd-journald (``integration/journald.py``: a private mount namespace, volatile
storage, no rate limit) is filled by the test with ``systemd-cat`` (one stream, identifier
``bench-journal``); then each shipper reads every entry of that identifier from the journal's
beginning into a fresh topic, in turn, on the same journal:

- logagent with a journal input ``{"journal": {"identifiers": ["bench-journal"]},
  "start_at": "beginning"}`` (it runs ``journalctl -o json`` as a child: that child's CPU is counted
  with the agent's, the catch-up run's through the agent's reaped-children time);
- rsyslog with ``imjournal`` (reads the journal in-process through libsystemd) and a filter on
  the identifier, ``omkafka`` with the same producer settings as part 1's rsyslog run.

The clock runs from the shipper's start to the last record in the topic; CPU is the process
tree's. Needs root (the namespace); without it the part says why and is skipped.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from .common import (
    AgentRun,
    OffsetWatcher,
    RssSampler,
    StackRef,
    create_topic,
    delete_topics,
    rss_mb,
    say,
    set_collect,
    wait_offsets,
)
from .throughput import ACKS_ALL, HOST_IP, _result

if TYPE_CHECKING:
    from integration.journald import Journald

IDENTIFIER = "bench-journal"


def tree_cpu(pid: int) -> float:
    """CPU seconds of ``pid``, its reaped children and its live children (utime+stime each)."""
    from .common import CLK_TCK

    def stat(p: int) -> list[str]:
        with open(f"/proc/{p}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()

    rest = stat(pid)
    total = sum(int(x) for x in rest[11:15])
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            kids += [int(k) for k in (task / "children").read_text().split()]
        except OSError:
            continue
    for k in kids:
        try:
            r = stat(k)
        except OSError:
            continue
        total += int(r[11]) + int(r[12])
    return total / CLK_TCK


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


def run_agent(stack: StackRef, journald: Journald, work: Path, entries: int, *, timeout_s: float) -> dict:
    topic = create_topic(stack.kafka, f"bench-jagent-{uuid.uuid4().hex[:8]}", 6)
    prefix = f"/bench-{uuid.uuid4().hex[:8]}"
    set_collect(stack.etcd, prefix, HOST_IP, [{"journal": {"identifiers": [IDENTIFIER]}, "topic": topic,
                                               "start_at": "beginning"}])
    watch = OffsetWatcher(stack.kafka, topic)
    agent = AgentRun(work / f"jagent-{uuid.uuid4().hex[:6]}", prefix, HOST_IP, wrap=journald.wrap)
    say(f"logagent journal: {entries:,} entries → topic {topic}")
    t0 = time.monotonic()
    agent.start(stack)
    sampler = RssSampler(agent.pid)
    try:
        ok, t1, n = wait_offsets(watch, entries, timeout_s=timeout_s, what="logagent journal", alive=agent.alive)
        cpu, peak = tree_cpu(agent.pid), rss_mb(agent.pid, "VmHWM")
    finally:
        rs = sampler.stop()
        agent.stop()
        watch.close()
        delete_topics(stack.kafka, [topic])
    if not ok:
        say(f"logagent journal log tail:\n{agent.log_tail()}")
    res = _result("logagent journal", 0, entries, 0, t1 - t0, cpu, peak, ok and n >= entries, records=n,
                  extra_records=n - entries, **rs)
    say(f"logagent journal: {res['lines_per_s'] or 0:,} entries/s, cpu {cpu:.1f}s "
        f"({res['cpu_us_per_line']} µs/entry), peak RSS {peak:.0f} MB")
    return res


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


def run_rsyslog(stack: StackRef, journald: Journald, work: Path, entries: int, *, timeout_s: float) -> dict:
    topic = create_topic(stack.kafka, f"bench-jrsyslog-{uuid.uuid4().hex[:8]}", 6)
    home = work / f"jrsyslog-{uuid.uuid4().hex[:6]}"
    (home / "work").mkdir(parents=True)
    conf = home / "rsyslog.conf"
    conf.write_text(rsyslog_conf(home / "work", stack.kafka, topic))
    check = subprocess.run(["/usr/sbin/rsyslogd", "-N1", "-f", str(conf)], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"rsyslog refuses its config: {check.stderr or check.stdout}")
    watch = OffsetWatcher(stack.kafka, topic)
    say(f"rsyslog imjournal: {entries:,} entries → topic {topic}")
    t0 = time.monotonic()
    log = open(home / "rsyslogd.log", "wb")  # noqa: SIM115 (closed in finally, after the daemon)
    proc = subprocess.Popen([*journald.wrap, "/usr/sbin/rsyslogd", "-n", "-f", str(conf), "-i",
                             str(home / "rsyslogd.pid")], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    sampler = RssSampler(proc.pid)
    try:
        ok, t1, n = wait_offsets(watch, entries, timeout_s=timeout_s, what="rsyslog imjournal",
                                 alive=lambda: proc.poll() is None)
        cpu, peak = tree_cpu(proc.pid), rss_mb(proc.pid, "VmHWM")
    finally:
        rs = sampler.stop()
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        watch.close()
        delete_topics(stack.kafka, [topic])
    if not ok:
        say("rsyslogd log tail:\n" + "\n".join((home / "rsyslogd.log").read_text(errors="replace").splitlines()[-20:]))
    res = _result("rsyslog imjournal", 0, entries, 0, t1 - t0, cpu, peak, ok and n >= entries, records=n,
                  extra_records=n - entries, **rs)
    say(f"rsyslog imjournal: {res['lines_per_s'] or 0:,} entries/s, cpu {cpu:.1f}s "
        f"({res['cpu_us_per_line']} µs/entry), peak RSS {peak:.0f} MB")
    return res


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
        out["runs"].append(run_agent(stack, jd, work, entries, timeout_s=timeout_s))
        if peers:
            out["runs"].append(run_rsyslog(stack, jd, work, entries, timeout_s=timeout_s))
        a, r = (out["runs"] + [None, None])[:2]
        if a and r and a.get("lines_per_s") and r.get("lines_per_s"):
            out["ratio_vs_rsyslog"] = round(a["lines_per_s"] / r["lines_per_s"], 2)
            out["cpu_ratio_vs_rsyslog"] = round(r["cpu_us_per_line"] / a["cpu_us_per_line"], 2)
            say(f"journal: logagent {out['ratio_vs_rsyslog']}x rsyslog imjournal's entries/s; CPU per entry "
                f"{a['cpu_us_per_line']} vs {r['cpu_us_per_line']} µs")
        return out
    finally:
        jd.stop()
