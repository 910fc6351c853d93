"""The synchronous face of etcd for logagent, logtransfer and logctl.

The daemons and the CLI are synchronous programs; the etcd client we chose (``aetcd``, see
docs/design.md "Libraries") is asyncio. So one :class:`EtcdClient` owns ONE background thread that runs
its own event loop; blocking methods hand a coroutine to that loop (``run_coroutine_threadsafe``)
and wait for it with a deadline. Watches and lease keepers are tasks on the same loop (no extra
threads) and hand what they see to the daemon's main loop through a thread-safe ``queue.Queue``.

What this module guarantees, because the daemons rely on it:

* Failover: all endpoints go into one gRPC channel (an address list balanced round-robin), so a
  dead member is skipped and a call that failed on it is retried on another one until the
  deadline; then :class:`EtcdUnavailable` says which endpoints were tried and what to check.
* Watches never lose a change: after a broken stream they re-watch from the last delivered
  revision + 1; if etcd compacted that history they re-read the key/prefix and deliver the
  current state after a ``resync`` marker. They never spin a CPU while etcd is down (capped
  exponential backoff), and they put one ``error`` event per fault and one ``restored`` event
  when it is over into the sink, so a daemon logs a line per fault, not a traceback per retry.
* Status keys bound to a lease (:class:`LeaseKeeper`) re-register by themselves when the lease
  was lost during a long outage, and vanish at once on a clean stop.

One module, though long: the client, its watches and its lease keepers are one idea — one
event-loop thread, one channel, one set of retry and backoff rules — and each part reaches into
the others' internals (the loop, ``_call``, ``_range``); split, they would need a shared private
module anyway.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ipaddress
import json
import logging
import os
import queue
import random
import re
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

# gRPC's C core writes its own lines to stderr ("E1204 … ssl_transport_security_utils.cc:72]
# …BAD_CERTIFICATE", several per reconnect): with a bad certificate that is a flood, and every
# fault it reports reaches us as an error we log once, in one line. Set before grpc is imported.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import aetcd
import grpc
import grpc.aio
from aetcd import exceptions as aetcd_exceptions
from aetcd import rpc
from aetcd import utils as aetcd_utils

from logferry import tlsdiag

__all__ = [
    "ClusterStatus",
    "EtcdClient",
    "EtcdError",
    "EtcdUnavailable",
    "LeaseKeeper",
    "MemberStatus",
    "Watch",
    "WatchEvent",
    "WatchKind",
    "parse_endpoint",
    "resolve_target",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_PORT = 2379

#: put/delete: a change of a watched key. resync: the history the watch needed was compacted; the
#: events that follow are the full current state (forget what you knew, then apply them as usual).
#: error: the watch broke (once per fault); restored: it runs again (once per fault).
WatchKind = Literal["put", "delete", "resync", "error", "restored"]

# Watch re-connect backoff: first wait, cap. Capped so a daemon is back within seconds of etcd.
WATCH_BACKOFF_FIRST_S = 0.5
WATCH_BACKOFF_CAP_S = 5.0

# gRPC codes after which the same call may succeed on another member or a little later.
_RETRYABLE_CODES = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,  # member down, no leader, leader changed, request timed out
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.INTERNAL,  # transport resets show up as INTERNAL too
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.RESOURCE_EXHAUSTED,  # too many requests (also: NOSPACE alarm, named in the error)
        grpc.StatusCode.CANCELLED,  # stream torn down by the server going away
    }
)


class EtcdError(Exception):
    """etcd refused a request (permissions, bad argument, …): retrying the same call will not help."""


class EtcdUnavailable(EtcdError):
    """No etcd member answered within the deadline: the cluster is down or cannot be reached."""


class EtcdLoginFailed(EtcdError):
    """etcd refused the user name or password (retrying with the same ones will not help)."""


@dataclass(frozen=True, slots=True)
class WatchEvent:
    """One thing a :class:`Watch` saw, as put into its sink.

    ``key`` is the changed key for put/delete, the watched key or prefix for the others.
    ``mod_revision`` is the revision of the change (put/delete), the revision the state was read
    at (resync) or the last revision delivered (error/restored). ``detail`` is a one-line
    human explanation for error/restored/resync.
    """

    kind: WatchKind
    key: str
    value: bytes | None
    mod_revision: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    """What the member that answered says about the cluster (for ``logctl doctor``)."""

    cluster_id: int
    member_id: int  # the member that answered
    leader_id: int  # 0: that member knows no leader
    version: str
    db_size: int
    raft_term: int
    raft_index: int
    revision: int
    alarms: list[str] = field(default_factory=list)  # e.g. ["NOSPACE on 8e9e05c52164694d"]
    alarms_error: str = ""  # set when the alarms could not be listed (then ``alarms`` is empty)


@dataclass(frozen=True, slots=True)
class MemberStatus:
    """One member, asked directly (not through the balanced channel), for ``logctl doctor``."""

    id: int
    name: str
    peer_urls: list[str]
    client_urls: list[str]
    healthy: bool
    is_leader: bool
    is_learner: bool = False
    version: str = ""
    db_size: int = 0
    raft_term: int = 0
    raft_index: int = 0
    error: str = ""  # why not healthy, one line


# --------------------------------------------------------------------------------------------
# endpoints → gRPC target


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """Split ``host:port`` (also ``[v6]:port``, ``http(s)://host:port`` or a bare host) into parts.

    Lenient on purpose: operators copy endpoints from etcdctl (URLs) as often as from docs (host:port).
    """
    text = endpoint.strip()
    if not text:
        raise ValueError("empty etcd endpoint")
    if "://" not in text:
        text = "//" + text
    parts = urlsplit(text)
    host = parts.hostname
    if not host:
        raise ValueError(f"etcd endpoint {endpoint!r}: no host")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as e:
        raise ValueError(f"etcd endpoint {endpoint!r}: bad port") from e
    return host, port


def resolve_target(endpoints: list[str]) -> tuple[str, str | None]:
    """Return the gRPC target for all endpoints, and the first endpoint's host (the TLS name).

    gRPC fails over between members only inside one channel whose target is an address list
    (``ipv4:a:p,b:p`` / ``ipv6:[a]:p,…``); those schemes take IP literals only, and the ``dns:``
    scheme takes a single name. So names are resolved here, once, to all their addresses. A
    member that later moves to another IP needs a daemon restart (members' IPs are stable in
    practice; etcd peers themselves are pinned to their URLs).
    """
    if not endpoints:
        raise ValueError("no etcd endpoints configured")
    addrs: list[tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]] = []
    first_host = parse_endpoint(endpoints[0])[0]
    failures: list[str] = []
    for ep in endpoints:
        host, port = parse_endpoint(ep)
        try:
            addrs.append((ipaddress.ip_address(host), port))
            continue
        except ValueError:
            pass
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as e:
            failures.append(f"{host}: {e}")
            continue
        for info in infos:
            ip = ipaddress.ip_address(info[4][0].split("%", 1)[0])
            if (ip, port) not in addrs:
                addrs.append((ip, port))
    if not addrs:
        raise EtcdUnavailable(
            f"cannot resolve any etcd endpoint of {', '.join(endpoints)} ({'; '.join(failures)}): "
            "check the names in the INI and this host's DNS"
        )
    if failures:
        log.warning("etcd: skipping endpoints that do not resolve: %s", "; ".join(failures))
    # One target has one scheme. With both families at hand use IPv4 only: mapping IPv4 into an
    # ipv6: list would need IPv6 sockets, which hardened hosts disable, and a name resolving to
    # A and AAAA records is the usual case, not a wish for IPv6.
    v4 = [(ip, port) for ip, port in addrs if ip.version == 4]
    if v4:
        if len(v4) < len(addrs):
            log.info("etcd: using the IPv4 addresses of %s only", ", ".join(endpoints))
        return "ipv4:" + ",".join(f"{ip}:{port}" for ip, port in v4), first_host
    return "ipv6:" + ",".join(f"[{ip}]:{port}" for ip, port in addrs), first_host


def _channel_options(tls_name: str | None) -> list[tuple[str, Any]]:
    """Channel options; ``tls_name`` is the name server certificates are checked against."""
    options: list[tuple[str, Any]] = [
        # Spread the daemons over the members, and skip a dead member for new calls at once.
        ("grpc.service_config", json.dumps({"loadBalancingConfig": [{"round_robin": {}}]})),
        # A frozen or unplugged member is noticed on open streams (watches) within ~15 s.
        # Pings only while a call is open: etcd answers pings without streams with a GOAWAY.
        # grpcio 1.85 waits for a ping ack as long as ping_timeout_ms says, whatever
        # keepalive_timeout_ms is: without it a SIGSTOPped member went unnoticed for 40 s+.
        ("grpc.keepalive_time_ms", 10_000),
        ("grpc.keepalive_timeout_ms", 5_000),
        ("grpc.http2.ping_timeout_ms", 5_000),
        ("grpc.keepalive_permit_without_calls", 0),
        # gRPC's default reconnect backoff grows to 120 s; we want etcd back within seconds.
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.min_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 5_000),
        # A big prefix read may exceed gRPC's 4 MiB default (etcd itself has no such limit).
        ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ]
    if tls_name:
        # gRPC checks every member's certificate against ONE name per channel; without this it
        # would be the whole address list (which no certificate matches). See EtcdClient.
        options.append(("grpc.ssl_target_name_override", tls_name))
    return options


def _read_file(path: str | None, what: str) -> bytes | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise EtcdError(f"cannot read etcd {what} {path}: {e.strerror}") from e


# --------------------------------------------------------------------------------------------
# aetcd with our channel


class _Aetcd(aetcd.Client):
    """aetcd's client with the channel we need.

    aetcd 1.0 builds an insecure channel to one ``host:port``; we need an address list
    (failover), TLS and our options, so only ``connect`` is replaced, the RPC methods are reused.
    Authentication is separate from channel creation so that a lost token (member restarted,
    token expired) is renewed without tearing down open watch streams.
    """

    def __init__(
        self,
        target: str,
        credentials: grpc.ChannelCredentials | None,
        options: list[tuple[str, Any]],
        username: str | None,
        password: str | None,
        timeout: float,
    ) -> None:
        super().__init__(host="unused", port=0, username=username, password=password, timeout=timeout)
        self._target = target
        self._credentials = credentials
        self._channel_options = options

    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self.channel is None:
            if self._credentials is not None:
                self.channel = grpc.aio.secure_channel(self._target, self._credentials, options=self._channel_options)
            else:
                self.channel = grpc.aio.insecure_channel(self._target, options=self._channel_options)
            self.auth_stub = rpc.AuthStub(self.channel)
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self.watchstub = rpc.WatchStub(self.channel)
        if self._username is not None:
            request = rpc.AuthenticateRequest(name=self._username, password=self._password)
            try:
                resp = await self.auth_stub.Authenticate(request, timeout=self._timeout)
            except rpc.AioRpcError as e:
                if tlsdiag.classify(e.details() or "") == "login":
                    raise EtcdLoginFailed(tlsdiag.explain(
                        "etcd", "login", user=self._username,
                        password_key="[etcd] password (or password_file)")) from None
                aetcd_exceptions._handle_exception(e)
            self.metadata = (("token", resp.token),)
        self._connected.set()

    def forget_token(self) -> None:
        """Make the next call authenticate again (etcd said the token is invalid)."""
        if self._username is not None and self._connected.is_set():
            log.info("etcd: auth token rejected (member restarted or token expired); authenticating again")
            self._connected.clear()


def _grpc_code(exc: BaseException) -> grpc.StatusCode | None:
    """The gRPC status code behind an aetcd or grpc error, if there is one."""
    for e in (exc, exc.__cause__):
        if isinstance(e, grpc.aio.AioRpcError):
            return e.code()
    if isinstance(exc, aetcd_exceptions.ConnectionFailedError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, aetcd_exceptions.ConnectionTimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return None


def _describe(exc: BaseException) -> str:
    """One line for logs: the gRPC code and etcd's own words, no traceback."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "no answer in time"
    if isinstance(exc, EtcdLoginFailed):
        return str(exc)
    for e in (exc, exc.__cause__):
        if isinstance(e, grpc.aio.AioRpcError):
            return f"{e.code().name}: {e.details()}"
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0]


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | ConnectionError):
        return True
    return _grpc_code(exc) in _RETRYABLE_CODES


