#include "broker/redis_asio.hpp"

#include <gtest/gtest.h>

#include <hiredis/hiredis.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/write.hpp>

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

using namespace herald;
using namespace herald::broker;
using namespace std::chrono_literals;

namespace {

// A scripted Redis on 127.0.0.1:<any port>, on the test's io_context: it parses the RESP
// commands it receives and answers each as `policy` says (these bytes, after this delay; or
// never), in order, as Redis does.
class fake_redis {
public:
    struct answer {
        std::string bytes;
        milliseconds delay{0};
    };
    using policy = std::function<std::optional<answer>(const std::vector<std::string>& cmd)>;

    fake_redis(asio::io_context& ioc, policy p)
        : ioc_(ioc),
          acceptor_(ioc, {asio::ip::make_address("127.0.0.1"), 0}),
          policy_(std::move(p)) {
        do_accept();
    }

    [[nodiscard]] redis_endpoint endpoint() const {
        return {"127.0.0.1", acceptor_.local_endpoint().port()};
    }
    int accepted = 0;

private:
    struct conn {
        explicit conn(tcp::socket s) : sock(std::move(s)) {}
        tcp::socket sock;
        std::string buf;
        char tmp[4096];
        time_point last_answer{};  // answers leave in order
    };

    void do_accept() {
        acceptor_.async_accept([this](error_code ec, tcp::socket s) {
            if (ec) return;
            ++accepted;
            auto c = std::make_shared<conn>(std::move(s));
            conns_.push_back(c);
            do_read(c);
            do_accept();
        });
    }

    void do_read(const std::shared_ptr<conn>& c) {
        c->sock.async_read_some(asio::buffer(c->tmp), [this, c](error_code ec, std::size_t n) {
            if (ec) return;
            c->buf.append(c->tmp, n);
            while (auto cmd = take_command(c->buf)) on_command(c, *cmd);
            do_read(c);
        });
    }

    // One complete "*N\r\n($len\r\n<bytes>\r\n){N}" from the front of `buf`, or nullopt.
    static std::optional<std::vector<std::string>> take_command(std::string& buf) {
        std::size_t pos = 0;
        auto line = [&]() -> std::optional<std::string> {
            auto e = buf.find("\r\n", pos);
            if (e == std::string::npos) return std::nullopt;
            auto l = buf.substr(pos, e - pos);
            pos = e + 2;
            return l;
        };
        auto head = line();
        if (!head || head->empty() || (*head)[0] != '*') return std::nullopt;
        std::vector<std::string> args;
        for (int i = 0, n = std::stoi(head->substr(1)); i < n; ++i) {
            auto len = line();
            if (!len) return std::nullopt;
            const auto l = static_cast<std::size_t>(std::stoul(len->substr(1)));
            if (buf.size() < pos + l + 2) return std::nullopt;
            args.push_back(buf.substr(pos, l));
            pos += l + 2;
        }
        buf.erase(0, pos);
        return args;
    }

    void on_command(const std::shared_ptr<conn>& c, const std::vector<std::string>& cmd) {
        auto a = policy_(cmd);
        if (!a) return;
        const auto at = std::max(clock::now(), c->last_answer) + a->delay;
        c->last_answer = at;
        auto t = std::make_shared<asio::steady_timer>(ioc_, at);
        auto bytes = std::make_shared<std::string>(std::move(a->bytes));
        t->async_wait([c, t, bytes](error_code ec) {
            if (!ec)
                asio::async_write(c->sock, asio::buffer(*bytes),
                                  [bytes](error_code, std::size_t) {});
        });
    }

    asio::io_context& ioc_;
    tcp::acceptor acceptor_;
    policy policy_;
    std::vector<std::shared_ptr<conn>> conns_;
};

// The handshake (CLIENT SETNAME, PING) is answered at once; `rest` decides the other commands.
fake_redis::policy handshake_then(fake_redis::policy rest) {
    return [rest = std::move(rest)](
               const std::vector<std::string>& cmd) -> std::optional<fake_redis::answer> {
        if (cmd[0] == "PING") return fake_redis::answer{"+PONG\r\n"};
        if (cmd[0] == "CLIENT") return fake_redis::answer{"+OK\r\n"};
        return rest(cmd);
    };
}

redis_link::options opts(const fake_redis& f) {
    redis_link::options o;
    o.endpoint = f.endpoint();
    o.connect_timeout = 300ms;
    o.command_timeout = 400ms;
    o.ping_interval = 1h;  // no heartbeat unless a test wants one
    o.min_backoff = 50ms;
    o.max_backoff = 100ms;
    return o;
}

// Runs the loop until `done` or a generous bound (the machine may be loaded).
void run_until(asio::io_context& ioc, const std::function<bool()>& done) {
    const auto end = clock::now() + 10s;
    while (!done() && clock::now() < end) ioc.run_for(10ms);
}

struct outcome {
    bool replied = false;
    std::optional<no_reply> why;
    int calls = 0;
};

}  // namespace

