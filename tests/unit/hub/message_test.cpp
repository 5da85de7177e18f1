#include "herald/hub/message.hpp"

#include "herald/common/text.hpp"
#include "herald/wire/sse_codec.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <thread>
#include <vector>

using namespace herald;
using namespace herald::hub;

namespace {

struct frame {
    bool fin;
    std::uint8_t op;
    std::size_t header;
    std::string payload;
};

// An independent decoder for unmasked server frames.
std::vector<frame> frames(const std::string& buf) {
    std::vector<frame> out;
    std::size_t pos = 0;
    while (pos < buf.size()) {
        if (buf.size() - pos < 2) {
            ADD_FAILURE() << "truncated header";
            break;
        }
        const auto b0 = std::uint8_t(buf[pos]), b1 = std::uint8_t(buf[pos + 1]);
        EXPECT_EQ(b0 & 0x70, 0) << "RSV bits set";
        EXPECT_EQ(b1 & 0x80, 0) << "server frame masked";
        std::uint64_t len = b1 & 0x7F;
        std::size_t h = 2;
        if (len == 126) {
            len = (std::uint64_t(std::uint8_t(buf[pos + 2])) << 8) | std::uint8_t(buf[pos + 3]);
            h = 4;
            EXPECT_GE(len, 126u) << "non-minimal length";
        } else if (len == 127) {
            len = 0;
            for (int i = 0; i < 8; ++i) len = (len << 8) | std::uint8_t(buf[pos + 2 + i]);
            h = 10;
            EXPECT_GT(len, 0xFFFFu) << "non-minimal length";
        }
        if (buf.size() - pos - h < len) {
            ADD_FAILURE() << "truncated payload";
            break;
        }
        out.push_back({bool(b0 & 0x80), std::uint8_t(b0 & 0x0F), h, buf.substr(pos + h, len)});
        pos += h + len;
    }
    return out;
}

message_ptr make(payload_kind kind, std::string payload, std::string event = "",
                 std::string topic = "news", std::string epoch = "k3v9x0aa",
                 std::uint64_t offset = 7) {
    return make_message(std::move(topic), std::move(epoch), offset, kind, std::move(payload),
                        std::move(event), clock::now());
}

}  // namespace

TEST(Message, FieldsAreKept) {
    const auto now = clock::now();
    auto m = make_message("news", "ep1", 3, payload_kind::text, "hi", "tick", now);
    EXPECT_EQ(m->topic, "news");
    EXPECT_EQ(m->epoch, "ep1");
    EXPECT_EQ(m->offset, 3u);
    EXPECT_EQ(m->kind, payload_kind::text);
    EXPECT_EQ(m->payload, "hi");
    EXPECT_EQ(m->event, "tick");
    EXPECT_EQ(m->created, now);
}

TEST(Message, TextWsFrameExact) {
    auto m = make(payload_kind::text, "hello");
    const std::string body =
        R"({"type":"message","topic":"news","epoch":"k3v9x0aa","offset":7,"data":"hello"})";
    EXPECT_EQ(m->ws_frames, std::string("\x81") + static_cast<char>(body.size()) + body);
    auto fs = frames(m->ws_frames);
    ASSERT_EQ(fs.size(), 1u);
    EXPECT_TRUE(fs[0].fin);
    EXPECT_EQ(fs[0].op, 0x1);
    EXPECT_EQ(fs[0].payload, body);
}

TEST(Message, TextIsJsonEscaped) {
    const std::string payload = "quote \" backslash \\ newline \n tab \t ctl \x01 caf\xC3\xA9";
    auto m = make(payload_kind::text, payload, "tick");
    auto fs = frames(m->ws_frames);
    ASSERT_EQ(fs.size(), 1u);
    auto j = nlohmann::json::parse(fs[0].payload);
    EXPECT_EQ(j["type"], "message");
    EXPECT_EQ(j["topic"], "news");
    EXPECT_EQ(j["epoch"], "k3v9x0aa");
    EXPECT_EQ(j["offset"], 7);
    EXPECT_EQ(j["event"], "tick");
    EXPECT_EQ(j["data"], payload);
    EXPECT_FALSE(j.contains("binary"));
}