def _is_bad_token(exc: BaseException) -> bool:
    if _grpc_code(exc) != grpc.StatusCode.UNAUTHENTICATED:
        return False
    return "token" in _describe(exc)  # "invalid auth token"; a wrong password is not retried


def _decode_key(raw: bytes) -> str:
    # surrogateescape: a foreign non-UTF-8 key under our prefix must not kill a watch, and
    # encodes back to the same bytes.
    return raw.decode("utf-8", "surrogateescape")


def _encode_key(key: str) -> bytes:
    return key.encode("utf-8", "surrogateescape")


class _Backoff:
    """Capped exponential backoff with ±20% jitter (hundreds of agents must not retry in step)."""

    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = cap
        self._next = first

    def reset(self) -> None:
        self._next = self.first

    def next(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.cap)
        return min(self.cap, delay * random.uniform(0.8, 1.2))


class _Canceled(ConnectionError):
    """etcd canceled a watch (no leader, permission denied, …): re-watch after backoff."""


class _Compacted(Exception):
    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"history before revision {compact_revision} was compacted")
        self.compact_revision = compact_revision


# --------------------------------------------------------------------------------------------
# the client


class EtcdClient:
    """Blocking etcd client: one background event-loop thread, failover across ``endpoints``.

    ``endpoints`` are ``host:port`` strings (URLs are accepted too). Names are resolved once, here
    (see :func:`resolve_target`). TLS is used when ``ca_file`` or ``cert_file`` is given;
    ``cert_file``/``key_file`` are the client certificate for etcd's ``--client-cert-auth``.
    Every blocking call gives up after ``timeout_s`` with :class:`EtcdUnavailable`.

    TLS and several members: gRPC checks every member's certificate against one name,
    ``tls_server_name``, by default the host of the first endpoint. So either all member
    certificates carry that name (or IP) among their SANs, or set ``tls_server_name`` to a
    name they all carry (e.g. a shared SAN like ``etcd.internal``).

    Do not call blocking methods from a :class:`LeaseKeeper` ``value_fn`` (it runs on the loop
    thread and would wait on itself); that raises ``RuntimeError``.
    """

    def __init__(
        self,
        endpoints: list[str],
        user: str | None = None,
        password: str | None = None,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        timeout_s: float = 5.0,
        *,
        tls_server_name: str | None = None,
    ) -> None:
        if (user is None) != (password is None):
            raise EtcdError("etcd user and password must be given together")
        if (cert_file is None) != (key_file is None):
            raise EtcdError("etcd cert_file and key_file must be given together")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.endpoints = list(endpoints)
        self.timeout_s = float(timeout_s)
        self.target, tls_name = resolve_target(self.endpoints)
        credentials = None
        if ca_file is not None or cert_file is not None:
            credentials = grpc.ssl_channel_credentials(
                root_certificates=_read_file(ca_file, "CA file"),
                private_key=_read_file(key_file, "key file"),
                certificate_chain=_read_file(cert_file, "certificate file"),
            )
        self._tls = credentials is not None
        self._ca_file = ca_file
        self._security_said: dict[str, float] = {}
        self._tls_name = tls_server_name or tls_name
        self._credentials = credentials
        self._tls_server_name = tls_server_name
        self._options = _channel_options((tls_server_name or tls_name) if self._tls else None)
        self._user = user
        self._closed = False
        self._watches: set[Watch] = set()
        self._keepers: set[LeaseKeeper] = set()

        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run_loop, name="etcd-loop", daemon=True)
        self._thread.start()
        # The channel must be created on the loop that will use it.
        self._aetcd: _Aetcd = self._submit(self._make_client(target=self.target, password=password)).result()

    # ---- loop plumbing -------------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    async def _make_client(self, target: str, password: str | None) -> _Aetcd:
        return _Aetcd(target, self._credentials, self._options, self._user, password, self.timeout_s)

    def _submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("blocking etcd call from the etcd loop thread (e.g. inside value_fn)")
        if self._closed:
            coro.close()
            raise EtcdError("etcd client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop)

    def _run(self, what: str, coro: Coroutine[Any, Any, T], wait_s: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for it; the coroutine itself honours the deadline."""
        fut = self._submit(coro)
        try:
            # The margin lets the coroutine time itself out first, with the better message.
            return fut.result((wait_s or self.timeout_s) + 2.0)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise self._unavailable(what, None) from None

    def _raised(self, message: str) -> None:
        """A security problem went to a caller in an exception: the caller reports it."""
        problem = tlsdiag.classify(message)
        if problem is not None:
            self._security_said[problem] = time.monotonic()

    def already_reported(self, message: str) -> bool:
        """Whether a caller was handed this kind of security problem within the last minute (then
        a watch or lease keeper seeing it too need not log it again: one line per fault)."""
        problem = tlsdiag.classify(message)
        at = self._security_said.get(problem) if problem is not None else None
        return at is not None and time.monotonic() - at < 60

    def describe(self, exc: BaseException) -> str:
        """One line for ``exc``: for a TLS problem, what is wrong with which INI setting."""
        text = _describe(exc)
        problem = tlsdiag.classify(text) if self._tls else None
        if problem is None or problem == "login":
            return text
        m = re.search(r"ipv[46]:(\[[^\]]+\]:\d+|[^\s,:]+:\d+)", text)
        where = m.group(1) if m else ",".join(self.endpoints)
        return tlsdiag.explain("etcd", problem, where=where, ca_key="[etcd] ca_file", ca_file=self._ca_file,
                               cert_key="[etcd] cert_file/key_file", name=self._tls_name or "")

    def _unavailable(self, what: str, last: BaseException | None) -> EtcdUnavailable:
        if last is not None and self._tls and tlsdiag.classify(_describe(last)) not in (None, "login"):
            # A certificate problem is no outage: say only what is wrong and what to change.
            self._raised(self.describe(last))
            return EtcdUnavailable(f"etcd {what}: {self.describe(last)}")
        scheme = "https" if self._tls else "http"
        why = f"; last error: {_describe(last)}" if last is not None else ""
        return EtcdUnavailable(
            f"etcd {what}: no member of {', '.join(self.endpoints)} answered within "
            f"{self.timeout_s:g}s{why}. Check that the etcd members run and have a leader "
            f"(etcdctl --endpoints={','.join(e if '://' in e else scheme + '://' + e for e in self.endpoints)} "
            "endpoint health), that this host can reach their client port (firewall), and "
            "the TLS/user settings in the INI."
        )

    async def _call(
        self,
        what: str,
        fn: Callable[[], Awaitable[T]],
        *,
        deadline: float | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> T:
        """Run ``fn`` with retries on another member until ``deadline`` (loop time).

        Retried: member down, no leader, leader changed, timeouts, and an invalid auth token
        (after authenticating again). Anything else is etcd refusing the request: EtcdError.
        """
        loop = asyncio.get_running_loop()
        if deadline is None:
            deadline = loop.time() + self.timeout_s
        # One attempt gets a third of the budget: a write that a follower forwarded to a leader
        # that just died is never answered (etcd gives up only after 7 s), while the same write
        # sent again once the new leader is elected (1-2 s) succeeds.
        attempt_s = max(1.0, self.timeout_s / 3)
        backoff = _Backoff(0.05, 1.0)
        last: BaseException | None = None
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise self._unavailable(what, last)
            try:
                async with asyncio.timeout(min(remaining, attempt_s)):
                    await self._aetcd.connect()
                    return await fn()
            except asyncio.CancelledError:
                raise
            except EtcdLoginFailed as e:
                self._raised(str(e))
                raise
            except Exception as e:
                if _is_bad_token(e):
                    self._aetcd.forget_token()
                elif not _is_retryable(e):
                    raise EtcdError(f"etcd {what} refused: {_describe(e)}") from e
                last = e
                if on_retry is not None:
                    on_retry()
            await asyncio.sleep(max(0.0, min(backoff.next(), deadline - loop.time())))

    async def _range(self, key: bytes, range_end: bytes | None) -> Any:
        c = self._aetcd
        request = c._build_get_range_request(key, range_end=range_end, sort_order="ascend")
        return await c.kvstub.Range(request, timeout=self.timeout_s, metadata=c.metadata)

    # ---- key/value -----------------------------------------------------------------------

    def get(self, key: str) -> tuple[bytes | None, int]:
        """Return (value, mod_revision) of ``key``; (None, 0) when it does not exist."""
        value, mod_revision, _ = self.get_with_revision(key)
        return value, mod_revision

    def get_with_revision(self, key: str) -> tuple[bytes | None, int, int]:
        """Return (value, mod_revision, header_revision).

        The header revision is the store revision the read saw; ``watch(start_revision=rev + 1)``
        then continues exactly after this read, also when the key does not exist yet.
        """

        async def op() -> tuple[bytes | None, int, int]:
            resp = await self._range(_encode_key(key), None)
            if resp.kvs:
                kv = resp.kvs[0]
                return kv.value, kv.mod_revision, resp.header.revision
            return None, 0, resp.header.revision

        return self._run(f"get {key}", self._call(f"get {key}", op))

    def get_prefix(self, prefix: str) -> tuple[list[tuple[str, bytes, int]], int]:
        """Return ([(key, value, mod_revision)] sorted by key, header_revision) for a prefix."""

        async def op() -> tuple[list[tuple[str, bytes, int]], int]:
            raw = _encode_key(prefix)
            resp = await self._range(raw, aetcd_utils.prefix_range_end(raw))
            items = [(_decode_key(kv.key), kv.value, kv.mod_revision) for kv in resp.kvs]
            return items, resp.header.revision

        return self._run(f"get prefix {prefix}", self._call(f"get prefix {prefix}", op))

    def put(self, key: str, value: bytes, lease: int | None = None) -> int:
        """Write ``key``; returns the new store revision (the key's mod_revision)."""

        async def op() -> int:
            resp = await self._aetcd.put(_encode_key(key), value, lease=lease)
            return int(resp.header.revision)

        return self._run(f"put {key}", self._call(f"put {key}", op))

    def delete(self, key: str) -> bool:
        """Delete ``key``; True when it existed (a retried delete may see False)."""

        async def op() -> bool:
            return await self._aetcd.delete(_encode_key(key)) is not None

        return self._run(f"delete {key}", self._call(f"delete {key}", op))

    def compare_and_put(self, key: str, value: bytes, expected_mod_revision: int) -> bool:
        """Write ``key`` only if its mod_revision is still ``expected_mod_revision`` (0: must not exist).

        One etcd transaction, so two operators editing the same key cannot silently overwrite
        each other: the loser gets False, re-reads, and decides. If an attempt failed in a way
        that leaves open whether etcd applied it, and the retry then finds the key already
        holding exactly ``value``, that counts as success (it was most likely our own write).
        """
        raw = _encode_key(key)
        retried = False

        def note_retry() -> None:
            nonlocal retried
            retried = True

        async def op() -> bool:
            c = self._aetcd
            ok, _ = await c.transaction(
                compare=[c.transactions.mod(raw) == expected_mod_revision],
                success=[c.transactions.put(raw, value)],
                failure=[],
            )
            if ok or not retried:
                return bool(ok)
            resp = await self._range(raw, None)
            return bool(resp.kvs) and resp.kvs[0].value == value

        return self._run(f"compare-and-put {key}", self._call(f"compare-and-put {key}", op, on_retry=note_retry))

    def compare_and_delete(self, key: str, expected_mod_revision: int) -> bool:
        """Delete ``key`` only if its mod_revision is still ``expected_mod_revision``.

        The delete counterpart of :meth:`compare_and_put` (``logctl`` removing a collect list
        must not remove one that another operator just rewrote). If an attempt failed without
        telling whether it was applied and the retry finds the key gone, that counts as success.
        """
        raw = _encode_key(key)
        retried = False

        def note_retry() -> None:
            nonlocal retried
            retried = True

        async def op() -> bool:
            c = self._aetcd
            ok, _ = await c.transaction(
                compare=[c.transactions.mod(raw) == expected_mod_revision],
                success=[c.transactions.delete(raw)],
                failure=[],
            )
            if ok or not retried:
                return bool(ok)
            resp = await self._range(raw, None)
            return not resp.kvs

        return self._run(f"compare-and-delete {key}", self._call(f"compare-and-delete {key}", op, on_retry=note_retry))

    def create_on_lease(self, key: str, value: bytes, ttl_s: int) -> int | None:
        """Create ``key`` bound to a new lease of ``ttl_s`` seconds if it does not exist: a lock.

        One transaction (``create_revision == 0`` → put), so of two callers racing exactly one gets
        it; returns that lease's id, or None when the key exists (the lease of a lost race is
        revoked at once). The key vanishes when the lease expires or :meth:`revoke_lease` is called.
        """
        raw = _encode_key(key)

        async def op() -> int | None:
            c = self._aetcd
            lease = await c.lease(ttl_s)
            ok, _ = await c.transaction(compare=[c.transactions.create(raw) == 0],
                                        success=[c.transactions.put(raw, value, lease=lease.id)], failure=[])
            if ok:
                return int(lease.id)
            await c.revoke_lease(lease.id)
            return None

        return self._run(f"create {key} on a lease", self._call(f"create {key} on a lease", op))

    def put_on_lease(self, key: str, value: bytes, lease_id: int) -> None:
        """Rewrite ``key`` keeping it bound to ``lease_id`` (a lock holder noting its progress)."""
        raw = _encode_key(key)

        async def op() -> None:
            await self._aetcd.put(raw, value, lease=lease_id)

        self._run(f"put {key}", self._call(f"put {key}", op))

    def revoke_lease(self, lease_id: int) -> None:
        """End a lease now: every key bound to it is deleted at once."""

        async def op() -> None:
            await self._aetcd.revoke_lease(lease_id)

        self._run("revoke lease", self._call("revoke lease", op))

    # ---- cluster health ------------------------------------------------------------------

    def status(self) -> ClusterStatus:
        """Status as seen by whichever member answers, with the cluster's alarms."""

        async def op() -> ClusterStatus:
            c = self._aetcd
            st = await c.maintenancestub.Status(rpc.StatusRequest(), timeout=self.timeout_s, metadata=c.metadata)
            alarm_req = c._build_alarm_request("get", 0, "none")
            try:
                resp = await c.maintenancestub.Alarm(alarm_req, timeout=self.timeout_s, metadata=c.metadata)
                alarms = [f"{rpc.AlarmType.Name(a.alarm)} on {a.memberID:x}" for a in resp.alarms]
                alarms_error = ""
            except grpc.aio.AioRpcError as e:
                if e.code() != grpc.StatusCode.PERMISSION_DENIED:
                    raise
                alarms, alarms_error = [], f"this etcd user may not list alarms ({e.details()})"
            return ClusterStatus(
                cluster_id=st.header.cluster_id,
                member_id=st.header.member_id,
                leader_id=st.leader,
                version=st.version,
                db_size=st.dbSize,
                raft_term=st.raftTerm,
                raft_index=st.raftIndex,
                revision=st.header.revision,
                alarms=alarms,
                alarms_error=alarms_error,
            )

        return self._run("status", self._call("status", op))

    def members(self) -> list[MemberStatus]:
        """Every member with its own health, asking each one directly on its client URL.

        The balanced channel cannot address one member, and doctor must name the sick one,
        so each member gets a short-lived channel of its own.
        """

        async def list_members() -> Any:
            c = self._aetcd
            return await c.clusterstub.MemberList(rpc.MemberListRequest(), timeout=self.timeout_s, metadata=c.metadata)

        async def op() -> list[MemberStatus]:
            resp = await self._call("member list", list_members)
            probes = [self._probe_member(m) for m in resp.members]
            return list(await asyncio.gather(*probes))

        return self._run("member list", op(), wait_s=2 * self.timeout_s)

    async def _probe_member(self, m: Any) -> MemberStatus:
        base = {
            "id": m.ID,
            "name": m.name or "(not started)",
            "peer_urls": list(m.peerURLs),
            "client_urls": list(m.clientURLs),
            "is_learner": bool(getattr(m, "isLearner", False)),
        }
        if not m.clientURLs:
            return MemberStatus(**base, healthy=False, is_leader=False, error="not started yet")
        timeout = min(self.timeout_s, 3.0)
        errors = []
        for url in m.clientURLs:
            try:
                target, host = await asyncio.get_running_loop().run_in_executor(None, resolve_target, [url])
            except Exception as e:  # an unresolvable advertised URL is a finding, not a crash
                errors.append(f"{url}: {_describe(e)}")
                continue
            if self._credentials is not None:
                options = _channel_options(self._tls_server_name or host)
                channel = grpc.aio.secure_channel(target, self._credentials, options=options)
            else:
                channel = grpc.aio.insecure_channel(target, options=self._options)
            try:
                st = await rpc.MaintenanceStub(channel).Status(
                    rpc.StatusRequest(), timeout=timeout, metadata=self._aetcd.metadata
                )
            except Exception as e:
                errors.append(f"{url}: {_describe(e)}")
                continue
            finally:
                await channel.close()
            problems = list(st.errors)
            if st.leader == 0:
                problems.append("no leader")
            return MemberStatus(
                **base,
                healthy=not problems,
                is_leader=st.leader == m.ID,
                version=st.version,
                db_size=st.dbSize,
                raft_term=st.raftTerm,
                raft_index=st.raftIndex,
                error="; ".join(problems),
            )
        return MemberStatus(**base, healthy=False, is_leader=False, error="; ".join(errors))

    # ---- watches and leases --------------------------------------------------------------

    def watch(
        self,
        key_or_prefix: str,
        *,
        prefix: bool,
        start_revision: int,
        sink: queue.Queue[WatchEvent],
    ) -> Watch:
        """Follow a key or prefix from ``start_revision`` (inclusive; 0 = from now) into ``sink``.

        Returns once the watch stream exists or its first attempt failed (then an ``error``
        event is in the sink and the watch keeps retrying): so with ``start_revision=0`` a
        change made after this returns is seen. Pair it with :meth:`get_with_revision` /
        :meth:`get_prefix` and ``start_revision = header_revision + 1`` to follow a state
        without a gap. The sink must be unbounded: the loop thread never blocks on it.
        """
        if sink.maxsize > 0:
            raise ValueError("the watch sink must be an unbounded queue.Queue()")
        if start_revision < 0:
            raise ValueError("start_revision must be >= 0")
        w = Watch(self, key_or_prefix, prefix, start_revision, sink)
        w._start()
        return w

    def close(self) -> None:
        """Cancel watches, stop lease keepers (their keys expire by TTL), stop the loop thread."""
        if self._closed:
            return

        async def shutdown() -> None:
            tasks = [w._task for w in self._watches if w._task is not None]
            tasks += [k._task for k in self._keepers if k._task is not None]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await self._aetcd.close()
            # grpc's own tasks of a stream (a watch, a keep-alive: _handle_status_once_received) end
            # when they see the channel closed; one still pending when the loop closes is logged as
            # an ERROR ("Task was destroyed but it is pending!") at every daemon's clean stop. Let
            # them see it, then cancel what is left and wait for it.
            await asyncio.sleep(0)
            left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in left:
                t.cancel()
            if left:
                await asyncio.wait(left, timeout=min(2.0, self.timeout_s))
            await asyncio.get_running_loop().shutdown_default_executor()  # members() may have used it

        try:
            asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(self.timeout_s)
        except Exception as e:  # closing must not fail a daemon's shutdown
            log.warning("etcd: unclean client shutdown: %s", _describe(e))
        finally:
            self._closed = True
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(self.timeout_s)
            if not self._thread.is_alive():
                self._loop.close()

    def __enter__(self) -> EtcdClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# watch


class Watch:
    """A key or prefix followed into a sink; survives broken streams and compaction.

    Create it with :meth:`EtcdClient.watch`. ``next_revision`` is where it would resume.
    """

    def __init__(
        self,
        client: EtcdClient,
        key: str,
        prefix: bool,
        start_revision: int,
        sink: queue.Queue[WatchEvent],
    ) -> None:
        self.client = client
        self.key = key
        self.prefix = prefix
        self.sink = sink
        self.next_revision = start_revision
        self.member_id = 0  # member serving the stream now (0: none)
        self.connected = False
        self._raw = _encode_key(key)
        self._range_end = aetcd_utils.prefix_range_end(self._raw) if prefix else None
        self._task: asyncio.Task[None] | None = None
        self._call: Any = None
        self._stopped = False  # set by cancel(): nothing reaches the sink after it

    def _start(self) -> None:
        first_attempt: concurrent.futures.Future[None] = concurrent.futures.Future()

        async def begin() -> None:
            self._task = asyncio.get_running_loop().create_task(self._run(first_attempt))
            self.client._watches.add(self)

        self.client._submit(begin()).result(self.client.timeout_s)
        with contextlib.suppress(concurrent.futures.TimeoutError):
            first_attempt.result(self.client.timeout_s)

    def cancel(self) -> None:
        """Stop watching; no event is put into the sink after this returns.

        The promise is kept by a flag that ``_emit`` checks, not by waiting: a stream that takes
        longer than ``timeout_s`` to unwind (a loaded host, a slow member) must not turn a caller's
        clean shutdown into a TimeoutError. It is still waited for up to ``timeout_s``.
        """
        if self.client._closed or self._task is None:
            return
        self._stopped = True

        async def stop() -> None:
            assert self._task is not None
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self.client._watches.discard(self)

        try:
            self.client._submit(stop()).result(self.client.timeout_s)
        except concurrent.futures.TimeoutError:
            log.info("etcd watch on %s: still unwinding after %.0fs; it delivers nothing more", self.key,
                     self.client.timeout_s)

    def _emit(self, kind: WatchKind, key: str, value: bytes | None, rev: int, detail: str = "") -> None:
        if not self._stopped:
            self.sink.put_nowait(WatchEvent(kind, key, value, rev, detail))

    async def _run(self, first_attempt: concurrent.futures.Future[None]) -> None:
        loop = asyncio.get_running_loop()
        backoff = _Backoff(WATCH_BACKOFF_FIRST_S, WATCH_BACKOFF_CAP_S)
        broken_since: float | None = None
        attempts = 0
        need_resync: int | None = None  # compact revision that forces a re-read

        def created() -> None:
            nonlocal broken_since, attempts
            self.connected = True
            if not first_attempt.done():
                first_attempt.set_result(None)
            if broken_since is not None:
                self._emit(
                    "restored",
                    self.key,
                    None,
                    self.next_revision - 1,
                    f"etcd watch on {self.key} restored after {loop.time() - broken_since:.1f}s "
                    f"({attempts} attempts), from revision {self.next_revision} "
                    f"via member {self.member_id:x}",
                )
            broken_since = None
            attempts = 0
            backoff.reset()

        while True:
            try:
                await self.client._aetcd.connect()
                if need_resync is not None:
                    await asyncio.wait_for(self._resync(need_resync), self.client.timeout_s)
                    need_resync = None
                await self._stream(created)
                raise ConnectionError("watch stream ended")
            except asyncio.CancelledError:
                raise
            except _Compacted as e:
                need_resync = e.compact_revision
                continue  # re-read at once: etcd answered, it is up
            except Exception as e:
                self.connected = False
                self.member_id = 0
                if _is_bad_token(e) or (
                    isinstance(e, _Canceled) and ("auth token" in str(e) or "permission" in str(e))
                ):
                    # etcd 3.4 refuses a watch with an expired token in a cancel message, not with an
                    # auth error status ("…code = Unauthenticated desc = etcdserver: invalid auth
                    # token"); authenticating again costs one call per backoff step at most.
                    self.client._aetcd.forget_token()
                delay = backoff.next()
                if broken_since is None:
                    broken_since = loop.time()
                    self._emit(
                        "error",
                        self.key,
                        None,
                        self.next_revision - 1 if self.next_revision else 0,
                        f"etcd watch on {self.key} broken ({self.client.describe(e)}); retrying with backoff "
                        f"up to {WATCH_BACKOFF_CAP_S:g}s, will resume at revision "
                        f"{self.next_revision or 'now'}",
                    )
                attempts += 1
                if not first_attempt.done():
                    first_attempt.set_result(None)
                await asyncio.sleep(delay)
            finally:
                if self._call is not None:
                    self._call.cancel()  # also a stream whose creation timed out
                    self._call = None

    async def _stream(self, created: Callable[[], None]) -> None:
        """One watch stream: returns/raises when it ends; raises _Compacted on compaction."""
        c = self.client._aetcd
        create = rpc.WatchCreateRequest(
            key=self._raw,
            start_revision=self.next_revision,
            # Progress notifications advance next_revision on a quiet key, so a re-watch after
            # a long quiet time does not hit compacted history needlessly.
            progress_notify=True,
        )
        if self._range_end is not None:
            create.range_end = self._range_end
        # hasleader: the member cancels the stream when it loses its leader, instead of
        # silently delivering nothing while partitioned; we then re-watch on another member.
        metadata = (*(c.metadata or ()), ("hasleader", "true"))
        # Write API, not a request iterator: grpc.aio logs a traceback for every cancelled
        # iterator task, and our side must stay open anyway (no done_writing()).
        self._call = call = c.watchstub.Watch(metadata=metadata)
        await asyncio.wait_for(call.write(rpc.WatchRequest(create_request=create)), self.client.timeout_s)
        resp = await asyncio.wait_for(call.read(), self.client.timeout_s)
        while True:
            if resp is grpc.aio.EOF:
                return
            self._handle(resp, created)
            resp = await call.read()

    def _handle(self, resp: Any, created: Callable[[], None]) -> None:
        if resp.compact_revision:
            raise _Compacted(resp.compact_revision)
        if resp.canceled:
            raise _Canceled(f"watch canceled by etcd: {resp.cancel_reason or 'no reason given'}")
        if resp.created:
            self.member_id = resp.header.member_id
            if self.next_revision == 0:
                self.next_revision = resp.header.revision + 1
            created()
            return
        if not resp.events:
            # Progress notification: sent only to watchers that are caught up, so every later
            # event has a higher revision than this header's.
            self.next_revision = max(self.next_revision, resp.header.revision + 1)
            return
        floor = self.next_revision
        top = floor - 1
        for ev in resp.events:
            rev = ev.kv.mod_revision
            if rev < floor:
                continue  # already delivered (never seen from etcd; cheap insurance)
            if ev.type == rpc.Event.PUT:
                self._emit("put", _decode_key(ev.kv.key), ev.kv.value, rev)
            else:
                self._emit("delete", _decode_key(ev.kv.key), None, rev)
            top = max(top, rev)
        # All events of one revision arrive in one response, so resuming at top + 1 loses none.
        self.next_revision = top + 1

    async def _resync(self, compact_revision: int) -> None:
        """The history we needed is gone: deliver the current state after a resync marker."""
        resp = await self.client._range(self._raw, self._range_end)
        rev = resp.header.revision
        self._emit(
            "resync",
            self.key,
            None,
            rev,
            f"etcd history of {self.key} before revision {compact_revision} was compacted "
            f"(needed {self.next_revision}); full state at revision {rev} follows",
        )
        for kv in resp.kvs:
            self._emit("put", _decode_key(kv.key), kv.value, kv.mod_revision)
        if not self.prefix and not resp.kvs:
            self._emit("delete", self.key, None, rev)
        self.next_revision = rev + 1


# --------------------------------------------------------------------------------------------
# lease-bound status keys


class LeaseKeeper:
    """Keep ``key`` = ``value_fn()`` alive in etcd, bound to a lease, while this process lives.

    The key disappears by itself ``ttl_s`` after the process dies or hangs (the keepalives stop),
    and at once on :meth:`stop` with ``delete=True``. The value is re-put every ``refresh_s`` so
    it carries live figures; :meth:`refresh` re-puts it now. When etcd was down longer than the
    TTL the lease is gone: a new one is granted and the key written again once etcd is back.

    ``value_fn`` runs on the etcd loop thread: it must be quick, thread-safe, and must not call
    the client's blocking methods. If it raises, the previous value stays (logged once).
    """

    def __init__(
        self,
        client: EtcdClient,
        key: str,
        value_fn: Callable[[], bytes],
        ttl_s: int = 10,
        refresh_s: float = 3,
    ) -> None:
        if ttl_s < 2:
            raise ValueError("etcd leases shorter than 2 s are not granted reliably")
        if refresh_s <= 0:
            raise ValueError("refresh_s must be positive")
        self.client = client
        self.key = key
        self.value_fn = value_fn
        self.ttl_s = int(ttl_s)
        self.refresh_s = float(refresh_s)
        # Keepalives at least three times per TTL, whatever the value refresh period.
        self._tick_s = min(self.refresh_s, self.ttl_s / 3)
        self.lease_id: int | None = None
        self.registered = False
        self._raw = _encode_key(key)
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._last_value: bytes | None = None
        first_attempt: concurrent.futures.Future[None] = concurrent.futures.Future()

        async def begin() -> None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run(first_attempt))
            client._keepers.add(self)

        client._submit(begin()).result(client.timeout_s)
        with contextlib.suppress(concurrent.futures.TimeoutError):
            first_attempt.result(client.timeout_s)

    def refresh(self) -> None:
        """Re-put the value now (e.g. right after the daemon applied a new config)."""
        if self._wake is not None and not self.client._closed:
            self.client._loop.call_soon_threadsafe(self._wake.set)

    def stop(self, delete: bool = True) -> None:
        """Stop keeping the key; with ``delete`` revoke the lease so the key vanishes now."""
        if self.client._closed or self._task is None:
            return

        async def halt() -> None:
            assert self._task is not None
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self.client._keepers.discard(self)
            if delete and self.lease_id is not None:
                lease_id = self.lease_id

                async def revoke() -> None:
                    await self.client._aetcd.revoke_lease(lease_id)

                try:
                    await self.client._call(f"revoke lease of {self.key}", revoke)
                except EtcdError as e:  # NOT_FOUND: already expired, the key is gone anyway
                    log.warning("etcd: could not revoke the lease of %s: %s", self.key, e)
                self.lease_id = None
                self.registered = False

        try:
            self.client._run(f"stop lease keeper of {self.key}", halt())
        except EtcdError as e:
            # Stopping must not fail a clean shutdown: the key expires with its lease's TTL.
            log.warning("etcd: could not stop the lease keeper of %s cleanly (%s); the key expires by "
                        "its TTL", self.key, e)

    def _value(self) -> bytes:
        try:
            value = self.value_fn()
        except Exception as e:
            if self._last_value is None:
                raise
            log.warning("etcd: status value for %s failed (%s); keeping the previous one", self.key, e)
            return self._last_value
        self._last_value = value
        return value

    async def _run(self, first_attempt: concurrent.futures.Future[None]) -> None:
        c = self.client._aetcd
        loop = asyncio.get_running_loop()
        backoff = _Backoff(WATCH_BACKOFF_FIRST_S, WATCH_BACKOFF_CAP_S)
        fault_since: float | None = None
        last_put = -1e9
        losses = 0  # lease losses in a row: etcd up, lease gone
        failures = 0  # failed rounds in a row
        warned = False
        lease_before_fault: int | None = None
        # Like EtcdClient._call: a round stuck on a dead or frozen member is abandoned early
        # and the next one goes to another member, long before the lease could expire.
        attempt_s = max(1.0, self.client.timeout_s / 3)
        assert self._wake is not None
        while True:
            try:
                async with asyncio.timeout(attempt_s):
                    await c.connect()
                    if self.lease_id is None:
                        lease = await c.lease(self.ttl_s)
                        self.lease_id = lease.id
                        self._wake.clear()
                        await c.put(self._raw, self._value(), lease=self.lease_id)
                        last_put = loop.time()
                    else:
                        reply = await c.refresh_lease(self.lease_id)
                        if reply is None or reply.TTL <= 0:
                            raise LookupError("lease expired")
                        if self._wake.is_set() or loop.time() - last_put >= self.refresh_s - 0.01:
                            self._wake.clear()
                            await c.put(self._raw, self._value(), lease=self.lease_id)
                            last_put = loop.time()
                self.registered = True
                losses = failures = 0
                if fault_since is not None and warned:
                    log.info(
                        "etcd: %s kept alive again after %.1fs (lease %x%s)",
                        self.key,
                        loop.time() - fault_since,
                        self.lease_id,
                        ", new" if self.lease_id != lease_before_fault else "",
                    )
                fault_since = None
                warned = False
                backoff.reset()
                if not first_attempt.done():
                    first_attempt.set_result(None)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._tick_s)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as e:
                lost = isinstance(e, LookupError) or _grpc_code(e) == grpc.StatusCode.NOT_FOUND
                if lost:
                    # etcd is up but the lease is gone (outage longer than the TTL): new lease now.
                    log.warning("etcd: lease of %s expired; registering it again", self.key)
                    warned = True
                    self.lease_id = None
                    self.registered = False
                    if fault_since is None:
                        fault_since = loop.time()
                        lease_before_fault = None
                    losses += 1
                    if losses == 1:
                        continue  # once at once; a loop of losses would be a bug: back off below
                if _is_bad_token(e):
                    c.forget_token()
                if fault_since is None:
                    fault_since = loop.time()
                    lease_before_fault = self.lease_id
                failures += 1
                # One stuck round (a frozen member picked once), retried on another member half
                # a second later, is not worth a line; a second failure in a row is an outage.
                if failures >= 2 and not warned and self.client.already_reported(self.client.describe(e)):
                    warned = True  # the daemon has this bad password/certificate in its log already
                if failures >= 2 and not warned:
                    warned = True
                    log.warning(
                        "etcd: cannot refresh %s (%s); retrying, the key expires %ss after the last keepalive",
                        self.key,
                        self.client.describe(e),
                        self.ttl_s,
                    )
                if not first_attempt.done():
                    first_attempt.set_result(None)
            await asyncio.sleep(min(backoff.next(), self._tick_s))
