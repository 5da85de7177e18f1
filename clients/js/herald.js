// herald-client: subscribe to a herald push server over WebSocket, SSE or long-polling, with
// reconnect, resume and fallback. ES module, no dependencies; browsers and Node 20+.
// Served by herald itself at GET /client/herald.js. API and resume rules: docs/client.md.
export const VERSION = "0.1.0";

const ORDER = ["websocket", "sse", "poll"];
const DEFAULTS = {
  transports: ORDER,
  minDelay: 500, // ms, first reconnect delay's upper bound (full jitter)
  maxDelay: 20000, // ms, the largest delay
  stableAfter: 10000, // ms connected before the backoff starts again from minDelay
  connectTimeout: 8000, // ms for a WebSocket's first frame or an SSE stream's first bytes
  upgradeAfter: 60000, // ms on a fallback transport before trying the preferred one again
  tokenMargin: 30000, // ms before exp to fetch a new token (at most a fifth of its lifetime)
  pingInterval: 25000, // ms of WebSocket silence before the client asks (only on a visible page)
  idleTimeout: 45000, // ms without bytes on an SSE stream (heartbeats count) before reconnecting
  maxOutbox: 100,
};

// Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): uniform in
// [0, min(maxDelay, minDelay * 2^attempt)], so clients that lost the same server spread out.
export function backoffDelay(attempt, minDelay, maxDelay, random = Math.random) {
  const cap = Math.min(maxDelay, minDelay * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * cap);
}

// The `exp` claim of a JWT in ms since the epoch, or null.
export function tokenExpiry(token) {
  try {
    const part = String(token).split(".")[1];
    if (!part) return null;
    let b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    while (b64.length % 4) b64 += "=";
    const claims = JSON.parse(atob(b64));
    return typeof claims.exp === "number" ? claims.exp * 1000 : null;
  } catch {
    return null;
  }
}

function b64ToBuffer(s) {
  const bin = atob(s);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out.buffer;
}

function bufferToB64(data) {
  const bytes = data instanceof ArrayBuffer ? new Uint8Array(data)
    : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  let bin = "";
  for (let i = 0; i < bytes.length; i += 0x8000)
    bin += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}

function randomKey() {
  if (globalThis.crypto && globalThis.crypto.randomUUID) return globalThis.crypto.randomUUID();
  return Date.now().toString(36) + "-" + Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
}

function parsePos(s) {
  const i = typeof s === "string" ? s.lastIndexOf(":") : -1;
  if (i <= 0) return null;
  const offset = Number(s.slice(i + 1));
  return Number.isSafeInteger(offset) ? { epoch: s.slice(0, i), offset } : null;
}

export class HeraldError extends Error {
  constructor(code, message, extra = {}) {
    super(message || code);
    this.name = "HeraldError";
    this.code = code;
    Object.assign(this, extra);
  }
}

// Why a transport ended: `confirmed` says it worked before (then only a reconnect is needed);
// `kind` selects the reaction (see Herald#onTransportEnd).
class End {
  constructor(kind, info = {}) {
    this.kind = kind; // "network" | "timeout" | "refused" | "auth" | "retry" | "going_away" | "fatal" | "token_expired" | "closed"
    Object.assign(this, info);
  }
}

// The hint in a close 1001 reason, "going away; reconnect_after_ms=N"; null when absent.
function reconnectHint(reason) {
  const m = /reconnect_after_ms=(\d+)/.exec(reason || "");
  return m ? Number(m[1]) : null;
}

async function httpError(res) {
  let body = null;
  try { body = await res.json(); } catch { /* not JSON */ }
  const e = body && body.error ? body.error : {};
  return new HeraldError(e.code || "http_" + res.status, e.message || "HTTP " + res.status,
    { status: res.status });
}

async function endFromResponse(res) {
  const err = await httpError(res);
  if (res.status === 401) return new End("auth", { error: err });
  if (res.status === 429 || res.status === 503) {
    const ra = Number(res.headers.get("Retry-After"));
    return new End("retry", { error: err, retryAfter: Number.isFinite(ra) && ra >= 0 ? ra * 1000 : null });
  }
  if (res.status === 403 && err.code === "disconnected") return new End("fatal", { error: err });
  if (res.status === 403 || res.status === 400) return new End("topic", { error: err });
  return new End("refused", { error: err });
}

// A new subscription on SSE or poll starts from the topic's top, read from /history: then a
// reconnect before its first message resumes from there instead of missing what came between.
// Returns null, or why herald refused (an End: `topic` for this topic only).
async function startPosition(c, topic, signal) {
  if (c.pos.get(topic)) return null;
  const headers = {};
  if (c.token) headers.Authorization = "Bearer " + c.token;
  const res = await c.fetch(`${c.base}/history/${encodeURIComponent(topic)}?limit=0`, { headers, signal, cache: "no-store" });
  if (res.status !== 200) return endFromResponse(res);
  const b = await res.json();
  if (!c.pos.get(topic) && typeof b.epoch === "string" && Number.isSafeInteger(b.offset))
    c.pos.set(topic, { epoch: b.epoch, offset: b.offset });
  return null;
}

