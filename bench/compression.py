#!/usr/bin/env python3
"""Bytes on the wire and server CPU per delivery of a 2 KiB JSON message, with and without
permessage-deflate (docs/benchmarks.md, "Compression"). Starts build/herald (or $HERALD_BIN) on
127.0.0.1 with 2 workers, connects SUBS raw WebSocket subscribers that offer permessage-deflate
(or not), publishes MSGS messages over HTTP keep-alive, and reads every subscriber to the end.

  bench/compression.py [--subs 200] [--msgs 300]

Server CPU is utime+stime of the herald process over the publish-and-deliver phase (it includes
the HTTP publishes, the same in both runs). Bounded: every wait has a deadline."""
import argparse
import base64
import json
import os
import re
import selectors
import socket
import subprocess
import sys
import tempfile
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HZ = os.sysconf("SC_CLK_TCK")


def json_2k(i):
    rows = [{"symbol": f"SYM{k:03d}", "bid": 100 + k * 0.25 + i, "ask": 100.5 + k * 0.25 + i,
             "volume": 1000 * k + i, "venue": "XNAS", "ts": "2026-11-29T21:00:00.000Z"}
            for k in range(16)]
    return json.dumps({"type": "quotes", "seq": i, "rows": rows})


def cpu_times(pid):
    """(user, system) CPU seconds of process `pid`."""
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(f[11]) / HZ, int(f[12]) / HZ


