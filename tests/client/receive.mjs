// node receive.mjs <herald or nginx URL> <topic> <n> <client> <cuts>
// Subscribes through a TCP proxy (proxy.mjs) in front of <URL> that cuts every connection <cuts>
// times at random moments (100..300 ms apart, each one a connected client), and prints one JSON
// line per event: {"ready":true} once connected, then {"msg":<data>} / {"reset":<reason>}, and
// {"done":...} with the figures. <client>: `websocket`, `sse` or `poll` (the client in Node,
// that transport only), `chromium` (a page in headless Chromium with the three lines,
// every transport, loading /client/herald.js through the proxy) or `chromium:<transport>` (that
// page on that transport only). Exits 0 after message <n>
// arrived, 1 after 100 s without it. tests/integration/test_client_deploy.py.
import { Herald } from "../../clients/js/herald.js";
import { Proxy } from "./proxy.mjs";
import { WebSocket, sleep } from "./common.mjs";
import { withBrowser, openPage } from "./chromium.mjs";

const [url, topic, nArg, kind, cutsArg] = process.argv.slice(2);
const n = Number(nArg), cuts = Number(cutsArg);
const u = new URL(url);
const proxy = await new Proxy({ host: u.hostname, port: Number(u.port) }).listen();
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const fast = { minDelay: 100, maxDelay: 1000, stableAfter: 50 };
let last = 0;
const take = (events) => {
  for (const [k, v] of events) {
    if (k === "msg") last = v;
    out(k === "msg" ? { msg: v } : { reset: v });
  }
};

// Both kinds of client, seen the same way: state(), transport(), drain() -> new events.
async function run(client) {
  const deadline = Date.now() + 100000;
  while ((await client.state()) !== "connected" && Date.now() < deadline) await sleep(20);
  out({ ready: true });
  let cut = 0;
  while (last < n && Date.now() < deadline) {
    await sleep(100 + Math.random() * 200);
    take(await client.drain());
    if (cut < cuts && (await client.state()) === "connected" && proxy.conns.size) { proxy.cutAll(); cut++; }
  }
  await sleep(300);
  take(await client.drain());
  return { done: last === n, cuts: cut, connections: proxy.accepted, transport: await client.transport() };
}

if (kind.startsWith("chromium")) {
  const only = kind.split(":")[1];
  await withBrowser(async (browser) => {
    const { page, pageErrors } = await openPage(browser, proxy, topic,
      { ...fast, connectTimeout: 3000, ...(only ? { transports: [only] } : {}) });
    const done = await run({
      state: () => page.evaluate(() => window.h.state),
      transport: () => page.evaluate(() => window.h.transport),
      drain: () => page.evaluate(() => window.events.splice(0)),
    });
    if (pageErrors.length) out({ pageErrors });
    out(done);
  });
} else {
  const h = new Herald(proxy.url, { WebSocket, storage: null, transports: [kind], ...fast });
  const events = [];
  h.subscribe(topic, {
    onMessage: (m) => events.push(["msg", Number(m.data)]),
    onReset: (t, info) => events.push(["reset", info.reason]),
  });
  out(await run({ state: () => h.state, transport: () => h.transport, drain: () => events.splice(0) }));
  h.close();
}
await proxy.close();
// exit once stdout has written everything (process.exit() drops writes a slow pipe queued)
process.stdout.write("", () => process.exit(last === n ? 0 : 1));
