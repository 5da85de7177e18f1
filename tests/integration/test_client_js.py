"""The JavaScript client (clients/js, issue 13) under node --test: the state machine's unit tests
(tests/client/state.test.mjs, fake transports and clock); the live tests against this real
herald binary through a TCP proxy that cuts, refuses upgrades, buffers and loses
acknowledgements (live.test.mjs: fallback and return, offline publish, one SSE stream for
several topics; chaos.test.mjs: exactly-once in order over each transport through 20 cuts, 50
clients' backoff); tokens that expire in 5 s (token.test.mjs, a herald of its own that checks
JWTs); and pages in headless Chromium (Debian's chromium driven by playwright-core) that load
/client/herald.js from herald (browser.test.mjs: fallback and back, offline publishes with a lost
acknowledgement; browser_long.test.mjs: cuts
and a restart, token expiry, a failing getToken). The headline run, Chromium through nginx with
two instances and Redis, is tests/integration/test_client_deploy.py. The long ones are
`scenario` tests (the Release pass of make test only)."""
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
                       cwd=str(CLIENT_TESTS), env=env, capture_output=True, text=True, timeout=240)
    print(p.stdout[-6000:])
    assert p.returncode == 0, f"node --test {name} failed:\n{p.stdout[-8000:]}\n{p.stderr[-3000:]}"


def chromium_or_fail():
    # Never a silent skip: the browser tests are part of make test and of CI.
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        pytest.fail(f"{chromium} is missing (scripts/install-deps.sh installs Debian's chromium)")


@pytest.mark.release_only  # fake transports and clock: no server path
def test_client_state_machine(server):
    node_test(server, "state.test.mjs")


def test_client_live(server):
    """Fallback and back, offline publish with a lost acknowledgement, the outbox bound, binary and
    JSON per transport, several topics on one SSE stream."""
    node_test(server, "live.test.mjs")


@pytest.mark.scenario
def test_client_chaos(server):
    """2,000 messages once and in order through 20 cuts per transport; 50 clients' backoff."""
    node_test(server, "chaos.test.mjs")


@pytest.mark.scenario
def test_client_tokens(server):
    node_test(server, "token.test.mjs")


@pytest.mark.release_only  # the browser's side; test_client_live runs the same paths
def test_client_in_chromium(server):
    chromium_or_fail()
    node_test(server, "browser.test.mjs")


@pytest.mark.scenario
def test_client_in_chromium_long(server):
    """A page through 20 cuts and a restart; tokens expiring every 5 s; a failing getToken."""
    chromium_or_fail()
    node_test(server, "browser_long.test.mjs")
