"""The bootstrap INI files of logagent, logtransfer and logctl.

These hold what a daemon needs before it can reach etcd (endpoints, credentials) and the
secrets that must never be in etcd. A daemon with a bad INI must refuse to start with one line
that says which file, which ``[section] key``, what is wrong and what to do; ``ConfigError``
messages are written for that line. Typos are caught (an unknown key is an error that names the
closest valid key) because a misspelt ``sasl_pasword`` silently ignored costs an afternoon.

Conventions shared by all keys:

* An empty value (``key =``) means "not set", so templates can render optional keys blank;
  ``metrics_address =`` is the one exception: it disables the metrics endpoint.
* Lists (endpoints, servers, hosts) are separated by commas and/or whitespace/newlines.
* Comments go on their own line (``#`` or ``;``): inline comments would eat passwords with ``#``.
* Every secret ``X`` (``password``, ``sasl_password``, ``ssl_key_password``, ``es_api_key``,
  ``es_password``) may instead be given as ``X_file``: a file holding it (trailing newline
  stripped). A relative ``X_file`` is looked up in ``$CREDENTIALS_DIRECTORY``, which is where
  systemd's ``LoadCredential=`` puts credentials.
"""

from __future__ import annotations

import ast
import configparser
import contextlib
import difflib
import ipaddress
import math
import os
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

from logferry.keys import Keys, canonical_ip

__all__ = [
    "DEFAULT_AGENT_CONFIG",
    "DEFAULT_CONSOLE_CONFIG",
    "DEFAULT_TRANSFER_CONFIG",
    "AgentConfig",
    "AgentSettings",
    "ConfigError",
    "ConsoleConfig",
    "ConsoleSettings",
    "ConsoleUser",
    "CtlConfig",
    "EtcdSettings",
    "KafkaSettings",
    "TransferDaemonConfig",
    "TransferSettings",
    "load_agent_config",
    "load_console_config",
    "load_ctl_config",
    "load_transfer_config",
    "parse_agent_config",
    "parse_console_config",
    "parse_transfer_daemon_config",
    "split_host_port",
]

DEFAULT_AGENT_CONFIG = "/etc/logferry/logagent.ini"
DEFAULT_TRANSFER_CONFIG = "/etc/logferry/logtransfer.ini"
DEFAULT_CONSOLE_CONFIG = "/etc/logferry/console.ini"
MIB = 1024 * 1024
_MAX_SECRET_FILE = 64 * 1024
T = TypeVar("T")


