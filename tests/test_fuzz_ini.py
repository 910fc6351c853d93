"""Fuzzing the bootstrap INI validators beyond tests/test_config.py.

test_config.py throws random text and random lines at the parsers. Here every known key of
every section gets any single-line value in an otherwise valid INI (of the agent, of the
transfer, and logctl's overrides), random keys are added, and whole files of random bytes are
read from disk. Properties: only ``ConfigError`` ever comes out; it names the file and the
``[section]`` at fault (and the key, for an unknown key); what is accepted is within the
documented ranges and free of control characters.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logferry.config import (
    _SECTION_KEYS,
    AgentConfig,
    ConfigError,
    TransferDaemonConfig,
    load_agent_config,
    load_ctl_config,
    load_transfer_config,
    parse_agent_config,
    parse_transfer_daemon_config,
    split_host_port,
)

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
P = "/etc/logferry/fuzz.ini"
BASE = {
    "etcd": {"endpoints": "10.0.0.1:2379"},
    "kafka": {"bootstrap_servers": "10.0.0.2:9092"},
    "agent": {},
    "transfer": {"es_hosts": "http://10.0.0.3:9200"},
}
AGENT_SECTIONS = ("etcd", "kafka", "agent")
TRANSFER_SECTIONS = ("etcd", "kafka", "transfer")
MIB = 1 << 20

# single-line values: anything but a newline (a newline makes a continuation line or a new line)
values = st.one_of(
    st.text(max_size=40).map(lambda v: v.replace("\n", " ")),
    st.sampled_from(["", " ", "0", "-1", "1e400", "nan", "inf", "0.0", "18446744073709551616", "64MiB", "17GiB",
                     "1_000", "true", "yes", "off", "WARN", "debug", "SASL_SSL", "SSL", "PLAIN", "GSSAPI", "zstd",
                     "10.0.0.1:2379", "http://10.0.0.1:2379", "https://e:2379", "[::1]:2379", "::1:2379", "a:0",
                     "a:65536", "h:1, h:1", "/", "/tmp", "relative/dir", "/nonexistent/file", "%(x)s", "#x", ";x",
                     "a b", "x\x00y", "\x7f", "é:1", "http://e", "http://e:9200/path", "https://[::1]:9200",
                     "10.0.0.5", "2001:db8::1", "300.1.1.1", "localhost", "a" * 300]),
)


def ini(sections: tuple[str, ...], override: dict[str, dict[str, str]]) -> str:
    out = []
    for sec in sections:
        items = dict(BASE[sec]) | override.get(sec, {})
        out.append(f"[{sec}]")
        out += [f"{k} = {v}" for k, v in items.items()]
    return "\n".join(out) + "\n"


def check_agent(cfg: AgentConfig) -> None:
    for e in cfg.etcd.endpoints:
        split_host_port(e)
    a = cfg.agent
    assert MIB <= a.max_inflight_bytes <= 16 * 1024 * MIB
    assert 1 <= a.max_open_files <= 1_000_000
    assert 0 < a.scan_interval_s <= 3600 and 0 < a.status_interval_s <= 3600
    assert a.data_dir.startswith("/")
    for s in (a.data_dir, a.hostname or "", cfg.etcd.prefix, cfg.etcd.user or ""):
        assert not any(ord(c) < 32 or c == "\x7f" for c in s), s


def check_transfer(cfg: TransferDaemonConfig) -> None:
    t = cfg.transfer
    assert t.es_hosts and all(h.startswith(("http://", "https://")) for h in t.es_hosts)
    assert t.id and not any(c.isspace() for c in t.id)
    assert cfg.kafka.consumer_config()["bootstrap.servers"]


def _sections_for(daemon: str) -> tuple[str, ...]:
    return AGENT_SECTIONS if daemon == "agent" else TRANSFER_SECTIONS


KEYS = [(d, sec, key) for d in ("agent", "transfer") for sec in _sections_for(d) for key in _SECTION_KEYS[sec]]


@pytest.mark.parametrize(("daemon", "section", "key"), KEYS, ids=[f"{d}-{s}-{k}" for d, s, k in KEYS])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=values)
def test_fuzz_every_key_any_value(daemon: str, section: str, key: str, value: str) -> None:
    text = ini(_sections_for(daemon), {section: {key: value}})
    parse = parse_agent_config if daemon == "agent" else parse_transfer_daemon_config
    try:
        cfg = parse(text, P)
    except ConfigError as e:
        msg = str(e)
        assert msg.startswith(f"{P}: "), msg
        assert f"[{section}] " in msg or "line " in msg, msg
        return
    (check_agent if daemon == "agent" else check_transfer)(cfg)  # type: ignore[arg-type]


@FUZZ
@given(st.sampled_from(["agent", "transfer"]), st.data(),
       st.from_regex(r"[a-z][a-z0-9_.-]{0,20}", fullmatch=True), values)
def test_fuzz_unknown_keys_are_named(daemon: str, data: st.DataObject, key: str, value: str) -> None:
    section = data.draw(st.sampled_from(_sections_for(daemon)))
    text = ini(_sections_for(daemon), {section: {key: value}})
    parse = parse_agent_config if daemon == "agent" else parse_transfer_daemon_config
    passthrough = ("producer.",) if daemon == "agent" else ("producer.", "consumer.")
    try:
        parse(text, P)
    except ConfigError as e:
        msg = str(e)
        assert msg.startswith(f"{P}: [{section}] "), msg
        if key not in _SECTION_KEYS[section] and not (section == "kafka" and key.startswith(passthrough)):
            assert f"[{section}] {key}: unknown key" in msg, msg
        return
    assert key in _SECTION_KEYS[section] or (section == "kafka" and key.startswith(passthrough)), key


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_fuzz_ini_files_of_any_bytes(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.ini"
        path.write_bytes(raw)
        for load in (load_agent_config, load_transfer_config, load_ctl_config):
            try:
                load(str(path))
            except ConfigError as e:
                assert str(e).startswith(str(path)), str(e)


@FUZZ
@given(st.dictionaries(st.sampled_from(["endpoints", "prefix", "user", "password", "ca_file", "dial_timeout_s",
                                        "endpont", "Prefix", "x"]), st.none() | values, max_size=4))
def test_fuzz_ctl_overrides(overrides: dict[str, str | None]) -> None:
    try:
        cfg = load_ctl_config(None, overrides)
    except ConfigError as e:
        assert str(e).startswith("command line"), str(e)
        return
    for e in cfg.etcd.endpoints:
        split_host_port(e)


def test_bom_crlf_and_tabs_are_accepted() -> None:
    text = "\ufeff[etcd]\r\nendpoints =\t10.0.0.1:2379 ,\t10.0.0.2:2379\r\n[kafka]\r\nbootstrap_servers = k:9092\r\n"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "a.ini"
        path.write_bytes(text.encode("utf-8"))
        cfg = load_agent_config(str(path))
    assert cfg.etcd.endpoints == ["10.0.0.1:2379", "10.0.0.2:2379"]
