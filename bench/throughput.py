"""Part 1: files → Kafka throughput of logagent, rsyslog (imfile → omkafka) and kcat (the ceiling).

Each contender gets pre-written files and a fresh 6-partition topic, and the clock runs from
its process start until the topic's end offsets sum to the line count (for logagent also until
its saved registry holds every file's full size: the point where a crash loses nothing).
CPU is utime+stime from /proc/<pid>/stat at that moment (with its children's, see
``common.tree_cpu``), peak RSS is VmHWM. The journal part (bench/journal_bench.py) runs the same
two runners on a journal input and imjournal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from .common import (
    AgentRun,
    OffsetWatcher,
    RssSampler,
    StackRef,
    create_topic,
    delete_topics,
    is_running,
    rss_mb,
    say,
    set_collect,
    thread_cpu,
    tree_cpu,
    wait_offsets,
)

ACKS_ALL = ["acks=all", "enable.idempotence=true", "compression.codec=lz4"]
HOST_IP = "127.0.0.1"


def _result(name: str, files: int, lines: int, nbytes: int, seconds: float, cpu: float, peak_rss: float,
            ok: bool, **extra) -> dict:
    return {
        "tool": name, "files": files, "lines": lines, "bytes": nbytes, "ok": ok,
        "seconds": round(seconds, 2),
        "lines_per_s": round(lines / seconds) if ok else None,
        "mb_per_s": round(nbytes / seconds / 1e6, 1) if ok else None,
        "cpu_s": round(cpu, 2),
        "cpu_us_per_line": round(cpu / lines * 1e6, 2) if ok else None,
        "peak_rss_mb": round(peak_rss, 1),
    } | extra


# ------------------------------------------------------------------------------------ logagent
def run_logagent(stack: StackRef, paths: list[Path], lines: int, work: Path, *, timeout_s: float,
                 label: str = "logagent", extra_agent: dict | None = None, extra_kafka: dict | None = None,
                 profile_svg: Path | None = None, keep_topic: str | None = None,
                 input_extra: dict | None = None, source: dict | None = None,
                 wrap: list[str] | None = None) -> dict:
    """logagent ships ``lines`` records into a fresh topic: from ``paths`` (a glob per directory),
    or from ``source`` (one collect-list entry but its topic, e.g. a journal input; ``paths`` empty),
    run under ``wrap`` when given."""
    topic = create_topic(stack.kafka, keep_topic or f"bench-agent-{uuid.uuid4().hex[:8]}", 6)
    prefix = f"/bench-{uuid.uuid4().hex[:8]}"
    globs = sorted({str(p.parent / "*.log") for p in paths})
    inputs = [{**source, "topic": topic}] if source is not None else \
        [{"path": g, "topic": topic, "start_at": "beginning", **(input_extra or {})} for g in globs]
    set_collect(stack.etcd, prefix, HOST_IP, inputs)
    sizes = {str(p): p.stat().st_size for p in paths}
    nbytes = sum(sizes.values())
    watch = OffsetWatcher(stack.kafka, topic)
    home = work / f"agent-{uuid.uuid4().hex[:6]}"
    agent = AgentRun(home, prefix, HOST_IP, extra_agent=extra_agent or {}, extra_kafka=extra_kafka or {}, wrap=wrap)

    def registry_done() -> bool:
        reg = agent.registry_offsets()
        return all(reg.get(p) == s for p, s in sizes.items())

    say(f"{label}: {len(paths)} file(s), {lines:,} lines, {nbytes / 1e6:.0f} MB → topic {topic}")
    t0 = time.monotonic()
    agent.start(stack)
    sampler = RssSampler(agent.pid)
    spy = None
    if profile_svg is not None:
        spy = _py_spy(agent.pid, profile_svg)
    try:
        ok, t1, n = wait_offsets(watch, lines, timeout_s=timeout_s, what=label, alive=agent.alive,
                                 extra_done=registry_done)
        cpu, peak = tree_cpu(agent.pid), rss_mb(agent.pid, "VmHWM")
        threads = thread_cpu(agent.pid)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(60)
    finally:
        rs = sampler.stop()
        agent.stop()
        watch.close()
        if not keep_topic:
            delete_topics(stack.kafka, [topic])
    if not ok:
        say(f"{label} log tail:\n{agent.log_tail()}")
    # More records than lines means the agent split a line (see BENCHMARKS.md, "Findings"): the
    # throughput still counts (every byte was delivered), the anomaly is reported with the figures.
    res = _result(label, len(paths), lines, nbytes, t1 - t0, cpu, peak, ok and n >= lines, records=n,
                  extra_records=n - lines, thread_cpu_s=threads, **rs)
    say(f"{label}: {res['lines_per_s'] or 0:,} lines/s, {res['mb_per_s']} MB/s, cpu {cpu:.1f}s, "
        f"peak RSS {peak:.0f} MB ({t1 - t0:.1f}s)")
    return res


def _py_spy(pid: int, svg: Path) -> subprocess.Popen | None:
    from .common import VENV_BIN

    exe = VENV_BIN / "py-spy"
    if not exe.exists():
        say("py-spy is not installed in the venv (pip install py-spy): no profile")
        return None
    svg.parent.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen([str(exe), "record", "--pid", str(pid), "--rate", "200", "--nonblocking",
                             "-o", str(svg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ------------------------------------------------------------------------------------ rsyslog
RSYSLOG_TEMPLATE = (
    # The same envelope shape as logagent's record (ECS names), minus event.id: a fair load on both
    # sides. imfile's metadata gives the file name and the line's offset.
    'template(name="ecs" type="string" string="{\\"@timestamp\\":\\"%timegenerated:::date-rfc3339%\\",'
    '\\"message\\":\\"%msg:::json%\\",\\"host\\":{\\"name\\":\\"%hostname:::json%\\"},'
    '\\"log\\":{\\"file\\":{\\"path\\":\\"%$!metadata!filename:::json%\\"},\\"offset\\":%$!metadata!fileoffset%},'
    '\\"agent\\":{\\"type\\":\\"rsyslog\\"}}")\n'
)


def rsyslog_conf(workdir: Path, globs: list[str], broker: str, topic: str) -> str:
    inputs = "".join(
        f'input(type="imfile" file="{g}" tag="bench" ruleset="tokafka" readMode="0" addMetadata="on" '
        f'freshStartTail="off" persistStateInterval="0")\n' for g in globs)
    params = ",".join(f'"{p}"' for p in ACKS_ALL)
    return (
        f'global(workDirectory="{workdir}" maxMessageSize="64k")\n'
        'module(load="imfile" mode="inotify")\n'
        'module(load="omkafka")\n'
        + RSYSLOG_TEMPLATE + inputs +
        # A bounded in-memory queue with big batches in front of omkafka, one worker: librdkafka does
        # the batching and compression in its own threads, as in logagent.
        'ruleset(name="tokafka" queue.type="LinkedList" queue.size="200000" queue.dequeueBatchSize="4096" '
        'queue.workerThreads="1") {\n'
        f'  action(type="omkafka" broker=["{broker}"] topic="{topic}" template="ecs" partitions.auto="on" '
        f'confParam=[{params},"linger.ms=20","batch.num.messages=10000"])\n'
        '}\n'
    )


def run_rsyslog(stack: StackRef, paths: list[Path], lines: int, work: Path, *, timeout_s: float) -> dict:
    globs = sorted({str(p.parent / "*.log") for p in paths})
    return run_rsyslogd(stack, lambda workdir, topic: rsyslog_conf(workdir, globs, stack.kafka, topic), lines, work,
                        timeout_s=timeout_s, files=len(paths), nbytes=sum(p.stat().st_size for p in paths))


def run_rsyslogd(stack: StackRef, conf: Callable[[Path, str], str], lines: int, work: Path, *, timeout_s: float,
                 label: str = "rsyslog", files: int = 0, nbytes: int = 0, wrap: list[str] | None = None) -> dict:
    """rsyslogd with ``conf(workdir, topic)`` (run under ``wrap`` when given) until the fresh topic
    holds ``lines`` records; its result as the other contenders'."""
    topic = create_topic(stack.kafka, f"bench-rsyslog-{uuid.uuid4().hex[:8]}", 6)
    home = work / f"rsyslog-{uuid.uuid4().hex[:6]}"
    (home / "work").mkdir(parents=True)
    conf_file = home / "rsyslog.conf"
    conf_file.write_text(conf(home / "work", topic))
    check = subprocess.run(["/usr/sbin/rsyslogd", "-N1", "-f", str(conf_file)], capture_output=True, text=True)
    if check.returncode != 0:
        raise RuntimeError(f"rsyslog refuses its config: {check.stderr or check.stdout}")
    watch = OffsetWatcher(stack.kafka, topic)
    say(f"{label}: {files} file(s), {lines:,} lines → topic {topic}")
    t0 = time.monotonic()
    log = open(home / "rsyslogd.log", "wb")  # noqa: SIM115 (closed in finally, after the daemon)
    proc = subprocess.Popen([*(wrap or []), "/usr/sbin/rsyslogd", "-n", "-f", str(conf_file), "-i",
                             str(home / "rsyslogd.pid")], stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    sampler = RssSampler(proc.pid)
    try:
        ok, t1, n = wait_offsets(watch, lines, timeout_s=timeout_s, what=label, alive=lambda: proc.poll() is None)
        cpu, peak = tree_cpu(proc.pid), rss_mb(proc.pid, "VmHWM")
        threads = thread_cpu(proc.pid)
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
    res = _result(label, files, lines, nbytes, t1 - t0, cpu, peak, ok and n >= lines, records=n,
                  extra_records=n - lines, thread_cpu_s=threads, **rs)
    say(f"{label}: {res['lines_per_s'] or 0:,} lines/s, cpu {cpu:.1f}s ({res['cpu_us_per_line']} µs/line), "
        f"peak RSS {peak:.0f} MB ({t1 - t0:.1f}s)")
    return res


# ------------------------------------------------------------------------------------ kcat
def run_kcat(stack: StackRef, paths: list[Path], lines: int, work: Path, *, timeout_s: float) -> dict:
    """``kcat -P -l`` for one file; ``cat files | kcat -P`` for many (kcat -l takes one file)."""
    topic = create_topic(stack.kafka, f"bench-kcat-{uuid.uuid4().hex[:8]}", 6)
    nbytes = sum(p.stat().st_size for p in paths)
    argv = ["/usr/bin/kcat", "-P", "-b", stack.kafka, "-t", topic, *(x for p in ACKS_ALL for x in ("-X", p))]
    watch = OffsetWatcher(stack.kafka, topic)
    say(f"kcat: {len(paths)} file(s), {lines:,} lines → topic {topic}")
    t0 = time.monotonic()
    cat = None
    if len(paths) == 1:
        proc = subprocess.Popen([*argv, "-l", str(paths[0])], stdin=subprocess.DEVNULL)
    else:
        cat = subprocess.Popen(["cat", *map(str, paths)], stdout=subprocess.PIPE)
        proc = subprocess.Popen(argv, stdin=cat.stdout)
        cat.stdout.close()  # type: ignore[union-attr]
    sampler = RssSampler(proc.pid, 0.2)
    cpu = peak = 0.0
    try:
        ok, t1, n = wait_offsets(watch, lines, timeout_s=timeout_s, what="kcat", interval=0.05,
                                 alive=lambda: is_running(proc.pid))
        # kcat exits once everything is acknowledged; reap it (and cat) ourselves for exact rusage.
        for p in (proc, cat):
            if p is None:
                continue
            _, status, ru = os.wait4(p.pid, 0) if p.returncode is None else (0, 0, None)
            if ru is not None:
                p.returncode = os.waitstatus_to_exitcode(status)
                cpu += ru.ru_utime + ru.ru_stime
                if p is proc:
                    peak = ru.ru_maxrss / 1024
        ok = ok and proc.returncode == 0
    finally:
        rs = sampler.stop()
        for p in (proc, cat):
            if p is not None and p.returncode is None:
                p.kill()
                p.wait()
        watch.close()
        delete_topics(stack.kafka, [topic])
    res = _result("kcat", len(paths), lines, nbytes, t1 - t0, cpu, peak, ok and n >= lines, records=n,
                  extra_records=n - lines, **rs)
    say(f"kcat: {res['lines_per_s'] or 0:,} lines/s, cpu {cpu:.1f}s ({t1 - t0:.1f}s)")
    return res


