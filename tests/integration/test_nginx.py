"""herald behind real nginx running the shipped config/nginx/herald.conf (rendered by
scripts/nginx-conf.sh with this test's ports): WebSocket upgrade, SSE without buffering, long-poll
and publish all pass through it; every location forwards the client's address, scheme and host;
/publish, /admin and /metrics answer only this machine; 1,500 SSE clients from 10 addresses meet
per-address limits as 10 clients, not one; the TLS + HTTP/2 lines multiplex SSE streams."""
import asyncio
import http.server
import json
import re
import socket
import subprocess
import threading
import time

import pytest
import requests
import websockets
import yaml

from herald_test import REPO_ROOT, free_port, unique, wait_until
from herald_test.metrics import rejected
from herald_test.nginx import Nginx, nginx_test, render_conf
from herald_test.sse import SSEClient
from herald_test.tls import make_ca, make_cert

@pytest.fixture
def proxied(herald_factory, tmp_path):
    """Two herald instances behind nginx. nginx hashes by client address, so every request of
    this test (all from 127.0.0.1) goes to the same instance, as sticky sessions would."""
    a = herald_factory()
    b = herald_factory()
    ngx = Nginx(tmp_path, [f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"])
    try:
        yield ngx.base, ngx.port, (a, b)
    finally:
        ngx.stop()


def test_shipped_nginx_config_is_valid(tmp_path):
    (tmp_path / "nginx.conf").write_text(render_conf("127.0.0.1:1", tmp_path, ["127.0.0.1:2"]))
    p = nginx_test(tmp_path / "nginx.conf", tmp_path)
    assert p.returncode == 0, p.stderr


def test_websocket_upgrade_and_publish_through_nginx(proxied):
    base, port, _ = proxied
    topic = unique("ngx-ws")

    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws?topic={topic}",
                                      subprotocols=["herald.v1"], open_timeout=10) as ws:
            assert ws.subprotocol == "herald.v1"
            await ws.send(json.dumps({"op": "ping", "id": 7}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "ok", "id": 7, "op": "ping"}
            r = requests.post(f"{base}/publish/{topic}", data="through nginx", timeout=5)
            assert r.status_code == 200, r.text
            assert r.json()["subscribers"] == 1
            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert m["type"] == "message" and m["data"] == "through nginx" and m["offset"] == r.json()["offset"]

    asyncio.run(run())


def test_sse_event_is_not_buffered_by_nginx(proxied):
    base, _, _ = proxied
    topic = unique("ngx-sse")
    sse = SSEClient(f"{base}/sse?topic={topic}", max_time=30)
    try:
        status, headers = sse.wait_headers(5)
        assert status == 200 and headers["content-type"].startswith("text/event-stream")
        sse.wait_ready(5)
        # One small event: a buffering proxy would hold it (until 4-8 KiB or the stream ends).
        t0 = time.monotonic()
        r = requests.post(f"{base}/publish/{topic}", data="now", timeout=5)
        assert r.status_code == 200
        ev = sse.next_event(5)
        assert ev.data == "now"
        # A buffering nginx holds it until 4-8 KiB or the stream's end (30 s away): a bound well
        # under that, and over what a loaded machine takes to pass one event through.
        assert time.monotonic() - t0 < 3.0, "the event was held back by the proxy"
    finally:
        sse.proc.kill()
        sse.proc.wait()


def test_long_poll_through_nginx(proxied):
    base, _, _ = proxied
    topic = unique("ngx-poll")
    h = requests.get(f"{base}/history/{topic}", timeout=5).json()
    cursor = f"{h['epoch']}:0"
    requests.post(f"{base}/publish/{topic}", data="a", timeout=5)
    r = requests.get(f"{base}/poll", params={"topic": topic, "since": cursor}, timeout=10)
    assert r.status_code == 200, r.text
    j = r.json()
    assert [m["data"] for m in j["messages"]] == ["a"] and j["cursor"] == f"{h['epoch']}:1"


# --------------------------------------------------------------------------- what herald receives

SHIPPED_CONF = REPO_ROOT / "config" / "nginx" / "herald.conf"


def shipped_locations() -> list[tuple[str, str]]:
    """(modifier, path) of every `location` in the shipped config."""
    out = []
    for line in SHIPPED_CONF.read_text().splitlines():
        m = re.match(r"^\s*location\s+(=\s+)?(\S+)\s*\{", line)
        if m:
            out.append(((m.group(1) or "").strip(), m.group(2)))
    return out


def sample_path(modifier: str, path: str) -> str:
    """A request path that the location (modifier, path) serves."""
    if modifier == "=":
        return path
    return "/history/t" if path == "/" else path.rstrip("/") + "/t"


def raw_request(port: int, method: str, path: str, src: str = "127.0.0.1",
                headers: dict | None = None, body: bytes = b"") -> tuple[int, bytes]:
    """One HTTP/1.1 request over a socket bound to `src`; returns (status, whole response)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0)) as s:
        h = {"Host": "herald.example", "Connection": "close", **(headers or {})}
        if body or method == "POST":
            h["Content-Length"] = str(len(body))
        s.sendall((f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items())
                   + "\r\n").encode() + body)
        data = b""
        # Up to the end of the body (Content-Length) or of the connection.
        while True:
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                m = re.search(rb"(?im)^content-length:\s*(\d+)", data[:end])
                if m and len(data) >= end + 4 + int(m.group(1)):
                    break
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data


class HeaderRecorder:
    """A stand-in upstream that answers 200 and records the headers of every request it gets."""

    def __init__(self):
        seen = self.seen = []

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                seen.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = _answer

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def test_shipped_config_sets_no_header_inside_a_location():
    """nginx drops every server-level proxy_set_header in a location that sets one of its own:
    the headers live at server level only."""
    depth, bad = 0, []
    for n, line in enumerate(SHIPPED_CONF.read_text().splitlines(), 1):
        code = line.split("#", 1)[0]
        if re.match(r"^\s*location\b", code):
            depth = 1
            continue
        if depth:
            depth += code.count("{") - code.count("}")
            if "proxy_set_header" in code:
                bad.append(f"{n}: {line.strip()}")
    assert not bad, f"proxy_set_header inside a location discards the server-level ones: {bad}"
    conf = SHIPPED_CONF.read_text()
    nofile = int(re.search(r"^worker_rlimit_nofile (\d+);", conf, re.M).group(1))
    conns = int(re.search(r"^\s*worker_connections (\d+);", conf, re.M).group(1))
    assert nofile <= 20000 and conns <= nofile, (nofile, conns)
    assert re.search(r"^\s*listen 127\.0\.0\.1:\d+;", conf, re.M), "nginx must listen on loopback by default"


def test_every_location_forwards_client_address_proto_and_host(tmp_path):
    """Each location of the shipped config, requested from 127.0.0.2 (a client) and 127.0.0.1
    (a backend on this machine): the upstream gets X-Forwarded-For with the client's address,
    X-Forwarded-Proto and the Host the client asked for; /publish, /admin and /metrics answer 403
    to anyone but 127.0.0.1 without reaching the upstream."""
    rec = HeaderRecorder()
    ngx = Nginx(tmp_path, [f"127.0.0.1:{rec.port}"])
    try:
        locations = shipped_locations()
        assert {p for _, p in locations} >= {"/ws", "/sse", "/poll", "/publish", "/admin", "/metrics", "/"}
        restricted = {"/publish", "/admin", "/metrics"}
        for modifier, loc in locations:
            path = sample_path(modifier, loc)
            method = "POST" if loc in ("/publish", "/admin") else "GET"
            extra = {"Upgrade": "websocket", "Connection": "Upgrade"} if loc == "/ws" else {}
            for src in ("127.0.0.2", "127.0.0.1"):
                rec.seen.clear()
                status, raw = raw_request(ngx.port, method, path, src=src,
                                          headers={**extra, "X-Forwarded-For": "203.0.113.9"},
                                          body=b"x" if method == "POST" else b"")
                if loc in restricted and src != "127.0.0.1":
                    assert status == 403, f"{path} from {src}: {raw[:200]!r}"
                    assert rec.seen == [], f"{path} from {src} reached the upstream"
                    continue
                assert status == 200, f"{path} from {src}: {raw[:300]!r}\n{ngx.error_log()}"
                assert len(rec.seen) == 1, rec.seen
                got_path, h = rec.seen[0]
                assert got_path == path
                # nginx appends the peer address to whatever the client sent; herald believes
                # the right-most entry that is not a trusted proxy.
                assert h.get("x-forwarded-for") == f"203.0.113.9, {src}", (path, h)
                assert h.get("x-forwarded-proto") == "http", (path, h)
                assert h.get("host") == "herald.example", (path, h)
                if loc == "/ws":
                    assert h.get("upgrade") == "websocket" and h.get("connection") == "upgrade", h
                else:
                    assert "upgrade" not in h, (path, h)
    finally:
        ngx.stop()
        rec.close()


# --------------------------------------------------------------------------- per-address limits

# The shipped per-address limits (config/herald.yaml and the production config).
SHIPPED = yaml.safe_load((REPO_ROOT / "config" / "herald.yaml").read_text())
PER_IP = SHIPPED["limits"]["connections_per_ip"]
NEW_PER_IP = SHIPPED["limits"]["new_connections_per_ip_per_s"]
CLIENTS = 1500
SOURCES = 10                      # 127.0.0.2 .. 127.0.0.11, 150 streams each


async def _open_sse(port: int, src: str, topic: str, sem: asyncio.Semaphore):
    """An SSE request from `src`; returns (status, reader, writer) with the headers read."""
    async with sem:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, local_addr=(src, 0)), 15)
        writer.write(f"GET /sse?topic={topic} HTTP/1.1\r\nHost: herald.example\r\n\r\n".encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
    status = int(head.split(b" ", 2)[1])
    return status, head, reader, writer


async def _read_until(reader, needle: bytes, timeout: float) -> bool:
    buf = b""
    try:
        async with asyncio.timeout(timeout):
            while needle not in buf:
                chunk = await reader.read(4096)
                if not chunk:
                    return False
                buf = buf[-len(needle):] + chunk
    except TimeoutError:
        return False
    return True


def test_per_address_limits_see_client_addresses_through_nginx(herald_factory, tmp_path):
    """1,500 SSE clients from 10 loopback addresses through nginx to one herald with the shipped
    per-address limits and trusted_proxies [127.0.0.1]: none is refused (from one address, the
    same burst would hit both limits), and all receive a publish. Then 2x the burst from ONE new
    address: that address is limited, the others are not."""
    assert CLIENTS > PER_IP and CLIENTS // SOURCES < 2 * NEW_PER_IP, "the test must straddle the limits"
    key = "nginx-test-publish-key-0123456789"
    h = herald_factory({"limits": {"connections_per_ip": PER_IP,
                                   "new_connections_per_ip_per_s": NEW_PER_IP},
                        "trusted_proxies": ["127.0.0.1"],
                        "auth": {"allow_unauthenticated_publish": False, "publish_keys": [key]}})
    ngx = Nginx(tmp_path, [f"127.0.0.1:{h.port}"])
    topic = unique("ngx-many")

    async def run():
        sem = asyncio.Semaphore(200)
        srcs = [f"127.0.0.{2 + i % SOURCES}" for i in range(CLIENTS)]
        results = await asyncio.gather(*[_open_sse(ngx.port, s, topic, sem) for s in srcs])
        refused = [(s, r[1][:120]) for s, r in zip(srcs, results) if r[0] != 200]
        try:
            assert not refused, f"{len(refused)} of {CLIENTS} refused, e.g. {refused[:3]}"
            assert rejected(h, "rate_limited") == 0
            # Every stream is live: one publish through nginx reaches all of them.
            await asyncio.sleep(0.5)
            r = requests.post(f"{ngx.base}/publish/{topic}", data="to all", timeout=10,
                              headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
            assert r.json()["subscribers"] == CLIENTS
            got = await asyncio.gather(*[_read_until(rd, b"data: to all\n", 20)
                                         for _, _, rd, _ in results])
            assert sum(got) == CLIENTS
            # One address, twice its burst at once: herald limits that address...
            burst = 2 * NEW_PER_IP
            more = await asyncio.gather(*[_open_sse(ngx.port, "127.0.0.20", topic, sem)
                                          for _ in range(2 * burst)])
            codes = [m[0] for m in more]
            limited = [m for m in more if m[0] == 429]
            assert limited, codes
            body = await asyncio.wait_for(limited[0][2].read(4096), 5)
            assert b"too many new connections from this address" in body, body
            assert codes.count(200) <= burst + NEW_PER_IP * 5, codes.count(200)
            assert rejected(h, "rate_limited") == len(limited)
            # ...and only that address: another new one is admitted at once.
            status, _, _, w = await _open_sse(ngx.port, "127.0.0.21", topic, sem)
            w.close()
            assert status == 200
            for m in more:
                m[3].close()
        finally:
            for _, _, _, w in results:
                w.close()

    try:
        asyncio.run(run())
    finally:
        ngx.stop()


# --------------------------------------------------------------------------- TLS + HTTP/2

def test_sse_streams_multiplexed_over_one_http2_connection(herald_factory, tmp_path):
    """The TLS + HTTP/2 lines of the shipped config switched on (test certificates made here with
    openssl): one curl --http2 --parallel opens 6 SSE streams, all over ONE TLS connection (curl
    says so), and every stream receives a message published through nginx over HTTPS."""
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = make_ca(str(certs))
    cert, key = make_cert(str(certs), "nginx", ca)
    h = herald_factory({"trusted_proxies": ["127.0.0.1"]})
    tls_port = free_port()
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    ngx = Nginx(prefix, [f"127.0.0.1:{h.port}"],
                render_args=("--tls", f"127.0.0.1:{tls_port}", cert, key))
    topic = unique("ngx-h2")
    streams = 6
    args = ["curl", "--http2", "--parallel", "--parallel-max", str(streams), "--cacert", ca[0],
            "-sSNv", "--max-time", "6"]
    for i in range(streams):
        args += ["-o", str(tmp_path / f"stream{i}"), f"https://localhost:{tls_port}/sse?topic={topic}"]
    try:
        curl = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        # All streams subscribed before the publish.
        wait_until(lambda: all((tmp_path / f"stream{i}").exists() and
                               b"retry:" in (tmp_path / f"stream{i}").read_bytes()
                               for i in range(streams)), 5, what="6 SSE streams open")
        r = requests.post(f"https://localhost:{tls_port}/publish/{topic}", data="over h2",
                          verify=ca[0], timeout=5)
        assert r.status_code == 200, r.text
        assert r.json()["subscribers"] == streams
        _, verbose = curl.communicate(timeout=15)
        verbose = verbose.decode("utf-8", "replace")
        for i in range(streams):
            body = (tmp_path / f"stream{i}").read_bytes()
            assert b"data: over h2\n" in body, (i, body)
        assert "ALPN: server accepted h2" in verbose, verbose[-2000:]
        assert verbose.count("* Connected to ") == 1, "more than one connection:\n" + verbose[-3000:]
        assert verbose.count("Multiplexed connection found") == streams - 1, verbose[-3000:]
    finally:
        ngx.stop()
