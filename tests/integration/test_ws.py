"""WebSocket protocol details: ping op, client publish rules, close codes 1009/1007/1002, server
pings and the pong timeout. Raw-socket frames where python3-websockets would refuse to send them."""
import asyncio
import json
import socket
import time

import pytest
import websockets

from herald_test import EPOCH_RE, unique
from herald_test.metrics import METRICS, metric_sum, metrics_text
from herald_test.ws import RawWS, ws_connect, ws_op, ws_recv_json


@pytest.fixture(scope="module")
def herald_config():
    return {"limits": {"max_client_message_bytes": "4KiB"}}


def test_ping_op_is_answered_with_ok(server):
    async def run():
        ws = await ws_connect(server)
        for rid in (1, "abc", 3):
            ok = await ws_op(ws, {"op": "ping", "id": rid})
            assert ok["type"] == "ok" and ok["id"] == rid, ok
            assert ok.get("op", "ping") == "ping", ok
        # without an id, still an ok
        await ws.send(json.dumps({"op": "ping"}))
        ok = await ws_recv_json(ws)
        assert ok["type"] == "ok" and "id" not in ok, ok
        await ws.close()

    asyncio.run(run())


def test_client_without_subprotocol_is_served(server):
    async def run():
        ws = await ws_connect(server, subprotocols=None)
        ok = await ws_op(ws, {"op": "ping", "id": 1})
        assert ok["type"] == "ok"
        await ws.close()

    asyncio.run(run())


def test_client_publish_is_forbidden_by_default(server):
    async def run():
        ws = await ws_connect(server)
        err = await ws_op(ws, {"op": "publish", "topic": "chat:room", "data": "x", "id": 3})
        assert err["type"] == "error" and err["code"] == "forbidden" and err["id"] == 3, err
        ok = await ws_op(ws, {"op": "ping", "id": 4})
        assert ok["type"] == "ok"
        await ws.close()

    asyncio.run(run())


def test_client_publish_allowed_by_pattern(herald_factory):
    srv = herald_factory({"ws": {"client_publish": ["chat:*"]}})
    room = "chat:" + unique("room")

    async def run():
        sub = await ws_connect(srv, f"topic={room}")
        pub = await ws_connect(srv)
        ok = await ws_op(pub, {"op": "publish", "topic": room, "data": {"text": "hi"}, "id": 1})
        assert ok["type"] == "ok" and ok["id"] == 1 and ok["offset"] == 1, ok
        m = await ws_recv_json(sub)
        assert (m["type"], m["topic"], m["offset"], m["data"]) == ("message", room, 1, {"text": "hi"}), m
        assert EPOCH_RE.match(m["epoch"])
        ok = await ws_op(pub, {"op": "publish", "topic": room, "data": "two", "event": "say", "id": 2})
        assert ok["type"] == "ok" and ok["offset"] == 2, ok
        m = await ws_recv_json(sub)
        assert m["data"] == "two" and m["event"] == "say"
        err = await ws_op(pub, {"op": "publish", "topic": "news", "data": "x", "id": 3})
        assert err["type"] == "error" and err["code"] == "forbidden", err
        err = await ws_op(pub, {"op": "publish", "topic": "chatroom", "data": "x", "id": 4})
        assert err["type"] == "error" and err["code"] == "forbidden", err
        await sub.close()
        await pub.close()

    asyncio.run(run())


def test_oversized_client_message_closes_1009(server):
    async def run():
        ws = await ws_connect(server)
        await ws.send(json.dumps({"op": "ping", "id": 1, "pad": "x" * 5000}))
        with pytest.raises(websockets.ConnectionClosed):
            for _ in range(5):
                await asyncio.wait_for(ws.recv(), 10)
        assert ws.close_code == 1009, (ws.close_code, ws.close_reason)
        assert ws.close_reason == "message too big", ws.close_reason

    asyncio.run(run())


