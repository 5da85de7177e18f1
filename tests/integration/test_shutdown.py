"""SIGTERM: readyz was 200; WebSocket clients get 1001 "going away", SSE clients get
`event: shutdown`, and the process exits 0 within shutdown.drain_timeout, uncooperative clients
or not."""
import asyncio
import json
import signal
import time

import pytest
import requests
import websockets

from herald_test import unique
from herald_test.sse import SSEClient
from herald_test.ws import RawWS, ws_connect

DRAIN = 2.0


def test_sigterm_drains_clients_and_exits_zero_in_time(herald_factory):
    srv = herald_factory({"shutdown": {"drain_timeout": "2s"}})
    topic = unique("drain")
    r = requests.get(srv.url("/readyz"), timeout=5)
    assert r.status_code == 200 and r.json() == {"status": "ready"}, r.text

    async def run():
        ws = await ws_connect(srv, f"topic={topic}")
        sse = SSEClient(srv.url(f"/sse?topic={topic}"))
        sse.wait_ready()
        # a client that never reads and never answers the close handshake
        rude = RawWS(srv.port, f"/ws?topic={topic}")
        try:
            t0 = time.monotonic()
            srv.proc.send_signal(signal.SIGTERM)

            try:
                while True:
                    await asyncio.wait_for(ws.recv(), DRAIN + 3)
            except websockets.ConnectionClosed:
                pass
            assert ws.close_code == 1001, (ws.close_code, ws.close_reason)
            assert ws.close_reason == "going away", ws.close_reason

            ev = sse.next_event(DRAIN + 3)
            assert ev.event == "shutdown", ev.raw
            assert json.loads(ev.data) == {"reason": "going away"}, ev.raw
            assert sse.wait_eof(DRAIN + 3), "SSE stream did not end after the shutdown event"

            rc = await asyncio.to_thread(srv.proc.wait, DRAIN + 5)
            took = time.monotonic() - t0
            assert rc == 0, f"exit code {rc}"
            # The rude client holds the drain to its end; then the exit (and this process seeing
            # it) may take a loaded machine a while, hence 2 s over.
            assert took <= DRAIN + 2.0, f"took {took:.2f}s to exit, drain_timeout is {DRAIN}s"
        finally:
            sse.close()
            rude.close()

    asyncio.run(run())
    srv.terminate()


def test_readyz_turns_503_while_draining(herald_factory):
    # one client that does not answer the close handshake keeps the process draining for a while
    srv = herald_factory({"shutdown": {"drain_timeout": "3s"}})
    rude = RawWS(srv.port, f"/ws?topic={unique('d')}")
    sess = requests.Session()
    assert sess.get(srv.url("/readyz"), timeout=5).status_code == 200
    srv.proc.send_signal(signal.SIGTERM)
    # the signal is handled asynchronously: a request racing it may still see 200. Once readyz
    # has said 503 (or the listener is closed), it must never say 200 again.
    t_end = time.monotonic() + 2.5
    seen = []
    while time.monotonic() < t_end and srv.proc.poll() is None:
        try:
            r = sess.get(srv.url("/readyz"), timeout=2)
            seen.append(r.status_code)
        except requests.ConnectionError:
            seen.append("refused")
        time.sleep(0.1)
    first_not_ready = next((i for i, x in enumerate(seen) if x != 200), None)
    assert first_not_ready is not None, f"readyz never stopped answering 200 while draining: {seen}"
    assert all(x in (503, "refused") for x in seen[first_not_ready:]), seen
    rc = srv.proc.wait(10)
    rude.close()
    assert rc == 0
    srv.terminate()


def test_sigint_also_exits_zero(herald_factory):
    srv = herald_factory()
    srv.proc.send_signal(signal.SIGINT)
    assert srv.proc.wait(10) == 0
    srv.terminate()