// ---------------------------------------------------------------------------------- transports
// A transport receives the client (`c`) and reports through c.tp* methods, each with itself as
// the first argument so that a superseded transport's late reports are ignored.

class WsTransport {
  constructor(c) {
    this.c = c;
    this.name = "websocket";
    this.pending = new Map(); // op id -> {op, topic}
    this.header = null; // a binary message's header, waiting for its binary frame
    this.open = false;
    this.lastFrame = 0;
    this.pingId = null;
  }
  start() {
    const c = this.c;
    const WS = c.opts.WebSocket || globalThis.WebSocket;
    if (!WS) throw new HeraldError("no_websocket", "no WebSocket constructor (pass options.WebSocket)");
    const u = new URL(c.base + "/ws");
    u.protocol = u.protocol === "https:" ? "wss:" : "ws:";
    if (c.token) u.searchParams.set("token", c.token);
    const ws = (this.ws = new WS(u.toString(), ["herald.v1"]));
    ws.binaryType = "arraybuffer";
    ws.onopen = () => {
      this.open = true;
      for (const t of c.subs.keys()) this.subscribe(t);
      if (c.subs.size === 0) this.ping();
      c.flushOutbox(this);
    };
    ws.onmessage = (ev) => this.frame(ev.data);
    ws.onerror = () => {};
    ws.onclose = (ev) => {
      this.ws = null;
      const code = ev.code;
      if (code === 4002) c.tpEnd(this, new End("fatal", { error: new HeraldError("disconnected", ev.reason || "disconnected", { closeCode: code }) }));
      else if (code === 4001) c.tpEnd(this, new End("token_expired"));
      else if (code === 1001) c.tpEnd(this, new End("going_away", { reconnectAfter: reconnectHint(ev.reason) }));
      else c.tpEnd(this, new End(this.open ? "network" : "refused", { closeCode: code }));
    };
  }
  send(obj) {
    if (!this.ws || !this.open) return false;
    try { this.ws.send(JSON.stringify(obj)); return true; } catch { return false; }
  }
  op(obj, meta) {
    const id = ++this.c.opSeq;
    this.pending.set(id, meta || { op: obj.op, topic: obj.topic });
    return this.send({ ...obj, id }) ? id : null;
  }
  subscribe(topic) {
    const pos = this.c.pos.get(topic);
    const o = { op: "subscribe", topic };
    if (pos) o.since = { epoch: pos.epoch, offset: pos.offset };
    this.op(o);
  }
  unsubscribe(topic) { this.op({ op: "unsubscribe", topic }); }
  ping() { this.pingId = this.op({ op: "ping" }); }
  refresh(token) { this.op({ op: "refresh", token }); }
  publish(item) {
    const o = { op: "publish", topic: item.topic, idempotency_key: item.key };
    if (item.binary) o.data_base64 = item.binary; else o.data = item.data;
    if (item.event) o.event = item.event;
    item.opId = this.op(o, { op: "publish", item });
    return item.opId !== null;
  }
  frame(data) {
    this.lastFrame = this.c.now();
    this.c.tpConfirm(this);
    if (typeof data !== "string") {
      const h = this.header;
      this.header = null;
      if (h) this.c.tpMessage(this, h.topic, h.epoch, h.offset, data instanceof ArrayBuffer ? data : new Uint8Array(data).buffer, h.event);
      return;
    }
    let m;
    try { m = JSON.parse(data); } catch { return; }
    const c = this.c;
    switch (m.type) {
      case "message":
        if (m.binary) this.header = m;
        else c.tpMessage(this, m.topic, m.epoch, m.offset, m.data, m.event);
        return;
      case "reset":
        c.tpReset(this, m.topic, { epoch: m.epoch, offset: m.offset, reason: m.reason });
        return;
      case "ok": {
        const meta = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.op === "subscribe") c.tpSubscribed(this, m.topic, m.epoch, m.offset, m.recovered);
        else if (m.op === "publish" && meta && meta.item) c.tpPublished(this, meta.item, m);
        return;
      }
      case "error": {
        const meta = this.pending.get(m.id) || {};
        this.pending.delete(m.id);
        const err = new HeraldError(m.code, m.message, { topic: m.topic || meta.topic });
        if (meta.op === "publish") c.tpPublishFailed(this, meta.item, err);
        else if (meta.op === "subscribe" && m.code !== "unsubscribed") c.tpTopicError(this, meta.topic, err);
        else if (meta.op === "refresh") c.tpEnd(this, new End("auth", { error: err }));
        else c.emit("error", err);
        return;
      }
    }
  }
  tick(now, visible) {
    // A silent connection (a stalled proxy) is found by asking; a hidden page asks nothing.
    if (!this.open) return;
    if (this.pingId !== null && !this.pending.has(this.pingId)) this.pingId = null;
    if (this.pingId !== null && now - this.lastFrame > this.c.opts.pingInterval * 1.5) {
      this.c.tpEnd(this, new End("network", { reason: "no answer to ping" }));
      this.stop();
      return;
    }
    if (visible && this.pingId === null && now - this.lastFrame > this.c.opts.pingInterval) this.ping();
  }
  stop() {
    const ws = this.ws;
    this.ws = null;
    this.open = false;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      ws.onerror = () => {};
      try { ws.close(1000); } catch { /* not open yet */ }
    }
  }
}

