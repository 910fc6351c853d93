"""logferry.etcd without an etcd server: endpoint parsing, backoff, watch bookkeeping, guards.

The behaviour against real members (failover, outages, leases) is in the integration tests.
"""

from __future__ import annotations

import queue
import socket
import threading
import time

import pytest
from aetcd import rpc

from logferry import etcd
from logferry.etcd import EtcdClient, EtcdError, EtcdUnavailable, LeaseKeeper, Watch, WatchEvent


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10.0.0.5:2379", ("10.0.0.5", 2379)),
        ("10.0.0.5", ("10.0.0.5", 2379)),
        ("http://10.0.0.5:23790", ("10.0.0.5", 23790)),
        ("https://etcd1.example.org:2379", ("etcd1.example.org", 2379)),
        ("[fd00::1]:2379", ("fd00::1", 2379)),
        (" etcd1:2379 ", ("etcd1", 2379)),
    ],
)
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert etcd.parse_endpoint(text) == expected


@pytest.mark.parametrize("bad", ["", "   ", "host:notaport", "http://:2379"])
def test_parse_endpoint_rejects(bad: str) -> None:
    with pytest.raises(ValueError):
        etcd.parse_endpoint(bad)


def test_resolve_target_ip_lists() -> None:
    assert etcd.resolve_target(["127.0.0.1:1", "127.0.0.2:2"]) == ("ipv4:127.0.0.1:1,127.0.0.2:2", "127.0.0.1")
    assert etcd.resolve_target(["[::1]:1", "[fd00::2]:2"]) == ("ipv6:[::1]:1,[fd00::2]:2", "::1")
    # one scheme per target: with both families, IPv4 wins (names often have A and AAAA records)
    assert etcd.resolve_target(["[::1]:1", "127.0.0.1:2"]) == ("ipv4:127.0.0.1:2", "::1")


def test_resolve_target_names(monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_getaddrinfo(host: str, port: int, **_: object) -> list[tuple[object, ...]]:
        table = {"etcd1": ["10.1.0.1"], "etcd2": ["10.1.0.2", "10.1.0.3"]}
        if host not in table:
            raise socket.gaierror(-2, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port)) for ip in table[host]]

    monkeypatch.setattr(etcd.socket, "getaddrinfo", fake_getaddrinfo)
    target, name = etcd.resolve_target(["etcd1:2379", "etcd2:2379", "gone:2379"])
    assert target == "ipv4:10.1.0.1:2379,10.1.0.2:2379,10.1.0.3:2379"
    assert name == "etcd1"  # the default TLS server name
    with pytest.raises(EtcdUnavailable, match="gone"):
        etcd.resolve_target(["gone:2379"])


def test_backoff_is_capped_and_resets() -> None:
    b = etcd._Backoff(0.5, 5.0)
    delays = [b.next() for _ in range(10)]
    assert 0.4 <= delays[0] <= 0.6
    assert all(d <= 5.0 for d in delays) and delays[-1] >= 4.0
    b.reset()
    assert b.next() <= 0.6


class _Sinkless:
    """Just enough of a client for Watch's bookkeeping (no loop, no server)."""


def _watch(prefix: bool = True, start: int = 10) -> tuple[Watch, queue.Queue[WatchEvent]]:
    q: queue.Queue[WatchEvent] = queue.Queue()
    w = Watch(_Sinkless(), "/p/", prefix, start, q)  # type: ignore[arg-type]
    return w, q


def _resp(**kw: object) -> rpc.WatchResponse:
    events = kw.pop("events", [])
    r = rpc.WatchResponse(**kw)  # type: ignore[arg-type]
    for kind, key, rev in events:  # type: ignore[attr-defined]
        ev = r.events.add()
        ev.type = rpc.Event.PUT if kind == "put" else rpc.Event.DELETE
        ev.kv.key = key.encode()
        ev.kv.mod_revision = rev
        ev.kv.value = b"v" if kind == "put" else b""
    return r


def _all(q: queue.Queue[WatchEvent]) -> list[WatchEvent]:
    out = []
    while not q.empty():
        out.append(q.get_nowait())
    return out


