"""Helpers for herald's integration tests: start the real binary, and talk to it with
independent clients (curl, python3-websockets, requests, and a tiny raw-socket WebSocket
client for the cases a polite client library refuses to produce).

Every wait here is bounded in time; every target is 127.0.0.1.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
EPOCH_RE = re.compile(r"^[0-9a-z]{8}$")
LISTEN_RE = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")
WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Servers started by this process that are still running; conftest shows their logs on failure.
LIVE_SERVERS: list["Herald"] = []


def herald_bin() -> str:
    path = os.environ.get("HERALD_BIN") or str(REPO_ROOT / "build" / "herald")
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise AssertionError(f"herald binary not found at {path}: build it first (make build) "
                             f"or point HERALD_BIN at it")
    return path


# --------------------------------------------------------------------------- config (YAML)

def _yaml_scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid YAML double-quoted scalar
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_flow(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as YAML")


def _yaml_flow(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_yaml_flow(x)}" for k, x in v.items()) + "}"
    return _yaml_scalar(v)


def to_yaml(cfg: dict, indent: int = 0) -> str:
    """Block-style YAML for nested dicts; lists and list items are written in flow style."""
    out = []
    pad = "  " * indent
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.append(f"{pad}{k}:")
            out.append(to_yaml(v, indent + 1))
        else:
            out.append(f"{pad}{k}: {_yaml_flow(v)}")
    return "\n".join(x for x in out if x)


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# Defaults for test servers: the shipped defaults, with a short drain so teardown is quick
# and a long heartbeat so a comment line never lands in the middle of a byte-exact check.
TEST_DEFAULTS = {
    "log": {"level": "info"},
    "sse": {"heartbeat": "60s", "retry": "2s"},
    "shutdown": {"drain_timeout": "3s"},
    # Tests publish without API keys and open many connections from 127.0.0.1; test_auth.py
    # turns each of these on where it tests it.
    "auth": {"allow_unauthenticated_publish": True},
    "limits": {"connections_per_ip": 0, "new_connections_per_ip_per_s": 0, "ws_messages_per_s": 0,
               "publishes_per_key_per_s": 0},
}


# --------------------------------------------------------------------------- the server process

class Herald:
    """One running herald process, bound to 127.0.0.1 on a port the OS chose."""

    def __init__(self, config: dict | None = None, workers: int = 2, workdir: str | None = None,
                 log_level: str | None = None, extra_args: tuple = ()):
        self.config = deep_merge(TEST_DEFAULTS, config or {})
        self.workdir = workdir or tempfile.mkdtemp(prefix="herald-it-")
        self.config_path = os.path.join(self.workdir, "herald.yaml")
        with open(self.config_path, "w") as f:
            f.write(to_yaml(self.config) + "\n")
        self.log_path = os.path.join(self.workdir, "herald.log")
        self._log = open(self.log_path, "wb")
        args = [herald_bin(), "--config", self.config_path, "--listen", f"{HOST}:0",
                "--workers", str(workers)]
        if log_level:
            args += ["--log-level", log_level]
        args += list(extra_args)
        self.args = args
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=str(REPO_ROOT))
        self.port = self._wait_port(10.0)
        LIVE_SERVERS.append(self)

    def _wait_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = Path(self.log_path).read_bytes()
            for m in LISTEN_RE.finditer(data):
                port = int(m.group(1))
                if port != 0:
                    return port
            if self.proc.poll() is not None:
                raise AssertionError(f"herald exited with {self.proc.returncode} before listening:\n"
                                     f"{self.log_tail()}")
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait(5)
        raise AssertionError(f"herald did not log 'listening on 127.0.0.1:<port>' within {timeout}s:\n"
                             f"{self.log_tail()}")

    # --- addresses
    def url(self, path: str = "/") -> str:
        return f"http://{HOST}:{self.port}{path}"

    def ws_url(self, path: str = "/ws") -> str:
        return f"ws://{HOST}:{self.port}{path}"

    # --- logs
    def log_text(self) -> str:
        try:
            return Path(self.log_path).read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # --- lifetime
    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM, wait up to `timeout`; returns (exit code, seconds taken). Kills after timeout
        and then returns code None."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            rc = None
        took = time.monotonic() - t0
        self._log.close()
        if self in LIVE_SERVERS:
            LIVE_SERVERS.remove(self)
        return rc, took

    def stop_and_check(self):
        """Teardown: the server must still be running, and exit 0 on SIGTERM within 15 s."""
        was_alive = self.alive()
        early_rc = self.proc.returncode
        rc, took = self.terminate(15.0)
        assert was_alive, f"herald died during the tests (exit {early_rc}):\n{self.log_tail()}"
        assert rc is not None, f"herald did not exit within 15 s of SIGTERM (killed):\n{self.log_tail()}"
        assert rc == 0, f"herald exited with {rc} after SIGTERM:\n{self.log_tail()}"


# --------------------------------------------------------------------------- HTTP helpers

def error_of(resp) -> tuple[str, str]:
    """The (code, message) of a JSON error answer; asserts the documented shape."""
    ctype = resp.headers.get("Content-Type", "")
    assert "application/json" in ctype, f"error answer is not JSON: {ctype!r} {resp.text[:200]!r}"
    body = resp.json()
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    err = body["error"]
    assert isinstance(err.get("code"), str) and isinstance(err.get("message"), str) and err["message"], body
    return err["code"], err["message"]


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


def wait_until(pred, timeout: float, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{time.monotonic_ns() % 10**9}"


# --------------------------------------------------------------------------- metrics

_METRIC_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_LINE.match(line)
        if not m:
            continue
        labels = {}
        if m.group(2):
            for lm in re.finditer(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)):
                labels[lm.group(1)] = lm.group(2)
        try:
            val = float(m.group(3))
        except ValueError:
            continue
        out.append((m.group(1), labels, val))
    return out


def metric_sum(text: str, name: str, **labels) -> float | None:
    """Sum of the samples of `name` whose labels include `labels`; None when there is none."""
    vals = [v for n, l, v in parse_metrics(text)
            if n == name and all(l.get(k) == want for k, want in labels.items())]
    return sum(vals) if vals else None


# --------------------------------------------------------------------------- SSE over curl

@dataclass
class SSEBlock:
    """One block of an SSE stream: the lines up to a blank line, as a browser would split them."""
    raw: bytes                                   # exact bytes, terminators included
    lines: list[str]
    fields: list[tuple[str, str]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)

    def get(self, name: str):
        vals = [v for k, v in self.fields if k == name]
        return vals[-1] if vals else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.fields if k == name]

    @property
    def id(self):
        return self.get("id")

    @property
    def event(self):
        return self.get("event")

    @property
    def data(self):
        d = self.all("data")
        return "\n".join(d) if d else None

    @property
    def is_event(self) -> bool:
        return bool(self.all("data"))


_LINE_BREAK = re.compile(rb"\r\n|\r|\n")


class SSEClient:
    """`curl -N` reading an event stream; a thread collects bytes; parsing follows the
    EventSource rules (lines end at CRLF, CR or LF; a blank line ends a block)."""

    def __init__(self, url: str, headers: dict | None = None, max_time: float = 120.0,
                 curl_args: tuple = ()):
        args = ["curl", "-N", "-s", "-S", "-i", "--max-time", str(int(max_time)), *curl_args]
        for k, v in (headers or {}).items():
            args += ["-H", f"{k}: {v}"]
        args.append(url)
        self.url = url
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.buf = bytearray()
        self.eof = False
        self.cond = threading.Condition()
        self.status = None
        self.headers: dict[str, str] = {}
        self._body_start = None
        self._pos = None              # parse position in buf
        self._pending_lines: list[tuple[str, bytes]] = []
        self._block_start = None
        self.blocks: list[SSEBlock] = []
        self._next = 0                # index of the next block handed out by next_block
        self._t = threading.Thread(target=self._reader, daemon=True)
        self._t.start()

    def _reader(self):
        fd = self.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                chunk = b""
            with self.cond:
                if not chunk:
                    self.eof = True
                    self._parse()
                    self.cond.notify_all()
                    return
                self.buf += chunk
                self._parse()
                self.cond.notify_all()

    def _parse(self):
        if self._body_start is None:
            i = self.buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = bytes(self.buf[:i]).decode("latin-1").split("\r\n")
            parts = head[0].split(" ", 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None
            for line in head[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    self.headers[k.strip().lower()] = v.strip()
            self._body_start = i + 4
            self._pos = self._body_start
            self._block_start = self._pos
        while True:
            m = _LINE_BREAK.search(self.buf, self._pos)
            if not m:
                return
            # a CR at the very end might be the first half of a CRLF: wait for more bytes
            if m.group() == b"\r" and m.end() == len(self.buf) and not self.eof:
                return
            line = bytes(self.buf[self._pos:m.start()])
            self._pos = m.end()
            if line == b"":
                raw = bytes(self.buf[self._block_start:self._pos])
                self._block_start = self._pos
                if self._pending_lines:
                    self.blocks.append(self._make_block(raw, self._pending_lines))
                self._pending_lines = []
            else:
                self._pending_lines.append(line.decode("utf-8", "replace"))

    @staticmethod
    def _make_block(raw: bytes, lines: list[str]) -> SSEBlock:
        b = SSEBlock(raw=raw, lines=list(lines))
        for line in lines:
            if line.startswith(":"):
                b.comments.append(line[1:])
                continue
            if ":" in line:
                k, v = line.split(":", 1)
                if v.startswith(" "):
                    v = v[1:]
            else:
                k, v = line, ""
            b.fields.append((k, v))
        return b

    # --- waiting
    def wait_headers(self, timeout: float = 10.0):
        with self.cond:
            ok = self.cond.wait_for(lambda: self._body_start is not None or self.eof, timeout)
        assert ok and self._body_start is not None, \
            f"no response headers from {self.url} within {timeout}s (got {bytes(self.buf[:300])!r})"
        return self.status, self.headers

    def next_block(self, timeout: float = 10.0) -> SSEBlock:
        with self.cond:
            ok = self.cond.wait_for(lambda: len(self.blocks) > self._next or self.eof, timeout)
            if len(self.blocks) > self._next:
                b = self.blocks[self._next]
                self._next += 1
                return b
        if not ok:
            raise AssertionError(f"no SSE block within {timeout}s from {self.url}; "
                                 f"tail={bytes(self.buf[-300:])!r}")
        raise EOFError(f"SSE stream ended; tail={bytes(self.buf[-300:])!r}")

    def next_event(self, timeout: float = 10.0) -> SSEBlock:
        """The next block that carries data (skips retry-only and comment-only blocks)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no SSE event within {timeout}s from {self.url}")
            b = self.next_block(left)
            if b.is_event:
                return b

    def wait_ready(self, timeout: float = 10.0) -> SSEBlock:
        """Wait for 200 headers and the first `retry:` block (the subscription is then live)."""
        status, _ = self.wait_headers(timeout)
        assert status == 200, f"SSE {self.url} answered {status}: {bytes(self.buf[:500])!r}"
        b = self.next_block(timeout)
        assert b.get("retry") is not None, f"first SSE block is not a retry: {b.raw!r}"
        return b

    def wait_eof(self, timeout: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.eof, timeout)

    def events_so_far(self) -> list[SSEBlock]:
        with self.cond:
            return [b for b in self.blocks if b.is_event]

    def body_bytes(self) -> bytes:
        with self.cond:
            return bytes(self.buf[self._body_start:]) if self._body_start is not None else b""

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._t.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --------------------------------------------------------------------------- raw WebSocket

