"""Webhooks (docs/integration.md): events POSTed to the application, signed, batched, retried
until acknowledged (at least once, duplicates only with the same id), from a bounded queue.

The receiver is a real HTTP server in this process (herald_test.backend) that checks every
request's HMAC-SHA256 signature; clients are raw sockets, python3-websockets, curl (SSE) and
requests. Covered: a receiver answering 500 for 5 s gets every event afterwards; each disconnect
reason (client_closed, revoked, token_expired, ping_timeout, slow_consumer, drain) arrives in the
`disconnect` event; a full queue drops, counts and logs instead of growing or blocking.
"""
import asyncio
import json
import time

import pytest
import requests

from herald_test import unique, wait_until
from herald_test.backend import Backend, free_port, signature_ok
from herald_test.metrics import metric_sum, metrics_text
from herald_test.sse import SSEClient
from herald_test.tokens import AUDIENCE, ISSUER, Keys
from herald_test.ws import RawWS, ws_connect

SECRET = "it-webhook-secret-" + "s" * 16
API_KEY = "it-webhook-key-" + "k" * 20


@pytest.fixture
def receiver():
    b = Backend()
    yield b
    b.stop()


def webhook(receiver, events, **extra):
    return {"url": receiver.url("/events"), "events": events, "secret": SECRET,
            "batch_size": 20, "batch_interval": "100ms", "max_backoff": "1s", **extra}


def received(receiver):
    """Every event of every signed batch the receiver acknowledged, in arrival order."""
    out = []
    for call in receiver.calls_to("/events"):
        if getattr(call, "status", 200) == 200:
            out.extend(call.json["events"])
    return out


def ack(call):
    assert signature_ok(SECRET, call), f"bad signature on {call.headers}"
    call.status = 200
    return 200, {}


def test_receiver_failing_for_5s_gets_every_event_later(herald_factory, receiver):
    start = time.monotonic()

    def flaky(call):
        assert signature_ok(SECRET, call), f"bad signature on {call.headers}"
        if time.monotonic() - start < 5.0:
            call.status = 500
            return 500, {"error": "down"}
        call.status = 200
        return 200, {}
    receiver.on("/events", flaky)
    srv = herald_factory({"webhooks": [webhook(receiver, ["disconnect", "publish"])]})
    topic = unique("wh")

    async def clients():
        for _ in range(20):
            ws = await ws_connect(srv, f"topic={topic}")
            await ws.close()
    asyncio.run(asyncio.wait_for(clients(), 60))
    for i in range(30):
        assert requests.post(srv.url(f"/publish/{topic}"), data=f"m{i}", timeout=10).status_code == 200

    def unique_events():
        return {e["id"]: e for e in received(receiver)}
    wait_until(lambda: len(unique_events()) >= 50, 30, what="50 events after the receiver recovers")
    time.sleep(0.5)  # anything more would be a duplicate or an extra event
    events = received(receiver)
    by_id = unique_events()
    assert len(by_id) == 50, f"{len(by_id)} distinct events"
    disconnects = [e for e in by_id.values() if e["type"] == "disconnect"]
    publishes = [e for e in by_id.values() if e["type"] == "publish"]
    assert len(disconnects) == 20 and len(publishes) == 30
    assert all(e["reason"] == "client_closed" and e["topics"] == [topic] for e in disconnects)
    assert sorted(e["offset"] for e in publishes) == list(range(1, 31))
    for e in events:  # a duplicate is the same event, id and all
        assert by_id[e["id"]] == e
    calls = receiver.calls_to("/events")
    assert any(c.status == 500 for c in calls), "the receiver failed at first"
    assert any(int(c.headers["x-herald-attempt"]) > 1 for c in calls), "batches were retried"
    assert all(len(c.json["events"]) <= 20 for c in calls), "batch_size"
    text = metrics_text(srv)
    assert metric_sum(text, "herald_webhook_failures_total") >= 1
    assert metric_sum(text, "herald_webhook_events_delivered_total") == 50
    assert metric_sum(text, "herald_webhook_queue_events") == 0


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return Keys(str(tmp_path_factory.mktemp("jwtkeys")))


