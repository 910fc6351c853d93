"""Searching logferry's lines in Elasticsearch: which indices, the query, the order, and what a page shows.

``logctl search`` and the console build their requests here, so a query means the same in both.

Which indices: the transfer writes each topic to the index pattern of the transfer config
(``logferry-{topic}-{yyyy.MM.dd}`` by default). Without a topic a search covers every index the
pattern can produce (``logferry-*-*``); with topic ``app`` it covers that topic's indices only:
``logferry-app-*`` would also match topic ``app-x``'s ``logferry-app-x-2024.05.01``, so the
candidate names are resolved and kept only when they match the pattern with that exact topic.

Order: hits are sorted on ``@timestamp``, then ``log.offset`` (lines of one file read in the same
millisecond keep their order), then ``event.id`` (the document ``_id``, see docs/design.md;
Elasticsearch 8 refuses to sort on ``_id`` itself): a total order, as ``search_after`` needs.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from logferry.config import EsSettings
from logferry.keys import canonical_ip
from logferry.schema import DEFAULT_INDEX, is_valid_topic

__all__ = [
    "FIELD_FACETS",
    "PAGE",
    "Follower",
    "IndexSelection",
    "build_query",
    "context_requests",
    "es_client",
    "facet_aggs",
    "field_clauses",
    "format_hit",
    "histogram_interval",
    "hit_json",
    "iso_utc",
    "resolve_target",
    "select_indices",
    "sort_spec",
    "tiebreak_field",
]

PAGE = 1000
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_DATE_TOKEN = re.compile(r"yyyy|MM|dd|HH|[._-]")


def es_client(s: EsSettings, timeout_s: float) -> Any:
    """A client for these settings: one retry, no retry on timeouts (the caller decides).

    Elasticsearch 8/9 or OpenSearch 2: :func:`logferry.engine.client` (docs/compatibility.md).
    """
    from logferry import engine

    kw: dict[str, Any] = {"request_timeout": timeout_s, "max_retries": 1, "retry_on_timeout": False}
    return engine.client(s.hosts, **kw, **s.auth_kwargs())


def iso_utc(t: datetime) -> str:
    """``2024-05-01T12:00:00.123Z``: the form of ``@timestamp``."""
    t = t.astimezone(UTC)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond // 1000:03d}Z"


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
        raise ValueError(f"topic {topic!r} is not a Kafka topic name (letters, digits, . _ -)")
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

#: ``field:value``, ``field:"a value"`` and ``field>=value`` (also > < <=); a field is a dotted name
#: (a quoted phrase is matched first, and left as it is: ``"error code:500"`` stays a phrase)
_TERM = re.compile(r'(?P<phrase>"(?:[^"\\]|\\.)*")|(?<!\S)(?P<field>[A-Za-z_@][\w@-]*(?:\.[\w@-]+)*)'
                   r'(?:(?P<op>>=|<=|>|<)|:(?!>|<|=))(?P<value>"(?:[^"\\]|\\.)*"|[^\s"()]+)(?=\s|$)')
_OPS = {">=": "gte", "<=": "lte", ">": "gt", "<": "lt"}
_BOOLEAN = re.compile(r'(?:^|\s)(?:OR|NOT|AND|\|\||&&)(?:\s|$)|[()]|(?:^|\s)[+-]\S')
#: fields whose words are searched (analysed text), not matched whole
_TEXT_FIELDS = frozenset(("message", "error.message", "log.syslog.message"))


def field_clauses(text: str) -> tuple[list[dict[str, Any]], str]:
    """Split a query into exact clauses and the rest, which stays a Lucene query on ``message``.

    ``http.response.status_code>=500`` becomes a range, ``source.ip:10.0.0.0/8`` and
    ``log.level:ERROR`` become term queries (an IP field takes a CIDR; an IPv6 address needs no
    escaping), ``field:"two words"`` a term on the whole value. Each is required, as every
    word is. Values with ``*`` or ``?`` and words on text fields (``message:timeout``) stay in
    the Lucene query, and so does everything when the query uses OR, NOT, + - or parentheses:
    Lucene's own syntax then applies (ranges written ``field:>=500``).
    """
    if _BOOLEAN.search(text):
        # Lucene writes a range field:>=v; the shorter field>=v means the same, so say it its way
        return [], _TERM.sub(lambda m: f"{m['field']}:{m['op']}{m['value']}" if m["op"] and not m["phrase"]
                             else m[0], text)
    clauses: list[dict[str, Any]] = []

    def take(m: re.Match[str]) -> str:
        fld, op, value = m["field"], m["op"], m["value"]
        if fld is None:
            return m[0]  # a phrase
        if value.startswith('"'):
            value = re.sub(r'\\(.)', r"\1", value[1:-1])
        elif op is None and (fld in _TEXT_FIELDS or "*" in value or "?" in value):
            return m[0]
        if op is not None:
            clauses.append({"range": {fld: {_OPS[op]: value}}})
        elif fld in _TEXT_FIELDS:
            clauses.append({"match_phrase": {fld: value}})
        else:
            clauses.append({"term": {fld: value}})
        return ""

    rest = " ".join(_TERM.sub(take, text).split())
    return clauses, rest


def build_query(*, since: datetime | None, until: datetime | None, host: str | None, text: str | None,
                since_ms: int | None = None, file: str | None = None) -> dict[str, Any]:
    """The bool query for the filters; ``since_ms`` (epoch ms) is the follow loop's window.

    ``text`` is a Lucene query string on ``message``, every word required, where
    ``field:value`` and ranges such as ``http.response.status_code>=500`` are exact clauses on
    the parsed fields (:func:`field_clauses`); ``host`` an IP or a host name; ``file`` a file's
    exact path.
    """
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
    if file:
        filters.append({"bool": {"should": [{"term": {"log.file.path": file}},
                                            {"term": {"log.file.path.keyword": file}}],
                                 "minimum_should_match": 1}})
    must: list[dict[str, Any]] = []
    if text:
        clauses, text = field_clauses(text)
        filters.extend(clauses)
    if text:
        must.append({"query_string": {"query": text, "default_field": "message", "default_operator": "AND"}})
    return {"bool": {"filter": filters, "must": must}}


def tiebreak_field(es: Any, target: str) -> str | None:
    """``event.id`` when it is a keyword in every index, else its ``.keyword`` sub-field, else None."""
    try:
        resp = es.indices.get_field_mapping(index=target, fields="event.id,event.id.keyword",
                                            ignore_unavailable=True, allow_no_indices=True)
    except Exception as e:
        if getattr(getattr(e, "meta", None), "status", None) == 404:
            return None  # no index matches (yet)
        raise
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




# --- what a search page shows besides the hits ----------------------------------------------------

#: (bucket width, the ES ``fixed_interval``) from fine to coarse
_INTERVALS = [(timedelta(seconds=s), f"{s}s") for s in (1, 5, 10, 30)] + \
    [(timedelta(minutes=m), f"{m}m") for m in (1, 5, 10, 30)] + \
    [(timedelta(hours=h), f"{h}h") for h in (1, 3, 6, 12)] + [(timedelta(days=1), "1d"), (timedelta(days=7), "7d")]


def histogram_interval(since: datetime, until: datetime, buckets: int = 60) -> str:
    """The ``fixed_interval`` giving about ``buckets`` bars (at most that many) over the range."""
    span = max(until - since, timedelta(seconds=1))
    for width, name in _INTERVALS:
        if span / width <= buckets:
            return name
    return _INTERVALS[-1][1]


#: fields of parsed lines (docs/parsing.md) counted beside hosts and files, when lines have them;
#: ``log.flags`` counts the lines that did not parse (``parse_failure``), multiline and truncated ones
FIELD_FACETS = ("log.level", "http.response.status_code", "http.request.method", "log.flags")


def facet_aggs(interval: str, since: datetime, until: datetime, size: int = 10) -> dict[str, Any]:
    """Aggregations for a search page: lines over time, the top hosts, files and indices (topics),
    and the top values of the parsed fields in :data:`FIELD_FACETS` (empty where no line has one)."""
    return {
        **{f"field:{name}": {"terms": {"field": name, "size": size}} for name in FIELD_FACETS},
        "over_time": {"date_histogram": {"field": "@timestamp", "fixed_interval": interval, "min_doc_count": 0,
                                         "extended_bounds": {"min": iso_utc(since), "max": iso_utc(until)},
                                         "format": "strict_date_optional_time"}},
        "hosts": {"terms": {"field": "host.name", "size": size}},
        "files": {"terms": {"field": "log.file.path", "size": size}},
        "indices": {"terms": {"field": "_index", "size": 100}},
    }


def context_requests(hit_source: dict[str, Any], size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two search bodies: the ``size`` lines before a line and after it in the same file on the same host.

    Like ``grep -C``: by ``log.offset`` within ``host.name`` + ``log.file.path``. A file that
    was truncated or replaced starts its offsets at 0 again; the lines of the 24 hours around
    the line only are considered, which keeps another day's file of the same name out.
    """
    host = (hit_source.get("host") or {}).get("name")
    path = ((hit_source.get("log") or {}).get("file") or {}).get("path")
    offset = (hit_source.get("log") or {}).get("offset")
    ts = hit_source.get("@timestamp")
    base: list[dict[str, Any]] = [{"term": {"host.name": host}}, {"term": {"log.file.path": path}}]
    if isinstance(ts, str):
        base.append({"range": {"@timestamp": {"gte": f"{ts}||-12h", "lte": f"{ts}||+12h"}}})

    def body(op: str, order: str) -> dict[str, Any]:
        return {"query": {"bool": {"filter": [*base, {"range": {"log.offset": {op: offset}}}]}},
                "sort": [{"log.offset": {"order": order}}], "size": size}

    return body("lt", "desc"), body("gt", "asc")


