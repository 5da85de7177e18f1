// Types for herald-client (herald.js). See README.md and docs/client.md.
export declare const VERSION: string;

export type TransportName = "websocket" | "sse" | "poll";
export type State = "connecting" | "connected" | "disconnected" | "closed";

export interface HeraldOptions {
  /** Called before the first connection and again before the token's `exp` (with a margin). */
  getToken?: () => string | null | Promise<string | null>;
  /** Transports to use, in order of preference. Default ["websocket", "sse", "poll"]. */
  transports?: TransportName[];
  /** Backoff: the first delay's upper bound, ms (default 500); full jitter. */
  minDelay?: number;
  /** Backoff: the largest delay, ms (default 20000). */
  maxDelay?: number;
  /** ms connected after which the backoff starts again from minDelay (default 10000). */
  stableAfter?: number;
  /** ms for a WebSocket's first frame or an SSE stream's first bytes before falling back (default 8000). */
  connectTimeout?: number;
  /** ms on a fallback transport before trying the preferred one again (default 60000, doubling). */
  upgradeAfter?: number;
  /** ms before `exp` at which a new token is fetched (default 30000, at most a fifth of the token's life). */
  tokenMargin?: number;
  /** ms of WebSocket silence before the client pings (visible pages only; default 25000). */
  pingInterval?: number;
  /** ms without bytes on an SSE stream before reconnecting (default 45000). */
  idleTimeout?: number;
  /** Publishes that may wait for a connection (default 100); beyond, publish() rejects. */
  maxOutbox?: number;
  /** WebSocket constructor (Node: `import WebSocket from "ws"`); default globalThis.WebSocket. */
  WebSocket?: unknown;
  /** fetch implementation; default globalThis.fetch. */
  fetch?: typeof fetch;
  /** Where the working transport is remembered; default sessionStorage when present; null: nowhere. */
  storage?: Pick<Storage, "getItem" | "setItem"> | null;
}

export interface Message {
  topic: string;
  /** JSON value (WebSocket, poll), string (text; SSE gives JSON as its text), or ArrayBuffer (binary). */
  data: unknown;
  event?: string;
  epoch: string;
  offset: number;
  transport: TransportName;
}

export interface ResetInfo {
  epoch: string;
  /** Messages after this offset follow. */
  offset: number;
  reason: string;
}

export interface Handlers {
  onMessage?: (m: Message) => void;
  /** History could not cover a gap: reload state; newer messages follow. */
  onReset?: (topic: string, info: ResetInfo) => void;
  onError?: (e: HeraldError) => void;
}

export declare class HeraldError extends Error {
  code: string;
  status?: number;
  topic?: string;
}

export declare class Subscription {
  readonly topic: string;
  unsubscribe(): void;
}

export interface PublishResult {
  topic: string;
  epoch: string;
  offset: number;
  duplicate: boolean;
}

export declare class Herald {
  constructor(url?: string, options?: HeraldOptions);
  readonly state: State;
  /** The transport of the current (or last) connection, null before the first. */
  readonly transport: TransportName | null;
  subscribe(topic: string, handlers?: Handlers): Subscription;
  /** Over WebSocket; waits in the outbox while disconnected; resolves once herald acknowledged it. */
  publish(topic: string, data: unknown, options?: { event?: string }): Promise<PublishResult>;
  on(event: "state", fn: (s: State) => void): () => void;
  on(event: "transport", fn: (t: TransportName) => void): () => void;
  on(event: "error", fn: (e: HeraldError) => void): () => void;
  on(event: "reset", fn: (topic: string, info: ResetInfo) => void): () => void;
  on(event: "retry", fn: (r: { delay: number; attempt: number }) => void): () => void;
  close(): void;
}

export declare function backoffDelay(attempt: number, minDelay: number, maxDelay: number, random?: () => number): number;
export declare function tokenExpiry(token: string): number | null;
export default Herald;