def test_message_just_under_the_limit_is_fine(server):
    async def run():
        ws = await ws_connect(server)
        frame = json.dumps({"op": "ping", "id": 1, "pad": ""})
        frame = json.dumps({"op": "ping", "id": 1, "pad": "x" * (4096 - len(frame))})
        assert len(frame) == 4096
        await ws.send(frame)
        ok = await ws_recv_json(ws)
        assert ok["type"] == "ok" and ok["id"] == 1, ok
        await ws.close()

    asyncio.run(run())


def test_invalid_utf8_text_frame_closes_1007(server):
    with RawWS(server.port) as ws:
        ws.send_frame(0x1, b'{"op":"ping","id":"\xff\xfe"}')
        code, reason, how = ws.wait_close(5)
        assert how == "close" and code == 1007, (code, reason, how)
        assert reason == "invalid utf-8", reason


def test_unmasked_client_frame_closes_1002(server):
    with RawWS(server.port) as ws:
        ws.send_frame(0x1, b'{"op":"ping","id":1}', mask=False)
        code, reason, how = ws.wait_close(5)
        assert how == "close" and code == 1002, (code, reason, how)


def test_fragmented_message_within_limit_is_reassembled(server):
    with RawWS(server.port) as ws:
        ws.send_frame(0x1, b'{"op":"pi', fin=False)
        ws.send_frame(0x0, b'ng","id":', fin=False)
        ws.send_frame(0x0, b'42}', fin=True)
        ok = ws.recv_json()
        assert ok["type"] == "ok" and ok["id"] == 42, ok


def test_client_close_is_echoed_with_1000(server):
    with RawWS(server.port) as ws:
        ws.send_frame(0x8, (1000).to_bytes(2, "big"))
        code, reason, how = ws.wait_close(5)
        assert how == "close" and code == 1000, (code, reason, how)


# ---------------------------------------------------------------- server pings, pong timeout

def test_server_pings_and_closes_on_pong_timeout(herald_factory):
    srv = herald_factory({"ws": {"ping_interval": "1s", "pong_timeout": "1s"}})
    with RawWS(srv.port, timeout=4) as ws:
        t0 = time.monotonic()
        try:
            fin, op, payload = ws.recv_frame()
        except socket.timeout:
            raise AssertionError("no frame (ping) from the server within 4 s; ws.ping_interval is 1s")
        assert op == 0x9, f"expected a ping within ~3 s, got opcode {op:#x} {payload!r}"
        assert time.monotonic() - t0 < 3.0
        # never answer, never send anything, but read: the close frame says why
        code, reason, how = ws.wait_close(6)
        assert (how, code, reason) == ("close", 1008, "pong timeout")
        assert time.monotonic() - t0 < 5.0
    assert metric_sum(metrics_text(srv), METRICS["pong_timeouts"]) == 1

    # a client that answers pings (python3-websockets does so by itself) stays connected
    async def polite():
        ws = await ws_connect(srv)
        await asyncio.sleep(4)
        ok = await ws_op(ws, {"op": "ping", "id": 1})
        assert ok["type"] == "ok"
        await ws.close()

    asyncio.run(polite())


def test_any_client_frame_counts_as_life(herald_factory):
    srv = herald_factory({"ws": {"ping_interval": "1s", "pong_timeout": "1s"}})
    with RawWS(srv.port, timeout=5) as ws:
        # never answer pings, but send a ping op every 300 ms: the server must keep us. Counted,
        # not timed: 14 round trips span over 4 s (several ping intervals plus pong timeouts)
        # however slowly a loaded machine runs them; a count by a deadline would be short there.
        t0 = time.monotonic()
        for n in range(1, 15):
            ws.send_text(json.dumps({"op": "ping", "id": n}))
            ok = ws.recv_json()
            assert ok["type"] == "ok" and ok["id"] == n, ok
            time.sleep(0.3)
        assert time.monotonic() - t0 >= 4.0
