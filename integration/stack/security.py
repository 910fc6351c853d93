"""The secured variant of the stack (``up --secure``): certificates, users, and what serves TLS.

Everything here is made by the stack itself, with ``openssl`` and the servers' own tools, under
``<workdir>/security/`` (0700, files 0600) so that clients can be tested against the real thing:

* **Certificates** (``certs/``): one test CA; a server certificate for ``127.0.0.1``/``localhost``
  (and the ``--bind`` address); client certificates whose CN is the etcd user (``root``, ``agent``,
  ``transfer``); and three deliberately bad server certificates for the clients' error tests: one
  for the wrong name (``wrong.example``), one expired (valid in January 2020 only, made with
  ``openssl ca -startdate/-enddate``), and one from a second CA nobody trusts (``other-ca``).
* **Kafka**: a ``SASL_SSL`` listener (SCRAM-SHA-512) for clients; users ``agent``, ``transfer``
  and ``admin`` are created in ZooKeeper with ``kafka-configs`` before the broker starts. The
  plaintext listener stays, on a loopback port of its own, for the broker itself (inter-broker)
  and the stack's readiness check only; ``KAFKA_BOOTSTRAP_SERVERS`` is the SASL_SSL one. Three
  more SASL_SSL listeners present the bad certificates (``KAFKA_BAD_<KIND>``).
* **etcd**: client URLs over TLS with ``--client-cert-auth``, authentication enabled, a ``root``
  user (for logctl), and least-privilege roles: ``agent`` may read its host's collect list and
  write its own status key, nothing else; ``transfer`` may read the transfer config and write
  transfer status keys and the retention lock.
* **Elasticsearch**: the embedded node has no x-pack, so no security of its own. nginx (Debian's
  ``nginx-light``, run as our own process with its own config) terminates TLS in front of it and
  lets a request through only with the right basic-auth user/password or API key header; it
  answers 401 with Elasticsearch's own ``security_exception`` body otherwise. Three more nginx
  ports present the bad certificates (``ES_BAD_<KIND>``).

The secrets are random per stack and written to ``security/secrets.json`` (0600) and to
``stack.env.json`` for the tests; never to a log.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .procs import ProcRecord

#: the bad server certificates every secured service also presents, on ports of their own
BAD_KINDS = ("wrongname", "expired", "otherca")

#: etcd users made by the stack: user -> its role (root is etcd's own superuser)
ETCD_USERS = ("root", "agent", "transfer")
KAFKA_USERS = ("admin", "agent", "transfer")

#: the host IP the stack's agents run as (the source address to etcd on loopback)
AGENT_HOST_IP = "127.0.0.1"


class SecurityError(RuntimeError):
    """A step of making the secured stack failed (openssl, etcdctl, kafka-configs)."""


def _run(argv: list[str], what: str, *, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    p = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, env=env, check=False)
    if p.returncode != 0:
        raise SecurityError(f"{what} failed ({argv[0]} exit {p.returncode}): {p.stderr.strip()[-2000:]}")
    return p.stdout


@dataclass
class Material:
    """Paths and secrets of a secured stack, as written by :func:`prepare`."""

    dir: Path
    passwords: dict[str, str]  # "kafka:agent", "etcd:root", "es:transfer", ...
    es_api_key: str  # the encoded form, as sent in ``Authorization: ApiKey <key>``

    @property
    def certs(self) -> Path:
        return self.dir / "certs"

    def cert(self, name: str) -> str:
        return str(self.certs / f"{name}.pem")

    def key(self, name: str) -> str:
        return str(self.certs / f"{name}-key.pem")

    def env(self) -> dict[str, str]:
        """What clients of the stack need: CA, client certificates, users and passwords."""
        c = self.certs
        out = {
            "LOGFERRY_SECURE": "1",
            "TLS_CA_FILE": str(c / "ca.pem"),
            "TLS_OTHER_CA_FILE": str(c / "other-ca.pem"),
            "ES_API_KEY": self.es_api_key,
            "ES_USERNAME": "transfer",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        }
        for user in ETCD_USERS:
            out[f"ETCD_{user.upper()}_CERT"] = str(c / f"etcd-{user}.pem")
            out[f"ETCD_{user.upper()}_KEY"] = str(c / f"etcd-{user}-key.pem")
        for k, v in self.passwords.items():
            svc, user = k.split(":")
            out[f"{svc.upper()}_{user.upper()}_PASSWORD"] = v
        return out

    def save(self) -> None:
        f = self.dir / "secrets.json"
        f.write_text(json.dumps({"passwords": self.passwords, "es_api_key": self.es_api_key}, indent=2))
        f.chmod(0o600)

    @classmethod
    def load(cls, workdir: Path) -> Material:
        d = workdir / "security"
        data = json.loads((d / "secrets.json").read_text())
        return cls(dir=d, passwords=data["passwords"], es_api_key=data["es_api_key"])


# --------------------------------------------------------------------------------- certificates
_CA_CNF = """\
[ ca ]
default_ca = lf
[ lf ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/issued
serial = $dir/serial
default_md = sha256
policy = anything
copy_extensions = copy
unique_subject = no
[ anything ]
commonName = supplied
"""


def _openssl(argv: list[str], cwd: Path) -> None:
    _run(["openssl", *argv], f"openssl {argv[0]}", cwd=cwd)


def _make_ca(d: Path, name: str, cn: str) -> None:
    _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
              "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", "-days", "30", "-subj", f"/CN={cn}",
              "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)


def _make_cert(d: Path, name: str, cn: str, *, ca: str = "ca", sans: list[str] | None = None,
               client: bool = False, server: bool = True, days: int = 30, expired: bool = False) -> None:
    """A key and certificate signed by ``ca``; RSA keys, which every client and Java read."""
    _openssl(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", f"{name}-key.pem"], d)
    _openssl(["req", "-new", "-key", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={cn}"], d)
    usages = [u for u, on in (("serverAuth", server), ("clientAuth", client)) if on]
    ext = ["basicConstraints=CA:FALSE", "keyUsage=critical,digitalSignature,keyEncipherment",
           f"extendedKeyUsage={','.join(usages)}"]
    if sans:
        ext.append("subjectAltName=" + ",".join(sans))
    (d / f"{name}.ext").write_text("\n".join(ext) + "\n")
    if expired:
        # `openssl x509 -req` cannot date a certificate in the past; `openssl ca` can.
        cadir = d / "ca-db"
        (cadir / "issued").mkdir(parents=True, exist_ok=True)
        (cadir / "index.txt").touch()
        if not (cadir / "serial").exists():
            (cadir / "serial").write_text("1000\n")
        (cadir / "ca.cnf").write_text(_CA_CNF.format(dir=cadir))
        _openssl(["ca", "-batch", "-config", str(cadir / "ca.cnf"), "-cert", f"{ca}.pem", "-keyfile",
                  f"{ca}-key.pem", "-startdate", "20200101000000Z", "-enddate", "20200201000000Z",
                  "-extfile", f"{name}.ext", "-notext", "-in", f"{name}.csr", "-out", f"{name}.pem"], d)
    else:
        _openssl(["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
                  "-CAcreateserial", "-days", str(days), "-sha256", "-extfile", f"{name}.ext",
                  "-out", f"{name}.pem"], d)
    (d / f"{name}.csr").unlink()
    (d / f"{name}.ext").unlink()


def make_certificates(d: Path, bind: str) -> None:
    """The CA, the good server and client certificates, and the bad server certificates."""
    d.mkdir(parents=True, exist_ok=True)
    sans = ["IP:127.0.0.1", "DNS:localhost"] + ([f"IP:{bind}"] if bind != "127.0.0.1" else [])
    _make_ca(d, "ca", "logferry test CA")
    _make_ca(d, "other-ca", "some other CA")
    _make_cert(d, "server", "logferry-stack", sans=sans, client=True)  # client too: etcd peers/proxy
    for user in ETCD_USERS:
        # etcd takes a client certificate's CN as the user when no password is given
        _make_cert(d, f"etcd-{user}", user, client=True, server=False)
    _make_cert(d, "wrongname", "wrong.example", sans=["DNS:wrong.example"])
    _make_cert(d, "expired", "logferry-stack", sans=sans, expired=True)
    _make_cert(d, "otherca", "logferry-stack", ca="other-ca", sans=sans)
    for f in d.glob("*.pem"):
        f.chmod(0o600)
    # Kafka reads PKCS#12 key stores; the CA goes in as a PEM trust store.
    for name in ("server", *BAD_KINDS):
        _openssl(["pkcs12", "-export", "-in", f"{name}.pem", "-inkey", f"{name}-key.pem",
                  "-name", name, "-out", f"{name}.p12", "-passout", "pass:stackstore"], d)


def prepare(workdir: Path, bind: str) -> Material:
    """Make certificates and secrets for a new secured stack (anything older there goes)."""
    d = workdir / "security"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    d.chmod(0o700)
    make_certificates(d / "certs", bind)
    pw = {f"kafka:{u}": secrets.token_urlsafe(18) for u in KAFKA_USERS}
    pw |= {f"etcd:{u}": secrets.token_urlsafe(18) for u in ETCD_USERS}
    pw["es:transfer"] = secrets.token_urlsafe(18)
    key_id, key = secrets.token_hex(8), secrets.token_urlsafe(24)
    m = Material(dir=d, passwords=pw, es_api_key=base64.b64encode(f"{key_id}:{key}".encode()).decode())
    m.save()
    return m


# --------------------------------------------------------------------------------- etcd
def etcd_tls_args(m: Material) -> list[str]:
    """Flags that put an etcd member's client URLs on TLS with client certificates."""
    return ["--cert-file", m.cert("server"), "--key-file", m.key("server"), "--client-cert-auth",
            "--trusted-ca-file", m.cert("ca")]


def etcdctl(m: Material, endpoint: str, *args: str, user: str | None = "root") -> str:
    argv = ["etcdctl", f"--endpoints=https://{endpoint}", f"--cacert={m.cert('ca')}",
            f"--cert={m.cert('etcd-root')}", f"--key={m.key('etcd-root')}"]
    if user:
        argv.append(f"--user={user}:{m.passwords[f'etcd:{user}']}")
    env = dict(os.environ, ETCDCTL_API="3")
    try:
        return _run([*argv, *args], f"etcdctl {args[0]} {args[1] if len(args) > 1 else ''}", env=env)
    except SecurityError as e:  # never show the password of the command line
        raise SecurityError(str(e).replace(m.passwords.get(f"etcd:{user}", "\0"), "***")) from None


def etcd_enable_auth(m: Material, endpoint: str, prefix: str = "/logferry") -> None:
    """Users, least-privilege roles, then ``auth enable`` (etcd needs a root user for that)."""
    ip = AGENT_HOST_IP
    grants = {
        # the agent on <ip> reads its own collect list (and watches it) and writes its status
        "agent": [("read", f"{prefix}/agents/{ip}/collect"), ("readwrite", f"{prefix}/agents/{ip}/status")],
        # the transfer group: its config, its status keys, the retention lock
        "transfer": [("read", f"{prefix}/transfer/config"), ("readwrite", f"{prefix}/transfers/", "prefix"),
                     ("readwrite", f"{prefix}/transfer/retention-lock")],
    }
    for user in ETCD_USERS:
        etcdctl(m, endpoint, "user", "add", f"{user}:{m.passwords[f'etcd:{user}']}", "--interactive=false",
                user=None)
    for role, perms in grants.items():
        etcdctl(m, endpoint, "role", "add", role, user=None)
        for perm, key, *rest in perms:
            extra = ["--prefix=true"] if rest else []
            etcdctl(m, endpoint, "role", "grant-permission", role, perm, key, *extra, user=None)
        etcdctl(m, endpoint, "user", "grant-role", role, role, user=None)
    etcdctl(m, endpoint, "user", "grant-role", "root", "root", user=None)
    etcdctl(m, endpoint, "auth", "enable", user=None)


# --------------------------------------------------------------------------------- Kafka
def kafka_listener_props(m: Material, bind: str, ports: dict[str, int]) -> dict[str, str]:
    """Broker settings: SASL_SSL for clients (+ one per bad certificate), plaintext for itself."""
    listeners = {"PLAINTEXT": f"127.0.0.1:{ports['kafka_plain']}", "SASL_SSL": f"{bind}:{ports['kafka']}"}
    for kind in BAD_KINDS:
        listeners[f"BAD_{kind.upper()}"] = f"{bind}:{ports[f'kafka_bad_{kind}']}"
    props = {
        "listeners": ",".join(f"{n}://{a}" for n, a in listeners.items()),
        "advertised.listeners": ",".join(f"{n}://{a}" for n, a in listeners.items()),
        "listener.security.protocol.map": ",".join(
            f"{n}:{'PLAINTEXT' if n == 'PLAINTEXT' else 'SASL_SSL'}" for n in listeners),
        "inter.broker.listener.name": "PLAINTEXT",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": m.cert("ca"),
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.password": "stackstore",
        "ssl.key.password": "stackstore",
        "ssl.client.auth": "none",
    }
    for n, cert in [("sasl_ssl", "server")] + [(f"bad_{k}", k) for k in BAD_KINDS]:
        props[f"listener.name.{n}.ssl.keystore.location"] = str(m.certs / f"{cert}.p12")
        props[f"listener.name.{n}.scram-sha-512.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required;")
    return props


def kafka_add_users(m: Material, java: str, classpath: str, zookeeper: str, jvm: list[str]) -> None:
    """SCRAM credentials in ZooKeeper, before the broker starts (so its first login works)."""
    for user in KAFKA_USERS:
        pw = m.passwords[f"kafka:{user}"]
        try:
            _run([java, *jvm, "-cp", classpath, "kafka.admin.ConfigCommand", "--zookeeper", zookeeper,
                  "--alter", "--add-config", f"SCRAM-SHA-512=[iterations=4096,password={pw}]",
                  "--entity-type", "users", "--entity-name", user], f"kafka-configs (user {user})")
        except SecurityError as e:
            raise SecurityError(str(e).replace(pw, "***")) from None


# --------------------------------------------------------------------------------- nginx for ES
_NGINX_CONF = """\
# written by integration/stack/security.py: TLS and authentication in front of Elasticsearch
master_process off;  # one process, ours: SIGTERM stops it, no worker changes user
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
daemon off;
events {{ worker_connections 256; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    client_max_body_size 512m;
    map_hash_bucket_size 256;
    upstream es {{ server 127.0.0.1:{es_port}; keepalive 16; }}
    # who may pass: the transfer's user (basic auth) and one API key, nobody else
    map $http_authorization $lf_allowed {{
        default 0;
        "Basic {basic}" 1;
        "ApiKey {api_key}" 1;
    }}
{servers}
}}
"""

_NGINX_SERVER = """\
    server {{
        listen {addr} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        location / {{
            default_type application/json;  # of the 401 below; ES's answers carry their own
            if ($lf_allowed = 0) {{
                add_header WWW-Authenticate 'Basic realm="logferry-es" charset="UTF-8"' always;
                return 401 '{denied}';
            }}
            proxy_pass http://es;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
            proxy_read_timeout 300s;
        }}
    }}
"""


#: what nginx answers without the right credentials: Elasticsearch's own 401 body
_DENIED = json.dumps({"error": {"root_cause": [{"type": "security_exception",
                                                "reason": "unable to authenticate user for REST request"}],
                                "type": "security_exception",
                                "reason": "unable to authenticate user for REST request"}, "status": 401},
                     separators=(",", ":"))


def nginx_define(m: Material, bind: str, ports: dict[str, int], es_port: int) -> ProcRecord:
    """The nginx process that serves Elasticsearch over TLS with authentication."""
    d = m.dir / "nginx"
    (d / "tmp").mkdir(parents=True, exist_ok=True)
    servers = [_NGINX_SERVER.format(addr=f"{bind}:{ports['esproxy']}", cert=m.cert("server"),
                                    key=m.key("server"), denied=_DENIED)]
    for kind in BAD_KINDS:
        servers.append(_NGINX_SERVER.format(addr=f"{bind}:{ports[f'esproxy_bad_{kind}']}", cert=m.cert(kind),
                                            key=m.key(kind), denied=_DENIED))
    basic = base64.b64encode(f"transfer:{m.passwords['es:transfer']}".encode()).decode()
    conf = d / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(dir=d, es_port=es_port, basic=basic, api_key=m.es_api_key,
                                       servers="".join(servers)))
    conf.chmod(0o600)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return ProcRecord(name="esproxy", argv=[nginx, "-p", str(d), "-e", str(d / "error.log"), "-c", str(conf)],
                      log=str(d / "nginx.log"), cwd=str(d))


