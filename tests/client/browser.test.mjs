// A page in headless Chromium loads /client/herald.js from herald (through the test's TCP proxy,
// same origin) and subscribes with the three lines; the proxy refuses upgrades and buffers
// SSE. HERALD_BIN: the binary (tests/integration/test_client_js.py). The long browser runs:
// browser_long.test.mjs and (nginx, Redis, two instances) test_client_deploy.py.
import test from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Proxy } from "./proxy.mjs";
import { HeraldProcess, unique } from "./common.mjs";
import { FAST as fast, openPage, publishRetrying as publish, withBrowser } from "./chromium.mjs";

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
