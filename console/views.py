"""What each console page shows, as plain data: read through the core (logferry/), like logctl.

These functions take the clients and the parsed request and return JSON-ready dicts; the web
layer (console/app.py) only routes, authenticates and serialises. Elasticsearch's and etcd's
calls are synchronous: Starlette runs these in its thread pool.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from console.params import SearchParams
from logferry.documents import Doc, unified_diff, validate_text, write_document
from logferry.etcd import EtcdClient
from logferry.fleet import HostView, config_state, gather_hosts, gather_transfers, host_json, last_error
from logferry.keys import Keys
from logferry.schema import DEFAULT_INDEX, SchemaError, parse_transfer_config
from logferry.search import (
    FIELD_FACETS,
    IndexSelection,
    build_query,
    context_requests,
    facet_aggs,
    histogram_interval,
    resolve_target,
    select_indices,
    sort_spec,
    tiebreak_field,
)

__all__ = ["context_of", "dead_letters", "delete_search", "doc_check", "doc_read", "doc_write", "export_lines",
           "host_detail", "hosts_page", "index_pattern", "line_of", "save_search", "saved_searches", "search_page",
           "selection", "transfers_page"]


def index_pattern(etcd: EtcdClient, keys: Keys) -> str:
    """The transfer config's index pattern (the default when there is none or it is invalid)."""
    raw, _ = etcd.get(keys.transfer_config())
    if raw is None:
        return DEFAULT_INDEX
    try:
        return parse_transfer_config(raw).index or DEFAULT_INDEX
    except SchemaError:
        return DEFAULT_INDEX


def selection(pattern: str, topic: str | None) -> IndexSelection:
    return select_indices(pattern, topic)


def line_of(hit: dict[str, Any], sel: IndexSelection) -> dict[str, Any]:
    """One hit as the page shows it. The message is data: the page sets it as text, never as HTML."""
    src = hit.get("_source") or {}
    host = src.get("host") if isinstance(src.get("host"), dict) else {}
    log = src.get("log") if isinstance(src.get("log"), dict) else {}
    f = log.get("file") if isinstance(log.get("file"), dict) else {}
    msg = src.get("message")
    return {"id": hit.get("_id"), "index": hit.get("_index"), "topic": sel.topic(hit.get("_index", "")),
            "ts": src.get("@timestamp"), "host": host.get("name"), "ip": host.get("ip"), "file": f.get("path"),
            "offset": log.get("offset"), "flags": log.get("flags") or [], "fields": src.get("fields") or {},
            "message": msg if isinstance(msg, str) else str(msg), "sort": hit.get("sort")}


#: how long the indices a selection resolves to (and their tiebreak field) are reused: two requests
#: to Elasticsearch fewer for each page while scrolling; a new index (a new day) shows within this
TARGET_TTL_S = 5.0
_targets: dict[IndexSelection, tuple[float, str, str | None]] = {}


def _target_of(es: Any, sel: IndexSelection) -> tuple[str | None, str | None]:
    """(comma-joined indices, tiebreak field) for ``sel``, cached for TARGET_TTL_S (never a miss)."""
    now = time.monotonic()
    got = _targets.get(sel)
    if got is not None and got[0] > now:
        return got[1], got[2]
    target = resolve_target(es, sel)
    if not target:
        return None, None
    tiebreak = tiebreak_field(es, target)
    if len(_targets) > 1000:
        _targets.clear()
    _targets[sel] = (now + TARGET_TTL_S, target, tiebreak)
    return target, tiebreak


