// Client WebSocket frames: header parsing, unmasking, close payloads, UTF-8.
#include "herald/common/text.hpp"
#include "herald/wire/ws_codec.hpp"

#include <cstdint>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string buf(reinterpret_cast<const char*>(data), size);
    std::size_t pos = 0;
    while (pos < buf.size()) {
        herald::ws::frame f;
        auto r = herald::ws::parse_client_frame(std::string_view(buf).substr(pos), 4096, f);
        if (r != herald::ws::parse_result::complete) break;
        if (buf.size() - pos < f.header_bytes + f.payload_bytes) break;
        char* p = buf.data() + pos + f.header_bytes;
        herald::ws::unmask(p, f.payload_bytes, f.mask, pos & 3);
        std::string_view payload(p, f.payload_bytes);
        if (f.op == herald::ws::opcode::close) (void)herald::ws::parse_close_payload(payload);
        (void)herald::is_valid_utf8(payload);
        pos += f.header_bytes + f.payload_bytes;
    }
    return 0;
}
