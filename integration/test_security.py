"""Security switched on end to end (issue 12.4), on a secured stack of its own.

The stack (``python -m integration.stack up --secure``, integration/stack/security.py): etcd over
TLS with client certificates, authentication and least-privilege roles; Kafka's SASL_SSL listener
with SCRAM-SHA-512 users; Elasticsearch behind an nginx TLS proxy asking for basic auth or an API
key. Certificates are the stack's own, including bad ones: a server certificate for the wrong
name, an expired one, and one from a CA nobody trusts (served on ports of their own).

What is checked: every line exactly once from a file through the agent, Kafka (SASL_SSL), the
transfer and the TLS proxy into Elasticsearch; logctl reads and writes etcd as root; and each
wrong setting (a wrong password, an unknown CA, a certificate for another name, an expired
certificate) gives its one clear line in the daemon's log, the daemon keeps running (retrying),
and the password is nowhere in the log.

``LOGFERRY_SECURE_STACK_DIR``: reuse a secured stack started with ``make stack-up
STACK_DIR=… STACK_ARGS=--secure`` (left running); otherwise one is started for the session.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from integration.agents import LineWriter, agent_process, wait_for
from integration.conftest import StackHandle, native_stack
from integration.harness import Daemon, daemon
from integration.stack import StackOptions
from integration.stack.procs import ProcRecord, free_ports, spawn, stop
from logferry.etcd import EtcdClient, EtcdError

PREFIX = "/logferry"  # the stack's etcd roles are granted on this prefix
HOST_IP = "127.0.0.1"  # the agent role may write this host's status key only
LOGCTL = str(Path(sys.executable).parent / "logctl")


# ------------------------------------------------------------------------------ the secured stack
@pytest.fixture(scope="module")
def secure_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackHandle]:
    """A secured native stack for this module only (the plain session stack is another one)."""
    yield from native_stack(tmp_path_factory, StackOptions(es_nodes=1, secure=True), what="secured stack",
                            reuse_env="LOGFERRY_SECURE_STACK_DIR", shape=("secure",))


@pytest.fixture
def env(secure_stack: StackHandle) -> dict[str, str]:
    return secure_stack.env


@pytest.fixture
def root_etcd(env: dict[str, str]) -> Iterator[EtcdClient]:
    c = EtcdClient(env["ETCD_ENDPOINTS"].split(","), user="root", password=env["ETCD_ROOT_PASSWORD"],
                   ca_file=env["TLS_CA_FILE"], cert_file=env["ETCD_ROOT_CERT"], key_file=env["ETCD_ROOT_KEY"])
    yield c
    c.close()


def kafka_conf(env: dict[str, str], user: str = "admin") -> dict[str, str]:
    return {"bootstrap.servers": env["KAFKA_BOOTSTRAP_SERVERS"], "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user,
            "sasl.password": env[f"KAFKA_{user.upper()}_PASSWORD"], "ssl.ca.location": env["TLS_CA_FILE"]}


@pytest.fixture
def es_admin(env: dict[str, str]):
    from elasticsearch import Elasticsearch

    c = Elasticsearch(env["ES_URL"], ca_certs=env["TLS_CA_FILE"], api_key=env["ES_API_KEY"], request_timeout=60)
    yield c
    c.close()


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


def secret_file(home: Path, name: str, value: str) -> str:
    home.mkdir(parents=True, exist_ok=True)
    f = home / name
    f.write_text(value + "\n")
    f.chmod(0o600)
    return str(f)


# ------------------------------------------------------------------------------ INIs
def etcd_section(env: dict[str, str], home: Path, user: str, **over: str) -> dict[str, str]:
    sec = {"endpoints": env["ETCD_ENDPOINTS"], "prefix": PREFIX, "ca_file": env["TLS_CA_FILE"],
           "cert_file": env[f"ETCD_{user.upper()}_CERT"], "key_file": env[f"ETCD_{user.upper()}_KEY"],
           "user": user, "password_file": secret_file(home, "etcd.pw", env[f"ETCD_{user.upper()}_PASSWORD"]),
           "dial_timeout_s": "3"}
    return sec | over


def kafka_section(env: dict[str, str], home: Path, user: str, **over: str) -> dict[str, str]:
    sec = {"bootstrap_servers": env["KAFKA_BOOTSTRAP_SERVERS"], "security_protocol": "SASL_SSL",
           "sasl_mechanism": "SCRAM-SHA-512", "sasl_username": user,
           "sasl_password_file": secret_file(home, "kafka.pw", env[f"KAFKA_{user.upper()}_PASSWORD"]),
           "ssl_ca_location": env["TLS_CA_FILE"]}
    return sec | over


def ini(sections: dict[str, dict[str, str]]) -> str:
    return "\n".join(f"[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
                     for name, keys in sections.items())


def agent_daemon(env: dict[str, str], home: Path, *, etcd: dict[str, str] | None = None,
                 kafka: dict[str, str] | None = None) -> Daemon:
    text = ini({
        "etcd": etcd_section(env, home, "agent", **(etcd or {})),
        "kafka": kafka_section(env, home, "agent", **(kafka or {})),
        "agent": {"data_dir": str(home / "data"), "host_ip": HOST_IP, "metrics_address": "", "log_level": "INFO",
                  "scan_interval_s": "0.5", "status_interval_s": "1"},
    })
    return agent_process(home, text)


def transfer_daemon(env: dict[str, str], home: Path, tid: str, *, etcd: dict[str, str] | None = None,
                    kafka: dict[str, str] | None = None, es: dict[str, str] | None = None) -> Daemon:
    t = {"id": tid, "group_id": f"sec-{tid}", "es_hosts": env["ES_URL"], "es_ca_file": env["TLS_CA_FILE"],
         "es_username": "transfer", "es_password_file": secret_file(home, "es.pw", env["ES_TRANSFER_PASSWORD"]),
         "metrics_address": "", "data_dir": str(home / "data"), "log_level": "INFO", "status_interval_s": "1"}
    text = ini({
        "etcd": etcd_section(env, home, "transfer", **(etcd or {})),
        "kafka": kafka_section(env, home, "transfer", **(kafka or {})),
        "transfer": t | (es or {}),
    })
    return daemon("logtransfer", home, text, name=f"transfer-{home.name}")


def passwords(env: dict[str, str]) -> list[str]:
    return [v for k, v in env.items() if k.endswith("_PASSWORD") or k == "ES_API_KEY"]


def assert_no_secret(d: Daemon, env: dict[str, str]) -> None:
    text = d.log_text()
    for pw in passwords(env):
        assert pw not in text, f"a secret of the stack is in {d.name}'s log"


def wait_line(d: Daemon, pattern: str, timeout: float = 40) -> str:
    """The first log line matching ``pattern`` (a regex), waited for; the daemon must stay up meanwhile."""
    rx = re.compile(pattern)

    def found() -> str | None:
        for line in d.log_text().splitlines():
            if rx.search(line):
                return line
        if not d.alive():
            raise AssertionError(f"{d.name} exited; log:\n{d.log_tail()}")
        return None

    return str(wait_for(found, timeout, f"{pattern!r} in {d.name}'s log"))


def message(line: str) -> str:
    """A log line without its time/level/logger prefix (the part after the logger's name)."""
    return re.sub(r"^\S+ \S+ +\w+ +\S+: ", "", line) if re.match(r"^\d{4}-", line) else line


def assert_one_clear_line(d: Daemon, expected: str, env: dict[str, str], timeout: float = 40) -> str:
    """``expected`` (exact, after the log prefix) is logged, once; still running; no secret in the log."""
    line = wait_line(d, re.escape(expected), timeout)
    assert expected in line
    time.sleep(6)  # several reconnect rounds (librdkafka, gRPC back off up to 5 s): still one line
    lines = [ln for ln in d.log_text().splitlines() if expected in ln]
    assert len(lines) == 1, f"expected one line, got {len(lines)}:\n" + "\n".join(lines)
    assert d.alive(), f"{d.name} exited:\n{d.log_tail()}"
    d.stop()  # librdkafka hands over its queued log lines when a client is closed: they count too
    assert_quiet(d, env)
    print(f"{d.name}: {line}")
    return line


#: what the client libraries say themselves; the daemons must say it once, their own way
RAW = re.compile(r"SSL handshake failed|SASL authentication error|certificate verify failed|"
                 r"CERTIFICATE_VERIFY_FAILED|Hostname Verification|TSI_|invalid user ID or password|Traceback")


def assert_quiet(d: Daemon, env: dict[str, str]) -> None:
    """No library's raw words about the failure, no traceback, no secret in the daemon's log."""
    raw = [ln for ln in d.log_text().splitlines() if RAW.search(ln)]
    assert not raw, f"{len(raw)} raw library lines in {d.name}'s log, e.g.:\n" + "\n".join(raw[:3])
    assert_no_secret(d, env)


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    made: list[Daemon] = []
    yield made
    for d in made:
        if d.alive():
            d.stop()
        print(f"----- {d.name} log (tail)\n{d.log_tail(30)}")


# ------------------------------------------------------------------------------ end to end
def test_secured_pipeline_every_line_exactly_once(env: dict[str, str], root_etcd: EtcdClient, es_admin,
                                                  tmp_path: Path, unique: str, daemons: list[Daemon]) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    n = 3000
    topic, dlq = f"sec-{unique}", f"sec-{unique}-dlq"
    admin = AdminClient(kafka_conf(env))  # topic made over SASL_SSL as the Kafka admin user
    for f in admin.create_topics([NewTopic(topic, 3, 1), NewTopic(dlq, 1, 1)]).values():
        f.result(timeout=30)
    index = f"sec-{unique}-{{topic}}-{{yyyy.MM.dd}}"
    root_etcd.put(f"{PREFIX}/transfer/config", json.dumps(
        {"topics": [topic], "index": index, "dead_letter_topic": dlq, "flush_interval_s": 0.5}).encode())
    logs = tmp_path / "logs"
    logs.mkdir()
    root_etcd.put(f"{PREFIX}/agents/{HOST_IP}/collect",
                  json.dumps([{"path": str(logs / "*.log"), "topic": topic, "start_at": "beginning"}]).encode())
    try:
        agent = agent_daemon(env, tmp_path / "agent").start()
        transfer = transfer_daemon(env, tmp_path / "transfer", f"t-{unique}").start()
        daemons += [agent, transfer]
        writer = LineWriter(logs / "app.log", unique)
        writer.write(n)
        want = f"sec-{unique}-*"

        def indexed() -> int:
            try:
                es_admin.indices.refresh(index=want)
                return es_admin.count(index=want)["count"]
            except Exception:  # the index is not there yet
                return 0

        wait_for(lambda: indexed() >= n, 120, f"{n} documents in {want}")
        time.sleep(3)  # anything more (a duplicate) would arrive within a flush interval or two
        es_admin.indices.refresh(index=want)
        total = es_admin.count(index=want)["count"]
        assert total == n, f"{total} documents for {n} lines"
        messages = [h["_source"]["message"] for h in
                    es_admin.search(index=want, size=n + 10, _source=["message"])["hits"]["hits"]]
        got = set(messages)
        assert len(messages) == len(got) == n, f"{len(messages)} documents, {len(got)} distinct, {n} lines"
        assert {m.rstrip() for m in got} == {m.rstrip() for m in writer.expected()}, "not the lines written"
        # both daemons report themselves under their own (restricted) etcd users
        agent_status = json.loads(root_etcd.get(f"{PREFIX}/agents/{HOST_IP}/status")[0] or b"{}")
        assert agent_status, "no agent status key"
        assert root_etcd.get(f"{PREFIX}/transfers/t-{unique}/status")[0] is not None
        for d in daemons:
            assert_no_secret(d, env)
            assert "Traceback" not in d.log_text(), d.log_tail()
        print(f"secured pipeline: {n} lines written, {total} documents, {len(got)} distinct messages")
    finally:
        root_etcd.delete(f"{PREFIX}/agents/{HOST_IP}/collect")
        es_admin.options(ignore_status=[404]).indices.delete(index=f"sec-{unique}-*")


def test_etcd_roles_are_least_privilege(env: dict[str, str]) -> None:
    """The agent's user reads its own collect list and writes its own status key, nothing else."""
    c = EtcdClient(env["ETCD_ENDPOINTS"].split(","), user="agent", password=env["ETCD_AGENT_PASSWORD"],
                   ca_file=env["TLS_CA_FILE"], cert_file=env["ETCD_AGENT_CERT"], key_file=env["ETCD_AGENT_KEY"])
    try:
        c.get(f"{PREFIX}/agents/{HOST_IP}/collect")
        c.put(f"{PREFIX}/agents/{HOST_IP}/status", b"{}")
        c.delete(f"{PREFIX}/agents/{HOST_IP}/status")
        for what, call in (
            ("write its own collect list", lambda: c.put(f"{PREFIX}/agents/{HOST_IP}/collect", b"[]")),
            ("write another host's status", lambda: c.put(f"{PREFIX}/agents/10.9.9.9/status", b"{}")),
            ("read another host's list", lambda: c.get(f"{PREFIX}/agents/10.9.9.9/collect")),
            ("write the transfer config", lambda: c.put(f"{PREFIX}/transfer/config", b"{}")),
        ):
            with pytest.raises(EtcdError, match="permission denied"):
                call()
                pytest.fail(f"the agent's etcd user could {what}")
    finally:
        c.close()


def test_logctl_as_root(env: dict[str, str], tmp_path: Path, root_etcd: EtcdClient) -> None:
    """logctl with an INI naming the CA, root's client certificate and password file."""
    conf = tmp_path / "logctl.ini"
    conf.write_text(ini({
        "etcd": {"endpoints": env["ETCD_ENDPOINTS"], "prefix": PREFIX, "ca_file": env["TLS_CA_FILE"],
                 "cert_file": env["ETCD_ROOT_CERT"], "key_file": env["ETCD_ROOT_KEY"], "user": "root",
                 "password_file": secret_file(tmp_path, "root.pw", env["ETCD_ROOT_PASSWORD"])},
    }))
    f = tmp_path / "list.json"
    f.write_text(json.dumps([{"path": "/var/log/sec/*.log", "topic": "sec"}]))
    ip = "10.7.7.7"
    try:
        e = {k: v for k, v in os.environ.items() if not k.startswith("LOGFERRY_")} | {"NO_COLOR": "1"}
        r = subprocess.run([LOGCTL, "--config", str(conf), "collect", "set", ip, str(f), "--yes"],
                           capture_output=True, text=True, env=e, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(root_etcd.get(f"{PREFIX}/agents/{ip}/collect")[0] or b"[]")[0]["topic"] == "sec"
        r = subprocess.run([LOGCTL, "--config", str(conf), "collect", "get", ip, "--json"],
                           capture_output=True, text=True, env=e, timeout=60, stdin=subprocess.DEVNULL)
        assert r.returncode == 0 and "/var/log/sec/*.log" in r.stdout, r.stdout + r.stderr
        for pw in passwords(env):
            assert pw not in r.stdout + r.stderr
    finally:
        root_etcd.delete(f"{PREFIX}/agents/{ip}/collect")


# ------------------------------------------------------------------------------ wrong settings
def _addr(url: str) -> str:
    return url.split("://", 1)[-1]


@pytest.fixture
def bad_etcd(env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """Single etcd members serving the bad certificates: kind -> https endpoint (stopped after)."""
    certs = Path(env["TLS_CA_FILE"]).parent
    procs, eps = [], {}
    for kind in ("wrongname", "expired"):
        cp, pp = free_ports(2)
        d = tmp_path / f"etcd-{kind}"
        d.mkdir()
        rec = ProcRecord(name=f"etcd-{kind}", argv=[
            "etcd", "--name", kind, "--data-dir", str(d / "data"),
            "--listen-client-urls", f"https://127.0.0.1:{cp}", "--advertise-client-urls", f"https://127.0.0.1:{cp}",
            "--listen-peer-urls", f"http://127.0.0.1:{pp}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{pp}",
            "--initial-cluster", f"{kind}=http://127.0.0.1:{pp}",
            "--cert-file", str(certs / f"{kind}.pem"), "--key-file", str(certs / f"{kind}-key.pem")],
            log=str(d / "etcd.log"), cwd=str(d))
        spawn(rec)
        procs.append(rec)
        eps[kind] = f"https://127.0.0.1:{cp}"
    try:
        for rec in procs:
            port = int(rec.argv[rec.argv.index("--listen-client-urls") + 1].rsplit(":", 1)[1])
            wait_for(lambda rec=rec, port=port: _listening(port) or not rec.alive(), 30, f"{rec.name} serving")
            assert rec.alive(), Path(rec.log).read_text()[-2000:]
        yield eps
    finally:
        for rec in procs:
            stop(rec)


def _listening(port: int) -> bool:
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _etcd_endpoint(env: dict[str, str]) -> str:
    return env["ETCD_ENDPOINTS"].split(",")[0]


CA = "{ca}"  # placeholders filled from the stack's env in each case


def expected_line(template: str, env: dict[str, str], **extra: str) -> str:
    return template.format(ca=env["TLS_CA_FILE"], other_ca=env["TLS_OTHER_CA_FILE"], **extra)


def test_agent_etcd_wrong_password(env: dict[str, str], tmp_path: Path, daemons: list[Daemon]) -> None:
    home = tmp_path / "a"
    d = agent_daemon(env, home, etcd={"password_file": secret_file(home, "wrong.pw", "not-the-password")}).start()
    daemons.append(d)
    assert_one_clear_line(d, "etcd refused user 'agent': wrong user name or password; set [etcd] password "
                             "(or password_file) to this user's etcd password", env)


@pytest.mark.parametrize("kind", ["otherca", "wrongname", "expired"])
def test_agent_etcd_bad_certificate(kind: str, env: dict[str, str], tmp_path: Path, bad_etcd: dict[str, str],
                                    daemons: list[Daemon]) -> None:
    home = tmp_path / "a"
    if kind == "otherca":  # the agent trusts another CA than the one that signed etcd's certificates
        over, ep = {"ca_file": env["TLS_OTHER_CA_FILE"]}, _etcd_endpoint(env)
    else:
        over, ep = {"endpoints": bad_etcd[kind]}, bad_etcd[kind]
    d = agent_daemon(env, home, etcd=over).start()
    daemons.append(d)
    where = _addr(ep) if kind != "otherca" else r"127\.0\.0\.1:\d+"
    expected = {
        "otherca": rf"etcd at {where}: its certificate is not signed by the CA in \[etcd\] ca_file "
                   rf"\({re.escape(env['TLS_OTHER_CA_FILE'])}\); set \[etcd\] ca_file to the CA that signed the "
                   r"etcd server certificates",
        "wrongname": rf"etcd at {re.escape(where)}: its certificate is not for the name 127.0.0.1; connect with a "
                     r"name the certificate carries, or re-issue it with 127.0.0.1 in its subjectAltName",
        "expired": rf"etcd at {re.escape(where)}: its certificate has expired \(or is not valid yet\); renew the "
                   r"etcd server certificate \(and check this host's clock\)",
    }[kind]
    line = wait_line(d, expected)
    time.sleep(6)
    same = [ln for ln in d.log_text().splitlines() if re.search(expected, ln)]
    assert len(same) == 1, "\n".join(same)  # one line, not one per retry (nor one per watch/lease)
    assert d.alive(), d.log_tail()
    d.stop()
    assert_quiet(d, env)
    print(f"{d.name}: {line}")


def test_agent_kafka_wrong_password(env: dict[str, str], tmp_path: Path, root_etcd: EtcdClient,
                                    daemons: list[Daemon]) -> None:
    home = tmp_path / "a"
    d = agent_daemon(env, home, kafka={"sasl_password_file": secret_file(home, "wrong.pw", "not-the-password")})
    daemons.append(d.start())
    kafka = env["KAFKA_BOOTSTRAP_SERVERS"]

    def reported() -> str | None:  # the status key (etcd works) says it too, for logctl and the console
        doc = json.loads(root_etcd.get(f"{PREFIX}/agents/{HOST_IP}/status")[0] or b"{}")
        err = (doc.get("kafka") or {}).get("last_error") or ""
        return err if "refused user 'agent'" in err else None

    print("status kafka.last_error:", wait_for(reported, 40, "the Kafka login error in the agent's status"))
    assert_one_clear_line(d, f"Kafka at {kafka} refused user 'agent': wrong user name or password; set [kafka] "
                             "sasl_password (or sasl_password_file) to this user's Kafka password", env)


@pytest.mark.parametrize("kind", ["otherca", "wrongname", "expired"])
def test_agent_kafka_bad_certificate(kind: str, env: dict[str, str], tmp_path: Path,
                                     daemons: list[Daemon]) -> None:
    if kind == "otherca":
        over, where = {"ssl_ca_location": env["TLS_OTHER_CA_FILE"]}, env["KAFKA_BOOTSTRAP_SERVERS"]
    else:
        where = env[f"KAFKA_BAD_{kind.upper()}"]
        over = {"bootstrap_servers": where}
    d = agent_daemon(env, tmp_path / "a", kafka=over).start()
    daemons.append(d)
    expected = {
        "otherca": f"Kafka at {where}: its certificate is not signed by the CA in [kafka] ssl_ca_location "
                   f"({env['TLS_OTHER_CA_FILE']}); set [kafka] ssl_ca_location to the CA that signed the Kafka "
                   "server certificates",
        "wrongname": f"Kafka at {where}: its certificate is not for the name 127.0.0.1; connect with a name the "
                     "certificate carries, or re-issue it with 127.0.0.1 in its subjectAltName",
        "expired": f"Kafka at {where}: its certificate has expired (or is not valid yet); renew the Kafka server "
                   "certificate (and check this host's clock)",
    }[kind]
    assert_one_clear_line(d, expected, env)


@pytest.fixture
def transfer_config(env: dict[str, str], root_etcd: EtcdClient, unique: str) -> Iterator[str]:
    """A transfer config with a topic holding one record, so the transfer has a bulk to send."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"sec-{unique}"
    admin = AdminClient(kafka_conf(env))  # kept referenced until the future is done
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(timeout=30)
    p = Producer(kafka_conf(env))
    p.produce(topic, key=b"k", value=json.dumps({"id": f"{unique}-1", "message": "hello", "ts": time.time(),
                                                  "host": "h", "ip": HOST_IP, "file": "/f", "offset": 0,
                                                  "topic": topic}).encode())
    assert p.flush(30) == 0
    root_etcd.put(f"{PREFIX}/transfer/config", json.dumps(
        {"topics": [topic], "index": f"sec-{unique}-{{topic}}-{{yyyy.MM.dd}}", "dead_letter_topic": f"{topic}-dlq",
         "flush_interval_s": 0.5}).encode())
    yield topic


@pytest.mark.parametrize("service", ["kafka", "etcd"])
def test_transfer_kafka_or_etcd_wrong_password(service: str, env: dict[str, str], tmp_path: Path,
                                               transfer_config: str, unique: str, daemons: list[Daemon]) -> None:
    """The transfer's consumer and dead-letter producer share the bad Kafka password: still one line."""
    home = tmp_path / "t"
    wrong = secret_file(home, "wrong.pw", "not-the-password")
    if service == "kafka":
        d = transfer_daemon(env, home, f"t-{unique}", kafka={"sasl_password_file": wrong})
        expected = (f"Kafka at {env['KAFKA_BOOTSTRAP_SERVERS']} refused user 'transfer': wrong user name or "
                    "password; set [kafka] sasl_password (or sasl_password_file) to this user's Kafka password")
    else:
        d = transfer_daemon(env, home, f"t-{unique}", etcd={"password_file": wrong})
        expected = ("etcd refused user 'transfer': wrong user name or password; set [etcd] password (or "
                    "password_file) to this user's etcd password")
    daemons.append(d.start())
    assert_one_clear_line(d, expected, env)


def test_transfer_es_wrong_password(env: dict[str, str], tmp_path: Path, transfer_config: str,
                                    unique: str, daemons: list[Daemon]) -> None:
    home = tmp_path / "t"
    d = transfer_daemon(env, home, f"t-{unique}",
                        es={"es_password_file": secret_file(home, "wrong.pw", "not-the-password")}).start()
    daemons.append(d)
    assert_one_clear_line(d, "Elasticsearch refused the credentials (HTTP 401): wrong user name, password or API "
                             "key; set [transfer] es_password (or es_password_file) or es_api_key to valid ones", env)


@pytest.mark.parametrize("kind", ["otherca", "wrongname", "expired"])
def test_transfer_es_bad_certificate(kind: str, env: dict[str, str], tmp_path: Path, transfer_config: str,
                                     unique: str, daemons: list[Daemon]) -> None:
    if kind == "otherca":
        over = {"es_ca_file": env["TLS_OTHER_CA_FILE"]}
    else:
        over = {"es_hosts": env[f"ES_BAD_{kind.upper()}"]}
    d = transfer_daemon(env, tmp_path / "t", f"t-{unique}", es=over).start()
    daemons.append(d)
    expected = {
        "otherca": "Elasticsearch: its certificate is not signed by the CA in [transfer] es_ca_file; set "
                   "[transfer] es_ca_file to the CA that signed the Elasticsearch server certificates",
        "wrongname": "Elasticsearch: its certificate is not for the name 127.0.0.1; connect with a name the "
                     "certificate carries, or re-issue it with 127.0.0.1 in its subjectAltName",
        "expired": "Elasticsearch: its certificate has expired (or is not valid yet); renew the Elasticsearch "
                   "server certificate (and check this host's clock)",
    }[kind]
    assert_one_clear_line(d, expected, env)


@pytest.mark.parametrize("kind", ["password", "otherca"])
def test_logctl_wrong_setting_one_line(kind: str, env: dict[str, str], tmp_path: Path) -> None:
    """logctl: a wrong etcd password or CA is one line on stderr and a failing exit, no traceback."""
    etcd = {"endpoints": env["ETCD_ENDPOINTS"], "prefix": PREFIX, "ca_file": env["TLS_CA_FILE"],
            "cert_file": env["ETCD_ROOT_CERT"], "key_file": env["ETCD_ROOT_KEY"], "user": "root",
            "password_file": secret_file(tmp_path, "root.pw", env["ETCD_ROOT_PASSWORD"])}
    if kind == "password":
        etcd["password_file"] = secret_file(tmp_path, "wrong.pw", "not-the-password")
        expected = ("logctl: etcd refused user 'root': wrong user name or password; set [etcd] password (or "
                    "password_file) to this user's etcd password")
    else:
        etcd["ca_file"] = env["TLS_OTHER_CA_FILE"]
        expected = (f"its certificate is not signed by the CA in [etcd] ca_file ({env['TLS_OTHER_CA_FILE']}); set "
                    "[etcd] ca_file to the CA that signed the etcd server certificates")
    conf = tmp_path / "logctl.ini"
    conf.write_text(ini({"etcd": etcd}))
    e = {k: v for k, v in os.environ.items() if not k.startswith("LOGFERRY_")} | {"NO_COLOR": "1"}
    r = subprocess.run([LOGCTL, "--config", str(conf), "collect", "get", "10.7.7.8"], capture_output=True,
                       text=True, env=e, timeout=60, stdin=subprocess.DEVNULL)
    print(f"logctl ({kind}) -> {r.returncode}: {r.stderr.strip()}")
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and expected in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and all(pw not in r.stdout + r.stderr for pw in passwords(env))


def test_console_on_the_secured_stack(env: dict[str, str], tmp_path: Path, daemons: list[Daemon]) -> None:
    """The console reads etcd (TLS, client certificate, root) and searches ES (TLS proxy, API key)."""
    import urllib.request

    port = free_ports(1)[0]
    text = ini({
        "console": {"listen": f"127.0.0.1:{port}", "log_level": "INFO"},
        "etcd": etcd_section(env, tmp_path, "root"),
        "elasticsearch": {"hosts": env["ES_URL"], "ca_file": env["TLS_CA_FILE"],
                          "api_key_file": secret_file(tmp_path, "es.key", env["ES_API_KEY"])},
    })
    d = daemon("logconsole", tmp_path / "console", text, name="console")
    daemons.append(d.start())

    def get(path: str) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
                return json.loads(r.read())
        except OSError:
            if not d.alive():
                raise AssertionError(f"the console exited:\n{d.log_tail()}") from None
            return None

    wait_for(lambda: get("/healthz"), 60, "the console answering")
    hosts = get("/api/hosts")  # from etcd, as root over TLS
    assert hosts is not None and "hosts" in hosts, hosts
    found = get("/api/search?range=24h")  # from Elasticsearch, through the TLS proxy with the API key
    assert found is not None and "hits" in found and found.get("timed_out") is False, found
    d.stop()
    assert_quiet(d, env)