TEST(RedisLink, ConnectedButSilentServerIsNeverUp) {
    asio::io_context ioc;
    fake_redis f(ioc, [](const auto&) { return std::nullopt; });
    redis_link link(ioc, opts(f), 1);
    int ups = 0;
    link.on_up = [&] { ++ups; };
    link.start();
    run_until(ioc, [&] { return f.accepted >= 3; });
    EXPECT_GE(f.accepted, 3) << "the link retries after each unanswered PING";
    EXPECT_EQ(ups, 0);
    EXPECT_FALSE(link.up());
    EXPECT_FALSE(link.command({"GET", "k"}, [](redisReply*, no_reply) {}));
}

TEST(RedisLink, UnansweredCommandIsLostAndTheLinkGoesDown) {
    asio::io_context ioc;
    fake_redis f(ioc, handshake_then([](const auto&) { return std::nullopt; }));
    redis_link link(ioc, opts(f), 1);
    outcome get;
    int ups = 0, downs = 0;
    time_point sent{};
    milliseconds took{};
    link.on_up = [&] {
        if (++ups > 1) return;
        sent = clock::now();
        ASSERT_TRUE(link.command({"GET", "k"}, [&](redisReply* r, no_reply why) {
            ++get.calls;
            get.replied = r != nullptr;
            if (!r) get.why = why;
            took = std::chrono::duration_cast<milliseconds>(clock::now() - sent);
        }));
    };
    bool timed_out = false;
    link.on_down = [&] {
        ++downs;
        timed_out = link.timed_out();
    };
    link.start();
    run_until(ioc, [&] { return get.calls > 0 && ups >= 2; });
    EXPECT_EQ(get.calls, 1);
    EXPECT_FALSE(get.replied);
    EXPECT_EQ(get.why, no_reply::lost) << "it was written: Redis may still run it";
    EXPECT_GE(took, 400ms) << "not before its deadline";
    EXPECT_EQ(downs, 1);
    EXPECT_TRUE(timed_out);
    EXPECT_GE(ups, 2) << "the link came back by itself";
}

TEST(RedisLink, SlowButAnsweringServerKeepsTheLinkAndLateCommandsAreAnsweredOnce) {
    asio::io_context ioc;
    // Every GET is answered 100 ms after the previous answer: ten of them take a second, more
    // than command_timeout, but Redis never goes quiet for that long.
    fake_redis f(ioc, handshake_then([](const std::vector<std::string>& cmd) {
                     return std::optional<fake_redis::answer>(
                         fake_redis::answer{cmd[0] == "GET" ? ":1\r\n" : "+OK\r\n", 100ms});
                 }));
    redis_link link(ioc, opts(f), 1);
    std::vector<outcome> gets(10);
    outcome last;
    int downs = 0;
    bool sent = false;
    link.on_up = [&] {
        if (std::exchange(sent, true)) return;
        for (auto& g : gets)
            ASSERT_TRUE(link.command({"GET", "k"}, [&g](redisReply* r, no_reply why) {
                ++g.calls;
                g.replied = r != nullptr;
                if (!r) g.why = why;
            }));
    };
    link.on_down = [&] { ++downs; };
    link.start();
    run_until(ioc, [&] {
        return std::all_of(gets.begin(), gets.end(), [](const outcome& g) { return g.calls; });
    });
    // The answers Redis still sends for the abandoned commands arrive and are dropped.
    ioc.run_for(1500ms);
    ASSERT_TRUE(link.up());
    ASSERT_TRUE(link.command({"GET", "k"}, [&](redisReply* r, no_reply) {
        ++last.calls;
        last.replied = r != nullptr;
    }));
    run_until(ioc, [&] { return last.calls > 0; });

    std::size_t replied = 0;
    for (const auto& g : gets) {
        EXPECT_EQ(g.calls, 1);
        if (g.replied) {
            EXPECT_EQ(replied, static_cast<std::size_t>(&g - gets.data())) << "a prefix, in order";
            ++replied;
        } else {
            EXPECT_EQ(g.why, no_reply::lost);
        }
    }
    EXPECT_GT(replied, 0u);
    EXPECT_LT(replied, gets.size()) << "the later ones passed their deadline";
    EXPECT_EQ(downs, 0);
    EXPECT_FALSE(link.timed_out());
    EXPECT_EQ(last.calls, 1);
    EXPECT_TRUE(last.replied);
}

TEST(RedisLink, IdleLinkPings) {
    asio::io_context ioc;
    int pings = 0;
    fake_redis f(ioc,
                 [&](const std::vector<std::string>& cmd) -> std::optional<fake_redis::answer> {
                     if (cmd[0] == "PING") {
                         ++pings;
                         return fake_redis::answer{"+PONG\r\n"};
                     }
                     return fake_redis::answer{"+OK\r\n"};
                 });
    auto o = opts(f);
    o.ping_interval = 100ms;
    redis_link link(ioc, o, 1);
    link.start();
    run_until(ioc, [&] { return pings >= 4; });
    EXPECT_GE(pings, 4) << "the handshake PING, then one per ping_interval";
    EXPECT_TRUE(link.up());
}
