"""SSE read by `curl -N` and parsed as a browser's EventSource does (SSEClient, one block at a
time), and SSECollector, a subscriber reading in a thread of its own."""
from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field


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


# --------------------------------------------------------------------------- in a thread

class SSECollector:
    """An SSE subscriber reading in its own thread; `items` holds (event, id, data) tuples."""

    def __init__(self, server, topic: str, headers: dict | None = None, query: str = ""):
        url = server.url(f"/sse?topic={topic}{query}")
        self.client = SSEClient(url, headers=headers, max_time=300)
        self.client.wait_ready()
        self.items: list[tuple[str | None, str, str]] = []
        self.stop = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while not self.stop.is_set():
                try:
                    ev = self.client.next_event(0.5)
                except AssertionError:
                    continue
                except EOFError:
                    self.error = "stream ended"
                    return
                self.items.append((ev.event, ev.id, ev.data))
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.error = repr(e)

    def messages(self):
        """(epoch, offset, data) of the message events, in arrival order."""
        out = []
        for event, id_, data in self.items:
            if event is None:
                ep, off = id_.split(":")
                out.append((ep, int(off), data))
        return out

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.client.close()
