"""Helpers for the redis broker's integration tests: real redis-server processes (Debian's
package) on free ports, talked to with redis-cli, and subscribers that collect in threads.

Every wait is bounded; every server started here is killed by its owner's teardown.
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import tempfile
import threading
import time

from herald_testlib import HOST, SSEClient, ws_connect


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server on 127.0.0.1:<free port>, no persistence; stop() / start() keep the port,
    so herald sees the same address come back (empty)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="herald-redis-")
        self.proc = None
        self.start()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def start(self, timeout: float = 10.0):
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "",
             "--appendonly", "no", "--daemonize", "no", "--dir", self.dir],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited with {self.proc.returncode}")
            try:
                if self.cli("PING", timeout=1.0).strip() == "PONG":
                    return
            except (AssertionError, subprocess.TimeoutExpired):
                pass
            time.sleep(0.05)
        raise AssertionError(f"redis-server on {self.port} not ready within {timeout}s")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def cli(self, *args: str, timeout: float = 5.0) -> str:
        p = subprocess.run(["redis-cli", "-h", HOST, "-p", str(self.port), *args],
                           capture_output=True, timeout=timeout)
        if p.returncode != 0:
            raise AssertionError(f"redis-cli {args}: {p.stderr.decode()!r}")
        return p.stdout.decode()

    def client_names(self) -> list[str]:
        out = self.cli("CLIENT", "LIST")
        names = []
        for line in out.splitlines():
            for part in line.split():
                if part.startswith("name="):
                    names.append(part[5:])
        return names


def redis_config(shards: list[str], **over) -> dict:
    cfg = {"broker": "redis",
           "redis": {"shards": shards, "connect_timeout": "1s", "reconnect_max_backoff": "500ms"},
           "history": {"size": 5000, "max_recovery": 5000, "ttl": "5m"}}
    for k, v in over.items():
        cfg[k] = v
    return cfg


def wait_ready(server, timeout: float = 15.0):
    import requests
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(server.url("/readyz"), timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError(f"herald on {server.port} not ready within {timeout}s:\n{server.log_tail()}")


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


def wait_count(collectors, n: int, timeout: float, what: str = "messages"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = [len(c.messages()) for c in collectors]
        if all(x >= n for x in counts):
            return
        errs = [c.error for c in collectors if c.error]
        assert not errs, f"a subscriber failed: {errs}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {n} {what}; have {[len(c.messages()) for c in collectors]}")
