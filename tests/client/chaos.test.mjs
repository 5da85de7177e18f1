// The long runs of the client against the real herald binary (HERALD_URL, started by
// tests/integration/test_client_js.py, a scenario test): exactly once through 20 cuts per
// transport and for three topics on one SSE stream, those three across a restart (a herald of
// its own), and 50 clients reconnecting after their server went away.
import test from "node:test";
import assert from "node:assert/strict";
import { Herald } from "../../clients/js/herald.js";
import { Proxy } from "./proxy.mjs";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { HERALD_PORT, HeraldProcess, WebSocket, publish, publishRetrying, sleep, unique, waitFor, watchStalls } from "./common.mjs";

// connectTimeout 5 s: nothing here hangs a connection (the proxy cuts and refuses), and a shorter
// one would give up on a stream that this process, stalled by a loaded machine, had not read yet
// (one more stream at a cut than the SSE check allows).
const base = { WebSocket, storage: null, minDelay: 100, maxDelay: 1000, connectTimeout: 5000 };

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

// [transport, messages per topic, cuts, topics]: the last rows are three topics on one SSE stream
// (the client tells each message's topic from the positions in the event id) and on one poll.
for (const [transport, n, cuts, k] of [["websocket", 2000, 20, 1], ["sse", 2000, 20, 1], ["poll", 1000, 10, 1], ["sse", 700, 10, 3], ["poll", 500, 10, 3]]) {
  test(`exactly once, in order, over ${transport} through ${cuts} cuts (${k} topic${k > 1 ? "s on one request" : ""})`, { timeout: 60000 }, async () => {
    const proxy = await new Proxy({ host: "127.0.0.1", port: HERALD_PORT }).listen();
    const topics = Array.from({ length: k }, (_, j) => unique(`eo-${transport}-${j}`));
    // stableAfter 50 ms: the backoff starts from minDelay again between cuts.
    const h = new Herald(proxy.url, { ...base, transports: [transport], stableAfter: 50 });
    const events = topics.map(() => []);
    topics.forEach((topic, j) => h.subscribe(topic, {
      onMessage: (m) => events[j].push(["msg", m.offset, m.data]),
      onReset: (t, info) => events[j].push(["reset", info.offset]),
    }));
    const streams = () => [...proxy.conns].filter((p) => p.request && p.request.startsWith("GET /sse")).length;
    try {
      await waitFor(() => h.state === "connected", 5000, "connected");
      // Cuts at random moments: after random messages. A cut due while the client is away waits
      // (publishing paused, bounded) until it is connected again, so that each one cuts a live
      // connection; between cuts, publishing goes on while the client reconnects.
      const cutAt = new Set();
      while (cutAt.size < cuts) cutAt.add(1 + Math.floor(Math.random() * (n - 1)));
      let made = 0, most = 0;
      for (let i = 1; i <= n; i++) {
        for (const topic of topics) await publish(topic, i);
        if (cutAt.has(i)) {
          await waitFor(() => h.state === "connected" && proxy.conns.size, 10000,
            `connected again for cut ${made + 1}`);
          if (transport === "sse") most = Math.max(most, streams());
          proxy.cutAll();
          made++;
        }
        if (i % 2 === 0) await sleep(4); // about 3.5 s per 1,000 messages
      }
      const lastIs = (e) => e.length && e[e.length - 1][1] === n;
      await waitFor(() => events.every(lastIs), 30000,
        `message ${n} (have ${events.map((e) => e.length)} events)`);
      await sleep(200); // nothing may follow
      const resets = events.reduce((sum, e) => sum + checkStream(e, n), 0);
      console.log(`# ${transport}, ${k} topic(s): ${n} messages each, ${made} cuts of a live connection, ${proxy.accepted} connections, ${resets} resets`);
      assert.equal(made, cuts);
      assert.equal(h.transport, transport);
      if (transport === "sse") assert.equal(most, 1, "more than one SSE stream at a cut");
      if (k > 1) assert.ok(proxy.requests.filter((r) => r.startsWith(`GET /${transport}?`)).every((r) => (r.match(/topic=/g) || []).length === k),
        "a request without every topic");
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
    // Two views per client: the delays it chose ("retry" events, its own decision) and the times
    // its attempts started. The spread and the maxDelay bound are asserted on the delays chosen:
    // the start times also carry this test process's own scheduling (CI compiles beside it; a
    // stalled event loop fires timers due over 100 ms in one clump), and a herd is a property
    // of what the clients chose, not of when node got round to it.
    const perClient = clients.map(() => []);
    const chosen = clients.map(() => []);
    clients.forEach((h, i) => {
      h.on("state", (s) => {
        if (s === "connecting") { attempts.push(Date.now() - t0); perClient[i].push(Date.now() - t0); }
      });
      h.on("retry", (r) => chosen[i].push(r.delay));
    });
    const stalls = watchStalls();
    proxy.cutAll();
    await sleep(600);
    const stalledInFirstWindow = stalls.max;
    stalls.stop();
    await sleep(5400);
    proxy.mode.down = false;
    await waitFor(() => clients.every((h) => h.state === "connected"), 10000, "50 reconnected");
    // Not synchronized: the first retries spread over the first backoff window [0, 500 ms].
    assert.ok(chosen.every((c) => c.length >= 1), "a client never scheduled a retry");
    const firsts = chosen.map((c) => c[0]).sort((a, b) => a - b);
    const buckets = new Map();
    for (const t of firsts) buckets.set(Math.floor(t / 100), (buckets.get(Math.floor(t / 100)) || 0) + 1);
    assert.ok(buckets.size >= 4, `50 first delays in only ${buckets.size} 100-ms buckets: ${firsts}`);
    // Full jitter over [0, 500 ms]: about 10 per bucket; a herd would put most in one.
    const crowd = Math.max(...buckets.values());
    assert.ok(crowd <= 20, `${crowd} of 50 first delays in one 100-ms bucket: ${firsts}`);
    assert.ok(firsts[49] < 500, `a first delay of ${firsts[49]} ms beyond minDelay`);
    // And in real time not one burst: the attempts started in more than one 100-ms bucket.
    // Unless this process stalled over most of the first window (then node fired every timer due
    // meanwhile at once, whatever the clients chose); a client that ignored its delays makes a
    // burst without a stall, and fails.
    const started = perClient.map((t) => t[0]).sort((a, b) => a - b);
    const startBuckets = new Set(started.map((t) => Math.floor(t / 100))).size;
    if (stalledInFirstWindow < 300)
      assert.ok(startBuckets >= 2, `50 first attempts in one burst: ${started}`);
    else console.log(`# this process stalled ${Math.round(stalledInFirstWindow)} ms in the first window: first attempts in ${startBuckets} 100-ms bucket(s) not judged`);
    // Per client, no delay chosen beyond maxDelay, and it kept trying (in real time the gaps also
    // hold the refusal's round trip and any stall of this process, hence the wide bound).
    for (let c = 0; c < clients.length; c++) {
      const times = perClient[c];
      assert.ok(times.length >= 3, `a client tried only ${times.length} times in 6 s`);
      assert.ok(chosen[c].every((d) => d <= maxDelay), `a delay beyond maxDelay: ${chosen[c]}`);
      for (let i = 1; i < times.length; i++)
        assert.ok(times[i] - times[i - 1] <= maxDelay + 3000, `waited ${times[i] - times[i - 1]} ms between attempts`);
    }
    console.log(`# backoff: ${attempts.length} attempts in 6 s by 50 clients; first delays chosen over ${firsts[0]}..${firsts[49]} ms, first attempts started over ${started[0]}..${started[49]} ms`);
    assert.ok(attempts.length < 50 * 20, `too many attempts: ${attempts.length}`);
  } finally {
    for (const h of clients) h.close();
    await proxy.close();
  }
});


test("sse, three topics on one stream, across a restart that loses history: one onReset per topic, then each message to its topic", { timeout: 60000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "herald-sse-restart-"));
  const herald = new HeraldProcess(dir);
  await herald.start();
  const proxy = await new Proxy({ host: "127.0.0.1", port: herald.port }).listen();
  const topics = [0, 1, 2].map((j) => unique(`restart-${j}`));
  const h = new Herald(proxy.url, { ...base, transports: ["sse"], stableAfter: 50 });
  const events = topics.map(() => []);
  topics.forEach((topic, j) => h.subscribe(topic, {
    onMessage: (m) => events[j].push(["msg", m.offset, m.data]),
    onReset: (t, info) => events[j].push(["reset", info.offset, info.reason]),
  }));
  const pub = (topic, data) => publishRetrying(herald, topic, data);
  try {
    await waitFor(() => h.state === "connected", 5000, "connected");
    for (let i = 1; i <= 5; i++) for (const [j, t] of topics.entries()) await pub(t, `${j}:${i}`);
    await waitFor(() => events.every((e) => e.length === 5), 5000, "5 each");
    await herald.stop();
    await herald.start();
    proxy.target.port = herald.port;
    // A new epoch; topic 1 gets messages before the client is back (they are its reset's gap or
    // follow it), the others after.
    await pub(topics[1], "1:new1");
    await waitFor(() => h.state === "connected" && events.every((e) => e.some((x) => x[0] === "reset")), 15000, "a reset per topic");
    for (let i = 2; i <= 4; i++) for (const [j, t] of topics.entries()) await pub(t, `${j}:new${i}`);
    await waitFor(() => events.every((e) => e[e.length - 1][0] === "msg" && e[e.length - 1][2].endsWith(":new4")), 10000, `new4 on each: ${JSON.stringify(events)}`);
    await sleep(200);
    for (const [j, e] of events.entries()) {
      // 1..5 of the old epoch, one reset, then the new messages of this topic only, in order.
      assert.deepEqual(e.slice(0, 5).map((x) => x[2]), [1, 2, 3, 4, 5].map((i) => `${j}:${i}`));
      assert.equal(e[5][0], "reset");
      const after = e.slice(6);
      assert.ok(after.every((x) => x[0] === "msg" && x[2].startsWith(`${j}:new`)), `topic ${j}: ${JSON.stringify(e)}`);
      const nums = after.map((x) => Number(x[2].split(":new")[1]));
      assert.deepEqual(nums, nums.slice().sort((a, b) => a - b));
      assert.deepEqual(nums.slice(-3), [2, 3, 4]);
      assert.deepEqual(after.map((x) => x[1]), after.map((x, i) => e[5][1] + 1 + i), `topic ${j}: offsets after the reset`);
    }
    assert.equal(h.transport, "sse");
  } finally {
    h.close();
    await proxy.close();
    await herald.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
