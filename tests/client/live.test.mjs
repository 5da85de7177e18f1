// The client against the real herald binary (HERALD_URL, started by
// tests/integration/test_client_js.py) through a TCP proxy that cuts, refuses upgrades, buffers
// and loses acknowledgements.
import test from "node:test";
import assert from "node:assert/strict";
import { Herald } from "../../clients/js/herald.js";
import { Proxy } from "./proxy.mjs";
import { HERALD, HERALD_PORT, WebSocket, publish, sleep, unique, waitFor } from "./common.mjs";

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

test("upgrades refused -> SSE, SSE buffered -> poll, both restored -> back to WebSocket", { timeout: 60000 }, async () => {
  const proxy = await new Proxy({ host: "127.0.0.1", port: HERALD_PORT }).listen();
  proxy.mode.refuseUpgrades = true;
  const topic = unique("fallback");
  const seen = [];
  const transports = [];
  const h = new Herald(proxy.url, { ...base, upgradeAfter: 1500 });
  h.on("transport", (t) => transports.push(t));
  h.subscribe(topic, { onMessage: (m) => seen.push(m.offset) });
  let n = 0;
  const pub = async () => { await publish(topic, ++n); await waitFor(() => seen.includes(n), 8000, `message ${n} over ${h.transport}`); };
  try {
    await waitFor(() => h.transport === "sse" && h.state === "connected", 8000, "SSE");
    await pub();
    proxy.mode.buffer = true;
    proxy.cutAll();
    await waitFor(() => h.transport === "poll" && h.state === "connected", 15000, "poll");
    await pub();
    proxy.mode.refuseUpgrades = false;
    proxy.mode.buffer = false;
    await waitFor(() => h.transport === "websocket" && h.state === "connected", 15000, "back to websocket");
    await pub();
    assert.deepEqual(seen, Array.from({ length: n }, (_, i) => i + 1));
    assert.deepEqual(transports.slice(0, 3), ["sse", "poll", "websocket"]);
  } finally {
    h.close();
    await proxy.close();
  }
});

test("offline publishes are delivered once each, also when the first acknowledgement is lost", { timeout: 30000 }, async () => {
  const proxy = await new Proxy({ host: "127.0.0.1", port: HERALD_PORT }).listen();
  const topic = unique("chat:offline");
  const got = [];
  const watcher = new Herald(HERALD, { ...base }); // direct, not through the proxy
  watcher.subscribe(topic, { onMessage: (m) => got.push(m.data) });
  const h = new Herald(proxy.url, { ...base, transports: ["websocket"] });
  try {
    await waitFor(() => h.state === "connected" && watcher.state === "connected", 5000, "connected");
    await sleep(100);
    // The first publish reaches herald, its acknowledgement does not.
    proxy.mode.swallow = true;
    const first = h.publish(topic, "p0");
    await waitFor(() => got.length === 1, 5000, "p0 at the watcher");
    proxy.mode.down = true;
    proxy.cutAll();
    await waitFor(() => h.state !== "connected", 5000, "disconnected");
    const more = [1, 2, 3, 4].map((i) => h.publish(topic, "p" + i));
    await sleep(300);
    proxy.mode.swallow = false;
    proxy.mode.down = false;
    const results = await Promise.all([first, ...more]);
    await waitFor(() => got.length >= 5, 5000, "5 messages");
    await sleep(300);
    assert.deepEqual(got, ["p0", "p1", "p2", "p3", "p4"]);
    assert.equal(results[0].duplicate, true, "the retry of p0 was answered as a duplicate");
    assert.deepEqual(results.map((r) => r.offset), [1, 2, 3, 4, 5]);
  } finally {
    h.close();
    watcher.close();
    await proxy.close();
  }
});

test("maxOutbox: the 101st waiting publish is refused", async () => {
  const h = new Herald("http://127.0.0.1:1", { ...base, transports: ["websocket"], minDelay: 5000 });
  try {
    const waiting = Array.from({ length: 100 }, (_, i) => h.publish("chat:x", i).catch((e) => e));
    await assert.rejects(h.publish("chat:x", 101), (e) => e.code === "outbox_full");
    h.close();
    for (const e of await Promise.all(waiting)) assert.equal(e.code, "closed");
  } finally {
    h.close();
  }
});

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
    const buckets = new Set(firsts.map((t) => Math.floor(t / 100)));
    assert.ok(buckets.size >= 4, `50 first attempts in only ${buckets.size} 100-ms buckets: ${firsts}`);
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

for (const transport of ["websocket", "sse", "poll"]) {
  test(`${transport}: binary as ArrayBuffer, JSON, two topics on one client, unsubscribe`, { timeout: 30000 }, async () => {
    const h = new Herald(HERALD, { ...base, transports: [transport] });
    const a = unique("kinds-a"), b = unique("kinds-b");
    const got = { a: [], b: [] };
    const subA = h.subscribe(a, { onMessage: (m) => got.a.push(m) });
    h.subscribe(b, { onMessage: (m) => got.b.push(m) });
    try {
      await waitFor(() => h.state === "connected", 5000, "connected");
      await sleep(transport === "poll" ? 1200 : 200);
      const bytes = Uint8Array.from([0, 1, 2, 250, 255]);
      await fetch(`${HERALD}/publish/${a}`, { method: "POST", headers: { "Content-Type": "application/octet-stream" }, body: bytes });
      await fetch(`${HERALD}/publish/${a}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: '{"p":1}' });
      await publish(b, "to b");
      await waitFor(() => got.a.length === 2 && got.b.length === 1, 10000, "three messages");
      assert.ok(got.a[0].data instanceof ArrayBuffer, `binary arrived as ${Object.prototype.toString.call(got.a[0].data)}`);
      assert.deepEqual([...new Uint8Array(got.a[0].data)], [...bytes]);
      // SSE cannot tell JSON from text: it delivers the JSON text.
      assert.deepEqual(transport === "sse" ? JSON.parse(got.a[1].data) : got.a[1].data, { p: 1 });
      assert.equal(got.b[0].data, "to b");
      assert.equal(got.b[0].transport, transport);
      subA.unsubscribe();
      await sleep(300);
      await publish(a, "after unsubscribe");
      await publish(b, "still here");
      await waitFor(() => got.b.length === 2, 10000, "the second message of b");
      await sleep(200);
      assert.equal(got.a.length, 2, "a message of an unsubscribed topic was delivered");
    } finally {
      h.close();
    }
  });
}
