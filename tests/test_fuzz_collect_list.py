"""Fuzzing the collect-list and transfer-config validators beyond tests/test_schema.py.

test_schema.py already throws random text, bytes and random dicts at the parsers. Here:

- mutations of *valid* lists (one field of one entry changed to any JSON value, a required
  field removed, an unknown key added): the result is either a list that round-trips, or a
  ``SchemaError`` that names the entry and the field that was changed;
- the agent's keeper of the last good list (:class:`agent.collectlist.CollectList`) fed any
  sequence of good lists, bad lists and deletions: what is in force is always the last good
  one, a refusal names its revision, and the copy on disk is what a restart would use;
- regular expressions (multiline ``pattern``, ``exclude_files``, ``topics_regex``) built from
  regex syntax: refused with a ``SchemaError``, never an ``re.error``/``OverflowError``/
  ``RecursionError`` leaking out;
- index names for any topic and timestamp: a name Elasticsearch accepts, or a ``SchemaError``.
"""

from __future__ import annotations

import contextlib
import json
import re
import tempfile
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from agent.collectlist import CollectList
from agent.multiline import MultilineJoiner
from logferry.schema import (
    InputSpec,
    Multiline,
    SchemaError,
    TransferConfig,
    dump_collect_list,
    index_name,
    parse_collect_list,
    parse_transfer_config,
)

# re warns about "[[" (a possible future set syntax): noise for generated patterns
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
# values that are close to valid ones, so mutations often land on the edge of what is allowed
near_values = st.sampled_from([
    "", " ", "/", "/var/log/", "relative/*.log", "/var/log/a.log", "/var/log/\n.log", "t", "bad topic", "a" * 250,
    ".", "..", "end", "beginning", "END", 63, 64, 64 * 1024 * 1024, 64 * 1024 * 1024 + 1, 1.5, True, 0, -1,
    "^\\s", "(", "[", "a{1000000000000}", "(?P<x", ["\\.gz$"], ["("], {"env": "prod"}, {"env": 1}, {"": "x"},
    {"pattern": "^\\s"}, {"pattern": "^\\s", "match": "around"}, {"pattern": "^\\s", "timeout": "5 s"},
    {"pattern": "^\\s", "timeout": "5s", "flush_timeout_s": 5}, {"pattern": "^\\s", "max_lines": 0},
    {"negate": True}, {"pattern": "^\\s", "bogus": 1},
])
KEYS = ["path", "topic", "multiline", "fields", "exclude_files", "start_at", "max_line_bytes"]

segment = st.from_regex(r"[a-z0-9_]{1,8}", fullmatch=True)
good_paths = st.builds(lambda dirs, name: "/" + "/".join(dirs) + "/" + name,
                       st.lists(segment, min_size=1, max_size=3), st.from_regex(r"\*?[a-z]{0,4}\.log", fullmatch=True))
good_entries = st.fixed_dictionaries(
    {"path": good_paths, "topic": st.from_regex(r"[a-z0-9_-][a-z0-9._-]{0,20}", fullmatch=True)},
    optional={
        "start_at": st.sampled_from(["end", "beginning"]),
        "max_line_bytes": st.integers(64, 64 * 1024 * 1024),
        "fields": st.dictionaries(st.text(min_size=1, max_size=6), st.text(max_size=6), max_size=3),
        "exclude_files": st.lists(st.sampled_from(["\\.gz$", "^/tmp", "debug"]), max_size=2),
        "multiline": st.fixed_dictionaries(
            {"pattern": st.sampled_from(["^\\s", "^\\[", "\\\\$", "^\\d{4}-"])},
            optional={"negate": st.booleans(), "match": st.sampled_from(["after", "before"]),
                      "max_lines": st.integers(1, 100_000), "timeout": st.sampled_from(["5s", "500ms", 3, 0.25])},
        ),
    },
)
good_lists = st.lists(good_entries, max_size=4, unique_by=lambda e: e["path"])


@FUZZ
@given(good_lists)
def test_fuzz_valid_lists_round_trip(entries: list[dict]) -> None:
    specs = parse_collect_list(json.dumps(entries))
    assert len(specs) == len(entries)
    again = parse_collect_list(dump_collect_list(specs))
    assert again == specs
    assert [s.path for s in specs] == [e["path"] for e in entries]


