"""Core delivery over the real binary: WebSocket (python3-websockets) and SSE (curl) subscribers,
publishes with curl and requests; text, multi-line, JSON, binary, multi-topic, subscribe ops."""
import asyncio
import base64
import json
import time

import requests

from herald_test import EPOCH_RE, unique
from herald_test.http import curl, curl_publish, publish
from herald_test.sse import SSEClient
from herald_test.ws import ws_connect, ws_op, ws_op_collect, ws_recv_json


def test_ws_and_sse_subscribers_get_a_curl_publish_byte_exact(server):
    topic = unique("news")

    async def run():
        ws = await ws_connect(server, f"topic={topic}")
        assert ws.subprotocol == "herald.v1"
        with SSEClient(server.url(f"/sse?topic={topic}")) as sse:
            sse.wait_ready()
            r = curl(server.url(f"/publish/{topic}"), "-d", "hello")
            assert r.status == 200, r.body
            assert "application/json" in r.headers.get("content-type", "")
            ans = r.json()
            assert ans["topic"] == topic
            assert ans["offset"] == 1 and isinstance(ans["offset"], int)
            assert ans["subscribers"] == 2, ans

            msg = await ws_recv_json(ws)
            assert set(msg) == {"type", "topic", "epoch", "offset", "data"}, msg
            assert msg["type"] == "message" and msg["topic"] == topic
            assert msg["offset"] == 1 and msg["data"] == "hello"
            assert EPOCH_RE.match(msg["epoch"]), msg

            ev = sse.next_event()
            assert ev.raw == f"id: {msg['epoch']}:1\ndata: hello\n\n".encode(), ev.raw
        await ws.close()

    asyncio.run(run())


def test_sse_headers_and_retry_come_at_once(server):
    topic = unique("hdr")
    t0 = time.monotonic()
    with SSEClient(server.url(f"/sse?topic={topic}")) as sse:
        status, h = sse.wait_headers(5)
        assert status == 200
        assert h.get("content-type", "").split(";")[0].strip() == "text/event-stream", h
        assert h.get("cache-control") == "no-cache, no-transform", h
        assert h.get("x-accel-buffering") == "no", h
        assert "content-length" not in h, h
        first = sse.next_block(3)          # nothing was published: the retry block must come alone
        assert first.get("retry") == "2000", first.raw   # sse.retry: 2s in the test defaults
        assert time.monotonic() - t0 < 3.0


def test_multiline_payload_becomes_one_data_line_each(server):
    topic = unique("lines")

    async def run():
        ws = await ws_connect(server, f"topic={topic}")
        with SSEClient(server.url(f"/sse?topic={topic}")) as sse:
            sse.wait_ready()
            body = "a\nb\r\nc\rd"
            assert curl_publish(server, topic, body).status == 200
            ev = sse.next_event()
            assert ev.all("data") == ["a", "b", "c", "d"], ev.raw
            assert ev.event is None
            assert ev.data == "a\nb\nc\nd"   # what a browser's EventSource hands the app
            msg = await ws_recv_json(ws)
            assert msg["data"] == body        # WebSocket carries the exact text
        await ws.close()

    asyncio.run(run())


def test_payload_cannot_inject_sse_fields_or_events(server):
    topic = unique("inject")
    evil = ["x\n\nevent: evil\ndata: x",
            "y\r\n\r\nid: 999\r\nevent: evil\r\n\r\n",
            "z\r\revent: evil\rretry: 1\r"]
    with SSEClient(server.url(f"/sse?topic={topic}")) as sse:
        sse.wait_ready()
        for body in evil:
            assert curl_publish(server, topic, body).status == 200
        assert curl_publish(server, topic, "sentinel").status == 200
        events = [sse.next_event() for _ in range(4)]
        for i, ev in enumerate(events[:3], start=1):
            # one event per publish; every line of it is id: or data:
            assert [k for k, _ in ev.fields if k != "data"] == ["id"], ev.raw
            assert ev.id.endswith(f":{i}"), ev.raw
            assert ev.event is None
        assert events[3].data == "sentinel" and events[3].id.endswith(":4"), events[3].raw
        assert events[0].all("data") == ["x", "", "event: evil", "data: x"], events[0].raw
        # nothing else arrived in between: no extra blocks of any kind
        blocks = sse.blocks
        assert not any(b.get("event") == "evil" for b in blocks)
        assert not any(b.get("retry") == "1" for b in blocks)


def test_nul_becomes_replacement_character_in_sse(server):
    topic = unique("nul")
    with SSEClient(server.url(f"/sse?topic={topic}")) as sse:
        sse.wait_ready()
        assert curl_publish(server, topic, b"a\x00b").status == 200
        ev = sse.next_event()
        assert ev.all("data") == ["a\ufffdb"], ev.raw


