#include "herald/hub/hub.hpp"

#include "hub_fixture.hpp"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <array>
#include <memory>

// Presence through the hub and the memory broker, without sockets (hub_fixture.hpp).
using namespace herald;
using json = nlohmann::json;

namespace {

struct member final : hub::subscriber {
    hub::presence_client who;
    const hub::presence_client* entry = &who;  // null: e.g. a long-poll
    hub::subscription sub;
    std::vector<std::string> events;  // "join:<client>" / "leave:<client>"
    bool answered = false;

    member(std::string topic, std::string id, std::string user, bool join_leave) {
        who = {std::move(id), std::move(user), {}};
        sub.owner = this;
        sub.topic = std::move(topic);
        sub.join_leave = join_leave;
    }
    void on_message(hub::subscription&, const hub::message_ptr&) override {}
    void on_subscribed(hub::subscription&, const hub::subscribe_result&) override {
        answered = true;
    }
    const hub::presence_client* presence_entry() const noexcept override { return entry; }
    void on_presence(hub::subscription& s, const hub::presence_event_ptr& e) override {
        EXPECT_EQ(&s, &sub);
        events.push_back((e->join ? "join:" : "leave:") + e->client);
    }
};

class PresenceHub : public test::hub_fixture {
protected:
    std::vector<std::unique_ptr<member>> members;
    std::vector<std::pair<unsigned, hub::presence_change>> changes;

    void SetUp() override {
        start();
        h->set_presence({"room:*"}, 3);
        h->set_presence_observer(
            [this](unsigned w, const hub::presence_change& c) { changes.emplace_back(w, c); });
    }
    member& join(unsigned worker, const std::string& topic, const std::string& id,
                 const std::string& user, bool join_leave = false) {
        members.push_back(std::make_unique<member>(topic, id, user, join_leave));
        h->at(worker).subscribe(members.back()->sub);
        return *members.back();
    }
    hub::presence_result query(unsigned from, const std::string& topic, bool counts = false) {
        hub::presence_result out;
        bool done = false;
        h->at(from).query_presence(topic, counts, [&](hub::presence_result r) {
            out = std::move(r);
            done = true;
        });
        run();
        EXPECT_TRUE(done);
        return out;
    }
    std::vector<std::string> kinds() const {
        std::vector<std::string> out;
        for (const auto& [w, c] : changes)
            out.push_back(std::string(hub::to_string(c.kind)) + ":" + c.client.client);
        return out;
    }
};

}  // namespace

TEST_F(PresenceHub, EventsReachJoinLeaveSubscribersInOrderOnEveryWorker) {
    auto& watcher0 = join(0, "room:a", "w0", "watcher", true);
    auto& watcher2 = join(2, "room:a", "w2", "watcher", true);
    auto& quiet = join(1, "room:a", "q", "quiet", false);
    run();
    ASSERT_TRUE(watcher0.answered && watcher2.answered && quiet.answered);
    watcher0.events.clear();  // w2's join reached w0 (w0 was answered first)
    watcher2.events.clear();
    auto& a = join(1, "room:a", "a", "alice");
    auto& b2 = join(2, "room:a", "b", "bob");
    run();
    h->at(1).unsubscribe(a.sub);
    h->at(2).unsubscribe(b2.sub);
    run();
    const std::vector<std::string> want{"join:a", "join:b", "leave:a", "leave:b"};
    EXPECT_EQ(watcher0.events, want);
    EXPECT_EQ(watcher2.events, want);
    EXPECT_TRUE(quiet.events.empty());
}

TEST_F(PresenceHub, QueryCountsUsersAndOmitsClientsOverTheBound) {
    join(0, "room:b", "c1", "alice");
    join(1, "room:b", "c2", "alice");
    join(2, "room:b", "c3", "");
    run();
    auto r = query(1, "room:b");
    EXPECT_TRUE(r.available);
    EXPECT_EQ(r.connections, 3u);
    EXPECT_EQ(r.users, 1u);
    ASSERT_FALSE(r.clients_omitted);
    EXPECT_EQ(json::parse(r.clients).size(), 3u);
    join(2, "room:b", "c4", "bob");  // over max_clients (3): counts only
    run();
    r = query(0, "room:b");
    EXPECT_TRUE(r.clients_omitted);
    EXPECT_EQ(r.connections, 4u);
    EXPECT_EQ(r.users, 2u);
    EXPECT_TRUE(query(0, "room:none").clients == "[]");
}

TEST_F(PresenceHub, TopicsOutsideThePatternsAndAnonymousStreamsHaveNoPresence) {
    join(0, "news", "c1", "alice");
    members.push_back(std::make_unique<member>("room:c", "x", "x", false));
    members.back()->entry = nullptr;  // e.g. a long-poll
    h->at(1).subscribe(members.back()->sub);
    run();
    EXPECT_EQ(query(0, "news").connections, 0u);
    EXPECT_EQ(query(0, "room:c").connections, 0u);
    EXPECT_TRUE(changes.empty());
}

TEST_F(PresenceHub, ObserverSeesOccupiedJoinLeaveVacatedOnTheOwner) {
    auto& a = join(0, "room:d", "a", "alice");
    auto& b2 = join(1, "room:d", "b", "bob");
    run();
    h->at(0).unsubscribe(a.sub);
    run();
    h->at(1).unsubscribe(b2.sub);
    run();
    const std::vector<std::string> want{"join:a",  "occupied:a", "join:b",
                                        "leave:a", "leave:b",    "vacated:b"};
    EXPECT_EQ(kinds(), want);
    for (const auto& [w, c] : changes) EXPECT_EQ(w, h->owner_of("room:d"));
}

TEST_F(PresenceHub, ARefusedSubscriptionNeverJoins) {
    h->set_quotas({{"room:*", 0, 1}});  // one subscriber per topic
    auto& a = join(0, "room:q", "a", "alice");
    auto& b2 = join(1, "room:q", "b", "bob");
    run();
    h->at(1).unsubscribe(b2.sub);  // what a session does on on_refused (the shard did it already)
    run();
    EXPECT_EQ(query(2, "room:q").connections, 1u);
    h->at(0).unsubscribe(a.sub);
    run();
    const std::vector<std::string> want{"join:a", "occupied:a", "leave:a", "vacated:a"};
    EXPECT_EQ(kinds(), want);
}
