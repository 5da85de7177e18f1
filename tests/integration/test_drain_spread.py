"""shutdown.drain_spread (issue 17): a draining instance tells its streams to go at times spread
over the window, so that its clients reconnect to the other instance at an even rate instead of
in one burst. 2,000 SSE clients of instance A, each reconnecting to instance B when A ends its
stream; the reconnections are timed at B's side of the client."""
import asyncio
import resource
import signal
import time

import pytest

from herald_test import HOST, unique

CLIENTS = 2000
SPREAD = 4.0


def raise_fd_limit(want):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))


async def open_sse(port, topic):
    r, w = await asyncio.open_connection(HOST, port)
    w.write(f"GET /sse?topic={topic} HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 20)
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return r, w


async def storm(a, b, n):
    topic = unique("spread")
    ended, reconnected = [], []
    sem = asyncio.Semaphore(200)  # connection setup in waves, bounded

    async def one():
        async with sem:
            r, w = await open_sse(a.port, topic)
        return r, w

    # Open all streams first, then let each wait for its end.
    streams = await asyncio.gather(*(one() for _ in range(n)))

    async def follow(r, w):
        try:
            while await asyncio.wait_for(r.read(4096), 30):
                pass
        finally:
            w.close()
        ended.append(time.monotonic())
        async with sem:
            _, w2 = await open_sse(b.port, topic)
        reconnected.append(time.monotonic())
        w2.close()

    # The observer's own stalls: a reconnection is timed when this loop gets to it, so a loop
    # that does not run for a while (a loaded machine's scheduler) times everything that came
    # meanwhile at the moment it runs again, one burst of its own making.
    stall = [0.0]

    async def watch_stalls():
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            stall[0] = max(stall[0], now - last - 0.01)
            last = now

    followers = [asyncio.create_task(follow(r, w)) for r, w in streams]
    await asyncio.sleep(0.2)
    watcher = asyncio.create_task(watch_stalls())
    t0 = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.gather(*followers), SPREAD + 20)
    finally:
        watcher.cancel()
    return t0, ended, reconnected, stall[0]


def spread_stats(t0, times, bucket=0.5):
    rel = sorted(t - t0 for t in times)
    counts = {}
    for t in rel:
        counts[int(t / bucket)] = counts.get(int(t / bucket), 0) + 1
    return rel, max(counts.values())


def spread_ok(rel, peak):
    # Spread over the window: the first quarter and the last quarter both see reconnections,
    # and no half second takes more than a quarter of them (even: 1/8; one burst: all).
    return (rel[0] < SPREAD * 0.25 and rel[-1] > SPREAD * 0.75 and rel[-1] < SPREAD + 5
            and peak <= CLIENTS / 4)


# A measurement is taken again (at most ATTEMPTS in all) only when it failed and this test's own
# event loop stalled longer than STALL_MAX_S meanwhile (CI compiles the sanitizer builds beside
# this pass): a stall of a half-second bucket's length can put two buckets' reconnections in one.
# A server that does not spread fails every attempt: either its burst is seen as one, or the
# burst stalls the loop and the last attempt's figures fail the same assertions.
ATTEMPTS = 3
STALL_MAX_S = 0.2


@pytest.mark.scenario
def test_2000_clients_of_a_draining_instance_reconnect_spread_over_the_window(herald_factory):
    raise_fd_limit(3 * CLIENTS + 200)
    for attempt in range(1, ATTEMPTS + 1):
        a = herald_factory({"shutdown": {"drain_timeout": "10s",
                                         "drain_spread": f"{int(SPREAD)}s"},
                            "limits": {"max_connections": 5000}})
        b = herald_factory({"limits": {"max_connections": 5000}})
        t0, ended, reconnected, stall = asyncio.run(storm(a, b, CLIENTS))
        rc, _ = a.terminate()
        assert rc == 0
        assert len(reconnected) == CLIENTS
        rel, peak = spread_stats(t0, reconnected)
        if spread_ok(rel, peak) or stall < STALL_MAX_S:
            break
        print(f"attempt {attempt}: the test's loop stalled {stall:.2f}s; at most {peak} "
              f"reconnections in a half second, from {rel[0]:.2f}s to {rel[-1]:.2f}s")
    figures = f"(attempt {attempt}, the test's loop stalled at most {stall:.2f}s)"
    assert rel[0] < SPREAD * 0.25 and rel[-1] > SPREAD * 0.75, (rel[0], rel[-1], figures)
    assert rel[-1] < SPREAD + 5, (rel[-1], figures)
    assert peak <= CLIENTS / 4, f"{peak} of {CLIENTS} reconnections in one half second {figures}"
    print(f"drain_spread {SPREAD}s: {CLIENTS} reconnections from {rel[0]:.2f}s to {rel[-1]:.2f}s, "
          f"at most {peak} in a half second {figures}")


@pytest.mark.scenario
def test_without_a_spread_the_same_clients_reconnect_in_one_burst(herald_factory):
    """The control: what drain_spread prevents (on the old code, which lacks it, the same)."""
    raise_fd_limit(3 * CLIENTS + 200)
    n = 500
    a = herald_factory({"shutdown": {"drain_timeout": "10s"}})
    b = herald_factory({})
    t0, ended, reconnected, _ = asyncio.run(storm(a, b, n))
    rel, peak = spread_stats(t0, reconnected)
    assert len(reconnected) == n
    assert peak > n / 2, (peak, rel[0], rel[-1])
    rc, _ = a.terminate()
    assert rc == 0