class ConfigError(Exception):
    """A bootstrap INI the daemon refuses; the message is the one line the operator reads."""

    def __init__(self, message: str, *, path: str | None = None, section: str | None = None,
                 key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.section = section
        self.key = key


class _Bad(Exception):
    """A converter's complaint: what is wrong and what to do; the caller adds file/section/key."""


# --- value converters: str -> value, or _Bad ---------------------------------------------------


def _items(value: str) -> list[str]:
    return [v for v in re.split(r"[,\s]+", value) if v]


_HOSTNAME_RE = re.compile(r"(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                          r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")


def split_host_port(text: str) -> tuple[str, int]:
    """``"host:port"`` or ``"[v6]:port"`` to ``(host, port)``; ``ValueError`` saying what to write.

    Shared with the etcd and Kafka clients so every part reads addresses the same way.
    """
    text = text.strip()
    example = "write host:port such as 10.0.0.5:2379, or [2001:db8::5]:2379 for IPv6"
    if "://" in text:
        raise ValueError(f"{text!r} has a URL scheme; {example} (TLS is a separate setting)")
    if text.startswith("["):
        end = text.find("]")
        if end == -1 or text[end + 1:end + 2] != ":":
            raise ValueError(f"{text!r} is not host:port; {example}")
        host, port_text = text[1:end], text[end + 2:]
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise ValueError(f"{host!r} in brackets is not an IPv6 address; {example}") from None
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{text!r} has no port; {example}")
        if ":" in host:
            raise ValueError(f"{text!r}: put an IPv6 address in brackets; {example}")
        if not _HOSTNAME_RE.fullmatch(host):
            raise ValueError(f"{host!r} is not a host name or IP address; {example}")
    if not re.fullmatch(r"[0-9]{1,5}", port_text) or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: port {port_text!r} is not a number from 1 to 65535; {example}")
    return host, int(port_text)


def _hostport(value: str) -> str:
    try:
        split_host_port(value)
    except ValueError as e:
        raise _Bad(str(e)) from None
    return value.strip()


def _hostport_list(value: str) -> list[str]:
    out: list[str] = []
    for item in _items(value):
        _hostport(item)
        if item in out:
            raise _Bad(f"{item!r} is listed twice; list each address once")
        out.append(item)
    if not out:
        raise _Bad(f"{value!r} names no address; write a comma-separated list of host:port")
    return out


def _etcd_endpoints(value: str) -> list[str]:
    """host:port list; ``http://``/``https://`` as etcdctl writes them are accepted and dropped.

    The scheme carries no setting of its own (TLS is on when ca_file is set), so ``https://``
    without ca_file is refused by the section reader rather than silently talking plaintext.
    """
    stripped = []
    for item in _items(value):
        scheme, sep, rest = item.partition("://")
        if sep:
            if scheme.lower() not in ("http", "https"):
                raise _Bad(f"{item!r}: etcd speaks http or https, not {scheme}; write host:port")
            item = rest.rstrip("/")
        stripped.append(item)
    return _hostport_list(",".join(stripped))


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def conv(value: str) -> int:
        try:
            n = int(value.replace("_", ""))
        except ValueError:
            raise _Bad(f"{value!r} is not a whole number; write one from {lo} to {hi}") from None
        if not lo <= n <= hi:
            raise _Bad(f"{n} is out of range; write a number from {lo} to {hi}")
        return n

    return conv


_SIZE_RE = re.compile(r"([0-9]{1,18})\s*(?:([kmg])(?:i?b)?|b)?", re.IGNORECASE)


def _size(lo: int, hi: int) -> Callable[[str], int]:
    """Byte counts, plain or with binary units (64MiB, 64M, 512KiB)."""

    def conv(value: str) -> int:
        m = _SIZE_RE.fullmatch(value.replace("_", ""))
        if not m:
            raise _Bad(f"{value!r} is not a size; write bytes as a number or with a unit, e.g. 64MiB")
        n = int(m.group(1)) * {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB}[(m.group(2) or "").lower()]
        if not lo <= n <= hi:
            raise _Bad(f"{value} is out of range; write a size from {lo} to {hi} bytes")
        return n

    return conv


def _seconds(lo_exclusive: float, hi: float) -> Callable[[str], float]:
    def conv(value: str) -> float:
        try:
            x = float(value)
        except ValueError:
            raise _Bad(f"{value!r} is not a number of seconds; write e.g. 5 or 0.5") from None
        if not math.isfinite(x) or not lo_exclusive < x <= hi:
            raise _Bad(f"{value} is out of range; write seconds above {lo_exclusive:g}, at most {hi:g}")
        return x

    return conv


def _bool(value: str) -> bool:
    states = configparser.ConfigParser.BOOLEAN_STATES
    if value.lower() not in states:
        raise _Bad(f"{value!r} is not a boolean; write true or false")
    return states[value.lower()]


def _ip(value: str) -> str:
    try:
        return canonical_ip(value)
    except ValueError as e:
        raise _Bad(f"{e}; or remove the line to use the address of the route to etcd") from None


def _choice(options: Iterable[str], *, upper: bool) -> Callable[[str], str]:
    options = tuple(options)

    def conv(value: str) -> str:
        v = value.upper() if upper else value.lower()
        if v not in options:
            raise _Bad(f"{value!r} is not one of {', '.join(options)}")
        return v

    return conv


def _no_controls(value: str, what: str) -> str:
    if any(ord(c) < 32 or c == "\x7f" for c in value):
        raise _Bad(f"{what} contains a control character; write it on one line")
    return value


def _abs_dir(value: str) -> str:
    _no_controls(value, "the path")
    if not value.startswith("/"):
        raise _Bad(f"{value!r} is a relative path; write an absolute directory such as "
                   "/var/lib/logferry/agent")
    return value


def _existing_file(value: str) -> str:
    _no_controls(value, "the path")
    if not value.startswith("/"):
        raise _Bad(f"{value!r} is a relative path; write the file's absolute path")
    try:
        ok = os.path.isfile(value)
    except (OSError, ValueError):
        ok = False
    if not ok:
        raise _Bad(f"{value} does not exist or is not a file; fix the path or remove the line")
    return value


def _name(value: str) -> str:
    if any(c.isspace() for c in value) or "/" in value or len(value) > 253:
        raise _Bad(f"{value!r} must be a single word without spaces or '/', at most 253 chars")
    return _no_controls(value, "the name")


def _transfer_id(value: str) -> str:
    try:
        Keys().transfer_status(value)
    except ValueError as e:
        raise _Bad(str(e)) from None
    return _name(value)


def _es_hosts(value: str) -> list[str]:
    example = "write URLs with scheme, host and port such as https://es1:9200"
    out = []
    for item in _items(value):
        try:
            u = urlsplit(item)
            port = u.port
        except ValueError:
            raise _Bad(f"{item!r} is not a URL; {example}") from None
        if u.scheme not in ("http", "https") or not u.hostname or port is None:
            raise _Bad(f"{item!r} lacks a scheme, host or port (the 8.x client needs all three); {example}")
        out.append(item)
    if not out:
        raise _Bad(f"empty; {example}")
    return out


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(value: str) -> str:
    v = "WARNING" if value.upper() == "WARN" else value.upper()
    if v not in _LOG_LEVELS:
        raise _Bad(f"{value!r} is not a log level; write one of {', '.join(_LOG_LEVELS)}")
    return v


def _prefix(value: str) -> str:
    try:
        return Keys(value).prefix or "/"
    except ValueError as e:
        raise _Bad(str(e)) from None


# --- reading a section -------------------------------------------------------------------------

_REQUIRED: Any = object()


class _Section:
    """One ``[section]`` of one or more sources, read key by key with located errors."""

    def __init__(self, name: str, items: Mapping[str, str], sources: Mapping[str, str], default_src: str,
                 path: str | None) -> None:
        self.name = name
        self.items = dict(items)
        self.sources = dict(sources)
        self.default_src = default_src
        self.path = path

    def error(self, key: str, problem: str) -> ConfigError:
        src = self.sources.get(key, self.default_src)
        return ConfigError(f"{src}: [{self.name}] {key}: {problem}",
                           path=self.path, section=self.name, key=key)

    def raw(self, key: str) -> str | None:
        value = self.items.get(key)
        return value if value else None

    def get(self, key: str, conv: Callable[[str], T], default: Any = _REQUIRED, missing: str = "",
            empty: Any = _REQUIRED) -> T:
        """The converted value; ``default`` when absent or empty, ``empty`` (if given) when empty."""
        value = self.items.get(key)
        if value == "" and empty is not _REQUIRED:
            return empty  # type: ignore[no-any-return]
        if not value:
            if default is _REQUIRED:
                raise self.error(key, f"missing; {missing}")
            return default  # type: ignore[no-any-return]
        try:
            return conv(value)
        except _Bad as e:
            raise self.error(key, str(e)) from None

    def opt(self, key: str, conv: Callable[[str], T] | None = None) -> T | str | None:
        return self.get(key, conv or (lambda v: _no_controls(v, "the value")), None)

    def secret(self, key: str) -> str | None:
        """``key`` itself, or the content of the file named by ``key_file``."""
        direct, via = self.raw(key), self.raw(f"{key}_file")
        if direct and via:
            raise self.error(key, f"set both {key} and {key}_file; keep one")
        if not via:
            return direct
        return self._read_secret(f"{key}_file", via)

    def _read_secret(self, key: str, where: str) -> str:
        path = where
        if not path.startswith("/"):
            creds = os.environ.get("CREDENTIALS_DIRECTORY")
            if not creds:
                raise self.error(key, f"{where!r} is relative and $CREDENTIALS_DIRECTORY is not set; "
                                      "write an absolute path, or use systemd LoadCredential= and "
                                      "the credential's name")
            path = os.path.join(creds, where)
        try:
            if "\x00" in path or not os.path.isfile(path):
                raise self.error(key, f"{path} does not exist or is not a file; fix the path")
            with open(path, "rb") as f:
                data = f.read(_MAX_SECRET_FILE + 1)
        except OSError as e:
            raise self.error(key, f"cannot read {path} ({e.strerror}); make it readable by the "
                                  "daemon's user") from None
        if len(data) > _MAX_SECRET_FILE:
            raise self.error(key, f"{path} is over 64 KiB, which is no secret; check the path")
        try:
            secret = data.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            raise self.error(key, f"{path} is not UTF-8 text; store the secret as text") from None
        if not secret:
            raise self.error(key, f"{path} is empty; put the secret in it")
        return secret

    def require_pair(self, a: str, b: str) -> None:
        """Settings that only work together (user and password, certificate and key)."""

        def given(k: str) -> bool:
            return bool(self.raw(k) or self.raw(f"{k}_file"))

        for x, y in ((a, b), (b, a)):
            if given(x) and not given(y):
                raise self.error(x, f"set without {y}; set both or neither")


# --- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class EtcdSettings:
    """How to reach etcd. Endpoints are ``host:port``, scheme dropped (aetcd's failover wants IPs)."""

    endpoints: list[str]
    prefix: str = "/logferry"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    dial_timeout_s: float = 5.0

    def keys(self) -> Keys:
        """The key layout under this prefix."""
        return Keys(self.prefix)

    def endpoint_pairs(self) -> list[tuple[str, int]]:
        """Endpoints as (host, port)."""
        return [split_host_port(e) for e in self.endpoints]


_KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# GSSAPI is left out on purpose: the librdkafka in confluent-kafka's wheels is built without it.
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER")
_COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")
# librdkafka keys that have a named INI key: the passthrough must not set them a second way.
_NAMED_KAFKA_KEYS = {
    "bootstrap.servers": "bootstrap_servers", "metadata.broker.list": "bootstrap_servers",
    "security.protocol": "security_protocol", "sasl.mechanism": "sasl_mechanism",
    "sasl.mechanisms": "sasl_mechanism", "sasl.username": "sasl_username", "sasl.password": "sasl_password",
    "ssl.ca.location": "ssl_ca_location", "ssl.certificate.location": "ssl_certificate_location",
    "ssl.key.location": "ssl_key_location", "ssl.key.password": "ssl_key_password",
    "compression.type": "compression", "compression.codec": "compression",
}
# librdkafka keys the no-loss/no-duplicate design depends on (docs/design.md, Delivery).
_FIXED_KAFKA_KEYS = {
    "producer.acks": "acks=all", "producer.request.required.acks": "acks=all",
    "producer.enable.idempotence": "an idempotent producer",
    "producer.message.timeout.ms": "never giving up on a line (message.timeout.ms=0; backpressure instead)",
    "consumer.enable.auto.commit": "commits only after Elasticsearch accepted the records",
    "consumer.enable.auto.offset.store": "commits only after Elasticsearch accepted the records",
    "consumer.group.id": "[transfer] group_id",
}


@dataclass(frozen=True)
class KafkaSettings:
    """Brokers and client security, plus ``producer.*``/``consumer.*`` librdkafka passthrough."""

    bootstrap_servers: list[str]
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_location: str | None = None
    ssl_certificate_location: str | None = None
    ssl_key_location: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)
    compression: str = "lz4"
    extra: dict[str, str] = field(default_factory=dict, repr=False)

    def common_config(self) -> dict[str, str]:
        """librdkafka settings shared by producers and consumers."""
        conf = {"bootstrap.servers": ",".join(self.bootstrap_servers),
                "security.protocol": self.security_protocol}
        for k, v in (("sasl.mechanism", self.sasl_mechanism), ("sasl.username", self.sasl_username),
                     ("sasl.password", self.sasl_password), ("ssl.ca.location", self.ssl_ca_location),
                     ("ssl.certificate.location", self.ssl_certificate_location),
                     ("ssl.key.location", self.ssl_key_location),
                     ("ssl.key.password", self.ssl_key_password)):
            if v is not None:
                conf[k] = v
        return conf

    def producer_config(self) -> dict[str, str]:
        """For ``confluent_kafka.Producer``; the caller adds its own fixed keys (acks, idempotence)."""
        conf = self.common_config()
        conf["compression.type"] = self.compression
        conf.update(_strip_prefix(self.extra, "producer."))
        return conf

    def consumer_config(self) -> dict[str, str]:
        """For ``confluent_kafka.Consumer``; the caller adds group.id and the commit settings."""
        conf = self.common_config()
        conf.update(_strip_prefix(self.extra, "consumer."))
        return conf


