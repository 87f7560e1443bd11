// evdispatch::relay against real HTTP clients, with the loopback collector as its upstream.

#include <evdispatch/collector/collector.hpp>
#include <evdispatch/relay.hpp>

#include "core/gzip.hpp"
#include "support/fixtures.hpp"
#include "support/http_client.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <zlib.h>

#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <thread>

using namespace evdispatch;
using namespace std::chrono_literals;
namespace http = boost::beast::http;
using test::http_client;
using test::make_batch;
using test::wait_until;

namespace {

// gzip of `in` (one member), with zlib, as a client would send it.
std::string gzip_of(std::string_view in) {
    z_stream zs{};
    REQUIRE(deflateInit2(&zs, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(deflateBound(&zs, static_cast<uLong>(in.size())) + 64, '\0');
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
}

// A raw POST to /v1/events with the given extra header lines ("Name: value\r\n" each).
std::string raw_post(const std::string& body, const std::string& headers,
                     const std::string& target = "/v1/events") {
    return "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers +
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// A relay to `col` that holds what it gets until the drain (flush interval a minute).
relay_config relay_to(const collector& col) {
    relay_config c;
    c.upstream = col.url();
    c.eu_upstream = col.url();
    c.processor.batch.batch_size = 100;
    c.processor.batch.flush_interval = 60s;
    return c;
}

// Visitors in every body the collector kept.
std::vector<std::uint64_t> visitors_per_body(const collector& col) {
    std::vector<std::uint64_t> out;
    for (const auto& b : col.bodies()) {
        const auto c = check_event_batch(b);
        REQUIRE(c.ok);
        out.push_back(c.visitors);
    }
    return out;
}

// ---- a strict reading of the Prometheus text exposition format (0.0.4) ---------------------

struct prom_sample {
    std::string family;
    std::string labels;
    double value = 0;
};

struct prom_doc {
    std::map<std::string, std::string> types;  // family -> counter/gauge
    std::vector<prom_sample> samples;

    double value(const std::string& name, const std::string& labels = {}) const {
        for (const auto& s : samples)
            if (s.family == name && s.labels == labels)
                return s.value;
        FAIL("no sample " << name << "{" << labels << "}");
        return 0;
    }
    double sum(const std::string& name, const std::string& except_label = {}) const {
        double v = 0;
        for (const auto& s : samples)
            if (s.family == name &&
                (except_label.empty() || s.labels.find(except_label) == std::string::npos))
                v += s.value;
        return v;
    }
};

// Parses `text`, checking every rule it relies on; a violation fails the test with the line.
prom_doc parse_prometheus(const std::string& text) {
    static const std::regex help_re("# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.+)");
    static const std::regex type_re("# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)");
    static const std::string label = R"([a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\["\\n])*")";
    // 1: the name; 2: the labels inside the braces; 3: the value.
    static const std::regex sample_re("([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\\{(" + label + "(?:," + label +
                                      ")*)\\})? ([^ ]+)");
    REQUIRE(!text.empty());
    REQUIRE(text.back() == '\n');
    prom_doc doc;
    std::set<std::string> helped, series, finished;
    std::string current;  // the family whose samples may follow
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        INFO("line: " << line);
        REQUIRE(!line.empty());
        std::smatch m;
        if (std::regex_match(line, m, help_re)) {
            REQUIRE(helped.insert(m[1]).second);  // one HELP per family
            continue;
        }
        if (std::regex_match(line, m, type_re)) {
            const std::string fam = m[1];
            REQUIRE(helped.count(fam) == 1);     // HELP first (our own rule)
            REQUIRE(doc.types.count(fam) == 0);  // one TYPE per family
            REQUIRE(finished.count(fam) == 0);   // before any of its samples
            doc.types[fam] = m[2];
            if (m[2] == "counter")
                REQUIRE(fam.ends_with("_total"));
            REQUIRE(fam.starts_with("evdispatch_"));
            if (!current.empty())
                finished.insert(current);
            current = fam;
            continue;
        }
        REQUIRE(line[0] != '#');
        REQUIRE(std::regex_match(line, m, sample_re));
        const std::string fam = m[1];
        REQUIRE(fam == current);  // a family's samples are together, after its TYPE
        REQUIRE(series.insert(fam + "{" + std::string(m[2]) + "}").second);  // no duplicates
        std::size_t used = 0;
        const std::string v = m[3];
        const double value = std::stod(v, &used);
        REQUIRE(used == v.size());
        if (doc.types[fam] == "counter")
            REQUIRE(value >= 0);
        doc.samples.push_back({fam, m[2].matched ? std::string(m[2]) : std::string(), value});
    }
    for (const auto& entry : doc.types) {
        const std::string& fam = entry.first;  // (clang 14 cannot capture a structured binding)
        INFO("family " << fam);
        CHECK(std::any_of(doc.samples.begin(), doc.samples.end(),
                          [&](const prom_sample& s) { return s.family == fam; }));
    }
    CHECK(helped.size() == doc.types.size());
    return doc;
}

}  // namespace