TEST(Message, JsonPayloadIsEmbeddedAsJson) {
    auto m = make(payload_kind::json, R"({"a":[1,2,{"b":null}]})");
    auto fs = frames(m->ws_frames);
    ASSERT_EQ(fs.size(), 1u);
    EXPECT_EQ(
        fs[0].payload,
        R"({"type":"message","topic":"news","epoch":"k3v9x0aa","offset":7,"data":{"a":[1,2,{"b":null}]}})");
    auto j = nlohmann::json::parse(fs[0].payload);
    EXPECT_EQ(j["data"]["a"][1], 2);
    // SSE subscribers get the JSON text itself.
    EXPECT_EQ(m->sse_event, "id: k3v9x0aa:7\ndata: {\"a\":[1,2,{\"b\":null}]}\n\n");
}

TEST(Message, LengthForms) {
    for (std::size_t n : {10u, 1000u, 70'000u}) {
        auto m = make(payload_kind::text, std::string(n, 'x'));
        auto fs = frames(m->ws_frames);
        ASSERT_EQ(fs.size(), 1u);
        const std::size_t body = fs[0].payload.size();
        EXPECT_EQ(fs[0].header, body < 126 ? 2u : body <= 0xFFFF ? 4u : 10u) << n;
        EXPECT_EQ(nlohmann::json::parse(fs[0].payload)["data"], std::string(n, 'x'));
        EXPECT_EQ(m->ws_frames.size(), fs[0].header + body);
    }
    auto big = make(payload_kind::text, std::string(70'000, 'x'));
    EXPECT_EQ(std::uint8_t(big->ws_frames[1]), 127);
    auto mid = make(payload_kind::text, std::string(1000, 'x'));
    EXPECT_EQ(std::uint8_t(mid->ws_frames[1]), 126);
}

TEST(Message, BinaryIsHeaderFramePlusExactBytes) {
    std::string payload;
    for (int i = 0; i < 256; ++i) payload += static_cast<char>(i);
    payload += std::string(70'000, '\xAB');
    auto m = make(payload_kind::binary, payload);
    auto fs = frames(m->ws_frames);
    ASSERT_EQ(fs.size(), 2u);
    EXPECT_TRUE(fs[0].fin);
    EXPECT_EQ(fs[0].op, 0x1);
    EXPECT_EQ(fs[0].payload,
              R"({"type":"message","topic":"news","epoch":"k3v9x0aa","offset":7,"binary":true})");
    EXPECT_TRUE(fs[1].fin);
    EXPECT_EQ(fs[1].op, 0x2);
    EXPECT_EQ(fs[1].header, 10u);
    EXPECT_EQ(fs[1].payload, payload);
}

TEST(Message, BinarySseIsBase64WithEventBinary) {
    auto m = make(payload_kind::binary, std::string("\x00\xFF\x10", 3));
    EXPECT_EQ(m->sse_event, "id: k3v9x0aa:7\nevent: binary\ndata: AP8Q\n\n");
    auto named = make(payload_kind::binary, "hi", "blob");
    EXPECT_EQ(named->sse_event, "id: k3v9x0aa:7\nevent: blob\ndata: aGk=\n\n");
    auto fs = frames(named->ws_frames);
    ASSERT_EQ(fs.size(), 2u);
    EXPECT_EQ(nlohmann::json::parse(fs[0].payload)["event"], "blob");
}

TEST(Message, SseEventExact) {
    auto m = make(payload_kind::text, "hello");
    EXPECT_EQ(m->sse_event, "id: k3v9x0aa:7\ndata: hello\n\n");
    EXPECT_EQ(m->sse_body_at, std::string("id: k3v9x0aa:7\n").size());
    EXPECT_EQ(m->sse_body(), "data: hello\n\n");

    auto e = make(payload_kind::text, "hello", "tick", "news", "ab", 123456789012ull);
    EXPECT_EQ(e->sse_event, "id: ab:123456789012\nevent: tick\ndata: hello\n\n");
    EXPECT_EQ(e->sse_body(), "event: tick\ndata: hello\n\n");
}

TEST(Message, SseMultiLineAndNul) {
    auto m = make(payload_kind::text, std::string("a\rb\nc\r\nd\0e", 10));
    EXPECT_EQ(m->sse_event,
              "id: k3v9x0aa:7\ndata: a\ndata: b\ndata: c\ndata: d\xEF\xBF\xBD"
              "e\n\n");
}

TEST(Message, SseInjectionStaysData) {
    auto m = make(payload_kind::text, "x\n\nevent: evil\ndata: y");
    EXPECT_EQ(m->sse_event,
              "id: k3v9x0aa:7\ndata: x\ndata: \ndata: event: evil\ndata: data: y\n\n");
    // One event: the only blank line is the terminator.
    EXPECT_EQ(m->sse_event.find("\n\n"), m->sse_event.size() - 2);
}

TEST(Message, DataJsonMember) {
    EXPECT_EQ(make(payload_kind::text, "a\"b\n")->data_json_member(), R"("data":"a\"b\n")");
    EXPECT_EQ(make(payload_kind::json, R"({"x":[1,2]})")->data_json_member(),
              R"("data":{"x":[1,2]})");
    EXPECT_EQ(make(payload_kind::json, "42")->data_json_member(), R"("data":42)");
    EXPECT_EQ(make(payload_kind::binary, std::string("\x00\xFF", 2))->data_json_member(),
              R"("data_base64":"AP8=")");
    EXPECT_EQ(make(payload_kind::binary, "")->data_json_member(), R"("data_base64":"")");
    // Each is a valid JSON member.
    for (auto kind : {payload_kind::text, payload_kind::json, payload_kind::binary}) {
        auto m = make(kind, kind == payload_kind::json ? "[1]" : "v");
        std::string obj = "{";
        obj += m->data_json_member();
        obj += '}';
        EXPECT_TRUE(nlohmann::json::accept(obj));
    }
}

TEST(Message, FootprintCoversEncodedForms) {
    auto m = make(payload_kind::text, std::string(5000, 'p'), "tick");
    EXPECT_GE(m->footprint(), m->payload.size() + m->ws_frames.size() + m->sse_event.size());
    auto small = make(payload_kind::text, "p");
    EXPECT_LT(small->footprint(), m->footprint());
}

// A small payload is copied into the message's own block, a large one kept in a string: either
// way the bytes are the publisher's, the footprint counts at least them, and blocks recycled
// between payloads of other sizes never mix bytes up.
TEST(Message, PayloadInTheBlockOrApart) {
    const auto now = clock::now();
    std::vector<message_ptr> kept;
    for (int round = 0; round < 3; ++round) {
        for (std::size_t n : {0, 1, 63, 64, 65, 128, 255, 256, 257, 1000, 70'000}) {
            std::string payload(n, '\0');
            for (std::size_t i = 0; i < n; ++i) payload[i] = static_cast<char>('a' + (i + n) % 26);
            auto m = make_message("t", "k3v9x0aa", n + 1, payload_kind::text, payload, "", now);
            EXPECT_EQ(m->payload, payload);
            EXPECT_GE(m->footprint(), sizeof(message) + n);
            auto frames_of = make_message("t", "k3v9x0aa", n + 1, payload_kind::text,
                                          std::string(payload), "", now, {}, false);
            frames_of->build_wire_forms();
            EXPECT_EQ(frames_of->ws_frames, m->ws_frames);
            if (round == 1) kept.push_back(std::move(m));  // freed later, in another order
        }
    }
    for (const auto& m : kept) EXPECT_EQ(m->payload.size() + 1, m->offset);
}

// A message made for history alone (no subscriber) gets its wire forms on its first replay: the
// same bytes as built at once, and the same footprint before and after (history accounting adds
// and later subtracts it).
TEST(Message, WireFormsBuiltLaterAreTheSame) {
    const auto now = clock::now();
    const std::string escapes(70'000, '"');  // escaping moves the frame past 16-bit lengths
    for (auto kind : {payload_kind::text, payload_kind::json, payload_kind::binary}) {
        for (const std::string& payload : {std::string("[1,2]"), std::string(300, 'x'), escapes}) {
            for (const std::string event : {"", "tick"}) {
                auto now_built = make_message("news", "k3v9x0aa", 9, kind, payload, event, now);
                auto later =
                    make_message("news", "k3v9x0aa", 9, kind, payload, event, now, {}, false);
                EXPECT_TRUE(later->ws_frames.empty());
                EXPECT_TRUE(later->sse_event.empty());
                const std::size_t fp = later->footprint();
                EXPECT_EQ(fp, now_built->footprint());
                later->build_wire_forms();
                EXPECT_EQ(later->ws_frames, now_built->ws_frames);
                EXPECT_EQ(later->sse_event, now_built->sse_event);
                EXPECT_EQ(later->sse_body(), now_built->sse_body());
                EXPECT_EQ(later->footprint(), fp);
                const std::string before = later->ws_frames;
                later->build_wire_forms();  // built once
                EXPECT_EQ(later->ws_frames, before);
            }
        }
    }
}

TEST(MessageList, StopsBeforeTheEntryThatPassesTheBound) {
    std::vector<message_ptr> ms;
    for (std::uint64_t i = 1; i <= 3; ++i)
        ms.push_back(make(payload_kind::text, std::string(100, 'a'), "", "news", "k3v9x0aa", i));
    std::string all;
    EXPECT_EQ(append_messages_json(all, ms), 3u);
    std::string two;
    const std::size_t bound = all.size() - 10;  // the third entry does not fit
    EXPECT_EQ(append_messages_json(two, ms, bound), 2u);
    EXPECT_LE(two.size(), bound);
    EXPECT_EQ(two.back(), ']');
    EXPECT_NE(two.find("\"offset\":2"), std::string::npos);
    EXPECT_EQ(two.find("\"offset\":3"), std::string::npos);
    std::string one;  // the first entry is always taken, whatever the bound
    EXPECT_EQ(append_messages_json(one, ms, 1), 1u);
    EXPECT_NE(one.find("\"offset\":1"), std::string::npos);
}

// The compressed frames are built once, whichever threads ask first: every caller gets the same
// bytes (one allocation shared like ws_frames).
TEST(Message, DeflatedFramesAreBuiltOnceAcrossThreads) {
    std::string body = "{\"rows\":[";
    for (int i = 0; i < 40; ++i)
        body += "{\"symbol\":\"SYM" + std::to_string(i) + "\",\"bid\":1.5},";
    body += "{}]}";
    auto m = make_message("t", "e", 1, payload_kind::json, body, "", time_point{});
    std::vector<const deflated_frames*> seen(4, nullptr);
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < seen.size(); ++i)
        threads.emplace_back([&, i] { seen[i] = &m->ws_deflated(6); });
    for (auto& t : threads) t.join();
    for (auto* d : seen) EXPECT_EQ(d, seen[0]);
    EXPECT_FALSE(seen[0]->bytes.empty());
    EXPECT_LT(seen[0]->bytes.size(), m->ws_frames.size());
}

// make_message() writes the text frame's header before it knows the escaped envelope's length:
// every size around both length-class boundaries, with escaping that grows the JSON past its
// guess and events that shift it, must come out as one minimal, exact frame.
TEST(Message, FrameHeaderIsMinimalAroundLengthClasses) {
    std::vector<std::size_t> sizes;
    for (std::size_t n = 0; n <= 140; ++n) sizes.push_back(n);
    for (std::size_t n = 65'400; n <= 65'560; n += 7) sizes.push_back(n);
    for (const char fill : {'x', '"', '\n'}) {
        for (const std::string event : {"", "update"}) {
            for (const std::size_t n : sizes) {
                const std::string payload(n, fill);
                auto m = make(payload_kind::text, payload, event);
                auto fs = frames(m->ws_frames);
                ASSERT_EQ(fs.size(), 1u) << n;
                EXPECT_EQ(m->ws_frames.size(), fs[0].header + fs[0].payload.size()) << n;
                const auto j = nlohmann::json::parse(fs[0].payload);
                EXPECT_EQ(j["data"], payload) << n;
                EXPECT_EQ(j["offset"], 7) << n;
                EXPECT_EQ(m->sse_body(), sse::encode_body(event, payload)) << n;
            }
        }
    }
}

// Messages freed while a thread exits, after the thread's recycling list has been released (by a
// thread_local made before the list, so destroyed after it), go back to the heap: none is kept in
// or handed out from a released list. Under valgrind or a debug heap the old list (which kept its
// count after freeing its blocks) handed out a freed block here.
TEST(Message, MessagesFreedDuringThreadExitAreNotRecycled) {
    struct late_holder {
        std::vector<message_ptr> kept;
        ~late_holder() {
            kept.clear();                   // frees after the list's release
            std::vector<message_ptr> late;  // more than were just freed: all kept alive
            for (int i = 0; i < 30; ++i) {
                late.push_back(make(payload_kind::text, "late " + std::to_string(i)));
                EXPECT_EQ(late.back()->payload, "late " + std::to_string(i));
            }
        }
    };
    for (int round = 0; round < 4; ++round) {
        std::thread t([] {
            thread_local late_holder holder;  // constructed first, so destroyed last
            std::vector<message_ptr> batch;
            for (int i = 0; i < 100; ++i) batch.push_back(make(payload_kind::text, "m"));
            batch.clear();  // fills the list
            for (int i = 0; i < 10; ++i) holder.kept.push_back(make(payload_kind::text, "h"));
        });
        t.join();
    }
}
