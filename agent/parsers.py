"""Lines become fields: the parsers an input declares with ``"parse"`` (docs/parsing.md).

Why in the agent: the embedded Elasticsearch has no ingest processors, the agent is where the
line's bytes already are, and what it sends is still keyed by where the line is (``event.id`` is
a hash of host, file identity and offset, never of the parsed content), so a line read again
after a crash gets the same id and the same parsed fields: delivery stays exact.

One :class:`LineParser` is built per input when the collect list is applied: its regular
expressions are compiled then, once. Per line it returns a :class:`Parsed`: JSON fragments the
envelope splices into the record (``logferry.envelope.SourceEncoder.encode_parsed``), the
line's own time if it has one, and the error when the line does not parse. A line that does not
parse is never dropped: it goes out raw with ``error.message`` and the ``parse_failure`` flag.

Field names follow ECS where ECS has one (``http.response.status_code``, ``source.ip``,
``log.level``, ``log.syslog.*``…); the index template (transfer/template.py) maps them typed.
"""

from __future__ import annotations

import calendar
import json
import re
import socket
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from itertools import repeat
from json.encoder import encode_basestring as _enc  # type: ignore[attr-defined]
from operator import itemgetter
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from logferry.schema import Parse, Timestamp

try:  # a C JSON decoder, about 4x the standard one's speed; without it the standard one does it all
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is a dependency; a source checkout may lack it
    _fast_loads = None

__all__ = ["FAILURE_FLAG", "LineParser", "ParseFailure", "Parsed", "ParsedTuple", "parse_fields"]

#: the ``log.flags`` value of a line indexed unparsed (or whose time could not be read)
FAILURE_FLAG = "parse_failure"

_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_SURROGATE = re.compile("[\ud800-\udfff]")


class ParseFailure(ValueError):
    """The line is not in the input's format; the text becomes the record's ``error.message``."""


class Parsed(NamedTuple):
    """What the envelope adds to one line's record.

    ``log_part``/``event_part``/``top_part`` are JSON members (each starting with a comma, or
    empty) for inside ``log``, inside ``event`` and at the top level; ``ts`` the line's own time
    (epoch seconds) when it becomes ``@timestamp``; ``error`` set when something did not parse.
    """

    log_part: bytes
    event_part: bytes
    top_part: bytes
    ts: float | None
    error: str | None


#: a :class:`Parsed`'s five values as a plain tuple, equal to it (``LineParser.many_tuples``: building
#: the NamedTuple costs 0.13 µs a line more than the tuple)
ParsedTuple = tuple[bytes, bytes, bytes, float | None, str | None]


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate from a JSON \ud800 escape
        return _SURROGATE.sub("\ufffd", text).encode("utf-8")


def _members(obj: dict[str, Any]) -> bytes:
    """``,"a":1,"b":2`` for ``{"a": 1, "b": 2}``: members to splice into an object."""
    return b"," + _utf8(_compact(obj))[1:-1] if obj else b""


# --- times ------------------------------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                       "Nov", "Dec"), 1)}
_CLF_TIME = re.compile(r"(\d{1,2})/([A-Z][a-z]{2})/(\d{4}):(\d{2}):(\d{2}):(\d{2})(?: ([+-])(\d{2}):?(\d{2}))?")


@lru_cache(maxsize=64)
def _clf_midnight(date: str) -> float:
    """``10/Oct/2000`` as the epoch seconds of its 00:00 UTC."""
    return calendar.timegm((int(date[7:11]), _MONTHS[date[3:6]], int(date[0:2]), 0, 0, 0, 0, 0, 0))


_last_clf: list[Any] = ["", 0.0]


def _clf_time(text: str) -> float:
    """``10/Oct/2000:13:55:36 -0700`` (nginx ``$time_local``, Apache ``%t``) as epoch seconds.

    The last one is kept (a busy server's lines share their second); the usual shape is read by
    position (the date's midnight cached), anything else through the regular expression.
    """
    last = _last_clf
    if text == last[0]:
        return last[1]
    ts = _clf_time_new(text)
    last[0], last[1] = text, ts
    return ts


def _clf_time_new(text: str) -> float:
    if len(text) == 26 and text[2] == "/" and text[11] == ":" and text[20] == " " and text[3:6] in _MONTHS:
        try:
            secs = _clf_midnight(text[:11]) + int(text[12:14]) * 3600 + int(text[15:17]) * 60 + int(text[18:20])
            off = int(text[22:24]) * 3600 + int(text[24:26]) * 60
        except ValueError:
            pass
        else:
            sign = text[21]
            if sign == "+":
                return secs - off
            if sign == "-":
                return secs + off
    return _clf_time_slow(text)


@lru_cache(maxsize=256)
def _clf_time_slow(text: str) -> float:
    m = _CLF_TIME.fullmatch(text)
    if m is None or m.group(2) not in _MONTHS:
        raise ParseFailure(f"time {text!r} is not like 10/Oct/2000:13:55:36 -0700")
    d, mon, y, hh, mm, ss, sign, oh, om = m.groups()
    secs = calendar.timegm((int(y), _MONTHS[mon], int(d), int(hh), int(mm), int(ss), 0, 0, 0))
    if sign:
        off = int(oh) * 3600 + int(om) * 60
        secs -= off if sign == "+" else -off
    return float(secs)


def _iso_time(text: str, tz: Any = UTC) -> float:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ParseFailure(f"time {text[:60]!r} is not ISO-8601") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.timestamp()


