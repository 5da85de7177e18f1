"""A failover run's instruments: a paced publisher with per-topic sequence numbers (one thread
per group of topics, each topic published strictly in sequence, alternating between instances),
a /readyz watcher, and the exactness check over what a SubscriberSwarm received."""
from __future__ import annotations

import threading
import time

import requests


class SequencedPublisher:
    """Publishes "<seq>" to each topic, seq = 1, 2, ... per topic, at about `rate` messages/s in
    all, alternating instances; records (seq, status, sent, answered) per topic. Stops by itself
    after `max_seconds`."""

    def __init__(self, servers, topics: list[str], rate: float, threads: int = 10,
                 max_seconds: float = 120):
        self.servers = servers
        self.topics = topics
        self.log: dict[str, list[tuple[int, int, float, float]]] = {t: [] for t in topics}
        self.stop_flag = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        groups = [topics[i::threads] for i in range(threads)]
        per_thread = rate / threads
        self.threads = [threading.Thread(target=self._run, args=(g, per_thread), daemon=True)
                        for g in groups if g]
        for t in self.threads:
            t.start()

    def _run(self, topics, rate):
        sessions = [requests.Session() for _ in self.servers]
        seq = {t: 0 for t in topics}
        n = 0
        interval = 1.0 / rate
        next_at = time.monotonic()
        while not self.stop_flag.is_set() and time.monotonic() < self.deadline:
            topic = topics[n % len(topics)]
            i = n % len(self.servers)
            n += 1
            seq[topic] += 1
            s = seq[topic]
            t0 = time.time()
            try:
                r = sessions[i].post(self.servers[i].url(f"/publish/{topic}"), data=str(s),
                                     timeout=5)
                status = r.status_code
            except requests.RequestException:
                status = 0
            self.log[topic].append((s, status, t0, time.time()))
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join(10)

    def acked(self, topic) -> list[int]:
        return [s for s, st, _, _ in self.log[topic] if st == 200]

    def failure_window(self) -> tuple[float, float, int]:
        """(first failed publish sent, last failed publish answered, how many failed): the
        seconds publishes were refused."""
        bad = [(t0, t1) for log in self.log.values() for _, st, t0, t1 in log if st != 200]
        if not bad:
            return 0.0, 0.0, 0
        return min(b[0] for b in bad), max(b[1] for b in bad), len(bad)


class ReadyzWatch:
    """Polls /readyz of each server every 100 ms; seconds each answered 503."""

    def __init__(self, servers, max_seconds: float = 180):
        self.servers = servers
        self.down = [0.0 for _ in servers]
        self.reasons: set[str] = set()
        self.stop_flag = threading.Event()
        self.deadline = time.monotonic() + max_seconds
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        s = requests.Session()
        while not self.stop_flag.is_set() and time.monotonic() < self.deadline:
            for i, srv in enumerate(self.servers):
                try:
                    r = s.get(srv.url("/readyz"), timeout=2)
                    if r.status_code != 200:
                        self.down[i] += 0.1
                        self.reasons.add(r.json()["error"]["message"])
                except (requests.RequestException, ValueError, KeyError):
                    self.down[i] += 0.1
            time.sleep(0.1)

    def stop(self):
        self.stop_flag.set()
        self.thread.join(5)


def check_exactness(results, subs, pub: SequencedPublisher, kill_time: float) -> dict:
    """Every message answered 200 reached every subscriber of its topic once, in order, or a
    reset stands where it is missing; delivery resumed (the last acknowledged message of every
    topic arrived). Returns figures: resets, time to resume delivery after kill_time."""
    errors = []
    resets = 0
    resume = 0.0
    for (port, kind, topic), res in zip(subs, results):
        who = f"{kind}@{port}/{topic}"
        if res["error"]:
            errors.append(f"{who}: {res['error']}")
            continue
        sent = {s for s, _, _, _ in pub.log[topic]}
        acked = pub.acked(topic)
        seqs = []
        intervals = []  # (after seq, before seq) around each reset
        last_pos = None
        for e in res["events"]:
            if e[0] == "r":
                resets += 1
                intervals.append([seqs[-1] if seqs else 0, None])
                last_pos = (e[1], e[2])
                continue
            _, epoch, off, data, at = e
            seq = int(data)
            if seq not in sent:
                errors.append(f"{who}: got {seq}, never published")
            if seqs and seq <= seqs[-1]:
                errors.append(f"{who}: {seq} after {seqs[-1]} (doubled or out of order)")
            if last_pos and last_pos[0] == epoch and off <= last_pos[1]:
                errors.append(f"{who}: offset {epoch}:{off} after {last_pos}")
            for iv in intervals:
                if iv[1] is None:
                    iv[1] = seq
            seqs.append(seq)
            last_pos = (epoch, off)
        got = set(seqs)
        for s in acked:
            if s in got:
                continue
            if not any(lo < s and (hi is None or s < hi) for lo, hi in intervals):
                errors.append(f"{who}: acknowledged {s} never arrived and no reset covers it")
                break
        if acked and acked[-1] not in got:
            errors.append(f"{who}: the last acknowledged message {acked[-1]} never arrived")
        # Delivery resumed: the first message published after the kill that arrived.
        post = [e[4] for e in res["events"] if e[0] == "m" and e[4] > kill_time]
        if post:
            resume = max(resume, min(post) - kill_time)
    assert not errors, f"{len(errors)} violations, first: {errors[:8]}"
    return {"resets": resets, "resume_s": round(resume, 2)}


def last_before(events, t: float):
    """(epoch, offset, seq) of the last message received before time t, or None."""
    last = None
    for e in events:
        if e[0] == "m" and e[4] < t:
            last = (e[1], e[2], int(e[3]))
    return last


def check_resume(server, topic: str, pos, acked: list[int]) -> bool:
    """A client that held `pos` (epoch, offset, seq) before the failure resumes from it now: it
    gets recovered: false, or a replay holding every acknowledged message after its seq, in
    order, and nothing it already had (an offset handed out twice would replay a different
    message under an offset it already saw, so some acknowledged message would be skipped).
    Returns whether it recovered."""
    import asyncio
    import json

    from herald_test.ws import ws_connect, ws_op_collect

    async def run():
        ws = await ws_connect(server)
        reply, _ = await ws_op_collect(ws, {"op": "subscribe", "topic": topic, "id": 1,
                                            "since": {"epoch": pos[0], "offset": pos[1]}})
        got = []
        while True:
            try:
                j = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except asyncio.TimeoutError:
                break
            if j.get("type") == "message":
                got.append(int(j["data"]))
        await ws.close()
        return reply, got

    reply, got = asyncio.run(run())
    assert reply.get("type") == "ok", reply
    if not reply.get("recovered"):
        return False
    want = [s for s in acked if s > pos[2]]
    missing = [s for s in want if s not in got]
    assert not missing and got == sorted(set(got)) and all(s > pos[2] for s in got), (
        f"{topic}: resumed from {pos} as recovered, but missing acknowledged {missing[:5]}, "
        f"got {got[:10]}...")
    return True
