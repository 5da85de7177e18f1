#include "herald/wire/sse_codec.hpp"

namespace herald::sse {

void append_data(std::string& out, std::string_view payload) {
    out.reserve(out.size() + payload.size() + 8);
    out += "data: ";
    std::size_t run = 0;
    for (std::size_t i = 0; i < payload.size(); ++i) {
        const char c = payload[i];
        if (c != '\r' && c != '\n' && c != '\0') continue;
        out.append(payload.data() + run, i - run);
        if (c == '\0') {
            out += "\xEF\xBF\xBD";
        } else {
            if (c == '\r' && i + 1 < payload.size() && payload[i + 1] == '\n') ++i;
            out += "\ndata: ";
        }
        run = i + 1;
    }
    out.append(payload.data() + run, payload.size() - run);
    out += '\n';
}

std::string encode_body(std::string_view event, std::string_view payload) {
    std::string out;
    out.reserve(payload.size() + event.size() + 16);
    append_body(out, event, payload);
    return out;
}

void append_body(std::string& out, std::string_view event, std::string_view payload) {
    if (!event.empty()) {
        out += "event: ";
        out += event;
        out += '\n';
    }
    append_data(out, payload);
    out += '\n';
}

std::string encode_id_line(std::string_view id) {
    std::string out;
    out.reserve(id.size() + 5);
    out += "id: ";
    out += id;
    out += '\n';
    return out;
}

}  // namespace herald::sse
