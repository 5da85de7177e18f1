// Headless Chromium (Debian's /usr/bin/chromium, or $CHROMIUM) driven by playwright-core, and the
// test page: the three lines, loading /client/herald.js from herald through the origin
// that serves the page (a test proxy, proxy.mjs, answers GET /test.html itself).
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { chromium } = require("../integration/node_modules/playwright-core");

// A page's options: a short backoff and timeouts, so that many cuts and fallbacks fit in a test.
export const FAST = { minDelay: 100, maxDelay: 1000, stableAfter: 50, connectTimeout: 2000, upgradeAfter: 2000 };

export const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

// `extra` is script text run before the client starts (e.g. a getToken that fetches /token).
export const PAGE = (topic, opts, extra = "") => `<!doctype html><meta charset="utf-8"><script type="module">
import { Herald } from "/client/herald.js";
window.events = [];
${extra}
const h = new Herald(location.origin, { ...${JSON.stringify(opts)}, ...(window.extraOptions || {}) });
h.subscribe(${JSON.stringify(topic)}, { onMessage: (m) => window.events.push(["msg", Number(m.data)]), onReset: (t, i) => window.events.push(["reset", i.reason]) });
window.h = h;
</script>`;

export async function withBrowser(fn) {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing (scripts/install-deps.sh installs Debian's chromium)`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), "herald-chromium-"));
  // A fresh profile each time (playwright passes it as --user-data-dir).
  const browser = await chromium.launchPersistentContext(dataDir, {
    executablePath: CHROMIUM,
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

export async function openPage(browser, proxy, topic, opts, extra = "") {
  const page = await browser.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  proxy.page = PAGE(topic, opts, extra);
  await page.goto(`${proxy.url}/test.html`);
  await page.waitForFunction(() => window.h && window.h.state === "connected", null, { timeout: 20000 });
  return { page, pageErrors };
}
