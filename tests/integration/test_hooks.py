"""Backend hooks (docs/integration.md): herald asks the application's backend before it admits a
stream (hooks.connect), a subscription (hooks.subscribe) or a publish (hooks.publish).

The backend is a real HTTP server in this process (herald_test.backend) that records every call;
clients are python3-websockets, requests and raw sockets. Covered: connect allowed and denied by
the application's session cookie (no JWT), the user id and extra topics it returns; a subscribe
hook adding `info` and refusing a topic; a publish hook rewriting data (WebSocket and HTTP) and
refusing it; a backend that is down (on_error deny and allow), its breaker opening and closing;
a backend that takes 10 s delays nobody but the clients it keeps, and them only up to the timeout.
"""
import asyncio
import json
import threading
import time

import pytest
import requests
import websockets

from herald_test import unique, wait_until
from herald_test.backend import Backend, free_port
from herald_test.http import assert_error
from herald_test.metrics import metric_sum, metrics_text
from herald_test.sse import SSEClient
from herald_test.ws import ws_connect, ws_op, ws_recv_json

API_KEY = "it-hooks-key-" + "k" * 20
SESSIONS = {"session=alice-secret": "alice", "session=bob-secret": "bob"}


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.stop()


def cookie_connect(call):
    """The application's own session check: the Cookie header it already uses."""
    user = SESSIONS.get(call.json["headers"].get("Cookie", ""))
    if not user:
        return 200, {"allow": False, "message": "no session"}
    return 200, {"allow": True, "user": user, "info": {"name": user.title()},
                 "topics": [f"user.{user}"]}


def hooked(backend, **hooks):
    cfg = {"hooks": {}, "auth": {"publish_keys": [API_KEY]}}
    for name, spec in hooks.items():
        # 10 s: the backend is a thread of this process, which a loaded machine (CI compiles
        # beside the tests) has stalled past 2 s; the tests of the timeout set their own.
        cfg["hooks"][name] = {"url": backend.url(f"/{name}"), "timeout": "10s", **spec}
    return cfg


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


def ws_status(server, query, headers):
    """The status of a WebSocket upgrade: 101, or the HTTP error herald answered."""
    async def go():
        try:
            ws = await ws_connect(server, query, extra_headers=headers)
        except websockets.exceptions.InvalidStatusCode as e:
            return e.status_code
        await ws.close()
        return 101
    return run(go())


# ------------------------------------------------------------------------------------ connect

def test_connect_by_session_cookie_allowed_and_denied(herald_factory, backend):
    backend.on("/connect", cookie_connect)
    srv = herald_factory(hooked(backend, connect={"headers_to_forward": ["Cookie"]}))
    topic = unique("room")

    assert ws_status(srv, f"topic={topic}", {"Cookie": "session=alice-secret"}) == 101
    call = backend.calls_to("/connect")[-1]
    assert call.json["hook"] == "connect"
    assert call.json["client"]["address"] == "127.0.0.1"
    assert call.json["client"]["transport"] == "ws"
    assert call.json["headers"] == {"Cookie": "session=alice-secret"}
    assert call.json["topics"] == [topic]
    assert call.headers.get("cookie") == "session=alice-secret", "forwarded as a header too"

    assert ws_status(srv, f"topic={topic}", {"Cookie": "session=mallory"}) == 403
    assert ws_status(srv, f"topic={topic}", {}) == 403
    r = requests.get(srv.url(f"/sse?topic={topic}"), headers={"Cookie": "session=nope"},
                     timeout=10, stream=True)
    assert "no session" in assert_error(r, 403, "forbidden")
    assert backend.calls_to("/connect")[-1].json["client"]["transport"] == "sse"
    assert metric_sum(metrics_text(srv), "herald_hook_calls_total", hook="connect",
                      result="denied") == 3


def test_connect_hook_user_and_topics_apply(herald_factory, backend):
    backend.on("/connect", cookie_connect)
    srv = herald_factory(hooked(backend, connect={"headers_to_forward": ["Cookie"]}))
    topic = unique("room")

    async def go():
        ws = await ws_connect(srv, f"topic={topic}",
                              extra_headers={"Cookie": "session=bob-secret"})
        # The extra topic the backend granted is subscribed: a message to it arrives.
        def pub():
            wait_until(lambda: requests.post(srv.url("/publish/user.bob"), data="for bob",
                                             timeout=5).json()["subscribers"] >= 1, 10)
        await asyncio.get_running_loop().run_in_executor(None, pub)
        msg = await ws_recv_json(ws)
        assert (msg["topic"], msg["data"]) == ("user.bob", "for bob")
        # The user id is the backend's: revoking "bob" closes this connection.
        r = await asyncio.get_running_loop().run_in_executor(None, lambda: requests.post(
            srv.url("/admin/disconnect"), json={"user": "bob"},
            headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10))
        assert r.status_code == 200 and r.json()["disconnected"] == 1, r.text
        with pytest.raises(websockets.exceptions.ConnectionClosed) as e:
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert e.value.rcvd.code == 4002
    run(go())


