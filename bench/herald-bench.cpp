// herald-bench: load generator for herald and peer push servers (nginx + nchan).
//
// Plain Linux epoll, one epoll per thread, no external dependencies. Subscribers are WebSocket or
// SSE connections; publishers are HTTP/1.1 keep-alive connections that pipeline POSTs. Every
// payload starts with a fixed ASCII prefix
//     HB k=<topic> s=<seq> m=<0|1> t=<CLOCK_MONOTONIC ns> xxxx...
// which the subscriber finds inside herald's WebSocket JSON ("data":"HB ..."), herald's and
// nchan's SSE `data:` lines and nchan's raw WebSocket frames alike. m=0 marks warm-up messages
// (used to prove every subscriber is attached before measuring); only m=1 messages are counted.
//
// A topic is always published through the same publisher connection, so the server sees each
// topic's messages in sequence order and reordering at the subscriber is the server's doing.
//
// Output: one JSON object on stdout. Diagnostics go to stderr.

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

// ---------------------------------------------------------------------------------------------
// time, options

uint64_t now_ns() {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

[[noreturn]] void die(const std::string& msg) {
    std::fprintf(stderr, "herald-bench: %s\n", msg.c_str());
    std::exit(2);
}

struct options {
    std::string scenario = "adhoc";
    std::string kind = "herald";  // herald | nchan (only selects URL defaults and labels)
    std::string host = "127.0.0.1";
    int port = 8080;
    std::string ws_path;   // with %s for the topic
    std::string sse_path;  // with %s for the topic
    std::string pub_path;  // with %s for the topic
    int ws = 0;
    int sse = 0;
    int topics = 1;
    int threads = 2;
    int src_addrs = 0;  // 0 = auto (one per 20,000 connections)
    int publishers = 1;
    int pipeline = 16;
    double rate = 0;  // messages/s in total; 0 = flat out (bounded by --window)
    double duration = 5;
    uint64_t messages = 0;  // stop after this many measured publishes (0 = use duration)
    int size = 64;
    double idle = 0;  // idle mode: hold the connections this many seconds, no publishing
    double drain = 5;
    double warmup = 10;  // upper bound for the warm-up phase
    double connect_timeout = 60;
    uint64_t window = 0;            // in-flight deliveries allowed when flat out; 0 = auto
    int connect_concurrency = 256;  // per thread
    std::vector<int> server_pids;
};

void usage() {
    std::fprintf(
        stderr,
        "usage: herald-bench [options]\n"
        "  --scenario NAME        label copied into the JSON\n"
        "  --kind herald|nchan    server kind (selects default URLs)\n"
        "  --host A --port P      server address (loopback only)\n"
        "  --ws-path P --sse-path P --pub-path P   URL templates, %%s = topic\n"
        "  --ws N --sse N         subscriber connections (subscriber i on topic i %% T)\n"
        "  --topics T             topics (named t0..tT-1)\n"
        "  --threads K            client threads, one epoll each (default 2)\n"
        "  --src-addrs K          source addresses 127.0.0.1..127.0.0.K (default auto)\n"
        "  --publishers P         publisher connections (topic t on publisher t %% P)\n"
        "  --pipeline D           requests in flight per publisher connection\n"
        "  --rate R               messages/s in total (0 = flat out)\n"
        "  --duration S | --messages M   measured phase length\n"
        "  --size B               payload bytes\n"
        "  --window N             flat out: deliveries in flight (default max(2000, 16 x "
        "subscribers per topic))\n"
        "  --idle S               idle mode: hold connections S seconds, report RSS/conn\n"
        "  --drain S              wait at most S seconds for in-flight deliveries (default 5)\n"
        "  --warmup S             wait at most S seconds for every subscriber (default 10)\n"
        "  --server-pid PID[,PID...]  processes whose CPU and RSS are sampled (summed)\n");
}

options parse_options(int argc, char** argv) {
    options o;
    auto need = [&](int& i) -> std::string {
        if (i + 1 >= argc) die(std::string("missing value for ") + argv[i]);
        return argv[++i];
    };
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        if (a == "--help" || a == "-h") {
            usage();
            std::exit(0);
        } else if (a == "--scenario")
            o.scenario = need(i);
        else if (a == "--kind")
            o.kind = need(i);
        else if (a == "--host")
            o.host = need(i);
        else if (a == "--port")
            o.port = std::stoi(need(i));
        else if (a == "--ws-path")
            o.ws_path = need(i);
        else if (a == "--sse-path")
            o.sse_path = need(i);
        else if (a == "--pub-path")
            o.pub_path = need(i);
        else if (a == "--ws")
            o.ws = std::stoi(need(i));
        else if (a == "--sse")
            o.sse = std::stoi(need(i));
        else if (a == "--topics")
            o.topics = std::stoi(need(i));
        else if (a == "--threads")
            o.threads = std::stoi(need(i));
        else if (a == "--src-addrs")
            o.src_addrs = std::stoi(need(i));
        else if (a == "--publishers")
            o.publishers = std::stoi(need(i));
        else if (a == "--pipeline")
            o.pipeline = std::stoi(need(i));
        else if (a == "--rate")
            o.rate = std::stod(need(i));
        else if (a == "--duration")
            o.duration = std::stod(need(i));
        else if (a == "--messages")
            o.messages = std::stoull(need(i));
        else if (a == "--size")
            o.size = std::stoi(need(i));
        else if (a == "--window")
            o.window = std::stoull(need(i));
        else if (a == "--idle")
            o.idle = std::stod(need(i));
        else if (a == "--drain")
            o.drain = std::stod(need(i));
        else if (a == "--warmup")
            o.warmup = std::stod(need(i));
        else if (a == "--connect-timeout")
            o.connect_timeout = std::stod(need(i));
        else if (a == "--connect-concurrency")
            o.connect_concurrency = std::stoi(need(i));
        else if (a == "--server-pid") {
            std::stringstream ss(need(i));
            std::string tok;
            while (std::getline(ss, tok, ','))
                if (!tok.empty()) o.server_pids.push_back(std::stoi(tok));
        } else {
            usage();
            die("unknown option " + a);
        }
    }
    if (o.ws_path.empty()) o.ws_path = "/ws?topic=%s";
    if (o.sse_path.empty()) o.sse_path = "/sse?topic=%s";
    if (o.pub_path.empty()) o.pub_path = "/publish/%s";
    // Bounds: everything this tool does is finite in count and time.
    if (o.threads < 1 || o.threads > 64) die("--threads must be 1..64");
    if (o.topics < 1 || o.topics > 1000000) die("--topics must be 1..1000000");
    if (o.ws < 0 || o.sse < 0 || o.ws + o.sse > 19000)
        die("--ws + --sse must be 0..19000 (fd limit 20000)");
    if (o.publishers < 1 || o.publishers > 256) die("--publishers must be 1..256");
    if (o.pipeline < 1 || o.pipeline > 4096) die("--pipeline must be 1..4096");
    if (o.size < 1 || o.size > 1 << 20) die("--size must be 1..1MiB");
    if (o.duration <= 0 || o.duration > 600) die("--duration must be in (0, 600]");
    if (o.idle < 0 || o.idle > 600) die("--idle must be in [0, 600]");
    if (o.drain < 0 || o.drain > 60) die("--drain must be in [0, 60]");
    if (o.warmup < 0 || o.warmup > 120) die("--warmup must be in [0, 120]");
    in_addr a{};
    if (inet_pton(AF_INET, o.host.c_str(), &a) != 1 || (ntohl(a.s_addr) >> 24) != 127)
        die("--host must be an IPv4 loopback address (127.0.0.0/8)");
    return o;
}

