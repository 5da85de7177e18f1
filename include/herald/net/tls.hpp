#pragma once
// In-process TLS (HTTPS and WSS) on OpenSSL, for deployments without a TLS-terminating proxy.
//
// Each connection runs OpenSSL over a BIO of ours that reads and writes two byte strings: the
// connection reads ciphertext from its non-blocking socket into the channel and writes the
// channel's ciphertext out with the same corked, non-blocking write path as plain TCP. (Asio's
// ssl::stream does the same inside its engine; owning it here keeps one write path, lets the TLS
// state move from the HTTP session to the WebSocket or SSE session with the socket, and lets an
// idle connection hold no buffers: both strings are freed when empty, and OpenSSL's record
// buffers are released between records.)
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace herald::config {
struct settings;
}

using SSL_CTX = struct ssl_ctx_st;
using SSL = struct ssl_st;
using BIO = struct bio_st;

namespace herald::net::tls {

// The server's certificate chain and key, loaded once; shared read-only by every worker.
class context {
public:
    // Loads a PEM certificate chain and a PEM private key. `min_version` is "1.2" or "1.3".
    // Throws std::runtime_error saying which file failed and OpenSSL's reason.
    static std::shared_ptr<context> load(const std::string& cert_file, const std::string& key_file,
                                         std::string_view min_version);
    ~context();
    context(const context&) = delete;
    context& operator=(const context&) = delete;

    [[nodiscard]] SSL_CTX* native() const noexcept { return ctx_; }

private:
    explicit context(SSL_CTX* ctx) noexcept : ctx_(ctx) {}
    SSL_CTX* ctx_;
};

// The context the settings ask for (tls.cert, tls.key, tls.min_version), or null when TLS is off.
// Throws config::config_error naming tls.cert or tls.key.
[[nodiscard]] std::shared_ptr<const context> load_configured(const config::settings& cfg);

// One connection's TLS session (server side).
class channel {
public:
    explicit channel(const context& ctx);
    ~channel();
    channel(const channel&) = delete;
    channel& operator=(const channel&) = delete;

    enum class result { data, want_input, closed, error };

    // Ciphertext from the peer.
    void feed(const char* data, std::size_t n);
    // Decrypts into `out` (at most `cap` bytes). `n` is set when the result is `data`.
    result read(char* out, std::size_t cap, std::size_t& n);
    // Encrypts plaintext; the records join the pending output.
    bool write(const char* data, std::size_t n);
    // Queues a close_notify alert.
    void shutdown();

    // Ciphertext waiting for the socket (handshake messages, records, alerts).
    [[nodiscard]] std::string_view output();
    void consume_output(std::size_t n);
    [[nodiscard]] bool has_output() const;
    // Plaintext or ciphertext already inside the channel: a read would not block.
    [[nodiscard]] bool has_input() const;
    // Ciphertext held (counts toward the connection's memory budget).
    [[nodiscard]] std::size_t input_bytes() const noexcept { return in_.size() - in_head_; }
    [[nodiscard]] std::size_t output_bytes() const noexcept { return out_.size() - out_head_; }

    [[nodiscard]] bool handshake_done() const;
    // Any ciphertext received yet (the first byte of a TLS connection is 0x16, a handshake).
    [[nodiscard]] bool handshake_started() const noexcept { return fed_; }
    // OpenSSL's reason for the last error, for logs.
    [[nodiscard]] const std::string& last_error() const noexcept { return error_; }

private:
    friend struct bio_access;

    SSL* ssl_ = nullptr;
    std::string in_;  // ciphertext received, not yet read by OpenSSL
    std::size_t in_head_ = 0;
    std::string out_;  // ciphertext written by OpenSSL, not yet sent
    std::size_t out_head_ = 0;
    std::string error_;
    bool fed_ = false;
};

}  // namespace herald::net::tls