def test_connect_hook_denial_on_long_poll(herald_factory, backend):
    backend.on("/connect", cookie_connect)
    srv = herald_factory({**hooked(backend, connect={"headers_to_forward": ["Cookie"]}),
                          "poll": {"timeout": "1s"}})
    r = requests.get(srv.url(f"/poll?topic={unique('p')}"), timeout=10)
    assert_error(r, 403, "forbidden")
    r = requests.get(srv.url(f"/poll?topic={unique('p')}"),
                     headers={"Cookie": "session=alice-secret"}, timeout=40)
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------------------------- subscribe

def test_subscribe_hook_adds_info_and_refuses(herald_factory, backend):
    def subscribe(call):
        t = call.json["topic"]
        if t.startswith("secret"):
            return 200, {"allow": False, "message": "members only"}
        return 200, {"allow": True, "info": {"role": "moderator", "topic": t}}
    backend.on("/subscribe", subscribe)
    srv = herald_factory(hooked(backend, subscribe={}))
    room = unique("room")

    async def go():
        ws = await ws_connect(srv)
        ok = await ws_op(ws, {"op": "subscribe", "topic": room, "id": 1})
        assert ok["type"] == "ok", ok
        assert ok["info"] == {"role": "moderator", "topic": room}
        err = await ws_op(ws, {"op": "subscribe", "topic": unique("secret"), "id": 2})
        assert (err["type"], err["code"], err["message"]) == ("error", "forbidden", "members only")
        await ws.close()
    run(go())
    call = backend.calls_to("/subscribe")[0]
    assert call.json["topic"] == room and call.json["client"]["transport"] == "ws"

    # URL topics of a stream are asked about too, before the stream starts.
    r = requests.get(srv.url(f"/sse?topic={unique('secret')}"), timeout=10, stream=True)
    assert_error(r, 403, "forbidden")
    with SSEClient(srv.url(f"/sse?topic={room}"), max_time=10) as c:
        c.wait_headers()
    assert backend.calls_to("/subscribe")[-1].json["client"]["transport"] == "sse"


# ------------------------------------------------------------------------------------ publish

def test_publish_hook_rewrites_and_refuses(herald_factory, backend):
    def publish(call):
        data = call.json.get("data")
        if data == "spam":
            return 200, {"allow": False, "message": "no spam"}
        return 200, {"allow": True, "data": {"text": str(data).upper(), "checked": True}}
    backend.on("/publish", publish)
    srv = herald_factory({**hooked(backend, publish={}), "ws": {"client_publish": ["chat.*"]}})
    topic = "chat." + unique("x")

    async def go():
        sub = await ws_connect(srv, f"topic={topic}")
        pub = await ws_connect(srv)
        ok = await ws_op(pub, {"op": "publish", "topic": topic, "data": "hello", "id": 1})
        assert ok["type"] == "ok", ok
        msg = await ws_recv_json(sub)
        assert msg["data"] == {"text": "HELLO", "checked": True}
        err = await ws_op(pub, {"op": "publish", "topic": topic, "data": "spam", "id": 2})
        assert (err["code"], err["message"]) == ("forbidden", "no spam")
        # HTTP publishes go through the same hook.
        r = await asyncio.get_running_loop().run_in_executor(
            None, lambda: requests.post(srv.url(f"/publish/{topic}"), data="from http", timeout=10))
        assert r.status_code == 200, r.text
        msg = await ws_recv_json(sub)
        assert msg["data"] == {"text": "FROM HTTP", "checked": True}
        r = await asyncio.get_running_loop().run_in_executor(
            None, lambda: requests.post(srv.url(f"/publish/{topic}"), data="spam", timeout=10))
        assert_error(r, 403, "forbidden")
        # A batch is published whole or not at all.
        r = await asyncio.get_running_loop().run_in_executor(None, lambda: requests.post(
            srv.url("/publish"), json={"messages": [{"topic": topic, "data": "a"},
                                                    {"topic": topic, "data": "spam"}]},
            timeout=10))
        assert_error(r, 403, "forbidden")
        await sub.close()
        await pub.close()
    run(go())
    calls = backend.calls_to("/publish")
    assert calls[0].json["topic"] == topic and calls[0].json["data"] == "hello"
    assert calls[0].json["client"]["transport"] == "ws"


# ------------------------------------------------------------------------- backend down, breaker

def test_backend_down_on_error_deny_then_allow(herald_factory):
    dead = f"http://127.0.0.1:{free_port()}/connect"
    deny = herald_factory({"hooks": {"connect": {"url": dead, "on_error": "deny"}}})
    r = requests.get(deny.url(f"/sse?topic={unique('t')}"), timeout=10, stream=True)
    assert_error(r, 503, "unavailable")
    assert ws_status(deny, "", {}) == 503
    allow = herald_factory({"hooks": {"connect": {"url": dead, "on_error": "allow"}}})
    assert ws_status(allow, "", {}) == 101
    assert metric_sum(metrics_text(allow), "herald_hook_calls_total", hook="connect",
                      result="error") == 1