def _strip_prefix(extra: Mapping[str, str], prefix: str) -> dict[str, str]:
    return {k[len(prefix):]: v for k, v in extra.items() if k.startswith(prefix)}


@dataclass(frozen=True)
class AgentSettings:
    """The ``[agent]`` section: local state, identity overrides, limits."""

    data_dir: str = "/var/lib/logferry/agent"
    host_ip: str | None = None
    hostname: str | None = None
    metrics_address: str | None = "127.0.0.1:9601"
    log_level: str = "INFO"
    status_interval_s: float = 5.0
    max_inflight_bytes: int = 8 * MIB  # (16 MiB until 0.2: 114 MB peak RSS with Kafka stalled, 8 MiB 87 MB)
    scan_interval_s: float = 1.0
    close_inactive_s: float = 300.0
    max_open_files: int = 512


@dataclass(frozen=True)
class TransferSettings:
    """The ``[transfer]`` section: identity, consumer group, Elasticsearch access."""

    es_hosts: list[str]
    id: str = field(default_factory=socket.gethostname)
    group_id: str = "logferry-transfer"
    es_api_key: str | None = field(default=None, repr=False)
    es_username: str | None = None
    es_password: str | None = field(default=None, repr=False)
    es_ca_file: str | None = None
    es_verify_certs: bool = True
    metrics_address: str | None = "127.0.0.1:9602"
    data_dir: str = "/var/lib/logferry/transfer"
    log_level: str = "INFO"
    status_interval_s: float = 5.0


