// The client's state machine with fake transports and a fake clock (no network).
import test from "node:test";
import assert from "node:assert/strict";
import { Herald, backoffDelay, tokenExpiry } from "../../clients/js/herald.js";

class Clock {
  constructor() { this.t = 0; this.q = []; this.seq = 0; }
  setTimeout(f, ms) { const h = { at: this.t + Math.max(0, ms), f, id: ++this.seq }; this.q.push(h); return h; }
  clearTimeout(h) { this.q = this.q.filter((x) => x !== h); }
  now() { return this.t; }
  // Runs timers due within `ms`, in time order, letting promises settle between them.
  async advance(ms) {
    const end = this.t + ms;
    for (;;) {
      await new Promise((r) => setImmediate(r));
      this.q.sort((a, b) => a.at - b.at || a.id - b.id);
      const h = this.q[0];
      if (!h || h.at > end) break;
      this.q.shift();
      this.t = h.at;
      h.f();
    }
    this.t = end;
    await new Promise((r) => setImmediate(r));
  }
}

// Fake transports: each instance registers itself; the test drives it through the client's tp* API.
function fakes(log) {
  const make = (name) => class {
    constructor(c) { this.c = c; this.name = name; this.subs = []; log.push(this); }
    start() {}
    subscribe(t) { this.subs.push(t); }
    unsubscribe() {}
    publish(item) { this.sent = (this.sent || []).concat(item); return true; }
    refresh(tok) { this.refreshed = tok; }
    stop() { this.stopped = true; }
  };
  return { websocket: make("websocket"), sse: make("sse"), poll: make("poll") };
}

function client(opts = {}) {
  const clock = new Clock();
  const log = [];
  const h = new Herald("http://x", { timers: clock, now: () => clock.now(), storage: null, transportFactories: fakes(log), ...opts });
  return { h, clock, log, last: () => log[log.length - 1] };
}

test("backoffDelay: full jitter below min(maxDelay, minDelay * 2^n)", () => {
  for (let n = 0; n < 12; n++) {
    const cap = Math.min(20000, 500 * 2 ** n);
    assert.equal(backoffDelay(n, 500, 20000, () => 0), 0);
    assert.ok(backoffDelay(n, 500, 20000, () => 0.999999) < cap + 1);
    assert.ok(backoffDelay(n, 500, 20000, () => 0.999999) >= cap - 1);
  }
});

test("tokenExpiry reads exp from a JWT", () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  assert.equal(tokenExpiry(`${b64({ alg: "HS256" })}.${b64({ sub: "a", exp: 1700000000 })}.sig`), 1700000000000);
  assert.equal(tokenExpiry("not a jwt"), null);
});

test("connects, confirms, reconnects with growing backoff, resets after a stable connection", async () => {
  const { h, clock, log, last } = client({ random: () => 0.999, connectTimeout: 1e9 });
  const states = [];
  h.on("state", (s) => states.push(s));
  await clock.advance(0);
  assert.equal(log.length, 1);
  h.tpConfirm(last());
  assert.equal(h.state, "connected");
  assert.equal(h.transport, "websocket");
  const delays = [];
  h.on("retry", (r) => delays.push(r.delay));
  for (let i = 0; i < 8; i++) {
    h.tpEnd(last(), { kind: "network" });
    await clock.advance(30000);
    h.tpConfirm(last());
    await clock.advance(10); // not yet stable
  }
  assert.deepEqual(delays, [499, 999, 1998, 3996, 7992, 15984, 19980, 19980]);
  await clock.advance(10000); // stable: the next delay starts again from minDelay
  h.tpEnd(last(), { kind: "network" });
  assert.equal(delays[delays.length - 1], 499);
  assert.deepEqual(states.slice(0, 4), ["connecting", "connected", "disconnected", "connecting"]);
  h.close();
  assert.equal(h.state, "closed");
});