def _bsd_time(text: str, read_ts: float) -> float:
    """``Dec  4 10:00:00`` (RFC 3164, no year, no zone) in the agent's local time zone.

    The year is the one of the moment the line was first read (its stamp, journalled, so a
    line read again after a crash gets the same year): a line stamped in January that says
    December is from the year before.
    """
    try:
        mon, day, clock = text.split()
        hh, mm, ss = clock.split(":")
        month = _MONTHS[mon]
    except (ValueError, KeyError):
        raise ParseFailure(f"time {text!r} is not like Dec  4 10:00:00") from None
    year = time.localtime(read_ts).tm_year
    for y in (year, year - 1):
        try:
            ts = time.mktime((y, month, int(day), int(hh), int(mm), int(ss), 0, 0, -1))
        except (OverflowError, ValueError):
            raise ParseFailure(f"time {text!r} is not a date") from None
        if ts <= read_ts + 86400 * 2:
            return ts
    return ts


class _TimeReader:
    """Reads the ``timestamp`` option's field: iso8601, unix, unix_ms or a strptime format."""

    def __init__(self, spec: Timestamp) -> None:
        self.path = spec.field.split(".")
        self.fmt = spec.format
        self.tz = ZoneInfo(spec.timezone)
        self.field = spec.field

    def __call__(self, doc: dict[str, Any]) -> float:
        node: Any = doc
        for part in self.path:
            if not isinstance(node, dict) or part not in node:
                raise ParseFailure(f"timestamp field {self.field} is not in the line")
            node = node[part]
        fmt = self.fmt
        if fmt in ("unix", "unix_ms"):
            try:
                value = float(node)
            except (TypeError, ValueError):
                raise ParseFailure(f"timestamp field {self.field} {str(node)[:40]!r} is not a number") from None
            if value != value or abs(value) > 1e16:
                raise ParseFailure(f"timestamp field {self.field} {node!r} is out of range")
            return value / 1000.0 if fmt == "unix_ms" else value
        if not isinstance(node, str):
            raise ParseFailure(f"timestamp field {self.field} is {type(node).__name__}, not text")
        if fmt == "iso8601":
            return _iso_time(node, self.tz)
        try:
            dt = datetime.strptime(node, fmt)
        except ValueError:
            raise ParseFailure(f"timestamp field {self.field} {node[:40]!r} does not match format {fmt!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=self.tz)
        return dt.timestamp()


# --- nginx / Apache ---------------------------------------------------------------------------

_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # (unrolled: one alternation per character is 10x slower)
_CLF = (r"(\S+) \S+ (\S+) \[([^\]]+)\] " + _QUOTED + r" (\d{3}) (\d+|-)")
_CLF_COMMON = re.compile(_CLF)
_CLF_COMBINED = re.compile(_CLF + " " + _QUOTED + " " + _QUOTED)
# The combined line the general parser writes with one format (its usual-line branch), as one
# fullmatch: printable ASCII only, no backslash, no quote inside a field, user "-", a size, a
# referrer and a user agent other than "-", a request of three words the last HTTP/… Matching it
# replaces the general match, request split and checks (about half the parser's cost).
_TOKEN = r"[!#-\[\]-~]+"  # printable ASCII but space, '"' and backslash
_TEXT = r"[ !#-\[\]-~]"
_CLF_USUAL = re.compile(
    rf'({_TOKEN}) [!-\[\]-~]+ - \[([ -\[\^-~]+)\] "({_TOKEN}) ({_TOKEN}) HTTP/({_TOKEN})" ([0-9]{{3}}) ([0-9]+) '
    rf'"(?!-")({_TEXT}*)" "(?!-")({_TEXT}*)"')


def _is_ip(text: str) -> bool:
    """Whether Elasticsearch's ip field takes ``text`` (inet_pton: C, a fraction of ipaddress's cost)."""
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in text else socket.AF_INET, text)
    except OSError:
        return False
    return True