def test_sse_event_name_from_query(server):
    topic = unique("tick")

    async def run():
        ws = await ws_connect(server, f"topic={topic}")
        with SSEClient(server.url(f"/sse?topic={topic}")) as sse:
            sse.wait_ready()
            r = curl(server.url(f"/publish/{topic}?event=tick"), "-d", "t1")
            assert r.status == 200, r.body
            ev = sse.next_event()
            assert ev.event == "tick" and ev.data == "t1", ev.raw
            assert ev.lines[0].startswith("id: "), ev.raw
            msg = await ws_recv_json(ws)
            assert msg["event"] == "tick" and msg["data"] == "t1", msg
        await ws.close()

    asyncio.run(run())


def test_json_publish_arrives_as_json_value(server):
    topic = unique("json")

    async def run():
        ws = await ws_connect(server, f"topic={topic}")
        with SSEClient(server.url(f"/sse?topic={topic}")) as sse:
            sse.wait_ready()
            text = '{"price": 1, "tags": ["a", "b"], "nested": {"ok": true}}'
            r = curl(server.url(f"/publish/{topic}"), "-H", "Content-Type: application/json",
                     "-d", text)
            assert r.status == 200, r.body
            msg = await ws_recv_json(ws)
            assert msg["data"] == {"price": 1, "tags": ["a", "b"], "nested": {"ok": True}}, msg
            ev = sse.next_event()
            assert json.loads(ev.data) == msg["data"], ev.raw
        await ws.close()

    asyncio.run(run())


def test_post_publish_json_topics_and_batch(server):
    a, b, c = unique("ja"), unique("jb"), unique("jc")

    async def run():
        ws = await ws_connect(server, f"topic={a}&topic={b}&topic={c}")
        r = requests.post(server.url("/publish"), json={"topics": [a, b], "data": "hello"}, timeout=10)
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert [x["topic"] for x in res] == [a, b]
        assert all(x["offset"] == 1 and x["subscribers"] == 1 for x in res), res

        got = [await ws_recv_json(ws) for _ in range(2)]
        assert sorted((m["topic"], m["data"]) for m in got) == sorted([(a, "hello"), (b, "hello")])

        r = requests.post(server.url("/publish"), json={"messages": [
            {"topic": a, "data": 1},
            {"topics": [b, c], "data": "x", "event": "ev"},
        ]}, timeout=10)
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert [(x["topic"], x["offset"]) for x in res] == [(a, 2), (b, 2), (c, 1)], res

        got = [await ws_recv_json(ws) for _ in range(3)]
        by_topic = {m["topic"]: m for m in got}
        assert by_topic[a]["data"] == 1 and by_topic[a]["offset"] == 2
        assert by_topic[b]["data"] == "x" and by_topic[b]["event"] == "ev"
        assert by_topic[c]["data"] == "x" and by_topic[c]["offset"] == 1

        r = requests.post(server.url("/publish"), json={"topic": a, "data": {"p": [1, 2]}}, timeout=10)
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert len(res) == 1 and (res[0]["topic"], res[0]["offset"], res[0]["subscribers"]) == (a, 3, 1), res
        m = await ws_recv_json(ws)
        assert m["data"] == {"p": [1, 2]} and m["offset"] == 3
        await ws.close()

    asyncio.run(run())


def test_one_ws_connection_many_topics_subscribe_unsubscribe(server):
    t1, t2, t3 = unique("m1"), unique("m2"), unique("m3")

    async def run():
        ws = await ws_connect(server, f"topic={t1}&topic={t2}")
        publish(server, t1, "one")
        publish(server, t2, "two")
        got = [await ws_recv_json(ws) for _ in range(2)]
        assert sorted((m["topic"], m["data"]) for m in got) == [(t1, "one"), (t2, "two")]

        ok = await ws_op(ws, {"op": "subscribe", "topic": t3, "id": 7})
        assert ok["type"] == "ok" and ok["id"] == 7 and ok.get("op") == "subscribe", ok
        assert ok["topic"] == t3 and ok["offset"] == 0 and EPOCH_RE.match(ok["epoch"]), ok
        assert "recovered" not in ok, ok    # only when `since` was given
        publish(server, t3, "three")
        m = await ws_recv_json(ws)
        assert (m["topic"], m["data"], m["offset"]) == (t3, "three", 1)

        ok = await ws_op(ws, {"op": "unsubscribe", "topic": t1, "id": "u-1"})
        assert ok["type"] == "ok" and ok["id"] == "u-1", ok
        publish(server, t1, "after-unsubscribe")
        publish(server, t2, "still-here")
        m = await ws_recv_json(ws)
        assert (m["topic"], m["data"]) == (t2, "still-here"), m
        await asyncio.sleep(0.3)
        reply, before = await ws_op_collect(ws, {"op": "ping", "id": 99})
        assert reply["type"] == "ok", reply
        assert before == [], f"frames after unsubscribe: {before}"

        # unsubscribing a topic one does not hold is an error that keeps the connection
        err = await ws_op(ws, {"op": "unsubscribe", "topic": t1, "id": 100})
        assert err["type"] == "error" and err["code"] == "not_subscribed", err
        await ws.close()

    asyncio.run(run())


