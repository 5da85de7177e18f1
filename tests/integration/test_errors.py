"""Every documented HTTP error status with its JSON body, and malformed WebSocket ops that get an
`error` frame while the connection stays up."""
import asyncio
import json
import re
import socket
import time

import pytest
import requests

from herald_test import HOST, unique
from herald_test.http import assert_error, curl
from herald_test.ws import ws_connect, ws_op, ws_recv_json


@pytest.fixture(scope="module")
def herald_config():
    return {"limits": {"max_message_bytes": "1KiB"}}


@pytest.mark.parametrize("path", [
    "/publish/bad%20topic",
    "/publish/" + "a" * 256,
    "/publish/a%2Fb",
    "/publish/st*r",
    "/publish/caf%C3%A9",
])
def test_publish_bad_topic_is_400(server, path):
    assert_error(requests.post(server.url(path), data="x", timeout=10), 400, "bad_topic")


def test_topic_of_255_bytes_is_fine(server):
    name = ("t" + unique("")).ljust(255, "x")
    r = requests.post(server.url(f"/publish/{name}"), data="x", timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["topic"] == name


@pytest.mark.parametrize("query", ["topic=", "topic=bad%20topic", "", "topic=" + "b" * 256])
def test_sse_bad_topic_is_400(server, query):
    r = curl(server.url(f"/sse?{query}"))
    assert r.status == 400, (r.status, r.body)
    assert json.loads(r.body)["error"]["code"] == "bad_topic", r.body


def test_sse_too_many_topics_is_400(server):
    q = "&".join(f"topic=t{i}" for i in range(65))     # limits.max_topics_per_connection: 64
    assert_error(requests.get(server.url(f"/sse?{q}"), timeout=10), 400, "too_many_topics")


def test_ws_upgrade_with_bad_topic_is_400(server):
    r = requests.get(server.url("/ws?topic=bad%20topic"), timeout=10, headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert_error(r, 400, "bad_topic")


def test_bad_json_is_400(server):
    r = requests.post(server.url("/publish"), data='{"topic": "a", "data": ', timeout=10,
                      headers={"Content-Type": "application/json"})
    assert_error(r, 400, "bad_json")
    r = requests.post(server.url(f"/publish/{unique('j')}"), data="{nope", timeout=10,
                      headers={"Content-Type": "application/json"})
    assert_error(r, 400, "bad_json")


def test_json_publish_without_topic_is_400(server):
    r = requests.post(server.url("/publish"), json={"data": "x"}, timeout=10)
    assert_error(r, 400, "bad_request")
    r = requests.post(server.url("/publish"), json={"topic": "bad topic", "data": "x"}, timeout=10)
    assert_error(r, 400, "bad_topic")


def test_text_that_is_not_utf8_is_400(server):
    r = requests.post(server.url(f"/publish/{unique('enc')}"), data=b"\xff\xfe\xfd", timeout=10,
                      headers={"Content-Type": "text/plain"})
    assert_error(r, 400, "bad_encoding")


def test_bad_event_name_is_400(server):
    r = requests.post(server.url(f"/publish/{unique('ev')}?event=bad%20event"), data="x", timeout=10)
    assert_error(r, 400, "bad_event")
    r = requests.post(server.url(f"/publish/{unique('ev')}?event=" + "e" * 65), data="x", timeout=10)
    assert_error(r, 400, "bad_event")


def test_unknown_path_is_404(server):
    assert_error(requests.get(server.url("/nope"), timeout=10), 404, "not_found")
    assert_error(requests.get(server.url("/publishx/a"), timeout=10), 404, "not_found")


def test_wrong_method_is_405_with_allow(server):
    r = requests.get(server.url("/publish/x"), timeout=10)
    assert_error(r, 405, "method_not_allowed")
    assert "POST" in r.headers.get("Allow", ""), r.headers
    r = requests.post(server.url("/healthz"), data="x", timeout=10)
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r.headers.get("Allow", ""), r.headers


def test_body_over_max_message_bytes_is_413(server):
    topic = unique("big")
    r = requests.post(server.url(f"/publish/{topic}"), data="x" * 1024, timeout=10)
    assert r.status_code == 200, r.text                # exactly the limit is fine
    r = requests.post(server.url(f"/publish/{topic}"), data="x" * 1025, timeout=10)
    assert_error(r, 413, "payload_too_large")
    r = requests.post(server.url(f"/publish/{topic}"), data="y" * 4096, timeout=10)
    assert_error(r, 413, "payload_too_large")
    # curl, which sends Expect: 100-continue for a body this size
    r = curl(server.url(f"/publish/{topic}"), "--data-binary", "z" * 3000)
    assert r.status == 413, (r.status, r.body)


def test_unsupported_content_type_is_415(server):
    r = requests.post(server.url(f"/publish/{unique('png')}"), data=b"\x89PNG", timeout=10,
                      headers={"Content-Type": "image/png"})
    assert_error(r, 415, "unsupported_media_type")


def test_headers_too_large_is_431(server):
    r = requests.get(server.url("/healthz"), headers={"X-Big": "a" * 20480}, timeout=10)
    assert_error(r, 431, "headers_too_large")
    r = curl(server.url("/healthz"), "-H", "X-Big: " + "b" * 20480)
    assert r.status == 431, (r.status, r.body)


def test_over_max_connections_is_503(herald_factory):
    srv = herald_factory({"limits": {"max_connections": 5}})

    async def run():
        held = [await ws_connect(srv, f"topic={unique('cap')}") for _ in range(5)]
        try:
            r = await asyncio.to_thread(requests.get, srv.url("/healthz"), timeout=10)
            assert_error(r, 503, "over_capacity")
            r = curl(srv.url("/sse?topic=x"))
            assert r.status == 503, (r.status, r.body)
            assert json.loads(r.body)["error"]["code"] == "over_capacity"
            # the held connections still work
            ok = await ws_op(held[0], {"op": "ping", "id": 1})
            assert ok["type"] == "ok"
            # one goes away: a new client gets in again (bounded wait for the count to drop)
            await held.pop().close()
            deadline = time.monotonic() + 5
            while True:
                r = await asyncio.to_thread(requests.get, srv.url("/healthz"), timeout=10)
                if r.status_code == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            assert r.status_code == 200, r.text
        finally:
            for ws in held:
                await ws.close()

    asyncio.run(run())


# ---------------------------------------------------------------- malformed WebSocket ops

# docs/protocol.md does not say which code a missing field or a non-object gets; where two
# each malformed op has exactly one documented code (docs/protocol.md)
@pytest.mark.parametrize("frame,codes", [
    ("this is not json", {"bad_json"}),
    ('{"op": "frobnicate", "id": 1}', {"unknown_op"}),
    ('{"op": "subscribe", "topic": "bad topic", "id": 1}', {"bad_topic"}),
    ('{"op": "subscribe", "topic": "' + "x" * 256 + '", "id": 1}', {"bad_topic"}),
    ('{"op": "subscribe", "id": 1}', {"bad_request"}),
    ('{"op": "unsubscribe", "id": 1}', {"bad_request"}),
    ('{"id": 1}', {"bad_request"}),
    ('[1, 2, 3]', {"bad_request"}),
    ('{"op": "subscribe", "topic": "ok-topic", "since": "yesterday", "id": 1}', {"bad_since"}),
])
def test_malformed_ws_op_gets_error_frame_and_connection_stays(server, frame, codes):
    async def run():
        ws = await ws_connect(server)
        await ws.send(frame)
        err = await ws_recv_json(ws)
        assert err["type"] == "error" and err["code"] in codes, err
        assert isinstance(err.get("message"), str) and err["message"], err
        if '"id": 1' in frame:
            assert err.get("id") == 1, err
        ok = await ws_op(ws, {"op": "ping", "id": "still-there"})
        assert ok["type"] == "ok", ok
        # and it still works as a subscriber
        topic = unique("after-error")
        ok = await ws_op(ws, {"op": "subscribe", "topic": topic, "id": 2})
        assert ok["type"] == "ok", ok
        await asyncio.to_thread(requests.post, server.url(f"/publish/{topic}"), data="fine", timeout=10)
        m = await ws_recv_json(ws)
        assert m["data"] == "fine"
        await ws.close()

    asyncio.run(run())


def test_client_binary_frame_gets_error_and_connection_stays(server):
    async def run():
        ws = await ws_connect(server)
        await ws.send(b"\x00\x01binary")
        err = await ws_recv_json(ws)
        assert err["type"] == "error" and err["code"] == "binary_not_supported", err
        ok = await ws_op(ws, {"op": "ping", "id": 5})
        assert ok["type"] == "ok" and ok["id"] == 5
        await ws.close()

    asyncio.run(run())


# ---------------------------------------------------------------- timeouts

def test_slow_headers_are_cut_off(herald_factory):
    """http.header_timeout guards against slowloris: a request whose headers never finish is
    answered 408 or closed."""
    srv = herald_factory({"http": {"header_timeout": "1s"}})
    s = socket.create_connection((HOST, srv.port), timeout=5)
    try:
        t0 = time.monotonic()
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        data = b""
        for _ in range(10):                       # trickle a header line now and then
            time.sleep(0.2)
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                break
        s.settimeout(max(0.1, 4 - (time.monotonic() - t0)))
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        except socket.timeout:
            raise AssertionError(f"connection with unfinished headers still open after 4 s ({data!r})")
        took = time.monotonic() - t0
        assert took < 3.5, took
        assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:200]
    finally:
        s.close()


def test_idle_keepalive_connection_is_closed(herald_factory):
    srv = herald_factory({"http": {"idle_timeout": "1s"}})
    s = socket.create_connection((HOST, srv.port), timeout=5)
    try:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            assert chunk, data
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 200"), data
        length = int(re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head).group(1))
        while len(body) < length:
            chunk = s.recv(4096)
            assert chunk, data
            body += chunk
        t0 = time.monotonic()
        s.settimeout(4)
        try:
            rest = s.recv(4096)
        except ConnectionResetError:
            rest = b""
        except socket.timeout:
            raise AssertionError("idle keep-alive connection still open after 4 s (idle_timeout 1s)")
        assert rest == b"", rest
        assert 0.5 < time.monotonic() - t0 < 3.5
    finally:
        s.close()