@dataclass(frozen=True)
class AgentConfig:
    """Everything logagent reads from its INI."""

    etcd: EtcdSettings
    kafka: KafkaSettings
    agent: AgentSettings
    path: str


@dataclass(frozen=True)
class TransferDaemonConfig:
    """Everything logtransfer reads from its INI (the etcd-held ``schema.TransferConfig`` is apart)."""

    etcd: EtcdSettings
    kafka: KafkaSettings
    transfer: TransferSettings
    path: str


@dataclass(frozen=True)
class EsSettings:
    """How to reach Elasticsearch.

    From logtransfer's ``[transfer] es_*`` keys, logctl's ``--es``, the console's ``[elasticsearch]``.
    """

    hosts: list[str]
    api_key: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    verify_certs: bool = True

    def auth_kwargs(self) -> dict[str, Any]:
        """The ``Elasticsearch()`` arguments for logging in and TLS (an API key wins over a user)."""
        kw: dict[str, Any] = {"verify_certs": self.verify_certs}
        if self.api_key:
            kw["api_key"] = self.api_key
        elif self.username:
            kw["basic_auth"] = (self.username, self.password or "")
        if self.ca_file:
            kw["ca_certs"] = self.ca_file
        if not self.verify_certs:
            kw["ssl_show_warn"] = False
        return kw


@dataclass(frozen=True)
class CtlConfig:
    """What logctl needs: etcd access. ``path`` is None when everything came from the command line."""

    etcd: EtcdSettings
    path: str | None