TEST_CASE("relay: 64 concurrent keep-alive clients, every event upstream once, in full batches",
          "[relay]") {
    collector_config cc;
    cc.keep_bodies = true;
    collector col(cc);
    auto cfg = relay_to(col);
    cfg.threads = 2;  // sessions on strands of two server threads, admission under one lock
    relay r(cfg);
    constexpr unsigned clients = 64, per_client = 25;  // 1,600 events: 16 batches of 100
    std::atomic<unsigned> ok{0}, other{0};
    std::vector<std::thread> threads;
    for (unsigned c = 0; c < clients; ++c) {
        threads.emplace_back([&, c] {
            http_client client(r.port());
            for (unsigned i = 0; i < per_client; ++i) {
                const auto rep = client.post(make_batch(1, c * per_client + i));
                (rep.status == 204 && rep.keep_alive ? ok : other).fetch_add(1);
            }
        });
    }
    for (auto& t : threads)
        t.join();
    REQUIRE(ok.load() == clients * per_client);
    REQUIRE(other.load() == 0);
    // Full batches go out at once; nothing waits for the flush interval.
    REQUIRE(wait_until([&] { return col.stats().events == clients * per_client; }));
    const auto report = r.drain(5s);
    const auto s = col.stats();
    CHECK(s.unique_events == clients * per_client);
    CHECK(s.duplicates == 0);
    CHECK(s.batches == 16);
    for (auto v : visitors_per_body(col))
        CHECK(v == 100);
    CHECK(report.delivered == ok.load());
    CHECK(report.not_delivered == 0);
    CHECK(report.metrics.balanced());
    const auto rs = r.stats();
    CHECK(rs.accepted_requests == clients * per_client);
    CHECK(rs.accepted_events == clients * per_client);
    CHECK(rs.connections == clients);
}

TEST_CASE("relay: a request's visitors are re-batched with other requests' by context", "[relay]") {
    collector_config cc;
    cc.keep_bodies = true;
    collector col(cc);
    auto cfg = relay_to(col);
    cfg.processor.batch.batch_size = 10;
    relay r(cfg);
    http_client client(r.port());
    // 3 + 4 + 3 visitors in three requests: one upstream batch of 10.
    REQUIRE(client.post(make_batch(3, 0)).status == 204);
    REQUIRE(client.post(make_batch(4, 100)).status == 204);
    REQUIRE(client.post(make_batch(3, 200)).status == 204);
    REQUIRE(wait_until([&] { return col.stats().batches == 1; }));
    CHECK(visitors_per_body(col) == std::vector<std::uint64_t>{10});
    CHECK(col.stats().unique_events == 10);
    // The envelope is the clients' own.
    const std::string body = col.bodies().at(0);
    CHECK(body.find(R"("client_name":"test")") != std::string::npos);
    CHECK(body.find(R"("anonymize_ip":true)") != std::string::npos);
}