std::string topic_name(uint32_t t) {
    return "t" + std::to_string(t);
}

std::string fill_path(const std::string& tmpl, const std::string& topic) {
    std::string r;
    for (size_t i = 0; i < tmpl.size(); ++i) {
        if (tmpl[i] == '%' && i + 1 < tmpl.size() && tmpl[i + 1] == 's') {
            r += topic;
            ++i;
        } else
            r += tmpl[i];
    }
    return r;
}

// ---------------------------------------------------------------------------------------------
// log-linear latency histogram (HDR-style: 32 sub-buckets per power of two, ~3% resolution)

struct histogram {
    static constexpr int sub_bits = 5;
    static constexpr int sub = 1 << sub_bits;
    static constexpr int nbuckets = 2 * sub + (64 - sub_bits - 1) * sub;
    std::vector<uint64_t> b = std::vector<uint64_t>(nbuckets, 0);
    uint64_t count = 0, max = 0;
    long double sum = 0;

    static int index(uint64_t v) {
        if (v < uint64_t(2 * sub)) return int(v);
        int e = 63 - __builtin_clzll(v);  // v >= 2^(sub_bits+1)
        int s = int((v >> (e - sub_bits)) & (sub - 1));
        return 2 * sub + (e - sub_bits - 1) * sub + s;
    }
    static uint64_t value_at(int idx) {  // midpoint of the bucket
        if (idx < 2 * sub) return uint64_t(idx);
        int e = (idx - 2 * sub) / sub + sub_bits + 1;
        int s = (idx - 2 * sub) % sub;
        uint64_t lo = (uint64_t(1) << e) | (uint64_t(s) << (e - sub_bits));
        uint64_t w = uint64_t(1) << (e - sub_bits);
        return lo + w / 2;
    }
    void record(uint64_t v) {
        ++b[index(v)];
        ++count;
        sum += v;
        if (v > max) max = v;
    }
    void merge(const histogram& o) {
        for (int i = 0; i < nbuckets; ++i) b[i] += o.b[i];
        count += o.count;
        sum += o.sum;
        max = std::max(max, o.max);
    }
    uint64_t percentile(double p) const {
        if (count == 0) return 0;
        uint64_t want = uint64_t(std::ceil(p / 100.0 * double(count)));
        if (want == 0) want = 1;
        uint64_t acc = 0;
        for (int i = 0; i < nbuckets; ++i) {
            acc += b[i];
            if (acc >= want) return std::min(value_at(i), max);
        }
        return max;
    }
};

// ---------------------------------------------------------------------------------------------
// /proc sampling

struct proc_sample {
    uint64_t cpu_us = 0;    // utime + stime from /proc/PID/stat
    uint64_t sched_ns = 0;  // sum of /proc/PID/task/*/schedstat run time (ns resolution)
    uint64_t rss_kb = 0;    // VmRSS
    uint64_t pss_kb = 0;    // Pss from smaps_rollup (shared pages split between processes)
    bool ok = true;
};

proc_sample sample_procs(const std::vector<int>& pids) {
    proc_sample s;
    const long hz = sysconf(_SC_CLK_TCK);
    for (int pid : pids) {
        std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
        std::string line;
        if (!std::getline(st, line)) {
            s.ok = false;
            continue;
        }
        auto rp = line.rfind(')');
        std::istringstream is(line.substr(rp + 2));
        std::string f;
        uint64_t ut = 0, stt = 0;
        for (int i = 3; i <= 15; ++i) {  // fields 3.. after comm
            is >> f;
            if (i == 14) ut = std::stoull(f);
            if (i == 15) stt = std::stoull(f);
        }
        s.cpu_us += (ut + stt) * 1000000ull / uint64_t(hz);
        std::ifstream ss("/proc/" + std::to_string(pid) + "/status");
        while (std::getline(ss, line)) {
            if (line.rfind("VmRSS:", 0) == 0) s.rss_kb += std::stoull(line.substr(6));
        }
        std::ifstream sr("/proc/" + std::to_string(pid) + "/smaps_rollup");
        while (std::getline(sr, line)) {
            if (line.rfind("Pss:", 0) == 0) s.pss_kb += std::stoull(line.substr(4));
        }
        std::string taskdir = "/proc/" + std::to_string(pid) + "/task";
        // schedstat per thread: the process-level file only covers the main thread.
        if (DIR* d = opendir(taskdir.c_str())) {
            while (dirent* de = readdir(d)) {
                if (de->d_name[0] == '.') continue;
                std::ifstream sc(taskdir + "/" + de->d_name + "/schedstat");
                uint64_t run = 0;
                if (sc >> run) s.sched_ns += run;
            }
            closedir(d);
        }
    }
    return s;
}

// ---------------------------------------------------------------------------------------------
// shared run state

enum phase_t : int { ph_connect, ph_warmup, ph_settle, ph_measure, ph_drain, ph_done };

struct shared_state {
    std::atomic<int> phase{ph_connect};
    std::atomic<uint64_t> sub_connected{0};
    std::atomic<uint64_t> sub_failed{0};
    std::atomic<uint64_t> pub_connected{0};
    std::atomic<uint64_t> pub_failed{0};
    std::atomic<uint64_t> ready{0};            // subscribers that saw any message
    std::atomic<uint64_t> expected{0};         // measured deliveries owed (per send)
    std::atomic<uint64_t> delivered{0};        // measured deliveries received
    std::atomic<uint64_t> pub_outstanding{0};  // requests without a response, all phases
    std::atomic<uint64_t> measured_sent{0};
    std::atomic<int> publishers_done{0};
    std::atomic<uint64_t> server_closed{0};  // subscriber connections the server ended
    uint64_t measure_start_ns = 0;
    uint64_t measure_deadline_ns = 0;
    uint64_t window = 0;
    std::vector<uint32_t> fanout;  // subscribers per topic (connected ones), fixed before warmup
};

