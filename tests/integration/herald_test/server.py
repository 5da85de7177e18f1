"""The herald process under test: its config (YAML from a dict, merged over test defaults), a
start on 127.0.0.1:0 with the port read from its log, the log itself, and a stop that must exit 0;
plus probes of a process's file descriptors and memory."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import requests

from herald_test import HOST, REPO_ROOT

LISTEN_RE = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")

# Servers started by this process that are still running; conftest shows their logs on failure.
LIVE_SERVERS: list["Herald"] = []


def herald_bin() -> str:
    path = os.environ.get("HERALD_BIN") or str(REPO_ROOT / "build" / "herald")
    if not os.path.isfile(path) or not os.access(path, os.X_OK):
        raise AssertionError(f"herald binary not found at {path}: build it first (make build) "
                             f"or point HERALD_BIN at it")
    return path


# --------------------------------------------------------------------------- config (YAML)

def _yaml_scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid YAML double-quoted scalar
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_flow(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as YAML")


def _yaml_flow(v) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_yaml_flow(x)}" for k, x in v.items()) + "}"
    return _yaml_scalar(v)


def to_yaml(cfg: dict, indent: int = 0) -> str:
    """Block-style YAML for nested dicts; lists and list items are written in flow style."""
    out = []
    pad = "  " * indent
    for k, v in cfg.items():
        if isinstance(v, dict):
            out.append(f"{pad}{k}:")
            out.append(to_yaml(v, indent + 1))
        else:
            out.append(f"{pad}{k}: {_yaml_flow(v)}")
    return "\n".join(x for x in out if x)


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------- the server process

# Defaults for test servers: the shipped defaults, with a short drain so teardown is quick
# and a long heartbeat so a comment line never lands in the middle of a byte-exact check.
TEST_DEFAULTS = {
    "log": {"level": "info"},
    "sse": {"heartbeat": "60s", "retry": "2s"},
    "shutdown": {"drain_timeout": "3s"},
    # Tests publish without API keys and open many connections from 127.0.0.1; test_auth.py
    # turns each of these on where it tests it.
    "auth": {"allow_unauthenticated_publish": True},
    "limits": {"connections_per_ip": 0, "new_connections_per_ip_per_s": 0, "ws_messages_per_s": 0,
               "publishes_per_key_per_s": 0},
}


class Herald:
    """One running herald process, bound to 127.0.0.1 on a port the OS chose."""

    def __init__(self, config: dict | None = None, workers: int = 2, workdir: str | None = None,
                 log_level: str | None = None, extra_args: tuple = ()):
        self.config = deep_merge(TEST_DEFAULTS, config or {})
        self.workdir = workdir or tempfile.mkdtemp(prefix="herald-it-")
        self.config_path = os.path.join(self.workdir, "herald.yaml")
        with open(self.config_path, "w") as f:
            f.write(to_yaml(self.config) + "\n")
        self.log_path = os.path.join(self.workdir, "herald.log")
        self._log = open(self.log_path, "wb")
        args = [herald_bin(), "--config", self.config_path, "--listen", f"{HOST}:0",
                "--workers", str(workers)]
        if log_level:
            args += ["--log-level", log_level]
        args += list(extra_args)
        self.args = args
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=str(REPO_ROOT))
        self.port = self._wait_port(10.0)
        LIVE_SERVERS.append(self)

    def _wait_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = Path(self.log_path).read_bytes()
            for m in LISTEN_RE.finditer(data):
                port = int(m.group(1))
                if port != 0:
                    return port
            if self.proc.poll() is not None:
                raise AssertionError(f"herald exited with {self.proc.returncode} before listening:\n"
                                     f"{self.log_tail()}")
            time.sleep(0.02)
        self.proc.kill()
        self.proc.wait(5)
        raise AssertionError(f"herald did not log 'listening on 127.0.0.1:<port>' within {timeout}s:\n"
                             f"{self.log_tail()}")

    # --- addresses
    def url(self, path: str = "/") -> str:
        return f"http://{HOST}:{self.port}{path}"

    def ws_url(self, path: str = "/ws") -> str:
        return f"ws://{HOST}:{self.port}{path}"

    # --- logs
    def log_text(self) -> str:
        try:
            return Path(self.log_path).read_bytes().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # --- lifetime
    def alive(self) -> bool:
        return self.proc.poll() is None

    def terminate(self, timeout: float = 15.0) -> tuple[int, float]:
        """SIGTERM, wait up to `timeout`; returns (exit code, seconds taken). Kills after timeout
        and then returns code None."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            rc = None
        took = time.monotonic() - t0
        self._log.close()
        if self in LIVE_SERVERS:
            LIVE_SERVERS.remove(self)
        return rc, took

    def stop_and_check(self):
        """Teardown: the server must still be running, and exit 0 on SIGTERM within 15 s."""
        was_alive = self.alive()
        early_rc = self.proc.returncode
        rc, took = self.terminate(15.0)
        assert was_alive, f"herald died during the tests (exit {early_rc}):\n{self.log_tail()}"
        assert rc is not None, f"herald did not exit within 15 s of SIGTERM (killed):\n{self.log_tail()}"
        assert rc == 0, f"herald exited with {rc} after SIGTERM:\n{self.log_tail()}"


def wait_ready(server: Herald, timeout: float = 15.0):
    """Until /readyz answers 200 (a redis broker is connected, the workers run)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(server.url("/readyz"), timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise AssertionError(f"herald on {server.port} not ready within {timeout}s:\n{server.log_tail()}")


# --------------------------------------------------------------------------- process probes

def server_fds(pid: int) -> int:
    """Open file descriptors of process `pid`."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def server_rss_kib(pid: int) -> int:
    """Resident memory of process `pid`, KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0
