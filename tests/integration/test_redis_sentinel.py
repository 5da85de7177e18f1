"""Herald on a Sentinel deployment (issue 14): real redis-server processes on 127.0.0.1, one
master, two replicas, three sentinels (`redis-server --sentinel`, down-after 1 s, failover
timeout 3 s), two herald instances, WebSocket and SSE subscribers on both, a publisher with
per-topic sequence numbers.

The rule checked after every failure: each subscriber got every message whose publish was
answered 200, once and in order, or a reset stands where one is missing; delivery resumed.

Scale: HERALD_FAILOVER_SUBS subscribers (default 1,000, as issue 14 asks; each SIGKILL run takes
about 25 s on a loaded 2-core machine) on HERALD_FAILOVER_TOPICS topics (default 20) at
HERALD_FAILOVER_RATE publishes/s (default 200). Figures go to stdout and are appended to
HERALD_FAILOVER_REPORT (default /tmp/herald-failover-report.txt); docs/deployment.md quotes them.
"""
import os
import signal
import subprocess
import time

import pytest
import requests
import yaml

from herald_test import REPO_ROOT, free_port_run, unique, wait_until
from herald_test.failover import (ReadyzWatch, SequencedPublisher, check_exactness,
                                  check_resume, last_before)
from herald_test.redis import redis_config, two_instances
from herald_test.sentinel import SentinelSetup
from herald_test.server import wait_ready
from herald_test.swarm import SubscriberSwarm

SUBS = int(os.environ.get("HERALD_FAILOVER_SUBS", "1000"))
TOPICS = int(os.environ.get("HERALD_FAILOVER_TOPICS", "20"))
RATE = float(os.environ.get("HERALD_FAILOVER_RATE", "200"))


# The payloads (the last field of each entry) of a history list, one per line.
LAST_FIELDS = ("local r = {} for _, e in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do "
               "r[#r + 1] = string.match(e, '([^\\n]*)$') end return r")


@pytest.fixture
def sentinels():
    s = SentinelSetup()
    yield s
    s.close()


def sentinel_config(setup, **redis_over):
    cfg = redis_config([setup.shard()])
    cfg["redis"].update({"command_timeout": "1s", "ping_interval": "300ms"})
    cfg["redis"].update(redis_over)
    return cfg


