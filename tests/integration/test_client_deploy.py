"""The JavaScript client against a deployment: two herald instances with `broker: redis` behind
nginx with the shipped config. 2,000 numbered messages are published through nginx while a TCP
proxy between the client and nginx cuts every connection 20 times at random moments and both
instances are restarted one after the other (SIGTERM, then a new process on the same port): the
client receives 1..2,000 exactly once, in order (an onReset would excuse a gap; with Redis
holding the history none is expected). The client is the package in Node on one transport, or
(`chromium`, the issue's headline test) a page in headless Chromium that loads
/client/herald.js through the proxy and nginx and uses only the three lines of the README (on
every transport, or forced to SSE or long-polling: `chromium:sse`, `chromium:poll`)."""
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from herald_testlib import herald_bin, metric_sum, unique, wait_until
from redis_testlib import RedisServer, WSCollector, redis_config
from herald_test.nginx import Nginx

RECEIVE = Path(__file__).resolve().parents[1] / "client" / "receive.mjs"
PUBLISHER = Path(__file__).resolve().parents[1] / "client" / "publisher.mjs"
N = 2000


class Restarted:
    """A herald restarted on the port its predecessor had (nginx's upstream), by this test."""

    def __init__(self, old):
        self.proc = subprocess.Popen([herald_bin(), "--config", old.config_path, "--listen",
                                      f"127.0.0.1:{old.port}", "--workers", "2"],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_until(lambda: up(old.port), 15, what="the restarted herald's /readyz")

    def stop(self):
        self.proc.terminate()
        try:
            assert self.proc.wait(15) == 0
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


def up(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.scenario
@pytest.mark.parametrize("transport", ["websocket", "sse", "chromium", "chromium:sse",
                                       "chromium:poll"])
def test_client_exactly_once_through_nginx_cuts_and_restarts(herald_factory, tmp_path, transport):
    if transport.startswith("chromium") and not Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")).exists():
        pytest.fail("/usr/bin/chromium is missing (scripts/install-deps.sh installs it)")
    started = time.monotonic()
    redis = RedisServer()
    restarted = []
    node = ngx = None
    try:
        a = herald_factory(redis_config([redis.address]))
        b = herald_factory(redis_config([redis.address]))
        ngx = Nginx(tmp_path, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
        topic = unique(f"deploy-{transport.replace(':', '-')}")
        node = subprocess.Popen(["node", str(RECEIVE), ngx.base, topic, str(N), transport, "20"],
                                cwd=str(RECEIVE.parent), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        lines = []
        reader = threading.Thread(target=lambda: lines.extend(node.stdout), daemon=True)
        reader.start()
        wait_until(lambda: any('"ready"' in x for x in lines) or node.poll() is not None, 45,
                   what="the client connected")
        s = requests.Session()
        for i in range(1, N + 1):
            deadline = time.monotonic() + 15
            while True:
                try:
                    if s.post(f"{ngx.base}/publish/{topic}", data=str(i), timeout=5).status_code == 200:
                        break
                except requests.RequestException:
                    pass
                assert time.monotonic() < deadline, f"publish {i} kept failing"
                time.sleep(0.05)
            time.sleep(0.002)  # about 6 s in all, so that the 20 cuts fall in the stream
            if i in (700, 1400):  # a rolling restart: one instance, then the other
                old = a if i == 700 else b
                rc, _ = old.terminate()
                assert rc == 0
                restarted.append(Restarted(old))
        rc = node.wait(130)
        reader.join(5)
        events = [json.loads(x) for x in lines if x.strip()]
        done = events[-1] if events and "done" in events[-1] else {}
        assert rc == 0, f"client exited {rc}: {done} {node.stderr.read()[-2000:]}"
        got = [e["msg"] for e in events if "msg" in e]
        resets = [e["reset"] for e in events if "reset" in e]
        assert len(got) == len(set(got)), "a message was delivered twice"
        assert got == sorted(got), "out of order"
        assert got[-1] == N
        if not resets:
            assert got == list(range(1, N + 1)), f"missing {sorted(set(range(1, N + 1)) - set(got))[:10]}"
        print(f"{transport}: {len(got)} delivered, {len(resets)} resets, {done}, "
              f"{time.monotonic() - started:.1f} s")
        assert "pageErrors" not in "".join(lines), [x for x in lines if "pageErrors" in x]
        assert not resets, f"history in Redis covers every gap, yet: {resets}"
        assert done["cuts"] >= 15, f"only {done['cuts']} of 20 cuts found a connected client"
        want = transport.split(":")[-1] if transport != "chromium" else "websocket"
        assert done["transport"] == want, done
    finally:
        if ngx:
            ngx.stop()
        if node and node.poll() is None:
            node.kill()
            node.wait()
        for r in restarted:
            r.stop()
        redis.kill()


def test_client_publish_answered_unknown_is_retried_with_its_key(herald_factory):
    """Redis freezes while the client's WebSocket publish is in flight: herald answers `unknown`
    (redis.command_timeout), the client sends the same publish again with the same
    idempotency_key after a backoff until Redis is back, and the message is delivered once."""
    redis = RedisServer()
    node = sub = None
    try:
        cfg = redis_config([redis.address], ws={"client_publish": ["chat:*"]})
        cfg["redis"] = {**cfg["redis"], "command_timeout": "1s", "ping_interval": "200ms"}
        h = herald_factory(cfg)
        topic = unique("chat:unknown")
        sub = WSCollector(h, topic)
        node = subprocess.Popen(["node", str(PUBLISHER), h.url("").rstrip("/")],
                                cwd=str(PUBLISHER.parent), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = []
        threading.Thread(target=lambda: lines.extend(node.stdout), daemon=True).start()
        results = lambda: [json.loads(x) for x in lines if '"data"' in x]
        wait_until(lambda: any('"ready"' in x for x in lines) or node.poll() is not None, 20,
                   what="the client connected")

        def send(data):
            node.stdin.write(f"{topic} {data}\n")
            node.stdin.flush()

        send("p1")
        wait_until(lambda: len(results()) == 1, 10, what="p1 acknowledged")
        before = unknown_total(h)
        with redis.frozen():
            send("p2")
            time.sleep(2.5)  # answered unknown after 1 s; retries meanwhile fail too
            assert len(results()) == 1, f"p2 settled while Redis was frozen: {results()}"
        wait_until(lambda: len(results()) == 2, 20, what="p2 acknowledged after Redis woke")
        node.stdin.close()
        assert node.wait(15) == 0, node.stderr.read()[-2000:]
        p1, p2 = results()
        assert "ok" in p2, f"the client gave up on p2: {p2}"
        assert p2["ok"]["offset"] == p1["ok"]["offset"] + 1, (p1, p2)
        assert unknown_total(h) > before, "herald never answered unknown: the test tested nothing"
        r = requests.post(h.url(f"/publish/{topic}"), data="marker", timeout=5)
        assert r.status_code == 200, r.text
        wait_until(lambda: "marker" in [d for _, _, d in sub.messages()], 10, what="the marker")
        assert [d for _, _, d in sub.messages()] == ["p1", "p2", "marker"], sub.messages()
        print(f"unknown retried: p2 {p2['ok']}, {unknown_total(h) - before} unknown answers")
    finally:
        if sub:
            sub.close()
        if node and node.poll() is None:
            node.kill()
            node.wait()
        redis.kill()


def unknown_total(h) -> float:
    text = requests.get(h.url("/metrics"), timeout=10).text
    return metric_sum(text, "herald_redis_publish_unknown_total") or 0
