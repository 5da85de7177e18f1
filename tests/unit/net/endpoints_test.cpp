#include "herald/net/endpoints.hpp"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <set>
#include <string>

using namespace herald::net;
using herald::auth::access_class;

TEST(Endpoints, EveryPathHasAtMostOneRow) {
    // Probe each row's own path (and a topic under a prefix): exactly that row serves it.
    for (const auto& e : endpoints()) {
        const std::string probe = std::string(e.path) + (e.prefix ? "t" : "");
        int rows = 0;
        for (const auto& other : endpoints())
            rows += other.prefix ? probe.starts_with(other.path) : probe == other.path;
        EXPECT_EQ(rows, 1) << probe;
        EXPECT_EQ(find_endpoint(probe), &e) << probe;
    }
}

TEST(Endpoints, Lookup) {
    EXPECT_EQ(find_endpoint("/history/chat:1")->id, endpoint_id::history);
    EXPECT_EQ(find_endpoint("/publish")->id, endpoint_id::publish);
    EXPECT_EQ(find_endpoint("/publish/a")->id, endpoint_id::publish_topic);
    EXPECT_EQ(find_endpoint("/admin/disconnect")->access, access_class::admin);
    for (const char* p : {"", "/", "/history", "/publishx", "/admin/", "/admin/disconnect/",
                          "/healthz/", "/ws/x", "/WS"})
        EXPECT_EQ(find_endpoint(p), nullptr) << p;
}

TEST(Endpoints, ReadRowsNameTheirTopics) {
    // The router authorizes reads per topic, so a read row must say where its topics are.
    for (const auto& e : endpoints()) {
        if (e.access == access_class::read)
            EXPECT_NE(e.topics, topic_source::none) << e.path;
        else
            EXPECT_EQ(e.topics, topic_source::none) << e.path;
    }
}

TEST(Endpoints, JsonLines) {
    std::set<std::string> ids;
    for (const auto& e : endpoints()) {
        auto j = nlohmann::json::parse(endpoint_json(e));
        EXPECT_EQ(j["path"], std::string(e.path));
        EXPECT_EQ(j["match"], e.prefix ? "prefix" : "exact");
        EXPECT_EQ(j["methods"].size(), 1u);
        EXPECT_TRUE(
            ids.insert(j["path"].get<std::string>() + " " + j["methods"][0].get<std::string>())
                .second);
    }
    auto h = nlohmann::json::parse(endpoint_json(*find_endpoint("/history/x")));
    EXPECT_EQ(h["access"], "read");
    EXPECT_EQ(h["topics"], "path");
    EXPECT_EQ(h["methods"][0], "GET");
}
