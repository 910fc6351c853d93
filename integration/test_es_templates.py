"""Elastic's own index templates next to logferry's (issue 18.3), on the real Elasticsearch.

Shaped like a cluster where Elastic Agent or an integration was set up: a ``logs``-like template
for ``…logs-*-*`` at priority 100 with a data stream, integration templates for one dataset at
priority 200 with a data stream, and a company template at logferry's own priority (150). The
transfer writes to an index pattern of the old default's shape (``…logs-{topic}-{yyyy.MM.dd}``),
the case of users who upgraded with an explicit pattern. Every step is a state the test waits
for, never a delay:

1. the company template overlaps logferry's at the same priority: Elasticsearch refuses
   logferry's; the transfer holds (status names the refusal, nothing indexed, nothing committed);
2. the company template removed: the transfer installs its template by itself, indexes 1,000
   documents exactly once, with logferry's mappings (``event.id`` keyword, ``host.ip`` ip);
3. an integration template (priority 200, data stream) can still be installed afterwards;
4. a second topic whose index an integration template wins for (priority 200 > 150, data
   stream): its documents are held with a status naming that template; once it is removed,
   500 more documents arrive exactly once, in a normal index with logferry's mappings.

(Names are prefixed per test so the shared cluster's real ``logs-*`` is untouched.)
"""

from __future__ import annotations

import pytest

from integration.agents import wait_for
from integration.test_agent import prefix  # noqa: F401
from integration.test_transfer import (  # noqa: F401
    Feed,
    assert_exactly,
    committed,
    es_count,
    es_count_soon,
    indices,
    put_config,
    status_of,
    transfer_config,
    transfers,
)
from logferry.estemplates import PRIORITY, index_patterns, template_name


@pytest.fixture
def index_pattern(unique: str) -> str:  # overrides test_transfer's: the old default's shape
    return f"it-{unique}-logs-{{topic}}-{{yyyy.MM.dd}}"


def _put(es, name: str, patterns: list[str], priority: int, data_stream: bool = True) -> None:
    body: dict = {"index_patterns": patterns, "priority": priority}
    if data_stream:
        body["data_stream"] = {}
    es.indices.put_index_template(name=name, **body)


def _mapping(es, index: str) -> dict:
    m = es.indices.get_mapping(index=index)
    (only,) = m.body.values()
    return only["mappings"]


def test_elastic_templates_and_logferrys_coexist_and_a_clash_holds_indexing(
        stack, es, etcd, kafka_admin, topic_factory, transfers, prefix, unique, index_pattern, indices):  # noqa: F811
    base = f"it-{unique}-logs"
    t1, t2 = topic_factory("tpl-app"), topic_factory("tpl-nginx")
    dlq = topic_factory("tpl-dlq")
    ours = template_name(index_patterns(index_pattern))
    mine = [f"it-{unique}-elastic-logs", f"it-{unique}-company", f"it-{unique}-mysql", f"it-{unique}-nginx"]
    _put(es, mine[0], [f"{base}-*-*"], 100)  # like Elastic's built-in "logs"
    _put(es, mine[1], [f"{base}-*"], PRIORITY, data_stream=False)  # same priority as logferry's
    group = f"it-transfer-{unique}"
    try:
        # 1. logferry's template refused: held, said, nothing indexed or committed
        put_config(etcd, prefix, transfer_config([t1, t2], index_pattern, dlq))
        t = transfers("tpl")
        t.start()
        feed1 = Feed(stack, t1, "tplapp")
        ids1 = feed1.produce(1000)
        tid = f"tpl-{unique}"

        def held_reason(words: str):
            def check():
                err = (status_of(etcd, prefix, tid) or {}).get("last_error") or ""
                return err if words in err else None
            return check

        refused = wait_for(held_reason("refused logferry's index template"), 60, "the refusal in the status")
        assert mine[1] in refused and "held" in refused, refused
        assert committed(stack, kafka_admin, group, t1, 1) == {0: 0}
        assert es_count(es, f"{base}-*") == 0
        assert not es.indices.exists_index_template(name=ours)

        # 2. the clash removed: installed without a restart, 1,000 documents exactly once
        es.indices.delete_index_template(name=mine[1])
        wait_for(lambda: es_count_soon(es, f"{base}-*") >= 1000, 90, "the 1,000 documents")
        assert_exactly(es, f"{base}-*", ids1)
        (idx1,) = es.indices.get(index=f"{base}-{t1}-*").body
        props = _mapping(es, idx1)["properties"]
        assert props["event"]["properties"]["id"]["type"] == "keyword" and props["host"]["properties"]["ip"][
            "type"] == "ip"
        assert es.indices.get_index_template(name=ours)["index_templates"][0]["index_template"]["priority"] == PRIORITY

        # 3. an integration template can be installed next to logferry's (it was refused at 200)
        _put(es, mine[2], [f"{base}-mysql.error-*"], 200)
        assert es.indices.exists_index_template(name=mine[2])

        # 4. an integration template wins for t2's index: held, named; removed: delivered
        _put(es, mine[3], [f"{base}-{t2}-*"], 200)
        feed2 = Feed(stack, t2, "tplnginx")
        ids2 = feed2.produce(500)
        why = wait_for(held_reason("wins over logferry's"), 60, "the overriding template in the status")
        assert mine[3] in why and "data stream" in why, why
        resolved = es.indices.resolve_index(name=f"{base}-{t2}-*")
        assert es_count(es, f"{base}-{t2}-*") == 0 and not resolved["indices"] and not resolved["data_streams"]
        es.indices.delete_index_template(name=mine[3])
        wait_for(lambda: es_count_soon(es, f"{base}-{t2}-*") >= 500, 90, "the 500 documents of the second topic")
        assert_exactly(es, f"{base}-{t2}-*", ids2)
        (idx2,) = es.indices.get(index=f"{base}-{t2}-*").body
        assert not idx2.startswith(".ds-") and _mapping(es, idx2)["properties"]["event"]["properties"]["id"][
            "type"] == "keyword"
        wait_for(lambda: not (status_of(etcd, prefix, tid) or {}).get("elasticsearch", {}).get("error"), 30,
                 "the fault to clear")
        assert es_count(es, f"{base}-*") == 1500
        print(f"templates: refused at the same priority → held (0 indexed, 0 committed): {refused}; "
              f"clash removed → 1000/1000 exactly once, event.id keyword; integration template installed "
              f"afterwards; overriding data-stream template → held: {why}; removed → 500/500 exactly once")
    finally:
        for name in mine:
            es.options(ignore_status=[404]).indices.delete_index_template(name=name)
        # (none should exist; 405 where the cluster has no data stream API)
        es.options(ignore_status=[404, 405]).indices.delete_data_stream(name=f"{base}-*")
