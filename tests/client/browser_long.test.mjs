// The long runs in headless Chromium (a scenario test in tests/integration/test_client_js.py): a
// page with the three lines receives 2,000 messages through 20 cuts and a restart of an
// in-memory herald (history lost: one onReset); tokens that expire every 5 s, renewed by a
// getToken that fetches /token, on each transport; a getToken that fails for a while.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Proxy } from "./proxy.mjs";
import { HeraldProcess, sleep, unique, publishRetrying as publish } from "./common.mjs";
import { mint, publishEvery, withJwtHerald } from "./jwt.mjs";
import { FAST as fast, openPage, withBrowser } from "./chromium.mjs";

// Each of 1..n once, in order; a jump only right after an onReset.
function check(events, n) {
  let last = 0, resets = 0, afterReset = false;
  for (const [kind, v] of events) {
    if (kind === "reset") { resets++; afterReset = true; continue; }
    assert.ok(v > last, `message ${v} after ${last} (duplicate or out of order)`);
    assert.ok(v === last + 1 || afterReset, `message ${v} after ${last} without an onReset`);
    last = v; afterReset = false;
  }
  assert.equal(last, n);
  return resets;
}

test("a page receives 1..2,000 once, in order, through 20 cuts and a restart", { timeout: 90000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "herald-browser-"));
  const herald = new HeraldProcess(dir);
  await herald.start();
  const proxy = await new Proxy({ host: "127.0.0.1", port: herald.port }).listen();
  try {
    await withBrowser(async (browser) => {
      const topic = unique("browser-eo");
      const { page, pageErrors } = await openPage(browser, proxy, topic, fast);
      assert.equal(await page.evaluate(() => window.h.transport), "websocket");
      const n = 2000, cutAt = new Set();
      while (cutAt.size < 20) cutAt.add(1 + Math.floor(Math.random() * (n - 1)));
      let due = 0, made = 0;
      for (let i = 1; i <= n; i++) {
        await publish(herald, topic, i);
        if (cutAt.has(i)) due++;
        // A cut waits for a connection to cut (the client may be between two).
        if (due && proxy.conns.size) { proxy.cutAll(); due--; made++; }
        await sleep(4);
        if (i === 1000) {
          await herald.stop();
          await herald.start();
          proxy.target.port = herald.port;
        }
      }
      await page.waitForFunction((n) => window.events.some((e) => e[0] === "msg" && e[1] === n), n, { timeout: 30000 });
      await sleep(300);
      const events = await page.evaluate(() => window.events);
      const resets = check(events, n);
      // The restart lost the in-memory history: one onReset says so.
      assert.ok(resets >= 1, "no onReset after the restart");
      assert.ok(made >= 15, `only ${made} of 20 cuts found a connection`);
      console.log(`# browser: ${n} messages, ${made} cuts + 1 restart, ${proxy.accepted} connections, ${resets} onReset, ${events.length - resets} delivered`);
      assert.deepEqual(pageErrors, []);
    });
  } finally {
    await proxy.close();
    await herald.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// The page's getToken: GET /token from the page's origin (the proxy answers it with `token()`).
const TOKEN_PAGE = `window.extraOptions = { getToken: async () => {
  window.tokenCalls = (window.tokenCalls || 0) + 1;
  const r = await fetch("/token", { cache: "no-store" });
  if (!r.ok) throw new Error("token service " + r.status);
  return r.text();
} };
window.states = [];`;

async function tokenPage(browser, h, topic, transport, token) {
  const proxy = await new Proxy({ host: "127.0.0.1", port: h.port }).listen();
  proxy.routes = { "/token": token };
  const { page, pageErrors } = await openPage(browser, proxy, topic, { ...fast, transports: [transport] }, TOKEN_PAGE);
  await page.evaluate(() => window.h.on("state", (s) => window.states.push(s)));
  return { proxy, page, pageErrors, transport, topic };
}

test("a page whose tokens expire every 5 s: getToken renews them, nothing lost, the stream never stops", { timeout: 90000 }, async () => {
  await withJwtHerald(async (h) => {
    await withBrowser(async (browser) => {
      const runs = [];
      try {
        for (const t of ["websocket", "sse", "poll"])
          runs.push(await tokenPage(browser, h, unique(`priv:btok-${t}`), t, () => ({ body: mint(5) })));
        await sleep(300);
        const n = 240; // 12 s: two expiries and more
        await publishEvery(h, runs.map((r) => r.topic), 50, n);
        for (const r of runs) {
          await r.page.waitForFunction((n) => window.events.filter((e) => e[0] === "msg").length >= n, n, { timeout: 15000 });
          await sleep(200);
          const { events, calls, states, transport } = await r.page.evaluate(() => ({
            events: window.events, calls: window.tokenCalls, states: window.states, transport: window.h.transport }));
          assert.deepEqual(events, Array.from({ length: n }, (_, i) => ["msg", i + 1]), `${r.transport}: lost, doubled or reset`);
          assert.ok(calls >= 3, `${r.transport}: getToken called ${calls} times`);
          assert.equal(transport, r.transport);
          // WebSocket refreshes in place, SSE opens its next stream before exp: never disconnected.
          if (r.transport !== "poll") assert.deepEqual(states, [], `${r.transport} left connected: ${states}`);
          assert.deepEqual(r.pageErrors, []);
          console.log(`# browser ${r.transport}: ${n} messages over ${calls} tokens, states after connecting: ${states.join(" ") || "none"}`);
        }
      } finally {
        for (const r of runs) await r.proxy.close();
      }
    });
  });
});

test("a page whose getToken fails for a while: backoff, then recovery without loss", { timeout: 90000 }, async () => {
  await withJwtHerald(async (h) => {
    await withBrowser(async (browser) => {
      // Calls 2 to 4 fail: the renewal before exp, then the attempts after the server closed at exp.
      let calls = 0;
      const failing = () => (++calls >= 2 && calls <= 4 ? { status: 503, body: "down" } : { body: mint(3) });
      const r = await tokenPage(browser, h, unique("priv:btokfail"), "websocket", failing);
      try {
        await r.page.evaluate(() => { window.retries = []; window.h.on("retry", (x) => window.retries.push(x.delay)); });
        const n = 120;
        await publishEvery(h, [r.topic], 50, n);
        await r.page.waitForFunction((n) => window.events.filter((e) => e[0] === "msg").length >= n, n, { timeout: 20000 });
        await sleep(200);
        const { events, states, retries } = await r.page.evaluate(() => ({ events: window.events, states: window.states, retries: window.retries }));
        assert.deepEqual(events, Array.from({ length: n }, (_, i) => ["msg", i + 1]));
        assert.ok(calls >= 5, `getToken called ${calls} times`);
        assert.ok(states.includes("disconnected"), "the token never expired: the test tested nothing");
        assert.ok(retries.length >= 2, `no backoff: ${retries}`);
        assert.equal(states[states.length - 1], "connected");
        console.log(`# browser, failing getToken: ${calls} calls, backoff delays ${retries.join(",")} ms, states ${states.join(" ")}`);
      } finally {
        await r.proxy.close();
      }
    });
  });
});
