"""Real redis-server processes (Debian's package) on free ports of 127.0.0.1, talked to with
redis-cli, the redis broker's config for herald, and a pytest fixture. Every server started here
is killed by its owner's teardown."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest
import requests

from herald_test import EPOCH_RE, HOST, free_port, wait_count
from herald_test.server import wait_ready
from herald_test.sse import SSECollector
from herald_test.ws import WSCollector


def _debug_command_args() -> list[str]:
    """Redis 7 refuses DEBUG unless enabled; older servers do not know the option."""
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    m = re.search(r"v=(\d+)\.", out)
    return ["--enable-debug-command", "local"] if m and int(m.group(1)) >= 7 else []


class RedisServer:
    """One redis-server on 127.0.0.1:<free port>, no persistence; stop() / start() keep the port,
    so herald sees the same address come back (empty)."""

    def __init__(self, port: int | None = None, extra: tuple = ()):
        self.port = port or free_port()
        self.extra = tuple(extra)  # more redis-server arguments, e.g. ("--replicaof", host, port)
        self.dir = tempfile.mkdtemp(prefix="herald-redis-")
        self.proc = None
        self.start()

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def command(self) -> list[str]:
        """The redis-server command line (herald_test.sentinel starts a sentinel instead)."""
        return ["redis-server", "--port", str(self.port), "--bind", HOST, "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--dir", self.dir,
                *_debug_command_args(), *self.extra]

    def start(self, timeout: float = 10.0):
        log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT)
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
        self.kill()  # the caller never got an object to kill
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

    def replication(self) -> str:
        """INFO replication, or "" when the connection is reset: Sentinel kills every client of
        an instance it reconfigures (CLIENT KILL TYPE normal), the poller's own included."""
        try:
            return self.cli("INFO", "replication")
        except AssertionError:
            return ""

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


# Fixtures (conftest.py registers them): one redis-server each, killed at teardown.
@pytest.fixture
def redis1():
    r = RedisServer()
    yield r
    r.kill()


@pytest.fixture
def redis2():
    r = RedisServer()
    yield r
    r.kill()


# Several instances on the same shards, and what their subscribers received.

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
