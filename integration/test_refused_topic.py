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


def test_unknown_topic_without_auto_creation_blocks_one_file_until_created(stack, etcd, prefix, agents,  # noqa: F811
                                                                          topic_factory, unique, tmp_path):
    """The configuration many Kafka operators run: no topic auto-creation (here on the agent's
    side, ``producer.allow.auto.create.topics = false``, which is what the broker's
    ``auto.create.topics.enable=false`` looks like to a producer). A list entry naming a topic
    that does not exist blocks that file only, with Kafka's reason; the other file flows; once
    the topic is created, every line arrives exactly once."""
    ip = "10.210.0.41"
    good = topic_factory("known")
    missing = f"it-missing-{unique}"
    m_dir, app_dir = tmp_path / "m", tmp_path / "app"
    m_dir.mkdir()
    app_dir.mkdir()
    m = LineWriter(m_dir / "m.log", "MISS")
    m_lines = set(m.write(5000))
    app = LineWriter(app_dir / "app.log", "KNOWN")
    set_list(etcd, prefix, ip, [{"path": f"{app_dir}/*.log", "topic": good, "start_at": "beginning"},
                                {"path": f"{m_dir}/*.log", "topic": missing, "start_at": "beginning"}])
    agent = agents("unknown", ip, kafka_extra={"producer.allow.auto.create.topics": "false"}).start()

    def blocked() -> list:
        return ((status(etcd, prefix, ip) or {}).get("kafka") or {}).get("blocked") or []

    app_lines: set[str] = set()
    deadline = time.monotonic() + 120  # librdkafka gives up on an unknown topic after 30 s by default
    while not any(b["path"] == str(m_dir / "m.log") for b in blocked()):
        assert time.monotonic() < deadline, f"m.log never shown blocked: {status(etcd, prefix, ip)}"
        app_lines.update(app.write(20))
        time.sleep(0.5)
    b = blocked()[0]
    assert b["topic"] == missing and "UNKNOWN_TOPIC" in b["reason"] and "create it" in b["reason"], b
    app_lines.update(app.write(500))
    assert_exactly(wait_count(stack, good, len(app_lines)), app_lines)
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    assert missing not in admin.list_topics(timeout=10).topics, "the topic was created by someone"
    log = agent.log_text()
    warned = log.count(f"{m_dir / 'm.log'}")
    admin.create_topics([NewTopic(missing, 1, 1)])[missing].result(30)
    try:
        wait_for(lambda: not blocked(), 120, "the file to resume once the topic exists")
        assert_exactly(wait_count(stack, missing, len(m_lines), timeout=60), m_lines)
        assert "Traceback" not in agent.log_text()
        print(f"unknown topic, auto-creation off: blocked with {b['reason']!r} ({b['lines']} lines held); "
              f"other file {len(app_lines)} lines exactly once meanwhile; log lines naming the file before "
              f"the topic existed: {warned}; created → {len(m_lines)} lines exactly once")
    finally:
        with contextlib.suppress(Exception):
            admin.delete_topics([missing])[missing].result(30)


def test_too_large_for_the_topic_is_cut_to_its_limit_and_delivered(stack, etcd, prefix, agents,  # noqa: F811
                                                                   unique, tmp_path):
    """A topic whose ``max.message.bytes`` (2,000) is below the agent's batches (1 MiB) and below
    some lines: the first refusal makes the agent read the topic's limit, send that topic's
    records one per batch, and cut the lines over it, marked truncated, instead of holding them
    forever. Every line arrives exactly once; the short ones whole."""
    ip = "10.210.0.42"
    narrow = f"it-narrow-{unique}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(narrow, 1, 1, config={"max.message.bytes": "2000"})])[narrow].result(30)
    try:
        d = tmp_path / "n"
        d.mkdir()
        w = LineWriter(d / "n.log", "NARROW")
        short, long_ = set(), set()
        for _ in range(30):
            short.update(w.write(95, size=60))
            long_.update(w.write(5, size=5000))
        set_list(etcd, prefix, ip, [{"path": f"{d}/*.log", "topic": narrow, "start_at": "beginning"}])
        agent = agents("narrow", ip).start()
        total = len(short) + len(long_)
        deadline = time.monotonic() + 180
        while True:
            recs = read_topic(stack, [narrow], total, timeout_s=10)
            if len(recs) >= total or time.monotonic() > deadline:
                break
        whole = [r for r in recs if r["message"] in short]
        cut = [r for r in recs if r["message"] not in short]
        assert len(whole) == len(short) and {r["message"] for r in whole} == short
        assert len(cut) == len(long_), f"{len(cut)} cut records for {len(long_)} long lines"
        assert all("truncated" in (r.get("log", {}).get("flags") or []) for r in cut)
        assert all(any(line.startswith(r["message"]) for line in long_) and len(r["message"]) < 2000 for r in cut)
        assert len({r["message"][:20] for r in cut}) == len(long_)  # one per long line (numbered)
        assert len({r["event"]["id"] for r in recs}) == len(recs) == total
        wait_for(lambda: not ((status(etcd, prefix, ip) or {}).get("kafka") or {}).get("blocked"), 60,
                 "the file no longer blocked")
        log = agent.log_text()
        assert "takes records of at most 2000 bytes" in log and "Traceback" not in log
        cut_lines = log.count("marked truncated")
        print(f"too large for the topic (max.message.bytes 2000): {len(whole)} short lines whole, {len(cut)} "
              f"long lines cut to {max(len(r['message']) for r in cut)} chars and marked truncated, "
              f"{len(recs)} records, each once; 'marked truncated' logged {cut_lines} time(s)")
        assert cut_lines <= 3
    finally:
        with contextlib.suppress(Exception):
            admin.delete_topics([narrow])[narrow].result(30)
