import { createRequire } from "node:module";
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
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
// POST /publish to a herald `h` ({url}) that may be restarting: retried for up to 10 s.
export async function publishRetrying(h, topic, data) {
  for (let i = 0; i < 200; i++) {
    try {
      const r = await fetch(`${h.url}/publish/${topic}`, { method: "POST", body: String(data) });
      if (r.status === 200) return;
    } catch { /* restarting */ }
    await sleep(50);
  }
  throw new Error("publish kept failing");
}

// This process's own stalls: a timer every 10 ms, and the longest it came late. A loaded machine
// (CI compiles beside the tests) can stop node for a while; the timers due meanwhile then fire in
// one clump, which a test of spreads in real time must not take for the client's doing.
export function watchStalls() {
  const w = { max: 0, stop() { clearInterval(timer); } };
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    w.max = Math.max(w.max, now - last - 10);
    last = now;
  }, 10);
  return w;
}

export async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) { if (pred()) return; await sleep(20); }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

export const CONFIG = `log: {level: info}
sse: {heartbeat: 60s, retry: 2s}
shutdown: {drain_timeout: 2s}
auth: {allow_unauthenticated_publish: true}
limits: {connections_per_ip: 0, new_connections_per_ip_per_s: 0, ws_messages_per_s: 0, publishes_per_key_per_s: 0}
history: {size: 5000, max_recovery: 5000, ttl: 5m}
`;

// A herald of the test's own (HERALD_BIN), for restarts and special configs.
export class HeraldProcess {
  constructor(dir, extra = "") { this.dir = dir; this.config = path.join(dir, "herald.yaml"); fs.writeFileSync(this.config, CONFIG + extra); }
  async start() {
    this.out = "";
    this.proc = spawn(process.env.HERALD_BIN, ["--config", this.config, "--listen", "127.0.0.1:0", "--workers", "2"],
      { stdio: ["ignore", "pipe", "pipe"] });
    const add = (d) => { this.out += d.toString(); };
    this.proc.stdout.on("data", add);
    this.proc.stderr.on("data", add);
    await waitFor(() => /listening on 127\.0\.0\.1:([1-9]\d*)/.test(this.out) || this.proc.exitCode !== null, 10000, "herald listening");
    this.port = Number(/listening on 127\.0\.0\.1:([1-9]\d*)/.exec(this.out)[1]);
    this.url = `http://127.0.0.1:${this.port}`;
  }
  async stop() {
    if (!this.proc || this.proc.exitCode !== null) return;
    const done = new Promise((r) => this.proc.once("exit", r));
    this.proc.kill("SIGTERM");
    // A timer that is cleared: a pending one would keep node (and the test file) alive for 15 s.
    let timer;
    await Promise.race([done, new Promise((r) => { timer = setTimeout(r, 15000); })]);
    clearTimeout(timer);
    if (this.proc.exitCode === null) this.proc.kill("SIGKILL");
  }
}

