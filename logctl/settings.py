"""Where ``logctl`` finds etcd, Kafka and Elasticsearch: INI file, environment, flags.

Order, later wins: the INI file (``--config FILE``; by default ``/etc/logferry/logctl.ini``
when it exists), then the environment (``LOGFERRY_ETCD``, ``LOGFERRY_PREFIX``,
``LOGFERRY_KAFKA``, ``LOGFERRY_ES``), then the flags (``--etcd``, ``--prefix``, ``--kafka``,
``--es``, ``--timeout``).

The INI is the daemons' style and the daemons' sections: ``[etcd]`` as in logagent.ini,
``[kafka]`` as in both daemons' files (for ``doctor``), and the ``es_*`` keys of
``[transfer]`` as in logtransfer.ini (for ``search`` and ``doctor``). So a logtransfer.ini,
which has all three, serves logctl as it is. The values are validated by the very readers
the daemons use (``logferry.config``), so an INI that logctl accepts, a daemon accepts too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from logctl.util import EXIT_USAGE, CtlError
from logferry import config as _config
from logferry.config import (
    CTL_OVERRIDE_SOURCE,
    ConfigError,
    EsSettings,
    EtcdSettings,
    KafkaSettings,
    load_ctl_config,
    split_host_port,
)

__all__ = ["DEFAULT_CTL_CONFIG", "EsSettings", "Settings", "resolve_settings"]

DEFAULT_CTL_CONFIG = "/etc/logferry/logctl.ini"

ENV_ETCD = "LOGFERRY_ETCD"
ENV_PREFIX = "LOGFERRY_PREFIX"
ENV_KAFKA = "LOGFERRY_KAFKA"
ENV_ES = "LOGFERRY_ES"


@dataclass
class Settings:
    """What logctl was told; each service is None when it was not given at all.

    ``etcd_error`` keeps why etcd settings are missing or wrong, so commands that need etcd
    report it, and commands that do not (``search`` without ``--topic``) still run.
    """

    config_path: str | None
    etcd: EtcdSettings | None
    etcd_error: CtlError | None
    kafka: KafkaSettings | None
    es: EsSettings | None
    timeout_s: float = 5.0
    es_timeout_s: float = 30.0  # searches may take longer than an etcd call; --timeout sets both

    def need_etcd(self) -> EtcdSettings:
        if self.etcd is None:
            raise self.etcd_error or CtlError("no etcd settings", EXIT_USAGE)
        return self.etcd

    def need_kafka(self) -> KafkaSettings:
        if self.kafka is None:
            raise CtlError(f"no Kafka brokers given: use --kafka host:port,… or {ENV_KAFKA}, or a [kafka] "
                           "section with bootstrap_servers in the --config file", EXIT_USAGE)
        return self.kafka

    def need_es(self) -> EsSettings:
        if self.es is None:
            raise CtlError(f"no Elasticsearch given: use --es URL or {ENV_ES}, or es_hosts in the "
                           "[transfer] section of the --config file", EXIT_USAGE)
        return self.es


def _pick(flag: str | None, env: Mapping[str, str], name: str) -> str | None:
    if flag:
        return flag
    value = env.get(name, "").strip()
    return value or None


def _config_error(e: ConfigError) -> CtlError:
    return CtlError(str(e), EXIT_USAGE)


def resolve_settings(*, config: str | None, etcd: str | None = None, prefix: str | None = None,
                     kafka: str | None = None, es: str | None = None, timeout: float | None = None,
                     env: Mapping[str, str] | None = None, default_config: str = DEFAULT_CTL_CONFIG
                     ) -> Settings:
    """Combine INI, environment and flags. Raises ``CtlError`` (exit 2) for a bad INI or flag."""
    env = os.environ if env is None else env
    path = config
    if path is None and os.path.isfile(default_config):
        path = default_config
    endpoints = _pick(etcd, env, ENV_ETCD)
    prefix = _pick(prefix, env, ENV_PREFIX)
    if timeout is not None and not 0 < timeout <= 300:
        raise CtlError(f"--timeout {timeout:g}: give seconds above 0, at most 300", EXIT_USAGE)

    parser = None
    if path is not None:
        try:
            parser = _config._parse_ini(_config._read_text(path, "logferry/examples/logagent.ini"), path,
                                        ("etcd", "kafka", "transfer"))
            _config._check_sections(parser, path, ("etcd", "kafka", "agent", "transfer"))
        except ConfigError as e:
            raise _config_error(e) from None

    # etcd: the shared reader, with the flags as overrides.
    etcd_settings: EtcdSettings | None = None
    etcd_error: CtlError | None = None
    has_ini_etcd = parser is not None and parser.has_section("etcd") and parser.get("etcd", "endpoints",
                                                                                      fallback="")
    if not endpoints and not has_ini_etcd:
        where = f"{path} has no [etcd] endpoints" if path else f"no config file ({default_config} does not exist)"
        etcd_error = CtlError(f"no etcd endpoints: {where}; give --etcd host:port,… or {ENV_ETCD}, "
                              "or --config FILE with an [etcd] section (a logagent.ini serves)", EXIT_USAGE)
    else:
        overrides = {"endpoints": endpoints, "prefix": prefix,
                     "dial_timeout_s": None if timeout is None else f"{timeout:g}"}
        try:
            etcd_settings = load_ctl_config(path, overrides).etcd
        except ConfigError as e:  # a wrong setting is wrong whatever the command: say so at once
            raise _config_error(e) from None

    kafka_settings = _read_kafka(parser, path, _pick(kafka, env, ENV_KAFKA))
    es_settings = _read_es(parser, path, _pick(es, env, ENV_ES))
    t = timeout if timeout is not None else (etcd_settings.dial_timeout_s if etcd_settings else 5.0)
    return Settings(config_path=path, etcd=etcd_settings, etcd_error=etcd_error, kafka=kafka_settings,
                    es=es_settings, timeout_s=t, es_timeout_s=timeout if timeout is not None else 30.0)


def _section_items(parser, name: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return dict(parser.items(name)) if parser is not None and parser.has_section(name) else {}


def _read_kafka(parser, path: str | None, servers: str | None) -> KafkaSettings | None:  # type: ignore[no-untyped-def]
    items = _section_items(parser, "kafka")
    if not items.get("bootstrap_servers") and not servers:
        return None
    passthrough = ("producer.", "consumer.")
    sources: dict[str, str] = {}
    if items:
        try:
            _config._check_keys("kafka", items, path or "", path, passthrough)
        except ConfigError as e:
            raise _config_error(e) from None
        sources = dict.fromkeys(items, path or "")
    if servers:
        for s in [x for x in servers.replace(",", " ").split() if x]:
            try:
                split_host_port(s)
            except ValueError as e:
                raise CtlError(f"--kafka / {ENV_KAFKA}: {e}", EXIT_USAGE) from None
        items["bootstrap_servers"] = servers
        sources["bootstrap_servers"] = CTL_OVERRIDE_SOURCE
    section = _config._Section("kafka", items, sources, path or CTL_OVERRIDE_SOURCE, path)
    try:
        return _config._read_kafka(section, passthrough)
    except ConfigError as e:
        raise _config_error(e) from None


def _check_es_url(url: str) -> str:
    example = "write URLs with scheme, host and port such as http://es1:9200"
    try:
        u = urlsplit(url)
        port = u.port
    except ValueError:
        raise CtlError(f"--es / {ENV_ES}: {url!r} is not a URL; {example}", EXIT_USAGE) from None
    if u.scheme not in ("http", "https") or not u.hostname or port is None:
        raise CtlError(f"--es / {ENV_ES}: {url!r} lacks a scheme, host or port; {example}", EXIT_USAGE)
    return url


def _read_es(parser, path: str | None, urls: str | None) -> EsSettings | None:  # type: ignore[no-untyped-def]
    items = _section_items(parser, "transfer")
    hosts: list[str] | None = None
    if urls:
        hosts = [_check_es_url(u) for u in urls.replace(",", " ").split() if u]
    if not items.get("es_hosts") and not hosts:
        return None
    try:
        _config._check_keys("transfer", items, path or "", path)
    except ConfigError as e:
        raise _config_error(e) from None
    es_items = {k: v for k, v in items.items() if k.startswith("es_")}
    if hosts:
        es_items["es_hosts"] = ",".join(hosts)
    sources = {k: (path or "") for k in es_items}
    if hosts:
        sources["es_hosts"] = CTL_OVERRIDE_SOURCE
    section = _config._Section("transfer", es_items, sources, path or CTL_OVERRIDE_SOURCE, path)
    try:
        t = _config._read_transfer(section)
    except ConfigError as e:
        raise _config_error(e) from None
    return EsSettings(hosts=t.es_hosts, api_key=t.es_api_key, username=t.es_username, password=t.es_password,
                      ca_file=t.es_ca_file, verify_certs=t.es_verify_certs)
