// A TCP proxy for the client tests, on 127.0.0.1: forwards to herald and can cut every connection,
// refuse WebSocket upgrades, buffer responses (an SSE stream then never arrives), and swallow what
// the server sends (an acknowledgement that is lost).
import net from "node:net";

export class Proxy {
  constructor(target) {
    this.target = target; // {host, port}
    this.conns = new Set();
    this.mode = { refuseUpgrades: false, buffer: false, swallow: false, down: false };
    this.accepted = 0;
    this.requests = []; // every request line seen (pair.request: a connection's latest)
    this.cuts = 0;
  }
  async listen() {
    this.server = net.createServer((c) => this.accept(c));
    await new Promise((r) => this.server.listen(0, "127.0.0.1", r));
    this.port = this.server.address().port;
    this.url = `http://127.0.0.1:${this.port}`;
    return this;
  }
  accept(client) {
    this.accepted++;
    if (this.mode.down) { client.destroy(); return; }
    const upstream = net.connect(this.target.port, this.target.host);
    const pair = { client, upstream, first: true };
    this.conns.add(pair);
    const end = () => { this.conns.delete(pair); client.destroy(); upstream.destroy(); };
    client.on("error", end); upstream.on("error", end);
    client.on("close", end); upstream.on("close", end);
    client.on("data", (d) => {
      // A request on a kept-alive connection starts a chunk of its own (fetch writes it at once).
      const line = /^(GET|POST|PUT|DELETE|OPTIONS|HEAD) [^\r\n]* HTTP\/1\.1\r\n/.exec(d.toString("latin1", 0, Math.min(d.length, 4096)));
      if (line) { pair.request = line[0].trim(); pair.answered = false; this.requests.push(pair.request); }
      const route = line && this.route(pair.request.split(" ")[1]);
      if (route) {
        // Answered here, on this origin (so the page's /client/herald.js is same-origin).
        const body = Buffer.from(route.body);
        const head = `HTTP/1.1 ${route.status || 200} X\r\nContent-Type: ${route.type || "text/plain"}\r\nContent-Length: ${body.length}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n`;
        client.end(Buffer.concat([Buffer.from(head, "latin1"), body]));
        upstream.destroy();
        return;
      }
      if (pair.first) {
        pair.first = false;
        const head = d.toString("latin1");
        if (this.mode.refuseUpgrades && /^upgrade:\s*websocket/im.test(head)) {
          // What a proxy that does not pass upgrades answers.
          client.end("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
          upstream.destroy();
          return;
        }
      }
      // A buffering proxy holds a stream's response, also on a kept-alive connection.
      if (line) pair.buffer = this.mode.buffer && pair.request.startsWith("GET /sse");
      upstream.write(d);
    });
    upstream.on("data", (d) => {
      pair.answered = true; // the response began: a kept-alive connection is idle after it
      if (pair.buffer || this.mode.swallow) return; // held (a buffering proxy) or lost
      client.write(d);
    });
  }
  // The browser tests' own paths: GET /test.html (this.page) and this.routes[path]() ->
  // {status, type, body}.
  route(target) {
    if (target === "/test.html" && this.page) return { type: "text/html; charset=utf-8", body: this.page };
    const f = this.routes && this.routes[target];
    return f ? f() : null;
  }
  cutAll() {
    for (const p of [...this.conns]) { p.client.destroy(); p.upstream.destroy(); }
    this.conns.clear();
    this.cuts++;
  }
  close() {
    this.cutAll();
    return new Promise((r) => this.server.close(r));
  }
}
