"""Which index template wins, which ones stand in logferry's way, and the transfer's guard (pure logic)."""

from __future__ import annotations

from typing import Any

from logctl.doctor import FAIL, OK, check_es_templates
from logferry.estemplates import PRIORITY, index_patterns, matching_templates, same_priority_overlaps, template_name
from logferry.schema import DEFAULT_INDEX
from transfer.template import TemplateGuard, mapping_problem, template_body


def tpl(name: str, patterns: list[str], priority: int, data_stream: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"index_patterns": patterns, "priority": priority}
    if data_stream:
        body["data_stream"] = {}
    return {"name": name, "index_template": body}


ELASTIC = [tpl("logs", ["logs-*-*"], 100, True), tpl("logs-nginx.access", ["logs-nginx.access-*"], 200, True),
           tpl("metrics", ["metrics-*-*"], 100, True)]


def test_the_default_index_cannot_meet_elastic_templates() -> None:
    assert DEFAULT_INDEX.startswith("logferry-")
    pats = index_patterns(DEFAULT_INDEX)
    assert pats == ["logferry-*-*"]
    assert matching_templates(ELASTIC, "logferry-app-2026.12.04") == []
    assert same_priority_overlaps(ELASTIC, pats, 200) == []
    assert PRIORITY not in (100, 200)  # Elastic's built-in and integration priorities


def test_the_old_default_clashes_at_200_and_not_at_our_priority() -> None:
    old = index_patterns("logs-{topic}-{yyyy.MM.dd}")
    assert [t.name for t in same_priority_overlaps(ELASTIC, old, 200)] == ["logs-nginx.access"]
    assert same_priority_overlaps(ELASTIC, old, PRIORITY) == []
    ours = tpl(template_name(old), old, PRIORITY)
    win = matching_templates([*ELASTIC, ours], "logs-nginx.access-2026.12.04")
    assert [t.name for t in win] == ["logs-nginx.access", template_name(old), "logs"]
    assert matching_templates([*ELASTIC, ours], "logs-app-2026.12.04")[0].name == template_name(old)


def test_doctor_names_templates_in_the_way() -> None:
    old = "logs-{topic}-{yyyy.MM.dd}"
    same = tpl("company-logs", ["logs-*"], PRIORITY)
    f = check_es_templates([*ELASTIC, same], "logs-app-2026.12.04", old)
    assert f[0].level == FAIL and "company-logs" in f[0].message and "same priority 150" in f[0].message
    ours = tpl(template_name(index_patterns(DEFAULT_INDEX)), index_patterns(DEFAULT_INDEX), PRIORITY)
    f = check_es_templates([*ELASTIC, ours], "logferry-app-2026.12.04")
    assert [x.level for x in f] == [OK]
    f = check_es_templates([*ELASTIC, tpl(template_name(index_patterns(old)), index_patterns(old), PRIORITY)],
                           "logs-nginx.access-2026.12.04", old)
    assert f[-1].level == FAIL and "logs-nginx.access" in f[-1].message and "data stream" in f[-1].message


def test_mapping_problem() -> None:
    good = template_body(["x-*"])["template"]["mappings"]
    assert mapping_problem(good) is None
    assert "data stream" in (mapping_problem({**good, "_data_stream_timestamp": {"enabled": True}}) or "")
    assert "event.id mapped as text" in (mapping_problem(
        {"properties": {**good["properties"], "event": {"properties": {"id": {"type": "text"}}}}}) or "")
    assert "whatever Elasticsearch guesses" in (mapping_problem({}) or "")


class FakeIndices:
    """What TemplateGuard asks Elasticsearch, answered from a dict of templates."""

    def __init__(self) -> None:
        self.templates: dict[str, dict[str, Any]] = {}
        self.refuse: str | None = None
        self.calls: list[str] = []

    def exists(self, index: str) -> bool:
        self.calls.append(f"exists {index}")
        return False

    def simulate_index_template(self, name: str) -> dict[str, Any]:
        self.calls.append(f"simulate {name}")
        listing = [{"name": n, "index_template": b} for n, b in self.templates.items()]
        win = next(iter(matching_templates(listing, name)), None)
        if win is None:
            return {}
        body = self.templates[win.name]
        mappings = dict(body.get("template", {}).get("mappings", {}))
        if "data_stream" in body:
            mappings["_data_stream_timestamp"] = {"enabled": True}
        return {"template": {"mappings": mappings}}

    def get_index_template(self, name: str | None = None) -> dict[str, Any]:
        items = [{"name": n, "index_template": b} for n, b in self.templates.items() if name in (None, n)]
        return {"index_templates": items}

    def put_index_template(self, name: str, index_patterns: list[str], priority: int, template: dict[str, Any],
                           meta: dict[str, Any]) -> None:
        if self.refuse:
            import elasticsearch
            from elastic_transport import ApiResponseMeta, HttpHeaders, NodeConfig

            m = ApiResponseMeta(400, "1.1", HttpHeaders(), 0.0, NodeConfig("http", "h", 1))
            raise elasticsearch.BadRequestError(self.refuse, m, {"error": {"reason": self.refuse}})
        self.templates[name] = {"index_patterns": index_patterns, "priority": priority, "template": template,
                                "_meta": meta}


class FakeES:
    def __init__(self) -> None:
        self.indices = FakeIndices()

    def options(self, **_: Any) -> FakeES:
        return self


def test_guard_holds_until_the_template_in_the_way_is_gone() -> None:
    es = FakeES()
    pattern = "logs-{topic}-{yyyy.MM.dd}"
    es.indices.templates["logs-nginx.access"] = {"index_patterns": ["logs-nginx.access-*"], "priority": 200,
                                                 "data_stream": {}}
    es.indices.refuse = "index template [x] has index patterns [logs-*-*] matching patterns from existing " \
                        "templates with the same priority"
    guard = TemplateGuard(es)
    guard.reset(pattern, installed=False)
    why = guard(["logs-app-2026.12.04"])
    assert why is not None and "refused logferry's index template" in why and "held" in why
    es.indices.refuse = None  # the operator removed the clash: installed at the next check
    assert guard(["logs-app-2026.12.04"]) is None and guard.installed
    why = guard(["logs-nginx.access-2026.12.04", "logs-app-2026.12.04"])
    assert why is not None and "logs-nginx.access (priority 200) wins" in why and "data stream" in why
    del es.indices.templates["logs-nginx.access"]
    assert guard(["logs-nginx.access-2026.12.04"]) is None
    es.indices.calls.clear()
    assert guard(["logs-app-2026.12.04", "logs-nginx.access-2026.12.04"]) is None
    assert es.indices.calls == []  # names found good are not asked about again


def test_template_names_the_journal_fields() -> None:
    """Version 4: ``systemd.unit`` is a keyword and ``journald`` an object in every index, even one
    whose first document was a file line (no guess left to the dynamic rules)."""
    props = template_body(["x-*"])["template"]["mappings"]["properties"]
    assert props["systemd"]["properties"]["unit"]["type"] == "keyword"
    assert props["journald"] == {"type": "object", "dynamic": True}
    assert props["host"]["properties"]["ip"] == {"type": "ip"}
