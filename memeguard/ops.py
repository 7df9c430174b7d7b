"""A tiny ops HTTP server for worker nodes: /metrics, /healthz and /readyz on one port."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry

from memeguard.metrics import render

ReadyCheck = Callable[[], dict[str, str]]


def serve_ops(port: int, registry: CollectorRegistry, ready: ReadyCheck, host: str = "0.0.0.0") -> ThreadingHTTPServer:
    """Serve in a daemon thread; returns the server so tests (and shutdown) can stop it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._send(200, render(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._send(200, b'{"status":"ok"}', "application/json")
            elif self.path == "/readyz":
                checks = ready()
                ok = all(v == "ok" for v in checks.values())
                self._send(200 if ok else 503, json.dumps({"ready": ok, "checks": checks}).encode(), "application/json")
            else:
                self._send(404, b'{"error":"not_found"}', "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            return None

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="memeguard-ops", daemon=True).start()
    return server