// SSE and long-polling: ONE request carries every topic, so a page does not spend one of the
// browser's six HTTP/1.1 connections per host on each topic. Adding or removing a topic opens a
// new request that resumes every topic from its delivered position (calls made in one turn open
// one); a topic herald refuses gets onError and is left out, the others go on.
class TopicsTransport {
  constructor(c, name) {
    this.c = c;
    this.name = name;
    this.run = null; // the current request (an SseStream or a PollRun)
    this.refused = new Set(); // topics herald refused on this transport (onError said so)
    this.pending = false;
  }
  start() { this.reopen(); }
  reopenSoon() {
    if (this.pending) return;
    this.pending = true;
    queueMicrotask(() => { if (this.pending) this.reopen(); });
  }
  reopen() {
    this.pending = false;
    if (this.run) this.run.stop();
    this.run = null;
    const topics = [...this.c.subs.keys()].filter((t) => !this.refused.has(t));
    if (!topics.length) { this.c.tpConfirm(this); return; } // nothing to ask for
    const r = (this.run = new this.Run(this, topics));
    r.go();
  }
  // [[topic, error], ...]: onError for each, and a new request without them.
  refuse(list) {
    for (const [topic, err] of list) { this.refused.add(topic); this.c.tpTopicError(this, topic, err); }
    if (this.c.tp === this) this.reopen();
  }
  subscribe(topic) { this.refused.delete(topic); this.reopenSoon(); }
  unsubscribe() { this.reopenSoon(); }
  stop() {
    this.pending = false;
    const r = this.run;
    this.run = null;
    if (r) r.stop();
  }
}

class TopicsRun {
  constructor(t, topics) {
    this.t = t;
    this.topics = topics; // URL order
    this.ctl = new AbortController();
    this.started = t.c.now();
  }
  live() { return this.t.run === this; }
  stop() { this.ctl.abort(); }
  // A resume names every topic's position (a new topic's is its top, from /history). False: this
  // run is over (refused topics left out, or the transport ended).
  async positions() {
    const t = this.t, c = t.c;
    for (const topic of this.topics) {
      const end = await startPosition(c, topic, this.ctl.signal);
      if (!this.live()) return false;
      if (end && end.kind === "topic") { t.refuse([[topic, end.error]]); return false; }
      if (end) { c.tpEnd(t, end); return false; }
      if (!c.pos.get(topic)) { c.tpEnd(t, new End("network", { reason: "no position for " + topic })); return false; }
    }
    return true;
  }
  // A request answered other than 200. A refusal of one topic is that topic's; of several,
  // /history names the culprits (a token that lost a topic after its position was read).
  async refused(res) {
    const t = this.t, c = t.c;
    const end = await endFromResponse(res);
    if (!this.live()) return;
    if (end.kind === "topic" && this.topics.length === 1) { t.refuse([[this.topics[0], end.error]]); return; }
    if (end.kind === "topic") {
      const list = [];
      for (const topic of this.topics) {
        const saved = c.pos.get(topic);
        c.pos.delete(topic);
        let why = null;
        try { why = await startPosition(c, topic, this.ctl.signal); } catch { /* not this one */ }
        if (saved) c.pos.set(topic, saved);
        if (!this.live()) return;
        if (why && why.kind === "topic") list.push([topic, why.error]);
      }
      if (list.length) { t.refuse(list); return; }
    }
    c.tpEnd(t, end);
  }
}

