"""Collect list and transfer config: what is accepted, and the exact words of what is refused."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logferry.schema import (
    DEFAULT_MAX_LINE_BYTES,
    InputSpec,
    Multiline,
    SchemaError,
    TransferConfig,
    dump_collect_list,
    dump_transfer_config,
    index_name,
    parse_collect_list,
    parse_transfer_config,
)

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def entry(**kw: object) -> str:
    return json.dumps([{"path": "/var/log/x/*.log", "topic": "app", **kw}])


def refused(raw: str | bytes) -> str:
    with pytest.raises(SchemaError) as info:
        parse_collect_list(raw)
    return str(info.value)


# --- collect list: accepted ---------------------------------------------------------------------


def test_seed_shape_is_valid_as_is() -> None:
    [spec] = parse_collect_list('[{"path": "/var/log/nginx/*.log", "topic": "nginx-access"}]')
    assert spec == InputSpec(path="/var/log/nginx/*.log", topic="nginx-access")
    assert spec.start_at == "end"
    assert spec.max_line_bytes == DEFAULT_MAX_LINE_BYTES == 1_048_576
    assert spec.multiline is None and spec.fields == () and spec.exclude_files == ()


def test_empty_list_collects_nothing() -> None:
    assert parse_collect_list("[]") == []
    assert parse_collect_list(b" [ ]\n") == []


def test_full_entry_parses_and_round_trips() -> None:
    raw = json.dumps([{
        "path": "/var/log/app/*.log", "topic": "app.logs_1",
        "multiline": {"pattern": "^\\S", "negate": True, "match": "after", "max_lines": 200, "timeout": "2s"},
        "fields": {"env": "prod", "dc": "fra1"},
        "exclude_files": ["\\.gz$", "debug"],
        "start_at": "beginning",
        "max_line_bytes": 4096,
    }])
    [spec] = parse_collect_list(raw)
    assert spec.multiline == Multiline(pattern="^\\S", negate=True, max_lines=200, flush_timeout_s=2.0)
    assert spec.fields == (("dc", "fra1"), ("env", "prod"))
    assert spec.fields_dict() == {"dc": "fra1", "env": "prod"}
    assert spec.exclude_files == ("\\.gz$", "debug")
    assert spec.is_excluded("/var/log/app/old.log.gz") and not spec.is_excluded("/var/log/app/a.log")
    assert parse_collect_list(dump_collect_list([spec])) == [spec]


def test_bytes_with_utf8_bom_accepted() -> None:
    assert parse_collect_list("\ufeff[]".encode()) == []


def test_to_json_omits_defaults_so_seeds_round_trip_verbatim() -> None:
    seed = [{"path": "/var/log/a.log", "topic": "a"}, {"path": "/var/log/b.log", "topic": "b"}]
    assert json.loads(dump_collect_list(parse_collect_list(json.dumps(seed)))) == seed


def test_dump_has_stable_key_order() -> None:
    spec = InputSpec(path="/x/*.log", topic="t", fields={"b": "1", "a": "2"}, start_at="beginning",
                     multiline=Multiline(pattern="^\\s"))
    keys = list(json.loads(dump_collect_list([spec]))[0])
    assert keys == ["path", "topic", "start_at", "multiline", "fields"]
    assert dump_collect_list([spec]) == dump_collect_list([InputSpec(**{
        "path": "/x/*.log", "topic": "t", "fields": {"a": "2", "b": "1"}, "start_at": "beginning",
        "multiline": Multiline(pattern="^\\s")})])


def test_inputspec_is_hashable_and_compares_by_value() -> None:
    a = InputSpec(path="/x/*.log", topic="t", fields={"a": "1", "b": "2"}, exclude_files=["z"])
    b = InputSpec(path="/x/*.log", topic="t", fields=(("b", "2"), ("a", "1")), exclude_files=("z",))
    assert a == b and hash(a) == hash(b)
    assert len({a, b, InputSpec(path="/x/*.log", topic="u")}) == 2


def test_multiline_defaults_and_compiled_regex() -> None:
    ml = Multiline(pattern="^\\s")
    assert (ml.negate, ml.match, ml.max_lines, ml.flush_timeout_s) == (False, "after", 500, 5.0)
    assert ml.regex.search("  at foo") and not ml.regex.search("start")
    assert ml.to_json() == {"pattern": "^\\s", "negate": False, "match": "after", "max_lines": 500,
                            "flush_timeout_s": 5.0}


@pytest.mark.parametrize(("timeout", "seconds"), [(3, 3.0), (0.25, 0.25), ("5s", 5.0), ("500ms", 0.5),
                                                  ("1m", 60.0)])
def test_multiline_timeout_spellings(timeout: object, seconds: float) -> None:
    [spec] = parse_collect_list(entry(multiline={"pattern": "^a", "timeout": timeout}))
    assert spec.multiline is not None and spec.multiline.flush_timeout_s == seconds


def test_direct_construction_validates_too() -> None:
    with pytest.raises(SchemaError, match=r'field "path": relative path') as info:
        InputSpec(path="var/log/x.log", topic="t")
    assert info.value.field == "path"
    with pytest.raises(SchemaError, match=r'multiline: field "match": must be "after" or "before"'):
        Multiline(pattern="a", match="middle")


# --- collect list: refused ----------------------------------------------------------------------


def test_message_names_entry_path_and_field() -> None:
    raw = json.dumps([{"path": "/var/log/a.log", "topic": "a"},
                      {"path": "/var/log/x/*.log", "topic": "bad topic"}])
    assert refused(raw).startswith(
        'collect list entry 2 ("/var/log/x/*.log"): field "topic": must be a non-empty string of '
        "[A-Za-z0-9._-], max 249 chars (Kafka topic rules)"
    )


@pytest.mark.parametrize(("raw", "message"), [
    ('[{"path": "/a", "topic": "t"},\n {"path": "/b" "topic": "t"}]',
     "collect list: not valid JSON at line 2 column 16: Expecting ',' delimiter"),
    ("", "collect list: empty; write [] to collect nothing"),
    ('{"path": "/a", "topic": "t"}', "collect list: must be a JSON array of inputs like"),
    ('["/var/log/a.log"]', 'collect list entry 1: must be an object like {"path": "/var/log/app/*.log", '
                           '"topic": "app"}; got "/var/log/a.log"'),
    ('[{"path": "/a", "topic": "t", "topics": "u"}]',
     'collect list entry 1 ("/a"): field "topics": unknown field (did you mean "topic"?); allowed: '
     "exclude_files, exclude_lines, fields, include_lines, max_line_bytes, multiline, parse, path, start_at, "
     "timestamp, topic"),
    ('[{"path": "/a"}]', 'collect list entry 1 ("/a"): field "topic": missing; give the Kafka topic'),
    ('[{"topic": "t"}]', 'collect list entry 1: field "path": missing; give an absolute file glob'),
    ('[{"path": "var/log/a.log", "topic": "t"}]',
     'field "path": relative path "var/log/a.log"; the agent needs an absolute glob such as '
     '/var/log/app/*.log'),
    ('[{"path": "", "topic": "t"}]', 'collect list entry 1 (""): field "path": empty; give an absolute file '
                                     'glob'),
    ('[{"path": 7, "topic": "t"}]', 'collect list entry 1: field "path": must be an absolute file glob'),
    ('[{"path": "/var/log/app/", "topic": "t"}]', 'field "path": names a directory ("/var/log/app/"); '
                                                  "add a file glob such as /var/log/app/*.log"),
    ('[{"path": "/a\\nb", "topic": "t"}]', 'field "path": contains a control character'),
    ('[{"path": "/a", "topic": 5}]', 'field "topic": must be a non-empty string of [A-Za-z0-9._-], max 249 '
                                     "chars (Kafka topic rules); got 5"),
    ('[{"path": "/a", "topic": ".."}]', 'field "topic": must be a non-empty string'),
    ('[{"path": "/a", "topic": "' + "t" * 250 + '"}]', 'field "topic": must be a non-empty string'),
    ('[{"path": "/a", "topic": "t", "start_at": "middle"}]',
     'field "start_at": must be "end" or "beginning"; got "middle"'),
    ('[{"path": "/a", "topic": "t", "max_line_bytes": 10}]',
     'field "max_line_bytes": must be a whole number from 64 to 67108864 bytes (64 B to 64 MiB); got 10'),
    ('[{"path": "/a", "topic": "t", "max_line_bytes": true}]', 'field "max_line_bytes": must be a whole '
                                                               'number'),
    ('[{"path": "/a", "topic": "t", "max_line_bytes": 4096.0}]', 'field "max_line_bytes": must be a whole '
                                                                 'number'),
    ('[{"path": "/a", "topic": "t", "fields": ["env"]}]', 'field "fields": must be an object such as'),
    ('[{"path": "/a", "topic": "t", "fields": {"n": 1}}]',
     'field "fields": value of "n" must be a string (quote numbers and booleans); got 1'),
    ('[{"path": "/a", "topic": "t", "fields": {"": "x"}}]', 'field "fields": key "" must be a non-empty '
                                                            'string'),
    ('[{"path": "/a", "topic": "t", "exclude_files": "\\\\.gz$"}]',
     'field "exclude_files": must be an array of regular expressions'),
    ('[{"path": "/a", "topic": "t", "exclude_files": ["ok", "(unclosed"]}]',
     'field "exclude_files": item 2: not a valid regular expression (missing ), unterminated subpattern'),
    ('[{"path": "/a", "topic": "t", "multiline": {"pattern": "[a-"}}]',
     'collect list entry 1 ("/a"): field "multiline.pattern": not a valid regular expression'),
    ('[{"path": "/a", "topic": "t", "multiline": {"pattern": "a{99999999999}"}}]',
     'field "multiline.pattern": not a valid regular expression'),
    ('[{"path": "/a", "topic": "t", "multiline": {"negate": true}}]',
     'field "multiline.pattern": missing; give a regular expression'),
    ('[{"path": "/a", "topic": "t", "multiline": {"pattern": "a", "negat": true}}]',
     'field "multiline.negat": unknown field (did you mean "negate"?)'),
    ('[{"path": "/a", "topic": "t", "multiline": {"pattern": "a", "negate": "yes"}}]',
     'field "multiline.negate": must be true or false; got "yes"'),
    ('[{"path": "/a", "topic": "t", "multiline": {"pattern": "a", "max_lines": 0}}]',
     'field "multiline.max_lines": must be a whole number from 1 to 100000; got 0'),
    ('[{"path": "/a", "topic": "t", "multiline": {"pattern": "a", "timeout": "soon"}}]',
     'field "multiline.timeout": must be seconds as a number or a duration like "5s"'),
    ('[{"path": "/a", "topic": "t", "multiline": {"pattern": "a", "timeout": 0}}]',
     'field "multiline.timeout": must be a number of seconds above 0, at most 3600; got 0'),
    ('[{"path": "/a", "topic": "t", "multiline": {"pattern": "a", "timeout": 1, "flush_timeout_s": 1}}]',
     'field "multiline.timeout": give "flush_timeout_s" or "timeout", not both'),
    ('[{"path": "/a", "topic": "t", "multiline": "^\\\\s"}]', 'field "multiline": must be an object like'),
    ('[{"path": "/var/log/a.log", "topic": "t"}, {"path": "/var/log//a.log", "topic": "u"}]',
     'collect list entry 2 ("/var/log//a.log"): field "path": same path as entry 1; merge the two entries '
     "or remove one"),
    ('[{"path": "/a", "topic": "t", "topic": "u"}]', 'collect list: key "topic" appears twice in one object'),
    ('[{"path": "/a", "topic": "t", "max_line_bytes": NaN}]', "collect list: NaN is not a JSON number"),
    ("[" * 100_000, "collect list: nested too deeply"),
    ("[" + "9" * 5000 + "]", "collect list: not usable JSON"),
])
def test_refusals_name_what_and_where(raw: str, message: str) -> None:
    assert message in refused(raw)


def test_not_utf8_bytes() -> None:
    assert refused(b'[{"path": "/\xff"}]') == (
        "collect list: not UTF-8 (bad byte at offset 12); store it as UTF-8 JSON")


def test_wrong_python_type() -> None:
    assert "expected JSON text (str or bytes), got int" in refused(42)  # type: ignore[arg-type]


# --- collect list: fuzzing ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
entry_keys = st.sampled_from(["path", "topic", "multiline", "fields", "exclude_files", "start_at",
                              "max_line_bytes", "pattern", "bogus"])
entries = st.dictionaries(entry_keys, json_values | st.sampled_from(["/var/log/a.log", "t", "^\\s", "end"]),
                          max_size=7)


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_collect_list_text_raises_only_schema_error(raw: str) -> None:
    with contextlib.suppress(SchemaError):
        parse_collect_list(raw)


@FUZZ
@given(st.binary(max_size=100))
def test_fuzz_collect_list_bytes_raises_only_schema_error(raw: bytes) -> None:
    with contextlib.suppress(SchemaError):
        parse_collect_list(raw)


@FUZZ
@given(st.lists(entries | json_values, max_size=4))
def test_fuzz_collect_list_structured(data: list[object]) -> None:
    try:
        specs = parse_collect_list(json.dumps(data))
    except SchemaError as e:
        assert str(e).startswith("collect list")
    else:
        assert parse_collect_list(dump_collect_list(specs)) == specs


valid_specs = st.builds(
    InputSpec,
    path=st.from_regex(r"/[a-z0-9_./*-]{0,30}[a-z0-9*]", fullmatch=True),
    topic=st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}", fullmatch=True),
    multiline=st.none() | st.builds(Multiline, pattern=st.sampled_from(["^\\s", "^\\[", "x+"]),
                                    negate=st.booleans(), match=st.sampled_from(["after", "before"]),
                                    max_lines=st.integers(1, 1000),
                                    flush_timeout_s=st.floats(0.001, 3600)),
    fields=st.dictionaries(st.text(min_size=1, max_size=10), st.text(max_size=10), max_size=3),
    exclude_files=st.lists(st.sampled_from(["\\.gz$", "debug", "^/tmp"]), max_size=2),
    start_at=st.sampled_from(["end", "beginning"]),
    max_line_bytes=st.integers(64, 64 * 1024 * 1024),
)


@FUZZ
@given(valid_specs)
def test_fuzz_valid_specs_round_trip(spec: InputSpec) -> None:
    assert parse_collect_list(dump_collect_list([spec])) == [spec]


# --- transfer config ----------------------------------------------------------------------------


def refused_transfer(raw: str) -> str:
    with pytest.raises(SchemaError) as info:
        parse_transfer_config(raw)
    return str(info.value)


def test_transfer_minimal_and_defaults() -> None:
    cfg = parse_transfer_config('{"topics": ["nginx-access", "app"]}')
    assert cfg == TransferConfig(topics=("nginx-access", "app"))
    assert cfg.index == "logferry-{topic}-{yyyy.MM.dd}"
    assert (cfg.bulk_max_docs, cfg.bulk_max_bytes, cfg.flush_interval_s) == (5000, 5 * 1024 * 1024, 1.0)
    assert cfg.dead_letter_topic == "logferry-dead-letter"
    assert cfg.subscription() == ["nginx-access", "app"]


def test_transfer_regex_and_round_trip() -> None:
    cfg = parse_transfer_config('{"topics_regex": "^app-.*", "index": "{topic}-{yyyy.MM}", "bulk_max_docs": '
                                '10, "bulk_max_bytes": 65536, "flush_interval_s": 0.5, "dead_letter_topic": '
                                '"dlq"}')
    assert cfg.subscription() == ["^app-.*"]
    assert parse_transfer_config(dump_transfer_config(cfg)) == cfg
    assert list(json.loads(dump_transfer_config(cfg))) == [
        "topics_regex", "index", "bulk_max_docs", "bulk_max_bytes", "flush_interval_s", "dead_letter_topic"]


@pytest.mark.parametrize(("raw", "message"), [
    ("{}",
     'transfer config: field "topics": give exactly one of "topics" (a list of names) or "topics_regex"'),
    ('{"topics": ["a"], "topics_regex": "^b"}', 'field "topics": give exactly one of'),
    ('{"topics": []}', 'field "topics": give exactly one of'),
    ('{"topics": "a"}', 'field "topics": must be an array of topic names such as ["nginx-access"]; got "a"'),
    ('{"topics": ["a", "a"]}', 'field "topics": item 2: "a" is listed twice'),
    ('{"topics": ["a", "b c"]}', 'field "topics": item 2: must be a non-empty string of [A-Za-z0-9._-]'),
    ('{"topics": ["logferry-dead-letter"]}', 'item 1: "logferry-dead-letter" is the dead-letter topic'),
    ('{"topics_regex": "app-.*"}', 'field "topics_regex": must start with ^ (librdkafka treats only'),
    ('{"topics_regex": "^(x"}', 'field "topics_regex": not a valid regular expression'),
    ('{"topics_regex": "^.*"}', 'field "topics_regex": matches the dead-letter topic "logferry-dead-letter"'),
    ('{"topics": ["a"], "indx": "x"}', 'field "indx": unknown field (did you mean "index"?); allowed: '
                                        "bulk_max_bytes, bulk_max_docs, dead_letter_topic"),
    ('{"topics": ["a"], "index": "logs-{topic}-{YYYY.MM.dd}"}',
     'field "index": unknown placeholder {YYYY.MM.dd}; use {topic} or a date pattern of yyyy, MM, dd, HH'),
    ('{"topics": ["a"], "index": "logs-{host}"}', "unknown placeholder {host}"),
    ('{"topics": ["a"], "index": "logs-{}"}', "unknown placeholder {}"),
    ('{"topics": ["a"], "index": "logs-{.}"}', "unknown placeholder {.}"),
    ('{"topics": ["a"], "index": "logs-{topic"}', '"{" at position 6 is not closed'),
    ('{"topics": ["a"], "index": "logs-{to{pic}"}', '"{" at position 6 is not closed'),
    ('{"topics": ["a"], "index": "logs-topic}"}', '"}" at position 11 closes nothing'),
    ('{"topics": ["a"], "index": "logs {topic}"}',
     "contains ' ', which Elasticsearch refuses in index names"),
    ('{"topics": ["a"], "index": "logs/{topic}"}', "contains '/', which Elasticsearch refuses"),
    ('{"topics": ["a"], "index": "_logs-{topic}"}',
     'starts with "_"; Elasticsearch index names cannot start'),
    ('{"topics": ["a"], "index": ""}', 'field "index": must be a non-empty index name pattern'),
    ('{"topics": ["a"], "bulk_max_docs": 0}', 'field "bulk_max_docs": must be a whole number from 1 to '
                                              '1000000'),
    ('{"topics": ["a"], "bulk_max_bytes": 1073741824}',
     'field "bulk_max_bytes": must be a whole number from 1024 to 104857600 bytes '
     "(ES http.max_content_length"),
    ('{"topics": ["a"], "flush_interval_s": -1}', 'field "flush_interval_s": must be a number of seconds '
                                                  'above 0'),
    ('{"topics": ["a"], "flush_interval_s": "1s"}', 'field "flush_interval_s": must be a number of seconds'),
    ('{"topics": ["a"], "dead_letter_topic": ""}', 'field "dead_letter_topic": must be a non-empty string'),
    ("[]", 'transfer config: must be a JSON object like {"topics": ["nginx-access"]}; got an array'),
    ("", 'transfer config: empty; write at least {"topics": ["your-topic"]}'),
    ('{"topics": ["a"],}', "transfer config: not valid JSON at line 1 column 18"),
])
def test_transfer_refusals(raw: str, message: str) -> None:
    assert message in refused_transfer(raw)


@FUZZ
@given(st.text(max_size=200))
def test_fuzz_transfer_text_raises_only_schema_error(raw: str) -> None:
    with contextlib.suppress(SchemaError):
        parse_transfer_config(raw)


transfer_docs = st.dictionaries(
    st.sampled_from(["topics", "topics_regex", "index", "bulk_max_docs", "bulk_max_bytes", "flush_interval_s",
                     "dead_letter_topic", "other"]),
    json_values | st.sampled_from([["a"], "^a", "{topic}-{yyyy}", "x{", 100, 2.5]) | st.text(
        alphabet="{}topicyMdH.-_xA ", max_size=20),
    max_size=6,
)


@FUZZ
@given(transfer_docs)
def test_fuzz_transfer_structured(doc: dict[str, object]) -> None:
    try:
        cfg = parse_transfer_config(json.dumps(doc))
    except SchemaError as e:
        assert str(e).startswith("transfer config")
    else:
        assert parse_transfer_config(dump_transfer_config(cfg)) == cfg
        try:
            name = index_name(cfg, "a", "2024-05-01T00:00:00.000Z")
        except SchemaError:
            pass
        else:
            assert name == name.lower() and " " not in name


# --- index names --------------------------------------------------------------------------------


def test_index_name_default_pattern_lowercases() -> None:
    cfg = TransferConfig(topics=("Nginx",))
    assert index_name(cfg, "Nginx", "2024-05-01T23:59:59.999Z") == "logferry-nginx-2024.05.01"


def test_index_name_uses_utc_date_of_the_record() -> None:
    cfg = TransferConfig(topics=("a",), index="{topic}-{yyyy-MM-dd_HH}")
    assert index_name(cfg, "a", "2024-05-02T01:30:00+02:00") == "a-2024-05-01_23"
    assert index_name(cfg, "a", "2024-05-01T12:00:00") == "a-2024-05-01_12"  # naive: taken as UTC


def test_index_name_without_date_ignores_timestamp() -> None:
    cfg = TransferConfig(topics=("a",), index="Logs-{topic}")
    assert index_name(cfg, "a", "not a time") == "logs-a"


def test_index_name_bad_timestamp() -> None:
    with pytest.raises(SchemaError, match=r'@timestamp "yesterday" is not an ISO-8601 time'):
        index_name(TransferConfig(topics=("a",)), "a", "yesterday")


def test_index_name_refuses_names_es_refuses() -> None:
    cfg = TransferConfig(topics=("_internal",), index="{topic}")
    with pytest.raises(SchemaError, match=r'gives "_internal", which Elasticsearch refuses: it starts with '
                                          r'"_"'):
        index_name(cfg, "_internal", "2024-05-01T00:00:00Z")
    with pytest.raises(SchemaError, match=r"Kafka topic rules"):
        index_name(cfg, "a b", "2024-05-01T00:00:00Z")
    long = TransferConfig(topics=("a",), index="x" * 200 + "-{topic}")
    with pytest.raises(SchemaError, match=r"longer than 255 bytes"):
        index_name(long, "t" * 100, "2024-05-01T00:00:00Z")
