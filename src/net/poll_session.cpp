#include "poll_session.hpp"

#include "herald/auth/context.hpp"
#include "herald/wire/envelope.hpp"

namespace herald::net {

poll_session::poll_session(poll_owner& owner, worker_context& w, std::uint64_t seq, bool keep_alive,
                           const std::vector<std::string>& topics,
                           const std::optional<std::vector<wire::stream_pos>>& since,
                           std::string stream_ip, std::string user)
    : owner_(owner),
      w_(w),
      seq_(seq),
      keep_alive_(keep_alive),
      deadline_(clock::now() + w.cfg.poll.timeout),
      stream_ip_(std::move(stream_ip)),
      user_(std::move(user)) {
    for (std::size_t i = 0; i < topics.size(); ++i) {
        auto t = std::make_unique<poll_topic>();
        t->owner = this;
        t->topic = topics[i];
        t->tag = static_cast<std::uint32_t>(i);
        if (since) {
            t->resume_from((*since)[i]);
            t->resumed = true;
        }
        topics_.push_back(std::move(t));
    }
}

poll_session::~poll_session() {
    cancel();
}

void poll_session::start() {
    for (auto& t : topics_) w_.shard.subscribe(*t);
}

void poll_session::release_stream() noexcept {
    if (w_.auth && !stream_ip_.empty()) w_.auth->release_stream(stream_ip_);
    stream_ip_.clear();
}

void poll_session::cancel() noexcept {
    for (auto& t : topics_) w_.shard.unsubscribe(*t);  // a no-op when not subscribed
    release_stream();
}

std::string poll_session::topic_answer(const poll_topic& t, const std::string& epoch,
                                       std::uint64_t cursor, std::size_t& budget) {
    // The messages first: an answer stays within half the connection's output budget, and the
    // cursor then names the last message it carries (the next poll continues from there).
    std::string list = "[]";
    std::size_t taken = 0;
    if (budget > 0) {
        list.clear();
        taken = hub::append_messages_json(list, t.messages, budget);
        budget -= std::min(budget, list.size());
    }
    const auto now = clock::now();
    for (std::size_t i = 0; i < taken; ++i)
        if (t.live(*t.messages[i]))
            w_.counters.delivered(metrics::transport::poll, t.messages[i]->created, now);
    if (taken < t.messages.size())
        cursor = taken > 0 ? t.messages[taken - 1]->offset : t.messages[0]->offset - 1;
    std::string body = "{\"topic\":\"" + t.topic + "\",\"epoch\":\"" + epoch + "\"";
    if (t.resumed || t.resume_failed)
        body += std::string(",\"recovered\":") + (t.resume_failed ? "false" : "true");
    if (t.resume_failed) body += ",\"reason\":" + wire::json_quote(t.reason);
    body += ",\"cursor\":\"" + epoch + ":" + std::to_string(cursor) + "\",\"messages\":";
    body += list;
    if (taken < t.messages.size()) body += ",\"more\":true";
    body += '}';
    return body;
}

std::string poll_session::finish() {
    // Read the positions before unsubscribing (which deactivates the subscriptions).
    std::vector<std::pair<std::string, std::uint64_t>> at;
    at.reserve(topics_.size());
    for (const auto& t : topics_)
        at.emplace_back(
            t->epoch.empty() && t->since() ? std::string_view(t->since()->epoch) : t->epoch.view(),
            t->active ? t->last_offset : (t->since() ? t->since()->offset : 0));
    cancel();
    std::size_t budget = w_.cfg.limits.max_queued_bytes / 2;
    if (topics_.size() == 1) return topic_answer(*topics_[0], at[0].first, at[0].second, budget);
    std::string body = "{\"topics\":[";
    for (std::size_t i = 0; i < topics_.size(); ++i) {
        if (i) body += ',';
        body += topic_answer(*topics_[i], at[i].first, at[i].second, budget);
    }
    body += "]}";
    return body;
}

void poll_session::answer_soon() {
    // Not before every topic is subscribed: a resume of several topics then gets every replay in
    // one answer (each replay follows its topic's on_subscribed in the same loop turn).
    want_answer_ = true;
    if (answer_asked_ || answered_ < topics_.size()) return;
    answer_asked_ = true;
    owner_.on_poll_due();
}

void poll_session::on_subscribed(hub::subscription& s, const hub::subscribe_result& r) {
    ++answered_;
    if (want_answer_) answer_soon();
    w_.record_subscribe(s, r, metrics::transport::poll, nullptr);
    if (!r.resume_requested || r.recovered) return;
    auto& t = static_cast<poll_topic&>(s);
    t.resume_failed = true;
    t.reason = r.reason;
    answer_soon();  // at once, from the top of the stream
}

void poll_session::on_reset(hub::subscription& s, const hub::message_ptr& m) {
    // Whatever was collected is older than the reset: answer the reset alone, from its position.
    auto& t = static_cast<poll_topic&>(s);
    t.messages.clear();
    t.resume_failed = true;
    t.reason = m->reset_reason;
    answer_soon();
}

void poll_session::on_refused(hub::subscription&, const std::string& reason) {
    release_stream();
    owner_.on_poll_refused(reason);  // may destroy this poll: nothing after this line
}

void poll_session::on_message(hub::subscription& s, const hub::message_ptr& m) {
    auto& t = static_cast<poll_topic&>(s);
    if (t.resume_failed) return;
    t.messages.push_back(m);
    w_.counters.frames_delivered.add();
    answer_soon();
}

}  // namespace herald::net
