"""A topic that refuses every record must not take the host down (issue 18, item 1).

A collect-list entry points a 20 MB file at a topic whose ``max.message.bytes`` (300) refuses
every record. The agent must keep its memory bounded by ``max_inflight_bytes`` (held records
count), its log quiet (one line per file and reason, a summary a minute), its other files
flowing, and drop the refusal at once when the entry is removed. Nothing is lost: the entry
re-added with a working topic delivers every line of the file exactly once.
"""

from __future__ import annotations

import contextlib
import time

from confluent_kafka.admin import AdminClient, NewTopic

from integration.agents import LineWriter, wait_for
from integration.conftest import read_topic, topic_size
from integration.test_agent import agents, assert_exactly, prefix, set_list, status, wait_count  # noqa: F401
from integration.test_transfer import free_port, health, scrape

CAP_MIB = 4


def test_refusing_topic_bounded_quiet_others_flow_and_removal_clears(stack, etcd, prefix, agents,  # noqa: F811
                                                                    topic_factory, unique, tmp_path):
    ip = "10.210.0.40"
    good, later = topic_factory("good"), topic_factory("later")
    small = f"it-small-{unique}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(small, 1, 1, config={"max.message.bytes": "300"})])[small].result(30)
    try:
        big_dir, app_dir = tmp_path / "big", tmp_path / "app"
        big_dir.mkdir()
        app_dir.mkdir()
        big = LineWriter(big_dir / "big.log", "BIG")
        big_lines = set(big.write(100_000, size=150))  # ~17 MB, every record over 300 bytes
        app = LineWriter(app_dir / "app.log", "APP")
        good_entry = {"path": f"{app_dir}/*.log", "topic": good, "start_at": "beginning"}
        big_entry = {"path": f"{big_dir}/*.log", "topic": small, "start_at": "beginning"}
        set_list(etcd, prefix, ip, [good_entry])
        metrics = f"127.0.0.1:{free_port()}"
        agent = agents("refused", ip, max_inflight_bytes=f"{CAP_MIB}MiB", metrics_address=metrics).start()
        wait_for(lambda: (status(etcd, prefix, ip) or {}).get("config", {}).get("inputs") == 1, 60, "agent up")
        rss0 = agent.rss_mb()

        set_list(etcd, prefix, ip, [good_entry, big_entry])

        def blocked() -> list:
            return ((status(etcd, prefix, ip) or {}).get("kafka") or {}).get("blocked") or []

        wait_for(lambda: any(b["path"] == str(big_dir / "big.log") for b in blocked()), 60,
                 "status to show big.log blocked")
        b = blocked()[0]
        assert b["topic"] == small and "MSG_SIZE_TOO_LARGE" in b["reason"] and b["lines"] > 0, b
        log0, cpu0, t0 = agent.log.stat().st_size, agent.cpu_s(), time.monotonic()
        rss = [agent.rss_mb()]
        app_lines: set[str] = set()
        while time.monotonic() - t0 < 60:  # the other file keeps flowing meanwhile
            app_lines.update(app.write(200))
            rss.append(agent.rss_mb())
            time.sleep(0.5)
        minute_log = agent.log.stat().st_size - log0
        minute_cpu = agent.cpu_s() - cpu0
        assert_exactly(wait_count(stack, good, len(app_lines), timeout=120), app_lines)
        st = status(etcd, prefix, ip) or {}
        print(f"refused topic: RSS {rss0:.0f} MB at start, {min(rss):.0f}..{max(rss):.0f} MB while blocked "
              f"(cap {CAP_MIB} MiB); log grew {minute_log} bytes and CPU {minute_cpu:.2f} s in 60 s; "
              f"{len(app_lines)} lines of the other file delivered exactly once; held "
              f"{st['kafka'].get('held_lines')} line(s), {st['kafka'].get('held_bytes')} bytes; "
              f"blocked: {blocked()}")
        # Bounded, not growing: the held records (the cap's worth of file bytes, 3x that as JSON
        # records, plus their Python objects) are all the agent keeps; the peak of the minute's
        # second half is that of its first half.
        assert max(rss) < rss0 + 16 * CAP_MIB, f"RSS grew from {rss0:.0f} to {max(rss):.0f} MB"
        half = len(rss) // 2
        assert max(rss[half:]) - max(rss[:half]) < 8, f"RSS still growing while blocked: {rss[::10]}"
        assert minute_log < 1_000_000, f"the agent log grew by {minute_log} bytes in a minute"
        assert minute_cpu < 15, f"{minute_cpu:.1f} CPU-seconds in a minute while blocked"
        # held: what was in flight for big.log when the first refusal came back (at most the
        # cap's worth of file bytes, as Kafka records with their JSON envelope)
        assert st["kafka"]["held_bytes"] <= 4 * (CAP_MIB << 20)
        assert "kafka refuses the lines of" in (st.get("last_error") or "")
        assert topic_size(stack, small) == 0
        code, doc = health(metrics)
        assert code == 503 and "kafka refuses the lines of" in doc["reasons"][0], (code, doc)
        scraped = scrape(metrics)
        assert scraped["logagent_blocked_files"] == 1 and scraped["logagent_held_lines"] > 0, scraped
        assert scraped["logagent_lines_sent_total"] >= len(app_lines)

        # remove the entry: the refusal clears within seconds and the agent goes idle
        set_list(etcd, prefix, ip, [good_entry])
        wait_for(lambda: not blocked() and not (status(etcd, prefix, ip) or {}).get("last_error"), 30,
                 "the refusal to clear after the entry was removed")
        cpu1 = agent.cpu_s()
        time.sleep(5)
        idle_cpu = agent.cpu_s() - cpu1
        print(f"entry removed: refusal cleared; {idle_cpu:.2f} CPU-s in the next 5 s; /health {health(metrics)}")
        assert health(metrics) == (200, {"status": "ok", "reasons": []})
        assert scrape(metrics)["logagent_blocked_files"] == 0
        assert idle_cpu < 1.5, f"{idle_cpu:.2f} CPU-seconds in 5 s after the entry was removed"

        # nothing lost: the same file for a topic that takes it delivers every line exactly once
        set_list(etcd, prefix, ip, [good_entry, {**big_entry, "topic": later}])
        assert_exactly(wait_count(stack, later, len(big_lines), timeout=180), big_lines)
        assert_exactly(read_topic(stack, [good], len(app_lines), 20), app_lines)
        assert agent.alive()
        print(f"re-added for a working topic: {len(big_lines)} lines of big.log exactly once")
    finally:
        for f in admin.delete_topics([small]).values():
            with contextlib.suppress(Exception):  # cleanup only
                f.result(30)
