"""The redis broker with real redis-server processes started here: several herald instances on
one Redis deliver one order with the same offsets everywhere; resume works across instances;
Redis killed and restarted, or the pub/sub link cut, loses no accepted message silently; topics
spread over two shards."""
import os
import shutil
import subprocess
import threading
import time

import pytest
import requests

from herald_test import wait_until
from herald_testlib import unique
from redis_testlib import (SSECollector, WSCollector, after, check_same_sequence,
                           close_all, redis_config, subscribers, two_instances, wait_after,
                           wait_count, wait_ready, warm_up)

# 10,000 messages published alternately to both instances (about 12 s here);
# HERALD_REDIS_N overrides it.
N = int(os.environ.get("HERALD_REDIS_N", "10000"))


def test_two_instances_deliver_one_order(redis1, herald_factory):
    a, b = two_instances(herald_factory, [redis1.address])
    topic = unique("r-order")
    subs = subscribers(a, b, topic)
    try:
        first = warm_up(a, topic, subs)
        answers = {}
        errors = []

        def publisher(name, order):
            s = {a: requests.Session(), b: requests.Session()}
            try:
                for i in range(N // 2):
                    srv = order[i % 2]  # alternate between the two instances
                    data = f"{name}-{i}"
                    r = s[srv].post(srv.url(f"/publish/{topic}"), data=data, timeout=10)
                    if r.status_code != 200:
                        errors.append((data, r.status_code, r.text))
                        return
                    answers[data] = r.json()["offset"]
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))

        threads = [threading.Thread(target=publisher, args=("p", (a, b))),
                   threading.Thread(target=publisher, args=("q", (b, a)))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors[:3]
        assert len(answers) == N
        # Offsets the HTTP answers gave are exactly first+1 .. first+N.
        assert sorted(answers.values()) == list(range(first + 1, first + N + 1))
        wait_after(subs, first, N, 60)
        check_same_sequence(subs, list(range(first + 1, first + N + 1)))
        # Each payload arrived with the offset its publish was answered with.
        by_offset = {o: d for _, o, d in subs[0].messages()}
        assert all(by_offset[o] == d for d, o in answers.items())
    finally:
        close_all(subs)


def test_resume_on_the_other_instance(redis1, herald_factory):
    a, b = two_instances(herald_factory, [redis1.address])
    topic = unique("r-resume")
    sse = SSECollector(a, topic)
    try:
        w = warm_up(a, topic, [sse])
        for i in range(20):
            requests.post(a.url(f"/publish/{topic}"), data=f"m{i}", timeout=10)
        wait_after([sse], w, 20, 10)
    finally:
        sse.close()
    epoch, last, _ = sse.messages()[-1]
    # Missed while away, published on both instances.
    for i in range(20, 50):
        srv = (a, b)[i % 2]
        assert requests.post(srv.url(f"/publish/{topic}"), data=f"m{i}", timeout=10).status_code == 200
    # SSE on the other instance with Last-Event-ID.
    again = SSECollector(b, topic, headers={"Last-Event-ID": f"{epoch}:{last}"})
    ws = WSCollector(b, topic, since={"epoch": epoch, "offset": last})
    try:
        assert ws.reply["type"] == "ok" and ws.reply["recovered"] is True, ws.reply
        assert ws.reply["epoch"] == epoch and ws.reply["offset"] == last + 30
        wait_count([again, ws], 30, 10)
        for c in (again, ws):
            got = c.messages()
            assert [o for _, o, _ in got] == list(range(last + 1, last + 31))
            assert [d for _, _, d in got] == [f"m{i}" for i in range(20, 50)]
        assert all(e is None for e, _, _ in again.items), again.items[:3]
    finally:
        again.close()
        ws.close()
    # An old epoch cannot be trusted: recovered false, no replay.
    old = WSCollector(b, topic, since={"epoch": "zzzzzzzz", "offset": 3})
    try:
        assert old.reply["recovered"] is False and old.reply["reason"] == "epoch changed"
    finally:
        old.close()


def test_redis_restart_mid_stream(redis1, herald_factory):
    a, b = two_instances(herald_factory, [redis1.address])
    topic = unique("r-restart")
    subs = subscribers(a, b, topic)
    try:
        warm_up(a, topic, subs)
        accepted, statuses = [], []
        stop = threading.Event()

        def publisher():
            s = {a: requests.Session(), b: requests.Session()}
            i = 0
            while not stop.is_set():
                srv = (a, b)[i % 2]
                try:
                    r = s[srv].post(srv.url(f"/publish/{topic}"), data=f"x{i}", timeout=10)
                except requests.RequestException as e:
                    statuses.append(repr(e))
                    continue
                statuses.append(r.status_code)
                if r.status_code == 200:
                    j = r.json()
                    accepted.append((j["epoch"], j["offset"], f"x{i}"))
                else:
                    # 504: in flight when Redis died, it may have run before: fate unknown.
                    assert r.status_code in (503, 504), r.text
                    code = {503: "unavailable", 504: "unknown"}[r.status_code]
                    assert r.json()["error"]["code"] == code, r.text
                    assert r.headers.get("Retry-After") == "1", r.headers
                i += 1
                time.sleep(0.002)

        t = threading.Thread(target=publisher)
        t.start()
        time.sleep(0.7)
        redis1.kill()
        # While Redis is down: publishes 503, readyz 503, history 503 (not an empty stream).
        # Each instance sees its links close at once, but acts on it when its workers run: a
        # bounded wait, not a fixed 0.3 s (too short for a loaded machine or ASan/TSan).
        for srv in (a, b):
            wait_until(lambda: requests.get(srv.url("/readyz"), timeout=5).status_code == 503,
                       10, what=f"/readyz 503 on {srv.port} after Redis died")
        n_down = len(statuses)
        for srv in (a, b):
            h = requests.get(srv.url(f"/history/{topic}"), timeout=5)
            assert h.status_code == 503, h.text
            assert h.json()["error"]["code"] == "unavailable", h.text
        time.sleep(0.7)
        assert 503 in statuses[n_down:], "no publish was refused while Redis was down"
        redis1.start()
        for srv in (a, b):
            wait_ready(srv, 15)
        time.sleep(1.0)
        stop.set()
        t.join(30)
        assert accepted and statuses.count(503) > 0

        def lost_of(s):
            """The accepted messages `s` has neither received nor been told of by a reset, and
            its resets. A reset covers a message of its own epoch up to its offset, and the rest
            of any other epoch: Redis restarted empty (no persistence), so a message acknowledged
            just before the kill and not yet relayed is gone, and the reset to the new epoch is
            how the subscriber learns it (docs/protocol.md, "Resume")."""
            if isinstance(s, WSCollector):
                got = {(j["epoch"], j["offset"]) for j in s.items if j.get("type") == "message"}
                resets = [(j["epoch"], j["offset"]) for j in s.items if j.get("type") == "reset"]
            else:
                got = {(e, o) for e, o, _ in s.messages()}
                resets = []
                for event, _, data in s.items:
                    if event == "reset":
                        import json
                        j = json.loads(data)
                        resets.append((j["epoch"], j["offset"]))
            lost = [m for m in accepted
                    if (m[0], m[1]) not in got
                    and not any((e == m[0] and o >= m[1]) or e != m[0] for e, o in resets)]
            return lost, resets

        # Everything accepted arrives, or a reset covering it does (bounded wait: the last ones
        # are still travelling); subscribers stayed connected.
        epochs = {e for e, _, _ in accepted}

        def settled(s):
            lost, resets = lost_of(s)
            return not lost and (len(epochs) == 1 or resets)

        deadline = time.monotonic() + 10
        while not all(settled(s) for s in subs) and time.monotonic() < deadline:
            time.sleep(0.1)
        for s in subs:
            assert s.error is None and not getattr(s, "closed", False), s.error
            lost, resets = lost_of(s)
            assert not lost, f"{type(s).__name__}: {len(lost)} accepted messages silently lost: {lost[:5]}"
            if len(epochs) > 1:
                assert resets, f"{type(s).__name__}: the epoch changed but no reset arrived"
    finally:
        close_all(subs)


def test_pubsub_link_cut_gap_is_filled(redis1, herald_factory):
    a, b = two_instances(herald_factory, [redis1.address])
    topic = unique("r-gap")
    subs = subscribers(a, b, topic)
    try:
        first = warm_up(a, topic, subs)
        done = threading.Event()
        errors = []

        def publisher():
            s = {a: requests.Session(), b: requests.Session()}
            try:
                for i in range(N):
                    srv = (a, b)[i % 2]
                    r = s[srv].post(srv.url(f"/publish/{topic}"), data=f"g{i}", timeout=10)
                    if r.status_code != 200:
                        errors.append((i, r.status_code))
            finally:
                done.set()

        t = threading.Thread(target=publisher)
        t.start()
        wait_after(subs, first, N // 4, 30)
        killed = redis1.cli("CLIENT", "KILL", "TYPE", "pubsub")
        assert int(killed.strip()) >= 2, killed
        t.join(120)
        assert not errors, errors[:5]
        wait_after(subs, first, N, 60)
        check_same_sequence(subs, list(range(first + 1, first + N + 1)))
        for s in subs:
            if isinstance(s, SSECollector):
                assert all(e is None for e, _, _ in s.items), "unexpected reset"
            else:
                assert all(j.get("type") == "message" for j in s.items)
        logs = a.log_text() + b.log_text()
        assert "filled a gap" in logs, "the cut produced no gap (publisher too slow?)"
    finally:
        close_all(subs)


def _fnv1a64(b: bytes) -> int:
    h = 0xcbf29ce484222325
    for c in b:
        h ^= c
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def _mix64(x: int) -> int:
    m = 0xFFFFFFFFFFFFFFFF
    x ^= x >> 30
    x = (x * 0xbf58476d1ce4e5b9) & m
    x ^= x >> 27
    x = (x * 0x94d049bb133111eb) & m
    x ^= x >> 31
    return x


def hrw_shard(topic: str, shards: list[str]) -> int:
    """The documented hash: max over shards of mix64(fnv1a64(shard) ^ mix64(fnv1a64(topic)))."""
    scores = [_mix64(_fnv1a64(s.encode()) ^ _mix64(_fnv1a64(topic.encode()))) for s in shards]
    return max(range(len(shards)), key=lambda i: scores[i])


def test_two_shards(redis1, redis2, herald_factory):
    shards = [redis1.address, redis2.address]
    a, b = two_instances(herald_factory, shards)
    topics = [unique(f"r-shard{i}") for i in range(24)]
    where = {t: hrw_shard(t, shards) for t in topics}
    assert set(where.values()) == {0, 1}, "24 topics all hashed to one shard"
    live = [t for t in topics if where[t] == 0][:2] + [t for t in topics if where[t] == 1][:2]
    subs = {t: [WSCollector(a, t), SSECollector(b, t)] for t in live}
    try:
        warm = {t: warm_up(a, t, subs[t]) for t in live}
        for i in range(10):
            for t in topics:
                srv = (a, b)[i % 2]
                r = requests.post(srv.url(f"/publish/{t}"), data=f"{t}-{i}", timeout=10)
                assert r.status_code == 200, r.text
        for t in live:
            wait_after(subs[t], warm[t], 10, 15)
            for s in subs[t]:
                got = after(s, warm[t])
                assert [o for _, o, _ in got] == list(range(warm[t] + 1, warm[t] + 11))
                assert [d for _, _, d in got] == [f"{t}-{i}" for i in range(10)]
        # Each topic's keys live on the shard the documented hash names, and only there.
        for t in topics:
            owner, other = (redis1, redis2) if where[t] == 0 else (redis2, redis1)
            assert owner.cli("EXISTS", f"herald:{{{t}}}:s").strip() == "1", t
            assert other.cli("EXISTS", f"herald:{{{t}}}:s").strip() == "0", t
        # History and resume come from the right shard too.
        for t in topics[:6]:
            h = requests.get(b.url(f"/history/{t}"), timeout=10).json()
            expect = warm[t] + 10 if t in live else 10
            assert h["offset"] == expect and len(h["messages"]) == expect
    finally:
        for v in subs.values():
            close_all(v)


@pytest.mark.parametrize("broker", ["memory", "redis"])
def test_metrics_pass_promtool(broker, redis1, herald_factory):
    """`promtool check metrics` (Debian's prometheus package) finds nothing to say about /metrics,
    with the series each broker adds after some traffic."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: scripts/install-deps.sh installs it (package prometheus)"
    srv = herald_factory(redis_config([redis1.address]) if broker == "redis" else {})
    wait_ready(srv)
    topic = unique("prom")
    for i in range(5):
        assert requests.post(srv.url(f"/publish/{topic}"), data=f"m{i}", timeout=10).status_code == 200
    text = requests.get(srv.url("/metrics"), timeout=10).text
    assert "herald_redis_publish_latency_seconds" in text or broker == "memory"
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=30)
    out = (p.stdout + p.stderr).decode()
    assert p.returncode == 0 and not out.strip(), f"promtool check metrics (exit {p.returncode}):\n{out}"
