"""Clients refused by a limit are logged with the reason and the client address, rate-limited:
the first refusal per address and reason at once (per worker), later ones counted and
summarised once per `log.rejection_interval`."""
import re
import socket
import time

import requests

from herald_test import HOST, unique, wait_until
from herald_test.sse import SSEClient

FIRST = re.compile(r"rejected 127\.0\.0\.1: (.*?); further rejections of this address")
SUMMARY = re.compile(r"rejected 127\.0\.0\.1: (.*?): (\d+) more in the last 1 s")


def tally(log: str, what: str) -> tuple[int, int]:
    """(first-refusal lines, refusals counted in summaries) for the reason containing `what`."""
    firsts = sum(1 for m in FIRST.finditer(log) if what in m.group(1))
    summed = sum(int(m.group(2)) for m in SUMMARY.finditer(log) if what in m.group(1))
    return firsts, summed


def wait_accounted(server, what: str, refused: int) -> tuple[int, int]:
    """Waits until every refusal is either a first line or counted in a summary."""
    def accounted():
        f, s = tally(server.log_text(), what)
        return f + s == refused
    wait_until(accounted, 10.0, what=f"{refused} refusals for {what!r} in the log")
    return tally(server.log_text(), what)


def test_per_address_concurrency_refusals_are_logged_once_then_summarised(herald_factory):
    srv = herald_factory({"limits": {"connections_per_ip": 2},
                          "log": {"rejection_interval": "1s"}})
    topic = unique("rl")
    held = [SSEClient(srv.url(f"/sse?topic={topic}")) for _ in range(2)]
    try:
        for c in held:
            c.wait_ready()
        refused = 0
        t0 = time.monotonic()
        for _ in range(30):
            r = requests.get(srv.url(f"/sse?topic={topic}"), timeout=5, stream=True)
            assert r.status_code == 429, r.status_code
            r.close()
            refused += 1
        firsts, summed = wait_accounted(srv, "limits.connections_per_ip", refused)
        # One first line per worker that saw refusals (2 workers), not one per refusal.
        assert 1 <= firsts <= 2, srv.log_tail()
        assert summed == refused - firsts
        # The per-worker summaries come once per interval, not once per refusal: at most one per
        # second and worker over the time the refusals took to be logged (6 when they take under
        # 2 s; a loaded machine can take longer), and far fewer than the 30 refusals.
        took = time.monotonic() - t0
        summaries = len(SUMMARY.findall(srv.log_text()))
        assert summaries <= min(2 * (int(took) + 2), refused // 2), (summaries, took, srv.log_tail())
    finally:
        for c in held:
            c.close()


def test_new_connection_rate_refusals_name_the_limit(herald_factory):
    srv = herald_factory({"limits": {"new_connections_per_ip_per_s": 1},
                          "log": {"rejection_interval": "1s"}})
    topic = unique("rl")
    codes = []
    t0 = time.monotonic()
    for _ in range(12):
        with requests.get(srv.url(f"/sse?topic={topic}"), timeout=5, stream=True) as r:
            codes.append(r.status_code)
    took = time.monotonic() - t0
    refused = codes.count(429)
    # 1 a second, burst 2: at most 2 + 1 per second the 12 took (under 2 s idle: 8 refused).
    assert refused >= max(1, 12 - (2 + int(took) + 1)), (codes, took)
    firsts, _ = wait_accounted(srv, "limits.new_connections_per_ip_per_s", refused)
    assert 1 <= firsts <= 2


def test_publish_rate_refusals_are_logged(herald_factory):
    srv = herald_factory({"limits": {"publishes_per_key_per_s": 1},
                          "log": {"rejection_interval": "1s"}})
    topic = unique("rl")
    t0 = time.monotonic()
    codes = [requests.post(srv.url(f"/publish/{topic}"), data="x", timeout=5).status_code
             for _ in range(10)]
    took = time.monotonic() - t0
    refused = codes.count(429)
    # 1 a second, burst 2: at most 2 + 1 per second the 10 took (under 2 s idle: 6 refused).
    assert refused >= max(1, 10 - (2 + int(took) + 1)), (codes, took)
    wait_accounted(srv, "limits.publishes_per_key_per_s", refused)


def test_max_connections_refusals_are_logged(herald_factory):
    srv = herald_factory({"limits": {"max_connections": 2}, "log": {"rejection_interval": "1s"}},
                         workers=1)
    held = [socket.create_connection((HOST, srv.port), timeout=5) for _ in range(2)]
    try:
        codes = []
        for _ in range(5):
            codes.append(requests.get(srv.url("/healthz"), timeout=5).status_code)
            time.sleep(0.01)
        refused = codes.count(503)
        assert refused == 5, codes
        firsts, _ = wait_accounted(srv, "limits.max_connections", refused)
        assert firsts == 1
    finally:
        for s in held:
            s.close()