@dataclass(frozen=True)
class ConsoleUser:
    """A console login: its role (``read``: search, tail, status; ``admin``: also writes to etcd)."""

    name: str
    role: str
    password_hash: str = field(repr=False)


@dataclass(frozen=True)
class ConsoleSettings:
    listen: str = "127.0.0.1:8430"
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    search_timeout_s: float = 30.0
    session_secret: str | None = field(default=None, repr=False)
    session_hours: float = 12.0
    log_level: str = "INFO"
    users: tuple[ConsoleUser, ...] = ()

    @property
    def loopback(self) -> bool:
        host, _ = split_host_port(self.listen)
        try:
            return ipaddress.ip_address(host.strip("[]")).is_loopback
        except ValueError:
            return host == "localhost"


@dataclass(frozen=True)
class ConsoleConfig:
    etcd: EtcdSettings
    es: EsSettings
    console: ConsoleSettings
    path: str
    kafka: KafkaSettings | None = None  # optional: to show the latest dead letters


# --- section readers ---------------------------------------------------------------------------

_ETCD_KEYS = ("endpoints", "prefix", "user", "password", "password_file", "ca_file", "cert_file", "key_file",
              "dial_timeout_s")
_KAFKA_KEYS = ("bootstrap_servers", "security_protocol", "sasl_mechanism", "sasl_username", "sasl_password",
               "sasl_password_file", "ssl_ca_location", "ssl_certificate_location", "ssl_key_location",
               "ssl_key_password", "ssl_key_password_file", "compression")
_AGENT_KEYS = ("data_dir", "host_ip", "hostname", "metrics_address", "log_level", "status_interval_s",
               "max_inflight_bytes", "scan_interval_s", "close_inactive_s", "max_open_files")
_TRANSFER_KEYS = ("id", "group_id", "es_hosts", "es_api_key", "es_api_key_file", "es_username",
                  "es_password", "es_password_file", "es_ca_file", "es_verify_certs", "metrics_address",
                  "data_dir", "log_level", "status_interval_s")
_CONSOLE_KEYS = ("listen", "tls_cert_file", "tls_key_file", "search_timeout_s", "session_secret",
                 "session_secret_file", "session_hours", "log_level")
_ES_KEYS = ("hosts", "api_key", "api_key_file", "username", "password", "password_file", "ca_file", "verify_certs")
_SECTION_KEYS = {"etcd": _ETCD_KEYS, "kafka": _KAFKA_KEYS, "agent": _AGENT_KEYS, "transfer": _TRANSFER_KEYS,
                 "console": _CONSOLE_KEYS, "elasticsearch": _ES_KEYS}


def _read_etcd(s: _Section) -> EtcdSettings:
    endpoints = s.get("endpoints", _etcd_endpoints, missing="set it to a comma-separated list of host:port "
                                                            "(etcd client addresses)")
    if "https://" in (s.raw("endpoints") or "").lower() and not s.raw("ca_file"):
        raise s.error("endpoints", "https:// given but no ca_file; set [etcd] ca_file to the CA that signed "
                                   "the etcd certificates (that is what switches TLS on)")
    s.require_pair("user", "password")
    s.require_pair("cert_file", "key_file")
    return EtcdSettings(
        endpoints=endpoints,
        prefix=s.get("prefix", _prefix, "/logferry"),
        user=s.opt("user", _name),
        password=s.secret("password"),
        ca_file=s.opt("ca_file", _existing_file),
        cert_file=s.opt("cert_file", _existing_file),
        key_file=s.opt("key_file", _existing_file),
        dial_timeout_s=s.get("dial_timeout_s", _seconds(0, 300), 5.0),
    )


def _read_kafka(s: _Section, passthrough: tuple[str, ...]) -> KafkaSettings:
    servers = s.get("bootstrap_servers", _hostport_list,
                    missing="set it to a comma-separated list of host:port")
    extra: dict[str, str] = {}
    for key, value in s.items.items():
        if key in _KAFKA_KEYS:
            continue
        head, _, rest = key.partition(".")
        if f"{head}." not in passthrough or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", rest or "-"):
            continue  # reported as unknown by _check_keys
        if key in _FIXED_KAFKA_KEYS:
            raise s.error(key, f"logferry sets this itself ({_FIXED_KAFKA_KEYS[key]}) for no loss and no "
                               "duplicates; remove the line")
        if rest in _NAMED_KAFKA_KEYS:
            raise s.error(key, f"use [kafka] {_NAMED_KAFKA_KEYS[rest]} instead, so both clients get it")
        extra[key] = value
    protocol = s.get("security_protocol", _choice(_KAFKA_PROTOCOLS, upper=True), "PLAINTEXT")
    sasl, ssl = protocol.startswith("SASL_"), protocol.endswith("SSL")
    for key in ("sasl_mechanism", "sasl_username", "sasl_password", "sasl_password_file"):
        if s.raw(key) and not sasl:
            raise s.error(key, f"only used with SASL; set security_protocol = SASL_SSL (now {protocol}) "
                               "or remove the line")
    for key in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location", "ssl_key_password",
                "ssl_key_password_file"):
        if s.raw(key) and not ssl:
            raise s.error(key, "only used with TLS; set security_protocol = SSL or SASL_SSL "
                               f"(now {protocol}) or remove the line")
    mechanism = s.get("sasl_mechanism", _choice(_SASL_MECHANISMS, upper=True), None)
    if sasl and mechanism is None:
        raise s.error("sasl_mechanism", f"missing; {protocol} needs one of {', '.join(_SASL_MECHANISMS)}")
    password = s.secret("sasl_password")
    username = s.opt("sasl_username")
    if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
        if not username:
            raise s.error("sasl_username", f"missing; SASL {mechanism} needs a user name")
        if not password:
            raise s.error("sasl_password", f"missing; SASL {mechanism} needs sasl_password or "
                                           "sasl_password_file")
    s.require_pair("ssl_certificate_location", "ssl_key_location")
    return KafkaSettings(
        bootstrap_servers=servers,
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        sasl_username=username,
        sasl_password=password,
        ssl_ca_location=s.opt("ssl_ca_location", _existing_file),
        ssl_certificate_location=s.opt("ssl_certificate_location", _existing_file),
        ssl_key_location=s.opt("ssl_key_location", _existing_file),
        ssl_key_password=s.secret("ssl_key_password"),
        compression=s.get("compression", _choice(_COMPRESSIONS, upper=False), "lz4"),
        extra=extra,
    )


