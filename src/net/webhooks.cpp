// Webhooks: bounded queues per webhook and worker, signed batches, retries with backoff.
#include "herald/net/webhooks.hpp"

#include "herald/wire/envelope.hpp"
#include "herald/wire/topic.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <spdlog/spdlog.h>

#include <algorithm>

namespace herald::net {

namespace {
constexpr milliseconds k_first_backoff{250};
constexpr auto k_drop_log_interval = std::chrono::seconds(10);

std::int64_t unix_ms() {
    return std::chrono::duration_cast<milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}
}  // namespace

std::string hmac_sha256_hex(std::string_view key, std::string_view message) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
              reinterpret_cast<const unsigned char*>(message.data()), message.size(), mac, &len))
        return {};
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * len);
    for (unsigned i = 0; i < len; ++i) {
        out += hex[mac[i] >> 4];
        out += hex[mac[i] & 15];
    }
    return out;
}

struct webhook_emitter::sink : std::enable_shared_from_this<sink> {
    sink(asio::io_context& ioc, const config::settings::webhook& s, http_target t,
         std::size_t capacity, http_client& c, webhook_counters& n, unsigned seed)
        : spec(s),
          target(std::move(t)),
          cap(capacity),
          timer(ioc),
          client(c),
          counters(n),
          rng(seed) {}

    const config::settings::webhook& spec;
    http_target target;
    std::size_t cap;
    std::deque<std::string> queue;  // serialised events; the batch in flight is at the front
    asio::steady_timer timer;
    http_client& client;
    webhook_counters& counters;
    std::minstd_rand rng;
    bool sending = false;
    bool timer_armed = false;
    unsigned attempt = 0;  // failures in a row of the batch at the front
    time_point last_drop_log{};
    std::uint64_t drops_unlogged = 0;

    [[nodiscard]] bool takes(std::string_view type, std::string_view topic) const {
        if (std::find(spec.events.begin(), spec.events.end(), type) == spec.events.end())
            return false;
        return topic.empty() || spec.patterns.empty() || wire::any_match(spec.patterns, topic);
    }

    void push(const std::string& event) {
        if (queue.size() >= cap) {
            counters.dropped.add();
            ++drops_unlogged;
            const auto now = clock::now();
            if (now - last_drop_log >= k_drop_log_interval) {
                spdlog::warn("webhook {}: queue full ({} events); dropped {} event(s)", spec.url,
                             cap, drops_unlogged);
                drops_unlogged = 0;
                last_drop_log = now;
            }
            return;
        }
        queue.push_back(event);
        counters.queued.add();
        counters.pending.add();
        if (sending || attempt > 0) return;  // the answer or the backoff timer goes on
        if (queue.size() >= spec.batch_size) {
            if (timer_armed) timer.cancel();
            timer_armed = false;
            send();
        } else if (!timer_armed) {
            arm(spec.batch_interval);
        }
    }

    void arm(milliseconds d) {
        timer_armed = true;
        timer.expires_after(d);
        timer.async_wait([self = shared_from_this()](error_code ec) {
            if (ec) return;
            self->timer_armed = false;
            if (!self->sending && !self->queue.empty()) self->send();
        });
    }

    void send() {
        sending = true;
        const std::size_t n = std::min(queue.size(), spec.batch_size);
        std::string body = "{\"events\":[";
        for (std::size_t i = 0; i < n; ++i) {
            if (i) body += ',';
            body += queue[i];
        }
        body += "]}";
        const auto ts = std::to_string(unix_ms() / 1000);
        const auto sig = hmac_sha256_hex(spec.secret, ts + "." + body);
        http_call c{std::move(body),
                    {{"X-Herald-Timestamp", ts},
                     {"X-Herald-Signature", "sha256=" + sig},
                     {"X-Herald-Attempt", std::to_string(attempt + 1)}},
                    spec.timeout};
        client.post(target, std::move(c),
                    [self = shared_from_this(), n](http_answer a) { self->on_answer(n, a); });
    }

    void on_answer(std::size_t n, const http_answer& a) {
        sending = false;
        if (a.status == call_status::ok && a.code >= 200 && a.code <= 299) {
            queue.erase(queue.begin(), queue.begin() + static_cast<std::ptrdiff_t>(n));
            counters.delivered.add(static_cast<std::int64_t>(n));
            counters.pending.add(-static_cast<std::int64_t>(n));
            attempt = 0;
            if (queue.size() >= spec.batch_size)
                send();
            else if (!queue.empty() && !timer_armed)
                arm(spec.batch_interval);
            return;
        }
        counters.failures.add();
        if (attempt == 0)
            spdlog::warn("webhook {}: delivery failed ({}{}); retrying with backoff", spec.url,
                         to_string(a.status),
                         a.status == call_status::ok ? ", HTTP " + std::to_string(a.code) : "");
        ++attempt;
        // Exponential backoff, capped, with jitter (half to all of it) so that the workers and
        // instances that failed together do not retry together.
        const auto exp = std::min<unsigned>(attempt - 1, 16);
        const auto full =
            std::min<long long>(k_first_backoff.count() << exp, spec.max_backoff.count());
        std::uniform_int_distribution<long long> jitter(full / 2, full);
        if (timer_armed) timer.cancel();
        arm(milliseconds(jitter(rng)));
    }
};

