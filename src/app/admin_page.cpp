// The admin page (docs/operations.md, "Admin page"): GET /admin (a login form, or with a valid
// session the page), POST /admin/login (an API key for a session cookie) and GET /admin/stats
// (the live figures the page polls). Off unless admin.enabled (api.cpp answers 404).
#include "api.hpp"

#include "herald/auth/admin_session.hpp"
#include "herald/auth/context.hpp"
#include "herald/net/http_util.hpp"

#include <nlohmann/json.hpp>

#include <chrono>

namespace herald::app {

using json = nlohmann::json;
using metrics::reject;

namespace {
constexpr std::string_view k_html = "text/html; charset=utf-8";
// The page and the form are never cached, never framed, and run no script but their own.
constexpr std::string_view k_page_headers =
    "Cache-Control: no-store\r\nX-Frame-Options: DENY\r\nX-Content-Type-Options: nosniff\r\n"
    "Content-Security-Policy: default-src 'none'; script-src 'unsafe-inline'; style-src "
    "'unsafe-inline'; connect-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'\r\n";

std::string login_form(std::string_view note) {
    std::string s =
        R"(<!doctype html><html><head><meta charset="utf-8"><title>herald admin: log in</title>
<style>body{font:15px system-ui,sans-serif;margin:3em auto;max-width:24em}input{font:inherit;padding:.3em;width:100%;box-sizing:border-box;margin:.3em 0}.note{color:#b00}</style>
</head><body><h1>herald admin</h1>)";
    if (!note.empty()) s += "<p class=\"note\" id=\"note\">" + std::string(note) + "</p>";
    s +=
        R"(<form method="post" action="/admin/login"><label>API key<input type="password" name="key" id="key" autocomplete="current-password" autofocus></label><input type="submit" id="login" value="Log in"></form></body></html>)";
    return s;
}

// The page: figures filled in by its script from /admin/stats, polled every second.
constexpr std::string_view k_page_head =
    R"(<!doctype html><html><head><meta charset="utf-8"><title>herald admin</title>
<meta name="herald-csrf" content=")";
constexpr std::string_view k_page_body = R"(">
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}h1{margin:0 0 .5em}h2{font-size:1.05em;margin:1.2em 0 .4em}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(11em,1fr));gap:.6em}
.card{border:1px solid #ccc;border-radius:6px;padding:.5em .7em}.card b{display:block;font-size:1.5em}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2em .6em;text-align:right}
input,button{font:inherit}pre{background:#f4f4f4;padding:.5em;max-height:14em;overflow:auto;white-space:pre-wrap;word-break:break-all}
#broker.ok{color:#070}#broker.bad{color:#b00}
</style></head><body>
<h1>herald admin</h1>
<div class="grid">
<div class="card">WebSocket<b id="conn-ws">-</b></div><div class="card">SSE<b id="conn-sse">-</b></div>
<div class="card">long-poll<b id="conn-poll">-</b></div><div class="card">HTTP<b id="conn-http">-</b></div>
<div class="card">published /s<b id="pub-rate">-</b></div><div class="card">delivered /s<b id="del-rate">-</b></div>
<div class="card">published total<b id="pub-total">-</b></div><div class="card">delivered total<b id="del-total">-</b></div>
<div class="card">delivery p50<b id="lat-p50">-</b></div><div class="card">delivery p90<b id="lat-p90">-</b></div>
<div class="card">delivery p99<b id="lat-p99">-</b></div><div class="card">broker<b id="broker">-</b></div>
</div>
<h2>Rates (last 60 s)</h2><canvas id="chart" width="720" height="180" style="border:1px solid #ccc"></canvas>
<div><span style="color:#06c">&#9632; published/s</span> <span style="color:#c60">&#9632; delivered/s</span></div>
<h2>Workers</h2><table id="workers"><thead><tr><th>worker</th><th>connections</th><th>queued bytes</th><th>loop lag p99</th><th>loop lag mean</th></tr></thead><tbody></tbody></table>
<h2>Busiest topics</h2><p id="busy-note"></p>
<div style="display:flex;gap:2em;flex-wrap:wrap"><table id="busy-rate"><thead><tr><th>by messages/s</th><th>/s</th><th>subscribers</th></tr></thead><tbody></tbody></table>
<table id="busy-subs"><thead><tr><th>by subscribers</th><th>/s</th><th>subscribers</th></tr></thead><tbody></tbody></table></div>
<h2>Topic</h2><form id="topic-form"><input id="topic" placeholder="chat:room1" required> <button>Look up</button></form><pre id="topic-out"></pre>
<h2>Publish a test message</h2><form id="pub-form"><input id="pub-topic" placeholder="topic" required> <input id="pub-data" placeholder='{"text":"hello"}' value='{"test":true}'> <button>Publish</button></form><pre id="pub-out"></pre>
<h2>Disconnect a user</h2><form id="dis-form"><input id="dis-user" placeholder="sub of the user's tokens" required> <button>Disconnect</button></form><pre id="dis-out"></pre>
<script>
"use strict";
const csrf = document.querySelector('meta[name="herald-csrf"]').content;
const $ = (id) => document.getElementById(id);
const hist = [];  // {pub, del} per second, the last 60
let last = null;
function secs(s) { return s == null ? "-" : s < 0.001 ? (s * 1e6).toFixed(0) + " us" : s < 1 ? (s * 1e3).toFixed(1) + " ms" : s.toFixed(2) + " s"; }
function draw() {
  const c = $("chart"), g = c.getContext("2d");
  g.clearRect(0, 0, c.width, c.height);
  const max = Math.max(1, ...hist.map((h) => Math.max(h.pub, h.del)));
  g.fillStyle = "#888"; g.font = "11px sans-serif"; g.fillText(max.toFixed(0) + "/s", 4, 12);
  for (const [key, colour] of [["pub", "#06c"], ["del", "#c60"]]) {
    g.strokeStyle = colour; g.lineWidth = 2; g.beginPath();
    hist.forEach((h, i) => {
      const x = ((60 - hist.length + i) / 59) * (c.width - 4) + 2, y = c.height - 4 - (h[key] / max) * (c.height - 20);
      i ? g.lineTo(x, y) : g.moveTo(x, y);
    });
    g.stroke();
  }
}
async function poll() {
  try {
    const r = await fetch("/admin/stats", { cache: "no-store" });
    if (r.status === 401) { location.href = "/admin"; return; }
    const s = await r.json(), now = performance.now();
    for (const t of ["ws", "sse", "poll", "http"]) $("conn-" + t).textContent = s.connections[t];
    $("pub-total").textContent = s.published; $("del-total").textContent = s.delivered;
    if (last) {
      const dt = (now - last.at) / 1000;
      const pub = Math.max(0, (s.published - last.published) / dt), del = Math.max(0, (s.delivered - last.delivered) / dt);
      $("pub-rate").textContent = pub.toFixed(1); $("del-rate").textContent = del.toFixed(1);
      hist.push({ pub, del }); if (hist.length > 60) hist.shift(); draw();
    }
    last = { at: now, published: s.published, delivered: s.delivered };
    for (const q of ["p50", "p90", "p99"]) $("lat-" + q).textContent = secs(s.delivery_latency[q]);
    const b = $("broker"); b.textContent = s.readiness.body.status; b.className = s.readiness.status === 200 ? "ok" : "bad";
    b.title = JSON.stringify(s.readiness.body);
    const rows = s.workers.map((w) => `<tr><td>${w.worker}</td><td>${w.connections}</td><td>${w.queued_bytes}</td><td>${secs(w.loop_lag_p99)}</td><td>${secs(w.loop_lag_mean)}</td></tr>`);
    document.querySelector("#workers tbody").innerHTML = rows.join("");
    for (const [id, list] of [["busy-rate", s.busiest.by_rate], ["busy-subs", s.busiest.by_subscribers]]) {
      const body = document.querySelector("#" + id + " tbody");
      body.replaceChildren(...list.map((t) => {
        const tr = document.createElement("tr");
        for (const v of [t.topic, t.rate.toFixed(1), t.subscribers]) { const td = document.createElement("td"); td.textContent = v; tr.append(td); }
        return tr;
      }));
    }
    $("busy-note").textContent = s.busiest.topics + " topics with subscribers; " + s.busiest.scanned + " looked at";
    document.body.dataset.polls = String(Number(document.body.dataset.polls || 0) + 1);
  } catch (e) { $("broker").textContent = "unreachable"; $("broker").className = "bad"; }
}
async function call(out, url, opts) {
  try {
    const r = await fetch(url, opts);
    $(out).textContent = r.status + "\n" + (await r.text());
  } catch (e) { $(out).textContent = String(e); }
}
const post = (body, type) => ({ method: "POST", body, headers: { "Content-Type": type, "X-Herald-CSRF": csrf } });
$("topic-form").onsubmit = async (e) => {
  e.preventDefault();
  const t = encodeURIComponent($("topic").value).replace(/%3A/gi, ":");
  const [h, p] = await Promise.all([fetch("/history/" + t + "?limit=10"), fetch("/presence/" + t + "/count")]);
  $("topic-out").textContent = "history " + h.status + ": " + (await h.text()) + "\npresence " + p.status + ": " + (await p.text());
};
$("pub-form").onsubmit = (e) => {
  e.preventDefault();
  call("pub-out", "/publish/" + encodeURIComponent($("pub-topic").value).replace(/%3A/gi, ":"), post($("pub-data").value, "application/json"));
};
$("dis-form").onsubmit = (e) => {
  e.preventDefault();
  call("dis-out", "/admin/disconnect", post(JSON.stringify({ user: $("dis-user").value }), "application/json"));
};
poll(); setInterval(poll, 1000);
</script></body></html>)";

// Quantile `q` of a histogram, interpolated linearly in its bucket as Prometheus'
// histogram_quantile does; nullopt when it is empty. Above the last bound: that bound.
std::optional<double> quantile(const metrics::histogram_totals& h, double q) {
    std::int64_t total = 0;
    for (auto b : h.buckets) total += b;
    if (total == 0) return std::nullopt;
    const double rank = q * static_cast<double>(total);
    const auto& bounds = metrics::histogram::k_bounds_ns;
    std::int64_t seen = 0;
    for (std::size_t b = 0; b < h.buckets.size(); ++b) {
        if (static_cast<double>(seen + h.buckets[b]) >= rank && h.buckets[b] > 0) {
            if (b == bounds.size()) return static_cast<double>(bounds.back()) / 1e9;
            const double lo = b == 0 ? 0.0 : static_cast<double>(bounds[b - 1]);
            const double hi = static_cast<double>(bounds[b]);
            const double frac =
                (rank - static_cast<double>(seen)) / static_cast<double>(h.buckets[b]);
            return (lo + (hi - lo) * frac) / 1e9;
        }
        seen += h.buckets[b];
    }
    return static_cast<double>(bounds.back()) / 1e9;
}

json loads_json(const std::vector<hub::topic_load>& v) {
    json out = json::array();
    for (const auto& t : v)
        out.push_back({{"topic", t.topic}, {"rate", t.rate}, {"subscribers", t.subscribers}});
    return out;
}

json or_null(std::optional<double> v) {
    return v ? json(*v) : json(nullptr);
}

// The session cookie of a request, when it is valid.
std::optional<std::string> session_of(const net::worker_context& w, const net::http_request& req) {
    const auth::credentials cred{{}, req.header("Cookie"), {}, {}, false};
    if (w.auth->admin_session(cred) != auth::context::session_use::ok) return std::nullopt;
    return std::string(*auth::cookie_value(req.header("Cookie"), auth::k_admin_cookie));
}
}  // namespace

