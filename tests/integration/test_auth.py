"""Security features against docs/security.md: publisher API keys, JWT subscriber auth on every
transport (header, query, cookie), bad tokens refused at connect, expiry and refresh, revocation
through /admin/disconnect, origin allowlist and CORS, rate limits per address / connection / key,
X-Forwarded-For only from trusted proxies, and the rejection counters.

Tokens are minted here with PyJWT and keys generated per run; bad tokens are crafted by hand.
"""
import asyncio
import json
import os
import socket
import time

import pytest
import requests
from websockets.exceptions import InvalidStatusCode

from herald_test import unique, wait_until
from herald_test.http import RawResponse, assert_error, curl, error_of, open_sse
from herald_test.metrics import METRICS, metric_sum
from herald_test.sse import SSEClient
from herald_test.tokens import AUDIENCE, ISSUER, Keys, TRUSTED_PROXIES_PATH
from herald_test.ws import RawWS, ws_connect, ws_op, ws_recv_json

PUB_KEY = "it-publish-key-" + "k" * 20
ADMIN_HDR = {"Authorization": f"Bearer {PUB_KEY}"}
COOKIE = "herald_token"


def keyed(extra: dict | None = None) -> dict:
    """Publishing needs PUB_KEY; never rely on TEST_DEFAULTS for auth."""
    cfg = {"auth": {"publish_keys": [PUB_KEY], "allow_unauthenticated_publish": False}}
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    return cfg


def kpublish(srv, topic, data):
    r = requests.post(srv.url(f"/publish/{topic}"), data=data, headers=ADMIN_HDR, timeout=10)
    assert r.status_code == 200, f"publish to {topic} -> {r.status_code} {r.text[:300]}"
    return r.json()


def rjson(r):
    """(status, lower-cased headers, JSON body or a stand-in) of a requests response."""
    if "application/json" not in r.headers.get("Content-Type", ""):
        body = {"not_json": _peek(r)}
    else:
        try:
            body = r.json()
        except ValueError:
            body = {"not_json": r.text[:300]}
    return r.status_code, {k.lower(): v for k, v in r.headers.items()}, body


def check_401(resp_status, headers, body_json, what=""):
    assert resp_status == 401, f"{what}: expected 401, got {resp_status} {body_json}"
    assert isinstance(body_json.get("error"), dict), f"{what}: 401 body is not a JSON error: {body_json}"
    assert headers.get("www-authenticate", "").lower().startswith("bearer"), \
        f"{what}: 401 without WWW-Authenticate: Bearer: {headers}"
    err = body_json["error"]
    assert err["code"] == "unauthorized" and err.get("message"), f"{what}: {body_json}"


def _peek(r) -> str:
    """The body for a failure message, without waiting on an open event stream."""
    if "text/event-stream" in r.headers.get("Content-Type", ""):
        r.close()
        return f"<event stream {dict(r.headers)}>"
    return r.text[:300]


async def expect_ws_refused(srv, status, query="", **kw):
    with pytest.raises(InvalidStatusCode) as ei:
        ws = await ws_connect(srv, query, **kw)
        await ws.close()
    assert ei.value.status_code == status, f"WS upgrade ({query}) answered {ei.value.status_code}, want {status}"


# =============================================================================== module server
# One server with every JWT key type, audience and issuer, leeway 0, a cookie name, `private:*`
# closed to anonymous readers, and publishing behind PUB_KEY.

@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return Keys(str(tmp_path_factory.mktemp("jwtkeys")))


def jwt_config(keys: Keys, **jwt_over) -> dict:
    j = {"keys": keys.jwt_keys_config(), "audience": AUDIENCE, "issuer": ISSUER, "leeway": "0s"}
    j.update(jwt_over)
    return keyed({
        "auth": {
            "jwt": j,
            "token_cookie": COOKIE,
            "default_anonymous": "subscribe",
            "namespaces": [{"pattern": "private:*", "anonymous": "none"}],
        },
        "poll": {"timeout": "1s"},
    })


@pytest.fixture(scope="module")
def herald_config(keys):
    return jwt_config(keys)


# =============================================================================== 1. publishers

