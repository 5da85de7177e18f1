"""WebSocket clients that behave as attackers: control-frame floods (ping, pong, close after close)
from clients that never read, fragment floods, op floods, a slow reader, and a subscribe cancelled
in the same packet. After each, herald must be alive and its memory (VmRSS) and descriptors back
under a bound (docs/security.md, "WebSocket control frames and fragments").

Every loop is bounded in count and time; every target is 127.0.0.1.
"""
import json
import os
import socket
import ssl
import struct
import threading
import time

import pytest
import requests

from herald_test import HOST, unique, wait_until
from herald_test.http import finish_publisher, publish, start_publisher
from herald_test.metrics import METRICS, metric_sum, metrics_text, rejected
from herald_test.server import server_fds, server_rss_kib
from herald_test.tls import make_ca, make_cert
from herald_test.ws import RawWS

MASK = b"\x11\x22\x33\x44"

# Under AddressSanitizer freed memory sits in its quarantine: make test-asan raises the slack.
RSS_SLACK_KIB = int(os.environ.get("HERALD_TEST_RSS_SLACK_KIB", 16 * 1024))


@pytest.fixture(scope="module")
def herald_config():
    # Publish batches up to 2 MiB, so that one burst can pass a subscriber's 1 MiB queue.
    return {"limits": {"max_queued_bytes": "1MiB", "max_client_message_bytes": "64KiB",
                       "max_message_bytes": "2MiB"}}


