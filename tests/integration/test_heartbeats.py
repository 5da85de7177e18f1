"""Heartbeats a client chooses (/ws?heartbeat=, /sse?heartbeat=) within ws.ping_interval_min/_max
and sse.heartbeat_min/_max, sent only after the period without traffic: a connection that
carries messages gets no ping and no heartbeat comment."""
import socket
import threading
import time

import pytest
import requests

from herald_test import HOST, unique
from herald_test.http import RawResponse
from herald_test.ws import RawWS


@pytest.fixture(scope="module")
def herald_config():
    return {"ws": {"ping_interval": "60s", "ping_interval_min": "500ms", "ping_interval_max": "5m"},
            "sse": {"heartbeat": "60s", "heartbeat_min": "500ms", "heartbeat_max": "5m"}}


def frames_for(ws: RawWS, seconds: float, until_ping: bool = False):
    """(opcode, payload) of every frame within `seconds` (or up to the first ping); pings are
    answered."""
    out = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        ws.sock.settimeout(left)
        try:
            _, op, payload = ws.recv_frame()
        except socket.timeout:
            break
        out.append((op, payload))
        if op == 0x9:
            ws.send_frame(0xA, payload)
            if until_ping:
                break
    return out


def publish_every(server, topic, period, seconds):
    stop = time.monotonic() + seconds
    s = requests.Session()
    n = 0
    while time.monotonic() < stop:
        s.post(server.url(f"/publish/{topic}"), data=f"m{n}", timeout=5)
        n += 1
        time.sleep(period)
    return n


def test_ws_client_period_and_no_ping_while_messages_flow(server):
    topic = unique("hb")
    with RawWS(server.port, f"/ws?topic={topic}&heartbeat=2s") as ws:
        # idle: a ping within the period (and the sweep's 250 ms), not the server's 60 s
        got = frames_for(ws, 3.5, until_ping=True)
        assert any(op == 0x9 for op, _ in got), got
        # messages every 200 ms for 4 s: the connection is never idle for 2 s, so no ping. They
        # start right after the ping, a full period before the next is due (started at a fixed
        # time instead, the first message had half a second to beat the next ping, which a
        # loaded machine's thread start and first request can take).
        t = threading.Thread(target=publish_every, args=(server, topic, 0.2, 4.0))
        t.start()
        got = frames_for(ws, 4.0)
        t.join()
        assert sum(op == 0x1 for op, _ in got) >= 5, got
        assert not any(op == 0x9 for op, _ in got), "pinged although messages were flowing"
        # idle again: pings come back
        got = frames_for(ws, 3.0)
        assert any(op == 0x9 for op, _ in got), got


def test_sse_client_period(server):
    topic = unique("hbs")
    r = RawResponse(server.port, f"/sse?topic={topic}&heartbeat=1s",
                    headers={"Accept": "text/event-stream"})
    try:
        assert r.status == 200
        r.sock.settimeout(5)
        buf = b""
        deadline = time.monotonic() + 4
        while b": heartbeat" not in buf and time.monotonic() < deadline:
            buf += r.sock.recv(4096)
        assert b": heartbeat" in buf, buf
    finally:
        r.close()


@pytest.mark.parametrize("path", ["/ws", "/sse"])
@pytest.mark.parametrize("value", ["100ms", "6m", "soon", ""])
def test_out_of_bounds_or_malformed_is_400(server, path, value):
    headers = {"Accept": "text/event-stream"}
    if path == "/ws":
        headers.update({"Upgrade": "websocket", "Connection": "Upgrade",
                        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version": "13"})
    r = RawResponse(server.port, f"{path}?topic=t&heartbeat={value}", headers=headers)
    try:
        assert r.status == 400, (r.status, r.body[:200])
        assert r.error_code() == "bad_request"
        assert b"between 500ms and 5m" in r.body
    finally:
        r.close()
