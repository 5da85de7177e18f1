"""`herald probe URL` (issue 17 item 7): the synthetic client in the herald binary connects over
WebSocket, subscribes, publishes over HTTP with the API key, checks receipt and prints one JSON
line (connect time, publish-to-receive latency); exit 0 on success, 1 with the reason."""
import json
import os
import socket
import subprocess

from herald_test import unique

KEY = "probe-key-0123456789abcdef"
BIN = os.environ["HERALD_BIN"]


def probe(*args):
    p = subprocess.run([BIN, "probe", *args], capture_output=True, text=True, timeout=30)
    lines = p.stdout.strip().splitlines()
    assert len(lines) == 1, p.stdout + p.stderr
    return p.returncode, json.loads(lines[0]), p.stderr


def test_probe_measures_connect_and_latency_against_a_real_server(herald_factory):
    srv = herald_factory({"auth": {"publish_keys": [KEY], "allow_unauthenticated_publish": False}})
    topic = unique("probe")
    rc, line, err = probe(f"http://127.0.0.1:{srv.port}", "--api-key", KEY, "--topic", topic,
                          "--count", "5")
    assert rc == 0, (line, err)
    assert line["ok"] is True and line["topic"] == topic, line
    assert 0 < line["connect_ms"] < 5000, line
    assert len(line["latency_ms"]) == 5 and all(0 < v < 5000 for v in line["latency_ms"]), line
    assert line["max_latency_ms"] == max(line["latency_ms"])


def test_probe_fails_with_the_reason(herald_factory):
    srv = herald_factory({"auth": {"publish_keys": [KEY], "allow_unauthenticated_publish": False}})
    url = f"http://127.0.0.1:{srv.port}"
    # No key: the anonymous subscribe works, the publish is refused.
    rc, line, err = probe(url, "--topic", unique("probe"))
    assert rc == 1 and line["ok"] is False, line
    assert "publish answered 401" in line["error"], line
    assert "probe failed" in err
    # A wrong key: the upgrade is refused.
    rc, line, _ = probe(url, "--api-key", "not-the-key-0123456789")
    assert rc == 1 and "declined" in line["error"], line
    # Nothing listening.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rc, line, _ = probe(f"http://127.0.0.1:{port}")
    assert rc == 1 and line["error"] == "Connection refused", line
    # An unknown scheme is refused up front, with the reason.
    rc, line, _ = probe("ftp://127.0.0.1:1")
    assert rc == 1 and "URLs are supported" in line["error"], line


def test_probe_over_tls_verifies_the_server(herald_factory, tmp_path):
    from herald_test.tls import make_test_certs
    certs = make_test_certs(str(tmp_path))
    srv = herald_factory({"auth": {"publish_keys": [KEY], "allow_unauthenticated_publish": False},
                          "tls": {"cert": certs["cert"], "key": certs["key"]}})
    topic = unique("probe-tls")
    for scheme in ("https", "wss"):
        rc, line, err = probe(f"{scheme}://localhost:{srv.port}", "--api-key", KEY, "--topic",
                              topic, "--cacert", certs["cafile"], "--count", "2")
        assert rc == 0 and line["ok"] is True and len(line["latency_ms"]) == 2, (line, err)
    # Without the CA (the system's CAs do not know the test CA): the handshake fails, plainly.
    rc, line, err = probe(f"https://localhost:{srv.port}", "--api-key", KEY, "--topic", topic)
    assert rc == 1 and "certificate verify failed" in line["error"], line
    # A plain-HTTP probe of a TLS port fails too, rather than hanging.
    rc, line, err = probe(f"http://127.0.0.1:{srv.port}", "--api-key", KEY, "--topic", topic)
    assert rc == 1 and line["ok"] is False, line


def test_probe_refreshes_its_token_and_outlives_it(herald_factory):
    secret = "probe-refresh-secret-" + "r" * 30
    srv = herald_factory({"auth": {"publish_keys": [KEY], "allow_unauthenticated_publish": False,
                                   "default_anonymous": "none",
                                   "jwt": {"keys": [{"alg": "HS256", "secret": secret}],
                                           "leeway": "0s"}}})
    topic = unique("probe-refresh")
    rc, line, err = probe(f"http://127.0.0.1:{srv.port}", "--api-key", KEY, "--topic", topic,
                          "--jwt-secret", secret, "--token-ttl", "4")
    assert rc == 0 and line["ok"] is True, (line, err)
    assert line["refreshed"] is True and 0 < line["refresh_ms"] < 5000, line
    # One message before the refresh, one after the first token's expiry: the stream stayed up.
    assert len(line["latency_ms"]) == 2, line
    # A wrong secret: the connection is refused at once, with the reason.
    rc, line, err = probe(f"http://127.0.0.1:{srv.port}", "--api-key", KEY, "--topic", topic,
                          "--jwt-secret", "wrong-" + "w" * 40)
    assert rc == 1 and line["ok"] is False, line
