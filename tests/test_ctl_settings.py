"""Where logctl finds etcd, Kafka and Elasticsearch: INI, environment, flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from logctl.settings import resolve_settings
from logctl.util import EXIT_USAGE, CtlError

EXAMPLES = Path(__file__).resolve().parent.parent / "logferry" / "examples"
NO_DEFAULT = "/nonexistent/logctl.ini"


def resolve(**kw):  # type: ignore[no-untyped-def]
    kw.setdefault("config", None)
    kw.setdefault("env", {})
    kw.setdefault("default_config", NO_DEFAULT)
    return resolve_settings(**kw)


def test_flags_only() -> None:
    s = resolve(etcd="10.0.0.1:2379,10.0.0.2:2379", prefix="/lf", kafka="k1:9092", es="http://es1:9200",
                timeout=2)
    assert s.config_path is None
    assert s.etcd is not None and s.etcd.endpoints == ["10.0.0.1:2379", "10.0.0.2:2379"]
    assert s.etcd.prefix == "/lf" and s.etcd.dial_timeout_s == 2
    assert s.kafka is not None and s.kafka.bootstrap_servers == ["k1:9092"]
    assert s.es is not None and s.es.hosts == ["http://es1:9200"]
    assert s.timeout_s == 2


def test_environment_and_flag_precedence() -> None:
    env = {"LOGFERRY_ETCD": "10.0.0.9:2379", "LOGFERRY_PREFIX": "/envp", "LOGFERRY_KAFKA": "k9:9092",
           "LOGFERRY_ES": "http://es9:9200"}
    s = resolve(env=env)
    assert s.etcd.endpoints == ["10.0.0.9:2379"] and s.etcd.prefix == "/envp"
    assert s.kafka.bootstrap_servers == ["k9:9092"] and s.es.hosts == ["http://es9:9200"]
    s = resolve(env=env, etcd="10.0.0.1:2379", es="https://es1:9243")
    assert s.etcd.endpoints == ["10.0.0.1:2379"] and s.etcd.prefix == "/envp"
    assert s.es.hosts == ["https://es1:9243"]


def test_daemon_ini_serves_and_flags_override(tmp_path: Path) -> None:
    s = resolve(config=str(EXAMPLES / "logtransfer.ini"))
    assert s.etcd.endpoints == ["127.0.0.1:2379", "127.0.0.2:2379", "127.0.0.3:2379"]
    assert s.kafka.bootstrap_servers == ["127.0.0.1:9092"]
    assert s.es.hosts == ["http://127.0.0.1:9200"] and s.es.verify_certs is True
    s = resolve(config=str(EXAMPLES / "logagent.ini"), etcd="10.1.1.1:2379", prefix="/other")
    assert s.etcd.endpoints == ["10.1.1.1:2379"] and s.etcd.prefix == "/other"
    assert s.es is None  # a logagent.ini has no [transfer]


def test_default_config_used_when_present(tmp_path: Path) -> None:
    ini = tmp_path / "logctl.ini"
    ini.write_text("[etcd]\nendpoints = 10.0.0.7:2379\nprefix = /site\n\n[transfer]\nes_hosts = http://es:9200\n"
                   "es_username = ops\nes_password = s3cret#1\n")
    s = resolve(default_config=str(ini))
    assert s.config_path == str(ini)
    assert s.etcd.endpoints == ["10.0.0.7:2379"] and s.etcd.prefix == "/site"
    assert s.es.username == "ops" and s.es.password == "s3cret#1"
    assert s.kafka is None


def test_no_etcd_is_deferred_until_needed() -> None:
    s = resolve(es="http://es:9200")
    assert s.etcd is None and s.es is not None
    with pytest.raises(CtlError) as e:
        s.need_etcd()
    assert e.value.code == EXIT_USAGE and "--etcd" in str(e.value) and "LOGFERRY_ETCD" in str(e.value)
    with pytest.raises(CtlError, match="--kafka"):
        s.need_kafka()


@pytest.mark.parametrize(("kw", "says"), [
    ({"etcd": "10.0.0.1"}, "has no port"),
    ({"etcd": "10.0.0.1:2379", "prefix": "/a//b"}, "empty segment"),
    ({"etcd": "10.0.0.1:2379", "kafka": "kafka"}, "--kafka"),
    ({"etcd": "10.0.0.1:2379", "es": "es1:9200"}, "lacks a scheme"),
    ({"etcd": "10.0.0.1:2379", "timeout": 0}, "--timeout"),
])
def test_bad_flags_are_usage_errors(kw: dict, says: str) -> None:
    with pytest.raises(CtlError, match=says) as e:
        resolve(**kw)
    assert e.value.code == EXIT_USAGE


def test_bad_ini_names_file_and_key(tmp_path: Path) -> None:
    ini = tmp_path / "bad.ini"
    ini.write_text("[etcd]\nendpoints = 10.0.0.1:2379\nprefx = /x\n")
    with pytest.raises(CtlError, match=r"bad.ini: \[etcd\] prefx: unknown key \(did you mean \"prefix\"\?\)") as e:
        resolve(config=str(ini))
    assert e.value.code == EXIT_USAGE
    ini.write_text("[etcd]\nendpoints = 10.0.0.1:2379\n[kafka]\nbootstrap_servers = k:1\nsasl_username = u\n")
    with pytest.raises(CtlError, match=r"\[kafka\] sasl_username: only used with SASL"):
        resolve(config=str(ini))
    with pytest.raises(CtlError, match="does not exist"):
        resolve(config=str(tmp_path / "missing.ini"))
