// node publisher.mjs <herald URL>
// The client in Node, WebSocket only, publishing what stdin asks: one line `<topic> <data>` per
// publish; prints one JSON line per event: {"ready":true} once connected, then per publish
// {"data":..., "ok":{topic, epoch, offset, duplicate}} or {"data":..., "error":<code>}.
// Ends when stdin does. tests/integration/test_client_deploy.py.
import readline from "node:readline";
import { Herald } from "../../clients/js/herald.js";
import { WebSocket, waitFor } from "./common.mjs";

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const h = new Herald(process.argv[2], { WebSocket, storage: null, transports: ["websocket"], minDelay: 300, maxDelay: 1000 });
await waitFor(() => h.state === "connected", 10000, "connected");
out({ ready: true });
const pending = [];
for await (const line of readline.createInterface({ input: process.stdin })) {
  const i = line.indexOf(" ");
  if (i < 0) continue;
  const data = line.slice(i + 1);
  pending.push(h.publish(line.slice(0, i), data).then((ok) => out({ data, ok }), (e) => out({ data, error: e.code })));
}
await Promise.all(pending);
h.close();