// SSE: one fetch-based stream for every topic (`/sse?topic=a&topic=b&last_event_id=e1:17,e2:4`).
// Its event ids hold every topic's position in URL order (docs/protocol.md); the client keeps the
// last id as `ids` and tells a message's topic by the position that moved. A new token also opens
// a new stream.
class SseStream extends TopicsRun {
  constructor(t, topics) {
    super(t, topics);
    this.ids = null; // the stream's positions per topic, as its last id said (or as sent)
  }
  async go() {
    const t = this.t, c = t.c, signal = this.ctl.signal;
    let res;
    try {
      if (!(await this.positions())) return;
      this.ids = this.topics.map((topic) => ({ ...c.pos.get(topic) }));
      const u = new URL(c.base + "/sse");
      for (const topic of this.topics) u.searchParams.append("topic", topic);
      u.searchParams.set("last_event_id", this.ids.map((p) => p.epoch + ":" + p.offset).join(","));
      const headers = { Accept: "text/event-stream" };
      if (c.token) headers.Authorization = "Bearer " + c.token;
      res = await c.fetch(u.toString(), { headers, signal, cache: "no-store" });
    } catch (e) {
      if (this.live()) c.tpEnd(t, new End("network", { error: e, unreachable: true }));
      return;
    }
    if (!this.live()) return;
    if (res.status !== 200) { await this.refused(res); return; }
    const reader = res.body.getReader();
    const dec = new TextDecoder();
    let buf = "", ev = { data: [], event: "", id: null };
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (!this.live()) return;
        if (done) break;
        this.last = c.now();
        // The first bytes (the `retry:` block, sent once every topic is subscribed) confirm it.
        this.confirmed = true;
        c.tpConfirm(t);
        buf += dec.decode(value, { stream: true });
        // Lines end at CR, LF or CRLF; a CR at the end of the buffer may be half of a CRLF.
        for (;;) {
          const m = /\r\n|\r|\n/.exec(buf);
          if (!m || (m[0] === "\r" && m.index === buf.length - 1)) break;
          const line = buf.slice(0, m.index);
          buf = buf.slice(m.index + m[0].length);
          if (line === "") {
            if (ev.data.length || ev.event) this.dispatch(ev);
            ev = { data: [], event: "", id: null };
            if (!this.live()) return;
            continue;
          }
          if (line[0] === ":") continue;
          const i = line.indexOf(":");
          const field = i < 0 ? line : line.slice(0, i);
          let val = i < 0 ? "" : line.slice(i + 1);
          if (val[0] === " ") val = val.slice(1);
          if (field === "data") ev.data.push(val);
          else if (field === "event") ev.event = val;
          else if (field === "id") ev.id = val;
        }
      }
    } catch (e) {
      if (this.live()) c.tpEnd(t, new End("network", { error: e }));
      return;
    }
    if (this.live()) c.tpEnd(t, new End(this.confirmed ? "network" : "refused"));
  }
  // The topic a message belongs to: the one whose position moved to the next offset of its epoch.
  // (Another may have moved too: a topic whose resume failed carries its new start in the ids of
  // events held before its `reset`; that one does not continue its old position.)
  topicOf(ids) {
    let moved = -1, count = 0;
    for (let i = 0; i < ids.length; i++) {
      const a = this.ids[i], b = ids[i];
      if (a.epoch === b.epoch && a.offset === b.offset) continue;
      if (a.epoch === b.epoch && b.offset === a.offset + 1) return i;
      moved = i;
      count++;
    }
    return count === 1 ? moved : -1;
  }
  dispatch(ev) {
    const t = this.t, c = t.c, data = ev.data.join("\n");
    if (ev.event === "shutdown") {
      let hint = null;
      try { hint = JSON.parse(data).reconnect_after_ms; } catch { /* no hint */ }
      c.tpEnd(t, new End("going_away", { reconnectAfter: Number.isInteger(hint) && hint >= 0 ? hint : null }));
      return;
    }
    if (ev.event === "disconnect") { c.tpEnd(t, new End("fatal", { error: new HeraldError("disconnected", "disconnected by the server") })); return; }
    if (ev.event === "error") {
      let e = {};
      try { e = JSON.parse(data); } catch { /* keep {} */ }
      const topic = this.topics.includes(e.topic) ? e.topic : this.topics[0];
      t.refuse([[topic, new HeraldError(e.code || "error", e.message, { topic })]]);
      return;
    }
    const ids = ev.id === null ? null : ev.id.split(",").map(parsePos);
    if (!ids || ids.length !== this.topics.length || ids.some((p) => !p)) return; // not a message
    if (ev.event === "reset") {
      let r = {};
      try { r = JSON.parse(data); } catch { return; }
      const i = this.topics.indexOf(r.topic);
      if (i < 0) return;
      this.ids[i] = ids[i];
      c.tpReset(t, r.topic, { epoch: r.epoch, offset: r.offset, reason: r.reason });
      return;
    }
    const i = this.topicOf(ids);
    if (i < 0) {
      // Cannot happen with herald's ids; resuming from what was delivered is always safe.
      c.tpEnd(t, new End("network", { reason: "an SSE id that names no topic" }));
      return;
    }
    this.ids[i] = ids[i];
    const topic = this.topics[i], pos = ids[i];
    if (ev.event === "binary") c.tpMessage(t, topic, pos.epoch, pos.offset, b64ToBuffer(data), undefined);
    else c.tpMessage(t, topic, pos.epoch, pos.offset, data, ev.event || undefined);
  }
}