// ---------------------------------------------------------------------------------------------
// connections

enum class ckind : uint8_t { ws, sse, pub };
enum class cstate : uint8_t { idle, connecting, handshake, open, closed };

struct pending_req {
    uint32_t topic;
    uint64_t seq;
    bool measured;
};

struct topic_pub {  // per-topic publisher state; only the owning publisher touches it
    uint64_t seq = 0;
    uint64_t first_measured = 0;  // 0 = none yet
    uint64_t last_measured = 0;
    uint64_t failed_measured = 0;
};

struct conn {
    int fd = -1;
    ckind kind = ckind::ws;
    cstate state = cstate::idle;
    uint32_t id = 0;
    uint32_t topic = 0;  // subscribers
    uint32_t src = 0;
    std::string out;
    size_t out_off = 0;
    std::string in;
    bool want_out = false;

    // subscriber stats (measured messages only)
    bool ready = false;
    bool ever_open = false;  // a connection that never opened owes nothing (counted as a failure)
    bool sse_chunked = false;
    uint64_t chunk_left = 0;  // bytes left in the current chunk
    int chunk_state = 0;      // 0 = size line, 1 = data, 2 = CRLF after data
    std::string chunk_line;
    std::string sse_acc;  // de-chunked SSE bytes not yet split into lines
    std::string ws_frag;  // fragmented WS message
    uint64_t max_seq = 0;
    uint64_t seen_bits = 0;  // bit i = max_seq - i seen
    uint64_t unique = 0, dup = 0, reordered = 0, misrouted = 0, received = 0;
    int close_code = -1;

    // publisher
    std::vector<uint32_t> topics;
    size_t rr = 0;
    std::deque<pending_req> inflight;
    uint64_t paced_sent = 0;
    uint64_t ok = 0, errors = 0;
    uint64_t last_warm_round_ns = 0;
    size_t warm_next = SIZE_MAX;  // the next topic of the warm-up round (SIZE_MAX: none begun)
    bool done = false;
};

struct thread_result {
    histogram hist;
    uint64_t deliveries = 0, dup = 0, reordered = 0, misrouted = 0, other_frames = 0;
    uint64_t error_frames = 0, pings = 0, publishes_ok = 0, publish_errors = 0;
    uint64_t measured_publishes = 0;
    uint64_t lost = 0, expected_per_sub_sum = 0;
    std::vector<std::string> errors;
};

class worker {
public:
    worker(const options& o, shared_state& sh, int index, std::vector<topic_pub>& tp)
        : o_(o), sh_(sh), index_(index), tp_(tp) {
        ep_ = epoll_create1(EPOLL_CLOEXEC);
        if (ep_ < 0) die("epoll_create1 failed");
        rbuf_.resize(1 << 18);
        payload_pad_.assign(size_t(o.size), 'x');
    }
    ~worker() {
        for (auto& c : conns_)
            if (c->fd >= 0) ::close(c->fd);
        if (ep_ >= 0) ::close(ep_);
    }

    void add_subscriber(uint32_t id, ckind k, uint32_t topic, uint32_t src) {
        auto c = std::make_unique<conn>();
        c->id = id;
        c->kind = k;
        c->topic = topic;
        c->src = src;
        subs_.push_back(c.get());
        conns_.push_back(std::move(c));
    }
    void add_publisher(uint32_t id, std::vector<uint32_t> topics) {
        auto c = std::make_unique<conn>();
        c->id = id;
        c->kind = ckind::pub;
        c->topics = std::move(topics);
        c->src = 0;
        pubs_.push_back(c.get());
        conns_.push_back(std::move(c));
    }

