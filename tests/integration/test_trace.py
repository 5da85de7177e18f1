"""W3C traceparent (issue 17 item 7): a publish's trace id is logged at publish, at the topic's
owner and at each worker's delivery, on every instance (it travels in the Redis entry), so one
message can be followed; a malformed header is ignored, not an error."""
import json
import re

import requests

from herald_test import unique, wait_until
from herald_test.redis import redis_config, two_instances
from herald_test.sse import SSEClient

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


def traceparent(trace=TRACE):
    return f"00-{trace}-00f067aa0ba902b7-01"


def trace_lines(srv, trace=TRACE):
    return [l for l in srv.log_text().splitlines() if f"trace {trace} " in l]


def test_a_trace_id_is_logged_on_both_instances_at_publish_owner_and_delivery(redis1,
                                                                                herald_factory):
    cfg = redis_config([redis1.address])
    cfg["log"] = {"level": "debug"}
    cfg["workers"] = 2
    a, b = two_instances(herald_factory, [redis1.address], config=cfg)
    topic = unique("traced")
    subs = [SSEClient(a.url(f"/sse?topic={topic}")), SSEClient(b.url(f"/sse?topic={topic}"))]
    try:
        for s in subs:
            s.wait_ready()
        r = requests.post(a.url(f"/publish/{topic}"), data="hello",
                          headers={"traceparent": traceparent()}, timeout=5)
        assert r.status_code == 200, r.text
        offset = r.json()["offset"]
        for s in subs:
            assert s.next_event(5).data == "hello"
        # A: the publish, the owner (from the Redis channel), the delivering worker.
        for srv, kinds in ((a, ("publish:", "owner:", "deliver:")), (b, ("owner:", "deliver:"))):
            wait_until(lambda: all(any(k in l for l in trace_lines(srv)) for k in kinds), 5,
                       what=f"trace lines {kinds} on {srv.port}")
            for l in trace_lines(srv):
                assert f"topic '{topic}'" in l and f":{offset}" in l, l
        assert not any("publish:" in l for l in trace_lines(b)), "b did not take the publish"
        assert any("deliver:" in l and "subscribers 1" in l for l in trace_lines(b)), trace_lines(b)

        # Malformed: published as usual, no trace logged anywhere.
        bad = "00-" + TRACE.upper() + "-00f067aa0ba902b7-01"
        r = requests.post(a.url(f"/publish/{topic}"), data="plain",
                          headers={"traceparent": bad}, timeout=5)
        assert r.status_code == 200, r.text
        for s in subs:
            assert s.next_event(5).data == "plain"
        logged = re.findall(r"trace ([0-9a-fA-F]{32}) ", a.log_text() + b.log_text())
        assert set(logged) == {TRACE}, set(logged)  # only the valid one
        assert len([l for l in trace_lines(a) if "publish:" in l]) == 1
    finally:
        for s in subs:
            s.close()


def test_batch_and_websocket_publishes_carry_the_trace_and_sampling_logs_at_info(herald_factory):
    """At log level info, log.trace_sample: 1 logs every traced message at info; the batch's
    header covers each of its messages; the WebSocket publish op's `traceparent` member too."""
    srv = herald_factory({"log": {"level": "info", "trace_sample": 1},
                          "ws": {"client_publish": ["traced-*"]}})
    topic = unique("traced")
    sse = SSEClient(srv.url(f"/sse?topic={topic}"))
    try:
        sse.wait_ready()
        other = "0af7651916cd43dd8448eb211c80319c"
        r = requests.post(srv.url("/publish"), json={"messages": [
            {"topic": topic, "data": "one"}, {"topic": topic, "data": "two"}]},
            headers={"traceparent": traceparent(other)}, timeout=5)
        assert r.status_code == 200, r.text
        assert sse.next_event(5).data == "one"
        assert sse.next_event(5).data == "two"
        wait_until(lambda: len([l for l in trace_lines(srv, other) if "deliver:" in l]) == 2, 5,
                   what="two delivery lines")
        assert len([l for l in trace_lines(srv, other) if "publish:" in l]) == 2
        assert all(" info " in l or '"info"' in l for l in trace_lines(srv, other))

        import asyncio
        import websockets

        third = "11111111111111111111111111111111"

        async def ws_publish():
            async with websockets.connect(f"ws://127.0.0.1:{srv.port}/ws") as ws:
                await ws.send(json.dumps({"op": "publish", "id": "1", "topic": topic, "data": "ws",
                                          "traceparent": traceparent(third)}))
                while True:
                    reply = json.loads(await asyncio.wait_for(ws.recv(), 5))
                    if reply.get("id") == "1":
                        return reply

        reply = asyncio.run(ws_publish())
        assert reply.get("type") == "ok", reply
        assert sse.next_event(5).data == "ws"
        wait_until(lambda: any("deliver:" in l for l in trace_lines(srv, third)), 5,
                   what="the WebSocket publish's delivery line")
        assert any("publish:" in l for l in trace_lines(srv, third))
    finally:
        sse.close()


def test_at_info_without_sampling_nothing_is_logged(herald_factory):
    srv = herald_factory({"log": {"level": "info"}})
    topic = unique("traced")
    r = requests.post(srv.url(f"/publish/{topic}"), data="x",
                      headers={"traceparent": traceparent()}, timeout=5)
    assert r.status_code == 200, r.text
    assert trace_lines(srv) == []
