#include "herald/wire/payload.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

using namespace herald::wire;
using nlohmann::json;

TEST(Payload, DataBase64ThenData) {
    payload_kind kind{};
    std::string payload;
    EXPECT_EQ(read_payload(json{{"data_base64", "AAE="}, {"data", "x"}}, kind, payload),
              payload_status::ok);
    EXPECT_EQ(kind, payload_kind::binary);
    EXPECT_EQ(payload, std::string("\x00\x01", 2));
    EXPECT_EQ(read_payload(json{{"data", "hi"}}, kind, payload), payload_status::ok);
    EXPECT_EQ(kind, payload_kind::text);
    EXPECT_EQ(payload, "hi");
    EXPECT_EQ(read_payload(json{{"data", {{"a", 1}}}}, kind, payload), payload_status::ok);
    EXPECT_EQ(kind, payload_kind::json);
    EXPECT_EQ(payload, R"({"a":1})");
    EXPECT_EQ(read_payload(json{{"data_base64", "!!"}}, kind, payload), payload_status::bad_base64);
    EXPECT_EQ(read_payload(json{{"data_base64", 5}}, kind, payload), payload_status::bad_base64);
    EXPECT_EQ(read_payload(json{{"topic", "x"}}, kind, payload), payload_status::missing);
}
