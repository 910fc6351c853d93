"""Which index template Elasticsearch applies to an index: shared by logtransfer and ``logctl doctor``.

logferry's template is named from the configured index pattern (:func:`template_name`) and
installed at :data:`PRIORITY`. The number is chosen to be equal to nothing Elastic ships:
its built-in templates (``logs``, ``metrics``, ``synthetics``… for ``logs-*-*`` and the like)
sit at 100 and its integration templates (``logs-nginx.access-*``…) at 200, and Elasticsearch
refuses a template whose patterns overlap another's *at the same priority* ("multiple index
templates may not match during index creation"). At 150 neither side can refuse the other;
with logferry's default index prefix (``logferry-``, see :data:`logferry.schema.DEFAULT_INDEX`)
no Elastic template matches logferry's indices at all. Which template *wins* for one index
name is the highest-priority match (:func:`matching_templates`), reported by ``logctl doctor``
and checked by the transfer before it creates an index.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from typing import Any, NamedTuple

__all__ = ["JOURNAL_PROPERTIES", "PRIORITY", "Template", "index_patterns", "matching_templates",
           "same_priority_overlaps", "template_name"]

PRIORITY = 150

#: Mappings of the fields a journal entry's record adds (logferry/envelope.py journal_document,
#: docs/journal.md), for the index template's ``properties``. ``journald.*`` holds the journal's
#: other fields under their own names, all strings: keyword (the template's strings rule does the
#: same for names not seen before).
JOURNAL_PROPERTIES: dict[str, Any] = {
    "systemd": {"properties": {"unit": {"type": "keyword", "ignore_above": 8191}}},
    "journald": {"type": "object", "dynamic": True},
}

_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


class Template(NamedTuple):
    """One composable index template as ``GET _index_template`` lists it."""

    name: str
    priority: int
    patterns: tuple[str, ...]
    data_stream: bool


def index_patterns(index: str) -> list[str]:
    """The ``index_patterns`` matching every index the configured pattern can produce (lower case)."""
    pattern = _PLACEHOLDER.sub("*", index).lower()
    pattern = re.sub(r"\*+", "*", pattern)
    return [pattern]


def template_name(patterns: list[str]) -> str:
    """``logferry-<literal part>-<hash>``: readable, and distinct per pattern set."""
    digest = hashlib.sha1(json.dumps(patterns).encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", "-".join(patterns).lower()).strip("-")[:40].strip("-")
    return f"logferry-{slug}-{digest}" if slug else f"logferry-{digest}"


def _templates(listing: list[dict[str, Any]]) -> list[Template]:
    out = []
    for t in listing:
        body = t.get("index_template", {})
        pats = body.get("index_patterns") or []
        pats = [pats] if isinstance(pats, str) else pats
        out.append(Template(str(t.get("name", "?")), int(body.get("priority") or 0), tuple(pats),
                            body.get("data_stream") is not None))
    return out


def matching_templates(listing: list[dict[str, Any]], index: str) -> list[Template]:
    """Templates whose patterns match ``index``, highest priority first: the first one applies."""
    found = [t for t in _templates(listing) if any(fnmatch.fnmatchcase(index, p) for p in t.patterns)]
    return sorted(found, key=lambda t: -t.priority)


def _may_overlap(a: str, b: str) -> bool:
    """Whether two index patterns can match one name (a sample of each against the other)."""
    return fnmatch.fnmatchcase(a.replace("*", "x"), b) or fnmatch.fnmatchcase(b.replace("*", "x"), a) or \
        fnmatch.fnmatchcase(a.replace("*", ""), b) or fnmatch.fnmatchcase(b.replace("*", ""), a)


def same_priority_overlaps(listing: list[dict[str, Any]], patterns: list[str], priority: int = PRIORITY,
                           exclude: str = "") -> list[Template]:
    """Templates that would make Elasticsearch refuse one at ``priority`` for ``patterns``: they
    overlap it at the same priority."""
    return [t for t in _templates(listing)
            if t.name != exclude and t.priority == priority
            and any(_may_overlap(p, q) for p in patterns for q in t.patterns)]
