"""The layer check (scripts/check-layers.py, also run by `make check`): no file includes a module
above its own layer, and the check names the file, the line and the rule when one does."""
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check-layers.py"

# Files, tools and docs, not a server path a sanitizer could check: the Release pass only.
pytestmark = pytest.mark.release_only


def run_check(root):
    return subprocess.run([sys.executable, str(SCRIPT), "--root", str(root)], capture_output=True,
                          timeout=60, stdin=subprocess.DEVNULL, text=True)


def test_the_tree_keeps_its_layers():
    p = run_check(ROOT)
    assert p.returncode == 0, f"scripts/check-layers.py:\n{p.stdout}{p.stderr}"


def test_an_upward_include_is_reported_with_file_line_and_rule(tmp_path):
    root = tmp_path / "tree"
    shutil.copytree(ROOT / "src", root / "src")
    shutil.copytree(ROOT / "include", root / "include")
    assert run_check(root).returncode == 0
    # The hub including a broker header (the loop this check exists to prevent), and the wire
    # module including a net header through a private path.
    shard = root / "src" / "hub" / "shard.cpp"
    lines = shard.read_text().splitlines()
    lines.insert(1, '#include "herald/broker/broker.hpp"')
    shard.write_text("\n".join(lines) + "\n")
    topic = root / "src" / "wire" / "topic.cpp"
    topic.write_text('#include "../app/api.hpp"\n' + topic.read_text())
    p = run_check(root)
    assert p.returncode == 1
    out = p.stdout.splitlines()
    assert any(l.startswith("src/hub/shard.cpp:2: hub includes herald/broker/broker.hpp of broker")
               for l in out), p.stdout
    assert any(l.startswith("src/wire/topic.cpp:1: wire includes ../app/api.hpp of app")
               for l in out), p.stdout
    assert all("common < wire < config < metrics < auth < hub < broker < net < app" in l
               for l in out), p.stdout
