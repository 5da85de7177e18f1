"""Config validation through the binary: `--check-config` and start-up both stop with exit code 2
and a message naming the offending key."""
import json
import os
import subprocess

import pytest
import requests

from herald_test import REPO_ROOT
from herald_test.server import herald_bin


def run_herald(*args, timeout=10):
    return subprocess.run([herald_bin(), *args], capture_output=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, cwd=str(REPO_ROOT))


def test_shipped_config_is_valid():
    p = run_herald("--check-config", str(REPO_ROOT / "config" / "herald.yaml"))
    assert p.returncode == 0, (p.returncode, p.stderr.decode())


@pytest.mark.parametrize("yaml_text,key", [
    ("bogus_key: 1\n", "bogus_key"),
    ("limits:\n  max_conections: 5\n", "max_conections"),
    ("workers: many\n", "workers"),
    ("workers: \"4\"\n", "workers"),
    ("workers: 1000\n", "workers"),
    ("limits:\n  max_message_bytes: lots\n", "max_message_bytes"),
    ("sse:\n  heartbeat: soon\n", "heartbeat"),
    ("log:\n  level: loud\n", "level"),
    ("ws:\n  client_publish: \"chat:*\"\n", "client_publish"),
    ("history: 5\n", "history"),
    ("listen: nowhere\n", "listen"),
    # a name, not an address: start-up cannot bind it, so --check-config refuses it too
    ("listen: localhost:8097\n", "listen"),
    ("ws:\n  ping_interval: 50ms\n", "ws.ping_interval must be between 100ms and 1d"),
])
def test_bad_config_exits_2_naming_the_key(tmp_path, yaml_text, key):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    p = run_herald("--check-config", str(cfg))
    err = p.stderr.decode()
    assert p.returncode == 2, (p.returncode, err)
    assert key in err.replace(": must", " must"), f"stderr does not name {key!r}: {err!r}"

    # starting with it fails the same way, before listening
    p = run_herald("--config", str(cfg), "--listen", "127.0.0.1:0")
    err = p.stderr.decode()
    assert p.returncode == 2, (p.returncode, err)
    assert key in err.replace(": must", " must"), err
    assert "listening on" not in err


def test_good_minimal_config_is_valid(tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("workers: 2\nlimits:\n  max_message_bytes: 64KiB\nsse:\n  heartbeat: 250ms\n"
                   "ws:\n  client_publish: [\"chat:*\"]\n")
    p = run_herald("--check-config", str(cfg))
    assert p.returncode == 0, (p.returncode, p.stderr.decode())


def test_missing_config_file_exits_2(tmp_path):
    p = run_herald("--check-config", str(tmp_path / "nope.yaml"))
    assert p.returncode == 2, (p.returncode, p.stderr.decode())


def test_bad_environment_override_exits_2(tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("workers: 2\n")
    env = dict(os.environ, HERALD_WORKERS="lots")
    p = subprocess.run([herald_bin(), "--config", str(cfg), "--listen", "127.0.0.1:0"],
                       capture_output=True, timeout=10, env=env, stdin=subprocess.DEVNULL)
    assert p.returncode == 2, (p.returncode, p.stderr.decode())
    assert "HERALD_WORKERS" in p.stderr.decode()


def test_json_log_format_writes_json_lines(herald_factory):
    srv = herald_factory({"log": {"format": "json", "level": "debug"}})
    assert requests.get(srv.url("/healthz"), timeout=5).status_code == 200
    rc, _ = srv.terminate()
    assert rc == 0
    lines = [l for l in srv.log_text().splitlines() if l.strip()]
    assert lines
    for l in lines:
        obj = json.loads(l)
        assert isinstance(obj, dict), l


@pytest.mark.parametrize("args", [
    ("--bogus",),
    ("--workers", "many"),
    ("--workers",),
    ("--listen",),
    ("--config", "a.yaml", "extra-positional"),
])
def test_command_line_errors_exit_2(args):
    """configuration.md: a command-line error exits 2, like a config error (CLI11 alone exits
    109, 114, ...)."""
    p = run_herald(*args)
    assert p.returncode == 2, (args, p.returncode, p.stderr.decode())
    assert p.stderr.strip(), "no message"


def test_flags_are_checked_by_check_config_too(tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text("workers: 2\n")
    p = run_herald("--check-config", str(cfg), "--listen", "localhost:8097")
    assert p.returncode == 2, (p.returncode, p.stderr.decode())
    assert "--listen" in p.stderr.decode()
    for args in (("--help",), ("--version",)):
        p = run_herald(*args)
        assert p.returncode == 0, (args, p.returncode)


def test_print_defaults_is_a_complete_valid_config(tmp_path):
    import yaml
    p = run_herald("--print-defaults")
    assert p.returncode == 0, p.stderr.decode()
    text = p.stdout.decode()
    defaults = yaml.safe_load(text)

    def flat(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict):
                yield from flat(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    got = dict(flat(defaults))
    shipped = dict(flat(yaml.safe_load((REPO_ROOT / "config" / "herald.yaml").read_text())))
    assert sorted(set(shipped) - set(got)) == [], "keys of config/herald.yaml missing"
    assert got["listen"] == "127.0.0.1:8080" and got["auth.allow_unauthenticated_publish"] is False
    assert got["ws.ping_interval"] == "25s"
    assert "ping_interval: 25s  # range: 100ms..1d" in text
    out = tmp_path / "defaults.yaml"
    out.write_text(text)
    p = run_herald("--check-config", str(out))
    assert p.returncode == 0, (p.returncode, p.stderr.decode())
