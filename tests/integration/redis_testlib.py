"""Helpers for the redis broker's integration tests: real redis-server processes (Debian's
package) on free ports, talked to with redis-cli, and subscribers that collect in threads.

Every wait is bounded; every server started here is killed by its owner's teardown.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import threading
import time

import requests

from herald_testlib import EPOCH_RE, HOST, SSEClient, ws_connect


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _debug_command_args() -> list[str]:
    """Redis 7 refuses DEBUG unless enabled; older servers do not know the option."""
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"v=(\d+)\.", out)
    return ["--enable-debug-command", "local"] if m and int(m.group(1)) >= 7 else []


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
             "--appendonly", "no", "--daemonize", "no", "--dir", self.dir,
             *_debug_command_args()],
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

    @contextlib.contextmanager
    def frozen(self):
        """SIGSTOP for the duration of the block; SIGCONT always follows, whatever happens."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(self.proc.pid, signal.SIGCONT)

    def debug_sleep(self, seconds: float) -> subprocess.Popen:
        """DEBUG SLEEP on a connection of its own: the server answers nobody meanwhile. The
        caller waits for the returned process."""
        return subprocess.Popen(["redis-cli", "-h", HOST, "-p", str(self.port), "DEBUG", "SLEEP",
                                 str(seconds)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)

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


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def redis_config(shards: list[str], **over) -> dict:
    cfg = {"broker": "redis",
           "redis": {"shards": shards, "connect_timeout": "1s", "reconnect_max_backoff": "500ms"},
           "history": {"size": 5000, "max_recovery": 5000, "ttl": "5m"}}
    for k, v in over.items():
        cfg[k] = v
    return cfg


def wait_ready(server, timeout: float = 15.0):
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


# --------------------------------------------------------------------------- streams over instances

def two_instances(herald_factory, shards, config: dict | None = None, **over):
    """Two herald instances on the same shards (config: redis_config(shards, **over) unless
    given), both ready."""
    cfg = config or redis_config(shards, **over)
    a = herald_factory(cfg)
    b = herald_factory(cfg)
    wait_ready(a)
    wait_ready(b)
    return a, b


def subscribers(a, b, topic):
    subs = [WSCollector(a, topic), WSCollector(b, topic), SSECollector(a, topic),
            SSECollector(b, topic)]
    return subs


def close_all(subs):
    for s in subs:
        s.close()


def warm_up(server, topic, subs):
    """Publishes until every subscriber got a message: after that every subscription is live
    (an SSE stream's first block does not wait for its subscribe to be answered). Returns the
    last warm-up offset."""
    deadline = time.monotonic() + 15
    while True:
        r = requests.post(server.url(f"/publish/{topic}"), data="warmup", timeout=10)
        assert r.status_code == 200, r.text
        last = r.json()["offset"]
        try:
            wait_count(subs, 1, 0.5, "warm-up message")
            if all(c.messages() and c.messages()[-1][1] == last for c in subs):
                return last
        except AssertionError:
            pass
        assert time.monotonic() < deadline, "subscriptions did not become live"


def after(sub, offset):
    return [m for m in sub.messages() if m[1] > offset]


def check_same_sequence(subs, expected_offsets):
    """Every subscriber got exactly `expected_offsets` after the warm-up, in one order."""
    ref = None
    for s in subs:
        got = after(s, expected_offsets[0] - 1)
        offsets = [o for _, o, _ in got]
        assert offsets == expected_offsets, (
            f"{type(s).__name__}: {len(offsets)} messages, first differences "
            f"{[(i, x, y) for i, (x, y) in enumerate(zip(offsets, expected_offsets)) if x != y][:5]}")
        if ref is None:
            ref = got
        assert got == ref, f"{type(s).__name__} saw another order or payload than the first subscriber"
        assert len({e for e, _, _ in got}) == 1 and EPOCH_RE.match(got[0][0])


def wait_after(subs, offset, n, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(len(after(s, offset)) >= n for s in subs):
            return
        errs = [s.error for s in subs if s.error]
        assert not errs, f"a subscriber failed: {errs}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {n} messages after {offset}; have "
                         f"{[len(after(s, offset)) for s in subs]}")
