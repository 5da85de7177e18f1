#!/usr/bin/env python3
"""Memory of herald's slow-consumer policies under stalled readers (docs/benchmarks.md, "Slow
consumers"). For each policy (disconnect, drop_oldest, conflate) a fresh build/herald (or
$HERALD_BIN) on 127.0.0.1, 2 workers, limits.max_queued_bytes QUEUED: STALLED WebSocket
subscribers that never read (4 KiB receive buffer) and one fast reader on the same topic, then MSGS
JSON messages of about SIZE bytes over KEYS keys (`symbol`) published in batches of 40. Reports herald's
RSS growth per stalled subscriber once everything is published (and its peak, VmHWM), how many
stalled subscribers were cut, the messages dropped or conflated (herald's metrics) and whether the
fast reader got every message.

  bench/slow_consumer.py [--stalled 50] [--msgs 8000] [--rounds 3] [--out-md bench/results/slow_consumer.md]

Bounded: every wait has a deadline; every socket is closed at the end."""
import argparse
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time

import requests

from compression import ROOT, start_herald

POLICIES = {
    "disconnect": "",
    "drop_oldest": ", slow_consumer: drop_oldest, keep: {keep}",
    "conflate": ", slow_consumer: conflate, keep: {keep}, key: symbol",
}


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def metric(port, name):
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        m = re.match(rf"^{name}(\{{[^}}]*\}})?\s+(\S+)", line)
        if m:
            total += float(m.group(2))
    return total


