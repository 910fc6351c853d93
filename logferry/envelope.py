"""The Kafka record between agent and transfer (docs/design.md, "Kafka record").

Key: ``source_key`` — host IP and file identity — so one file's lines share a partition and stay
in order. Value: one ECS-shaped JSON object per line, UTF-8::

    {"@timestamp": "2024-05-01T12:00:00.123Z", "message": "...",
     "host": {"name": "web1", "ip": "10.0.0.5"},
     "log": {"file": {"path": "/var/log/app.log"}, "offset": 1234, "flags": ["truncated"]},
     "event": {"id": "<32 hex>"}, "fields": {"env": "prod"},
     "agent": {"type": "logferry", "version": "0.1.0"}}

``log.flags`` (an ECS field) is present only when non-empty: ``"multiline"`` when the message
joins more than one line, ``"truncated"`` when the line was cut at ``max_line_bytes``. ``fields``
is present only when non-empty. Text that is not valid Unicode (lone surrogates, as produced by
decoding bytes with ``errors="surrogateescape"``) is written as U+FFFD, so every record is valid
UTF-8 JSON that Elasticsearch accepts.

``encode_record`` runs once per line on the agent, so it builds the JSON text directly. Every
string goes through ``json.encoder.encode_basestring`` — the very escaper ``json.dumps`` uses
with ``ensure_ascii=False`` — and everything else is produced here (digits, hex, constant keys),
so the escaping is as correct as ``json.dumps``'s and the result is byte-identical to
``json.dumps(..., separators=(",", ":"), ensure_ascii=False)`` on the same dict (a test checks
it). Measured on Python 3.11 (an nginx line with one extra field): about 3.5 µs per record, against
6 µs for a dict through a prebuilt compact ``JSONEncoder`` and 10 µs through ``json.dumps``.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import math
import operator
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from json.encoder import encode_basestring as _enc  # type: ignore[attr-defined]
from typing import Any

try:  # dumps: a C escaper (SIMD), byte-identical to encode_basestring's for every text without lone
    # surrogates; loads: check_record's decoder
    from orjson import dumps as _dumps
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is a dependency; a source checkout may lack it
    _dumps = _fast_loads = None

try:  # record_keys: reads the three fields the transfer needs, checks the rest without building it
    import msgspec
except ImportError:  # pragma: no cover - msgspec is a dependency; a source checkout may lack it
    msgspec = None

__all__ = [
    "AGENT_TYPE",
    "EnvelopeError",
    "SourceEncoder",
    "check_record",
    "decode_record",
    "encode_record",
    "event_id",
    "format_timestamp",
    "journal_document",
    "journal_record",
    "record_keys",
    "source_key",
]

AGENT_TYPE = "logferry"
# Elasticsearch refuses an _id longer than 512 bytes.
_MAX_ID_BYTES = 512
_SURROGATE = re.compile("[\ud800-\udfff]")


class EnvelopeError(ValueError):
    """A Kafka record the transfer cannot index; ``reason`` is what goes to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"not a logferry record: {reason}")
        self.reason = reason


def source_key(host_ip: str, file_identity: str) -> bytes:
    """The Kafka key of a file's records: one file, one partition, lines in order.

    Readable on purpose (``10.0.0.5/fp:ab12...``) so ``kcat -K`` shows where a record came from.
    """
    return f"{host_ip}/{file_identity}".encode("utf-8", "surrogatepass")