def test_signals_repeated_until_the_process_is_gone_never_kill_it(herald_factory):
    """A supervisor that repeats SIGTERM (or an operator pressing Ctrl-C again) while herald
    already stops: every signal, up to the process's last instant, must find a handler. On the
    old code the teardown after the drain ran with the signals' default action restored, and a
    SIGTERM then killed the process (exit -15; test_drain_spread hit it once). History held in
    memory makes that teardown long enough to be hit."""
    srv = herald_factory({"history": {"size": 1000, "max_bytes": "256MiB"}})
    body = b"x" * 4000
    with requests.Session() as s:
        for i in range(4000):
            r = s.post(srv.url(f"/publish/{unique('teardown')}-{i % 400}"), data=body, timeout=5)
            assert r.status_code == 200, r.text
    srv.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    sent = 1
    while srv.proc.poll() is None and time.monotonic() < deadline:
        srv.proc.send_signal(signal.SIGTERM)
        sent += 1
        time.sleep(0.0005)
    assert srv.proc.wait(5) == 0, f"exit {srv.proc.returncode} after {sent} SIGTERMs"
    srv.terminate()


# Release pass only: under ThreadSanitizer a SIGINT to a process that inherited it ignored is
# still lost about once in ten starts (TSan's own signal interception), with this fix in place.
@pytest.mark.release_only
def test_a_signal_sent_at_readiness_is_not_lost_when_sigint_was_ignored():
    """A shell's background job starts with SIGINT ignored, and the ignored disposition is
    inherited. herald must own its signals before it says it is listening: a SIGINT sent the
    moment the line appears drains and exits 0 (it was lost about 2 times in 10 when the
    signal set was made after the line)."""
    import subprocess

    from herald_test.server import herald_bin
    for _ in range(10):
        p = subprocess.Popen([herald_bin(), "--listen", "127.0.0.1:0", "--workers", "2"],
                             stderr=subprocess.PIPE, text=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        try:
            for line in p.stderr:
                if "listening on" in line:
                    p.send_signal(signal.SIGINT)
                    break
            assert p.wait(10) == 0
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.stderr.close()


def test_drain_spread_sends_a_jittered_reconnect_after_ms_hint(herald_factory):
    """With shutdown.drain_spread, each stream's goodbye carries reconnect_after_ms drawn over the
    window (WebSocket close 1001 reason, SSE `retry:` plus the shutdown event's data), so clients
    that honour it come back spread out; on the old code the goodbyes carried no hint."""
    spread_ms = 1500
    srv = herald_factory({"shutdown": {"drain_timeout": "5s", "drain_spread": f"{spread_ms}ms"}})
    topic = unique("hint")
    n = 12

    async def run():
        wss = [await ws_connect(srv, f"topic={topic}") for _ in range(n)]
        sses = [SSEClient(srv.url(f"/sse?topic={topic}")) for _ in range(n)]
        try:
            for s in sses:
                s.wait_ready()
            srv.proc.send_signal(signal.SIGTERM)
            hints = []
            for ws in wss:
                try:
                    while True:
                        await asyncio.wait_for(ws.recv(), 8)
                except websockets.ConnectionClosed:
                    pass
                assert ws.close_code == 1001, (ws.close_code, ws.close_reason)
                prefix = "going away; reconnect_after_ms="
                assert ws.close_reason.startswith(prefix), ws.close_reason
                hints.append(int(ws.close_reason[len(prefix):]))
            for s in sses:
                ev = await asyncio.to_thread(s.next_event, 8)
                assert ev.event == "shutdown", ev.raw
                data = json.loads(ev.data)
                assert data["reason"] == "going away", ev.raw
                assert ev.get("retry") == str(data["reconnect_after_ms"]), ev.raw
                hints.append(data["reconnect_after_ms"])
            assert all(0 <= h <= spread_ms for h in hints), hints
            # jitter: 24 uniform draws over 1.5 s are neither equal nor bunched
            assert len(set(hints)) >= n, hints
            assert max(hints) - min(hints) >= spread_ms // 3, hints
            rc = await asyncio.to_thread(srv.proc.wait, 10)
            assert rc == 0, rc
        finally:
            for s in sses:
                s.close()

    asyncio.run(run())
    srv.terminate()
