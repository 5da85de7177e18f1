// The HTTP request loop over a socketpair (session_fixture.hpp): pipelined answers in request
// order, the bound on unanswered requests, read back-pressure while answers are not read, the
// header and idle timeouts (driven by the worker's sweep), malformed input, drain.
#include "session_fixture.hpp"

#include <deque>

using namespace herald;

namespace {

// An API that answers when the test says so: every request it is given waits in `held`.
class held_api final : public net::http_api {
public:
    void handle(net::worker_context&, net::http_request& req, net::responder r) override {
        held.push_back({req.target.path, std::move(r)});
    }
    // Answers held request `i` with its path as the body (plus `pad` bytes).
    void answer(std::size_t i, std::size_t pad = 0) {
        held[i].second.send(200, "text/plain", held[i].first + std::string(pad, '.'));
    }
    std::deque<std::pair<std::string, net::responder>> held;
};

class http_session_test : public test::session_fixture {
protected:
    static std::string get_request(std::string_view path) {
        return "GET " + std::string(path) + " HTTP/1.1\r\nHost: t\r\n\r\n";
    }
    // Reads `n` answers off `p` (bounded); fewer when they do not come.
    std::vector<test::http_response> responses(test::peer& p, std::size_t n) {
        std::vector<test::http_response> out;
        while (out.size() < n) {
            auto r = response(p);
            if (!r) break;
            out.push_back(std::move(*r));
        }
        return out;
    }
};

}  // namespace

TEST_F(http_session_test, PipelinedAnswersLeaveInRequestOrderWhateverOrderTheyComplete) {
    held_api api;
    use_api(api);
    auto& p = connect();
    p.write(get_request("/healthz") + get_request("/readyz") + get_request("/metrics"));
    run();
    ASSERT_EQ(api.held.size(), 3u);
    api.answer(2);
    api.answer(1);
    run();
    p.pump();
    EXPECT_EQ(p.in(), "") << "nothing leaves before the first request is answered";
    api.answer(0);
    auto rs = responses(p, 3);
    ASSERT_EQ(rs.size(), 3u);
    EXPECT_EQ(rs[0].body, "/healthz");
    EXPECT_EQ(rs[1].body, "/readyz");
    EXPECT_EQ(rs[2].body, "/metrics");
}

TEST_F(http_session_test, PipelinedRealHandlersAnswerInOrder) {
    auto& p = connect();
    p.write("POST /publish/a HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx" +
            get_request("/healthz") + get_request("/history/a") + get_request("/nowhere"));
    auto rs = responses(p, 4);
    ASSERT_EQ(rs.size(), 4u);
    EXPECT_EQ(rs[0].status, 200);
    EXPECT_NE(rs[0].body.find("\"offset\":1"), std::string::npos) << rs[0].body;
    EXPECT_EQ(rs[1].status, 200);
    EXPECT_EQ(rs[2].status, 200);
    EXPECT_NE(rs[2].body.find("\"offset\":1"), std::string::npos) << rs[2].body;
    EXPECT_EQ(rs[3].status, 404);
}

TEST_F(http_session_test, PipelinedHistoryPagesAreAnsweredOneAfterAnotherWithinTheBudget) {
    // Each /history page may take half of max_queued_bytes: four of them dispatched at once
    // overflowed the budget, and a client that reads normally was closed as a slow consumer
    // without a single answer.
    cfg.limits.max_queued_bytes = 64 * 1024;
    auto& p = connect();
    const std::string body(1024, 'x');
    std::string publishes;
    for (int i = 0; i < 100; ++i)
        publishes += "POST /publish/h HTTP/1.1\r\nHost: t\r\nContent-Length: 1024\r\n\r\n" + body;
    p.write(publishes);
    ASSERT_EQ(responses(p, 100).size(), 100u);
    p.write(get_request("/history/h") + get_request("/history/h") + get_request("/history/h") +
            get_request("/history/h"));
    auto rs = responses(p, 4);
    ASSERT_EQ(rs.size(), 4u);
    for (const auto& r : rs) {
        EXPECT_EQ(r.status, 200);
        EXPECT_NE(r.body.find("\"more\":true"), std::string::npos) << "a page of the 100 KiB";
    }
    EXPECT_EQ(counters().slow_consumers[static_cast<std::size_t>(metrics::transport::http)].get(),
              0);
}

