"""logferry.etcd against a real 3-member etcd cluster.

Fixtures (see conftest.py; the integration stack will provide the same two):
``etcd_endpoints`` -> list of "host:port"; ``etcd_cluster`` -> object with kill(i), stop_all(), start_all().
Tests leave the cluster with all members running.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from logferry.etcd import EtcdClient, EtcdError, EtcdUnavailable, LeaseKeeper, WatchEvent


def _uid() -> str:
    return uuid.uuid4().hex[:8]


def _drain(q: queue.Queue[WatchEvent], until: Callable[[list[WatchEvent]], bool], timeout: float) -> list[WatchEvent]:
    """Collect events until ``until(events)`` holds or the timeout passes."""
    events: list[WatchEvent] = []
    deadline = time.monotonic() + timeout
    while not until(events):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            events.append(q.get(timeout=remaining))
        except queue.Empty:
            break
    return events


def _quiet(q: queue.Queue[WatchEvent], seconds: float) -> list[WatchEvent]:
    """What is queued now plus whatever arrives in ``seconds`` (to prove there is no duplicate)."""
    events = []
    with contextlib.suppress(queue.Empty):
        while True:
            events.append(q.get_nowait())
    return events + _drain(q, lambda _: False, seconds)


def _changes(events: list[WatchEvent]) -> list[tuple[str, str, int]]:
    return [(e.kind, e.key, e.mod_revision) for e in events if e.kind in ("put", "delete")]


def _wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.02) -> float:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(step)
    return time.monotonic() - t0


def _member_index(client: EtcdClient, cluster: object, member_id: int) -> int:
    names = {m.id: m.name for m in client.members()}
    return cluster.names.index(names[member_id])  # type: ignore[attr-defined]


@pytest.fixture
def client(etcd_endpoints: list[str]) -> Iterator[EtcdClient]:
    c = EtcdClient(etcd_endpoints, timeout_s=5.0)
    yield c
    c.close()


def test_put_get_prefix_and_cas(client: EtcdClient) -> None:
    p = f"/t/{_uid()}/"
    assert client.get(p + "missing") == (None, 0)
    r1 = client.put(p + "a", b"1")
    r2 = client.put(p + "b", b"2")
    assert client.get(p + "a") == (b"1", r1)
    items, header_rev = client.get_prefix(p)
    assert items == [(p + "a", b"1", r1), (p + "b", b"2", r2)]
    assert header_rev >= r2
    # CAS: two operators read the same revision; the second one must lose, not overwrite.
    _, seen = client.get(p + "a")
    assert client.compare_and_put(p + "a", b"op1", seen) is True
    assert client.compare_and_put(p + "a", b"op2", seen) is False
    assert client.get(p + "a")[0] == b"op1"
    # expected 0: create only if absent.
    assert client.compare_and_put(p + "new", b"x", 0) is True
    assert client.compare_and_put(p + "new", b"y", 0) is False
    _, seen = client.get(p + "new")
    client.put(p + "new", b"z")  # someone else rewrote it
    assert client.compare_and_delete(p + "new", seen) is False
    assert client.compare_and_delete(p + "new", client.get(p + "new")[1]) is True
    assert client.get(p + "new") == (None, 0)
    client.put(p + "new", b"x")
    assert client.delete(p + "new") is True
    assert client.delete(p + "new") is False
    st = client.status()
    assert st.leader_id != 0 and st.version.startswith("3.")
    members = client.members()
    assert len(members) == 3 and all(m.healthy for m in members), members
    assert sum(m.is_leader for m in members) == 1


def test_unreachable_raises_etcd_unavailable_quickly() -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    c = EtcdClient([f"127.0.0.1:{port}"], timeout_s=1.0)
    try:
        t0 = time.monotonic()
        with pytest.raises(EtcdUnavailable) as ei:
            c.get("/x")
        took = time.monotonic() - t0
        print(f"\n[timing] EtcdUnavailable after {took:.2f}s (timeout_s=1.0): {ei.value}")
        assert 0.9 < took < 2.5
        assert f"127.0.0.1:{port}" in str(ei.value) and "endpoint health" in str(ei.value)
    finally:
        c.close()


def test_watch_delivers_puts_and_deletes_in_order(client: EtcdClient) -> None:
    p = f"/w/{_uid()}/"
    _, _, rev = client.get_with_revision(p)
    q: queue.Queue[WatchEvent] = queue.Queue()
    w = client.watch(p, prefix=True, start_revision=rev + 1, sink=q)
    expected = []
    for i in range(20):
        k = f"{p}k{i % 4}"
        if i % 5 == 4:
            expected.append(("delete", k, client.put(k, b"tmp") + 1))
            client.delete(k)
            expected.insert(-1, ("put", k, expected[-1][2] - 1))
        else:
            expected.append(("put", k, client.put(k, f"v{i}".encode())))
    client.put("/w-outside", b"not watched")
    events = _drain(q, lambda ev: len(_changes(ev)) >= len(expected), 5)
    assert _changes(events) == expected
    assert [e.value for e in events if e.kind == "put"][:2] == [b"v0", b"v1"]
    assert _quiet(q, 0.3) == []
    # single-key watch
    k = f"{p}single"
    q2: queue.Queue[WatchEvent] = queue.Queue()
    w2 = client.watch(k, prefix=False, start_revision=0, sink=q2)
    client.put(k + "x", b"other key")  # must not match: not a prefix watch
    r = client.put(k, b"s")
    client.delete(k)
    ev2 = _drain(q2, lambda ev: len(ev) >= 2, 5)
    assert _changes(ev2) == [("put", k, r), ("delete", k, r + 1)]
    w.cancel()
    w2.cancel()
    client.put(k, b"after cancel")
    assert _quiet(q2, 0.3) == []


def test_watch_resyncs_after_compaction(client: EtcdClient, etcd_endpoints: list[str]) -> None:
    p = f"/c/{_uid()}/"
    r0 = client.put(p + "gone", b"0")
    client.put(p + "a", b"1")
    client.delete(p + "gone")
    r_last = client.put(p + "a", b"2")
    subprocess.run(
        ["etcdctl", "--endpoints", ",".join(etcd_endpoints), "compact", str(r_last), "--physical"],
        check=True,
        capture_output=True,
        env={**os.environ, "ETCDCTL_API": "3"},
    )
    q: queue.Queue[WatchEvent] = queue.Queue()
    w = client.watch(p, prefix=True, start_revision=r0, sink=q)
    events = _drain(q, lambda ev: len(ev) >= 2, 5)
    assert [e.kind for e in events] == ["resync", "put"], events
    assert events[0].key == p and "compacted" in events[0].detail
    assert (events[1].key, events[1].value, events[1].mod_revision) == (p + "a", b"2", r_last)
    r = client.put(p + "b", b"live")
    assert _changes(_drain(q, lambda ev: len(ev) >= 1, 5)) == [("put", p + "b", r)]
    w.cancel()
    # single key that no longer exists: resync + synthetic delete
    q2: queue.Queue[WatchEvent] = queue.Queue()
    w2 = client.watch(p + "gone", prefix=False, start_revision=r0, sink=q2)
    ev2 = _drain(q2, lambda ev: len(ev) >= 2, 5)
    assert [(e.kind, e.key) for e in ev2] == [("resync", p + "gone"), ("delete", p + "gone")]
    w2.cancel()


_KEEPER_SCRIPT = textwrap.dedent(
    """
    import itertools, json, os, signal, sys, time
    from logferry.etcd import EtcdClient, LeaseKeeper
    eps, key = sys.argv[1].split(","), sys.argv[2]
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    counter = itertools.count()
    client = EtcdClient(eps, timeout_s=3)
    keeper = LeaseKeeper(client, key, lambda: json.dumps({"pid": os.getpid(), "n": next(counter)}).encode(),
                         ttl_s=3, refresh_s=0.5)
    print("ready", keeper.lease_id, flush=True)
    while not stop:
        time.sleep(0.05)
    keeper.stop(delete=True)
    client.close()
    print("stopped", flush=True)
    """
)


def test_lease_keeper(client: EtcdClient, etcd_endpoints: list[str]) -> None:
    key = f"/l/{_uid()}/status"
    # In-process: live value, re-registration after the lease vanished, delete on stop.
    n = iter(range(10**6))
    keeper = LeaseKeeper(client, key, lambda: str(next(n)).encode(), ttl_s=3, refresh_s=0.3)
    assert keeper.registered and client.get(key)[0] is not None
    first = int(client.get(key)[0] or b"-1")
    time.sleep(0.8)
    assert int(client.get(key)[0] or b"-1") > first  # re-put every refresh_s
    old_lease = keeper.lease_id
    assert old_lease is not None
    client._run("revoke", client._aetcd.revoke_lease(old_lease))  # lease lost behind its back
    assert client.get(key)[0] is None
    took = _wait_until(lambda: client.get(key)[0] is not None, 5)
    print(f"\n[timing] LeaseKeeper re-registered {took:.2f}s after its lease was revoked")
    assert keeper.lease_id != old_lease
    t0 = time.monotonic()
    keeper.stop(delete=True)
    assert client.get(key) == (None, 0)
    print(f"[timing] stop(delete=True) + get: {time.monotonic() - t0:.3f}s, key gone")

    # A separate process, frozen (SIGSTOP): the key must vanish within the TTL (3 s).
    key2 = f"/l/{_uid()}/status"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KEEPER_SCRIPT, ",".join(etcd_endpoints), key2],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("ready")
        assert client.get(key2)[0] is not None
        time.sleep(0.6)  # one more keepalive round, so the freeze is mid-cycle
        os.kill(proc.pid, signal.SIGSTOP)
        t_freeze = time.monotonic()
        gone = _wait_until(lambda: client.get(key2)[0] is None, 6)
        print(f"[timing] frozen keeper (ttl 3 s): key gone {gone:.2f}s after SIGSTOP")
        assert gone <= 3.0 + 0.7  # TTL + etcd's 500 ms expiry check + a margin
        assert time.monotonic() - t_freeze > 1.0  # it did not vanish for another reason
        os.kill(proc.pid, signal.SIGCONT)  # thawed: lease expired -> new lease, key back
        back = _wait_until(lambda: client.get(key2)[0] is not None, 8)
        print(f"[timing] thawed keeper re-registered {back:.2f}s after SIGCONT")
        proc.send_signal(signal.SIGTERM)  # clean shutdown: stop(delete=True)
        assert proc.wait(10) == 0
        assert client.get(key2) == (None, 0)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("role", ["follower", "leader"])
def test_kill_member_serving_the_watch(client: EtcdClient, etcd_cluster: object, role: str) -> None:
    p = f"/f/{_uid()}/"
    _, _, rev = client.get_with_revision(p)
    q: queue.Queue[WatchEvent] = queue.Queue()
    # Round robin spreads streams over the members: re-create the watch until it sits on a
    # member of the wanted role (the leader: a put must wait for the election too).
    for _ in range(30):
        w = client.watch(p, prefix=True, start_revision=rev + 1, sink=q)
        leader = client.status().leader_id
        if (w.member_id == leader) == (role == "leader"):
            break
        w.cancel()
        for _ in range(random.randint(1, 3)):  # shift the round-robin picker by a random step
            client.get(p)
        time.sleep(0.1)  # let a just-restarted member's connection come back into the rotation
    else:
        pytest.fail(f"could not place a watch on the {role}")
    victim = _member_index(client, etcd_cluster, w.member_id)
    etcd_cluster.kill(victim)  # type: ignore[attr-defined]
    t_kill = time.monotonic()
    expected, latencies, unwatched = [], [], 0
    for i in range(10):
        t0 = time.monotonic()
        r = client.put(f"{p}{i}", str(i).encode())
        assert client.get(f"{p}{i}") == (str(i).encode(), r)
        latencies.append(time.monotonic() - t0)
        expected.append(("put", f"{p}{i}", r))
        unwatched += not w.connected
    events = _drain(q, lambda ev: len(_changes(ev)) >= len(expected), 10)
    print(
        f"\n[timing] kill -9 of m{victim} ({role}) serving the watch: first put+get "
        f"{latencies[0]:.2f}s, max {max(latencies):.2f}s; all 10 watch events by "
        f"{time.monotonic() - t_kill:.2f}s after the kill; {unwatched}/10 writes made while the watch "
        "was down (between break and re-watch)"
    )
    if role == "follower":
        # The re-watch waits >= 0.4 s of backoff; the writes go to another member at once.
        assert unwatched >= 1
    kinds = [e.kind for e in events]
    assert kinds.count("error") == 1 and kinds.count("restored") == 1, events
    assert kinds.index("error") < kinds.index("restored")
    assert _changes(events) == expected  # none lost, none twice, in order
    assert w.connected and _member_index(client, etcd_cluster, w.member_id) != victim
    assert _quiet(q, 0.3) == []
    assert [m.name for m in client.members() if not m.healthy] == [f"m{victim}"]
    w.cancel()
    t0 = time.monotonic()
    etcd_cluster.start_all()  # type: ignore[attr-defined]
    print(f"[timing] m{victim} back, cluster healthy in {time.monotonic() - t0:.2f}s")


def test_all_members_down_no_spin_and_no_gap(
    client: EtcdClient, etcd_cluster: object, etcd_endpoints: list[str]
) -> None:
    p = f"/o/{_uid()}/"
    _, _, rev = client.get_with_revision(p)
    q: queue.Queue[WatchEvent] = queue.Queue()
    w = client.watch(p, prefix=True, start_revision=rev + 1, sink=q)
    keeper = LeaseKeeper(client, f"/o-status/{_uid()}", lambda: b"alive", ttl_s=10, refresh_s=1)
    before = [("put", f"{p}pre{i}", client.put(f"{p}pre{i}", b"x")) for i in range(3)]
    assert _changes(_drain(q, lambda ev: len(ev) >= 3, 5)) == before

    etcd_cluster.stop_all()  # type: ignore[attr-defined]
    cpu0, t0 = time.process_time(), time.monotonic()
    time.sleep(10)
    cpu = time.process_time() - cpu0
    wall = time.monotonic() - t0
    print(f"\n[timing] all members down {wall:.1f}s with a watch + a lease keeper: process CPU {cpu:.3f}s")
    assert cpu < 1.0
    during = _quiet(q, 0)
    assert [e.kind for e in during] == ["error"], during  # one line per fault, not per retry
    assert not w.connected
    short = EtcdClient(etcd_endpoints, timeout_s=1.0)
    try:
        t1 = time.monotonic()
        with pytest.raises(EtcdUnavailable):
            short.get(p)
        print(f"[timing] blocking get while down: EtcdUnavailable after {time.monotonic() - t1:.2f}s")
    finally:
        short.close()

    t_start = time.monotonic()
    etcd_cluster.start_all(wait=False)  # type: ignore[attr-defined]
    writer = EtcdClient(etcd_endpoints, timeout_s=10.0)
    try:
        expected, written_while_unwatched = [], 0
        for i in range(6):
            k = f"{p}post{i % 3}"
            if i == 4:
                r = writer.put(k, b"tmp")
                expected.append(("put", k, r))
                writer.delete(k)
                expected.append(("delete", k, r + 1))
            else:
                expected.append(("put", k, writer.put(k, f"v{i}".encode())))
            if i == 0:
                first_write = time.monotonic() - t_start
            written_while_unwatched += not w.connected
        events = _drain(q, lambda ev: len(_changes(ev)) >= len(expected), 20)
        restored = [e for e in events if e.kind == "restored"]
        assert len(restored) == 1, events
        assert events[0].kind == "restored"  # nothing is delivered before the watch says it is back
        assert _changes(events) == expected  # no gap, in order
        assert _quiet(q, 1.0) == []  # ... and nothing twice
        print(
            f"[timing] restart: first write accepted {first_write:.2f}s after start; watch restored "
            f"{restored[0].detail!r}; {written_while_unwatched}/6 writes were made while the watch "
            f"was still down; all delivered {time.monotonic() - t_start:.2f}s after start"
        )
        # Not asserted >= 1 here (it races the watch's backoff timer against the cluster's
        # restart); the kill test above covers writes between break and re-watch for sure.
        back = _wait_until(lambda: writer.get(keeper.key)[0] == b"alive", 10)
        print(f"[timing] lease-bound key present {back:.2f}s later (lease survived: etcd renews leases on restart)")
    finally:
        writer.close()
        keeper.stop(delete=True)
        w.cancel()


# ---- TLS + user/password: a single member of its own (the shared stack runs plain HTTP) -------


class _TlsEtcd:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.cport, self.pport = _free_port(), _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.ca, self.cert, self.key = (str(base / n) for n in ("ca.pem", "client.pem", "client.key"))

    def start(self) -> None:
        b, url = self.base, f"https://127.0.0.1:{self.cport}"
        self.proc = subprocess.Popen(
            ["etcd", "--name", "t", "--data-dir", str(b / "data"), "--log-level", "warn",
             "--listen-client-urls", url, "--advertise-client-urls", url,
             "--listen-peer-urls", f"http://127.0.0.1:{self.pport}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.pport}",
             "--initial-cluster", f"t=http://127.0.0.1:{self.pport}",
             "--cert-file", str(b / "server.pem"), "--key-file", str(b / "server.key"),
             "--trusted-ca-file", self.ca, "--client-cert-auth",
             "--auth-token-ttl", "1"],  # simple tokens expire after 1 s unused (default 300 s)
            stdout=open(b / "etcd.log", "ab"), stderr=subprocess.STDOUT,  # noqa: SIM115
        )
        _wait_until(lambda: self.ctl("endpoint", "health", check=False).returncode == 0, 15, 0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["etcdctl", f"--endpoints=https://127.0.0.1:{self.cport}", "--cacert", self.ca,
             "--cert", self.cert, "--key", self.key, "--command-timeout=2s", *args],
            check=check, capture_output=True, text=True, env={**os.environ, "ETCDCTL_API": "3"},
        )


def _free_port() -> int:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _make_certs(d: Path) -> None:
    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "2", "-subj", "/CN=logferry-test-ca")
    (d / "srv.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n")
    (d / "cli.cnf").write_text("extendedKeyUsage=clientAuth\n")
    for name, ext in (("server", "srv.cnf"), ("client", "cli.cnf")):
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", f"/CN={name}")
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.pem", "-days", "2", "-extfile", ext)


@pytest.fixture(scope="module")
def tls_etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_TlsEtcd]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl CLI not installed (needed to make test certificates)")
    base = tmp_path_factory.mktemp("tls-etcd")
    _make_certs(base)
    e = _TlsEtcd(base)
    e.start()
    try:
        yield e
    finally:
        if e.proc is not None and e.proc.poll() is None:
            e.kill()


def test_tls_and_auth_with_token_renewal(tls_etcd: _TlsEtcd, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="logferry.etcd")
    e = tls_etcd
    tls = {"ca_file": e.ca, "cert_file": e.cert, "key_file": e.key}
    # a host name works: resolved to an IP for the address list, checked against the certificate
    with EtcdClient([f"localhost:{e.cport}"], timeout_s=3, **tls) as c:
        assert c.put("/tls/x", b"1") > 0 and c.get("/tls/x")[0] == b"1"
        assert [m.healthy for m in c.members()] == [True]
    # several endpoints: all certificates are checked against one name (default: first host)
    dead = f"127.0.0.1:{_free_port()}"
    for eps, name in (([f"127.0.0.1:{e.cport}", dead], None), ([dead, f"127.0.0.1:{e.cport}"], "localhost")):
        with EtcdClient(eps, timeout_s=3, tls_server_name=name, **tls) as c:
            assert c.get("/tls/x")[0] == b"1"
    # no client certificate: refused (as unavailable: the TLS handshake fails)
    with EtcdClient([f"127.0.0.1:{e.cport}"], timeout_s=1, ca_file=e.ca) as c, pytest.raises(EtcdUnavailable):
        c.get("/tls/x")

    for args in (
        ("user", "add", "root:rootpw"), ("user", "add", "agent:agentpw"), ("role", "add", "agent"),
        ("role", "grant-permission", "agent", "--prefix=true", "readwrite", "/logferry/"),
        ("user", "grant-role", "agent", "agent"), ("auth", "enable"),
    ):
        e.ctl(*args)
    with EtcdClient([f"127.0.0.1:{e.cport}"], user="agent", password="wrong", timeout_s=3, **tls) as bad:
        t0 = time.monotonic()
        with pytest.raises(EtcdError, match="refused user 'agent': wrong user name or password") as ei:
            bad.get("/logferry/x")
        assert not isinstance(ei.value, EtcdUnavailable) and time.monotonic() - t0 < 1  # not retried
    c = EtcdClient([f"127.0.0.1:{e.cport}"], user="agent", password="agentpw", timeout_s=5, **tls)
    try:
        r = c.put("/logferry/a", b"1")
        with pytest.raises(EtcdError, match="permission denied"):
            c.put("/elsewhere", b"x")
        st = c.status()  # doctor as a non-root user
        print(f"\n[tls+auth] status as non-root: leader {st.leader_id:x}, alarms {st.alarms}")
        assert st.leader_id != 0 and [m.healthy for m in c.members()] == [True]
        # An idle client's token expires: the next call authenticates again by itself.
        time.sleep(2.2)
        assert c.get("/logferry/a")[0] == b"1"
        assert "auth token rejected" in caplog.text
        # A watch created with an expired token is canceled by etcd -> re-auth, re-watch.
        time.sleep(2.2)
        caplog.clear()
        q: queue.Queue[WatchEvent] = queue.Queue()
        w = c.watch("/logferry/", prefix=True, start_revision=r + 1, sink=q)
        _wait_until(lambda: w.connected, 3)  # renewed the token itself: no other call in between
        r2 = c.put("/logferry/b", b"2")
        events = _drain(q, lambda ev: len(_changes(ev)) >= 1, 10)
        print("\n[tls+auth] " + "\n[tls+auth] ".join(map(str, events)))
        assert [x.kind for x in events] == ["error", "restored", "put"], events
        assert "invalid auth token" in events[0].detail and events[-1].mod_revision == r2
        # A member restart breaks the stream; the watch resumes with no gap.
        e.kill()
        e.start()
        r3 = c.put("/logferry/c", b"3")
        events = _drain(q, lambda ev: len(_changes(ev)) >= 1, 10)
        assert [x.kind for x in events] == ["error", "restored", "put"], events
        assert events[-1].mod_revision == r3
        w.cancel()
    finally:
        c.close()


@pytest.mark.slow
def test_frozen_member_under_the_watch_is_noticed(client: EtcdClient, etcd_cluster: object) -> None:
    """SIGSTOP (a hung VM, a dead network path): TCP stays up, only gRPC pings notice (~15 s)."""
    p = f"/z/{_uid()}/"
    _, _, rev = client.get_with_revision(p)
    q: queue.Queue[WatchEvent] = queue.Queue()
    w = client.watch(p, prefix=True, start_revision=rev + 1, sink=q)
    if w.member_id == client.status().leader_id:
        w.cancel()
        client.get(p)
        w = client.watch(p, prefix=True, start_revision=rev + 1, sink=q)
    victim = _member_index(client, etcd_cluster, w.member_id)
    pid = etcd_cluster.procs[victim].pid  # type: ignore[attr-defined]
    os.kill(pid, signal.SIGSTOP)
    t0 = time.monotonic()
    try:
        expected = [("put", f"{p}{i}", client.put(f"{p}{i}", b"x")) for i in range(3)]
        events = _drain(q, lambda ev: len(_changes(ev)) >= 3, 30)
        print(f"\n[timing] frozen m{victim} under the watch: events delivered {time.monotonic() - t0:.1f}s later")
        assert [e.kind for e in events][:2] == ["error", "restored"] and "ping timeout" in events[0].detail
        assert _changes(events) == expected
    finally:
        os.kill(pid, signal.SIGCONT)
        w.cancel()
