"""GET /history and GET /poll as docs/protocol.md describes them, and idempotent publish."""
import asyncio
import base64
import threading
import time

import pytest
import requests

from herald_test import EPOCH_RE, unique
from herald_test.http import curl, error_of
from herald_test.metrics import connections, wait_connections
from herald_test.ws import ws_connect, ws_op_collect, ws_recv_json


@pytest.fixture(scope="module")
def herald_config():
    # poll.timeout 3s: a poll that must answer at once is told from one that waited by a bound
    # (2 s) that a loaded machine's scheduling does not reach, and the one test that waits for
    # the timeout still takes only 3 s.
    return {"poll": {"timeout": "3s"},
            "history": {"size": 100, "namespaces": [{"pattern": "deep-*", "size": 300, "ttl": "5m"}]}}


def pub(server, topic, data, **kw):
    r = requests.post(server.url(f"/publish/{topic}"), data=data, timeout=10, **kw)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------- history

def test_history_returns_what_is_held(server):
    topic = unique("hist")
    pub(server, topic, "x1")
    pub(server, topic, '{"p": 1}', headers={"Content-Type": "application/json"})
    pub(server, topic, "x3", params={"event": "tick"})
    r = requests.get(server.url(f"/history/{topic}"), timeout=10)
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["topic"] == topic and EPOCH_RE.match(j["epoch"]) and j["offset"] == 3, j
    ms = j["messages"]
    assert [m["offset"] for m in ms] == [1, 2, 3], ms
    assert ms[0]["data"] == "x1" and ms[1]["data"] == {"p": 1}, ms
    assert ms[2]["data"] == "x3" and ms[2]["event"] == "tick", ms

    j = requests.get(server.url(f"/history/{topic}?since=1"), timeout=10).json()
    assert [m["offset"] for m in j["messages"]] == [2, 3], j
    j = requests.get(server.url(f"/history/{topic}?since={j['epoch']}:2"), timeout=10).json()
    assert [m["offset"] for m in j["messages"]] == [3], j
    j = requests.get(server.url(f"/history/{topic}?limit=1"), timeout=10).json()
    assert len(j["messages"]) == 1, j
    j = requests.get(server.url(f"/history/{topic}?since=3"), timeout=10).json()
    assert j["messages"] == [] and j["offset"] == 3, j


def test_history_of_a_fresh_topic_has_an_epoch(server):
    topic = unique("fresh")
    j = requests.get(server.url(f"/history/{topic}"), timeout=10).json()
    assert j["topic"] == topic and j["offset"] == 0 and j["messages"] == [], j
    assert EPOCH_RE.match(j["epoch"]), f"every topic stream has an 8-character epoch: {j}"
    # and it is the epoch its first message then carries
    off = pub(server, topic, "first")
    j2 = requests.get(server.url(f"/history/{topic}"), timeout=10).json()
    assert j2["epoch"] == j["epoch"] and off["offset"] == 1, (j, j2)


# A topic holds history.size messages, or its history.namespaces rule's size (300 for deep-*):
# GET /history's `limit` defaults to and is capped at that size (it was history.size's 100 for
# every topic).
@pytest.mark.parametrize("prefix, size, published", [("hist-size", 100, 120), ("deep-hist", 300, 250)])
def test_history_holds_at_most_the_topics_size(server, prefix, size, published):
    topic = unique(prefix)
    with requests.Session() as s:
        for i in range(1, published + 1):
            assert s.post(server.url(f"/publish/{topic}"), data=str(i), timeout=10).status_code == 200
    held = list(range(max(1, published - size + 1), published + 1))
    j = requests.get(server.url(f"/history/{topic}"), timeout=10).json()
    assert j["offset"] == published
    assert [m["offset"] for m in j["messages"]] == held, [m["offset"] for m in j["messages"]][:5]
    j = requests.get(server.url(f"/history/{topic}?limit=1000"), timeout=10).json()
    assert len(j["messages"]) == len(held)
    j = requests.get(server.url(f"/history/{topic}?since=0&limit=200"), timeout=10).json()
    assert [m["offset"] for m in j["messages"]] == held[:200]


