"""Bootstrap INI files: defaults, the shipped examples, and every refusal's exact words."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import logferry
import logferry.config as config_module
from logferry.config import (
    AgentConfig,
    ConfigError,
    load_agent_config,
    load_console_config,
    load_ctl_config,
    load_transfer_config,
    parse_agent_config,
    parse_transfer_daemon_config,
    split_host_port,
)

EXAMPLES = Path(logferry.__file__).parent / "examples"
P = "/etc/logferry/logagent.ini"
T = "/etc/logferry/logtransfer.ini"
AGENT_MIN = "[etcd]\nendpoints = 10.0.0.1:2379\n[kafka]\nbootstrap_servers = 10.0.0.2:9092\n"
TRANSFER_MIN = AGENT_MIN + "[transfer]\nes_hosts = http://10.0.0.3:9200\n"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def agent(extra: str = "", base: str = AGENT_MIN) -> AgentConfig:
    return parse_agent_config(base + extra, P)


def agent_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_agent_config(text, P)
    return str(info.value)


def transfer_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_transfer_daemon_config(text, T)
    return str(info.value)


# --- examples and defaults ----------------------------------------------------------------------


def test_shipped_agent_example_loads() -> None:
    cfg = load_agent_config(str(EXAMPLES / "logagent.ini"))
    assert cfg.etcd.endpoints == ["127.0.0.1:2379", "127.0.0.2:2379", "127.0.0.3:2379"]
    assert cfg.kafka.bootstrap_servers == ["127.0.0.1:9092"]
    assert cfg.agent.max_inflight_bytes == 8 * 1024 * 1024
    assert cfg.path == str(EXAMPLES / "logagent.ini")


def test_shipped_transfer_example_loads() -> None:
    cfg = load_transfer_config(str(EXAMPLES / "logtransfer.ini"))
    assert cfg.transfer.es_hosts == ["http://127.0.0.1:9200"]
    assert cfg.transfer.group_id == "logferry-transfer"
    assert cfg.transfer.es_verify_certs is True


def test_shipped_console_example_loads() -> None:
    cfg = load_console_config(str(EXAMPLES / "console.ini"))
    assert cfg.console.listen == "127.0.0.1:8430" and cfg.console.loopback and not cfg.console.users
    assert cfg.es.hosts == ["http://127.0.0.1:9200"] and cfg.etcd.prefix == "/logferry"


def test_examples_document_every_key() -> None:
    from logferry.config import _SECTION_KEYS

    for name, sections in (("logagent.ini", ("etcd", "kafka", "agent")),
                           ("logtransfer.ini", ("etcd", "kafka", "transfer")),
                           ("console.ini", ("console", "elasticsearch"))):
        text = (EXAMPLES / name).read_text()
        for section in sections:
            for key in _SECTION_KEYS[section]:
                if key.endswith("_file") and key[:-5] in _SECTION_KEYS[section]:
                    continue  # documented once, in the file's header, for every secret
                assert f"{key} =" in text, f"{name}: [{section}] {key} is not documented"


def test_agent_defaults() -> None:
    cfg = agent()
    assert cfg.etcd.prefix == "/logferry" and cfg.etcd.dial_timeout_s == 5.0 and cfg.etcd.user is None
    assert cfg.kafka.security_protocol == "PLAINTEXT" and cfg.kafka.compression == "lz4"
    a = cfg.agent
    assert (a.data_dir, a.host_ip, a.hostname, a.metrics_address, a.log_level) == (
        "/var/lib/logferry/agent", None, None, "127.0.0.1:9601", "INFO")
    assert (a.status_interval_s, a.max_inflight_bytes, a.scan_interval_s, a.close_inactive_s,
            a.max_open_files) == (5.0, 8 * 1024 * 1024, 1.0, 300.0, 512)
    assert cfg.etcd.keys().agent_collect("10.0.0.9") == "/logferry/agents/10.0.0.9/collect"


def test_transfer_defaults() -> None:
    t = parse_transfer_daemon_config(TRANSFER_MIN, T).transfer
    assert t.id and "/" not in t.id
    assert (t.group_id, t.metrics_address, t.data_dir, t.log_level) == (
        "logferry-transfer", "127.0.0.1:9602", "/var/lib/logferry/transfer", "INFO")


def test_values_are_parsed_and_normalised() -> None:
    cfg = agent("[agent]\nhost_ip = 2001:DB8::5\nhostname = web1\nmetrics_address = [::1]:9700\n"
                "log_level = warn\nmax_inflight_bytes = 2MiB\nscan_interval_s = 0.25\n"
                "max_open_files = 1_000\ndata_dir = /srv/agent\n",
                base="[etcd]\nendpoints = a.example:2379,\n  10.0.0.2:2379 [::1]:2379\nprefix = lab/\n"
                     "[kafka]\nbootstrap_servers = k1:9092\nsecurity_protocol = sasl_ssl\n"
                     "sasl_mechanism = plain\nsasl_username = u\n"
                     "sasl_password = p%w#d ; not a comment\ncompression = ZSTD\n")
    assert cfg.etcd.endpoints == ["a.example:2379", "10.0.0.2:2379", "[::1]:2379"]
    assert agent(base="[etcd]\nendpoints = http://10.0.0.1:2379/ http://10.0.0.2:2379\n"
                      "[kafka]\nbootstrap_servers = k:1\n").etcd.endpoints == ["10.0.0.1:2379", "10.0.0.2:2379"]
    assert cfg.etcd.endpoint_pairs() == [("a.example", 2379), ("10.0.0.2", 2379), ("::1", 2379)]
    assert cfg.etcd.prefix == "/lab"
    assert cfg.kafka.security_protocol == "SASL_SSL" and cfg.kafka.sasl_mechanism == "PLAIN"
    assert cfg.kafka.sasl_password == "p%w#d ; not a comment"
    assert cfg.kafka.compression == "zstd"
    a = cfg.agent
    assert (a.host_ip, a.hostname, a.metrics_address, a.log_level) == (
        "2001:db8::5", "web1", "[::1]:9700", "WARNING")
    assert (a.max_inflight_bytes, a.scan_interval_s, a.max_open_files, a.data_dir) == (
        2 * 1024 * 1024, 0.25, 1000, "/srv/agent")


def test_sizes() -> None:
    for text, n in (("67108864", 64 << 20), ("64MiB", 64 << 20), ("64m", 64 << 20), ("1G", 1 << 30),
                    ("2048 KiB", 2 << 20)):
        assert agent(f"[agent]\nmax_inflight_bytes = {text}\n").agent.max_inflight_bytes == n


def test_empty_value_means_default_but_empty_metrics_address_disables() -> None:
    cfg = agent("[agent]\nmax_open_files =\nhost_ip =\nmetrics_address =\n")
    assert cfg.agent.max_open_files == 512 and cfg.agent.host_ip is None
    assert cfg.agent.metrics_address is None


def test_secrets_are_not_in_repr() -> None:
    cfg = agent(base="[etcd]\nendpoints = 10.0.0.1:2379\nuser = u\npassword = hunter2\n"
                     "[kafka]\nbootstrap_servers = k:9092\n")
    assert cfg.etcd.password == "hunter2"
    assert "hunter2" not in repr(cfg)


def test_kafka_client_configs() -> None:
    cfg = parse_transfer_daemon_config(
        "[etcd]\nendpoints = e:2379\n[kafka]\nbootstrap_servers = k1:9092, k2:9092\ncompression = gzip\n"
        "producer.linger.ms = 20\nconsumer.fetch.max.bytes = 1000\n"
        "[transfer]\nes_hosts = https://es:9200\n", T)
    common = {"bootstrap.servers": "k1:9092,k2:9092", "security.protocol": "PLAINTEXT"}
    assert cfg.kafka.producer_config() == {**common, "compression.type": "gzip", "linger.ms": "20"}
    assert cfg.kafka.consumer_config() == {**common, "fetch.max.bytes": "1000"}


# --- secrets from files -------------------------------------------------------------------------


def test_secret_from_absolute_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret\n")
    cfg = agent(base=f"[etcd]\nendpoints = e:2379\nuser = u\npassword_file = {tmp_path / 'pw'}\n"
                     "[kafka]\nbootstrap_servers = k:9092\n")
    assert cfg.etcd.password == "s3cret"


def test_secret_from_systemd_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "kafka-password").write_text("pw\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    cfg = agent(base="[etcd]\nendpoints = e:2379\n[kafka]\nbootstrap_servers = k:9092\n"
                     "security_protocol = SASL_PLAINTEXT\nsasl_mechanism = SCRAM-SHA-512\nsasl_username = u\n"
                     "sasl_password_file = kafka-password\n")
    assert cfg.kafka.sasl_password == "pw"


def test_secret_file_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    base = "[kafka]\nbootstrap_servers = k:9092\n[etcd]\nendpoints = e:2379\nuser = u\n"
    assert agent_error(base + "password_file = pw\n") == (
        f"{P}: [etcd] password_file: 'pw' is relative and $CREDENTIALS_DIRECTORY is not set; write an "
        "absolute path, or use systemd LoadCredential= and the credential's name")
    assert agent_error(base + f"password_file = {tmp_path}/missing\n") == (
        f"{P}: [etcd] password_file: {tmp_path}/missing does not exist or is not a file; fix the path")
    (tmp_path / "empty").write_text("\n")
    assert agent_error(base + f"password_file = {tmp_path}/empty\n") == (
        f"{P}: [etcd] password_file: {tmp_path}/empty is empty; put the secret in it")
    assert agent_error(base + f"password = x\npassword_file = {tmp_path}/empty\n") == (
        f"{P}: [etcd] password: set both password and password_file; keep one")


# --- file-level refusals ------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_agent_config(str(tmp_path / "nope.ini"))
    assert str(info.value) == (f"{tmp_path}/nope.ini: does not exist; create it (a commented example ships "
                               "as logferry/examples/logagent.ini)")
    assert info.value.path == f"{tmp_path}/nope.ini"


def test_directory_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"is a directory; give the path of the INI file"):
        load_transfer_config(str(tmp_path))


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "a.ini"
    f.write_text(AGENT_MIN)
    f.chmod(0)
    if os.geteuid() == 0:  # root reads files whatever their mode: make open() refuse as it would

        def refuse(*args: object, **kw: object) -> None:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(config_module, "open", refuse, raising=False)
    with pytest.raises(ConfigError, match=r"a.ini: cannot read it \(permission denied\); make it readable"):
        load_agent_config(str(f))


def test_not_utf8(tmp_path: Path) -> None:
    f = tmp_path / "a.ini"
    f.write_bytes(b"[etcd]\nendpoints = \xff\n")
    with pytest.raises(ConfigError) as info:
        load_agent_config(str(f))
    assert str(info.value) == f"{f}: not UTF-8 text (bad byte at offset 19); save it as UTF-8"


def test_file_round_trip(tmp_path: Path) -> None:
    f = tmp_path / "a.ini"
    f.write_text(AGENT_MIN)
    assert load_agent_config(str(f)) == parse_agent_config(AGENT_MIN, str(f))


@pytest.mark.parametrize(("text", "message"), [
    ("endpoints = a:1\n[etcd]\n",
     f"{P}: line 1: a setting before any [section]; put settings under [etcd], [kafka], [agent]"),
    ("[etcd]\nendpoints = a:1\n[etcd]\n", f"{P}: line 3: [etcd] appears twice; merge the two into one"),
    ("[etcd]\nendpoints = a:1\nendpoints = b:1\n", f"{P}: line 3: [etcd] endpoints: set twice in one "
                                                   "section; keep one"),
    ("[etcd]\nendpoints = a:1\njust words\n",
     f"{P}: line 3: cannot parse 'just words'; write key = value, a [section] header, or a comment starting "
     "with # or ;"),
    ("[etcd]\nendpoints = a:1\n[kafak]\n",
     f'{P}: [kafak]: unknown section (did you mean [kafka]?); this file takes [etcd], [kafka], [agent]'),
    ("[DEFAULT]\nprefix = /x\n",
     f"{P}: [DEFAULT]: unknown section; this file takes [etcd], [kafka], [agent]"),
    ("[transfer]\n", f"{P}: [transfer]: unknown section; this file takes [etcd], [kafka], [agent]"),
    ("[etcd]\nendpoint = a:1\n",
     f'{P}: [etcd] endpoint: unknown key (did you mean "endpoints"?); valid keys: endpoints, prefix, user, '
     "password, password_file, ca_file, cert_file, key_file, dial_timeout_s"),
    ("[etcd]\nendpoints = a:1\n[kafka]\nbootstrap_server = k:1\n",
     f'{P}: [kafka] bootstrap_server: unknown key (did you mean "bootstrap_servers"?)'),
    ("[etcd]\nendpoints = a:1\n[kafka]\nbootstrap_servers = k:1\nconsumer.fetch.min.bytes = 1\n",
     f"{P}: [kafka] consumer.fetch.min.bytes: unknown key; valid keys: bootstrap_servers"),
])
def test_syntax_and_structure_refusals(text: str, message: str) -> None:
    assert agent_error(text).startswith(message)


# --- value refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "message"), [
    # missing / required
    ("", None),
    # ints
    ("[agent]\nmax_open_files = lots\n", "[agent] max_open_files: 'lots' is not a whole number; write one "
                                         "from 1 to 1000000"),
    ("[agent]\nmax_open_files = 0\n", "[agent] max_open_files: 0 is out of range; write a number from 1 to "
                                      "1000000"),
    ("[agent]\nmax_inflight_bytes = 64 parsecs\n", "[agent] max_inflight_bytes: '64 parsecs' is not a size; "
                                                   "write bytes as a number or with a unit, e.g. 64MiB"),
    ("[agent]\nmax_inflight_bytes = 1KiB\n", "[agent] max_inflight_bytes: 1KiB is out of range; write a size "
                                             "from 1048576 to 17179869184 bytes"),
    # floats
    ("[agent]\nscan_interval_s = fast\n", "[agent] scan_interval_s: 'fast' is not a number of seconds; write "
                                          "e.g. 5 or 0.5"),
    ("[agent]\nscan_interval_s = 0\n", "[agent] scan_interval_s: 0 is out of range; write seconds above 0, "
                                       "at most 3600"),
    ("[agent]\nstatus_interval_s = nan\n", "[agent] status_interval_s: nan is out of range"),
    # IPs
    ("[agent]\nhost_ip = 10.0.0\n", "[agent] host_ip: '10.0.0' is not an IPv4 or IPv6 address (such as "
                                    "10.0.0.5 or 2001:db8::5); or remove the line to use the address of the "
                                    "route to etcd"),
    # host:port
    ("[agent]\nmetrics_address = 9601\n", "[agent] metrics_address: '9601' has no port; write host:port"),
    ("[agent]\nmetrics_address = localhost:http\n", "[agent] metrics_address: 'localhost:http': port 'http' "
                                                    "is not a number from 1 to 65535"),
    ("[agent]\nmetrics_address = localhost:70000\n", "[agent] metrics_address: 'localhost:70000': port "
                                                     "'70000' is not a number from 1 to 65535"),
    ("[agent]\nmetrics_address = ::1:9601\n", "[agent] metrics_address: '::1:9601': put an IPv6 address in "
                                              "brackets"),
    ("[agent]\nmetrics_address = [web1]:9601\n", "[agent] metrics_address: 'web1' in brackets is not an IPv6 "
                                                 "address"),
    ("[agent]\nmetrics_address = bad_host!:9601\n", "[agent] metrics_address: 'bad_host!' is not a host name "
                                                    "or IP address"),
    # others
    ("[agent]\nlog_level = loud\n", "[agent] log_level: 'loud' is not a log level; write one of DEBUG, INFO, "
                                    "WARNING, ERROR, CRITICAL"),
    ("[agent]\ndata_dir = var/lib/x\n", "[agent] data_dir: 'var/lib/x' is a relative path; write an absolute "
                                        "directory"),
    ("[agent]\nhostname = web 1\n", "[agent] hostname: 'web 1' must be a single word without spaces or '/'"),
])
def test_agent_value_refusals(extra: str, message: str | None) -> None:
    if message is None:
        agent(extra)
        return
    assert agent_error(AGENT_MIN + extra).startswith(f"{P}: {message}")


@pytest.mark.parametrize(("text", "message"), [
    ("[kafka]\nbootstrap_servers = k:1\n",
     "[etcd] endpoints: missing; set it to a comma-separated list of host:port (etcd client addresses)"),
    ("[etcd]\nendpoints =\n[kafka]\nbootstrap_servers = k:1\n", "[etcd] endpoints: missing;"),
    ("[etcd]\nendpoints = a:1\n", "[kafka] bootstrap_servers: missing; set it to a comma-separated list of "
                                  "host:port"),
    ("[etcd]\nendpoints = https://a:2379\n[kafka]\nbootstrap_servers = k:1\n",
     "[etcd] endpoints: https:// given but no ca_file; set [etcd] ca_file to the CA that signed the etcd "
     "certificates (that is what switches TLS on)"),
    ("[etcd]\nendpoints = unix://a:2379\n[kafka]\nbootstrap_servers = k:1\n",
     "[etcd] endpoints: 'unix://a:2379': etcd speaks http or https, not unix; write host:port"),
    ("[etcd]\nendpoints = http://a\n[kafka]\nbootstrap_servers = k:1\n",
     "[etcd] endpoints: 'a' has no port; write host:port such as 10.0.0.5:2379, or [2001:db8::5]:2379 for "
     "IPv6"),
    ("[etcd]\nendpoints = a:1\n[kafka]\nbootstrap_servers = http://k:1\n",
     "[kafka] bootstrap_servers: 'http://k:1' has a URL scheme; write host:port such as 10.0.0.5:2379, or "
     "[2001:db8::5]:2379 for IPv6 (TLS is a separate setting)"),
    ("[etcd]\nendpoints = a:1, a:1\n[kafka]\nbootstrap_servers = k:1\n",
     "[etcd] endpoints: 'a:1' is listed twice; list each address once"),
    ("[etcd]\nendpoints = a:1\nprefix = /a//b\n[kafka]\nbootstrap_servers = k:1\n",
     "[etcd] prefix: etcd prefix '/a//b' has an empty segment"),
    ("[etcd]\nendpoints = a:1\nuser = u\n[kafka]\nbootstrap_servers = k:1\n",
     "[etcd] user: set without password; set both or neither"),
    ("[etcd]\nendpoints = a:1\nca_file = /nonexistent/ca.pem\n[kafka]\nbootstrap_servers = k:1\n",
     "[etcd] ca_file: /nonexistent/ca.pem does not exist or is not a file; fix the path or remove the line"),
    ("[etcd]\nendpoints = a:1\nca_file = ca.pem\n[kafka]\nbootstrap_servers = k:1\n",
     "[etcd] ca_file: 'ca.pem' is a relative path; write the file's absolute path"),
    ("[etcd]\nendpoints = a:1\ndial_timeout_s = 1e999\n[kafka]\nbootstrap_servers = k:1\n",
     "[etcd] dial_timeout_s: 1e999 is out of range"),
    ("[etcd]\nendpoints = a:1\n[kafka]\nbootstrap_servers = k:1\nsecurity_protocol = TLS\n",
     "[kafka] security_protocol: 'TLS' is not one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL"),
    ("[etcd]\nendpoints = a:1\n[kafka]\nbootstrap_servers = k:1\nsecurity_protocol = SASL_SSL\n",
     "[kafka] sasl_mechanism: missing; SASL_SSL needs one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, "
     "OAUTHBEARER"),
    ("[etcd]\nendpoints = a:1\n[kafka]\nbootstrap_servers = k:1\nsecurity_protocol = SASL_SSL\n"
     "sasl_mechanism = GSSAPI\n", "[kafka] sasl_mechanism: 'GSSAPI' is not one of PLAIN"),
    ("[etcd]\nendpoints = a:1\n[kafka]\nbootstrap_servers = k:1\nsecurity_protocol = SASL_SSL\n"
     "sasl_mechanism = PLAIN\n", "[kafka] sasl_username: missing; SASL PLAIN needs a user name"),
    ("[etcd]\nendpoints = a:1\n[kafka]\nbootstrap_servers = k:1\nsecurity_protocol = SASL_SSL\n"
     "sasl_mechanism = PLAIN\nsasl_username = u\n",
     "[kafka] sasl_password: missing; SASL PLAIN needs sasl_password or sasl_password_file"),
    ("[etcd]\nendpoints = a:1\n[kafka]\nbootstrap_servers = k:1\nsasl_username = u\n",
     "[kafka] sasl_username: only used with SASL; set security_protocol = SASL_SSL (now PLAINTEXT) or remove "
     "the line"),
    ("[etcd]\nendpoints = a:1\n[kafka]\nbootstrap_servers = k:1\nsecurity_protocol = SASL_PLAINTEXT\n"
     "ssl_ca_location = /etc/hostname\n",
     "[kafka] ssl_ca_location: only used with TLS; set security_protocol = SSL or SASL_SSL (now "
     "SASL_PLAINTEXT)"),
    ("[etcd]\nendpoints = a:1\n[kafka]\nbootstrap_servers = k:1\ncompression = brotli\n",
     "[kafka] compression: 'brotli' is not one of none, gzip, snappy, lz4, zstd"),
    ("[etcd]\nendpoints = a:1\n[kafka]\nbootstrap_servers = k:1\nproducer.acks = 1\n",
     "[kafka] producer.acks: logferry sets this itself (acks=all) for no loss and no duplicates; remove the "
     "line"),
    ("[etcd]\nendpoints = a:1\n[kafka]\nbootstrap_servers = k:1\nproducer.bootstrap.servers = x:1\n",
     "[kafka] producer.bootstrap.servers: use [kafka] bootstrap_servers instead, so both clients get it"),
])
def test_etcd_and_kafka_refusals(text: str, message: str) -> None:
    assert agent_error(text).startswith(f"{P}: {message}")


@pytest.mark.parametrize(("extra", "message"), [
    ("es_hosts = es1:9200\n", "[transfer] es_hosts: 'es1:9200' lacks a scheme, host or port (the 8.x client "
                              "needs all three); write URLs with scheme, host and port such as "
                              "https://es1:9200"),
    ("es_hosts = http://es1\n", "[transfer] es_hosts: 'http://es1' lacks a scheme, host or port"),
    ("es_hosts = http://es1:99999\n", "[transfer] es_hosts: 'http://es1:99999' is not a URL"),
    ("es_hosts = http://es1:9200\nes_verify_certs = maybe\n",
     "[transfer] es_verify_certs: 'maybe' is not a boolean; write true or false"),
    ("es_hosts = http://es1:9200\nes_api_key = k\nes_username = u\nes_password = p\n",
     "[transfer] es_username: set together with es_api_key; use one way to log in, remove the other"),
    ("es_hosts = http://es1:9200\nes_username = u\n", "[transfer] es_username: set without es_password"),
    ("es_hosts = http://es1:9200\nid = a/b\n", "[transfer] id: transfer id 'a/b' cannot be used in an etcd "
                                               "key"),
    ("es_hosts = http://es1:9200\nes_ca_file = /nonexistent\n",
     "[transfer] es_ca_file: /nonexistent does not exist or is not a file"),
    ("es_host = http://es1:9200\n", '[transfer] es_host: unknown key (did you mean "es_hosts"?)'),
    ("", "[transfer] es_hosts: missing; set it to a comma-separated list of URLs such as https://es1:9200"),
])
def test_transfer_refusals(extra: str, message: str) -> None:
    assert transfer_error(AGENT_MIN + "[transfer]\n" + extra).startswith(f"{T}: {message}")


def test_transfer_values() -> None:
    t = parse_transfer_daemon_config(AGENT_MIN + "[transfer]\nes_hosts = https://es1:9200 https://es2:9200/prefix\n"
                                     "id = t-1\nes_verify_certs = no\nes_api_key = abc\n", T).transfer
    assert t.es_hosts == ["https://es1:9200", "https://es2:9200/prefix"]
    assert (t.id, t.es_verify_certs, t.es_api_key) == ("t-1", False, "abc")


def test_transfer_accepts_both_passthroughs_agent_only_producer() -> None:
    text = AGENT_MIN + "consumer.fetch.min.bytes = 1\nproducer.linger.ms = 5\n[transfer]\nes_hosts = http://e:9200\n"
    assert parse_transfer_daemon_config(text, T).kafka.extra == {"consumer.fetch.min.bytes": "1",
                                                                 "producer.linger.ms": "5"}
    assert transfer_error(AGENT_MIN + "consumer.enable.auto.commit = true\n"
                                      "[transfer]\nes_hosts = http://e:9200\n") \
        .startswith(f"{T}: [kafka] consumer.enable.auto.commit: logferry sets this itself")


def test_error_attributes() -> None:
    with pytest.raises(ConfigError) as info:
        parse_agent_config(AGENT_MIN + "[agent]\nmax_open_files = x\n", P)
    assert (info.value.path, info.value.section, info.value.key) == (P, "agent", "max_open_files")


def test_split_host_port() -> None:
    assert split_host_port("10.0.0.1:2379") == ("10.0.0.1", 2379)
    assert split_host_port(" [2001:db8::1]:9092 ") == ("2001:db8::1", 9092)
    with pytest.raises(ValueError, match="has no port"):
        split_host_port("10.0.0.1")


# --- logctl -------------------------------------------------------------------------------------


def test_ctl_from_overrides_only() -> None:
    cfg = load_ctl_config(None, {"endpoints": "10.0.0.1:2379", "prefix": "/lab", "user": None})
    assert cfg.etcd.endpoints == ["10.0.0.1:2379"] and cfg.etcd.prefix == "/lab" and cfg.path is None


def test_ctl_reads_an_agent_ini_and_overrides_win() -> None:
    cfg = load_ctl_config(str(EXAMPLES / "logagent.ini"), {"prefix": "/other"})
    assert cfg.etcd.endpoints[0] == "127.0.0.1:2379" and cfg.etcd.prefix == "/other"
    assert load_ctl_config(str(EXAMPLES / "logtransfer.ini")).etcd.prefix == "/logferry"


def test_ctl_refusals(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_ctl_config(None, {})
    assert str(info.value).startswith("command line (no config file): [etcd] endpoints: missing;")
    with pytest.raises(ConfigError) as info:
        load_ctl_config(str(EXAMPLES / "logagent.ini"), {"endpoints": "nope"})
    assert str(info.value).startswith("command line: [etcd] endpoints: 'nope' has no port")
    with pytest.raises(ConfigError) as info:
        load_ctl_config(None, {"endpont": "a:1"})
    assert str(info.value).startswith('command line: [etcd] endpont: unknown key (did you mean "endpoints"?)')
    f = tmp_path / "ctl.ini"
    f.write_text("[etcd]\nendpoints = a:1\n[agnet]\n")
    with pytest.raises(ConfigError, match=r"\[agnet\]: unknown section \(did you mean \[agent\]\?\)"):
        load_ctl_config(str(f))


# --- fuzzing ------------------------------------------------------------------------------------

ini_lines = st.one_of(
    st.sampled_from(["[etcd]", "[kafka]", "[agent]", "[transfer]", "[DEFAULT]", "[", "]", "= x", " x", "#c",
                     ";c"]),
    st.builds(lambda k, v: f"{k} = {v}", st.sampled_from(
        ["endpoints", "prefix", "user", "password", "password_file", "ca_file", "dial_timeout_s",
         "bootstrap_servers", "security_protocol", "sasl_mechanism", "sasl_username", "sasl_password",
         "ssl_ca_location", "compression", "producer.linger.ms", "consumer.x", "producer.acks",
         "data_dir", "host_ip", "hostname", "metrics_address", "log_level", "max_inflight_bytes",
         "scan_interval_s", "max_open_files", "es_hosts", "es_api_key", "es_username", "id",
         "es_verify_certs"]),
        st.text(max_size=15) | st.sampled_from(["a:1", "10.0.0.1:2379", "http://e:9200", "[::1]:1", "5",
                                                "64MiB",
                                                "SASL_SSL", "PLAIN", "true", "/tmp", "1e400", "-1"])),
    st.text(max_size=30),
)


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_ini_text_raises_only_config_error(text: str) -> None:
    for parse in (parse_agent_config, parse_transfer_daemon_config):
        try:
            parse(text, P)
        except ConfigError as e:
            assert str(e).startswith(P)


@FUZZ
@given(st.lists(ini_lines, max_size=14))
def test_fuzz_ini_structured(lines: list[str]) -> None:
    text = "\n".join(lines)
    for parse in (parse_agent_config, parse_transfer_daemon_config):
        try:
            parse(text, P)
        except ConfigError as e:
            assert str(e).startswith(P)


@pytest.mark.parametrize("servers", [",", " , ,", "   "])
def test_an_address_list_of_only_separators_is_refused(servers: str) -> None:
    # found by tests/test_fuzz_ini.py: "," parsed as an empty list, and librdkafka got "" servers
    msg = transfer_error(f"[etcd]\nendpoints = 10.0.0.1:2379\n[kafka]\nbootstrap_servers = {servers}\n"
                         "[transfer]\nes_hosts = http://10.0.0.3:9200\n")
    assert "bootstrap_servers" in msg and T in msg, msg
