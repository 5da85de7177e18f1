#include "herald/wire/ws_deflate.hpp"

#include "herald/common/text.hpp"
#include "herald/wire/ws_codec.hpp"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <memory>

namespace herald::ws {

namespace {

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

// A window-bits value, "8".."15", possibly quoted (RFC 7692 7.1.2); -1 when invalid.
int window_bits(std::string_view v) {
    if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
    if (v.empty() || v.size() > 2 || v[0] == '0') return -1;
    int n = 0;
    for (char c : v) {
        if (c < '0' || c > '9') return -1;
        n = n * 10 + (c - '0');
    }
    return n >= 8 && n <= 15 ? n : -1;
}

// One offer: "permessage-deflate; p1; p2=v". Each parameter at most once.
std::optional<deflate_offer> parse_offer(std::string_view offer) {
    auto semi = offer.find(';');
    if (!iequals(trim_ows(offer.substr(0, semi)), "permessage-deflate")) return std::nullopt;
    deflate_offer o;
    unsigned seen = 0;
    while (semi != std::string_view::npos) {
        offer.remove_prefix(semi + 1);
        semi = offer.find(';');
        const auto param = trim_ows(offer.substr(0, semi));
        const auto eq = param.find('=');
        const auto name = trim_ows(param.substr(0, eq));
        const bool has_value = eq != std::string_view::npos;
        const auto value = has_value ? trim_ows(param.substr(eq + 1)) : std::string_view{};
        unsigned bit = 0;
        if (iequals(name, "server_no_context_takeover") ||
            iequals(name, "client_no_context_takeover")) {
            if (has_value) return std::nullopt;
            bit = iequals(name, "server_no_context_takeover") ? 1 : 2;
        } else if (iequals(name, "server_max_window_bits")) {
            const int n = has_value ? window_bits(value) : -1;
            if (n < 0) return std::nullopt;
            o.server_max_window_bits = static_cast<std::uint8_t>(n);
            o.server_max_window_bits_given = true;
            bit = 4;
        } else if (iequals(name, "client_max_window_bits")) {
            // Our inflater's window is always 15; the client may use any window up to it.
            if (has_value && window_bits(value) < 0) return std::nullopt;
            bit = 8;
        } else {
            return std::nullopt;
        }
        if (seen & bit) return std::nullopt;
        seen |= bit;
    }
    return o;
}

// zlib's raw deflate does not take a window of 8 bits: the smallest frame window is 9.
constexpr int k_min_window = 9;

struct deflater {
    z_stream z{};
    int level = -2;
    ~deflater() {
        if (level != -2) deflateEnd(&z);
    }
};

struct inflater {
    z_stream z{};
    bool ready = false;
    ~inflater() {
        if (ready) inflateEnd(&z);
    }
};

// Per thread (a worker): a server's message is compressed by whichever worker first delivers it
// to a compressing subscriber; a client's message is inflated by its connection's worker.
thread_local deflater t_deflate;
thread_local inflater t_inflate;

// Deflates `in` alone (no context carried over), appends it to `out` without the final
// 00 00 ff ff (RFC 7692 7.2.1). False on a zlib failure.
bool deflate_payload(std::string_view in, int level, std::string& out) {
    auto& d = t_deflate;
    if (d.level != level) {
        if (d.level != -2) deflateEnd(&d.z);
        d.z = z_stream{};
        d.level = -2;
        // memLevel 8, window 15: one stream per thread, reset for each message.
        if (deflateInit2(&d.z, level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
        d.level = level;
    } else if (deflateReset(&d.z) != Z_OK) {
        return false;
    }
    const std::size_t start = out.size();
    const std::size_t bound = deflateBound(&d.z, in.size()) + 16;
    out.resize(start + bound);
    d.z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    d.z.avail_in = static_cast<uInt>(in.size());
    d.z.next_out = reinterpret_cast<Bytef*>(out.data() + start);
    d.z.avail_out = static_cast<uInt>(bound);
    const int rc = deflate(&d.z, Z_SYNC_FLUSH);
    if ((rc != Z_OK && rc != Z_BUF_ERROR) || d.z.avail_in != 0) {
        out.resize(start);
        return false;
    }
    std::size_t n = bound - d.z.avail_out;
    if (n >= 4) n -= 4;  // the sync flush's empty stored block, 00 00 ff ff
    out.resize(start + n);
    return true;
}

}  // namespace

std::optional<deflate_offer> pick_deflate_offer(std::string_view header) {
    // Offers are separated by ','; parameter values never contain one (they are 8..15).
    while (!header.empty()) {
        const auto comma = header.find(',');
        if (auto o = parse_offer(header.substr(0, comma))) return o;
        if (comma == std::string_view::npos) break;
        header.remove_prefix(comma + 1);
    }
    return std::nullopt;
}

std::string deflate_response(const deflate_offer& o) {
    std::string r = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    if (o.server_max_window_bits_given)
        r += "; server_max_window_bits=" + std::to_string(o.server_max_window_bits);
    return r;
}

std::string deflate_frames(std::string_view frames, int level, std::uint8_t& window_bits) {
    std::string out;
    out.reserve(frames.size());
    bool smaller = false;
    int bits = k_min_window;
    std::size_t pos = 0;
    while (pos + 2 <= frames.size()) {
        const auto b0 = static_cast<std::uint8_t>(frames[pos]);
        std::uint64_t len = static_cast<std::uint8_t>(frames[pos + 1]) & 0x7F;
        std::size_t hn = 2;
        if (len == 126) {
            len = (static_cast<std::uint64_t>(static_cast<std::uint8_t>(frames[pos + 2])) << 8) |
                  static_cast<std::uint8_t>(frames[pos + 3]);
            hn = 4;
        } else if (len == 127) {
            len = 0;
            for (int i = 0; i < 8; ++i)
                len = (len << 8) | static_cast<std::uint8_t>(frames[pos + 2 + i]);
            hn = 10;
        }
        const auto payload = frames.substr(pos + hn, static_cast<std::size_t>(len));
        const auto plain = frames.substr(pos, hn + payload.size());
        pos += plain.size();
        std::string z;
        if (!payload.empty() && deflate_payload(payload, level, z) &&
            z.size() + 4 < payload.size()) {
            append_frame_header(out, static_cast<std::uint8_t>(b0 | 0x40),
                                z.size());  // RSV1: compressed
            out += z;
            smaller = true;
            while (bits < 15 && (std::size_t{1} << bits) < payload.size()) ++bits;
        } else {
            out += plain;
        }
    }
    if (!smaller || out.size() >= frames.size()) return {};
    window_bits = static_cast<std::uint8_t>(bits);
    return out;
}

inflate_status inflate_message(std::string_view compressed, std::size_t max_bytes,
                               std::string& out) {
    auto& f = t_inflate;
    if (!f.ready) {
        f.z = z_stream{};
        if (inflateInit2(&f.z, -15) != Z_OK) return inflate_status::corrupt;
        f.ready = true;
    } else if (inflateReset(&f.z) != Z_OK) {
        return inflate_status::corrupt;
    }
    static constexpr unsigned char k_tail[4] = {0x00, 0x00, 0xff, 0xff};
    out.clear();
    // Grows geometrically up to max_bytes + 1: one byte past the cap proves it is exceeded.
    const std::size_t cap = max_bytes + 1;
    out.resize(std::min(cap, std::max<std::size_t>(compressed.size() * 4, 1024)));
    std::size_t used = 0;
    bool ended = false;
    for (int part = 0; part < 2 && !ended; ++part) {
        const std::string_view in =
            part == 0 ? compressed
                      : std::string_view(reinterpret_cast<const char*>(k_tail), sizeof k_tail);
        f.z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
        f.z.avail_in = static_cast<uInt>(in.size());
        while (true) {
            if (used == out.size()) {
                if (out.size() >= cap) {
                    out.clear();
                    return inflate_status::too_big;
                }
                out.resize(std::min(cap, out.size() * 2));
            }
            f.z.next_out = reinterpret_cast<Bytef*>(out.data() + used);
            f.z.avail_out = static_cast<uInt>(out.size() - used);
            const int rc = inflate(&f.z, Z_SYNC_FLUSH);
            used = out.size() - f.z.avail_out;
            if (rc == Z_STREAM_END) {
                // A final block ends the stream: anything after it is not deflate data.
                if (f.z.avail_in != 0 && part == 0) {
                    out.clear();
                    return inflate_status::corrupt;
                }
                ended = true;
                break;
            }
            if (rc == Z_BUF_ERROR && f.z.avail_out != 0) break;  // input used up
            if (rc != Z_OK && rc != Z_BUF_ERROR) {
                out.clear();
                return inflate_status::corrupt;
            }
            if (f.z.avail_in == 0 && f.z.avail_out != 0) break;
        }
        if (used > max_bytes) {
            out.clear();
            return inflate_status::too_big;
        }
    }
    out.resize(used);
    return inflate_status::ok;
}

}  // namespace herald::ws