class SseTransport extends TopicsTransport {
  constructor(c) { super(c, "sse"); this.Run = SseStream; }
  tick(now) {
    const s = this.run;
    if (s && s.confirmed && now - s.last > this.c.opts.idleTimeout) {
      this.c.tpEnd(this, new End("network", { reason: "SSE stream silent" }));
    } else if (s && !s.confirmed && now - s.started > this.c.opts.connectTimeout) {
      // A stream reopened (a topic added, a new token) that shows nothing: a buffering proxy.
      this.c.tpEnd(this, new End("timeout"));
    }
  }
}

// Long-polling: one held request for every topic (`/poll?topic=a&topic=b&since=e1:17,e2:4`),
// answered {"topics":[...]} for several, the single answer for one (docs/protocol.md). Each
// request carries the current token.
class PollRun extends TopicsRun {
  async go() {
    const t = this.t, c = t.c, signal = this.ctl.signal;
    // A held request is a working one: confirmed after a second without failure.
    const confirm = c.timers.setTimeout(() => { if (this.live()) c.tpConfirm(t); }, 1000);
    try {
      while (this.live()) {
        if (!(await this.positions())) return;
        const u = new URL(c.base + "/poll");
        for (const topic of this.topics) u.searchParams.append("topic", topic);
        u.searchParams.set("since", this.topics.map((x) => { const p = c.pos.get(x); return p.epoch + ":" + p.offset; }).join(","));
        const headers = {};
        if (c.token) headers.Authorization = "Bearer " + c.token;
        let res, body;
        try {
          res = await c.fetch(u.toString(), { headers, signal, cache: "no-store" });
          if (!this.live()) return;
          if (res.status !== 200) { await this.refused(res); return; }
          body = await res.json();
        } catch (e) {
          if (this.live()) c.tpEnd(t, new End("network", { error: e, unreachable: !res }));
          return;
        }
        if (!this.live()) return;
        c.tpConfirm(t);
        const answers = this.topics.length === 1 ? [body] : body.topics || [];
        for (const a of answers) {
          if (!this.topics.includes(a.topic)) continue;
          const cur = parsePos(a.cursor);
          if (a.recovered === false && cur) c.tpReset(t, a.topic, { epoch: cur.epoch, offset: cur.offset, reason: a.reason });
          for (const m of a.messages || []) {
            const data = m.data_base64 !== undefined ? b64ToBuffer(m.data_base64) : m.data;
            c.tpMessage(t, a.topic, a.epoch, m.offset, data, m.event);
            if (!this.live()) return;
          }
        }
      }
    } finally {
      c.timers.clearTimeout(confirm);
    }
  }
}

class PollTransport extends TopicsTransport {
  constructor(c) { super(c, "poll"); this.Run = PollRun; }
  tick() {}
}

const FACTORIES = { websocket: WsTransport, sse: SseTransport, poll: PollTransport };

// ---------------------------------------------------------------------------------- the client

export class Subscription {
  constructor(client, topic, handlers) {
    this.client = client;
    this.topic = topic;
    this.handlers = handlers || {};
    this.active = true;
  }
  unsubscribe() {
    if (!this.active) return;
    this.active = false;
    this.client._unsubscribe(this);
  }
}

export class Herald {
  constructor(url, options = {}) {
    this.base = String(url || (globalThis.location ? globalThis.location.origin : "")).replace(/\/+$/, "");
    this.opts = { ...DEFAULTS, ...options };
    this.order = this.opts.transports.filter((t) => ORDER.includes(t));
    if (!this.order.length) throw new HeraldError("bad_option", "transports: none of websocket, sse, poll");
    this.timers = this.opts.timers || { setTimeout: (f, ms) => setTimeout(f, ms), clearTimeout: (h) => clearTimeout(h) };
    this.now = this.opts.now || (() => Date.now());
    this.random = this.opts.random || Math.random;
    this.fetch = this.opts.fetch || ((...a) => globalThis.fetch(...a));
    this.factories = { ...FACTORIES, ...(this.opts.transportFactories || {}) };
    this.storage = this.opts.storage !== undefined ? this.opts.storage : safeSessionStorage();
    this.storageKey = "herald:transport:" + this.base;
    this.listeners = new Map();
    this.subs = new Map(); // topic -> Set<Subscription>
    this.pos = new Map(); // topic -> {epoch, offset}: the last position delivered to the application
    this.outbox = [];
    this.opSeq = 0;
    this.state = "disconnected";
    this.transport = null;
    this.tp = null; // the running transport
    this.attempt = 0; // failed attempts since the last stable connection
    this.authRetried = false;
    this.token = null;
    this.tokenExp = null;
    this.timer = null; // the reconnect timer
    this.stableTimer = null;
    this.tokenTimer = null;
    this.upgradeTimer = null;
    this.connectTimer = null;
    this.upgradeDelay = this.opts.upgradeAfter;
    // The transport that worked last (this page, or this tab's earlier pages).
    const saved = this.storage ? safeGet(this.storage, this.storageKey) : null;
    this.preferred = saved && this.order.includes(saved) ? this.order.indexOf(saved) : 0;
    this.level = this.preferred; // the transport this attempt tries
    this.tickHandle = this.timers.setTimeout(() => this._tick(), 1000);
    this._watchPage();
    this._connectSoon(0);
  }