    void run() {
        std::vector<epoll_event> evs(1024);
        size_t next_to_connect = 0;
        int connecting = 0;
        bool pubs_started = false;
        while (true) {
            int ph = sh_.phase.load(std::memory_order_acquire);
            if (ph == ph_done) break;
            // Connection set-up, a bounded number at a time so the listen backlog never overflows.
            while (next_to_connect < subs_.size() && connecting < o_.connect_concurrency) {
                if (start_connect(subs_[next_to_connect])) ++connecting;
                ++next_to_connect;
            }
            if (!pubs_started && next_to_connect == subs_.size()) {
                for (conn* p : pubs_) start_connect(p);
                pubs_started = true;
            }
            uint64_t t = now_ns();
            bool blocked = false;
            for (conn* p : pubs_) blocked |= pump_publisher(p, ph, t);

            int timeout_ms = 5;
            if (blocked || (o_.rate > 0 && ph == ph_measure)) timeout_ms = 1;
            int n = epoll_wait(ep_, evs.data(), int(evs.size()), timeout_ms);
            for (int i = 0; i < n; ++i) {
                conn* c = static_cast<conn*>(evs[i].data.ptr);
                uint32_t e = evs[i].events;
                cstate before = c->state;
                if (c->state == cstate::connecting) {
                    on_connected(c);
                } else {
                    if (e & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
                    if (c->state != cstate::closed && (e & EPOLLOUT)) flush(c);
                }
                if (c->kind != ckind::pub && before != cstate::open && before != cstate::closed &&
                    (c->state == cstate::open || c->state == cstate::closed))
                    --connecting;
            }
            if (local_delivered_) {
                sh_.delivered.fetch_add(local_delivered_, std::memory_order_relaxed);
                local_delivered_ = 0;
            }
        }
    }

    thread_result collect(const std::vector<topic_pub>& tp) {
        thread_result r = std::move(res_);
        for (conn* c : subs_) {
            if (!c->ever_open) continue;
            r.deliveries += c->unique;
            r.dup += c->dup;
            r.reordered += c->reordered;
            r.misrouted += c->misrouted;
            const topic_pub& t = tp[c->topic];
            uint64_t owed = 0;
            if (t.first_measured) owed = t.last_measured - t.first_measured + 1 - t.failed_measured;
            r.expected_per_sub_sum += owed;
            if (owed > c->unique) r.lost += owed - c->unique;
        }
        for (conn* p : pubs_) {
            r.publishes_ok += p->ok;
            r.publish_errors += p->errors;
        }
        return r;
    }

private:
    const options& o_;
    shared_state& sh_;
    int index_;
    std::vector<topic_pub>& tp_;
    int ep_ = -1;
    std::vector<std::unique_ptr<conn>> conns_;
    std::vector<conn*> subs_, pubs_;
    std::string rbuf_;
    std::string payload_pad_;
    uint64_t local_delivered_ = 0;
    thread_result res_;

    void note_error(const std::string& s) {
        if (res_.errors.size() < 20) res_.errors.push_back(s);
    }

    bool start_connect(conn* c) {
        int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            fail(c, std::string("socket: ") + strerror(errno));
            return false;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
#ifdef IP_BIND_ADDRESS_NO_PORT
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
#endif
        sockaddr_in src{};
        src.sin_family = AF_INET;
        src.sin_addr.s_addr = htonl((127u << 24) | (c->src + 1));
        if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
            ::close(fd);
            fail(c, std::string("bind: ") + strerror(errno));
            return false;
        }
        sockaddr_in dst{};
        dst.sin_family = AF_INET;
        dst.sin_port = htons(uint16_t(o_.port));
        inet_pton(AF_INET, o_.host.c_str(), &dst.sin_addr);
        c->fd = fd;
        int rc = ::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst);
        if (rc != 0 && errno != EINPROGRESS) {
            fail(c, std::string("connect: ") + strerror(errno));
            return false;
        }
        c->state = cstate::connecting;
        epoll_event ev{};
        ev.events = EPOLLOUT;
        ev.data.ptr = c;
        epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev);
        return true;
    }

    void set_events(conn* c, bool want_out) {
        if (c->fd < 0) return;
        epoll_event ev{};
        ev.events = EPOLLIN | (want_out ? EPOLLOUT : 0u);
        ev.data.ptr = c;
        epoll_ctl(ep_, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want_out;
    }

    void fail(conn* c, const std::string& why) {
        bool was_open = c->state == cstate::open;
        cstate st = c->state;
        if (c->fd >= 0) {
            ::close(c->fd);
            c->fd = -1;
        }
        c->state = cstate::closed;
        note_error((c->kind == ckind::pub ? "publisher " : "subscriber ") + std::to_string(c->id) +
                   ": " + why);
        if (c->kind == ckind::pub) {
            if (st != cstate::open)
                sh_.pub_failed.fetch_add(1);
            else {
                // A dead publisher owes nothing more; count its in-flight requests as errors.
                sh_.pub_outstanding.fetch_sub(c->inflight.size());
                for (auto& r : c->inflight)
                    if (r.measured) tp_[r.topic].failed_measured++;
                c->errors += c->inflight.size();
                c->inflight.clear();
                if (!c->done) {
                    c->done = true;
                    sh_.publishers_done.fetch_add(1);
                }
            }
        } else {
            if (was_open)
                sh_.server_closed.fetch_add(1);
            else
                sh_.sub_failed.fetch_add(1);
        }
    }

    void on_connected(conn* c) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
            fail(c, std::string("connect: ") + strerror(err));
            return;
        }
        c->state = cstate::handshake;
        if (c->kind == ckind::pub) {
            c->state = cstate::open;
            sh_.pub_connected.fetch_add(1);
            set_events(c, false);
            return;
        }
        std::string tn = topic_name(c->topic);
        std::string req;
        if (c->kind == ckind::ws) {
            req =
                "GET " + fill_path(o_.ws_path, tn) + " HTTP/1.1\r\nHost: " + o_.host +
                "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        } else {
            req = "GET " + fill_path(o_.sse_path, tn) + " HTTP/1.1\r\nHost: " + o_.host +
                  "\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n";
        }
        c->out = std::move(req);
        c->out_off = 0;
        set_events(c, false);
        flush(c);
    }

    void flush(conn* c) {
        while (c->out_off < c->out.size()) {
            ssize_t n =
                ::send(c->fd, c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
            if (n > 0) {
                c->out_off += size_t(n);
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                if (!c->want_out) set_events(c, true);
                return;
            }
            if (n < 0 && errno == EINTR) continue;
            fail(c, std::string("send: ") + strerror(errno));
            return;
        }
        c->out.clear();
        c->out_off = 0;
        if (c->want_out) set_events(c, false);
    }

    void on_readable(conn* c) {
        ssize_t n = ::recv(c->fd, rbuf_.data(), rbuf_.size(), 0);
        if (n == 0) {
            fail(c, "closed by server");
            return;
        }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
            fail(c, std::string("recv: ") + strerror(errno));
            return;
        }
        c->in.append(rbuf_.data(), size_t(n));
        if (c->kind == ckind::pub) {
            parse_responses(c);
            return;
        }
        if (c->state == cstate::handshake) {
            auto end = c->in.find("\r\n\r\n");
            if (end == std::string::npos) {
                if (c->in.size() > 16384) fail(c, "handshake response too large");
                return;
            }
            std::string_view head(c->in.data(), end);
            bool good = c->kind == ckind::ws ? head.substr(0, 12) == "HTTP/1.1 101"
                                             : head.substr(0, 12) == "HTTP/1.1 200";
            if (!good) {
                auto eol = head.find("\r\n");
                fail(c, "handshake: " + std::string(head.substr(0, eol)));
                return;
            }
            if (c->kind == ckind::sse) {
                std::string lower(head);
                for (auto& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
                c->sse_chunked = lower.find("transfer-encoding: chunked") != std::string::npos;
            }
            c->in.erase(0, end + 4);
            c->state = cstate::open;
            c->ever_open = true;
            sh_.sub_connected.fetch_add(1);
            c->in.shrink_to_fit();
        }
        if (c->kind == ckind::ws)
            parse_ws(c);
        else
            parse_sse(c);
    }

    // --- deliveries -----------------------------------------------------------------------

    void on_payload(conn* c, const char* p, size_t len) {
        static constexpr std::string_view marker = "HB k=";
        const char* m = static_cast<const char*>(memmem(p, len, marker.data(), marker.size()));
        if (!m) {
            ++res_.other_frames;
            return;
        }
        const char* e = p + len;
        const char* q = m + marker.size();
        auto num = [&](uint64_t& v) {
            v = 0;
            while (q < e && *q >= '0' && *q <= '9') v = v * 10 + uint64_t(*q++ - '0');
        };
        uint64_t topic = 0, seq = 0, measured = 0, ts = 0;
        num(topic);
        if (e - q < 3 || memcmp(q, " s=", 3) != 0) {
            ++res_.other_frames;
            return;
        }
        q += 3;
        num(seq);
        if (e - q < 3 || memcmp(q, " m=", 3) != 0) {
            ++res_.other_frames;
            return;
        }
        q += 3;
        num(measured);
        if (e - q < 3 || memcmp(q, " t=", 3) != 0) {
            ++res_.other_frames;
            return;
        }
        q += 3;
        num(ts);
        if (!c->ready) {
            c->ready = true;
            sh_.ready.fetch_add(1, std::memory_order_relaxed);
        }
        if (topic != c->topic) {
            ++c->misrouted;
            return;
        }
        if (!measured) return;
        ++c->received;
        uint64_t t = now_ns();
        res_.hist.record(t > ts ? t - ts : 0);
        // duplicate / reorder detection with a 64-message window behind the highest seq seen
        if (seq > c->max_seq) {
            uint64_t shift = seq - c->max_seq;
            c->seen_bits = shift >= 64 ? 0 : (c->seen_bits << shift);
            c->seen_bits |= 1;
            c->max_seq = seq;
            ++c->unique;
            ++local_delivered_;
        } else {
            uint64_t back = c->max_seq - seq;
            if (back < 64) {
                uint64_t bit = uint64_t(1) << back;
                if (c->seen_bits & bit) {
                    ++c->dup;
                    return;
                }
                c->seen_bits |= bit;
            }
            ++c->reordered;
            ++c->unique;
            ++local_delivered_;
        }
    }

    void parse_ws(conn* c) {
        std::string& b = c->in;
        size_t pos = 0;
        while (true) {
            if (b.size() - pos < 2) break;
            auto b0 = uint8_t(b[pos]), b1 = uint8_t(b[pos + 1]);
            bool fin = b0 & 0x80;
            int op = b0 & 0x0f;
            bool masked = b1 & 0x80;
            uint64_t len = b1 & 0x7f;
            size_t hdr = 2;
            if (len == 126) {
                if (b.size() - pos < 4) break;
                len = (uint64_t(uint8_t(b[pos + 2])) << 8) | uint8_t(b[pos + 3]);
                hdr = 4;
            } else if (len == 127) {
                if (b.size() - pos < 10) break;
                len = 0;
                for (int i = 0; i < 8; ++i) len = (len << 8) | uint8_t(b[pos + 2 + i]);
                hdr = 10;
            }
            if (len > (64u << 20)) {
                fail(c, "websocket frame too large");
                return;
            }
            size_t mask_off = hdr;
            if (masked) hdr += 4;
            if (b.size() - pos < hdr + len) break;
            char* payload = b.data() + pos + hdr;
            if (masked) {
                const char* mk = b.data() + pos + mask_off;
                for (uint64_t i = 0; i < len; ++i) payload[i] ^= mk[i & 3];
            }
            switch (op) {
                case 0x0:  // continuation
                    c->ws_frag.append(payload, len);
                    if (fin) {
                        on_payload(c, c->ws_frag.data(), c->ws_frag.size());
                        c->ws_frag.clear();
                    }
                    break;
                case 0x1:
                case 0x2:
                    if (fin) {
                        if (op == 1 && len > 8 && memmem(payload, len, "\"type\":\"error\"", 14))
                            ++res_.error_frames;
                        on_payload(c, payload, len);
                    } else {
                        c->ws_frag.assign(payload, len);
                    }
                    break;
                case 0x8: {
                    c->close_code =
                        len >= 2 ? (uint8_t(payload[0]) << 8) | uint8_t(payload[1]) : 1005;
                    fail(c, "websocket close " + std::to_string(c->close_code) + " " +
                                std::string(payload + std::min<uint64_t>(len, 2),
                                            len > 2 ? len - 2 : 0));
                    return;
                }
                case 0x9:
                    ++res_.pings;
                    send_ws(c, 0xA, payload, len);
                    if (c->state == cstate::closed) return;
                    break;
                case 0xA: break;
                default: fail(c, "websocket opcode " + std::to_string(op)); return;
            }
            pos += hdr + len;
        }
        if (pos) b.erase(0, pos);
    }

    void send_ws(conn* c, int op, const char* p, uint64_t len) {
        static constexpr char mask[4] = {0x12, 0x34, 0x56, 0x78};
        std::string f;
        f.push_back(char(0x80 | op));
        if (len < 126)
            f.push_back(char(0x80 | len));
        else {
            f.push_back(char(0x80 | 126));
            f.push_back(char(len >> 8));
            f.push_back(char(len & 0xff));
        }
        f.append(mask, 4);
        for (uint64_t i = 0; i < len; ++i) f.push_back(char(p[i] ^ mask[i & 3]));
        c->out += f;
        flush(c);
    }

    void parse_sse(conn* c) {
        std::string* src = &c->in;
        if (c->sse_chunked) {
            // de-chunk c->in into c->sse_acc
            std::string& in = c->in;
            size_t pos = 0;
            while (pos < in.size()) {
                if (c->chunk_state == 0) {
                    auto eol = in.find("\r\n", pos);
                    if (eol == std::string::npos) break;
                    c->chunk_left = std::strtoull(in.c_str() + pos, nullptr, 16);
                    pos = eol + 2;
                    c->chunk_state = c->chunk_left ? 1 : 2;
                    if (!c->chunk_left) {
                        fail(c, "sse stream ended");
                        return;
                    }
                } else if (c->chunk_state == 1) {
                    size_t take = std::min<uint64_t>(c->chunk_left, in.size() - pos);
                    c->sse_acc.append(in, pos, take);
                    pos += take;
                    c->chunk_left -= take;
                    if (!c->chunk_left) c->chunk_state = 2;
                } else {
                    if (in.size() - pos < 2) break;
                    pos += 2;
                    c->chunk_state = 0;
                }
            }
            in.erase(0, pos);
            src = &c->sse_acc;
        }
        std::string& b = *src;
        size_t pos = 0;
        while (pos < b.size()) {
            const char* nl = static_cast<const char*>(memchr(b.data() + pos, '\n', b.size() - pos));
            if (!nl) break;
            size_t eol = size_t(nl - b.data());
            size_t end = eol;
            if (end > pos && b[end - 1] == '\r') --end;
            if (end - pos >= 5 && memcmp(b.data() + pos, "data:", 5) == 0)
                on_payload(c, b.data() + pos + 5, end - pos - 5);
            pos = eol + 1;
        }
        if (pos) b.erase(0, pos);
        if (b.size() > (8u << 20)) fail(c, "sse line too long");
    }

    // --- publishers ----------------------------------------------------------------------

    void build_request(conn* p, uint32_t topic, bool measured, uint64_t stamp_ns) {
        topic_pub& tp = tp_[topic];
        uint64_t seq = ++tp.seq;
        char prefix[128];
        int n = std::snprintf(prefix, sizeof prefix, "HB k=%u s=%" PRIu64 " m=%d t=%" PRIu64 " ",
                              topic, seq, measured ? 1 : 0, stamp_ns);
        size_t body = std::max<size_t>(size_t(n), size_t(o_.size));
        std::string& out = p->out;
        out += "POST ";
        out += fill_path(o_.pub_path, topic_name(topic));
        out += " HTTP/1.1\r\nHost: ";
        out += o_.host;
        out += "\r\nContent-Type: text/plain\r\nContent-Length: ";
        out += std::to_string(body);
        out += "\r\n\r\n";
        out.append(prefix, size_t(n));
        if (body > size_t(n)) out.append(payload_pad_, 0, body - size_t(n));
        p->inflight.push_back({topic, seq, measured});
        sh_.pub_outstanding.fetch_add(1, std::memory_order_relaxed);
        if (measured) {
            if (!tp.first_measured) tp.first_measured = seq;
            tp.last_measured = seq;
            sh_.expected.fetch_add(sh_.fanout.empty() ? 0 : sh_.fanout[topic],
                                   std::memory_order_relaxed);
            sh_.measured_sent.fetch_add(1, std::memory_order_relaxed);
            ++res_.measured_publishes;
        }
    }

    // Returns true when the publisher waits only for deliveries (caller polls sooner).
    bool pump_publisher(conn* p, int ph, uint64_t t) {
        if (p->state != cstate::open || p->done) return false;
        size_t before = p->out.size();
        bool blocked = false;
        if (ph == ph_warmup) {
            // One warm-up message per owned topic every 200 ms until the controller moves on, at
            // most --pipeline in flight as in the measured phase: uWebSockets closes a connection
            // whose next pipelined request arrives while an answer is still held back by a full
            // send buffer (HttpContext.h, "async pipelining"), which 2,500 requests in one go
            // (10,000 topics, 4 publishers) made happen on a loaded machine.
            if (p->warm_next >= p->topics.size() && t - p->last_warm_round_ns > 200000000ull &&
                p->inflight.empty()) {
                p->last_warm_round_ns = t;
                p->warm_next = 0;
            }
            while (p->warm_next < p->topics.size() && p->inflight.size() < size_t(o_.pipeline))
                build_request(p, p->topics[p->warm_next++], false, t);
        } else if (ph == ph_measure) {
            uint64_t limit_total = o_.messages;
            auto room = [&]() {
                if (p->inflight.size() >= size_t(o_.pipeline)) return false;
                if (limit_total && sh_.measured_sent.load(std::memory_order_relaxed) >= limit_total)
                    return false;
                return true;
            };
            if (t >= sh_.measure_deadline_ns ||
                (limit_total && sh_.measured_sent.load(std::memory_order_relaxed) >= limit_total)) {
                p->done = true;
                sh_.publishers_done.fetch_add(1);
            } else if (o_.rate > 0) {
                double per_conn = o_.rate / double(o_.publishers);
                double el = double(t - sh_.measure_start_ns) / 1e9;
                auto due = uint64_t(el * per_conn) + 1;
                while (p->paced_sent < due && room()) {
                    // stamp the scheduled time, so a late send shows as latency (no coordinated
                    // omission)
                    uint64_t sched =
                        sh_.measure_start_ns + uint64_t(double(p->paced_sent) / per_conn * 1e9);
                    build_request(p, p->topics[p->rr++ % p->topics.size()], true, sched);
                    ++p->paced_sent;
                }
            } else {
                while (room()) {
                    uint64_t exp = sh_.expected.load(std::memory_order_relaxed);
                    uint64_t del = sh_.delivered.load(std::memory_order_relaxed) + local_delivered_;
                    if (sh_.window && exp > del && exp - del >= sh_.window) {
                        blocked = true;
                        break;
                    }
                    build_request(p, p->topics[p->rr++ % p->topics.size()], true, now_ns());
                }
            }
        }
        if (p->out.size() != before) flush(p);
        return blocked;
    }

    void parse_responses(conn* p) {
        std::string& b = p->in;
        size_t pos = 0;
        while (true) {
            auto he = b.find("\r\n\r\n", pos);
            if (he == std::string::npos) break;
            std::string_view head(b.data() + pos, he - pos);
            if (head.size() < 12 || head.substr(0, 5) != "HTTP/") {
                fail(p, "bad response");
                return;
            }
            int status = std::atoi(std::string(head.substr(9, 3)).c_str());
            uint64_t clen = 0;
            bool chunked = false;
            size_t ls = 0;
            while (ls < head.size()) {
                size_t le = head.find("\r\n", ls);
                if (le == std::string_view::npos) le = head.size();
                std::string_view line = head.substr(ls, le - ls);
                if (line.size() > 15 && strncasecmp(line.data(), "content-length:", 15) == 0)
                    clen = std::strtoull(std::string(line.substr(15)).c_str(), nullptr, 10);
                if (line.size() > 18 && strncasecmp(line.data(), "transfer-encoding:", 18) == 0 &&
                    line.find("chunked") != std::string_view::npos)
                    chunked = true;
                ls = le + 2;
            }
            size_t body_start = he + 4;
            size_t end;
            if (chunked) {
                // walk chunks; all must be present
                size_t q = body_start;
                bool complete = false;
                while (true) {
                    auto eol = b.find("\r\n", q);
                    if (eol == std::string::npos) break;
                    uint64_t sz = std::strtoull(b.c_str() + q, nullptr, 16);
                    if (sz == 0) {
                        auto fin = b.find("\r\n", eol + 2);  // trailer end (no trailers expected)
                        if (fin == std::string::npos) break;
                        q = fin + 2;
                        complete = true;
                        break;
                    }
                    if (b.size() < eol + 2 + sz + 2) break;
                    q = eol + 2 + sz + 2;
                }
                if (!complete) break;
                end = q;
            } else {
                if (b.size() < body_start + clen) break;
                end = body_start + clen;
            }
            if (p->inflight.empty()) {
                fail(p, "unexpected response");
                return;
            }
            pending_req r = p->inflight.front();
            p->inflight.pop_front();
            sh_.pub_outstanding.fetch_sub(1, std::memory_order_relaxed);
            if (status >= 200 && status < 300) {
                ++p->ok;
            } else {
                ++p->errors;
                if (r.measured) {
                    tp_[r.topic].failed_measured++;
                    // nobody will receive it
                    uint32_t f = sh_.fanout.empty() ? 0 : sh_.fanout[r.topic];
                    sh_.delivered.fetch_add(f, std::memory_order_relaxed);
                }
                if (p->errors <= 3)
                    note_error("publish status " + std::to_string(status) + ": " +
                               b.substr(body_start, std::min<size_t>(200, end - body_start)));
            }
            pos = end;
        }
        if (pos) b.erase(0, pos);
    }
};

