"""The console's web layer: routes, sign-in, CSRF, security headers, the live-tail stream.

Starlette (a small, well-kept ASGI toolkit; FastAPI is built on it) with Jinja2 templates and
one hand-written JavaScript file: no build step, no CDN, a few KB of assets. The pages are
shells; their data comes from the JSON API below, which is what the views in console/views.py
return. docs/console.md explains the choices.

Who may do what: with no ``[users]`` in the INI the console must listen on a loopback address
(config refuses anything else) and everyone reaching it is an admin. With users, every page and
API needs a signed session cookie (sign in at ``/login``); ``read`` users search, tail and see
status; ``admin`` users also write collect lists and the transfer config. Every write must carry
the page's CSRF token in ``X-CSRF-Token``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from console import views
from console.auth import Session, SessionSigner, verify_password
from console.cancel import SearchTracker, valid_page_id
from console.params import QUICK_RANGES, ParamError, parse_search_params
from logferry import __version__
from logferry.config import ConsoleConfig
from logferry.documents import collect_doc, transfer_doc
from logferry.etcd import EtcdClient, EtcdError
from logferry.keys import Keys, canonical_ip
from logferry.search import Follower, es_client

__all__ = ["Console", "create_app"]

log = logging.getLogger("logconsole")
HERE = Path(__file__).parent
COOKIE = "logferry_console"
TAIL_POLL_S = 0.5
#: exports whose progress is kept for the page to ask (the oldest forgotten first)
EXPORTS_KEPT = 64
#: the most lines one export holds: a file of about 300 MB of typical lines
EXPORT_LIMIT = 1_000_000
#: a search still running this long after search_timeout_s is cancelled by the console itself
WATCHDOG_GRACE_S = 2.0
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "frame-ancestors 'none'; form-action 'self'; base-uri 'none'")


class Console:
    """The app's state: config, clients, the session signer. One per process."""

    def __init__(self, config: ConsoleConfig, *, etcd: EtcdClient | None = None, es: Any = None) -> None:
        self.config = config
        c = config.console
        self.users = {u.name: u for u in c.users}
        self.signer = SessionSigner(c.session_secret, c.session_hours * 3600)
        self.local_csrf = secrets.token_urlsafe(24)  # no users: one token per process for the page's writes
        e = config.etcd
        self.etcd = etcd or EtcdClient(e.endpoints, user=e.user, password=e.password, ca_file=e.ca_file,
                                       cert_file=e.cert_file, key_file=e.key_file, timeout_s=e.dial_timeout_s)
        self.keys: Keys = e.keys()
        self.es = es or es_client(config.es, c.search_timeout_s + 5)
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))  # autoescape on for .html
        self.tracker = SearchTracker(self.es, give_up_s=c.search_timeout_s + 60)
        #: (user, export id) -> lines written and whether it finished: the page shows a download's
        #: progress from it (a browser's download bar cannot: a streamed file has no length)
        self.exports: dict[tuple[str, str], dict[str, Any]] = {}

    # --- who is asking -----------------------------------------------------------------------

    def session(self, request: Request) -> Session | None:
        if not self.users:
            return Session("local", "admin", self.local_csrf, float("inf"))
        return self.signer.load(request.cookies.get(COOKIE))

    def need(self, request: Request, *, write: bool = False, page: bool = False, role: str = "admin") -> Session:
        """The caller's session, or an HTTP error. ``write``: also the CSRF token, and ``role``
        (``admin`` for etcd configuration; ``read`` for a user's own things, such as saved searches)."""
        s = self.session(request)
        if s is None:
            if page:
                raise HTTPException(303, headers={"Location": "/login?next=" + request.url.path})
            raise HTTPException(401, "sign in first (POST /login)")
        if write:
            if role == "admin" and not s.admin:
                raise HTTPException(403, f"user {s.user} may read only; writes need the admin role")
            token = request.headers.get("x-csrf-token", "")
            if not secrets.compare_digest(token, s.csrf):
                raise HTTPException(403, "missing or wrong X-CSRF-Token: reload the page and try again")
        return s

    # --- pages -------------------------------------------------------------------------------

    def page(self, name: str, title: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            s = self.need(request, page=True)
            return self.templates.TemplateResponse(request, f"{name}.html", {
                "title": title, "page": name, "session": s, "auth": bool(self.users), "version": __version__,
                "ranges": list(QUICK_RANGES), "path_params": request.path_params})
        return endpoint

    async def login_page(self, request: Request) -> Response:
        return self.templates.TemplateResponse(request, "login.html", {
            "title": "Sign in", "page": "login", "session": None, "auth": True, "version": __version__,
            "error": None, "next": _safe_next(request.query_params.get("next"))})

    async def login(self, request: Request) -> Response:
        # The sign-in form is urlencoded: parsed here, without python-multipart for one form.
        raw = await request.body()
        form = {k: v[0] for k, v in urllib.parse.parse_qs(raw[:10_000].decode("utf-8", "replace")).items()}
        user, password = form.get("user", ""), form.get("password", "")
        nxt = _safe_next(form.get("next", "/"))
        u = self.users.get(user)
        ok = u is not None and await run_in_threadpool(verify_password, password, u.password_hash)
        if not ok or u is None:
            who = request.client.host if request.client else "?"
            log.warning("sign-in refused for user %r from %s", user[:64], who)
            return self.templates.TemplateResponse(request, "login.html", {
                "title": "Sign in", "page": "login", "session": None, "auth": True, "version": __version__,
                "error": "Unknown user or wrong password.", "next": nxt}, status_code=401)
        _, cookie = self.signer.new(u.name, u.role)
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(COOKIE, cookie, max_age=int(self.signer.lifetime_s), httponly=True, samesite="strict",
                        secure=bool(self.config.console.tls_cert_file))
        log.info("user %s (%s) signed in", u.name, u.role)
        return resp

    async def logout(self, request: Request) -> Response:
        resp = RedirectResponse("/login", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    # --- the API -------------------------------------------------------------------------------

    async def api_search(self, request: Request) -> Response:
        """One page of hits; cancelled in Elasticsearch when the page no longer needs it (console/cancel.py)."""
        s = self.need(request)
        try:
            p = parse_search_params(request.query_params)
        except ParamError as e:
            return _error(400, str(e))
        timeout = self.config.console.search_timeout_s
        run = self.tracker.begin(s.user, request.query_params.get("sid"))
        es = self.es.options(opaque_id=run.opaque_id) if hasattr(self.es, "options") else self.es

        def search() -> dict[str, Any]:
            try:
                return views.search_page(es, views.index_pattern(self.etcd, self.keys), p, timeout)
            finally:
                self.tracker.finish(run)
        job = asyncio.ensure_future(run_in_threadpool(search))
        # Elasticsearch's own ``timeout`` ends most searches in time (partial results); the watchdog
        # catches what it does not (a slow rewrite, a node that does not answer).
        deadline = time.monotonic() + timeout + WATCHDOG_GRACE_S
        while not job.done():
            await asyncio.wait([job], timeout=0.25)
            if job.done():
                break
            if await request.is_disconnected():
                self.tracker.cancel(run, "the browser closed the request")
            elif time.monotonic() > deadline:
                self.tracker.cancel(run, f"it ran over search_timeout_s ({timeout:g} s)")
                job.add_done_callback(lambda j: j.exception())  # its error is expected: not "never retrieved"
                return _error(504, f"the search ran over {timeout:g} s (search_timeout_s) and was stopped in "
                                   "Elasticsearch: narrow the time range or the query, or raise search_timeout_s "
                                   "in the console's INI")
            if run.cancelled is not None:
                break
        if run.cancelled is not None and not (job.done() and job.exception() is None):
            if not job.done():
                job.add_done_callback(lambda j: j.exception())
            return JSONResponse({"error": f"search cancelled: {run.cancelled}", "cancelled": True}, status_code=499)
        return JSONResponse(job.result())

    async def api_search_cancel(self, request: Request) -> Response:
        """POST ?sid=<page id>: the page gave up on its search (an abort, the tab closing); stop it in ES."""
        s = self.need(request, write=True, role="read")
        sid = request.query_params.get("sid", "")
        if not valid_page_id(sid):
            return _error(400, "sid: the page id its searches carry (letters, digits, _ and -)")
        found = self.tracker.cancel_page(s.user, sid, "the page gave up on it")
        return JSONResponse({"cancelled": found})

    async def api_export(self, request: Request) -> Response:
        """The query's lines as a file (``format=ndjson`` or ``csv``), newest first, streamed."""
        s = self.need(request)
        try:
            p = parse_search_params(request.query_params)
        except ParamError as e:
            return _error(400, str(e))
        fmt = request.query_params.get("format", "ndjson")
        if fmt not in ("ndjson", "csv"):
            return _error(400, "format: ndjson or csv")
        eid = request.query_params.get("eid", "")
        if eid and not valid_page_id(eid):
            return _error(400, "eid: an export id (letters, digits, _ and -)")
        pattern = await run_in_threadpool(views.index_pattern, self.etcd, self.keys)
        log.info("user %s exports %s (q=%r)", s.user, fmt, p.q)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        progress = None
        if eid:
            while len(self.exports) >= EXPORTS_KEPT:  # the oldest go first (dicts keep their order)
                self.exports.pop(next(iter(self.exports)))
            state = self.exports[(s.user, eid)] = {"lines": 0, "done": False}

            def progress(lines: int, done: bool) -> None:
                state["lines"], state["done"] = lines, done
        return StreamingResponse(views.export_lines(self.es, pattern, p, fmt, EXPORT_LIMIT, progress),
                                 media_type="text/csv" if fmt == "csv" else "application/x-ndjson",
                                 headers={"Content-Disposition": f'attachment; filename="logferry-{stamp}.{fmt}"'})

    async def api_export_progress(self, request: Request) -> Response:
        """GET ?eid=<id>: how many lines the export with that id has written, and whether it is done."""
        s = self.need(request)
        state = self.exports.get((s.user, request.query_params.get("eid", "")))
        if state is None:
            return _error(404, "no export with this eid (of yours) is known; it may not have started yet")
        return JSONResponse(state)

    async def api_searches(self, request: Request) -> Response:
        """Saved searches: GET lists them; PUT/DELETE /api/searches/<name> save or remove one (CAS)."""
        if request.method == "GET":
            self.need(request)
            return JSONResponse({"searches": await run_in_threadpool(views.saved_searches, self.etcd, self.keys)})
        s = self.need(request, write=True, role="read")
        name = request.path_params.get("name", "")
        body = await _json_body(request)
        expected = body.get("revision", 0)
        if not isinstance(expected, int) or expected < 0:
            return _error(400, "revision: the revision loaded (0 for a new name)")
        try:
            if request.method == "DELETE":
                status, out = await run_in_threadpool(views.delete_search, self.etcd, self.keys, name, expected)
            else:
                state = body.get("state") if isinstance(body.get("state"), dict) else {}
                status, out = await run_in_threadpool(views.save_search, self.etcd, self.keys, name, state, s.user,
                                                      expected)
        except ValueError as e:
            return _error(422, f"name: {e}")
        return JSONResponse(out, status_code=status)

    async def api_context(self, request: Request) -> Response:
        self.need(request)
        q = request.query_params
        index, doc_id = q.get("index", ""), q.get("id", "")
        size = int(q.get("size", "10")) if q.get("size", "10").isdigit() else 10
        if not index or not doc_id:
            return _error(400, "index and id: the line's index and id, as /api/search returns them")

        def run() -> dict[str, Any] | None:
            return views.context_of(self.es, views.index_pattern(self.etcd, self.keys), index, doc_id,
                                    max(1, min(size, 200)))
        got = await run_in_threadpool(run)
        return JSONResponse(got) if got is not None else _error(404, f"no line {doc_id} in {index}")

    async def api_tail(self, request: Request) -> Response:
        """Server-sent events: each new matching line once, as it becomes searchable."""
        self.need(request)
        try:
            p = parse_search_params(request.query_params)
        except ParamError as e:
            return _error(400, str(e))

        def make() -> Follower:
            sel = views.selection(views.index_pattern(self.etcd, self.keys), p.topic)
            f = Follower(self.es, sel, host=p.host, text=p.q, file=p.file)
            f.start()
            return f
        follower = await run_in_threadpool(make)

        async def stream() -> AsyncIterator[bytes]:
            # an event, not a comment: the page sees it, so a proxy that buffers the stream shows at once
            yield b"retry: 2000\nevent: started\ndata: {}\n\n"
            quiet = 0.0
            while not await request.is_disconnected():
                try:
                    hits = await run_in_threadpool(follower.poll)
                except Exception as e:  # ES away: say so in the stream, keep trying
                    yield f"event: problem\ndata: {json.dumps(str(e).splitlines()[0][:300])}\n\n".encode()
                    hits = []
                for h in hits:
                    yield f"data: {json.dumps(views.line_of(h, follower.sel), ensure_ascii=False)}\n\n".encode()
                quiet = 0.0 if hits else quiet + 1
                if quiet >= 30:
                    yield b": still here\n\n"  # every 15 s of silence: keeps proxies from closing the stream
                    quiet = 0.0
                # Twice a second: Elasticsearch's own refresh (1 s) is the larger part of the delay.
                await asyncio.sleep(TAIL_POLL_S)
        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def api_hosts(self, request: Request) -> Response:
        self.need(request)
        return JSONResponse(await run_in_threadpool(views.hosts_page, self.etcd, self.keys, self.es))

    async def api_host(self, request: Request) -> Response:
        self.need(request)
        ip = _ip(request)
        got = await run_in_threadpool(views.host_detail, self.etcd, self.keys, ip)
        return JSONResponse(got) if got is not None else _error(404, f"no host {ip}: no collect list, no agent")

    async def api_dead_letters(self, request: Request) -> Response:
        self.need(request)
        got = await run_in_threadpool(views.dead_letters, self.config.kafka, self.etcd, self.keys, 50)
        return JSONResponse(got)

    async def api_transfers(self, request: Request) -> Response:
        self.need(request)
        return JSONResponse(await run_in_threadpool(views.transfers_page, self.etcd, self.keys))

    async def api_doc(self, request: Request) -> Response:
        """GET: read; POST …/check: validate + diff; PUT: write by CAS; DELETE: delete by CAS."""
        kind = request.path_params.get("kind")
        doc = collect_doc(self.keys, _ip(request)) if kind == "collect" else transfer_doc(self.keys)
        if request.method == "GET":
            self.need(request)
            return JSONResponse(await run_in_threadpool(views.doc_read, self.etcd, doc))
        s = self.need(request, write=True)
        body = await _json_body(request)
        if request.url.path.endswith("/check"):
            return JSONResponse(await run_in_threadpool(views.doc_check, self.etcd, doc, str(body.get("text", ""))))
        revision = body.get("revision")
        if not isinstance(revision, int) or revision < 0:
            return _error(400, "revision: the revision the change is based on (0 for a new key)")
        text = None if request.method == "DELETE" else str(body.get("text", ""))
        status, out = await run_in_threadpool(views.doc_write, self.etcd, doc, text, revision)
        if out.get("result") == "written":
            log.info("user %s %s %s (revision %d)", s.user, "deleted" if text is None else "wrote", doc.key,
                     out["revision"])
        return JSONResponse(out, status_code=status)

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True, "version": __version__})


