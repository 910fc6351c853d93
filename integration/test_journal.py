"""The systemd journal as an input (issue 23), against a REAL journald: agent → Kafka → transfer → ES.

journald runs in a private mount namespace here (integration/journald.py: no systemd PID 1 needed);
the agent runs in the same namespace (network shared, the stack on loopback) and reads that
journal through journalctl. Entries are written with the real clients, ``systemd-cat`` and
``logger``, as real units (their writer in the unit's cgroup, so journald stamps _SYSTEMD_UNIT).

1. N entries → exactly N documents in Elasticsearch, with unit, identifier and level, across a
   kill -9 of the agent and a ``journalctl --rotate`` while entries are being written.
2. A unit filter and an identifier + priority filter collect only their entries.
3. The journal vacuumed while the agent is down: the gap is reported (status with its time range,
   a metric, one log line), and the entries written afterwards are collected.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from integration.agents import agent_ini, agent_process, stop_showing_logs, wait_for
from integration.harness import Daemon
from integration.journald import Journald, unavailable
from integration.test_agent import prefix, set_list, status  # noqa: F401
from integration.test_console import CHROMIUM, browser, shot, start_console, stop_consoles, text_of, until  # noqa: F401
from integration.test_transfer import (  # noqa: F401
    free_port,
    index_pattern,
    indices,
    put_config,
    scrape,
    transfer_config,
    transfers,
)

pytestmark = pytest.mark.skipif(unavailable() is not None, reason=f"journald: {unavailable()}")


@pytest.fixture
def journald(tmp_path: Path):
    j = Journald(tmp_path / "journald").start()
    yield j
    j.stop()


@pytest.fixture
def jagents(stack, tmp_path: Path, prefix: str, journald: Journald):  # noqa: F811
    """Factory of agents started in the journald's namespace (nsenter); stopped at the end."""
    made: list[Daemon] = []

    def make(name: str, host_ip: str, **extra: str) -> Daemon:
        home = tmp_path / f"agent-{name}"
        ini = agent_ini(etcd=stack.etcd_endpoints, kafka=stack.kafka_bootstrap, data_dir=home / "data",
                        prefix=prefix, host_ip=host_ip, extra_agent=extra)
        a = agent_process(home, ini, wrap=journald.wrap)
        made.append(a)
        return a

    yield make
    stop_showing_logs(made)


def journal_status(etcd, prefix: str, ip: str) -> list[dict]:  # noqa: F811
    return (status(etcd, prefix, ip) or {}).get("journals") or []


def wait_reading(etcd, prefix: str, ip: str, n: int = 1, pid: int | None = None) -> None:  # noqa: F811
    """Wait until the agent (process ``pid``, when given: not the status a killed one left) reads ``n`` inputs."""
    def reading() -> bool:
        st = status(etcd, prefix, ip) or {}
        return (pid is None or st.get("pid") == pid) and \
            len([j for j in st.get("journals") or [] if j.get("running")]) == n

    wait_for(reading, 30, f"{n} journal input(s) reading")


def docs(es, wildcard: str) -> list[dict]:
    es.options(ignore_status=[404]).indices.refresh(index=wildcard, allow_no_indices=True)
    res = es.search(index=wildcard, size=10_000, query={"match_all": {}}, allow_no_indices=True)
    return [h["_source"] | {"_id": h["_id"]} for h in res["hits"]["hits"]]


def wait_docs(es, wildcard: str, n: int, timeout: float = 120) -> list[dict]:
    """Wait until ES holds ``n`` documents (then a little longer: an extra one would show)."""
    got: list[dict] = []
    last: list[str] = [""]

    def enough() -> bool:
        nonlocal got
        try:
            got = docs(es, wildcard)
        except Exception as e:  # an index still being created
            last[0] = f"; last error {e}"
            return False
        last[0] = f"; {len(got)} found"
        return len(got) >= n

    try:
        wait_for(enough, timeout, f"{n} documents in {wildcard}", interval=0.5)
    except AssertionError as e:
        raise AssertionError(f"{e}{last[0]}") from None
    return got