def test_history_binary_and_errors(server):
    topic = unique("hist-bin")
    pub(server, topic, b"\x00\xff", headers={"Content-Type": "application/octet-stream"})
    j = requests.get(server.url(f"/history/{topic}"), timeout=10).json()
    assert j["messages"][0]["data_base64"] == base64.b64encode(b"\x00\xff").decode(), j
    r = requests.get(server.url("/history/bad%20topic"), timeout=10)
    assert r.status_code == 400 and error_of(r)[0] == "bad_topic"
    r = requests.get(server.url(f"/history/{topic}?since=zzzzzzzz:0"), timeout=10)
    assert r.status_code == 400, r.text    # an epoch:offset must match the epoch
    r = requests.get(server.url(f"/history/{topic}?since=abc"), timeout=10)
    assert r.status_code == 400, r.text


# ---------------------------------------------------------------- long-poll

def test_poll_with_since_answers_at_once(server):
    topic = unique("poll")
    for i in range(1, 4):
        pub(server, topic, f"p{i}")
    epoch = requests.get(server.url(f"/history/{topic}"), timeout=10).json()["epoch"]
    t0 = time.monotonic()
    r = requests.get(server.url(f"/poll?topic={topic}&since={epoch}:1"), timeout=10)
    assert time.monotonic() - t0 < 2.0, "poll.timeout is 3s: it waited"
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["topic"] == topic and j["epoch"] == epoch and j["recovered"] is True, j
    assert j["cursor"] == f"{epoch}:3", j
    assert [(m["offset"], m["data"]) for m in j["messages"]] == [(2, "p2"), (3, "p3")], j


def test_poll_times_out_empty(server):
    topic = unique("poll-idle")
    pub(server, topic, "only")
    epoch = requests.get(server.url(f"/history/{topic}"), timeout=10).json()["epoch"]
    t0 = time.monotonic()
    r = curl(server.url(f"/poll?topic={topic}&since={epoch}:1"))
    took = time.monotonic() - t0
    assert r.status == 200, r.body
    j = r.json()
    assert j["messages"] == [] and j["cursor"] == f"{epoch}:1", j
    assert 2.8 <= took < 8.0, f"poll.timeout is 3s, answered after {took:.2f}s"


def test_poll_waits_for_the_next_message(server):
    topic = unique("poll-wait")
    result = {}

    def poll():
        t0 = time.monotonic()
        r = requests.get(server.url(f"/poll?topic={topic}"), timeout=10)
        result["r"], result["t"] = r, time.monotonic() - t0

    polls = connections(server, "poll")
    t = threading.Thread(target=poll)
    t.start()
    wait_connections(server, "poll", polls + 1)   # the poll is waiting: publish now
    off = pub(server, topic, "wake")["offset"]
    t.join(10)
    r = result["r"]
    assert r.status_code == 200, r.text
    j = r.json()
    assert [(m["offset"], m["data"]) for m in j["messages"]] == [(off, "wake")], j
    assert j["cursor"].endswith(f":{off}") and result["t"] < 0.9, (j, result["t"])


def test_poll_binary_and_bad_topic(server):
    topic = unique("poll-bin")
    pub(server, topic, bytes(range(8)), headers={"Content-Type": "application/octet-stream"})
    epoch = requests.get(server.url(f"/history/{topic}"), timeout=10).json()["epoch"]
    j = requests.get(server.url(f"/poll?topic={topic}&since={epoch}:0"), timeout=10).json()
    assert j["messages"][0]["data_base64"] == base64.b64encode(bytes(range(8))).decode(), j
    r = requests.get(server.url("/poll?topic=bad%20topic"), timeout=10)
    assert r.status_code == 400 and error_of(r)[0] == "bad_topic"
    r = requests.get(server.url("/poll"), timeout=10)
    assert r.status_code == 400


# ---------------------------------------------------------------- idempotent publish