def test_publish_requires_api_key(herald_factory):
    srv = herald_factory(keyed())
    topic = unique("pub")
    url = srv.url(f"/publish/{topic}")

    r = requests.post(url, data="x", timeout=10)
    check_401(*rjson(r), "no key")
    error_of(r)
    r = requests.post(url, data="x", headers={"Authorization": "Bearer " + "w" * 30}, timeout=10)
    check_401(*rjson(r), "wrong key")
    # a prefix of the right key, and the right key under another scheme, are wrong too
    r = requests.post(url, data="x", headers={"Authorization": "Bearer " + PUB_KEY[:-1]}, timeout=10)
    assert r.status_code == 401, r.text
    r = requests.post(url, data="x", headers={"Authorization": "Basic " + PUB_KEY}, timeout=10)
    assert r.status_code == 401, r.text
    # nothing was published by the refused requests
    r = requests.post(url, data="x", headers=ADMIN_HDR, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["offset"] == 1, r.json()

    # the JSON endpoint
    body = json.dumps({"topic": topic, "data": "y"})
    jh = {"Content-Type": "application/json"}
    r = requests.post(srv.url("/publish"), data=body, headers=jh, timeout=10)
    check_401(*rjson(r), "JSON no key")
    r = requests.post(srv.url("/publish"), data=body,
                      headers={**jh, "Authorization": "Bearer nope-nope-nope-nope"}, timeout=10)
    assert r.status_code == 401, r.text
    assert error_of(r)[0] == "unauthorized"
    r = requests.post(srv.url("/publish"), data=body, headers={**jh, **ADMIN_HDR}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["results"][0]["offset"] == 2, r.json()

    # curl, too (another client)
    c = curl(url, "-d", "z")
    assert c.status == 401 and c.json()["error"]["code"] == "unauthorized", (c.status, c.body)
    c = curl(url, "-d", "z", "-H", f"Authorization: Bearer {PUB_KEY}")
    assert c.status == 200, (c.status, c.body)


def test_publish_key_from_env(herald_factory, monkeypatch):
    # Herald starts the binary with subprocess.Popen and the default env: it inherits os.environ.
    env_key_a = "env-key-a-" + os.urandom(8).hex()
    env_key_b = "env-key-b-" + os.urandom(8).hex()
    monkeypatch.setenv("HERALD_IT_PUBLISH_KEYS", f"{env_key_a},{env_key_b}")
    srv = herald_factory(keyed({"auth": {"publish_keys_env": "HERALD_IT_PUBLISH_KEYS"}}))
    topic = unique("envpub")
    for k in (env_key_a, env_key_b, PUB_KEY):
        r = requests.post(srv.url(f"/publish/{topic}"), data="x",
                          headers={"Authorization": f"Bearer {k}"}, timeout=10)
        assert r.status_code == 200, (k, r.status_code, r.text)
    r = requests.post(srv.url(f"/publish/{topic}"), data="x",
                      headers={"Authorization": f"Bearer {env_key_a}x"}, timeout=10)
    assert r.status_code == 401, r.text


def test_unauthenticated_publish_when_configured_open(herald_factory):
    srv = herald_factory({"auth": {"allow_unauthenticated_publish": True}})
    r = requests.post(srv.url(f"/publish/{unique('open')}"), data="x", timeout=10)
    assert r.status_code == 200, r.text


# =============================================================================== 2. JWT subscribe

def test_anonymous_sse_public_ok_private_forbidden(server):
    with SSEClient(server.url(f"/sse?topic={unique('news')}")) as c:
        c.wait_ready()
    r = requests.get(server.url(f"/sse?topic=private:{unique('x')}"), timeout=10, stream=True)
    assert_error(r, 403, "forbidden")
    assert "text/event-stream" not in r.headers.get("Content-Type", "")
    # a multi-topic stream with one private topic is refused as a whole
    r = requests.get(server.url(f"/sse?topic={unique('news')}&topic=private:{unique('y')}"),
                     timeout=10, stream=True)
    assert_error(r, 403, "forbidden")


@pytest.mark.parametrize("how", ["query", "header", "cookie"])
def test_token_sse_private_ok_and_receives(server, keys, how):
    topic = "private:" + unique("sse")
    tok = keys.token("user-1", topics=["private:*"])
    url = server.url(f"/sse?topic={topic}")
    headers = {}
    if how == "query":
        url += f"&token={tok}"
    elif how == "header":
        headers["Authorization"] = f"Bearer {tok}"
    else:
        headers["Cookie"] = f"other=1; {COOKIE}={tok}"
    with SSEClient(url, headers=headers) as c:
        c.wait_ready()
        kpublish(server, topic, "secret hello")
        ev = c.next_event(10)
        assert ev.data == "secret hello", ev.raw


def test_token_topics_limit_what_sse_may_read(server, keys):
    tok = keys.token("user-1", topics=["private:a-*"])
    r = requests.get(server.url(f"/sse?topic=private:b-{unique('z')}&token={tok}"), timeout=10, stream=True)
    assert_error(r, 403, "forbidden")
    with SSEClient(server.url(f"/sse?topic=private:a-{unique('z')}&token={tok}")) as c:
        c.wait_ready()


def test_header_token_wins_over_query(server, keys):
    good = keys.token("user-1", topics=["private:*"])
    url = server.url(f"/sse?topic=private:{unique('p')}&token=garbage.garbage.garbage")
    with SSEClient(url, headers={"Authorization": f"Bearer {good}"}) as c:
        c.wait_ready()


def test_long_poll_private(server, keys):
    topic = "private:" + unique("poll")
    r = requests.get(server.url(f"/poll?topic={topic}"), timeout=10)
    assert_error(r, 403, "forbidden")
    tok = keys.token("user-1", topics=["private:*"])
    t0 = time.monotonic()
    r = requests.get(server.url(f"/poll?topic={topic}&token={tok}"), timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["topic"] == topic
    r = requests.get(server.url(f"/poll?topic={topic}"), headers={"Authorization": f"Bearer {tok}"},
                     timeout=10)
    assert r.status_code == 200, r.text
    assert time.monotonic() - t0 < 8


def test_ws_token_subscribe_allowed_and_forbidden(server, keys):
    tok = keys.token("user-1", topics=["private:a-*"])
    ok_topic = "private:a-" + unique("w")
    bad_topic = "private:b-" + unique("w")

    async def run():
        ws = await ws_connect(server, f"token={tok}")
        ok = await ws_op(ws, {"op": "subscribe", "topic": ok_topic, "id": 1})
        assert ok["type"] == "ok" and ok["topic"] == ok_topic, ok
        err = await ws_op(ws, {"op": "subscribe", "topic": bad_topic, "id": 2})
        assert err["type"] == "error" and err["code"] == "forbidden" and err["id"] == 2, err
        ok = await ws_op(ws, {"op": "ping", "id": 3})
        assert ok["type"] == "ok", ok
        await asyncio.to_thread(kpublish, server, bad_topic, "not for you")
        await asyncio.to_thread(kpublish, server, ok_topic, "for you")
        m = await ws_recv_json(ws)
        assert m["type"] == "message" and m["topic"] == ok_topic and m["data"] == "for you", m
        await ws.close()

        # anonymous: public fine, private forbidden, connection stays
        ws = await ws_connect(server)
        ok = await ws_op(ws, {"op": "subscribe", "topic": unique("news"), "id": 1})
        assert ok["type"] == "ok", ok
        err = await ws_op(ws, {"op": "subscribe", "topic": ok_topic, "id": 2})
        assert err["type"] == "error" and err["code"] == "forbidden", err
        ok = await ws_op(ws, {"op": "ping", "id": 3})
        assert ok["type"] == "ok", ok
        await ws.close()

        # token in the Authorization header of the upgrade
        ws = await ws_connect(server, extra_headers={"Authorization": f"Bearer {tok}"})
        ok = await ws_op(ws, {"op": "subscribe", "topic": ok_topic, "id": 1})
        assert ok["type"] == "ok", ok
        await ws.close()

    asyncio.run(run())


def test_ws_publish_by_token_publish_patterns(server, keys):
    """A token's `publish` patterns let its holder publish over WebSocket; nothing else does
    (ws.client_publish is empty on this server)."""
    tok = keys.token("user-1", topics=["private:pub-*"], publish=["private:pub-*"])
    mine = "private:pub-" + unique("p")
    other = "private:other-" + unique("p")

    async def run():
        ws = await ws_connect(server, f"token={tok}")
        ok = await ws_op(ws, {"op": "subscribe", "topic": mine, "id": 1})
        assert ok["type"] == "ok", ok
        # The publish's ok and the message itself may arrive in either order.
        await ws.send(json.dumps({"op": "publish", "topic": mine, "data": "from the client", "id": 2}))
        frames = [await ws_recv_json(ws), await ws_recv_json(ws)]
        pub = next(f for f in frames if f["type"] == "ok")
        m = next(f for f in frames if f["type"] == "message")
        assert pub["op"] == "publish" and pub["id"] == 2 and pub["offset"] == 1, pub
        assert m["data"] == "from the client" and m["offset"] == 1, m
        err = await ws_op(ws, {"op": "publish", "topic": other, "data": "x", "id": 3})
        assert err["type"] == "error" and err["code"] == "forbidden" and err["id"] == 3, err
        await ws.close()
        anon = await ws_connect(server)
        err = await ws_op(anon, {"op": "publish", "topic": mine, "data": "x", "id": 4})
        assert err["type"] == "error" and err["code"] == "forbidden", err
        await anon.close()

    asyncio.run(run())


# =============================================================================== 3. bad tokens

def _bad_tokens(keys: Keys) -> dict:
    good = keys.claims("mallory", topics=["private:*"])
    now = int(time.time())
    return {
        "forged_signature": keys.forged(keys.hs256(good)),
        "tampered_payload": keys.tampered_payload(keys.hs256(keys.claims("mallory", topics=["news"])),
                                                  topics=["private:*"]),
        "alg_none": keys.unsigned(good),
        "key_confusion": keys.key_confusion(good),
        "rs256_unknown_key": keys.rs256(good, key=keys.other_rsa),
        "expired": keys.hs256({**good, "exp": now - 120}),
        "nbf_future": keys.hs256({**good, "nbf": now + 120}),
        "wrong_audience": keys.hs256({**good, "aud": "someone-else"}),
        "wrong_issuer": keys.hs256({**good, "iss": "https://evil.test"}),
        "missing_exp": keys.hs256({k: v for k, v in good.items() if k != "exp"}),
        "garbage": "not-a-jwt",
    }


BAD_KINDS = ["forged_signature", "tampered_payload", "alg_none", "key_confusion", "rs256_unknown_key",
             "expired", "nbf_future", "wrong_audience", "wrong_issuer", "missing_exp", "garbage"]


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_bad_token_refused_at_connect(server, keys, kind):
    tok = _bad_tokens(keys)[kind]
    public = unique("news")  # even for a topic anonymous users may read: a bad token is a 401
    for url, hdrs in [(server.url(f"/sse?topic={public}&token={tok}"), {}),
                      (server.url(f"/sse?topic=private:{unique('x')}"), {"Authorization": f"Bearer {tok}"}),
                      (server.url(f"/poll?topic={public}&token={tok}"), {})]:
        r = requests.get(url, headers=hdrs, timeout=10, stream=True)
        check_401(*rjson(r), f"{kind} {url}")

    async def run():
        await expect_ws_refused(server, 401, f"token={tok}")
        await expect_ws_refused(server, 401, extra_headers={"Authorization": f"Bearer {tok}"})

    asyncio.run(run())


@pytest.mark.parametrize("alg", ["HS256", "RS256", "ES256"])
def test_valid_tokens_of_each_alg_accepted(server, keys, alg):
    claims = keys.claims("alice", topics=["private:*"])
    tok = {"HS256": keys.hs256, "RS256": keys.rs256, "ES256": keys.es256}[alg](claims)
    topic = "private:" + unique(alg.lower())
    with SSEClient(server.url(f"/sse?topic={topic}&token={tok}")) as c:
        c.wait_ready()
        kpublish(server, topic, f"via {alg}")
        assert c.next_event(10).data == f"via {alg}"

    async def run():
        ws = await ws_connect(server, f"token={tok}")
        ok = await ws_op(ws, {"op": "subscribe", "topic": topic, "id": 1})
        assert ok["type"] == "ok", ok
        await ws.close()

    asyncio.run(run())


def test_audience_may_be_an_array(server, keys):
    tok = keys.hs256(keys.claims("alice", topics=["private:*"], aud=["x", AUDIENCE]))
    with SSEClient(server.url(f"/sse?topic=private:{unique('aud')}&token={tok}")) as c:
        c.wait_ready()


def test_leeway_applies(herald_factory, keys):
    srv = herald_factory(jwt_config(keys, leeway="30s"))
    now = int(time.time())
    inside = keys.hs256({**keys.claims("alice", topics=["private:*"]), "exp": now - 5})
    outside = keys.hs256({**keys.claims("alice", topics=["private:*"]), "exp": now - 120})
    nbf_inside = keys.hs256({**keys.claims("alice", topics=["private:*"]), "nbf": now + 5})
    for tok in (inside, nbf_inside):
        with SSEClient(srv.url(f"/sse?topic=private:{unique('lw')}&token={tok}")) as c:
            c.wait_ready()
    r = requests.get(srv.url(f"/sse?topic=private:x&token={outside}"), timeout=10, stream=True)
    assert_error(r, 401, "unauthorized")


# =============================================================================== 4. expiry

def _exp_in(seconds: int) -> int:
    return int(time.time()) + seconds


def test_ws_closed_4001_at_exp(server, keys):
    exp = _exp_in(3)
    tok = keys.hs256({**keys.claims("exp-user", topics=["private:*"]), "exp": exp})

    async def run():
        ws = await ws_connect(server, f"token={tok}")
        ok = await ws_op(ws, {"op": "ping", "id": 1})
        assert ok["type"] == "ok"
        try:
            await asyncio.wait_for(ws.wait_closed(), timeout=(exp - time.time()) + 3)
        except asyncio.TimeoutError:
            raise AssertionError(f"WS still open {time.time() - exp:.1f}s after exp")
        closed_at = time.time()
        assert ws.close_code == 4001 and ws.close_reason == "token expired", (ws.close_code, ws.close_reason)
        assert closed_at >= exp - 1.0, f"closed {exp - closed_at:.1f}s before exp"

    asyncio.run(run())


def test_ws_refresh_extends_and_foreign_sub_is_refused(server, keys):
    exp = _exp_in(3)
    tok = keys.hs256({**keys.claims("refresh-user", topics=["private:*"]), "exp": exp})
    new_exp = _exp_in(60)
    fresh = keys.hs256({**keys.claims("refresh-user", topics=["private:*"]), "exp": new_exp})
    foreign = keys.hs256({**keys.claims("someone-else", topics=["private:*"]), "exp": new_exp})

    async def run():
        good = await ws_connect(server, f"token={tok}")
        stuck = await ws_connect(server, f"token={tok}")

        ok = await ws_op(good, {"op": "refresh", "token": fresh, "id": 1})
        assert ok["type"] == "ok" and ok["id"] == 1, ok
        assert ok.get("exp") == new_exp, f"refresh ok should carry the new exp {new_exp}: {ok}"

        for bad in (foreign, keys.forged(fresh), "garbage"):
            err = await ws_op(stuck, {"op": "refresh", "token": bad, "id": 2})
            assert err["type"] == "error" and err["code"] == "unauthorized" and err["id"] == 2, err

        # past the first exp: the refused refresh changed nothing, the good one holds
        try:
            await asyncio.wait_for(stuck.wait_closed(), timeout=(exp - time.time()) + 3)
        except asyncio.TimeoutError:
            raise AssertionError("connection with only refused refreshes was not closed at exp")
        assert (stuck.close_code, stuck.close_reason) == (4001, "token expired")
        while time.time() < exp + 1.5:
            await asyncio.sleep(0.2)
        ok = await ws_op(good, {"op": "ping", "id": 3})
        assert ok["type"] == "ok", ok
        assert good.open, "refreshed connection was closed"
        await good.close()

    asyncio.run(run())


def test_sse_ends_with_token_expired(server, keys):
    exp = _exp_in(3)
    tok = keys.hs256({**keys.claims("sse-exp", topics=["private:*"]), "exp": exp})
    with SSEClient(server.url(f"/sse?topic=private:{unique('sx')}&token={tok}")) as c:
        c.wait_ready()
        deadline = time.monotonic() + (exp - time.time()) + 4
        got = None
        while time.monotonic() < deadline:
            try:
                b = c.next_block(max(0.1, deadline - time.monotonic()))
            except (EOFError, AssertionError):
                break
            if b.event == "token_expired":
                got = b
                break
        assert got is not None, f"no event: token_expired by exp+3s; body={c.body_bytes()[-300:]!r}"
        assert time.time() >= exp - 1.0
        assert c.wait_eof(5), "SSE stream did not end after token_expired"


# =============================================================================== 5. revocation

def test_admin_disconnect_user(server, keys):
    t1 = keys.token("u1", topics=["private:*"])
    t2 = keys.token("u2", topics=["private:*"])
    topic = "private:" + unique("rev")

    async def run():
        a = await ws_connect(server, f"token={t1}")
        b = await ws_connect(server, extra_headers={"Authorization": f"Bearer {t1}"})
        c = await ws_connect(server, f"token={t2}")
        anon = await ws_connect(server)
        sse = SSEClient(server.url(f"/sse?topic={topic}&token={t1}"))
        try:
            await asyncio.to_thread(sse.wait_ready)
            for w in (a, b, c, anon):
                assert (await ws_op(w, {"op": "ping", "id": 0}))["type"] == "ok"

            # without the API key: 401, nobody is disconnected
            r = await asyncio.to_thread(requests.post, server.url("/admin/disconnect"),
                                        json={"user": "u1"}, timeout=10)
            assert_error(r, 401, "unauthorized")
            r = await asyncio.to_thread(requests.post, server.url("/admin/disconnect"), json={"user": "u1"},
                                        headers={"Authorization": "Bearer wrong-wrong-wrong-wrong"}, timeout=10)
            assert_error(r, 401, "unauthorized")
            assert (await ws_op(a, {"op": "ping", "id": 1}))["type"] == "ok"

            r = await asyncio.to_thread(requests.post, server.url("/admin/disconnect"), json={"user": "u1"},
                                        headers=ADMIN_HDR, timeout=10)
            assert r.status_code == 200, r.text
            assert r.json() == {"disconnected": 3, "instances": 1}, r.json()

            for w in (a, b):
                try:
                    await asyncio.wait_for(w.wait_closed(), 5)
                except asyncio.TimeoutError:
                    raise AssertionError("u1 WebSocket not closed within 5 s")
                assert (w.close_code, w.close_reason) == (4002, "disconnected"), (w.close_code, w.close_reason)

            blk = await asyncio.to_thread(sse.next_block, 5)
            assert blk.event == "disconnect", blk.raw
            assert await asyncio.to_thread(sse.wait_eof, 5), "SSE did not end after event: disconnect"

            for w in (c, anon):
                assert (await ws_op(w, {"op": "ping", "id": 2}))["type"] == "ok"
                assert w.open

            # nobody left for u1
            r = await asyncio.to_thread(requests.post, server.url("/admin/disconnect"), json={"user": "u1"},
                                        headers=ADMIN_HDR, timeout=10)
            assert r.status_code == 200 and r.json() == {"disconnected": 0, "instances": 1}, r.text
        finally:
            sse.close()
            for w in (a, b, c, anon):
                await w.close()

    asyncio.run(run())


def test_admin_disconnect_ends_the_users_long_polls(herald_factory, keys):
    """A held long-poll of the user is answered 403 `disconnected` (and its connection closed);
    another user's poll is left waiting."""
    cfg = jwt_config(keys)
    cfg["poll"] = {"timeout": "20s"}
    srv = herald_factory(cfg)
    topic = "private:" + unique("revpoll")
    t1 = keys.token("u1", topics=["private:*"])
    t2 = keys.token("u2", topics=["private:*"])

    async def run():
        def get(tok):
            return requests.get(srv.url(f"/poll?topic={topic}&token={tok}"), timeout=30)
        p1 = asyncio.create_task(asyncio.to_thread(get, t1))
        p2 = asyncio.create_task(asyncio.to_thread(get, t2))
        await asyncio.to_thread(
            wait_until, lambda: metric_sum(requests.get(srv.url("/metrics"), timeout=5).text,
                                           "herald_connections", transport="poll") == 2,
            10, what="two long-polls held")
        t0 = time.monotonic()
        r = await asyncio.to_thread(requests.post, srv.url("/admin/disconnect"), json={"user": "u1"},
                                    headers=ADMIN_HDR, timeout=10)
        assert r.status_code == 200 and r.json() == {"disconnected": 1, "instances": 1}, r.text
        r1 = await asyncio.wait_for(p1, 10)
        assert time.monotonic() - t0 < 5
        assert_error(r1, 403, "disconnected")
        assert r1.headers.get("Connection", "").lower() == "close"
        assert not p2.done(), "u2's poll was ended too"
        r = await asyncio.to_thread(requests.post, srv.url(f"/publish/{topic}"), data="for-u2",
                                    headers=ADMIN_HDR, timeout=10)
        assert r.status_code == 200, r.text
        r2 = await asyncio.wait_for(p2, 10)
        assert r2.status_code == 200, r2.text
        assert [m["data"] for m in r2.json()["messages"]] == ["for-u2"]
        text = requests.get(srv.url("/metrics"), timeout=5).text
        assert metric_sum(text, "herald_rejected_requests_total", reason="disconnected") == 1

    asyncio.run(run())


# =============================================================================== 6. origins

ORIGINS = {"origins": {"allow": ["https://app.example.com", "https://*.example.org"]}}


def test_origins(herald_factory):
    srv = herald_factory(keyed(ORIGINS))
    good = "https://app.example.com"
    wild = "https://a.b.example.org"
    evil = "https://evil.com"

    async def run():
        await expect_ws_refused(srv, 403, origin=evil)
        await expect_ws_refused(srv, 403, origin="https://evilexample.org")
        await expect_ws_refused(srv, 403, origin="http://app.example.com")  # scheme matters
        for o in (good, wild):
            ws = await ws_connect(srv, origin=o)
            assert (await ws_op(ws, {"op": "ping", "id": 1}))["type"] == "ok"
            await ws.close()
        ws = await ws_connect(srv)  # no Origin: not a browser, allowed
        await ws.close()

    asyncio.run(run())

    topic = unique("o")
    r = requests.get(srv.url(f"/sse?topic={topic}"), headers={"Origin": evil}, timeout=10, stream=True)
    assert_error(r, 403, "forbidden")
    r = requests.get(srv.url(f"/poll?topic={topic}"), headers={"Origin": evil}, timeout=10)
    assert_error(r, 403, "forbidden")
    r = requests.post(srv.url(f"/publish/{topic}"), data="x", headers={"Origin": evil, **ADMIN_HDR}, timeout=10)
    assert_error(r, 403, "forbidden")

    for o in (good, wild):
        with SSEClient(srv.url(f"/sse?topic={topic}"), headers={"Origin": o}) as c:
            c.wait_ready()
            assert c.headers.get("access-control-allow-origin") == o, c.headers
            assert "origin" in c.headers.get("vary", "").lower(), c.headers
    r = requests.post(srv.url(f"/publish/{topic}"), data="x", headers={"Origin": good, **ADMIN_HDR}, timeout=10)
    assert r.status_code == 200, r.text
    assert r.headers.get("Access-Control-Allow-Origin") == good, r.headers

    # preflight
    c = curl(srv.url(f"/publish/{topic}"), "-X", "OPTIONS", "-H", f"Origin: {good}",
             "-H", "Access-Control-Request-Method: POST",
             "-H", "Access-Control-Request-Headers: authorization, content-type")
    assert c.status == 204, (c.status, c.headers, c.body)
    assert c.headers.get("access-control-allow-origin") == good, c.headers
    assert "POST" in c.headers.get("access-control-allow-methods", ""), c.headers
    assert "authorization" in c.headers.get("access-control-allow-headers", "").lower(), c.headers
    c = curl(srv.url(f"/publish/{topic}"), "-X", "OPTIONS", "-H", f"Origin: {evil}",
             "-H", "Access-Control-Request-Method: POST")
    assert c.status == 403, (c.status, c.headers, c.body)
    assert "access-control-allow-origin" not in c.headers, c.headers

    # no Origin header (curl): allowed, no CORS headers needed
    with SSEClient(srv.url(f"/sse?topic={topic}")) as cl:
        cl.wait_ready()


# =============================================================================== 7. rate limits

def _check_429(resp: RawResponse):
    assert resp.status == 429, resp
    assert resp.error_code() == "rate_limited", resp
    ra = resp.headers.get("retry-after")
    assert ra is not None and ra.isdigit() and int(ra) >= 1, f"429 without a valid Retry-After: {resp}"


def test_new_connections_per_ip_per_s(herald_factory):
    srv = herald_factory(keyed({"limits": {"new_connections_per_ip_per_s": 5, "connections_per_ip": 1000}}))
    held, limited = [], []
    t0 = time.monotonic()
    try:
        for i in range(30):
            r = open_sse(srv.port, unique("flood"))
            (held if r.status == 200 else limited).append(r)
        elapsed = time.monotonic() - t0
        assert limited, f"30 new streams in {elapsed:.2f}s at 5/s were all served"
        for r in limited:
            _check_429(r)
        # burst is 2x: about 10 plus what refilled meanwhile
        assert 5 <= len(held) <= 10 + 5 * elapsed + 2, (len(held), elapsed)
        # another address is still served at once
        other = open_sse(srv.port, unique("other"), source="127.0.0.2")
        assert other.status == 200, other
        held.append(other)
        # and 127.0.0.1 gets in again after Retry-After (bounded)
        time.sleep(int(limited[0].headers["retry-after"]))
        again = open_sse(srv.port, unique("again"))
        assert again.status == 200, again
        held.append(again)
    finally:
        for r in held:
            r.close()


def test_concurrent_connections_per_ip(herald_factory):
    srv = herald_factory(keyed({"limits": {"connections_per_ip": 3, "new_connections_per_ip_per_s": 0}}))
    held = []
    try:
        for i in range(3):
            r = open_sse(srv.port, unique("c"))
            assert r.status == 200, (i, r)
            held.append(r)
        r = open_sse(srv.port, unique("c4"))
        assert r.status == 429 and r.error_code() == "rate_limited", r

        async def ws_refused():
            await expect_ws_refused(srv, 429)
        asyncio.run(ws_refused())

        other = open_sse(srv.port, unique("o"), source="127.0.0.2")
        assert other.status == 200, other
        held.append(other)
        # one goes away: a slot frees up (bounded wait for the server to notice the close)
        held.pop(0).close()
        deadline = time.monotonic() + 5
        while True:
            r = open_sse(srv.port, unique("c5"))
            if r.status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.status == 200, r
        held.append(r)
    finally:
        for r in held:
            r.close()


def test_ws_messages_per_s_flood(herald_factory):
    srv = herald_factory(keyed({"limits": {"ws_messages_per_s": 5}}))
    ws = RawWS(srv.port)
    try:
        sent = 0
        try:
            for i in range(100):
                ws.send_text(json.dumps({"op": "ping", "id": i}))
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        oks, errs = 0, []
        close = None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ws.sock.settimeout(max(0.1, deadline - time.monotonic()))
            try:
                fin, op, payload = ws.recv_frame()
            except (EOFError, ConnectionResetError):
                break
            except socket.timeout:
                break
            if op == 0x8:
                close = (int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None,
                         payload[2:].decode("utf-8", "replace"))
                break
            if op == 0x1:
                j = json.loads(payload)
                if j["type"] == "ok":
                    oks += 1
                elif j["type"] == "error":
                    errs.append(j)
        assert oks >= 5, f"only {oks} pings answered ok before limiting"
        assert oks <= 30, f"{oks} of {sent} pings answered ok at 5/s"
        assert errs and all(e["code"] == "rate_limited" for e in errs), errs[:5]
        assert close == (1008, "rate limited"), f"close frame {close}; {oks} ok, {len(errs)} errors"
    finally:
        ws.close()

    # a polite client on its own connection is unaffected
    async def run():
        w = await ws_connect(srv)
        for i in range(3):
            assert (await ws_op(w, {"op": "ping", "id": i}))["type"] == "ok"
        await w.close()
    asyncio.run(run())


def test_publishes_per_key_per_s(herald_factory):
    key2 = "it-second-key-" + "q" * 20
    srv = herald_factory({"auth": {"publish_keys": [PUB_KEY, key2], "allow_unauthenticated_publish": False},
                          "limits": {"publishes_per_key_per_s": 5}})
    topic = unique("pubrate")
    s = requests.Session()
    codes, limited = [], []
    t0 = time.monotonic()
    for i in range(50):
        r = s.post(srv.url(f"/publish/{topic}"), data=str(i), headers=ADMIN_HDR, timeout=10)
        codes.append(r.status_code)
        if r.status_code == 429:
            limited.append(r)
    elapsed = time.monotonic() - t0
    assert set(codes) <= {200, 429}, codes
    assert limited, f"50 publishes in {elapsed:.2f}s at 5/s: none limited"
    ok = codes.count(200)
    assert 5 <= ok <= 10 + 5 * elapsed + 2, (ok, elapsed)
    for r in limited:
        assert_error(r, 429, "rate_limited")
        assert r.headers.get("Retry-After", "").isdigit() and int(r.headers["Retry-After"]) >= 1, r.headers
    # per key: the other key is served
    r = s.post(srv.url(f"/publish/{topic}"), data="k2", headers={"Authorization": f"Bearer {key2}"}, timeout=10)
    assert r.status_code == 200, r.text
    # the limited publishes were not delivered: offsets are consecutive over the accepted ones
    assert r.json()["offset"] == ok + 1, (r.json(), ok)
    time.sleep(int(limited[0].headers["Retry-After"]))
    r = s.post(srv.url(f"/publish/{topic}"), data="later", headers=ADMIN_HDR, timeout=10)
    assert r.status_code == 200, r.text


def _with_trusted(cfg: dict, value) -> dict:
    d = cfg
    for k in TRUSTED_PROXIES_PATH[:-1]:
        d = d.setdefault(k, {})
    d[TRUSTED_PROXIES_PATH[-1]] = value
    return cfg


def test_xff_from_trusted_proxy(herald_factory):
    srv = herald_factory(_with_trusted(keyed({"limits": {"connections_per_ip": 2,
                                                         "new_connections_per_ip_per_s": 0}}),
                                       ["127.0.0.1/32"]))
    held = []
    try:
        for i in range(2):
            r = open_sse(srv.port, unique("x"), headers={"X-Forwarded-For": "203.0.113.7"})
            assert r.status == 200, r
            held.append(r)
        r = open_sse(srv.port, unique("x"), headers={"X-Forwarded-For": "203.0.113.7"})
        assert r.status == 429 and r.error_code() == "rate_limited", r
        # the client cannot spoof past the proxy: left-most entries are the client's words
        r = open_sse(srv.port, unique("x"), headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
        assert r.status == 429, r
        for i in range(2):
            r = open_sse(srv.port, unique("y"), headers={"X-Forwarded-For": "203.0.113.8"})
            assert r.status == 200, r
            held.append(r)
    finally:
        for r in held:
            r.close()


def test_xff_ignored_without_trusted_proxies(herald_factory):
    srv = herald_factory(keyed({"limits": {"connections_per_ip": 2, "new_connections_per_ip_per_s": 0}}))
    held = []
    try:
        for xff in ("203.0.113.7", "203.0.113.8"):
            r = open_sse(srv.port, unique("x"), headers={"X-Forwarded-For": xff})
            assert r.status == 200, r
            held.append(r)
        r = open_sse(srv.port, unique("x"), headers={"X-Forwarded-For": "203.0.113.9"})
        assert r.status == 429 and r.error_code() == "rate_limited", \
            f"XFF from an untrusted peer was believed: {r}"
    finally:
        for r in held:
            r.close()


# =============================================================================== 8. metrics

def test_rejections_are_counted(herald_factory, keys):
    srv = herald_factory(jwt_config(keys, leeway="0s") | {"limits": {"connections_per_ip": 1,
                                                                      "new_connections_per_ip_per_s": 0}})
    name = METRICS["rejected"]

    def snap():
        t = requests.get(srv.url("/metrics"), timeout=10).text
        return {r: metric_sum(t, name, reason=r) or 0.0 for r in ("unauthorized", "forbidden", "rate_limited")}

    before = snap()
    r = requests.get(srv.url(f"/sse?topic=news&token={keys.forged(keys.token())}"), timeout=10, stream=True)
    assert r.status_code == 401
    r = requests.post(srv.url(f"/publish/{unique('m')}"), data="x", timeout=10)
    assert r.status_code == 401
    r = requests.get(srv.url(f"/sse?topic=private:{unique('m')}"), timeout=10, stream=True)
    assert r.status_code == 403
    hold = open_sse(srv.port, unique("m"))
    try:
        assert hold.status == 200, hold
        r2 = open_sse(srv.port, unique("m"))
        assert r2.status == 429, r2
    finally:
        hold.close()
    after = wait_metrics(snap, before, {"unauthorized": 2, "forbidden": 1, "rate_limited": 1})
    for reason, n in {"unauthorized": 2, "forbidden": 1, "rate_limited": 1}.items():
        assert after[reason] - before[reason] >= n, (reason, before, after)


def wait_metrics(snap, before, want, timeout=3.0):
    deadline = time.monotonic() + timeout
    while True:
        after = snap()
        if all(after[k] - before[k] >= n for k, n in want.items()) or time.monotonic() > deadline:
            return after
        time.sleep(0.1)
