"""The clear lines for TLS and login failures, from the texts the client libraries really give.

The texts below were taken from the secured stack (integration/test_security.py checks the
same lines end to end); here only the pure mapping is checked, fast.
"""

from __future__ import annotations

import pytest

from logferry import tlsdiag

GRPC_UNKNOWN_CA = ("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:39781: Tls handshake "
                   "failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:"
                   "CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate")
GRPC_WRONG_NAME = ("UNKNOWN: ipv4:127.0.0.1:38913: Custom verification check failed with error: UNAUTHENTICATED: "
                   "Hostname Verification Check failed.")
GRPC_EXPIRED = ("UNKNOWN: ipv4:127.0.0.1:36329: Tls handshake failed (TSI_PROTOCOL_FAILURE): SSL_ERROR_SSL: "
                "error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: certificate has expired")
GRPC_NO_CLIENT_CERT = "UNAVAILABLE: ipv4:127.0.0.1:35221: Unwrap failed (TSI_DATA_CORRUPTED)"
RDKAFKA_LOGIN = ("sasl_ssl://127.0.0.1:57941/bootstrap: SASL authentication error: Authentication failed during "
                 "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 316ms in "
                 "state AUTH_REQ)")
URLLIB3_WRONG_NAME = "hostname '127.0.0.1' doesn't match 'wrong.example'"


@pytest.mark.parametrize(("text", "problem"), [
    (GRPC_UNKNOWN_CA, "unknown_ca"),
    (GRPC_WRONG_NAME, "wrong_name"),
    (GRPC_EXPIRED, "expired"),
    (GRPC_NO_CLIENT_CERT, "client_cert"),
    (RDKAFKA_LOGIN, "login"),
    ("etcdserver: authentication failed, invalid user ID or password", "login"),
    (URLLIB3_WRONG_NAME, "wrong_name"),
    ("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: certificate has expired (_ssl.c:1006)", "expired"),
    ("[Errno 111] Connection refused", None),
    ("1/1 brokers are down", None),
])
def test_classify(text: str, problem: str | None) -> None:
    assert tlsdiag.classify(text) == problem


def test_kafka_login_line_names_user_and_setting_never_the_password() -> None:
    conf = {"sasl.username": "agent", "sasl.password": "s3cret-pw", "ssl.ca.location": "/etc/ca.pem"}
    line = tlsdiag.kafka_explain(RDKAFKA_LOGIN, conf)
    assert line == ("Kafka at 127.0.0.1:57941 refused user 'agent': wrong user name or password; set [kafka] "
                    "sasl_password (or sasl_password_file) to this user's Kafka password")
    assert "s3cret-pw" not in line


def test_kafka_other_errors_pass_through() -> None:
    assert tlsdiag.kafka_explain("sasl_ssl://127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: "
                                 "Connection refused (after 0ms in state CONNECT)", {}) is None
    errors = tlsdiag.KafkaErrors({"sasl.username": "agent"})
    assert errors("_TRANSPORT", "Disconnected") == ("_TRANSPORT", "Disconnected")


def test_brokers_down_after_a_login_failure_is_not_said_again() -> None:
    errors = tlsdiag.KafkaErrors({"sasl.username": "agent"})
    key, line = errors("_AUTHENTICATION", RDKAFKA_LOGIN) or ("", "")
    assert key == "security" and "refused user 'agent'" in line
    assert errors("_ALL_BROKERS_DOWN", "1/1 brokers are down") is None


def test_es_wrong_name_names_the_host() -> None:
    line = tlsdiag.es_tls_explain(URLLIB3_WRONG_NAME, ca_key="[transfer] es_ca_file")
    assert line == ("Elasticsearch: its certificate is not for the name 127.0.0.1; connect with a name the "
                    "certificate carries, or re-issue it with 127.0.0.1 in its subjectAltName")


def test_unknown_ca_names_the_setting_and_file() -> None:
    line = tlsdiag.explain("etcd", "unknown_ca", where="10.0.0.1:2379", ca_key="[etcd] ca_file", ca_file="/x/ca.pem")
    assert line == ("etcd at 10.0.0.1:2379: its certificate is not signed by the CA in [etcd] ca_file (/x/ca.pem); "
                    "set [etcd] ca_file to the CA that signed the etcd server certificates")


@pytest.mark.parametrize("problem", ["unknown_ca", "expired", "wrong_name", "client_cert", "login"])
def test_our_own_lines_classify_as_what_they_say(problem: str) -> None:
    """The daemons dedupe by problem kind, so a clear line must classify as its own problem."""
    line = tlsdiag.explain("etcd", problem, where="10.0.0.1:2379", ca_key="[etcd] ca_file", user="agent",
                           password_key="[etcd] password", cert_key="[etcd] cert_file", name="10.0.0.1")
    assert tlsdiag.classify(line) == problem


def test_two_clients_with_the_same_bad_password_report_it_once() -> None:
    consumer, producer = tlsdiag.KafkaErrors({"sasl.username": "t2"}), tlsdiag.KafkaErrors({"sasl.username": "t2"})
    text = RDKAFKA_LOGIN.replace("57941", "57942")
    assert consumer("_AUTHENTICATION", text) is not None
    assert producer("_AUTHENTICATION", text) is None
    assert consumer("_AUTHENTICATION", text) is not None  # its FaultLog keeps count and reminds
