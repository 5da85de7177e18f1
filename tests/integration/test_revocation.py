"""Revocation across instances (docs/security.md): with `broker: redis`, POST /admin/disconnect
to one instance closes the user's WebSocket (4002) and SSE (`event: disconnect`) connections on
every instance through the control channel, leaves other users connected, and answers
{"disconnected": <this instance's>, "instances": <instances reached>}. With Redis down it still
closes this instance's connections, answers 503, and the daemon stays up; after Redis is back the
control channel is subscribed again.

Real herald binaries, a real redis-server, JWTs minted here, clients over real sockets.
"""
import json
import socket
import time

import pytest
import requests

from herald_test import unique, wait_until
from herald_test.http import error_of
from herald_test.metrics import metric_sum
from herald_test.redis import redis_config
from herald_test.server import wait_ready
from herald_test.sse import SSEClient
from herald_test.tokens import AUDIENCE, ISSUER, Keys
from herald_test.ws import RawWS

PUB_KEY = "it-revoke-key-" + "r" * 20
ADMIN_HDR = {"Authorization": f"Bearer {PUB_KEY}"}


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return Keys(str(tmp_path_factory.mktemp("jwtkeys")))


def instance_config(redis, keys):
    cfg = redis_config([redis.address])
    cfg["auth"] = {
        "jwt": {"keys": [{"alg": "HS256", "secret": keys.hs_secret}], "audience": AUDIENCE,
                "issuer": ISSUER},
        "publish_keys": [PUB_KEY],
        "allow_unauthenticated_publish": False,
    }
    return cfg


def two_instances(herald_factory, redis, keys):
    a = herald_factory(instance_config(redis, keys))
    b = herald_factory(instance_config(redis, keys))
    wait_ready(a)
    wait_ready(b)
    return a, b


def disconnect(server, user):
    return requests.post(server.url("/admin/disconnect"), json={"user": user}, headers=ADMIN_HDR,
                         timeout=10)


