"""`cmake --install` under a prefix (the layout docs/deployment.md and the systemd unit use), and
the unit's hardening as systemd-analyze rates it."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from herald_test import REPO_ROOT
from herald_test.server import herald_bin

# Files, tools and docs, not a server path a sanitizer could check: the Release pass only.
pytestmark = pytest.mark.release_only

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
    # systemd accepts the installed unit: every key known, ExecStart executable.
    if shutil.which("systemd-analyze"):
        v = subprocess.run(["systemd-analyze", "verify", str(prefix / "lib/systemd/system/herald.service")],
                           capture_output=True, text=True, timeout=60)
        assert v.returncode == 0 and not v.stderr.strip() and not v.stdout.strip(), v.stdout + v.stderr
    # A reinstall keeps the operator's edited production config.
    edited = prefix / "etc/herald/herald.production.yaml"
    edited.write_text(edited.read_text() + "# edited by the operator\n")
    p = subprocess.run(["cmake", "--install", str(build_dir()), "--prefix", str(prefix)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "Keeping: " in p.stdout, p.stdout + p.stderr
    assert edited.read_text().endswith("# edited by the operator\n")
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


def syscall_groups() -> dict[str, list[str]]:
    """systemd's system call groups: name -> members (system calls or @groups)."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], capture_output=True,
                         text=True, timeout=60).stdout
    groups, cur = {}, None
    for line in out.splitlines():
        if line.startswith("@"):
            cur = groups.setdefault(line.strip(), [])
        elif cur is not None and line.strip() and not line.strip().startswith("#"):
            cur.append(line.strip())
    return groups


def expand(name: str, groups: dict, seen=None) -> set[str]:
    seen = seen if seen is not None else set()
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    out = set()
    for m in groups.get(name, []):
        out |= expand(m, groups, seen)
    return out


def unit_syscall_filter(unit_text: str, groups: dict) -> set[str]:
    """What the unit's SystemCallFilter= lines allow: the first (allow) list plus @default,
    minus every later ~ list."""
    allowed = None
    for m in re.finditer(r"^SystemCallFilter=(~?)(.*)$", unit_text, re.M):
        names = set()
        for n in m.group(2).split():
            names |= expand(n, groups)
        if m.group(1):
            allowed = (allowed or set()) - names
        else:
            allowed = (allowed or expand("@default", groups)) | names
    assert allowed, "the unit has no SystemCallFilter allow list"
    return allowed


def test_herald_uses_only_system_calls_the_unit_allows(tmp_path):
    """herald on the production config (with a real Redis) under strace -f: start, SSE and
    WebSocket subscribers, a keyed publish, SIGTERM drain. Every system call it made must be in
    the unit's SystemCallFilter, or systemd would refuse it (EPERM) in production."""
    if not shutil.which("systemd-analyze") or not shutil.which("strace"):
        pytest.skip("systemd-analyze or strace is not installed (Debian packages systemd, strace)")
    binary = Path(herald_bin()).read_bytes()
    if any(m in binary for m in (b"__asan_init", b"__tsan_init", b"__ubsan_handle")):
        pytest.skip("a sanitizer build makes system calls of its own (LeakSanitizer's ptrace, ...) "
                    "that the production binary does not")
    import asyncio
    import signal

    import requests
    import websockets

    from herald_test import wait_until
    from herald_test.redis import RedisServer
    from herald_test.sse import SSEClient

    allowed = unit_syscall_filter(UNIT.read_text(), syscall_groups())
    redis = RedisServer()
    conf = (REPO_ROOT / "config" / "herald.production.yaml").read_text()
    conf = conf.replace("127.0.0.1:6379", redis.address)
    (tmp_path / "herald.yaml").write_text(conf)
    key = "strace-test-publish-key-0123456789"
    trace = tmp_path / "strace.txt"
    log = open(tmp_path / "herald.log", "wb")
    proc = subprocess.Popen(["strace", "-f", "-c", "-o", str(trace), herald_bin(), "--config",
                             str(tmp_path / "herald.yaml"), "--listen", "127.0.0.1:0"],
                            env={**os.environ, "HERALD_PUBLISH_KEYS": key}, stdout=log,
                            stderr=subprocess.STDOUT)
    try:
        def port():
            m = re.search(rb"listening on 127\.0\.0\.1:([1-9]\d*)", (tmp_path / "herald.log").read_bytes())
            return int(m.group(1)) if m else None
        p = wait_until(port, 20, what="herald listening under strace")
        base = f"http://127.0.0.1:{p}"
        wait_until(lambda: requests.get(base + "/readyz", timeout=2).status_code == 200, 20,
                   what="ready (Redis connected)")

        async def tour():
            async with websockets.connect(f"ws://127.0.0.1:{p}/ws?topic=t",
                                          subprotocols=["herald.v1"]) as ws:
                with SSEClient(f"{base}/sse?topic=t", max_time=20) as sse:
                    sse.wait_ready(10)
                    r = requests.post(base + "/publish/t", data="traced", timeout=5,
                                      headers={"Authorization": f"Bearer {key}"})
                    assert r.status_code == 200, r.text
                    assert sse.next_event(10).data == "traced"
                    while True:
                        m = await asyncio.wait_for(ws.recv(), 10)
                        if '"traced"' in m:
                            break
        asyncio.run(tour())
        requests.get(base + "/metrics", timeout=5)
    finally:
        # SIGTERM to herald itself (strace's child): it drains and exits, strace then writes
        # its summary and exits too.
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
        kids = children.read_text().split() if children.exists() else []
        for k in kids:
            os.kill(int(k), signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        redis.kill()
    used = set()
    for line in trace.read_text().splitlines():
        cols = line.split()
        if cols and re.fullmatch(r"[a-z_0-9]+", cols[-1]) and cols[-1] != "total" and \
                re.match(r"^\s*[0-9.]+\s", line):
            used.add(cols[-1])
    assert len(used) > 10, trace.read_text()
    # execve is strace starting herald; the filter applies after it anyway.
    denied = sorted(used - allowed - {"execve"})
    assert not denied, f"herald makes system calls the unit's SystemCallFilter denies: {denied}"
