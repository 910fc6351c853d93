"""``logctl search``: the lines in Elasticsearch, newest last like ``tail``, and ``--follow``.

Which indices: the transfer writes each topic to the index pattern of the transfer config
(``logferry-{topic}-{yyyy.MM.dd}`` by default). Without ``--topic`` the search covers every index
the pattern can produce (``logs-*-*``); with ``--topic app`` it covers the indices of that
topic only: ``logs-app-*`` would also match topic ``app-x``'s ``logs-app-x-2024.05.01``, so the
candidate names are resolved and kept only when they match the pattern with that exact topic.

Order and follow: hits are sorted on ``@timestamp``, then ``log.offset`` (lines of one file read in
the same millisecond keep their order), then ``event.id`` (which is the document ``_id``, see
docs/design.md; Elasticsearch 8 refuses to sort on ``_id`` itself). ``--follow`` polls every second
with ``search_after`` on those. Because agents stamp lines when they read
them and the transfer indexes them a little later, a line can become visible after a newer one;
each poll therefore looks back ``--lookback`` seconds before the newest line seen and skips the
lines it already printed (by ``_id``), so late lines are printed when they arrive instead of lost.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from logferry.ctl_settings import EsSettings
from logferry.ctl_util import EXIT_PROBLEM, EXIT_UNREACHABLE, EXIT_USAGE, CtlError, iso_utc
from logferry.keys import canonical_ip
from logferry.schema import DEFAULT_INDEX, is_valid_topic

__all__ = [
    "IndexSelection",
    "build_query",
    "es_client",
    "es_errors",
    "format_hit",
    "select_indices",
]

PAGE = 1000
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_DATE_TOKEN = re.compile(r"yyyy|MM|dd|HH|[._-]")


# --- Elasticsearch client and its errors -------------------------------------------------------


def es_client(s: EsSettings, timeout_s: float) -> Any:
    from elasticsearch import Elasticsearch

    kw: dict[str, Any] = {"request_timeout": timeout_s, "max_retries": 1, "retry_on_timeout": False}
    if s.api_key:
        kw["api_key"] = s.api_key
    if s.username:
        kw["basic_auth"] = (s.username, s.password or "")
    if s.ca_file:
        kw["ca_certs"] = s.ca_file
    if not s.verify_certs:
        kw["verify_certs"] = False
        kw["ssl_show_warn"] = False
    return Elasticsearch(s.hosts, **kw)


def _reason(e: Any) -> str:
    """Elasticsearch's own words for an API error: the root cause's reason."""
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            causes = err.get("root_cause") or []
            first = causes[0] if causes and isinstance(causes[0], dict) else err
            reason = first.get("reason") or err.get("reason")
            caused = err.get("caused_by", {}).get("reason") if isinstance(err.get("caused_by"), dict) else None
            text = reason or err.get("type") or str(err)
            return f"{text} ({caused})" if caused and caused != text else str(text)
        if isinstance(err, str):
            return err
    return str(getattr(e, "message", "") or e).splitlines()[0]


def es_errors(hosts: list[str], what: str) -> Callable[[BaseException], CtlError | None]:
    """Turn an exception from the ES client into a CtlError with the right exit code (or None)."""
    import elasticsearch
    from elastic_transport import TransportError

    def convert(e: BaseException) -> CtlError | None:
        where = ", ".join(hosts)
        if isinstance(e, elasticsearch.AuthenticationException):
            return CtlError(f"Elasticsearch at {where} refused the credentials ({_reason(e)}); check es_api_key "
                            "or es_username/es_password", EXIT_PROBLEM)
        if isinstance(e, elasticsearch.AuthorizationException):
            return CtlError(f"Elasticsearch at {where}: not allowed to {what} ({_reason(e)}); the user needs the "
                            "read privilege on the log indices", EXIT_PROBLEM)
        if isinstance(e, elasticsearch.BadRequestError):
            return CtlError(f"Elasticsearch refused the {what}: {_reason(e)}", EXIT_USAGE)
        if isinstance(e, elasticsearch.ApiError):
            return CtlError(f"Elasticsearch {what} failed: HTTP {e.meta.status}: {_reason(e)}", EXIT_PROBLEM)
        if isinstance(e, TransportError | elasticsearch.UnsupportedProductError):
            text = str(e) or type(e).__name__
            m = re.search(r"\[Errno -?\d+\] [^)'\"]+|timed out|Name or service not known|certificate verify failed"
                          r"[^)'\"]*", text)
            msg = m.group(0) if m else text.splitlines()[0][:200]
            return CtlError(f"cannot reach Elasticsearch at {where} ({msg}); check that it runs, the URL "
                            "(scheme http/https, port) and the firewall", EXIT_UNREACHABLE)
        return None

    return convert


# --- which indices -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexSelection:
    """The ES search target, and (with a topic) a regex the resolved index names must match."""

    target: str
    exact: re.Pattern[str] | None
    topic_of: re.Pattern[str] | None  # captures the topic out of an index name

    def topic(self, index: str) -> str | None:
        if self.topic_of is None:
            return None
        m = self.topic_of.fullmatch(index)
        return m.group("topic") if m else None


def _pattern_parts(pattern: str) -> list[tuple[str, str]]:
    """("lit", text) | ("topic", "") | ("date", placeholder) — the same grammar as schema's index."""
    parts: list[tuple[str, str]] = []
    pos = 0
    for m in _PLACEHOLDER.finditer(pattern):
        if m.start() > pos:
            parts.append(("lit", pattern[pos:m.start()]))
        parts.append(("topic", "") if m.group(1) == "topic" else ("date", m.group(1)))
        pos = m.end()
    if pos < len(pattern):
        parts.append(("lit", pattern[pos:]))
    return parts