def _access(pattern: re.Pattern[str], combined: bool, name: str) -> Callable[[str, float], Parsed]:
    """The access-log parser. It writes the fields' JSON directly (strings through the escaper
    ``json.dumps`` uses, numbers as digits): a line costs one regex match and one join, about a
    third of building dicts and encoding them."""
    match = pattern.match
    fullmatch = _CLF_USUAL.fullmatch
    new = _new_tuple
    inet_pton, af_inet, af_inet6 = socket.inet_pton, socket.AF_INET, socket.AF_INET6

    def usual_run(texts: list[str]) -> list[ParsedTuple | None]:
        # The usual lines: printable ASCII, nothing to escape, no field "-" but the user's; exactly
        # the lines the general path below writes with its one format. None for any other line.
        # A run's lines in one loop (no call a line), each a plain tuple equal to its Parsed
        # (LineParser.many_tuples); _is_ip's inet_pton written out, for the same reason.
        out: list[ParsedTuple | None] = []
        append = out.append
        for text in texts:
            u = fullmatch(text)
            if u is None:
                append(None)
                continue
            addr, when, method, url, version, status, nbytes, referrer, agent = u.groups()
            try:
                inet_pton(af_inet6 if ":" in addr else af_inet, addr)
                ip = f',"ip":"{addr}"'
            except OSError:
                ip = ""
            if status[0] == "0":  # (digits as JSON writes the number: no leading zero)
                status = str(int(status))
            if nbytes[0] == "0" and len(nbytes) > 1:
                nbytes = str(int(nbytes))
            append((b"", b"", (
                f',"http":{{"request":{{"method":"{method}","referrer":"{referrer}"}},"version":"{version}",'
                f'"response":{{"status_code":{status},"body":{{"bytes":{nbytes}}}}}}},'
                f'"source":{{"address":"{addr}"{ip}}},"url":{{"original":"{url}"}},'
                f'"user_agent":{{"original":"{agent}"}}').encode(), _clf_time(when), None))
        return out

    def general(text: str, read_ts: float) -> Parsed:
        m = match(text)
        if m is None:
            raise ParseFailure(f"line is not in the {name} log format")
        g = m.groups()
        addr, user, when, request, status, nbytes = g[:6]
        ts = _clf_time(when)
        parts = request.split(" ")
        if combined and user == "-" and nbytes != "-" and len(parts) == 3 and parts[2].startswith("HTTP/") \
                and g[6] != "-" and g[7] != "-" and "\\" not in text and '"' not in addr and text.isprintable():
            # The usual line, with nothing to escape (no backslash, no control character; the
            # fields hold no quote): one format, no escaper calls.
            ip = f',"ip":"{addr}"' if _is_ip(addr) else ""
            return Parsed(b"", b"", _utf8(
                f',"http":{{"request":{{"method":"{parts[0]}","referrer":"{g[6]}"}},"version":"{parts[2][5:]}",'
                f'"response":{{"status_code":{int(status)},"body":{{"bytes":{int(nbytes)}}}}}}},'
                f'"source":{{"address":"{addr}"{ip}}},"url":{{"original":"{parts[1]}"}},'
                f'"user_agent":{{"original":"{g[7]}"}}'), ts, None)
        req = []
        http = []
        url = ""
        if len(parts) == 3 and parts[2].startswith("HTTP/"):
            req.append('"method":' + _enc(parts[0]))
            url = ',"url":{"original":' + _enc(parts[1]) + "}"
            http.append('"version":' + _enc(parts[2][5:]))
        elif len(parts) == 2:
            req.append('"method":' + _enc(parts[0]))
            url = ',"url":{"original":' + _enc(parts[1]) + "}"
        ua = ""
        if combined:
            referrer, agent = g[6], g[7]
            if referrer != "-":
                req.append('"referrer":' + _enc(referrer))
            if agent != "-":
                ua = ',"user_agent":{"original":' + _enc(agent) + "}"
        if req:
            http.append('"request":{' + ",".join(req) + "}")
        body = "" if nbytes == "-" else ',"body":{"bytes":' + str(int(nbytes)) + "}"
        http.append('"response":{"status_code":' + str(int(status)) + body + "}")
        a = _enc(addr)
        top = "".join((',"http":{', ",".join(http), '},"source":{"address":', a,
                       ',"ip":' + a if _is_ip(addr) else "", "}",
                       "" if user == "-" else ',"user":{"name":' + _enc(user) + "}", url, ua))
        return Parsed(b"", b"", _utf8(top), ts, None)

    if not combined:
        return general

    def parse(text: str, read_ts: float) -> Parsed:
        p = usual_run([text])[0]
        return general(text, read_ts) if p is None else new(Parsed, p)

    # LineParser.many: a run's usual lines, and the rest without matching them as usual a second time
    parse.usual_run, parse.general = usual_run, general  # type: ignore[attr-defined]
    return parse


# --- syslog -----------------------------------------------------------------------------------

_SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
               "ftp", "ntp", "security", "console", "solaris-cron", *(f"local{i}" for i in range(8)))
_RFC3164 = re.compile(
    r"(?:<(\d{1,3})>)?"
    r"([A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2}|\d{4}-\d{2}-\d{2}T\S+) "
    r"(\S+) "
    r"(?:([^\s:\[]+)(?:\[([^\]\s]+)\])?: ?)?"
    r"(.*)", re.S)
_RFC5424 = re.compile(
    r"<(\d{1,3})>(\d{1,2}) (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (.*))?", re.S)


def _pri(pri: str | None, syslog: dict[str, Any], log: dict[str, Any]) -> None:
    if pri is None:
        return
    p = int(pri)
    if p > 191:
        raise ParseFailure(f"syslog priority <{pri}> is over 191")
    fac, sev = divmod(p, 8)
    syslog["priority"] = p
    syslog["facility"] = {"code": fac, "name": _FACILITIES[fac]}
    syslog["severity"] = {"code": sev, "name": _SEVERITIES[sev]}
    log["level"] = _SEVERITIES[sev]


def _rfc3164(text: str, read_ts: float) -> tuple[dict[str, Any], float]:
    m = _RFC3164.fullmatch(text)
    if m is None:
        raise ParseFailure("line is not in the RFC 3164 syslog format")
    pri, when, host, tag, pid, msg = m.groups()
    syslog: dict[str, Any] = {"hostname": host}
    log: dict[str, Any] = {"syslog": syslog}
    _pri(pri, syslog, log)
    if tag is not None:
        syslog["appname"] = tag
    if pid is not None:
        syslog["procid"] = pid
    syslog["message"] = msg
    ts = _iso_time(when) if when[0].isdigit() else _bsd_time(when, read_ts)
    return {"log": log}, ts


def _rfc5424(text: str, read_ts: float) -> tuple[dict[str, Any], float]:
    m = _RFC5424.fullmatch(text)
    if m is None:
        raise ParseFailure("line is not in the RFC 5424 syslog format")
    pri, version, when, host, app, procid, msgid, sd, msg = m.groups()
    syslog: dict[str, Any] = {"version": version}
    log: dict[str, Any] = {"syslog": syslog}
    _pri(pri, syslog, log)
    for key, value in (("hostname", host), ("appname", app), ("procid", procid), ("msgid", msgid)):
        if value != "-":
            syslog[key] = value
    if sd != "-":
        syslog["structured_data"] = sd
    if msg is not None:
        syslog["message"] = msg[1:] if msg.startswith("\ufeff") else msg
    if when == "-":
        return {"log": log}, read_ts
    return {"log": log}, _iso_time(when)


