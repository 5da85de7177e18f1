#include "herald/hub/presence.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

using namespace herald;
using json = nlohmann::json;

namespace {
hub::presence_client client(std::string id, std::string sub, std::string info = {}) {
    return {std::move(id), std::move(sub), std::move(info)};
}
}  // namespace

TEST(PresenceTable, JoinsOnFirstHoldLeavesOnLast) {
    hub::presence_table t;
    EXPECT_TRUE(t.empty());
    EXPECT_TRUE(t.add(client("c1", "alice")));
    EXPECT_FALSE(t.add(client("c1", "alice")));  // the same connection holds the topic twice
    EXPECT_EQ(t.connections(), 1u);
    hub::presence_client out;
    EXPECT_FALSE(t.remove("c1", out));  // one hold is left
    EXPECT_EQ(t.connections(), 1u);
    EXPECT_TRUE(t.remove("c1", out));
    EXPECT_EQ(out.client, "c1");
    EXPECT_EQ(out.sub, "alice");
    EXPECT_TRUE(t.empty());
    EXPECT_FALSE(t.remove("c1", out));  // unknown: nothing happens
    EXPECT_FALSE(t.remove("nobody", out));
}

TEST(PresenceTable, UsersAreDistinctNonEmptySubs) {
    hub::presence_table t;
    t.add(client("c1", "alice"));
    t.add(client("c2", "alice"));
    t.add(client("c3", "bob"));
    t.add(client("c4", ""));  // anonymous: a connection, not a user
    EXPECT_EQ(t.connections(), 4u);
    EXPECT_EQ(t.users(), 2u);
    hub::presence_client out;
    EXPECT_TRUE(t.remove("c1", out));
    EXPECT_EQ(t.users(), 2u);  // alice still has c2
    EXPECT_TRUE(t.remove("c2", out));
    EXPECT_EQ(t.users(), 1u);
    EXPECT_TRUE(t.remove("c4", out));
    EXPECT_EQ(t.users(), 1u);
    EXPECT_EQ(t.connections(), 1u);
}

TEST(PresenceTable, ClientsJsonIsValidAndCarriesInfo) {
    hub::presence_table t;
    EXPECT_EQ(t.clients_json(), "[]");
    t.add(client("c1", "al\"ice", R"({"name":"Alice","n":[1,2]})"));
    t.add(client("c2", ""));
    auto j = json::parse(t.clients_json());
    ASSERT_TRUE(j.is_array());
    ASSERT_EQ(j.size(), 2u);
    std::map<std::string, json> by_id;
    for (auto& e : j) by_id[e["client"].get<std::string>()] = e;
    EXPECT_EQ(by_id["c1"]["sub"], "al\"ice");
    EXPECT_EQ(by_id["c1"]["info"]["name"], "Alice");
    EXPECT_TRUE(by_id["c2"]["info"].is_null());
    EXPECT_EQ(by_id["c2"]["sub"], "");
}

TEST(PresenceEvent, EncodedOnceForBothTransports) {
    auto e = hub::make_presence_event("room:1", false, client("c9", "bob", "{\"x\":1}"));
    EXPECT_EQ(e->client, "c9");
    EXPECT_FALSE(e->join);
    // A text frame, unmasked, short: 0x81, length, then the JSON.
    ASSERT_GT(e->ws_frame.size(), 2u);
    EXPECT_EQ(static_cast<unsigned char>(e->ws_frame[0]), 0x81);
    auto body = json::parse(e->ws_frame.substr(e->ws_frame[1] == 126 ? 4 : 2));
    EXPECT_EQ(body["type"], "leave");
    EXPECT_EQ(body["topic"], "room:1");
    EXPECT_EQ(body["client"]["client"], "c9");
    EXPECT_EQ(body["client"]["info"]["x"], 1);
    EXPECT_EQ(e->sse_event.rfind("event: leave\ndata: {", 0), 0u);
    EXPECT_TRUE(e->sse_event.ends_with("}\n\n"));
}

TEST(PresenceResult, MembersOmitClientsOverTheBound) {
    hub::presence_result r;
    r.users = 2;
    r.connections = 3;
    r.clients = "[]";
    EXPECT_EQ(json::parse("{" + hub::presence_result_members(r) + "}"),
              json::parse(R"({"clients":[],"users":2,"connections":3})"));
    r.clients_omitted = true;
    EXPECT_EQ(json::parse("{" + hub::presence_result_members(r) + "}"),
              json::parse(R"({"clients_omitted":true,"users":2,"connections":3})"));
}
