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
    # TLS is refused up front, with the reason.
    rc, line, _ = probe("https://127.0.0.1:1")
    assert rc == 1 and "no TLS" in line["error"], line
