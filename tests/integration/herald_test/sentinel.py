"""A Sentinel deployment on 127.0.0.1: one master, replicas (`redis-server --replicaof`) and
sentinels (`redis-server --sentinel` with a generated config), with short down-after and
failover timeouts so a failover takes seconds. Every process is killed by close(). Also usable
by hand (docs/deployment.md): `python3 -m herald_test.sentinel` starts one and prints the YAML
herald needs, until Ctrl-C."""
from __future__ import annotations

import os
import subprocess
import time

from herald_test import HOST
from herald_test.redis import RedisServer

MASTER_NAME = "herald-a"


class Sentinel(RedisServer):
    """One `redis-server --sentinel` monitoring `name` at master_port."""

    def __init__(self, name: str, master_port: int, quorum: int, down_after_ms: int,
                 failover_timeout_ms: int):
        self.settings = (f"sentinel monitor {name} {HOST} {master_port} {quorum}\n"
                         f"sentinel down-after-milliseconds {name} {down_after_ms}\n"
                         f"sentinel failover-timeout {name} {failover_timeout_ms}\n"
                         f"sentinel parallel-syncs {name} 2\n")
        super().__init__()

    def command(self) -> list[str]:
        conf = os.path.join(self.dir, "sentinel.conf")
        with open(conf, "w") as f:  # sentinel rewrites this file: it must be its own
            f.write(f"port {self.port}\nbind {HOST}\ndaemonize no\ndir {self.dir}\n"
                    + self.settings)
        return ["redis-server", conf, "--sentinel"]

    def master_port(self, name: str) -> int | None:
        out = self.cli("SENTINEL", "get-master-addr-by-name", name).split()
        return int(out[1]) if len(out) == 2 else None


class SentinelSetup:
    """Master, `replicas` replicas and `sentinels` sentinels (quorum 2). `servers` holds the data
    nodes, master first; after a failover `master()` asks the sentinels which one it is."""

    def __init__(self, replicas: int = 2, sentinels: int = 3, name: str = MASTER_NAME,
                 down_after_ms: int = 1000, failover_timeout_ms: int = 3000):
        self.name = name
        self.servers: list[RedisServer] = []
        self.sentinels: list[Sentinel] = []
        try:
            m = RedisServer()
            self.servers.append(m)
            for _ in range(replicas):
                self.servers.append(RedisServer(extra=("--replicaof", HOST, str(m.port))))
            self.wait_replicas(replicas)
            for _ in range(sentinels):
                self.sentinels.append(Sentinel(name, m.port, 2, down_after_ms,
                                               failover_timeout_ms))
            self.wait_sentinels_see(replicas)
        except BaseException:
            self.close()
            raise

    def wait_replicas(self, n: int, timeout: float = 15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = self.servers[0].cli("INFO", "replication")
            if f"connected_slaves:{n}" in info and info.count("state=online") == n:
                return
            time.sleep(0.1)
        raise AssertionError(f"replicas did not sync: {info}")

    def wait_sentinels_see(self, replicas: int, timeout: float = 20):
        """Until every sentinel knows the replicas and the other sentinels (a failover needs
        both)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = True
            for s in self.sentinels:
                info = s.cli("SENTINEL", "master", self.name).split("\n")
                fields = dict(zip(info[0::2], info[1::2]))
                if (int(fields.get("num-slaves", 0)) < replicas or
                        int(fields.get("num-other-sentinels", 0)) < len(self.sentinels) - 1):
                    ok = False
            if ok:
                return
            time.sleep(0.2)
        raise AssertionError("sentinels did not discover each other and the replicas")

    def shard(self) -> dict:
        """The redis.shards entry herald needs."""
        return {"sentinels": [s.address for s in self.sentinels], "master": self.name}

    def master(self) -> RedisServer:
        """The data node the sentinels (any that answers) name as master."""
        for s in self.sentinels:
            try:
                port = s.master_port(self.name)
            except (AssertionError, subprocess.TimeoutExpired):
                continue
            for r in self.servers:
                if r.port == port:
                    return r
        raise AssertionError("no sentinel names a master")

    def wait_master_other_than(self, old: RedisServer, timeout: float = 30) -> tuple[RedisServer, float]:
        """Until every live sentinel names a master other than `old`; (new master, seconds)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            ports = set()
            for s in self.sentinels:
                try:
                    ports.add(s.master_port(self.name))
                except (AssertionError, subprocess.TimeoutExpired):
                    ports.add(None)
            if len(ports) == 1 and None not in ports and old.port not in ports:
                return self.master(), time.monotonic() - t0
            time.sleep(0.1)
        raise AssertionError(f"no failover within {timeout}s")

    def close(self):
        for s in self.sentinels:
            s.kill()
        for r in self.servers:
            r.kill()


if __name__ == "__main__":
    setup = SentinelSetup()
    print("redis:\n  shards:\n    - {sentinels: [%s], master: %s}" %
          (", ".join('"%s"' % s.address for s in setup.sentinels), setup.name))
    print("master 127.0.0.1:%d; replicas %s" % (
        setup.servers[0].port, ", ".join(str(r.port) for r in setup.servers[1:])), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        setup.close()
