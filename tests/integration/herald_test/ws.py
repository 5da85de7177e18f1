"""WebSocket clients: RawWS, a hand-rolled RFC 6455 client over a plain socket for what polite
libraries refuse to do; helpers around python3-websockets (connect, ops and their replies); and
WSCollector, a subscriber reading in a thread of its own."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import socket
import struct
import threading
import time

from herald_test import HOST
from herald_test.server import Herald

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class RawWS:
    """A hand-rolled RFC 6455 client over a plain socket, for what polite libraries won't do:
    never read, never answer pings, send invalid UTF-8 or unmasked frames."""

    def __init__(self, port: int, path: str = "/ws", rcvbuf: int | None = None,
                 timeout: float = 10.0, protocol: str | None = "herald.v1",
                 extensions: str | None = None):
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
        if extensions:
            req += f"Sec-WebSocket-Extensions: {extensions}\r\n"
        self.last_rsv = 0  # RSV bits of the last frame recv_frame() returned
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
        self.last_rsv = (b0 >> 4) & 0x7
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


# --------------------------------------------------------------------------- in a thread

class WSCollector:
    """A python3-websockets subscriber in its own thread and event loop; `items` holds the
    decoded JSON frames after the subscribe reply."""

    def __init__(self, server, topic: str, since: dict | None = None):
        self.items: list[dict] = []
        self.reply = None
        self.error = None
        self.closed = False
        self._ready = threading.Event()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run(server, topic, since)),
                                       daemon=True)
        self.thread.start()
        assert self._ready.wait(15), f"websocket subscribe not answered: {self.error}"
        assert self.reply is not None, f"websocket subscribe failed: {self.error}"

    async def _run(self, server, topic, since):
        try:
            ws = await ws_connect(server)
            op = {"op": "subscribe", "topic": topic, "id": 1}
            if since:
                op["since"] = since
            await ws.send(json.dumps(op))
            while not self._stop.is_set():
                try:
                    msg = await asyncio.wait_for(ws.recv(), 0.3)
                except asyncio.TimeoutError:
                    continue
                j = json.loads(msg)
                if self.reply is None and j.get("type") in ("ok", "error") and j.get("id") == 1:
                    self.reply = j
                    self._ready.set()
                    continue
                self.items.append(j)
            await ws.close()
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = repr(e)
            self.closed = True
            self._ready.set()

    def messages(self):
        return [(j["epoch"], j["offset"], j["data"] if isinstance(j.get("data"), str) else j.get("data"))
                for j in self.items if j.get("type") == "message"]

    def close(self):
        self._stop.set()
        self.thread.join(5)