def assert_exactly(found: list[dict], expected: set[str]) -> None:
    msgs = Counter(d["message"] for d in found)
    assert not expected - set(msgs), f"{len(expected - set(msgs))} missing, e.g. {sorted(expected - set(msgs))[:3]}"
    assert not {m for m, c in msgs.items() if c > 1}, "duplicates in Elasticsearch"
    assert set(msgs) == expected, f"unexpected documents: {sorted(set(msgs) - expected)[:3]}"


# ------------------------------------------------------------------------------------------ 1
def test_entries_exactly_once_across_kill9_and_rotate(stack, es, etcd, prefix, unique, jagents,  # noqa: F811
                                                       journald, transfers, topic_factory, index_pattern,  # noqa: F811
                                                       indices) -> None:  # noqa: F811
    ip = "10.216.0.1"
    topic, dlq = topic_factory("journal", 1), topic_factory("journal-dlq", 1)
    put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq))
    transfers("a").start()
    unit, ident = f"jt-{unique}.service", f"jt{unique}"
    set_list(etcd, prefix, ip, [{"journal": {"identifiers": [ident]}, "topic": topic}])
    agent = jagents("k9", ip).start()
    wait_reading(etcd, prefix, ip)

    expected: dict[str, str] = {}  # message -> level
    batches = 0

    def write(k: int) -> None:
        nonlocal batches
        b = batches
        batches += 1
        prio = ("err", "warning", "info")[b % 3]
        msgs = [f"{ident} batch {b:03d} entry {i:03d}" for i in range(k)]
        if b % 2:
            journald.cat(ident, msgs, priority=prio, unit=unit)
        else:
            journald.logger(ident, msgs, priority=f"user.{prio}", unit=unit)
        for m in msgs:
            expected[m] = prio

    stop = threading.Event()

    def writer() -> None:
        while not stop.is_set():
            write(40)
            time.sleep(0.05)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        wait_for(lambda: sum(j.get("entries_acked", 0) for j in journal_status(etcd, prefix, ip)) >= 200, 60,
                 "200 entries acknowledged")
        agent.kill9()  # mid-stream: entries in flight, registry one second old
        time.sleep(0.5)
        agent.start()
        wait_reading(etcd, prefix, ip, pid=agent.pid)
        wait_for(lambda: sum(j.get("entries_acked", 0) for j in journal_status(etcd, prefix, ip)) >= 200, 60,
                 "200 more entries acknowledged after the restart")
        journald.rotate()  # mid-stream
        time.sleep(1.0)
    finally:
        stop.set()
        t.join(30)
    write(25)  # after the rotation, into the new file
    n = len(expected)
    journal = {e["MESSAGE"]: e for e in journald.entries("-t", ident)}
    assert set(journal) == set(expected)  # the journal holds exactly what we wrote
    try:
        found = wait_docs(es, indices, n)
    except AssertionError:
        got = {d["message"] for d in docs(es, indices)}
        print("MISSING batches", sorted(Counter(m.split(" entry")[0] for m in set(expected) - got).items()))
        print("STATUS", json.dumps(journal_status(etcd, prefix, ip)))
        raise
    time.sleep(2)  # a late duplicate would show now
    found = docs(es, indices)
    assert_exactly(found, set(expected))
    assert len({d["event"]["id"] for d in found}) == n
    levels = Counter((d["message"] in expected and d["log"]["level"] == expected[d["message"]]) for d in found)
    assert levels == Counter({True: n}), levels
    for d in found:
        e = journal[d["message"]]
        # the unit as journald recorded it (a datagram journald reads after its short-lived sender is
        # gone has none: integration/journald.py)
        assert d.get("systemd", {}).get("unit") == e.get("_SYSTEMD_UNIT"), (d, e)
        assert d["log"]["syslog"]["appname"] == ident
        assert d["process"]["pid"] == int(e["_PID"])
        assert d["host"]["ip"] == ip
        assert d["journald"]["_TRANSPORT"] == e["_TRANSPORT"]
        assert d["@timestamp"][:19] == datetime.fromtimestamp(int(e["__REALTIME_TIMESTAMP"]) / 1e6, UTC) \
            .strftime("%Y-%m-%dT%H:%M:%S")
    assert agent.kills == 1 and "GAP" not in agent.log_text()
    units = Counter(d.get("systemd", {}).get("unit") for d in found)
    print(f"journal: {n} entries written ({batches} batches; units {dict(units)}), {len(found)} documents in ES, "
          f"{len({d['_id'] for d in found})} distinct ids, across 1 kill -9 and 1 rotation")


