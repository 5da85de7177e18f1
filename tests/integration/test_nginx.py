"""herald behind real nginx running the shipped config/nginx/herald.conf (rendered by
scripts/nginx-conf.sh with this test's ports): WebSocket upgrade, SSE without buffering, long-poll
and publish all pass through it."""
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
import requests
import websockets

from herald_testlib import REPO_ROOT, SSEClient, unique, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def proxied(herald_factory, tmp_path):
    """Two herald instances behind nginx. nginx hashes by client address, so every request of
    this test (all from 127.0.0.1) goes to the same instance, as sticky sessions would."""
    a = herald_factory()
    b = herald_factory()
    port = free_port()
    conf = subprocess.run(
        [str(REPO_ROOT / "scripts" / "nginx-conf.sh"), f"127.0.0.1:{port}", str(tmp_path),
         f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"],
        check=True, capture_output=True, text=True).stdout
    (tmp_path / "nginx.conf").write_text(conf)
    proc = subprocess.Popen([NGINX, "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"),
                             "-g", "daemon off;"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _up(base), 10, what="nginx answering /healthz")
        yield base, port, (a, b)
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _up(base: str) -> bool:
    try:
        return requests.get(base + "/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def test_shipped_nginx_config_is_valid(tmp_path):
    conf = subprocess.run(
        [str(REPO_ROOT / "scripts" / "nginx-conf.sh"), "127.0.0.1:1", str(tmp_path), "127.0.0.1:2"],
        check=True, capture_output=True, text=True).stdout
    (tmp_path / "nginx.conf").write_text(conf)
    p = subprocess.run([NGINX, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                       capture_output=True, text=True, timeout=20)
    assert p.returncode == 0, p.stderr


def test_websocket_upgrade_and_publish_through_nginx(proxied):
    base, port, _ = proxied
    topic = unique("ngx-ws")

    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws?topic={topic}",
                                      subprotocols=["herald.v1"], open_timeout=10) as ws:
            assert ws.subprotocol == "herald.v1"
            await ws.send(json.dumps({"op": "ping", "id": 7}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "ok", "id": 7, "op": "ping"}
            r = requests.post(f"{base}/publish/{topic}", data="through nginx", timeout=5)
            assert r.status_code == 200, r.text
            assert r.json()["subscribers"] == 1
            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert m["type"] == "message" and m["data"] == "through nginx" and m["offset"] == r.json()["offset"]

    asyncio.run(run())


def test_sse_event_is_not_buffered_by_nginx(proxied):
    base, _, _ = proxied
    topic = unique("ngx-sse")
    sse = SSEClient(f"{base}/sse?topic={topic}", max_time=30)
    try:
        status, headers = sse.wait_headers(5)
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        sse.wait_ready(5)
        # One small event: a buffering proxy would hold it (until 4-8 KiB or the stream ends).
        t0 = time.monotonic()
        r = requests.post(f"{base}/publish/{topic}", data="now", timeout=5)
        assert r.status_code == 200
        ev = sse.next_event(3)
        assert ev.data == "now"
        assert time.monotonic() - t0 < 1.0, "the event was held back by the proxy"
    finally:
        sse.proc.kill()
        sse.proc.wait()


def test_long_poll_through_nginx(proxied):
    base, _, _ = proxied
    topic = unique("ngx-poll")
    h = requests.get(f"{base}/history/{topic}", timeout=5).json()
    cursor = f"{h['epoch']}:0"
    requests.post(f"{base}/publish/{topic}", data="a", timeout=5)
    r = requests.get(f"{base}/poll", params={"topic": topic, "since": cursor}, timeout=10)
    assert r.status_code == 200, r.text
    j = r.json()
    assert [m["data"] for m in j["messages"]] == ["a"] and j["cursor"] == f"{h['epoch']}:1"