TEST_CASE("relay: bad requests get their status and nothing is forwarded", "[relay]") {
    collector col;
    auto cfg = relay_to(col);
    cfg.max_body_bytes = 4096;
    cfg.processor.batch.batch_size = 1;
    relay r(cfg);
    const std::string good = make_batch(1, 7);
    const std::string json_ct = "Content-Type: application/json\r\n";

    struct bad_case {
        const char* what;
        std::string request;
        unsigned status;
        const char* says;
    };
    std::string bomb_plain(2 * 1024 * 1024, ' ');  // 2 MiB of blanks: ~2 KiB gzipped
    const std::vector<bad_case> cases = {
        {"invalid JSON", raw_post("{\"account_id\":", json_ct), 400, "invalid event batch"},
        {"not an event batch", raw_post(R"({"visitors":[]})", json_ct), 400, "account_id"},
        {"a visitor without snapshots",
         raw_post(R"({"account_id":"1","project_id":"2","revision":"3","client_name":"c",)"
                  R"("client_version":"1","anonymize_ip":true,"enrich_decisions":true,)"
                  R"("visitors":[{"visitor_id":"v","attributes":[]}]})",
                  json_ct),
         400, "snapshots"},
        {"an unknown envelope field",
         raw_post(good.substr(0, good.size() - 1) + R"(,"extra":1})", json_ct), 400, "extra"},
        {"enrich_decisions false",
         raw_post(std::regex_replace(good, std::regex("\"enrich_decisions\":true"),
                                     "\"enrich_decisions\":false"),
                  json_ct),
         400, "enrich_decisions"},
        {"a body over max_body_bytes", raw_post(std::string(5000, ' '), json_ct), 413, "larger"},
        {"a gzip bomb", raw_post(gzip_of(bomb_plain), json_ct + "Content-Encoding: gzip\r\n"), 413,
         "decodes to more than"},
        {"corrupt gzip", raw_post("\x1f\x8b garbage", json_ct + "Content-Encoding: gzip\r\n"), 400,
         "gzip"},
        {"truncated gzip",
         raw_post(gzip_of(good).substr(0, 20), json_ct + "Content-Encoding: gzip\r\n"), 400,
         "gzip"},
        {"text/plain", raw_post(good, "Content-Type: text/plain\r\n"), 415, "application/json"},
        {"no content type", raw_post(good, ""), 415, "application/json"},
        {"an unknown encoding", raw_post(good, json_ct + "Content-Encoding: br\r\n"), 415, "br"},
        {"GET on the events path", "GET /v1/events HTTP/1.1\r\nHost: x\r\n\r\n", 405, "POST"},
        {"another path", raw_post(good, json_ct, "/v2/events"), 404, "not found"},
        {"a malformed request line", "BLAH\r\n\r\n", 400, "bad HTTP request"},
    };
    for (const auto& c : cases) {
        INFO(c.what);
        http_client client(r.port());
        client.send_raw(c.request);
        const auto rep = client.read();
        CHECK(rep.status == c.status);
        CHECK(rep.body.find(c.says) != std::string::npos);
    }
    // Positive controls on the same relay: plain and gzip are forwarded.
    http_client client(r.port());
    client.send_raw(raw_post(good, json_ct));
    CHECK(client.read().status == 204);
    client.send_raw(raw_post(gzip_of(make_batch(2, 8)), json_ct + "Content-Encoding: gzip\r\n"));
    CHECK(client.read().status == 204);
    REQUIRE(wait_until([&] { return col.stats().events == 3; }));
    const auto rs = r.stats();
    CHECK(rs.bad_requests == 8);
    CHECK(rs.too_large == 2);
    CHECK(rs.unsupported_media == 3);
    CHECK(rs.not_found == 2);
    CHECK(rs.accepted_events == 3);
    CHECK(rs.gzip_requests == 1);
    const auto report = r.drain(5s);
    CHECK(report.delivered == 3);
    CHECK(col.stats().events == 3);
    CHECK(col.stats().rejected == 0);
}

