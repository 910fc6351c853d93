"""The index template for logferry's envelope, installed idempotently at start and on config change.

Mappings: ``@timestamp`` date, ``message`` text, ``host.ip`` ip, ``log.offset`` long; every other
string (``host.name``, ``log.file.path``, ``event.id``, ``fields.*``…) is a keyword through a
dynamic template. Keywords ignore values over 8191 characters (Lucene's 32 KiB term limit in
4-byte UTF-8), which stay in ``_source`` instead of failing the document.

``index_patterns`` come from the configured index pattern, each placeholder becoming ``*``:
``logs-{topic}-{yyyy.MM.dd}`` → ``logs-*-*``. The template's name is derived from those patterns,
so two logferry installations with different patterns on one cluster keep one template each.
Priority 200 puts it above Elasticsearch's built-in ``logs`` template (``logs-*-*``, priority
100, which would make ``logs-…`` indices data streams, and data streams refuse ``op_type``
index).

Installing is idempotent: the existing template is read first and written only when it differs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from .backoff import Backoff
from .faults import FaultLog
from .indexer import SPLIT, classify_exception

__all__ = ["TEMPLATE_VERSION", "ensure_template", "index_patterns", "template_body", "template_name"]

log = logging.getLogger("logtransfer.template")

#: Bump when the body below changes, so running clusters get the new one.
TEMPLATE_VERSION = 1
PRIORITY = 200

_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


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


def template_body(patterns: list[str]) -> dict[str, Any]:
    keyword = {"type": "keyword", "ignore_above": 8191}
    return {
        "index_patterns": patterns,
        "priority": PRIORITY,
        "template": {
            "mappings": {
                "dynamic_templates": [
                    {"strings_as_keyword": {"match_mapping_type": "string", "mapping": keyword}},
                ],
                "properties": {
                    "@timestamp": {"type": "date"},
                    "message": {"type": "text"},
                    "host": {"properties": {"name": keyword, "ip": {"type": "ip"}}},
                    "log": {"properties": {"offset": {"type": "long"}, "file": {"properties": {"path": keyword}},
                                           "flags": keyword}},
                    "event": {"properties": {"id": keyword}},
                    "agent": {"properties": {"type": keyword, "version": keyword}},
                    "fields": {"type": "object"},
                },
            },
        },
        "_meta": {"managed_by": "logferry", "logferry_template_version": TEMPLATE_VERSION},
    }


def _same(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(existing.get(k) == wanted[k] for k in ("index_patterns", "priority", "_meta")) and \
        existing.get("template", {}).get("mappings") == wanted["template"]["mappings"]


def ensure_template(es: Any, index: str, abort: Callable[[], bool], backoff: Backoff | None = None,
                    sleep: Callable[[float], None] | None = None) -> bool:
    """Install the template for ``index`` unless an identical one is there.

    Retries while Elasticsearch cannot be reached (until ``abort()``); returns False when it was
    aborted or Elasticsearch refused the template (logged: indexing goes on with dynamic mappings).
    """
    import time

    sleep = sleep or time.sleep
    backoff = backoff or Backoff(0.5, 10.0)
    fault = FaultLog("elasticsearch (index template)", log)
    patterns = index_patterns(index)
    name = template_name(patterns)
    body = template_body(patterns)
    while not abort():
        try:
            resp = es.options(ignore_status=404).indices.get_index_template(name=name)
            found = (resp.body if hasattr(resp, "body") else resp).get("index_templates") or []
            if found and _same(found[0].get("index_template", {}), body):
                log.info("index template %s for %s is in place", name, ", ".join(patterns))
                fault.clear()
                return True
            es.indices.put_index_template(name=name, index_patterns=body["index_patterns"],
                                          priority=body["priority"], template=body["template"], meta=body["_meta"])
            log.info("installed index template %s for %s", name, ", ".join(patterns))
            fault.clear()
            return True
        except Exception as e:
            kind, desc = classify_exception(e)
            if kind == SPLIT:  # 400: Elasticsearch refuses this template; retrying will not help
                log.error("elasticsearch refused index template %s for %s: %s; documents are indexed with "
                          "dynamic mappings until this is fixed", name, ", ".join(patterns), desc)
                return False
            fault.fault(f"cannot install index template {name} ({desc}); retrying before indexing",
                        key="template")
            end = backoff.next()
            while end > 0 and not abort():
                sleep(min(0.2, end))
                end -= 0.2
    return False
