"""Real redis-server processes (Debian's package) on free ports of 127.0.0.1, talked to with
redis-cli, the redis broker's config for herald, and a pytest fixture. Every server started here
is killed by its owner's teardown."""
from __future__ import annotations

import os
import subprocess
import tempfile
import time

import pytest

from herald_test import HOST, free_port


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
