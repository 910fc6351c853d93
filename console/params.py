"""The console's page state, as it stands in the URL: parsed and checked here, pure.

Every view of the search page is a URL (``/?q=error&range=1h&host=web1``), so a link pasted into
a chat opens the same view. The same names are the API's query parameters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from logferry.timeparse import parse_time

__all__ = ["QUICK_RANGES", "ParamError", "SearchParams", "parse_search_params"]

#: the quick ranges the page offers, as ``range=`` values
QUICK_RANGES = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24),
                "7d": timedelta(days=7)}
#: a page of 2,000 lines: the page loads 100,000 lines in 50 requests
MAX_SIZE = 2000


class ParamError(ValueError):
    """A query parameter that cannot be used; the message names it and says what it takes."""


@dataclass(frozen=True)
class SearchParams:
    q: str | None
    since: datetime
    until: datetime
    range: str | None  # the quick range, when the time came from one
    topic: str | None
    host: str | None
    file: str | None
    size: int
    after: list[Any] | None  # search_after of the last hit shown: the next (older) page

    def filters(self) -> dict[str, Any]:
        return {"since": self.since, "until": self.until, "host": self.host, "text": self.q, "file": self.file}


def _one(args: Mapping[str, str], name: str) -> str | None:
    value = (args.get(name) or "").strip()
    if len(value) > 2000:
        raise ParamError(f"{name}: longer than 2,000 characters")
    return value or None


def parse_search_params(args: Mapping[str, str], now: datetime | None = None) -> SearchParams:
    """``q``, ``range`` (15m/1h/24h/7d) or ``from``/``to`` (ISO times, or relative like ``-2h``),
    ``topic``, ``host``, ``file``, ``size`` (default 100, at most 2,000), ``after`` (JSON list)."""
    now = now or datetime.now(UTC)
    rng = _one(args, "range")
    start, end = _one(args, "from"), _one(args, "to")
    if start or end:
        try:
            since = parse_time(start, now) if start else now - QUICK_RANGES["1h"]
            until = parse_time(end, now) if end else now
        except ValueError as e:
            raise ParamError(f"from/to: {e}") from None
        if since >= until:
            raise ParamError("from: must be before to")
        rng = None
    else:
        rng = rng or "1h"
        if rng not in QUICK_RANGES:
            raise ParamError(f"range: {rng!r} is not one of {', '.join(QUICK_RANGES)}; or give from and to")
        since, until = now - QUICK_RANGES[rng], now
    size_text = _one(args, "size") or "100"
    if not size_text.isdigit() or not 1 <= int(size_text) <= MAX_SIZE:
        raise ParamError(f"size: a number from 1 to {MAX_SIZE}")
    after = None
    after_text = _one(args, "after")
    if after_text:
        try:
            after = json.loads(after_text)
        except ValueError:
            after = None
        if not isinstance(after, list) or not all(isinstance(v, int | float | str) for v in after):
            raise ParamError("after: the sort values of a hit, as a JSON list")
    return SearchParams(q=_one(args, "q"), since=since, until=until, range=rng, topic=_one(args, "topic"),
                        host=_one(args, "host"), file=_one(args, "file"), size=int(size_text), after=after)