def test_watch_tracks_revisions_and_drops_duplicates() -> None:
    w, q = _watch(start=10)
    created = []
    w._handle(_resp(created=True, header=rpc.ResponseHeader(member_id=7, revision=12)), lambda: created.append(1))
    assert created == [1] and w.member_id == 7 and w.next_revision == 10  # explicit start kept
    # two events of one revision (a transaction) and one later one
    w._handle(_resp(events=[("put", "/p/a", 10), ("delete", "/p/b", 10), ("put", "/p/a", 11)]), lambda: None)
    assert [(e.kind, e.key, e.mod_revision) for e in _all(q)] == [
        ("put", "/p/a", 10),
        ("delete", "/p/b", 10),
        ("put", "/p/a", 11),
    ]
    assert w.next_revision == 12
    # a replayed old event is not delivered twice
    w._handle(_resp(events=[("put", "/p/a", 11), ("put", "/p/c", 12)]), lambda: None)
    assert [(e.key, e.mod_revision) for e in _all(q)] == [("/p/c", 12)]
    # progress notification (no events) moves the resume point forward
    w._handle(_resp(header=rpc.ResponseHeader(revision=40)), lambda: None)
    assert w.next_revision == 41 and _all(q) == []


def test_watch_from_now_takes_created_revision() -> None:
    w, _ = _watch(start=0)
    w._handle(_resp(created=True, header=rpc.ResponseHeader(revision=99)), lambda: None)
    assert w.next_revision == 100


def test_watch_compaction_and_cancel_are_errors() -> None:
    w, _ = _watch()
    with pytest.raises(etcd._Compacted) as ei:
        w._handle(_resp(created=True, canceled=True, compact_revision=50), lambda: None)
    assert ei.value.compact_revision == 50
    with pytest.raises(ConnectionError, match="no leader"):
        w._handle(_resp(canceled=True, cancel_reason="etcdserver: no leader"), lambda: None)


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_client_guards_and_unavailable_message() -> None:
    port = _closed_port()
    c = EtcdClient([f"127.0.0.1:{port}"], timeout_s=0.5)
    try:
        with pytest.raises(ValueError, match="unbounded"):
            c.watch("/k", prefix=False, start_revision=0, sink=queue.Queue(maxsize=10))
        with pytest.raises(ValueError):
            LeaseKeeper(c, "/k", lambda: b"", ttl_s=1)
        t0 = time.monotonic()
        with pytest.raises(EtcdUnavailable) as ei:
            c.get("/k")
        assert time.monotonic() - t0 < 2.0
        assert f"127.0.0.1:{port}" in str(ei.value) and "endpoint health" in str(ei.value)
        # a blocking call from the loop thread would wait on itself: refused, not deadlocked
        seen: list[BaseException] = []
        done = threading.Event()

        def from_loop() -> None:
            try:
                c.get("/k")
            except BaseException as e:
                seen.append(e)
            done.set()

        c._loop.call_soon_threadsafe(from_loop)
        assert done.wait(2) and isinstance(seen[0], RuntimeError)
    finally:
        c.close()
    c.close()  # idempotent
    assert not c._thread.is_alive()
    with pytest.raises(EtcdError, match="closed"):
        c.get("/k")


def test_client_argument_checks() -> None:
    with pytest.raises(EtcdError, match="together"):
        EtcdClient(["127.0.0.1:1"], user="u")
    with pytest.raises(EtcdError, match="together"):
        EtcdClient(["127.0.0.1:1"], cert_file="/x.pem")
    with pytest.raises(EtcdError, match="cannot read"):
        EtcdClient(["127.0.0.1:1"], ca_file="/nonexistent/ca.pem")


def test_no_server_no_spin_no_extra_threads() -> None:
    """A watch and a lease keeper against a dead endpoint back off quietly on the one loop thread."""
    c = EtcdClient([f"127.0.0.1:{_closed_port()}"], timeout_s=1.0)
    try:
        # Threads that were there, and grpc's own poller (``PollerCompletionQueue._poll_wrapper``: one
        # per process, started by the first aio call of any client, so by an earlier test or this one)
        # do not count; a thread of an earlier test ending meanwhile does not either.
        threads = set(threading.enumerate())
        q: queue.Queue[WatchEvent] = queue.Queue()
        t0 = time.monotonic()
        w = c.watch("/k", prefix=False, start_revision=5, sink=q)
        keeper = LeaseKeeper(c, "/status", lambda: b"{}", ttl_s=3, refresh_s=1)
        assert time.monotonic() - t0 < 2.0  # both return after their first (failed) attempt
        assert {t for t in threading.enumerate() if t not in threads and "_poll_wrapper" not in t.name} == set()
        cpu0 = time.process_time()
        time.sleep(2.0)
        assert time.process_time() - cpu0 < 0.3
        events = [q.get_nowait() for _ in range(q.qsize())]
        assert [e.kind for e in events] == ["error"]  # one per fault, not one per retry
        assert events[0].mod_revision == 4 and "resume at revision 5" in events[0].detail
        assert not w.connected and not keeper.registered
        w.cancel()
        keeper.stop(delete=False)
    finally:
        c.close()
