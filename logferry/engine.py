"""Which search engine answers, and everything that differs between the ones logferry supports.

logferry talks to Elasticsearch 8, Elasticsearch 9 and OpenSearch 2 with one client: the
``elasticsearch`` Python client 8.x (see docs/compatibility.md for why this one and not
opensearch-py or a client per engine). The differences are all here:

* **Elasticsearch 8**: nothing changes; the client is used exactly as before this module.
* **Elasticsearch 9**: the 8.x client sends ``compatible-with=8`` media types, which ES 9 serves
  (REST API compatibility with the previous major); responses are the same for what we use.
* **OpenSearch 2**: the client's product check refuses any server that does not send
  ``X-Elastic-Product: Elasticsearch``, and OpenSearch refuses the ``application/vnd.elasticsearch+json;
  compatible-with=8`` media types with 406. :class:`EngineTransport` therefore sends plain
  ``application/json`` / ``application/x-ndjson`` to an OpenSearch server and marks its answers as
  checked. The APIs logferry uses (bulk, search, count, composable index templates, simulate
  index, mappings, cluster health, tasks, delete index) answer alike. One index setting is
  Elasticsearch's only (``index.mapping.total_fields.ignore_dynamic_beyond_limit``):
  :func:`template_settings` leaves it out for OpenSearch.
* **Elasticsearch 7 and older, OpenSearch 1**: refused with one line naming the version found
  and the versions supported (:meth:`Engine.unsupported`), at the transfer's start and in
  ``logctl doctor``.

The engine is detected from ``GET /`` (``version.distribution`` is ``opensearch`` on OpenSearch).
Clients made with :func:`client` detect it on their own the first time a server answers in a way
only a non-Elasticsearch-8/9 server does (no product header, or a 406/400 about the media type),
so a transfer started while the cluster is down still finds out once it is up.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

import elastic_transport
from elastic_transport import HttpHeaders, Transport, TransportApiResponse

__all__ = ["KAFKA_SUPPORTED", "SUPPORTED", "Engine", "EngineTransport", "UnsupportedEngineError", "client",
           "detect", "kafka_broker_protocol", "kafka_version_problem", "parse_info", "probe", "template_settings"]

#: What logferry is tested with (docs/compatibility.md), in words for error messages.
SUPPORTED = "Elasticsearch 8.x or 9.x, or OpenSearch 2.x"
#: Oldest supported major per product; newer majors than the newest tested work with a warning.
_MIN_MAJOR = {"elasticsearch": 8, "opensearch": 2}
_MAX_TESTED_MAJOR = {"elasticsearch": 9, "opensearch": 2}

_COMPAT_MIME = re.compile(r"application/vnd\.elasticsearch\+([a-z-]+)\s*;\s*compatible-with=\d+")


class UnsupportedEngineError(elastic_transport.TransportError):
    """The server is a search engine (version) logferry does not support; the message says which."""


@dataclass(frozen=True)
class Engine:
    """The product and version a cluster answered ``GET /`` with."""

    product: str  # "elasticsearch" | "opensearch"
    version: str  # "8.19.21"

    @property
    def major(self) -> int:
        try:
            return int(self.version.split(".")[0])
        except ValueError:
            return 0

    @property
    def label(self) -> str:
        return f"{'OpenSearch' if self.is_opensearch else 'Elasticsearch'} {self.version}"

    @property
    def is_opensearch(self) -> bool:
        return self.product == "opensearch"

    def unsupported(self) -> str | None:
        """One line when logferry does not work with this engine, else None."""
        if self.major < _MIN_MAJOR.get(self.product, 10**6):
            return f"{self.label} found: logferry supports {SUPPORTED}; upgrade the cluster or point es_hosts at one"
        return None

    def untested(self) -> str | None:
        """One line when the major is newer than any logferry was tested with (it is still used)."""
        if self.major > _MAX_TESTED_MAJOR.get(self.product, 0):
            return f"{self.label} is newer than the versions logferry was tested with ({SUPPORTED})"
        return None


def parse_info(body: Any) -> Engine | None:
    """The engine from a ``GET /`` body; None when it is not one we recognise."""
    if not isinstance(body, dict) or not isinstance(body.get("version"), dict):
        return None
    v = body["version"]
    number = str(v.get("number") or "")
    if not number:
        return None
    if v.get("distribution") == "opensearch" or "opensearch" in str(body.get("tagline", "")).lower():
        return Engine("opensearch", number)
    return Engine("elasticsearch", number)


def template_settings(engine: Engine | None, settings: dict[str, Any]) -> dict[str, Any]:
    """Index-template settings the engine accepts: OpenSearch has no ``ignore_dynamic_beyond_limit``."""
    if engine is not None and engine.is_opensearch:
        return {k: v for k, v in settings.items() if k != "index.mapping.total_fields.ignore_dynamic_beyond_limit"}
    return settings


def _plain(headers: Any) -> dict[str, Any]:
    out = dict(headers) if headers not in (None, elastic_transport.client_utils.DEFAULT) else {}
    for k, v in list(out.items()):
        if k.lower() in ("accept", "content-type") and isinstance(v, str):
            out[k] = _COMPAT_MIME.sub(r"application/\1", v)
    return out


class EngineTransport(Transport):
    """The client's transport, speaking each engine's dialect (see the module docstring).

    ``engine`` is None until known: set by :func:`detect`, or here when a server's answer shows it
    is not Elasticsearch 8/9. For Elasticsearch every request passes through unchanged.
    """

    engine: Engine | None = None

    def perform_request(self, method: str, target: str, **kwargs: Any) -> TransportApiResponse:  # type: ignore[override]
        if self.engine is not None and self.engine.is_opensearch:
            return self._opensearch(method, target, **kwargs)
        resp = super().perform_request(method, target, **kwargs)
        if self.engine is None and self._looks_foreign(resp):
            found = self._fetch_engine(kwargs.get("request_timeout", elastic_transport.client_utils.DEFAULT))
            if found is not None:
                self.engine = found
                if found.unsupported():
                    raise UnsupportedEngineError(found.unsupported())
                if found.is_opensearch:
                    return self._opensearch(method, target, **kwargs)
        return resp

    def _opensearch(self, method: str, target: str, **kwargs: Any) -> TransportApiResponse:
        kwargs["headers"] = _plain(kwargs.get("headers"))
        meta, body = super().perform_request(method, target, **kwargs)
        headers: HttpHeaders = meta.headers.copy()
        headers["x-elastic-product"] = "Elasticsearch"  # checked here instead: it is OpenSearch, and supported
        return TransportApiResponse(dataclasses.replace(meta, headers=headers), body)

    @staticmethod
    def _looks_foreign(resp: TransportApiResponse) -> bool:
        meta, body = resp
        if 200 <= meta.status < 300:
            return "x-elastic-product" not in meta.headers
        if meta.status in (400, 406):
            text = str(body)
            return "compatible-with" in text or "media_type_header_exception" in text or "Content-Type header" in text
        return False

    def _fetch_engine(self, timeout: Any) -> Engine | None:
        try:
            meta, body = Transport.perform_request(self, "GET", "/", headers={"accept": "application/json"},
                                                   request_timeout=timeout)
        except elastic_transport.TransportError:
            return None
        return parse_info(body) if 200 <= meta.status < 300 else None


def client(hosts: Any, **kwargs: Any) -> Any:
    """An ``elasticsearch.Elasticsearch`` for ES 8, ES 9 or OpenSearch 2 (same arguments)."""
    from elasticsearch import Elasticsearch

    kwargs.setdefault("transport_class", EngineTransport)
    return Elasticsearch(hosts, **kwargs)


def probe(es: Any, timeout_s: float = 5.0) -> Engine | None:
    """Ask ``GET /`` of a client made by :func:`client`; remember and return the engine.

    None when no server answered (the client finds out later by itself). Raises nothing.
    """
    transport = getattr(es, "transport", None)
    if not isinstance(transport, EngineTransport):
        return None
    found = transport._fetch_engine(timeout_s)
    if found is not None:
        transport.engine = found
    return found


def detect(es: Any, timeout_s: float = 5.0) -> Engine:
    """Like :func:`probe`, but raise :class:`UnsupportedEngineError` for no answer or an unsupported engine."""
    found = probe(es, timeout_s)
    if found is None:
        raise UnsupportedEngineError("no search engine answered GET / (is es_hosts right, is the cluster up?)")
    if found.unsupported():
        raise UnsupportedEngineError(found.unsupported())
    return found


# --------------------------------------------------------------------------- Kafka
#: Kafka versions logferry supports, in words; the consumer's cooperative rebalancing and the
#: producer's idempotence need brokers of 2.4 or newer, which every 2.x-4.x cluster still running is.
KAFKA_SUPPORTED = "Kafka 2.x, 3.x (ZooKeeper or KRaft) or 4.x (KRaft)"


def kafka_version_problem(inter_broker_protocol: str | None) -> str | None:
    """One line when a broker's ``inter.broker.protocol.version`` (e.g. ``1.1-IV0``) is older than 2.x.

    None when it is 2.x or newer, or unknown: Kafka 4 has no such setting any more (its
    ``metadata.version`` replaced it), so a missing value means a new broker, not an old one.
    """
    if not inter_broker_protocol:
        return None
    m = re.match(r"(\d+)\.(\d+)", inter_broker_protocol)
    if not m:
        return None
    major, minor = int(m.group(1)), int(m.group(2))
    if major >= 2:
        return None
    return (f"Kafka broker protocol {inter_broker_protocol} found (Kafka {major}.{minor}): logferry supports "
            f"{KAFKA_SUPPORTED}; upgrade the brokers")


def kafka_broker_protocol(conf: dict[str, Any], timeout_s: float = 5.0) -> str | None:
    """The first broker's ``inter.broker.protocol.version``, or None (Kafka 4, no answer, not allowed)."""
    import logging

    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    quiet = logging.getLogger("logferry.engine.kafka")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    admin = AdminClient(dict(conf) | {"logger": quiet})  # conf: KafkaSettings.common_config()
    try:
        md = admin.list_topics(timeout=timeout_s)
        if not md.brokers:
            return None
        res = ConfigResource(ResourceType.BROKER, str(min(md.brokers)))
        entry = admin.describe_configs([res])[res].result(timeout=timeout_s).get("inter.broker.protocol.version")
    except Exception:  # not allowed, no answer: do not know
        return None
    return str(entry.value) if entry is not None and entry.value else None
