"""logferry/engine.py: which engine a ``GET /`` names, what is refused, and the per-engine dialect."""

from __future__ import annotations

import pytest

from logferry import engine
from logferry.engine import Engine, kafka_version_problem, parse_info, template_settings

ES8 = {"name": "n", "cluster_name": "c", "version": {"number": "8.19.21", "build_flavor": "default"},
       "tagline": "You Know, for Search"}
ES9 = {"version": {"number": "9.2.2"}, "tagline": "You Know, for Search"}
ES7 = {"version": {"number": "7.17.0", "build_flavor": "default"}, "tagline": "You Know, for Search"}
OS2 = {"version": {"distribution": "opensearch", "number": "2.19.6"},
       "tagline": "The OpenSearch Project: https://opensearch.org/"}
OS1 = {"version": {"distribution": "opensearch", "number": "1.3.20"}, "tagline": "The OpenSearch Project"}


@pytest.mark.parametrize(("body", "product", "supported"), [
    (ES8, "elasticsearch", True), (ES9, "elasticsearch", True), (OS2, "opensearch", True),
    (ES7, "elasticsearch", False), (OS1, "opensearch", False),
])
def test_get_root_names_the_engine_and_whether_it_is_supported(body: dict, product: str, supported: bool) -> None:
    e = parse_info(body)
    assert e is not None and e.product == product
    assert (e.unsupported() is None) is supported


def test_the_refusal_is_one_line_naming_the_version_found_and_the_supported_ones() -> None:
    line = parse_info(ES7).unsupported()
    assert line is not None and "\n" not in line
    assert "Elasticsearch 7.17.0 found" in line and engine.SUPPORTED in line


def test_a_newer_major_than_tested_is_used_with_a_warning() -> None:
    e = Engine("elasticsearch", "10.0.0")
    assert e.unsupported() is None and "newer" in (e.untested() or "")
    assert Engine("elasticsearch", "8.19.21").untested() is None


@pytest.mark.parametrize("body", [None, {}, {"version": "8"}, {"version": {}}, "text"])
def test_anything_else_is_not_an_engine(body: object) -> None:
    assert parse_info(body) is None


def test_opensearch_gets_the_settings_it_knows_elasticsearch_all() -> None:
    settings = {"index.mapping.total_fields.limit": 2000,
                "index.mapping.total_fields.ignore_dynamic_beyond_limit": True}
    assert template_settings(Engine("opensearch", "2.19.6"), settings) == {"index.mapping.total_fields.limit": 2000}
    assert template_settings(Engine("elasticsearch", "9.2.2"), settings) == settings
    assert template_settings(None, settings) == settings  # not known yet: as before


def test_compat_media_types_become_plain_for_opensearch() -> None:
    h = engine._plain({"accept": "application/vnd.elasticsearch+json; compatible-with=8",
                       "content-type": "application/vnd.elasticsearch+x-ndjson; compatible-with=8",
                       "authorization": "ApiKey x"})
    assert h == {"accept": "application/json", "content-type": "application/x-ndjson", "authorization": "ApiKey x"}


@pytest.mark.parametrize(("ibp", "refused"), [
    ("3.9-IV0", False), ("2.8-IV1", False), ("2.0-IV1", False), (None, False), ("", False),
    ("1.1-IV0", True), ("0.10.2-IV0", True), ("garbage", False),
])
def test_kafka_older_than_2_is_refused_in_one_line(ibp: str | None, refused: bool) -> None:
    line = kafka_version_problem(ibp)
    assert (line is not None) is refused
    if line:
        assert ibp in line and engine.KAFKA_SUPPORTED in line and "\n" not in line


def test_the_client_uses_the_engine_transport() -> None:
    es = engine.client("http://127.0.0.1:9")
    assert isinstance(es.transport, engine.EngineTransport)
    assert es.transport.engine is None
    assert engine.probe(es, timeout_s=0.5) is None  # nothing listens there: unknown, no exception