TEST_F(http_session_test, AtMost32RequestsAreUnansweredAndTheRestWaitsUnread) {
    held_api api;
    use_api(api);
    auto& p = connect();
    std::string burst;
    for (int i = 0; i < 40; ++i) burst += get_request("/healthz");
    p.write(burst);
    run();
    EXPECT_EQ(api.held.size(), 32u) << "no 33rd request is dispatched while 32 are unanswered";
    // One answer makes room for one more.
    api.answer(0);
    run();
    EXPECT_EQ(api.held.size(), 33u);
    for (std::size_t i = 1; i < api.held.size(); ++i) api.answer(i);
    run();
    ASSERT_EQ(api.held.size(), 40u);
    for (std::size_t i = 33; i < api.held.size(); ++i) api.answer(i);
    EXPECT_EQ(responses(p, 40).size(), 40u);
}

TEST_F(http_session_test, AClientThatDoesNotReadItsAnswersStopsBeingRead) {
    // Answers of 256 bytes against a 32 KiB output budget (parsing stops at half of it, and the
    // 32 answers that may be owed then fit in the other half); both ends' socket buffers are
    // small, so answers pile up in the session and requests in the client.
    cfg.limits.max_queued_bytes = 32 * 1024;
    held_api api;
    use_api(api);
    auto& p = connect("192.0.2.10", 4096);
    const int fd = p.fd();
    const int small = 4096;
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    std::string burst;
    const std::string request =
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Pad: " + std::string(500, 'p') + "\r\n\r\n";
    for (int i = 0; i < 200; ++i) burst += request;
    std::size_t sent = 0;
    std::size_t answered = 0;
    // One turn: the client writes what the socket takes, the loop runs, every dispatched request
    // is answered at once; `read`: the client also reads its answers.
    auto turn = [&](bool read) {
        const auto n =
            ::send(fd, burst.data() + sent, burst.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) sent += static_cast<std::size_t>(n);
        run();
        for (; !api.held.empty(); ++answered) {
            api.held.front().second.send(200, "text/plain", std::string(256, 'a'));
            api.held.pop_front();
        }
        run();
        if (read) p.pump();
    };
    for (int i = 0; i < 200; ++i) turn(false);
    // The answers the client does not read stop the parsing, then the reading: what it sent
    // stays in its socket.
    EXPECT_LT(sent, burst.size()) << "the session kept reading although its answers were not read";
    EXPECT_LT(answered, 200u);
    // The client reads: everything is answered, in order.
    std::size_t got = 0;
    for (int i = 0; i < 20000 && got < 200; ++i) {
        turn(true);
        while (auto r = test::take_response(p.in())) {
            EXPECT_EQ(r->body.size(), 256u);
            ++got;
        }
    }
    EXPECT_EQ(got, 200u);
    EXPECT_EQ(sent, burst.size());
    EXPECT_EQ(counters().slow_consumers[static_cast<std::size_t>(metrics::transport::http)].get(),
              0);
}

TEST_F(http_session_test, AMalformedRequestIs400AndTheConnectionCloses) {
    auto& p = connect();
    auto r = request(p, "GET / HTTP/1.1\r\nHost t\r\n\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400);
    EXPECT_NE(r->body.find(R"({"error":{"code":"bad_request",)"), std::string::npos) << r->body;
    EXPECT_TRUE(r->has_header("Connection: close"));
    EXPECT_TRUE(server_closed(p));
}

TEST_F(http_session_test, HeadersOverTheLimitAre431) {
    cfg.http.max_header_bytes = 1024;
    auto& p = connect();
    auto r = request(p, "GET /healthz HTTP/1.1\r\nX-Big: " + std::string(2000, 'x') + "\r\n\r\n");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 431);
    EXPECT_EQ(rejected(metrics::reject::headers_too_large), 1);
}