# ------------------------------------------------------------------------------------------ 2
def test_unit_and_identifier_filters_collect_only_their_entries(stack, es, etcd, prefix, unique, jagents,  # noqa: F811
                                                                journald, transfers, topic_factory,  # noqa: F811
                                                                index_pattern, indices) -> None:  # noqa: F811
    ip = "10.216.0.2"
    t_unit, t_ident, dlq = topic_factory("junit", 1), topic_factory("jident", 1), topic_factory("jf-dlq", 1)
    put_config(etcd, prefix, transfer_config([t_unit, t_ident], index_pattern, dlq))
    transfers("a").start()
    ua, ub = f"ja-{unique}.service", f"jb-{unique}.service"
    set_list(etcd, prefix, ip, [
        {"journal": {"units": [ua]}, "topic": t_unit},
        {"journal": {"identifiers": ["jbident"], "priority": "warning"}, "topic": t_ident,
         "exclude_lines": ["SKIP"]},
    ])
    jagents("f", ip).start()
    wait_reading(etcd, prefix, ip, 2)
    a_msgs = [f"unit a {i}" for i in range(20)]
    for k in range(0, 20, 5):  # several writers: journald misses a writer's cgroup now and then
        journald.cat("jaident", a_msgs[k:k + 5], unit=ua)
    journald.cat("jbident", [f"unit b info {i}" for i in range(15)], priority="info", unit=ub)
    b_warn = [f"unit b warn {i}" for i in range(8)] + [f"unit b err {i}" for i in range(4)]
    journald.logger("jbident", b_warn[:8], priority="user.warning", unit=ub)
    journald.cat("jbident", b_warn[8:], priority="err", unit=ub)
    journald.cat("jbident", ["unit b warn SKIP me"], priority="warning", unit=ub)
    journald.cat("jaident", ["no unit at all"])  # the same identifier as a's, outside the unit
    # what journald recorded as the unit's (a writer whose cgroup it missed has no unit: journald.py)
    in_unit = {e["MESSAGE"] for e in journald.entries("-u", ua)}
    assert in_unit and in_unit <= set(a_msgs), in_unit
    found = wait_docs(es, indices, len(in_unit) + len(b_warn))
    time.sleep(2)
    found = docs(es, indices)
    unit_docs = [d for d in found if d.get("systemd", {}).get("unit") == ua]
    assert_exactly(unit_docs, in_unit)
    assert_exactly([d for d in found if d not in unit_docs], set(b_warn))
    assert {d["log"]["level"] for d in found if d not in unit_docs} == {"warning", "err"}
    assert {d["message"] for d in found} == in_unit | set(b_warn)  # nothing else: no info of b, no SKIP
    st = {j["input"]: j for j in journal_status(etcd, prefix, ip)}
    wait_for(lambda: any(j.get("entries_dropped") == 1 for j in journal_status(etcd, prefix, ip)), 20,
             "the SKIP entry counted as dropped")
    assert len(st) == 2
    print(f"filters: unit input {len(unit_docs)} documents (= journalctl -u: {len(in_unit)} of the 20 written in "
          f"the unit; 15 info + 1 outside it + 1 SKIP not collected), identifier+priority input {len(b_warn)}")


