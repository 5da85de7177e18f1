"""Production Redis, the quick parts (issue 14): AUTH with a Redis 6 ACL user (redis.username,
redis.password, redis.password_env), a wrong password, and the ROLE check that keeps herald off
a replica. Real redis-server processes on 127.0.0.1."""
import requests

from herald_test import unique, wait_until
from herald_test.metrics import metric_sum, metrics_text
from herald_test.redis import RedisServer, redis_config
from herald_test.server import wait_ready
from herald_test.ws import WSCollector


def readyz(h) -> tuple[int, str]:
    r = requests.get(h.url("/readyz"), timeout=5)
    return r.status_code, r.text


def test_acl_user_from_password_env_publishes_and_delivers(herald_factory, monkeypatch):
    r = RedisServer()
    try:
        # The least a herald user needs (docs/deployment.md quotes this line).
        r.cli("ACL", "SETUSER", "herald", "on", ">herald-secret", "~herald:*", "&herald:*",
              "&herald:ping",
              "+@read", "+@write", "+@scripting", "+@pubsub", "+ping", "+client|setname",
              "+role", "+info", "+wait", "+time")
        r.cli("CONFIG", "SET", "requirepass", "default-secret")
        monkeypatch.setenv("HERALD_TEST_REDIS_PASSWORD", "herald-secret")
        cfg = redis_config([r.address])
        cfg["redis"].update({"username": "herald", "password_env": "HERALD_TEST_REDIS_PASSWORD"})
        h = herald_factory(cfg)
        wait_ready(h)
        topic = unique("acl")
        sub = WSCollector(h, topic)
        try:
            p = requests.post(h.url(f"/publish/{topic}"), data="hi", timeout=5)
            assert p.status_code == 200, p.text
            wait_until(lambda: sub.messages(), 5, what="the message")
            assert sub.messages()[0][2] == "hi"
        finally:
            sub.close()
        names = r.cli("-a", "default-secret", "--no-auth-warning", "CLIENT", "LIST")
        assert "user=herald" in names and "name=herald-" in names
    finally:
        r.kill()


def test_wrong_password_is_never_ready_and_says_so(herald_factory):
    r = RedisServer()
    try:
        r.cli("CONFIG", "SET", "requirepass", "right")
        cfg = redis_config([r.address])
        cfg["redis"]["password"] = "pw-7f3a9c"
        h = herald_factory(cfg)
        wait_until(lambda: "AUTH refused" in h.log_text(), 5, what="the AUTH error logged")
        code, body = readyz(h)
        assert code == 503 and f"redis shard {r.address} is not connected yet" in body, body
        p = requests.post(h.url(f"/publish/{unique('x')}"), data="x", timeout=5)
        assert p.status_code == 503, p.text
        assert "pw-7f3a9c" not in h.log_text()  # the password itself is never logged
    finally:
        r.kill()


def test_a_replica_is_never_written_to(herald_factory):
    """A shard address that points at a replica (a stale address): ROLE says slave, so herald
    refuses the connection, stays not ready and counts it; it never sends a publish there."""
    master = RedisServer()
    replica = RedisServer(extra=("--replicaof", "127.0.0.1", str(master.port)))
    try:
        h = herald_factory(redis_config([replica.address]))
        wait_until(lambda: "not a master" in h.log_text(), 5, what="the refusal logged")
        code, body = readyz(h)
        assert code == 503, body
        p = requests.post(h.url(f"/publish/{unique('x')}"), data="x", timeout=5)
        assert p.status_code == 503, p.text
        m = metrics_text(h)
        assert metric_sum(m, "herald_redis_shard_not_master_total", shard=replica.address) >= 1
        assert metric_sum(m, "herald_redis_shard_up", shard=replica.address) == 0
        assert not any(n.startswith("herald-") for n in replica.client_names())
        # Promoted, it becomes usable: herald retries and comes up.
        replica.cli("REPLICAOF", "NO", "ONE")
        wait_ready(h)
        p = requests.post(h.url(f"/publish/{unique('x')}"), data="x", timeout=5)
        assert p.status_code == 200, p.text
    finally:
        replica.kill()
        master.kill()
