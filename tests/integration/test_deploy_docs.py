"""The deployment docs, followed literally: the shell blocks of README's "Deploying behind nginx"
and of docs/deployment.md's runnable section are extracted and pasted, in order, into one bash
(as an operator pastes them into one terminal), from a directory laid out like the checkout
(build/ is the build under test). Only the variables the docs themselves define are set from
outside (free ports, a temp directory, a known key). Between the blocks the test checks the
deployment with its own clients: Redis, two instances, nginx, a subscriber and a publish through
nginx, per-address limits seeing the client, and after the stop block, that everything is gone.
When a doc changes, this runs what it now says."""
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from herald_test import REPO_ROOT, free_port, unique, wait_until
from herald_test.server import herald_bin
from herald_test.sse import SSEClient

# Files, tools and docs, not a server path a sanitizer could check: the Release pass only.
pytestmark = pytest.mark.release_only

KEY = "docs-test-publish-key-0123456789"

# (document, section heading, number of shell blocks: start, tour, stop)
DOCS = [
    ("README.md", "## Deploying behind nginx"),
    ("docs/deployment.md", "## Two instances behind nginx, step by step"),
]


def shell_blocks(doc: str, heading: str) -> list[str]:
    """The ```sh blocks of the section under `heading` (up to the next heading of its level or
    above; a `#` line inside a code block is not a heading)."""
    lines = (REPO_ROOT / doc).read_text().splitlines(keepends=True)
    assert heading + "\n" in lines, f"{doc} has no section '{heading}'"
    level = len(heading.split(" ")[0])
    blocks, block, fenced = [], None, False
    for line in lines[lines.index(heading + "\n") + 1:]:
        if line.startswith("```"):
            if not fenced and line.strip() == "```sh":
                block = []
            elif fenced and block is not None:
                blocks.append("".join(block))
                block = None
            fenced = not fenced
            continue
        if fenced:
            if block is not None:
                block.append(line)
        elif re.match(r"^#{1,%d} " % level, line):
            break
    return blocks