def _syslog(text: str, read_ts: float) -> tuple[dict[str, Any], float]:
    if len(text) > 3 and text[0] == "<":
        end = text.find(">", 1, 5)
        if end > 0 and text[end + 1:end + 3].rstrip(" ").isdigit() and " " in text[end + 1:end + 4]:
            return _rfc5424(text, read_ts)
    return _rfc3164(text, read_ts)


# --- JSON, key=value, regex --------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ParseFailure(f"{name} is not a JSON value Elasticsearch accepts")


_JSON = json.JSONDecoder(parse_constant=_reject_constant)
_ESC_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
_BAD_KEY = re.compile(r"^\.|\.$|\.\.|^\s*$")
_KEY_COLON = re.compile(r'"[ \t\n\r]*:')


def _key(k: str) -> str:
    """A key Elasticsearch takes as a field name (it refuses "", " ", "a..b", ".a", "a.")."""
    if _BAD_KEY.search(k) is None:
        return k
    k = re.sub(r"\.{2,}", ".", k).strip(".")
    return k if k.strip() else "_"


class _Limits:
    __slots__ = ("count", "max_depth", "max_fields")

    def __init__(self, max_depth: int, max_fields: int) -> None:
        self.max_depth, self.max_fields, self.count = max_depth, max_fields, 0


def _fields_if_fine(obj: dict[str, Any], depth: int, max_depth: int, keys: list[int] | None = None) -> int:
    """How many fields ``obj`` makes, or -1 when :func:`_bound` must rework it (too deep, an array
    of objects, a key Elasticsearch refuses). The common line costs one pass, no copy. ``keys[0]``
    (when given) grows by the number of keys of every object in it (the duplicate-key check)."""
    if not obj or "" in obj:
        return -1
    if keys is not None:
        keys[0] += len(obj)
    joined = "\x00".join(obj)
    if " " in joined:
        return -1  # (a key with a space is fine unless it is only spaces: the slow path tells)
    if "." in joined:
        joined = "\x00" + joined + "\x00"
        if "\x00." in joined or ".\x00" in joined or ".." in joined:
            return -1
    n = len(obj)
    for v in obj.values():
        t = type(v)
        if t is dict:
            if depth >= max_depth:
                return -1
            c = _fields_if_fine(v, depth + 1, max_depth, keys)
            if c < 0:
                return -1
            n += c - 1
        elif t is list and v:
            for x in v:
                if type(x) is dict or type(x) is list:
                    return -1
    return n


def _keys_fine(obj: dict[str, Any]) -> bool:
    """Whether ``obj`` is not empty and each of its own keys is one :func:`_fields_if_fine` lets
    through as it is (not "", no space, no leading, trailing or doubled dot)."""
    if not obj or "" in obj:
        return False
    joined = "\x00".join(obj)
    if " " in joined:
        return False
    if "." in joined:
        joined = "\x00" + joined + "\x00"
        if "\x00." in joined or ".\x00" in joined or ".." in joined:
            return False
    return True


#: what the JSON fast path keeps of an object's key structure (:func:`_shape_of`): the members that
#: are objects as ``(key, their own keys, their nesting)``, the number of objects (itself included)
#: and the number of keys at every level
_Shape = tuple[tuple[tuple[str, tuple[str, ...], tuple], ...], int, int]


def _shape_of(obj: dict[str, Any], depth: int, max_depth: int) -> _Shape | None:
    """``obj``'s key structure, or None when an object in it is empty, too deep or has a key to
    repair (the general check decides then). Called for an object without arrays only (no ``[``
    in its text), so every member is an object or a scalar."""
    if not _keys_fine(obj):
        return None
    total, dicts, nested = len(obj), 1, []
    for k, v in obj.items():
        if type(v) is dict:
            if depth >= max_depth:
                return None
            sub = _shape_of(v, depth + 1, max_depth)
            if sub is None:
                return None
            dicts += sub[1]
            total += sub[2]
            nested.append((k, tuple(v), sub[0]))
    return tuple(nested), dicts, total


def _has_nesting(obj: dict[str, Any], nested: tuple[tuple[str, tuple[str, ...], tuple], ...]) -> bool:
    """Whether the members ``nested`` names are objects with those keys (and so on below)."""
    for k, keys, below in nested:
        v = obj[k]
        if type(v) is not dict or tuple(v) != keys or (below and not _has_nesting(v, below)):
            return False
    return True


def _all_have_nesting(objs: list[dict[str, Any]], nested: tuple[tuple[str, tuple[str, ...], tuple], ...]) -> bool:
    """``all(_has_nesting(obj, nested) for obj in objs)`` for objects with the same keys, a member at a
    time across them: a few C loops (map) per chunk of lines instead of a call and a loop per line."""
    for k, keys, below in nested:
        values = list(map(itemgetter(k), objs))
        if set(map(type, values)) != _ONLY_DICT or list(map(tuple, values)).count(keys) != len(values):
            return False
        if below and not _all_have_nesting(values, below):
            return False
    return True


#: ``set(map(type, values))`` of values that are all objects
_ONLY_DICT = frozenset((dict,))

#: ``" :" in text``: the regular expression's literal search is about twice ``in``'s speed on JSON text
#: (``in`` for a two-character needle with a frequent first one)
_space_colon = re.compile(" :").search


