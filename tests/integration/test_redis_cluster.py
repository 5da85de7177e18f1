"""Herald on a Redis 7 Cluster (issue 14): real redis-server processes on 127.0.0.1, three
masters and three replicas (`redis-cli --cluster create ... --cluster-replicas 1`,
cluster-node-timeout 1 s), two herald instances with `redis.cluster` seeds, WebSocket and SSE
subscribers on both instances for topics spread over the three masters' slots, a publisher with
per-topic sequence numbers.

The rule checked after every run: each subscriber got every message whose publish was answered
200, once and in order, or a reset stands where one is missing; delivery resumed. Failures: a
master SIGKILLed mid-stream (its replica takes over), and the slot of a busy topic moved to
another master during traffic (IMPORTING / MIGRATING, MIGRATE, SETSLOT NODE by hand, and 500
slots by `redis-cli --cluster reshard`). Figures go to
stdout and to HERALD_FAILOVER_REPORT (default /tmp/herald-failover-report.txt)."""
import os
import subprocess
import time

import pytest
import requests
import yaml

from herald_test import REPO_ROOT, unique, wait_until
from herald_test.cluster import ClusterSetup
from herald_test.failover import ReadyzWatch, SequencedPublisher, check_exactness
from herald_test.server import wait_ready
from herald_test.swarm import SubscriberSwarm

TOPICS = int(os.environ.get("HERALD_CLUSTER_TOPICS", "20"))
RATE = float(os.environ.get("HERALD_CLUSTER_RATE", "150"))


@pytest.fixture
def cluster():
    c = ClusterSetup()
    yield c
    c.close()


def cluster_config(seeds, **redis_over):
    cfg = {"broker": "redis",
           "redis": {"cluster": seeds, "connect_timeout": "1s", "reconnect_max_backoff": "500ms",
                     "command_timeout": "1s", "ping_interval": "300ms"},
           "history": {"size": 5000, "max_recovery": 5000, "ttl": "5m"}}
    cfg["redis"].update(redis_over)
    return cfg


def report(name, figures):
    line = f"[cluster {name}] " + ", ".join(f"{k}={v}" for k, v in figures.items())
    print(line)
    with open(os.environ.get("HERALD_FAILOVER_REPORT", "/tmp/herald-failover-report.txt"), "a") as f:
        f.write(line + "\n")


def spread_topics(cluster, n):
    """n topics whose slots cover every master (about n/3 each)."""
    masters = {}
    topics = []
    for i in range(n * 20):
        t = unique(f"cl{i}")
        port = cluster.owner(cluster.slot_of(t)).port
        if masters.get(port, 0) >= (n + 2) // 3:
            continue
        masters[port] = masters.get(port, 0) + 1
        topics.append(t)
        if len(topics) == n:
            break
    assert len(masters) == 3 and len(topics) == n, masters
    return topics


def start(herald_factory, cluster, topics, **redis_over):
    cfg = cluster_config(cluster.seeds(), **redis_over)
    a = herald_factory(cfg)
    b = herald_factory(cfg)
    wait_ready(a, timeout=20)
    wait_ready(b, timeout=20)
    subs = [(s.port, kind, t) for t in topics for s in (a, b) for kind in ("ws", "sse")]
    swarm = SubscriberSwarm(subs)
    assert swarm.ready == len(subs)
    return a, b, subs, swarm


def metric(server, name):
    total = 0.0
    for line in requests.get(server.url("/metrics"), timeout=5).text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def finish(pub, swarm, subs, a, b, watch, t_fail, extra):
    pub.stop()
    time.sleep(2)  # the last messages travel
    results = swarm.stop()
    watch.stop()
    first_bad, last_bad, n_bad = pub.failure_window()
    figures = check_exactness(results, subs, pub, t_fail)
    total = sum(len(v) for v in pub.log.values())
    acked = sum(len(pub.acked(t)) for t in pub.topics)
    figures.update({
        "subscribers": len(subs), "topics": len(pub.topics), "published": total,
        "acked": acked, "refused": n_bad,
        "refused_s": round(last_bad - first_bad, 2) if n_bad else 0.0,
        "readyz_503_s": [round(x, 1) for x in watch.down],
        "moved": metric(a, "herald_redis_shard_moved_total") +
        metric(b, "herald_redis_shard_moved_total"),
        "ask": metric(a, "herald_redis_shard_ask_total") +
        metric(b, "herald_redis_shard_ask_total"),
    })
    figures.update(extra)
    return figures