test("fallback: a refused WebSocket goes to SSE at once, a buffered SSE to poll; remembered; retried upward", async () => {
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v) };
  const { h, clock, log, last } = client({ storage, upgradeAfter: 5000 });
  const seen = [];
  h.on("transport", (t) => seen.push(t));
  h.subscribe("a");
  await clock.advance(0);
  h.tpEnd(last(), { kind: "refused" });
  await clock.advance(0);
  assert.equal(last().name, "sse");
  await clock.advance(8000); // no bytes within connectTimeout: buffered
  assert.equal(last().name, "poll");
  h.tpConfirm(last());
  assert.deepEqual(seen, ["poll"]);
  assert.equal(store.get("herald:transport:http://x"), "poll");
  // A second client of this tab starts where the first ended.
  const second = client({ storage });
  await second.clock.advance(0);
  assert.equal(second.last().name, "poll");
  second.h.close();
  // Later the preferred one is tried again.
  await clock.advance(5000);
  assert.equal(last().name, "websocket");
  h.tpConfirm(last());
  assert.equal(h.transport, "websocket");
  assert.equal(store.get("herald:transport:http://x"), "websocket");
  assert.equal(log.length, 4);
  h.close();
});

test("a server that is away does not demote the transport", async () => {
  const { h, clock, last } = client();
  h.subscribe("a");
  await clock.advance(0);
  h.tpEnd(last(), { kind: "refused" }); // WebSocket fails ...
  await clock.advance(0);
  assert.equal(last().name, "sse");
  h.tpEnd(last(), { kind: "network", unreachable: true }); // ... and so does every HTTP request
  await clock.advance(30000);
  assert.equal(last().name, "websocket");
  h.close();
});

test("exactly once: overlap dropped, unannounced gap and recovered:false call onReset first", async () => {
  const { h, clock, last } = client();
  const ev = [];
  h.subscribe("t", { onMessage: (m) => ev.push(["m", m.offset]), onReset: (t, i) => ev.push(["r", i.offset, i.reason]) });
  await clock.advance(0);
  const tp = last();
  h.tpConfirm(tp);
  h.tpSubscribed(tp, "t", "e1", 0, undefined);
  for (const o of [1, 2, 3, 2, 3, 4]) h.tpMessage(tp, "t", "e1", o, String(o));
  h.tpMessage(tp, "t", "e1", 7, "7"); // a hole nobody announced
  h.tpEnd(tp, { kind: "network" });
  await clock.advance(30000);
  const tp2 = last();
  h.tpConfirm(tp2);
  h.tpSubscribed(tp2, "t", "e2", 40, false); // history lost
  h.tpMessage(tp2, "t", "e2", 41, "41");
  h.tpMessage(tp, "t", "e1", 8, "8"); // the old transport's late message is ignored
  h.tpReset(tp2, "t", { epoch: "e3", offset: 5, reason: "epoch changed" });
  h.tpMessage(tp2, "t", "e3", 6, "6");
  assert.deepEqual(ev, [["m", 1], ["m", 2], ["m", 3], ["m", 4], ["r", 6, "gap"], ["m", 7],
    ["r", 40, "not recovered"], ["m", 41], ["r", 5, "epoch changed"], ["m", 6]]);
  h.close();
});

test("close codes: 1001 reconnects within minDelay without backoff growth; 4002 stops and surfaces", async () => {
  const { h, clock, log, last } = client({ random: () => 0.5 });
  const errors = [];
  h.on("error", (e) => errors.push(e.code));
  await clock.advance(0);
  h.tpConfirm(last());
  h.tpEnd(last(), { kind: "going_away" });
  await clock.advance(250);
  assert.equal(log.length, 2);
  h.tpConfirm(last());
  h.tpEnd(last(), { kind: "fatal", error: Object.assign(new Error("x"), { code: "disconnected" }) });
  assert.equal(h.state, "closed");
  assert.deepEqual(errors, ["disconnected"]);
  await clock.advance(60000);
  assert.equal(log.length, 2);
});

test("a drain's reconnect_after_ms hint is the delay before reconnecting", async () => {
  const { h, clock, log, last } = client({ random: () => 0 });
  await clock.advance(0);
  h.tpConfirm(last());
  h.tpEnd(last(), { kind: "going_away", reconnectAfter: 2500 });
  await clock.advance(2499);
  assert.equal(log.length, 1);
  await clock.advance(1);
  assert.equal(log.length, 2);
  h.close();
});

test("Retry-After is honoured", async () => {
  const { h, clock, log, last } = client({ random: () => 0 });
  await clock.advance(0);
  h.tpEnd(last(), { kind: "retry", retryAfter: 3000 });
  await clock.advance(2999);
  assert.equal(log.length, 1);
  await clock.advance(1);
  assert.equal(log.length, 2);
  h.close();
});