def _bound(obj: dict[str, Any], depth: int, lim: _Limits) -> dict[str, Any]:
    """``obj`` with objects below ``max_depth`` kept as JSON text, keys made valid, leaves counted."""
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if isinstance(v, dict):
            v = _bound(v, depth + 1, lim) if depth < lim.max_depth else _compact(v)
            if isinstance(v, str):
                lim.count += 1
        elif isinstance(v, list) and any(isinstance(x, dict | list) for x in v):
            v = _compact(v)  # arrays of objects make one mapping per key; arrays of arrays are refused
            lim.count += 1
        else:
            lim.count += 1
        if lim.count > lim.max_fields:
            raise ParseFailure(f"more than max_fields {lim.max_fields} fields in the JSON object: indexed "
                               "unparsed so it cannot explode the index's mapping")
        out[_key(k)] = v
    return out


def _nest(path: str, value: Any) -> dict[str, Any]:
    parts = path.split(".")
    doc: dict[str, Any] = {parts[-1]: value}
    for p in reversed(parts[:-1]):
        doc = {p: doc}
    return doc


def _json(spec: Parse) -> Callable[[str, float], tuple[dict, float | None]]:
    target = spec.target or "json"

    def parse(text: str, read_ts: float) -> tuple[dict[str, Any], float | None]:
        obj, _raw = parse_raw(text)
        return _nest(target, obj), None

    parse.raw = parse_raw = _json_raw(spec)  # type: ignore[attr-defined]
    return parse