def test_cluster_every_message_delivered_once_in_order(herald_factory, cluster):
    """Two instances on a 3+3 cluster: topics on every master, WebSocket and SSE subscribers on
    both instances; every publish answered 200 arrives once, in order, with no reset; /readyz and
    the per-node metrics name the three masters."""
    topics = spread_topics(cluster, TOPICS)
    a, b, subs, swarm = start(herald_factory, cluster, topics)
    watch = ReadyzWatch([a, b])
    pub = SequencedPublisher([a, b], topics, RATE)
    time.sleep(3)
    # Sharded pub/sub: the topic's channel lives on the node owning its slot only (one sharded
    # subscription per instance), and herald holds no classic channel anywhere.
    ch = f"herald:c:{{{topics[0]}}}"
    owner = cluster.owner(cluster.slot_of(topics[0]))
    for n in cluster.masters():
        assert n.cli("PUBSUB", "SHARDCHANNELS", ch).split() == ([ch] if n is owner else [])
        assert n.cli("PUBSUB", "SHARDNUMSUB", ch).split()[1] == ("2" if n is owner else "0")
        assert n.cli("PUBSUB", "CHANNELS").split() == []
    figures = finish(pub, swarm, subs, a, b, watch, time.time(), {})
    report("steady", figures)
    assert figures["resets"] == 0 and figures["refused"] == 0, figures
    assert figures["acked"] > RATE * 2, figures
    m = requests.get(a.url("/metrics"), timeout=5).text
    for n in cluster.masters():
        assert f'herald_redis_shard_up{{shard="{n.address}"}} 1' in m, m


def test_cluster_readyz_before_any_seed_answers(herald_factory, cluster):
    """No seed answers: /readyz says why and publishes are refused with 503; a good seed later in
    the list is enough."""
    from herald_test import free_port
    dead = f"127.0.0.1:{free_port()}"
    h = herald_factory(cluster_config([dead]))
    body = wait_until(lambda: (x := requests.get(h.url("/readyz"), timeout=5)).status_code == 503
                      and x.json(), 10, what="readyz 503")
    assert "no slot map yet" in body["error"]["message"], body
    r = requests.post(h.url("/publish/x"), data="1", timeout=5)
    assert r.status_code == 503, r.text
    h2 = herald_factory(cluster_config([dead, cluster.seeds()[1]]))
    wait_ready(h2, timeout=20)
    assert requests.post(h2.url("/publish/x"), data="1", timeout=5).status_code == 200


@pytest.mark.scenario
@pytest.mark.parametrize("ack", [0, 1])
def test_cluster_sigkill_master_every_acknowledged_message_delivered_or_reset(herald_factory,
                                                                            ack):
    """A master SIGKILLed mid-stream; its replica takes over. Without replicas_ack the promoted
    replica may lack the newest entries: its topics start a new epoch (subscribers get a reset).
    With replicas_ack: 1 every acknowledged message is on the replica: no reset at all (each
    master then has two replicas, so the promoted one still has a replica to WAIT for)."""
    cluster = ClusterSetup(replicas=1 + ack)
    try:
        run_sigkill(herald_factory, cluster, ack)
    finally:
        cluster.close()


