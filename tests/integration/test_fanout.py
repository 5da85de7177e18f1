"""1,000 concurrent WebSocket subscribers on one topic each get all of 100 messages, in order."""
import asyncio
import json
import time

import requests

from herald_test import unique
from herald_test.metrics import METRICS, metric_sum
from herald_test.ws import ws_connect

N_SUBSCRIBERS = 1000
N_MESSAGES = 100
BATCH = 100


def test_thousand_subscribers_get_every_message_in_order(server):
    topic = unique("fan")

    async def run():
        conns = []
        t0 = time.monotonic()
        try:
            for i in range(0, N_SUBSCRIBERS, BATCH):
                batch = await asyncio.gather(*[ws_connect(server, f"topic={topic}", open_timeout=30)
                                               for _ in range(BATCH)])
                conns.extend(batch)
            assert len(conns) == N_SUBSCRIBERS
            connect_s = time.monotonic() - t0

            async def consume(ws):
                offsets, datas = [], []
                for _ in range(N_MESSAGES):
                    m = json.loads(await asyncio.wait_for(ws.recv(), 60))
                    assert m["type"] == "message" and m["topic"] == topic, m
                    offsets.append(m["offset"])
                    datas.append(m["data"])
                return offsets, datas

            consumers = [asyncio.create_task(consume(ws)) for ws in conns]

            def publish_all():
                answers = []
                with requests.Session() as s:
                    for i in range(1, N_MESSAGES + 1):
                        r = s.post(server.url(f"/publish/{topic}"), data=f"m{i}", timeout=30)
                        assert r.status_code == 200, r.text
                        answers.append(r.json())
                return answers

            answers = await asyncio.to_thread(publish_all)
            assert [a["offset"] for a in answers] == list(range(1, N_MESSAGES + 1))
            assert all(a["subscribers"] == N_SUBSCRIBERS for a in answers), \
                sorted({a["subscribers"] for a in answers})

            results = await asyncio.wait_for(asyncio.gather(*consumers), 120)
            want_offsets = list(range(1, N_MESSAGES + 1))
            want_data = [f"m{i}" for i in want_offsets]
            bad = [i for i, (o, d) in enumerate(results) if o != want_offsets or d != want_data]
            assert not bad, f"{len(bad)} subscribers got a wrong sequence, e.g. {results[bad[0]][0][:20]}"
            print(f"connect {connect_s:.1f}s, total {time.monotonic() - t0:.1f}s")
        finally:
            await asyncio.gather(*[ws.close() for ws in conns], return_exceptions=True)

    asyncio.run(run())

    # the server counted the fan-out
    text = requests.get(server.url("/metrics"), timeout=10).text
    delivered = metric_sum(text, METRICS["delivered"])
    assert delivered is not None and delivered >= N_SUBSCRIBERS * N_MESSAGES, delivered