def ensure_nginx(log: Callable[[str], None]) -> str:
    """nginx from Debian (``nginx-light``), installed with apt on first use like etcd-server."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found:
        return found
    log("installing nginx-light (apt) for the secured stack's Elasticsearch proxy")
    _run(["apt-get", "install", "-y", "-q", "nginx-light"], "apt-get install nginx-light",
         env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
    return shutil.which("nginx") or "/usr/sbin/nginx"


# --------------------------------------------------------------------------------- readiness
def service_ready(name: str, ports: dict[str, int], bind: str, es_nodes: int, workdir: Path) -> bool:
    """Readiness of a secured stack's service, asked the way its clients ask (TLS, credentials)."""
    import ssl
    import urllib.request

    from . import services

    m = Material.load(workdir)
    ctx = ssl.create_default_context(cafile=m.cert("ca"))
    try:
        if name.startswith("etcd"):
            ctx.load_cert_chain(m.cert("etcd-root"), m.key("etcd-root"))
            with urllib.request.urlopen(f"https://{bind}:{ports[f'{name}_client']}/health", timeout=1.0,
                                        context=ctx) as r:
                return json.loads(r.read()).get("health") == "true"
        if name == "kafka":
            return services.kafka_broker_ids(f"127.0.0.1:{ports['kafka_plain']}", 2.0) != []
        if name == "esproxy":
            basic = base64.b64encode(f"transfer:{m.passwords['es:transfer']}".encode()).decode()
            req = urllib.request.Request(f"https://{bind}:{ports['esproxy']}/_cluster/health",
                                         headers={"Authorization": f"Basic {basic}"})
            with urllib.request.urlopen(req, timeout=2.0, context=ctx) as r:
                return json.loads(r.read()).get("status") in ("yellow", "green")
        if name.startswith("es"):
            return services.service_ready(name, ports, "127.0.0.1", es_nodes)
        return services.service_ready(name, ports, bind, es_nodes)
    except (OSError, ValueError):
        return False


def etcd_leader(workdir: Path, members: list[str], ports: dict[str, int], bind: str) -> str | None:
    """The etcd leader's member name, asked as root over gRPC (etcd 3.4's HTTP gateway refuses
    a client certificate with a CN once auth is on, so the plain stack's HTTP way cannot work)."""
    from logferry.etcd import EtcdClient, EtcdError

    m = Material.load(workdir)
    for n in members:
        try:
            with EtcdClient([f"{bind}:{ports[f'{n}_client']}"], user="root", password=m.passwords["etcd:root"],
                            ca_file=m.cert("ca"), cert_file=m.cert("etcd-root"), key_file=m.key("etcd-root"),
                            timeout_s=2) as c:
                for member in c.members():
                    if member.is_leader:
                        return member.name
        except EtcdError:
            continue
    return None
