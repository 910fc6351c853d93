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
from datetime import datetime
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


def newest(es: Any, req: SearchRequest, tiebreak: str | None, target: str) -> list[dict[str, Any]]:
    """The ``count`` newest hits, oldest first."""
    query = build_query(since=req.since, until=req.until, host=req.host, text=req.text)
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
    follower = Follower(es, req.sel, since=req.since, host=req.host, text=req.text, lookback_s=req.lookback_s,
                        now_ms=now_ms)
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