def test_breaker_opens_and_closes(herald_factory):
    port = free_port()
    # A cooldown of 3 s: the checks that it is still open (a metrics scrape, a backend started,
    # a refused upgrade) took more than 1 s on a loaded machine.
    cooldown = 3.0
    srv = herald_factory({"hooks": {
        "connect": {"url": f"http://127.0.0.1:{port}/connect", "on_error": "deny"},
        "breaker_failures": 3, "breaker_cooldown": f"{int(cooldown)}s"}}, workers=1)
    for _ in range(3):
        assert ws_status(srv, "", {}) == 503
    opened = time.monotonic()
    assert metric_sum(metrics_text(srv), "herald_hook_breakers_open") == 1

    # The backend comes back: while the breaker is open it is not called; after the cooldown
    # one trial call closes the breaker.
    backend = Backend(port)
    try:
        backend.on("/connect", lambda call: (200, {"allow": True}))
        assert ws_status(srv, "", {}) == 503
        assert backend.calls_to("/connect") == [], "an open breaker does not call the backend"
        assert time.monotonic() - opened < cooldown, "too slow to see the breaker open: retry"
        time.sleep(max(0.0, opened + cooldown + 0.2 - time.monotonic()))
        assert ws_status(srv, "", {}) == 101
        assert len(backend.calls_to("/connect")) == 1
        assert metric_sum(metrics_text(srv), "herald_hook_breakers_open") == 0
        assert ws_status(srv, "", {}) == 101
    finally:
        backend.stop()


def test_slow_backend_delays_only_its_own_clients_up_to_the_timeout(herald_factory, backend):
    def connect(call):
        if call.json["headers"].get("Cookie") == "slow=1":
            time.sleep(10)
        return 200, {"allow": True}
    backend.on("/connect", connect)
    srv = herald_factory({"hooks": {"connect": {"url": backend.url("/connect"), "timeout": "1s",
                                                "headers_to_forward": ["Cookie"]}}})
    slow_results = []

    def slow_client():
        t0 = time.monotonic()
        status = ws_status(srv, "", {"Cookie": "slow=1"})
        slow_results.append((status, time.monotonic() - t0))
    threads = [threading.Thread(target=slow_client, daemon=True) for _ in range(10)]
    for t in threads:
        t.start()
    wait_until(lambda: len(backend.calls_to("/connect")) >= 10, 10, what="slow calls")
    # Ten clients wait for the stalled backend; others are admitted at once.
    for _ in range(5):
        t0 = time.monotonic()
        assert ws_status(srv, "", {}) == 101
        assert time.monotonic() - t0 < 1.0
    for t in threads:
        t.join(15)
    assert len(slow_results) == 10
    for status, took in slow_results:
        assert status == 503, slow_results            # on_error: deny
        # Without the hook's 1 s timeout the backend's 10 s sleep would hold it; 6 s leaves a
        # loaded machine its scheduling.
        assert took < 6.0, f"a stalled backend held a client {took:.1f}s (timeout 1s)"


def test_refresh_keeps_the_connect_hooks_user_and_info(herald_factory, backend):
    """A WebSocket `refresh` swaps the token, not the identity the connect hook gave. Old code:
    the refresh compared the new token's sub with the hook's user and refused it
    ("the token is for another user"); with an unchanged user, it dropped the hook's info."""
    import jwt
    secret = "hook-refresh-secret-" + "s" * 30
    backend.on("/connect", cookie_connect)
    cfg = hooked(backend, connect={"headers_to_forward": ["Cookie"]})
    cfg["auth"]["jwt"] = {"keys": [{"alg": "HS256", "secret": secret}]}
    cfg["presence"] = {"patterns": ["room:*"]}
    srv = herald_factory(cfg)
    topic = "room:" + unique("r")

    def tok():
        return jwt.encode({"sub": "t1", "exp": int(time.time()) + 600, "topics": ["*"]}, secret,
                          algorithm="HS256")

    def presence():
        r = requests.get(srv.url(f"/presence/{topic}"),
                         headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
        assert r.status_code == 200, r.text
        return [(c["sub"], c["info"]) for c in r.json()["clients"]]

    async def go():
        loop = asyncio.get_running_loop()
        ws = await ws_connect(srv, f"token={tok()}",
                              extra_headers={"Cookie": "session=alice-secret"})
        r = await ws_op(ws, {"op": "refresh", "id": 1, "token": tok()})
        assert r["type"] == "ok", r
        assert (await ws_op(ws, {"op": "subscribe", "id": 2, "topic": topic}))["type"] == "ok"
        assert await loop.run_in_executor(None, presence) == [("alice", {"name": "Alice"})]
        # A token for another sub than the one connected with is still refused.
        other = jwt.encode({"sub": "t2", "exp": int(time.time()) + 600}, secret, algorithm="HS256")
        r = await ws_op(ws, {"op": "refresh", "id": 3, "token": other})
        assert r["type"] == "error" and r["code"] == "unauthorized", r
        await ws.close()
    run(go())