# --- following: new lines as they become searchable -------------------------------------------------


def search_hits(es: Any, target: str, query: dict[str, Any], sort: list[dict[str, Any]], size: int,
                after: list[Any] | None = None) -> list[dict[str, Any]]:
    kw: dict[str, Any] = {"index": target, "query": query, "sort": sort, "size": size,
                          "ignore_unavailable": True, "allow_no_indices": True, "track_total_hits": False}
    if after is not None:
        kw["search_after"] = after
    return es.search(**kw)["hits"]["hits"]


class Follower:
    """Every line matching the filters that becomes searchable from now on, each exactly once.

    Agents stamp lines when they read them and the transfer indexes them a little later, so a
    line can become visible after a newer one. Each :meth:`poll` therefore reads the window from
    ``lookback_s`` before the newest line seen (oldest first, paged with ``search_after``) and
    skips the ``_id`` values it returned already: late lines come when they arrive, none twice.
    ``logctl search --follow`` and the console's live tail both follow with this.
    """

    def __init__(self, es: Any, sel: IndexSelection, *, since: datetime | None = None, host: str | None = None,
                 text: str | None = None, file: str | None = None, lookback_s: float = 10.0,
                 now_ms: Callable[[], int] | None = None) -> None:
        self.es = es
        self.sel = sel
        self.filters = {"since": since, "until": None, "host": host, "text": text, "file": file}
        self.lookback = int(lookback_s * 1000)
        self.now_ms = now_ms or (lambda: int(time.time() * 1000))
        self.target: str | None = None
        self.tiebreak: str | None = None
        self.cursor = 0
        self.seen: dict[str, int] = {}

    def start(self, target: str | None = None, tiebreak: str | None = None) -> None:
        """Where "new" starts: the newest line there is (or now); lines already there are not new."""
        self.target = target if target is not None else resolve_target(self.es, self.sel)
        self.tiebreak = tiebreak if tiebreak is not None or not self.target else tiebreak_field(self.es, self.target)
        self.cursor = self.now_ms()
        if self.target:
            probe = search_hits(self.es, self.target, build_query(**self.filters),
                                sort_spec("desc", self.tiebreak), 1)
            if probe and probe[0].get("sort"):
                self.cursor = max(self.cursor, int(probe[0]["sort"][0]))
            for h in self._window():
                self.seen[h["_id"]] = int(h["sort"][0])

    def poll(self) -> list[dict[str, Any]]:
        """The new hits since the last poll, oldest first. Elasticsearch's errors go to the caller."""
        self.target = resolve_target(self.es, self.sel)  # a new day (or topic) brings a new index
        if not self.target:
            return []
        if self.tiebreak is None:
            self.tiebreak = tiebreak_field(self.es, self.target)
        new: list[dict[str, Any]] = []
        for h in self._window():
            ts = int(h["sort"][0])
            if h["_id"] in self.seen:
                continue
            self.seen[h["_id"]] = ts
            new.append(h)
            self.cursor = max(self.cursor, ts)
        floor = self.cursor - self.lookback - 1000
        for k in [k for k, ts in self.seen.items() if ts < floor]:
            del self.seen[k]
        return new

    def _window(self) -> Iterator[dict[str, Any]]:
        assert self.target is not None
        query = build_query(**self.filters, since_ms=self.cursor - self.lookback)
        sort = sort_spec("asc", self.tiebreak)
        after = None
        while True:
            hits = search_hits(self.es, self.target, query, sort, PAGE, after)
            yield from hits
            if len(hits) < PAGE:
                return
            after = hits[-1]["sort"]
