"""The server's half of the JavaScript client (issue 13): herald serves clients/js/herald.js at
GET /client/herald.js (built into the binary), and the WebSocket `publish` op takes an
`idempotency_key`, so that a client retrying a publish whose acknowledgement it lost is not
delivered twice."""
import asyncio
import hashlib
import re
from pathlib import Path

import pytest
import requests

from herald_testlib import metric_sum, unique, ws_connect, ws_op, ws_recv_json

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "js" / "herald.js"


@pytest.fixture(scope="module")
def herald_config():
    return {"ws": {"client_publish": ["chat:*"]}, "origins": {"allow": ["https://app.example"]}}


def test_client_js_is_the_file_built_in(server):
    r = requests.get(server.url("/client/herald.js"), timeout=10)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/javascript")
    assert r.content == CLIENT.read_bytes(), "the binary serves another herald.js than the tree's"
    version = re.search(r'export const VERSION = "([^"]+)"', CLIENT.read_text()).group(1)
    sha = hashlib.sha256(CLIENT.read_bytes()).hexdigest()[:12]
    assert r.headers["ETag"] == f'"{version}-{sha}"'
    assert r.headers["Cache-Control"] == "public, max-age=3600", r.headers["Cache-Control"]


def test_client_js_cors_as_configured(server):
    ok = requests.get(server.url("/client/herald.js"), headers={"Origin": "https://app.example"},
                      timeout=10)
    assert ok.status_code == 200
    assert ok.headers.get("Access-Control-Allow-Origin") == "https://app.example"
    bad = requests.get(server.url("/client/herald.js"), headers={"Origin": "https://evil.example"},
                       timeout=10)
    assert bad.status_code == 403 and bad.json()["error"]["code"] == "forbidden"
    assert requests.post(server.url("/client/herald.js"), timeout=10).status_code == 405


def test_ws_publish_idempotency_key(server):
    topic = unique("chat:idem")

    async def run():
        sub = await ws_connect(server, f"topic={topic}")
        pub = await ws_connect(server)
        try:
            first = await ws_op(pub, {"op": "publish", "id": 1, "topic": topic, "data": "once",
                                      "idempotency_key": "k-1"})
            again = await ws_op(pub, {"op": "publish", "id": 2, "topic": topic, "data": "once",
                                      "idempotency_key": "k-1"})
            other = await ws_op(pub, {"op": "publish", "id": 3, "topic": topic, "data": "two",
                                      "idempotency_key": "k-2"})
            assert first["type"] == "ok" and "duplicate" not in first, first
            assert again["type"] == "ok" and again["duplicate"] is True, again
            assert again["offset"] == first["offset"] and again["epoch"] == first["epoch"]
            assert other["offset"] == first["offset"] + 1
            got = [await ws_recv_json(sub) for _ in range(2)]
            assert [m["data"] for m in got] == ["once", "two"], got
            with pytest.raises(asyncio.TimeoutError):  # the duplicate was not delivered
                await ws_recv_json(sub, timeout=0.5)
            for bad_key in ("", "x" * 129, "has space", 7):
                e = await ws_op(pub, {"op": "publish", "id": 4, "topic": topic, "data": "x",
                                      "idempotency_key": bad_key})
                assert e["type"] == "error" and e["code"] == "bad_idempotency_key", (bad_key, e)
        finally:
            await sub.close()
            await pub.close()

    before = metric_sum(requests.get(server.url("/metrics"), timeout=10).text,
                        "herald_rejected_requests_total", reason="bad_idempotency_key") or 0
    asyncio.run(run())
    after = metric_sum(requests.get(server.url("/metrics"), timeout=10).text,
                       "herald_rejected_requests_total", reason="bad_idempotency_key")
    assert after == before + 4