def swarm_for(a, b, topics):
    subs = []
    for i in range(SUBS):
        server = (a, b)[i % 2]
        kind = ("ws", "sse")[(i // 2) % 2]
        subs.append((server.port, kind, topics[i % len(topics)]))
    return subs


def report(name, figures):
    line = f"[{name}] " + ", ".join(f"{k}={v}" for k, v in figures.items())
    print(line)
    with open(os.environ.get("HERALD_FAILOVER_REPORT", "/tmp/herald-failover-report.txt"), "a") as f:
        f.write(line + "\n")


def run_kill(herald_factory, setup, ack: int):
    cfg = sentinel_config(setup, replicas_ack=ack)
    a, b = two_instances(herald_factory, None, config=cfg)
    topics = [unique(f"fo{i}") for i in range(TOPICS)]
    subs = swarm_for(a, b, topics)
    swarm = SubscriberSwarm(subs)
    assert swarm.ready == len(subs)
    watch = ReadyzWatch([a, b])
    pub = SequencedPublisher([a, b], topics, RATE)
    try:
        time.sleep(4)
        old = setup.master()
        replicas = [r for r in setup.servers if r is not old]
        # The replicas stall (SIGSTOP) and lose their replication links 0.8 s before the
        # master dies: what the master acknowledged meanwhile never reaches them, so the
        # promoted one lacks the newest entries of every topic, the case where offsets could be
        # handed out twice. (A stopped process still receives into its socket buffer, hence the
        # CLIENT KILL.)
        for r in replicas:
            os.kill(r.proc.pid, signal.SIGSTOP)
        try:
            old.cli("CLIENT", "KILL", "TYPE", "replica")
            time.sleep(0.8)
            kill_time = time.time()
            old.kill()  # SIGKILL mid-stream
        finally:
            for r in replicas:
                os.kill(r.proc.pid, signal.SIGCONT)
        new, took = setup.wait_master_other_than(old)
        # Publishing must come back: 3 s of answers 200 on every topic after the switch.
        wait_until(lambda: all(pub.log[t] and pub.log[t][-1][1] == 200 for t in topics), 30,
                   what="publishes answered 200 again")
        time.sleep(3)
    finally:
        pub.stop()
    time.sleep(2)  # the last messages travel
    results = swarm.stop()
    watch.stop()
    first_bad, last_bad, n_bad = pub.failure_window()
    figures = check_exactness(results, subs, pub, kill_time)
    # Clients that were away during the failover resume from what they held before it.
    recovered = 0
    resumed = topics[:5]
    for t in resumed:
        i = next(i for i, sub in enumerate(subs) if sub[2] == t)
        pos = last_before(results[i]["events"], kill_time)
        if pos:
            recovered += check_resume(a, t, pos, pub.acked(t))
    figures["resumes_recovered"] = f"{recovered}/{len(resumed)}"
    total = sum(len(pub.log[t]) for t in topics)
    acked = sum(len(pub.acked(t)) for t in topics)
    figures.update({
        "replicas_ack": ack, "subscribers": len(subs), "topics": len(topics),
        "published": total, "acked": acked, "refused": n_bad,
        "refused_s": round(last_bad - first_bad, 2) if n_bad else 0.0,
        "sentinel_failover_s": round(took, 2),
        "readyz_503_s": [round(x, 1) for x in watch.down],
    })
    report(f"sigkill ack={ack}", figures)
    # Most publishes were answered 200: those sent outside the time Sentinel took to name a new
    # master (2-4 s idle, 16 s once on a loaded machine: Sentinel's, not herald's) and the 2 s
    # herald may take to follow it. Over the whole run, a slow Sentinel alone failed this.
    outside = [st for t in topics for _, st, t0, _ in pub.log[t]
               if not kill_time <= t0 <= kill_time + took + 2]
    assert sum(st == 200 for st in outside) > len(outside) / 2, (len(outside), acked, total)
    return figures


@pytest.mark.scenario
def test_sigkill_master_every_acknowledged_message_delivered_or_reset(herald_factory, sentinels):
    run_kill(herald_factory, sentinels, ack=0)


@pytest.mark.scenario
def test_sigkill_master_with_replicas_ack_zero_resets(herald_factory, sentinels):
    figures = run_kill(herald_factory, sentinels, ack=1)
    assert figures["resets"] == 0, figures


@pytest.mark.scenario
def test_sigstop_master_past_failover_then_sigcont_herald_follows_new_master(herald_factory,
                                                                             sentinels):
    """A partition: the master freezes for longer than the failover, sentinels promote a replica,
    then the old master wakes up (and is turned into a replica). Herald must never write to it
    again: every acknowledged message is on the new master and delivered."""
    setup = sentinels
    cfg = sentinel_config(setup)
    a, b = two_instances(herald_factory, None, config=cfg)
    topics = [unique(f"part{i}") for i in range(4)]
    subs = [(s.port, kind, t) for s in (a, b) for kind in ("ws", "sse") for t in topics]
    swarm = SubscriberSwarm(subs)
    pub = SequencedPublisher([a, b], topics, 40, threads=4)
    old = setup.master()
    try:
        time.sleep(2)
        stop_time = time.time()
        with old.frozen():
            new, took = setup.wait_master_other_than(old)
            time.sleep(2)
        cont_time = time.time()
        # The old master is back (as a master, until a sentinel demotes it): publish on.
        time.sleep(5)
    finally:
        pub.stop()
    time.sleep(2)
    results = swarm.stop()
    figures = check_exactness(results, subs, pub, stop_time)
    # Every message acknowledged after the old master came back is in the new master's history:
    # none went to the old one (whose writes the resync to the new master would erase).
    for t in topics:
        held = {int(x) for x in new.cli("EVAL", LAST_FIELDS, "1", f"herald:{{{t}}}:h").split()}
        late = [s for s, st, t0, _ in pub.log[t] if st == 200 and t0 > cont_time]
        assert late and not [s for s in late if s not in held], (t, late[:5], sorted(held)[-5:])
    assert not any(n.startswith("herald-") for n in old.client_names()), old.client_names()
    # Sentinel demotes it once it reads the old master's INFO again (up to 10 s after it is back);
    # until then it was a writable master herald had to leave alone.
    wait_until(lambda: "role:slave" in old.replication(), 20,
               what="the old master turned into a replica")
    figures["sentinel_failover_s"] = round(took, 2)
    report("sigstop", figures)


@pytest.mark.scenario
def test_sentinel_shard_ready_and_readyz_names_it(herald_factory, sentinels):
    """Herald finds the master through the sentinels, even with one sentinel dead; /readyz says
    which shard lacks a master while none is known."""
    sentinels.sentinels[0].kill()
    h = herald_factory(sentinel_config(sentinels))
    wait_ready(h)
    t = unique("sent")
    r = requests.post(h.url(f"/publish/{t}"), data="x", timeout=5)
    assert r.status_code == 200, r.text
    wait_until(lambda: 'herald_redis_shard_sentinels_up{shard="herald-a"} 2' in
               requests.get(h.url("/metrics"), timeout=5).text, 5, what="2 sentinels up")
    m = requests.get(h.url("/metrics"), timeout=5).text
    assert 'herald_redis_shard_up{shard="herald-a"} 1' in m
    # A master name no sentinel knows: never ready, and /readyz says why.
    cfg = sentinel_config(sentinels)
    cfg["redis"]["shards"] = [{"sentinels": [s.address for s in sentinels.sentinels[1:]],
                               "master": "nobody"}]
    h2 = herald_factory(cfg)
    body = wait_until(lambda: (x := requests.get(h2.url("/readyz"), timeout=5)).status_code == 503
                      and "2 of 2" in x.text and x.json(), 10, what="readyz 503")
    assert body["error"]["message"] == \
        "redis shard 'nobody' (Sentinel): no master known yet (2 of 2 sentinels answer)", body


@pytest.mark.scenario
def test_documented_sentinel_script_runs_a_deployment_herald_fails_over_on(herald_factory,
                                                                          tmp_path):
    """scripts/sentinel-local.sh (docs/deployment.md) as an operator runs it: herald uses the
    shards entry it prints, follows a SIGKILL of the master, and stop leaves nothing running."""
    script = str(REPO_ROOT / "scripts" / "sentinel-local.sh")
    env = dict(os.environ, REDIS_PORT=str(free_port_run(3)),
               SENTINEL_PORT=str(free_port_run(3)))
    d = tmp_path / "sentinel"
    out = subprocess.run([script, "start", str(d)], env=env, capture_output=True, text=True,
                         timeout=60)
    try:
        assert out.returncode == 0, out.stderr
        shards = yaml.safe_load(out.stdout)["redis"]["shards"]
        cfg = redis_config(shards)
        cfg["redis"].update({"command_timeout": "1s", "ping_interval": "300ms"})
        h = herald_factory(cfg)
        wait_ready(h, timeout=30)
        topic = unique("script")
        assert requests.post(h.url(f"/publish/{topic}"), data="1", timeout=5).status_code == 200
        master_pid = int((d / f"redis-{env['REDIS_PORT']}.pid").read_text())
        os.kill(master_pid, signal.SIGKILL)
        t0 = time.monotonic()
        wait_until(lambda: requests.post(h.url(f"/publish/{topic}"), data="2",
                                         timeout=5).status_code == 200, 30,
                   interval=0.2, what="publishing after the failover")
        report("script", {"publish_back_after_s": round(time.monotonic() - t0, 2)})
    finally:
        subprocess.run([script, "stop", str(d)], env=env, timeout=60)
    left = subprocess.run(["pgrep", "-f", str(d)], capture_output=True, text=True).stdout.split()
    assert not left, f"processes left running: {left}"
