#include "poll_session.hpp"

#include "herald/auth/context.hpp"
#include "herald/wire/envelope.hpp"

namespace herald::net {

poll_session::poll_session(poll_owner& owner, worker_context& w, std::uint64_t seq, bool keep_alive,
                           std::string topic, std::optional<wire::stream_pos> since,
                           std::string stream_ip, std::string user)
    : owner_(owner),
      w_(w),
      seq_(seq),
      keep_alive_(keep_alive),
      deadline_(clock::now() + w.cfg.poll.timeout),
      stream_ip_(std::move(stream_ip)),
      user_(std::move(user)) {
    sub_.owner = this;
    sub_.topic = std::move(topic);
    sub_.since = std::move(since);
}

poll_session::~poll_session() {
    cancel();
}

void poll_session::start() {
    w_.shard.subscribe(sub_);
}

void poll_session::release_stream() noexcept {
    if (w_.auth && !stream_ip_.empty()) w_.auth->release_stream(stream_ip_);
    stream_ip_.clear();
}

void poll_session::cancel() noexcept {
    w_.shard.unsubscribe(sub_);  // a no-op when not subscribed
    release_stream();
}

std::string poll_session::finish() {
    const auto& s = sub_;
    // Read the position before unsubscribing (which deactivates the subscription).
    const std::string epoch = s.epoch.empty() && s.since ? s.since->epoch : s.epoch;
    std::uint64_t cursor = s.active ? s.last_offset : (s.since ? s.since->offset : 0);
    cancel();
    // The messages first: an answer stays within half the connection's output budget, and the
    // cursor then names the last message it carries (the next poll continues from there).
    std::string list;
    const std::size_t taken =
        hub::append_messages_json(list, messages_, w_.cfg.limits.max_queued_bytes / 2);
    if (taken < messages_.size()) cursor = messages_[taken - 1]->offset;
    const auto now = clock::now();
    for (std::size_t i = 0; i < taken; ++i)
        if (s.live(*messages_[i]))
            w_.counters.delivered(metrics::transport::poll, messages_[i]->created, now);
    std::string body = "{\"topic\":\"" + s.topic + "\",\"epoch\":\"" + epoch + "\"";
    if (s.since || resume_failed_)
        body += std::string(",\"recovered\":") + (resume_failed_ ? "false" : "true");
    if (resume_failed_) body += ",\"reason\":" + wire::json_quote(reason_);
    body += ",\"cursor\":\"" + epoch + ":" + std::to_string(cursor) + "\",\"messages\":";
    body += list;
    if (taken < messages_.size()) body += ",\"more\":true";
    body += '}';
    return body;
}

void poll_session::answer_soon() {
    if (answer_asked_) return;
    answer_asked_ = true;
    owner_.on_poll_due();
}

void poll_session::on_subscribed(hub::subscription& s, const hub::subscribe_result& r) {
    w_.record_subscribe(s, r, metrics::transport::poll, nullptr);
    if (!r.resume_requested || r.recovered) return;
    resume_failed_ = true;
    reason_ = r.reason;
    answer_soon();  // at once, from the top of the stream
}

void poll_session::on_reset(hub::subscription&, const hub::message_ptr& m) {
    // Whatever was collected is older than the reset: answer the reset alone, from its position.
    messages_.clear();
    resume_failed_ = true;
    reason_ = m->reset_reason;
    answer_soon();
}

void poll_session::on_refused(hub::subscription&, const std::string& reason) {
    release_stream();
    owner_.on_poll_refused(reason);  // may destroy this poll: nothing after this line
}

void poll_session::on_message(hub::subscription&, const hub::message_ptr& m) {
    if (resume_failed_) return;
    messages_.push_back(m);
    w_.counters.frames_delivered.add();
    answer_soon();
}

}  // namespace herald::net
