"""A Redis Cluster on 127.0.0.1: three masters and three replicas (`redis-cli --cluster create
... --cluster-replicas 1`), cluster-node-timeout 1 s so a replica takes over a dead master in a
few seconds. Every process is killed by close(). Slots move by hand (CLUSTER SETSLOT
IMPORTING / MIGRATING, MIGRATE, SETSLOT NODE), which a test can time, unlike
`redis-cli --cluster reshard`."""
from __future__ import annotations

import subprocess
import time

from herald_test import HOST, free_port_run
from herald_test.redis import RedisServer


def cluster_port() -> int:
    """A port below 55536 whose cluster bus port (+ 10000) is free too: a port of the kernel's
    ephemeral range can be too high for a cluster node."""
    return consecutive_cluster_ports(1)


class ClusterNode(RedisServer):
    """One cluster-enabled redis-server; its nodes.conf lives in its own directory."""

    def __init__(self, node_timeout_ms: int):
        self.node_timeout_ms = node_timeout_ms
        super().__init__(port=cluster_port())

    def command(self) -> list[str]:
        return [*super().command(), "--cluster-enabled", "yes", "--cluster-config-file",
                f"{self.dir}/nodes.conf", "--cluster-node-timeout", str(self.node_timeout_ms),
                # A replica that never finished its first sync may not take over: sync at once.
                "--repl-diskless-sync-delay", "0"]


class ClusterSetup:
    def __init__(self, masters: int = 3, replicas: int = 1, node_timeout_ms: int = 1000):
        self.nodes: list[RedisServer] = []
        try:
            for _ in range(masters * (1 + replicas)):
                self.nodes.append(ClusterNode(node_timeout_ms))
            out = subprocess.run(
                ["redis-cli", "--cluster", "create", *[n.address for n in self.nodes],
                 "--cluster-replicas", str(replicas), "--cluster-yes"],
                capture_output=True, text=True, timeout=60)
            assert out.returncode == 0, out.stdout + out.stderr
            self.wait_ok()
        except BaseException:
            self.close()
            raise

    def seeds(self) -> list[str]:
        return [n.address for n in self.nodes[:3]]

    def alive(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.proc and n.proc.poll() is None]

    def wait_ok(self, timeout: float = 30):
        """Until every live node says cluster_state:ok and every replica is in sync (a replica
        that never synced cannot take over)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in n.cli("CLUSTER", "INFO") for n in self.alive()) and \
                    all("master_link_status:up" in n.cli("INFO", "replication")
                        for n in self.alive() if n not in self.masters()):
                return
            time.sleep(0.1)
        raise AssertionError("the cluster did not come up")

    def node_id(self, n: RedisServer) -> str:
        return n.cli("CLUSTER", "MYID").strip()

    def by_port(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def slot_of(self, key: str) -> int:
        return int(self.alive()[0].cli("CLUSTER", "KEYSLOT", key).strip())

    def owner(self, slot: int, via: RedisServer | None = None) -> RedisServer:
        """The master serving `slot`, as `via` (any live node) sees it."""
        via = via or self.alive()[0]
        lines = via.cli("CLUSTER", "SLOTS").split("\n")
        # redis-cli prints the nested arrays flat: start, end, ip, port, id, [hostname map]...
        i = 0
        while i < len(lines):
            try:
                lo, hi = int(lines[i]), int(lines[i + 1])
            except (ValueError, IndexError):
                i += 1
                continue
            if lo <= slot <= hi and lines[i + 2] == HOST:
                return self.by_port(int(lines[i + 3]))
            i += 1
        raise AssertionError(f"no master for slot {slot}")

    def masters(self) -> list[RedisServer]:
        out = []
        for n in self.alive():
            if "role:master" in n.cli("INFO", "replication"):
                out.append(n)
        return out

    def wait_new_owner(self, slot: int, old: RedisServer, timeout: float = 30) -> tuple:
        """After `old` died: (the promoted master, seconds until every live node agrees)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            try:
                owners = {self.owner(slot, via).port for via in self.alive()}
                if len(owners) == 1 and old.port not in owners:
                    return self.by_port(owners.pop()), time.monotonic() - t0
            except AssertionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"slot {slot} not taken over from {old.port}")

    def migrate_slot(self, slot: int, src: RedisServer, dst: RedisServer, hold: float = 0.0):
        """Moves `slot` from src to dst by hand, as redis-cli --cluster reshard does: IMPORTING
        on dst, MIGRATING on src (then `hold` seconds: the keys are still on src), MIGRATE the
        keys (then `hold` seconds: clients of src get ASK), then SETSLOT NODE everywhere (clients
        of src get MOVED)."""
        src_id, dst_id = self.node_id(src), self.node_id(dst)
        dst.cli("CLUSTER", "SETSLOT", str(slot), "IMPORTING", src_id)
        src.cli("CLUSTER", "SETSLOT", str(slot), "MIGRATING", dst_id)
        time.sleep(hold)
        for _ in range(1000):
            keys = src.cli("CLUSTER", "GETKEYSINSLOT", str(slot), "100").split()
            if not keys:
                break
            out = src.cli("MIGRATE", HOST, str(dst.port), "", "0", "5000", "KEYS", *keys)
            assert "OK" in out or "NOKEY" in out, out
        time.sleep(hold)
        for n in (dst, src, *[m for m in self.masters() if m not in (src, dst)]):
            n.cli("CLUSTER", "SETSLOT", str(slot), "NODE", dst_id)

    def close(self):
        for n in self.nodes:
            n.kill()


def consecutive_cluster_ports(n: int) -> int:
    """A port p with p .. p+n-1 and their cluster bus ports free (scripts/cluster-local.sh)."""
    return free_port_run(n, offsets=(0, 10000))
