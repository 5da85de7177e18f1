"""In-process TLS (tls.cert / tls.key): HTTPS publishing, SSE and long-polling over HTTPS, WSS, with
independent clients (curl, python3-websockets over Python's ssl, the npm EventSource over Node's
TLS). The certificates are made by the tests with the `openssl` command."""
import asyncio
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import time

import pytest
import requests
import websockets

from herald_test import HERE, HOST, REPO_ROOT, unique, wait_until
from herald_test.http import curl
from herald_test.metrics import metric_sum
from herald_test.server import herald_bin
from herald_test.sse import SSEClient
from herald_test.tls import (client_ctx, fingerprint_of, https, make_cert, make_test_certs,
                             peer_fingerprint)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_test_certs(str(tmp_path_factory.mktemp("certs")))


@pytest.fixture(scope="module")
def herald_config(certs):
    return {"tls": {"cert": certs["cert"], "key": certs["key"]},
            "http": {"header_timeout": "1s"},
            "ws": {"client_publish": ["tls-burst-*"]},
            "history": {"size": 1000}}


def tls_metrics(server, cafile):
    r = curl(https(server, "/metrics"), "--cacert", cafile)
    assert r.status == 200, r.body[:200]
    text = r.body.decode()
    return (metric_sum(text, "herald_tls_handshakes_total"),
            metric_sum(text, "herald_tls_errors_total"))


def test_https_publish_and_sse_stream(server, certs):
    topic = unique("tls-sse")
    # curl verifies the certificate against the test CA (no -k)
    with SSEClient(https(server, f"/sse?topic={topic}"), curl_args=("--cacert", certs["cafile"])) as sse:
        sse.wait_ready()
        for i in range(1, 6):
            r = curl(https(server, f"/publish/{topic}"), "--cacert", certs["cafile"],
                     "-d", f"msg-{i}")
            assert r.status == 200, r.body
            assert r.json()["offset"] == i
        got = [sse.next_event().data for _ in range(5)]
        assert got == [f"msg-{i}" for i in range(1, 6)]
    handshakes, _ = tls_metrics(server, certs["cafile"])
    assert handshakes >= 7


