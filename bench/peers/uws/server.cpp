// uws-peer: the uWebSockets peer of herald's benchmark (bench/run.sh, issue 15).
//
// A minimal single-threaded pub/sub server on uWebSockets + uSockets (built from pinned upstream
// commits by build.sh; no upstream code lives in herald's tree) with herald's URL contract:
//   GET  /ws?topic=T        WebSocket subscriber of topic T
//   GET  /sse?topic=T       Server-Sent Events subscriber of topic T
//   POST /publish/{topic}   body delivered to every subscriber of the topic
//   GET  /healthz           "ok" (run.sh waits for it)
//
// What a subscriber receives mirrors herald (history.size 0) closely, so herald-bench counts
// deliveries the same way and the frames are about as long:
//   WebSocket: one text frame per message,
//     {"type":"message","topic":"T","epoch":"E","offset":N,"data":"<body as a JSON string>"}
//   SSE: "retry: 2000\n\n" once, then per message "id: E:N\n" and one "data: " line per body line.
//   Publish answer: 200 {"topic":"T","epoch":"E","offset":N,"subscribers":S}.
// Differences from herald, on purpose: uWS writes SSE with chunked transfer encoding (its
// HttpResponse::write; herald writes the stream unframed until close), about 6-8 bytes more per
// write; no history, no auth, no limits beyond those below, one thread (uWS's best case).
//
// Each message's WebSocket frame is built once and fanned out by uWS's TopicTree, which queues it
// per subscriber and writes a subscriber's queue in one send at the end of the loop iteration.
// SSE subscribers get the same treatment here: a message's event text is appended to each
// subscriber's pending buffer and the buffers are written in a loop post-handler, one write per
// subscriber per iteration.
//
// Usage: uws-peer PORT   (listens on 127.0.0.1:PORT; SIGTERM ends it)

#include "App.h"

#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace {

constexpr std::string_view epoch = "uws00001";
constexpr size_t max_body = 1 << 20;                // like nchan.conf.in's client_max_body_size
constexpr unsigned max_ws_backpressure = 4u << 20;  // herald's limits.max_queued_bytes in run.sh

struct ws_data {
    std::string topic;
};

struct topic_state;

struct sse_sub {
    uWS::HttpResponse<false>* res;
    topic_state* topic;
    size_t index;         // position in topic->sse
    std::string pending;  // events not yet written this loop iteration
    bool dirty = false;   // listed in dirty_subs
    bool dead = false;    // aborted while listed; freed after the next flush
};

struct topic_state {
    uint64_t offset = 0;
    std::vector<sse_sub*> sse;
};

std::unordered_map<std::string, topic_state> topics;
std::vector<sse_sub*> dirty_subs;

void append_json_string(std::string& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    out += '"';
    size_t run = 0;
    for (size_t i = 0; i < s.size(); ++i) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        out.append(s.data() + run, i - run);
        run = i + 1;
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                out += "\\u00";
                out += hex[c >> 4];
                out += hex[c & 15];
        }
    }
    out.append(s.data() + run, s.size() - run);
    out += '"';
}

// "topic":"T","epoch":"E","offset":N (the message envelope and the publish answer share it)
void append_position(std::string& out, std::string_view topic, std::string_view offset) {
    out += "\"topic\":";
    append_json_string(out, topic);
    out += ",\"epoch\":\"";
    out += epoch;
    out += "\",\"offset\":";
    out += offset;
}

// "id: E:N\n" + one "data: " line per line of the body (split at CR, LF, CRLF) + "\n".
std::string sse_event(std::string_view body, uint64_t offset) {
    std::string ev;
    ev.reserve(body.size() + 40);
    ev += "id: ";
    ev += epoch;
    ev += ':';
    ev += std::to_string(offset);
    ev += '\n';
    size_t start = 0;
    for (size_t i = 0; i <= body.size(); ++i) {
        if (i < body.size() && body[i] != '\r' && body[i] != '\n') continue;
        ev += "data: ";
        ev.append(body.data() + start, i - start);
        ev += '\n';
        if (i + 1 < body.size() && body[i] == '\r' && body[i + 1] == '\n') ++i;
        start = i + 1;
    }
    ev += '\n';
    return ev;
}

void flush_sse() {
    for (sse_sub* s : dirty_subs) {
        if (s->dead) {
            delete s;
            continue;
        }
        s->dirty = false;
        // Corked: the chunk header and the events leave in one send; uWS buffers what the
        // socket does not take.
        s->res->cork([s] { s->res->write(s->pending); });
        s->pending.clear();
    }
    dirty_subs.clear();
}

