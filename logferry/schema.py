"""The two JSON documents operators keep in etcd: a host's collect list and the transfer config.

The agent, ``logctl`` and the Ansible seeding all parse through here, so the text of a
``SchemaError`` is what an operator reads when etcd holds something wrong. Every message names
the document, the entry (counted from 1, as people count) and the field, says what is wrong and
what a good value looks like. The dataclasses validate in ``__post_init__`` too, so an
``InputSpec`` or ``TransferConfig`` that exists is a valid one, wherever it was built.
"""

from __future__ import annotations

import difflib
import json
import math
import posixpath
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

__all__ = [
    "DEFAULT_INDEX",
    "DEFAULT_MAX_LINE_BYTES",
    "InputSpec",
    "Journal",
    "Multiline",
    "Parse",
    "SchemaError",
    "Timestamp",
    "TransferConfig",
    "dump_collect_list",
    "dump_transfer_config",
    "index_name",
    "is_valid_topic",
    "parse_collect_list",
    "parse_transfer_config",
]

KIB = 1024
MIB = 1024 * KIB

DEFAULT_MAX_LINE_BYTES = 1 * MIB
MIN_LINE_BYTES = 64
MAX_LINE_BYTES = 64 * MIB
DEFAULT_INDEX = "logferry-{topic}-{yyyy.MM.dd}"
DEFAULT_DEAD_LETTER_TOPIC = "logferry-dead-letter"
# Elasticsearch refuses a bulk request over http.max_content_length (100mb by default).
MAX_BULK_BYTES = 100 * MIB

_TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")
TOPIC_RULE = "must be a non-empty string of [A-Za-z0-9._-], max 249 chars (Kafka topic rules)"
_EXAMPLE_INPUT = '{"path": "/var/log/app/*.log", "topic": "app"}'