def test_wss_messages_of_every_size_arrive_whole_and_in_order(server, certs):
    topic = unique("tls-ws")
    ctx = client_ctx(certs["cafile"])
    # Sizes below, at and above one TLS record (16 KiB), and a burst of small ones that the server
    # coalesces into shared records.
    sizes = [1, 100, 16 * 1024 - 60, 16 * 1024, 16 * 1024 + 1, 60_000] + [32] * 300

    async def run():
        async with websockets.connect(f"wss://localhost:{server.port}/ws?topic={topic}", ssl=ctx,
                                      subprotocols=["herald.v1"], max_size=None) as ws:
            await ws.send(json.dumps({"op": "ping", "id": 1}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "ok"
            with requests.Session() as http:
                ca = certs["cafile"]  # per request: a session's verify loses to REQUESTS_CA_BUNDLE
                for i, n in enumerate(sizes[:6]):
                    r = await asyncio.to_thread(http.post, https(server, f"/publish/{topic}"),
                                                data=f"{i}:" + "x" * n, timeout=10, verify=ca)
                    assert r.status_code == 200, r.text
                # the small ones in one batch: one burst, many frames per TLS record
                batch = {"messages": [{"topic": topic, "data": f"{i}:" + "x" * n}
                                      for i, n in enumerate(sizes) if i >= 6]}
                r = await asyncio.to_thread(http.post, https(server, "/publish"), json=batch,
                                            timeout=10, verify=ca)
                assert r.status_code == 200, r.text
            for i, n in enumerate(sizes):
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                assert m["type"] == "message" and m["offset"] == i + 1, (i, m.get("offset"))
                assert m["data"] == f"{i}:" + "x" * n, (i, len(m["data"]))

    asyncio.run(run())


def test_wss_client_burst_spanning_many_records_is_read_whole(server, certs):
    """300 publish ops sent without waiting: each is its own TLS record, so one socket read holds
    many records; every op must be answered (records left inside the TLS session are read
    without waiting for the socket to become readable again)."""
    topic = unique("tls-burst-")
    n = 300

    async def run():
        async with websockets.connect(f"wss://localhost:{server.port}/ws?topic={topic}",
                                      ssl=client_ctx(certs["cafile"]),
                                      subprotocols=["herald.v1"]) as ws:
            for i in range(n):
                await ws.send(json.dumps({"op": "publish", "id": i, "topic": topic,
                                          "data": f"b{i}-" + "z" * 200}))
            acks, msgs = [], []
            while len(acks) < n or len(msgs) < n:
                m = json.loads(await asyncio.wait_for(ws.recv(), 10))
                (acks if m["type"] == "ok" else msgs).append(m)
            assert [a["id"] for a in acks] == list(range(n))
            assert [m["data"] for m in msgs] == [f"b{i}-" + "z" * 200 for i in range(n)]

    asyncio.run(run())


def test_real_eventsource_over_https(server, certs):
    """The npm `eventsource` package (Node's TLS stack) verifies the certificate and reads events."""
    import shutil
    node = shutil.which("node")
    assert node, "node is not installed"
    assert (HERE / "node_modules" / "eventsource").is_dir(), "run npm ci in tests/integration"
    topic = unique("tls-es")
    env = dict(os.environ, NODE_EXTRA_CA_CERTS=certs["cafile"])
    p = subprocess.Popen([node, str(HERE / "es_client.js"), https(server, f"/sse?topic={topic}"),
                          "3", "20000"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        # publish once the stream is open (the client prints {"type":"open"} first)
        line = p.stdout.readline()
        assert json.loads(line)["type"] == "open", line
        for i in range(3):
            r = curl(https(server, f"/publish/{topic}"), "--cacert", certs["cafile"], "-d", f"e{i}")
            assert r.status == 200
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert p.returncode == 0, (out, err)
    msgs = [json.loads(x) for x in out.decode().splitlines() if x.strip()]
    assert [m["data"] for m in msgs if m["type"] == "message"] == ["e0", "e1", "e2"]


def test_long_poll_over_https(server, certs):
    topic = unique("tls-poll")
    r = curl(https(server, f"/publish/{topic}"), "--cacert", certs["cafile"], "-d", "first")
    assert r.status == 200
    r = curl(https(server, f"/poll?topic={topic}&since=" + r.json()["epoch"] + ":0"),
             "--cacert", certs["cafile"])
    assert r.status == 200, r.body
    assert [m["data"] for m in r.json()["messages"]] == ["first"]


def test_plain_http_on_the_tls_port_gets_a_clear_400(server, certs):
    _, errors_before = tls_metrics(server, certs["cafile"])
    r = curl(f"http://{HOST}:{server.port}/healthz")
    assert r.status == 400, r.body
    assert r.headers["content-type"] == "application/json"
    body = json.loads(r.body)
    assert body["error"]["code"] == "tls_required", body
    _, errors_after = tls_metrics(server, certs["cafile"])
    assert errors_after >= errors_before + 1
    text = curl(https(server, "/metrics"), "--cacert", certs["cafile"]).body.decode()
    assert metric_sum(text, "herald_rejected_requests_total", reason="tls_required") >= 1
    assert curl(https(server, "/healthz"), "--cacert", certs["cafile"]).status == 200


def test_untrusted_client_and_garbage_handshakes_leave_the_server_serving(server, certs):
    # A client that does not trust the certificate aborts the handshake itself (curl exit 60).
    p = subprocess.run(["curl", "-sS", "--max-time", "5", https(server, "/healthz")],
                       capture_output=True, timeout=10)
    assert p.returncode == 60, (p.returncode, p.stderr)
    # A TLS record header followed by garbage, then a truncated ClientHello.
    for payload in (b"\x16\x03\x01\x00\x10" + os.urandom(16), b"\x16\x03\x01\x02\x00\x01",
                    b"\x16" + os.urandom(3000)):
        with socket.create_connection((HOST, server.port), timeout=5) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except (ConnectionResetError, socket.timeout):
                pass
    assert curl(https(server, "/healthz"), "--cacert", certs["cafile"]).status == 200


def test_stalled_handshake_is_closed_after_the_header_timeout(server, certs):
    """A client that opens TCP and never finishes its handshake is cut at http.header_timeout
    (1 s here), not at the idle timeout."""
    with socket.create_connection((HOST, server.port), timeout=10) as s:
        s.sendall(b"\x16\x03\x01")  # the start of a record, then nothing
        t0 = time.monotonic()
        s.settimeout(10)
        try:
            data = s.recv(100)
        except ConnectionResetError:
            data = b""
        took = time.monotonic() - t0
    assert data == b"", data
    assert took < 5, took


def test_minimum_version_refuses_older_clients(herald_factory, certs):
    h = herald_factory({"tls": {"cert": certs["cert"], "key": certs["key"], "min_version": "1.3"}})
    ctx = client_ctx(certs["cafile"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection((HOST, h.port), timeout=5) as raw:
        with pytest.raises(ssl.SSLError):
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                s.recv(100)
    ctx13 = client_ctx(certs["cafile"])
    ctx13.minimum_version = ssl.TLSVersion.TLSv1_3
    with socket.create_connection((HOST, h.port), timeout=5) as raw:
        with ctx13.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.version() == "TLSv1.3"
            assert s.selected_alpn_protocol() is None  # none offered, none chosen


def test_alpn_is_http_1_1(server, certs):
    ctx = client_ctx(certs["cafile"])
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((HOST, server.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            assert s.selected_alpn_protocol() == "http/1.1"


def test_sighup_reloads_the_certificate_and_open_connections_keep_theirs(herald_factory, tmp_path,
                                                                          certs):
    ca = certs["ca"][0]
    cert, key = make_cert(str(tmp_path), "live", certs["ca"])
    first = fingerprint_of(cert)
    h = herald_factory({"tls": {"cert": cert, "key": key}})
    assert peer_fingerprint(h.port, ca) == first
    topic = unique("tls-reload")

    async def run():
        async with websockets.connect(f"wss://localhost:{h.port}/ws?topic={topic}",
                                      ssl=client_ctx(ca), subprotocols=["herald.v1"]) as ws:
            # Renew: new key and certificate at the same paths, then SIGHUP.
            new_cert, new_key = make_cert(str(tmp_path), "renewed", certs["ca"])
            os.replace(new_cert, cert)
            os.replace(new_key, key)
            h.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "TLS certificate reloaded" in h.log_text(), 5, what="reload log")
            assert peer_fingerprint(h.port, ca) == fingerprint_of(cert) != first
            # the connection opened before the reload still works
            r = await asyncio.to_thread(curl, https(h, f"/publish/{topic}"), "--cacert", ca,
                                        "-d", "after-reload")
            assert r.status == 200
            m = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert m["data"] == "after-reload"

    asyncio.run(run())
    # A broken renewal keeps the current certificate.
    current = fingerprint_of(cert)
    with open(key, "w") as f:
        f.write("not a key\n")
    h.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "keeping the current TLS certificate" in h.log_text(), 5, what="error log")
    assert peer_fingerprint(h.port, ca) == current
    assert h.alive()


def test_drain_over_tls_says_going_away(herald_factory, certs):
    h = herald_factory({"tls": {"cert": certs["cert"], "key": certs["key"]},
                        "shutdown": {"drain_timeout": "5s"}})
    topic = unique("tls-drain")

    async def run():
        async with websockets.connect(f"wss://localhost:{h.port}/ws?topic={topic}",
                                      ssl=client_ctx(certs["cafile"]),
                                      subprotocols=["herald.v1"]) as ws:
            await ws.send(json.dumps({"op": "ping", "id": 1}))
            await asyncio.wait_for(ws.recv(), 5)
            h.proc.send_signal(signal.SIGTERM)
            with pytest.raises(websockets.ConnectionClosed) as e:
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            return e.value.code

    assert asyncio.run(run()) == 1001
    rc, took = h.terminate(10)
    assert rc == 0 and took < 6, (rc, took)


# Each broken TLS setting, the key the error must name, and a phrase of its explanation.
BAD_TLS = {
    "cert_only": ("tls:\n  cert: {cert}\n", "tls.key", "go together"),
    "key_only": ("tls:\n  key: {key}\n", "tls.cert", "go together"),
    "missing_key_file": ("tls:\n  cert: {cert}\n  key: {tmp}/nope.key\n", "tls.key",
                         "cannot load the private key"),
    "missing_cert_file": ("tls:\n  cert: {tmp}/nope.crt\n  key: {key}\n", "tls.cert",
                          "cannot load the certificate"),
    "mismatch": ("tls:\n  cert: {cert}\n  key: {other_key}\n", "tls.key", "does not match"),
    "bad_version": ("tls:\n  cert: {cert}\n  key: {key}\n  min_version: \"1.1\"\n",
                    "tls.min_version", "expected \"1.2\" or \"1.3\""),
}


@pytest.mark.parametrize("which", sorted(BAD_TLS))
def test_bad_tls_config_exits_2_naming_the_key(tmp_path, certs, which):
    text, key, why = BAD_TLS[which]
    cfg = tmp_path / "tls.yaml"
    cfg.write_text(text.format(cert=certs["cert"], key=certs["key"], other_key=certs["other_key"],
                               tmp=tmp_path))
    for args in (["--check-config", str(cfg)], ["--config", str(cfg), "--listen", "127.0.0.1:0"]):
        p = subprocess.run([herald_bin(), *args], capture_output=True, timeout=10,
                           stdin=subprocess.DEVNULL, cwd=str(REPO_ROOT))
        err = p.stderr.decode() + p.stdout.decode()
        assert p.returncode == 2, (which, p.returncode, err)
        # "config error: <key>: <why>", naming exactly the key at fault
        named = re.findall(r"config error: (tls\.[a-z_]+): ", err)
        assert named and set(named) == {key}, (which, key, err)
        assert why in err, (which, why, err)
        assert "listening on" not in err
