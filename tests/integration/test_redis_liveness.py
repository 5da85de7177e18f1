"""A Redis that stops answering, with real redis-server processes started here: frozen with
SIGSTOP, or busy in DEBUG SLEEP. Herald notices within redis.command_timeout, answers every
request meanwhile (publish 504 `unknown` when the request reached Redis, 503 `unavailable` when it
did not, /readyz 503 naming the shard), recovers by itself, and loses or doubles no accepted
message. Also: /readyz follows publishing when Redis comes back, and /history returns the same
window with either broker.

Every freeze is undone in a finally block (RedisServer.frozen), every loop is bounded in time.
"""
import collections
import json
import os
import threading
import time

import pytest
import requests

from herald_testlib import SSEClient, error_of, unique
from herald_test.server import server_fds, server_rss_kib
from redis_testlib import (RedisServer, SSECollector, WSCollector, after, close_all, redis_config,
                           two_instances, wait_after, wait_ready, warm_up)

TIMEOUT = 1.0  # redis.command_timeout in these tests
SLACK = 1.0    # scheduling, the HTTP round trip, a loaded 2-core machine


def live_config(shards, **over) -> dict:
    cfg = redis_config(shards, **over)
    cfg["redis"] = {**cfg["redis"], "command_timeout": "1s", "ping_interval": "200ms"}
    return cfg


def timed(fn, *args, **kw):
    t0 = time.monotonic()
    r = fn(*args, **kw)
    return r, time.monotonic() - t0


def down_body(redis) -> dict:
    return {"status": "unavailable",
            "error": {"code": "broker_down", "message": f"redis shard {redis.address} is down"}}


def payloads(sub) -> list[str]:
    return [d for _, _, d in sub.messages()]


