import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
export const WebSocket = require("../integration/node_modules/ws");
export const HERALD = process.env.HERALD_URL;
export const HERALD_PORT = HERALD ? Number(new URL(HERALD).port) : 0;
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
export function unique(p) { return `${p}-${process.pid}-${Math.random().toString(36).slice(2, 8)}`; }
export async function publish(topic, data) {
  const r = await fetch(`${HERALD}/publish/${encodeURIComponent(topic)}`, { method: "POST", body: String(data) });
  if (r.status !== 200) throw new Error(`publish ${r.status} ${await r.text()}`);
  return r.json();
}
export async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (pred()) return; await sleep(20); }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}