def _read_agent(s: _Section) -> AgentSettings:
    d = AgentSettings()
    return AgentSettings(
        data_dir=s.get("data_dir", _abs_dir, d.data_dir),
        host_ip=s.get("host_ip", _ip, None),
        hostname=s.get("hostname", _name, None),
        metrics_address=s.get("metrics_address", _hostport, d.metrics_address, empty=None),
        log_level=s.get("log_level", _log_level, d.log_level),
        status_interval_s=s.get("status_interval_s", _seconds(0, 3600), d.status_interval_s),
        max_inflight_bytes=s.get("max_inflight_bytes", _size(MIB, 16 * 1024 * MIB), d.max_inflight_bytes),
        scan_interval_s=s.get("scan_interval_s", _seconds(0, 3600), d.scan_interval_s),
        close_inactive_s=s.get("close_inactive_s", _seconds(0, 7 * 86400), d.close_inactive_s),
        max_open_files=s.get("max_open_files", _int(1, 1_000_000), d.max_open_files),
    )


def _read_transfer(s: _Section) -> TransferSettings:
    if (s.raw("es_api_key") or s.raw("es_api_key_file")) and s.raw("es_username"):
        raise s.error("es_username", "set together with es_api_key; use one way to log in, remove the other")
    s.require_pair("es_username", "es_password")
    return TransferSettings(
        es_hosts=s.get("es_hosts", _es_hosts, missing="set it to a comma-separated list of URLs such as "
                                                       "https://es1:9200"),
        id=s.get("id", _transfer_id, socket.gethostname()),
        group_id=s.get("group_id", _name, "logferry-transfer"),
        es_api_key=s.secret("es_api_key"),
        es_username=s.opt("es_username"),
        es_password=s.secret("es_password"),
        es_ca_file=s.opt("es_ca_file", _existing_file),
        es_verify_certs=s.get("es_verify_certs", _bool, True),
        metrics_address=s.get("metrics_address", _hostport, "127.0.0.1:9602", empty=None),
        data_dir=s.get("data_dir", _abs_dir, "/var/lib/logferry/transfer"),
        log_level=s.get("log_level", _log_level, "INFO"),
        status_interval_s=s.get("status_interval_s", _seconds(0, 3600), 5.0),
    )


_ROLES = ("read", "admin")
_HASH = re.compile(r"pbkdf2_sha256\$\d{5,7}\$[A-Za-z0-9+/=_-]{8,}\$[A-Za-z0-9+/=_-]{16,}")


def _read_console(s: _Section, users: Mapping[str, str], path: str) -> ConsoleSettings:
    s.require_pair("tls_cert_file", "tls_key_file")
    parsed: list[ConsoleUser] = []
    for name, value in users.items():
        role, _, pw_hash = value.strip().partition(" ")
        where = f"{path}: [users] {name}"
        if not re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", name):
            raise ConfigError(f"{where}: a user name of letters, digits and . _ @ - (at most 64)", path=path,
                              section="users", key=name)
        if role not in _ROLES:
            raise ConfigError(f"{where}: starts with the role, read or admin, then the password hash "
                              "(logconsole hash-password makes one)", path=path, section="users", key=name)
        if not _HASH.fullmatch(pw_hash.strip()):
            raise ConfigError(f"{where}: the password hash is not one logconsole hash-password makes "
                              "(pbkdf2_sha256$iterations$salt$hash); never a plain password", path=path,
                              section="users", key=name)
        parsed.append(ConsoleUser(name, role, pw_hash.strip()))
    listen = s.get("listen", _hostport, "127.0.0.1:8430")
    settings = ConsoleSettings(
        listen=listen,
        tls_cert_file=s.opt("tls_cert_file", _existing_file),
        tls_key_file=s.opt("tls_key_file", _existing_file),
        search_timeout_s=s.get("search_timeout_s", _seconds(0, 600), 30.0),
        session_secret=s.secret("session_secret"),
        session_hours=s.get("session_hours", _seconds(0, 24 * 365), 12.0),
        log_level=s.get("log_level", _log_level, "INFO"),
        users=tuple(parsed),
    )
    if not settings.loopback and not parsed:
        raise s.error("listen", f"{listen} is not a loopback address and no [users] are set: anyone who can reach "
                                "it could read every log and change every collect list. Add [users] "
                                "(logconsole hash-password) or listen on 127.0.0.1 behind a proxy that "
                                "authenticates")
    return settings