void remove_sse(sse_sub* s) {
    auto& v = s->topic->sse;
    v[s->index] = v.back();
    v[s->index]->index = s->index;
    v.pop_back();
    if (s->dirty)
        s->dead = true;  // flush_sse frees it
    else
        delete s;
}

void raise_fd_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: uws-peer PORT\n");
        return 2;
    }
    const int port = std::atoi(argv[1]);
    raise_fd_limit();

    uWS::App app;
    app.ws<ws_data>("/ws", {.compression = uWS::DISABLED,
                            .maxPayloadLength = 16 * 1024,
                            .idleTimeout = 120,
                            .maxBackpressure = max_ws_backpressure,
                            .closeOnBackpressureLimit = true,
                            .resetIdleTimeoutOnSend = false,
                            .sendPingsAutomatically = true,
                            .upgrade =
                                [](auto* res, auto* req, auto* context) {
                                    std::string_view topic = req->getQuery("topic");
                                    if (topic.empty()) {
                                        res->writeStatus("400 Bad Request")->end("topic missing\n");
                                        return;
                                    }
                                    res->template upgrade<ws_data>(
                                        {std::string(topic)}, req->getHeader("sec-websocket-key"),
                                        req->getHeader("sec-websocket-protocol"),
                                        req->getHeader("sec-websocket-extensions"), context);
                                },
                            .open = [](auto* ws) { ws->subscribe(ws->getUserData()->topic); },
                            .message = [](auto*, std::string_view, uWS::OpCode) {}})
        .get("/sse",
             [](auto* res, auto* req) {
                 std::string_view topic = req->getQuery("topic");
                 if (topic.empty()) {
                     res->writeStatus("400 Bad Request")->end("topic missing\n");
                     return;
                 }
                 topic_state& t = topics[std::string(topic)];
                 auto* s = new sse_sub{res, &t, t.sse.size(), {}};
                 t.sse.push_back(s);
                 res->onAborted([s] { remove_sse(s); });
                 res->writeHeader("Content-Type", "text/event-stream")
                     ->writeHeader("Cache-Control", "no-cache, no-transform")
                     ->writeHeader("X-Accel-Buffering", "no")
                     ->write("retry: 2000\n\n");
             })
        .post("/publish/:topic",
              [&app](auto* res, auto* req) {
                  auto body = std::make_shared<std::string>();
                  auto too_large = std::make_shared<bool>(false);
                  std::string topic(req->getParameter(0));
                  res->onAborted([] {});
                  res->onData([&app, res, body, too_large, topic = std::move(topic)](
                                  std::string_view chunk, bool last) {
                      if (body->size() + chunk.size() > max_body) {
                          *too_large = true;  // read to the end, answer once
                          body->clear();
                      } else if (!*too_large) {
                          body->append(chunk);
                      }
                      if (!last) return;
                      if (*too_large) {
                          res->writeStatus("413 Payload Too Large")->end("too large\n");
                          return;
                      }
                      topic_state& t = topics[topic];
                      const uint64_t offset = ++t.offset;
                      const std::string off = std::to_string(offset);
                      std::string frame;
                      frame.reserve(body->size() + topic.size() + 80);
                      frame += "{\"type\":\"message\",";
                      append_position(frame, topic, off);
                      frame += ",\"data\":";
                      append_json_string(frame, *body);
                      frame += '}';
                      app.publish(topic, frame, uWS::OpCode::TEXT);
                      if (!t.sse.empty()) {
                          const std::string ev = sse_event(*body, offset);
                          for (sse_sub* s : t.sse) {
                              s->pending += ev;
                              if (!s->dirty) {
                                  s->dirty = true;
                                  dirty_subs.push_back(s);
                              }
                          }
                      }
                      const size_t subscribers = app.numSubscribers(topic) + t.sse.size();
                      std::string answer = "{";
                      append_position(answer, topic, off);
                      answer += ",\"subscribers\":";
                      answer += std::to_string(subscribers);
                      answer += '}';
                      res->writeHeader("Content-Type", "application/json")->end(answer);
                  });
              })
        .get("/healthz", [](auto* res, auto*) { res->end("ok\n"); })
        .any("/*", [](auto* res, auto*) { res->writeStatus("404 Not Found")->end("not found\n"); })
        .listen("127.0.0.1", port, [port](auto* ls) {
            if (!ls) {
                std::fprintf(stderr, "uws-peer: cannot listen on 127.0.0.1:%d\n", port);
                std::exit(1);
            }
            std::fprintf(stderr, "uws-peer: listening on 127.0.0.1:%d\n", port);
        });
    uWS::Loop::get()->addPostHandler(&dirty_subs, [](uWS::Loop*) { flush_sse(); });
    app.run();
    return 0;
}
