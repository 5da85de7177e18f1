"""Fixtures: each test module gets its own real herald process on 127.0.0.1:<port chosen by the OS>.

A module changes its server's config by overriding the module-scoped `herald_config` fixture.
Tests that need a server of their own (special config, or one they will stop) use
`herald_factory`. On teardown every server gets SIGTERM and must exit 0 within 15 s.
`redis1` and `redis2` are redis-server processes of a test's own (herald_test.redis).
"""
import pytest

from herald_test.redis import redis1, redis2  # noqa: F401 (fixtures for every module)
from herald_test.server import LIVE_SERVERS, Herald


def pytest_configure(config):
    # Long fault-injection scenarios (failovers, browser runs of thousands of messages, storms of
    # reconnects) run once, in the Release pass of `make test`; the ASan and TSan passes deselect
    # them with -m "not scenario" because their figures mean nothing under a sanitizer's 5-20x
    # slowdown. Every other test runs in all three passes.
    config.addinivalue_line("markers", "scenario: a long fault-injection scenario (Release pass only)")
    # Tests of files, tools, docs and a browser's side (the Dockerfile, the install layout, the
    # layer and doc checks, Chromium pages) add nothing under a sanitizer: Release pass only too.
    config.addinivalue_line("markers",
                            "release_only: checks no server path a sanitizer could (Release only)")


@pytest.fixture(scope="module")
def herald_config():
    return {}


@pytest.fixture(scope="module")
def herald_workers():
    return 2


@pytest.fixture(scope="module")
def server(herald_config, herald_workers, tmp_path_factory):
    h = Herald(herald_config, workers=herald_workers,
               workdir=str(tmp_path_factory.mktemp("herald")))
    yield h
    h.stop_and_check()


@pytest.fixture
def herald_factory(tmp_path):
    started = []

    def start(config=None, workers=2, **kw):
        d = tmp_path / f"herald{len(started)}"
        d.mkdir()
        h = Herald(config, workers=workers, workdir=str(d), **kw)
        started.append(h)
        return h

    yield start
    errors = []
    for h in started:
        if h.proc.returncode is not None and h not in LIVE_SERVERS:
            continue  # the test stopped it itself and checked how
        try:
            h.stop_and_check()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n\n".join(errors)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and LIVE_SERVERS:
        for h in LIVE_SERVERS:
            rep.sections.append((f"herald log (port {h.port}, last 40 lines)", h.log_tail(40)))
