"""Many subscribers in one asyncio process (run as `python3 -m herald_test.swarm`, driven over
stdin/stdout by SubscriberSwarm): raw WebSocket and raw SSE clients on plain sockets, cheap
enough for hundreds of connections. Each records, per topic, every message (epoch, offset,
payload, arrival time) and every reset, in arrival order.

Protocol with the parent: argv[1] is a JSON spec {"subs": [[port, "ws"|"sse", topic], ...],
"max_seconds": N}; the child prints "ready <n>" once every subscription is live (answered, for
WebSocket; the `retry:` block, for SSE), then on the line "stop" (or after max_seconds) prints
one JSON line: a list, per subscriber, of {"events": [...], "error": str|null}."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
import subprocess
import sys
import time

HOST = "127.0.0.1"


async def ws_sub(port: int, topic: str, out: dict, ready: asyncio.Event):
    r, w = await asyncio.open_connection(HOST, port)
    key = base64.b64encode(os.urandom(16)).decode()
    w.write((f"GET /ws HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
             f"Sec-WebSocket-Protocol: herald.v1\r\n\r\n").encode())
    head = await r.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head[:80]

    def frame(op: int, payload: bytes) -> bytes:
        mask = os.urandom(4)
        n = len(payload)
        hdr = struct.pack("!BB", 0x80 | op, 0x80 | n) if n < 126 else \
            struct.pack("!BBH", 0x80 | op, 0x80 | 126, n)
        return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))

    w.write(frame(1, json.dumps({"op": "subscribe", "topic": topic, "id": 1}).encode()))
    ev = out["events"]
    while True:
        b0, b1 = await r.readexactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", await r.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", await r.readexactly(8))[0]
        payload = await r.readexactly(n)
        op = b0 & 0x0F
        if op == 0x9:
            w.write(frame(0xA, payload))
            continue
        if op == 0x8:
            raise EOFError(f"closed by server: {payload[2:]!r}")
        if op != 0x1:
            continue
        j = json.loads(payload)
        t = j.get("type")
        if t == "ok" and j.get("id") == 1:
            ready.set()
        elif t == "message":
            ev.append(["m", j["epoch"], j["offset"], j.get("data"), time.time()])
        elif t == "reset":
            ev.append(["r", j["epoch"], j["offset"], j.get("reason"), time.time()])
        elif t == "error":
            raise AssertionError(f"error frame {j}")


async def sse_sub(port: int, topic: str, out: dict, ready: asyncio.Event):
    r, w = await asyncio.open_connection(HOST, port)
    w.write(f"GET /sse?topic={topic} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode())
    head = await r.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:80]
    chunked = b"chunked" in head.lower()
    ev = out["events"]
    buf = b""

    async def more() -> bytes:
        if not chunked:
            d = await r.read(65536)
            if not d:
                raise EOFError("stream ended")
            return d
        size = int((await r.readuntil(b"\r\n")).strip(), 16)
        if size == 0:
            raise EOFError("stream ended")
        d = await r.readexactly(size + 2)
        return d[:-2]

    while True:
        while b"\n\n" not in buf:
            buf += await more()
        block, buf = buf.split(b"\n\n", 1)
        fields = {}
        for line in block.decode().split("\n"):
            if line.startswith(":") or ":" not in line:
                continue
            k, v = line.split(":", 1)
            fields.setdefault(k, []).append(v[1:] if v.startswith(" ") else v)
        if "retry" in fields:
            ready.set()
        if "data" not in fields:
            continue
        data = "\n".join(fields["data"])
        if fields.get("event", [""])[-1] == "reset":
            j = json.loads(data)
            ev.append(["r", j["epoch"], j["offset"], j.get("reason"), time.time()])
        elif fields.get("event", [""])[-1] in ("shutdown", "disconnect"):
            raise EOFError(f"stream ended: {data}")
        else:
            epoch, off = fields["id"][-1].rsplit(":", 1)
            ev.append(["m", epoch, int(off), data, time.time()])


async def main(spec: dict):
    outs = [{"events": [], "error": None} for _ in spec["subs"]]
    readies = [asyncio.Event() for _ in spec["subs"]]

    async def run(i, port, kind, topic):
        try:
            await (ws_sub if kind == "ws" else sse_sub)(port, topic, outs[i], readies[i])
        except Exception as e:  # noqa: BLE001 - reported to the parent
            outs[i]["error"] = repr(e)[:300]
            readies[i].set()

    tasks = []
    for i, (port, kind, topic) in enumerate(spec["subs"]):
        tasks.append(asyncio.create_task(run(i, port, kind, topic)))
        if i % 50 == 49:
            await asyncio.sleep(0.02)  # not a storm of connects
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in readies)), 60)
    print(f"ready {sum(1 for o in outs if o['error'] is None)}", flush=True)
    loop = asyncio.get_running_loop()
    line = loop.run_in_executor(None, sys.stdin.readline)
    try:
        await asyncio.wait_for(line, spec.get("max_seconds", 300))
    except asyncio.TimeoutError:
        pass
    for t in tasks:
        t.cancel()
    print(json.dumps(outs), flush=True)


class SubscriberSwarm:
    """The parent's side: starts the child, waits for "ready", stop() returns the results."""

    def __init__(self, subs: list[tuple[int, str, str]], max_seconds: float = 300):
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "herald_test.swarm",
             json.dumps({"subs": subs, "max_seconds": max_seconds})],
            cwd=here, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            self.proc.kill()
            raise AssertionError(f"subscriber swarm failed to start: {line!r}")
        self.ready = int(line.split()[1])

    def stop(self, timeout: float = 60) -> list[dict]:
        try:
            self.proc.stdin.write("stop\n")
            self.proc.stdin.flush()
            out = self.proc.stdout.readline()
            self.proc.wait(timeout)
            return json.loads(out)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()


if __name__ == "__main__":
    import resource
    # One descriptor per subscriber: raise the soft limit (often 1024) to the hard one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    asyncio.run(main(json.loads(sys.argv[1])))