def ws_connect(port, topic, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET /ws?topic={topic} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
              "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
              "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head[:200]
    return s


class FastReader(threading.Thread):
    """Reads everything until the END message (or its deadline) and counts message frames."""

    def __init__(self, sock, deadline_s=90):
        super().__init__(daemon=True)
        self.sock, self.buf, self.done = sock, bytearray(), False
        self.deadline = time.monotonic() + deadline_s
        self.start()

    def run(self):
        self.sock.settimeout(1)
        while time.monotonic() < self.deadline:
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            if not chunk:
                return
            self.buf += chunk
            if b'"symbol":"END"' in self.buf[-2048:]:
                self.done = True
                return

    def messages(self):
        return self.buf.count(b'"seq":')  # the measured messages only (not warm-up, not END)


def run(binary, policy, a, stalled):
    rule = POLICIES[policy].format(keep=a.keep)
    extra = ("delivery:\n  namespaces:\n"
             f"    - {{pattern: \"s:*\"{rule}}}\n" if policy != "disconnect" else "")
    with tempfile.TemporaryDirectory() as d:
        p, port = start_herald(binary, d, queued=a.queued, extra=extra)
        socks = []
        try:
            topic = "s:ticks"
            time.sleep(0.3)
            rss0 = status_kib(p.pid, "VmRSS")
            socks = [ws_connect(port, topic, rcvbuf=4096) for _ in range(stalled)]
            fast = ws_connect(port, topic)
            sess = requests.Session()
            url = f"http://127.0.0.1:{port}/publish"
            while sess.post(f"{url}/{topic}", data="warmup").json().get("subscribers", 0) < stalled + 1:
                time.sleep(0.05)
            reader = FastReader(fast)
            time.sleep(0.5)
            rss1 = status_kib(p.pid, "VmRSS")
            pad = "x" * max(0, a.size - 60)
            t0 = time.monotonic()
            for i in range(0, a.msgs, 40):
                msgs = [{"topic": topic, "data": {"symbol": f"S{k % a.keys:02d}", "seq": k, "pad": pad}}
                        for k in range(i, min(a.msgs, i + 40))]
                r = sess.post(url, json={"messages": msgs}, timeout=30)
                assert r.status_code == 200, r.text[:300]
            sess.post(f"{url}/{topic}", data='{"symbol":"END"}',
                      headers={"Content-Type": "application/json"}, timeout=30)
            reader.join(max(1, reader.deadline - time.monotonic()))
            wall = time.monotonic() - t0
            time.sleep(1.0)
            rss2 = status_kib(p.pid, "VmRSS")
            hwm = status_kib(p.pid, "VmHWM")
            res = {
                "policy": policy, "rss_base_kib": rss0,
                "conn_kib": rss1 - rss0, "stalled": stalled,
                "grow_kib": rss2 - rss1, "peak_kib": hwm - rss1,
                "cut": metric(port, "herald_slow_consumers_total"),
                "dropped": metric(port, "herald_slow_consumer_dropped_total"),
                "conflated": metric(port, "herald_slow_consumer_conflated_total"),
                "fast_got": reader.messages(), "fast_done": reader.done, "wall_s": wall,
            }
            return res
        finally:
            for s in socks:
                s.close()
            p.terminate()
            p.wait(15)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--stalled", type=int, default=50)
    ap.add_argument("--msgs", type=int, default=8000)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--keys", type=int, default=20)
    ap.add_argument("--keep", type=int, default=100)
    ap.add_argument("--queued", default="1MiB")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--out-md")
    a = ap.parse_args()
    binary = os.environ.get("HERALD_BIN", os.path.join(ROOT, "build", "herald"))
    rows = []
    for _ in range(a.rounds):
        # the reference: the same publishes with the fast reader alone
        for policy, stalled in [("disconnect", 0)] + [(p, a.stalled) for p in POLICIES]:
            r = run(binary, policy, a, stalled)
            if not stalled:
                r["policy"] = "none"
            rows.append(r)
            print(f"  {r['policy']:12} {stalled} stalled: RSS +{r['grow_kib'] / 1024:6.1f} MiB (peak +{r['peak_kib'] / 1024:6.1f})"
                  f"  cut {r['cut']:.0f}  dropped {r['dropped']:.0f}  conflated {r['conflated']:.0f}"
                  f"  fast reader {r['fast_got']}/{a.msgs}{'' if r['fast_done'] else ' (not done)'}"
                  f"  ({r['wall_s']:.1f} s)", flush=True)
    if a.out_md:
        write_md(a, rows)


def write_md(a, rows):
    by = {}
    for r in rows:
        by.setdefault(r["policy"], []).append(r)
    med = lambda xs: sorted(xs)[len(xs) // 2]
    out = ["## Slow consumers: memory under stalled readers", "",
           f"Measured with `bench/slow_consumer.py --stalled {a.stalled} --msgs {a.msgs} --rounds {a.rounds} "
           "--out-md bench/results/slow_consumer.md` "
           f"({time.strftime('%Y-%m-%d', time.gmtime())}, Release build, 2 workers, "
           f"`limits.max_queued_bytes: {a.queued}`): {a.stalled} WebSocket subscribers that never read "
           f"(4 KiB receive buffer) and one fast reader on one topic, {a.msgs} JSON messages of about "
           f"{a.size} B over {a.keys} keys (`symbol`), published in batches of 40 (one request each); the namespace's "
           f"`slow_consumer` is the policy (`keep: {a.keep}`, conflate `key: symbol`). RSS growth is herald's "
           "RSS one second after the last publish (the stalled readers still connected) minus its RSS with "
           "every subscriber connected; peak is VmHWM over the same base. The kernel's socket buffers, which "
           "take up to `tcp_wmem`'s 4 MiB per stalled connection before herald queues anything, are not in "
           "either. A stalled connection first fills its kernel buffers, then up to half of `max_queued_bytes` "
           "of frames waits in herald's queue before the policy starts holding messages back (disconnect: "
           "until the queue passes `max_queued_bytes`); memory freed by a cut stays in the allocator, so RSS "
           "after a cut is close to the peak. Medians over the rounds.", "",
           "| policy | stalled readers | RSS growth after | peak | per stalled reader, beyond the reference (after / peak) "
           "| stalled readers cut | messages dropped | messages conflated | fast reader got |",
           "|---|---|---|---|---|---|---|---|---|"]
    ref = by.get("none", [])
    ref_grow = med([r["grow_kib"] for r in ref]) if ref else 0
    ref_peak = med([r["peak_kib"] for r in ref]) if ref else 0
    for policy, rs in by.items():
        grow, peak, n = med([r["grow_kib"] for r in rs]), med([r["peak_kib"] for r in rs]), rs[0]["stalled"]
        per = (f"{(grow - ref_grow) * 1024 / n:,.0f} B / {(peak - ref_peak) * 1024 / n:,.0f} B" if n else "–")
        name = "none (the reference: fast reader alone)" if policy == "none" else f"`{policy}`"
        out.append(f"| {name} | {n} | {grow / 1024:,.1f} MiB | {peak / 1024:,.1f} MiB | {per} | "
                   f"{med([r['cut'] for r in rs]):,.0f} | {med([r['dropped'] for r in rs]):,.0f} | "
                   f"{med([r['conflated'] for r in rs]):,.0f} | "
                   f"{min(r['fast_got'] for r in rs):,} of {a.msgs:,} |")
    out.append("")
    with open(a.out_md, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
