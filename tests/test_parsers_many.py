"""LineParser.many (a run of lines of one input at once, as Agent.produce_events parses them) against
parsing each line alone: the same Parsed, byte for byte, for lines that take the run path and lines
that must leave it (limits, duplicate keys, escapes, new shapes, lines that do not parse)."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace
from typing import Any

import pytest

import agent.parsers as parsers
from agent.filters import InputPipeline, LineFilter
from agent.main import Agent
from agent.parsers import LineParser, Parsed
from bench.parse_bench import json_line, nginx_line
from logferry.schema import Parse, Timestamp
from tests.test_parsers import JSON_EDGES, SHAPE_SEQUENCE

READ = 1764847200.25

#: lines of one shape (a dozen keys, one nested object), as an application writes most of its lines
USUAL = [json_line(n) for n in range(0, 4000, 13)]

#: each edge line inside a run of usual lines (so it shares a chunk with lines the run path takes),
#: the shape sequence as it is (shapes seen, then lines of those shapes that differ where it looks)
RUN_LINES = ([*USUAL[:100], *SHAPE_SEQUENCE, *SHAPE_SEQUENCE]
             + [x for edge in JSON_EDGES + SHAPE_SEQUENCE for x in (*USUAL[:40], edge, *USUAL[40:70])]
             + [json.dumps({f"k{i}": i for i in range(199)} | {"u": {"a": 1}}),  # 200 fields: fits
                json.dumps({f"k{i}": i for i in range(200)} | {"u": {"a": 1}})] * 3
             + USUAL)


def _runs(lines: list[str], size: int) -> list[list[str]]:
    return [lines[i:i + size] for i in range(0, len(lines), size)]


@pytest.mark.parametrize("kw", [{}, {"target": "app.payload"}, {"max_fields": 4}, {"max_fields": 13},
                                {"max_fields": 12}, {"max_depth": 1}, {"max_depth": 2}])
@pytest.mark.parametrize("size", [1, 7, 64, 65, 500, 10_000])
def test_json_run_gives_what_each_line_alone_gives(kw: dict, size: int, monkeypatch) -> None:
    assert parsers._fast_loads is not None  # orjson is installed (a dependency): the run path is tested
    many = LineParser(Parse(format="json", **kw))
    got = [p for run in _runs(RUN_LINES, size) for p in many.many(run, [READ] * len(run))]
    alone = LineParser(Parse(format="json", **kw))
    assert got == [alone(line, READ) for line in RUN_LINES]
    monkeypatch.setattr(parsers, "_fast_loads", None)  # and what the standard decoder alone gives
    slow = LineParser(Parse(format="json", **kw))
    assert got == [slow(line, READ) for line in RUN_LINES]


def test_json_run_with_a_timestamp_option_gives_what_each_line_alone_gives() -> None:
    ts = Timestamp(field="app.time")
    many, alone = (LineParser(Parse(format="json", target="app"), ts) for _ in range(2))
    lines = RUN_LINES[:3000]
    assert [p for run in _runs(lines, 64) for p in many.many(run, [READ] * len(run))] == \
        [alone(line, READ) for line in lines]


def _run_of(parser: LineParser) -> Any:
    return parser._json.run  # type: ignore[union-attr]


def test_json_run_path_takes_the_usual_lines_and_leaves_the_ones_it_cannot_decide() -> None:
    parser = LineParser(Parse(format="json"))
    run = _run_of(parser)
    assert run(USUAL[:3]) == [None] * 3  # a shape not seen yet: the line alone (which learns it)
    parser(USUAL[0], READ)
    assert all(r is not None for r in run(USUAL[:200]))
    # a key twice, in a line of a known shape: the counts over its chunk tell, the whole chunk
    # goes the per-line way (the line alone then gives the standard decoder's result)
    dup = USUAL[5][:-1] + ', "ok": true}'
    out = run([*USUAL[:70], dup, *USUAL[70:150]])
    assert out[:64] == run(USUAL[:64]) and out[64:128] == [None] * 64 and all(r is not None for r in out[128:])
    assert parser.many([dup], [READ]) == [LineParser(Parse(format="json"))(dup, READ)]
    # a '{' in a string (one '{' more than the shape has objects: the count cannot tell it from an
    # object where the shape has a scalar, below), and a key twice whose dropped value is an object
    brace = USUAL[3].replace('"cart updated', '"{cart updated')
    user = '"user": ' + json.dumps(json.loads(USUAL[4])["user"])  # (orjson keeps a key's first place)
    for line in (brace, USUAL[4][:-1] + ', "user": {"id": 1, "country": "de"}}',
                 USUAL[4].replace(user, '"user": {"x": {"y": 1}}')[:-1] + ', "user": {"id": 1, "country": "de"}}'):
        assert run([line, *USUAL[:10]]) == [None] * 11, line
        assert parser.many([line, *USUAL[:3]], [READ] * 4)[0] == LineParser(Parse(format="json"))(line, READ)
    # an object (even empty) where the shape has a scalar: the shape lookup does not see it
    scalar = LineParser(Parse(format="json"))
    scalar('{"a": 1, "b": "x"}', READ)
    for line in ('{"a": {}, "b": "x"}', '{"a": {"c": 1}, "b": "x"}'):
        assert _run_of(scalar)([line]) == [None], line
        assert scalar.many([line], [READ]) == [LineParser(Parse(format="json"))(line, READ)], line
    # a backslash anywhere in a chunk: the chunk goes the per-line way
    esc = USUAL[2].replace("cart updated", 'cart \\"updated\\"')
    assert run([*USUAL[:10], esc]) == [None] * 11
    assert run(["not json", *USUAL[:3]])[1:] == run(USUAL[:3])


def test_json_run_keeps_the_limits_exactly() -> None:
    """Lines over max_fields or max_depth, and keys Elasticsearch refuses, leave the run path (their
    shape is never cached) and get the limits' result, also inside chunks of usual lines."""
    wide = json.dumps({f"k{i}": i for i in range(13)})
    deep = '{"a": {"b": {"c": 1}}}'
    bad_keys = ['{"a..b": 1}', '{"a.": 1}', '{" ": 1}', '{"": 1}', '{"x": {"a b": 1}}']
    # (format options, line, indexed unparsed, spliced as it is: its shape cached, the run path takes it)
    for kw, line, flagged, taken in [({"max_fields": 12}, wide, True, False), ({"max_fields": 13}, wide, False, True),
                                     ({"max_depth": 2}, deep, False, False), ({"max_depth": 3}, deep, False, True)] + \
            [({}, k, False, False) for k in bad_keys]:
        parser = LineParser(Parse(format="json", **kw))
        first = parser(line, READ)
        assert (first.error is not None) is flagged, (kw, line)
        lines = [*USUAL[:30], line, *USUAL[:30], line]
        parser(USUAL[0], READ)
        out = _run_of(parser)(lines)
        assert (out[30] is not None, out[61] is not None) == (taken, taken), (kw, line)
        assert out[:30] == _run_of(parser)(USUAL[:30]) and None not in out[:30]
        assert parser.many(lines, [READ] * len(lines))[30] == first, (kw, line)