# ------------------------------------------------------------------------------------------ 3
def test_vacuum_while_agent_down_is_a_reported_gap(stack, es, etcd, prefix, unique, jagents,  # noqa: F811
                                                   journald, transfers, topic_factory, index_pattern,  # noqa: F811
                                                   indices, tmp_path: Path,  # noqa: F811
                                                   request: pytest.FixtureRequest) -> None:
    ip = "10.216.0.3"
    topic, dlq = topic_factory("jgap", 1), topic_factory("jgap-dlq", 1)
    put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq))
    transfers("a").start()
    ident = f"jg{unique}"
    set_list(etcd, prefix, ip, [{"journal": {"identifiers": [ident]}, "topic": topic}])
    metrics = f"127.0.0.1:{free_port()}"
    agent = jagents("gap", ip, metrics_address=metrics).start()
    wait_reading(etcd, prefix, ip)
    before = [f"before {i}" for i in range(10)]
    journald.cat(ident, before)
    wait_for(lambda: [j.get("entries_acked") for j in journal_status(etcd, prefix, ip)] == [10], 60,
             "10 entries acknowledged")
    agent.stop()
    last_acked = json.loads(journald.journalctl("-o", "json", "-t", ident, "-n", "1"))
    journald.cat(ident, [f"lost {i}" for i in range(5)])  # written while the agent is down ...
    journald.vacuum_all_archived()  # ... and vacuumed before it could read them
    assert journald.count("-t", ident) == 0
    after = [f"after {i}" for i in range(7)]
    journald.cat(ident, after)
    first_after = json.loads(journald.journalctl("-o", "json", "-t", ident).splitlines()[0])
    began = datetime.now(UTC)
    agent.start()
    gap = wait_for(lambda: next((j["gap"] for j in journal_status(etcd, prefix, ip) if j.get("gap")), None), 60,
                   "the gap in the status")

    def iso(us: str) -> str:
        return datetime.fromtimestamp(int(us) / 1e6, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    assert gap["from"] == iso(last_acked["__REALTIME_TIMESTAMP"]), (gap, last_acked["__REALTIME_TIMESTAMP"])
    assert gap["to"] == iso(first_after["__REALTIME_TIMESTAMP"]), gap
    assert datetime.fromisoformat(gap["detected_at"]) >= began.replace(microsecond=0)
    found = wait_docs(es, indices, len(before) + len(after))
    time.sleep(2)
    assert_exactly(docs(es, indices), set(before) | set(after))
    gap_lines = [ln for ln in agent.log_text().splitlines() if "GAP" in ln]
    assert len(gap_lines) == 1 and gap["from"] in gap_lines[0] and gap["to"] in gap_lines[0], gap_lines
    m = scrape(metrics)
    assert [v for k, v in m.items() if k.startswith("logagent_journal_gaps_total")] == [1.0], m
    shown = console_host_page(request, stack, tmp_path, prefix, ip) if CHROMIUM else "(no chromium)"
    if CHROMIUM:
        assert ident in shown and gap["from"] in shown and gap["to"] in shown and "vacuumed" in shown, shown
    print(f"gap reported: {gap}; {len(found)} documents (10 before, 7 after, 5 vacuumed unread); console: {shown}")


def console_host_page(request: pytest.FixtureRequest, stack, tmp_path: Path, prefix: str, ip: str) -> str:  # noqa: F811
    """The console's host page in chromium (integration/test_console.py's browser): the LOST line of its
    agent panel, the journal table read; a screenshot in build/screenshots/console-journal-gap.png."""
    url, d = start_console(tmp_path, ["", "[etcd]", f"endpoints = {','.join(stack.etcd_endpoints)}",
                                      f"prefix = {prefix}", "", "[elasticsearch]", f"hosts = {stack.es_url}", ""])
    drv = request.getfixturevalue("browser")
    try:
        drv.get(f"{url}/hosts/{ip}")
        until(drv, lambda dr: "LOST journal:" in text_of(dr, "#agent"), "the journal gap on the host page")
        table = text_of(drv, "#journals")
        assert "reading" in table and " 7 7 0 " in table, table  # read, acked, dropped since this start: the 7 after
        assert "journal:" not in text_of(drv, "#files"), "a journal input in the files table"
        shot(drv, "console-journal-gap")
        return next(ln for ln in text_of(drv, "#agent").splitlines() if ln.startswith("LOST journal:"))
    finally:
        stop_consoles([d])
