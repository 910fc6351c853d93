"""The index template for logferry's envelope, and the check that an index will get it.

Mappings: ``@timestamp`` date, ``message`` text, ``host.ip`` ip, ``log.offset`` long; every other
string (``host.name``, ``log.file.path``, ``event.id``, ``fields.*``…) is a keyword through a
dynamic template. Keywords ignore values over 8191 characters (Lucene's 32 KiB term limit in
4-byte UTF-8), which stay in ``_source`` instead of failing the document.

``index_patterns`` come from the configured index pattern, each placeholder becoming ``*``:
``logferry-{topic}-{yyyy.MM.dd}`` → ``logferry-*-*``. The name and the priority (150, equal to
none of Elastic's own templates) are in :mod:`logferry.estemplates`, shared with ``logctl doctor``.

Installing is idempotent: the existing template is read first and written only when it differs.

Mappings are set when an index is created and kept for its whole life, so a wrong start cannot
be mended later. :class:`TemplateGuard` therefore looks, before the first write to an index
name, at what Elasticsearch would create it with (``_simulate_index``): if logferry's template
was refused, or another template wins for that name (an Elastic integration's data stream
template, say), the documents for it are held, not indexed with wrong mappings, and the reason
is the transfer's Elasticsearch fault (status, ``/health``, log) until the conflict is fixed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from logferry.engine import template_settings
from logferry.estemplates import (
    JOURNAL_PROPERTIES,
    PRIORITY,
    index_patterns,
    matching_templates,
    same_priority_overlaps,
    template_name,
)

from .backoff import Backoff
from .faults import FaultLog
from .indexer import SPLIT, classify_exception

__all__ = ["PRIORITY", "TEMPLATE_VERSION", "TemplateGuard", "ensure_template", "index_patterns", "template_body",
           "template_name"]

log = logging.getLogger("logtransfer.template")

#: Bump when the body below changes, so running clusters get the new one. 2: priority 150. 3: the
#: parsed fields (docs/parsing.md) typed, and settings that keep one odd line from failing its document.
#: 4: the journal's fields (``systemd.unit`` keyword, ``journald.*`` strings) named, so an index
#: whose first document is a file line still types them right.
TEMPLATE_VERSION = 4

#: Index settings (3): fields past the limit (JSON lines with new keys every time) are kept in
#: ``_source``, unindexed, instead of refusing the document.
SETTINGS = {
    "index.mapping.total_fields.limit": 2000,
    "index.mapping.total_fields.ignore_dynamic_beyond_limit": True,
}

#: Parsed and dynamically mapped numbers, dates and IPs (3): a value that does not fit (a JSON
#: field that was a number and now is text, an IP field holding "unknown") is left out of the
#: index and kept in ``_source`` (listed in ``_ignored``) instead of refusing the document.
#: logferry's own fields (``host.ip``, ``log.offset``…) stay strict: a wrong one is a broken
#: record, dead-lettered with the reason.
LENIENT = {"ignore_malformed": True}
DYNAMIC_LENIENT = [
    {"longs_lenient": {"match_mapping_type": "long", "mapping": {"type": "long", **LENIENT}}},
    {"doubles_lenient": {"match_mapping_type": "double", "mapping": {"type": "float", **LENIENT}}},
    {"dates_lenient": {"match_mapping_type": "date", "mapping": {"type": "date", **LENIENT}}},
]


def parsed_properties(keyword: dict[str, Any]) -> dict[str, Any]:
    """Mappings of the fields agent/parsers.py writes (ECS names and types)."""
    long, text, ip = {"type": "long", **LENIENT}, {"type": "text"}, {"type": "ip", **LENIENT}
    endpoint = {"properties": {"address": keyword, "ip": ip, "port": long, "bytes": long}}
    return {
        "http": {"properties": {
            "version": keyword,
            "request": {"properties": {"method": keyword, "referrer": keyword, "bytes": long,
                                       "body": {"properties": {"bytes": long}}}},
            "response": {"properties": {"status_code": long, "bytes": long, "body": {"properties": {"bytes": long}}}},
        }},
        "url": {"properties": {"original": keyword, "port": long}},
        "user_agent": {"properties": {"original": keyword}},
        "user": {"properties": {"name": keyword}},
        "source": endpoint,
        "destination": endpoint,
        "client": endpoint,
        "server": endpoint,
        "process": {"properties": {"pid": long, "name": keyword}},
        "error": {"properties": {"message": text}},
    }


def template_body(patterns: list[str]) -> dict[str, Any]:
    keyword = {"type": "keyword", "ignore_above": 8191}
    return {
        "index_patterns": patterns,
        "priority": PRIORITY,
        "template": {
            "mappings": {
                "dynamic_templates": [
                    {"strings_as_keyword": {"match_mapping_type": "string", "mapping": keyword}},
                    *DYNAMIC_LENIENT,
                ],
                "properties": {
                    "@timestamp": {"type": "date"},
                    "message": {"type": "text"},
                    "host": {"properties": {"name": keyword, "ip": {"type": "ip"}}},
                    "log": {"properties": {"offset": {"type": "long"}, "file": {"properties": {"path": keyword}},
                                           "flags": keyword, "level": keyword, "syslog": {"properties": {
                                               "priority": {"type": "long", **LENIENT}, "version": keyword,
                                               "facility": {"properties": {"code": {"type": "long", **LENIENT},
                                                                           "name": keyword}},
                                               "severity": {"properties": {"code": {"type": "long", **LENIENT},
                                                                           "name": keyword}},
                                               "hostname": keyword, "appname": keyword, "procid": keyword,
                                               "msgid": keyword, "structured_data": keyword,
                                               "message": {"type": "text"}}}}},
                    "event": {"properties": {"id": keyword, "duration": {"type": "long", **LENIENT}}},
                    "agent": {"properties": {"type": keyword, "version": keyword}},
                    "fields": {"type": "object"},
                    **parsed_properties(keyword),
                    **JOURNAL_PROPERTIES,
                },
            },
            "settings": SETTINGS,
        },
        "_meta": {"managed_by": "logferry", "logferry_template_version": TEMPLATE_VERSION},
    }


def _same(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(existing.get(k) == wanted[k] for k in ("index_patterns", "priority", "_meta")) and \
        existing.get("template", {}).get("mappings") == wanted["template"]["mappings"]


def _install(es: Any, name: str, body: dict[str, Any]) -> bool:
    """Put the template unless an identical one is there; True if it was written. Raises ES errors."""
    resp = es.options(ignore_status=404).indices.get_index_template(name=name)
    found = (resp.body if hasattr(resp, "body") else resp).get("index_templates") or []
    if found and _same(found[0].get("index_template", {}), body):
        return False
    # the engine is known by now (the GET above answered): OpenSearch lacks one of the settings
    known = getattr(getattr(es, "transport", None), "engine", None)
    template = dict(body["template"], settings=template_settings(known, body["template"]["settings"]))
    es.indices.put_index_template(name=name, index_patterns=body["index_patterns"],
                                  priority=body["priority"], template=template, meta=body["_meta"])
    return True


def _refusal(es: Any, name: str, patterns: list[str], desc: str) -> str:
    """The line saying Elasticsearch refused the template, naming the templates in the way."""
    try:
        listing = _body(es.indices.get_index_template()).get("index_templates") or []
        clash = same_priority_overlaps(listing, patterns, PRIORITY, exclude=name)
    except Exception:  # naming the culprit is a courtesy; the refusal itself is what matters
        clash = []
    who = (f"; in the way: {', '.join(f'{t.name} ({list(t.patterns)}, priority {t.priority})' for t in clash)}"
           if clash else "")
    return (f"elasticsearch refused logferry's index template {name} for {', '.join(patterns)}: {desc}{who}. "
            "Indexing is held (nothing is lost, Kafka offsets are not committed) until the template can be "
            "installed: remove or re-prioritise the template in the way, or change the transfer config's "
            "index pattern (logctl doctor lists the templates)")


def _body(resp: Any) -> dict[str, Any]:
    return resp.body if hasattr(resp, "body") else resp


def ensure_template(es: Any, index: str, abort: Callable[[], bool], backoff: Backoff | None = None,
                    sleep: Callable[[float], None] | None = None) -> bool:
    """Install the template for ``index`` unless an identical one is there.

    Retries while Elasticsearch cannot be reached (until ``abort()``); returns False when it was
    aborted or Elasticsearch refused the template (logged; :class:`TemplateGuard` then holds
    indexing and tries again).
    """
    sleep = sleep or time.sleep
    backoff = backoff or Backoff(0.5, 10.0)
    fault = FaultLog("elasticsearch (index template)", log)
    patterns = index_patterns(index)
    name = template_name(patterns)
    body = template_body(patterns)
    while not abort():
        try:
            if _install(es, name, body):
                log.info("installed index template %s for %s (priority %d)", name, ", ".join(patterns), PRIORITY)
            else:
                log.info("index template %s for %s is in place", name, ", ".join(patterns))
            fault.clear()
            return True
        except Exception as e:
            kind, desc = classify_exception(e)
            if kind == SPLIT:  # 400: Elasticsearch refuses this template; retrying at once will not help
                log.error("%s", _refusal(es, name, patterns, desc))
                return False
            fault.fault(f"cannot install index template {name} ({desc}); retrying before indexing",
                        key="template")
            end = backoff.next()
            while end > 0 and not abort():
                sleep(min(0.2, end))
                end -= 0.2
    return False


#: What an index needs from its mappings for logferry's guarantees and searches.
_NEEDED = (("event", "id", "keyword", "event.id"),
           ("host", "ip", "ip", "host.ip"), ("@timestamp", None, "date", "@timestamp"))


def mapping_problem(mappings: dict[str, Any]) -> str | None:
    """Why documents must not go into an index with these mappings, or None when they may."""
    if "_data_stream_timestamp" in mappings:
        return "as a data stream, which refuses logferry's writes by _id (the no-duplicates guarantee)"
    props = mappings.get("properties") or {}
    for top, sub, want, what in _NEEDED:
        node = props.get(top) or {}
        if sub is not None:
            node = (node.get("properties") or {}).get(sub) or {}
        got = node.get("type")
        if got != want:
            return f"with {what} mapped as {got or 'whatever Elasticsearch guesses'} instead of {want}"
    return None


class TemplateGuard:
    """Checked before each bulk request: will every index it writes to get logferry's mappings?

    Called by :class:`transfer.indexer.Indexer` with the request's documents; returns None (go
    on) or the reason to hold them, which the indexer treats like an outage: retried with
    backoff, offsets not committed, the reason in status. An index name found good is not asked
    about again; one found bad is asked again at the next retry, so removing the template in the
    way (or installing logferry's) lets indexing resume without a restart.
    """

    def __init__(self, es: Any) -> None:
        self.es = es
        self.index = ""
        self.installed = False
        self._good: set[str] = set()
        self._warned: set[str] = set()

    def reset(self, index: str, installed: bool) -> None:
        """A (new) index pattern: its template was installed (or refused); forget checked names."""
        self.index, self.installed = index, installed
        self._good.clear()

    def __call__(self, names: Iterable[str]) -> str | None:
        todo = [n for n in set(names) if n not in self._good]
        if not todo:
            return None
        try:
            if not self.installed and self.index:
                reason = self._install()
                if reason is not None:
                    return reason
            for name in sorted(todo):
                reason = self._check(name)
                if reason is not None:
                    return reason
                self._good.add(name)
        except Exception as e:
            _kind, desc = classify_exception(e)
            return f"cannot check which index template applies ({desc})"
        return None

    def _install(self) -> str | None:
        patterns = index_patterns(self.index)
        name = template_name(patterns)
        try:
            _install(self.es, name, template_body(patterns))
        except Exception as e:
            kind, desc = classify_exception(e)
            if kind == SPLIT:
                return _refusal(self.es, name, patterns, desc)
            raise
        log.info("installed index template %s for %s (priority %d): the conflict is gone", name,
                 ", ".join(patterns), PRIORITY)
        self.installed = True
        return None

    def _check(self, name: str) -> str | None:
        es = self.es
        if es.indices.exists(index=name):
            mapping = _body(es.indices.get_mapping(index=name))
            if any(k.startswith(".ds-") for k in mapping):
                return (f"{name} is a data stream, which refuses logferry's writes by _id; documents for it "
                        "are held: change the transfer config's index pattern, or remove the data stream")
            problem = mapping_problem(next(iter(mapping.values()), {}).get("mappings") or {})
            if problem and name not in self._warned:  # made before; its mappings cannot change now
                self._warned.add(name)
                log.warning("index %s was created %s (before logferry's template applied?); documents go on "
                            "into it; the next index gets the template", name, problem)
            return None
        sim = _body(es.indices.simulate_index_template(name=name))
        problem = mapping_problem((sim.get("template") or {}).get("mappings") or {})
        if problem is None:
            return None
        ours = template_name(index_patterns(self.index))
        listing = _body(es.indices.get_index_template()).get("index_templates") or []
        winner = next(iter(matching_templates(listing, name)), None)
        by = (f"index template {winner.name} (priority {winner.priority}) wins over logferry's {ours} "
              f"(priority {PRIORITY})" if winner is not None and winner.name != ours
              else f"logferry's template {ours} is missing")
        return (f"index {name} would be created {problem}: {by}, and mappings cannot change after creation. "
                "Its documents are held (nothing is lost, Kafka offsets are not committed) until that is "
                "fixed: remove or narrow that template, or change the transfer config's index pattern")