def _date_regex(placeholder: str) -> str:
    out = []
    for tok in _DATE_TOKEN.findall(placeholder):
        out.append(r"\d{4}" if tok == "yyyy" else r"\d{2}" if tok in ("MM", "dd", "HH") else re.escape(tok))
    return "".join(out)


def select_indices(pattern: str | None, topic: str | None) -> IndexSelection:
    """Search target for the transfer's index ``pattern`` (default ``logferry-{topic}-{yyyy.MM.dd}``)."""
    pattern = pattern or DEFAULT_INDEX
    if topic is not None and not is_valid_topic(topic):
        raise CtlError(f"--topic {topic!r} is not a Kafka topic name (letters, digits, . _ -)", EXIT_USAGE)
    parts = _pattern_parts(pattern)
    target, exact, capture = [], [], []
    for kind, text in parts:
        if kind == "lit":
            target.append(text.lower())
            exact.append(re.escape(text.lower()))
            capture.append(re.escape(text.lower()))
        elif kind == "topic":
            target.append(topic.lower() if topic else "*")
            exact.append(re.escape(topic.lower()) if topic else "[a-z0-9._-]+")
            capture.append("(?P<topic>[a-z0-9._-]+)")
        else:
            target.append("*")
            exact.append(_date_regex(text))
            capture.append(_date_regex(text))
    joined = re.sub(r"\*+", "*", "".join(target))
    has_topic = any(k == "topic" for k, _ in parts)
    return IndexSelection(
        target=joined,
        exact=re.compile("".join(exact)) if topic and has_topic else None,
        topic_of=re.compile("".join(capture)) if has_topic else None,
    )


def resolve_target(es: Any, sel: IndexSelection) -> str | None:
    """The comma-joined index names to search now, or None when no index exists (yet)."""
    if sel.exact is None:
        return sel.target
    resp = es.indices.resolve_index(name=sel.target, expand_wildcards="open")
    names = [i["name"] for i in resp.get("indices", [])] + [d["name"] for d in resp.get("data_streams", [])]
    names = sorted(n for n in names if sel.exact.fullmatch(n))
    return ",".join(names) if names else None


# --- the query ---------------------------------------------------------------------------------


