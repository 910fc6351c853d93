"""Parsers and line filters (issue 24) on the real stack: agent → Kafka → transfer → Elasticsearch.

1. A real nginx (started here, on loopback) writes combined access lines for requests made from
   two source addresses with known statuses; an application writes JSON lines; a service writes
   ``LEVEL service duration`` lines parsed by a named-group regex, with ``exclude_lines`` dropping
   its DEBUG lines. In Elasticsearch: a range query on ``http.response.status_code`` and a term
   query on ``source.ip`` find exactly the expected lines (through logferry's own query parser,
   ``field>=value``); JSON fields are typed; a malformed JSON line and a line the regex does not
   match are indexed raw with ``error.message`` and the ``parse_failure`` flag; the status and
   the counts say exactly how many DEBUG lines were dropped; a JSON line with 10,000 distinct keys
   is indexed (flagged when over ``max_fields``; unflagged under a 10,000 limit, where the index
   template keeps the fields past the mapping limit unindexed) and nothing goes to the dead
   letters.
2. Parsed lines are delivered exactly once across kill -9 of the agent and of the transfer: each
   line once, in the daily index of its own (parsed) time, with the same fields.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from integration.agents import wait_for
from integration.conftest import topic_size
from integration.test_agent import agents, prefix, status  # noqa: F401
from integration.test_transfer import (  # noqa: F401
    committed,
    es_count,
    es_count_soon,
    index_pattern,
    indices,
    put_config,
    read_dead_letters,
    transfer_config,
    transfers,
)
from logferry.search import build_query


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """A real nginx on 127.0.0.1 writing the ``combined`` access log to ``log``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.log = home / "logs" / "access.log"
        self.port = _free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> Nginx:
        (self.home / "logs").mkdir(parents=True)
        (self.home / "tmp").mkdir()
        conf = self.home / "nginx.conf"
        tmp = self.home / "tmp"
        conf.write_text(f"""
worker_processes 1;
pid {self.home}/nginx.pid;
error_log {self.home}/error.log;
events {{ worker_connections 64; }}
http {{
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  access_log {self.log} combined;
  server {{
    listen 127.0.0.1:{self.port};
    location /ok {{ return 200 "fine\\n"; }}
    location /boom {{ return 503; }}
    location /teapot {{ return 418; }}
    location / {{ return 404; }}
  }}
}}
""")
        self.proc = subprocess.Popen(["/usr/sbin/nginx", "-p", str(self.home), "-e", str(self.home / "error.log"),
                                      "-c", str(conf), "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for(self._answers, 20, "nginx to listen")
        return self

    def _answers(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"nginx exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def get(self, path: str, source: str, agent: str = "it-parse/1.0") -> int:
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10, source_address=(source, 0))
        try:
            c.request("GET", path, headers={"User-Agent": agent, "Referer": "http://example.test/"})
            resp = c.getresponse()
            resp.read()
            return resp.status
        finally:
            c.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _search(es, index: str, text: str) -> list[dict]:
    """Documents matching ``text`` through logferry's own query parser (logctl and the console's)."""
    q = build_query(since=None, until=None, host=None, text=text)
    es.indices.refresh(index=index)
    return es.search(index=index, query=q, size=1000)["hits"]["hits"]


def _leaves(props: dict) -> int:
    """How many fields a mapping's properties define."""
    return sum(_leaves(v["properties"]) if "properties" in v else 1 for v in props.values())


def _id_of(es, index: str, field: str) -> str:
    """The _id of the one document with ``field`` in its _source (searched by a stored field we map)."""
    hits = es.search(index=index, query={"match_phrase_prefix": {"message": '{"w0": 0, "w1": 1'}}, size=2)
    ((hit,),) = [hits["hits"]["hits"]]
    assert field.split(".")[1] in hit["_source"]["wide"]
    return hit["_id"]


def _wait_settled(stack, kafka_admin, group: str, topics: dict[str, int]) -> None:
    """Wait until the transfers committed every record of ``topics`` (name: partitions): all that
    Kafka holds is in Elasticsearch, so a count now is final (a state, not a delay)."""
    def done() -> bool:
        return all(sum(committed(stack, kafka_admin, group, t, n).values()) == topic_size(stack, t)
                   for t, n in topics.items())

    wait_for(done, 120, "the transfer to commit every record", interval=0.5)


def _lines_written(path: Path) -> int:
    return sum(1 for _ in path.open()) if path.exists() else 0


@pytest.mark.skipif(not os.path.exists("/usr/sbin/nginx"), reason="needs nginx (Debian package nginx)")
def test_lines_become_typed_fields_failures_are_flagged_debug_is_dropped(
        stack, es, etcd, kafka_admin, agents, transfers, topic_factory, prefix, unique,  # noqa: F811
        index_pattern, indices, tmp_path: Path) -> None:  # noqa: F811
    ip = "10.214.0.1"
    topic, wide_topic, dlq = topic_factory("parse", 1), topic_factory("parsewide", 1), topic_factory("parse-dlq", 1)
    put_config(etcd, prefix, transfer_config([topic, wide_topic], index_pattern, dlq))
    nginx = Nginx(tmp_path / "nginx").start()
    try:
        # requests from two source addresses (all of 127/8 is this host), statuses known
        plan = [("/ok", "127.0.0.2")] * 7 + [("/boom", "127.0.0.2")] * 3 + [("/missing", "127.0.0.3")] * 4 + \
            [("/boom", "127.0.0.3")] * 2 + [("/teapot", "127.0.0.3")] * 1
        got = Counter((src, nginx.get(p, src)) for p, src in plan)
        assert got == Counter({("127.0.0.2", 200): 7, ("127.0.0.2", 503): 3, ("127.0.0.3", 404): 4,
                               ("127.0.0.3", 503): 2, ("127.0.0.3", 418): 1}), got
        wait_for(lambda: _lines_written(nginx.log) == len(plan), 10, "nginx to write its access lines")

        app = tmp_path / "app"
        app.mkdir()
        now = datetime.now(UTC).replace(microsecond=0)
        with open(app / "app.log", "w") as f:
            for i in range(20):
                f.write(json.dumps({"level": "error" if i % 5 == 0 else "info", "time": (now + timedelta(
                    seconds=i)).isoformat(), "user": {"id": i}, "duration_ms": i * 10, "path": f"/cart/{i}"}) + "\n")
            f.write('{"level": "error", "msg": "cut off\n')  # malformed
            f.write(json.dumps({f"key{i}": i for i in range(10_000)}) + "\n")  # over max_fields
            f.write(json.dumps({"level": "info", "time": now.isoformat(), "after": "the wide line"}) + "\n")
        wide = tmp_path / "wide"
        wide.mkdir()
        (wide / "wide.log").write_text(json.dumps({f"w{i}": i for i in range(10_000)}) + "\n" +
                                       json.dumps({"w0": 1, "note": "after"}) + "\n")
        svc = tmp_path / "svc"
        svc.mkdir()
        svc_lines = [f"{lvl} checkout {n}" for n, lvl in enumerate(["INFO", "DEBUG", "WARN", "DEBUG", "ERROR"] * 6)]
        svc_lines.insert(7, "this line is not in the service's format")
        (svc / "svc.log").write_text("\n".join(svc_lines) + "\n")
        debug = sum(1 for line in svc_lines if line.startswith("DEBUG "))

        inputs = [
            {"path": str(nginx.log), "topic": topic, "start_at": "beginning", "parse": {"format": "nginx_combined"}},
            {"path": f"{app}/*.log", "topic": topic, "start_at": "beginning",
             "parse": {"format": "json", "target": "app"}, "timestamp": {"field": "app.time"}},
            {"path": f"{wide}/*.log", "topic": wide_topic, "start_at": "beginning",
             "parse": {"format": "json", "target": "wide", "max_fields": 10_000}},
            {"path": f"{svc}/*.log", "topic": topic, "start_at": "beginning", "exclude_lines": ["^DEBUG "],
             "parse": {"format": "regex",
                       "pattern": r"^(?P<log__level>[A-Z]+) (?P<service__name>\w+) (?P<event__duration>\d+)$"}},
        ]
        etcd.put(f"{prefix}/agents/{ip}/collect", json.dumps(inputs).encode())
        agents("parse", ip).start()
        transfers("parse").start()
        expected = len(plan) + 23 + 2 + (len(svc_lines) - debug)  # (2 in the wide topic's index)
        wait_for(lambda: es_count_soon(es, indices) >= expected, 120, f"{expected} documents")

        def counts() -> dict | None:
            st = status(etcd, prefix, ip) or {}
            by = {i["path"]: i for i in st.get("inputs") or []}
            svc_in = by.get(f"{svc}/*.log")
            return by if svc_in and svc_in["lines_dropped"] == debug and svc_in["parse_failures"] == 1 else None

        by_input = wait_for(counts, 30, "the status to count the dropped DEBUG lines")
        _wait_settled(stack, kafka_admin, f"it-transfer-{unique}", {topic: 1, wide_topic: 1})
        assert es_count(es, indices) == expected
        assert by_input[f"{svc}/*.log"]["lines_dropped"] == debug == 12
        assert by_input[str(nginx.log)] == {"path": str(nginx.log), "lines_dropped": 0, "lines_parsed": len(plan),
                                            "parse_failures": 0}
        assert by_input[f"{app}/*.log"]["parse_failures"] == 2 and by_input[f"{app}/*.log"]["lines_parsed"] == 21

        # nginx: a range on the status code and a term on source.ip find exactly the expected lines
        five = _search(es, indices, "http.response.status_code>=500")
        assert len(five) == 5 and {h["_source"]["http"]["response"]["status_code"] for h in five} == {503}
        four = _search(es, indices, "http.response.status_code>=400 http.response.status_code<500")
        assert sorted(h["_source"]["http"]["response"]["status_code"] for h in four) == [404] * 4 + [418]
        from3 = _search(es, indices, "source.ip:127.0.0.3")
        assert len(from3) == 7 and all(h["_source"]["source"]["ip"] == "127.0.0.3" for h in from3)
        assert len(_search(es, indices, "source.ip:127.0.0.0/30")) == len(plan)  # an ip field takes a CIDR
        doc = from3[0]["_source"]
        assert doc["message"].startswith("127.0.0.3 - - [") and doc["user_agent"]["original"] == "it-parse/1.0"
        assert doc["http"]["request"]["method"] == "GET" and doc["http"]["request"]["referrer"] == \
            "http://example.test/"
        mapping = es.indices.get_mapping(index=f"{indices[:-1]}{topic}-*").body
        (props,) = [m["mappings"]["properties"] for m in mapping.values()]
        assert props["source"]["properties"]["ip"]["type"] == "ip"
        assert props["http"]["properties"]["response"]["properties"]["status_code"]["type"] == "long"
        assert props["app"]["properties"]["duration_ms"]["type"] == "long"

        # JSON: typed, under its target, the line's time as @timestamp
        slow = _search(es, indices, "app.duration_ms>=150")
        assert sorted(h["_source"]["app"]["duration_ms"] for h in slow) == [150, 160, 170, 180, 190]
        assert len(_search(es, indices, "app.level:error")) == 4
        first = _search(es, indices, "app.user.id:3")[0]["_source"]
        assert first["@timestamp"] == (now + timedelta(seconds=3)).strftime("%Y-%m-%dT%H:%M:%S.000Z")

        # what does not parse: indexed raw, flagged, with the reason
        failed = _search(es, indices, "log.flags:parse_failure")
        reasons = {h["_source"]["message"][:20]: h["_source"]["error"]["message"] for h in failed}
        assert len(failed) == 3, reasons
        assert "not JSON" in reasons['{"level": "error", "']
        assert "max_fields 200" in reasons['{"key0": 0, "key1": ']
        assert "does not match" in reasons["this line is not in "]
        assert all("app" not in h["_source"] and "log" in h["_source"] for h in failed)

        # regex: named groups with __ as dots, typed where ECS types them; no DEBUG line at all
        assert len(_search(es, indices, "log.level:DEBUG")) == 0
        errors = _search(es, indices, "log.level:ERROR service.name:checkout")
        assert sorted(h["_source"]["event"]["duration"] for h in errors) == [4, 9, 14, 19, 24, 29]

        # 10,000 distinct keys parsed (max_fields 10,000, a topic and so an index of its own): indexed;
        # the mapping stops at the template's limit, the rest is kept in _source, unindexed
        wide_index = f"{indices[:-1]}{wide_topic}-*"
        wide_docs = _search(es, wide_index, "note after")  # (wide.note came past the limit: unindexed)
        assert len(wide_docs) == 1
        assert es.count(index=wide_index, query={"exists": {"field": "wide.w0"}})["count"] == 2
        (wide_props,) = [m["mappings"]["properties"] for m in es.indices.get_mapping(index=wide_index).body.values()]
        n_fields = _leaves(wide_props)
        assert 1000 < n_fields <= 2000, n_fields
        assert es.get(index=wide_docs[0]["_index"], id=_id_of(es, wide_index, "wide.w9999"))["_source"]["wide"][
            "w9999"] == 9999
        assert _leaves(props) < 200  # the other topic's index: only what its lines hold
        assert not read_dead_letters(stack, dlq, 0, timeout_s=3)
        print(f"parsing: {expected} documents; ranges/terms exact (5 ≥500, 5 in 400s, 7 from 127.0.0.3); "
              f"3 flagged parse_failure; {debug} DEBUG lines dropped and counted; 10,000-key line indexed "
              f"(the index maps {n_fields} fields); status inputs {json.dumps(list(by_input.values()))}")
        print("example nginx document:", json.dumps(doc))
        print("example JSON document:", json.dumps(first))
        print("example failure document:", json.dumps(failed[0]["_source"]))
    finally:
        nginx.stop()


def _combined(n: int, day: datetime) -> str:
    t = day + timedelta(seconds=n)
    status = (200, 200, 200, 301, 404, 500)[n % 6]
    return (f"10.9.{n // 250 % 250}.{n % 250 + 1} - - [{t:%d/%b/%Y:%H:%M:%S} +0000] \"GET /item/{n} HTTP/1.1\" "
            f"{status} {n % 5000} \"-\" \"bench/{n}\"")


def test_parsed_lines_exactly_once_across_kill9_of_agent_and_transfer(
        stack, es, etcd, kafka_admin, agents, transfers, topic_factory, prefix, unique,  # noqa: F811
        index_pattern, indices, tmp_path: Path) -> None:  # noqa: F811
    n = 20_000
    ip = "10.214.0.2"
    topic, dlq = topic_factory("parsek9", 2), topic_factory("parsek9-dlq", 1)
    put_config(etcd, prefix, transfer_config([topic], index_pattern, dlq, bulk_max_docs=500))
    d = tmp_path / "k9"
    (d / "web").mkdir(parents=True)
    (d / "app").mkdir()
    # nginx lines of yesterday and today (their own time picks the daily index), JSON lines
    day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(hours=3)
    first = 4000  # lines of each file written before the start; the rest while Kafka is frozen

    def write(lo: int, hi: int) -> None:
        with open(d / "web" / "access.log", "a") as f:
            f.writelines(_combined(i, day) + "\n" for i in range(lo, hi))
        with open(d / "app" / "app.log", "a") as f:
            f.writelines(json.dumps({"seq": i, "level": "info", "pad": "p" * 40}) + "\n" for i in range(lo, hi))

    write(0, first)
    etcd.put(f"{prefix}/agents/{ip}/collect", json.dumps([
        {"path": f"{d}/web/*.log", "topic": topic, "start_at": "beginning", "parse": {"format": "nginx_combined"}},
        {"path": f"{d}/app/*.log", "topic": topic, "start_at": "beginning", "parse": {"format": "json"}},
    ]).encode())
    agent = agents("k9", ip, max_inflight_bytes="1MiB").start()
    transfer = transfers("k9").start()
    wait_for(lambda: es_count_soon(es, indices) >= 4000, 120, "4,000 documents before killing the agent")
    # Killed with lines in flight, arranged rather than hoped for (as test_agent's kill -9 test):
    # Kafka frozen, the rest of the lines written then, the agent reads them up to its in-flight
    # cap, then kill -9; those lines are read and sent again after the restart, and must become
    # the same documents. (Written before the start, a fast agent had them all acknowledged
    # before the freeze: the precondition must not depend on the machine's speed.)
    st = stack.servers
    if st is not None:
        st.pause_service("kafka")
    write(first, n)
    def counters() -> dict:
        return (status(etcd, prefix, ip) or {}).get("counters") or {}

    def lines_read() -> int:
        return int(counters().get("lines_read", 0))

    read_at_kill = 0
    try:
        if st is not None:
            # one status snapshot: lines handed to Kafka's client that Kafka has not acknowledged
            wait_for(lambda: (c := counters()) and c.get("lines_read", 0) > c.get("lines_sent", 0) + 1000, 60,
                     "the agent to hold 1,000 lines Kafka has not acknowledged")
            read_at_kill = lines_read()
        agent.kill9()
    finally:
        if st is not None:
            st.unpause_service("kafka")
    before_agent = es_count_soon(es, indices)
    agent.start()
    wait_for(lambda: es_count_soon(es, indices) >= before_agent + 6000, 120, "6,000 more before killing the transfer")
    transfer.kill9()
    before_transfer = es_count_soon(es, indices)
    assert before_transfer < 2 * n, "everything arrived before the kills: the test proved nothing"
    transfer.start()
    wait_for(lambda: es_count_soon(es, indices) >= 2 * n, 180, f"{2 * n} documents")
    _wait_settled(stack, kafka_admin, f"it-transfer-{unique}", {topic: 2})
    assert es_count(es, indices) == 2 * n
    from elasticsearch.helpers import scan

    seen: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    for h in scan(es, index=indices, query={"query": {"match_all": {}}}, size=2000):
        src = h["_source"]
        seen[src["message"]] += 1
        assert "parse_failure" not in src["log"].get("flags", []), src
        if "http" in src:
            statuses[src["http"]["response"]["status_code"]] += 1
            assert h["_index"].endswith(src["@timestamp"][:10].replace("-", ".")), (h["_index"], src["@timestamp"])
        else:
            assert src["json"]["level"] == "info"
    assert len(seen) == 2 * n and max(seen.values()) == 1
    assert statuses == Counter((200, 200, 200, 301, 404, 500)[i % 6] for i in range(n)), statuses
    assert len(_search(es, indices, "http.response.status_code>=500")) <= 1000  # (a page at most)
    assert es.count(index=indices, query=build_query(since=None, until=None, host=None,
                                                     text="http.response.status_code>=500"))["count"] == statuses[500]
    # The restarted agent read again lines its first life had read but Kafka had not acknowledged
    # (its counter starts at 0): what both lives read adds up to more than the lines there are.
    # Whether those lines also reached Kafka twice depends on what was in the frozen broker's
    # socket when the agent died, so the records are only printed.
    records = topic_size(stack, topic)
    if st is not None:
        wait_for(lambda: read_at_kill + lines_read() > 2 * n, 30,
                 "the restarted agent to have read again the lines its first life had not delivered")
    dates = {i.rsplit("-", 1)[1] for i in es.indices.get(index=indices).body}
    assert len(dates) == 2, dates  # yesterday's lines in yesterday's index, by their own time
    print(f"kill -9: agent killed at {before_agent} documents, transfer at {before_transfer}; "
          f"{2 * n} lines, {records} records in Kafka ({records - 2 * n} sent again) → {2 * n} documents, each "
          f"once, in {sorted(dates)}")
