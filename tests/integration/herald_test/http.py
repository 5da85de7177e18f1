"""HTTP from the test's side: curl (a client nobody here wrote), requests, publishing, a raw
request over a socket whose source address may be chosen, the publisher process, and the one way to
assert an error answer (assert_error: status + JSON body + code)."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from herald_test import HERE, HOST
from herald_test.server import Herald


def _answer(resp) -> tuple[int, str, bytes]:
    """(status, Content-Type, body) of a requests.Response, a CurlResult or a RawResponse."""
    if hasattr(resp, "status_code"):                       # requests
        if "text/event-stream" in resp.headers.get("Content-Type", ""):
            resp.close()                                   # never wait on an open stream
            return resp.status_code, resp.headers["Content-Type"], b"<event stream>"
        return resp.status_code, resp.headers.get("Content-Type", ""), resp.content
    return resp.status, resp.headers.get("content-type", ""), resp.body


def error_of(resp) -> tuple[str, str]:
    """The (code, message) of a JSON error answer; asserts the documented shape
    {"error": {"code": "...", "message": "..."}}."""
    _, ctype, body = _answer(resp)
    assert "application/json" in ctype, f"error answer is not JSON: {ctype!r} {body[:200]!r}"
    doc = json.loads(body)
    assert isinstance(doc, dict) and isinstance(doc.get("error"), dict), doc
    err = doc["error"]
    assert isinstance(err.get("code"), str) and isinstance(err.get("message"), str) and err["message"], doc
    return err["code"], err["message"]


def assert_error(resp, status: int, code: str) -> str:
    """THE way to check an error answer: this status, a JSON error body of the documented shape,
    this code. Takes a requests.Response, a CurlResult or a RawResponse; returns the message."""
    got_status, _, body = _answer(resp)
    assert got_status == status, f"want {status} {code}, got {got_status} {body[:300]!r}"
    got, message = error_of(resp)
    assert got == code, f"want code {code!r}, got {got!r}: {body[:300]!r}"
    return message


@dataclass
class CurlResult:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


def curl(url: str, *args: str, timeout: float = 20.0) -> CurlResult:
    """Run curl (a client nobody here wrote), return status, lower-cased headers and body."""
    with tempfile.TemporaryDirectory() as d:
        hdr = os.path.join(d, "h")
        body = os.path.join(d, "b")
        cmd = ["curl", "-s", "-S", "--max-time", str(int(timeout)), "-D", hdr, "-o", body,
               "-w", "%{http_code}", *args, url]
        p = subprocess.run(cmd, capture_output=True, timeout=timeout + 5)
        assert p.returncode == 0, f"curl failed ({p.returncode}): {p.stderr.decode()!r} cmd={cmd}"
        status = int(p.stdout.decode().strip() or 0)
        headers = {}
        raw = Path(hdr).read_bytes().decode("latin-1")
        # keep only the last response's headers (a 100 Continue may precede it)
        blocks = [b for b in re.split(r"\r?\n\r?\n", raw) if b.strip()]
        if blocks:
            for line in blocks[-1].splitlines()[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
        return CurlResult(status, headers, Path(body).read_bytes())


def curl_publish(server: Herald, topic: str, data: str | bytes, *args: str) -> CurlResult:
    """POST a body with curl --data-binary (bytes kept exactly, no form encoding of newlines)."""
    with tempfile.NamedTemporaryFile(delete=False) as f:
        f.write(data.encode() if isinstance(data, str) else data)
        path = f.name
    try:
        return curl(server.url(f"/publish/{topic}"), "--data-binary", f"@{path}", *args)
    finally:
        os.unlink(path)


def publish(server: Herald, topic: str, data, session=None, **kw):
    """requests-based publish; returns the parsed JSON answer after asserting 200."""
    s = session or requests
    r = s.post(server.url(f"/publish/{topic}"), data=data, timeout=10, **kw)
    assert r.status_code == 200, f"publish to {topic} -> {r.status_code} {r.text[:300]}"
    return r.json()


# --------------------------------------------------------------------------- raw HTTP

class RawResponse:
    """One HTTP request over a plain socket whose source address may be chosen. For a 200 the
    socket stays open (a stream slot is held until close()); otherwise the body is read."""

    def __init__(self, port: int, path: str, headers: dict | None = None, source: str | None = None,
                 method: str = "GET", body: bytes = b"", timeout: float = 10.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((HOST, port))
        hdrs = {"Host": f"{HOST}:{port}", **(headers or {})}
        if body or method == "POST":
            hdrs["Content-Length"] = str(len(body))
        req = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        self.sock.sendall(req.encode() + b"\r\n" + body)
        buf = bytearray()
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in buf:
            if time.monotonic() > deadline:
                raise AssertionError(f"no response headers for {path} within {timeout}s")
            chunk = self.sock.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed before response headers for {path}: {bytes(buf)!r}")
            buf += chunk
        i = buf.find(b"\r\n\r\n")
        head = bytes(buf[:i]).decode("latin-1").split("\r\n")
        self.status_line = head[0]
        self.status = int(head[0].split(" ")[1])
        self.headers = {}
        for line in head[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                self.headers[k.strip().lower()] = v.strip()
        self.body = bytes(buf[i + 4:])
        if self.status != 200:
            n = int(self.headers.get("content-length", "-1"))
            while (n < 0 or len(self.body) < n) and time.monotonic() < deadline:
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    break
                if not chunk:
                    break
                self.body += chunk
            self.close()

    def json(self):
        return json.loads(self.body)

    def error_code(self) -> str:
        """The code of a JSON error answer (the shape asserted as error_of does)."""
        return error_of(self)[0]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __repr__(self):
        return f"<{self.status_line} {self.headers} {self.body[:200]!r}>"


def open_sse(port: int, topic: str, headers: dict | None = None, source: str | None = None,
             timeout: float = 10.0) -> RawResponse:
    return RawResponse(port, f"/sse?topic={topic}", headers=headers, source=source, timeout=timeout)


# --------------------------------------------------------------------------- publisher process

def start_publisher(server: Herald, topic: str, count: int, start: int = 1, size: int = 0,
                    **popen_kw):
    """A separate process publishing `count` numbered text messages over one keep-alive
    connection, flat out. It prints one JSON summary line and exits 0 when every answer was
    200 with consecutive offsets."""
    return subprocess.Popen([sys.executable, str(HERE / "publisher.py"), str(server.port), topic,
                             str(count), str(start), str(size)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen_kw)


def finish_publisher(p, timeout: float = 120.0) -> dict:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"publisher failed ({p.returncode}): {err.decode()[-2000:]}"
    return json.loads(out.decode().strip().splitlines()[-1])
