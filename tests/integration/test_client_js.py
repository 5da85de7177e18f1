"""The JavaScript client (clients/js, issue 13) under node --test: the state machine's unit tests
(tests/client/state.test.mjs, fake transports and clock) and the live tests against this real
herald binary through a TCP proxy that cuts, refuses upgrades, buffers and loses
acknowledgements (tests/client/live.test.mjs): exactly-once in order over each transport,
fallback and return, offline publish, backoff spread; tokens that expire in 5 s
(tests/client/token.test.mjs, a herald of its own that checks JWTs); and a page in headless Chromium
(tests/client/browser.test.mjs, Debian's chromium driven by playwright-core) that loads
/client/herald.js from herald and receives through cuts, a restart and fallback."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from herald_testlib import herald_bin

CLIENT_TESTS = Path(__file__).resolve().parents[1] / "client"
NODE_MODULES = Path(__file__).resolve().parent / "node_modules"


@pytest.fixture(scope="module")
def herald_config():
    return {"history": {"size": 5000, "max_recovery": 5000, "ttl": "5m"},
            "ws": {"client_publish": ["chat:*"]}}


def node_test(server, name):
    if not shutil.which("node") or not (NODE_MODULES / "ws").is_dir():
        pytest.fail("node and tests/integration/node_modules (scripts/install-deps.sh) are needed")
    env = dict(os.environ, HERALD_URL=server.url("").rstrip("/"), HERALD_BIN=herald_bin())
    p = subprocess.run(["node", "--test", "--test-reporter=spec", str(CLIENT_TESTS / name)],
                       cwd=str(CLIENT_TESTS), env=env, capture_output=True, text=True, timeout=150)
    print(p.stdout[-6000:])
    assert p.returncode == 0, f"node --test {name} failed:\n{p.stdout[-8000:]}\n{p.stderr[-3000:]}"


def test_client_state_machine(server):
    node_test(server, "state.test.mjs")


def test_client_live(server):
    node_test(server, "live.test.mjs")


def test_client_tokens(server):
    node_test(server, "token.test.mjs")


def test_client_in_chromium(server):
    if not Path("/usr/bin/chromium").exists():
        pytest.fail("/usr/bin/chromium is missing (scripts/install-deps.sh installs it)")
    node_test(server, "browser.test.mjs")
