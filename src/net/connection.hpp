#pragma once
// Base of every client connection: owns the socket and a bounded send queue of shared chunks.
//
// Writes follow one rule: at most one write in flight; everything queued meanwhile leaves in the
// next gathered write. A chunk refers to bytes owned elsewhere (a shared message, or a string
// the chunk co-owns), so queuing a message for a subscriber copies no payload.
#include "herald/common/net.hpp"
#include "herald/metrics/metrics.hpp"
#include "herald/net/tls.hpp"
#include "herald/net/worker_context.hpp"
#include "fd_reactor.hpp"

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace herald::net {

// One read's worth of input a session may hold beyond its request or message (see budget()).
inline constexpr std::size_t k_read_allowance = 64 * 1024;
// Lingering close: after the last answer and shutdown(send), input is read and discarded until
// EOF, or until the peer acknowledged all our output, for at most this long (nginx's
// lingering_close).
inline constexpr milliseconds k_linger_time{2000};
// A connection idle this long frees its send queue's storage (connection::trim_idle()).
inline constexpr milliseconds k_idle_trim{1000};

struct chunk {
    chunk_hold hold;  // keeps `data` alive; empty for static bytes
    const char* data = nullptr;
    std::size_t size = 0;
    // A live message's publish time (else empty): its write is recorded in
    // herald_delivery_latency_seconds.
    time_point published{};

    static chunk of_static(std::string_view s) noexcept { return {{}, s.data(), s.size()}; }
    static chunk of_string(std::string s);
    template <class T>
    static chunk of_shared(const std::shared_ptr<T>& owner, std::string_view bytes) {
        return {std::shared_ptr<const void>(owner), bytes.data(), bytes.size()};
    }
    // A message's bytes, held as the worker says (worker_context::hold()); a live one (not a
    // replay) carries its publish time.
    template <class Message>
    static chunk of_message(worker_context& w, const std::shared_ptr<Message>& m,
                            std::string_view bytes, bool live) {
        chunk c{w.hold(m), bytes.data(), bytes.size()};
        if (live) c.published = m->created;
        return c;
    }
};

// Releases a process-wide connection slot when the TCP connection ends (moves with the socket
// from the HTTP session to a WebSocket or SSE session).
class connection_slot {
public:
    connection_slot() = default;
    explicit connection_slot(process_state* s) noexcept : state_(s) {}
    connection_slot(connection_slot&& o) noexcept : state_(std::exchange(o.state_, nullptr)) {}
    connection_slot& operator=(connection_slot&& o) noexcept {
        release();
        state_ = std::exchange(o.state_, nullptr);
        return *this;
    }
    ~connection_slot() { release(); }

private:
    void release() noexcept {
        if (state_) state_->connections.fetch_sub(1, std::memory_order_relaxed);
        state_ = nullptr;
    }
    process_state* state_ = nullptr;
};

// What passes from one session to the next on the same TCP connection: the socket, its slot,
// on a TLS listener the TLS session (with any ciphertext not yet written), and the peer's address.
//
// This is the sessions' transport seam. A session touches its socket only as a non-blocking
// stream descriptor (recv, sendmsg, readiness from the worker's fd_reactor, shutdown, close,
// TIOCOUTQ), never as TCP: the peer's address comes in the link (the listener looks it up once
// per accept). So any connected stream socket carries a session; unit tests
// drive every session over one end of a socketpair(AF_UNIX) (see link_over()), with the data path
// exactly the production one (no indirection per byte or per write).
struct link {
    socket_fd socket;
    connection_slot slot;
    std::unique_ptr<tls::channel> tls;  // null on plain TCP
    // The TCP peer (IPv4-mapped addresses unmapped); read by the HTTP session, the only one that
    // needs it (a stream session gets it empty, and holds nothing for it).
    asio::ip::address peer{};
};

// A link over `fd`, a connected stream socket of any family (the listener's accepted TCP socket,
// or one end of a socketpair in a test): made non-blocking and owned by the link from here on.
// No connection slot; `peer` is the address the sessions see as the TCP peer.
[[nodiscard]] link link_over(asio::io_context& ioc, int fd, asio::ip::address peer, error_code& ec);

class connection : public std::enable_shared_from_this<connection> {
public:
    static constexpr std::size_t k_enqueue_span = 128;
    connection(worker_context& w, link l, metrics::transport t);
    virtual ~connection();
    connection(const connection&) = delete;
    connection& operator=(const connection&) = delete;

    // Queues bytes; returns false (and starts the slow-consumer path) when the queue would pass
    // limits.max_queued_bytes. `force` bypasses the bound (close frames).
    bool enqueue(chunk c, bool force = false);
    // enqueue(chunk::of_message(w_, m, bytes, live)), the chunk made in place: a fan-out's
    // per-delivery path, so its common case (plain TCP, room in the queue) is inline.
    template <class Message>
    bool enqueue_message(const std::shared_ptr<Message>& m, std::string_view bytes, bool live) {
        if (closed_ || lingering_ || slow_ || tls_ || bytes.empty() ||
            queued_bytes_ + bytes.size() > w_.cfg.limits.max_queued_bytes)
            return enqueue(chunk::of_message(w_, m, bytes, live));
        queued_bytes_ += bytes.size();
        auto& c = queue_.emplace_back();
        w_.hold_into(c.hold, m);
        c.data = bytes.data();
        c.size = bytes.size();
        if (live) c.published = m->created;
        schedule_flush();
        return true;
    }

    // Writes what is queued; called by the worker's flush pass.
    void flush();

    // Periodic sweep (timeouts, pings, heartbeats) and server drain.
    virtual void on_tick(time_point now) = 0;
    // `reconnect_after`: the hint (shutdown.drain_spread) a stream passes on to its client.
    virtual void on_drain(std::optional<milliseconds> reconnect_after) = 0;
    // Closes the connection if it belongs to `user`; true when it did.
    virtual bool revoke(std::string_view /*user*/) { return false; }
    // A reload replaced the worker's settings: re-resolve what was taken from them (a
    // subscription's delivery rule points into them). Runs on this worker's thread, before the
    // replaced settings are freed (worker_context::set_settings).
    virtual void on_settings_changed() {}

    [[nodiscard]] bool closed() const noexcept { return closed_; }

    // Fetches the lines enqueue() reads and writes here (flags, queue, its bound), ahead of a
    // delivery (see shard::deliver): all of them lie in the object's first k_enqueue_span bytes
    // (checked in connection.cpp), which may start anywhere in a line.
    void prefetch_enqueue() const noexcept {
        const auto* p = reinterpret_cast<const char*>(this);
        __builtin_prefetch(p);
        __builtin_prefetch(p + 64);
        __builtin_prefetch(p + k_enqueue_span - 1);
    }
    // Fetches the first queued chunks (after prefetch_enqueue() brought in the queue's pointer).
    void prefetch_queue() const noexcept {
        if (head_ < queue_.size()) __builtin_prefetch(queue_.data() + head_);
    }

    // From the sweep: a connection that has written nothing for k_idle_trim gives back its send
    // queue's storage (a busy one keeps it, so the message path does not allocate per flush).
    void trim_idle(time_point now) noexcept {
        if (!writing_ && queue_.empty() && queue_.capacity() != 0 &&
            now - last_write_ >= k_idle_trim)
            std::vector<chunk>().swap(queue_);
    }

    // ---- Memory budget ------------------------------------------------------------------------
    // Every byte the server holds for this connection: the send queue (messages, answers, control
    // and close frames), TLS ciphertext in either direction, and what the session holds itself
    // (session_held_bytes(): unparsed input, a request being parsed, partial frames and
    // fragments, answers waiting for an earlier one).
    [[nodiscard]] std::size_t held_bytes() const noexcept;
    // Bytes waiting to leave: the send queue and TLS ciphertext not yet written. enqueue() keeps
    // it within limits.max_queued_bytes (plus forced close frames: one per connection).
    [[nodiscard]] std::size_t output_bytes() const noexcept;
    // The bound on held_bytes(): limits.max_queued_bytes of output plus one request's or
    // message's input (http.max_header_bytes + limits.max_message_bytes) plus one read (64 KiB).
    // A read is not armed while held_bytes() is at the budget (see wait_readable()).
    [[nodiscard]] std::size_t budget() const noexcept;

protected:
    // Closes the socket at once; pending handlers complete with operation_aborted.
    void close_now();
    // Closes once the queue is written (or after `grace`, whichever comes first).
    void close_after_flush(milliseconds grace = milliseconds(2000));
    // Hook for subclasses: unsubscribe, etc. Runs once, from close_now().
    virtual void on_close() {}
    // Hook: the queue overflowed; runs from the flush pass, never inside a fan-out loop.
    virtual void on_slow_consumer() { close_now(); }
    // Hook: flush() is about to write; a subclass may queue what it coalesced meanwhile (the
    // WebSocket pong for the latest ping).
    virtual void on_flush_begin() {}
    // Gives the socket, the slot and the TLS session to a new session; this one ends without
    // closing the socket. Only when nothing is queued or being written.
    link hand_over();
    // Closes at `now + grace` at the latest (the close handshake's bound).
    void arm_close_deadline(milliseconds grace) noexcept;
    // The send queue's storage goes as soon as what is queued now is written: a stream's
    // handshake answer, after which most streams stay idle (a busy one gets storage back with
    // its next message). Without this it stayed for k_idle_trim, and during a connect burst
    // every new stream took a new block instead of the one the previous stream gave back.
    void release_queue_when_flushed() noexcept { trim_flushed_ = true; }
    [[nodiscard]] bool idle_output() const noexcept { return !writing_ && head_ >= queue_.size(); }
    // Drops everything queued that has not started to leave (keeps a partly written chunk).
    void drop_queue() noexcept;

    // Waits for the socket to be readable, then calls on_readable() (unless closed).
    // Back-pressure: while the connection holds its budget or may_read() says no, the read is
    // parked instead (nothing more is taken from the socket, so TCP flow control slows the peer)
    // and armed again by resume_reading(), which the write path calls whenever output leaves.
    // A parked connection keeps itself alive until it reads again or closes.
    void wait_readable();
    virtual void on_readable() {}
    // Whether the session takes more input now (HTTP: not while its requests' answers are owed
    // past its bound). Checked when a read would be armed.
    [[nodiscard]] virtual bool may_read() const noexcept { return true; }
    // Arms a parked read if the budget and may_read() allow it now.
    void resume_reading();
    [[nodiscard]] bool read_parked() const noexcept { return read_parked_; }
    // Asks for one on_output_room() call (posted, never nested in the caller) once a write
    // leaves output_bytes() at or below `mark`.
    void want_room(std::size_t mark);
    virtual void on_output_room() {}
    // Keeps this connection alive while no wait of its own is pending (see self_).
    enum hold_reason : unsigned { hold_parked = 1, hold_session = 2 };
    void hold(hold_reason why);
    void unhold(hold_reason why) noexcept;
    // What the session holds beyond the send queue (see held_bytes()).
    [[nodiscard]] virtual std::size_t session_held_bytes() const noexcept { return 0; }
    // Non-blocking read into the worker's scratch buffer (plaintext, also on TLS). 0 bytes with
    // !ec: would block.
    std::size_t read_some(error_code& ec);

    [[nodiscard]] std::size_t queued_bytes() const noexcept { return queued_bytes_; }
    // A TLS connection whose handshake has not finished yet.
    [[nodiscard]] bool handshaking() const noexcept { return tls_ && !tls_established_; }
    [[nodiscard]] bool writing() const noexcept { return writing_; }
    [[nodiscard]] bool slow() const noexcept { return slow_; }
    [[nodiscard]] time_point close_deadline() const noexcept { return close_deadline_; }
    void set_transport(metrics::transport t) noexcept;

    worker_context& w_;
    time_point last_write_;

private:
    friend class worker_context;
    friend class fd_reactor;
    // The socket's I/O (plain syscalls: its readiness comes from the worker's fd_reactor).
    std::size_t sock_read(char* buf, std::size_t n, error_code& ec) noexcept;
    template <class Buffers>
    std::size_t sock_write(const Buffers& bufs, error_code& ec) noexcept;
    // From the fd_reactor: the socket is ready for the pending read and/or write wait.
    void on_ready(bool read, bool write);
    // self_ is held exactly while a wait or a hold is pending (needs_self()); drop_self()
    // releases it on a later turn, never inside the caller.
    [[nodiscard]] bool needs_self() const noexcept {
        return read_waiting_ || writing_ || holds_ != 0;
    }
    void keep_self();
    void drop_self();
    // The socket could not be registered or re-registered: close on a later turn.
    void fail_later();
    void do_wait_writable();
    void on_flushed();
    void schedule_flush() {
        if (!flush_wanted_ && !writing_) {
            flush_wanted_ = true;
            w_.want_flush(shared_from_this());
        }
    }
    // One non-blocking write; false when flushing must stop here (now waiting for the socket to
    // become writable, or closed after an error).
    template <class Buffers>
    bool write_now(const Buffers& bufs, std::size_t& written);
    std::size_t read_tls(error_code& ec);
    // A chunk has left (plain: written; TLS: encrypted into the record being written). `now`
    // is read once per write, and only when a chunk carries a publish time.
    void sent(const chunk& c, time_point& now) noexcept { sent_all(&c, &c + 1, now); }
    // sent() for each of [from, to), with what it reads held in locals (once per delivery).
    void sent_all(const chunk* from, const chunk* to, time_point& now) noexcept {
        auto& latency = w_.counters.delivery_latency[static_cast<std::size_t>(transport_)];
        std::size_t bucket = w_.latency_bucket;
        for (; from != to; ++from) {
            if (from->published == time_point{}) continue;
            if (now == time_point{}) now = clock::now();
            bucket = latency.observe_near(now - from->published, bucket);
        }
        w_.latency_bucket = bucket;
    }
    void flush_tls();
    bool encrypt_queued();
    // Output left: arm a parked read, call on_output_room() if asked for.
    void after_write();
    void arm_read();
    // Lingering close (after shutdown(send)): read and discard until EOF, until the peer has
    // acknowledged all our output (linger_done(), also checked by the worker's sweep) or the
    // close deadline, so that the kernel does not answer unread input with an RST that destroys
    // answers the peer has not received yet.
    void start_linger();
    void linger_read();
    [[nodiscard]] bool linger_done() noexcept;

    socket_fd socket_;
    std::uint32_t fd_events_;      // what the socket is registered for in the fd_reactor
    std::uint32_t head_ = 0;       // first unsent chunk
    std::uint32_t head_sent_ = 0;  // bytes of queue_[head_] already written (< 1 GiB)
    // Flags packed into bits, with the transport and the holds (issue 15: every idle connection
    // holds this object; the socket, queue position and these share 16 bytes).
    bool writing_ : 1 = false;
    bool flush_wanted_ : 1 = false;
    bool slow_ : 1 = false;
    bool closed_ : 1 = false;
    bool close_when_flushed_ : 1 = false;
    bool tls_established_ : 1 = false;
    bool tls_shutdown_sent_ : 1 = false;
    bool read_armed_ : 1 = false;    // a read wait (or a posted on_readable) is pending
    bool read_waiting_ : 1 = false;  // the read wait is the fd_reactor's (not a posted call)
    bool registered_ : 1 = false;    // the socket is in the fd_reactor's set
    bool read_parked_ : 1 = false;   // a read was wanted but held back (see wait_readable())
    bool room_wanted_ : 1 = false;
    bool trim_flushed_ : 1 = false;  // release_queue_when_flushed()
    bool lingering_ : 1 = false;
    bool attached_ : 1 = false;  // in the worker's list (prev_, next_)
    metrics::transport transport_;
    std::uint8_t holds_ = 0;  // hold_reason bits
    connection_slot slot_;
    std::unique_ptr<tls::channel> tls_;
    std::vector<chunk> queue_;
    std::size_t queued_bytes_ = 0;
    time_point close_deadline_ = time_point::max();
    std::size_t room_mark_ = 0;
    // The connection's reference to itself while a wait or a hold is pending (a parked read,
    // or a session that owes answers and reads no more): what a pending Asio operation held
    // before. Listed in the fd_reactor (held_prev_, held_next_), which releases it when the
    // io_context goes, so nothing outlives the loop (no leak).
    std::shared_ptr<connection> self_;
    connection* held_prev_ = nullptr;
    connection* held_next_ = nullptr;
    // Intrusive list of the worker's live connections.
    connection* prev_ = nullptr;
    connection* next_ = nullptr;
};

}  // namespace herald::net