void api::admin_page(net::worker_context& w, const net::http_request& req, net::responder r) {
    const auto session = session_of(w, req);
    if (!session) {
        r.send(200, k_html, login_form(""), k_page_headers);
        return;
    }
    std::string page(k_page_head);
    page += auth::admin_csrf_token(*session);  // hex: nothing to escape
    page += k_page_body;
    r.send(200, k_html, page, k_page_headers);
}

void api::admin_login(net::worker_context& w, const net::http_request& req, net::responder r) {
    // The form's body: key=<percent-encoded API key> (application/x-www-form-urlencoded).
    std::optional<std::string> key;
    std::string_view body = req.body();
    while (!body.empty()) {
        const auto amp = body.find('&');
        const auto part = body.substr(0, amp);
        if (part.starts_with("key=")) key = net::percent_decode(part.substr(4), true);
        body = amp == std::string_view::npos ? std::string_view{} : body.substr(amp + 1);
    }
    const auto idx = key && !key->empty() ? w.auth->publish_keys.match(*key) : std::nullopt;
    if (!idx) {
        w.counters.inc(reject::unauthorized);
        w.auth->audit->auth_failure("unauthorized", "admin login: invalid API key", req.client_ip,
                                    req.target.path);
        r.send(401, k_html, login_form("Wrong API key."), k_page_headers);
        return;
    }
    w.auth->audit->admin_action("login", "ok", "key#" + std::to_string(*idx), req.client_ip);
    const auto ttl = std::chrono::duration_cast<std::chrono::seconds>(cfg_.admin.session_ttl);
    const bool tls = !cfg_.tls.cert.empty() && !cfg_.tls.key.empty();
    const auto session = auth::make_admin_session(std::chrono::system_clock::now() + ttl);
    r.send(303, "text/plain", "logged in\n",
           "Location: /admin\r\nCache-Control: no-store\r\nSet-Cookie: " +
               std::string(auth::k_admin_cookie) + "=" + session +
               "; Path=/; HttpOnly; SameSite=Strict; Max-Age=" + std::to_string(ttl.count()) +
               (tls ? "; Secure" : "") + "\r\n");
}

