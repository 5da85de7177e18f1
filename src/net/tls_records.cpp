// The connection's TLS record path (beside tls.cpp, which holds the OpenSSL channel): decrypting
// into the worker's scratch buffer, and sealing queued frames into records before a write.
//
#include "connection.hpp"

#include <spdlog/spdlog.h>

#include <cstring>

namespace herald::net {

// The scratch buffer's last k_tls_raw bytes take ciphertext from the socket; plaintext is
// decrypted into the rest, where the sessions expect it.
namespace {
constexpr std::size_t k_tls_raw = 16 * 1024;
constexpr std::size_t k_tls_record = 16 * 1024;  // plaintext per TLS record at most
constexpr std::size_t k_tls_batch = 64 * 1024;   // plaintext encrypted per write at most
}  // namespace

std::size_t connection::read_tls(error_code& ec) {
    auto& buf = w_.scratch();
    const std::size_t plain_cap = buf.size() - k_tls_raw;
    for (;;) {
        std::size_t n = 0;
        const auto r = tls_->read(buf.data(), plain_cap, n);
        if (!tls_established_ && tls_->handshake_done()) {
            tls_established_ = true;
            w_.counters.tls_handshakes.add(1);
        }
        if (tls_->has_output()) schedule_flush();  // handshake messages, tickets, alerts
        switch (r) {
            case tls::channel::result::data: return n;
            case tls::channel::result::closed: ec = asio::error::eof; return 0;
            case tls::channel::result::error:
                w_.counters.tls_errors.add(1);
                spdlog::debug("tls: {}", tls_->last_error());
                ec = asio::error::connection_aborted;
                return 0;
            case tls::channel::result::want_input: break;
        }
        const std::size_t got = sock_read(buf.data() + plain_cap, k_tls_raw, ec);
        if (ec == asio::error::would_block || ec == asio::error::try_again) {
            ec = {};
            return 0;
        }
        if (ec) {
            // A peer that never finished its handshake (a plain-HTTP client, a scanner) is
            // counted once, when it goes.
            if (!tls_established_ && ec == asio::error::eof) w_.counters.tls_errors.add(1);
            return 0;
        }
        if (!tls_established_ && !tls_->handshake_started() && buf[plain_cap] != 0x16) {
            // Not a TLS handshake record: most likely plain HTTP sent to this HTTPS port. Say
            // so in plain HTTP (as nginx does) rather than with a TLS alert nobody can read.
            static constexpr std::string_view k_plain_answer =
                "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                "Content-Length: 91\r\nConnection: close\r\n\r\n"
                "{\"error\":{\"code\":\"tls_required\",\"message\":\"this port speaks TLS: "
                "use https:// or wss://\"}}\n";
            error_code ignored;
            sock_write(asio::buffer(k_plain_answer), ignored);
            w_.counters.tls_errors.add(1);
            w_.counters.inc(metrics::reject::tls_required);
            ec = asio::error::connection_aborted;
            return 0;
        }
        tls_->feed(buf.data() + plain_cap, got);
    }
}

bool connection::encrypt_queued() {
    // Frames are coalesced into records of up to 16 KiB (one MAC and one header per record, not
    // per frame); a chunk of a record's size or more is encrypted where it lies. The staging
    // buffer is the one plain writes pack small chunks into.
    auto& stage = w_.pack();
    time_point now{};
    std::size_t staged = 0;
    std::size_t done = 0;
    auto seal = [&]() {
        const bool ok = tls_->write(stage.data(), staged);
        staged = 0;
        return ok;
    };
    while (head_ < queue_.size() && done < k_tls_batch) {
        auto& c = queue_[head_];
        if (c.size >= k_tls_record) {
            if (staged > 0 && !seal()) return false;
            if (!tls_->write(c.data, c.size)) return false;
        } else {
            if (staged + c.size > k_tls_record && !seal()) return false;
            std::memcpy(stage.data() + staged, c.data, c.size);
            staged += c.size;
        }
        done += c.size;
        queued_bytes_ -= c.size;
        sent(c, now);
        c.hold.reset();
        ++head_;
    }
    return staged == 0 || seal();
}

void connection::flush_tls() {
    for (;;) {
        const auto out = tls_->output();
        if (!out.empty()) {
            std::size_t written = 0;
            if (!write_now(asio::buffer(out), written)) return;
            tls_->consume_output(written);
            continue;
        }
        if (head_ >= queue_.size()) break;
        if (!encrypt_queued()) {
            w_.counters.tls_errors.add(1);
            spdlog::debug("tls: {}", tls_->last_error());
            close_now();
            return;
        }
    }
    on_flushed();
}

}  // namespace herald::net
