"""Reload without restart (issue 17): SIGHUP and POST /admin/reload read the YAML again and apply
API keys, JWT keys (rotation with an overlap), namespaces and rate limits live, report keys that
need a restart, change nothing when the file is bad, and drop no connection, under traffic."""
import signal
import threading
import time

import jwt
import pytest
import requests

from herald_test import unique, wait_until
from herald_test.http import error_of
from herald_test.metrics import metric_sum, metrics_text
from herald_test.server import deep_merge, to_yaml
from herald_test.sse import SSEClient

KEY1 = "reload-key-one-" + "a" * 20
KEY2 = "reload-key-two-" + "b" * 20
SECRET1 = "reload-secret-one-" + "x" * 30
SECRET2 = "reload-secret-two-" + "y" * 30


def config(publish_keys, secrets, **over):
    cfg = {"auth": {"jwt": {"keys": [{"alg": "HS256", "secret": s} for s in secrets]},
                    "publish_keys": publish_keys, "allow_unauthenticated_publish": False,
                    "default_anonymous": "none"}}
    return deep_merge(cfg, over)


def rewrite(h, cfg):
    """The file the server was started with, changed: the test library's defaults plus `cfg`."""
    from herald_test.server import TEST_DEFAULTS
    with open(h.config_path, "w") as f:
        f.write(to_yaml(deep_merge(TEST_DEFAULTS, cfg)) + "\n")


def token(secret, sub="u1", topics=("*",)):
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600, "topics": list(topics)}, secret,
                      algorithm="HS256")


def publish(h, topic, key, data="x"):
    return requests.post(h.url(f"/publish/{topic}"), data=data,
                         headers={"Authorization": f"Bearer {key}"}, timeout=5)


def reload_http(h, key):
    return requests.post(h.url("/admin/reload"), headers={"Authorization": f"Bearer {key}"},
                         timeout=10)


def sse_status(h, topic, secret):
    r = requests.get(h.url(f"/sse?topic={topic}&token={token(secret)}"), stream=True, timeout=5)
    r.close()
    return r.status_code


class Publisher(threading.Thread):
    """Publishes with whichever key is current until told to stop (bounded: 2,000 messages or
    30 s); records every answer that is not 200."""

    def __init__(self, h, topic, key):
        super().__init__(daemon=True)
        self.h, self.topic, self.key = h, topic, key
        self.stop = threading.Event()
        self.sent = 0
        self.bad = []

    def run(self):
        deadline = time.monotonic() + 30
        with requests.Session() as s:
            while not self.stop.is_set() and self.sent < 2000 and time.monotonic() < deadline:
                r = s.post(self.h.url(f"/publish/{self.topic}"), data=str(self.sent + 1),
                           headers={"Authorization": f"Bearer {self.key}"}, timeout=5)
                if r.status_code != 200:
                    self.bad.append((r.status_code, r.text[:200]))
                else:
                    self.sent += 1
                time.sleep(0.005)


