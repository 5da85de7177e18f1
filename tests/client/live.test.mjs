// The client against the real herald binary (HERALD_URL, started by
// tests/integration/test_client_js.py) through a TCP proxy that cuts, refuses upgrades, buffers
// and loses acknowledgements.
import test from "node:test";
import assert from "node:assert/strict";
import { Herald } from "../../clients/js/herald.js";
import { Proxy } from "./proxy.mjs";
import { HERALD, HERALD_PORT, WebSocket, publish, sleep, unique, waitFor } from "./common.mjs";

// connectTimeout 5 s: a connection that shows nothing for that long is given up and made again,
// which a test counting requests would see; a loaded machine can stall this process 1-2 s. The
// fallback test, whose subject it is, sets its own short one.
const base = { WebSocket, storage: null, minDelay: 100, maxDelay: 1000, connectTimeout: 5000 };

test("upgrades refused -> SSE, SSE buffered -> poll, both restored -> back to WebSocket", { timeout: 60000 }, async () => {
  const proxy = await new Proxy({ host: "127.0.0.1", port: HERALD_PORT }).listen();
  proxy.mode.refuseUpgrades = true;
  const topic = unique("fallback");
  const seen = [];
  const transports = [];
  const h = new Herald(proxy.url, { ...base, upgradeAfter: 1500, connectTimeout: 1500 });
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

for (const transport of ["websocket", "sse", "poll"]) {
  test(`${transport}: binary as ArrayBuffer, JSON, two topics on one client, unsubscribe`, { timeout: 30000 }, async () => {
    const h = new Herald(HERALD, { ...base, transports: [transport] });
    const a = unique("kinds-a"), b = unique("kinds-b");
    const got = { a: [], b: [] };
    const subA = h.subscribe(a, { onMessage: (m) => got.a.push(m) });
    h.subscribe(b, { onMessage: (m) => got.b.push(m) });
    try {
      // Both topics subscribed: a WebSocket is "connected" at its first frame, the ok of a's
      // subscribe, and b's ok may come later; SSE and poll hold both positions before they ask.
      await waitFor(() => h.state === "connected" && h.pos.has(a) && h.pos.has(b), 10000, "a and b subscribed");
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

for (const transport of ["sse", "poll"]) {
  test(`${transport}: several topics share one request; adding a topic reopens it with every position`, { timeout: 30000 }, async () => {
    const proxy = await new Proxy({ host: "127.0.0.1", port: HERALD_PORT }).listen();
    const a = unique("one-a"), b = unique("one-b"), c = unique("one-c");
    const got = { [a]: [], [b]: [], [c]: [] };
    const h = new Herald(proxy.url, { ...base, transports: [transport] });
    const on = (t) => ({ onMessage: (m) => got[t].push([m.offset, m.data]), onReset: (t2, i) => got[t].push(["reset", i.reason]) });
    // SSE: open streams; poll: requests not answered yet (a kept-alive connection may idle).
    const held = () => [...proxy.conns].filter((p) => p.request && p.request.startsWith(`GET /${transport}`)
      && (transport === "sse" || !p.answered)).length;
    const requests = () => proxy.requests.filter((r) => r.startsWith(`GET /${transport}?`)).map(decodeURIComponent);
    const want = (t, n) => Array.from({ length: n }, (_, i) => [i + 1, `${t}#${i + 1}`]);
    const resume = transport === "sse" ? "last_event_id" : "since";
    try {
      h.subscribe(a, on(a));
      await waitFor(() => h.state === "connected", 5000, "connected");
      for (let i = 1; i <= 3; i++) await publish(a, `${a}#${i}`);
      await waitFor(() => got[a].length === 3, 5000, "a 1..3");
      const before = requests().length;
      if (transport === "sse") assert.equal(before, 1);
      // Two topics added in one turn: one new request naming all three, resuming a from 3; what
      // a gets meanwhile is neither lost nor doubled.
      h.subscribe(b, on(b));
      h.subscribe(c, on(c));
      const racing = (async () => { for (let i = 4; i <= 10; i++) { await publish(a, `${a}#${i}`); await sleep(5); } })();
      // (A poll for a alone may still leave before: its answer had just come.)
      const first = () => requests().findIndex((r) => r.includes(b));
      await waitFor(() => first() >= 0, 5000, "the new request");
      await racing;
      const after = requests().slice(first());
      assert.match(after[0], new RegExp(`topic=${a}&topic=${b}&topic=${c}&${resume}=[^:]+:3,[^:]+:0,[^:]+:0 `), after[0]);
      await sleep(transport === "poll" ? 1200 : 300); // every topic is subscribed
      for (let i = 1; i <= 5; i++) {
        await publish(c, `${c}#${i}`);
        await publish(b, `${b}#${i}`);
        if (i <= 2) await publish(a, `${a}#${10 + i}`);
      }
      await waitFor(() => got[a].length === 12 && got[b].length === 5 && got[c].length === 5, 5000, "every message");
      await sleep(200);
      assert.deepEqual(got[a], want(a, 12));
      assert.deepEqual(got[b], want(b, 5));
      assert.deepEqual(got[c], want(c, 5));
      assert.ok(held() <= 1, `${held()} ${transport} requests open`);
      for (const r of requests().slice(first()))
        assert.match(r, new RegExp(`topic=${a}&topic=${b}&topic=${c}&`), `a request without every topic: ${r}`);
      if (transport === "sse") assert.equal(requests().length, 2, `streams opened: ${requests().join(" | ")}`);
      // A cut: one request again, resuming all three.
      proxy.cutAll();
      await publish(b, `${b}#6`);
      await waitFor(() => got[b].length === 6 && h.state === "connected", 5000, "b 6 after the cut");
      assert.deepEqual(got[b], want(b, 6));
      assert.ok(held() <= 1);
      assert.equal(h.state, "connected");
    } finally {
      h.close();
      await proxy.close();
    }
  });
}
