"""A real application backend for hook and webhook tests: an HTTP/1.1 server on 127.0.0.1 in a
thread of its own that records every call (path, headers, JSON body, time) and answers through a
handler the test sets per path: handler(call) -> (status, dict | None), or sleeps first.

Every wait is bounded; the server stops with the test (daemon threads, so a handler still
sleeping never holds the test run)."""
from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from herald_test import HOST, free_port  # noqa: F401 (test_hooks, test_webhooks import it from here)


class Call:
    def __init__(self, path: str, headers: dict, body: bytes):
        self.path = path
        self.headers = headers          # lower-cased names
        self.raw = body
        self.json = json.loads(body) if body else None
        self.at = time.monotonic()

    def __repr__(self):
        return f"Call({self.path}, {self.json})"


class Backend:
    def __init__(self, port: int = 0):
        self.calls: list[Call] = []
        self.handlers: dict[str, object] = {}
        self.lock = threading.Lock()
        backend = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"   # keep-alive, as herald's pool expects
            wbufsize = -1                   # one write per answer (flushed per request)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                call = Call(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with backend.lock:
                    backend.calls.append(call)
                    h = backend.handlers.get(self.path)
                status, doc = h(call) if h else (404, {"error": "no handler"})
                out = json.dumps(doc).encode() if doc is not None else b""
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            allow_reuse_address = True
            request_queue_size = 128   # herald opens many connections at once (5 drops SYNs)

            def handle_error(self, request, client_address):
                pass                    # herald gave up on a call (its timeout): not news

        self.httpd = Server((HOST, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.port}{path}"

    def on(self, path: str, handler):
        self.handlers[path] = handler

    def calls_to(self, path: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.path == path]

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()




def signature_ok(secret: str, call: Call) -> bool:
    """The receiver's check of X-Herald-Signature (docs/integration.md)."""
    ts = call.headers.get("x-herald-timestamp", "")
    want = hmac.new(secret.encode(), ts.encode() + b"." + call.raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(call.headers.get("x-herald-signature", ""), "sha256=" + want)
