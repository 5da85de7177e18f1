#pragma once
// herald's request parser and Beast's request_parser on the same bytes: what each makes of them
// (error, method, target, version, keep-alive, fields, body, bytes taken), for the differential
// fuzz target
// (fuzz_http_parser.cpp) and the unit tests (tests/unit/net/request_parser_test.cpp).
#include "net/request_parser.hpp"

#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::test {

struct parse_limits {
    std::uint32_t header = 8192;
    std::uint64_t body = 65536;
};

struct parse_outcome {
    boost::beast::error_code ec;
    std::string method, target, body;
    unsigned version = 0;
    bool keep_alive = false;
    std::vector<std::pair<std::string, std::string>> fields;
    std::size_t used = 0;  // bytes taken by the request (a pipelined next one's are left)
    bool operator==(const parse_outcome&) const = default;
};

// Feeds `in` as the HTTP session does (put, then more on need_more), `step` bytes more at a
// time; returns the error, or {} once done; an unfinished request is need_more. Bounded: every
// round either consumes bytes or offers more.
template <class Parser>
boost::beast::error_code feed(Parser& p, std::string_view in, std::size_t step, parse_limits l,
                              std::size_t* used_out = nullptr) {
    namespace http = boost::beast::http;
    p.header_limit(l.header);
    p.body_limit(l.body);
    p.eager(true);
    std::size_t at = 0;
    std::size_t avail = std::min(step, in.size());
    for (std::size_t guard = 0; guard < 4 * in.size() + 8; ++guard) {
        boost::beast::error_code ec;
        const auto used = p.put(boost::asio::buffer(in.data() + at, avail - at), ec);
        at += used;
        if (ec == http::error::need_more) {
            if (avail == in.size()) return ec;
            avail = std::min(in.size(), avail + step);
            continue;
        }
        if (ec) return ec;
        if (p.is_done()) {
            if (used_out) *used_out = at;
            return {};
        }
        if (used == 0 && avail == in.size()) return http::error::need_more;
        if (used == 0) avail = std::min(in.size(), avail + step);
    }
    return http::error::need_more;
}

// Fields by name, ASCII case-insensitively, keeping the arrival order of each name's lines:
// Beast's field list keeps the lines of one name together (a repeated name is inserted after its
// first line), herald's keeps arrival order; what herald reads is the same in both (the first
// line of a name, or all of its lines in order).
inline void group_by_name(std::vector<std::pair<std::string, std::string>>& fields) {
    const auto lowered = [](std::string s) {
        for (auto& c : s)
            if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        return s;
    };
    std::stable_sort(fields.begin(), fields.end(), [&lowered](const auto& a, const auto& b) {
        return lowered(a.first) < lowered(b.first);
    });
}

template <class Message>
void describe(parse_outcome& o, Message& m) {
    o.method = std::string(m.method_string());
    o.target = std::string(m.target());
    o.version = m.version();
    o.keep_alive = m.keep_alive();
    o.body = m.body();
}

inline parse_outcome with_beast(std::string_view in, std::size_t step, parse_limits l = {}) {
    boost::beast::http::request_parser<boost::beast::http::string_body> p;
    parse_outcome o;
    o.ec = feed(p, in, step, l, &o.used);
    if (o.ec) return o;
    auto m = p.release();
    describe(o, m);
    for (const auto& f : m) o.fields.emplace_back(f.name_string(), f.value());
    group_by_name(o.fields);
    return o;
}

inline void describe_head(parse_outcome& o, const net::request_head& m) {
    describe(o, m);
    for (std::size_t i = 0; i < m.field_count(); ++i)
        o.fields.emplace_back(m.field_name(i), m.field_value(i));
    group_by_name(o.fields);
}

inline parse_outcome with_herald(std::string_view in, std::size_t step, parse_limits l = {}) {
    net::request_parser p;
    parse_outcome o;
    o.ec = feed(p, in, step, l, &o.used);
    if (o.ec) return o;
    describe_head(o, p.release());
    return o;
}

// As the HTTP session parses: request_parser::parse_whole() on the first `step` bytes (all that
// has arrived when the request starts), and the Beast-based parser on the same bytes when it
// declines. `fast` tells which one answered.
inline parse_outcome with_session(std::string_view in, std::size_t step, parse_limits l = {},
                                  bool* fast = nullptr) {
    net::request_head h;
    const std::size_t used = net::request_parser::parse_whole(
        in.substr(0, std::min(step, in.size())), l.header, l.body, h);
    if (fast) *fast = used > 0;
    if (used == 0) return with_herald(in, step, l);
    parse_outcome o;
    o.used = used;
    describe_head(o, h);
    return o;
}

}  // namespace herald::test
