#pragma once
// A long-poll (GET /poll): one subscription per topic that an HTTP connection holds until
// messages, a reset, a failed resume, the deadline (poll.timeout) or the drain give it its answer
// (the first topic that has one answers for all). Owned by its http_session and touched only on
// that session's worker; the shard points at the subscriptions only while they are subscribed
// (cancel() and finish() unsubscribe).
#include "herald/hub/hub.hpp"
#include "herald/net/worker_context.hpp"
#include "herald/wire/position.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::net {

// What a poll asks of the connection that holds it.
class poll_owner {
public:
    // The poll has its answer: call finish() on a later loop turn (asked once per poll).
    virtual void on_poll_due() = 0;
    // The topic's owner refused the subscription (a quota); it is already unsubscribed. The
    // owner may destroy the poll inside this call.
    virtual void on_poll_refused(const std::string& reason) = 0;

protected:
    ~poll_owner() = default;
};

// One topic of a poll: its subscription and what it collected for the answer.
struct poll_topic : hub::subscription {
    bool resumed = false;  // a position was given (since() is gone once answered)
    bool resume_failed = false;
    std::string reason;
    std::vector<hub::message_ptr> messages;
};

class poll_session final : public hub::subscriber {
public:
    // `since`: none, or one position per topic in `topics`' order; `stream_ip`: the per-address
    // stream slot the poll holds (released by finish()/cancel()); `user`: the token's sub, for
    // revocation (empty: anonymous).
    poll_session(poll_owner& owner, worker_context& w, std::uint64_t seq, bool keep_alive,
                 const std::vector<std::string>& topics,
                 const std::optional<std::vector<wire::stream_pos>>& since, std::string stream_ip,
                 std::string user);
    poll_session(const poll_session&) = delete;
    poll_session& operator=(const poll_session&) = delete;
    ~poll_session();

    void start();
    // Unsubscribes and builds the answer's JSON body (docs/protocol.md, "Long-polling"): one
    // topic's answer, or {"topics":[...]} with one per topic in the URL's order.
    [[nodiscard]] std::string finish();
    // Unsubscribes without an answer (connection closed, revoked, refused).
    void cancel() noexcept;

    [[nodiscard]] std::uint64_t seq() const noexcept { return seq_; }
    [[nodiscard]] bool keep_alive() const noexcept { return keep_alive_; }
    void end_keep_alive() noexcept { keep_alive_ = false; }
    [[nodiscard]] time_point deadline() const noexcept { return deadline_; }
    [[nodiscard]] bool belongs_to(std::string_view user) const noexcept {
        return !user_.empty() && user_ == user;
    }

    void on_message(hub::subscription& s, const hub::message_ptr& m) override;
    void on_subscribed(hub::subscription& s, const hub::subscribe_result& r) override;
    void on_reset(hub::subscription& s, const hub::message_ptr& m) override;
    void on_refused(hub::subscription& s, const std::string& reason) override;

private:
    // Asks the owner for the answer once; it leaves at the end of this loop turn, so a replay and
    // a burst leave in one answer.
    void answer_soon();
    void release_stream() noexcept;
    // One topic's answer object; its messages take at most `budget` bytes (at least one message
    // while `budget` is not 0), and `budget` shrinks by what they took.
    [[nodiscard]] std::string topic_answer(const poll_topic& t, const std::string& epoch,
                                           std::uint64_t cursor, std::size_t& budget);

    poll_owner& owner_;
    worker_context& w_;
    std::uint64_t seq_;
    bool keep_alive_;
    time_point deadline_;
    std::vector<std::unique_ptr<poll_topic>> topics_;  // the shard holds their addresses
    std::size_t answered_ = 0;                         // subscriptions the shard answered
    bool want_answer_ = false;  // something to answer, once every topic is subscribed
    bool answer_asked_ = false;
    std::string stream_ip_;
    std::string user_;
};

}  // namespace herald::net
