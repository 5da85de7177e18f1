"""nginx in front of herald, as shipped: config/nginx/herald.conf rendered by scripts/nginx-conf.sh,
run by an nginx started with `-p <temp dir>` (pid, logs and temp files there; no root paths), and
`nginx -t` for configs the deploy tests render."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess

import requests

from herald_test import REPO_ROOT, free_port, wait_until

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def render_conf(listen: str, prefix: str, upstreams, render_args=()) -> str:
    """scripts/nginx-conf.sh's output for these addresses."""
    return subprocess.run(
        [str(REPO_ROOT / "scripts" / "nginx-conf.sh"), *render_args, listen, str(prefix),
         *upstreams], check=True, capture_output=True, text=True).stdout


def nginx_test(conf_path, prefix, *extra: str) -> subprocess.CompletedProcess:
    """`nginx -t` on a config file, with `prefix` as its working root."""
    return subprocess.run([NGINX, "-t", "-p", str(prefix), "-c", str(conf_path), *extra],
                          capture_output=True, text=True, timeout=20)


class Nginx:
    """The shipped config/nginx/herald.conf rendered by scripts/nginx-conf.sh, run by an nginx
    this test starts with `-p <temp dir>` (pid, log and temp files there, no root paths)."""

    def __init__(self, prefix, upstreams, render_args=()):
        self.prefix = str(prefix)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        conf = render_conf(f"127.0.0.1:{self.port}", self.prefix, upstreams, render_args)
        self.conf_path = os.path.join(self.prefix, "nginx.conf")
        with open(self.conf_path, "w") as f:
            f.write(conf)
        self.proc = subprocess.Popen([NGINX, "-p", self.prefix, "-c", self.conf_path,
                                      "-e", os.path.join(self.prefix, "nginx-start.log"),
                                      "-g", "daemon off;"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_until(lambda: self.proc.poll() is not None or _up(self.base), 10,
                       what="nginx answering /healthz")
            assert self.proc.poll() is None, f"nginx exited: {self.error_log()}"
        except BaseException:
            self.stop()
            raise

    def error_log(self) -> str:
        try:
            with open(os.path.join(self.prefix, "nginx-herald-error.log")) as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _up(base: str) -> bool:
    try:
        return requests.get(base + "/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False
