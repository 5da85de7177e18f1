// A page in headless Chromium loads /client/herald.js from herald (through the test's TCP proxy,
// same origin) and subscribes with the three lines; the proxy refuses upgrades and buffers
// SSE; publishes made offline, one of them with its acknowledgement lost, arrive once; eight
// topics on SSE and on long-polling need one request, not eight. HERALD_BIN: the binary (tests/integration/test_client_js.py). The long browser runs:
// browser_long.test.mjs and (nginx, Redis, two instances) test_client_deploy.py.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Proxy } from "./proxy.mjs";
import { HeraldProcess, WebSocket, sleep, unique, waitFor, publishRetrying as publish } from "./common.mjs";
import { FAST as fast, openPage, withBrowser } from "./chromium.mjs";

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

test("a page's offline publishes arrive once each, also when the first acknowledgement is lost", { timeout: 60000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "herald-browser-"));
  const herald = new HeraldProcess(dir, 'ws: {client_publish: ["chat:*"]}\n');
  await herald.start();
  const proxy = await new Proxy({ host: "127.0.0.1", port: herald.port }).listen();
  const topic = unique("chat:boffline");
  // An independent subscriber, straight to herald: what was delivered, and how often.
  const got = [];
  const watcher = new WebSocket(`ws://127.0.0.1:${herald.port}/ws?topic=${topic}`, ["herald.v1"]);
  watcher.on("message", (d) => { const m = JSON.parse(d.toString()); if (m.type === "message") got.push(m.data); });
  try {
    await new Promise((r, j) => { watcher.once("open", r); watcher.once("error", j); });
    await withBrowser(async (browser) => {
      const { page, pageErrors } = await openPage(browser, proxy, unique("unused"), { ...fast, transports: ["websocket"] });
      await page.evaluate(() => { window.results = []; });
      const pub = (data) => page.evaluate((d) => {
        window.h.publish(d.topic, d.data).then((r) => window.results.push([d.data, r]), (e) => window.results.push([d.data, e.code]));
      }, { topic, data });
      // The first publish reaches herald, its acknowledgement does not; then the proxy goes down.
      proxy.mode.swallow = true;
      await pub("p0");
      await waitFor(() => got.length === 1, 5000, "p0 at the watcher");
      proxy.mode.down = true;
      proxy.cutAll();
      await page.waitForFunction(() => window.h.state !== "connected", null, { timeout: 5000 });
      for (const d of ["p1", "p2", "p3", "p4"]) await pub(d);
      await sleep(300);
      proxy.mode.swallow = false;
      proxy.mode.down = false;
      await page.waitForFunction(() => window.results.length === 5, null, { timeout: 15000 });
      await sleep(300);
      assert.deepEqual(got, ["p0", "p1", "p2", "p3", "p4"], "lost or doubled at the subscriber");
      const results = Object.fromEntries(await page.evaluate(() => window.results));
      assert.equal(results.p0.duplicate, true, "the retry of p0 was not answered as a duplicate");
      assert.deepEqual(["p0", "p1", "p2", "p3", "p4"].map((d) => results[d].offset), [1, 2, 3, 4, 5]);
      assert.deepEqual(pageErrors, []);
    });
  } finally {
    watcher.close();
    await proxy.close();
    await herald.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

// A browser opens at most six HTTP/1.1 connections per host: with a request per topic, a page of
// eight topics on SSE or long-polling would leave two waiting for a free connection.
test("a page with eight topics on SSE, then on long-polling, gets each topic's messages over one request", { timeout: 60000 }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "herald-browser-"));
  const herald = new HeraldProcess(dir);
  await herald.start();
  const proxy = await new Proxy({ host: "127.0.0.1", port: herald.port }).listen();
  try {
    await withBrowser(async (browser) => {
      for (const transport of ["sse", "poll"]) {
        const topics = Array.from({ length: 8 }, (_, i) => unique(`eight-${transport}-${i}`));
        proxy.page = `<!doctype html><meta charset="utf-8"><script type="module">
import { Herald } from "/client/herald.js";
window.got = {};
const h = new Herald(location.origin, ${JSON.stringify({ ...fast, transports: [transport] })});
for (const t of ${JSON.stringify(topics)}) h.subscribe(t, { onMessage: (m) => { (window.got[t] = window.got[t] || []).push(m.data); } });
window.h = h;
</script>`;
        const page = await browser.newPage();
        await page.goto(`${proxy.url}/test.html`);
        await page.waitForFunction(() => window.h && window.h.state === "connected", null, { timeout: 20000 });
        await sleep(transport === "poll" ? 1200 : 300);
        for (const t of topics) await publish(herald, t, `to ${t}`);
        await page.waitForFunction((n) => Object.keys(window.got).length === n, topics.length, { timeout: 10000 })
          .catch(async () => assert.fail(`${transport}: only ${JSON.stringify(await page.evaluate(() => window.got))}`));
        const got = await page.evaluate(() => window.got);
        for (const t of topics) assert.deepEqual(got[t], [`to ${t}`], transport);
        const opened = proxy.requests.filter((r) => r.startsWith(`GET /${transport}?`));
        assert.ok(opened.every((r) => (r.match(/topic=/g) || []).length === 8), `${transport}: ${opened.join(" | ")}`);
        await page.close();
      }
    });
  } finally {
    await proxy.close();
    await herald.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
