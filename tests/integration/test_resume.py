"""Resume after reconnect while a publisher sends 10,000 numbered messages flat out: SSE with the
Last-Event-ID header, SSE with the last_event_id query parameter, WebSocket `subscribe` with
`since`, and a long-poll loop with the cursor. The union received must be exactly 1..10,000, in
order, once each."""
import asyncio
import json
import threading
import time
from urllib.parse import quote

import pytest
import requests

from herald_test import EPOCH_RE, unique
from herald_test.http import finish_publisher, start_publisher
from herald_test.metrics import connections, wait_connections
from herald_test.sse import SSEClient
from herald_test.ws import ws_connect, ws_op_collect

N = 10_000
DISCONNECT_AT = (1500, 6000)     # received counts at which the subscriber drops off
PAUSE = 0.3                      # how long it stays away


@pytest.fixture(scope="module")
def herald_config():
    return {"history": {"size": 20000, "max_recovery": 20000, "ttl": "5m"}}


def check_sequence(received):
    offsets = [o for o, _ in received]
    if offsets != list(range(1, N + 1)):
        dups = len(offsets) - len(set(offsets))
        missing = sorted(set(range(1, N + 1)) - set(offsets))
        disorder = next((i for i in range(1, len(offsets)) if offsets[i] <= offsets[i - 1]), None)
        raise AssertionError(f"got {len(offsets)} messages: {dups} duplicates, {len(missing)} missing "
                             f"(first {missing[:10]}), first out-of-order index {disorder}")
    bad = [(o, d) for o, d in received if d != str(o)]
    assert not bad, f"payload does not match offset: {bad[:5]}"


def sse_resume(server, use_header: bool):
    topic = unique("sse-resume")
    url = server.url(f"/sse?topic={topic}")
    received, last_id, epoch = [], None, None
    sse = SSEClient(url)
    sse.wait_ready()
    pub = start_publisher(server, topic, N)
    publisher_running_at_reconnect = []
    try:
        deadline = time.monotonic() + 120
        for stop_at in DISCONNECT_AT + (N,):
            while len(received) < stop_at:
                assert time.monotonic() < deadline, f"stuck at {len(received)} messages"
                ev = sse.next_event(30)
                assert ev.event is None, f"unexpected event {ev.event!r}: {ev.raw!r}"
                ep, off = ev.id.split(":")
                assert EPOCH_RE.match(ep) and (epoch is None or ep == epoch), ev.id
                epoch = ep
                received.append((int(off), ev.data))
                last_id = ev.id
            if stop_at == N:
                break
            sse.close()
            time.sleep(PAUSE)
            publisher_running_at_reconnect.append(pub.poll() is None)
            if use_header:
                sse = SSEClient(url, headers={"Last-Event-ID": last_id})
            else:
                sse = SSEClient(url + "&last_event_id=" + quote(last_id))
            sse.wait_ready()
        summary = finish_publisher(pub)
    finally:
        sse.close()
        if pub.poll() is None:
            pub.kill()
            pub.wait()
    assert summary["last"] == N
    check_sequence(received)
    # nothing beyond N arrives
    print(f"publisher running at reconnects: {publisher_running_at_reconnect}; {summary}")


def test_sse_resume_with_last_event_id_header(server):
    sse_resume(server, use_header=True)


def test_sse_resume_with_last_event_id_query(server):
    sse_resume(server, use_header=False)


def test_ws_resume_with_since(server):
    topic = unique("ws-resume")

    async def run():
        ws = await ws_connect(server)
        ok, before = await ws_op_collect(ws, {"op": "subscribe", "topic": topic, "id": 1})
        assert ok["type"] == "ok" and ok["offset"] == 0 and not before, (ok, before)
        epoch = ok["epoch"]
        pub = start_publisher(server, topic, N)
        received = []
        try:
            deadline = time.monotonic() + 120
            for stop_at in DISCONNECT_AT + (N,):
                while len(received) < stop_at:
                    assert time.monotonic() < deadline, f"stuck at {len(received)} messages"
                    m = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    assert m["type"] == "message" and m["topic"] == topic and m["epoch"] == epoch, m
                    received.append((m["offset"], m["data"]))
                if stop_at == N:
                    break
                await ws.close()
                await asyncio.sleep(PAUSE)
                ws = await ws_connect(server)
                last = received[-1][0]
                ok, before = await ws_op_collect(ws, {"op": "subscribe", "topic": topic, "id": 2,
                                                      "since": {"epoch": epoch, "offset": last}})
                assert not before, f"frames before the subscribe reply: {before[:3]}"
                assert ok["type"] == "ok" and ok["recovered"] is True, ok
                assert ok["epoch"] == epoch and ok["offset"] >= last, ok
            summary = await asyncio.to_thread(finish_publisher, pub)
        finally:
            await ws.close()
            if pub.poll() is None:
                pub.kill()
                pub.wait()
        assert summary["last"] == N
        check_sequence(received)

    asyncio.run(run())