class RawWS:
    """A hand-rolled RFC 6455 client over a plain socket, for what polite libraries won't do:
    never read, never answer pings, send invalid UTF-8 or unmasked frames."""

    def __init__(self, port: int, path: str = "/ws", rcvbuf: int | None = None,
                 timeout: float = 10.0, protocol: str | None = "herald.v1"):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((HOST, port))
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
        if protocol:
            req += f"Sec-WebSocket-Protocol: {protocol}\r\n"
        self.sock.sendall((req + "\r\n").encode())
        self.buf = bytearray()
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"handshake: connection closed; got {bytes(self.buf)!r}")
            self.buf += chunk
            assert len(self.buf) < 65536, "handshake answer too long"
        i = self.buf.find(b"\r\n\r\n")
        head = bytes(self.buf[:i]).decode("latin-1")
        del self.buf[:i + 4]
        lines = head.split("\r\n")
        assert lines[0].startswith("HTTP/1.1 101"), f"handshake refused: {head!r}"
        hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        assert hdrs.get("sec-websocket-accept") == want, f"bad Sec-WebSocket-Accept in {head!r}"
        self.handshake_headers = hdrs

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, mask: bool = True,
                   rsv: int = 0):
        b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", b0, (0x80 if mask else 0) | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, (0x80 if mask else 0) | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, (0x80 if mask else 0) | 127, n)
        if mask:
            key = os.urandom(4)
            masked = bytes(c ^ key[i % 4] for i, c in enumerate(payload)) if n < 4096 else \
                _mask_fast(payload, key)
            self.sock.sendall(hdr + key + masked)
        else:
            self.sock.sendall(hdr + payload)

    def send_text(self, text: str | bytes):
        self.send_frame(0x1, text.encode() if isinstance(text, str) else text)

    def _need(self, n: int):
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise EOFError("connection closed by server")
            self.buf += chunk

    def recv_frame(self) -> tuple[bool, int, bytes]:
        """(fin, opcode, payload); raises EOFError on EOF, ConnectionResetError on RST,
        socket.timeout when nothing comes within the socket timeout."""
        self._need(2)
        b0, b1 = self.buf[0], self.buf[1]
        n = b1 & 0x7F
        off = 2
        if n == 126:
            self._need(4)
            n = struct.unpack("!H", self.buf[2:4])[0]
            off = 4
        elif n == 127:
            self._need(10)
            n = struct.unpack("!Q", self.buf[2:10])[0]
            off = 10
        masked = bool(b1 & 0x80)
        assert not masked, "server frames must not be masked"
        self._need(off + n)
        payload = bytes(self.buf[off:off + n])
        del self.buf[:off + n]
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def recv_json(self) -> dict:
        """Next text frame as JSON, skipping pings."""
        while True:
            fin, op, payload = self.recv_frame()
            if op == 0x9:
                continue
            assert op == 0x1, f"expected a text frame, got opcode {op:#x} {payload[:80]!r}"
            return json.loads(payload)

    def wait_close(self, timeout: float, frames: list | None = None) -> tuple[int | None, str | None, str]:
        """Read until the server ends the connection. Returns (close code, reason, how) where
        how is 'close' (a close frame came), 'eof' or 'rst'. Fails if the connection is still open
        after `timeout` seconds. Frames before the close are appended to `frames` as
        (opcode, payload) when given."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"connection still open after {timeout}s")
            self.sock.settimeout(left)
            try:
                fin, op, payload = self.recv_frame()
            except EOFError:
                return None, None, "eof"
            except ConnectionResetError:
                return None, None, "rst"
            except socket.timeout:
                raise AssertionError(f"connection still open after {timeout}s")
            if op == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                reason = payload[2:].decode("utf-8", "replace") if len(payload) > 2 else ""
                return code, reason, "close"
            if frames is not None:
                frames.append((op, payload))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _mask_fast(payload: bytes, key: bytes) -> bytes:
    n = len(payload)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


# --------------------------------------------------------------------------- python3-websockets

async def ws_connect(server: Herald, query: str = "", **kw):
    """A python3-websockets client to /ws; no compression, no client pings, big frames allowed."""
    import websockets
    params = dict(subprotocols=["herald.v1"], compression=None, ping_interval=None,
                  max_size=2 ** 24, open_timeout=10, close_timeout=3, max_queue=None)
    params.update(kw)
    path = "/ws" + (("?" + query) if query else "")
    return await websockets.connect(server.ws_url(path), **params)


async def ws_recv_json(ws, timeout: float = 10.0) -> dict:
    import asyncio
    msg = await asyncio.wait_for(ws.recv(), timeout)
    assert isinstance(msg, str), f"expected a text frame, got binary {msg[:60]!r}"
    return json.loads(msg)


async def ws_op(ws, op: dict, timeout: float = 10.0) -> dict:
    """Send an op (with an `id`) and return the `ok`/`error` reply carrying that id; frames that
    come before the reply are dropped (use ws_op_collect to see them)."""
    reply, _ = await ws_op_collect(ws, op, timeout)
    return reply


async def ws_op_collect(ws, op: dict, timeout: float = 10.0) -> tuple[dict, list]:
    """Send an op (it must carry an `id`), return (reply, frames that arrived before the reply)."""
    import asyncio
    assert "id" in op
    await ws.send(json.dumps(op))
    before = []
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        left = deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise AssertionError(f"no reply to {op} within {timeout}s; got {before}")
        msg = await asyncio.wait_for(ws.recv(), left)
        if isinstance(msg, str):
            j = json.loads(msg)
            if j.get("type") in ("ok", "error") and j.get("id") == op["id"]:
                return j, before
            before.append(j)
        else:
            before.append(msg)


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


# --------------------------------------------------------------------------- metric names
# The names herald exports (docs/protocol.md "Health and metrics"); one place to adjust.
METRICS = {
    "connections": "herald_connections",                      # gauge, label transport=ws|sse|poll
    "published": "herald_messages_published_total",          # counter
    "delivered": "herald_frames_delivered_total",             # counter
    "bytes_out": "herald_bytes_out_total",                    # counter
    "slow_consumers": "herald_slow_consumers_total",          # counter
    "rejected": "herald_rejected_requests_total",             # counter, label reason=<error code>
}