def test_json_run_on_many_shapes_stays_exact() -> None:
    """Over 256 shapes the cache is cleared: lines of a shape no longer cached leave the run path."""
    lines = [json.dumps({f"k{n}": 1, "u": {"i": n}}) for n in range(600)] * 2
    many, alone = LineParser(Parse(format="json")), LineParser(Parse(format="json"))
    assert [p for run in _runs(lines, 100) for p in many.many(run, [READ] * len(run))] == \
        [alone(line, READ) for line in lines]


NGINX_BASE = '10.0.0.7 - - [04/Dec/2026:10:00:00 +0000] "GET /a?b=1 HTTP/2.0" 200 17 "https://r/" "ua/1 (x; y)"'
NGINX_LINES = [NGINX_BASE, NGINX_BASE.replace(" 200 ", " 000 "), NGINX_BASE.replace(" 200 ", " 099 "),
               NGINX_BASE.replace(" 17 ", " 0 "), NGINX_BASE.replace(" 17 ", " 0017 "),
               NGINX_BASE.replace(" 17 ", " 00 "), NGINX_BASE.replace(" 17 ", " - "),
               NGINX_BASE.replace("10.0.0.7", "::1"), NGINX_BASE.replace("10.0.0.7", "web-1"),
               NGINX_BASE.replace("10.0.0.7", "010.0.0.7"), NGINX_BASE.replace('"https://r/"', '"-"'),
               NGINX_BASE + " x", "garbage", ""] + [nginx_line(n) for n in range(0, 3000, 7)]


