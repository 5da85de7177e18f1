// node receive.mjs <herald or nginx URL> <topic> <n> <transport> <cuts>
// Subscribes through a TCP proxy (proxy.mjs) in front of <URL> that cuts every connection <cuts>
// times at random moments (100..300 ms apart, each one a connected client), and prints one JSON line per event: {"ready":true}
// once connected, then {"msg":<data>} / {"reset":<reason>}, and {"done":...} with the figures.
// Exits 0 after message <n> arrived, 1 after 90 s without it. tests/integration/test_client_deploy.py.
import { Herald } from "../../clients/js/herald.js";
import { Proxy } from "./proxy.mjs";
import { WebSocket, sleep } from "./common.mjs";

const [url, topic, nArg, transport, cutsArg] = process.argv.slice(2);
const n = Number(nArg), cuts = Number(cutsArg);
const u = new URL(url);
const proxy = await new Proxy({ host: u.hostname, port: Number(u.port) }).listen();
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const h = new Herald(proxy.url, { WebSocket, storage: null, transports: [transport], minDelay: 100, maxDelay: 1000, stableAfter: 50 });
let last = 0;
h.subscribe(topic, {
  onMessage: (m) => { last = Number(m.data); out({ msg: last }); },
  onReset: (t, info) => out({ reset: info.reason }),
});
const deadline = Date.now() + 90000;
while (h.state !== "connected" && Date.now() < deadline) await sleep(20);
out({ ready: true });
let cut = 0;
while (last < n && Date.now() < deadline) {
  await sleep(100 + Math.random() * 200);
  if (cut < cuts && h.state === "connected" && proxy.conns.size) { proxy.cutAll(); cut++; }
}
await sleep(300);
out({ done: last === n, cuts: cut, connections: proxy.accepted, transport: h.transport });
h.close();
await proxy.close();
process.exit(last === n ? 0 : 1);