def publish(server, topic, data):
    r = requests.post(server.url(f"/publish/{topic}"), data=data, headers=ADMIN_HDR, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def metric(server, name):
    text = requests.get(server.url("/metrics"), timeout=10).text
    return metric_sum(text, name)


# ------------------------------------------------------------------ one user's connection

class WS:
    """A raw WebSocket subscribed to `topic` at connect, with the user's token."""

    def __init__(self, server, topic, token, who):
        self.who = who
        self.ws = RawWS(server.port, f"/ws?topic={topic}&token={token}")

    def got(self, data, timeout):
        """True once a message frame carrying `data` arrived within `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.ws.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                fin, op, payload = self.ws.recv_frame()
            except socket.timeout:
                return False
            if op == 0x1 and json.loads(payload).get("data") == data:
                return True
            assert op in (0x1, 0x9), f"{self.who}: unexpected frame {op:#x} {payload[:80]!r}"
        return False

    def expect_closed_by_revocation(self):
        code, reason, how = self.ws.wait_close(5)
        assert (code, reason, how) == (4002, "disconnected", "close"), (self.who, code, reason, how)

    def close(self):
        self.ws.close()


class SSE:
    """An SSE stream of `topic` with the user's token."""

    def __init__(self, server, topic, token, who):
        self.who = who
        self.client = SSEClient(server.url(f"/sse?topic={topic}&token={token}"))
        self.client.wait_ready()

    def got(self, data, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                ev = self.client.next_event(max(0.01, deadline - time.monotonic()))
            except AssertionError:
                return False
            if ev.data == data:
                return True
        return False

    def expect_closed_by_revocation(self):
        """Messages may come first; then `event: disconnect`, then the end of the stream."""
        while True:
            ev = self.client.next_event(5)
            if ev.event is None:
                continue
            assert ev.event == "disconnect", (self.who, ev.raw)
            assert json.loads(ev.data) == {"reason": "disconnected"}, (self.who, ev.raw)
            break
        assert self.client.wait_eof(5), f"{self.who}: SSE did not end after event: disconnect"

    def close(self):
        self.client.close()


def warm_up(server, topic, conns):
    """Publishes until every connection got a message: every subscription is then live on its
    instance (an SSE stream's first block does not wait for the subscribe to be answered)."""
    pending = list(conns)
    deadline = time.monotonic() + 15
    i = 0
    while pending:
        assert time.monotonic() < deadline, f"not live: {[c.who for c in pending]}"
        i += 1
        publish(server, topic, f"warm-{i}")
        pending = [c for c in pending if not c.got(f"warm-{i}", 0.5)]
    return i


def connect_all(a, b, topic, tokens, users):
    conns = []
    for srv, name in ((a, "A"), (b, "B")):
        for user in users:
            conns.append(WS(srv, topic, tokens[user], f"{user} ws on {name}"))
            conns.append(SSE(srv, topic, tokens[user], f"{user} sse on {name}"))
    return conns


# ------------------------------------------------------------------ tests

def test_disconnect_closes_the_user_on_every_instance(redis1, keys, herald_factory):
    a, b = two_instances(herald_factory, redis1, keys)
    topic = unique("rev")
    tokens = {u: keys.token(u, topics=[topic]) for u in ("alice", "bob")}
    conns = connect_all(a, b, topic, tokens, ("alice", "bob"))
    try:
        warm_up(a, topic, conns)

        r = disconnect(a, "alice")
        assert r.status_code == 200, r.text
        # alice's WebSocket and SSE stream on A; both instances got the control message.
        assert r.json() == {"disconnected": 2, "instances": 2}, r.json()

        alice = [c for c in conns if c.who.startswith("alice")]
        bob = [c for c in conns if c.who.startswith("bob")]
        for c in alice:
            c.expect_closed_by_revocation()

        # bob is untouched on both instances and still gets what is published later.
        publish(b, topic, "after")
        for c in bob:
            assert c.got("after", 10), f"{c.who} did not get the message published after"

        # A acted on its own request only, B on the control message only.
        wait_until(lambda: metric(b, "herald_redis_control_received_total") == 1, 5,
                   what="B counted one control message")
        assert metric(a, "herald_redis_control_published_total") == 1
        assert metric(a, "herald_redis_control_received_total") == 0
        assert metric(b, "herald_redis_control_published_total") == 0
        assert "closed 2 connections" in b.log_text(), b.log_tail()

        # Nobody left for alice anywhere.
        r = disconnect(b, "alice")
        assert r.status_code == 200 and r.json() == {"disconnected": 0, "instances": 2}, r.text
    finally:
        for c in conns:
            c.close()


def test_disconnect_with_redis_down(redis1, keys, herald_factory):
    a, b = two_instances(herald_factory, redis1, keys)
    topic = unique("rev")
    token = keys.token("alice", topics=[topic])
    ws = WS(a, topic, token, "alice ws on A")
    sse = SSE(a, topic, token, "alice sse on A")
    conns = [ws, sse]
    try:
        warm_up(a, topic, conns)
        redis1.kill()
        wait_until(lambda: requests.get(a.url("/readyz"), timeout=5).status_code == 503, 10,
                   what="A noticed Redis is down")

        r = disconnect(a, "alice")
        assert r.status_code == 503, r.text
        code, message = error_of(r)
        assert code == "unavailable", r.text
        assert "closed 2 connections on this instance" in message, message
        assert r.headers.get("Retry-After") == "1", r.headers
        # This instance's connections are closed all the same.
        ws.expect_closed_by_revocation()
        sse.expect_closed_by_revocation()
        assert a.alive() and requests.get(a.url("/healthz"), timeout=5).status_code == 200
        assert metric(a, "herald_redis_control_failures_total") == 1

        # Redis back: both instances subscribe to the control channel again.
        redis1.start()
        wait_ready(a)
        wait_ready(b)
        wait_until(lambda: disconnect(a, "nobody").json().get("instances") == 2, 10,
                   what="both instances subscribed to the control channel again")
        on_b = [WS(b, topic, token, "alice ws on B"), SSE(b, topic, token, "alice sse on B")]
        conns += on_b
        warm_up(b, topic, on_b)
        r = disconnect(a, "alice")
        assert r.status_code == 200 and r.json() == {"disconnected": 0, "instances": 2}, r.text
        for c in on_b:
            c.expect_closed_by_revocation()
    finally:
        for c in conns:
            c.close()