@pytest.mark.parametrize("fmt", ["nginx_combined", "apache_combined", "nginx_common"])
def test_access_run_gives_what_each_line_alone_and_the_general_path_give(fmt: str, monkeypatch) -> None:
    many = LineParser(Parse(format=fmt))
    got = [p for run in _runs(NGINX_LINES, 50) for p in many.many(run, [READ] * len(run))]
    assert got == [LineParser(Parse(format=fmt))(line, READ) for line in NGINX_LINES]
    monkeypatch.setattr(parsers, "_CLF_USUAL", re.compile(r"(?!)"))
    general = LineParser(Parse(format=fmt))
    for line, p in zip(NGINX_LINES, got, strict=True):
        g = general(line, READ)
        assert (p.ts, p.error) == (g.ts, g.error), line
        assert json.loads(b"{" + p.top_part[1:] + b"}") == json.loads(b"{" + g.top_part[1:] + b"}"), line


def test_usual_access_line_numbers_are_written_as_json_numbers() -> None:
    top = LineParser(Parse(format="nginx_combined")).many(NGINX_LINES[1:6], [READ] * 5)
    codes = [json.loads(b"{" + p.top_part[1:] + b"}")["http"]["response"] for p in top]
    assert codes == [{"status_code": 0, "body": {"bytes": 17}}, {"status_code": 99, "body": {"bytes": 17}},
                     {"status_code": 200, "body": {"bytes": 0}}, {"status_code": 200, "body": {"bytes": 17}},
                     {"status_code": 200, "body": {"bytes": 0}}]
    assert [p.top_part.split(b'"response":')[1].split(b',"source"')[0] for p in top] == [
        b'{"status_code":0,"body":{"bytes":17}}}', b'{"status_code":99,"body":{"bytes":17}}}',
        b'{"status_code":200,"body":{"bytes":0}}}', b'{"status_code":200,"body":{"bytes":17}}}',
        b'{"status_code":200,"body":{"bytes":0}}}']


@pytest.mark.parametrize("spec", [Parse(format="kv"), Parse(format="syslog"),
                                  Parse(format="regex", pattern=r"(?P<log__level>\w+) (?P<n>\d+)")])
def test_other_formats_run_line_by_line(spec: Parse) -> None:
    lines = ["a=1 b=2", "INFO 3", "<34>Oct 11 22:14:15 host su: x", "Dec  1 00:00:01 host cron: job", "", "x"]
    reads = [READ + i * 86400 * 40 for i in range(len(lines))]  # (the year of a BSD time is the read time's)
    assert LineParser(spec).many(lines, reads) == [LineParser(spec)(t, r) for t, r in zip(lines, reads, strict=True)]