void api::admin_stats(net::worker_context& w, net::responder r) {
    if (!busiest_) {
        admin_stats_answer(r, {});
        return;
    }
    busiest_(w.id, [this, r](hub::busiest_topics b) { admin_stats_answer(r, std::move(b)); });
}

void api::admin_stats_answer(net::responder r, hub::busiest_topics busiest) {
    // Read like /metrics: every worker's counters with relaxed loads, no lock.
    json conns = json::object();
    for (auto t : {metrics::transport::http, metrics::transport::ws, metrics::transport::sse,
                   metrics::transport::poll})
        conns[metrics::to_string(t)] = metrics_.open_connections(t);
    std::int64_t published = 0;
    std::int64_t delivered = 0;
    metrics::histogram_totals latency;
    json workers = json::array();
    for (unsigned i = 0; i < cfg_.effective_workers(); ++i) {
        const auto& c = metrics_.at(i);
        published += c.messages_published.get();
        delivered += c.frames_delivered.get();
        std::int64_t open = 0;
        for (const auto& h : c.delivery_latency) latency.add(h);
        for (const auto& n : c.connections) open += n.get();
        metrics::histogram_totals lag;
        lag.add(c.loop_lag);
        std::int64_t lag_count = 0;
        for (auto b : lag.buckets) lag_count += b;
        workers.push_back({{"worker", i},
                           {"connections", open},
                           {"queued_bytes", c.queued_bytes.get()},
                           {"loop_lag_p99", or_null(quantile(lag, 0.99))},
                           {"loop_lag_mean", lag_count ? json(static_cast<double>(lag.sum_ns) /
                                                              1e9 / static_cast<double>(lag_count))
                                                       : json(nullptr)}});
    }
    const auto [status, body] = readiness();
    const json out = {
        {"connections", conns},
        {"published", published},
        {"delivered", delivered},
        {"delivery_latency",
         {{"p50", or_null(quantile(latency, 0.5))},
          {"p90", or_null(quantile(latency, 0.9))},
          {"p99", or_null(quantile(latency, 0.99))}}},
        {"workers", workers},
        {"busiest",
         {{"by_rate", loads_json(busiest.by_rate)},
          {"by_subscribers", loads_json(busiest.by_subscribers)},
          {"scanned", busiest.scanned},
          {"topics", busiest.topics}}},
        {"readiness", {{"status", status}, {"body", json::parse(body, nullptr, false)}}},
    };
    r.send(200, "application/json", out.dump(), "Cache-Control: no-store\r\n");
}

}  // namespace herald::app
