"""A real EventSource (npm `eventsource` 3.x, WHATWG-conformant, under Node) resumes without
loss or duplicates after its TCP connection is cut mid-stream by a proxy between it and herald."""
import json
import shutil
import socket
import subprocess
import threading

import pytest

from herald_test import HERE, HOST, unique
from herald_test.http import finish_publisher, start_publisher
from herald_test.metrics import connections, wait_connections

N = 3000
CUT_AFTER = 30_000          # bytes from herald to the client before the proxy cuts the first connection


@pytest.fixture(scope="module")
def herald_config():
    return {"history": {"size": 5000, "max_recovery": 5000}, "sse": {"retry": "200ms"}}


@pytest.fixture(scope="module")
def node_client():
    node = shutil.which("node")
    assert node, "node is not installed (apt-get install nodejs npm)"
    if not (HERE / "node_modules" / "eventsource").is_dir():
        npm = shutil.which("npm")
        assert npm, "npm is not installed (apt-get install npm)"
        cmd = [npm, "ci" if (HERE / "package-lock.json").exists() else "install", "--no-audit", "--no-fund"]
        p = subprocess.run(cmd, cwd=str(HERE), capture_output=True, timeout=300)
        assert p.returncode == 0, f"{cmd} failed: {p.stderr.decode()[-2000:]}"
    return [node, str(HERE / "es_client.js")]


class CuttingProxy:
    """TCP proxy on 127.0.0.1; forwards to herald; cuts the FIRST connection (both directions,
    abruptly) once CUT_AFTER bytes went downstream. Records each connection's request head."""

    def __init__(self, upstream_port: int, cut_after: int):
        self.upstream = upstream_port
        self.cut_after = cut_after
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((HOST, 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.requests: list[bytes] = []
        self.cuts = 0
        self.stopping = False
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        n = 0
        while not self.stopping and n < 20:            # bounded: a handful of reconnects at most
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            n += 1
            u = socket.create_connection((HOST, self.upstream), timeout=10)
            u.settimeout(None)
            self.socks += [c, u]
            idx = len(self.requests)
            self.requests.append(b"")
            cut = self.cut_after if n == 1 else None
            threading.Thread(target=self._pump, args=(c, u, idx, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, None, cut), daemon=True).start()

    def _pump(self, src, dst, req_idx, cut):
        sent = 0
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if req_idx is not None and b"\r\n\r\n" not in self.requests[req_idx]:
                    self.requests[req_idx] += data
                if cut is not None and sent + len(data) >= cut:
                    dst.sendall(data[:cut - sent])
                    self.cuts += 1
                    # end both directions at once: wakes the other pump, the client sees EOF
                    # in the middle of the stream, herald sees its client gone
                    for s in (src, dst):
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
                    return
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.stopping = True
        self.ls.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


def test_eventsource_reconnects_through_a_cut_without_loss(server, node_client):
    topic = unique("es")
    proxy = CuttingProxy(server.port, CUT_AFTER)
    url = f"http://{HOST}:{proxy.port}/sse?topic={topic}"
    streams = connections(server, "sse")
    node = subprocess.Popen(node_client + [url, str(N), "90000"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    pub = None
    try:
        first = node.stdout.readline()
        assert json.loads(first) == {"type": "open"}, (first, node.stderr.read() if node.poll() is not None else "")
        # 'open' fires on the response headers; publish once herald counts the stream (its
        # subscription is made in the same loop turn), or the first messages could pass it by
        wait_connections(server, "sse", streams + 1)
        pub = start_publisher(server, topic, N)
        out, err = node.communicate(timeout=100)
        summary = finish_publisher(pub)
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
        if pub is not None and pub.poll() is None:
            pub.kill()
            pub.wait()
        proxy.close()

    lines = [json.loads(l) for l in out.splitlines() if l.strip()]
    assert node.returncode == 0, f"node exited {node.returncode}: {lines[-3:]} {err[-1000:]}"
    assert summary["last"] == N
    msgs = [l for l in lines if l["type"] == "message"]
    others = [l for l in lines if l["type"] not in ("message", "open", "error")]
    assert not others, others[:5]                   # no reset, no shutdown
    assert proxy.cuts == 1, "the proxy never cut the stream (too few bytes?)"
    assert any(l["type"] == "error" for l in lines), "EventSource never saw the connection drop"
    assert len(proxy.requests) >= 2, "EventSource did not reconnect"
    second = proxy.requests[1].decode("latin-1").lower()
    assert "last-event-id:" in second, second

    data = [int(m["data"]) for m in msgs]
    if data != list(range(1, N + 1)):
        dups = len(data) - len(set(data))
        missing = sorted(set(range(1, N + 1)) - set(data))
        raise AssertionError(f"{len(data)} messages, {dups} duplicates, missing {missing[:10]}...")
    epoch = msgs[0]["id"].split(":")[0]
    assert all(m["id"] == f"{epoch}:{m['data']}" for m in msgs), [m for m in msgs if not m["id"].startswith(epoch)][:3]