@pytest.mark.parametrize("chunk", [256, 3, 1])
def test_agent_parses_each_run_of_an_input_with_its_parser_in_order(chunk: int, monkeypatch) -> None:
    """Agent._parse_runs: runs of several inputs, parsed and not, give each parsed line's text and
    result in the order of the events, each with its own read time (runs longer than a chunk too)."""
    import agent.main as agent_main
    monkeypatch.setattr(agent_main, "PARSE_CHUNK", chunk)
    ag = Agent.__new__(Agent)
    json_pipe = InputPipeline("/a", None, LineParser(Parse(format="json")))
    nginx_pipe = InputPipeline("/b", None, LineParser(Parse(format="nginx_combined")))
    rfc3164 = InputPipeline("/c", None, LineParser(Parse(format="syslog_rfc3164")))
    ag._pipes = {"j": json_pipe, "n": nginx_pipe, "f": InputPipeline("/d", LineFilter(["x"], []), None),
                    "s": rfc3164}
    plan = ["j"] * 5 + ["p"] * 3 + ["n"] * 4 + ["j"] * 2 + ["f"] * 2 + ["s"] * 2 + ["n"]
    lines = {"j": json_line, "n": nginx_line, "p": str, "f": str, "s": lambda n: f"Dec  1 00:00:0{n % 10} h a: m"}
    events = [SimpleNamespace(input_id=inp, raw=lines[inp](i).encode()) for i, inp in enumerate(plan)]
    stamps: list[float | None] = [None if i % 3 else READ - 86400 * 400 for i in range(len(events))]
    now = READ
    got = list(ag._parse_runs(events, stamps, now))
    pipes = ag._pipes
    want = [(ev.raw.decode(), pipes[ev.input_id].parser(ev.raw.decode(), now if ts is None else ts))
            for ev, ts in zip(events, stamps, strict=True) if ev.input_id in ("j", "n", "s")]
    assert got == want and len(got) == 14


def _one_shape_chunks() -> list[list[str]]:
    """Chunks of 64 lines (the run path's chunk) of USUAL's shape, as they are and each with one line
    that the checks over the whole chunk must not take as the others."""
    base = USUAL[:64]
    user = '"user": ' + json.dumps(json.loads(base[9])["user"])
    swapped = '"user": ' + json.dumps(dict(reversed(json.loads(base[9])["user"].items())))
    one = [
        base[9].replace(user, '"user": 5'),  # a scalar where the shape has an object
        base[9].replace(user, '"user": {"id": {"x": 1}, "country": "de"}'),  # an object where it has a scalar
        base[9].replace(user, swapped),  # the object's keys in another order: another shape
        base[9].replace(user, '"user": {"id": 1}'),  # the object with fewer keys
        base[9][:-1] + ', "ok": true}',  # a key twice (orjson keeps one: the same top-level keys)
        base[9].replace('"cart updated', '"{cart updated'),  # a '{' in a string
        base[9].replace('"cart updated', '":cart updated'),  # a '":' in a string
        "not json", '"x"', "[1]", "7",  # not an object
        '{"level": 1}',  # another shape, not known
    ]
    return [base, *([*base[:9], line, *base[10:]] for line in one)]