def _read_es_section(s: _Section) -> EsSettings:
    if (s.raw("api_key") or s.raw("api_key_file")) and s.raw("username"):
        raise s.error("username", "set together with api_key; use one way to log in, remove the other")
    s.require_pair("username", "password")
    return EsSettings(
        hosts=s.get("hosts", _es_hosts, missing="set it to a comma-separated list of URLs such as https://es1:9200"),
        api_key=s.secret("api_key"),
        username=s.opt("username"),
        password=s.secret("password"),
        ca_file=s.opt("ca_file", _existing_file),
        verify_certs=s.get("verify_certs", _bool, True),
    )


def parse_console_config(text: str, path: str = "<string>") -> ConsoleConfig:
    """Validate the console's INI given as text: ``[console]``, ``[users]``, ``[etcd]``, ``[elasticsearch]``,
    and optionally ``[kafka]`` (to show the latest dead letters)."""
    sections = ("console", "users", "etcd", "elasticsearch", "kafka")
    parser = _parse_ini(text, path, sections)
    _check_sections(parser, path, sections)
    users = dict(parser.items("users")) if parser.has_section("users") else {}
    kafka = None
    if parser.has_section("kafka"):
        kafka = _read_kafka(_section(parser, "kafka", path, ("consumer.",)), ("consumer.",))
    return ConsoleConfig(etcd=_read_etcd(_section(parser, "etcd", path)),
                         es=_read_es_section(_section(parser, "elasticsearch", path)),
                         console=_read_console(_section(parser, "console", path), users, path), path=path,
                         kafka=kafka)


def load_console_config(path: str = DEFAULT_CONSOLE_CONFIG) -> ConsoleConfig:
    """Read and validate the console's INI; ``ConfigError`` says what to fix, and where."""
    return parse_console_config(_read_text(path, "logferry/examples/console.ini"), path)


# --- files -------------------------------------------------------------------------------------


def _read_text(path: str, example: str) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ConfigError(f"{path}: does not exist; create it (a commented example ships as {example})",
                          path=path) from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory; give the path of the INI file", path=path) from None
    except PermissionError:
        raise ConfigError(f"{path}: cannot read it (permission denied); make it readable by the "
                          "daemon's user (it holds secrets: mode 0640, group of that user)",
                          path=path) from None
    except (OSError, ValueError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise ConfigError(f"{path}: cannot read it ({reason}); check the path", path=path) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (bad byte at offset {e.start}); save it as UTF-8",
                          path=path) from None


def _parse_ini(text: str, path: str, allowed: Iterable[str]) -> configparser.ConfigParser:
    # No interpolation: a '%' in a password is a '%'. No real DEFAULT section: a [DEFAULT] the
    # operator writes is then an unknown section instead of keys copied into every section.
    parser = configparser.ConfigParser(interpolation=None, default_section="\x00logferry-no-default",
                                       strict=True)
    try:
        parser.read_string(text, source=path)
    except configparser.MissingSectionHeaderError as e:
        raise ConfigError(f"{path}: line {e.lineno}: a setting before any [section]; put settings under "
                          f"{', '.join(f'[{s}]' for s in allowed)}", path=path) from None
    except configparser.DuplicateSectionError as e:
        raise ConfigError(f"{path}: line {e.lineno}: [{e.section}] appears twice; merge the two into one",
                          path=path, section=e.section) from None
    except configparser.DuplicateOptionError as e:
        raise ConfigError(f"{path}: line {e.lineno}: [{e.section}] {e.option}: set twice in one section; "
                          "keep one", path=path, section=e.section, key=e.option) from None
    except configparser.ParsingError as e:
        lineno, line = e.errors[0] if e.errors else (0, "''")
        with contextlib.suppress(ValueError, SyntaxError):  # configparser keeps the line's repr
            line = ast.literal_eval(line)
        raise ConfigError(f"{path}: line {lineno}: cannot parse {str(line).strip()[:80]!r}; write "
                          "key = value, a [section] header, or a comment starting with # or ;",
                          path=path) from None
    except configparser.Error as e:  # any other syntax complaint configparser may grow
        raise ConfigError(f"{path}: not a valid INI file ({e.message}); compare with the shipped example",
                          path=path) from None
    return parser