def search_page(es: Any, pattern: str, p: SearchParams, timeout_s: float) -> dict[str, Any]:
    """Hits newest first (a page of ``p.size``, older pages through ``after``), the histogram over the
    whole range, and the hosts, files and topics with their counts for the query."""
    t0 = time.monotonic()
    sel = selection(pattern, p.topic)
    empty = {"hits": [], "total": 0, "total_relation": "eq", "histogram": {"interval": None, "buckets": []},
             "facets": {"topic": [], "host": [], "file": [], "fields": []}, "took_ms": 0, "target": sel.target}
    target, tiebreak = _target_of(es, sel)
    if not target:
        return empty | {"note": f"no index matches {sel.target} yet"}
    interval = histogram_interval(p.since, p.until)
    body: dict[str, Any] = {"query": build_query(**p.filters()), "sort": sort_spec("desc", tiebreak),
                            "size": p.size, "track_total_hits": p.after is None}
    if p.after is None:
        body["aggs"] = facet_aggs(interval, p.since, p.until)
    else:
        # An older page: the total and the counts are the first page's (the page keeps them); not
        # counting every match again keeps a page deep in the results as fast as the first.
        body["search_after"] = p.after
    # ES's own ``timeout`` ends the search with partial results; the client waits longer, so that the
    # console's watchdog (console/app.py) and not a dropped connection speaks when ES does not stop.
    resp = es.search(index=target, ignore_unavailable=True, allow_no_indices=True,
                     timeout=f"{int(timeout_s * 1000)}ms", request_timeout=timeout_s + 10, **body)
    resp = resp.body if hasattr(resp, "body") else resp
    total = resp["hits"].get("total") or {"value": None, "relation": "eq"}
    out = empty | {"hits": [line_of(h, sel) for h in resp["hits"]["hits"]], "total": total["value"],
                   "total_relation": total["relation"], "timed_out": bool(resp.get("timed_out")),
                   "timeout_s": timeout_s}
    aggs = resp.get("aggregations")
    if aggs:
        topics: dict[str, int] = {}
        for b in aggs["indices"]["buckets"]:
            name = sel.topic(b["key"]) or b["key"]
            topics[name] = topics.get(name, 0) + b["doc_count"]
        out["histogram"] = {"interval": interval,
                            "buckets": [[b["key"], b["doc_count"]] for b in aggs["over_time"]["buckets"]]}
        out["facets"] = {"topic": sorted(topics.items(), key=lambda kv: -kv[1]),
                         "host": [[b["key"], b["doc_count"]] for b in aggs["hosts"]["buckets"]],
                         "file": [[b["key"], b["doc_count"]] for b in aggs["files"]["buckets"]],
                         # parsed fields that some line of the result has: [[field, [[value, count], ...]], ...]
                         "fields": [[name, [[b.get("key_as_string", b["key"]), b["doc_count"]] for b in buckets]]
                                    for name in FIELD_FACETS
                                    if (buckets := aggs.get(f"field:{name}", {}).get("buckets"))]}
    out["took_ms"] = round((time.monotonic() - t0) * 1000)
    return out


EXPORT_PAGE = 5000
EXPORT_COLUMNS = ("ts", "host", "ip", "file", "offset", "topic", "message")


def export_lines(es: Any, pattern: str, p: SearchParams, fmt: str, limit: int,
                 progress: Callable[[int, bool], None] | None = None) -> Iterator[bytes]:
    """Every line of the query (at most ``limit``), newest first, as NDJSON or CSV: for a download.

    Paged with ``search_after`` over a point in time, so the file is the result set as it was when
    the export began (lines indexed meanwhile are not mixed in) and is not bounded by
    Elasticsearch's 10,000 ``from + size`` window. Streamed: memory holds two pages, not the file —
    the next page is asked for while this one is written (Elasticsearch and the console work at
    the same time, which doubles the rate). ``progress(lines_written, done)`` is told after each
    page, so the page can show how far a download is.
    """
    from concurrent.futures import ThreadPoolExecutor

    progress = progress or (lambda _n, _done: None)

    sel = selection(pattern, p.topic)
    target = resolve_target(es, sel)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(EXPORT_COLUMNS)
        yield buf.getvalue().encode()
    if not target:
        progress(0, True)
        return
    pit = es.open_point_in_time(index=target, keep_alive="2m", ignore_unavailable=True)["id"]
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="export")
    try:
        tiebreak = tiebreak_field(es, target)
        query = build_query(**p.filters())
        sort = sort_spec("desc", tiebreak)

        def page(pit_id: str, after: list[Any] | None, size: int) -> dict[str, Any]:
            # the whole _source: filtering it would make Elasticsearch parse every document
            body: dict[str, Any] = {"query": query, "sort": sort, "size": size,
                                    "pit": {"id": pit_id, "keep_alive": "2m"}, "track_total_hits": False}
            if after is not None:
                body["search_after"] = after
            resp = es.search(**body)
            return resp.body if hasattr(resp, "body") else resp

        sent = 0
        pending = pool.submit(page, pit, None, min(EXPORT_PAGE, limit))
        while pending is not None:
            resp = pending.result()
            pit = resp.get("pit_id", pit)
            hits = resp["hits"]["hits"]
            sent += len(hits)
            more = len(hits) == EXPORT_PAGE and sent < limit
            pending = pool.submit(page, pit, hits[-1]["sort"], min(EXPORT_PAGE, limit - sent)) if more else None
            if not hits:
                progress(sent, True)
                return
            out = io.StringIO()
            w = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
            for h in hits:
                line = line_of(h, sel)
                line.pop("sort", None)
                if w is not None:
                    w.writerow([line.get(c) if line.get(c) is not None else "" for c in EXPORT_COLUMNS])
                else:
                    out.write(json.dumps(line, ensure_ascii=False) + "\n")
            yield out.getvalue().encode()
            progress(sent, pending is None)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        with contextlib.suppress(Exception):
            es.close_point_in_time(id=pit)


