"""The doc-truth check (scripts/check-docs.py, also run by `make check`): the docs agree with the
binary, and the check notices when they do not."""
import re
import shutil
import subprocess
import sys

import pytest

from herald_test import REPO_ROOT
from herald_test.server import herald_bin

SCRIPT = REPO_ROOT / "scripts" / "check-docs.py"

# Files, tools and docs, not a server path a sanitizer could check: the Release pass only.
pytestmark = pytest.mark.release_only


def run_check(root=REPO_ROOT, extra=()):
    return subprocess.run([sys.executable, str(SCRIPT), "--herald", herald_bin(), "--root",
                           str(root), *extra], capture_output=True, timeout=120,
                          stdin=subprocess.DEVNULL)


def test_the_docs_agree_with_the_binary():
    p = run_check(extra=("--promtool",))  # and /metrics passes promtool with both brokers
    out = p.stdout.decode()
    assert p.returncode == 0, f"scripts/check-docs.py found disagreements:\n{out}{p.stderr.decode()}"


def replace(path, pattern, repl):
    """Plants a mistake: the first match of the regex `pattern` becomes `repl`."""
    text = path.read_text()
    changed, n = re.subn(pattern, repl, text, count=1)
    assert n == 1, f"{pattern!r} not in {path}"
    path.write_text(changed)


def test_the_check_reports_each_kind_of_disagreement(tmp_path):
    root = tmp_path / "tree"
    for d in ("docs", "config", "src"):
        shutil.copytree(REPO_ROOT / d, root / d)
    shutil.copy(REPO_ROOT / "README.md", root / "README.md")
    cfg, proto = root / "docs" / "configuration.md", root / "docs" / "protocol.md"
    replace(cfg, r"(\| `ws\.ping_interval` \| )`25s`", r"\1`30s`")
    replace(cfg, r"(\| `ws\.pong_timeout` \|[^|]*\| )100ms\.\.1d", r"\g<1>100ms..2d")
    replace(cfg, r"\| `sse\.retry` \|", "| `sse.retry_gone` |")
    replace(cfg, r"`tls_required`", "`tls_require`")  # in the herald_rejected_requests_total row
    replace(cfg, r"\| `herald_subscriptions` \|", "| `herald_subscriptions`, `herald_imaginary_total` |")
    replace(proto, r"\| 404 \| ", "| 404 | `no_such_code`, ")
    replace(proto, r"`not_subscribed`, ", "")
    replace(root / "config" / "herald.yaml", r"max_recovery: 300", "max_recovery: 301")
    p = run_check(root)
    out = p.stdout.decode()
    assert p.returncode == 1, out
    for expected in [
        "`ws.ping_interval` default is documented as '`30s`', herald --print-defaults says `25s`",
        "`ws.pong_timeout` range is documented as '100ms..2d', herald enforces 100ms..1d",
        "key `sse.retry` is missing from the key tables (default `2s`, range 0s..1d)",
        "documents key `sse.retry_gone`, which herald does not accept",
        "`herald_rejected_requests_total` row does not list reason `tls_required`",
        "metric `herald_imaginary_total` is not on /metrics",
        "error code `no_such_code` does not exist in the code",
        "WebSocket error code `not_subscribed` is missing",
        "`history.max_recovery: 301` is not the default (300)",
    ]:
        assert expected in out, f"not reported: {expected}\n--- output:\n{out}"
