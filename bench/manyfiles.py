"""Part 4: logagent following 1,000 files: RSS and CPU idle, then under 10,000 lines/s in total.

The files exist before the agent starts (a few lines each, read from the beginning); once
everything is acknowledged the agent idles for ``idle_s`` with no writes (CPU over that window,
RSS at its end), then a paced writer spreads ``rate`` lines/s over all files for ``load_s``.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from .common import (
    AgentRun,
    OffsetWatcher,
    RssSampler,
    StackRef,
    cpu_seconds,
    create_topic,
    delete_topics,
    rss_mb,
    say,
    set_collect,
    wait_offsets,
)
from .gen import lines as gen_lines
from .writer import PacedWriter


def run_manyfiles(stack: StackRef, work: Path, *, files: int = 1000, idle_s: float = 30, rate: int = 10_000,
                  load_s: float = 30, extra_agent: dict | None = None) -> dict:
    tag = uuid.uuid4().hex[:8]
    d = work / f"many-{tag}"
    d.mkdir(parents=True)
    body = list(gen_lines(files * 5, seed=5))
    paths = []
    for k in range(files):
        p = d / f"app-{k:04d}.log"
        p.write_text("\n".join(body[k * 5:(k + 1) * 5]) + "\n")
        paths.append(p)
    initial = files * 5
    topic = create_topic(stack.kafka, f"bench-many-{tag}", 6)
    prefix = f"/bench-many-{tag}"
    set_collect(stack.etcd, prefix, "127.0.0.1", [{"path": str(d / "*.log"), "topic": topic, "start_at": "beginning"}])
    watch = OffsetWatcher(stack.kafka, topic)
    agent = AgentRun(work / f"many-agent-{tag}", prefix, "127.0.0.1", extra_agent=extra_agent or {})
    say(f"{files:,} files: starting the agent")
    t0 = time.monotonic()
    agent.start(stack)
    res: dict = {"files": files, "agent_settings": extra_agent or {}}
    try:
        ok, t1, _n = wait_offsets(watch, initial, timeout_s=300, what=f"{files} files, initial lines",
                                  alive=agent.alive)
        if not ok:
            raise RuntimeError(f"the agent did not deliver the {initial:,} initial lines: {agent.log_tail()}")
        res["startup_s"] = round(t1 - t0, 2)
        time.sleep(3)  # let the registry save and the start settle
        say(f"{files:,} files: idle for {idle_s:.0f}s")
        c0 = cpu_seconds(agent.pid)
        sampler = RssSampler(agent.pid, 1.0)
        time.sleep(idle_s)
        c1 = cpu_seconds(agent.pid)
        rs = sampler.stop()
        res["idle"] = {"seconds": idle_s, "cpu_s": round(c1 - c0, 2), "cpu_pct": round((c1 - c0) / idle_s * 100, 1),
                       "rss_mb": round(rss_mb(agent.pid), 1), **rs}
        say(f"{files:,} files idle: cpu {res['idle']['cpu_pct']}% of a core, RSS {res['idle']['rss_mb']} MB")
        say(f"{files:,} files: {rate:,} lines/s over all of them for {load_s:.0f}s")
        writer = PacedWriter(paths, rate, load_s, probe_every=10**9, seed=9)
        c0 = cpu_seconds(agent.pid)
        sampler = RssSampler(agent.pid, 1.0)
        w0 = time.monotonic()
        writer.start()
        writer.done.wait(load_s + 60)
        c1 = cpu_seconds(agent.pid)
        t_end_write = time.monotonic()
        rs = sampler.stop()
        ok2, t2, n2 = wait_offsets(watch, initial + writer.written, timeout_s=120, what=f"{files} files under load",
                                   alive=agent.alive)
        res["load"] = {"rate": rate, "seconds": round(t_end_write - w0, 1), "lines": writer.written,
                       "cpu_s": round(c1 - c0, 2), "cpu_pct": round((c1 - c0) / (t_end_write - w0) * 100, 1),
                       "cpu_us_per_line": round((c1 - c0) / max(1, writer.written) * 1e6, 1),
                       "rss_mb": round(rss_mb(agent.pid), 1), "peak_rss_mb": round(rss_mb(agent.pid, "VmHWM"), 1),
                       "all_delivered": ok2 and n2 == initial + writer.written,
                       "caught_up_after_writer_s": round(t2 - t_end_write, 2),
                       "writer_max_behind_s": round(writer.behind_max_s, 3), **rs}
        ld = res["load"]
        say(f"{files:,} files at {rate:,}/s: cpu {ld['cpu_pct']}% of a core, RSS {ld['rss_mb']} MB, "
            f"peak {ld['peak_rss_mb']} MB, caught up {ld['caught_up_after_writer_s']}s after the writer")
    finally:
        agent.stop()
        watch.close()
        delete_topics(stack.kafka, [topic])
    return res
