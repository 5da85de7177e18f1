"""Per-namespace quotas: max subscribers per topic and max active topics per namespace, over
WebSocket, SSE and long-poll, with room freed when subscribers leave."""
import asyncio
import json

import pytest
import requests

from herald_test import unique, wait_until
from herald_test.http import publish
from herald_test.metrics import METRICS, metric_sum
from herald_test.sse import SSEClient
from herald_test.ws import ws_connect, ws_recv_json


@pytest.fixture(scope="module")
def herald_config():
    return {"quotas": [{"pattern": "room:*", "max_subscribers_per_topic": 3},
                       {"pattern": "ns:*", "max_topics": 2}]}


async def subscribe(ws, topic, id_):
    await ws.send(json.dumps({"op": "subscribe", "id": id_, "topic": topic}))
    return await ws_recv_json(ws)


def test_max_subscribers_per_topic_over_websocket(server):
    topic = "room:" + unique("r")

    async def run():
        clients = [await ws_connect(server) for _ in range(4)]
        answers = [await subscribe(c, topic, i) for i, c in enumerate(clients[:3])]
        assert all(a["type"] == "ok" for a in answers), answers
        refused = await subscribe(clients[3], topic, 9)
        assert refused["type"] == "error" and refused["code"] == "quota_exceeded" and refused["id"] == 9
        assert refused["topic"] == topic and "3" in refused["message"]
        # the refused client stays connected and usable
        await clients[3].send(json.dumps({"op": "ping", "id": 10}))
        assert (await ws_recv_json(clients[3]))["type"] == "ok"
        # the three subscribers get messages; the refused one does not
        r = publish(server, topic, "hello")
        assert r["subscribers"] == 3
        for c in clients[:3]:
            m = await ws_recv_json(c)
            assert m["type"] == "message" and m["data"] == "hello"
        await clients[3].send(json.dumps({"op": "ping", "id": 11}))
        assert (await ws_recv_json(clients[3]))["id"] == 11, "the refused client got a message"
        # room is freed when a subscriber leaves
        await clients[0].close()
        async def retry():
            for i in range(50):
                a = await subscribe(clients[3], topic, 100 + i)
                if a["type"] == "ok":
                    return a
                await asyncio.sleep(0.05)
            raise AssertionError("the slot was never freed")
        assert (await retry())["type"] == "ok"
        for c in clients[1:]:
            await c.close()

    asyncio.run(run())


def test_max_topics_per_namespace(server):
    a, b, c = ("ns:" + unique(x) for x in "abc")

    async def run():
        ws = await ws_connect(server)
        assert (await subscribe(ws, a, 1))["type"] == "ok"
        assert (await subscribe(ws, b, 2))["type"] == "ok"
        refused = await subscribe(ws, c, 3)
        assert refused["code"] == "quota_exceeded" and "ns:*" in refused["message"]
        # other namespaces are not limited
        assert (await subscribe(ws, unique("free"), 4))["type"] == "ok"
        await ws.send(json.dumps({"op": "unsubscribe", "id": 5, "topic": a}))
        assert (await ws_recv_json(ws))["type"] == "ok"
        for i in range(50):
            ans = await subscribe(ws, c, 10 + i)
            if ans["type"] == "ok":
                break
            await asyncio.sleep(0.05)
        assert ans["type"] == "ok", ans
        await ws.close()

    asyncio.run(run())


def test_sse_and_poll_over_quota(server):
    topic = "room:" + unique("s")

    async def hold():
        return [await ws_connect(server, f"topic={topic}") for _ in range(3)]

    loop = asyncio.new_event_loop()
    holders = loop.run_until_complete(hold())
    try:
        wait_until(lambda: publish(server, topic, "probe")["subscribers"] == 3, 5, what="3 subscribers")
        before = metric_sum(requests.get(server.url("/metrics"), timeout=5).text,
                            METRICS["rejected"], reason="quota_exceeded") or 0
        sse = SSEClient(server.url(f"/sse?topic={topic}"), max_time=20)
        try:
            sse.wait_ready(5)
            ev = sse.next_event(5)
            assert ev.event == "error"
            body = json.loads(ev.data)
            assert body["code"] == "quota_exceeded" and body["topic"] == topic
            assert sse.wait_eof(5), "the refused stream stayed open"
        finally:
            sse.proc.kill()
            sse.proc.wait()
        r = requests.get(server.url("/poll"), params={"topic": topic}, timeout=10)
        assert r.status_code == 429 and r.json()["error"]["code"] == "quota_exceeded", r.text
        after = metric_sum(requests.get(server.url("/metrics"), timeout=5).text,
                           METRICS["rejected"], reason="quota_exceeded")
        assert after >= before + 2
    finally:
        async def close():
            for h in holders:
                await h.close()
        loop.run_until_complete(close())
        loop.close()
