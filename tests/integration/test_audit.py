"""The audit log (issue 17): one JSON line per security event in its own file, with the client
address and user pseudonymised by a keyed hash (checked here with Python's own HMAC)."""
import asyncio
import hashlib
import hmac
import json
import os
import subprocess
import time

import jwt
import requests

from herald_test import unique, wait_until
from herald_test.server import herald_bin
from herald_test.ws import ws_connect, ws_op_collect

KEY = "audit-publish-key-" + "k" * 20
SECRET = "audit-jwt-secret-" + "s" * 32
PSEUDONYM_KEY = "audit-pseudonym-key-0123456789"


def pseudonym(value: str) -> str:
    key = hashlib.sha256(PSEUDONYM_KEY.encode()).digest()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:16]


def token(sub, topics):
    return jwt.encode({"sub": sub, "exp": int(time.time()) + 600, "topics": topics}, SECRET,
                      algorithm="HS256")


def read_events(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_security_events_are_audited_with_pseudonyms(herald_factory, tmp_path):
    sink = str(tmp_path / "audit.jsonl")
    h = herald_factory({
        "auth": {"jwt": {"keys": [{"alg": "HS256", "secret": SECRET}]}, "publish_keys": [KEY],
                 "allow_unauthenticated_publish": False, "default_anonymous": "none"},
        "limits": {"publishes_per_key_per_s": 1},
        "audit": {"sink": sink, "sample_one_in": 1, "pseudonym_key": PSEUDONYM_KEY},
    })
    auth = {"Authorization": f"Bearer {KEY}"}
    topic = unique("aud")
    # unauthorized: a bad token; forbidden: a valid token for other topics
    r = requests.get(h.url(f"/sse?topic={topic}&token=not.a.jwt"), timeout=5)
    assert r.status_code == 401
    r = requests.get(h.url(f"/sse?topic={topic}&token={token('alice', ['other:*'])}"), timeout=5)
    assert r.status_code == 403
    r = requests.post(h.url(f"/publish/{topic}"), data="x",
                      headers={"Authorization": "Bearer wrong-key-wrong-key-wrong"}, timeout=5)
    assert r.status_code == 401
    # rate limited: 1 a second, burst 2: the third publish within a second or so. Until the first
    # 429 (at most 10): on a loaded machine four publishes can take long enough to refill.
    codes = []
    while 429 not in codes and len(codes) < 10:
        codes.append(requests.post(h.url(f"/publish/{topic}"), data="x", headers=auth,
                                   timeout=5).status_code)
    assert 429 in codes, codes

    async def ws_forbidden():
        ws = await ws_connect(h, f"token={token('bob', ['mine:*'])}")
        reply, _ = await ws_op_collect(ws, {"op": "subscribe", "topic": topic, "id": "s"})
        assert reply.get("code") == "forbidden", reply
        await ws.close()

    asyncio.run(ws_forbidden())
    r = requests.post(h.url("/admin/disconnect"), json={"user": "carol"}, headers=auth, timeout=5)
    assert r.status_code == 200, r.text
    r = requests.post(h.url("/admin/reload"), headers=auth, timeout=5)
    assert r.status_code == 200, r.text

    def complete():
        ev = read_events(sink)
        return len([e for e in ev if e["event"] == "admin"]) >= 2 and ev

    events = wait_until(complete, 5, what="the admin events in the audit file")
    client = pseudonym("127.0.0.1")
    fails = [e for e in events if e["event"] == "auth_failure"]
    by_reason = {}
    for e in fails:
        by_reason.setdefault(e["reason"], []).append(e)
    assert len(by_reason.get("unauthorized", [])) == 2, fails
    assert {e["path"] for e in by_reason["unauthorized"]} == {"/sse", f"/publish/{topic}"}
    assert any(e["path"] == "/sse" for e in by_reason["forbidden"]), fails
    ws_fail = [e for e in by_reason["forbidden"] if e["path"] == "/ws subscribe"]
    assert len(ws_fail) == 1 and ws_fail[0]["user"] == pseudonym("bob"), fails
    assert all(e["client"] == client for e in fails), fails
    refused = [e for e in events if e["event"] == "refused"]
    assert refused and refused[0]["reason"] == "rate_limited" and refused[0]["client"] == client
    admin = {e["action"]: e for e in events if e["event"] == "admin"}
    assert admin["disconnect"]["user"] == pseudonym("carol") and admin["disconnect"]["by"] == "key#0"
    assert admin["reload"]["outcome"] == "ok" and admin["reload"]["by"] == "key#0"
    for e in events:
        assert e["ts"].endswith("Z"), e
    # Identifiers never appear in clear.
    raw = open(sink).read()
    for clear in ("127.0.0.1", "alice", "bob", "carol", KEY, SECRET):
        assert clear not in raw, clear


def test_sampling_and_an_unwritable_sink(herald_factory, tmp_path):
    sink = str(tmp_path / "sampled.jsonl")
    h = herald_factory({
        "auth": {"publish_keys": [KEY], "allow_unauthenticated_publish": False},
        "limits": {"publishes_per_key_per_s": 1},
        "audit": {"sink": sink, "sample_one_in": 1000},
    }, workers=1)
    codes = [requests.post(h.url("/publish/t"), data="x", headers={"Authorization": f"Bearer {KEY}"},
                           timeout=5).status_code for _ in range(30)]
    assert codes.count(429) >= 20, codes
    requests.post(h.url("/publish/t"), data="x", timeout=5)  # no key: always audited
    ev = wait_until(lambda: [e for e in read_events(sink) if e["event"] == "auth_failure"], 5,
                    what="the auth failure")
    # 1 in 1000 of the refusals: the first of this worker, then none.
    assert len([e for e in read_events(sink) if e["event"] == "refused"]) == 1
    assert ev[0]["reason"] == "unauthorized"
    # A sink that cannot be opened stops start-up with the key named.
    (tmp_path / "a-file").write_text("")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"audit:\n  sink: {tmp_path}/a-file/audit.log\n")  # under a file: no such dir
    p = subprocess.run([herald_bin(), "--config", str(cfg), "--listen", "127.0.0.1:0"],
                       capture_output=True, timeout=20, stdin=subprocess.DEVNULL)
    assert p.returncode == 2, p
    assert b"audit.sink" in p.stdout + p.stderr
