"""slow_consumer per namespace (delivery.namespaces): a WebSocket subscriber that falls behind is
served instead of cut. drop_oldest keeps the newest `keep` messages and sends a `reset` with the
skipped range; conflate keeps only the newest message per key (a JSON field). Tested with a
reader that never reads and one that reads slowly, beside a fast reader that must get everything:
the server's memory stays bounded, and the slow reader's view is consistent. (The default, disconnect, is test_slow_consumer.py.)"""
import json
import os
import threading
import time

import pytest
import requests

from herald_test import unique
from herald_test.metrics import METRICS, metric_sum
from herald_test.server import server_rss_kib
from herald_test.ws import RawWS

KEYS = 20
PAD = "x" * 900


@pytest.fixture(scope="module")
def herald_config():
    # Heartbeats are not under test here: a stalled reader (on a loaded CI machine, for longer
    # than ping_interval + pong_timeout) must not be closed for not answering a ping.
    return {"limits": {"max_queued_bytes": "1MiB", "max_message_bytes": "1MiB"},
            "ws": {"ping_interval": "10m"},
            "delivery": {"namespaces": [
                {"pattern": "drop:*", "slow_consumer": "drop_oldest", "keep": 50},
                {"pattern": "cf:*", "slow_consumer": "conflate", "keep": 1000, "key": "symbol"}]}}


def publish_batch(server, topic, bodies):
    for i in range(0, len(bodies), 500):
        msgs = [{"topic": topic, "data": b} for b in bodies[i:i + 500]]
        r = requests.post(server.url("/publish"), json={"messages": msgs}, timeout=30)
        assert r.status_code == 200, r.text[:300]


def subscribe(port, topic, rcvbuf=None):
    ws = RawWS(port, f"/ws", rcvbuf=rcvbuf, timeout=20)
    ws.send_text(json.dumps({"op": "subscribe", "topic": topic, "id": 1}))
    r = ws.recv_json()
    assert r["type"] == "ok", r
    return ws


def read_until(ws, done, timeout=30.0, pause=0.0):
    """Reads JSON frames (answering pings) until done(frames) or the timeout."""
    frames = []
    deadline = time.monotonic() + timeout
    while not done(frames):
        assert time.monotonic() < deadline, f"gave up after {len(frames)} frames: {frames[-3:]}"
        ws.sock.settimeout(max(0.1, deadline - time.monotonic()))
        fin, op, payload = ws.recv_frame()
        if op == 0x9:
            ws.send_frame(0xA, payload)
            continue
        assert op == 0x1, (op, payload[:100])
        frames.append(json.loads(payload))
        if pause:
            time.sleep(pause)
    return frames


class FastReader(threading.Thread):
    """Reads as fast as it can, in a thread of its own, while the test publishes."""

    def __init__(self, ws, n):
        super().__init__(daemon=True)
        self.ws, self.n, self.frames, self.error = ws, n, [], None
        self.start()

    def run(self):
        try:
            self.frames = read_until(self.ws, lambda fr: len(fr) == self.n, timeout=60)
        except BaseException as e:  # reported by result()
            self.error = e

    def result(self):
        self.join(70)
        assert self.error is None, repr(self.error)
        return self.frames


def check_positions(frames, last):
    """Every message follows the previous one or a reset's offset; returns (#messages, #resets)."""
    prev = None
    resets = 0
    for f in frames:
        if f["type"] == "reset":
            assert f["reason"] == "slow consumer" and f["skipped"]["to"] == f["offset"]
            assert prev is None or f["skipped"]["from"] == prev + 1, (prev, f)
            prev = f["offset"]
            resets += 1
            continue
        assert f["type"] == "message", f
        assert prev is None or f["offset"] == prev + 1, (prev, f["offset"])
        prev = f["offset"]
    assert prev == last
    return len(frames) - resets, resets


def test_drop_oldest_never_reading_then_reading(server):
    topic = "drop:" + unique("t")
    rss0 = server_rss_kib(server.proc.pid)
    stalled = subscribe(server.port, topic, rcvbuf=4096)
    fast = subscribe(server.port, topic)
    n = 4000
    reader = FastReader(fast, n)
    bodies = [{"seq": i, "pad": PAD} for i in range(n)]
    publish_batch(server, topic, bodies)
    # the fast reader gets everything, in order
    got = reader.result()
    assert [f["data"]["seq"] for f in got] == list(range(n))
    last = got[-1]["offset"]
    # ~4 MB published; the stalled one holds at most 1 MiB queued + 512 KiB held back
    rss1 = server_rss_kib(server.proc.pid)
    # Under a sanitizer the allocator's quarantine keeps freed memory: make test widens the slack.
    slack = int(os.environ.get("HERALD_TEST_RSS_SLACK_KIB", 24 * 1024))
    assert rss1 - rss0 < max(slack, 24 * 1024), (rss0, rss1)
    frames = read_until(stalled, lambda fr: fr and fr[-1].get("offset") == last)
    msgs, resets = check_positions(frames, last)
    assert resets >= 1 and msgs < n
    # what follows the last reset is the newest messages only: at most `keep` (50) of them, plus
    # what was already queued when it was sent
    tail = frames[max(i for i, f in enumerate(frames) if f["type"] == "reset") + 1:]
    assert 1 <= len(tail) <= 50 + 1200, len(tail)
    text = requests.get(server.url("/metrics"), timeout=10).text
    assert (metric_sum(text, "herald_slow_consumer_dropped_total") or 0) >= n - msgs
    stalled.close()
    fast.close()


def test_conflate_slow_reader_gets_every_keys_latest_value(server):
    topic = "cf:" + unique("t")
    slow = subscribe(server.port, topic, rcvbuf=4096)
    fast = subscribe(server.port, topic)
    n = 4000
    reader = FastReader(fast, n)
    bodies = [{"symbol": f"K{i % KEYS}", "seq": i, "pad": PAD} for i in range(n)]
    publish_batch(server, topic, bodies)
    got = reader.result()
    assert [f["data"]["seq"] for f in got] == list(range(n))
    last = got[-1]["offset"]
    # read slowly: 2 ms per frame
    frames = read_until(slow, lambda fr: fr and fr[-1].get("offset") == last, pause=0.002)
    assert all(f["type"] == "message" for f in frames), "no reset: 20 keys fit in keep"
    offsets = [f["offset"] for f in frames]
    assert offsets == sorted(set(offsets)), "in offset order, no duplicates"
    assert len(frames) < n, "the backlog was conflated"
    latest = {}
    for f in frames:
        latest[f["data"]["symbol"]] = f["data"]["seq"]
    assert latest == {f"K{k}": max(i for i in range(n) if i % KEYS == k) for k in range(KEYS)}
    text = requests.get(server.url("/metrics"), timeout=10).text
    assert (metric_sum(text, "herald_slow_consumer_conflated_total") or 0) >= n - len(frames)
    slow.close()
    fast.close()
