"""All-or-nothing recovery with a small history (size 10, max_recovery 5): a gap that history no
longer holds, or a foreign epoch, gives `recovered: false` / `event: reset` and no partial replay;
a gap that fits is replayed exactly; malformed ids are a clear 400."""
import asyncio
import json
from urllib.parse import quote

import pytest
import requests

from herald_test import unique
from herald_test.http import error_of
from herald_test.sse import SSEClient
from herald_test.ws import ws_connect, ws_op_collect, ws_recv_json

FOREIGN_EPOCH = "zzzzzzzz"


@pytest.fixture(scope="module")
def herald_config():
    # poll.timeout 5s: no test here waits for it; a poll that must answer at once is told from
    # one that waited by a bound (2.5 s) beyond a loaded machine's scheduling.
    return {"history": {"size": 10, "max_recovery": 5}, "poll": {"timeout": "5s"}}


def fill(server, n=30):
    """A fresh topic with messages 1..n; returns (topic, epoch)."""
    topic = unique("gap")
    with requests.Session() as s:
        for i in range(1, n + 1):
            r = s.post(server.url(f"/publish/{topic}"), data=str(i), timeout=10)
            assert r.status_code == 200 and r.json()["offset"] == i, r.text
        h = s.get(server.url(f"/history/{topic}"), timeout=10).json()
    assert h["offset"] == n
    return topic, h["epoch"]


async def ws_resume(server, topic, since):
    ws = await ws_connect(server)
    ok, before = await ws_op_collect(ws, {"op": "subscribe", "topic": topic, "id": "s", "since": since})
    assert not before, before
    assert ok["type"] == "ok", ok
    # collect whatever follows the reply until a ping round trip proves the replay is over
    reply, replay = await ws_op_collect(ws, {"op": "ping", "id": "p"})
    assert reply["type"] == "ok"
    return ws, ok, replay


@pytest.mark.parametrize("case", ["gap_older_than_history", "gap_over_max_recovery", "foreign_epoch"])
def test_ws_unrecoverable_gap_gives_recovered_false_and_no_replay(server, case):
    topic, epoch = fill(server)

    async def run():
        since = {"gap_older_than_history": {"epoch": epoch, "offset": 5},
                 "gap_over_max_recovery": {"epoch": epoch, "offset": 22},   # 8 missed, all held
                 "foreign_epoch": {"epoch": FOREIGN_EPOCH, "offset": 29}}[case]
        ws, ok, replay = await ws_resume(server, topic, since)
        assert ok["recovered"] is False, ok
        assert ok["epoch"] == epoch and ok["offset"] == 30, ok
        assert replay == [], f"partial replay: {replay}"
        # live messages continue after the top
        await asyncio.to_thread(requests.post, server.url(f"/publish/{topic}"), data="31", timeout=10)
        m = await ws_recv_json(ws)
        assert m["offset"] == 31 and m["data"] == "31", m
        await ws.close()

    asyncio.run(run())


@pytest.mark.parametrize("since_offset,want", [(25, [26, 27, 28, 29, 30]), (30, [])])
def test_ws_recoverable_gap_is_replayed_exactly(server, since_offset, want):
    topic, epoch = fill(server)

    async def run():
        ws, ok, replay = await ws_resume(server, topic, {"epoch": epoch, "offset": since_offset})
        assert ok["recovered"] is True and ok["epoch"] == epoch and ok["offset"] == 30, ok
        assert [(m["offset"], m["data"]) for m in replay] == [(o, str(o)) for o in want], replay
        await asyncio.to_thread(requests.post, server.url(f"/publish/{topic}"), data="31", timeout=10)
        m = await ws_recv_json(ws)
        assert m["offset"] == 31
        await ws.close()

    asyncio.run(run())


@pytest.mark.parametrize("last,reason", [
    ("{epoch}:5", "gap too large"),
    ("{epoch}:22", "gap too large"),
    (FOREIGN_EPOCH + ":29", "epoch changed"),
])
def test_sse_unrecoverable_gap_sends_reset(server, last, reason):
    topic, epoch = fill(server)
    with SSEClient(server.url(f"/sse?topic={topic}"),
                   headers={"Last-Event-ID": last.format(epoch=epoch)}) as sse:
        sse.wait_ready()
        ev = sse.next_event()
        assert ev.event == "reset", ev.raw
        assert json.loads(ev.data) == {"topic": topic, "epoch": epoch, "offset": 30, "reason": reason}, ev.raw
        requests.post(server.url(f"/publish/{topic}"), data="31", timeout=10)
        ev = sse.next_event()
        assert ev.event is None and ev.data == "31" and ev.id == f"{epoch}:31", ev.raw


