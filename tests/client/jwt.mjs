// A herald of the test's own that checks JWTs (HS256, leeway 0), and tokens for it that expire in
// a few seconds. Topics `priv:*` need a token (these tokens name them); `secret:*` ones no token
// here may read.
import crypto from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { HeraldProcess } from "./common.mjs";

const SECRET = crypto.randomBytes(32).toString("hex");
const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");

export function mint(lifetimeS) {
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ sub: "alice", exp: Math.floor(Date.now() / 1000) + lifetimeS, topics: ["priv:*"] });
  const sig = crypto.createHmac("sha256", SECRET).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

const AUTH = `  jwt: {keys: [{alg: HS256, secret: "${SECRET}"}], leeway: 0s}
  namespaces: [{pattern: "priv:*", anonymous: none}, {pattern: "secret:*", anonymous: none}]
`;

export async function withJwtHerald(fn) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "herald-token-"));
  // CONFIG's `auth:` line is the last of its section: the keys are appended under it.
  const h = new HeraldProcess(dir, "");
  fs.writeFileSync(h.config, fs.readFileSync(h.config, "utf8").replace(/^auth: \{allow_unauthenticated_publish: true\}$/m,
    "auth:\n  allow_unauthenticated_publish: true\n" + AUTH));
  await h.start();
  try { return await fn(h); } finally { await h.stop(); fs.rmSync(dir, { recursive: true, force: true }); }
}

export async function publishEvery(h, topics, ms, count) {
  for (let i = 1; i <= count; i++) {
    await Promise.all(topics.map((t) => fetch(`${h.url}/publish/${t}`, { method: "POST", body: String(i) })));
    await new Promise((r) => setTimeout(r, ms));
  }
}
