"""The daemons' small HTTP endpoint: ``/metrics`` (Prometheus) and ``/health``.

Why one server for both: a load balancer, Kubernetes probe or monitoring check wants a yes/no
("is this collector delivering?") without parsing Prometheus text, as Vector's and Fluent
Bit's health endpoints give. ``/health`` answers 200 with ``{"status": "ok", …}`` when the
daemon is connected and delivering, 503 with the reasons otherwise. The answer is computed by
the daemon's own function from its last status document, so it says the same as `logctl
status`. The server runs in one background thread (``http.server``), as prometheus_client's
own ``start_http_server`` did.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from logferry.config import split_host_port

#: returns the reasons the daemon is not healthy now (empty: healthy)
HealthCheck = Callable[[], list[str]]


def serve(address: str, registry: CollectorRegistry, health: HealthCheck) -> ThreadingHTTPServer:
    """Serve /metrics and /health on `address` ("host:port", validated by the INI loader) in a
    daemon thread; returns the server."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/health":
                try:
                    reasons = health()
                except Exception as e:
                    reasons = [f"health check failed: {e}"]
                body = json.dumps({"status": "unhealthy" if reasons else "ok", "reasons": reasons}).encode()
                self._send(503 if reasons else 200, "application/json", body + b"\n")
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics or /health\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # a scrape every 15 s is not news for the daemon's log

    server = ThreadingHTTPServer(split_host_port(address), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http-status", daemon=True).start()
    return server