webhook_emitter::webhook_emitter(asio::io_context& ioc, unsigned worker, unsigned workers,
                                 const config::settings& cfg, webhook_counters& counters,
                                 std::string instance)
    : worker_(worker),
      instance_(std::move(instance)),
      // One batch in flight per webhook; the breaker does not apply (backoff does its job).
      client_(ioc, client_limits{4, 64, 64 * 1024, ~0u, milliseconds(1000)}) {
    for (std::size_t i = 0; i < cfg.webhooks.size(); ++i) {
        const auto& w = cfg.webhooks[i];
        auto t = parse_http_url(w.url);
        if (!t)
            throw config::config_error("webhooks[" + std::to_string(i) + "].url",
                                       "expected http://host[:port]/path, got '" + w.url + "'");
        const std::size_t cap = std::max<std::size_t>(1, w.max_queue / std::max(1u, workers));
        sinks_.push_back(std::make_shared<sink>(ioc, w, std::move(*t), cap, client_, counters,
                                                worker * 7919u + static_cast<unsigned>(i)));
    }
}

webhook_emitter::~webhook_emitter() = default;

bool webhook_emitter::wants(std::string_view type) const noexcept {
    for (const auto& s : sinks_)
        if (std::find(s->spec.events.begin(), s->spec.events.end(), type) != s->spec.events.end())
            return true;
    return false;
}

void webhook_emitter::emit(std::string_view type, std::string_view topic, std::string_view fields) {
    std::string event;
    for (auto& s : sinks_) {
        if (!s->takes(type, topic)) continue;
        if (event.empty()) {
            // The id names this instance, worker and sequence: unique, and the same on every
            // retry of the batch that carries it.
            event = "{\"id\":\"" + instance_ + "-" + std::to_string(worker_) + "-" +
                    std::to_string(++next_id_) + "\",\"type\":" + wire::json_quote(type) +
                    ",\"time\":" + std::to_string(unix_ms());
            if (!topic.empty()) event += ",\"topic\":" + wire::json_quote(topic);
            if (!fields.empty()) {
                event += ',';
                event += fields;
            }
            event += '}';
        }
        s->push(event);
    }
}

void webhook_emitter::disconnect(std::string_view transport, std::string_view user,
                                 std::string_view address, disconnect_reason reason,
                                 const std::vector<std::string_view>& topics) {
    if (!wants("disconnect")) return;
    std::string f = "\"reason\":\"";
    f += to_string(reason);
    f += "\",\"client\":{\"transport\":" + wire::json_quote(transport) +
         ",\"user\":" + wire::json_quote(user) + ",\"address\":" + wire::json_quote(address) +
         "},\"topics\":[";
    for (std::size_t i = 0; i < topics.size(); ++i) {
        if (i) f += ',';
        f += wire::json_quote(topics[i]);
    }
    f += ']';
    emit("disconnect", {}, f);
}

void webhook_emitter::publish(std::string_view topic, std::string_view epoch, std::uint64_t offset,
                              std::string_view transport, std::string_view user) {
    if (!wants("publish")) return;
    emit("publish", topic,
         "\"epoch\":" + wire::json_quote(epoch) + ",\"offset\":" + std::to_string(offset) +
             ",\"publisher\":{\"transport\":" + wire::json_quote(transport) +
             ",\"user\":" + wire::json_quote(user) + "}");
}

}  // namespace herald::net

namespace herald::net {

std::vector<metrics::registry::gauge> webhook_metrics(
    const std::vector<std::unique_ptr<webhook_counters>>& workers) {
    const auto sum = [&workers](metrics::counter webhook_counters::*m) {
        std::int64_t n = 0;
        for (const auto& w : workers) n += ((*w).*m).get();
        return static_cast<double>(n);
    };
    return {
        {"herald_webhook_events_queued_total", "Webhook events queued (once per webhook).",
         sum(&webhook_counters::queued), "counter"},
        {"herald_webhook_events_delivered_total", "Webhook events the receiver acknowledged.",
         sum(&webhook_counters::delivered), "counter"},
        {"herald_webhook_events_dropped_total",
         "Webhook events dropped because the webhook's queue was full (webhooks[].max_queue).",
         sum(&webhook_counters::dropped), "counter"},
        {"herald_webhook_failures_total",
         "Webhook batch attempts without a 2xx answer (each is retried).",
         sum(&webhook_counters::failures), "counter"},
        {"herald_webhook_queue_events", "Webhook events waiting to be delivered.",
         sum(&webhook_counters::pending)},
    };
}

}  // namespace herald::net
