"""Helpers for herald's integration tests, one module per job:

- `server`  the herald process (config YAML, port 0, logs, exit check) and /proc probes
- `http`    curl, requests, publish, a raw HTTP request, and THE way to assert an error answer
- `ws`      a raw-socket WebSocket client and python3-websockets helpers
- `sse`     an SSE stream read with curl, parsed as EventSource does
- `metrics` /metrics parsing and the exported names
- `tls`     a test CA and server certificates made with `openssl`
- `tokens`  JWTs: keys made here, valid and hand-crafted bad tokens
- `redis`   redis-server processes and the redis broker's config
- `nginx`   nginx running the shipped config

Every wait is bounded in time; every target is 127.0.0.1. This module holds what they all use.
"""
from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]       # tests/integration
REPO_ROOT = HERE.parents[1]
HOST = "127.0.0.1"
EPOCH_RE = re.compile(r"^[0-9a-z]{8}$")


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


def wait_count(collectors, n: int, timeout: float, what: str = "messages"):
    """Until every collector (sse.SSECollector, ws.WSCollector) holds `n` messages; fails at
    once when one of them failed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        counts = [len(c.messages()) for c in collectors]
        if all(x >= n for x in counts):
            return
        errs = [c.error for c in collectors if c.error]
        assert not errs, f"a subscriber failed: {errs}"
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {n} {what}; have {[len(c.messages()) for c in collectors]}")


def free_port() -> int:
    """A port free now on 127.0.0.1 (for servers that cannot bind port 0 themselves, and for an
    address where nothing listens).

    Not one the kernel hands out for port 0: that comes from the ephemeral range, from which
    every outgoing connection of the suite (thousands, in the fanout and storm tests) also takes
    its source port. One of them could take this port between our release and the server's bind
    (redis-server then exits "address in use"; a Redis restarted on its old port meets the same),
    and a connect to a port of that range where nothing listens can meet itself (TCP
    simultaneous open) instead of being refused. free_port_run draws below the range."""
    return free_port_run(1)


def free_port_run(n: int, offsets: tuple[int, ...] = (0,)) -> int:
    """A port p with p + o .. p + o + n - 1 free on 127.0.0.1 now for every o in `offsets`
    (for scripts that take a base port: a Redis Cluster node's bus port is its port + 10000).

    Drawn from 20000-30000, below the kernel's ephemeral range (32768 and up by default) where a
    busy machine's outgoing connections leave few runs of free ports; bound with SO_REUSEADDR as
    redis-server binds, so a port whose old connections linger in TIME_WAIT counts as free."""
    import random
    for _ in range(200):
        base = random.randint(20000, 30000 - n)
        socks = []
        try:
            for q in [base + o + i for o in offsets for i in range(n)]:
                s = socket.socket()
                socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((HOST, q))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError(f"no run of {n} free ports")
