"""Publishes nobody reads (history.size 0, no subscriber yet): the owner builds no message for
them (bench/optimisations.md, publish path), yet offsets, epochs, idempotency keys and a later
subscriber's stream stay exactly as with a message built. Several topics, so that both workers
own some (a publish taken by its topic's owner and one handed to the other worker)."""
import asyncio

import pytest
import requests

from herald_test import unique
from herald_test.ws import ws_connect, ws_recv_json


@pytest.fixture(scope="module")
def herald_config():
    return {"history": {"size": 0}}


def publish(s, server, topic, data, key=None):
    headers = {"Idempotency-Key": key} if key else {}
    r = s.post(server.url(f"/publish/{topic}"), data=data, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def test_unread_publishes_keep_offsets_keys_and_the_later_stream(server):
    topics = [unique(f"unread{i}") for i in range(6)]

    async def run():
        with requests.Session() as s:
            for topic in topics:
                first = publish(s, server, topic, "a", key="k-1")
                assert first["offset"] == 1 and first["subscribers"] == 0, first
                assert not first.get("duplicate"), first
                again = publish(s, server, topic, "a", key="k-1")
                assert again.get("duplicate") is True, again
                assert (again["offset"], again["epoch"]) == (1, first["epoch"]), again
                second = publish(s, server, topic, "b")
                assert (second["offset"], second["epoch"]) == (2, first["epoch"]), second
                # nothing is kept, and nothing is invented
                h = s.get(server.url(f"/history/{topic}"), timeout=10).json()
                assert h["messages"] == [] and h["offset"] == 2 and h["epoch"] == first["epoch"], h

                ws = await ws_connect(server, f"topic={topic}")
                try:
                    # the subscription is answered by its topic's owner before the publish below
                    # is sent, so the message is the subscriber's
                    third = None
                    for _ in range(50):
                        third = await asyncio.to_thread(publish, s, server, topic, "c")
                        if third["subscribers"] == 1:
                            break
                        await asyncio.sleep(0.05)
                    assert third["subscribers"] == 1, third
                    got = await ws_recv_json(ws)
                    # earlier publishes of the loop may have raced the subscription
                    while got.get("type") != "message" or got["offset"] != third["offset"]:
                        got = await ws_recv_json(ws)
                    assert (got["data"], got["epoch"]) == ("c", first["epoch"]), got
                    assert third["offset"] >= 3, third
                finally:
                    await ws.close()

    asyncio.run(run())