def context_of(es: Any, pattern: str, index: str, doc_id: str, size: int) -> dict[str, Any] | None:
    """A line and the ``size`` lines before and after it in its file on its host (like ``grep -C``)."""
    sel = selection(pattern, None)
    got = es.options(ignore_status=404).get(index=index, id=doc_id)
    got = got.body if hasattr(got, "body") else got
    if not got.get("found"):
        return None
    before_q, after_q = context_requests(got["_source"], size)
    target = sel.target
    before = es.search(index=target, ignore_unavailable=True, allow_no_indices=True, **before_q)["hits"]["hits"]
    after = es.search(index=target, ignore_unavailable=True, allow_no_indices=True, **after_q)["hits"]["hits"]
    return {"before": [line_of(h, sel) for h in reversed(before)], "line": line_of(got, sel),
            "after": [line_of(h, sel) for h in after]}


def _host_row(h: HostView) -> dict[str, Any]:
    st = h.status or {}
    row = host_json(h)
    files = st.get("files") if isinstance(st.get("files"), list) else []
    row |= {"config_state": config_state(h), "files": files, "files_lost": st.get("files_lost") or [],
            "updated_at": st.get("updated_at"), "started_at": st.get("started_at"),
            "kafka": st.get("kafka") or {}, "disk": st.get("disk") or {}, "last_error": last_error(h),
            "counters": st.get("counters") or {},
            "journals": st.get("journals") if isinstance(st.get("journals"), list) else []}
    return row


def last_lines(es: Any, pattern: str) -> dict[str, str]:
    """host IP -> the time of its newest line in Elasticsearch (last 30 days): when a host whose agent
    is gone was last heard of. One aggregation; an unreachable Elasticsearch gives no times, not an error."""
    target = selection(pattern, None).target
    try:
        resp = es.search(index=target, size=0, ignore_unavailable=True, allow_no_indices=True,
                         query={"range": {"@timestamp": {"gte": "now-30d"}}},
                         aggs={"ip": {"terms": {"field": "host.ip", "size": 5000},
                                      "aggs": {"last": {"max": {"field": "@timestamp"}}}}})
    except Exception:
        return {}
    buckets = ((resp.get("aggregations") or {}).get("ip") or {}).get("buckets", [])
    return {b["key"]: b["last"].get("value_as_string") for b in buckets if b["last"].get("value_as_string")}


def hosts_page(etcd: EtcdClient, keys: Keys, es: Any = None) -> dict[str, Any]:
    hosts = gather_hosts(etcd, keys)
    last = last_lines(es, index_pattern(etcd, keys)) if es is not None else {}
    rows = [_host_row(h) | {"last_line": last.get(h.ip)} for h in hosts.values()]
    return {"hosts": rows, "now": datetime.now(UTC).isoformat(timespec="seconds")}


def host_detail(etcd: EtcdClient, keys: Keys, ip: str) -> dict[str, Any] | None:
    h = gather_hosts(etcd, keys).get(ip)
    return None if h is None else _host_row(h)


def transfers_page(etcd: EtcdClient, keys: Keys) -> dict[str, Any]:
    return {"transfers": list(gather_transfers(etcd, keys).values())}


def doc_read(etcd: EtcdClient, doc: Doc) -> dict[str, Any]:
    """What the editor opens: the stored text (normalized when valid), its revision, its problem."""
    value, rev = etcd.get(doc.key)
    text, error = doc.normalized(value)
    return {"key": doc.key, "what": doc.what, "exists": value is not None, "revision": rev,
            "text": text if value is not None else doc.template, "error": error}


def doc_check(etcd: EtcdClient, doc: Doc, text: str) -> dict[str, Any]:
    """Validate as the agent would, and diff against what etcd holds now."""
    normalized, error = validate_text(doc, text)
    value, rev = etcd.get(doc.key)
    old, _ = doc.normalized(value)
    diff = "" if normalized is None else unified_diff(old, normalized, f"{doc.key} (revision {rev})",
                                                      f"{doc.key} (yours)")
    return {"valid": error is None, "error": error, "normalized": normalized, "diff": diff, "revision": rev}