void json_str(std::string& o, const std::string& s) {
    o += '"';
    for (char ch : s) {
        if (ch == '"' || ch == '\\') {
            o += '\\';
            o += ch;
        } else if (static_cast<unsigned char>(ch) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof buf, "\\u%04x", ch);
            o += buf;
        } else
            o += ch;
    }
    o += '"';
}

uint64_t client_cpu_us() {
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return uint64_t(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000ull +
           uint64_t(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

void sleep_ms(int ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}

}  // namespace

int main(int argc, char** argv) {
    options o = parse_options(argc, argv);
    shared_state sh;
    const int nsubs = o.ws + o.sse;
    const bool idle_mode = o.idle > 0;
    const bool publish = !idle_mode;
    int K = o.src_addrs > 0 ? o.src_addrs : std::max(1, (nsubs + o.publishers + 19999) / 20000);
    K = std::min(K, 254);

    std::vector<topic_pub> tp(size_t(o.topics));
    std::vector<std::unique_ptr<worker>> workers;
    for (int i = 0; i < o.threads; ++i) workers.push_back(std::make_unique<worker>(o, sh, i, tp));
    for (int i = 0; i < nsubs; ++i) {
        ckind k = i < o.ws ? ckind::ws : ckind::sse;
        workers[size_t(i % o.threads)]->add_subscriber(uint32_t(i), k, uint32_t(i % o.topics),
                                                       uint32_t(i % K));
    }
    if (publish) {
        int np = std::min(o.publishers, o.topics);
        for (int j = 0; j < np; ++j) {
            std::vector<uint32_t> ts;
            for (int t = j; t < o.topics; t += np) ts.push_back(uint32_t(t));
            workers[size_t(j % o.threads)]->add_publisher(uint32_t(j), std::move(ts));
        }
        o.publishers = np;
    }

    proc_sample rss0 = sample_procs(o.server_pids);
    uint64_t t_start = now_ns();
    std::vector<std::thread> threads;
    for (auto& w : workers) threads.emplace_back([&w] { w->run(); });

    // --- connect: bounded by connect_timeout ---
    const uint64_t want_pubs = publish ? uint64_t(o.publishers) : 0;
    while (true) {
        uint64_t done = sh.sub_connected + sh.sub_failed;
        uint64_t pdone = sh.pub_connected + sh.pub_failed;
        if (done >= uint64_t(nsubs) && pdone >= want_pubs) break;
        if (double(now_ns() - t_start) / 1e9 > o.connect_timeout) break;
        sleep_ms(10);
    }
    double connect_s = double(now_ns() - t_start) / 1e9;
    std::fprintf(
        stderr, "[%s] connected %" PRIu64 "/%d subscribers (%" PRIu64 " failed) in %.2fs\n",
        o.scenario.c_str(), sh.sub_connected.load(), nsubs, sh.sub_failed.load(), connect_s);

    // Subscribers per topic, counted from the ones that actually connected.
    sh.fanout.assign(size_t(o.topics), 0);
    // (connected flag is per conn; rebuild from topic assignment; failures reduce fan-out)
    // Failures are rare and reported; assume the subscriber set is complete unless some failed.
    for (int i = 0; i < nsubs; ++i) sh.fanout[size_t(i % o.topics)]++;

    std::string out;
    char num[64];
    auto kv = [&](const char* k, double v, bool comma = true) {
        if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15)
            std::snprintf(num, sizeof num, "%.0f", v);
        else if (std::isfinite(v))
            std::snprintf(num, sizeof num, "%.3f", v);
        else
            std::snprintf(num, sizeof num, "null");
        out += '"';
        out += k;
        out += "\":";
        out += num;
        if (comma) out += ',';
    };
    auto ks = [&](const char* k, const std::string& v) {
        out += '"';
        out += k;
        out += "\":";
        json_str(out, v);
        out += ',';
    };

    out += '{';
    ks("scenario", o.scenario);
    {
        std::string cmd = "herald-bench";
        for (int i = 1; i < argc; ++i) {
            cmd += ' ';
            cmd += argv[i];
        }
        ks("cmd", cmd);
    }
    ks("server", o.kind);
    kv("ws", o.ws);
    kv("sse", o.sse);
    kv("topics", o.topics);
    kv("size", o.size);
    kv("threads", o.threads);
    kv("src_addrs", K);
    kv("connected", double(sh.sub_connected.load()));
    kv("connect_failures", double(sh.sub_failed.load()));
    kv("connect_s", connect_s);

    if (idle_mode) {
        // Hold the connections, then measure how much the server grew for them.
        uint64_t until = now_ns() + uint64_t(o.idle * 1e9);
        while (now_ns() < until) sleep_ms(50);
        proc_sample rss1 = sample_procs(o.server_pids);
        uint64_t conns =
            sh.sub_connected.load() - std::min(sh.sub_connected.load(), sh.server_closed.load());
        sh.phase.store(ph_done);
        for (auto& t : threads) t.join();
        ks("mode", "idle");
        kv("idle_s", o.idle);
        kv("open_at_end", double(conns));
        kv("server_closed", double(sh.server_closed.load()));
        kv("rss_before_kb", double(rss0.rss_kb));
        kv("rss_after_kb", double(rss1.rss_kb));
        kv("pss_before_kb", double(rss0.pss_kb));
        kv("pss_after_kb", double(rss1.pss_kb));
        double per =
            conns ? double(int64_t(rss1.rss_kb) - int64_t(rss0.rss_kb)) * 1024.0 / double(conns)
                  : NAN;
        double pper =
            conns ? double(int64_t(rss1.pss_kb) - int64_t(rss0.pss_kb)) * 1024.0 / double(conns)
                  : NAN;
        kv("rss_per_conn_bytes", std::round(per) + 0.0);
        kv("pss_per_conn_bytes", std::round(pper) + 0.0);
        kv("server_cpu_us", double(rss1.cpu_us - rss0.cpu_us));
        std::vector<std::string> errs;
        for (auto& w : workers) {
            auto r = w->collect(tp);
            for (auto& e : r.errors) errs.push_back(e);
        }
        out += "\"errors\":[";
        for (size_t i = 0; i < errs.size() && i < 10; ++i) {
            if (i) out += ',';
            json_str(out, errs[i]);
        }
        out += "]}";
        std::printf("%s\n", out.c_str());
        return 0;
    }

    // --- warm-up: every subscriber must see one message before anything is measured ---
    bool warm_ok = true;
    double warm_s = 0;
    if (nsubs > 0) {
        uint64_t w0 = now_ns();
        sh.phase.store(ph_warmup, std::memory_order_release);
        while (sh.ready.load() < sh.sub_connected.load()) {
            if (double(now_ns() - w0) / 1e9 > o.warmup) {
                warm_ok = false;
                break;
            }
            sleep_ms(5);
        }
        warm_s = double(now_ns() - w0) / 1e9;
        std::fprintf(stderr, "[%s] warm-up: %" PRIu64 "/%" PRIu64 " subscribers ready in %.2fs\n",
                     o.scenario.c_str(), sh.ready.load(), sh.sub_connected.load(), warm_s);
        // let the warm-up publishes settle so they do not count against the measured phase
        sh.phase.store(ph_settle, std::memory_order_release);
        uint64_t s0 = now_ns();
        while (sh.pub_outstanding.load() > 0 && now_ns() - s0 < 2000000000ull) sleep_ms(2);
        sleep_ms(100);
    }

    // --- measure ---
    uint64_t maxfan = 0;
    for (auto f : sh.fanout) maxfan = std::max<uint64_t>(maxfan, f);
    sh.window = o.window ? o.window : (nsubs ? std::max<uint64_t>(2000, 16 * maxfan) : 0);
    proc_sample p0 = sample_procs(o.server_pids);
    uint64_t c0 = client_cpu_us();
    sh.measure_start_ns = now_ns();
    sh.measure_deadline_ns =
        sh.measure_start_ns + uint64_t((o.messages ? 600.0 : o.duration) * 1e9);
    sh.phase.store(ph_measure, std::memory_order_release);
    while (sh.publishers_done.load() < o.publishers) {
        if (now_ns() > sh.measure_deadline_ns + 1000000000ull) break;  // safety bound
        sleep_ms(2);
    }
    uint64_t t_pub_end = now_ns();
    sh.phase.store(ph_drain, std::memory_order_release);
    // --- drain: bounded wait for responses and in-flight deliveries ---
    uint64_t d0 = now_ns();
    while (double(now_ns() - d0) / 1e9 < o.drain) {
        if (sh.pub_outstanding.load() == 0 && sh.delivered.load() >= sh.expected.load()) break;
        sleep_ms(1);
    }
    uint64_t t_end = now_ns();
    proc_sample p1 = sample_procs(o.server_pids);
    uint64_t c1 = client_cpu_us();
    bool drained = sh.pub_outstanding.load() == 0 && sh.delivered.load() >= sh.expected.load();
    sh.phase.store(ph_done, std::memory_order_release);
    for (auto& t : threads) t.join();

    thread_result total;
    std::vector<std::string> errs;
    for (auto& w : workers) {
        thread_result r = w->collect(tp);
        total.hist.merge(r.hist);
        total.deliveries += r.deliveries;
        total.dup += r.dup;
        total.reordered += r.reordered;
        total.misrouted += r.misrouted;
        total.other_frames += r.other_frames;
        total.error_frames += r.error_frames;
        total.pings += r.pings;
        total.publishes_ok += r.publishes_ok;
        total.publish_errors += r.publish_errors;
        total.measured_publishes += r.measured_publishes;
        total.lost += r.lost;
        total.expected_per_sub_sum += r.expected_per_sub_sum;
        for (auto& e : r.errors) errs.push_back(e);
    }
    double el = double(t_end - sh.measure_start_ns) / 1e9;
    double pub_el = double(t_pub_end - sh.measure_start_ns) / 1e9;
    uint64_t cpu = p1.cpu_us - p0.cpu_us;
    double cpu_sched_us = double(p1.sched_ns - p0.sched_ns) / 1000.0;

    ks("mode", nsubs ? (o.rate > 0 ? "paced" : "flat") : "publish_only");
    kv("rate", o.rate);
    kv("publishers", o.publishers);
    kv("pipeline", o.pipeline);
    kv("window", double(sh.window));
    kv("warmup_ok", warm_ok ? 1 : 0);
    kv("warmup_s", warm_s);
    kv("elapsed_s", el);
    kv("publish_s", pub_el);
    kv("drained", drained ? 1 : 0);
    kv("publishes", double(total.measured_publishes));
    kv("publish_errors", double(total.publish_errors));
    kv("publish_req_per_s", double(total.measured_publishes) / pub_el);
    kv("deliveries", double(total.deliveries));
    kv("expected_deliveries", double(total.expected_per_sub_sum));
    kv("deliveries_per_s", double(total.deliveries) / el);
    kv("lost", double(total.lost));
    kv("dup", double(total.dup));
    kv("reordered", double(total.reordered));
    kv("misrouted", double(total.misrouted));
    kv("server_closed", double(sh.server_closed.load()));
    kv("error_frames", double(total.error_frames));
    kv("other_frames", double(total.other_frames));
    kv("pings", double(total.pings));
    const bool have_pids = !o.server_pids.empty();
    kv("server_cpu_us", have_pids ? double(cpu) : NAN);
    kv("server_cpu_us_sched", have_pids ? std::round(cpu_sched_us) : NAN);
    kv("client_cpu_us", double(c1 - c0));
    if (nsubs) {
        kv("cpu_us_per_1000_deliveries",
           have_pids && total.deliveries
               ? std::round(double(cpu) * 1000.0 / double(total.deliveries))
               : NAN);
        kv("cpu_sched_us_per_1000_deliveries",
           have_pids && total.deliveries
               ? std::round(cpu_sched_us * 1000.0 / double(total.deliveries))
               : NAN);
    }
    kv("cpu_us_per_1000_publishes",
       have_pids && total.measured_publishes
           ? std::round(double(cpu) * 1000.0 / double(total.measured_publishes))
           : NAN);
    const histogram& h = total.hist;
    out += "\"latency_us\":{";
    kv("count", double(h.count));
    kv("p50", double(h.percentile(50)) / 1000.0);
    kv("p90", double(h.percentile(90)) / 1000.0);
    kv("p99", double(h.percentile(99)) / 1000.0);
    kv("p99.9", double(h.percentile(99.9)) / 1000.0);
    kv("max", double(h.max) / 1000.0);
    kv("mean", h.count ? double(h.sum / h.count) / 1000.0 : 0, false);
    out += "},";
    kv("rss_before_kb", double(p0.rss_kb));
    kv("rss_after_kb", double(p1.rss_kb));
    kv("pss_before_kb", double(p0.pss_kb));
    kv("pss_after_kb", double(p1.pss_kb));
    kv("rss_start_kb", double(rss0.rss_kb));
    out += "\"errors\":[";
    for (size_t i = 0; i < errs.size() && i < 10; ++i) {
        if (i) out += ',';
        json_str(out, errs[i]);
    }
    out += "]}";
    std::printf("%s\n", out.c_str());
    return 0;
}
