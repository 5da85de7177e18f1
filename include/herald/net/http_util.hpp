#pragma once
// HTTP helpers shared by the sessions and the API: URL parsing, responses, JSON errors.
#include "herald/metrics/metrics.hpp"

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::net {

struct url {
    std::string path;                                        // percent-decoded
    std::vector<std::pair<std::string, std::string>> query;  // percent-decoded, in order

    [[nodiscard]] std::optional<std::string> get(std::string_view key) const;
    [[nodiscard]] std::vector<std::string> all(std::string_view key) const;
};

// nullopt on a malformed escape or a NUL.
[[nodiscard]] std::optional<std::string> percent_decode(std::string_view s, bool plus_is_space);
[[nodiscard]] std::optional<url> parse_target(std::string_view target);

[[nodiscard]] const char* status_text(int status) noexcept;

// A complete HTTP/1.1 response.
[[nodiscard]] std::string make_response(int status, std::string_view content_type,
                                        std::string_view body, bool keep_alive,
                                        std::string_view extra_headers = {});
// The same bytes in one shared block (the bytes and their holder in a single allocation), for
// an answer that is queued as it is (responder::send).
struct shared_response {
    std::shared_ptr<char[]> bytes;
    std::size_t size = 0;
};
[[nodiscard]] shared_response make_shared_response(int status, std::string_view content_type,
                                                   std::string_view body, bool keep_alive,
                                                   std::string_view extra_headers = {});
[[nodiscard]] std::string make_error(int status, std::string_view code, std::string_view message,
                                     bool keep_alive, std::string_view extra_headers = {});

// The status and metric that go with each error code.
struct error_spec {
    int status;
    std::string_view code;
    metrics::reject reason;
};
[[nodiscard]] error_spec error_for(metrics::reject r) noexcept;

}  // namespace herald::net
