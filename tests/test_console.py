"""The console's pure parts: URL state, passwords and sessions, its INI, and the search bodies it sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from console.auth import SessionSigner, hash_password, verify_password
from console.params import ParamError, parse_search_params
from logferry.config import ConfigError, parse_console_config
from logferry.search import FIELD_FACETS, context_requests, facet_aggs, histogram_interval

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def test_url_state_quick_range_and_filters() -> None:
    p = parse_search_params({"q": " error ", "range": "24h", "host": "web7", "topic": "app", "file": "/x.log"}, NOW)
    assert (p.q, p.range, p.host, p.topic, p.file, p.size, p.after) == ("error", "24h", "web7", "app", "/x.log", 100,
                                                                       None)
    assert p.until == NOW and p.since == NOW - timedelta(hours=24)
    assert parse_search_params({}, NOW).range == "1h"


def test_url_state_absolute_range_and_paging() -> None:
    p = parse_search_params({"from": "2026-12-04T10:00:00Z", "to": "-30m", "size": "50",
                             "after": '[1764842400000, 120, "ab"]'}, NOW)
    assert p.since == datetime(2026, 12, 4, 10, tzinfo=UTC) and p.until == NOW - timedelta(minutes=30)
    assert p.range is None and p.size == 50 and p.after == [1764842400000, 120, "ab"]


@pytest.mark.parametrize("args, names", [
    ({"range": "3h"}, "range"), ({"from": "later"}, "from/to"), ({"from": "-1h", "to": "-2h"}, "from"),
    ({"size": "5000"}, "size"), ({"after": "{}"}, "after"), ({"q": "x" * 3000}, "q"),
])
def test_url_state_refuses_what_it_cannot_use_naming_the_parameter(args: dict, names: str) -> None:
    with pytest.raises(ParamError, match=f"^{names}"):
        parse_search_params(args, NOW)


def test_password_hash_round_trip_and_malformed_hashes() -> None:
    h = hash_password("s3cret-pass", iterations=1000)
    assert h.startswith("pbkdf2_sha256$1000$") and verify_password("s3cret-pass", h)
    assert not verify_password("s3cret-pasS", h)
    for bad in ("", "plain", "md5$1$a$b", "pbkdf2_sha256$x$y$z"):
        assert not verify_password("s3cret-pass", bad)


def test_session_cookie_signed_expiring_and_not_forgeable() -> None:
    signer = SessionSigner("k" * 32, lifetime_s=60)
    s, cookie = signer.new("ops", "admin", now=1000.0)
    assert signer.load(cookie, now=1030.0) == s and s.admin
    assert signer.load(cookie, now=1061.0) is None  # expired
    _, mac = cookie.rsplit(".", 1)
    forged = SessionSigner("k" * 32, 60).new("dev", "read", now=1000.0)[1].rsplit(".", 1)[0]
    assert signer.load(f"{forged}.{mac}") is None  # another payload under this signature
    assert SessionSigner("other", 60).load(cookie, now=1030.0) is None
    assert signer.load("garbage") is None and signer.load(None) is None


INI = """[etcd]
endpoints = 127.0.0.1:2379
[elasticsearch]
hosts = http://127.0.0.1:9200
"""


def test_console_ini_defaults_to_loopback_without_users() -> None:
    cfg = parse_console_config(INI)
    assert cfg.console.listen == "127.0.0.1:8430" and cfg.console.loopback and not cfg.console.users
    assert cfg.es.hosts == ["http://127.0.0.1:9200"]


def test_console_ini_refuses_an_open_address_without_users_and_bad_users() -> None:
    with pytest.raises(ConfigError, match=r"\[console\] listen.*not a loopback address and no \[users\]"):
        parse_console_config(INI + "[console]\nlisten = 0.0.0.0:8430\n")
    h = hash_password("x" * 10, iterations=100_000)
    cfg = parse_console_config(INI + f"[console]\nlisten = 0.0.0.0:8430\n[users]\nops = admin {h}\n")
    assert [(u.name, u.role) for u in cfg.console.users] == [("ops", "admin")]
    with pytest.raises(ConfigError, match=r"\[users\] ops: starts with the role"):
        parse_console_config(INI + f"[users]\nops = root {h}\n")
    with pytest.raises(ConfigError, match="never a plain password"):
        parse_console_config(INI + "[users]\nops = admin hunter2\n")
    with pytest.raises(ConfigError, match=r"\[consol\]: unknown section \(did you mean \[console\]\?\)"):
        parse_console_config(INI + "[consol]\n")


def test_histogram_interval_keeps_about_sixty_bars() -> None:
    assert histogram_interval(NOW - timedelta(minutes=15), NOW) == "30s"
    assert histogram_interval(NOW - timedelta(hours=1), NOW) == "1m"
    assert histogram_interval(NOW - timedelta(hours=24), NOW) == "30m"
    assert histogram_interval(NOW - timedelta(days=7), NOW) == "3h"
    aggs = facet_aggs("1m", NOW - timedelta(hours=1), NOW)
    assert aggs["over_time"]["date_histogram"]["extended_bounds"] == {"min": "2026-12-04T11:00:00.000Z",
                                                                      "max": "2026-12-04T12:00:00.000Z"}
    assert {k for k in aggs} == {"over_time", "hosts", "files", "indices"} | {f"field:{f}" for f in FIELD_FACETS}
    assert aggs["field:log.flags"] == {"terms": {"field": "log.flags", "size": 10}}


def test_context_is_the_same_file_on_the_same_host_by_offset() -> None:
    src = {"@timestamp": "2026-12-04T11:00:00.000Z", "host": {"name": "web7"}, "log": {"file": {"path": "/a.log"},
                                                                                          "offset": 620}}
    before, after = context_requests(src, 10)
    assert before["sort"] == [{"log.offset": {"order": "desc"}}] and after["sort"] == [{"log.offset": {"order": "asc"}}]
    assert {"range": {"log.offset": {"lt": 620}}} in before["query"]["bool"]["filter"]
    assert {"range": {"log.offset": {"gt": 620}}} in after["query"]["bool"]["filter"]
    assert {"term": {"host.name": "web7"}} in before["query"]["bool"]["filter"]
    assert {"term": {"log.file.path": "/a.log"}} in after["query"]["bool"]["filter"]
    assert before["size"] == after["size"] == 10


def test_kibana_saved_objects_match_the_indices_and_fields_logferry_writes() -> None:
    """docs/kibana/logferry-saved-objects.ndjson (imported by the lab's Kibana): its data view covers
    the default index pattern's indices, its fields are the envelope's and the template's."""
    import json
    from pathlib import Path

    from logferry.estemplates import index_patterns
    from logferry.schema import DEFAULT_INDEX
    from transfer.template import template_body

    path = Path(__file__).resolve().parent.parent / "docs" / "kibana" / "logferry-saved-objects.ndjson"
    objs = [json.loads(line) for line in path.read_text().splitlines()]
    view = next(o for o in objs if o["type"] == "index-pattern")
    assert [view["attributes"]["title"]] == index_patterns(DEFAULT_INDEX)
    assert view["attributes"]["timeFieldName"] == "@timestamp"
    mapped = template_body(index_patterns(DEFAULT_INDEX))["template"]["mappings"]["properties"]

    def has(field: str) -> bool:
        node: dict = {"properties": mapped}
        for part in field.split("."):
            node = node.get("properties", {}).get(part)
            if node is None:
                return False
        return True

    labelled = json.loads(view["attributes"]["fieldAttrs"])
    assert labelled and all(has(f) for f in labelled), [f for f in labelled if not has(f)]
    search = next(o for o in objs if o["type"] == "search")
    assert search["references"][0]["id"] == view["id"]
    assert all(has(c) for c in search["attributes"]["columns"])