  on(event, fn) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(fn);
    return () => this.listeners.get(event).delete(fn);
  }
  emit(event, ...args) {
    for (const fn of [...(this.listeners.get(event) || [])]) {
      try { fn(...args); } catch (e) { queueMicrotask(() => { throw e; }); }
    }
  }

  subscribe(topic, handlers = {}) {
    if (this.state === "closed") throw new HeraldError("closed", "the client is closed");
    const sub = new Subscription(this, topic, handlers);
    let set = this.subs.get(topic);
    if (!set) {
      this.subs.set(topic, (set = new Set()));
      set.add(sub);
      if (this.tp) this.tp.subscribe(topic);
    } else set.add(sub);
    return sub;
  }

  _unsubscribe(sub) {
    const set = this.subs.get(sub.topic);
    if (!set) return;
    set.delete(sub);
    if (set.size) return;
    this.subs.delete(sub.topic);
    this.pos.delete(sub.topic);
    if (this.tp && this.tp.unsubscribe) this.tp.unsubscribe(sub.topic);
  }

  // Resolves with {topic, epoch, offset, duplicate?} once herald acknowledged the message.
  publish(topic, data, { event } = {}) {
    if (this.state === "closed") return Promise.reject(new HeraldError("closed", "the client is closed"));
    if (!this.order.includes("websocket"))
      return Promise.reject(new HeraldError("no_websocket", "publishing needs the websocket transport"));
    if (this.outbox.length >= this.opts.maxOutbox)
      return Promise.reject(new HeraldError("outbox_full", `more than ${this.opts.maxOutbox} publishes waiting`));
    return new Promise((resolve, reject) => {
      const item = { topic, event, key: randomKey(), resolve, reject };
      if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) item.binary = bufferToB64(data);
      else item.data = data;
      this.outbox.push(item);
      if (this.tp && this.tp.name === "websocket" && this.tp.open) this.tp.publish(item);
    });
  }

  close() {
    if (this.state === "closed") return;
    this._stopTransport();
    for (const h of [this.timer, this.stableTimer, this.tokenTimer, this.upgradeTimer, this.connectTimer, this.tickHandle])
      if (h) this.timers.clearTimeout(h);
    const err = new HeraldError("closed", "the client is closed");
    for (const item of this.outbox.splice(0)) {
      if (item.retryTimer) this.timers.clearTimeout(item.retryTimer);
      item.reject(err);
    }
    if (this.unwatch) this.unwatch();
    this._setState("closed");
  }

  // ------------------------------------------------------------------ connection life cycle

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this.emit("state", s);
  }

  _connectSoon(delay) {
    if (this.state === "closed") return;
    if (this.timer) this.timers.clearTimeout(this.timer);
    this.timer = this.timers.setTimeout(() => { this.timer = null; this._connect(); }, delay);
  }

  async _connect() {
    if (this.state === "closed" || this.tp) return;
    this._setState("connecting");
    if (this.opts.getToken && (!this.token || this._tokenDue())) {
      try {
        await this._fetchToken();
      } catch (e) {
        this.emit("error", new HeraldError("token", "getToken failed: " + (e && e.message), { cause: e }));
        this._setState("disconnected");
        this._backoff();
        return;
      }
      if (this.state === "closed" || this.tp) return;
    }
    const name = this.order[this.level];
    let tp;
    try {
      tp = new this.factories[name](this);
    } catch (e) {
      this.emit("error", e);
      this._backoff();
      return;
    }
    this.tp = tp;
    this.confirmed = false;
    if (this.connectTimer) this.timers.clearTimeout(this.connectTimer);
    this.connectTimer = this.timers.setTimeout(() => {
      this.connectTimer = null;
      if (this.tp === tp && !this.confirmed) this.tpEnd(tp, new End("timeout"));
    }, this.opts.connectTimeout);
    try {
      tp.start();
    } catch (e) {
      this.tpEnd(tp, new End("refused", { error: e }));
    }
  }

  _stopTransport() {
    const tp = this.tp;
    this.tp = null;
    if (tp) tp.stop();
    if (this.stableTimer) { this.timers.clearTimeout(this.stableTimer); this.stableTimer = null; }
    if (this.connectTimer) { this.timers.clearTimeout(this.connectTimer); this.connectTimer = null; }
    if (this.upgradeTimer) { this.timers.clearTimeout(this.upgradeTimer); this.upgradeTimer = null; }
  }

  _backoff(minimum = 0) {
    const d = Math.max(minimum, backoffDelay(this.attempt, this.opts.minDelay, this.opts.maxDelay, this.random));
    this.attempt++;
    this.emit("retry", { delay: d, attempt: this.attempt });
    this._connectSoon(d);
  }

  tpConfirm(tp) {
    if (tp !== this.tp || this.confirmed) return;
    this.confirmed = true;
    this.authRetried = false;
    if (this.connectTimer) { this.timers.clearTimeout(this.connectTimer); this.connectTimer = null; }
    if (this.level !== this.preferred) {
      this.preferred = this.level;
      if (this.storage) safeSet(this.storage, this.storageKey, tp.name);
    } else if (this.level === 0 && this.storage) safeSet(this.storage, this.storageKey, tp.name);
    if (this.transport !== tp.name) {
      this.transport = tp.name;
      this.emit("transport", tp.name);
    }
    this._setState("connected");
    this.stableTimer = this.timers.setTimeout(() => { this.stableTimer = null; this.attempt = 0; }, this.opts.stableAfter);
    if (this.level > 0) {
      // A fallback is remembered, and the preferred transport tried again later.
      this.upgradeTimer = this.timers.setTimeout(() => {
        this.upgradeTimer = null;
        if (this.tp !== tp || this.state !== "connected") return;
        this.upgradeDelay = Math.min(this.upgradeDelay * 2, 600000);
        this.upgrading = true;
        this._stopTransport();
        this.level = 0;
        this._connectSoon(0);
      }, this.upgradeDelay);
    } else this.upgradeDelay = this.opts.upgradeAfter;
    this._scheduleToken();
  }

  tpEnd(tp, end) {
    if (tp !== this.tp) return;
    const wasConfirmed = this.confirmed;
    this._stopTransport();
    if (this.state === "closed") return;
    if (end.kind === "fatal") {
      this.emit("error", end.error);
      this.close();
      return;
    }
    this._setState("disconnected");
    if (end.error) this.emit("error", end.error);
    // Only a lower transport that worked moves the choice down (tpConfirm); a server's answer
    // (401, 429, draining) is no reason to leave the remembered one.
    const fallback = this.level;
    this.level = this.preferred;
    if (end.kind === "auth" || end.kind === "token_expired") {
      this.token = null; // getToken again before the next attempt
      if (end.kind === "token_expired" || !this.authRetried) {
        this.authRetried = end.kind === "auth";
        this._connectSoon(0);
      } else this._backoff();
      return;
    }
    if (end.kind === "going_away") {
      // Draining: another instance may take us at once; jitter spreads the herd. The server's
      // reconnect_after_ms hint (shutdown.drain_spread) already carries its own jitter.
      this._connectSoon(end.reconnectAfter != null ? end.reconnectAfter
        : Math.floor(this.random() * this.opts.minDelay));
      return;
    }
    if (end.kind === "retry") {
      this._backoff(end.retryAfter || 0);
      return;
    }
    if (!wasConfirmed && (end.kind === "timeout" || end.kind === "refused" || (end.kind === "network" && !end.unreachable))
        && fallback + 1 < this.order.length) {
      // This transport cannot reach herald from here (a proxy refusing upgrades, or buffering):
      // the next one, now.
      this.level = fallback + 1;
      this._connectSoon(0);
      return;
    }
    // Nothing works (or the server is away): the remembered transport, after a backoff.
    this.level = this.preferred;
    this.upgrading = false;
    this._backoff();
  }

  tpSubscribed(tp, topic, epoch, offset, recovered) {
    if (tp !== this.tp || !this.subs.has(topic)) return;
    const pos = this.pos.get(topic);
    if (!pos) this.pos.set(topic, { epoch, offset });
    else if (recovered === false) this._reset(topic, { epoch, offset, reason: "not recovered" });
  }

  tpReset(tp, topic, info) {
    if (tp !== this.tp || !this.subs.has(topic)) return;
    this._reset(topic, info);
  }

  _reset(topic, info) {
    this.pos.set(topic, { epoch: info.epoch, offset: info.offset });
    for (const s of [...(this.subs.get(topic) || [])])
      if (s.handlers.onReset) call(() => s.handlers.onReset(topic, info));
    this.emit("reset", topic, info);
  }

  tpMessage(tp, topic, epoch, offset, data, event) {
    if (tp !== this.tp || !this.subs.has(topic)) return;
    const pos = this.pos.get(topic);
    if (pos && pos.epoch === epoch && offset <= pos.offset) return; // a replay's overlap
    if (pos && (pos.epoch !== epoch || offset > pos.offset + 1)) {
      // A hole nobody announced: the application must know before it sees what follows.
      this._reset(topic, { epoch, offset: offset - 1, reason: pos.epoch !== epoch ? "epoch changed" : "gap" });
    }
    this.pos.set(topic, { epoch, offset });
    const msg = { topic, data, event, epoch, offset, transport: tp.name };
    for (const s of [...(this.subs.get(topic) || [])])
      if (s.handlers.onMessage) call(() => s.handlers.onMessage(msg));
  }

  tpTopicError(tp, topic, err) {
    if (tp !== this.tp) return;
    for (const s of [...(this.subs.get(topic) || [])])
      if (s.handlers.onError) call(() => s.handlers.onError(err));
    this.emit("error", err);
  }

  flushOutbox(tp) {
    for (const item of this.outbox) {
      if (item.retryTimer) { this.timers.clearTimeout(item.retryTimer); item.retryTimer = null; }
      tp.publish(item);
    }
  }

  tpPublished(tp, item, reply) {
    const i = this.outbox.indexOf(item);
    if (i < 0) return;
    this.outbox.splice(i, 1);
    item.resolve({ topic: reply.topic, epoch: reply.epoch, offset: reply.offset, duplicate: !!reply.duplicate });
  }

  tpPublishFailed(tp, item, err) {
    if (err.code === "unavailable" || err.code === "rate_limited" || err.code === "unknown") {
      // Not published, or (`unknown`: Redis did not answer in time) perhaps published: the same
      // publish with the same idempotency_key again, after a backoff, on this connection or the
      // next one (flushOutbox); herald answers a repeat that did land `duplicate: true`.
      if (this.outbox.indexOf(item) < 0 || item.retryTimer) return;
      const d = backoffDelay(item.tries = (item.tries || 0) + 1, this.opts.minDelay, this.opts.maxDelay, this.random);
      item.retryTimer = this.timers.setTimeout(() => {
        item.retryTimer = null;
        if (this.tp === tp && tp.open && this.outbox.includes(item)) tp.publish(item);
      }, Math.max(d, this.opts.minDelay / 2));
      return;
    }
    const i = this.outbox.indexOf(item);
    if (i < 0) return;
    this.outbox.splice(i, 1);
    item.reject(err);
  }

  // ------------------------------------------------------------------ tokens

  _tokenDue() {
    return this.tokenExp !== null && this.now() >= this.tokenExp - this._margin();
  }
  _margin() {
    const life = this.tokenExp - (this.tokenAt || this.now());
    return Math.max(0, Math.min(this.opts.tokenMargin, life / 5));
  }
  async _fetchToken() {
    const t = await this.opts.getToken();
    this.token = t ? String(t).trim() : null;
    this.tokenAt = this.now();
    this.tokenExp = this.token ? tokenExpiry(this.token) : null;
  }
  _scheduleToken() {
    if (this.tokenTimer) { this.timers.clearTimeout(this.tokenTimer); this.tokenTimer = null; }
    if (!this.opts.getToken || this.tokenExp === null) return;
    const due = Math.max(0, this.tokenExp - this._margin() - this.now());
    const tp = this.tp;
    this.tokenTimer = this.timers.setTimeout(async () => {
      this.tokenTimer = null;
      if (this.tp !== tp || this.state !== "connected") return;
      try {
        await this._fetchToken();
      } catch (e) {
        this.emit("error", new HeraldError("token", "getToken failed: " + (e && e.message), { cause: e }));
        // The server ends the stream at exp; the reconnect asks again with backoff.
        return;
      }
      if (this.tp !== tp) return;
      if (tp.name === "websocket") {
        tp.refresh(this.token);
        this._scheduleToken();
      } else {
        // SSE: a new stream with the new token resumes every topic from its delivered position
        // (no loss, and the client stays connected); each poll request carries the current token.
        if (tp.name === "sse") tp.reopen();
        this._scheduleToken();
      }
    }, due);
  }

  // ------------------------------------------------------------------ page and liveness

  _tick() {
    this.tickHandle = this.timers.setTimeout(() => this._tick(), 1000);
    if (this.tp && this.confirmed && this.tp.tick) this.tp.tick(this.now(), !this.hidden);
  }

  _watchPage() {
    const w = globalThis.window, d = globalThis.document;
    if (this.opts.watchPage === false || !w || !w.addEventListener) return;
    const online = () => { if (!this.tp && this.state !== "closed") { this.attempt = 0; this._connectSoon(0); } };
    const vis = () => { this.hidden = d && d.visibilityState === "hidden"; };
    w.addEventListener("online", online);
    if (d) d.addEventListener("visibilitychange", vis);
    vis();
    this.unwatch = () => { w.removeEventListener("online", online); if (d) d.removeEventListener("visibilitychange", vis); };
  }
}

function call(fn) {
  try { fn(); } catch (e) { queueMicrotask(() => { throw e; }); }
}
function safeSessionStorage() {
  try { return globalThis.sessionStorage || null; } catch { return null; }
}
function safeGet(s, k) { try { return s.getItem(k); } catch { return null; } }
function safeSet(s, k, v) { try { s.setItem(k, v); } catch { /* full or denied */ } }

export default Herald;
