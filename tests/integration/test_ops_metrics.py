"""Operations metrics (issue 17): latency histograms, loop lag, queued bytes, resumes by outcome,
reconnections and build info on a live /metrics, moved by real clients; and a real Prometheus
(Debian's) scraping herald on loopback, answering a histogram_quantile through its HTTP API."""
import asyncio
import math
import os
import shutil
import socket
import subprocess
import time

import pytest
import requests

from herald_test import unique, wait_until
from herald_test.metrics import metric_sum, metrics_text, parse_metrics
from herald_test.sse import SSEClient
from herald_test.ws import ws_connect, ws_op_collect, ws_recv_json

FOREIGN_EPOCH = "zzzzzzzz"


@pytest.fixture(scope="module")
def herald_config():
    return {"history": {"size": 10, "max_recovery": 5}, "poll": {"timeout": "1s"}}


def hist_count(text, name, **labels):
    return metric_sum(text, name + "_count", **labels) or 0


def bucket_values(text, name, **labels):
    """le -> cumulative count for one histogram series."""
    out = {}
    for n, l, v in parse_metrics(text):
        if n == name + "_bucket" and all(l.get(k) == w for k, w in labels.items()):
            out[l["le"]] = out.get(l["le"], 0) + v
    return out


def test_histograms_are_typed_cumulative_and_build_info_is_there(server):
    text = metrics_text(server)
    for name in ("herald_delivery_latency_seconds", "herald_publish_duration_seconds",
                 "herald_subscribe_duration_seconds", "herald_event_loop_lag_seconds"):
        assert f"# TYPE {name} histogram" in text, name
    b = bucket_values(text, "herald_delivery_latency_seconds", transport="ws")
    assert "+Inf" in b and "0.0001" in b and "10" in b, b
    vals = [b[k] for k in sorted((k for k in b if k != "+Inf"), key=float)] + [b["+Inf"]]
    assert vals == sorted(vals), f"buckets not cumulative: {b}"
    info = [l for n, l, v in parse_metrics(text) if n == "herald_build_info" and v == 1]
    assert len(info) == 1 and info[0]["version"] and info[0]["commit"], info
    if shutil.which("promtool"):
        p = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
        assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), p.stdout + p.stderr


def test_delivery_publish_and_subscribe_histograms_move_with_traffic(server):
    topic = unique("opsm")
    n = 5

    async def run():
        before = metrics_text(server)
        ws = await ws_connect(server, f"topic={topic}")
        with SSEClient(server.url(f"/sse?topic={topic}")) as sse:
            sse.wait_ready()
            for i in range(n):
                r = await asyncio.to_thread(requests.post, server.url(f"/publish/{topic}"),
                                            data=f"m{i}", timeout=5)
                assert r.status_code == 200, r.text
            for _ in range(n):
                await ws_recv_json(ws)
                sse.next_event()
            # A long-poll that finds a message waiting after its cursor answers at once.
            r = await asyncio.to_thread(requests.post, server.url(f"/publish/{topic}"),
                                        data="late", timeout=5)
            epoch, off = r.json()["epoch"], r.json()["offset"]
            after_publish = metrics_text(server)
        await ws.close()
        return before, after_publish, epoch, off

    before, after, epoch, off = asyncio.run(run())
    # Each live message counted once per transport when its write left (plus the 6th).
    for t in ("ws", "sse"):
        got = hist_count(after, "herald_delivery_latency_seconds", transport=t) - \
            hist_count(before, "herald_delivery_latency_seconds", transport=t)
        assert got >= n, (t, got)
    assert hist_count(after, "herald_publish_duration_seconds") - \
        hist_count(before, "herald_publish_duration_seconds") == n + 1
    assert hist_count(after, "herald_subscribe_duration_seconds") - \
        hist_count(before, "herald_subscribe_duration_seconds") >= 2
    # Latency is small on loopback: every delivery fell within 1 s.
    b = bucket_values(after, "herald_delivery_latency_seconds", transport="ws")
    assert b["1"] == b["+Inf"], b
    s = metric_sum(after, "herald_delivery_latency_seconds_sum", transport="ws")
    assert 0 < s < hist_count(after, "herald_delivery_latency_seconds", transport="ws"), s


def test_replays_are_not_counted_as_delivery_latency(server):
    """A resume's replay carries messages published long before: they must not count as
    publish-to-write latency (they would fill the +Inf bucket)."""
    topic = unique("opsr")
    with requests.Session() as s:
        for i in range(1, 6):
            assert s.post(server.url(f"/publish/{topic}"), data=str(i), timeout=5).status_code == 200
        epoch = s.get(server.url(f"/history/{topic}"), timeout=5).json()["epoch"]
    time.sleep(0.3)
    before = metrics_text(server)
    with SSEClient(server.url(f"/sse?topic={topic}&last_event_id={epoch}:1")) as sse:
        sse.wait_ready()
        assert [sse.next_event().data for _ in range(4)] == ["2", "3", "4", "5"]
    after = metrics_text(server)
    assert hist_count(after, "herald_delivery_latency_seconds", transport="sse") == \
        hist_count(before, "herald_delivery_latency_seconds", transport="sse")