def test_disconnect_reasons(herald_factory, receiver, keys):
    receiver.on("/events", ack)
    srv = herald_factory({
        "webhooks": [webhook(receiver, ["disconnect"])],
        "auth": {"jwt": {"keys": [{"alg": "HS256", "secret": keys.hs_secret}],
                         "audience": AUDIENCE, "issuer": ISSUER, "leeway": "0s"},
                 "publish_keys": [API_KEY]},
        "ws": {"ping_interval": "1s", "pong_timeout": "1s"},
        "limits": {"max_queued_bytes": "64KiB"},
    })
    topic = unique("reasons")

    def reason_of(user, timeout=15):
        def find():
            return [e for e in received(receiver) if e["client"]["user"] == user]
        wait_until(lambda: find(), timeout, what=f"the disconnect event of {user}")
        (e,) = find()
        return e["reason"], e["client"]["transport"]

    # The client closes.
    ws = RawWS(srv.port, f"/ws?topic={topic}&token={keys.token('u-closed')}")
    ws.send_frame(0x8, b"\x03\xe8")
    ws.wait_close(5)
    assert reason_of("u-closed") == ("client_closed", "ws")

    # Revoked, on WebSocket and SSE.
    ws = RawWS(srv.port, f"/ws?topic={topic}&token={keys.token('u-revoked')}")
    sse = SSEClient(srv.url(f"/sse?topic={topic}&token={keys.token('u-revoked-sse')}"), max_time=20)
    sse.wait_headers()
    for user in ("u-revoked", "u-revoked-sse"):
        r = requests.post(srv.url("/admin/disconnect"), json={"user": user},
                          headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10)
        assert r.status_code == 200, r.text
    assert reason_of("u-revoked") == ("revoked", "ws")
    assert reason_of("u-revoked-sse") == ("revoked", "sse")
    ws.close()
    sse.close()

    # The token expires.
    ws = RawWS(srv.port, f"/ws?topic={topic}&token={keys.token('u-expired', ttl=2)}")
    assert reason_of("u-expired", 10) == ("token_expired", "ws")
    ws.close()

    # No pong: RawWS never answers pings.
    ws = RawWS(srv.port, f"/ws?topic={topic}&token={keys.token('u-silent')}")
    assert reason_of("u-silent", 10) == ("ping_timeout", "ws")
    ws.close()

    # A client that never reads.
    slow_topic = unique("slow")
    ws = RawWS(srv.port, f"/ws?topic={slow_topic}&token={keys.token('u-slow')}", rcvbuf=4096)
    wait_until(lambda: requests.post(srv.url(f"/publish/{slow_topic}"), data="x",
                                     timeout=5).json()["subscribers"] == 1, 10)
    big = "y" * 16000
    for _ in range(200):
        requests.post(srv.url(f"/publish/{slow_topic}"), data=big, timeout=10)
        if any(e["client"]["user"] == "u-slow" for e in received(receiver)):
            break
    assert reason_of("u-slow") == ("slow_consumer", "ws")
    ws.close()

    # The server shuts down: the drain's disconnects leave before the process does.
    sse = SSEClient(srv.url(f"/sse?topic={topic}&token={keys.token('u-drained')}"), max_time=20)
    sse.wait_headers()
    srv.stop_and_check()
    sse.close()
    assert reason_of("u-drained", 1) == ("drain", "sse")
    for e in received(receiver):
        assert e["type"] == "disconnect" and e["id"] and e["time"] > 0


def test_full_queue_drops_counts_and_logs(herald_factory):
    dead = f"http://127.0.0.1:{free_port()}/events"
    srv = herald_factory({"webhooks": [{"url": dead, "events": ["publish"], "secret": SECRET,
                                         "max_queue": 5, "max_backoff": "1s"}]}, workers=1)
    topic = unique("full")
    for i in range(20):
        assert requests.post(srv.url(f"/publish/{topic}"), data=str(i), timeout=10).status_code == 200
    text = metrics_text(srv)
    assert metric_sum(text, "herald_webhook_events_dropped_total") == 15
    assert metric_sum(text, "herald_webhook_queue_events") == 5
    wait_until(lambda: "queue full" in srv.log_text(), 5, what="the overflow warning")
    # Publishing never waited for the webhook: the publishes above were answered at once, and
    # the server still answers.
    assert requests.get(srv.url("/healthz"), timeout=5).status_code == 200


def test_occupied_and_vacated_once_per_topic_cycle(herald_factory, receiver):
    receiver.on("/events", ack)
    srv = herald_factory({"webhooks": [webhook(receiver, ["occupied", "vacated"],
                                               patterns=["room.*"])]}, workers=2)
    room = "room." + unique("o")
    other = unique("lobby")

    async def cycle():
        # Several subscribers on both workers (and on two transports' worth of connections):
        # the topic is occupied once, vacated once, per cycle.
        clients = [await ws_connect(srv, f"topic={room}") for _ in range(6)]
        clients.append(await ws_connect(srv, f"topic={other}"))
        await asyncio.sleep(0.3)
        for c in clients:
            await c.close()
    for _ in range(2):
        asyncio.run(asyncio.wait_for(cycle(), 30))
        time.sleep(0.5)
    wait_until(lambda: len(received(receiver)) >= 4, 10, what="two occupied/vacated cycles")
    time.sleep(0.3)
    events = [(e["type"], e["topic"]) for e in received(receiver)]
    assert events == [("occupied", room), ("vacated", room)] * 2, events
