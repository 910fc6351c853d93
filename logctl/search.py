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

import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from logctl.util import EXIT_PROBLEM, EXIT_UNREACHABLE, EXIT_USAGE, CtlError
from logferry.search import (
    Follower,
    IndexSelection,
    build_query,
    es_client,
    format_hit,
    hit_json,
    resolve_target,
    search_hits,
    sort_spec,
    tiebreak_field,
)
from logferry.search import select_indices as _select_indices

__all__ = [
    "IndexSelection",
    "build_query",
    "es_client",
    "es_errors",
    "format_hit",
    "select_indices",
]



# --- Elasticsearch client and its errors -------------------------------------------------------


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


# --- which indices, the query (logferry/search.py, shared with the console) -----------------------
# ``-q`` goes through logferry.search.build_query: ``field:value`` terms and ``field>=value``
# ranges on the parsed fields (docs/parsing.md) become exact clauses, the rest a Lucene query.


def select_indices(pattern: str | None, topic: str | None) -> IndexSelection:
    """:func:`logferry.search.select_indices`, its error as logctl's usage error."""
    try:
        return _select_indices(pattern, topic)
    except ValueError as e:
        raise CtlError(f"--{e}", EXIT_USAGE) from None


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
    file: str | None = None  # a file's exact path (a saved search's file filter)


def newest(es: Any, req: SearchRequest, tiebreak: str | None, target: str) -> list[dict[str, Any]]:
    """The ``count`` newest hits, oldest first."""
    query = build_query(since=req.since, until=req.until, host=req.host, text=req.text, file=req.file)
    hits = search_hits(es, target, query, sort_spec("desc", tiebreak), max(req.count, 0))
    return list(reversed(hits))


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
    follower = Follower(es, req.sel, since=req.since, host=req.host, text=req.text, file=req.file,
                        lookback_s=req.lookback_s, now_ms=now_ms)
    follower.start(target, tiebreak)
    n = 0
    down_since: float | None = None
    while polls is None or n < polls:
        n += 1
        sleep(req.interval_s)
        try:
            for h in follower.poll():
                print(show(h), file=out)
                printed += 1
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
    return printed


# --- --saved NAME: a search saved in the console ---------------------------------------------------


@dataclass(frozen=True)
class SavedSearch:
    """A console saved search as logctl's filters: the same lines the page shows for it."""

    name: str
    topic: str | None
    host: str | None
    file: str | None
    text: str | None
    since: datetime | None
    until: datetime | None
    saved_by: str | None


def load_saved_search(etcd: Any, keys: Any, name: str, now: datetime | None = None) -> SavedSearch:
    """The saved search ``name`` (``<prefix>/console/searches/<name>``), its range made absolute.

    A relative range (``1h``) counts back from ``now``, as the page does when the search is opened.
    The error names the search and lists the saved ones when there is no such name.
    """
    import json

    from logferry.timeparse import parse_time

    now = now or datetime.now(UTC)
    raw, _ = etcd.get(keys.saved_search(name))
    if raw is None:
        items, _ = etcd.get_prefix(keys.saved_searches_prefix())
        names = sorted(k.rsplit("/", 1)[-1] for k, _v, _r in items)
        raise CtlError(f"--saved: no saved search named {name!r} under {keys.saved_searches_prefix()} (saved: "
                       f"{', '.join(names) or 'none'}); save one in the console's search page", EXIT_USAGE)
    try:
        doc = json.loads(raw)
        state = doc["state"]
        assert isinstance(state, dict)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise CtlError(f"--saved: {keys.saved_search(name)} is not a saved search (JSON with a \"state\"); "
                       "save it again from the console", EXIT_PROBLEM) from None
    since = until = None
    try:
        if state.get("range"):
            since = now - parse_duration_text(str(state["range"]))
        else:
            since = parse_time(str(state["from"]), now) if state.get("from") else None
            until = parse_time(str(state["to"]), now) if state.get("to") else None
    except ValueError as e:
        raise CtlError(f"--saved: the time range of {name!r} cannot be read ({e}); save it again",
                       EXIT_PROBLEM) from None
    return SavedSearch(name=name, topic=state.get("topic") or None, host=state.get("host") or None,
                       file=state.get("file") or None, text=state.get("q") or None, since=since, until=until,
                       saved_by=doc.get("saved_by"))


def parse_duration_text(text: str) -> timedelta:
    """``15m``, ``1h``, ``24h``, ``7d``: the page's quick ranges (and any such duration)."""
    m = re.fullmatch(r"(\d+)([smhd])", text.strip())
    if not m:
        raise ValueError(f"range {text!r} is not a duration like 15m, 1h, 24h or 7d")
    return timedelta(seconds=int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)])
