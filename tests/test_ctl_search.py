"""logctl search: index selection, the query, output lines, and the follow loop (fake ES)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

import pytest

from logctl.search import (
    IndexSelection,
    SearchRequest,
    build_query,
    format_hit,
    run_search,
    select_indices,
)
from logctl.util import CtlError


def test_select_indices_default_pattern() -> None:
    sel = select_indices(None, None)
    assert sel.target == "logferry-*-*" and sel.exact is None
    assert sel.topic("logferry-nginx-access-2024.05.01") == "nginx-access"
    assert sel.topic("other-index") is None


def test_select_indices_topic_is_exact() -> None:
    sel = select_indices("logs-{topic}-{yyyy.MM.dd}", "App")
    assert sel.target == "logs-app-*"
    assert sel.exact is not None
    assert sel.exact.fullmatch("logs-app-2024.05.01")
    assert not sel.exact.fullmatch("logs-app-x-2024.05.01")  # another topic that starts alike
    assert not sel.exact.fullmatch("logs-app-2024.05")


def test_select_indices_custom_patterns() -> None:
    sel = select_indices("{topic}_{yyyy-MM}", "web")
    assert sel.target == "web_*"
    assert sel.exact.fullmatch("web_2024-05") and not sel.exact.fullmatch("web_x_2024-05")
    sel = select_indices("applogs-{yyyy.MM.dd.HH}", "ignored")  # no {topic}: every topic shares it
    assert sel.target == "applogs-*" and sel.exact is None and sel.topic_of is None
    with pytest.raises(CtlError, match="not a Kafka topic"):
        select_indices(None, "bad topic")


def test_build_query() -> None:
    since = datetime(2024, 5, 1, 12, tzinfo=UTC)
    q = build_query(since=since, until=None, host="10.0.0.5", text="error timeout")
    f = q["bool"]["filter"]
    assert f[0] == {"range": {"@timestamp": {"gte": "2024-05-01T12:00:00.000Z",
                                             "format": "strict_date_optional_time"}}}
    assert f[1]["bool"]["should"] == [{"term": {"host.ip": "10.0.0.5"}}, {"term": {"host.ip.keyword": "10.0.0.5"}}]
    assert q["bool"]["must"] == [{"query_string": {"query": "error timeout", "default_field": "message",
                                                   "default_operator": "AND"}}]
    q = build_query(since=None, until=None, host="web1", text=None, since_ms=1000)
    assert q["bool"]["filter"][0] == {"range": {"@timestamp": {"gte": 1000, "format": "epoch_millis"}}}
    assert q["bool"]["filter"][1]["bool"]["should"][0] == {"term": {"host.name": "web1"}}
    assert build_query(since=None, until=None, host="2001:DB8::1", text=None)["bool"]["filter"][0]["bool"][
        "should"][0] == {"term": {"host.ip": "2001:db8::1"}}


def test_format_hit() -> None:
    sel = select_indices(None, None)
    hit = {"_index": "logferry-app-2024.05.01", "_id": "x",
           "_source": {"@timestamp": "2024-05-01T12:00:00.000Z", "message": "hello", "host": {"name": "web1"}}}
    assert format_hit(hit, sel) == "2024-05-01T12:00:00.000Z web1 app: hello"
    hit["_index"] = "weird"
    hit["_source"]["host"] = {"ip": "10.0.0.5"}
    assert format_hit(hit, sel) == "2024-05-01T12:00:00.000Z 10.0.0.5 weird: hello"


class FakeIndices:
    def __init__(self, es: FakeES) -> None:
        self.es = es

    def resolve_index(self, name: str, expand_wildcards: str) -> dict[str, Any]:
        return {"indices": [{"name": n} for n in sorted({d["_index"] for d in self.es.docs})], "data_streams": []}

    def get_field_mapping(self, **_: Any) -> dict[str, Any]:
        return {n: {"mappings": {"event.id": {"mapping": {"id": {"type": "keyword"}}}}}
                for n in {d["_index"] for d in self.es.docs}}


class FakeES:
    """Just enough of search: range filters on epoch ms, sort by (ts, id), search_after, size."""

    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []
        self.indices = FakeIndices(self)
        self.visible = 0  # docs[:visible] are searchable (the others are "not refreshed yet")

    def add(self, ts: int, msg: str, index: str = "logferry-app-2024.05.01", visible: bool = True) -> None:
        # ids in reverse of insertion order: only log.offset keeps same-millisecond lines in order
        n = len(self.docs)
        self.docs.append({"_index": index, "_id": f"id{9999 - n:04d}", "ts": ts, "offset": n, "msg": msg})
        if visible:
            self.visible = len(self.docs)

    def search(self, *, index: str, query: dict, sort: list, size: int, search_after: list | None = None,
               **_: Any) -> dict[str, Any]:
        names = set(index.split(","))
        lo = max([f["range"]["@timestamp"]["gte"] for f in query["bool"]["filter"]
                  if "range" in f and f["range"]["@timestamp"].get("format") == "epoch_millis"] or [0])
        hits = [d for d in self.docs[: self.visible] if d["_index"] in names and d["ts"] >= lo]
        desc = next(iter(sort[0].values()))["order"] == "desc"
        assert [next(iter(x)) for x in sort] == ["@timestamp", "log.offset", "event.id"]

        def key(d: dict[str, Any]) -> tuple[int, int, str]:
            return d["ts"], d["offset"], d["_id"]

        hits.sort(key=key, reverse=desc)
        if search_after is not None:
            k = tuple(search_after)
            hits = [d for d in hits if (key(d) < k if desc else key(d) > k)]
        return {"hits": {"hits": [{"_index": d["_index"], "_id": d["_id"], "sort": list(key(d)),
                                   "_source": {"@timestamp": str(d["ts"]), "message": d["msg"],
                                               "host": {"name": "h"}}} for d in hits[:size]]}}


def _req(count: int = 3, follow: bool = False, lookback_s: float = 10.0) -> SearchRequest:
    return SearchRequest(sel=select_indices(None, "app"), since=None, until=None, host=None, text=None,
                         count=count, follow=follow, lookback_s=lookback_s)


def test_newest_last_like_tail() -> None:
    es = FakeES()
    for i in range(5):
        es.add(1000 + i // 2, f"m{i}")  # two lines per millisecond: file order kept
    out = io.StringIO()
    assert run_search(es, _req(count=3), as_json=False, out=out) == 3
    assert [ln.split(": ")[1] for ln in out.getvalue().splitlines()] == ["m2", "m3", "m4"]


def test_follow_prints_new_and_late_lines_once() -> None:
    es = FakeES()
    for i in range(5):
        es.add(100_000 + i * 1000, f"old{i}")
    out = io.StringIO()
    steps = iter([
        lambda: es.add(106_000, "new1"),
        lambda: (es.add(107_000, "new2"), es.add(107_000, "new2b")),
        # late: stamped before the newest line, visible only now; within the look-back window
        lambda: es.add(101_500, "late"),
        # too late: older than the window, so it is not printed (documented limit)
        lambda: es.add(50_000, "ancient"),
        lambda: None,
    ])

    def sleep(_s: float) -> None:
        next(steps)()

    n = run_search(es, _req(count=2, follow=True), as_json=False, out=out, sleep=sleep, now_ms=lambda: 104_500,
                   polls=5)
    msgs = [ln.split(": ")[1] for ln in out.getvalue().splitlines()]
    assert msgs == ["old3", "old4", "new1", "new2", "new2b", "late"]
    assert n == 6


def test_follow_pages_beyond_one_page(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("logferry.search.PAGE", 3)
    es = FakeES()
    es.add(1000, "first")
    out = io.StringIO()
    burst = iter([lambda: [es.add(2000 + i, f"b{i}") for i in range(8)], lambda: None])
    run_search(es, _req(count=1, follow=True), as_json=True, out=out, sleep=lambda s: next(burst)(),
               now_ms=lambda: 1000, polls=2)
    assert out.getvalue().count('"message":"b') == 8
    assert '"_id":"id9999"' in out.getvalue()


def test_follow_waits_for_the_first_index() -> None:
    es = FakeES()
    out = io.StringIO()
    steps = iter([lambda: None, lambda: es.add(5000, "first ever")])
    run_search(es, _req(count=5, follow=True), as_json=False, out=out, sleep=lambda s: next(steps)(),
               now_ms=lambda: 4000, polls=2)
    assert out.getvalue().splitlines() == ["5000 h app: first ever"]


def test_index_selection_without_topic_searches_target() -> None:
    sel = IndexSelection(target="custom-*", exact=None, topic_of=None)
    assert format_hit({"_index": "custom-1", "_source": {"message": "m", "@timestamp": "t"}}, sel) == "t ? custom-1: m"


def test_follow_rides_through_an_elasticsearch_outage(capsys: pytest.CaptureFixture[str]) -> None:
    from elastic_transport import ConnectionError as EsConnectionError

    es = FakeES()
    es.add(1000, "before")
    real_search = es.search
    down = {"on": False}

    def search(**kw: Any) -> dict[str, Any]:
        if down["on"]:
            raise EsConnectionError("Connection refused")
        return real_search(**kw)

    es.search = search  # type: ignore[method-assign]
    out = io.StringIO()
    steps = iter([lambda: down.update(on=True), lambda: es.add(2000, "during"),
                  lambda: down.update(on=False), lambda: None])
    run_search(es, _req(count=1, follow=True), as_json=False, out=out, sleep=lambda s: next(steps)(),
               now_ms=lambda: 1000, polls=4)
    assert [ln.split(": ")[1] for ln in out.getvalue().splitlines()] == ["before", "during"]
    err = capsys.readouterr().err
    assert err.count("does not answer") == 1 and "answers again" in err