test("tokens: fetched before connect, refreshed before exp over WebSocket, 401 asks once more then backs off", async () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  let n = 0;
  let clockRef;
  const getToken = async () => { n++; return `${b64({ alg: "HS256" })}.${b64({ exp: Math.floor(clockRef.now() / 1000) + 5 })}.s${n}`; };
  const { h, clock, log, last } = client({ getToken, random: () => 0.999 });
  clockRef = clock;
  await clock.advance(0);
  assert.equal(n, 1);
  assert.ok(h.token.endsWith(".s1"));
  h.tpConfirm(last());
  await clock.advance(4000); // a fifth of 5 s before exp
  assert.equal(n, 2);
  assert.ok(last().refreshed.endsWith(".s2"));
  h.tpEnd(last(), { kind: "auth" });
  await clock.advance(0);
  assert.equal(n, 3); // at once
  assert.equal(log.length, 2);
  h.tpEnd(last(), { kind: "auth" });
  await clock.advance(0);
  assert.equal(log.length, 2); // now a backoff
  await clock.advance(500);
  assert.equal(log.length, 3);
  h.close();
});

test("a getToken that fails backs off, then recovers", async () => {
  let fail = 2;
  const { h, clock, log } = client({ getToken: async () => { if (fail-- > 0) throw new Error("down"); return "opaque"; }, random: () => 0.999 });
  const errors = [];
  h.on("error", (e) => errors.push(e.code));
  await clock.advance(0);
  assert.equal(log.length, 0);
  await clock.advance(500);
  assert.equal(log.length, 0);
  await clock.advance(1000);
  assert.equal(log.length, 1);
  assert.deepEqual(errors, ["token", "token"]);
  h.close();
});

test("outbox: bounded, sent on connect in order, resolved by the acknowledgement", async () => {
  const { h, clock, last } = client({ maxOutbox: 3 });
  const p = [h.publish("c", 1), h.publish("c", 2), h.publish("c", 3)];
  await assert.rejects(h.publish("c", 4), (e) => e.code === "outbox_full");
  await clock.advance(0);
  const tp = last();
  h.flushOutbox(tp);
  assert.deepEqual(tp.sent.map((i) => i.data), [1, 2, 3]);
  const keys = new Set(tp.sent.map((i) => i.key));
  assert.equal(keys.size, 3);
  tp.sent.forEach((item, i) => h.tpPublished(tp, item, { topic: "c", epoch: "e", offset: i + 1 }));
  assert.deepEqual((await Promise.all(p)).map((r) => r.offset), [1, 2, 3]);
  h.close();
});

test("a publish answered `unknown` (or `unavailable`) is sent again with the same key after a backoff", async () => {
  const { h, clock, last } = client({ minDelay: 500, maxDelay: 4000, random: () => 0.5 });
  await clock.advance(0);
  const tp = last();
  tp.open = true;
  h.tpConfirm(tp);
  const p = h.publish("c", "once");
  assert.equal(tp.sent.length, 1);
  const item = tp.sent[0];
  h.tpPublishFailed(tp, item, { code: "unknown" });
  await clock.advance(100);
  assert.equal(tp.sent.length, 1, "retried without a backoff");
  await clock.advance(2000);
  assert.equal(tp.sent.length, 2, "not retried");
  assert.equal(tp.sent[1], item);
  assert.equal(tp.sent[1].key, item.key);
  h.tpPublishFailed(tp, item, { code: "unavailable" });
  await clock.advance(4000);
  assert.equal(tp.sent.length, 3);
  h.tpPublished(tp, item, { topic: "c", epoch: "e", offset: 7, duplicate: true });
  assert.deepEqual(await p, { topic: "c", epoch: "e", offset: 7, duplicate: true });
  await clock.advance(30000);
  assert.equal(tp.sent.length, 3, "sent after its acknowledgement");
  // Any other error rejects.
  const q = h.publish("c", "no");
  h.tpPublishFailed(tp, tp.sent[3], { code: "forbidden" });
  await assert.rejects(q, (e) => e.code === "forbidden");
  h.close();
});
