// The HTTP request loop: reads and parses pipelined requests within bounds (requests per turn,
// unanswered requests, answers not yet written), hands each to the router (http_router.cpp),
// and writes the answers in request order; header and idle timeouts, drain. The stream
// endpoints are http_streams.cpp.
#include "herald/auth/context.hpp"
#include "herald/common/sanitizers.hpp"
#include "herald/net/hooks.hpp"
#include "sessions.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

namespace herald::net {

namespace http = boost::beast::http;
using metrics::reject;

namespace {
// Requests dispatched and not yet answered, per connection; past it nothing more is parsed (or
// read) until an answer comes.
constexpr std::size_t k_max_pipelined = 32;
// Requests parsed and dispatched per loop turn; the rest waits for a later turn (posted), so a
// burst of pipelined requests on one connection cannot starve the others on its worker.
constexpr std::size_t k_max_per_turn = 64;
// Reads per readiness event (each up to the 64 KiB scratch buffer).
constexpr int k_max_reads_per_turn = 16;
// An idle connection gives back an input buffer grown by a burst.
constexpr std::size_t k_keep_input_capacity = 16 * 1024;

// A parser is one per request (Beast's basic_parser cannot be reset); each worker thread keeps
// the block of the last one finished for the next, so that a pipelined batch does not allocate
// and free one per request. Not under AddressSanitizer, which should see every lifetime.
constexpr bool k_reuse_parser = !k_address_sanitizer;

std::unique_ptr<request_parser>& spare_parser() {
    thread_local std::unique_ptr<request_parser> spare;
    return spare;
}

std::unique_ptr<request_parser> new_parser() {
    if (auto p = std::move(spare_parser())) return p;
    return std::make_unique<request_parser>();
}

// A finished parser, built anew in its block and kept as this thread's spare.
void recycle(std::unique_ptr<request_parser> p) noexcept {
    if constexpr (k_reuse_parser) {
        std::destroy_at(p.get());
        std::construct_at(p.get());
        spare_parser() = std::move(p);
    }
}

}  // namespace

void responder::send(int status, std::string_view content_type, std::string_view body,
                     std::string_view extra_headers) const {
    auto s = session_.lock();
    if (!s) return;
    // One allocation holds the answer's bytes and what keeps them alive in the output queue.
    auto r = make_shared_response(
        status, content_type, body, keep_alive_,
        extra_headers.empty() ? std::string_view(extra_) : extra_ + std::string(extra_headers));
    const char* data = r.bytes.get();
    s->complete(seq_,
                chunk{chunk_hold(std::shared_ptr<const void>(std::move(r.bytes))), data, r.size},
                keep_alive_);
}

void responder::error(reject reason, std::string_view message,
                      std::string_view extra_headers) const {
    if (auto s = session_.lock())
        s->fail_request(seq_, reason, message, keep_alive_, extra_ + std::string(extra_headers));
}

http_session::http_session(worker_context& w, asio::ip::address peer, link&& l)
    : connection(w, std::move(l), metrics::transport::http), peer_(std::move(peer)) {}

void http_session::start() {
    arm_idle();
    // A TLS handshake is part of the request head: it gets the header timeout, not the idle one.
    if (handshaking()) deadline_ = clock::now() + w_.cfg.http.header_timeout;
    wait_readable();
}

void http_session::arm_idle(time_point now) {
    reading_request_ = false;
    deadline_ = now + w_.cfg.http.idle_timeout;
}

std::size_t http_session::out_mark() const noexcept {
    return w_.cfg.limits.max_queued_bytes / 2;
}

bool http_session::may_read() const noexcept {
    if (stop_reading_) return true;  // input is read and dropped: holding none, it costs nothing
    if (draining_ || peer_done_ || hook_pending_) return false;
    // Enough input for the parser to finish a request head, and room for its answer.
    // A posted process() means this turn's share of requests is used up.
    return unparsed() <= w_.cfg.http.max_header_bytes && slots_.size() < k_max_pipelined &&
           !waiting_room_ && !process_posted_ && output_bytes() + slot_bytes_ < out_mark();
}

std::size_t http_session::session_held_bytes() const noexcept {
    return in_.capacity() + parsed_bytes_ + slot_bytes_;
}

void http_session::on_readable() {
    // Read (bounded per turn) and parse as the bytes come, so that unparsed input stays within
    // one request head and one read (may_read()).
    for (int i = 0; i < k_max_reads_per_turn; ++i) {
        error_code ec;
        std::size_t n = read_some(ec);
        if (ec) {
            peer_done_ = true;
            break;
        }
        if (n == 0) break;
        if (stop_reading_) continue;  // discard: an error answer is on its way, then we close
        if (!reading_request_) {
            reading_request_ = true;
            deadline_ = clock::now() + w_.cfg.http.header_timeout;
        }
        in_.append(w_.scratch().data(), n);
        process();
        if (closed()) return;
        if (!may_read()) break;
    }
    settle();
}

void http_session::settle() {
    if (closed()) return;
    if (peer_done_ || draining_) {
        // Nothing more will be read: close once everything read is answered.
        if (slots_.empty() && !poll_ && !process_posted_ && !waiting_room_) {
            close_after_flush();  // answers already queued still leave, then a lingering close
            release_hold();
            return;
        }
        // Nothing reads any more, so nothing keeps this session alive while the API or a poll
        // answers: hold a reference until the last answer is queued (release_hold()).
        hold(hold_session);
        return;
    }
    wait_readable();  // parked while may_read() says no; the answers leaving resume it
}

void http_session::schedule_process() {
    if (processing_ || process_posted_ || closed()) return;
    process_posted_ = true;
    asio::post(w_.ioc, [self = std::static_pointer_cast<http_session>(shared_from_this())] {
        self->process_posted_ = false;
        if (self->closed()) return;
        self->process();
        self->settle();
    });
}

void http_session::on_output_room() {
    waiting_room_ = false;
    process();
    settle();
}

void http_session::process() {
    // Answers completed while this runs only queue their bytes (complete() does not call back
    // here), so the depth of the stack does not depend on the input.
    if (processing_ || process_posted_) return;  // a posted one goes on where this would
    processing_ = true;
    draining_ = draining_ || w_.state.draining.load(std::memory_order_relaxed);
    std::size_t dispatched = 0;
    bool yield = false;
    // One reading of the clock per pass for the deadlines of the requests it parses (pipelined
    // requests would read it twice each); a pass is far shorter than any of the timeouts.
    std::optional<time_point> pass_now;
    const auto now = [&pass_now] {
        if (!pass_now) pass_now = clock::now();
        return *pass_now;
    };
    while (!closed() && !stop_reading_ && !poll_ && !large_owed_ && !hook_pending_ &&
           slots_.size() < k_max_pipelined && unparsed() > 0) {
        if (output_bytes() + slot_bytes_ >= out_mark()) {
            // The client does not read its answers: parse (and read) nothing more until half
            // of them have left.
            waiting_room_ = true;
            want_room(out_mark() / 2);
            break;
        }
        if (dispatched == k_max_per_turn) {
            yield = true;
            break;
        }
        if (!parser_) {
            // A plain request already whole in the input is parsed in one pass; otherwise (or
            // when it declines) Beast's parser takes the same bytes from the start.
            http_request req{};
            const std::size_t whole = request_parser::parse_whole(
                std::string_view(in_.data() + in_head_, unparsed()),
                static_cast<std::uint32_t>(w_.cfg.http.max_header_bytes),
                w_.cfg.limits.max_message_bytes, req.raw);
            if (whole > 0) {
                in_head_ += whole;
                dispatch(req, now(), dispatched);
                continue;
            }
            parser_ = new_parser();
            parser_->header_limit(static_cast<std::uint32_t>(w_.cfg.http.max_header_bytes));
            parser_->body_limit(w_.cfg.limits.max_message_bytes);
            parser_->eager(true);
            if (!reading_request_) {
                reading_request_ = true;
                deadline_ = now() + w_.cfg.http.header_timeout;
            }
        }
        error_code ec;
        std::size_t used = parser_->put(asio::buffer(in_.data() + in_head_, unparsed()), ec);
        in_head_ += used;
        parsed_bytes_ += used;
        if (ec == http::error::need_more) {
            if (used == 0) break;
            continue;
        }
        if (ec) {
            std::uint64_t seq = next_seq_++;
            slots_.push_back(slot{seq, false, true, {}, false});
            stop_reading_ = true;
            drop_input();
            if (ec == http::error::header_limit)
                fail_request(seq, reject::headers_too_large,
                             "request headers exceed http.max_header_bytes", false);
            else if (ec == http::error::body_limit)
                fail_request(seq, reject::payload_too_large,
                             "body exceeds limits.max_message_bytes", false);
            else
                fail_request(seq, reject::bad_request, "malformed HTTP request: " + ec.message(),
                             false);
            break;
        }
        if (parser_->is_done()) {
            // The head moves once, out of the parser into the request (its text and fields
            // are inline: each move copies them).
            http_request req{parser_->release(), {}, {}};
            recycle(std::move(parser_));
            parsed_bytes_ = 0;
            dispatch(req, now(), dispatched);
        }
    }
    const bool starved = !closed() && !stop_reading_ && !poll_ && !waiting_room_ && !yield &&
                         !large_owed_ && !hook_pending_ && slots_.size() < k_max_pipelined;
    if (draining_ && starved && (parser_ || unparsed() > 0)) {
        // Part of a request (a head, half a body): the rest is not waited for.
        answer_draining(true);
    }
    if (!closed()) {
        in_.erase(0, in_head_);
        in_head_ = 0;
        if (in_.empty() && in_.capacity() > k_keep_input_capacity) std::string().swap(in_);
    }
    processing_ = false;
    if (yield) schedule_process();
}

void http_session::dispatch(http_request& req, time_point now, std::size_t& dispatched) {
    arm_idle(now);  // the next request gets its own header_timeout from its first byte
    ++dispatched;
    if (draining_) {
        answer_draining(unparsed() == 0);
    } else {
        handle(req);
    }
}

void http_session::drop_input() {
    in_.clear();
    in_head_ = 0;
    parser_.reset();
    parsed_bytes_ = 0;
}

void http_session::answer_draining(bool last) {
    std::uint64_t seq = next_seq_++;
    slots_.push_back(slot{seq, false, true, {}, false});
    if (last) {
        stop_reading_ = true;
        drop_input();
    }
    fail_request(seq, reject::draining,
                 "the server is shutting down; this request was not processed, retry it", !last,
                 "Retry-After: 1\r\n");
}

void http_session::fail_request(std::uint64_t seq, reject reason, std::string_view message,
                                bool keep_alive, std::string_view extra_headers) {
    auto spec = error_for(reason);
    w_.counters.inc(reason);
    complete(
        seq,
        make_error(spec.status, spec.code, message, keep_alive, cors_ + std::string(extra_headers)),
        keep_alive);
}

void http_session::release_hold() {
    unhold(hold_session);
}

void http_session::complete(std::uint64_t seq, std::string response, bool keep_alive) {
    complete(seq, chunk::of_string(std::move(response)), keep_alive);
}

void http_session::complete(std::uint64_t seq, chunk response, bool keep_alive) {
    // Slots hold consecutive sequence numbers (pushed in order, taken from the front), so the
    // answered one is found by its distance from the first; a stale one (the slots were
    // cleared) is not there.
    if (!slots_.empty() && seq >= slots_.front().seq && seq - slots_.front().seq < slots_.size()) {
        auto& s = slots_[static_cast<std::size_t>(seq - slots_.front().seq)];
        s.ready = true;
        if (s.large) large_owed_ = false;
        s.keep_alive = keep_alive;
        s.response = std::move(response);
        slot_bytes_ += s.response.size;
    }
    bool close = false;
    std::size_t done = 0;
    while (done < slots_.size() && slots_[done].ready) {
        auto& s = slots_[done];
        slot_bytes_ -= s.response.size;
        enqueue(std::move(s.response));
        ++done;
        if (!s.keep_alive) {
            close = true;
            break;
        }
    }
    for (std::size_t i = 0; i < done; ++i) slots_.pop_front();
    if (close) {
        // Requests pipelined behind this one are not answered: Connection: close says so.
        stop_reading_ = true;
        for (std::size_t i = 0; i < slots_.size(); ++i) slot_bytes_ -= slots_[i].response.size;
        slots_.clear();
        large_owed_ = false;
        close_after_flush();
        return;
    }
    // Never process() from here: an answer given synchronously inside process() would recurse
    // once per pipelined request. process() goes on by itself, or on a later turn.
    if (done == 0) return;
    if (slots_.empty() && !parser_ && unparsed() == 0) arm_idle();  // idle from the last answer
    schedule_process();
}

void http_session::on_close() {
    release_hold();
    if (!hooked_ip_.empty() && w_.auth) w_.auth->release_stream(std::exchange(hooked_ip_, {}));
    if (poll_) {
        poll_->cancel();
        poll_.reset();
    }
}

void http_session::on_tick(time_point now) {
    if (poll_) {
        if (now >= poll_->deadline()) finish_poll();
        return;
    }
    if (!slots_.empty()) return;  // the API is answering
    if (waiting_room_ || (output_bytes() > 0 && !stop_reading_)) {
        // Answers are owed to a client that does not read them: it gets as long as an idle one.
        if (now - last_write_ >= w_.cfg.http.idle_timeout) close_now();
        return;
    }
    if (now < deadline_) return;
    if (reading_request_) {
        w_.counters.inc(reject::header_timeout);
        stop_reading_ = true;
        drop_input();
        auto spec = error_for(reject::header_timeout);
        enqueue(chunk::of_string(
            make_error(spec.status, spec.code, "request not received in time", false)));
        close_after_flush(milliseconds(1000));
    } else {
        if (handshaking()) w_.counters.tls_errors.add(1);  // a TLS handshake that never finished
        close_now();
    }
}

void http_session::on_drain(std::optional<milliseconds> /*reconnect_after*/) {
    draining_ = true;
    if (poll_) {
        poll_->end_keep_alive();
        finish_poll();
    }
    if (closed() || stop_reading_) return;  // already answering its last request
    if (slots_.empty() && !parser_ && unparsed() == 0 && idle_output() && !process_posted_) {
        close_now();  // idle keep-alive connection: nothing is owed
        return;
    }
    // Dispatched requests get their answers; requests read but not dispatched (whole or in
    // part) get 503 `draining`; then the connection closes (settle()).
    process();
    settle();
}

}  // namespace herald::net
