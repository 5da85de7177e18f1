// A page in headless Chromium loads /client/herald.js from herald (through the test's TCP proxy,
// same origin) and subscribes with the three lines; the proxy cuts, refuses upgrades and
// buffers, and herald is restarted once. HERALD_BIN: the binary (tests/integration/test_client_js.py).
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";
import { Proxy } from "./proxy.mjs";
import { HeraldProcess, sleep, unique, waitFor } from "./common.mjs";

const require = createRequire(import.meta.url);
const { chromium } = require("../integration/node_modules/playwright-core");

async function publish(h, topic, data) {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(`${h.url}/publish/${topic}`, { method: "POST", body: String(data) });
      if (r.status === 200) return;
    } catch { /* restarting */ }
    await sleep(50);
  }
  throw new Error("publish kept failing");
}

// The page: the three lines (with a short backoff, so that 20 cuts fit in the test).
const PAGE = (topic, opts) => `<!doctype html><meta charset="utf-8"><script type="module">
import { Herald } from "/client/herald.js";
const h = new Herald(location.origin, ${JSON.stringify(opts)});
h.subscribe(${JSON.stringify(topic)}, { onMessage: (m) => window.events.push(["msg", Number(m.data)]), onReset: (t, i) => window.events.push(["reset", i.reason]) });
window.events = []; window.h = h;
</script>`;

async function withBrowser(fn) {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "herald-chromium-"));
  // A fresh profile each time (playwright passes it as --user-data-dir).
  const browser = await chromium.launchPersistentContext(dataDir, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    timeout: 30000,
  });
  try {
    return await fn(browser);
  } finally {
    await browser.close();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

async function openPage(browser, proxy, topic, opts) {
  const page = await browser.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  proxy.page = PAGE(topic, opts);
  await page.goto(`${proxy.url}/test.html`);
  await page.waitForFunction(() => window.h && window.h.state === "connected", null, { timeout: 10000 });
  return { page, pageErrors };
}

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

const fast = { minDelay: 100, maxDelay: 1000, stableAfter: 50, connectTimeout: 2000, upgradeAfter: 2000 };

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

test("a page falls back to SSE when upgrades are refused, to poll when SSE is buffered, and back", { timeout: 90000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "herald-browser-"));
  const herald = new HeraldProcess(dir);
  await herald.start();
  const proxy = await new Proxy({ host: "127.0.0.1", port: herald.port }).listen();
  proxy.mode.refuseUpgrades = true;
  try {
    await withBrowser(async (browser) => {
      const topic = unique("browser-fallback");
      const { page } = await openPage(browser, proxy, topic, fast);
      let n = 0;
      const pub = async (transport) => {
        await page.waitForFunction((t) => window.h.transport === t && window.h.state === "connected", transport, { timeout: 20000 });
        await publish(herald, topic, ++n);
        await page.waitForFunction((n) => window.events.some((e) => e[1] === n), n, { timeout: 10000 });
      };
      await pub("sse");
      proxy.mode.buffer = true;
      proxy.cutAll();
      await pub("poll");
      proxy.mode.refuseUpgrades = false;
      proxy.mode.buffer = false;
      await pub("websocket");
      const events = await page.evaluate(() => window.events);
      assert.deepEqual(events, [["msg", 1], ["msg", 2], ["msg", 3]]);
      assert.equal(await page.evaluate(() => sessionStorage.getItem("herald:transport:" + location.origin)), "websocket");
    });
  } finally {
    await proxy.close();
    await herald.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
