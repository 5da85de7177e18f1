"""The JavaScript client against a deployment: two herald instances with `broker: redis` behind
nginx with the shipped config. 2,000 numbered messages are published through nginx while a TCP
proxy between the client and nginx cuts every connection 20 times at random moments and both
instances are restarted one after the other (SIGTERM, then a new process on the same port): the
client receives 1..2,000 exactly once, in order (an onReset would excuse a gap; with Redis
holding the history none is expected). The client is the package in Node on one transport, or
(`chromium`, the issue's headline test) a page in headless Chromium that loads
/client/herald.js through the proxy and nginx and uses only the three lines of the README."""
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from herald_testlib import herald_bin, unique, wait_until
from redis_testlib import RedisServer, redis_config
from herald_test.nginx import Nginx

RECEIVE = Path(__file__).resolve().parents[1] / "client" / "receive.mjs"
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
@pytest.mark.parametrize("transport", ["websocket", "sse", "chromium"])
def test_client_exactly_once_through_nginx_cuts_and_restarts(herald_factory, tmp_path, transport):
    if transport == "chromium" and not Path(os.environ.get("CHROMIUM", "/usr/bin/chromium")).exists():
        pytest.fail("/usr/bin/chromium is missing (scripts/install-deps.sh installs it)")
    started = time.monotonic()
    redis = RedisServer()
    restarted = []
    node = ngx = None
    try:
        a = herald_factory(redis_config([redis.address]))
        b = herald_factory(redis_config([redis.address]))
        ngx = Nginx(tmp_path, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
        topic = unique(f"deploy-{transport}")
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
    finally:
        if ngx:
            ngx.stop()
        if node and node.poll() is None:
            node.kill()
            node.wait()
        for r in restarted:
            r.stop()
        redis.kill()