def test_resumes_by_outcome_and_reconnections(server):
    topic = unique("opso")
    with requests.Session() as s:
        for i in range(1, 31):
            assert s.post(server.url(f"/publish/{topic}"), data=str(i), timeout=5).status_code == 200
        epoch = s.get(server.url(f"/history/{topic}"), timeout=5).json()["epoch"]

    def outcome(text, o):
        return metric_sum(text, "herald_resumes_total", outcome=o) or 0

    before = metrics_text(server)

    async def ws_resume(since):
        ws = await ws_connect(server)
        ok, _ = await ws_op_collect(ws, {"op": "subscribe", "topic": topic, "id": "s", "since": since})
        # A second resume on the same connection is not a second reconnection.
        ok2, _ = await ws_op_collect(ws, {"op": "subscribe", "topic": topic + "x", "id": "t",
                                          "since": {"epoch": FOREIGN_EPOCH, "offset": 1}})
        await ws.close()
        return ok, ok2

    ok, _ = asyncio.run(ws_resume({"epoch": epoch, "offset": 28}))
    assert ok["recovered"] is True, ok
    ok, _ = asyncio.run(ws_resume({"epoch": epoch, "offset": 5}))
    assert ok["recovered"] is False and ok["reason"] == "gap too large", ok
    with SSEClient(server.url(f"/sse?topic={topic}"),
                   headers={"Last-Event-ID": f"{FOREIGN_EPOCH}:3"}) as sse:
        sse.wait_ready()
        assert sse.next_event().event == "reset"
    after = metrics_text(server)
    # recovered: 1; too_old: 1; reset: the two foreign-epoch ws subscribes and the SSE one.
    assert outcome(after, "recovered") - outcome(before, "recovered") == 1
    assert outcome(after, "too_old") - outcome(before, "too_old") == 1
    assert outcome(after, "reset") - outcome(before, "reset") == 3

    def rc(text, t):
        return metric_sum(text, "herald_reconnections_total", transport=t) or 0

    assert rc(after, "ws") - rc(before, "ws") == 2
    assert rc(after, "sse") - rc(before, "sse") == 1


def test_event_loop_lag_and_queued_bytes_per_worker(server):
    wait_until(lambda: all(
        hist_count(metrics_text(server), "herald_event_loop_lag_seconds", worker=str(w)) >= 2
        for w in range(2)), 10, what="two sweeps on each worker")
    text = metrics_text(server)
    for w in ("0", "1"):
        # The sweep runs every 250 ms on an idle loopback server: late by far less than 250 ms.
        b = bucket_values(text, "herald_event_loop_lag_seconds", worker=w)
        assert b["0.25"] >= 0.9 * b["+Inf"], b
        assert metric_sum(text, "herald_queued_bytes", worker=w) is not None


# ------------------------------------------------------------------ a real Prometheus


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not shutil.which("prometheus"), reason="Debian package prometheus not installed")
@pytest.mark.release_only  # Prometheus reading the format
def test_real_prometheus_scrapes_herald_and_answers_a_quantile(server, tmp_path):
    port = free_port()
    target = server.url("/").split("//", 1)[1].rstrip("/")
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 250ms\n  scrape_timeout: 200ms\n"
        "scrape_configs:\n  - job_name: herald\n    static_configs:\n"
        f"      - targets: ['{target}']\n")
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    api = f"http://127.0.0.1:{port}/api/v1"
    try:
        def query(q):
            r = requests.get(f"{api}/query", params={"query": q}, timeout=5)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["status"] == "success", body
            return body["data"]["result"]

        def up():
            try:
                return any(float(s["value"][1]) == 1 for s in query('up{job="herald"}'))
            except (requests.ConnectionError, AssertionError):
                return False

        wait_until(up, 20, what="Prometheus scraping herald (up == 1)")
        topic = unique("prom")

        async def traffic():
            ws = await ws_connect(server, f"topic={topic}")
            deadline = time.monotonic() + 3
            i = 0
            while time.monotonic() < deadline and i < 300:  # bounded in count and in time
                r = await asyncio.to_thread(requests.post, server.url(f"/publish/{topic}"),
                                            data=str(i), timeout=5)
                assert r.status_code == 200
                await ws_recv_json(ws)
                i += 1
                await asyncio.sleep(0.01)
            await ws.close()
            return i

        sent = asyncio.run(traffic())
        assert sent > 10
        q = ('histogram_quantile(0.99, sum by (le) '
             '(rate(herald_delivery_latency_seconds_bucket{transport="ws"}[5s])))')
        got = {}

        def quantile_known():
            res = query(q)
            if not res:
                return False
            got["v"] = float(res[0]["value"][1])
            return not math.isnan(got["v"])

        wait_until(quantile_known, 10, what=f"a value for {q}")
        # Loopback delivery: the 99th percentile is above 0 and well under a second.
        assert 0 < got["v"] < 1.0, got
        res = query("sum(herald_delivery_latency_seconds_count)")
        assert float(res[0]["value"][1]) >= sent, res
    finally:
        prom.terminate()
        try:
            prom.wait(10)
        except subprocess.TimeoutExpired:
            prom.kill()
            prom.wait(5)
        log.close()
