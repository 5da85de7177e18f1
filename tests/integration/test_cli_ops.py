"""Operator tools (issue 17): `herald genconfig` (a production config that passes --check-config,
with fresh random secrets), `herald token` (a development JWT a running herald accepts), the
Prometheus rules (promtool check rules) and the Grafana dashboard (every metric it names exists)."""
import json
import os
import re
import shutil
import subprocess

import pytest
import requests
import yaml

from herald_test import REPO_ROOT, unique
from herald_test.metrics import metrics_text
from herald_test.server import herald_bin

RULES = REPO_ROOT / "config" / "prometheus" / "herald-rules.yml"
DASHBOARD = REPO_ROOT / "config" / "grafana" / "herald.json"


def run(*args, **kw):
    return subprocess.run([herald_bin(), *args], capture_output=True, timeout=20,
                          stdin=subprocess.DEVNULL, **kw)


def test_genconfig_writes_a_checked_production_config_with_fresh_secrets(tmp_path):
    a, b = run("genconfig"), run("genconfig")
    assert a.returncode == 0 and b.returncode == 0, a.stderr
    ca, cb = yaml.safe_load(a.stdout), yaml.safe_load(b.stdout)
    assert ca["auth"]["allow_unauthenticated_publish"] is False
    key, secret = ca["auth"]["publish_keys"][0], ca["auth"]["jwt"]["keys"][0]["secret"]
    assert len(key) >= 40 and len(secret) >= 60, (key, secret)
    assert key != cb["auth"]["publish_keys"][0] and secret != cb["auth"]["jwt"]["keys"][0]["secret"]
    assert b"#" in a.stdout  # commented
    out = tmp_path / "herald.yaml"
    p = run("genconfig", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert (os.stat(out).st_mode & 0o777) == 0o600
    p = run("--check-config", str(out))
    assert p.returncode == 0 and b": ok" in p.stdout, p.stdout + p.stderr
    p = run("genconfig", "-o", str(out))  # never overwrites
    assert p.returncode == 2 and b"exists" in p.stderr


def test_token_is_accepted_by_a_herald_with_that_config(herald_factory, tmp_path):
    cfg_path = tmp_path / "prod.yaml"
    assert run("genconfig", "-o", str(cfg_path)).returncode == 0
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg.pop("listen")
    cfg["origins"] = {"allow": ["*"]}
    cfg["audit"]["sink"] = ""
    h = herald_factory(cfg)
    p = run("token", "-c", str(cfg_path), "--sub", "u1", "--topics", "chat:*,news", "--ttl", "1h")
    assert p.returncode == 0, p.stderr
    tok = p.stdout.decode().strip()
    assert tok.count(".") == 2
    room = unique("chat:room")
    r = requests.get(h.url(f"/sse?topic={room}&token={tok}"), stream=True, timeout=5)
    assert r.status_code == 200, r.text
    r.close()
    r = requests.get(h.url(f"/sse?topic=other&token={tok}"), stream=True, timeout=5)
    assert r.status_code == 403
    r.close()
    key = cfg["auth"]["publish_keys"][0]
    assert requests.post(h.url(f"/publish/{room}"), data="x", timeout=5).status_code == 401
    assert requests.post(h.url(f"/publish/{room}"), data="x", timeout=5,
                         headers={"Authorization": f"Bearer {key}"}).status_code == 200
    # Bad input: a clear error, exit 2.
    p = run("token", "-c", str(cfg_path), "--sub", "u1", "--ttl", "soon")
    assert p.returncode == 2 and b"--ttl" in p.stderr
    p = run("token", "-c", str(cfg_path), "--sub", "u1", "--topics", "bad topic")
    assert p.returncode == 2 and b"pattern" in p.stderr
    nokey = tmp_path / "nokey.yaml"
    nokey.write_text("auth:\n  publish_keys: []\n")
    p = run("token", "-c", str(nokey), "--sub", "u1")
    assert p.returncode == 2 and b"auth.jwt.keys" in p.stderr
    assert run("token", "-c", str(cfg_path)).returncode != 0  # --sub is required


@pytest.mark.skipif(not shutil.which("promtool"), reason="promtool (Debian prometheus) missing")
def test_prometheus_rules_pass_promtool():
    p = subprocess.run(["promtool", "check", "rules", str(RULES)], capture_output=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    assert b"SUCCESS" in p.stdout


def test_dashboard_and_rules_name_only_metrics_herald_exports(server):
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] == "herald" and dash["panels"]
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    rules = yaml.safe_load(RULES.read_text())
    exprs += [r["expr"] for g in rules["groups"] for r in g["rules"]]
    names = set()
    for e in exprs:
        names |= {re.sub(r"_(bucket|sum|count)$", "", n) for n in re.findall(r"\bherald_[a-z_]+", e)}
    live = metrics_text(server)
    config_md = (REPO_ROOT / "docs" / "configuration.md").read_text()
    for n in sorted(names):
        if n.startswith("herald_redis_"):  # on /metrics with broker: redis only
            assert f"`{n}`" in config_md, n
        else:
            assert f"# TYPE {n} " in live, f"{n} is not on /metrics"