def _json_raw(spec: Parse) -> Callable[[str], tuple[dict[str, Any], bytes | None]]:
    """``text -> (object, its JSON members to splice or None)``: when the object needs no repair
    (depth, keys, arrays of objects) and the line holds no duplicate key (Elasticsearch refuses
    those) and no \\u escape of a surrogate, the line's own text is the field's JSON: no encoding."""
    target = spec.target or "json"
    max_depth, max_fields = spec.max_depth, spec.max_fields
    dup = [False]

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(items)
        if len(d) != len(items):
            dup[0] = True
        return d

    decode = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=pairs).decode
    parts = target.split(".")
    head = "".join(f',"{p}":' if i == 0 else f'{{"{p}":' for i, p in enumerate(parts)).encode()
    tail = b"}" * (len(parts) - 1)

    def slow(text: str) -> tuple[dict[str, Any], bytes | None]:
        dup[0] = False
        try:
            obj = decode(text)
        except json.JSONDecodeError as e:
            raise ParseFailure(f"not JSON ({e.msg} at column {e.colno})") from None
        except RecursionError:
            raise ParseFailure("not JSON Elasticsearch accepts (nested too deeply)") from None
        if not isinstance(obj, dict):
            raise ParseFailure(f"a JSON {type(obj).__name__}, not an object")
        n = _fields_if_fine(obj, 1, max_depth)
        if n > max_fields:
            raise ParseFailure(f"more than max_fields {max_fields} fields in the JSON object: indexed "
                               "unparsed so it cannot explode the index's mapping")
        if n < 0:
            return _bound(obj, 1, _Limits(max_depth, max_fields)), None
        if dup[0] or ("\\u" in text and _ESC_SURROGATE.search(text)):
            return obj, None
        return obj, head + text.encode("utf-8") + tail

    loads = _fast_loads
    if loads is None:
        return slow

    shapes: dict[tuple[str, ...], _Shape] = {}  # key structures seen, by the top level's keys

    def fast(text: str) -> tuple[dict[str, Any], bytes | None]:
        # orjson, for the usual line only: an object Elasticsearch takes as it is, whose text is
        # spliced. Anything else (not JSON, not an object, a repair, over max_fields, a \\u
        # surrogate escape, a possible duplicate key) is decoded again by ``slow``, so results and
        # error messages are exactly the standard decoder's (orjson reads integers over 64 bits as
        # floats, and keeps the last of duplicate keys without telling).
        try:
            obj = loads(text)
        except ValueError:
            return slow(text)
        if type(obj) is not dict:
            return slow(text)
        if "\\" not in text and "[" not in text and "\t" not in text and "\n" not in text and "\r" not in text \
                and " :" not in text:
            # The plainest line (most are): no escape, so every '"' opens or closes a string and the
            # keys are as written; no array; every key directly followed by ':'. Its key structure
            # is checked once per shape (an application writes a few), not once per line:
            # - the objects the shape names are there with the same keys (``_has_nesting``), and no
            #   other: each object has its own '{' in the text, so no more '{' than the shape has
            #   objects means none besides them (a '{' inside a string only sends the line on);
            # - no key twice: '":' follows each key of the text, and only a key (a string value's
            #   closing quote is followed by ',', '}' or a space; a string starting with ':' adds
            #   one, which only sends the line on), so as many '":' as the object has keys means
            #   no key was there twice.
            # Exactly what ``_fields_if_fine`` and the key count below decide, in a few C scans.
            top = tuple(obj)
            shape = shapes.get(top)
            # (fields: keys less the objects below the top; no '{' after the shape's objects' ones:
            # found by memchr, cheaper than counting them, for one or two objects)
            if shape is not None and (not shape[0] or _has_nesting(obj, shape[0])) \
                    and shape[2] - shape[1] < max_fields and text.count('":') == shape[2] and (
                    text.find("{", text.find("{") + 1) < 0 if shape[1] == 1 else
                    text.find("{", text.find("{", text.find("{") + 1) + 1) < 0 if shape[1] == 2 else
                    text.count("{") == shape[1]):
                return obj, head + text.encode("utf-8") + tail if tail else head + text.encode("utf-8")
            shape = _shape_of(obj, 1, max_depth)  # a new shape, or the same keys holding other objects
            if shape is not None and shape[2] - shape[1] < max_fields and text.count('":') == shape[2] \
                    and text.count("{") == shape[1]:
                if len(shapes) >= 256:
                    shapes.clear()  # (an application with ever new keys: bounded)
                shapes[top] = shape
                return obj, head + text.encode("utf-8") + tail
        keys = [0]
        n = _fields_if_fine(obj, 1, max_depth, keys)
        if n < 0 or n > max_fields or ("\\u" in text and _ESC_SURROGATE.search(text)):
            return slow(text)
        # Each key of the text is a '"' followed by ':' (JSON whitespace between them allowed), so
        # when the text holds no more such pairs than the object has keys, no key was there twice.
        # Without tab, LF, CR and " :" in the text, no key has whitespace before its ':'.
        if "\t" in text or "\n" in text or "\r" in text or " :" in text:
            pairs_in_text = len(_KEY_COLON.findall(text))
        else:
            pairs_in_text = text.count('":')
        if pairs_in_text != keys[0]:
            return slow(text)
        return obj, head + text.encode("utf-8") + tail

    def run(texts: list[str]) -> list[bytes | None]:
        # ``fast``'s shape check for a run of lines, its text scans done once per chunk of lines
        # instead of once per line: the chunk joined by NUL (which no JSON text holds: orjson
        # refuses it outside and inside strings, so it never joins two lines' characters into a
        # '":' or ' :') has no backslash, '[', tab, LF, CR or ' :' exactly when none of its lines
        # has; and since each line accepted here holds at least as many '":' and '{' as its shape
        # has keys and objects (see ``fast``), the chunk's counts equal the sum of the shapes'
        # exactly when every line's do. Per line only orjson's decoding and the shape lookup are
        # left. A line this cannot decide (not JSON, a shape not seen yet or not fitting, a chunk
        # with a backslash...) gives None: the caller runs ``fast`` on it, which decides as always.
        # (The '{' count is what finds an object where the shape has a scalar: the shape lookup
        # checks the objects it names, not that the other members are not objects.)
        out: list[bytes | None] = []
        append = out.append
        for start in range(0, len(texts), _CHUNK):
            chunk = texts[start:start + _CHUNK] if len(texts) > _CHUNK else texts
            joined = "\x00".join(chunk)
            if "\\" in joined or "[" in joined or "\t" in joined or "\n" in joined or "\r" in joined \
                    or _space_colon(joined) is not None:
                out += [None] * len(chunk)
                continue
            # One shape for the whole chunk (an application's lines mostly share one): its checks a
            # member at a time over all the lines, in C loops (map), not a few dozen bytecodes a line.
            # Exactly the per-line checks below, which decide any chunk this does not.
            try:
                objs: list[Any] = list(map(loads, chunk))
            except ValueError:
                objs = []  # (a line that is not JSON: the per-line loop sees which)
            if objs and set(map(type, objs)) == _ONLY_DICT:
                tops = list(map(tuple, objs))
                shape = shapes.get(tops[0])
                if shape is not None and tops.count(tops[0]) == len(tops) \
                        and (not shape[0] or _all_have_nesting(objs, shape[0])):
                    n = len(chunk)
                    if joined.count('":') != shape[2] * n or joined.count("{") != shape[1] * n:
                        out += [None] * n  # a key twice, an object the shape does not have
                    elif tail:
                        out += map(b"".join, zip(repeat(head), map(str.encode, chunk), repeat(tail)))
                    else:
                        out += map(head.__add__, map(str.encode, chunk))
                    continue
            first = len(out)
            keys = objects = 0  # what the accepted lines' shapes say
            other_keys = other_objects = 0  # the counts in the lines left to ``fast``
            for i, text in enumerate(chunk):
                if objs:
                    obj = objs[i]
                else:
                    try:
                        obj = loads(text)
                    except ValueError:
                        obj = None
                shape = shapes.get(tuple(obj)) if type(obj) is dict else None
                if shape is not None:
                    for k, sub_keys, below in shape[0]:
                        v = obj[k]
                        if type(v) is not dict or tuple(v) != sub_keys or (below and not _has_nesting(v, below)):
                            shape = None
                            break
                if shape is None:
                    other_keys += text.count('":')
                    other_objects += text.count("{")
                    append(None)
                    continue
                keys += shape[2]
                objects += shape[1]
                append(head + text.encode("utf-8") + tail if tail else head + text.encode("utf-8"))
            if joined.count('":') - other_keys != keys or joined.count("{") - other_objects != objects:
                out[first:] = [None] * (len(out) - first)  # a key twice, an object the shape does not have
        return out

    fast.run = run  # type: ignore[attr-defined]
    return fast


#: lines whose text scans the JSON run path does together (a line that sends its chunk the per-line
#: way costs the chunk's other lines that path: small enough that a rare escape costs little)
_CHUNK = 64


_KV = re.compile(r'([^\s=]+)=(?:"((?:[^"\\]|\\.)*)"|(\S*))')


def _kv(spec: Parse) -> Callable[[str, float], tuple[dict, float | None]]:
    target = spec.target or "kv"
    max_fields = spec.max_fields
    finditer = _KV.finditer

    def parse(text: str, read_ts: float) -> tuple[dict[str, Any], float | None]:
        out: dict[str, Any] = {}
        for m in finditer(text):
            k, quoted, plain = m.groups()
            out[_key(k)] = quoted.replace('\\"', '"') if quoted is not None else plain
            if len(out) > max_fields:
                raise ParseFailure(f"more than max_fields {max_fields} key=value pairs: indexed unparsed")
        if not out:
            raise ParseFailure("no key=value pair in the line")
        # "a=1 a.b=2" would make a both a value and an object, which Elasticsearch refuses
        for k in out:
            if "." in k and k.split(".", 1)[0] in out:
                raise ParseFailure(f"key {k} is below key {k.split('.', 1)[0]}, which has a value")
        return _nest(target, out), None

    return parse


