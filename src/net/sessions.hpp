#pragma once
// The client sessions. One HTTP session per accepted connection; it hands its socket over to a
// WebSocket or SSE session when a request upgrades to a stream.
#include "herald/hub/hub.hpp"
#include "connection.hpp"
#include "fifo_ring.hpp"
#include "holdback.hpp"
#include "herald/net/http_api.hpp"
#include "poll_session.hpp"
#include "sub_list.hpp"
#include "herald/wire/ws_codec.hpp"

#include "herald/auth/jwt.hpp"
#include "herald/net/disconnect.hpp"
#include "herald/auth/token_bucket.hpp"

#include "request_parser.hpp"

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace herald::net {

// A stream's entry in presence (presence_ops.cpp): a new connection id, the token's `sub` and
// `info` (left out over presence.max_info_bytes). `claims` null: anonymous. Null when presence
// is off (no presence.patterns): a connection then holds nothing for it.
[[nodiscard]] std::unique_ptr<hub::presence_client> presence_identity(
    worker_context& w, const auth::token_claims* claims);
struct hook_verdict;

class http_session final : public connection, public poll_owner {
public:
    http_session(worker_context& w, link l) : http_session(w, l.peer, std::move(l)) {}
    void start();
    // Answers the first request with this error, then closes (over capacity).
    void refuse_with(metrics::reject reason) noexcept { refuse_ = reason; }

    // Called through a responder: completes request `seq`; responses leave in request order.
    void complete(std::uint64_t seq, std::string response, bool keep_alive);
    // The same with the answer's bytes already held (responder::send).
    void complete(std::uint64_t seq, chunk response, bool keep_alive);
    // Completes request `seq` with a JSON error and counts it.
    void fail_request(std::uint64_t seq, metrics::reject reason, std::string_view message,
                      bool keep_alive, std::string_view extra_headers = {});

    void on_poll_due() override;
    void on_poll_refused(const std::string& reason) override;
    void on_tick(time_point now) override;
    void on_drain(std::optional<milliseconds> reconnect_after) override;

private:
    // `peer` is copied out of the link before the link is moved.
    http_session(worker_context& w, asio::ip::address peer, link&& l);
    using parser_t = request_parser;
    struct slot {
        std::uint64_t seq;
        bool ready = false;
        bool keep_alive = true;
        chunk response;  // its bytes, once ready
        // An answer that may take half the output budget (/history pages at out_mark()): no
        // other request is dispatched while it is owed, so two of them never meet in the queue.
        bool large = false;
    };
    void on_readable() override;
    void on_close() override;
    bool revoke(std::string_view user) override;
    [[nodiscard]] bool may_read() const noexcept override;
    [[nodiscard]] std::size_t session_held_bytes() const noexcept override;
    void on_output_room() override;
    // A long-poll is over: the connection is plain HTTP again.
    [[nodiscard]] std::unique_ptr<poll_session> end_poll();
    // Parses and answers what in_ holds, as a loop with bounds (requests per turn, unanswered
    // requests, answers not yet written); never re-entered from an answer (see complete()).
    void process();
    // Runs process() on a later loop turn (once, however often asked).
    void schedule_process();
    // After input was consumed or answers left: read on, or close once everything is answered.
    void settle();
    // Draining: a request read but not dispatched is answered 503 `draining`.
    void answer_draining(bool last);
    void drop_input();
    // Answers queued or waiting past this stop parsing and reading (half of
    // limits.max_queued_bytes, so that the answers already owed fit in the other half).
    [[nodiscard]] std::size_t out_mark() const noexcept;
    [[nodiscard]] std::size_t unparsed() const noexcept { return in_.size() - in_head_; }
    // A parsed request: the idle deadline from `now`, then handle() (or 503 while draining).
    void dispatch(http_request& req, time_point now, std::size_t& dispatched);
    // `req` holds the parsed head; its target is parsed here.
    void handle(http_request& req);
    // The stream endpoints; `topics` are validated and `claims` (null: anonymous) authorized.
    bool upgrade_websocket(std::uint64_t seq, http_request& req,
                           const std::vector<std::string>& topics,
                           std::unique_ptr<auth::token_claims> claims);
    bool start_sse(std::uint64_t seq, http_request& req, const std::vector<std::string>& topics,
                   std::unique_ptr<auth::token_claims> claims);
    void start_poll(std::uint64_t seq, http_request& req, const std::vector<std::string>& topics,
                    std::unique_ptr<auth::token_claims> claims, bool keep_alive);
    void finish_poll();
    // Starts the stream of an authorized, validated request (/ws, /sse, /poll).
    void start_stream(std::uint64_t seq, http_request& req, const std::vector<std::string>& topics,
                      std::unique_ptr<auth::token_claims> claims, bool keep_alive);
    // Backend hooks before a stream starts (stream_gate.cpp): the connect hook, then the
    // subscribe hook for each topic; the stream starts when all allow. The address's stream
    // slot is taken first (hooked_ip_) and reading stops until the hooks answered, so a
    // connection awaits at most one hook call at a time and counts against every limit.
    void gate_stream(std::uint64_t seq, http_request req, std::vector<std::string> topics,
                     std::unique_ptr<auth::token_claims> claims, bool keep_alive);
    std::optional<std::vector<std::string>> query_topics(std::uint64_t seq, const url& u,
                                                         bool keep_alive, bool required);
    void arm_idle(time_point now = clock::now());
    void release_hold();
    [[nodiscard]] std::string client_ip(const http_request& req);
    // ?heartbeat=30s: the period a stream's client asks for, within [lo, hi]; 0 when absent;
    // nullopt after answering 400 (malformed or out of range).
    std::optional<milliseconds> requested_heartbeat(std::uint64_t seq, const http_request& req,
                                                    milliseconds lo, milliseconds hi);
    // Per-address limits for a stream; answers the error itself.
    bool admit_stream(std::uint64_t seq, const http_request& req, std::string& stream_ip);

    std::string in_;  // input; bytes before in_head_ are parsed
    std::size_t in_head_ = 0;
    std::unique_ptr<parser_t> parser_;
    std::size_t parsed_bytes_ = 0;  // fed to parser_ for the request it holds
    fifo_ring<slot> slots_;         // in request order
    std::size_t slot_bytes_ = 0;    // answers in slots_, waiting for an earlier one
    bool large_owed_ = false;       // a slot with `large` is not answered yet (see slot)
    std::uint64_t next_seq_ = 0;
    bool processing_ = false;      // inside process(): answers must not start another
    bool process_posted_ = false;  // a process() is posted
    bool waiting_room_ = false;    // process() waits for answers to leave (want_room())
    bool draining_ = false;
    std::unique_ptr<poll_session> poll_;
    time_point deadline_;
    bool reading_request_ = false;
    bool stop_reading_ = false;
    bool peer_done_ = false;
    std::optional<metrics::reject> refuse_;
    std::string cors_;           // CORS headers of the request being handled
    asio::ip::address peer_;     // the TCP peer (from the link)
    std::string peer_text_;      // peer_ as text, made on first use
    bool hook_pending_ = false;  // gate_stream() waits for the backend
    std::string hooked_ip_;      // the stream slot gate_stream() took, for admit_stream()
};

// What the upgrade negotiated for a WebSocket session.
struct ws_options {
    std::uint8_t deflate_bits = 0;  // the client's inflate window with permessage-deflate, else 0
    milliseconds ping_interval{0};  // 0: ws.ping_interval
};

class ws_session final : public holding_connection, public hub::subscriber {
public:
    ws_session(worker_context& w, link l, std::string leftover,
               std::unique_ptr<auth::token_claims> claims, std::string stream_ip,
               ws_options options = {});
    ~ws_session() override;
    // Sends the 101 answer and subscribes the topics given in the URL; `extensions`: the
    // Sec-WebSocket-Extensions answer (empty: none).
    void start(std::string_view accept, bool subprotocol, const std::vector<std::string>& topics,
               std::string_view extensions = {});

    void on_message(hub::subscription& s, const hub::message_ptr& m) override;
    void prefetch_delivery() const noexcept override { prefetch_enqueue(); }
    void on_subscribed(hub::subscription& s, const hub::subscribe_result& r) override;
    void on_reset(hub::subscription& s, const hub::message_ptr& m) override;
    void on_refused(hub::subscription& s, const std::string& reason) override;
    void on_presence(hub::subscription& s, const hub::presence_event_ptr& e) override;
    [[nodiscard]] const hub::presence_client* presence_entry() const noexcept override {
        return who_.get();
    }
    void on_tick(time_point now) override;
    void on_drain(std::optional<milliseconds> reconnect_after) override;
    // Every subscription takes its topic's delivery rule and compression in the new settings.
    void on_settings_changed() override;

private:
    // held_slot: the topic's delivery.namespaces rule and what it holds back (holdback.hpp).
    struct ws_sub : hub::subscription, held_slot {
        // What the subscribe op's answer needs: only until it is answered (on_subscribed,
        // on_refused or an unsubscribe first), and only when there is something (issue 15).
        struct op_answer {
            std::string reply_id;  // JSON of the op's id; empty for topics from the URL
            std::string info;  // what the subscribe hook said (compact JSON, <= 1 KiB); "" for none
        };
        std::unique_ptr<op_answer> op;
        // Two flags kept in the hub's `tag` (the owner's word, unused by a WebSocket otherwise),
        // which saves a word of padding per subscription (issue 15): whether the subscribe op is
        // answered, and whether compression is negotiated and enabled for the topic's namespace.
        static constexpr std::uint32_t k_reply = 1;
        static constexpr std::uint32_t k_compress = 2;
        [[nodiscard]] bool reply() const noexcept { return (tag & k_reply) != 0; }
        [[nodiscard]] bool compress() const noexcept { return (tag & k_compress) != 0; }
        void set_flag(std::uint32_t f, bool on) noexcept { tag = on ? (tag | f) : (tag & ~f); }
        [[nodiscard]] std::string_view reply_id() const noexcept {
            return op ? std::string_view(op->reply_id) : std::string_view();
        }
        [[nodiscard]] std::string_view info() const noexcept {
            return op ? std::string_view(op->info) : std::string_view();
        }
        void set_op(std::string reply_id, std::string info) {
            if (reply_id.empty() && info.empty()) return;
            op = std::make_unique<op_answer>(op_answer{std::move(reply_id), std::move(info)});
        }
    };

    void on_readable() override;
    void on_close() override;
    void on_slow_consumer() override;
    void on_flush_begin() override;
    // The frame bytes `m` goes out as to this subscriber (compressed or plain).
    [[nodiscard]] std::string_view frame_for(const ws_sub& s, const hub::message_ptr& m);
    void send_held(held_slot& s, const hub::message_ptr& m) override;
    void send_skipped(held_slot& s, std::uint64_t from, std::uint64_t to) override;
    [[nodiscard]] std::size_t wire_size(const hub::message& m) const noexcept override {
        return m.ws_frames.size();
    }
    // A partial frame, a fragmented message, the latest ping and its pong (see held_bytes()).
    [[nodiscard]] std::size_t session_held_bytes() const noexcept override;
    void consume(char* data, std::size_t n);
    // Returns the bytes of `buf` used; sets `stop` when the connection must stop reading.
    std::size_t parse_frames(char* buf, std::size_t n, bool& stop);
    bool on_frame(const ws::frame& f, char* payload);
    // A compressed message: inflated within limits.max_client_message_bytes, then handled.
    bool on_compressed(ws::opcode op, std::string_view compressed);
    bool on_data_message(ws::opcode op, std::string_view message);
    void on_text(std::string_view text);
    void fail(std::uint16_t code, std::string_view reason, metrics::reject r);
    // Queues a close frame and ends the connection once it is written (at `grace` at the
    // latest); what the client sends meanwhile is read and dropped.
    void end_with(std::uint16_t code, std::string_view reason,
                  milliseconds grace = milliseconds(1000));
    void send_close(std::uint16_t code, std::string_view reason);
    // Queues the pong for the latest ping, unless the previous pong is still queued.
    void answer_ping();
    // Counts one client message (op, ping or pong) against limits.ws_messages_per_s; false when
    // over it (the caller drops it; `tell`: answer `error` `rate_limited`).
    bool admit_message(bool tell);
    void send_json(std::string_view json);
    void reply_error(const std::string& id, std::string_view code, std::string_view message);
    void subscribe_topic(const std::string& topic, std::optional<wire::stream_pos> since,
                         std::string reply_id, bool reply, bool join_leave = false,
                         std::string info = {});
    // The `presence` op (presence_ops.cpp).
    void presence_op(const std::string& id, const std::string& topic);
    ws_sub* find(const std::string& topic);
    // The backend hooks of the subscribe and publish ops (ws_hooks.cpp): the op goes on once
    // the hook allowed it. At most k_max_ws_hook_calls per connection wait at once.
    void hook_subscribe(std::string topic, std::optional<wire::stream_pos> since, std::string id,
                        bool join_leave);
    void hook_publish(hub::publish_request req, std::string id);
    // Takes one of the connection's hook call slots (false: answered `rate_limited`).
    bool take_hook_call(const std::string& id);
    // Answers a refusal (forbidden, or unavailable when on_error decided); false when allowed.
    bool refused_by_hook(const std::string& id, const hook_verdict& v);
    // Hands a checked publish to the broker and answers the client.
    void publish_now(hub::publish_request req, std::string id);
    // Why the connection ends, for the `disconnect` webhook; set where the server ends it.
    void set_end_reason(disconnect_reason r) noexcept {
        if (!end_reason_) end_reason_ = r;
    }
    bool take_message_token(time_point now);
    bool revoke(std::string_view user) override;

    sub_list<ws_sub> subs_;
    // Client message rate (limits.ws_messages_per_s, burst twice that) and the messages it
    // refused, leaking away over time (see admit_message). Made by the client's first message
    // and dropped by the sweep once it is as a new one would be (bucket full, strikes leaked
    // away), so a connection whose client sends nothing holds none of it (issue 15).
    struct ws_rate {
        auth::token_bucket bucket;
        float strikes = 0;
        time_point strikes_at{};
    };
    // Input state that only some connections need at some times: allocated when a read leaves a
    // partial frame, a fragmented message starts, a ping arrives or the client sends a message
    // (its rate), and freed by the sweep once empty again (trim_input()), so an idle connection
    // holds none of it. One block for all of it: one pointer in every session (issue 15).
    struct ws_input {
        std::string partial;  // a partial frame carried to the next read
        std::string frag;     // a fragmented message being assembled
        // Wire bytes of the fragments so far, headers included: bounded by
        // max_client_message_bytes.
        std::uint64_t frag_charge = 0;
        // RFC 6455 5.5.3: only the latest ping is answered. Its payload waits here (<= 125
        // bytes) until the connection writes; `pong` holds the pong frame and is rewritten only
        // when the queue no longer refers to it, so a client costs at most one pong, however
        // fast it pings.
        std::string ping_payload;
        std::shared_ptr<std::string> pong;
        std::optional<ws_rate> rate;
    };
    ws_input& input() {
        if (!input_) input_ = std::make_unique<ws_input>();
        return *input_;
    }
    void trim_input() noexcept;
    std::unique_ptr<ws_input> input_;
    // Flags as bits, packed with the small fields and the ping period into 16 bytes (issue 15:
    // every idle connection holds this object).
    ws::opcode frag_op_ = ws::opcode::text;
    std::uint8_t deflate_bits_ = 0;  // 0: no permessage-deflate on this connection
    std::uint8_t hook_calls_ = 0;    // hook calls of this connection not answered yet (<= 4)
    bool reconnected_ = false;       // counted in herald_reconnections_total
    std::optional<disconnect_reason> end_reason_;
    bool in_frag_ : 1 = false;
    bool frag_compressed_ : 1 = false;
    bool close_sent_ : 1 = false;
    bool closing_ : 1 = false;       // end_with(): input is dropped until the socket closes
    bool slow_closing_ : 1 = false;  // on_slow_consumer() ran: later passes only flush
    bool ping_pending_ : 1 = false;  // input_->ping_payload waits for its pong
    bool awaiting_pong_ : 1 = false;
    // Pings go out only after this long (milliseconds) without traffic either way (a delivered
    // message, a reply, anything from the client): they keep NAT mappings alive and find dead
    // peers.
    std::uint32_t ping_interval_ms_;
    // When the client last sent anything, or the last ping left, whichever is later. While a
    // ping awaits its pong nothing was read since it left (a read clears awaiting_pong_), so this
    // is then the ping's time, which the pong timeout counts from.
    time_point last_seen_;
    std::unique_ptr<auth::token_claims> claims_;
    short_text stream_ip_;  // the client's address: its stream slot, audit lines, webhooks
    // This connection in presence (subscriptions point at it); null when presence is off.
    std::unique_ptr<hub::presence_client> who_;
    [[nodiscard]] double strikes_now(time_point now) const noexcept;
};

class sse_session final : public holding_connection, public hub::subscriber {
public:
    // `heartbeat`: the comment period the client asked for (0: sse.heartbeat).
    sse_session(worker_context& w, link l, std::unique_ptr<auth::token_claims> claims,
                std::string stream_ip, milliseconds heartbeat = milliseconds(0));
    ~sse_session() override;
    // `join_leave`: the stream asked for join/leave events (`presence=1`).
    void start(const std::vector<std::string>& topics,
               const std::optional<std::vector<wire::stream_pos>>& since,
               std::string_view extra_headers = {}, bool join_leave = false);

    void on_message(hub::subscription& s, const hub::message_ptr& m) override;
    void prefetch_delivery() const noexcept override { prefetch_enqueue(); }
    void on_subscribed(hub::subscription& s, const hub::subscribe_result& r) override;
    void on_reset(hub::subscription& s, const hub::message_ptr& m) override;
    void on_refused(hub::subscription& s, const std::string& reason) override;
    void on_presence(hub::subscription& s, const hub::presence_event_ptr& e) override;
    [[nodiscard]] const hub::presence_client* presence_entry() const noexcept override {
        return who_.get();
    }
    void on_tick(time_point now) override;
    void on_drain(std::optional<milliseconds> reconnect_after) override;
    // Every subscription takes its topic's delivery rule in the new settings.
    void on_settings_changed() override;

private:
    // held_slot: the topic's delivery.namespaces rule and what it holds back (holdback.hpp).
    struct sse_sub : hub::subscription, held_slot {
        // The position the client was last told of (what the stream's ids name). The hub's
        // last_offset runs ahead of it while events are held (see held_).
        short_text sent_epoch;
        std::uint64_t sent_offset = 0;
        void sent(const hub::message& m) {
            // Compared as text (8 characters), not by key: one word less per subscription.
            if (sent_epoch.view() != m.epoch) sent_epoch = m.epoch;
            sent_offset = m.offset;
        }
    };

    void on_readable() override;
    void on_close() override;
    // Sends `m` now, or holds it back as its delivery.namespaces rule says (holdback.hpp).
    void deliver(sse_sub& s, const hub::message_ptr& m);
    void send_message(sse_sub& s, const hub::message_ptr& m);
    // A reset at the subscription's sent position (set by the caller); `skipped_to` != 0: the
    // range a slow consumer policy dropped.
    void send_reset(sse_sub& s, std::string_view reason, std::uint64_t skipped_from = 0,
                    std::uint64_t skipped_to = 0);
    void send_held(held_slot& s, const hub::message_ptr& m) override;
    void send_skipped(held_slot& s, std::uint64_t from, std::uint64_t to) override;
    [[nodiscard]] std::size_t wire_size(const hub::message& m) const noexcept override {
        return m.sse_event.size();
    }
    [[nodiscard]] std::size_t session_held_bytes() const noexcept override { return held_total(); }
    // The stream's first block, `retry:`, once every topic is answered (or one is refused).
    void send_retry();
    [[nodiscard]] std::string stream_id() const;
    bool revoke(std::string_view user) override;
    void end_with(std::string_view event);

    // Packed into one word (issue 15: every idle stream holds this object).
    std::optional<disconnect_reason> end_reason_;  // for the `disconnect` webhook
    bool reconnected_ = false;                     // counted in herald_reconnections_total
    bool retry_sent_ = false;
    std::uint32_t answered_ = 0;  // topics answered (a stream has at most a few hundred)
    sub_list<sse_sub> subs_;
    // Until every topic is answered, a multi-topic stream cannot write complete ids: hold events
    // (a message, a reset message, or null for a failed resume's reset).
    // Made by the first such event and freed once every topic is answered, so a running stream
    // holds none of it (issue 15). A failed resume's reset carries its reason here.
    struct early_event {
        sse_sub* sub;
        hub::message_ptr m;
        std::string resume_reason;
    };
    std::unique_ptr<std::vector<early_event>> held_;
    void hold_early(sse_sub& s, hub::message_ptr m, std::string resume_reason = {}) {
        if (!held_) held_ = std::make_unique<std::vector<early_event>>();
        held_->push_back({&s, std::move(m), std::move(resume_reason)});
    }
    milliseconds heartbeat_;  // a comment after this long without writing
    std::unique_ptr<auth::token_claims> claims_;
    short_text stream_ip_;                       // as ws_session's
    std::unique_ptr<hub::presence_client> who_;  // as ws_session's
};

}  // namespace herald::net