def _ip(request: Request) -> str:
    try:
        return canonical_ip(request.path_params.get("ip", ""))
    except ValueError:
        raise HTTPException(400, "not an IP address: a host is named by its IP, as in etcd") from None


def _safe_next(nxt: str | None) -> str:
    """Only a path on this site (no ``//host`` or scheme): an open redirect helps phishing."""
    if not nxt or not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        return "/"
    return nxt


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > 1_000_000:
        raise HTTPException(413, "body over 1 MB")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise HTTPException(400, "the body is not JSON") from None
    if not isinstance(body, dict):
        raise HTTPException(400, "the body must be a JSON object")
    return body


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(console: Console) -> Starlette:
    c = console
    routes = [
        Route("/", c.page("search", "Search")),
        Route("/hosts", c.page("hosts", "Hosts")),
        Route("/hosts/{ip}", c.page("host", "Host")),
        Route("/transfers", c.page("transfers", "Transfers")),
        Route("/login", c.login_page, methods=["GET"]),
        Route("/login", c.login, methods=["POST"]),
        Route("/logout", c.logout, methods=["POST"]),
        Route("/healthz", c.health),
        Route("/api/search", c.api_search),
        Route("/api/search/cancel", c.api_search_cancel, methods=["POST"]),
        Route("/api/context", c.api_context),
        Route("/api/export", c.api_export),
        Route("/api/export/progress", c.api_export_progress),
        Route("/api/searches", c.api_searches),
        Route("/api/searches/{name}", c.api_searches, methods=["PUT", "DELETE"]),
        Route("/api/tail", c.api_tail),
        Route("/api/hosts", c.api_hosts),
        Route("/api/hosts/{ip}", c.api_host),
        Route("/api/transfers", c.api_transfers),
        Route("/api/dead-letters", c.api_dead_letters),
        Route("/api/collect/{ip}", _fixed(c.api_doc, "collect"), methods=["GET", "PUT", "DELETE"]),
        Route("/api/collect/{ip}/check", _fixed(c.api_doc, "collect"), methods=["POST"]),
        Route("/api/transfer-config", _fixed(c.api_doc, "transfer-config"), methods=["GET", "PUT"]),
        Route("/api/transfer-config/check", _fixed(c.api_doc, "transfer-config"), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 303 and exc.headers:
            return RedirectResponse(exc.headers["Location"], status_code=303)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)

    async def etcd_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"error": f"etcd: {exc}"}, status_code=503)

    async def other_error(request: Request, exc: Exception) -> Response:
        log.exception("%s %s failed", request.method, request.url.path)
        reason = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
        return JSONResponse({"error": f"{type(exc).__name__}: {reason}"}, status_code=502)

    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error, EtcdError: etcd_error,
                                                        Exception: other_error})

    return SecurityHeaders(app)  # type: ignore[return-value]


class SecurityHeaders:
    """ASGI middleware: refuse cross-origin writes; add CSP and friends to every response.

    Pure ASGI rather than Starlette's BaseHTTPMiddleware, which would buffer the live tail's stream.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        origin = headers.get("origin")
        if scope["method"] not in ("GET", "HEAD") and origin and origin.split("://", 1)[-1] != headers.get("host"):
            resp = JSONResponse({"error": f"cross-origin request from {origin} refused"}, status_code=403)
            await resp(scope, receive, send)
            return
        path = scope.get("path", "")
        t0 = time.monotonic()

        async def send_with_headers(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                extra = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"same-origin"), (b"x-frame-options", b"DENY")]
                if path.startswith("/api/") and path != "/api/tail":
                    extra += [(b"cache-control", b"no-store"),
                              (b"server-timing", f"app;dur={(time.monotonic() - t0) * 1000:.0f}".encode())]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _fixed(endpoint: Callable[[Request], Any], kind: str) -> Callable[[Request], Any]:
    async def inner(request: Request) -> Response:
        request.scope["path_params"] = {**request.path_params, "kind": kind}
        return await endpoint(request)  # type: ignore[no-any-return]
    return inner