def start_herald(binary, workdir, queued="64MiB", extra=""):
    """Starts herald on a free loopback port (2 workers, no per-IP limits); `extra` is appended to
    its YAML configuration. Returns (process, port). bench/slow_consumer.py uses it too."""
    cfg = os.path.join(workdir, "herald.yaml")
    open(cfg, "w").write("listen: 127.0.0.1:0\nworkers: 2\n"
                         f"limits:\n  max_queued_bytes: {queued}\n  connections_per_ip: 0\n"
                         "  new_connections_per_ip_per_s: 0\n  publishes_per_key_per_s: 0\n"
                         "auth:\n  allow_unauthenticated_publish: true\n" + extra)
    log = os.path.join(workdir, "herald.log")
    p = subprocess.Popen([binary, "--config", cfg], stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        m = re.search(rb"listening on 127\.0\.0\.1:(\d+)", open(log, "rb").read())
        if m:
            return p, int(m.group(1))
        time.sleep(0.05)
    p.kill()
    raise SystemExit("herald did not start")


def subscribe(port, topic, deflate):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
    s.sendall(f"GET /ws?topic={topic} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
              f"{ext}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(4096)
    assert head.startswith(b"HTTP/1.1 101"), head
    assert (b"permessage-deflate" in head) == deflate, head
    return s, len(head) - head.index(b"\r\n\r\n") - 4


def run(binary, subs, msgs, deflate):
    with tempfile.TemporaryDirectory() as d:
        p, port = start_herald(binary, d)
        try:
            topic = f"bench{int(deflate)}"
            socks = [subscribe(port, topic, deflate) for _ in range(subs)]
            sess = requests.Session()
            url = f"http://127.0.0.1:{port}/publish/{topic}"
            while sess.post(url, data="warmup").json().get("subscribers", 0) < subs:
                time.sleep(0.05)
            sel = selectors.DefaultSelector()
            got = {}
            for s, extra in socks:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
                got[s] = bytearray()
            bodies = [json_2k(i) for i in range(msgs)]
            cpu0 = cpu_times(p.pid)
            t0 = time.monotonic()
            for b in bodies:
                sess.post(url, data=b, headers={"Content-Type": "application/json"})
            sess.post(url, data="__end__")
            done = 0
            deadline = time.monotonic() + 120
            while done < subs and time.monotonic() < deadline:
                for k, _ in sel.select(1):
                    buf = got[k.fileobj]
                    try:
                        chunk = k.fileobj.recv(1 << 20)
                    except BlockingIOError:
                        continue
                    buf += chunk
                    if b"__end__" in buf[-64:]:
                        done += 1
                        sel.unregister(k.fileobj)
            user, system = (b - a for a, b in zip(cpu0, cpu_times(p.pid)))
            wall = time.monotonic() - t0
            assert done == subs, f"only {done} of {subs} subscribers got everything"
            total = sum(len(b) for b in got.values())
            deliveries = subs * msgs
            per_1000 = 1e6 / deliveries * 1000
            return {"deflate": deflate, "bytes_per_delivery": total / (subs * (msgs + 2)),
                    "cpu_us_per_1000": (user + system) * per_1000,
                    "user_us_per_1000": user * per_1000, "wall_s": wall}
        finally:
            p.terminate()
            p.wait(15)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subs", type=int, default=200)
    ap.add_argument("--msgs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out-md", help="write the docs/benchmarks.md section (bench/results/compression.md)")
    a = ap.parse_args()
    binary = os.environ.get("HERALD_BIN", os.path.join(ROOT, "build", "herald"))
    print(f"2 KiB JSON ({len(json_2k(0))} B payload), {a.subs} subscribers x {a.msgs} messages")
    rows = {False: [], True: []}
    for _ in range(a.rounds):
        for deflate in (False, True):
            r = run(binary, a.subs, a.msgs, deflate)
            rows[deflate].append(r)
            print(f"  {'deflate' if deflate else 'plain  '}  {r['bytes_per_delivery']:7.0f} B/delivery"
                  f"  {r['cpu_us_per_1000']:7.0f} CPU-µs per 1,000 deliveries"
                  f" (user {r['user_us_per_1000']:5.0f})  ({r['wall_s']:.1f} s)")
    if a.out_md:
        write_md(a, rows)


def write_md(a, rows):
    load = open("/proc/loadavg").read().split()[0]
    med = lambda xs: sorted(xs)[len(xs) // 2]
    plain = med([r["bytes_per_delivery"] for r in rows[False]])
    comp = med([r["bytes_per_delivery"] for r in rows[True]])
    cpu = lambda d, k: ", ".join(f"{r[k]:,.0f}" for r in rows[d])
    user_p = med([r["user_us_per_1000"] for r in rows[False]])
    user_c = med([r["user_us_per_1000"] for r in rows[True]])
    out = ["## Compression (permessage-deflate)", "",
           f"Measured with `bench/compression.py --subs {a.subs} --msgs {a.msgs} --rounds {a.rounds} --out-md "
           f"bench/results/compression.md` ({time.strftime('%Y-%m-%d', time.gmtime())}, Release build, 2 workers, "
           f"on this 2-core machine, load average {load} at the end, so the CPU figures are coarse): {a.subs} raw "
           f"WebSocket subscribers on one topic, offering `permessage-deflate` or not, {a.msgs} JSON messages of "
           f"{len(json_2k(0)):,} bytes (a batch of 16 quotes) published over HTTP keep-alive; bytes are "
           "everything the subscribers read (message frames plus the 101 answer and two small frames), divided "
           "by deliveries; CPU is herald's utime and stime over the publish-and-deliver phase (publishes "
           "included, 10 ms tick granularity). CPU per run, in run order.", "",
           "| 2 KiB JSON | bytes per delivery | server CPU-µs per 1,000 deliveries (user + system) "
           "| of which user |", "|---|---|---|---|",
           f"| plain | {plain:,.0f} | {cpu(False, 'cpu_us_per_1000')} | {cpu(False, 'user_us_per_1000')} |",
           f"| permessage-deflate | {comp:,.0f} ({plain / comp:.1f}x fewer) | {cpu(True, 'cpu_us_per_1000')} "
           f"| {cpu(True, 'user_us_per_1000')} |", "",
           "The compressed frame is built once per message (zlib level 6, one stream per worker thread, reset "
           "per message), so its cost is paid once per message, not per subscriber: python's zlib on the same "
           "payload takes about 9 µs to deflate it, which at "
           f"{a.subs} subscribers is about {9000 / a.subs:.0f} µs per 1,000 deliveries. herald's own (user) "
           + ("CPU is the same in both medians, and both make " if user_c == user_p else
              f"CPU differs by {user_c - user_p:,.0f} µs per 1,000 deliveries between the medians "
              f"({(user_c - user_p) * a.subs * a.msgs / 1e7:.0f} tick(s) of the 10 ms clock per run), and both make ")
           + "one `sendmsg` per delivery (perf stat, session 9: 198,487 plain and 200,570 compressed for 200,000 "
           "deliveries). The total "
           "differs more, and that is the kernel's loopback, not herald: on 127.0.0.1 the receiver's side of "
           "TCP runs inside the sender's `sendmsg` whenever the receiver's window is open. The 343-byte frames "
           "keep the one Python process reading all subscribers up to date, so each of herald's writes "
           "transmits at once and herald's system time carries the subscriber's receive path too (perf, "
           "session 9: `tcp_write_xmit` 56 % of herald's samples, `tcp_v4_rcv` 25 %). The 2 KiB frames put "
           "that reader behind, so herald's writes only copy into the socket's send queue (`_copy_from_iter` "
           "56 %, `tcp_write_xmit` 13 %, `tcp_v4_rcv` 4 %) and the transmission runs later in the reader's "
           "process, when its ACKs open the window. Across a real network each side pays its own half, and "
           f"compression's {plain / comp:.1f}x fewer bytes are what it buys.", ""]
    with open(a.out_md, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