def frame(opcode: int, payload: bytes = b"", fin: bool = True) -> bytes:
    """One masked client frame (a fixed mask key, so a flood is built once and repeated)."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return hdr + MASK + bytes(c ^ MASK[i % 4] for i, c in enumerate(payload))


def send_flood(ws: RawWS, block: bytes, times: int, tail: bytes = b"", timeout: float = 30) -> str:
    """Sends `block` `times` times then `tail`; 'sent', or 'closed' when the server ended the
    connection first (it may, that is the point)."""
    ws.sock.settimeout(timeout)
    try:
        for _ in range(times):
            ws.sock.sendall(block)
        if tail:
            ws.sock.sendall(tail)
    except (BrokenPipeError, ConnectionResetError):
        return "closed"
    return "sent"


class Baseline:
    """RSS and descriptors before an attack; check() asserts herald is alive and back under
    them (descriptors exactly back, memory within the slack)."""

    def __init__(self, server, health_url: str | None = None, verify=True):
        self.server = server
        self.pid = server.proc.pid
        self.health = lambda: requests.get(health_url or server.url("/healthz"), timeout=10,
                                           verify=verify).status_code
        assert self.health() == 200
        time.sleep(0.2)
        self.fds = server_fds(self.pid)
        self.rss = server_rss_kib(self.pid)

    def rss_now(self) -> int:
        return server_rss_kib(self.pid)

    def assert_rss(self, what: str):
        now = self.rss_now()
        assert now - self.rss < RSS_SLACK_KIB, \
            f"{what}: RSS grew from {self.rss} to {now} KiB (slack {RSS_SLACK_KIB} KiB)"

    def check(self, what: str):
        assert self.server.alive(), f"herald died after {what}"
        assert self.health() == 200
        wait_until(lambda: server_fds(self.pid) <= self.fds, 10,
                   what=f"fds back to {self.fds} after {what} (now {server_fds(self.pid)})")
        self.assert_rss(what)


def read_until_close(ws: RawWS, timeout: float):
    """(close code, reason, how, frames before the close)."""
    frames = []
    code, reason, how = ws.wait_close(timeout, frames)
    return code, reason, how, frames


# ----------------------------------------------------------------------------- control frames

def test_ping_flood_from_a_client_that_never_reads_costs_one_pong(server):
    """400,000 pings of 125 bytes (52 MB) from a client with a 4 KiB receive buffer that reads
    nothing: herald answers only the latest ping (RFC 6455 5.5.3), so its memory does not grow
    (before the fix: one queued pong per ping, ~100 MB), and the latest ping gets its pong."""
    base = Baseline(server)
    ws = RawWS(server.port, rcvbuf=4096)
    try:
        block = frame(0x9, b"p" * 125) * 2000
        last = b"last ping " + b"z" * 115
        assert send_flood(ws, block, 200, frame(0x9, last)) == "sent"
        time.sleep(1.0)  # let herald read what is still in its receive buffer
        base.assert_rss("400,000 pings, connection still open")

        # Now read: whatever pongs were already on the wire, then the latest ping's.
        pongs = 0
        deadline = time.monotonic() + 10
        while True:
            assert time.monotonic() < deadline, f"no pong for the last ping ({pongs} pongs)"
            ws.sock.settimeout(max(0.1, deadline - time.monotonic()))
            fin, op, payload = ws.recv_frame()
            assert op == 0xA, f"opcode {op:#x}"
            pongs += 1
            if payload == last:
                break
            assert payload == b"p" * 125
        print(f"{pongs} pongs for 400,001 pings; RSS {base.rss} -> {base.rss_now()} KiB")
        assert pongs < 100_000
        # the connection still works
        ws.send_text(json.dumps({"op": "ping", "id": 1}))
        assert ws.recv_json() == {"type": "ok", "id": 1, "op": "ping"}
    finally:
        ws.close()
    base.check("a ping flood")


def test_ping_flood_over_tls_costs_one_pong(herald_factory, tmp_path):
    """The same over TLS, where queued frames leave the queue when they are encrypted."""
    ca = make_ca(str(tmp_path))
    cert, key = make_cert(str(tmp_path), "server", ca)
    srv = herald_factory({"tls": {"cert": cert, "key": key}})
    base = Baseline(srv, f"https://localhost:{srv.port}/healthz", verify=ca[0])
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(30)
    raw.connect((HOST, srv.port))
    tls = ssl.create_default_context(cafile=ca[0]).wrap_socket(raw, server_hostname="localhost")
    try:
        tls.sendall(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                    b"Sec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += tls.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        block = frame(0x9, b"p" * 125) * 2000
        for _ in range(100):
            tls.sendall(block)
        last = b"last ping over tls"
        tls.sendall(frame(0x9, last))
        time.sleep(1.0)
        base.assert_rss("100,000 pings over TLS, connection still open")
        buf = bytearray()
        deadline = time.monotonic() + 10
        while last not in buf:
            assert time.monotonic() < deadline, f"no pong for the last ping ({len(buf)} bytes read)"
            buf += tls.recv(65536)
        assert len(buf) < 100_000 * 127 // 10, len(buf)
    finally:
        tls.close()
    base.check("a ping flood over TLS")


def test_pings_are_answered_with_their_payload(server):
    ws = RawWS(server.port)
    try:
        for i in range(20):
            p = f"ping {i}".encode() * (i % 7)
            ws.send_frame(0x9, p)
            fin, op, payload = ws.recv_frame()
            assert (op, payload) == (0xA, p)
        # two pings in one packet: at least the latest is answered, the last pong is the latest's
        ws.sock.sendall(frame(0x9, b"first") + frame(0x9, b"second"))
        ws.send_text(json.dumps({"op": "ping", "id": 2}))
        pongs = []
        while True:
            fin, op, payload = ws.recv_frame()
            if op == 0x1:
                assert json.loads(payload)["id"] == 2
                break
            pongs.append(payload)
        # the ok may overtake the pong: it is in the same flush
        if not pongs or pongs[-1] != b"second":
            fin, op, payload = ws.recv_frame()
            pongs.append(payload)
        assert pongs[-1] == b"second" and set(pongs) <= {b"first", b"second"}, pongs
    finally:
        ws.close()


@pytest.mark.parametrize("kind", ["ping", "pong"])
def test_control_frame_flood_is_rate_limited(herald_factory, kind):
    """Pings and pongs count toward limits.ws_messages_per_s like text ops: a flood of 20,000
    gets close 1008 "rate limited" (before the fix: never closed, one pong queued per ping)."""
    srv = herald_factory({"limits": {"ws_messages_per_s": 100}})
    base = Baseline(srv)
    limited0 = rejected(srv, "rate_limited")
    ws = RawWS(srv.port, rcvbuf=4096)
    try:
        op = 0x9 if kind == "ping" else 0xA
        send_flood(ws, frame(op, b"x" * 125) * 1000, 20)
        code, reason, how, frames = read_until_close(ws, 10)
        assert (code, reason, how) == (1008, "rate limited", "close"), (code, reason, how)
        if kind == "ping":
            # at most the burst (200) answered, never one per ping
            assert all(o == 0xA for o, _ in frames) and len(frames) <= 210, len(frames)
        else:
            assert frames == []
    finally:
        ws.close()
    assert rejected(srv, "rate_limited") - limited0 >= 200
    base.check(f"a {kind} flood")


def test_close_frames_after_close_from_a_client_that_never_reads(server):
    """A close, then 100,000 more close frames, never reading: herald answers the first, ignores
    the rest and ends the connection within its close bound."""
    base = Baseline(server)
    ws = RawWS(server.port, rcvbuf=4096)
    try:
        t0 = time.monotonic()
        close = frame(0x8, struct.pack("!H", 1000) + b"bye")
        send_flood(ws, close * 1000, 100, timeout=10)
        # the connection must end (the echo first, when the client finally reads)
        code, reason, how, frames = read_until_close(ws, 10)
        took = time.monotonic() - t0
        assert how in ("close", "eof", "rst"), how
        if how == "close":
            assert code == 1000, code
        assert frames == []
        assert took < 10, took
    finally:
        ws.close()
    base.check("close frames after close")


# ----------------------------------------------------------------------------- fragments

def test_endless_fragmented_message_of_empty_continuations_is_closed(server):
    """A text frame without FIN, then 100,000 empty continuation frames: every fragment's frame
    header counts toward limits.max_client_message_bytes, so the message ends with close 1009
    (before the fix: never closed)."""
    base = Baseline(server)
    too_big0 = rejected(server, "ws_message_too_big")
    ws = RawWS(server.port, rcvbuf=4096)
    try:
        first = frame(0x1, b"{", fin=False)
        send_flood(ws, first + frame(0x0, b"", fin=False) * 10_000, 1,
                   frame(0x0, b"", fin=False) * 90_000)
        code, reason, how, frames = read_until_close(ws, 10)
        assert (code, reason, how) == (1009, "message too big", "close"), (code, reason, how)
    finally:
        ws.close()
    assert rejected(server, "ws_message_too_big") - too_big0 >= 1
    base.check("an endless fragmented message")


def fragmented(text: bytes, size: int) -> bytes:
    parts = [text[i:i + size] for i in range(0, len(text), size)]
    out = [frame(0x1 if i == 0 else 0x0, p, fin=(i == len(parts) - 1)) for i, p in enumerate(parts)]
    return b"".join(out)


def test_many_small_fragments_up_to_the_message_limit(server):
    """1-byte fragments cost 7 bytes each on the wire (6 of header): a message of 9,000 of them
    (63,000 bytes) is within the 64 KiB limit and answered; one of 10,000 (70,000) is closed 1009
    (before the fix it was answered: only payload bytes counted)."""
    base = Baseline(server)
    ws = RawWS(server.port, rcvbuf=1 << 20)
    try:
        def op(n_bytes, id_):
            head = b'{"op":"ping","id":%d,"pad":"' % id_
            return head + b"a" * (n_bytes - len(head) - 2) + b'"}'

        ws.sock.sendall(fragmented(op(9000, 1), 1))
        assert ws.recv_json() == {"type": "ok", "id": 1, "op": "ping"}
        # a realistic fragmenter: 4 KiB fragments of a 60 KiB message
        ws.sock.sendall(fragmented(op(60_000, 2), 4096))
        assert ws.recv_json() == {"type": "ok", "id": 2, "op": "ping"}
        send_flood(ws, fragmented(op(10_000, 3), 1), 1)
        code, reason, how, frames = read_until_close(ws, 10)
        assert (code, reason, how) == (1009, "message too big", "close"), (code, reason, how, frames)
    finally:
        ws.close()
    base.check("small fragments")


def flood_until_slow_consumer(server, block: bytes, times: int, what: str):
    """Sends `block` `times` times from a client that never reads: the replies stop at
    limits.max_queued_bytes (close 1008 "slow consumer", counted) and memory does not grow."""
    base = Baseline(server)
    slow0 = metric_sum(metrics_text(server), METRICS["slow_consumers"]) or 0
    ws = RawWS(server.port, rcvbuf=4096)
    try:
        send_flood(ws, block, times, timeout=20)
        base.assert_rss(f"{what}, connection still open")
        code, reason, how, frames = read_until_close(ws, 15)
        if how == "close":
            assert (code, reason) == (1008, "slow consumer"), (code, reason)
    finally:
        ws.close()
    slow = metric_sum(metrics_text(server), METRICS["slow_consumers"]) or 0
    assert slow - slow0 >= 1, (slow0, slow)
    base.check(what)


def test_fragment_flood_from_a_client_that_never_reads(server):
    """Complete messages of 64-byte fragments, 30 MB of them, never reading."""
    msg = fragmented(b'{"op":"ping","id":"' + b"f" * 900 + b'"}', 64)
    flood_until_slow_consumer(server, msg * 100, 300, "a fragment flood")


# ----------------------------------------------------------------------------- ops

def test_op_flood_from_a_client_that_never_reads(server):
    """200,000 ping ops, never reading: the replies are bounded by limits.max_queued_bytes."""
    block = b"".join(frame(0x1, b'{"op":"ping","id":%d}' % i) for i in range(1000))
    flood_until_slow_consumer(server, block, 200, "an op flood")


def test_subscribe_then_unsubscribe_in_one_packet_answers_both(server):
    """Every op with an id gets exactly one reply: a subscribe cancelled by an unsubscribe before
    it was confirmed is answered `error` `unsubscribed` (before the fix: never answered)."""
    topic = unique("subunsub")
    ws = RawWS(server.port)
    try:
        ops = [{"op": "subscribe", "topic": topic, "id": 1},
               {"op": "unsubscribe", "topic": topic, "id": 2},
               {"op": "subscribe", "topic": topic, "id": 3},
               {"op": "unsubscribe", "topic": topic, "id": "4"},
               {"op": "subscribe", "topic": topic, "id": 5}]
        ws.sock.sendall(b"".join(frame(0x1, json.dumps(o).encode()) for o in ops))
        replies = {}
        ws.sock.settimeout(5)
        while len(replies) < len(ops):
            j = ws.recv_json()
            assert j["id"] not in replies, f"two replies for id {j['id']}: {replies[j['id']]}, {j}"
            replies[j["id"]] = j
        assert replies[1]["type"] == "error" and replies[1]["code"] == "unsubscribed", replies[1]
        assert replies[1]["topic"] == topic and replies[1]["message"]
        assert replies[2] == {"type": "ok", "id": 2, "op": "unsubscribe", "topic": topic}
        assert replies[3]["code"] == "unsubscribed"
        assert replies[5]["type"] == "ok" and replies[5]["op"] == "subscribe", replies[5]
        # nothing else comes for those ids, and the last subscription delivers
        publish(server, topic, "after")
        m = ws.recv_json()
        assert m["type"] == "message" and m["data"] == "after", m
    finally:
        ws.close()


# ----------------------------------------------------------------------------- slow consumer

def publish_bursts(server, topic: str, stop: threading.Event, bursts: int = 10):
    """POST /publish batches of 400 x 4 KiB (1.6 MB, more than limits.max_queued_bytes), which
    reach a subscriber in one loop turn."""
    body = json.dumps({"messages": [{"topic": topic, "data": f"{i} ".ljust(4096, "b")}
                                    for i in range(400)]})
    with requests.Session() as s:
        for _ in range(bursts):
            if stop.is_set():
                return
            r = s.post(server.url("/publish"), data=body, timeout=30,
                       headers={"Content-Type": "application/json"})
            assert r.status_code == 200, r.text[:300]
            time.sleep(0.05)


@pytest.mark.parametrize("publisher", ["steady", "bursts"])
def test_slow_reader_sees_the_slow_consumer_close_frame(server, publisher):
    """A subscriber that reads 4 KiB every 5 ms while messages are published flat out (one by
    one, or in batches bigger than the queue) passes limits.max_queued_bytes: what is queued is
    dropped and it gets close 1008 "slow consumer" (before the fix, with bursts: end of stream,
    the close frame dropped again by every flush pass until the close deadline)."""
    base = Baseline(server)
    topic = unique("slowreader")
    ws = RawWS(server.port, f"/ws?topic={topic}", rcvbuf=4096)
    stop = threading.Event()
    if publisher == "steady":
        pub = start_publisher(server, topic, 2000, 1, 4096)
    else:
        pub = threading.Thread(target=publish_bursts, args=(server, topic, stop), daemon=True)
        pub.start()
    try:
        buf = bytearray(ws.buf)
        ws.buf = bytearray()
        close = None
        how = None
        messages = 0
        deadline = time.monotonic() + 40
        while close is None and how is None:
            assert time.monotonic() < deadline, f"still open after 40 s, {messages} messages"
            ws.sock.settimeout(5)
            try:
                chunk = ws.sock.recv(4096)
            except ConnectionResetError:
                how = "rst"
                break
            if not chunk:
                how = "eof"
                break
            buf += chunk
            while len(buf) >= 2:  # whole frames only
                n = buf[1] & 0x7F
                off = 2 if n < 126 else (4 if n == 126 else 10)
                if len(buf) < off:
                    break
                if n == 126:
                    n = struct.unpack("!H", buf[2:4])[0]
                elif n == 127:
                    n = struct.unpack("!Q", buf[2:10])[0]
                if len(buf) < off + n:
                    break
                op, payload = buf[0] & 0x0F, bytes(buf[off:off + n])
                del buf[:off + n]
                if op == 0x8:
                    close = (struct.unpack("!H", payload[:2])[0], payload[2:].decode())
                    break
                messages += 1
            time.sleep(0.005)
        assert close == (1008, "slow consumer"), \
            f"got {how or close} after {messages} frames, not close 1008 'slow consumer'"
    finally:
        ws.close()
        stop.set()
        if publisher == "steady":
            finish_publisher(pub, 120)
        else:
            pub.join(60)
    base.check("a slow reader")