#: ECS fields a regex group may fill, with the type their text becomes (others stay text)
ECS_NUMBERS = frozenset((
    "http.response.status_code", "http.response.body.bytes", "http.response.bytes", "http.request.body.bytes",
    "http.request.bytes", "event.duration", "source.port", "destination.port", "client.port", "server.port",
    "source.bytes", "destination.bytes", "process.pid", "url.port", "log.syslog.priority",
))


def _number(text: str) -> int | float | str:
    try:
        return int(text)
    except ValueError:
        try:
            f = float(text)
        except ValueError:
            return text
        return f if f == f and abs(f) != float("inf") else text


def _regex(spec: Parse) -> Callable[[str, float], tuple[dict, float | None]]:
    assert spec.pattern is not None
    rx = re.compile(spec.pattern)
    search = rx.search
    paths = [(g, g.replace("__", ".").split("."), g.replace("__", ".") in ECS_NUMBERS) for g in rx.groupindex]

    def parse(text: str, read_ts: float) -> tuple[dict[str, Any], float | None]:
        m = search(text)
        if m is None:
            raise ParseFailure("line does not match the input's parse.pattern")
        doc: dict[str, Any] = {}
        for group, parts, numeric in paths:
            value = m.group(group)
            if value is None:
                continue
            node = doc
            for p in parts[:-1]:
                nxt = node.get(p)
                if not isinstance(nxt, dict):
                    nxt = node[p] = {}
                node = nxt
            node[parts[-1]] = _number(value) if numeric else value
        return doc, None

    return parse


def parse_fields(spec: Parse) -> Callable[[str, float], Any]:
    """The function reading one line's fields for ``spec``: ``(text, read time) -> (fields, line time)``
    (the access-log formats: ``-> Parsed``, their JSON written directly).

    Raises :class:`ParseFailure` for a line not in the format. Regular expressions are compiled
    here, once per input.
    """
    fmt = spec.format
    if fmt == "json":
        return _json(spec)
    if fmt == "kv":
        return _kv(spec)
    if fmt == "regex":
        return _regex(spec)
    if fmt in ("nginx_combined", "apache_combined"):
        return _access(_CLF_COMBINED, True, "combined access")
    if fmt in ("nginx_common", "apache_common"):
        return _access(_CLF_COMMON, False, "common access")
    if fmt == "syslog_rfc3164":
        return _rfc3164
    if fmt == "syslog_rfc5424":
        return _rfc5424
    if fmt == "syslog":
        return _syslog
    raise ValueError(f"no parser for format {fmt!r}")  # the schema refuses it before this


_DIRECT = frozenset(("nginx_combined", "apache_combined", "nginx_common", "apache_common"))