def event_id(host_ip: str, file_identity: str, offset: int) -> str:
    """The record's ``event.id`` and hence its Elasticsearch ``_id``: 32 hex chars (BLAKE2b-128).

    It depends only on where the line is (host, file identity, byte offset of the line's first
    byte), never on when it was read, so a line the agent re-sends after a crash gets the same id
    and overwrites its earlier copy in Elasticsearch instead of duplicating it. A host whose IP
    changes starts a new id space; that is the price of keying hosts by IP as docs/design.md does.
    """
    data = f"{host_ip}\x00{file_identity}\x00{operator.index(offset):d}"
    return hashlib.blake2b(data.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


# Lines arrive in bursts within one second; format that second once.
_ts_cache: tuple[int, str] = (-(2**62), "")


def format_timestamp(ts: datetime | float) -> str:
    """ISO-8601 UTC with milliseconds and ``Z``: ``2024-05-01T12:00:00.123Z``.

    ``ts`` is epoch seconds or an aware datetime; a naive datetime is refused because guessing
    its zone silently puts lines hours off in Kibana.
    """
    global _ts_cache
    if isinstance(ts, datetime):
        if ts.tzinfo is None or ts.utcoffset() is None:
            raise ValueError(f"timestamp {ts.isoformat()} has no time zone; pass an aware datetime "
                             "(e.g. datetime.now(UTC)) or epoch seconds")
        dt = ts.astimezone(UTC)
        return f"{dt:%Y-%m-%dT%H:%M:%S}.{dt.microsecond // 1000:03d}Z"
    if not math.isfinite(ts):
        raise ValueError(f"timestamp {ts!r} is not a finite number of epoch seconds")
    sec, micros = divmod(round(ts * 1_000_000), 1_000_000)
    cached_sec, prefix = _ts_cache
    if sec != cached_sec:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        _ts_cache = (sec, prefix)
    return f"{prefix}.{micros // 1000:03d}Z"


@lru_cache(maxsize=1024)
def _fields_from_pairs(pairs: tuple[tuple[str, str], ...]) -> str:
    return _fields_json(dict(pairs))


# json.dumps with arguments builds a new encoder per call; one prebuilt encoder is ~2x cheaper.
_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def _fields_json(fields: Mapping[str, Any]) -> str:
    return ',"fields":' + _compact(dict(fields))


def encode_record(
    *,
    message: str,
    timestamp: datetime | float,
    host_name: str,
    host_ip: str,
    path: str,
    offset: int,
    file_identity: str,
    fields: Mapping[str, Any] | tuple[tuple[str, str], ...] | None,
    agent_version: str,
    truncated: bool = False,
    multiline_lines: int | None = None,
    event_id: str | None = None,
) -> bytes:
    """The Kafka value for one line (or one multiline event): compact ECS JSON, UTF-8.

    ``offset`` is the byte offset of the event's first byte; ``event_id`` defaults to
    ``event_id(host_ip, file_identity, offset)``. ``fields`` may be ``InputSpec.fields`` (sorted
    pairs): their JSON is then computed once per distinct value and cached. ``multiline_lines``
    above 1 adds the ``multiline`` flag; ``truncated`` adds ``truncated``.
    """
    off = operator.index(offset)
    eid = _event_id_default(host_ip, file_identity, off) if event_id is None else event_id
    flags = []
    if multiline_lines is not None and multiline_lines > 1:
        flags.append('"multiline"')
    if truncated:
        flags.append('"truncated"')
    if not fields:
        fields_part = ""
    elif isinstance(fields, tuple):
        fields_part = _fields_from_pairs(fields)
    else:
        fields_part = _fields_json(fields)
    text = "".join((
        '{"@timestamp":"', format_timestamp(timestamp),
        '","message":', _enc(message),
        ',"host":{"name":', _enc(host_name), ',"ip":', _enc(host_ip),
        '},"log":{"file":{"path":', _enc(path), '},"offset":', f"{off:d}",
        (',"flags":[' + ",".join(flags) + "]") if flags else "",
        '},"event":{"id":', _enc(eid), "}",
        fields_part,
        ',"agent":{"type":"logferry","version":', _enc(agent_version), "}}",
    ))
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Only string values can hold surrogates (the frame is ASCII), so replacing them in the
        # whole text is the same as replacing them in each value.
        return _SURROGATE.sub("\ufffd", text).encode("utf-8")


_event_id_default = event_id  # the parameter of encode_record shadows the function's name


_FLAGS = {
    (False, False): b"",
    (False, True): b',"flags":["truncated"]',
    (True, False): b',"flags":["multiline"]',
    (True, True): b',"flags":["multiline","truncated"]',
}


def _frame(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE.sub("\ufffd", text).encode("utf-8")


def _quoted(text: str) -> bytes:
    """``_enc(text).encode("utf-8")``: the JSON string of ``text``, lone surrogates as U+FFFD.

    orjson writes exactly what ``encode_basestring`` writes (tests/test_envelope.py checks every code
    point), at a fraction of its cost for a line full of quotes (a JSON line: ~8,000 instructions
    a line less); it refuses lone surrogates, which the fallback replaces.
    """
    if _dumps is not None:
        try:
            return _dumps(text)
        except TypeError:
            pass
    return _frame(_enc(text))


def timestamp_json(ts: datetime | float) -> bytes:
    """The ``@timestamp`` text as :meth:`SourceEncoder.encode` wants it (format once per batch)."""
    return format_timestamp(ts).encode("ascii")


class SourceEncoder:
    """``encode_record`` for the lines of one file, with everything constant about it done once.

    Per line it only escapes the message, hashes the offset onto a BLAKE2b state that already
    holds host_ip, NUL, file_identity, NUL and joins bytes. The result is byte-identical to
    ``encode_record`` with the same arguments (tests/test_envelope.py checks it on many inputs),
    and :attr:`key` is ``source_key(host_ip, file_identity)``.
    """

    __slots__ = ("_after_event", "_h0", "_mid", "_tail", "fields", "file_identity", "key", "path")

    def __init__(self, *, host_name: str, host_ip: str, path: str, file_identity: str,
                 fields: Mapping[str, Any] | tuple[tuple[str, str], ...] | None, agent_version: str) -> None:
        self.path = path
        self.file_identity = file_identity
        self.fields = fields
        self.key = source_key(host_ip, file_identity)
        self._h0 = hashlib.blake2b(f"{host_ip}\x00{file_identity}\x00".encode("utf-8", "surrogatepass"),
                                   digest_size=16)
        self._mid = _frame("".join((
            ',"host":{"name":', _enc(host_name), ',"ip":', _enc(host_ip),
            '},"log":{"file":{"path":', _enc(path), '},"offset":')))
        if not fields:
            fields_part = ""
        elif isinstance(fields, tuple):
            fields_part = _fields_from_pairs(fields)
        else:
            fields_part = _fields_json(fields)
        self._tail = _frame("".join(('"}', fields_part, ',"agent":{"type":"logferry","version":',
                                     _enc(agent_version), "}}")))
        self._after_event = self._tail[2:]  # what follows the event object (encode_parsed)

    def encode(self, raw: bytes, offset: int, ts_json: bytes, truncated: bool = False, lines: int = 1) -> bytes:
        """The record of the line ``raw`` (bytes, no terminator) at ``offset``; ``ts_json`` from
        :func:`timestamp_json`; ``lines`` > 1 marks a joined multiline event."""
        # Decoded with replacement, the text holds no surrogates: it always encodes.
        msg = _quoted(raw.decode("utf-8", "replace"))
        off = b"%d" % offset
        h = self._h0.copy()
        h.update(off)
        return b"".join((b'{"@timestamp":"', ts_json, b'","message":', msg, self._mid, off,
                         _FLAGS[lines > 1, bool(truncated)], b'},"event":{"id":"',
                         binascii.hexlify(h.digest()), self._tail))


    def encode_parsed(self, text: str, offset: int, ts_json: bytes, truncated: bool, lines: int,
                      log_part: bytes, event_part: bytes, top_part: bytes, failed: bool) -> bytes:
        """:meth:`encode` for a parsed line (agent/parsers.py): the raw line stays in ``message``.

        ``text`` is the line already decoded (with replacement) for the parser. ``log_part``,
        ``event_part`` and ``top_part`` are JSON members (``,"k":v...``) spliced inside ``log``,
        inside ``event`` and at the top level; ``failed`` adds the ``parse_failure`` flag. The
        ``event.id`` is the same as :meth:`encode` gives the line: it depends on where the line
        is, never on what it says, so a re-read line replaces its first copy.
        """
        msg = _quoted(text)
        off = b"%d" % offset
        h = self._h0.copy()
        h.update(off)
        if failed:
            flags = [b'"multiline"'] if lines > 1 else []
            if truncated:
                flags.append(b'"truncated"')
            flags.append(b'"parse_failure"')
            flag_part = b',"flags":[' + b",".join(flags) + b"]"
        else:
            flag_part = _FLAGS[lines > 1, bool(truncated)]
        return b"".join((b'{"@timestamp":"', ts_json, b'","message":', msg, self._mid, off, flag_part, log_part,
                         b'},"event":{"id":"', binascii.hexlify(h.digest()), b'"', event_part, b"}", top_part,
                         self._after_event))


def _reject_constant(name: str) -> Any:
    raise EnvelopeError(f"{name} is not valid JSON for Elasticsearch")


#: Built once: ``json.loads(text, parse_constant=...)`` builds a decoder and its scanner on every
#: call, a third of the cost of decoding an envelope on the transfer's hot path.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_SCAN = _DECODER.scan_once


def _parse(text: str) -> Any:
    """``json.loads(text, parse_constant=_reject_constant)``, with a fast path for a compact value.

    The agent's envelopes have no surrounding whitespace: one scan from index 0 to the end. Anything
    else (whitespace, a BOM, an error) goes the full way, which raises exactly what json.loads does.
    """
    try:
        doc, end = _SCAN(text, 0)
        if end == len(text):
            return doc
    except Exception:  # StopIteration at a bad start, JSONDecodeError, NaN refused...: said again below
        pass
    if text.startswith("\ufeff"):  # json.loads's words; a bare decoder would say "Expecting value"
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    return _DECODER.decode(text)


def _fast_doc(raw: Any) -> dict[str, Any] | None:
    """The usual record decoded by orjson (UTF-8 checked by it, no ``str`` made first), or None
    for anything else: not bytes, not an object, an error, an integer over 64 bits, a NaN, a lone
    surrogate escape, a newline (the value is then re-serialised from the object: see
    transfer/records.py document_line, so it must be exactly the standard decoder's). The
    standard path then decides, with its own words for what is wrong. Why: the transfer decodes
    every record only to check it (:func:`check_record`), and the standard decoder was most of
    its ~10 µs of preparation per record. The newline test looks for the byte values (10, 13):
    ``b"\n" in raw`` takes CPython 3.11's general substring search, ~210 ns a test on a 470-byte
    record against ~25 ns for memchr."""
    if _fast_loads is None or type(raw) is not bytes or 10 in raw or 13 in raw:
        return None
    try:
        doc = _fast_loads(raw)
    except ValueError:  # (orjson.JSONDecodeError is one)
        return None
    return doc if type(doc) is dict else None


def _standard_doc(raw: bytes | bytearray | memoryview | str) -> Any:
    try:
        text = raw if isinstance(raw, str) else bytes(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        raise EnvelopeError(f"not UTF-8 (bad byte at offset {e.start})") from None
    except TypeError:
        raise EnvelopeError(f"value is {type(raw).__name__}, not bytes") from None
    try:
        return _parse(text)
    except json.JSONDecodeError as e:
        raise EnvelopeError(f"not JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except RecursionError:
        raise EnvelopeError("not JSON Elasticsearch accepts (nested too deeply)") from None
    except EnvelopeError:
        raise
    except ValueError as e:
        raise EnvelopeError(f"not usable JSON ({e})") from None


def decode_record(raw: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Parse a Kafka value on the transfer side and check what indexing relies on.

    Raises ``EnvelopeError`` (its ``reason`` fit for the dead-letter topic) when the value is not
    UTF-8 JSON, not an object, or lacks a string ``message``, a parseable ``@timestamp`` or an
    ``event.id`` usable as an Elasticsearch ``_id``. Other fields pass through untouched.
    """
    return _checked(_standard_doc(raw))


def check_record(raw: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """:func:`decode_record`'s checks and refusals, for a record that is sent on as it is.

    The transfer's hot path: the value goes to Elasticsearch unchanged, so the object is only
    read for ``message``, ``@timestamp`` and ``event.id`` (exactly the standard decoder's). Its
    other numbers may be orjson's reading (an integer below -2**63 as a float): use
    :func:`decode_record` for their values. A value holding a newline (re-serialised from this
    object by the transfer) always takes the standard decoder.
    """
    doc = _fast_doc(raw)
    return _checked(_standard_doc(raw) if doc is None else doc)


if msgspec is not None:
    class _EventId(msgspec.Struct):
        id: str

    class _RecordKeys(msgspec.Struct):
        message: str
        timestamp: str = msgspec.field(name="@timestamp")
        event: _EventId

    _decode_keys: Any = msgspec.json.Decoder(_RecordKeys).decode
else:  # pragma: no cover
    _decode_keys = None


def record_keys(raw: Any) -> tuple[str, str] | None:
    """``(@timestamp, event.id)`` of a usual record that :func:`check_record` would accept, read
    without building the object; None for anything else (:func:`check_record` then decides, with
    its words for what is wrong).

    Why: the transfer sends a record on as it is and reads only these two fields (and checks
    ``message``), yet decoding the whole record into a dict and freeing it was a fifth of its
    main thread's CPU per document. msgspec decodes into a three-field struct and only checks the
    JSON syntax of the rest: 0.71 µs instead of orjson's 1.28 on the bench's records. It does not
    check UTF-8 inside the strings it skips, so only an all-ASCII value (always valid UTF-8; what
    the agent writes for ASCII text, and escapes are ASCII) takes this path; a value with a CR or
    LF is re-serialised by the transfer from the object, so it needs the object. The fields are
    the standard decoder's (a key given twice: the last, as json.loads); NaN, Infinity, bad
    escapes and lone surrogates make msgspec refuse, and the standard path decides.
    """
    if _decode_keys is None or type(raw) is not bytes or 10 in raw or 13 in raw or not raw.isascii():
        return None
    try:
        keys = _decode_keys(raw)
    except Exception:  # msgspec's DecodeError/ValidationError, RecursionError: said by the standard path
        return None
    ts, eid = keys.timestamp, keys.event.id
    return (ts, eid) if _usable_id(eid) and _iso(ts) else None


def _usable_id(eid: str) -> bool:
    """A non-empty ``_id`` of at most 512 bytes (at most 4 bytes a character: a short id needs no
    encoding to be measured)."""
    return bool(eid) and not (len(eid) * 4 > _MAX_ID_BYTES
                              and len(eid.encode("utf-8", "surrogatepass")) > _MAX_ID_BYTES)


def _iso(ts: str) -> bool:
    try:
        datetime.fromisoformat(ts)
    except ValueError:
        return False
    return True


def _checked(doc: Any) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise EnvelopeError(f"a JSON {type(doc).__name__}, not an object")
    if "message" not in doc:
        raise EnvelopeError('missing "message"')
    if not isinstance(doc["message"], str):
        raise EnvelopeError('"message" is not a string')
    ts = doc.get("@timestamp")
    if ts is None:
        raise EnvelopeError('missing "@timestamp"')
    if not isinstance(ts, str):
        raise EnvelopeError('"@timestamp" is not a string')
    if not _iso(ts):
        raise EnvelopeError(f'"@timestamp" {ts[:40]!r} is not ISO-8601')
    event = doc.get("event")
    eid = event.get("id") if isinstance(event, dict) else None
    if eid is None:
        raise EnvelopeError('missing "event.id"')
    if not isinstance(eid, str) or not _usable_id(eid):
        raise EnvelopeError('"event.id" must be a non-empty string of at most 512 bytes')
    return doc


# --- journal entries (agent/journal.py; docs/journal.md) -----------------------------------------

#: syslog severities by PRIORITY (0..7), the names journalctl -p uses
SYSLOG_LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
#: journal fields the record maps to ECS fields of its own; every other field goes under ``journald.``
JOURNAL_MAPPED = frozenset(("MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "SYSLOG_FACILITY", "_PID", "_SYSTEMD_UNIT",
                            "__CURSOR", "__REALTIME_TIMESTAMP", "__MONOTONIC_TIMESTAMP", "__SEQNUM",
                            "__SEQNUM_ID"))
#: at most this many other fields under ``journald.`` and this many characters each: one entry cannot
#: grow the index mapping or the record without bound (flag ``journald_limited`` when cut)
JOURNAL_MAX_FIELDS = 64
JOURNAL_MAX_VALUE_CHARS = 2048


def _journal_text(value: Any) -> str | list[str] | None:
    """A field as ``journalctl -o json`` writes it: a string, a byte array (not UTF-8 or binary), an
    array of those (the field given more than once), or null (over 4 KiB without ``--all``)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        if all(isinstance(b, int) and 0 <= b < 256 for b in value):
            return bytes(value).decode("utf-8", "replace")
        out = []
        for v in value:
            t = _journal_text(v)
            if isinstance(t, str):
                out.append(t)
        return out
    return str(value)


def parse_cursor(cursor: str) -> dict[str, str]:
    """The parts of a journal cursor (``s=<seqnum id>;i=<seqnum, hex>;b=<boot>;m=…;t=<realtime, hex>;x=…``)."""
    out = {}
    for part in cursor.split(";"):
        k, eq, v = part.partition("=")
        if eq:
            out[k] = v
    return out


def journal_event_id(host_ip: str, cursor: str) -> tuple[str, int]:
    """``(event.id, seqnum)`` of the entry at ``cursor``: a hash of host IP, the journal's sequence
    number id and the entry's sequence number, which stay the same wherever the entry is read from
    (an archived file after ``journalctl --rotate``, a copy flushed from /run to /var), so a re-sent
    entry overwrites itself. A cursor without them (not journald's format) is hashed whole."""
    c = parse_cursor(cursor)
    try:
        seq = int(c["i"], 16)
        return event_id(host_ip, "journal:" + c["s"], seq), seq
    except (KeyError, ValueError):
        return event_id(host_ip, "journal-cursor:" + cursor, 0), 0


def journal_document(entry: Mapping[str, Any], *, host_name: str, host_ip: str,
                     fields: Mapping[str, Any] | tuple[tuple[str, str], ...] | None, agent_version: str,
                     max_message_bytes: int = 1 << 20) -> dict[str, Any]:
    """The record of one journal entry (a ``journalctl -o json`` object) as a dict, before parsing.

    ``message`` is MESSAGE (a byte array decoded as UTF-8 with replacement; cut at
    ``max_message_bytes`` and flagged ``truncated``); ``@timestamp`` is ``__REALTIME_TIMESTAMP``
    (when journald received it: the same on every re-send); ``log.level`` is PRIORITY's syslog name
    (``log.syslog.severity``/``facility`` as the syslog parser writes them); ``log.syslog.appname``
    is SYSLOG_IDENTIFIER; ``process.pid`` is _PID; ``systemd.unit`` is _SYSTEMD_UNIT (Filebeat's
    name); ``log.offset`` is the entry's sequence number. Every other field is under ``journald.``
    with its journal name (``journald._TRANSPORT``), at most :data:`JOURNAL_MAX_FIELDS` of them.
    """
    cursor = str(entry.get("__CURSOR") or "")
    eid, seq = journal_event_id(host_ip, cursor)
    flags = []
    msg = _journal_text(entry.get("MESSAGE"))
    if isinstance(msg, list):
        msg = "\n".join(msg)
    msg = msg or ""
    if len(msg) > max_message_bytes // 4 and len(msg.encode("utf-8", "surrogatepass")) > max_message_bytes:
        msg = msg.encode("utf-8", "surrogatepass")[:max_message_bytes].decode("utf-8", "replace")
        flags.append("truncated")
    try:
        ts = int(entry.get("__REALTIME_TIMESTAMP")) / 1e6
    except (TypeError, ValueError):
        ts = int(parse_cursor(cursor).get("t", "0"), 16) / 1e6
    doc: dict[str, Any] = {"@timestamp": format_timestamp(ts), "message": msg,
                           "host": {"name": host_name, "ip": host_ip}}
    logpart: dict[str, Any] = {"offset": seq}
    syslog: dict[str, Any] = {}
    prio = _journal_text(entry.get("PRIORITY"))
    if isinstance(prio, str) and prio.isdigit() and int(prio) < 8:
        logpart["level"] = SYSLOG_LEVELS[int(prio)]
        syslog["severity"] = {"code": int(prio), "name": SYSLOG_LEVELS[int(prio)]}
    fac = _journal_text(entry.get("SYSLOG_FACILITY"))
    if isinstance(fac, str) and fac.isdigit():
        syslog["facility"] = {"code": int(fac)}
    ident = _journal_text(entry.get("SYSLOG_IDENTIFIER"))
    if isinstance(ident, str):
        syslog["appname"] = ident
    if syslog:
        logpart["syslog"] = syslog
    doc["log"] = logpart
    doc["event"] = {"id": eid}
    pid = _journal_text(entry.get("_PID"))
    if isinstance(pid, str) and pid.isdigit():
        doc["process"] = {"pid": int(pid)}
    unit = _journal_text(entry.get("_SYSTEMD_UNIT"))
    if isinstance(unit, str):
        doc["systemd"] = {"unit": unit}
    other: dict[str, Any] = {}
    limited = False
    for k, v in entry.items():
        if k in JOURNAL_MAPPED:
            continue
        if len(other) >= JOURNAL_MAX_FIELDS:
            limited = True
            break
        t = _journal_text(v)
        if t is None:
            continue
        if isinstance(t, str):
            if len(t) > JOURNAL_MAX_VALUE_CHARS:
                t, limited = t[:JOURNAL_MAX_VALUE_CHARS], True
        else:
            if len(t) > 16 or any(len(x) > JOURNAL_MAX_VALUE_CHARS for x in t):
                t, limited = [x[:JOURNAL_MAX_VALUE_CHARS] for x in t[:16]], True
        other[k] = t
    if limited:
        flags.append("journald_limited")
    if flags:
        logpart["flags"] = flags
    if other:
        doc["journald"] = other
    if fields:
        doc["fields"] = dict(fields)
    doc["agent"] = {"type": AGENT_TYPE, "version": agent_version}
    return doc


def journal_record(doc: Mapping[str, Any]) -> bytes:
    """:func:`journal_document`'s dict (perhaps merged with parsed fields) as the Kafka value: compact
    UTF-8 JSON, lone surrogates written as U+FFFD as for files."""
    return _frame(_compact(doc))
