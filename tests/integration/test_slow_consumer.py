"""A subscriber that stops reading is cut off (WebSocket close 1008 "slow consumer" or the
connection ended; SSE stream ended) and counted, while a normal subscriber gets everything."""
import asyncio
import json
import socket
import time

import pytest
import requests

from herald_test import HOST, unique
from herald_test.http import finish_publisher, start_publisher
from herald_test.metrics import METRICS, metric_sum
from herald_test.ws import RawWS, ws_connect

N = 2000
SIZE = 4096


@pytest.fixture(scope="module")
def herald_config():
    # 1 MiB of slack for the normal subscriber when the machine is busy; the slow ones still
    # pass it after a quarter of the 8 MB published.
    return {"limits": {"max_queued_bytes": "1MiB"}}


def raw_sse_never_reading(port: int, topic: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect((HOST, port))
    s.sendall(f"GET /sse?topic={topic} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
              f"Accept: text/event-stream\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)                      # byte by byte: read the headers and not one byte more
        assert chunk, "SSE stream closed during headers"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return s


def drain_until_closed(s: socket.socket, timeout: float) -> str:
    """Read everything the server had queued; 'eof' or 'rst' when it ended the connection."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"connection still open after {timeout}s")
        s.settimeout(left)
        try:
            chunk = s.recv(1 << 20)
        except ConnectionResetError:
            return "rst"
        except socket.timeout:
            raise AssertionError(f"connection still open after {timeout}s")
        if not chunk:
            return "eof"


def test_slow_consumers_are_cut_off_and_others_get_everything(server):
    topic = unique("slow")
    before = requests.get(server.url("/metrics"), timeout=10).text
    slow_before = metric_sum(before, METRICS["slow_consumers"]) or 0

    slow_ws = RawWS(server.port, f"/ws?topic={topic}", rcvbuf=4096)
    slow_sse = raw_sse_never_reading(server.port, topic)

    async def run():
        # the normal subscriber reads as fast as it can; a large receive buffer keeps it from being
        # mistaken for a slow consumer when this machine is busy (the test is about the other one)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.connect((HOST, server.port))
        s.setblocking(False)
        normal = await ws_connect(server, f"topic={topic}", sock=s)
        got = []

        async def consume():
            while len(got) < N:
                m = json.loads(await asyncio.wait_for(normal.recv(), 30))
                got.append(m)

        task = asyncio.create_task(consume())
        t0 = time.monotonic()
        pub = start_publisher(server, topic, N, 1, SIZE)
        summary = await asyncio.to_thread(finish_publisher, pub, 120)
        assert summary["first"] == 1 and summary["last"] == N, summary
        await asyncio.wait_for(task, 60)
        took = time.monotonic() - t0
        await normal.close()
        return got, took

    try:
        got, took = asyncio.run(run())
        assert [m["offset"] for m in got] == list(range(1, N + 1))
        assert all(m["data"].startswith(f"{m['offset']} ") and len(m["data"]) == SIZE for m in got)

        code, reason, how = slow_ws.wait_close(20)
        assert how in ("close", "eof", "rst"), how
        if how == "close":
            assert (code, reason) == (1008, "slow consumer"), (code, reason)
        assert drain_until_closed(slow_sse, 20) in ("eof", "rst")
    finally:
        slow_ws.close()
        slow_sse.close()

    text = requests.get(server.url("/metrics"), timeout=10).text
    slow_after = metric_sum(text, METRICS["slow_consumers"])
    assert slow_after is not None and slow_after - slow_before >= 2, (slow_before, slow_after)


def test_server_still_serves_after_slow_consumers(server):
    r = requests.get(server.url("/healthz"), timeout=10)
    assert r.status_code == 200