TEST_F(http_session_test, AnIncompleteRequestGetsAHeaderTimeout) {
    cfg.http.header_timeout = milliseconds(10'000);
    auto& p = connect();
    p.write("GET /healthz HTTP/1.1\r\nHost:");
    run();
    tick(milliseconds(5'000));
    p.pump();
    EXPECT_EQ(p.in(), "") << "not before http.header_timeout";
    tick(milliseconds(20'000));
    auto r = response(p);
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 408);
    EXPECT_EQ(rejected(metrics::reject::header_timeout), 1);
}

TEST_F(http_session_test, AnIdleConnectionIsClosedAfterTheIdleTimeout) {
    cfg.http.idle_timeout = milliseconds(10'000);
    auto& p = connect();
    ASSERT_TRUE(get(p, "/healthz"));
    tick(milliseconds(5'000));
    p.pump();
    EXPECT_FALSE(p.eof());
    tick(milliseconds(20'000));
    p.pump();
    EXPECT_TRUE(p.eof());
    EXPECT_EQ(p.in(), "") << "an idle close says nothing";
}

TEST_F(http_session_test, DrainAnswersWhatIsOwedThenCloses) {
    held_api api;
    use_api(api);
    auto& p = connect();
    p.write(get_request("/healthz"));
    run();
    ASSERT_EQ(api.held.size(), 1u);
    state.draining.store(true);
    worker().drain();
    p.write(get_request("/readyz"));
    run();
    api.answer(0);
    auto rs = responses(p, 2);
    ASSERT_EQ(rs.size(), 2u);
    EXPECT_EQ(rs[0].body, "/healthz");
    EXPECT_EQ(rs[1].status, 503);
    EXPECT_NE(rs[1].body.find("\"draining\""), std::string::npos);
    EXPECT_TRUE(server_closed(p));
}

TEST_F(http_session_test, TheClientAddressIsThePeerOrBehindATrustedProxyXForwardedFor) {
    cfg.trusted_proxies = {"10.0.0.0/8"};
    cfg.auth.publish_keys = {};
    cfg.limits.connections_per_ip = 1;  // one stream per client address
    use_auth();
    // Two clients behind the proxy: different addresses, so both get a stream.
    auto& a = connect("10.1.1.1");
    auto ra = get(a, "/sse?topic=t", "X-Forwarded-For: 203.0.113.1\r\n");
    ASSERT_TRUE(ra);
    EXPECT_EQ(ra->status, 200);
    auto& b = connect("10.1.1.1");
    auto rb = get(b, "/sse?topic=t", "X-Forwarded-For: 203.0.113.2\r\n");
    ASSERT_TRUE(rb);
    EXPECT_EQ(rb->status, 200);
    // The same client again: its one slot is taken.
    auto& c = connect("10.1.1.1");
    auto rc = get(c, "/sse?topic=t", "X-Forwarded-For: 198.51.100.7, 203.0.113.1\r\n");
    ASSERT_TRUE(rc);
    EXPECT_EQ(rc->status, 429);
    // A peer that is not a proxy is the client, whatever it claims.
    auto& d = connect("192.0.2.1");
    ASSERT_EQ(get(d, "/sse?topic=t", "X-Forwarded-For: 203.0.113.3\r\n")->status, 200);
    auto& e = connect("192.0.2.1");
    auto re = get(e, "/sse?topic=t", "X-Forwarded-For: 203.0.113.4\r\n");
    ASSERT_TRUE(re);
    EXPECT_EQ(re->status, 429);
}