class LineParser:
    """The input's ``parse`` (and ``timestamp``) applied to one line at a time.

    Never raises for a line: a line that does not parse gives a :class:`Parsed` with only
    ``error.message`` (and the caller flags it). A parsed line whose ``timestamp`` field cannot
    be read keeps its fields and its read time, with the error.
    """

    __slots__ = ("_direct", "_fields", "_general", "_json", "_target", "_time", "_usual_run", "format")

    def __init__(self, spec: Parse, timestamp: Timestamp | None = None) -> None:
        self.format = spec.format
        self._fields = parse_fields(spec)
        self._direct = spec.format in _DIRECT  # gives a Parsed itself (and takes no timestamp option)
        self._json = getattr(self._fields, "raw", None)  # json: may splice the line's own text
        self._usual_run = getattr(self._fields, "usual_run", None)  # combined access logs: the usual lines
        self._general = getattr(self._fields, "general", None)  # ... and any other line
        self._target = spec.target or ""
        self._time = _TimeReader(timestamp) if timestamp is not None else None

    def __call__(self, text: str, read_ts: float) -> Parsed:
        if self._direct:
            try:
                return self._fields(text, read_ts)  # type: ignore[return-value]
            except ParseFailure as e:
                return _failed(f"{self.format}: {e}")
        if self._json is not None:
            try:
                obj, raw = self._json(text)
            except ParseFailure as e:
                return _failed(f"{self.format}: {e}")
            if raw is not None:
                if self._time is None:  # (the usual JSON line: no NamedTuple __new__ frame)
                    return _new_tuple(Parsed, (b"", b"", raw, None, None))
                error = None
                try:
                    ts = self._time(_nest(self._target, obj))
                except ParseFailure as e:
                    ts, error = None, f"{self.format}: {self._standard_words(text, e)}"
                if ts is not None and not -62135596800.0 <= ts < 253402300800.0:
                    ts, error = None, f"{self.format}: the line's time is outside years 1 to 9999"
                if error is None:
                    return Parsed(b"", b"", raw, ts, None)
                return Parsed(b"", b"", raw + _members({"error": {"message": error}}), None, error)
        try:
            log, event, doc, ts, error = self._dict_parts(text, read_ts)
        except ParseFailure as e:
            return _failed(f"{self.format}: {e}")
        try:
            return Parsed(_members(log) if log else b"", _members(event) if event else b"", _members(doc),
                          ts, error)
        except ValueError as e:  # (a float JSON cannot hold; the decoder refuses NaN already)
            return _failed(f"{self.format}: {e}")

    def many(self, texts: list[str], read_ts: list[float]) -> list[Parsed]:
        """``[self(text, ts) for text, ts in zip(texts, read_ts)]``, the same results, for a run of
        lines of one input: :meth:`many_tuples`, each result a :class:`Parsed`."""
        new = _new_tuple
        return [p if type(p) is Parsed else new(Parsed, p) for p in self.many_tuples(texts, read_ts)]

    def many_tuples(self, texts: list[str], read_ts: list[float]) -> list[Parsed | ParsedTuple]:
        """:meth:`many`'s results, each equal to its :class:`Parsed` but a plain tuple where the run
        path gave it (``(log_part, event_part, top_part, ts, error)``), for ``Agent.produce_events``.

        Why: per line, the call, the checks' scans and the result's construction cost more than the
        parsing itself. A run of JSON lines (no ``timestamp`` option) has its text scans done once
        per chunk (``_json_raw``'s ``run``); a run of combined access lines is matched in one loop;
        the NamedTuple a line was 0.13 µs of the ~3 µs parsing adds. Every line the run path does
        not decide goes through ``__call__``.
        """
        if self._json is not None and self._time is None:
            run = getattr(self._json, "run", None)
            if run is not None:
                raws = run(texts)
                if None not in raws:  # (the usual run: the tuples built in C, not a line at a time)
                    return list(zip(repeat(b""), repeat(b""), raws, repeat(None), repeat(None)))
                return [(b"", b"", raw, None, None) if raw is not None else self(text, ts)
                        for raw, text, ts in zip(raws, texts, read_ts, strict=True)]
        usual_run = self._usual_run
        if usual_run is not None:
            out = usual_run(texts)
            if None in out:
                out = [p if p is not None else self._other_access_line(text, ts)
                       for p, text, ts in zip(out, texts, read_ts, strict=True)]
            return out
        return [self(text, ts) for text, ts in zip(texts, read_ts, strict=True)]

    def _other_access_line(self, text: str, read_ts: float) -> Parsed:
        """``__call__`` for a combined access line already found not to be the usual one."""
        try:
            return self._general(text, read_ts)  # type: ignore[misc]
        except ParseFailure as e:
            return _failed(f"{self.format}: {e}")

    def parts(self, text: str, read_ts: float) -> tuple[dict[str, Any] | None, dict[str, Any] | None,
                                                        dict[str, Any] | None, float | None, str | None]:
        """What ``__call__`` gives, as objects for a record built as a dict (the journal's): ``(log,
        event, top, ts, error)``, each part equal to ``json.loads`` of the matching JSON members.

        Why: the journal merged ``__call__``'s JSON members back into its dict by decoding them, so
        every entry was encoded, decoded and encoded again. The formats that build a dict (kv, regex,
        syslog) hand it over as it is; their values are only str, int and finite float, so the object
        is what the round trip would give. A line with a lone surrogate (which the encoder replaces),
        and the formats that write JSON directly (access logs, json), still go through the bytes.
        """
        if self.format in _DICT_FORMATS and _SURROGATE.search(text) is None:
            try:
                log, event, doc, ts, error = self._dict_parts(text, read_ts)
            except ParseFailure as e:
                message = f"{self.format}: {e}"
                return None, None, {"error": {"message": message}}, None, message
            return log or None, event or None, doc or None, ts, error
        p = self(text, read_ts)
        return (_decode_members(p.log_part), _decode_members(p.event_part), _decode_members(p.top_part),
                p.ts, p.error)

    def _dict_parts(self, text: str, read_ts: float) -> tuple[Any, Any, dict[str, Any], float | None, str | None]:
        """``(log, event, top, ts, error)`` of a format that builds a dict (kv, regex, syslog): the one
        place its time is read and range-checked, for ``__call__`` (which encodes the parts) and
        :meth:`parts` (which hands them over). Raises :class:`ParseFailure` for a line that does not parse."""
        doc, ts = self._fields(text, read_ts)
        error = None
        if self._time is not None:
            try:
                ts = self._time(doc)
            except ParseFailure as e:
                error = f"{self.format}: {e}"
        if ts is not None and not -62135596800.0 <= ts < 253402300800.0:  # years 1 to 9999
            ts, error = None, f"{self.format}: the line's time is outside years 1 to 9999"
        log = doc.pop("log", None)
        event = doc.pop("event", None)
        if error is not None:
            doc["error"] = {"message": error}
        return log, event, doc, ts, error

    def _standard_words(self, text: str, failure: ParseFailure) -> str:
        """Why the time of a spliced line could not be read, said of the standard decoder's object:
        orjson reads an integer over 64 bits as a float, whose repr and type name the message would
        show instead of the integer's (the line is read again only when its time fails)."""
        try:
            self._time(_nest(self._target, _JSON.decode(text)))  # type: ignore[misc]
        except ParseFailure as e:
            return str(e)
        except (ValueError, RecursionError):
            pass
        return str(failure)


_new_tuple = tuple.__new__

#: formats whose fields are built as a dict of str, int and finite float (LineParser.parts hands it over)
_DICT_FORMATS = frozenset(("kv", "regex", "syslog", "syslog_rfc3164", "syslog_rfc5424"))


def _decode_members(part: bytes) -> dict[str, Any] | None:
    """The object of JSON members ``,"a":1,...`` (None for none)."""
    return json.loads(b"{" + part[1:] + b"}") if part else None


def _failed(message: str) -> Parsed:
    return Parsed(b"", b"", _members({"error": {"message": message}}), None, message)
