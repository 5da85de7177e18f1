"""Publishes kept for history while nobody is subscribed: the owner builds their WebSocket and SSE
forms only when a resume first replays them (bench/optimisations.md, publish path session 7).
A replay must carry exactly what a live delivery would: every payload kind, an event name,
escaping that crosses a frame length class, compressed and plain WebSocket clients, SSE, and a
second replay of the same messages. Several topics, so that both workers own some."""
import asyncio
import base64
import json

import pytest
import requests

from herald_test import unique
from herald_test.sse import SSEClient
from herald_test.ws import ws_connect, ws_op_collect

# (query, content type, body): what each topic gets, offsets 1..5, all before any subscriber
PUBLISHES = [
    ("", "text/plain", "plain".encode()),
    ("?event=tick", "text/plain; charset=utf-8", 'he said "hi"\n\tüñ \\ end'.encode()),
    ("", "application/json", b'{"a":[1,2,{"b":"c"}],"s":"x"}'),
    ("", "application/octet-stream", bytes(range(256)) * 3),
    # 40,000 quotes escape to 80,000 bytes: the frame header outgrows its 16-bit length class
    ("", "text/plain", b'"' * 40_000),
]


@pytest.fixture(scope="module")
def herald_config():
    return {"history": {"size": 100}}


def publish_all(server, topic):
    epoch = None
    with requests.Session() as s:
        for i, (query, ctype, body) in enumerate(PUBLISHES, start=1):
            r = s.post(server.url(f"/publish/{topic}{query}"), data=body,
                       headers={"Content-Type": ctype}, timeout=10)
            assert r.status_code == 200, r.text
            a = r.json()
            assert (a["offset"], a["subscribers"]) == (i, 0), a
            assert epoch in (None, a["epoch"]), a
            epoch = a["epoch"]
    return epoch


def check_ws_replay(frames, topic, epoch):
    """frames: what came after the subscribe reply, JSON objects and bytes in arrival order."""
    it = iter(frames)
    for i, (query, ctype, body) in enumerate(PUBLISHES, start=1):
        m = next(it)
        assert isinstance(m, dict) and m["type"] == "message", m
        assert (m["topic"], m["epoch"], m["offset"]) == (topic, epoch, i), m
        assert m.get("event") == ("tick" if query else None), m
        if ctype == "application/octet-stream":
            assert m.get("binary") is True and "data" not in m, m
            assert next(it) == body
        elif ctype == "application/json":
            assert m["data"] == json.loads(body), m
        else:
            assert m["data"] == body.decode(), m
    assert list(it) == []


async def ws_replay(server, topic, epoch, compression):
    ws = await ws_connect(server, compression=compression)
    try:
        since = {"epoch": epoch, "offset": 0}
        ok, before = await ws_op_collect(
            ws, {"op": "subscribe", "topic": topic, "id": "s", "since": since})
        assert ok["type"] == "ok" and ok["recovered"] is True and not before, (ok, before)
        # a ping round trip after the reply proves the replay is over
        reply, frames = await ws_op_collect(ws, {"op": "ping", "id": "p"})
        assert reply["type"] == "ok", reply
        check_ws_replay(frames, topic, epoch)
    finally:
        await ws.close()


def check_sse_replay(server, topic, epoch):
    with SSEClient(server.url(f"/sse?topic={topic}"),
                   headers={"Last-Event-ID": f"{epoch}:0"}) as sse:
        sse.wait_ready()
        for i, (query, ctype, body) in enumerate(PUBLISHES, start=1):
            ev = sse.next_event()
            assert ev.id == f"{epoch}:{i}", ev.raw[:200]
            if ctype == "application/octet-stream":
                assert ev.event == "binary" and base64.b64decode(ev.data) == body, ev.raw[:200]
            else:
                assert ev.event == ("tick" if query else None), ev.raw[:200]
                assert ev.data == body.decode(), ev.raw[:200]


def test_messages_kept_without_subscribers_replay_exactly(server):
    topics = [unique(f"lazy{i}") for i in range(4)]
    epochs = {t: publish_all(server, t) for t in topics}

    async def run():
        for t in topics:
            await ws_replay(server, t, epochs[t], None)
            await ws_replay(server, t, epochs[t], "deflate")  # the compressed form of the same
            check_sse_replay(server, t, epochs[t])
            await ws_replay(server, t, epochs[t], None)  # built once, replayed again
        # GET /history reads the payloads alone, and agrees
        with requests.Session() as s:
            for t in topics:
                h = s.get(server.url(f"/history/{t}"), timeout=10).json()
                assert [m["offset"] for m in h["messages"]] == [1, 2, 3, 4, 5], h
                assert h["messages"][0]["data"] == "plain", h

    asyncio.run(run())
