"""logctl doctor's checks on data: the keys, index templates, etcd member lists (fake client)."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from logctl.doctor import (
    FAIL,
    OK,
    WARN,
    check_es_templates,
    check_etcd,
    check_keys,
    needed_topics,
    render_findings,
)
from logctl.status import HostView
from logferry.etcd import ClusterStatus, MemberStatus
from logferry.schema import parse_collect_list

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
TKEY = "/logferry/transfer/config"


def hv(ip: str, topics: list[str], status: dict | None = None, rev: int = 5, raw: bytes | None = None) -> HostView:
    raw = raw if raw is not None else str([{"path": f"/var/log/{t}.log", "topic": t} for t in topics]).replace(
        "'", '"').encode()
    h = HostView(ip, collect_raw=raw, collect_revision=rev)
    try:
        h.inputs = parse_collect_list(raw)
    except ValueError as e:
        h.collect_error = str(e)
    h.status = status
    return h


def live(rev: int = 5, **over: object) -> dict:
    doc = {"hostname": "h", "config": {"revision": rev, "source": "etcd", "rejected_revision": None, "error": None},
           "etcd": "connected", "kafka": {"last_error": None}, "files": [], "last_error": None}
    doc.update(over)
    return doc


def levels(findings, component=None):  # type: ignore[no-untyped-def]
    return [(f.level, f.message) for f in findings if component is None or f.component == component]


def test_all_good() -> None:
    hosts = {"10.0.0.5": hv("10.0.0.5", ["app"], live())}
    f = check_keys(hosts, {"t1": {"id": "t1"}}, b'{"topics": ["app"]}', TKEY, NOW)
    assert all(x.level == OK for x in f), render_findings(f)
    assert any("transfer config valid: topics app" in x.message for x in f)


def test_problems_are_named() -> None:
    hosts = {
        "10.0.0.5": hv("10.0.0.5", ["app", "web"], live(rev=4)),
        "10.0.0.6": hv("10.0.0.6", ["app"], None),
        "10.0.0.7": hv("10.0.0.7", [], live(config={"revision": 2, "rejected_revision": 9, "error": "bad"}),
                       raw=b'[{"path": "rel", "topic": "x"}]', rev=9),
        "10.0.0.8": HostView("10.0.0.8", status=live(etcd="unavailable", kafka={"last_error": "broker down"},
                                                     files=[{"path": "/p", "error": "EACCES"}])),
    }
    f = check_keys(hosts, {}, b'{"topics": ["app"]}', TKEY, NOW)
    text = render_findings(f)
    assert (FAIL, 'collect list of 10.0.0.7 (revision 9) is invalid: collect list entry 1 ("rel"): field "path": '
                  'relative path "rel"; the agent needs an absolute glob such as /var/log/app/*.log; its agent '
                  "keeps running rejected rev 9, runs rev 2") in levels(f)
    assert any(lv == WARN and "topic web (collected on 10.0.0.5) is not consumed" in m for lv, m in levels(f))
    assert any(lv == WARN and m.startswith("10.0.0.6: has a collect list but no live agent") for lv, m in levels(f))
    assert any(lv == WARN and "10.0.0.5: runs collect list revision 4, etcd holds 5" in m for lv, m in levels(f))
    assert any("10.0.0.8: agent runs but the host has no collect list" in m for _, m in levels(f))
    assert any("10.0.0.8: agent's etcd connection is unavailable" in m for _, m in levels(f))
    assert any("10.0.0.8: Kafka: broker down" in m for _, m in levels(f))
    assert any("10.0.0.8: cannot read /p: EACCES" in m for _, m in levels(f))
    assert levels(f, "transfers")[0][0] == FAIL and "no live logtransfer" in text
    assert text.splitlines()[0] == "config"


def test_transfer_config_missing_or_invalid() -> None:
    f = check_keys({}, {}, None, TKEY, NOW)
    assert levels(f, "config")[0] == (FAIL, f"no transfer config at {TKEY}: logtransfer does not know which "
                                            "topics to consume; set it with `logctl transfer-config set FILE`")
    assert (WARN, "no live logtransfer (no status key under transfers/): nothing moves lines from Kafka to "
                  "Elasticsearch") in levels(f)  # nothing collected: only a warning
    f = check_keys({}, {}, b'{"topics": []}', TKEY, NOW)
    assert levels(f, "config")[0][0] == FAIL and "invalid" in levels(f, "config")[0][1]


def test_needed_topics() -> None:
    hosts = {"10.0.0.5": hv("10.0.0.5", ["app", "web"]), "10.0.0.6": hv("10.0.0.6", ["app"])}
    need = needed_topics(hosts, b'{"topics": ["app", "db"], "dead_letter_topic": "dlq"}')
    assert need == {"app": ["collect list of 10.0.0.5", "collect list of 10.0.0.6", "transfer config"],
                    "web": ["collect list of 10.0.0.5"], "db": ["transfer config"],
                    "dlq": ["transfer config (dead letters)"]}


def test_es_templates() -> None:
    sample = "logs-app-2024.05.01"
    assert check_es_templates([], sample)[0].level == FAIL
    builtin = {"name": "logs", "index_template": {"index_patterns": ["logs-*-*"], "priority": 100,
                                                  "data_stream": {}}}
    ours = {"name": "logferry", "index_template": {"index_patterns": ["logs-*"], "priority": 200}}
    f = check_es_templates([builtin], sample)
    assert f[0].level == FAIL and "data stream" in f[0].message
    f = check_es_templates([builtin, ours], sample)
    assert f[0].level == OK and "logferry (priority 200)" in f[0].message
    other = {"name": "company-default", "index_template": {"index_patterns": "logs-*", "priority": 1}}
    assert check_es_templates([other], sample)[0].level == WARN
    assert check_es_templates([{"name": "x", "index_template": {"index_patterns": ["metrics-*"]}}],
                              sample)[0].level == FAIL


def _member(i: int, healthy: bool = True, leader: bool = False, version: str = "3.5.17") -> MemberStatus:
    return MemberStatus(id=i, name=f"etcd{i}", peer_urls=[], client_urls=[f"http://10.0.0.{i}:2379"],
                        healthy=healthy, is_leader=leader, version=version if healthy else "",
                        error="" if healthy else "DEADLINE_EXCEEDED")


def _client(members: list[MemberStatus], alarms: list[str] | None = None) -> SimpleNamespace:
    st = ClusterStatus(cluster_id=1, member_id=1, leader_id=1, version="3.5.17", db_size=4096, raft_term=2,
                       raft_index=10, revision=10, alarms=alarms or [])
    return SimpleNamespace(members=lambda: members, status=lambda: st)


def test_check_etcd() -> None:
    f = check_etcd(_client([_member(1, leader=True), _member(2), _member(3)]))
    assert [x.level for x in f] == [OK] and "3 member(s), 3 healthy; leader etcd1" in f[0].message
    f = check_etcd(_client([_member(1, leader=True), _member(2), _member(3, healthy=False)]))
    assert [x.level for x in f] == [OK, FAIL] and "etcd3 (http://10.0.0.3:2379) is not healthy" in f[1].message
    f = check_etcd(_client([_member(1), _member(2, healthy=False), _member(3, healthy=False)]))
    text = render_findings(f)
    assert "below the quorum of 2" in text and "no member is the leader" in text and OK not in [x.level for x in f]
    f = check_etcd(_client([_member(1, leader=True), _member(2, version="3.4.30"), _member(3)], ["NOSPACE on 1"]))
    assert any(x.level == WARN and "different versions" in x.message for x in f)
    assert any(x.level == FAIL and x.message.startswith("alarm NOSPACE on 1: etcd used up") for x in f)
    f = check_etcd(_client([_member(1, leader=True), _member(2)]))
    assert any("an even count" in x.message for x in f)


def test_transfer_findings() -> None:
    hosts = {"10.0.0.5": hv("10.0.0.5", ["app"], live())}
    doc = {"id": "t1", "config": {"revision": 3, "rejected_revision": None}, "etcd": "connected",
           "elasticsearch": {"state": "unavailable", "error": "HTTP 503"}, "last_error": "HTTP 503"}
    f = check_keys(hosts, {"t1": doc}, b'{"topics": ["app"]}', TKEY, NOW, transfer_revision=4)
    msgs = levels(f, "transfers")
    assert msgs[0] == (OK, "1 live logtransfer(s): t1")
    assert (WARN, "t1: runs transfer config revision 3, etcd holds 4: it has not seen the change (watch broken?)") \
        in msgs
    assert (WARN, "t1: Elasticsearch unavailable: HTTP 503 (lines wait in Kafka, nothing is lost)") in msgs
    assert len(msgs) == 3  # the same error is not repeated as "last error"
    doc["config"] = {"revision": 3, "rejected_revision": 4, "error": "bad"}
    doc["elasticsearch"] = {"state": "ok"}
    f = check_keys(hosts, {"t1": doc}, b'{"topics": ["app"]}', TKEY, NOW, transfer_revision=4)
    assert (WARN, "t1: refused transfer config revision 4 (bad); it runs revision 3") in levels(f, "transfers")