def test_ws_topics_come_and_go_in_any_order(server):
    """A connection's first topic lives inside the session (issue 15): unsubscribing it while
    others stay, subscribing again (alone and behind others) and unsubscribing everything must
    each leave exactly the topics held, every one delivered once and none left over."""
    t1, t2, t3 = unique("o1"), unique("o2"), unique("o3")

    async def expect(ws, want):
        got = [await ws_recv_json(ws) for _ in range(len(want))]
        assert sorted((m["topic"], m["data"]) for m in got) == sorted(want), got
        reply, before = await ws_op_collect(ws, {"op": "ping", "id": "p"})
        assert reply["type"] == "ok" and before == [], before

    async def run():
        ws = await ws_connect(server, f"topic={t1}")
        for t in (t2, t3):
            assert (await ws_op(ws, {"op": "subscribe", "topic": t, "id": 1}))["type"] == "ok"
        assert (await ws_op(ws, {"op": "unsubscribe", "topic": t1, "id": 3}))["type"] == "ok"
        for t in (t1, t2, t3):
            publish(server, t, "a-" + t)
        await expect(ws, [(t2, "a-" + t2), (t3, "a-" + t3)])

        ok = await ws_op(ws, {"op": "subscribe", "topic": t1, "id": 4})   # behind t2 and t3 now
        assert ok["type"] == "ok" and ok["offset"] == 1, ok
        for t in (t2, t3):
            assert (await ws_op(ws, {"op": "unsubscribe", "topic": t, "id": 2}))["type"] == "ok"
        for t in (t1, t2, t3):
            publish(server, t, "b-" + t)
        await expect(ws, [(t1, "b-" + t1)])

        assert (await ws_op(ws, {"op": "unsubscribe", "topic": t1, "id": 3}))["type"] == "ok"
        publish(server, t1, "c-" + t1)
        await expect(ws, [])
        ok = await ws_op(ws, {"op": "subscribe", "topic": t3, "id": 5})   # alone again
        assert ok["type"] == "ok" and ok["offset"] == 2, ok
        publish(server, t3, "d-" + t3)
        m = await ws_recv_json(ws)
        assert (m["topic"], m["data"], m["offset"]) == (t3, "d-" + t3, 3), m
        await ws.close()

    asyncio.run(run())


def test_binary_publish_ws_binary_frame_and_sse_base64(server, tmp_path):
    topic = unique("bin")
    payload = bytes(range(256))
    f = tmp_path / "bytes.bin"
    f.write_bytes(payload)

    async def run():
        ws = await ws_connect(server, f"topic={topic}")
        with SSEClient(server.url(f"/sse?topic={topic}")) as sse:
            sse.wait_ready()
            r = curl(server.url(f"/publish/{topic}"), "--data-binary", f"@{f}",
                     "-H", "Content-Type: application/octet-stream")
            assert r.status == 200, r.body
            assert r.json()["offset"] == 1
            head = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(head, str), head
            head = json.loads(head)
            assert head["type"] == "message" and head["binary"] is True, head
            assert head["topic"] == topic and head["offset"] == 1 and "data" not in head, head
            body = await asyncio.wait_for(ws.recv(), 10)
            assert isinstance(body, bytes) and body == payload
            ev = sse.next_event()
            assert ev.event == "binary", ev.raw
            assert ev.id == f"{head['epoch']}:1"
            assert base64.b64decode(ev.data, validate=True) == payload
            assert ev.all("data") == [base64.b64encode(payload).decode()]

            # binary via JSON data_base64 too
            r = requests.post(server.url("/publish"),
                              json={"topic": topic, "data_base64": base64.b64encode(b"\x00\x01\x02").decode()},
                              timeout=10)
            assert r.status_code == 200, r.text
            head = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert head["binary"] is True and head["offset"] == 2
            assert await asyncio.wait_for(ws.recv(), 10) == b"\x00\x01\x02"
        await ws.close()

    asyncio.run(run())


def test_percent_encoded_topic_in_path(server):
    topic = unique("chat") + ":room-1"

    async def run():
        ws = await ws_connect(server, f"topic={topic}")
        r = requests.post(server.url(f"/publish/{topic.replace(':', '%3A')}"), data="hi", timeout=10)
        assert r.status_code == 200, r.text
        assert r.json()["topic"] == topic
        m = await ws_recv_json(ws)
        assert m["topic"] == topic and m["data"] == "hi"
        await ws.close()

    asyncio.run(run())


def test_sse_heartbeat_comment(herald_factory):
    srv = herald_factory({"sse": {"heartbeat": "500ms"}})
    topic = unique("hb")
    with SSEClient(srv.url(f"/sse?topic={topic}")) as sse:
        sse.wait_ready()
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if b": heartbeat" in sse.body_bytes():
                break
            time.sleep(0.05)
        assert b": heartbeat" in sse.body_bytes(), sse.body_bytes()
        assert sse.events_so_far() == []