def test_idempotency_key_is_answered_but_not_delivered_twice(server):
    topic = unique("idem")

    async def run():
        ws = await ws_connect(server, f"topic={topic}")
        first = await asyncio.to_thread(pub, server, topic, "once", headers={"Idempotency-Key": "k-1"})
        again = await asyncio.to_thread(pub, server, topic, "once", headers={"Idempotency-Key": "k-1"})
        assert again["offset"] == first["offset"] and again.get("duplicate") is True, (first, again)
        assert not first.get("duplicate"), first
        # via curl too
        r = curl(server.url(f"/publish/{topic}"), "-H", "Idempotency-Key: k-1", "-d", "once")
        assert r.status == 200 and r.json()["offset"] == first["offset"] and r.json()["duplicate"] is True
        # JSON idempotency_key, same topic, same key space
        r = await asyncio.to_thread(requests.post, server.url("/publish"), timeout=10,
                                    json={"topic": topic, "data": "once", "idempotency_key": "k-1"})
        res = r.json()["results"][0]
        assert res["offset"] == first["offset"] and res["duplicate"] is True, res
        sentinel = await asyncio.to_thread(pub, server, topic, "sentinel")
        assert sentinel["offset"] == first["offset"] + 1

        m1 = await ws_recv_json(ws)
        m2 = await ws_recv_json(ws)
        assert (m1["data"], m1["offset"]) == ("once", first["offset"]), m1
        assert (m2["data"], m2["offset"]) == ("sentinel", sentinel["offset"]), m2
        reply, extra = await ws_op_collect(ws, {"op": "ping", "id": 1})
        assert extra == [], extra

        # the same key on another topic is a different message
        other = unique("idem-other")
        o = await asyncio.to_thread(pub, server, other, "once", headers={"Idempotency-Key": "k-1"})
        assert o["offset"] == 1 and not o.get("duplicate"), o

        # and it is kept in history once
        h = await asyncio.to_thread(requests.get, server.url(f"/history/{topic}"), timeout=10)
        assert [m["data"] for m in h.json()["messages"]] == ["once", "sentinel"]
        await ws.close()

    asyncio.run(run())


def test_bad_idempotency_key_is_400(server):
    topic = unique("idem-bad")
    r = requests.post(server.url(f"/publish/{topic}"), data="x", headers={"Idempotency-Key": "k" * 129},
                      timeout=10)
    assert r.status_code == 400 and error_of(r)[0] == "bad_idempotency_key", r.text
    r = requests.post(server.url(f"/publish/{topic}"), data="x", headers={"Idempotency-Key": "k" * 128},
                      timeout=10)
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------- answers past the output budget

def test_history_and_poll_page_answers_larger_than_the_output_budget(herald_factory):
    """Ten 60 KB messages do not fit one answer under a 256 KiB output budget: /history and /poll
    answer what fits (at most half the budget), say `"more": true`, and the client pages on from
    the last offset; every message arrives once, in order. (Before, the answer overflowed the
    connection's queue and the connection closed without any answer.)"""
    budget = 256 * 1024
    h = herald_factory({"limits": {"max_queued_bytes": "256KiB", "max_message_bytes": "64KiB"},
                        "history": {"size": 100}, "poll": {"timeout": "1s"}})
    topic = unique("page")
    big = [f"{i:02d}" + "x" * 60000 for i in range(1, 11)]
    for d in big:
        pub(h, topic, d)

    got, since, pages = [], None, 0
    while pages < 20:
        r = requests.get(h.url(f"/history/{topic}"), timeout=10,
                         params={} if since is None else {"since": since})
        assert r.status_code == 200, r.text
        assert len(r.content) <= budget // 2 + 512, f"an answer of {len(r.content)} bytes"
        body = r.json()
        pages += 1
        got += [(m["offset"], m["data"]) for m in body["messages"]]
        if not body.get("more"):
            break
        since = body["messages"][-1]["offset"]
    assert pages > 1, "everything fit in one answer: the test does not exercise paging"
    assert got == list(zip(range(1, 11), big))

    got, cursor, pages = [], None, 0
    epoch = requests.get(h.url(f"/history/{topic}"), params={"limit": 0}, timeout=10).json()["epoch"]
    cursor = f"{epoch}:0"
    while len(got) < 10 and pages < 20:
        r = requests.get(h.url("/poll"), params={"topic": topic, "since": cursor}, timeout=10)
        assert r.status_code == 200, r.text
        assert len(r.content) <= budget // 2 + 512, f"an answer of {len(r.content)} bytes"
        body = r.json()
        pages += 1
        got += [(m["offset"], m["data"]) for m in body["messages"]]
        cursor = body["cursor"]
    assert pages > 1
    assert got == list(zip(range(1, 11), big))