def doc_write(etcd: EtcdClient, doc: Doc, text: str | None, expected: int) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body): 200 written/unchanged, 409 someone wrote in between, 422 invalid."""
    normalized = None
    if text is not None:
        normalized, error = validate_text(doc, text)
        if error is not None:
            return 422, {"result": "invalid", "error": error}
    outcome = write_document(etcd, doc, normalized, expected)
    body = {"result": outcome.result, "revision": outcome.revision}
    if outcome.result == "conflict":
        body["error"] = (f"{doc.key} changed since you opened it (revision {expected}, now "
                         f"{outcome.revision or 'deleted'}): someone else wrote it. Nothing was written; "
                         "reload to see their version")
        return 409, body
    return 200, body


# --- saved searches (etcd: <prefix>/console/searches/<name>) ------------------------------------

SEARCH_STATE_KEYS = ("q", "range", "from", "to", "topic", "host", "file")


def saved_searches(etcd: EtcdClient, keys: Keys) -> list[dict[str, Any]]:
    """Every saved search, by name; a value that is not such a document is skipped."""
    items, _ = etcd.get_prefix(keys.saved_searches_prefix())
    out = []
    for _key, value, rev in items:
        try:
            doc = json.loads(value)
        except ValueError:
            continue
        if isinstance(doc, dict) and isinstance(doc.get("state"), dict) and isinstance(doc.get("name"), str):
            out.append(doc | {"revision": rev})
    return sorted(out, key=lambda d: d["name"].lower())


def save_search(etcd: EtcdClient, keys: Keys, name: str, state: dict[str, Any], user: str,
                expected: int) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body). ``expected`` 0: a new name (an existing one is a conflict, not overwritten)."""
    name = name.strip()
    if not 1 <= len(name) <= 80 or "/" in name or any(ord(c) < 32 for c in name):
        return 422, {"error": "name: 1 to 80 characters, no '/'"}
    clean = {k: str(state[k])[:2000] for k in SEARCH_STATE_KEYS if state.get(k)}
    doc = {"name": name, "state": clean, "saved_by": user, "saved_at": datetime.now(UTC).isoformat(timespec="seconds")}
    key = keys.saved_search(name)
    if not etcd.compare_and_put(key, json.dumps(doc, ensure_ascii=False).encode(), expected):
        value, rev = etcd.get(key)
        if expected:
            # the user opened revision ``expected`` and changed it; someone else wrote in between
            try:
                who = json.loads(value or b"{}").get("saved_by") or "someone else"
            except (ValueError, AttributeError):
                who = "someone else"
            return 409, {"error": f"the search {name!r} was changed by {who} since you opened it (revision "
                                  f"{expected}, now {rev or 'deleted'}): nothing was written; open it again to "
                                  "see their version, then save yours", "revision": rev, "conflict": True}
        return 409, {"error": f"a search named {name!r} exists already (revision {rev}); choose another name "
                              "or replace it knowingly", "revision": rev}
    _, rev = etcd.get(key)
    return 200, doc | {"revision": rev}


def delete_search(etcd: EtcdClient, keys: Keys, name: str, expected: int) -> tuple[int, dict[str, Any]]:
    key = keys.saved_search(name)
    if not etcd.compare_and_delete(key, expected):
        return 409, {"error": f"the search {name!r} changed or is gone since you loaded it; reload"}
    return 200, {"result": "deleted"}


def dead_letters(kafka: Any, etcd: EtcdClient, keys: Keys, count: int) -> dict[str, Any]:
    """The latest records of the transfer config's dead-letter topic, newest first, with their reasons."""
    from logferry.deadletters import recent_dead_letters
    from logferry.schema import DEFAULT_DEAD_LETTER_TOPIC

    raw, _ = etcd.get(keys.transfer_config())
    topic = DEFAULT_DEAD_LETTER_TOPIC
    if raw is not None:
        with contextlib.suppress(SchemaError):
            topic = parse_transfer_config(raw).dead_letter_topic
    if kafka is None:
        return {"topic": topic, "records": [], "note": "add a [kafka] section to the console's INI to see them"}
    return {"topic": topic, "records": [d.as_dict() for d in recent_dead_letters(kafka.consumer_config(), topic,
                                                                                  count)]}