def test_json_run_of_one_shape_checks_its_lines_a_member_at_a_time_and_gives_the_per_line_results(
        monkeypatch) -> None:
    """``_json_raw``'s run on a chunk whose lines share one known shape checks them all at once (the
    objects below the top level a member at a time: ``_all_have_nesting``); it gives exactly what its
    per-line loop gives, and a chunk it cannot take goes to that loop."""
    chunks = _one_shape_chunks()
    deep = [json.dumps({"a": {"b": {"c": n}, "d": n}, "e": n}) for n in range(64)]
    chunks += [deep, [*deep[:5], json.dumps({"a": {"b": 1, "d": 1}, "e": 1}), *deep[6:]],
               [*deep[:5], json.dumps({"a": {"b": {"x": 1}, "d": 1}, "e": 1}), *deep[6:]],
               [*USUAL[:30], *deep[:30]],  # two known shapes: the per-line loop, its lines decoded once
               ['{"a": 1, "b": 2}'] * 10 + ['"ab"']]  # (a JSON string's characters are not keys)
    calls = []
    whole = parsers._all_have_nesting
    monkeypatch.setattr(parsers, "_all_have_nesting",
                        lambda objs, nested: calls.append(len(objs)) or whole(objs, nested))
    for target in ("", "app", "app.payload"):
        spec = Parse(format="json", target=target or None)
        parser = LineParser(spec)
        for line in (USUAL[0], deep[0], '{"a": 1, "b": 2}'):
            parser(line, READ)  # (its shape learnt)
        for chunk in chunks:
            calls.clear()
            got = _run_of(parser)(chunk)
            if chunk is chunks[0] or chunk is deep:  # the usual chunk: taken whole, by the member checks
                assert None not in got and calls == [64] * (1 if chunk is chunks[0] else 2), target
            monkeypatch.setattr(parsers, "_ONLY_DICT", frozenset())  # the per-line loop only
            assert got == _run_of(parser)(chunk), (target, chunk[9])
            monkeypatch.setattr(parsers, "_ONLY_DICT", frozenset((dict,)))
            assert parser.many(chunk, [READ] * len(chunk)) == [LineParser(spec)(line, READ) for line in chunk]


def test_many_tuples_equal_the_parsed_results_and_many_gives_parsed_ones() -> None:
    """LineParser.many_tuples (what the agent takes): the results of each line alone, a plain tuple
    where the run path gave it; LineParser.many: the same, each a Parsed."""
    for spec, lines in ((Parse(format="json"), RUN_LINES), (Parse(format="json", target="a.b"), RUN_LINES),
                        (Parse(format="nginx_combined"), NGINX_LINES), (Parse(format="kv"), ["a=1", "x"])):
        tuples, many = LineParser(spec), LineParser(spec)
        got = [p for run in _runs(lines, 64) for p in tuples.many_tuples(run, [READ] * len(run))]
        assert got == [LineParser(spec)(line, READ) for line in lines]
        assert all(type(p) in (tuple, Parsed) for p in got)
        if spec.format != "kv":
            assert sum(type(p) is tuple for p in got) > len(lines) // 2, spec  # the run path took most
        by_many = [p for run in _runs(lines, 64) for p in many.many(run, [READ] * len(run))]
        assert by_many == got and all(type(p) is Parsed for p in by_many)


@pytest.mark.parametrize("stamped", [False, True])
def test_agent_counts_each_inputs_parsed_and_failed_lines(stamped: bool) -> None:
    """Agent._parse_runs adds each input's parsed and failed lines to its counts, a chunk at a time,
    and gives each line its read time (every line fresh: ``now`` for all)."""
    ag = Agent.__new__(Agent)
    specs = {"j": Parse(format="json"), "n": Parse(format="nginx_combined")}
    json_pipe, nginx_pipe = (InputPipeline(f"/{inp}", None, LineParser(specs[inp])) for inp in "jn")
    ag._pipes = {"j": json_pipe, "n": nginx_pipe}
    texts = {"j": [*USUAL[:300], "not json", *USUAL[300:], '{"a": NaN}'], "n": [*NGINX_LINES, *NGINX_LINES]}
    events = [SimpleNamespace(input_id=inp, raw=t.encode()) for inp in ("j", "n", "j") for t in texts[inp]]
    stamps: list[float | None] = [READ - 86400 * 400 if stamped and i % 5 == 0 else None for i in range(len(events))]
    got = list(ag._parse_runs(events, stamps, READ))
    assert got == [(ev.raw.decode(), LineParser(specs[ev.input_id])(ev.raw.decode(), READ if ts is None else ts))
                   for ev, ts in zip(events, stamps, strict=True)]
    for inp, pipe in (("j", json_pipe), ("n", nginx_pipe)):
        results = [p for ev, (_, p) in zip(events, got, strict=True) if ev.input_id == inp]
        assert pipe.failed == sum(p[4] is not None for p in results) > 0
        assert pipe.parsed == sum(p[4] is None for p in results) > 0