class Terminal:
    """One bash reading commands from a pipe, as a terminal an operator pastes into. `set -eu`:
    a failing command ends it, and the test fails with the output."""

    def __init__(self, cwd: Path, env: dict):
        self.proc = subprocess.Popen(["bash", "--norc", "--noprofile"], cwd=cwd, env=env,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.out = bytearray()
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self._n = 0
        self.send("set -eu")

    def _read(self):
        while True:
            chunk = self.proc.stdout.read1(65536)
            with self.cond:
                if not chunk:
                    self.out += b"\n<terminal closed>\n"
                    self.cond.notify_all()
                    return
                self.out += chunk
                self.cond.notify_all()

    def send(self, block: str, timeout: float = 60) -> str:
        """Paste `block`; wait until it has run; return what it printed."""
        self._n += 1
        marker = f"__block_{self._n}_done__"
        with self.cond:
            start = len(self.out)
        self.proc.stdin.write((block + f"\necho {marker}\n").encode())
        self.proc.stdin.flush()
        with self.cond:
            ok = self.cond.wait_for(lambda: marker.encode() in self.out[start:]
                                    or self.proc.poll() is not None, timeout)
            printed = bytes(self.out[start:]).decode("utf-8", "replace")
        assert ok and marker in printed, \
            f"the block failed or hung (bash exit {self.proc.poll()}):\n{block}\n--- output:\n{printed}"
        return printed.replace(marker + "\n", "")

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def checkout_like(tmp: Path) -> Path:
    """A directory that looks like the checkout: build/ is the build under test."""
    root = tmp / "checkout"
    root.mkdir()
    (root / "build").symlink_to(Path(herald_bin()).resolve().parent)
    for name in ("config", "scripts", "docker", "docs"):
        (root / name).symlink_to(REPO_ROOT / name)
    return root


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def kill_leftovers(run: Path):
    """Whatever the doc started and its stop block did not stop (a failed test)."""
    for pidfile in run.glob("*.pid"):
        try:
            pid = int(pidfile.read_text().split()[0])
        except (ValueError, IndexError, OSError):
            continue
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("doc,heading", DOCS)
def test_deployment_doc_followed_literally(doc, heading, tmp_path):
    blocks = shell_blocks(doc, heading)
    assert len(blocks) == 3, (f"{doc} '{heading}': expected 3 shell blocks (start, tour, stop), "
                              f"found {len(blocks)}; update this test with the doc")
    start, tour, stop = blocks
    run = tmp_path / "run"
    ports = {v: free_port() for v in ("REDIS_PORT", "HERALD_PORT1", "HERALD_PORT2", "NGINX_PORT")}
    overrides = {"HERALD_RUN": str(run), "HERALD_PREFIX": str(tmp_path / "prefix"),
                 "HERALD_PUBLISH_KEYS": KEY, **{k: str(v) for k, v in ports.items()}}
    # Only variables the doc defines, as VAR=${VAR:-default}, are set from outside.
    used = {k: v for k, v in overrides.items()
            if re.search(rf"^(export )?{k}=\$\{{{k}:-", start, re.M)}
    assert {"HERALD_RUN", "HERALD_PUBLISH_KEYS", *ports} <= set(used), \
        (f"{doc} does not define {set(overrides) - set(used)} as VAR=${{VAR:-default}}: the test "
         f"cannot move it to free ports and a temp directory")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HERALD_", "REDIS_", "NGINX_"))}
    env.update(used)
    base = f"http://127.0.0.1:{ports['NGINX_PORT']}"
    term = Terminal(checkout_like(tmp_path), env)
    try:
        out = term.send(start, timeout=120)
        # Started: Redis, two ready instances, nginx, all with pid files in the run directory.
        assert out.count('"status":"ready"') == 2, out
        for port in (ports["HERALD_PORT1"], ports["HERALD_PORT2"]):
            assert requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()["status"] == "ready"
        assert requests.get(base + "/healthz", timeout=5).status_code == 200
        for pidfile in ("redis.pid", "herald1.pid", "herald2.pid", "nginx-herald.pid"):
            assert pid_alive(int((run / pidfile).read_text().split()[0])), pidfile

        # The test's own tour: a subscriber on instance 2 directly, a publish through nginx
        # (which lands on either instance) reaches it through Redis.
        topic = unique("docs")
        with SSEClient(f"http://127.0.0.1:{ports['HERALD_PORT2']}/sse?topic={topic}", max_time=30) as sub, \
                SSEClient(f"{base}/sse?topic={topic}", max_time=30,
                          curl_args=("--interface", "127.0.0.5")) as via_nginx:
            sub.wait_ready(5)
            via_nginx.wait_ready(5)
            # An instance follows a topic in Redis a moment after its subscriber's `retry:`
            # (asynchronously): publish until both subscribers have a message, 10 s at most.
            deadline = time.monotonic() + 10
            while not (sub.events_so_far() and via_nginx.events_so_far()):
                assert time.monotonic() < deadline, "a publish through nginx reached no subscriber"
                r = requests.post(f"{base}/publish/{topic}", data="across", timeout=5,
                                  headers={"Authorization": f"Bearer {KEY}"})
                assert r.status_code == 200, r.text
                time.sleep(0.2)
            assert sub.events_so_far()[0].data == via_nginx.events_so_far()[0].data == "across"
        # Locked: no key, 401 from herald; from another address, /publish is nginx's 403.
        assert requests.post(f"{base}/publish/{topic}", data="x", timeout=5).status_code == 401
        with socket.create_connection(("127.0.0.1", ports["NGINX_PORT"]), timeout=5,
                                      source_address=("127.0.0.5", 0)) as s:
            s.sendall(f"POST /publish/{topic} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                      f"Content-Length: 1\r\nConnection: close\r\n\r\nx".encode())
            assert s.recv(100).startswith(b"HTTP/1.1 403"), "nginx let another address publish"

        # The doc's own tour, literally.
        out = term.send(tour, timeout=60)
        assert "data: hello" in out, out
        assert '"subscribers":1' in out, out
        assert '"code":"unauthorized"' in out, out

        # The doc's stop block: everything it started is gone.
        pids = {f: int((run / f).read_text().split()[0])
                for f in ("redis.pid", "herald1.pid", "herald2.pid", "nginx-herald.pid")}
        term.send(stop, timeout=60)
        wait_until(lambda: not any(pid_alive(p) for p in pids.values()), 20,
                   what=f"everything stopped ({pids})")
        for port in ports.values():
            with socket.socket() as s:
                assert s.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still answers"
    finally:
        term.close()
        kill_leftovers(run)
