"""One clear line for a TLS or login failure, whichever client library met it.

gRPC (etcd), librdkafka (Kafka) and urllib3 (Elasticsearch) each word a bad certificate or a
wrong password their own way, often buried in a long chain ("connections to all backends
failing; last error: UNKNOWN: ipv4:…: Tls handshake failed (TSI_PROTOCOL_FAILURE): …"), and
librdkafka says the same "broker certificate could not be verified" whether the certificate
expired, names another host or comes from an unknown CA. An operator needs to know which of
those it is and which INI key to change. So:

* :func:`classify` reads a library's error text and names the problem (:data:`Problem`);
* :func:`probe` asks the server itself with Python's ``ssl`` (same CA, same name) when the text
  does not say (librdkafka), so the answer is the certificate's real fault;
* :func:`explain` turns a problem into the one line the daemons log and put in their status.

No message ever contains a secret: they name users and files, never passwords or keys.
"""

from __future__ import annotations

import logging
import re
import socket
import ssl
import time
from typing import ClassVar, Literal

__all__ = ["KafkaErrors", "Problem", "RawSecurityLines", "classify", "explain", "kafka_explain", "probe"]

#: unknown_ca: the server's certificate is not signed by the CA we trust (or we trust none);
#: expired: the server's certificate is out of its validity dates; wrong_name: it is not for the
#: name we connect to; client_cert: the server refused our client certificate (or we sent none);
#: login: the user or password was refused; not_tls: the server does not speak TLS there.
Problem = Literal["unknown_ca", "expired", "wrong_name", "client_cert", "login", "not_tls"]

_PATTERNS: list[tuple[Problem, re.Pattern[str]]] = [
    ("expired", re.compile(r"certificate (has )?expired|certificate is not yet valid|CERTIFICATE_EXPIRED", re.I)),
    ("wrong_name", re.compile(
        r"hostname .* doesn't match|its certificate is not for the name|Hostname mismatch|"
        r"Hostname Verification Check failed|Peer name .* is not in peer certificate|IP address mismatch|"
        r"not valid for '", re.I)),
    ("unknown_ca", re.compile(
        r"unable to get local issuer certificate|its certificate is not signed by|self[- ]signed certificate|"
        r"unable to verify the first certificate|unknown ca|certificate signature failure", re.I)),
    ("client_cert", re.compile(
        r"SSLV3_ALERT_BAD_CERTIFICATE|refused this client's certificate|alert bad certificate|"
        r"TSI_DATA_CORRUPTED|certificate required|CERTIFICATE_REQUIRED", re.I)),
    ("login", re.compile(
        r"authentication failed|wrong user name or password|invalid credentials|unable to authenticate|"
        r"invalid user ID or password|SASL authentication error", re.I)),
    ("not_tls", re.compile(r"WRONG_VERSION_NUMBER|wrong version number|record layer failure", re.I)),
]


def classify(text: str) -> Problem | None:
    """The problem a client library's error text describes, if it is a TLS or login problem."""
    for problem, pattern in _PATTERNS:
        if pattern.search(text):
            return problem
    return None


def probe(host: str, port: int, ca_file: str | None, timeout_s: float = 3.0) -> Problem | None:
    """Handshake with the server as a client trusting ``ca_file`` would; name what is wrong, if anything.

    Used where the library only says "certificate verify failed" (librdkafka). None: the
    certificate is fine for this name and CA (or the server did not answer: not ours to judge).
    """
    ctx = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock, \
                ctx.wrap_socket(sock, server_hostname=host):
            return None
    except ssl.SSLCertVerificationError as e:
        return classify(f"{e.verify_message} {e}") or "unknown_ca"
    except ssl.SSLError as e:
        return classify(str(e))
    except OSError:
        return None


def explain(service: str, problem: Problem, *, where: str = "", ca_key: str = "", ca_file: str | None = None,
            user: str | None = None, password_key: str = "", cert_key: str = "", name: str = "") -> str:
    """The one line for ``problem``: what is wrong, with which setting, and what to do.

    ``service`` is e.g. "etcd", "Kafka", "Elasticsearch"; ``where`` the address; the ``*_key``
    arguments name the INI settings (e.g. "[kafka] ssl_ca_location").
    """
    at = f" at {where}" if where else ""
    if problem == "unknown_ca":
        trusted = f"the CA in {ca_key}" + (f" ({ca_file})" if ca_file else "")
        return (f"{service}{at}: its certificate is not signed by {trusted}; set {ca_key} to the CA that "
                f"signed the {service} server certificates")
    if problem == "expired":
        return (f"{service}{at}: its certificate has expired (or is not valid yet); renew the {service} server "
                "certificate (and check this host's clock)")
    if problem == "wrong_name":
        host = name or where.rsplit(":", 1)[0] or "the address in the INI"
        return (f"{service}{at}: its certificate is not for the name {host}; connect with a name the "
                f"certificate carries, or re-issue it with {host} in its subjectAltName")
    if problem == "client_cert":
        return (f"{service}{at} refused this client's certificate (or none was sent); set {cert_key} to a "
                f"certificate signed by a CA that {service} trusts")
    if problem == "login":
        who = f"user {user!r}" if user else "the credentials"
        return (f"{service}{at} refused {who}: wrong user name or password; set {password_key} to this "
                f"user's {service} password")
    return (f"{service}{at} does not speak TLS on that port (or speaks only TLS there); check the address "
            f"and {ca_key or 'the TLS settings'}")


