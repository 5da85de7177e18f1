"""redis.replicas_ack (issue 14): a publish is answered 200 and delivered only once WAIT says a
replica has it. A stalled replica: the publish answers 503 and reaches nobody; its retry with the
same Idempotency-Key, once the replica is back, answers 200 (duplicate) and delivers it once."""
import time

import requests

from herald_test import unique, wait_until
from herald_test.metrics import metric_sum, metrics_text
from herald_test.redis import RedisServer, redis_config
from herald_test.server import wait_ready
from herald_test.ws import WSCollector


def test_publish_waits_for_a_replica_and_a_refused_one_is_delivered_once_on_retry(
        herald_factory):
    master = RedisServer()
    replica = RedisServer(extra=("--replicaof", "127.0.0.1", str(master.port)))
    try:
        wait_until(lambda: "state=online" in master.replication(), 10,
                   what="the replica in sync")
        cfg = redis_config([master.address])
        cfg["redis"].update({"replicas_ack": 1, "replicas_ack_timeout": "300ms",
                             "command_timeout": "2s"})
        h = herald_factory(cfg)
        wait_ready(h)
        topic = unique("ack")
        sub = WSCollector(h, topic)
        try:
            url = h.url(f"/publish/{topic}")
            r = requests.post(url, data="one", timeout=5)
            assert r.status_code == 200, r.text
            wait_until(lambda: len(sub.messages()) == 1, 5, what="the first message")
            with replica.frozen():
                r = requests.post(url, data="two", headers={"Idempotency-Key": "k2"}, timeout=5)
                assert r.status_code == 503, r.text
                assert r.json()["error"]["code"] == "unavailable"
                time.sleep(0.5)
                assert [m[2] for m in sub.messages()] == ["one"]  # not visible: not confirmed
                # History does not show it either.
                hist = requests.get(h.url(f"/history/{topic}"), timeout=5).json()
                assert [m.get("data") for m in hist["messages"]] == ["one"], hist
            r = requests.post(url, data="two", headers={"Idempotency-Key": "k2"}, timeout=5)
            assert r.status_code == 200 and r.json().get("duplicate") is True, r.text
            # Confirmed by the retry: delivered now, not only when a later publish fills the gap.
            wait_until(lambda: len(sub.messages()) == 2, 3, what="the retried message")
            r = requests.post(url, data="three", timeout=5)
            assert r.status_code == 200, r.text
            wait_until(lambda: len(sub.messages()) >= 3, 5, what="the retried and next message")
            time.sleep(0.3)
            assert [m[2] for m in sub.messages()] == ["one", "two", "three"]
            assert [m[1] for m in sub.messages()] == [1, 2, 3]
            m = metrics_text(h)
            assert metric_sum(m, "herald_redis_shard_ack_failures_total",
                              shard=master.address) == 1
        finally:
            sub.close()
    finally:
        replica.kill()
        master.kill()
