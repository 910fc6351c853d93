"""The transfer config followed from etcd, the index template derived from it, and a bad INI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from transfer.liveconfig import LiveConfig
from transfer.main import main
from transfer.template import PRIORITY, index_patterns, template_body, template_name

KEY = "/logferry/transfer/config"


def test_valid_config_applies_and_invalid_one_keeps_the_last_good(tmp_path: Path) -> None:
    live = LiveConfig(KEY, tmp_path)
    cfg = live.offer(b'{"topics": ["a"]}', 5)
    assert cfg is not None and cfg.topics == ("a",)
    assert live.offer(b'{"topics": ["a"]}', 5) is None  # replay of the same revision
    assert live.offer(b'{"topics": "a"}', 6) is None
    assert live.current == cfg and live.rejected_revision == 6
    assert 'field "topics"' in live.error and "keeping the config in force" in live.error
    assert live.offer(None, 7) is None and live.current == cfg and "does not exist" in live.error
    new = live.offer(b'{"topics": ["a", "b"], "bulk_max_docs": 100}', 8)
    assert new is not None and new.topics == ("a", "b") and live.error is None
    assert live.offer(b'{"bulk_max_docs": 100, "topics": ["a", "b"]}', 9) is None  # same config, no re-apply


def test_last_good_config_is_saved_for_a_start_without_etcd(tmp_path: Path) -> None:
    live = LiveConfig(KEY, tmp_path)
    live.offer(b'{"topics_regex": "^app-.*", "index": "x-{topic}"}', 12)
    again = LiveConfig(KEY, tmp_path)
    cfg = again.load_saved()
    assert cfg is not None and cfg.topics_regex == "^app-.*" and again.revision == 12 and again.source == "saved"
    (tmp_path / "transfer-config.json").write_text("{broken")
    assert LiveConfig(KEY, tmp_path).load_saved() is None


def test_index_patterns_and_template() -> None:
    assert index_patterns("logs-{topic}-{yyyy.MM.dd}") == ["logs-*-*"]
    assert index_patterns("Logs-{topic}") == ["logs-*"]
    assert index_patterns("{topic}{yyyy.MM}") == ["*"]
    a, b = template_name(["logs-*-*"]), template_name(["other-*"])
    assert a.startswith("logferry-logs-") and a != b and template_name(["logs-*-*"]) == a
    body = template_body(["logs-*-*"])
    props = body["template"]["mappings"]["properties"]
    assert props["@timestamp"] == {"type": "date"}
    assert props["message"] == {"type": "text"}
    assert props["host"]["properties"]["ip"] == {"type": "ip"}
    assert props["log"]["properties"]["offset"] == {"type": "long"}
    dyn = body["template"]["mappings"]["dynamic_templates"][0]["strings_as_keyword"]
    assert dyn["match_mapping_type"] == "string" and dyn["mapping"]["type"] == "keyword"
    assert body["priority"] == PRIORITY > 100  # above ES's built-in logs-*-* data stream template
    json.dumps(body)


@pytest.mark.parametrize(("text", "words"), [
    ("[etcd]\nendpoints = 127.0.0.1:2379\n[kafka]\nbootstrap_servers = k:9092\n[transfer]\nes_hosts = es:9200\n",
     "[transfer] es_hosts"),
    ("[etcd]\nendpoints = 127.0.0.1:2379\n[kafka]\nbootstrap_servers = k:9092\nconsumer.enable.auto.commit = true\n"
     "[transfer]\nes_hosts = http://es:9200\n", "consumer.enable.auto.commit"),
    ("[etcd]\nendpoints = 127.0.0.1:2379\n[kafka]\n[transfer]\nes_hosts = http://es:9200\n", "bootstrap_servers"),
])
def test_bad_ini_exits_non_zero_naming_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      text: str, words: str) -> None:
    ini = tmp_path / "logtransfer.ini"
    ini.write_text(text)
    assert main(["--config", str(ini)]) == 2
    err = capsys.readouterr().err
    assert str(ini) in err and words in err


def test_missing_ini_and_check_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(tmp_path / "nope.ini")]) == 2
    assert "nope.ini" in capsys.readouterr().err
    ini = tmp_path / "ok.ini"
    ini.write_text("[etcd]\nendpoints = 127.0.0.1:2379\n[kafka]\nbootstrap_servers = k:9092\n[transfer]\n"
                   "es_hosts = http://es:9200\n")
    assert main(["--config", str(ini), "--check-config"]) == 0