def _suggest(word: str, choices: Iterable[str], fmt: str = '"{}"') -> str:
    guess = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {fmt.format(guess[0])}?)" if guess else ""


def _check_sections(parser: configparser.ConfigParser, path: str, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    for name in parser.sections():
        if name not in allowed:
            hint = _suggest(name, allowed, "[{}]")
            raise ConfigError(f"{path}: [{name}]: unknown section{hint}; this file takes "
                              f"{', '.join(f'[{a}]' for a in allowed)}", path=path, section=name)


def _check_keys(section: str, keys: Iterable[str], src: str, path: str | None,
                passthrough: tuple[str, ...] = ()) -> None:
    allowed = _SECTION_KEYS[section]
    for key in keys:
        if key in allowed:
            continue
        head, dot, rest = key.partition(".")
        if dot and f"{head}." in passthrough and re.fullmatch(r"[a-z0-9][a-z0-9._-]*", rest):
            continue
        forms = " / ".join(p + "<key>" for p in passthrough)
        extra = f", or librdkafka settings as {forms}" if passthrough else ""
        raise ConfigError(f"{src}: [{section}] {key}: unknown key{_suggest(key, allowed)}; valid keys: "
                          f"{', '.join(allowed)}{extra}", path=path, section=section, key=key)


def _section(parser: configparser.ConfigParser, name: str, path: str, passthrough: tuple[str, ...] = ()
             ) -> _Section:
    items = dict(parser.items(name)) if parser.has_section(name) else {}
    _check_keys(name, items, path, path, passthrough)
    return _Section(name, items, {}, path, path)


def parse_agent_config(text: str, path: str = "<string>") -> AgentConfig:
    """Validate logagent's INI given as text; ``path`` is only used in messages."""
    parser = _parse_ini(text, path, ("etcd", "kafka", "agent"))
    _check_sections(parser, path, ("etcd", "kafka", "agent"))
    etcd = _section(parser, "etcd", path)
    kafka = _section(parser, "kafka", path, ("producer.",))
    agent = _section(parser, "agent", path)
    return AgentConfig(etcd=_read_etcd(etcd), kafka=_read_kafka(kafka, ("producer.",)),
                       agent=_read_agent(agent), path=path)


def load_agent_config(path: str = DEFAULT_AGENT_CONFIG) -> AgentConfig:
    """Read and validate logagent's INI; ``ConfigError`` says what to fix, and where."""
    return parse_agent_config(_read_text(path, "logferry/examples/logagent.ini"), path)


def parse_transfer_daemon_config(text: str, path: str = "<string>") -> TransferDaemonConfig:
    """Validate logtransfer's INI given as text; ``path`` is only used in messages.

    The transfer consumes (``consumer.*``) and produces to the dead-letter topic (``producer.*``).
    """
    sections = ("etcd", "kafka", "transfer")
    passthrough = ("consumer.", "producer.")
    parser = _parse_ini(text, path, sections)
    _check_sections(parser, path, sections)
    etcd = _section(parser, "etcd", path)
    kafka = _section(parser, "kafka", path, passthrough)
    transfer = _section(parser, "transfer", path)
    return TransferDaemonConfig(etcd=_read_etcd(etcd), kafka=_read_kafka(kafka, passthrough),
                                transfer=_read_transfer(transfer), path=path)


def load_transfer_config(path: str = DEFAULT_TRANSFER_CONFIG) -> TransferDaemonConfig:
    """Read and validate logtransfer's INI; ``ConfigError`` says what to fix, and where."""
    return parse_transfer_daemon_config(_read_text(path, "logferry/examples/logtransfer.ini"), path)


CTL_OVERRIDE_SOURCE = "command line"


def load_ctl_config(path: str | None, overrides: Mapping[str, str | None] | None = None) -> CtlConfig:
    """logctl's etcd settings: the ``[etcd]`` section of an INI (a logagent or logtransfer INI
    serves, its other sections are ignored), then ``overrides`` on top.

    ``overrides`` maps ``[etcd]`` key names to values (``{"endpoints": "10.0.0.1:2379"}``); None
    values are skipped, so argparse results can be passed as they are. With ``path=None`` only
    the overrides count.
    """
    items: dict[str, str] = {}
    sources: dict[str, str] = {}
    if path is not None:
        parser = _parse_ini(_read_text(path, "logferry/examples/logagent.ini"), path, ("etcd",))
        _check_sections(parser, path, ("etcd", "kafka", "agent", "transfer"))
        if parser.has_section("etcd"):
            items = dict(parser.items("etcd"))
            _check_keys("etcd", items, path, path)
            sources = dict.fromkeys(items, path)
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    _check_keys("etcd", given, CTL_OVERRIDE_SOURCE, path)
    for key, value in given.items():
        items[key] = str(value).strip()
        sources[key] = CTL_OVERRIDE_SOURCE
    default_src = path if path is not None else f"{CTL_OVERRIDE_SOURCE} (no config file)"
    return CtlConfig(etcd=_read_etcd(_Section("etcd", items, sources, default_src, path)), path=path)
