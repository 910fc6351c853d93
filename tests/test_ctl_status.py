"""logctl hosts/status rendering, from status documents shaped like agent/main.py writes them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from logctl.status import (
    HostView,
    agent_lines,
    config_state,
    gather_hosts,
    gather_transfers,
    hosts_json,
    hosts_table,
    rates,
    transfer_lines,
)
from logferry.keys import Keys
from logferry.schema import parse_collect_list

NOW = datetime(2024, 5, 1, 12, 0, 10, tzinfo=UTC)
LIST = b'[{"path": "/var/log/app/*.log", "topic": "app"}]'


def agent_doc(**over: object) -> dict:
    doc = {
        "hostname": "web1", "ip": "10.0.0.5", "version": "0.1.0", "pid": 123,
        "started_at": "2024-05-01T11:00:00+00:00", "updated_at": "2024-05-01T12:00:08+00:00",
        "config": {"revision": 7, "source": "etcd", "inputs": 1, "rejected_revision": None, "error": None},
        "etcd": "connected",
        "kafka": {"inflight_lines": 0, "inflight_bytes": 0, "last_error": None},
        "files": [{"input": "/var/log/app/*.log", "path": "/var/log/app/a.log", "offset": 900, "size": 1000,
                   "lag_bytes": 100, "open": True}],
        "counters": {"lines_read": 3600, "bytes_read": 360000, "lines_sent": 3600, "send_failures": 0,
                     "retries": 0, "lines_truncated": 0, "config_rejected": 0},
        "last_error": None,
    }
    doc.update(over)
    return doc


def host(**kw: object) -> HostView:
    h = HostView("10.0.0.5", collect_raw=LIST, collect_revision=7, inputs=parse_collect_list(LIST),
                 status=agent_doc())
    for k, v in kw.items():
        setattr(h, k, v)
    return h


class FakeEtcd:
    def __init__(self, items: list[tuple[str, bytes, int]]) -> None:
        self.items = items

    def get_prefix(self, prefix: str):  # type: ignore[no-untyped-def]
        return [i for i in self.items if i[0].startswith(prefix)], 99


def test_gather_hosts_and_transfers() -> None:
    k = Keys("/lf")
    etcd = FakeEtcd([
        (k.agent_collect("10.0.0.10"), LIST, 5),
        (k.agent_collect("10.0.0.9"), b"not json", 6),
        (k.agent_status("10.0.0.9"), json.dumps(agent_doc(ip="10.0.0.9")).encode(), 8),
        (k.agent_status("2001:db8::1"), b"{broken", 9),
        ("/lf/agents/not-an-ip/collect", LIST, 3),
        (k.transfer_status("t1"), b'{"id": "t1"}', 10),
        (k.transfer_status("t2"), b"[]", 11),
    ])
    hosts = gather_hosts(etcd, k)  # type: ignore[arg-type]
    assert list(hosts) == ["10.0.0.9", "10.0.0.10", "2001:db8::1"]  # numeric order, v4 first
    assert hosts["10.0.0.9"].collect_error and hosts["10.0.0.9"].live
    assert hosts["10.0.0.10"].inputs is not None and not hosts["10.0.0.10"].live
    assert hosts["2001:db8::1"].live and "not JSON" in hosts["2001:db8::1"].status_error
    transfers = gather_transfers(etcd, k)  # type: ignore[arg-type]
    assert transfers["t1"] == {"id": "t1"} and "not a JSON object" in transfers["t2"]["last_error"]


def test_config_state() -> None:
    assert config_state(host()) == "rev 7 (current)"
    assert config_state(host(collect_revision=9)) == "rev 7 (behind 9)"
    h = host(status=agent_doc(config={"revision": 7, "source": "etcd", "rejected_revision": 9, "error": "x"}))
    assert config_state(h) == "rejected rev 9, runs rev 7"
    assert config_state(host(status=agent_doc(config={"revision": 4, "source": "disk"}))).startswith("rev 4 from disk")
    assert config_state(host(status=None)) == "-"
    assert config_state(host(collect_raw=None, status=agent_doc(config={"revision": 0}))) == "no list: collects nothing"


def test_hosts_table_and_json() -> None:
    hosts = {
        "10.0.0.5": host(),
        "10.0.0.6": HostView("10.0.0.6", collect_raw=b"[", collect_revision=3, collect_error="collect list: bad"),
    }
    lines = hosts_table(hosts).splitlines()
    assert lines[0].split() == ["IP", "AGENT", "HOSTNAME", "VERSION", "INPUTS", "LAG", "CONFIG", "LAST", "ERROR"]
    assert lines[1].split()[:7] == ["10.0.0.5", "live", "web1", "0.1.0", "1", "100", "B"]
    assert "rev 7 (current)" in lines[1]
    assert lines[2].split()[:6] == ["10.0.0.6", "DOWN", "-", "-", "INVALID", "-"]
    assert lines[2].endswith("collect list: bad")
    rows = hosts_json(hosts)
    assert rows[0]["live"] is True and rows[0]["inputs"] == 1 and rows[0]["applied_revision"] == 7
    assert rows[0]["lag_bytes"] == 100
    assert rows[1]["collect_valid"] is False and rows[1]["inputs"] is None and rows[1]["lag_bytes"] is None


def test_rates() -> None:
    r, over = rates(None, agent_doc(), NOW)
    assert round(r["lines_sent"], 3) == round(3600 / 3608, 3) and over.startswith("average since start")
    before = agent_doc(updated_at="2024-05-01T11:59:58+00:00",
                       counters={"lines_sent": 3000, "lines_read": 3000, "bytes_read": 300000})
    r, over = rates(before, agent_doc(), NOW)
    assert r["lines_sent"] == 60.0 and over == "over the last 10s"
    r, _ = rates(before | {"pid": 1}, agent_doc(), NOW)  # restarted in between: not comparable
    assert r["lines_sent"] < 2


def test_agent_lines() -> None:
    text = "\n".join(agent_lines(host(), NOW))
    assert text.startswith("AGENT 10.0.0.5 (web1)  version 0.1.0, pid 123, up 1h00m, status updated 2s ago")
    assert "rev 7 (current); 1 input(s) in force" in text
    assert "sent 3,600 (1.0/s)" in text
    assert "/var/log/app/a.log" in text and "100 B" in text and "open" in text
    err = host(status=agent_doc(last_error="kafka refused a line", files=[{"path": "/x", "error": "/x: EACCES"}]))
    text = "\n".join(agent_lines(err, NOW))
    assert "error     kafka refused a line" in text and "ERROR" in text
    blocked = agent_doc(kafka={"inflight_lines": 1, "inflight_bytes": 300, "held_lines": 2500, "held_bytes": 9000,
                               "last_error": None,
                               "blocked": [{"path": "/var/log/big.log", "topic": "small", "lines": 2500,
                                            "bytes": 9000, "retries": 4, "next_retry_s": 7.5,
                                            "reason": "Broker: Message size too large (MSG_SIZE_TOO_LARGE)"}]})
    text = "\n".join(agent_lines(host(status=blocked), NOW))
    assert "held for a retry 2,500 line(s)" in text
    assert ("BLOCKED   /var/log/big.log → topic small: 2,500 line(s) held, 4 retries, next in 7.5s; "
            "reading paused: Broker: Message size too large") in text
    lost = agent_doc(files_lost=[{"path": "/var/log/nginx/access.log", "identity": "fp:x@1:2", "bytes": 4096,
                                  "reason": "deleted or compressed while the agent was down or the input absent"}])
    text = "\n".join(agent_lines(host(status=lost), NOW))
    assert ("LOST      /var/log/nginx/access.log: 4.0 KiB never read, the file was deleted or compressed while "
            "the agent was down") in text
    down = "\n".join(agent_lines(host(status=None), NOW))
    assert down.startswith("HOST 10.0.0.5: no live agent") and "revision 7" in down


def transfer_doc(**over: object) -> dict:
    """Shaped like transfer/main.py refresh_status writes it."""
    doc = {"id": "t1", "host": "tr1", "pid": 9, "version": "0.1.0", "group_id": "logferry-transfer",
           "started_at": "2024-05-01T11:59:00+00:00", "updated_at": "2024-05-01T12:00:09+00:00",
           "config": {"revision": 4, "source": "etcd", "topics": ["app", "web"], "topics_regex": None,
                      "index": "logs-{topic}-{yyyy.MM.dd}", "dead_letter_topic": "logferry-dead-letter",
                      "rejected_revision": None, "error": None},
           "etcd": "connected", "elasticsearch": {"state": "ok", "error": None},
           "assigned_partitions": ["app[0]", "app[1]", "web[0]"],
           "partitions": [{"topic": "app", "partition": 0, "committed": 10, "lag": 5},
                          {"topic": "app", "partition": 1, "committed": 20, "lag": 0},
                          {"topic": "web", "partition": 0, "committed": 1234, "lag": 7}],
           "consumer_lag": 12, "in_flight": 3, "paused": False,
           "counters": {"consumed": 140.0, "indexed": 140.0, "failed": {"mapping": 2.0}, "retried": 0.0,
                        "dead_lettered": {}, "config_rejected": 0.0},
           "last_error": None}
    doc.update(over)
    return doc


def test_transfer_lines() -> None:
    text = "\n".join(transfer_lines("t1", transfer_doc(), NOW, stored_revision=4))
    assert text.startswith("TRANSFER t1 on tr1  version 0.1.0, pid 9, group logferry-transfer, up 1m10s")
    assert "config     rev 4 (current): topics app, web → index logs-{topic}-{yyyy.MM.dd}" in text
    assert "es         ok" in text and "consumer   lag 12 record(s), 3 in flight" in text
    assert "consumed 140 (2.0/s)" in text and "failed mapping 2" in text
    lines = text.splitlines()
    assert lines[-4].split() == ["TOPIC", "PARTITION", "COMMITTED", "LAG"]
    assert lines[-1].split() == ["web", "0", "1,234", "7"]
    doc = transfer_doc(config={"revision": 3, "topics": ["app"], "rejected_revision": 5, "error": "bad"},
                       elasticsearch={"state": "unavailable", "error": "HTTP 503"}, paused=True,
                       last_error="HTTP 503")
    text = "\n".join(transfer_lines("t1", doc, NOW, stored_revision=5))
    assert "rev 3 (behind 5)" in text and "refused    rev 5: bad" in text
    assert "es         unavailable: HTTP 503" in text and "PAUSED" in text and "error      HTTP 503" in text


def test_transfer_lines_other_shapes() -> None:
    text = "\n".join(transfer_lines("t2", {"assigned": {"app": [0, 1]}, "lag": 3, "extra": {"a": 1}}, NOW))
    assert "partitions app[0,1]" in text and "lag 3 record(s)" in text and 'extra      {"a":1}' in text
    text = "\n".join(transfer_lines("t3", {"assigned_partitions": ["app[0]", "web[2]", "db:1"]}, NOW))
    assert "partitions app[0] db[1] web[2]" in text and "error      -" in text


def test_agent_block_shows_input_counts_only_where_non_zero() -> None:
    st = agent_doc(inputs=[
        {"path": "/var/log/nginx/*.log", "lines_dropped": 12, "lines_parsed": 1800, "parse_failures": 1},
        {"path": "/var/log/app/*.log", "lines_dropped": 0, "lines_parsed": 0, "parse_failures": 0},
        {"path": "/var/log/debug.log", "lines_dropped": 5, "lines_parsed": 0, "parse_failures": 0},
    ])
    lines = agent_lines(host(status=st), NOW)
    shown = [ln for ln in lines if ln.startswith("  input ")]
    assert shown == ["  input     /var/log/nginx/*.log: parsed 1,800, parse failures 1, dropped 12",
                     "  input     /var/log/debug.log: dropped 5"]
    assert any("log.flags:parse_failure" in ln for ln in lines)
    assert lines.index(shown[0]) < next(i for i, ln in enumerate(lines) if ln.startswith("  error "))
    # Nothing to show (only zeros, no inputs key from an older agent, a malformed one): no lines.
    zeros = agent_doc(inputs=[{"path": "/var/log/app/*.log", "lines_dropped": 0, "lines_parsed": 0,
                               "parse_failures": 0}])
    for doc in (zeros, agent_doc(), agent_doc(inputs="oops"), agent_doc(inputs=[None, {"path": "x"}])):
        lines = agent_lines(host(status=doc), NOW)
        assert not [ln for ln in lines if ln.startswith("  input ") or "parse_failure" in ln]
    dropped_only = agent_lines(host(status=agent_doc(inputs=[{"path": "/a", "lines_dropped": 3}])), NOW)
    assert not any("parse_failure" in ln for ln in dropped_only)
