"""Who may call what, endpoint by endpoint (docs/security.md, "Who may read what").

Every endpoint of the router x every principal, against the real binary, with two configs: locked
(publishing needs an API key) and open publishing (`allow_unauthenticated_publish: true`, which
must not open /admin). Each answer is checked for its status and JSON error code; a read that
succeeds must carry the private payload, and a refused one must not.

The endpoint list comes from the binary (`herald --list-endpoints`, the router's own table): the
test fails when the router serves an endpoint this matrix does not cover, so a new endpoint
cannot ship without a decided access class and a row here.

Clients are raw sockets (HTTP/1.1 and RFC 6455 by hand) so that every status, header and byte is
seen as sent. Every wait is bounded; every target is 127.0.0.1.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field

import pytest

from herald_test import HOST
from herald_test.metrics import metric_sum
from herald_test.server import herald_bin
from herald_test.tokens import AUDIENCE, ISSUER, Keys
from herald_test.ws import WS_GUID

PUB_KEY = "authz-matrix-publish-key-" + "k" * 16
WRONG_KEY = "authz-matrix-wrong-key-" + "w" * 16
COOKIE = "herald_token"
PRIVATE = "private:matrix"      # `anonymous: none`
PUBLIC = "news:matrix"          # no rule matches: default_anonymous subscribe
OTHER = "private:other"         # what the "token for another topic" grants
SINK = "private:sink"           # what the publish probes write to (keeps PRIVATE's history short)
SECRET = "secret-payload-"      # every payload of PRIVATE/PUBLIC starts with it
WAIT = 5.0                      # seconds a probe waits for a payload that should come

PRINCIPALS = ["anonymous", "token", "token_in_query", "token_in_cookie", "token_other_topic",
              "token_expired", "token_bad_signature", "api_key", "api_key_in_query",
              "wrong_api_key"]

# ------------------------------------------------------------------------------ expectations
# "ok" is 200 (101 for a WebSocket upgrade); otherwise "<status> <error code>". "op <code>" is an
# `error` frame answering the WebSocket subscribe op (the connection itself was accepted).
R401, R403 = "401 unauthorized", "403 forbidden"

READ_PRIVATE = {
    "anonymous": R403, "token": "ok", "token_in_query": "ok", "token_in_cookie": "ok",
    "token_other_topic": R403, "token_expired": R401, "token_bad_signature": R401,
    "api_key": "ok", "api_key_in_query": R401, "wrong_api_key": R401,
}
# A topic anonymous clients may read is readable by every valid principal; a credential that is
# presented but invalid is still refused.
READ_PUBLIC = {**READ_PRIVATE, "anonymous": "ok", "token_other_topic": "ok"}
# The subscribe op runs after an upgrade without topics: an invalid credential fails the upgrade,
# a valid one (or none) gets the op's answer.
OP_PRIVATE = {p: ("op forbidden" if v == R403 else v) for p, v in READ_PRIVATE.items()}
OP_PUBLIC = dict(READ_PUBLIC)
PUBLISH_LOCKED = {p: R401 for p in PRINCIPALS} | {"api_key": "ok"}
# Open publishing admits a request without an Authorization header; a header that is there must
# hold a valid key (a JWT is not one).
PUBLISH_OPEN = PUBLISH_LOCKED | {"anonymous": "ok", "token_in_query": "ok", "token_in_cookie": "ok",
                                 "api_key_in_query": "ok"}
ADMIN = {p: R401 for p in PRINCIPALS} | {"api_key": "ok"}     # never opened by open publishing
PUBLIC_ACCESS = {p: "ok" for p in PRINCIPALS}                  # credentials are not looked at


def expected(access: str, open_publish: bool, topic: str | None, op: bool = False) -> dict:
    if access == "public":
        return PUBLIC_ACCESS
    if access == "admin":
        return ADMIN
    if access == "publish":
        return PUBLISH_OPEN if open_publish else PUBLISH_LOCKED
    assert access == "read", access
    if op:
        return OP_PRIVATE if topic == PRIVATE else OP_PUBLIC
    return READ_PRIVATE if topic == PRIVATE else READ_PUBLIC


# ------------------------------------------------------------------------------ raw clients

@dataclass
class Cred:
    headers: dict = field(default_factory=dict)
    query: str = ""             # "token=..." appended to the query string

    def target(self, path: str, query: str = "") -> str:
        q = "&".join(x for x in (query, self.query) if x)
        return path + ("?" + q if q else "")


@dataclass
class Answer:
    status: int
    headers: dict
    body: bytes
    sock: socket.socket | None = None   # still open for a stream (caller closes)


def _send_request(port, method, target, headers, body=b"", timeout=WAIT) -> tuple[socket.socket, Answer]:
    s = socket.create_connection((HOST, port), timeout=timeout)
    hdrs = {"Host": f"{HOST}:{port}", **headers}
    if body or method == "POST":
        hdrs["Content-Length"] = str(len(body))
    s.sendall((f"{method} {target} HTTP/1.1\r\n" +
               "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n").encode() + body)
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while b"\r\n\r\n" not in buf:
        assert time.monotonic() < deadline, f"{method} {target}: no answer in {timeout}s"
        chunk = s.recv(65536)
        assert chunk, f"{method} {target}: closed before an answer: {bytes(buf)!r}"
        buf += chunk
    i = buf.find(b"\r\n\r\n")
    lines = bytes(buf[:i]).decode("latin-1").split("\r\n")
    h = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
    return s, Answer(int(lines[0].split(" ")[1]), h, bytes(buf[i + 4:]))


def http(port, method, target, headers=None, body=b"", until: bytes | None = None) -> Answer:
    """One request on its own connection. A body with Content-Length is read whole; an event
    stream is read until `until` appears or WAIT passes."""
    s, a = _send_request(port, method, target, {"Connection": "close", **(headers or {})}, body)
    deadline = time.monotonic() + WAIT
    try:
        n = int(a.headers.get("content-length", "-1"))
        while time.monotonic() < deadline:
            if n >= 0 and len(a.body) >= n:
                break
            if until is not None and until in a.body:
                break
            s.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            a.body += chunk
    finally:
        s.close()
    return a


class WS:
    """An RFC 6455 client over a raw socket that may send any header (Authorization, Cookie)."""

    def __init__(self, port, target, headers):
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock, self.answer = _send_request(port, "GET", target, {
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13", **headers})
        self.buf = bytearray(self.answer.body)
        if self.answer.status == 101:
            want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
            assert self.answer.headers.get("sec-websocket-accept") == want, self.answer.headers
        else:  # an error answer: read its body
            n = int(self.answer.headers.get("content-length", "0"))
            self.sock.settimeout(WAIT)
            while len(self.buf) < n:
                chunk = self.sock.recv(65536)
                if not chunk:
                    break
                self.buf += chunk
            self.answer.body = bytes(self.buf)
            self.sock.close()

    def send(self, obj):
        payload = json.dumps(obj).encode()
        assert len(payload) < 126
        mask = os.urandom(4)
        self.sock.sendall(struct.pack("!BB", 0x81, 0x80 | len(payload)) + mask +
                          bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))

    def recv_json(self, deadline: float):
        """The next text frame as JSON, or None when nothing comes before `deadline`."""
        while True:
            while True:
                if len(self.buf) >= 2:
                    n, off = self.buf[1] & 0x7F, 2
                    if n == 126 and len(self.buf) >= 4:
                        n, off = struct.unpack("!H", self.buf[2:4])[0], 4
                    elif n == 127 and len(self.buf) >= 10:
                        n, off = struct.unpack("!Q", self.buf[2:10])[0], 10
                    if n < 126 or off > 2:
                        if len(self.buf) >= off + n:
                            break
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(65536)
                except socket.timeout:
                    return None
                if not chunk:
                    return None
                self.buf += chunk
            opcode, payload = self.buf[0] & 0x0F, bytes(self.buf[off:off + n])
            del self.buf[:off + n]
            if opcode == 0x1:
                return json.loads(payload)
            if opcode == 0x8:
                return None

    def close(self):
        self.sock.close()


# ------------------------------------------------------------------------------ the server

class Matrix:
    def __init__(self, herald_factory, keys: Keys, open_publish: bool):
        self.open_publish = open_publish
        self.srv = herald_factory({
            "auth": {
                "jwt": {"keys": [{"alg": "HS256", "secret": keys.hs_secret}],
                        "audience": AUDIENCE, "issuer": ISSUER},
                "publish_keys": [PUB_KEY],
                "allow_unauthenticated_publish": open_publish,
                "token_cookie": COOKIE,
                "default_anonymous": "subscribe",
                "namespaces": [{"pattern": "private:*", "anonymous": "none"}],
            },
            "history": {"size": 1000},
            "presence": {"patterns": ["private:*"]},
            "admin": {"enabled": True},
        })
        self.port = self.srv.port
        good = keys.token("reader", topics=[PRIVATE])
        bearer = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
        self.creds = {
            "anonymous": Cred(),
            "token": Cred(bearer(good)),
            "token_in_query": Cred(query=f"token={good}"),
            "token_in_cookie": Cred({"Cookie": f"other=1; {COOKIE}={good}"}),
            "token_other_topic": Cred(bearer(keys.token("other", topics=[OTHER]))),
            "token_expired": Cred(bearer(keys.token("late", ttl=-3600, topics=[PRIVATE]))),
            "token_bad_signature": Cred(bearer(Keys.forged(good))),
            "api_key": Cred(bearer(PUB_KEY)),
            "api_key_in_query": Cred(query=f"token={PUB_KEY}"),
            "wrong_api_key": Cred(bearer(WRONG_KEY)),
        }
        assert set(self.creds) == set(PRINCIPALS)
        self.n = 0  # payloads published so far; each is unique
        self.epoch = {t: self.publish(t)["epoch"] for t in (PRIVATE, PUBLIC)}

    def publish(self, topic: str) -> dict:
        self.n += 1
        a = http(self.port, "POST", f"/publish/{topic}", {"Authorization": f"Bearer {PUB_KEY}"},
                 f"{SECRET}{topic}-{self.n}".encode())
        assert a.status == 200, (a.status, a.body)
        return json.loads(a.body)

    def rejected(self) -> dict:
        text = http(self.port, "GET", "/metrics").body.decode()
        return {r: metric_sum(text, "herald_rejected_requests_total", reason=r) or 0
                for r in ("unauthorized", "forbidden")}


def verdict(a: Answer) -> str:
    if a.status in (101, 200):
        return "ok"
    try:
        err = json.loads(a.body)["error"]
        assert isinstance(err["message"], str) and err["message"]
        code = err["code"]
    except (ValueError, KeyError, TypeError, AssertionError):
        return f"{a.status} <not a JSON error: {a.body[:120]!r}>"
    if a.status == 401 and not a.headers.get("www-authenticate", "").startswith("Bearer"):
        return f"401 {code} <no WWW-Authenticate: Bearer>"
    return f"{a.status} {code}"


# Probes: each makes one request as `cred` and returns (verdict, whether a private payload was
# seen). A read probe that gets "ok" must see the topic's payload.

def probe_get(path):
    def probe(m: Matrix, cred: Cred, topic):
        a = http(m.port, "GET", cred.target(path), cred.headers)
        return verdict(a), SECRET.encode() in a.body
    return probe


def probe_history(m, cred, topic):
    a = http(m.port, "GET", cred.target(f"/history/{topic}"), cred.headers)
    return verdict(a), SECRET.encode() in a.body


def probe_poll(m, cred, topic):
    a = http(m.port, "GET", cred.target("/poll", f"topic={topic}&since={m.epoch[topic]}:0"),
             cred.headers)
    return verdict(a), SECRET.encode() in a.body


def probe_sse(m, cred, topic):
    a = http(m.port, "GET", cred.target("/sse", f"topic={topic}&last_event_id={m.epoch[topic]}:0"),
             cred.headers, until=SECRET.encode())
    return verdict(a), SECRET.encode() in a.body


def _ws_live(m: Matrix, ws: WS, topic: str) -> bool:
    """Publish a new payload to `topic` and wait for it on `ws`."""
    want = f"{SECRET}{topic}-{m.n + 1}"
    m.publish(topic)
    deadline = time.monotonic() + WAIT
    while (f := ws.recv_json(deadline)) is not None:
        if f.get("type") == "message" and f.get("data") == want:
            return True
    return False


def probe_ws(m, cred, topic):
    ws = WS(m.port, cred.target("/ws", f"topic={topic}"), cred.headers)
    if ws.answer.status != 101:
        return verdict(ws.answer), SECRET.encode() in ws.answer.body
    try:
        return "ok", _ws_live(m, ws, topic)
    finally:
        ws.close()


def probe_ws_op(m, cred, topic):
    ws = WS(m.port, cred.target("/ws"), cred.headers)
    if ws.answer.status != 101:
        return verdict(ws.answer), SECRET.encode() in ws.answer.body
    try:
        ws.send({"op": "subscribe", "topic": topic, "id": 7})
        deadline = time.monotonic() + WAIT
        while (f := ws.recv_json(deadline)) is not None and f.get("id") != 7:
            pass
        assert f is not None, "no answer to the subscribe op"
        if f["type"] == "error":
            return f"op {f['code']}", False
        assert f["type"] == "ok", f
        return "ok", _ws_live(m, ws, topic)
    finally:
        ws.close()


def probe_publish_topic(m, cred, topic):
    a = http(m.port, "POST", cred.target(f"/publish/{SINK}"), cred.headers, b"x")
    return verdict(a), False


def probe_publish_json(m, cred, topic):
    a = http(m.port, "POST", cred.target("/publish"),
             {"Content-Type": "application/json", **cred.headers},
             json.dumps({"topic": SINK, "data": "x"}).encode())
    return verdict(a), False


def probe_presence(m, cred, topic):
    # Who is subscribed (user ids, info) is the backend's to read: an API key, like /admin.
    a = http(m.port, "GET", cred.target(f"/presence/{PRIVATE}"), cred.headers)
    if a.status == 200:
        assert json.loads(a.body)["topic"] == PRIVATE, a.body
    return verdict(a), False


def probe_admin(m, cred, topic):
    a = http(m.port, "POST", cred.target("/admin/disconnect"),
             {"Content-Type": "application/json", **cred.headers}, b'{"user":"nobody"}')
    return verdict(a), False


def probe_admin_page(m, cred, topic):
    # Public row: whoever asks gets the login form (the page itself needs the admin session,
    # which no principal here has: tests/integration/test_admin_page.py covers it).
    a = http(m.port, "GET", cred.target("/admin"), cred.headers)
    if a.status == 200:
        assert b'action="/admin/login"' in a.body and b"herald-csrf" not in a.body, a.body[:300]
    return verdict(a), False


def probe_admin_login(m, cred, topic):
    # Public row: the API key in the form is the credential, whatever else the request carries.
    a = http(m.port, "POST", cred.target("/admin/login"),
             {"Content-Type": "application/x-www-form-urlencoded", **cred.headers},
             f"key={PUB_KEY}".encode())
    ok = a.status == 303 and a.headers.get("set-cookie", "").startswith("herald-admin=")
    return ("ok" if ok else f"{a.status} {a.body[:80]!r}"), False


def probe_admin_reload(m, cred, topic):
    a = http(m.port, "POST", cred.target("/admin/reload"), cred.headers, b"")
    return verdict(a), False


# The matrix's own table: (path, match, method) as --list-endpoints prints it -> the access class
# this test expects and the probe that calls it. A row the binary lists and this table lacks fails
# test_every_endpoint_is_in_the_matrix.
ENDPOINTS = {
    ("/healthz", "exact", "GET"): ("public", probe_get("/healthz")),
    ("/readyz", "exact", "GET"): ("public", probe_get("/readyz")),
    ("/metrics", "exact", "GET"): ("public", probe_get("/metrics")),
    ("/ws", "exact", "GET"): ("read", probe_ws),
    ("/sse", "exact", "GET"): ("read", probe_sse),
    ("/poll", "exact", "GET"): ("read", probe_poll),
    ("/history/", "prefix", "GET"): ("read", probe_history),
    ("/publish", "exact", "POST"): ("publish", probe_publish_json),
    ("/publish/", "prefix", "POST"): ("publish", probe_publish_topic),
    ("/admin/disconnect", "exact", "POST"): ("admin", probe_admin),
    ("/presence/", "prefix", "GET"): ("admin", probe_presence),
    ("/admin/reload", "exact", "POST"): ("admin", probe_admin_reload),
    ("/admin", "exact", "GET"): ("public", probe_admin_page),
    ("/admin/login", "exact", "POST"): ("public", probe_admin_login),
    ("/admin/stats", "exact", "GET"): ("admin", probe_get("/admin/stats")),
    ("/client/herald.js", "exact", "GET"): ("public", probe_get("/client/herald.js")),
}


def listed_endpoints() -> dict:
    p = subprocess.run([herald_bin(), "--list-endpoints"], capture_output=True, timeout=10)
    assert p.returncode == 0, f"herald --list-endpoints exited {p.returncode}: {p.stderr[:300]!r}"
    out = {}
    for line in p.stdout.decode().splitlines():
        e = json.loads(line)
        for method in e["methods"]:
            out[(e["path"], e["match"], method)] = e
    assert out, "herald --list-endpoints printed nothing"
    return out


# ------------------------------------------------------------------------------ tests

@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    return Keys(str(tmp_path_factory.mktemp("jwtkeys")))


def test_every_endpoint_is_in_the_matrix():
    """The router's table (from the binary) and this matrix list the same endpoints, with the
    same access class."""
    listed = listed_endpoints()
    missing = sorted(set(listed) - set(ENDPOINTS))
    assert not missing, (f"the router serves endpoints the authorization matrix does not cover: "
                         f"{missing}; add a row (access class + probe) to ENDPOINTS")
    stale = sorted(set(ENDPOINTS) - set(listed))
    assert not stale, f"the matrix lists endpoints the router does not serve: {stale}"
    wrong = {k: (listed[k]["access"], ENDPOINTS[k][0]) for k in listed
             if listed[k]["access"] != ENDPOINTS[k][0]}
    assert not wrong, f"access class (router, matrix) differs: {wrong}"


@pytest.mark.parametrize("open_publish", [False, True], ids=["locked", "open_publish"])
def test_matrix(herald_factory, keys, open_publish):
    m = Matrix(herald_factory, keys, open_publish)
    before = m.rejected()
    cases = []
    for (path, match, method), (access, probe) in ENDPOINTS.items():
        for topic in ((PRIVATE, PUBLIC) if access == "read" else (None,)):
            cases.append((f"{method} {path}" + (f" [{topic}]" if topic else ""), probe, topic,
                          expected(access, open_publish, topic)))
            if path == "/ws":
                cases.append((f"WS subscribe op [{topic}]", probe_ws_op, topic,
                              expected(access, open_publish, topic, op=True)))
    wrong, leaks, counts = [], [], {"unauthorized": 0, "forbidden": 0}
    for name, probe, topic, want in cases:
        for who in PRINCIPALS:
            got, saw = probe(m, m.creds[who], topic)
            if got != want[who]:
                wrong.append(f"{name:38} {who:20} expected {want[who]!r:22} got {got!r}")
            if got == "ok" and topic and not saw:
                leaks.append(f"{name} {who}: allowed, but the payload never came")
            if got != "ok" and saw:
                leaks.append(f"{name} {who}: refused ({got}), yet the private payload was sent")
            for reason, prefix in (("unauthorized", "401"), ("forbidden", "403")):
                counts[reason] += got.startswith(prefix)
            counts["forbidden"] += got == "op forbidden"
    assert not wrong and not leaks, (
        f"{len(wrong)} of {len(cases) * len(PRINCIPALS)} cells differ:\n" +
        "\n".join(wrong + leaks))
    after = m.rejected()
    assert {r: after[r] - before[r] for r in counts} == counts, (before, after, counts)


def test_methods_and_unknown_paths(herald_factory, keys):
    """The table answers 405 (with Allow) for another method and 404 for a path it does not list,
    whatever the credentials; OPTIONS preflights are answered on listed paths only."""
    m = Matrix(herald_factory, keys, open_publish=False)
    key = {"Authorization": f"Bearer {PUB_KEY}"}
    for (path, match, method) in ENDPOINTS:
        other = "POST" if method == "GET" else "GET"
        target = path + ("x" if match == "prefix" else "")
        for headers in ({}, key):
            a = http(m.port, other, target, headers)
            assert verdict(a) == "405 method_not_allowed", (other, target, a)
            assert a.headers.get("allow") == method, (other, target, a.headers)
        a = http(m.port, "OPTIONS", target, {"Origin": "https://app.example"})
        assert a.status == 204, (target, a)
    for path in ("/", "/nope", "/history", "/adminx", "/admin/", "/admin/disconnectx", "/publishx",
                 "/healthz/x", "/ws/x"):
        for method, headers in (("GET", {}), ("POST", key), ("OPTIONS", {})):
            a = http(m.port, method, path, headers)
            assert verdict(a) == "404 not_found", (method, path, a)