mutations = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(KEYS), json_values | near_values),
    st.tuples(st.just("unknown"), st.text(min_size=1, max_size=12).filter(lambda k: k not in KEYS), json_values),
    st.tuples(st.just("delete"), st.sampled_from(["path", "topic"]), st.none()),
)


@FUZZ
@given(good_lists.filter(bool), st.data(), mutations)
def test_fuzz_mutated_list_is_refused_naming_entry_and_field(entries: list[dict], data: Any,
                                                             mutation: tuple[str, str, Any]) -> None:
    k = data.draw(st.integers(0, len(entries) - 1))
    kind, key, value = mutation
    entry = dict(entries[k])
    if kind == "delete":
        entry.pop(key)
    else:
        entry[key] = value
    entries[k] = entry
    raw = json.dumps(entries)
    try:
        specs = parse_collect_list(raw)
    except SchemaError as e:
        msg = str(e)
        assert msg.startswith("collect list entry "), msg
        if "same path as entry" in msg:
            return  # the mutated path collides with another entry's: reported at the later one
        assert msg.startswith(f"collect list entry {k + 1}"), (k, msg)
        assert f'field "{key}' in msg, (key, msg)
        return
    assert kind == "set", f"{kind} {key!r} accepted: {entry}"
    assert parse_collect_list(dump_collect_list(specs)) == specs


def _valid(raw: bytes | None) -> list[InputSpec] | None:
    if raw is None:
        return []
    try:
        return parse_collect_list(raw)
    except SchemaError:
        return None