def test_reload_rotates_keys_under_traffic_and_reports_what_needs_a_restart(herald_factory):
    h = herald_factory(config([KEY1], [SECRET1]))
    topic = unique("reload")
    probe = unique("probe")  # publishes that test a key go elsewhere: the stream stays exact
    assert sse_status(h, topic, SECRET2) == 401  # not a key yet
    with SSEClient(h.url(f"/sse?topic={topic}&token={token(SECRET1)}")) as sse:
        sse.wait_ready()
        pub = Publisher(h, topic, KEY1)
        pub.start()
        try:
            wait_until(lambda: pub.sent >= 20, 10, what="traffic before the reload")
            # 1. Overlap: both keys and both secrets valid; a key that needs a restart changes.
            rewrite(h, config([KEY1, KEY2], [SECRET1, SECRET2],
                              limits={"max_queued_bytes": "2MiB"}))
            r = reload_http(h, KEY1)
            assert r.status_code == 200, r.text
            rep = r.json()
            assert rep["reloaded"] is True
            assert "auth.publish_keys" in rep["applied"] and "auth.jwt.keys" in rep["applied"], rep
            assert rep["restart_required"] == ["limits.max_queued_bytes"], rep
            assert publish(h, probe, KEY2).status_code == 200
            assert sse_status(h, topic, SECRET2) == 200
            assert sse_status(h, topic, SECRET1) == 200
            # 2. The old key and secret retired, by SIGHUP this time.
            rewrite(h, config([KEY2], [SECRET2]))
            pub.key = KEY2
            h.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: publish(h, probe, KEY1).status_code == 401, 5,
                       what="KEY1 refused after SIGHUP")
            assert sse_status(h, topic, SECRET1) == 401
            assert sse_status(h, topic, SECRET2) == 200
            assert "SIGHUP: config reloaded" in h.log_text()
            n = pub.sent
            wait_until(lambda: pub.sent >= n + 20, 10, what="traffic after the reloads")
        finally:
            pub.stop.set()
            pub.join(15)
        # Publishes between writing the file and the signal may use the key being retired.
        assert all(code == 401 for code, _ in pub.bad), pub.bad
        # The stream opened with the retired secret is still open and got every message in order.
        got = [sse.next_event().data for _ in range(pub.sent)]
        assert got == [str(i) for i in range(1, pub.sent + 1)], (got, pub.bad)
    assert "reloaded" in h.log_text()


def test_a_bad_file_changes_nothing_and_is_an_error(herald_factory):
    h = herald_factory(config([KEY1], [SECRET1]))
    topic = unique("reloadbad")
    before = metric_sum(metrics_text(h), "herald_rejected_requests_total", reason="bad_config") or 0
    # A JWT secret too short to be safe, beside a new API key: neither takes effect.
    rewrite(h, config([KEY1, KEY2], ["short"]))
    r = reload_http(h, KEY1)
    assert r.status_code == 409, r.text
    code, msg = error_of(r)
    assert code == "bad_config" and "auth.jwt.keys[0]" in msg, (code, msg)
    assert publish(h, topic, KEY2).status_code == 401
    assert publish(h, topic, KEY1).status_code == 200
    assert sse_status(h, topic, SECRET1) == 200
    # Not YAML at all, by SIGHUP: logged, nothing changed.
    with open(h.config_path, "w") as f:
        f.write("auth: [unclosed\n")
    h.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "SIGHUP: nothing reloaded" in h.log_text(), 5, what="the error logged")
    assert publish(h, topic, KEY1).status_code == 200
    after = metric_sum(metrics_text(h), "herald_rejected_requests_total", reason="bad_config")
    assert after == before + 1
    # Reload is an admin action: a publish key is needed, anonymity is refused.
    r = requests.post(h.url("/admin/reload"), timeout=5)
    assert r.status_code == 401 and error_of(r)[0] == "unauthorized", r.text


def test_reload_changes_namespaces_and_rate_limits_live(herald_factory):
    h = herald_factory(config([KEY1], [SECRET1], limits={"publishes_per_key_per_s": 1000}))
    topic = unique("open")
    r = requests.get(h.url(f"/sse?topic={topic}"), stream=True, timeout=5)
    r.close()
    assert r.status_code == 403  # anonymous reading is off
    rewrite(h, config([KEY1], [SECRET1], auth={"default_anonymous": "subscribe"},
                      limits={"publishes_per_key_per_s": 1}))
    rep = reload_http(h, KEY1).json()
    assert set(rep["applied"]) == {"auth.default_anonymous", "limits.publishes_per_key_per_s"}, rep
    with SSEClient(h.url(f"/sse?topic={topic}")) as sse:
        sse.wait_ready()
    codes = [publish(h, topic, KEY1).status_code for _ in range(5)]
    assert 429 in codes, codes