def wait_for_payload(subs, data: str, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(data in payloads(s) for s in subs):
            return
        time.sleep(0.05)
    raise AssertionError(f"{data!r} did not reach every subscriber within {timeout}s")


ADMIN_KEY = "liveness-admin-key-0123456789abcdef"


def test_frozen_redis_is_noticed_within_command_timeout(redis1, herald_factory):
    cfg = live_config([redis1.address])
    cfg["auth"] = {"publish_keys": [ADMIN_KEY], "allow_unauthenticated_publish": True}
    h = herald_factory(cfg)
    wait_ready(h)
    topic = unique("frozen")
    sse = SSECollector(h, topic)
    refused = []  # payloads answered 503: they must never be delivered
    try:
        warm_up(h, topic, [sse])
        with redis1.frozen():
            # Sent to Redis, never answered: its fate is unknown.
            r, took = timed(requests.post, h.url(f"/publish/{topic}"), data="maybe", timeout=5)
            assert took <= TIMEOUT + SLACK, f"publish answered after {took:.2f}s"
            assert r.status_code == 504, r.text
            code, msg = error_of(r)
            assert code == "unknown" and "Idempotency-Key" in msg, r.text
            # From then on, until Redis answers again: refused at once, with Retry-After.
            deadline = time.monotonic() + 2.5
            n = 0
            while time.monotonic() < deadline:
                data = f"never-{n}"
                n += 1
                r, took = timed(requests.post, h.url(f"/publish/{topic}"), data=data, timeout=5)
                assert took <= TIMEOUT + SLACK, f"publish answered after {took:.2f}s"
                assert r.status_code in (503, 504), r.text
                if r.status_code == 503:
                    assert error_of(r)[0] == "unavailable" and r.headers.get("Retry-After") == "1"
                    refused.append(data)
                time.sleep(0.05)
            assert refused, "no publish was refused while Redis was frozen"
            r, took = timed(requests.get, h.url("/readyz"), timeout=5)
            assert r.status_code == 503 and r.json() == down_body(redis1), r.text
            batch = {"messages": [{"topic": topic, "data": "never-b1"},
                                  {"topic": topic, "data": "never-b2"}]}
            r, took = timed(requests.post, h.url("/publish"), json=batch, timeout=5)
            assert took <= TIMEOUT + SLACK and r.status_code == 503, (took, r.text)
            assert error_of(r)[0] == "unavailable" and r.headers.get("Retry-After") == "1"
            refused += ["never-b1", "never-b2"]
            r, took = timed(requests.get, h.url(f"/history/{topic}"), timeout=5)
            assert took <= TIMEOUT + SLACK and r.status_code == 503, (took, r.text)
            assert error_of(r)[0] == "unavailable"
            r, took = timed(requests.post, h.url("/admin/disconnect"), json={"user": "nobody"},
                            headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=5)
            assert took <= TIMEOUT + SLACK and r.status_code == 503, (took, r.text)
        # It comes back by itself.
        wait_ready(h, 10)
        r = requests.post(h.url(f"/publish/{topic}"), data="after", timeout=5)
        assert r.status_code == 200, r.text
        wait_for_payload([sse], "after", 10)
        got = payloads(sse)
        assert not set(got) & set(refused), "a publish answered 503 was delivered"
        assert got.count("maybe") <= 1
    finally:
        sse.close()


def test_unknown_publish_retried_with_its_key_counts_once(redis1, herald_factory):
    a, b = two_instances(herald_factory, [redis1.address], config=live_config([redis1.address]))
    topic = unique("retry")
    subs = [SSECollector(a, topic), WSCollector(b, topic)]
    try:
        warm_up(a, topic, subs)
        key = unique("key")
        with redis1.frozen():
            r = requests.post(a.url(f"/publish/{topic}"), data="once",
                              headers={"Idempotency-Key": key}, timeout=5)
            assert r.status_code == 504 and error_of(r)[0] == "unknown", r.text
            # Redis still frozen: a retry is not applied now either (refused or unknown).
            r = requests.post(a.url(f"/publish/{topic}"), data="once",
                              headers={"Idempotency-Key": key}, timeout=5)
            assert r.status_code in (503, 504), r.text
        wait_ready(a, 10)
        wait_ready(b, 10)
        # Redis ran the first request when it woke up: the retry is answered as its duplicate.
        r = requests.post(b.url(f"/publish/{topic}"), data="once",
                          headers={"Idempotency-Key": key}, timeout=5)
        assert r.status_code == 200, r.text
        offset = r.json()["offset"]
        r = requests.post(a.url(f"/publish/{topic}"), data="marker", timeout=5)
        assert r.status_code == 200, r.text
        wait_for_payload(subs, "marker", 10)
        for s in subs:
            once = [(o, d) for _, o, d in s.messages() if d == "once"]
            assert once == [(offset, "once")], f"{type(s).__name__}: {once}"
    finally:
        close_all(subs)


def test_publishes_never_sent_are_refused_and_never_applied(redis1, herald_factory):
    """40 publishes of 1 MB against a frozen Redis: the socket buffers take a few, the rest stay
    in herald's output buffer. Those that reached the socket answer 504 unknown (Redis runs them
    when it wakes up), the others 503, and Redis never sees them."""
    cfg = live_config([redis1.address])
    # The history answer below holds several of them: above the 1 MiB default send budget.
    cfg["limits"] = {"max_message_bytes": "1MiB", "max_queued_bytes": "64MiB"}
    h = herald_factory(cfg)
    wait_ready(h)
    topic = unique("unsent")
    status = {}

    def one(i):
        try:
            r = requests.post(h.url(f"/publish/{topic}"), data=f"big{i}:" + "x" * 1_000_000,
                              timeout=10)
            status[f"big{i}"] = r.status_code
        except requests.RequestException as e:
            status[f"big{i}"] = repr(e)

    with redis1.frozen():
        threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
    assert set(status.values()) <= {503, 504} and len(status) == 40, status
    refused = {k for k, v in status.items() if v == 503}
    unknown = {k for k, v in status.items() if v == 504}
    assert refused, f"every publish reached the socket: {collections.Counter(status.values())}"
    wait_ready(h, 10)
    r = requests.get(h.url(f"/history/{topic}"), timeout=10)
    assert r.status_code == 200, r.text
    applied = [m["data"].split(":")[0] for m in r.json()["messages"]]
    assert len(applied) == len(set(applied)) and set(applied) <= unknown, (applied, refused)


@pytest.mark.parametrize("fault", ["sigstop", "debug_sleep"])
def test_stalled_redis_loses_and_doubles_nothing(fault, redis1, herald_factory):
    a, b = two_instances(herald_factory, [redis1.address], config=live_config([redis1.address]))
    topic = unique(f"stall-{fault}")
    subs = [WSCollector(a, topic), SSECollector(b, topic), SSECollector(a, topic),
            WSCollector(b, topic)]
    results = []  # (payload, status, offset, seconds)
    stop = threading.Event()

    def publisher():
        s = {a: requests.Session(), b: requests.Session()}
        for i in range(20000):
            if stop.is_set():
                return
            srv = (a, b)[i % 2]
            data = f"c{i}"
            t0 = time.monotonic()
            try:
                r = s[srv].post(srv.url(f"/publish/{topic}"), data=data, timeout=10)
            except requests.RequestException as e:
                results.append((data, repr(e), None, time.monotonic() - t0))
                continue
            off = r.json()["offset"] if r.status_code == 200 else None
            results.append((data, r.status_code, off, time.monotonic() - t0))
            time.sleep(0.003)

    try:
        first = warm_up(a, topic, subs)
        base = {srv: (server_fds(srv.proc.pid), server_rss_kib(srv.proc.pid)) for srv in (a, b)}
        t = threading.Thread(target=publisher)
        t.start()
        try:
            time.sleep(1.0)
            if fault == "sigstop":
                with redis1.frozen():
                    time.sleep(3.0)
            else:
                p = redis1.debug_sleep(3)
                p.wait(15)
            wait_ready(a, 10)
            wait_ready(b, 10)
            time.sleep(1.0)
        finally:
            stop.set()
            t.join(30)
        r = requests.post(a.url(f"/publish/{topic}"), data="end", timeout=5)
        assert r.status_code == 200, r.text
        end = r.json()["offset"]
        wait_after(subs, first, end - first, 20)

        by_status = collections.Counter(st for _, st, _, _ in results)
        assert set(by_status) <= {200, 503, 504}, by_status
        assert by_status[503] + by_status[504] > 0, f"the stall went unnoticed: {by_status}"
        slow = [(d, st, round(s, 2)) for d, st, _, s in results if s > TIMEOUT + SLACK]
        assert not slow, f"answers slower than command_timeout + {SLACK}s: {slow[:5]}"
        after_fault = [st for _, st, _, _ in results[-20:]]
        assert after_fault.count(200) == len(after_fault), f"not recovered: {after_fault}"

        ok = {d: off for d, st, off, _ in results if st == 200}
        refused = {d for d, st, _, _ in results if st == 503}
        unknown = {d for d, st, _, _ in results if st == 504}
        ref = None
        for s in subs:
            got = [m for m in after(s, first) if m[1] <= end]
            offsets = [o for _, o, _ in got]
            name = type(s).__name__
            assert offsets == list(range(first + 1, end + 1)), (
                f"{name}: missing or doubled offsets "
                f"{sorted(set(range(first + 1, end + 1)) ^ set(offsets))[:10]}")
            count = collections.Counter(d for _, _, d in got)
            where = {d: o for _, o, d in got}
            assert all(count[d] == 1 and where[d] == o for d, o in ok.items()), \
                f"{name}: an acknowledged message is missing, doubled or elsewhere"
            assert not refused & set(count), f"{name}: a publish answered 503 was delivered"
            assert all(count[d] <= 1 for d in unknown), f"{name}: an unknown publish doubled"
            if ref is None:
                ref = got
            assert got == ref, f"{name} saw another sequence than the first subscriber"
        for srv, (fds0, rss0) in base.items():
            fds, rss = server_fds(srv.proc.pid), server_rss_kib(srv.proc.pid)
            assert fds <= fds0 + 4, f"fds {fds0} -> {fds}"
            slack = int(os.environ.get("HERALD_TEST_RSS_SLACK_KIB", 32 * 1024))
            assert rss <= rss0 + slack, f"RSS {rss0} -> {rss} KiB"
    finally:
        close_all(subs)


def test_readyz_names_the_shard_that_is_down(redis1, herald_factory):
    h = herald_factory(live_config([redis1.address]))
    wait_ready(h)
    redis1.kill()
    deadline = time.monotonic() + 5
    first = None
    while True:
        r = requests.get(h.url("/readyz"), timeout=5)
        if r.status_code == 503:
            # The workers notice the loss one link at a time: until all have, /readyz names the
            # links already down (then it says the whole shard is).
            first = first or r.json()
            assert r.json()["error"]["code"] == "broker_down", r.text
            assert f"redis shard {redis1.address}" in r.json()["error"]["message"], r.text
            if r.json() == down_body(redis1):
                break
        assert time.monotonic() < deadline, (
            f"/readyz did not say the shard is down: {r.status_code} {r.text} (first: {first})")
        time.sleep(0.05)


def test_readyz_turns_ready_when_publishing_works(redis1, herald_factory):
    # The default backoff cap: after some seconds down, each link waits up to 5 s between tries.
    cfg = redis_config([redis1.address])
    cfg["redis"] = {**cfg["redis"], "reconnect_max_backoff": "5s"}
    h = herald_factory(cfg)
    wait_ready(h)
    topic = unique("ready")
    redis1.kill()
    time.sleep(7)  # 100 ms doubling reaches the 5 s cap
    redis1.start()
    t_pub = t_ready = None
    deadline = time.monotonic() + 20
    while (t_pub is None or t_ready is None) and time.monotonic() < deadline:
        # A fresh connection each time: the kernel spreads them over the workers.
        if t_pub is None and requests.post(h.url(f"/publish/{topic}"), data="x",
                                           timeout=5).status_code == 200:
            t_pub = time.monotonic()
        # Timed at the start of the probe that saw 200: how long this process took to send and
        # read it (seconds, at times, on a loaded machine) is not the server's lag.
        asked = time.monotonic()
        if t_ready is None and requests.get(h.url("/readyz"), timeout=5).status_code == 200:
            t_ready = asked
        time.sleep(0.02)
    assert t_pub is not None and t_ready is not None, (t_pub, t_ready)
    assert t_ready - t_pub <= 0.5, f"/readyz turned 200 {t_ready - t_pub:.2f}s after publishing did"
    # And once ready, every worker publishes.
    codes = [requests.post(h.url(f"/publish/{topic}"), data="y", timeout=5).status_code
             for _ in range(20)]
    assert codes == [200] * 20, codes


def batch_publish(h, topic: str, n: int):
    """n messages to `topic` in batches of 1000 (one POST /publish each)."""
    with requests.Session() as s:
        for start in range(0, n, 1000):
            msgs = [{"topic": topic, "data": f"m{i}"} for i in range(start, min(n, start + 1000))]
            r = s.post(h.url("/publish"), data=json.dumps({"messages": msgs}),
                       headers={"Content-Type": "application/json"}, timeout=60)
            assert r.status_code == 200, r.text


def offsets(h, topic: str, query: str = "") -> list[int]:
    """The offsets of one /history window, following `"more": true` pages (an answer holds at
    most half of limits.max_queued_bytes) with `since` = the last offset received."""
    got, q = [], query
    for _ in range(100):
        r = requests.get(h.url(f"/history/{topic}{q}"), timeout=30)
        assert r.status_code == 200, r.text
        body = r.json()
        got += [m["offset"] for m in body["messages"]]
        if not body.get("more"):
            return got
        # The window's rest: the next page starts after the last offset received, up to the
        # window's end (its size is what is still due).
        due = int(dict(p.split("=") for p in query.lstrip("?").split("&") if p).get("limit", 0) or 0)
        q = f"?since={got[-1]}" + (f"&limit={due - len(got)}" if due else "")
    raise AssertionError(f"/history/{topic}{query}: more than 100 pages")


@pytest.mark.parametrize("broker", ["memory", "redis"])
def test_history_window_is_one_rule_on_both_brokers(broker, herald_factory):
    redis = RedisServer() if broker == "redis" else None

    def start(size: int):
        history = {"size": size, "max_recovery": 300, "ttl": "5m"}
        if redis:
            h = herald_factory(redis_config([redis.address], history=history))
        else:
            h = herald_factory({"history": history})
        wait_ready(h)
        return h

    try:
        h = start(100)
        t = unique("small")
        batch_publish(h, t, 150)
        # Without since: the newest `limit` (history.size by default) held messages.
        assert offsets(h, t) == list(range(51, 151))
        assert offsets(h, t, "?limit=5") == list(range(146, 151))
        # With since: the oldest `limit` held after it.
        assert offsets(h, t, "?since=0&limit=5") == list(range(51, 56))
        assert offsets(h, t, "?since=10&limit=3") == list(range(51, 54))
        assert offsets(h, t, "?since=120&limit=5") == list(range(121, 126))
        assert offsets(h, t, "?since=148") == [149, 150]
        assert offsets(h, t, "?since=150") == []
        h = start(20000)
        t = unique("big")
        batch_publish(h, t, 79162)
        assert offsets(h, t) == list(range(59163, 79163))
        assert offsets(h, t, "?since=79000&limit=3") == [79001, 79002, 79003]
    finally:
        if redis:
            redis.kill()


def test_sse_retry_means_this_instance_follows_the_topic(redis1, herald_factory):
    """An SSE stream's first block, `retry:`, comes only once the instance follows the topic's
    channel in Redis, so a message published anywhere after the client read it reaches it. (Before,
    `retry:` left at once and a publish on another instance in the next milliseconds was lost.)"""
    cfg = live_config([redis1.address])
    a, b = two_instances(herald_factory, [redis1.address], config=cfg)
    topic = unique("follow")
    sse = None
    try:
        with redis1.frozen():
            sse = SSEClient(a.url(f"/sse?topic={topic}"), max_time=30)
            # (curl prints the headers with the first body bytes, so none are seen here either.)
            time.sleep(0.5)  # well inside command_timeout: the SUBSCRIBE is unanswered
            assert sse.body_bytes() == b"", \
                f"a block left before the subscription could be live: {sse.body_bytes()!r}"
        sse.wait_ready(10)
        r = requests.post(b.url(f"/publish/{topic}"), data="first", timeout=5)
        assert r.status_code == 200, r.text
        assert sse.next_event(5).data == "first"
    finally:
        if sse:
            sse.close()


def test_held_sse_events_carry_the_positions_up_to_themselves(redis1, redis2, herald_factory):
    """A two-topic SSE stream holds a topic's messages until the other topic is answered (its shard
    is frozen here). When they leave, each event's id must name the positions up to that event,
    not the latest: a client cut after the first held event resumes from it and misses nothing.
    (Before, every held event carried the last one's position: resuming after the first skipped
    the others.)"""
    shards = [redis1.address, redis2.address]
    h = herald_factory(live_config(shards))
    wait_ready(h)

    def shard_of(topic: str):
        with SSEClient(h.url(f"/sse?topic={topic}"), max_time=10) as s:
            s.wait_ready(5)
            for r in (redis1, redis2):
                if topic in r.cli("PUBSUB", "CHANNELS", "*"):
                    return r
        raise AssertionError(f"no shard follows {topic}")

    on = {}
    for i in range(40):
        t = unique(f"held{i}")
        on.setdefault(id(shard_of(t)), t)
        if len(on) == 2:
            break
    assert len(on) == 2, "no pair of topics on different shards in 40 tries"
    a, b = on[id(redis1)], on[id(redis2)]  # a on redis1, b on redis2
    sse = None
    try:
        with redis2.frozen():
            sse = SSEClient(h.url(f"/sse?topic={a}&topic={b}"), max_time=30)
            time.sleep(0.3)  # a is answered, b waits for redis2
            offsets = [requests.post(h.url(f"/publish/{a}"), data=f"m{n}", timeout=5).json()["offset"]
                       for n in range(3)]
            time.sleep(0.3)  # the three reach the stream and are held
        sse.wait_ready(10)
        ids = [sse.next_event(5).id for _ in range(3)]
    finally:
        if sse:
            sse.close()
    got = [int(i.split(",")[0].split(":")[1]) for i in ids]
    assert got == offsets, f"ids {ids} name positions {got}, not each event's own {offsets}"