TEST_CASE("relay: a slow client is disconnected and nothing of it is forwarded", "[relay]") {
    collector col;
    auto cfg = relay_to(col);
    cfg.read_timeout = 300ms;
    relay r(cfg);
    http_client slow(r.port());
    // Headers and part of the body, then nothing.
    slow.send_raw(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Content-Length: 500\r\n\r\n{\"account_id\":");
    const auto t0 = std::chrono::steady_clock::now();
    slow.set_timeout(10s);
    const auto ec = slow.read_until_closed();
    CHECK(ec != boost::beast::error::timeout);  // the relay closed it, not our own bound
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
    // Counted by the handler that sees the timeout, which may run just after the close.
    CHECK(wait_until([&] { return r.stats().timeouts == 1; }));
    // Headers that stop halfway: the read timeout applies from the first byte, not the idle
    // timeout (a minute here).
    http_client slower(r.port());
    slower.send_raw("POST /v1/events HTTP/1.1\r\nHo");
    const auto t1 = std::chrono::steady_clock::now();
    slower.set_timeout(10s);
    CHECK(slower.read_until_closed() != boost::beast::error::timeout);
    CHECK(std::chrono::steady_clock::now() - t1 < 5s);
    CHECK(wait_until([&] { return r.stats().timeouts == 2; }));
    CHECK(r.stats().accepted_events == 0);
    // Others are served meanwhile and after.
    http_client ok(r.port());
    CHECK(ok.post(make_batch(1, 1)).status == 204);
    CHECK(r.drain(5s).delivered == 1);
}

TEST_CASE("relay: an idle keep-alive connection is closed after idle_timeout", "[relay]") {
    collector col;
    auto cfg = relay_to(col);
    cfg.idle_timeout = 200ms;
    relay r(cfg);
    http_client client(r.port());
    REQUIRE(client.post(make_batch(1, 1)).status == 204);
    client.set_timeout(10s);
    CHECK(client.read_until_closed() == boost::asio::error::eof);
    CHECK(wait_until([&] { return r.stats().timeouts == 1; }));
}

TEST_CASE("relay: upstream down, 503 + Retry-After once the room is full, then all delivered",
          "[relay]") {
    collector col;
    col.pause_listening();  // connecting is refused
    auto cfg = relay_to(col);
    cfg.max_pending_events = 50;
    cfg.retry_after = 2s;
    cfg.processor.batch.batch_size = 10;
    cfg.processor.batch.flush_interval = 20ms;
    cfg.processor.health.probe_initial = 50ms;
    cfg.processor.health.probe_max = 200ms;
    relay r(cfg);
    http_client client(r.port());
    unsigned accepted = 0, refused = 0;
    std::optional<test::reply> first_refusal;
    for (unsigned i = 0; i < 80; ++i) {
        const auto rep = client.post(make_batch(1, i));
        if (rep.status == 204) {
            ++accepted;
        } else {
            REQUIRE(rep.status == 503);
            if (!first_refusal)
                first_refusal = rep;
            ++refused;
        }
    }
    // Nothing can be delivered: exactly the room is taken, the rest refused.
    CHECK(accepted == 50);
    CHECK(refused == 30);
    REQUIRE(first_refusal);
    CHECK(first_refusal->retry_after == "2");
    CHECK(first_refusal->keep_alive);
    CHECK(r.stats().refused_full_events == 30);
    CHECK(r.metrics().dropped_total() == 0);

    col.resume_listening();
    REQUIRE(wait_until([&] { return col.stats().unique_events == 50; }, 30s));
    // Room again.
    CHECK(client.post(make_batch(1, 1000)).status == 204);
    const auto report = r.drain(5s);
    CHECK(report.delivered == 51);
    CHECK(report.not_delivered == 0);
    CHECK(col.stats().duplicates == 0);
}

TEST_CASE("relay: drain delivers what is held, batches after it get 503 and Connection: close",
          "[relay]") {
    collector col;
    relay r(relay_to(col));  // batches of 100, flushed after a minute: all 30 are held
    http_client client(r.port());
    for (unsigned i = 0; i < 30; ++i)
        REQUIRE(client.post(make_batch(1, i)).status == 204);
    CHECK(col.stats().events == 0);
    r.begin_drain();
    const auto rep = client.post(make_batch(1, 99));
    CHECK(rep.status == 503);
    CHECK(!rep.keep_alive);
    CHECK(rep.retry_after == "1");
    http_client health(r.port());
    CHECK(health.request(http::verb::get, "/healthz").status == 503);
    const auto report = r.drain(5s);
    CHECK(report.delivered == 30);
    CHECK(!report.deadline_passed);
    CHECK(col.stats().unique_events == 30);
    CHECK(r.stats().refused_draining_events == 1);
}

TEST_CASE("relay: a drain whose deadline passes reports every event by reason", "[relay]") {
    collector col;
    collector_faults f;
    f.stall = true;  // reads every batch, answers none
    col.set_faults(f);
    auto cfg = relay_to(col);
    cfg.processor.batch.batch_size = 5;
    relay r(cfg);
    http_client client(r.port());
    for (unsigned i = 0; i < 12; ++i)
        REQUIRE(client.post(make_batch(1, i)).status == 204);
    const auto report = r.drain(300ms);
    CHECK(report.deadline_passed);
    CHECK(report.delivered == 0);
    CHECK(report.not_delivered == 12);
    CHECK(report.dropped[static_cast<std::size_t>(drop_reason::close_deadline)] == 12);
    CHECK(report.metrics.balanced());
}

TEST_CASE("relay: GET /metrics passes a strict Prometheus text-format check", "[relay]") {
    collector col;
    auto cfg = relay_to(col);
    cfg.processor.batch.batch_size = 4;
    relay r(cfg);
    http_client client(r.port());
    for (unsigned i = 0; i < 10; ++i)
        REQUIRE(client.post(make_batch(1, i)).status == 204);
    client.send_raw(raw_post("{", "Content-Type: application/json\r\n"));
    REQUIRE(client.read().status == 400);
    http_client c2(r.port());
    REQUIRE(wait_until([&] { return col.stats().events == 8; }));
    REQUIRE(wait_until([&] { return r.metrics().delivered == 8; }));
    const auto rep = c2.request(http::verb::get, "/metrics");
    REQUIRE(rep.status == 200);
    const prom_doc doc = parse_prometheus(rep.body);
    CHECK(doc.types.at("evdispatch_events_dropped_total") == "counter");
    CHECK(doc.types.at("evdispatch_events_pending") == "gauge");
    // The accounting identity, read from the exposition.
    const double accepted = doc.value("evdispatch_events_accepted_total");
    const double delivered = doc.value("evdispatch_events_delivered_total");
    const double dropped_after =
        doc.sum("evdispatch_events_dropped_total") -
        doc.value("evdispatch_events_dropped_total", R"(reason="queue_full")") -
        doc.value("evdispatch_events_dropped_total", R"(reason="closed")");
    const double pending = doc.value("evdispatch_events_pending");
    const double spooled = doc.value("evdispatch_events_left_in_spool_total");
    CHECK(accepted == 10);
    CHECK(delivered == 8);
    CHECK(pending == 2);
    CHECK(accepted == delivered + dropped_after + pending + spooled);
    CHECK(doc.value("evdispatch_accounting_balanced") == 1);
    CHECK(doc.value("evdispatch_relay_responses_total", R"(outcome="accepted")") == 10);
    CHECK(doc.value("evdispatch_relay_responses_total", R"(outcome="bad_request")") == 1);
    CHECK(doc.value("evdispatch_relay_received_events_total") == 10);
    CHECK(doc.value("evdispatch_endpoint_up") == 1);
    // Every drop reason is there, zeros included, so that a rate() query has a series.
    CHECK(std::count_if(doc.samples.begin(), doc.samples.end(), [](const prom_sample& s) {
              return s.family == "evdispatch_events_dropped_total";
          }) == static_cast<long>(drop_reason_count));
    CHECK(c2.request(http::verb::get, "/healthz").body == "ok\n");
    CHECK(c2.request(http::verb::post, "/metrics").status == 405);
}

TEST_CASE("relay: POST /eu/v1/events goes to the EU upstream", "[relay]") {
    collector us, eu;
    auto cfg = relay_to(us);
    cfg.eu_upstream = eu.url();
    cfg.processor.batch.batch_size = 2;
    relay r(cfg);
    http_client client(r.port());
    REQUIRE(client.post(make_batch(2, 0)).status == 204);
    REQUIRE(client.request(http::verb::post, "/eu/v1/events", make_batch(2, 10)).status == 204);
    REQUIRE(wait_until([&] { return us.stats().events == 2 && eu.stats().events == 2; }));
    CHECK(r.drain(5s).delivered == 4);
}

TEST_CASE("relay: Expect: 100-continue is answered before the body", "[relay]") {
    collector col;
    relay r(relay_to(col));
    http_client client(r.port());
    const std::string body = make_batch(1, 1);
    client.send_raw(
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Expect: 100-continue\r\nContent-Length: " +
        std::to_string(body.size()) + "\r\n\r\n");
    CHECK(client.read().status == 100);
    client.send_raw(body);
    CHECK(client.read().status == 204);
    CHECK(r.drain(5s).delivered == 1);
}

TEST_CASE("relay: one connection over max_connections gets 503 and is closed", "[relay]") {
    collector col;
    auto cfg = relay_to(col);
    cfg.max_connections = 2;
    relay r(cfg);
    http_client a(r.port()), b(r.port());
    REQUIRE(a.post(make_batch(1, 1)).status == 204);
    REQUIRE(b.post(make_batch(1, 2)).status == 204);
    http_client c(r.port());
    const auto rep = c.read();
    CHECK(rep.status == 503);
    CHECK(!rep.keep_alive);
    CHECK(r.stats().connections_refused == 1);
    // The first two go on.
    CHECK(a.post(make_batch(1, 3)).status == 204);
}

TEST_CASE("relay: listens on a unix socket, replaces a stale one, refuses another file",
          "[relay]") {
    namespace fs = std::filesystem;
    namespace asio = boost::asio;
    const fs::path dir = fs::temp_directory_path() / ("evd-relay-" + std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string path = (dir / "relay.sock").string();
    collector col;
    auto cfg = relay_to(col);
    cfg.unix_socket = path;
    cfg.processor.batch.batch_size = 1;
    const auto post_over_unix = [&] {
        asio::io_context io;
        asio::local::stream_protocol::socket s(io);
        s.connect(asio::local::stream_protocol::endpoint(path));
        const std::string body = make_batch(1, 5);
        const std::string req = raw_post(body,
                                         "Content-Type: application/json\r\n"
                                         "Connection: close\r\n");
        asio::write(s, asio::buffer(req));
        std::string got;
        boost::system::error_code ec;
        char buf[512];
        for (;;) {
            const auto n = s.read_some(asio::buffer(buf), ec);
            got.append(buf, n);
            if (ec)
                break;
        }
        return got;
    };
    {
        relay r(cfg);
        CHECK(r.url() == "unix:" + path);
        CHECK(post_over_unix().starts_with("HTTP/1.1 204"));
        // A second relay on the same path is refused while the first listens.
        CHECK_THROWS_AS(relay(cfg), boost::system::system_error);
        CHECK(r.drain(5s).delivered == 1);
    }
    CHECK(!fs::exists(path));  // removed at stop
    {
        // A stale socket file (nobody listens) is replaced.
        asio::io_context io;
        asio::local::stream_protocol::acceptor stale(io,
                                                     asio::local::stream_protocol::endpoint(path));
        stale.close();
        REQUIRE(fs::exists(path));
        relay r(cfg);
        CHECK(post_over_unix().starts_with("HTTP/1.1 204"));
    }
    {
        std::ofstream(path) << "not a socket";
        try {
            relay r(cfg);
            FAIL("a relay took over a regular file");
        } catch (const boost::system::system_error& e) {
            CHECK(e.code() == error::invalid_config);
            CHECK(std::string(e.what()).find("not a socket") != std::string::npos);
        }
        CHECK(fs::exists(path));  // left alone
    }
    fs::remove_all(dir);
}

TEST_CASE("relay: a bad configuration is refused, naming the field", "[relay]") {
    const auto refused = [](relay_config c, const char* field) {
        INFO(field);
        try {
            relay r(std::move(c));
            FAIL("accepted");
        } catch (const boost::system::system_error& e) {
            CHECK(e.code() == error::invalid_config);
            CHECK(std::string(e.what()).find(field) != std::string::npos);
        }
    };
    relay_config c;
    c.upstream = "ftp://x/v1/events";
    refused(c, "upstream");
    c = {};
    c.eu_upstream = "http://";
    refused(c, "eu_upstream");
    c = {};
    c.max_body_bytes = 10;
    refused(c, "max_body_bytes");
    c = {};
    c.max_pending_events = 0;
    refused(c, "max_pending_events");
    c = {};
    c.listen_address = "localhost";
    refused(c, "listen_address");
    c = {};
    c.processor.batch.batch_size = 0;
    refused(c, "batch_size");
}

TEST_CASE("relay: gunzip decodes several members, stops at the cap, names what is wrong",
          "[relay]") {
    std::string out, why;
    const std::string two = gzip_of("hello, ") + gzip_of("world");
    CHECK(detail::gunzip(two, 100, out, why) == detail::gunzip_status::ok);
    CHECK(out == "hello, world");
    CHECK(detail::gunzip(gzip_of(std::string(1000, 'a')), 999, out, why) ==
          detail::gunzip_status::too_large);
    CHECK(detail::gunzip(gzip_of(std::string(1000, 'a')), 1000, out, why) ==
          detail::gunzip_status::ok);
    CHECK(out.size() == 1000);
    CHECK(detail::gunzip("plain text", 100, out, why) == detail::gunzip_status::invalid);
    CHECK(!why.empty());
    CHECK(detail::gunzip("", 100, out, why) == detail::gunzip_status::invalid);
    const std::string z = gzip_of("some text that is long enough");
    CHECK(detail::gunzip(z.substr(0, z.size() - 4), 100, out, why) ==
          detail::gunzip_status::invalid);
}

TEST_CASE("relay --durable-ack with a spool: 204 once the batch is on disk, not before",
          "[relay]") {
    namespace fs = std::filesystem;
    const fs::path dir =
        fs::temp_directory_path() / ("evd-relay-durable-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    collector col;
    col.pause_listening();  // nothing can be delivered: only the spool makes a batch durable
    auto cfg = relay_to(col);
    cfg.durable_ack = true;
    cfg.processor.spool.dir = dir.string();
    cfg.processor.batch.batch_size = 3;
    cfg.processor.batch.flush_interval = 60s;
    {
        relay r(cfg);
        // One visitor of a batch of 3 that cannot close for a minute: no answer yet.
        http_client waiting(r.port(), std::nullopt, 300ms);
        CHECK(waiting.post(make_batch(1, 0)).status == 0);
        CHECK(waiting.error() == boost::beast::error::timeout);
        CHECK(r.metrics().spool_writes == 0);
        // Two more fill the batch: it is written (fsynced) before any attempt, and the answer
        // comes although the upstream is down.
        http_client client(r.port());
        CHECK(client.post(make_batch(2, 1)).status == 204);
        const auto m = r.metrics();
        CHECK(m.spool_writes == 1);
        CHECK(m.spool_written_events == 3);
        CHECK(m.delivered == 0);
        // Drained against a down upstream: the three stay in the spool.
        const auto report = r.drain(300ms);
        CHECK(report.spooled == 3);
        CHECK(report.not_delivered == 0);
    }
    // The next relay on the same spool delivers them once the upstream is up.
    col.resume_listening();
    cfg.durable_ack = false;
    relay again(cfg);
    // Wait for this relay's own count: the collector may also have seen the first relay's
    // attempt (sent while it was not listening, read from the socket once it listens again),
    // so its unique count can reach 3 before this relay has delivered what it read back.
    REQUIRE(wait_until([&] { return again.metrics().delivered_recovered == 3; }, 30s));
    CHECK(col.stats().unique_events == 3);
    CHECK(again.drain(5s).metrics.delivered_recovered == 3);
    fs::remove_all(dir);
}

TEST_CASE("relay --durable-ack without a spool: 204 once delivered upstream", "[relay]") {
    collector col;
    col.pause_listening();
    auto cfg = relay_to(col);
    cfg.durable_ack = true;
    cfg.processor.batch.batch_size = 1;
    cfg.processor.health.probe_initial = 50ms;
    cfg.processor.health.probe_max = 100ms;
    relay r(cfg);
    http_client early(r.port(), std::nullopt, 300ms);
    CHECK(early.post(make_batch(1, 0)).status == 0);  // held: the upstream is down
    col.resume_listening();
    http_client late(r.port());
    late.set_timeout(30s);
    CHECK(late.post(make_batch(1, 1)).status == 204);  // both are delivered by now
    CHECK(col.stats().unique_events == 2);
    CHECK(r.metrics().delivered == 2);
}

TEST_CASE("relay --durable-ack: a drain whose deadline drops events answers 503, not 204",
          "[relay]") {
    collector col;
    collector_faults f;
    f.stall = true;
    col.set_faults(f);
    auto cfg = relay_to(col);
    cfg.durable_ack = true;
    cfg.processor.batch.batch_size = 1;
    relay r(cfg);
    std::optional<test::reply> rep;
    std::thread client([&] {
        http_client c(r.port());
        rep = c.post(make_batch(1, 0));
    });
    REQUIRE(wait_until([&] { return r.metrics().in_flight == 1; }));
    const auto report = r.drain(200ms);
    client.join();
    CHECK(report.dropped[static_cast<std::size_t>(drop_reason::close_deadline)] == 1);
    REQUIRE(rep);
    CHECK(rep->status == 503);
    CHECK(r.stats().durable_lost == 1);
}

TEST_CASE("relay: mutated requests get an answer or a close, never a crash", "[relay]") {
    // Bytes flipped, cut or repeated in valid requests (plain and gzip), from a fixed seed:
    // whatever each gets, the relay keeps serving, and what it accepted is delivered.
    collector col;
    auto cfg = relay_to(col);
    cfg.read_timeout = 50ms;  // a request cut short waits for this
    cfg.processor.batch.batch_size = 10;
    relay r(cfg);
    std::uint64_t state = 0x9e3779b97f4a7c15ull;
    const auto next = [&] {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        return state;
    };
    const std::string json_ct = "Content-Type: application/json\r\n";
    const std::vector<std::string> seeds = {
        raw_post(make_batch(2, 0), json_ct),
        raw_post(gzip_of(make_batch(2, 0)), json_ct + "Content-Encoding: gzip\r\n"),
        "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n",
    };
    unsigned answered = 0, closed = 0;
    for (int i = 0; i < 150; ++i) {
        std::string req = seeds[next() % seeds.size()];
        const int edits = 1 + static_cast<int>(next() % 4);
        for (int e = 0; e < edits && !req.empty(); ++e) {
            const std::size_t at = next() % req.size();
            switch (next() % 4) {
                case 0:
                    req[at] = static_cast<char>(next() & 0xff);
                    break;
                case 1:
                    req.resize(at);
                    break;
                case 2:
                    req.insert(at, req.substr(at, 1 + next() % 16));
                    break;
                default:
                    req.erase(at, 1 + next() % 8);
                    break;
            }
        }
        http_client client(r.port(), std::nullopt, 2s);
        client.send_raw(req);
        const auto rep = client.read();
        (rep.status != 0 ? answered : closed) += 1;
    }
    INFO("answered " << answered << ", closed or timed out " << closed);
    CHECK(answered > 0);
    http_client health(r.port());
    CHECK(health.request(http::verb::get, "/healthz").status == 200);
    const auto accepted = r.stats().accepted_events;
    const auto report = r.drain(5s);
    CHECK(report.metrics.balanced());
    CHECK(report.delivered == accepted);
    CHECK(col.stats().unique_events + col.stats().duplicates == accepted);
}