def test_long_poll_resume_with_cursor(server):
    topic = unique("poll-resume")
    s = requests.Session()
    # the first poll has no cursor: it waits for the next new message; the publisher starts once
    # herald counts that poll as open (its subscription is made in the same loop turn)
    first = {}
    polls = connections(server, "poll")

    def first_poll():
        first["r"] = s.get(server.url(f"/poll?topic={topic}"), timeout=30)

    t = threading.Thread(target=first_poll)
    t.start()
    wait_connections(server, "poll", polls + 1)
    pub = start_publisher(server, topic, N)
    received = []
    paused = set()
    epoch = None
    try:
        t.join(30)
        r = first["r"]
        deadline = time.monotonic() + 120
        for _ in range(N + 1000):
            assert time.monotonic() < deadline, f"stuck at {len(received)} messages"
            assert r.status_code == 200, r.text
            j = r.json()
            epoch = epoch or j["epoch"]
            assert j["topic"] == topic and j["epoch"] == epoch and EPOCH_RE.match(epoch), j
            assert j.get("recovered", True) is True, j
            for m in j["messages"]:
                received.append((m["offset"], m["data"]))
            if j["messages"]:
                assert j["cursor"] == f"{epoch}:{j['messages'][-1]['offset']}", \
                    (j["cursor"], j["messages"][-1]["offset"])
            cursor = j["cursor"]
            for point in DISCONNECT_AT:        # "network gone" for a while
                if len(received) >= point and point not in paused:
                    paused.add(point)
                    s.close()
                    time.sleep(PAUSE)
                    s = requests.Session()
            if len(received) >= N:
                break
            r = s.get(server.url(f"/poll?topic={topic}&since={quote(cursor)}"), timeout=30)
        summary = finish_publisher(pub)
    finally:
        if pub.poll() is None:
            pub.kill()
            pub.wait()
    assert summary["last"] == N
    check_sequence(received)


# ------------------------------------------------------------- ids over several topics

def test_sse_multi_topic_id_and_resume(server):
    a, b = unique("ma"), unique("mb")
    url = server.url(f"/sse?topic={a}&topic={b}")
    with SSEClient(url) as sse:
        sse.wait_ready()
        ra = requests.post(server.url(f"/publish/{a}"), data="a1", timeout=10).json()
        ev = sse.next_event()
        assert ev.data == "a1"
        ids = ev.id.split(",")
        assert len(ids) == 2, ev.id
        (ea, oa), (eb, ob) = (x.split(":") for x in ids)
        assert EPOCH_RE.match(ea) and EPOCH_RE.match(eb)
        assert (int(oa), int(ob)) == (ra["offset"], 0), ev.id
        last_id = ev.id
    # while away: one on each topic
    requests.post(server.url(f"/publish/{b}"), data="b1", timeout=10)
    requests.post(server.url(f"/publish/{a}"), data="a2", timeout=10)
    with SSEClient(url, headers={"Last-Event-ID": last_id}) as sse:
        sse.wait_ready()
        got = {sse.next_event().data, sse.next_event().data}
        assert got == {"b1", "a2"}
        requests.post(server.url(f"/publish/{b}"), data="b2", timeout=10)
        ev = sse.next_event()
        assert ev.data == "b2" and ev.id == f"{ea}:2,{eb}:2", ev.id
        assert not [b for b in sse.blocks if b.event == "reset"]


def test_last_event_id_header_wins_over_query(server):
    topic = unique("wins")
    with requests.Session() as s:
        for i in range(1, 11):
            s.post(server.url(f"/publish/{topic}"), data=str(i), timeout=10)
        epoch = s.get(server.url(f"/history/{topic}"), timeout=10).json()["epoch"]
    url = server.url(f"/sse?topic={topic}&last_event_id={epoch}:2")
    with SSEClient(url, headers={"Last-Event-ID": f"{epoch}:7"}) as sse:
        sse.wait_ready()
        assert [sse.next_event().data for _ in range(3)] == ["8", "9", "10"]
    with SSEClient(url) as sse:   # the query alone is used when there is no header
        sse.wait_ready()
        assert sse.next_event().data == "3"