def run_sigkill(herald_factory, cluster, ack):
    topics = spread_topics(cluster, TOPICS)
    a, b, subs, swarm = start(herald_factory, cluster, topics, replicas_ack=ack,
                              replicas_ack_timeout="500ms")
    watch = ReadyzWatch([a, b])
    pub = SequencedPublisher([a, b], topics, RATE)
    try:
        time.sleep(3)
        slot = cluster.slot_of(topics[0])
        old = cluster.owner(slot)
        kill_time = time.time()
        old.kill()  # SIGKILL mid-stream
        new, took = cluster.wait_new_owner(slot, old)
        wait_until(lambda: all(pub.log[t] and pub.log[t][-1][1] == 200 for t in topics), 30,
                   what="publishes answered 200 again")
        time.sleep(3)
    finally:
        pub.stop()
    figures = finish(pub, swarm, subs, a, b, watch, kill_time,
                     {"replicas_ack": ack, "cluster_failover_s": round(took, 2)})
    report(f"sigkill ack={ack}", figures)
    assert figures["acked"] > figures["published"] / 2, figures
    if ack:
        assert figures["resets"] == 0, figures


def moved_during_traffic(herald_factory, cluster, topics, name, move):
    """Both instances publish to and deliver every topic while `move()` moves slots (it returns
    its figures): every publish is answered 200 again afterwards, and finish() checks that
    nothing was lost or doubled. Returns the figures."""
    a, b, subs, swarm = start(herald_factory, cluster, topics)
    watch = ReadyzWatch([a, b])
    pub = SequencedPublisher([a, b], topics, RATE)
    try:
        time.sleep(3)
        t0 = time.time()
        extra = move()
        wait_until(lambda: all(pub.log[t] and pub.log[t][-1][1] == 200 for t in topics), 30,
                   what="publishes answered 200")
        time.sleep(3)
    finally:
        pub.stop()
    figures = finish(pub, swarm, subs, a, b, watch, t0, extra)
    report(name, figures)
    assert figures["resets"] == 0, figures
    return figures


@pytest.mark.scenario
def test_cluster_slot_of_busy_topic_migrates_during_traffic(herald_factory, cluster):
    topics = spread_topics(cluster, TOPICS)
    slot = cluster.slot_of(topics[0])

    def move():
        src = cluster.owner(slot)
        dst = next(m for m in cluster.masters() if m is not src)
        t0 = time.time()
        cluster.migrate_slot(slot, src, dst, hold=1.0)
        moved_s = time.time() - t0
        assert cluster.owner(slot).port == dst.port
        return {"migration_s": round(moved_s, 2)}

    figures = moved_during_traffic(herald_factory, cluster, topics, "migrate", move)
    assert figures["ask"] > 0 and figures["moved"] > 0, figures


@pytest.mark.scenario
def test_cluster_redis_cli_reshard_during_traffic(herald_factory, cluster):
    """`redis-cli --cluster reshard`, as an operator runs it, moves 500 slots (among them those
    of five busy topics: reshard takes a source's slots in ascending order) to another master
    while both instances publish to and deliver every topic: no reset, nothing lost or doubled."""
    src = cluster.owner(0)
    dst = next(m for m in cluster.masters() if m is not src)
    moving = []
    for i in range(5000):
        t = unique(f"rs{i}")
        if cluster.slot_of(t) < 500:
            moving.append(t)
            if len(moving) == 5:
                break
    assert len(moving) == 5
    topics = moving + spread_topics(cluster, TOPICS - len(moving))

    def move():
        t0 = time.time()
        out = subprocess.run(
            ["redis-cli", "--cluster", "reshard", f"127.0.0.1:{src.port}",
             "--cluster-from", cluster.node_id(src), "--cluster-to", cluster.node_id(dst),
             "--cluster-slots", "500", "--cluster-yes"],
            capture_output=True, text=True, timeout=120)
        resharded_s = time.time() - t0
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert all(cluster.owner(cluster.slot_of(t)).port == dst.port for t in moving)
        return {"reshard_s": round(resharded_s, 2)}

    figures = moved_during_traffic(herald_factory, cluster, topics, "reshard", move)
    assert figures["moved"] > 0, figures


