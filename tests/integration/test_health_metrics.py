"""/healthz, /readyz and /metrics (Prometheus text format) as an operator would check them."""
import asyncio
import re

import requests

from herald_test import unique
from herald_test.metrics import METRICS, metric_sum, parse_metrics
from herald_test.sse import SSEClient
from herald_test.ws import ws_connect


def test_healthz_and_readyz(server):
    r = requests.get(server.url("/healthz"), timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text
    assert "application/json" in r.headers.get("Content-Type", "")
    r = requests.get(server.url("/readyz"), timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ready"}, r.text


def test_metrics_is_prometheus_text_with_the_documented_families(server):
    r = requests.get(server.url("/metrics"), timeout=5)
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers
    text = r.text
    assert text.endswith("\n")
    names = {n for n, _, _ in parse_metrics(text)}
    for key, name in METRICS.items():
        assert name in names, f"metric {name} ({key}) missing; have {sorted(names)}"
        assert re.search(rf"^# TYPE {name} (counter|gauge)$", text, re.M), f"no # TYPE line for {name}"
    # every non-comment line parses
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.match(r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [-+0-9.eE]+(Inf|NaN)?( \d+)?$", line), line


def test_metrics_move_with_traffic(server):
    topic = unique("met")

    def get():
        return requests.get(server.url("/metrics"), timeout=5).text

    async def run():
        before = get()
        ws = await ws_connect(server, f"topic={topic}")
        sse = SSEClient(server.url(f"/sse?topic={topic}"))
        sse.wait_ready()
        try:
            during = get()
            assert metric_sum(during, METRICS["connections"], transport="ws") >= 1, during
            assert metric_sum(during, METRICS["connections"], transport="sse") >= 1, during
            for i in range(3):
                r = requests.post(server.url(f"/publish/{topic}"), data=f"m{i}", timeout=5)
                assert r.status_code == 200
            for _ in range(3):
                await asyncio.wait_for(ws.recv(), 10)
                sse.next_event()
            after = get()
        finally:
            await ws.close()
            sse.close()

        def delta(name, **labels):
            return (metric_sum(after, name, **labels) or 0) - (metric_sum(before, name, **labels) or 0)

        assert delta(METRICS["published"]) >= 3
        assert delta(METRICS["delivered"]) >= 6            # 3 messages x 2 subscribers
        assert delta(METRICS["bytes_out"]) > 6 * len("m0")

        # a rejected request is counted by reason
        assert requests.post(server.url("/publish/bad%20topic"), data="x", timeout=5).status_code == 400
        assert requests.get(server.url("/nope"), timeout=5).status_code == 404
        assert requests.get(server.url("/nope"), timeout=5).status_code == 404
        last = get()
        for reason, n in (("bad_topic", 1), ("not_found", 2)):
            d = (metric_sum(last, METRICS["rejected"], reason=reason) or 0) - \
                (metric_sum(after, METRICS["rejected"], reason=reason) or 0)
            assert d == n, f"rejected{{reason={reason}}} moved by {d}, want {n}"

    asyncio.run(run())