def build_query(*, since: datetime | None, until: datetime | None, host: str | None, text: str | None,
                since_ms: int | None = None) -> dict[str, Any]:
    """The bool query for the filters; ``since_ms`` (epoch ms) is the follow loop's window."""
    filters: list[dict[str, Any]] = []
    rng: dict[str, Any] = {}
    if since is not None:
        rng["gte"] = iso_utc(since)
    if until is not None:
        rng["lte"] = iso_utc(until)
    if rng:
        filters.append({"range": {"@timestamp": rng | {"format": "strict_date_optional_time"}}})
    if since_ms is not None:
        filters.append({"range": {"@timestamp": {"gte": since_ms, "format": "epoch_millis"}}})
    if host:
        try:
            value, fld = canonical_ip(host), "host.ip"
        except ValueError:
            value, fld = host, "host.name"
        # An index template maps these as ip/keyword; dynamic mapping makes text + .keyword.
        filters.append({"bool": {"should": [{"term": {fld: value}}, {"term": {f"{fld}.keyword": value}}],
                                 "minimum_should_match": 1}})
    must: list[dict[str, Any]] = []
    if text:
        must.append({"query_string": {"query": text, "default_field": "message", "default_operator": "AND"}})
    return {"bool": {"filter": filters, "must": must}}


def tiebreak_field(es: Any, target: str) -> str | None:
    """``event.id`` when it is a keyword in every index, else its ``.keyword`` sub-field, else None."""
    resp = es.indices.get_field_mapping(index=target, fields="event.id,event.id.keyword",
                                        ignore_unavailable=True, allow_no_indices=True)
    body = resp.body if hasattr(resp, "body") else resp
    kinds: set[str] = set()
    for idx in body.values():
        m = idx.get("mappings", {})
        if not m:
            continue
        own = m.get("event.id", {}).get("mapping", {}).get("id", {}).get("type")
        if own == "keyword":
            kinds.add("event.id")
        elif "event.id.keyword" in m:
            kinds.add("event.id.keyword")
        else:
            kinds.add("none")
    if len(kinds) == 1 and "none" not in kinds:
        return kinds.pop()
    return None


def sort_spec(order: str, tiebreak: str | None) -> list[dict[str, Any]]:
    """@timestamp, then the line's byte offset (lines of one file read in the same millisecond stay
    in file order), then event.id: a total order, as search_after needs."""
    spec = [{"@timestamp": {"order": order, "unmapped_type": "date"}},
            {"log.offset": {"order": order, "unmapped_type": "long"}}]
    if tiebreak:
        spec.append({tiebreak: {"order": order, "unmapped_type": "keyword"}})
    return spec


def format_hit(hit: dict[str, Any], sel: IndexSelection) -> str:
    """``2024-05-01T12:00:00.123Z web1 nginx-access: the line`` (topic from the index name)."""
    src = hit.get("_source") or {}
    host = src.get("host") if isinstance(src.get("host"), dict) else {}
    who = host.get("name") or host.get("ip") or "?"
    where = sel.topic(hit.get("_index", "")) or hit.get("_index", "?")
    msg = src.get("message")
    return f"{src.get('@timestamp', '?')} {who} {where}: {msg if isinstance(msg, str) else json.dumps(msg)}"


def hit_json(hit: dict[str, Any]) -> str:
    return json.dumps({"_index": hit.get("_index"), "_id": hit.get("_id")} | (hit.get("_source") or {}),
                      ensure_ascii=False, separators=(",", ":"))


def _transient(e: BaseException) -> bool:
    """Connection trouble or a 429/5xx: worth retrying while following."""
    try:
        import elasticsearch
        from elastic_transport import TransportError
    except ImportError:  # pragma: no cover
        return False
    if isinstance(e, TransportError):
        return True
    status = getattr(getattr(e, "meta", None), "status", None)
    return isinstance(e, elasticsearch.ApiError) and isinstance(status, int) and (status == 429 or status >= 500)


# --- running it --------------------------------------------------------------------------------


@dataclass
class SearchRequest:
    sel: IndexSelection
    since: datetime | None
    until: datetime | None
    host: str | None
    text: str | None
    count: int
    follow: bool
    interval_s: float = 1.0
    lookback_s: float = 10.0


