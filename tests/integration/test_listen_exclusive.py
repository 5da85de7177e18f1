"""Herald does not share its port with another process: its workers share it through
SO_REUSEPORT, which would also let a second herald (or any process of the same user) join, and
the kernel would then split new clients between two independent instances."""
import os
import signal
import socket
import subprocess
import time
import requests

from herald_test import HOST, REPO_ROOT, free_port, unique, wait_until
from herald_test.http import publish
from herald_test.server import herald_bin
from herald_test.sse import SSEClient
from herald_test.ws import RawWS


def run_second(config_path: str, port: int, timeout: float = 10.0):
    """Starts herald on 127.0.0.1:<port>; returns (exit code, output). A herald that starts
    instead of refusing is killed after `timeout` and the test fails on the code None."""
    p = subprocess.Popen([herald_bin(), "--config", config_path, "--listen", f"{HOST}:{port}",
                          "--workers", "2"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, cwd=str(REPO_ROOT))
    try:
        out, _ = p.communicate(timeout=timeout)
        return p.returncode, out.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate(5)
        return None, out.decode("utf-8", "replace")


def minimal_config(tmp_path) -> str:
    cfg = tmp_path / "h.yaml"
    cfg.write_text("log:\n  level: info\n")
    return str(cfg)


def test_second_herald_on_the_same_port_exits_1_and_the_first_keeps_every_client(herald_factory):
    first = herald_factory()
    topic = unique("excl")
    early = [SSEClient(first.url(f"/sse?topic={topic}")) for _ in range(4)]
    for c in early:
        c.wait_ready()

    rc, out = run_second(first.config_path, first.port)
    assert rc == 1, f"second herald: exit {rc}, output:\n{out}"
    assert f"{HOST}:{first.port}" in out and "does not share its port" in out, out
    assert first.alive()

    # New connections after the attempt: had the second instance joined the port, the kernel
    # would have sent about half of them to it, and they would miss the message.
    late = [SSEClient(first.url(f"/sse?topic={topic}")) for _ in range(24)]
    for c in late:
        c.wait_ready()
    try:
        r = publish(first, topic, "to everyone")
        assert r["subscribers"] == len(early) + len(late), r
        for c in early + late:
            assert c.next_event(10.0).data == "to everyone"
    finally:
        for c in early + late:
            c.close()


def test_a_foreign_reuseport_listener_is_not_joined(tmp_path):
    """Any process listening with SO_REUSEPORT (same user) would let herald's workers join."""
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((HOST, 0))
    holder.listen(8)
    port = holder.getsockname()[1]
    try:
        rc, out = run_second(minimal_config(tmp_path), port)
    finally:
        holder.close()
    assert rc == 1, f"exit {rc}, output:\n{out}"
    assert f"{HOST}:{port}" in out, out


def test_two_heralds_starting_together_cannot_both_claim(tmp_path):
    """The race between one herald's probe and its workers' binds is closed by a lock named
    after the address (an abstract Unix socket); holding that name stands in for the other
    herald caught between its probe and its binds."""
    port = free_port()
    lock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lock.bind(f"\0herald/listen/{HOST}:{port}")
    cfg = minimal_config(tmp_path)
    try:
        rc, out = run_second(cfg, port)
    finally:
        lock.close()
    assert rc == 1, f"exit {rc}, output:\n{out}"
    assert f"{HOST}:{port}" in out and "claiming" in out, out
    # With the lock gone the same port works.
    rc, out = run_second_until_listening(cfg, port)
    assert rc == "listening", out


def run_second_until_listening(config_path: str, port: int, timeout: float = 10.0):
    p = subprocess.Popen([herald_bin(), "--config", config_path, "--listen", f"{HOST}:{port}",
                          "--workers", "2"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, cwd=str(REPO_ROOT))
    deadline = time.monotonic() + timeout
    out = b""
    try:
        os.set_blocking(p.stdout.fileno(), False)
        while time.monotonic() < deadline:
            chunk = p.stdout.read() or b""
            out += chunk
            if f"listening on {HOST}:{port}".encode() in out:
                assert requests.get(f"http://{HOST}:{port}/healthz", timeout=5).status_code == 200
                return "listening", out.decode("utf-8", "replace")
            if p.poll() is not None:
                return p.returncode, out.decode("utf-8", "replace")
            time.sleep(0.02)
        return None, out.decode("utf-8", "replace")
    finally:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def test_a_new_instance_starts_while_the_old_one_drains(herald_factory):
    """The upgrade path: SIGTERM the old instance; once it stops listening (at once) the new one
    may bind the port even though the old one still drains connections on it."""
    old = herald_factory({"shutdown": {"drain_timeout": "8s"}})
    stuck = RawWS(old.port)  # never reads, never answers the close: the old one drains for 8 s
    try:
        old.proc.send_signal(signal.SIGTERM)
        wait_until(lambda: "a new instance may start" in old.log_text(), 5.0,
                   what="the old instance to stop listening")
        rc, out = run_second_until_listening(old.config_path, old.port)
        assert rc == "listening", f"new instance: {rc}\n{out}"
        assert old.alive(), "the old instance was expected to still be draining"
    finally:
        stuck.close()
    code, _ = old.terminate(15.0)
    assert code == 0
