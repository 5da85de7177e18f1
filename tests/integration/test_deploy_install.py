"""`cmake --install` under a prefix (the layout docs/deployment.md and the systemd unit use), and
the unit's hardening as systemd-analyze rates it."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from herald_testlib import REPO_ROOT, herald_bin

UNIT = REPO_ROOT / "config" / "herald.service"
MAX_EXPOSURE = 3.0


def build_dir() -> Path:
    """The CMake build tree of the binary under test (HERALD_BIN lives at its top)."""
    d = Path(herald_bin()).resolve().parent
    if not (d / "cmake_install.cmake").exists():
        pytest.skip(f"{d} is not a CMake build tree (HERALD_BIN={herald_bin()})")
    return d


def exposure(unit: Path) -> tuple[float, str]:
    p = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)],
                       capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: ([0-9.]+)", p.stdout)
    assert m, f"systemd-analyze printed no exposure level ({p.returncode}):\n{p.stdout}\n{p.stderr}"
    return float(m.group(1)), p.stdout


def test_cmake_install_lays_out_binary_configs_unit_and_nginx(tmp_path):
    prefix = tmp_path / "prefix"
    p = subprocess.run(["cmake", "--install", str(build_dir()), "--prefix", str(prefix)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    for rel in ("bin/herald", "etc/herald/herald.yaml", "etc/herald/herald.production.yaml",
                "etc/herald/nginx/herald.conf", "lib/systemd/system/herald.service"):
        assert (prefix / rel).is_file(), f"{rel} not installed:\n{p.stdout}"
    assert os.access(prefix / "bin/herald", os.X_OK)
    unit = (prefix / "lib/systemd/system/herald.service").read_text()
    exec_start = re.search(r"^ExecStart=(.*)$", unit, re.M).group(1).split()
    # The unit runs the installed binary on the installed production config.
    assert exec_start[0] == str(prefix / "bin/herald"), exec_start
    assert exec_start[exec_start.index("--config") + 1] == str(prefix / "etc/herald/herald.production.yaml")
    env_file = re.search(r"^EnvironmentFile=-?(.*)$", unit, re.M).group(1)
    assert env_file == str(prefix / "etc/herald/herald.env")
    settings = [x for x in unit.splitlines() if not x.startswith("#")]
    assert not [x for x in settings if "/usr/local" in x], "a path in the installed unit ignores the prefix"
    # The installed binary accepts the installed config once the key is in the environment.
    env = {**os.environ, "HERALD_PUBLISH_KEYS": "install-test-key-0123456789"}
    c = subprocess.run([str(prefix / "bin/herald"), "--check-config",
                        str(prefix / "etc/herald/herald.production.yaml")],
                       env=env, capture_output=True, text=True, timeout=20)
    assert c.returncode == 0, c.stdout + c.stderr
    # DESTDIR staging (packages, the Docker image) keeps the prefix in the unit's paths.
    stage = tmp_path / "stage"
    p = subprocess.run(["cmake", "--install", str(build_dir()), "--prefix", "/usr/local"],
                       env={**os.environ, "DESTDIR": str(stage)}, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    staged = (stage / "usr/local/lib/systemd/system/herald.service").read_text()
    assert "ExecStart=/usr/local/bin/herald --config /usr/local/etc/herald/herald.production.yaml" in staged


def test_systemd_unit_is_hardened(tmp_path):
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed (Debian package systemd; "
                    "scripts/install-deps.sh installs it)")
    score, report = exposure(UNIT)
    assert score <= MAX_EXPOSURE, f"exposure {score} > {MAX_EXPOSURE}:\n{report}"
    # The rating is real: the same unit without its hardening lines rates far worse.
    bare = "\n".join(line for line in UNIT.read_text().splitlines()
                     if not re.match(r"^(Protect|Private|Restrict|SystemCall|Capability|Ambient|"
                                     r"NoNewPrivileges|MemoryDeny|LockPersonality|RemoveIPC|"
                                     r"KeyringMode|UMask|DevicePolicy|ProcSubset)", line))
    (tmp_path / "herald.service").write_text(bare + "\n")
    worse, _ = exposure(tmp_path / "herald.service")
    assert worse > 7.0, worse
