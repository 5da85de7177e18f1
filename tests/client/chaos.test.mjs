// The long runs of the client against the real herald binary (HERALD_URL, started by
// tests/integration/test_client_js.py, a scenario test): exactly once through 20 cuts per
// transport, and 50 clients reconnecting after their server went away.
import test from "node:test";
import assert from "node:assert/strict";
import { Herald } from "../../clients/js/herald.js";
import { Proxy } from "./proxy.mjs";
import { HERALD_PORT, WebSocket, publish, sleep, unique, waitFor } from "./common.mjs";

const base = { WebSocket, storage: null, minDelay: 100, maxDelay: 1000, connectTimeout: 1500 };

// The application's view: every offset 1..n once, in order, except after an onReset, which says
// where the stream continues.
function checkStream(events, n) {
  let next = 1, resets = 0;
  for (const [kind, off, data] of events) {
    if (kind === "reset") { assert.ok(off + 1 >= next, `reset back to ${off} after ${next - 1}`); next = off + 1; resets++; continue; }
    assert.equal(off, next, `message ${off} where ${next} was due`);
    assert.equal(data, String(off));
    next++;
  }
  assert.equal(next - 1, n, `ended at ${next - 1} of ${n}`);
  return resets;
}

for (const [transport, n, cuts] of [["websocket", 2000, 20], ["sse", 2000, 20], ["poll", 1000, 10]]) {
  test(`exactly once, in order, over ${transport} through ${cuts} cuts`, { timeout: 60000 }, async () => {
    const proxy = await new Proxy({ host: "127.0.0.1", port: HERALD_PORT }).listen();
    const topic = unique(`eo-${transport}`);
    // stableAfter 50 ms: the backoff starts from minDelay again between cuts.
    const h = new Herald(proxy.url, { ...base, transports: [transport], stableAfter: 50 });
    const events = [];
    h.subscribe(topic, {
      onMessage: (m) => events.push(["msg", m.offset, m.data]),
      onReset: (t, info) => events.push(["reset", info.offset]),
    });
    try {
      await waitFor(() => h.state === "connected", 5000, "connected");
      // Cuts at random moments: after random messages. A cut due while the client is away waits
      // (publishing paused, bounded) until it is connected again, so that each one cuts a live
      // connection; between cuts, publishing goes on while the client reconnects.
      const cutAt = new Set();
      while (cutAt.size < cuts) cutAt.add(1 + Math.floor(Math.random() * (n - 1)));
      let made = 0;
      for (let i = 1; i <= n; i++) {
        await publish(topic, i);
        if (cutAt.has(i)) {
          await waitFor(() => h.state === "connected" && proxy.conns.size, 10000,
            `connected again for cut ${made + 1}`);
          proxy.cutAll();
          made++;
        }
        if (i % 2 === 0) await sleep(4); // about 3.5 s per 1,000 messages
      }
      await waitFor(() => events.length && events[events.length - 1][1] === n, 30000,
        `message ${n} (have ${events.length} events)`);
      await sleep(200); // nothing may follow
      const resets = checkStream(events, n);
      console.log(`# ${transport}: ${n} messages, ${made} cuts of a live connection, ${proxy.accepted} connections, ${resets} resets`);
      assert.equal(made, cuts);
      assert.equal(h.transport, transport);
    } finally {
      h.close();
      await proxy.close();
    }
  });
}

test("50 clients whose server goes away reconnect spread over time, within maxDelay", { timeout: 30000 }, async () => {
  const proxy = await new Proxy({ host: "127.0.0.1", port: HERALD_PORT }).listen();
  const maxDelay = 2000;
  const clients = [];
  const attempts = [];
  for (let i = 0; i < 50; i++) {
    const h = new Herald(proxy.url, { ...base, transports: ["websocket"], minDelay: 500, maxDelay });
    h.subscribe("backoff", {});
    clients.push(h);
  }
  try {
    await waitFor(() => clients.every((h) => h.state === "connected"), 10000, "50 connected");
    proxy.mode.down = true;
    const t0 = Date.now();
    const perClient = clients.map(() => []);
    clients.forEach((h, i) => h.on("state", (s) => {
      if (s === "connecting") { attempts.push(Date.now() - t0); perClient[i].push(Date.now() - t0); }
    }));
    proxy.cutAll();
    await sleep(6000);
    proxy.mode.down = false;
    await waitFor(() => clients.every((h) => h.state === "connected"), 10000, "50 reconnected");
    // Not synchronized: the first retries spread over the first backoff window.
    const firsts = attempts.slice(0, 50).sort((a, b) => a - b);
    const buckets = new Map();
    for (const t of firsts) buckets.set(Math.floor(t / 100), (buckets.get(Math.floor(t / 100)) || 0) + 1);
    assert.ok(buckets.size >= 4, `50 first attempts in only ${buckets.size} 100-ms buckets: ${firsts}`);
    // Full jitter over [0, 500 ms]: about 10 per bucket; a herd would put most in one.
    const crowd = Math.max(...buckets.values());
    assert.ok(crowd <= 20, `${crowd} of 50 first attempts in one 100-ms bucket: ${firsts}`);
    // Per client, no wait between attempts longer than maxDelay (plus the refusal's round trip).
    for (const times of perClient) {
      assert.ok(times.length >= 3, `a client tried only ${times.length} times in 6 s`);
      for (let i = 1; i < times.length; i++)
        assert.ok(times[i] - times[i - 1] <= maxDelay + 1000, `waited ${times[i] - times[i - 1]} ms > maxDelay`);
    }
    console.log(`# backoff: ${attempts.length} attempts in 6 s by 50 clients; first attempts spread over ${firsts[0]}..${firsts[49]} ms`);
    assert.ok(attempts.length < 50 * 20, `too many attempts: ${attempts.length}`);
  } finally {
    for (const h of clients) h.close();
    await proxy.close();
  }
});