# --------------------------------------------------------------------------------------- Kafka
#: (host, port, ca_file) -> (when, answer): librdkafka reports the failure at every reconnect
_PROBED: dict[tuple[str, int, str | None], tuple[float, Problem | None]] = {}
PROBE_EVERY_S = 30.0


def _probe_cached(host: str, port: int, ca_file: str | None) -> Problem | None:
    key = (host, port, ca_file)
    now = time.monotonic()
    seen = _PROBED.get(key)
    if seen is None or now - seen[0] > PROBE_EVERY_S:
        seen = _PROBED[key] = (now, probe(host, port, ca_file))
    return seen[1]

_BROKER = re.compile(r"(?:ssl|sasl_ssl|sasl_plaintext|plaintext)://([^/\s]+):(\d+)/", re.I)


def kafka_explain(text: str, conf: dict[str, object]) -> str | None:
    """The clear line for a librdkafka error text, or None when it is no TLS/login problem.

    ``conf`` is the client's librdkafka configuration (to name the user and the CA file).
    librdkafka gives one text for every bad certificate, so the broker is asked directly.
    """
    problem = classify(text)
    m = _BROKER.search(text)
    host, port = (m.group(1), int(m.group(2))) if m else ("", 0)
    ca_file = conf.get("ssl.ca.location")
    ca_file = ca_file if isinstance(ca_file, str) else None
    if problem is None and "certificate verify failed" in text and host:
        problem = _probe_cached(host, port, ca_file) or "unknown_ca"
    if problem is None or (problem == "client_cert" and "certificate" not in text.lower()):
        return None
    user = conf.get("sasl.username")
    return explain("Kafka", problem, where=f"{host}:{port}" if host else "", ca_key="[kafka] ssl_ca_location",
                   ca_file=ca_file, user=user if isinstance(user, str) else None,
                   password_key="[kafka] sasl_password (or sasl_password_file)",
                   cert_key="[kafka] ssl_certificate_location/ssl_key_location", name=host)


#: librdkafka error names that only echo a TLS/login failure already reported
_ECHOES = frozenset({"_ALL_BROKERS_DOWN", "_TRANSPORT"})


class KafkaErrors:
    """Turns librdkafka's error callbacks into what a daemon's FaultLog should see.

    A TLS/login failure becomes its clear line under one key ("security"), so it is logged once
    (then as a reminder); the "1/1 brokers are down" that follows each such failure is dropped
    while the problem is fresh, since it says nothing new. Other errors pass through unchanged.
    """

    QUIET_S = 60.0

    #: clear line -> (the instance that reports it, when): a process has several Kafka clients
    #: (the transfer's consumer and dead-letter producer) with the same bad setting: one line.
    _owners: ClassVar[dict[str, tuple[int, float]]] = {}

    def __init__(self, conf: dict[str, object]) -> None:
        self.conf = conf
        self.problem: str | None = None
        self.at = 0.0

    def __call__(self, name: str, text: str) -> tuple[str, str] | None:
        """(key, message) for the FaultLog, or None to say nothing."""
        now = time.monotonic()
        clear = kafka_explain(text, self.conf) if name not in _ECHOES else None
        if clear is not None:
            self.problem, self.at = clear, now
            owner = self._owners.get(clear)
            if owner is not None and owner[0] != id(self) and now - owner[1] < self.QUIET_S:
                return None  # another client of this process is reporting the same problem
            self._owners[clear] = (id(self), now)
            return "security", clear
        if self.problem is not None and name in _ECHOES and now - self.at < self.QUIET_S:
            return None
        self.problem = None
        return name, text


# ------------------------------------------------------------------------------- Elasticsearch
_ES_NAME = re.compile(r"hostname '([^']+)' doesn't match")


def es_tls_explain(text: str, *, ca_key: str, where: str = "") -> str | None:
    """The clear line for a TLS error of the Elasticsearch client (urllib3's words), or None."""
    problem = classify(text)
    if problem is None or problem == "login":
        return None
    m = _ES_NAME.search(text)
    return explain("Elasticsearch", problem, where=where, ca_key=ca_key, name=m.group(1) if m else "",
                   cert_key="the client certificate")


class RawSecurityLines(logging.Filter):
    """Drops librdkafka's own log lines about a TLS/login failure ("FAIL … SSL handshake failed",
    "… SASL authentication error", one per reconnect, delivered in a burst when the client is
    polled or closed): the error callback reports the same failure as its one clear line."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:  # a malformed record is not ours to drop
            return True
        return classify(text) is None and "certificate verify failed" not in text


#: the one instance the daemons' librdkafka loggers share (addFilter ignores a second add)
RAW_SECURITY_LINES = RawSecurityLines()