@pytest.mark.scenario
def test_documented_cluster_script_runs_a_cluster_herald_fails_over_on(herald_factory, tmp_path):
    """scripts/cluster-local.sh (docs/deployment.md) as an operator runs it: herald uses the
    cluster entry it prints, follows a SIGKILL of a master, and stop leaves nothing running."""
    from herald_test.cluster import consecutive_cluster_ports
    script = str(REPO_ROOT / "scripts" / "cluster-local.sh")
    env = dict(os.environ, CLUSTER_PORT=str(consecutive_cluster_ports(6)))
    d = tmp_path / "cluster"
    out = subprocess.run([script, "start", str(d)], env=env, capture_output=True, text=True,
                         timeout=90)
    try:
        assert out.returncode == 0, out.stderr
        seeds = yaml.safe_load(out.stdout)["redis"]["cluster"]
        h = herald_factory(cluster_config(seeds))
        wait_ready(h, timeout=30)
        topic = unique("script")
        assert requests.post(h.url(f"/publish/{topic}"), data="1", timeout=5).status_code == 200
        port = int(subprocess.run(["redis-cli", "-p", env["CLUSTER_PORT"], "CLUSTER", "KEYSLOT",
                                   topic], capture_output=True, text=True).stdout)
        slots = subprocess.run(["redis-cli", "-p", env["CLUSTER_PORT"], "CLUSTER", "SLOTS"],
                               capture_output=True, text=True).stdout.split("\n")
        owner = next(int(slots[i + 3]) for i in range(len(slots) - 3)
                     if slots[i].isdigit() and slots[i + 1].isdigit()
                     and int(slots[i]) <= port <= int(slots[i + 1]))
        os.kill(int((d / f"redis-{owner}.pid").read_text()), 9)
        t0 = time.monotonic()
        wait_until(lambda: requests.post(h.url(f"/publish/{topic}"), data="2",
                                         timeout=5).status_code == 200, 30,
                   interval=0.2, what="publishing after the failover")
        report("script", {"publish_back_after_s": round(time.monotonic() - t0, 2)})
    finally:
        subprocess.run([script, "stop", str(d)], env=env, timeout=60)
    left = subprocess.run(["pgrep", "-f", str(d)], capture_output=True, text=True).stdout.split()
    assert not left, f"processes left running: {left}"


def test_cluster_revocation_and_presence_cross_instances(herald_factory, cluster, tmp_path):
    """The control channel (SPUBLISH / SSUBSCRIBE on its own slot) carries a revocation to the
    other instance, and presence entries and events (SPUBLISHed by the presence scripts) agree
    on both instances."""
    import asyncio

    import test_presence as pr
    import test_revocation as rv

    (tmp_path / "keys").mkdir()
    keys = rv.Keys(str(tmp_path / "keys"))
    cfg = cluster_config(cluster.seeds())
    cfg.update(pr.presence_config(keys, ttl="5s"))
    cfg["auth"]["publish_keys"] = [rv.PUB_KEY, pr.KEY]
    a = herald_factory(cfg)
    b = herald_factory(cfg)
    wait_ready(a, timeout=20)
    wait_ready(b, timeout=20)

    topic = unique("rev")
    tokens = {u: keys.token(u, topics=[topic]) for u in ("alice", "bob")}
    conns = rv.connect_all(a, b, topic, tokens, ("alice", "bob"))
    try:
        rv.warm_up(a, topic, conns)
        r = rv.disconnect(a, "alice")
        assert r.status_code == 200 and r.json() == {"disconnected": 2, "instances": 2}, r.text
        for c in conns:
            if c.who.startswith("alice"):
                c.expect_closed_by_revocation()
        wait_until(lambda: metric(b, "herald_redis_control_received_total") == 1, 5,
                   what="B acted on the control message")
    finally:
        for c in conns:
            c.close()

    room = f"room:{unique('cl')}"

    async def main():
        watcher = await pr.subscribe(b, room, keys.token("watcher"), join_leave=True)
        member = await pr.subscribe(a, room, keys.token("m1"))
        got = await pr.events(watcher, 1)
        assert [(e["type"], e["client"]["sub"]) for e in got] == [("join", "m1")], got
        pr.wait_agree((a, b), room, (2, 2), 5.0)
        await member.close()
        got = await pr.events(watcher, 1)
        assert [(e["type"], e["client"]["sub"]) for e in got] == [("leave", "m1")], got
        pr.wait_agree((a, b), room, (1, 1), 5.0)
        await watcher.close()

    asyncio.run(main())
