#include "herald/wire/envelope.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

using namespace herald;

TEST(ErrorBody, IsValidJsonWithEscaping) {
    EXPECT_EQ(wire::error_body("bad_topic", "no"),
              R"({"error":{"code":"bad_topic","message":"no"}})");
    auto body = wire::error_body("bad_json", "unexpected \"}\" at\nline 1 \\ \x01");
    auto j = nlohmann::json::parse(body);
    EXPECT_EQ(j["error"]["code"], "bad_json");
    EXPECT_EQ(j["error"]["message"], "unexpected \"}\" at\nline 1 \\ \x01");
    // Invalid UTF-8 in a message must still give valid JSON.
    EXPECT_TRUE(nlohmann::json::accept(wire::error_body("x", "bad \xFF byte")));
}

TEST(JsonQuote, Escapes) {
    EXPECT_EQ(wire::json_quote("a\"b\\c\n"), R"("a\"b\\c\n")");
    EXPECT_EQ(wire::json_quote(""), R"("")");
}

TEST(Envelope, MessageAndListEntry) {
    EXPECT_EQ(wire::message_envelope("news", "e1", 7, "", wire::payload_kind::text, "hi"),
              R"({"type":"message","topic":"news","epoch":"e1","offset":7,"data":"hi"})");
    EXPECT_EQ(
        wire::message_envelope("news", "e1", 7, "tick", wire::payload_kind::binary, "\x01"),
        R"({"type":"message","topic":"news","epoch":"e1","offset":7,"event":"tick","binary":true})");
    std::string list;
    wire::append_list_entry(list, 3, "ev", wire::data_member(wire::payload_kind::json, "{}"));
    EXPECT_EQ(list, R"({"offset":3,"event":"ev","data":{}})");
    EXPECT_EQ(wire::ws_error("", "bad", "x"), R"({"type":"error","code":"bad","message":"x"})");
    EXPECT_EQ(wire::ws_error("5", "bad", "x"),
              R"({"type":"error","id":5,"code":"bad","message":"x"})");
}
