// The admin page (GET /admin) in headless Chromium against the herald at $HERALD_URL, started by
// tests/integration/test_admin_page.py with admin.enabled and the API key $HERALD_KEY: login
// refused without the key, accepted with it; the figures move when this test publishes to a
// topic a WebSocket client of its own reads; the page's actions (topic lookup, test publish) work
// with the session cookie and its CSRF token. Saves a screenshot to $ADMIN_SCREENSHOT.
import assert from "node:assert/strict";
import { test } from "node:test";
import { createRequire } from "node:module";

import { withBrowser } from "./chromium.mjs";

const require = createRequire(import.meta.url);
const WebSocket = require("../integration/node_modules/ws");

const URL_ = process.env.HERALD_URL;
const KEY = process.env.HERALD_KEY;
const TOPIC = "demo:admin";
const QUIET = "demo:quiet";

async function publish(n, topic = TOPIC) {
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${URL_}/publish/${topic}`, {
      method: "POST", headers: { Authorization: `Bearer ${KEY}`, "Content-Type": "application/json" },
      body: JSON.stringify({ n: i }),
    });
    assert.equal(r.status, 200, await r.text());
  }
}

const num = async (page, id) => Number(await page.textContent(`#${id}`));

// Each step's start on stderr, so that a hang names its step.
const t0 = Date.now();
const step = (what) => process.stderr.write(`[admin_page +${Date.now() - t0} ms] ${what}\n`);

test("admin page: login, live figures, actions", { timeout: 90000 }, async () => {
  // A subscriber, so that deliveries (and their latency) happen.
  const ws = new WebSocket(`${URL_.replace("http", "ws")}/ws?topic=${TOPIC}`, { headers: { Authorization: `Bearer ${KEY}` } });
  const got = [];
  ws.on("message", (m) => got.push(String(m)));
  step("subscriber open");
  await new Promise((ok, fail) => { ws.once("open", ok); ws.once("error", fail); });
  // Two subscribers of a quiet topic: it leads by subscribers, TOPIC by messages per second.
  const quiet = [0, 1].map(() => new WebSocket(`${URL_.replace("http", "ws")}/ws?topic=${QUIET}`, { headers: { Authorization: `Bearer ${KEY}` } }));
  // Listen on both at once: the second may open first (its 101 can come from the other worker).
  step("quiet subscribers open");
  await Promise.all(quiet.map((q) => new Promise((ok, fail) => { q.once("open", ok); q.once("error", fail); })));
  try {
    step("launch chromium");
    await withBrowser(async (browser) => {
      step("new page");
      const page = await browser.newPage();
      const errors = [];
      page.on("pageerror", (e) => errors.push(String(e)));
      await page.setViewportSize({ width: 900, height: 1100 });

      // Without the key: the form, and no figures.
      step("goto /admin");
      let r = await page.goto(`${URL_}/admin`);
      assert.equal(r.status(), 200);
      assert.ok(await page.$("#key"), "the login form");
      assert.equal(await page.$('meta[name="herald-csrf"]'), null);

      // A wrong key: 401 and the form again.
      step("login with a wrong key");
      await page.fill("#key", "not-the-key-" + "x".repeat(20));
      [r] = await Promise.all([page.waitForNavigation(), page.click("#login")]);
      assert.equal(r.status(), 401);
      assert.match(await page.textContent("#note"), /Wrong API key/);
      assert.equal((await browser.cookies()).filter((c) => c.name === "herald-admin").length, 0);

      // The key: the page, with an HttpOnly, SameSite=Strict session cookie.
      step("login with the key");
      await page.fill("#key", KEY);
      [r] = await Promise.all([page.waitForNavigation({ url: /\/admin$/ }), page.click("#login")]);
      assert.equal(r.status(), 200);
      const cookie = (await browser.cookies()).find((c) => c.name === "herald-admin");
      assert.ok(cookie, "session cookie set");
      assert.equal(cookie.httpOnly, true);
      assert.equal(cookie.sameSite, "Strict");
      assert.equal(await page.evaluate(() => document.cookie.includes("herald-admin")), false);

      step("page polls");
      await page.waitForFunction(() => Number(document.body.dataset.polls || 0) >= 2, null, { timeout: 10000 });
      const pub0 = await num(page, "pub-total");
      const del0 = await num(page, "del-total");
      assert.ok((await num(page, "conn-ws")) >= 1, "our WebSocket is counted");
      assert.equal(await page.textContent("#broker"), "ready");

      // Publish; the figures must move on the page (it polls every second).
      step("publish 30");
      await publish(30);
      await page.waitForFunction(([p, d]) => Number(document.getElementById("pub-total").textContent) >= p + 30 &&
        Number(document.getElementById("del-total").textContent) >= d + 30, [pub0, del0], { timeout: 10000 });
      await page.waitForFunction(() => document.getElementById("lat-p50").textContent !== "-", null, { timeout: 5000 });
      assert.ok(got.length >= 30, `the subscriber got ${got.length}`);
      // A rate was drawn: some second saw publishes (a few seconds of them, for the chart).
      // Both rates below are per poll interval: the page's first poll after the publishes stop
      // shows them gone. So each is watched for from before the publishes (the page checks every
      // frame), not after them, where a stall of this process of a second (CI compiles beside
      // it) would start the watch too late and wait for what had come and gone.
      step("publish rate");
      const rateSeen = page.waitForFunction(() => Number(document.getElementById("pub-rate").textContent) > 0, null, { timeout: 20000 });
      for (let i = 0; i < 4; i++) { await publish(10 + 10 * i); await new Promise((ok) => setTimeout(ok, 700)); }
      await rateSeen;
      // The busiest topics: TOPIC first by rate, QUIET first by subscribers.
      step("busiest topics");
      const busySeen = page.waitForFunction(([t, q]) => document.querySelector("#busy-rate tbody tr td")?.textContent === t &&
        document.querySelector("#busy-subs tbody tr td")?.textContent === q, [TOPIC, QUIET], { timeout: 20000 });
      await publish(1, QUIET);
      for (let i = 0; i < 3; i++) { await publish(20); await new Promise((ok) => setTimeout(ok, 400)); }
      await busySeen;

      step("workers table");
      const workers = await page.$$eval("#workers tbody tr", (rows) => rows.length);
      assert.equal(workers, 2);

      // Actions through the session cookie (and the page's CSRF token).
      step("test publish action");
      await page.fill("#pub-topic", TOPIC);
      await page.fill("#pub-data", '{"from":"admin page"}');
      await page.click("#pub-form button");
      await page.waitForFunction(() => document.getElementById("pub-out").textContent.startsWith("200"), null, { timeout: 5000 });
      step("topic lookup action");
      await page.fill("#topic", TOPIC);
      await page.click("#topic-form button");
      await page.waitForFunction(() => document.getElementById("topic-out").textContent.includes("history 200"), null, { timeout: 5000 });
      assert.match(await page.textContent("#topic-out"), /admin page/);
      step("disconnect action");
      await page.fill("#dis-user", "nobody");
      await page.click("#dis-form button");
      await page.waitForFunction(() => /^200/.test(document.getElementById("dis-out").textContent), null, { timeout: 5000 });

      // A second of chart after the last publishes, then the picture for the docs.
      step("a second of chart, the screenshot");
      await page.waitForTimeout(1500);
      if (process.env.ADMIN_SCREENSHOT) await page.screenshot({ path: process.env.ADMIN_SCREENSHOT, fullPage: true });
      assert.deepEqual(errors, []);
    });
  } finally {
    ws.close();
    for (const q of quiet) q.close();
  }
});