offers = st.lists(
    st.one_of(
        good_lists.map(lambda e: json.dumps(e).encode()),
        st.none(),  # the key was deleted: "collect nothing"
        st.binary(max_size=40),
        st.lists(json_values, max_size=3).map(lambda v: json.dumps(v).encode()),
        st.sampled_from([b"", b"[]", b"{}", b"null", b"[{]", b'[{"path": "/a.log"}]', b"\xef\xbb\xbf[]"]),
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(offers)
def test_fuzz_collect_list_keeper_keeps_the_last_good_list(seq: list[bytes | None]) -> None:
    with tempfile.TemporaryDirectory() as d:
        cl = CollectList(d)
        last_good: tuple[list[InputSpec], int] | None = None
        for rev, raw in enumerate(seq, start=10):
            expected = _valid(raw)
            ok = cl.offer(raw, rev)
            assert ok == (expected is not None), (raw, cl.last_error)
            if ok:
                last_good = (expected, rev)
                assert cl.last_error is None and cl.rejected_revision is None
            else:
                assert cl.rejected_revision == rev
                kept = last_good[1] if last_good else 0
                assert cl.last_error.startswith(f"collect list at revision {rev} rejected, keeping revision {kept}: ")
            assert cl.applied.inputs == (last_good[0] if last_good else [])
            assert cl.applied.revision == (last_good[1] if last_good else 0)
        saved = CollectList(d).load_saved()
        if last_good is None:
            assert saved is None
        else:
            assert saved is not None and saved.inputs == last_good[0] and saved.revision == last_good[1]
            assert saved.source == "disk"


regex_text = st.lists(st.sampled_from([*"()[]{}?*+|^$\\.-:<>=!PdswSbB0123456789,aZ#\n", "(?", "\\p", "(?P<",
                                     "{1,", "99999999999", "(?i)", "[^", "\\1"]),
                     max_size=12).map("".join)


@FUZZ
@given(regex_text, st.booleans(), st.sampled_from(["after", "before", "around", 1]))
def test_fuzz_multiline_patterns_refused_cleanly_or_usable(pattern: str, negate: bool, match: Any) -> None:
    try:
        ml = Multiline.from_json({"pattern": pattern, "negate": negate, "match": match})
    except SchemaError as e:
        assert str(e).startswith("multiline: field "), str(e)
        return
    # what the schema accepts, the joiner can use on any line
    j = MultilineJoiner(ml.regex, ml.negate, ml.match, ml.max_lines, ml.flush_timeout_s)
    from agent.lines import Line

    out = []
    for i, raw in enumerate([b"a", b" b", b"", b"\xff\\", b"2024-01-01 x"]):
        out += j.feed(Line(i * 10, raw, False, i * 10 + 10), now=0.0)
    out += j.flush_all()
    assert sum(e.lines for e in out) == 5


@FUZZ
@given(st.lists(regex_text, max_size=3))
def test_fuzz_exclude_files_refused_cleanly_or_compiled(patterns: list[str]) -> None:
    raw = json.dumps([{"path": "/var/log/*.log", "topic": "t", "exclude_files": patterns}])
    try:
        (spec,) = parse_collect_list(raw)
    except SchemaError as e:
        assert 'field "exclude_files": ' in str(e), str(e)
        return
    assert len(spec.exclude_regexes) == len(patterns)
    spec.is_excluded("/var/log/a.log")


@FUZZ
@given(regex_text)
def test_fuzz_topics_regex_refused_cleanly(pattern: str) -> None:
    try:
        cfg = parse_transfer_config(json.dumps({"topics_regex": pattern}))
    except SchemaError as e:
        assert str(e).startswith("transfer config: "), str(e)
        return
    assert cfg.subscription() == [pattern] and pattern.startswith("^")
    assert not re.search(pattern, cfg.dead_letter_topic)


index_patterns = st.sampled_from(["logs-{topic}-{yyyy.MM.dd}", "{topic}", "{topic}-{yyyy}", "a-{HH}-{topic}",
                                  "x{yyyy_MM_dd-HH}", "logs"])
timestamps = st.one_of(
    st.datetimes(timezones=st.none() | st.timezones()).map(lambda d: d.isoformat()),
    st.text(max_size=30),
    st.sampled_from(["2024-05-01T12:00:00.123Z", "2024-05-01", "", "yesterday", "9999-12-31T23:59:59+14:00"]),
)


@FUZZ
@given(index_patterns, st.text(max_size=300) | st.from_regex(r"[A-Za-z0-9._-]{1,260}", fullmatch=True), timestamps)
def test_fuzz_index_name_is_valid_or_schema_error(pattern: str, topic: str, ts: str) -> None:
    cfg = TransferConfig(topics=("t",), index=pattern)
    try:
        name = index_name(cfg, topic, ts)
    except SchemaError:
        return
    assert name == name.lower() and name and name[0] not in "-_+."
    assert len(name.encode()) <= 255
    assert not set(name) & set('\\/*?"<>|,#: ')


def test_pathological_documents_are_refused_quickly() -> None:
    import time

    cases = [
        "[" * 200_000,
        '[{"path": "/a.log", "topic": "t", "max_line_bytes": 1' + "0" * 10_000 + "}]",
        json.dumps([{"path": "/" + "a" * 5000 + ".log", "topic": "t"}]),
        json.dumps([{"path": "/a.log", "topic": "t", "fields": {str(i): "v" for i in range(20_000)}}]) + " x",
        json.dumps([{"path": "/a.log", "topic": "t", "multiline": {"pattern": "(" * 5000 + ")" * 5000}}]),
        json.dumps([{"path": "/a.log", "topic": "t", "exclude_files": ["a{99999999999999999999}"]}]),
    ]
    for raw in cases:
        t0 = time.monotonic()
        with contextlib.suppress(SchemaError):
            parse_collect_list(raw)
        assert time.monotonic() - t0 < 2, raw[:60]


def test_a_large_valid_list_parses() -> None:
    entries = [{"path": f"/var/log/app{i}/*.log", "topic": f"t{i % 7}"} for i in range(5000)]
    assert len(parse_collect_list(json.dumps(entries))) == 5000


@FUZZ
@given(good_lists.filter(bool), st.integers(0, 3))
def test_fuzz_duplicate_paths_after_normalisation_are_refused(entries: list[dict], k: int) -> None:
    e = entries[k % len(entries)]
    p = e["path"]
    cut = p.rindex("/")
    # "/./x" and "/a//x" are the same files as "/x" and "/a/x" (a leading "//" is left alone:
    # POSIX lets it mean something else, and normpath keeps it)
    twin = dict(e, path="/." + p if k % 2 else p[:cut] + "/" + p[cut:])
    assume(twin["path"] != p)
    try:
        parse_collect_list(json.dumps([*entries, twin]))
    except SchemaError as err:
        assert "same path as entry" in str(err)
        return
    raise AssertionError(f"{twin['path']} and {e['path']} both accepted")