def test_sse_recoverable_gap_is_replayed(server):
    topic, epoch = fill(server)
    with SSEClient(server.url(f"/sse?topic={topic}&last_event_id={epoch}:27")) as sse:
        sse.wait_ready()
        evs = [sse.next_event() for _ in range(3)]
        assert [(e.id, e.data) for e in evs] == [(f"{epoch}:{o}", str(o)) for o in (28, 29, 30)]
        requests.post(server.url(f"/publish/{topic}"), data="31", timeout=10)
        assert sse.next_event().data == "31"


@pytest.mark.parametrize("bad", ["garbage", "{epoch}:abc", "{epoch}:1,{epoch}:2", "{epoch}", ":5",
                                 "{epoch}:-1", "{epoch}:99999999999999999999999", "{epoch}:"])
def test_malformed_last_event_id_is_400(server, bad):
    topic, epoch = fill(server, 1)
    value = bad.format(epoch=epoch)
    r = requests.get(server.url(f"/sse?topic={topic}"), headers={"Last-Event-ID": value}, timeout=10)
    assert r.status_code == 400, (value, r.status_code, r.text[:200])
    assert error_of(r)[0] == "bad_last_event_id"
    r = requests.get(server.url(f"/sse?topic={topic}&last_event_id={quote(value)}"), timeout=10)
    assert r.status_code == 400, (value, r.status_code, r.text[:200])
    assert error_of(r)[0] == "bad_last_event_id"


def test_last_event_id_with_wrong_topic_count_is_400(server):
    topic, epoch = fill(server, 1)
    r = requests.get(server.url(f"/sse?topic={topic}&topic={unique('other')}"),
                     headers={"Last-Event-ID": f"{epoch}:1"}, timeout=10)
    assert r.status_code == 400 and error_of(r)[0] == "bad_last_event_id", r.text


def test_ws_malformed_since_is_an_error_frame(server):
    topic, epoch = fill(server, 1)

    async def run():
        ws = await ws_connect(server)
        for since in ({"epoch": epoch}, {"offset": 1}, {"epoch": epoch, "offset": "x"},
                      {"epoch": epoch, "offset": -1}):
            err, _ = await ws_op_collect(ws, {"op": "subscribe", "topic": topic, "id": 9, "since": since})
            assert err["type"] == "error" and err["code"] == "bad_since", (since, err)
        reply, _ = await ws_op_collect(ws, {"op": "ping", "id": 10})
        assert reply["type"] == "ok"
        await ws.close()

    asyncio.run(run())


@pytest.mark.parametrize("since,reason", [("{epoch}:5", "gap too large"),
                                          (FOREIGN_EPOCH + ":29", "epoch changed")])
def test_poll_unrecoverable_since_answers_at_once(server, since, reason):
    topic, epoch = fill(server)
    r = requests.get(server.url(f"/poll?topic={topic}&since={since.format(epoch=epoch)}"), timeout=10)
    assert r.status_code == 200, r.text
    j = r.json()
    assert r.elapsed.total_seconds() < 2.5, r.elapsed       # poll.timeout is 5s: it did not wait
    assert j["recovered"] is False and j["messages"] == [] and j["reason"] == reason, j
    assert j["cursor"] == f"{epoch}:30" and j["epoch"] == epoch, j


@pytest.mark.parametrize("bad", ["garbage", "{epoch}:x", "{epoch}:1:2", ":", "{epoch}:-3"])
def test_poll_malformed_since_is_400_bad_cursor(server, bad):
    topic, epoch = fill(server, 1)
    r = requests.get(server.url(f"/poll?topic={topic}&since={quote(bad.format(epoch=epoch))}"), timeout=10)
    assert r.status_code == 400, r.text
    assert error_of(r)[0] == "bad_cursor"
