#include "herald/net/tls.hpp"

#include "herald/config/config.hpp"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace herald::net::tls {
namespace {

// Drains OpenSSL's error queue into one line ("error:0A000086:SSL routines::...").
std::string drain_errors() {
    std::string out;
    while (unsigned long e = ERR_get_error()) {
        char buf[256];
        ERR_error_string_n(e, buf, sizeof buf);
        if (!out.empty()) out += "; ";
        out += buf;
    }
    return out.empty() ? "unknown error" : out;
}

// ALPN: this server speaks HTTP/1.1 only (WebSocket upgrades and SSE included).
int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
    static const unsigned char http11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
    unsigned char* sel = nullptr;
    if (SSL_select_next_proto(&sel, outlen, http11, sizeof http11, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;  // no overlap: go on without ALPN rather than fail
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

}  // namespace

std::shared_ptr<context> context::load(const std::string& cert_file, const std::string& key_file,
                                       std::string_view min_version) {
    ERR_clear_error();
    SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) throw std::runtime_error("cannot create a TLS context: " + drain_errors());
    std::shared_ptr<context> holder(new context(ctx));
    const int min = (min_version == "1.3") ? TLS1_3_VERSION : TLS1_2_VERSION;
    SSL_CTX_set_min_proto_version(ctx, min);
    // Record buffers are released while a connection has nothing to read or write.
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(
        ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, nullptr);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file.c_str()) != 1)
        throw std::runtime_error("cannot load the certificate chain from '" + cert_file +
                                 "': " + drain_errors());
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
        const bool mismatch = ERR_GET_REASON(ERR_peek_last_error()) == X509_R_KEY_VALUES_MISMATCH;
        const std::string why = drain_errors();
        if (mismatch)
            throw std::runtime_error("the private key in '" + key_file +
                                     "' does not match the certificate in '" + cert_file +
                                     "': " + why);
        throw std::runtime_error("cannot load the private key from '" + key_file + "': " + why);
    }
    if (SSL_CTX_check_private_key(ctx) != 1)
        throw std::runtime_error("the private key in '" + key_file +
                                 "' does not match the certificate in '" + cert_file +
                                 "': " + drain_errors());
    return holder;
}

std::shared_ptr<const context> load_configured(const config::settings& cfg) {
    if (cfg.tls.cert.empty()) return nullptr;
    try {
        return context::load(cfg.tls.cert, cfg.tls.key, cfg.tls.min_version);
    } catch (const std::runtime_error& e) {
        const std::string what = e.what();
        throw config::config_error(
            what.find("private key") != std::string::npos ? "tls.key" : "tls.cert", what);
    }
}

context::~context() {
    SSL_CTX_free(ctx_);
}

// The BIO between OpenSSL and a channel: reads come from channel::in_, writes append to
// channel::out_. Nothing is copied besides the socket read into in_ and OpenSSL's own records.
struct bio_access {
    static int write(BIO* b, const char* data, int len) {
        auto* ch = static_cast<channel*>(BIO_get_data(b));
        BIO_clear_retry_flags(b);
        ch->out_.append(data, static_cast<std::size_t>(len));
        return len;
    }
    static int read(BIO* b, char* out, int len) {
        auto* ch = static_cast<channel*>(BIO_get_data(b));
        BIO_clear_retry_flags(b);
        const std::size_t avail = ch->in_.size() - ch->in_head_;
        if (avail == 0) {
            BIO_set_retry_read(b);
            return -1;
        }
        const std::size_t n = std::min(avail, static_cast<std::size_t>(len));
        std::memcpy(out, ch->in_.data() + ch->in_head_, n);
        ch->in_head_ += n;
        if (ch->in_head_ == ch->in_.size()) {
            std::string().swap(ch->in_);  // an idle connection holds no input buffer
            ch->in_head_ = 0;
        }
        return static_cast<int>(n);
    }
    static long ctrl(BIO* b, int cmd, long, void*) {
        auto* ch = static_cast<channel*>(BIO_get_data(b));
        switch (cmd) {
            case BIO_CTRL_FLUSH: return 1;
            case BIO_CTRL_PENDING: return static_cast<long>(ch->in_.size() - ch->in_head_);
            case BIO_CTRL_WPENDING: return static_cast<long>(ch->out_.size() - ch->out_head_);
            default: return 0;
        }
    }
    static int create(BIO* b) {
        BIO_set_init(b, 1);
        return 1;
    }
    static const BIO_METHOD* method() {
        static BIO_METHOD* m = [] {
            BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "herald");
            BIO_meth_set_write(bm, write);
            BIO_meth_set_read(bm, read);
            BIO_meth_set_ctrl(bm, ctrl);
            BIO_meth_set_create(bm, create);
            return bm;
        }();
        return m;
    }
};

channel::channel(const context& ctx) {
    ssl_ = SSL_new(ctx.native());
    BIO* bio = ssl_ ? BIO_new(bio_access::method()) : nullptr;
    if (!bio) {
        SSL_free(ssl_);
        throw std::bad_alloc();
    }
    BIO_set_data(bio, this);
    SSL_set_bio(ssl_, bio, bio);  // one BIO both ways; SSL_free frees it
    SSL_set_accept_state(ssl_);
}

channel::~channel() {
    SSL_free(ssl_);
}

void channel::feed(const char* data, std::size_t n) {
    fed_ = fed_ || n > 0;
    in_.append(data, n);
}

channel::result channel::read(char* out, std::size_t cap, std::size_t& n) {
    n = 0;
    ERR_clear_error();
    const int r = SSL_read(ssl_, out, static_cast<int>(std::min<std::size_t>(cap, 1u << 30)));
    if (r > 0) {
        n = static_cast<std::size_t>(r);
        return result::data;
    }
    switch (SSL_get_error(ssl_, r)) {
        case SSL_ERROR_WANT_READ:
        case SSL_ERROR_WANT_WRITE:  // our BIO never refuses a write; treat like "need input"
            return result::want_input;
        case SSL_ERROR_ZERO_RETURN: return result::closed;
        default:
            error_ = drain_errors();
            return result::error;  // the alert telling the peer why is in the output
    }
}

bool channel::write(const char* data, std::size_t n) {
    ERR_clear_error();
    while (n > 0) {
        const int chunk = static_cast<int>(std::min<std::size_t>(n, 1u << 30));
        const int w = SSL_write(ssl_, data, chunk);
        if (w <= 0) {
            error_ = drain_errors();
            return false;
        }
        data += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

void channel::shutdown() {
    ERR_clear_error();
    if (SSL_is_init_finished(ssl_)) SSL_shutdown(ssl_);
    ERR_clear_error();
}

std::string_view channel::output() {
    return std::string_view(out_).substr(out_head_);
}

void channel::consume_output(std::size_t n) {
    out_head_ += n;
    if (out_head_ >= out_.size()) {
        std::string().swap(out_);  // an idle connection holds no output buffer
        out_head_ = 0;
    }
}

bool channel::has_output() const {
    return out_head_ < out_.size();
}

bool channel::has_input() const {
    return SSL_pending(ssl_) > 0 || in_head_ < in_.size();
}

bool channel::handshake_done() const {
    return SSL_is_init_finished(ssl_) == 1;
}

}  // namespace herald::net::tls
