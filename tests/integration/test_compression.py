"""permessage-deflate (RFC 7692): negotiated on the upgrade, a message compressed once and sent
compressed to every subscriber that negotiated it (and plain to the others), a client's compressed
ops inflated within limits.max_client_message_bytes (a decompression bomb closes 1009), checked
with python3-websockets, the npm ws client, Chromium and a raw socket that reads the wire bytes."""
import asyncio
import json
import shutil
import subprocess
import time
import zlib
from pathlib import Path

import pytest
import requests

from herald_test import unique
from herald_test.http import publish
from herald_test.metrics import rejected
from herald_test.server import server_rss_kib
from herald_test.ws import RawWS, ws_connect, ws_op, ws_op_collect, ws_recv_json

HERE = Path(__file__).resolve().parent
OFFER = "permessage-deflate; client_max_window_bits"


@pytest.fixture(scope="module")
def herald_config():
    return {"compression": {"namespaces": [{"pattern": "plain:*", "enabled": False}]},
            "ws": {"client_publish": ["*"]}}


def json_2k(i: int = 0) -> str:
    """A realistic 2 KiB JSON payload: a batch of quotes."""
    rows = [{"symbol": f"SYM{k:03d}", "bid": 100 + k * 0.25 + i, "ask": 100.5 + k * 0.25 + i,
             "volume": 1000 * k + i, "venue": "XNAS", "ts": "2026-11-29T21:00:00.000Z"}
            for k in range(16)]
    s = json.dumps({"type": "quotes", "seq": i, "rows": rows})
    assert 1800 < len(s) < 2300, len(s)
    return s


def inflate(payload: bytes) -> bytes:
    d = zlib.decompressobj(-15)
    return d.decompress(payload + b"\x00\x00\xff\xff")


def next_data_frame(ws: RawWS):
    while True:
        fin, op, payload = ws.recv_frame()
        if op in (0x1, 0x2):
            return op, payload, ws.last_rsv


def subscribed(ws: RawWS, topic: str):
    ws.send_text(json.dumps({"op": "subscribe", "topic": topic, "id": 1}))
    assert ws.recv_json()["type"] == "ok"


def test_negotiation_and_wire_bytes_smaller_for_2k_json(server):
    topic = unique("z")
    with RawWS(server.port, f"/ws?topic={topic}", extensions=OFFER) as z, \
            RawWS(server.port, f"/ws?topic={topic}") as plain:
        ext = z.handshake_headers.get("sec-websocket-extensions", "")
        assert ext.startswith("permessage-deflate"), z.handshake_headers
        assert "server_no_context_takeover" in ext and "client_no_context_takeover" in ext
        assert "sec-websocket-extensions" not in plain.handshake_headers
        subscribed(z, unique("sync"))  # the URL's subscription is active once an op is answered
        subscribed(plain, unique("sync"))
        body = json_2k()
        publish(server, topic, body, headers={"Content-Type": "application/json"})
        op, zp, rsv = next_data_frame(z)
        assert rsv == 0x4, "RSV1 (compressed) expected on a 2 KiB message"
        op2, pp, rsv2 = next_data_frame(plain)
        assert rsv2 == 0
        assert inflate(zp) == pp, "the compressed frame inflates to the plain one"
        assert json.loads(pp)["data"] == json.loads(body)
        # A 2 KiB JSON payload: under half the bytes on the wire.
        assert len(zp) * 2 < len(pp), (len(zp), len(pp))

        # Below compression.min_bytes (512): sent plain, even to the compressing client.
        publish(server, topic, "tiny")
        _, small, rsv = next_data_frame(z)
        assert rsv == 0 and json.loads(small)["data"] == "tiny"


def test_namespace_off_and_small_window_get_plain_frames(server):
    off = "plain:" + unique("t")
    with RawWS(server.port, f"/ws?topic={off}", extensions=OFFER) as z:
        subscribed(z, unique("sync"))
        publish(server, off, json_2k())
        _, p, rsv = next_data_frame(z)
        assert rsv == 0 and len(p) > 1800

    # server_max_window_bits=10: a 2 KiB message needs an 11-bit window, so it goes plain; a
    # 690-byte one fits and goes compressed.
    topic = unique("w")
    with RawWS(server.port, f"/ws?topic={topic}",
               extensions="permessage-deflate; server_max_window_bits=10") as z:
        assert "server_max_window_bits=10" in z.handshake_headers["sec-websocket-extensions"]
        subscribed(z, unique("sync"))
        publish(server, topic, json_2k())
        _, p, rsv = next_data_frame(z)
        assert rsv == 0
        publish(server, topic, "quotes and more quotes " * 30)  # 690 bytes
        _, p, rsv = next_data_frame(z)
        assert rsv == 0x4 and b"quotes" in inflate(p)


