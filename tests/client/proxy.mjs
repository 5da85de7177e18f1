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
      if (pair.first) {
        pair.first = false;
        const head = d.toString("latin1");
        if (this.page && head.startsWith("GET /test.html ")) {
          // The browser tests' page, from this origin (so /client/herald.js is same-origin).
          const body = Buffer.from(this.page);
          client.end(`HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: ${body.length}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n` + this.page);
          upstream.destroy();
          return;
        }
        if (this.mode.refuseUpgrades && /^upgrade:\s*websocket/im.test(head)) {
          // What a proxy that does not pass upgrades answers.
          client.end("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
          upstream.destroy();
          return;
        }
        pair.buffer = this.mode.buffer && /^GET \/sse/.test(head);
      }
      upstream.write(d);
    });
    upstream.on("data", (d) => {
      if (pair.buffer || this.mode.swallow) return; // held (a buffering proxy) or lost
      client.write(d);
    });
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