class SchemaError(ValueError):
    """A collect list or transfer config that logferry refuses.

    ``field`` and ``problem`` are kept apart from the message so a caller that knows more
    context (which entry of which list) can re-word it without parsing text.
    """

    def __init__(self, message: str, *, field: str | None = None, problem: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.problem = problem


class _Problem(Exception):
    """Raised by the small validators below; the caller attaches where and which field."""


def _bad(where: str, fld: str, problem: str) -> SchemaError:
    return SchemaError(f'{where}: field "{fld}": {problem}', field=fld, problem=problem)


def _check(where: str, fld: str, validator: Any, value: Any) -> Any:
    try:
        return validator(value)
    except _Problem as p:
        raise _bad(where, fld, str(p)) from None


def _show(value: Any) -> str:
    """Render what the operator wrote, short, so the message can say "got ..."."""
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "an array"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --- validators: each returns the (normalised) value or raises _Problem ------------------------


def is_valid_topic(name: object) -> bool:
    """Whether Kafka would accept ``name`` as a topic name."""
    return isinstance(name, str) and _TOPIC_RE.fullmatch(name) is not None and name not in (".", "..")


def _topic(value: Any) -> str:
    if not is_valid_topic(value):
        raise _Problem(f"{TOPIC_RULE}; got {_show(value)}")
    return value


def _regex(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Problem(f"must be a non-empty regular expression (Python re syntax); got {_show(value)}")
    try:
        _compile(value)
    except (re.error, OverflowError, RecursionError, ValueError) as e:
        raise _Problem(f"not a valid regular expression ({e}): {_show(value)}") from None
    return value


@lru_cache(maxsize=512)
def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Problem(f"must be true or false; got {_show(value)}")
    return value


def _choice(*allowed: str) -> Any:
    def check(value: Any) -> str:
        if value not in allowed or not isinstance(value, str):
            options = " or ".join(f'"{a}"' for a in allowed)
            raise _Problem(f"must be {options}; got {_show(value)}")
        return value

    return check


def _int_range(lo: int, hi: int, unit: str = "") -> Any:
    def check(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
            raise _Problem(f"must be a whole number from {lo} to {hi}{unit}; got {_show(value)}")
        return value

    return check


def _seconds(lo_exclusive: float, hi: float) -> Any:
    def check(value: Any) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not math.isfinite(value) or not lo_exclusive < value <= hi:
            raise _Problem(f"must be a number of seconds above {lo_exclusive:g}, at most {hi:g}; "
                           f"got {_show(value)}")
        return float(value)

    return check


_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*")


def _duration(value: Any) -> Any:
    """Filebeat writes ``timeout: 5s``; accept that spelling too, as seconds."""
    if isinstance(value, str):
        m = _DURATION_RE.fullmatch(value)
        if not m:
            raise _Problem('must be seconds as a number or a duration like "5s" or "500ms"; '
                           f"got {_show(value)}")
        scale = {"ms": 0.001, "s": 1.0, None: 1.0, "m": 60.0}[m.group(2)]
        return float(m.group(1)) * scale
    return value


def _abs_glob(value: Any) -> str:
    if not isinstance(value, str):
        raise _Problem(f"must be an absolute file glob such as /var/log/app/*.log; got {_show(value)}")
    if not value:
        raise _Problem("empty; give an absolute file glob such as /var/log/app/*.log")
    if not value.startswith("/"):
        raise _Problem(f"relative path {_show(value)}; the agent needs an absolute glob such as "
                       "/var/log/app/*.log")
    if any(ord(c) < 32 or c == "\x7f" for c in value):
        raise _Problem(f"contains a control character (newline, tab, NUL...): {_show(value)}")
    if value.endswith("/"):
        raise _Problem(f"names a directory ({_show(value)}); add a file glob such as {value}*.log")
    if len(value.encode("utf-8", "surrogatepass")) > 4096:
        raise _Problem("longer than 4096 bytes (PATH_MAX)")
    return value


def _fields(value: Any) -> tuple[tuple[str, str], ...]:
    """Sorted pairs, so two lists that differ only in key order compare equal."""
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, list | tuple):
        items = list(value)
        if not all(isinstance(p, tuple | list) and len(p) == 2 for p in items):
            raise _Problem("must be an object of string keys to string values")
    else:
        raise _Problem(f'must be an object of string keys to string values, such as {{"env": "prod"}}; '
                       f"got {_show(value)}")
    seen: set[str] = set()
    for k, v in items:
        if not isinstance(k, str) or not k or len(k) > 256:
            raise _Problem(f"key {_show(k)} must be a non-empty string of at most 256 chars")
        if k in seen:
            raise _Problem(f'key "{k}" given twice')
        seen.add(k)
        if not isinstance(v, str):
            raise _Problem(f'value of "{k}" must be a string (quote numbers and booleans); got {_show(v)}')
    return tuple(sorted((k, v) for k, v in items))


def _regex_list(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise _Problem(f'must be an array of regular expressions, such as ["\\\\.gz$"]; got {_show(value)}')
    for n, item in enumerate(value, 1):
        try:
            _regex(item)
        except _Problem as p:
            raise _Problem(f"item {n}: {p}") from None
    return tuple(value)


def _unknown_key(key: str, allowed: Iterable[str]) -> str:
    allowed = sorted(allowed)
    guess = difflib.get_close_matches(key, allowed, n=1)
    hint = f' (did you mean "{guess[0]}"?)' if guess else ""
    return f"unknown field{hint}; allowed: {', '.join(allowed)}"


# --- Multiline ---------------------------------------------------------------------------------

_MULTILINE_KEYS = ("pattern", "negate", "match", "max_lines", "flush_timeout_s", "timeout")


@dataclass(frozen=True)
class Multiline:
    """Joins continuation lines (stack traces) into one record, with Filebeat's semantics.

    A line "matches" when ``pattern`` finds it (``re.search``), inverted by ``negate``. With
    ``match="after"`` matching lines are appended to the previous line; with ``"before"`` they
    are prepended to the next. ``max_lines`` bounds memory; ``flush_timeout_s`` emits a pending
    event when no further line arrives (JSON key ``timeout`` is accepted as in Filebeat).
    """

    pattern: str
    negate: bool = False
    match: str = "after"
    max_lines: int = 500
    flush_timeout_s: float = 5.0
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        w = "multiline"
        _check(w, "pattern", _regex, self.pattern)
        _check(w, "negate", _bool, self.negate)
        _check(w, "match", _choice("after", "before"), self.match)
        _check(w, "max_lines", _int_range(1, 100_000), self.max_lines)
        timeout = _check(w, "flush_timeout_s", _seconds(0, 3600), self.flush_timeout_s)
        object.__setattr__(self, "flush_timeout_s", timeout)
        object.__setattr__(self, "regex", _compile(self.pattern))

    @classmethod
    def from_json(cls, obj: Any) -> Multiline:
        """Build from the JSON object; errors name fields relative to the object ("pattern")."""
        if not isinstance(obj, dict):
            problem = f'must be an object like {{"pattern": "^\\\\S", "negate": true}}; got {_show(obj)}'
            raise SchemaError(f"multiline: {problem}", field=None, problem=problem)
        for key in obj:
            if key not in _MULTILINE_KEYS:
                raise _bad("multiline", key, _unknown_key(key, _MULTILINE_KEYS))
        if "pattern" not in obj:
            raise _bad("multiline", "pattern", 'missing; give a regular expression such as "^\\\\S"')
        kwargs = {k: obj[k] for k in ("pattern", "negate", "match", "max_lines") if k in obj}
        if "timeout" in obj and "flush_timeout_s" in obj:
            raise _bad("multiline", "timeout", 'give "flush_timeout_s" or "timeout", not both')
        for key in ("flush_timeout_s", "timeout"):
            if key in obj:
                kwargs["flush_timeout_s"] = _check("multiline", key, _duration, obj[key])
        try:
            return cls(**kwargs)
        except SchemaError as e:
            if e.field == "flush_timeout_s" and "timeout" in obj:
                raise _bad("multiline", "timeout", e.problem or str(e)) from None
            raise

    def to_json(self) -> dict[str, Any]:
        """All keys, always: negate and match change the meaning too much to leave implicit."""
        return {
            "pattern": self.pattern,
            "negate": self.negate,
            "match": self.match,
            "max_lines": self.max_lines,
            "flush_timeout_s": self.flush_timeout_s,
        }


# --- Parse and Timestamp (the parsing itself is agent/parsers.py) -------------------------------

#: formats with their own time in the line, which becomes @timestamp
LINE_TIME_FORMATS = ("nginx_combined", "nginx_common", "apache_combined", "apache_common", "syslog",
                     "syslog_rfc3164", "syslog_rfc5424")
PARSE_FORMATS = ("json", "kv", "regex", *LINE_TIME_FORMATS)
_PARSE_KEYS = ("format", "target", "max_depth", "max_fields", "pattern")
_TIMESTAMP_KEYS = ("field", "format", "timezone")
#: envelope fields a parser may never write (logferry's own, or the raw line)
RESERVED_FIELDS = ("@timestamp", "message", "host", "log.file", "log.offset", "log.flags", "event.id",
                   "agent", "fields", "error")
_FIELD_PATH_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")
_TS_NAMED = ("iso8601", "unix", "unix_ms")


def _reserved(path: str) -> str | None:
    """The reserved envelope field ``path`` is, or lies inside or above, else None."""
    for r in RESERVED_FIELDS:
        if path == r or path.startswith(r + ".") or r.startswith(path + "."):
            return r
    return None


def _field_path(value: Any) -> str:
    if not isinstance(value, str) or not _FIELD_PATH_RE.fullmatch(value) or len(value) > 256:
        raise _Problem(f"must be a dotted field name such as app or http.response.status_code "
                       f"(letters, digits, _ and -); got {_show(value)}")
    hit = _reserved(value)
    if hit is not None:
        raise _Problem(f"{_show(value)} would overwrite logferry's own field {hit}; choose another name")
    return value


def _timezone(value: Any) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not isinstance(value, str) or not value:
        raise _Problem(f'must be a time zone name such as "UTC" or "Europe/Berlin"; got {_show(value)}')
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise _Problem(f'unknown time zone {_show(value)}; use an IANA name such as "UTC" or "Europe/Berlin"') \
            from None
    return value


def _ts_format(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _Problem(f'must be "iso8601", "unix", "unix_ms" or a strptime format such as '
                       f'"%d/%b/%Y:%H:%M:%S %z"; got {_show(value)}')
    if value not in _TS_NAMED:
        if "%" not in value:
            raise _Problem(f'{_show(value)} is neither "iso8601", "unix", "unix_ms" nor a strptime format '
                           '(strptime formats hold % directives, such as "%Y-%m-%d %H:%M:%S")')
        try:
            datetime.now(UTC).strftime(value)
        except ValueError as e:
            raise _Problem(f"not a usable strptime format ({e}): {_show(value)}") from None
    return value


@dataclass(frozen=True)
class Timestamp:
    """Which parsed field becomes ``@timestamp``, and how to read it.

    ``field`` is the field's name in the indexed document (``app.time`` for JSON under target
    ``app``). ``format``: ``iso8601`` (the default), ``unix`` (seconds), ``unix_ms`` or a strptime
    format. ``timezone`` applies to times written without an offset (default UTC).
    """

    field: str
    format: str = "iso8601"
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        w = "timestamp"
        if not isinstance(self.field, str) or not _FIELD_PATH_RE.fullmatch(self.field):
            raise _bad(w, "field", f"must be the dotted name of a parsed field such as app.time; got "
                                   f"{_show(self.field)}")
        _check(w, "format", _ts_format, self.format)
        _check(w, "timezone", _timezone, self.timezone)

    @classmethod
    def from_json(cls, obj: Any) -> Timestamp:
        if not isinstance(obj, dict):
            problem = f'must be an object like {{"field": "app.time", "format": "iso8601"}}; got {_show(obj)}'
            raise SchemaError(f"timestamp: {problem}", field=None, problem=problem)
        for key in obj:
            if key not in _TIMESTAMP_KEYS:
                raise _bad("timestamp", key, _unknown_key(key, _TIMESTAMP_KEYS))
        if "field" not in obj:
            raise _bad("timestamp", "field", "missing; give the parsed field holding the time, such as app.time")
        return cls(**obj)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"field": self.field}
        if self.format != "iso8601":
            out["format"] = self.format
        if self.timezone != "UTC":
            out["timezone"] = self.timezone
        return out


def _regex_field(group: str) -> str:
    """A named group's field: ``__`` stands for the dot Python forbids in group names."""
    return group.replace("__", ".")


@dataclass(frozen=True)
class Parse:
    """How an input's lines become fields (agent/parsers.py does it; docs/parsing.md says what each gives).

    ``target``: where JSON objects (default ``json``) and key=value pairs (default ``kv``) go.
    ``max_depth`` and ``max_fields`` bound a JSON line, so one line cannot explode the index's
    mapping: deeper objects are kept as JSON text, a line with more fields is indexed unparsed.
    ``pattern`` (format regex): a Python regular expression with named groups, one per field;
    ``__`` in a group name stands for a dot (``(?P<http__response__status_code>\\d+)``).
    """

    format: str
    target: str | None = None
    max_depth: int = 5
    max_fields: int = 200
    pattern: str | None = None

    def __post_init__(self) -> None:
        w = "parse"
        _check(w, "format", _choice(*PARSE_FORMATS), self.format)
        fmt = self.format
        if self.target is not None:
            if fmt not in ("json", "kv"):
                raise _bad(w, "target", f'applies to formats "json" and "kv" only, not "{fmt}"; remove it')
            _check(w, "target", _field_path, self.target)
        else:
            object.__setattr__(self, "target", {"json": "json", "kv": "kv"}.get(fmt))
        _check(w, "max_depth", _int_range(1, 20), self.max_depth)
        _check(w, "max_fields", _int_range(1, 10_000), self.max_fields)
        if fmt == "regex":
            if self.pattern is None:
                raise _bad(w, "pattern", 'missing; format "regex" needs a pattern with named groups such as '
                                         '"^(?P<log__level>\\w+) (?P<service__name>\\S+)"')
            _check(w, "pattern", _regex, self.pattern)
            groups = list(_compile(self.pattern).groupindex)
            if not groups:
                raise _bad(w, "pattern", f"has no named group, so it gives no field; name the parts such as "
                                         f"(?P<log__level>\\w+): {_show(self.pattern)}")
            for g in groups:
                try:
                    _field_path(_regex_field(g))
                except _Problem as p:
                    raise _bad(w, "pattern", f"group {g}: {p}") from None
        elif self.pattern is not None:
            raise _bad(w, "pattern", f'applies to format "regex" only, not "{fmt}"; remove it')

    @classmethod
    def from_json(cls, obj: Any) -> Parse:
        if not isinstance(obj, dict):
            problem = f'must be an object like {{"format": "nginx_combined"}}; got {_show(obj)}'
            raise SchemaError(f"parse: {problem}", field=None, problem=problem)
        for key in obj:
            if key not in _PARSE_KEYS:
                raise _bad("parse", key, _unknown_key(key, _PARSE_KEYS))
        if "format" not in obj:
            raise _bad("parse", "format", f"missing; give one of {', '.join(PARSE_FORMATS)}")
        return cls(**obj)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format}
        if self.target is not None and self.target != {"json": "json", "kv": "kv"}.get(self.format):
            out["target"] = self.target
        if self.format == "json" and self.max_depth != 5:
            out["max_depth"] = self.max_depth
        if self.format in ("json", "kv") and self.max_fields != 200:
            out["max_fields"] = self.max_fields
        if self.pattern is not None:
            out["pattern"] = self.pattern
        return out


# --- Journal (the systemd journal as an input; the reading is agent/journal.py) ----------------

#: syslog severities as journalctl -p names them, most severe first (PRIORITY 0..7)
PRIORITY_NAMES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_JOURNAL_KEYS = ("units", "identifiers", "matches", "priority")
_JOURNAL_FIELD_RE = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")
_JOURNAL_NAME_RE = re.compile(r"[^\s\x00-\x1f\x7f]{1,256}")


def _journal_names(what: str, example: str) -> Any:
    def check(value: Any) -> tuple[str, ...]:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise _Problem(f'must be an array of {what}, such as ["{example}"]; got {_show(value)}')
        for n, item in enumerate(value, 1):
            if not isinstance(item, str) or not _JOURNAL_NAME_RE.fullmatch(item) or item.startswith("-"):
                raise _Problem(f"item {n}: must be a non-empty {what[:-1]} without spaces or control "
                               f"characters, not starting with -, such as {example}; got {_show(item)}")
        if len(set(value)) != len(value):
            raise _Problem("lists the same name twice")
        return tuple(value)

    return check


def _journal_matches(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise _Problem(f'must be an array of FIELD=value matches, such as ["_TRANSPORT=kernel"]; got {_show(value)}')
    for n, item in enumerate(value, 1):
        field_name, eq, val = item.partition("=") if isinstance(item, str) else ("", "", "")
        if not eq or not _JOURNAL_FIELD_RE.fullmatch(field_name) or any(ord(c) < 32 for c in val):
            raise _Problem(f"item {n}: must be FIELD=value with a journal field name (upper-case letters, digits "
                           f"and _, such as _TRANSPORT=kernel or _SYSTEMD_UNIT=nginx.service); got {_show(item)}")
    return tuple(value)


def _priority(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 7:
        return PRIORITY_NAMES[value]
    if isinstance(value, str) and value.isdigit() and int(value) <= 7:
        return PRIORITY_NAMES[int(value)]
    if value == "error":
        return "err"
    if not isinstance(value, str) or value not in PRIORITY_NAMES:
        raise _Problem(f"must be a syslog level ({', '.join(PRIORITY_NAMES)}) or 0 to 7: entries of that level "
                       f"and more severe are collected; got {_show(value)}")
    return value


@dataclass(frozen=True)
class Journal:
    """Which entries of this host's systemd journal an input collects (all of them when empty).

    ``units`` (``journalctl -u``) and ``identifiers`` (``-t``, the SYSLOG_IDENTIFIER) each match
    any of their names; ``matches`` are journalctl's ``FIELD=value`` (the same field twice: either
    value; different fields: both); ``priority`` keeps that level and more severe (``-p``). The
    kinds of filter given all apply (AND), as journalctl combines them.
    """

    units: tuple[str, ...] = ()
    identifiers: tuple[str, ...] = ()
    matches: tuple[str, ...] = ()
    priority: str | None = None

    def __post_init__(self) -> None:
        w = "journal"
        object.__setattr__(self, "units", _check(w, "units", _journal_names("unit names", "nginx.service"),
                                                 self.units))
        object.__setattr__(self, "identifiers", _check(w, "identifiers", _journal_names("identifiers", "sshd"),
                                                       self.identifiers))
        object.__setattr__(self, "matches", _check(w, "matches", _journal_matches, self.matches))
        if self.priority is not None:
            object.__setattr__(self, "priority", _check(w, "priority", _priority, self.priority))

    @classmethod
    def from_json(cls, obj: Any) -> Journal:
        if not isinstance(obj, dict):
            problem = (f'must be an object like {{"units": ["nginx.service"], "priority": "info"}} '
                       f"({{}} for the whole journal); got {_show(obj)}")
            raise SchemaError(f"journal: {problem}", field=None, problem=problem)
        for key in obj:
            if key not in _JOURNAL_KEYS:
                raise _bad("journal", key, _unknown_key(key, _JOURNAL_KEYS))
        return cls(**obj)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("units", "identifiers", "matches"):
            if getattr(self, name):
                out[name] = list(getattr(self, name))
        if self.priority is not None:
            out["priority"] = self.priority
        return out

    def input_id(self) -> str:
        """The input's id (its ``path`` in the agent, the registry and the status): ``journal:`` and
        its filter, so two entries with the same filter are refused as duplicates, and a changed
        filter is a new input (``start_at`` applies again)."""
        if not (self.units or self.identifiers or self.matches or self.priority):
            return "journal:*"
        return "journal:" + json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)

    def journalctl_args(self) -> list[str]:
        """The filter as journalctl arguments (after the options; the matches last)."""
        args = [f"--unit={u}" for u in self.units] + [f"--identifier={i}" for i in self.identifiers]
        if self.priority is not None:
            args.append(f"--priority={self.priority}")
        return args + list(self.matches)


# --- InputSpec ---------------------------------------------------------------------------------

_INPUT_KEYS = ("path", "topic", "multiline", "fields", "exclude_files", "start_at", "max_line_bytes",
               "parse", "timestamp", "include_lines", "exclude_lines", "journal")
#: what a journal input may have besides "journal" and "topic" (the rest is about files)
_JOURNAL_INPUT_KEYS = ("journal", "topic", "fields", "start_at", "max_line_bytes", "parse", "timestamp",
                       "include_lines", "exclude_lines")


@dataclass(frozen=True)
class InputSpec:
    """One entry of a host's collect list: which files go to which Kafka topic, and how.

    Hashable and compared by value: the agent diffs the old list against a new one to decide
    which tailers to start, stop or restart. ``fields`` accepts a mapping and is stored as
    sorted (key, value) pairs; ``exclude_files`` accepts any sequence and is stored as a tuple.
    ``start_at`` applies to files found at the agent's first start; files that appear later are
    always read from the beginning.
    """

    path: str
    topic: str
    multiline: Multiline | None = None
    fields: tuple[tuple[str, str], ...] = ()
    exclude_files: tuple[str, ...] = ()
    start_at: str = "end"
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    parse: Parse | None = None
    timestamp: Timestamp | None = None
    include_lines: tuple[str, ...] = ()
    exclude_lines: tuple[str, ...] = ()
    #: set: the input reads this host's systemd journal, and ``path`` is :meth:`Journal.input_id`
    journal: Journal | None = None
    exclude_regexes: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.journal is not None:
            if not isinstance(self.journal, Journal):
                raise _bad("input", "journal", f"must be a Journal or None; got {_show(self.journal)}")
            if self.path not in ("", self.journal.input_id()):
                raise _bad("input", "path", 'give "path" (files) or "journal", not both')
            object.__setattr__(self, "path", self.journal.input_id())
            if self.multiline is not None or self.exclude_files:
                raise _bad("input", "multiline" if self.multiline is not None else "exclude_files",
                           "applies to files, not to a journal input; remove it")
        where = f"input ({_show(self.path)})"
        if self.journal is None:
            _check(where, "path", _abs_glob, self.path)
        _check(where, "topic", _topic, self.topic)
        if self.multiline is not None and not isinstance(self.multiline, Multiline):
            raise _bad(where, "multiline", f"must be a Multiline or None; got {_show(self.multiline)}")
        object.__setattr__(self, "fields", _check(where, "fields", _fields, self.fields))
        excl = _check(where, "exclude_files", _regex_list, self.exclude_files)
        object.__setattr__(self, "exclude_files", excl)
        object.__setattr__(self, "exclude_regexes", tuple(_compile(p) for p in excl))
        _check(where, "start_at", _choice("end", "beginning"), self.start_at)
        limits = _int_range(MIN_LINE_BYTES, MAX_LINE_BYTES, " bytes (64 B to 64 MiB)")
        _check(where, "max_line_bytes", limits, self.max_line_bytes)
        for name in ("include_lines", "exclude_lines"):
            object.__setattr__(self, name, _check(where, name, _regex_list, getattr(self, name)))
        if self.parse is not None and not isinstance(self.parse, Parse):
            raise _bad(where, "parse", f"must be a Parse or None; got {_show(self.parse)}")
        if self.timestamp is not None:
            if not isinstance(self.timestamp, Timestamp):
                raise _bad(where, "timestamp", f"must be a Timestamp or None; got {_show(self.timestamp)}")
            if self.parse is None:
                raise _bad(where, "timestamp", 'needs "parse": the time is read from a parsed field')
            if self.parse.format in LINE_TIME_FORMATS:
                raise _bad(where, "timestamp", f"{self.parse.format} lines carry their own time, which becomes "
                                               "@timestamp; remove timestamp")

    def fields_dict(self) -> dict[str, str]:
        """The extra fields as a fresh dict, the shape the envelope wants."""
        return dict(self.fields)

    def is_excluded(self, file_path: str) -> bool:
        """Filebeat semantics: a file is skipped when any exclude regex finds its path."""
        return any(r.search(file_path) for r in self.exclude_regexes)

    def to_json(self) -> dict[str, Any]:
        """Path and topic, then only what differs from the defaults, so seeds round-trip as written."""
        out: dict[str, Any] = ({"path": self.path} if self.journal is None
                               else {"journal": self.journal.to_json()})
        out["topic"] = self.topic
        if self.start_at != "end":
            out["start_at"] = self.start_at
        if self.max_line_bytes != DEFAULT_MAX_LINE_BYTES:
            out["max_line_bytes"] = self.max_line_bytes
        if self.multiline is not None:
            out["multiline"] = self.multiline.to_json()
        if self.fields:
            out["fields"] = dict(self.fields)
        if self.exclude_files:
            out["exclude_files"] = list(self.exclude_files)
        if self.parse is not None:
            out["parse"] = self.parse.to_json()
        if self.timestamp is not None:
            out["timestamp"] = self.timestamp.to_json()
        if self.include_lines:
            out["include_lines"] = list(self.include_lines)
        if self.exclude_lines:
            out["exclude_lines"] = list(self.exclude_lines)
        return out


# --- JSON loading ------------------------------------------------------------------------------


class _DupKey(Exception):
    pass


class _BadConstant(Exception):
    pass


def _no_dup_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DupKey(k)
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise _BadConstant(name)


def _load_json(raw: str | bytes, what: str, empty_hint: str) -> Any:
    """json.loads that reports where and why, refuses duplicate keys, NaN and Infinity."""
    if isinstance(raw, bytes | bytearray | memoryview):
        try:
            text = bytes(raw).decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise SchemaError(f"{what}: not UTF-8 (bad byte at offset {e.start}); "
                              "store it as UTF-8 JSON") from None
    elif isinstance(raw, str):
        text = raw
    else:
        raise SchemaError(f"{what}: expected JSON text (str or bytes), got {type(raw).__name__}")
    if not text.strip():
        raise SchemaError(f"{what}: empty; {empty_hint}")
    try:
        return json.loads(text, object_pairs_hook=_no_dup_keys, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise SchemaError(f"{what}: not valid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except _DupKey as e:
        raise SchemaError(f'{what}: key "{e.args[0]}" appears twice in one object; keep one') from None
    except _BadConstant as e:
        raise SchemaError(f"{what}: {e.args[0]} is not a JSON number; use a finite number") from None
    except RecursionError:
        raise SchemaError(f"{what}: nested too deeply to be a logferry document") from None
    except ValueError as e:  # e.g. an integer literal with thousands of digits
        raise SchemaError(f"{what}: not usable JSON: {e}") from None


# --- collect list ------------------------------------------------------------------------------


def _entry_label(n: int, obj: Any) -> str:
    if isinstance(obj, dict) and isinstance(obj.get("path"), str):
        return f"collect list entry {n} ({_show(obj['path'])})"
    if isinstance(obj, dict) and "journal" in obj:
        return f"collect list entry {n} (journal)"
    return f"collect list entry {n}"


def _input_from_json(obj: Any, n: int) -> InputSpec:
    label = _entry_label(n, obj)
    if not isinstance(obj, dict):
        raise SchemaError(f"{label}: must be an object like {_EXAMPLE_INPUT}; got {_show(obj)}")
    for key in obj:
        if key not in _INPUT_KEYS:
            raise _bad(label, key, _unknown_key(key, [k for k in _INPUT_KEYS if k != "journal"])
                       + '; or "journal" instead of "path" for the systemd journal')
    if "journal" in obj:
        return _journal_input(obj, label)
    for key, hint in (("path", "an absolute file glob such as /var/log/app/*.log"),
                      ("topic", "the Kafka topic these lines go to")):
        if key not in obj:
            raise _bad(label, key, f"missing; give {hint}")
    kwargs: dict[str, Any] = {k: obj[k] for k in ("path", "topic", "start_at", "max_line_bytes") if k in obj}
    ml = obj.get("multiline")
    if ml is not None:
        try:
            kwargs["multiline"] = Multiline.from_json(ml)
        except SchemaError as e:
            sub = f"multiline.{e.field}" if e.field else "multiline"
            raise _bad(label, sub, e.problem or str(e)) from None
    if "fields" in obj:
        if not isinstance(obj["fields"], dict):
            problem = f'must be an object such as {{"env": "prod"}}; got {_show(obj["fields"])}'
            raise _bad(label, "fields", problem)
        kwargs["fields"] = obj["fields"]
    if "exclude_files" in obj:
        kwargs["exclude_files"] = obj["exclude_files"]
    for key, cls in (("parse", Parse), ("timestamp", Timestamp)):
        if obj.get(key) is not None:
            try:
                kwargs[key] = cls.from_json(obj[key])
            except SchemaError as e:
                sub = f"{key}.{e.field}" if e.field else key
                raise _bad(label, sub, e.problem or str(e)) from None
    for key in ("include_lines", "exclude_lines"):
        if key in obj:
            kwargs[key] = obj[key]
    try:
        return InputSpec(**kwargs)
    except SchemaError as e:
        raise _bad(label, e.field or "?", e.problem or str(e)) from None


def _journal_input(obj: dict[str, Any], label: str) -> InputSpec:
    """A collect-list entry naming the journal instead of a path (``{"journal": {...}, "topic": ...}``)."""
    for key in obj:
        if key not in _JOURNAL_INPUT_KEYS:
            problem = ('give "path" (files) or "journal", not both' if key == "path"
                       else 'applies to files, not to a journal input; remove it')
            raise _bad(label, key, problem)
    if "topic" not in obj:
        raise _bad(label, "topic", "missing; give the Kafka topic these entries go to")
    try:
        journal = Journal.from_json(obj["journal"])
    except SchemaError as e:
        raise _bad(label, f"journal.{e.field}" if e.field else "journal", e.problem or str(e)) from None
    rest = {k: v for k, v in obj.items() if k != "journal"}
    rest.pop("multiline", None)
    try:
        spec = _input_from_json({"path": "/journal", **rest}, 0)  # the file-input checks of the shared fields
        return InputSpec(**{**{f: getattr(spec, f) for f in (
            "topic", "fields", "start_at", "max_line_bytes", "parse", "timestamp", "include_lines",
            "exclude_lines")}, "path": "", "journal": journal})
    except SchemaError as e:
        raise _bad(label, e.field or "?", e.problem or str(e)) from None


def parse_collect_list(raw: str | bytes) -> list[InputSpec]:
    """Parse and validate a host's collect list (a JSON array of inputs; ``[]`` collects nothing).

    Refused, with a ``SchemaError`` naming entry and field: text that is not JSON, a non-array,
    non-object entries, unknown or missing fields, wrong types, relative or empty paths, the same
    path twice, and regular expressions that do not compile.
    """
    data = _load_json(raw, "collect list", "write [] to collect nothing")
    if not isinstance(data, list):
        raise SchemaError(f"collect list: must be a JSON array of inputs like [{_EXAMPLE_INPUT}]; "
                          f"got {_show(data)}")
    out: list[InputSpec] = []
    seen: dict[str, int] = {}
    for n, obj in enumerate(data, 1):
        spec = _input_from_json(obj, n)
        key = posixpath.normpath(spec.path) if spec.journal is None else spec.path
        if key in seen:
            if spec.journal is not None:
                raise _bad(_entry_label(n, obj), "journal", f"same journal filter as entry {seen[key]}; merge "
                                                            "the two entries or remove one")
            raise _bad(_entry_label(n, obj), "path",
                       f"same path as entry {seen[key]}; merge the two entries or remove one")
        seen[key] = n
        out.append(spec)
    return out


def dump_collect_list(inputs: Iterable[InputSpec]) -> str:
    """Pretty JSON with a stable key order, so a diff of two dumps shows only real changes."""
    return json.dumps([i.to_json() for i in inputs], indent=2, ensure_ascii=False)


# --- transfer config ---------------------------------------------------------------------------

_TRANSFER_KEYS = ("topics", "topics_regex", "index", "bulk_max_docs", "bulk_max_bytes",
                  "flush_interval_s", "dead_letter_topic", "retention_days")
#: Longest retention_days accepted (100 years: a typo guard, not a policy).
MAX_RETENTION_DAYS = 36500
_DATE_TOKENS = {"yyyy": "%Y", "MM": "%m", "dd": "%d", "HH": "%H"}
_DATE_RE = re.compile(r"yyyy|MM|dd|HH|[._-]")
# Characters Elasticsearch refuses in index names (besides upper case, which we lower).
_INDEX_FORBIDDEN = set('\\/*?"<>|,#: ')
_PLACEHOLDER_HELP = ("use {topic} or a date pattern of yyyy, MM, dd, HH joined by . - or _ "
                     "(e.g. {yyyy.MM.dd}), taken from the record's @timestamp in UTC")

# A compiled index pattern: ("lit", text) | ("topic", "") | ("date", strftime format).
_Part = tuple[str, str]


def _compile_index(pattern: str) -> tuple[_Part, ...]:
    """Split an index pattern into parts, or raise _Problem saying what is wrong with it."""
    if not isinstance(pattern, str) or not pattern:
        raise _Problem(f"must be a non-empty index name pattern such as {DEFAULT_INDEX}; "
                       f"got {_show(pattern)}")
    parts: list[_Part] = []
    pos = 0
    while pos < len(pattern):
        open_at = pattern.find("{", pos)
        close_at = pattern.find("}", pos)
        if close_at != -1 and (open_at == -1 or close_at < open_at):
            raise _Problem(f'"}}" at position {close_at + 1} closes nothing; braces mark placeholders: '
                           f"{_PLACEHOLDER_HELP}")
        literal = pattern[pos:] if open_at == -1 else pattern[pos:open_at]
        if literal:
            bad = sorted(set(literal) & _INDEX_FORBIDDEN) or sorted(c for c in set(literal) if ord(c) < 32)
            if bad:
                shown = " ".join(repr(c) for c in bad)
                raise _Problem(f"contains {shown}, which Elasticsearch refuses in index names")
            parts.append(("lit", literal))
        if open_at == -1:
            break
        end = pattern.find("}", open_at)
        nested = pattern.find("{", open_at + 1)
        if end == -1 or (nested != -1 and nested < end):
            raise _Problem(f'"{{" at position {open_at + 1} is not closed; {_PLACEHOLDER_HELP}')
        name = pattern[open_at + 1:end]
        if name == "topic":
            parts.append(("topic", ""))
        else:
            tokens = _DATE_RE.findall(name)
            if not name or "".join(tokens) != name or all(t in "._-" for t in tokens):
                raise _Problem(f"unknown placeholder {{{name}}}; {_PLACEHOLDER_HELP}")
            parts.append(("date", "".join(_DATE_TOKENS.get(t, t) for t in tokens)))
        pos = end + 1
    if parts[0][0] == "lit" and parts[0][1][0] in "-_+.":
        raise _Problem(f'starts with "{parts[0][1][0]}"; Elasticsearch index names cannot start '
                       "with - _ + or .")
    return tuple(parts)


_compile_index_lru = lru_cache(maxsize=64)(_compile_index)


def _compile_index_cached(pattern: Any) -> tuple[_Part, ...]:
    # Only strings reach the cache: anything else is unhashable or wrong, and said so.
    return _compile_index_lru(pattern) if isinstance(pattern, str) else _compile_index(pattern)


@dataclass(frozen=True)
class TransferConfig:
    """What every logtransfer consumes and where it indexes; one document for the whole group.

    Give ``topics`` (explicit names) or ``topics_regex`` (a pattern starting with ``^``, which
    is how librdkafka tells a pattern from a name), never both. The pattern is checked with
    Python's ``re``; librdkafka's own engine knows less (no lookarounds), so keep it plain. The
    dead-letter topic must not be among the consumed topics, or rejected records would loop.
    """

    topics: tuple[str, ...] = ()
    topics_regex: str | None = None
    index: str = DEFAULT_INDEX
    bulk_max_docs: int = 5000
    bulk_max_bytes: int = 5 * MIB
    flush_interval_s: float = 1.0
    dead_letter_topic: str = DEFAULT_DEAD_LETTER_TOPIC
    #: delete the group's own indices whose date is older than this many days (transfer/retention.py);
    #: None (the default): keep everything
    retention_days: int | None = None

    def __post_init__(self) -> None:
        w = "transfer config"
        _check(w, "dead_letter_topic", _topic, self.dead_letter_topic)
        if isinstance(self.topics, str) or not isinstance(self.topics, list | tuple):
            raise _bad(w, "topics", 'must be an array of topic names such as ["nginx-access"]; '
                                    f"got {_show(self.topics)}")
        object.__setattr__(self, "topics", tuple(self.topics))
        one_of = ('give exactly one of "topics" (a list of names) or "topics_regex" '
                  "(a pattern starting with ^)")
        if bool(self.topics) == (self.topics_regex is not None):
            raise _bad(w, "topics", one_of)
        seen: set[str] = set()
        for n, t in enumerate(self.topics, 1):
            try:
                _topic(t)
            except _Problem as p:
                raise _bad(w, "topics", f"item {n}: {p}") from None
            if t in seen:
                raise _bad(w, "topics", f'item {n}: "{t}" is listed twice')
            if t == self.dead_letter_topic:
                raise _bad(w, "topics", f'item {n}: "{t}" is the dead-letter topic; consuming it would loop '
                                        "rejected records forever")
            seen.add(t)
        if self.topics_regex is not None:
            _check(w, "topics_regex", _regex, self.topics_regex)
            if not self.topics_regex.startswith("^"):
                raise _bad(w, "topics_regex", f"must start with ^ (librdkafka treats only ^-prefixed "
                                              f"subscriptions as patterns); got {_show(self.topics_regex)}")
            # librdkafka searches (anchored only by the leading ^), so search here as well.
            if _compile(self.topics_regex).search(self.dead_letter_topic):
                raise _bad(w, "topics_regex", f'matches the dead-letter topic "{self.dead_letter_topic}", '
                                              "so rejected records would loop; narrow the pattern "
                                              "(e.g. ^app-.*) or rename dead_letter_topic")
        _check(w, "index", _compile_index_cached, self.index)
        _check(w, "bulk_max_docs", _int_range(1, 1_000_000), self.bulk_max_docs)
        _check(w, "bulk_max_bytes", _int_range(KIB, MAX_BULK_BYTES, " bytes (ES http.max_content_length "
                                               "is 100mb by default)"), self.bulk_max_bytes)
        interval = _check(w, "flush_interval_s", _seconds(0, 3600), self.flush_interval_s)
        object.__setattr__(self, "flush_interval_s", interval)
        if self.retention_days is not None:
            _check(w, "retention_days", _int_range(1, MAX_RETENTION_DAYS, " days (omit it to keep every index)"),
                   self.retention_days)
            parts = _compile_index_cached(self.index)
            # Deleting by name is only safe for names that can be told apart: a fixed prefix, and a year.
            if parts[0][0] != "lit":
                raise _bad(w, "retention_days", f'needs an index pattern that starts with fixed text such as '
                                                f'"logferry-" (got {_show(self.index)}), so that the retention '
                                                "cannot match indices that are not logferry's")
            if not any(kind == "date" and "%Y" in fmt for kind, fmt in parts):
                raise _bad(w, "retention_days", f"needs a date with the year in the index pattern, such as "
                                                f"{{yyyy.MM.dd}} (got {_show(self.index)}): the retention tells "
                                                "old indices by the date in their name")

    def subscription(self) -> list[str]:
        """The argument for ``Consumer.subscribe``."""
        return list(self.topics) if self.topics else [self.topics_regex or ""]

    def to_json(self) -> dict[str, Any]:
        """Every key, defaults included: one document, and operators want the effective values."""
        out: dict[str, Any] = (
            {"topics": list(self.topics)} if self.topics else {"topics_regex": self.topics_regex}
        )
        out.update(index=self.index, bulk_max_docs=self.bulk_max_docs, bulk_max_bytes=self.bulk_max_bytes,
                   flush_interval_s=self.flush_interval_s, dead_letter_topic=self.dead_letter_topic)
        if self.retention_days is not None:
            out["retention_days"] = self.retention_days
        return out


def parse_transfer_config(raw: str | bytes) -> TransferConfig:
    """Parse and validate the transfer config (a JSON object); ``SchemaError`` names the field."""
    what = "transfer config"
    data = _load_json(raw, what, 'write at least {"topics": ["your-topic"]}')
    if not isinstance(data, dict):
        raise SchemaError(f'{what}: must be a JSON object like {{"topics": ["nginx-access"]}}; '
                          f"got {_show(data)}")
    for key in data:
        if key not in _TRANSFER_KEYS:
            raise _bad(what, key, _unknown_key(key, _TRANSFER_KEYS))
    kwargs = {k: v for k, v in data.items() if not (k == "topics_regex" and v is None)}
    return TransferConfig(**kwargs)


def dump_transfer_config(cfg: TransferConfig) -> str:
    """Pretty JSON, stable key order."""
    return json.dumps(cfg.to_json(), indent=2, ensure_ascii=False)


def _date_of(timestamp_iso: str) -> datetime:
    try:
        ts = datetime.fromisoformat(timestamp_iso)
    except (TypeError, ValueError):
        raise SchemaError(f"@timestamp {_show(timestamp_iso)} is not an ISO-8601 time such as "
                          "2024-05-01T12:00:00.000Z", field="@timestamp", problem="not ISO-8601") from None
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def index_name(cfg: TransferConfig, topic: str, timestamp_iso: str) -> str:
    """The lower-case index a record of ``topic`` at ``timestamp_iso`` goes to.

    Dates are the UTC date of the record's own @timestamp, not of the transfer's clock, so a
    record re-delivered after midnight still lands in the same index (and overwrites itself by
    ``_id``). Raises ``SchemaError`` when the result is not a name Elasticsearch accepts (a
    topic starting with ``_`` at the front of the pattern, say): the caller dead-letters it.
    """
    parts = _compile_index_cached(cfg.index)
    if not is_valid_topic(topic):
        raise SchemaError(f"topic {_show(topic)} {TOPIC_RULE}", field="topic", problem=TOPIC_RULE)
    when: datetime | None = None
    out = []
    for kind, value in parts:
        if kind == "lit":
            out.append(value)
        elif kind == "topic":
            out.append(topic)
        else:
            if when is None:
                when = _date_of(timestamp_iso)
            out.append(when.strftime(value))
    name = "".join(out).lower()
    problem = None
    if name[0] in "-_+.":
        problem = f'starts with "{name[0]}"'
    elif len(name.encode()) > 255:
        problem = "is longer than 255 bytes"
    if problem:
        raise SchemaError(f'index pattern "{cfg.index}" with topic "{topic}" gives "{name[:80]}", which '
                          f"Elasticsearch refuses: it {problem}; change the index pattern",
                          field="index", problem=problem)
    return name