@pytest.mark.parametrize("offer", [
    "permessage-deflate; foo=1",                      # unknown parameter
    "permessage-deflate; server_max_window_bits=16",  # out of range
    "permessage-deflate; server_max_window_bits",     # needs a value
    "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
    "x-webkit-deflate-frame",
])
def test_unacceptable_offers_are_declined(server, offer):
    with RawWS(server.port, "/ws", extensions=offer) as ws:
        assert "sec-websocket-extensions" not in ws.handshake_headers
        # and RSV1 is then a protocol error
        ws.send_frame(0x1, zlib.compressobj(6, zlib.DEFLATED, -15).compress(b"{}"), rsv=4)
        code, _, how = ws.wait_close(5)
        assert code == 1002, (code, how)


def test_second_offer_is_taken_when_the_first_is_not_acceptable(server):
    with RawWS(server.port, "/ws", extensions="permessage-deflate; bad, permessage-deflate") as ws:
        assert ws.handshake_headers["sec-websocket-extensions"].startswith("permessage-deflate")


def deflate_raw(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def test_compressed_ops_are_inflated_also_fragmented(server):
    topic = unique("op")
    with RawWS(server.port, "/ws", extensions=OFFER) as ws:
        ws.send_frame(0x1, deflate_raw(json.dumps({"op": "subscribe", "topic": topic, "id": 7}).encode()), rsv=4)
        r = ws.recv_json()
        assert r["type"] == "ok" and r["id"] == 7, r
        z = deflate_raw(json.dumps({"op": "ping", "id": 8, "pad": "p" * 3000}).encode())
        ws.send_frame(0x1, z[:5], fin=False, rsv=4)
        ws.send_frame(0x0, z[5:], fin=True)
        r = ws.recv_json()
        assert r == {"type": "ok", "id": 8, "op": "ping"}, r
        # RSV1 on a continuation frame is a protocol error (RFC 7692 6.1)
        ws.send_frame(0x1, z[:5], fin=False, rsv=4)
        ws.send_frame(0x0, z[5:], fin=True, rsv=4)
        code, _, _ = ws.wait_close(5)
        assert code == 1002


def test_corrupt_compressed_data_closes_1007(server):
    with RawWS(server.port, "/ws", extensions=OFFER) as ws:
        ws.send_frame(0x1, b"\xff\xff\xff\xff garbage", rsv=4)
        code, reason, _ = ws.wait_close(5)
        assert code == 1007, (code, reason)


def test_decompression_bomb_closes_1009_without_allocating_it(server):
    # ~60 KiB on the wire (under max_client_message_bytes, 64 KiB) that inflates to ~60 MiB.
    bomb = deflate_raw(b"\0" * (60 << 20))
    assert len(bomb) < 64 * 1024, len(bomb)
    before = rejected(server, "ws_message_too_big")
    rss_before = server_rss_kib(server.proc.pid)
    for _ in range(3):
        with RawWS(server.port, "/ws", extensions=OFFER) as ws:
            ws.send_frame(0x1, bomb, rsv=4)
            code, reason, _ = ws.wait_close(5)
            assert code == 1009, (code, reason)
    rss_after = server_rss_kib(server.proc.pid)
    # Inflation stops at the cap (64 KiB): nothing like the 60 MiB it would take.
    assert rss_after - rss_before < 16 * 1024, (rss_before, rss_after)
    assert rejected(server, "ws_message_too_big") - before == 3


def test_python_websockets_default_compression(server):
    topic = unique("py")

    async def run():
        # python3-websockets negotiates permessage-deflate by default, and compresses its own
        # messages (our subscribe op): both directions are exercised.
        ws = await ws_connect(server, compression="deflate")
        try:
            assert ws.extensions and ws.extensions[0].name == "permessage-deflate"
            r = await ws_op(ws, {"op": "subscribe", "topic": topic, "id": 1})
            assert r["type"] == "ok", r
            bodies = [json_2k(i) for i in range(20)]
            for b in bodies:
                publish(server, topic, b, headers={"Content-Type": "application/json"})
            for b in bodies:
                m = await ws_recv_json(ws)
                assert m["data"] == json.loads(b)
            r, before = await ws_op_collect(ws, {"op": "publish", "topic": topic, "id": 2,
                                                 "data": json_2k(99)})
            assert r["type"] == "ok", r
            # the delivery may overtake the publish's reply
            m = before[0] if before else await ws_recv_json(ws)
            assert m["data"] == json_2k(99)
        finally:
            await ws.close()
    asyncio.run(run())


NODE_WS = r"""
const WebSocket = require(process.argv[2] + "/node_modules/ws");
const [url, n] = [process.argv[3], Number(process.argv[4])];
const ws = new WebSocket(url, ["herald.v1"], { perMessageDeflate: { threshold: 0 } });
let got = 0, wire = 0;
ws.on("upgrade", (res) => console.log(JSON.stringify({ ext: res.headers["sec-websocket-extensions"] || "" })));
ws.on("open", () => ws.send(JSON.stringify({ op: "subscribe", topic: process.argv[5], id: 1 })));
ws.on("message", (data) => {
  const m = JSON.parse(data.toString());
  if (m.type === "ok") { console.log(JSON.stringify({ ready: true })); return; }
  console.log(JSON.stringify({ data: m.data }));
  if (++got === n) ws.close();
});
ws.on("close", () => process.exit(0));
ws.on("error", (e) => { console.error(String(e)); process.exit(2); });
setTimeout(() => process.exit(3), 20000);
"""


def test_npm_ws_client_per_message_deflate(server, tmp_path):
    node = shutil.which("node")
    assert node, "node is not installed"
    script = tmp_path / "ws_deflate.js"
    script.write_text(NODE_WS)
    topic = unique("node")
    p = subprocess.Popen([node, str(script), str(HERE), server.ws_url("/ws"), "5", topic],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ext = json.loads(p.stdout.readline())["ext"]
        assert ext.startswith("permessage-deflate"), ext
        assert json.loads(p.stdout.readline()) == {"ready": True}
        bodies = [json_2k(i) for i in range(5)]
        for b in bodies:
            publish(server, topic, b, headers={"Content-Type": "application/json"})
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    got = [json.loads(l)["data"] for l in out.splitlines() if l.strip()]
    assert got == [json.loads(b) for b in bodies]


CHROMIUM_TEST = r"""
const { chromium } = require(process.argv[2] + "/node_modules/playwright-core");
const fs = require("fs"), os = require("os"), path = require("path");
(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "herald-chromium-"));
  const browser = await chromium.launchPersistentContext(dir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    timeout: 30000 });
  try {
    const page = await browser.newPage();
    await page.goto(process.argv[3] + "/healthz");
    const r = await page.evaluate(([url, topic]) => new Promise((resolve) => {
      const ws = new WebSocket(url, ["herald.v1"]);
      const out = { msgs: [] };
      ws.onopen = () => { out.ext = ws.extensions; ws.send(JSON.stringify({ op: "subscribe", topic, id: 1 })); };
      ws.onmessage = (e) => {
        const m = JSON.parse(e.data);
        if (m.type === "ok" && m.id === 1) return;
        if (m.data === "probe") return;
        out.msgs.push(m.data);
        if (out.msgs.length === 3) { ws.close(); resolve(out); }
      };
      ws.onerror = () => resolve(out);
      setTimeout(() => resolve(out), 15000);
    }), [process.argv[4], process.argv[5]]);
    console.log(JSON.stringify(r));
  } finally {
    await browser.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
})().catch((e) => { console.error(String(e)); process.exit(2); });
"""


def test_chromium_negotiates_and_reads_compressed_messages(server, tmp_path):
    node = shutil.which("node")
    if not (HERE / "node_modules" / "playwright-core").is_dir() or not Path("/usr/bin/chromium").exists():
        pytest.skip("playwright-core or chromium missing")
    script = tmp_path / "chromium_deflate.js"
    script.write_text(CHROMIUM_TEST)
    topic = unique("chr")
    p = subprocess.Popen([node, str(script), str(HERE), server.url(""), server.ws_url("/ws"), topic],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    bodies = [json_2k(i) for i in range(3)]
    try:
        # A page's console.log does not reach node: wait for the subscription on the server side.
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            r = requests.post(server.url(f"/publish/{topic}"), data="probe", timeout=5).json()
            if r.get("subscribers"):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the page never subscribed: " + (p.stderr.read() if p.poll() is not None else ""))
        for b in bodies:
            publish(server, topic, b, headers={"Content-Type": "application/json"})
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 0, err
    r = json.loads(out.strip().splitlines()[-1])
    assert r.get("ext", "").startswith("permessage-deflate"), r
    assert r["msgs"] == [json.loads(b) for b in bodies], r