def _search(es: Any, target: str, query: dict[str, Any], sort: list[dict[str, Any]], size: int,
            after: list[Any] | None = None) -> list[dict[str, Any]]:
    kw: dict[str, Any] = {"index": target, "query": query, "sort": sort, "size": size,
                          "ignore_unavailable": True, "allow_no_indices": True, "track_total_hits": False}
    if after is not None:
        kw["search_after"] = after
    return es.search(**kw)["hits"]["hits"]


def newest(es: Any, req: SearchRequest, tiebreak: str | None, target: str) -> list[dict[str, Any]]:
    """The ``count`` newest hits, oldest first."""
    query = build_query(since=req.since, until=req.until, host=req.host, text=req.text)
    hits = _search(es, target, query, sort_spec("desc", tiebreak), max(req.count, 0))
    return list(reversed(hits))


def window(es: Any, req: SearchRequest, tiebreak: str | None, target: str, since_ms: int
           ) -> Iterator[dict[str, Any]]:
    """Every hit at or after ``since_ms``, oldest first, paged with search_after."""
    query = build_query(since=req.since, until=None, host=req.host, text=req.text, since_ms=since_ms)
    sort = sort_spec("asc", tiebreak)
    after = None
    while True:
        hits = _search(es, target, query, sort, PAGE, after)
        yield from hits
        if len(hits) < PAGE:
            return
        after = hits[-1]["sort"]


def run_search(es: Any, req: SearchRequest, *, as_json: bool, out: TextIO = sys.stdout,
               sleep: Callable[[float], None] = time.sleep, now_ms: Callable[[], int] | None = None,
               polls: int | None = None) -> int:
    """Print the newest lines, then (``follow``) new ones until Ctrl-C. Returns how many printed."""
    now_ms = now_ms or (lambda: int(time.time() * 1000))
    show = hit_json if as_json else (lambda h: format_hit(h, req.sel))
    printed = 0
    target = resolve_target(es, req.sel)
    tiebreak = tiebreak_field(es, target) if target else None
    first = newest(es, req, tiebreak, target) if target and req.count > 0 else []
    for h in first:
        print(show(h), file=out)
        printed += 1
    out.flush()
    if not req.follow:
        return printed
    lookback = int(req.lookback_s * 1000)
    # Where "new" starts: the newest line there is (or now). Lines already there are not new,
    # also those older ones -n did not show: mark everything in the look-back window as seen.
    cursor = now_ms()
    if target:
        probe = _search(es, target, build_query(since=req.since, until=None, host=req.host, text=req.text),
                        sort_spec("desc", tiebreak), 1)
        if probe and probe[0].get("sort"):
            cursor = max(cursor, int(probe[0]["sort"][0]))
    seen: dict[str, int] = {}
    if target:
        for h in window(es, req, tiebreak, target, cursor - lookback):
            seen[h["_id"]] = int(h["sort"][0])
    n = 0
    down_since: float | None = None
    while polls is None or n < polls:
        n += 1
        sleep(req.interval_s)
        try:
            target = resolve_target(es, req.sel)  # a new day (or topic) brings a new index
            if not target:
                continue
            if tiebreak is None:
                tiebreak = tiebreak_field(es, target)
            for h in window(es, req, tiebreak, target, cursor - lookback):
                ts = int(h["sort"][0])
                if h["_id"] in seen:
                    continue
                seen[h["_id"]] = ts
                print(show(h), file=out)
                printed += 1
                cursor = max(cursor, ts)
        except Exception as e:
            if not _transient(e):
                raise
            # Following outlives an Elasticsearch restart: one line when it goes, one when back.
            if down_since is None:
                down_since = time.monotonic()
                print(f"logctl: Elasticsearch does not answer ({str(e).splitlines()[0][:200]}); still "
                      "following, retrying every second", file=sys.stderr, flush=True)
            continue
        finally:
            out.flush()
        if down_since is not None:
            print(f"logctl: Elasticsearch answers again after {time.monotonic() - down_since:.0f}s",
                  file=sys.stderr, flush=True)
            down_since = None
        floor = cursor - lookback - 1000
        for k in [k for k, ts in seen.items() if ts < floor]:
            del seen[k]
    return printed
