// parse_endpoint_url: the URLs the HTTP dispatcher accepts, and the message for those it refuses.

#include <evdispatch/endpoint_url.hpp>

#include <evdispatch/error.hpp>
#include <evdispatch/http_event_dispatcher.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <string>

using evdispatch::parse_endpoint_url;

TEST_CASE("parse_endpoint_url accepts http and https URLs", "[unit][url]") {
    struct row {
        const char* url;
        bool tls;
        const char* host;
        bool host_is_ip;
        const char* port;
        std::uint16_t port_number;
        const char* target;
        const char* host_header;
    };
    const auto r = GENERATE(values<row>({
        {"http://127.0.0.1:8080/v1/events", false, "127.0.0.1", true, "8080", 8080, "/v1/events",
         "127.0.0.1:8080"},
        {"https://logx.optimizely.com/v1/events", true, "logx.optimizely.com", false, "443", 443,
         "/v1/events", "logx.optimizely.com"},
        {"http://example.com", false, "example.com", false, "80", 80, "/", "example.com"},
        {"HTTP://Example.com/a?b=1&c", false, "Example.com", false, "80", 80, "/a?b=1&c",
         "Example.com"},
        {"http://[::1]:8443/x", false, "::1", true, "8443", 8443, "/x", "[::1]:8443"},
        {"https://[::1]/x", true, "::1", true, "443", 443, "/x", "[::1]"},
        {"http://h:1/", false, "h", false, "1", 1, "/", "h:1"},
        {"http://h:65535/", false, "h", false, "65535", 65535, "/", "h:65535"},
        {"http://h:00080/", false, "h", false, "80", 80, "/", "h:00080"},
        {"https://localhost:443/v1/events", true, "localhost", false, "443", 443, "/v1/events",
         "localhost:443"},
    }));
    CAPTURE(r.url);
    const auto p = parse_endpoint_url(r.url);
    CHECK(p.tls == r.tls);
    CHECK(p.host == r.host);
    CHECK(p.host_is_ip == r.host_is_ip);
    CHECK(p.port == r.port);
    CHECK(p.port_number == r.port_number);
    CHECK(p.target == r.target);
    CHECK(p.host_header == r.host_header);
}

TEST_CASE("parse_endpoint_url refuses bad URLs with invalid_url, naming the URL and the problem",
          "[unit][url]") {
    struct row {
        const char* url;
        const char* why;  // part of the message
    };
    const auto r = GENERATE(values<row>({
        {"not a url", "not an absolute URL"},
        {"", "not an absolute URL"},
        {"ftp://x/y", "scheme must be http or https"},
        {"mailto:someone@example.com", "scheme must be http or https"},
        {"http:///v1/events", "no host"},
        {"http://[::1/v1", "unclosed '['"},
        {"http://[v7.abc]/x", "unsupported IP literal"},
        {"http://user:secret@example.com/x", "user information is not supported"},
        {"http://user@example.com/x", "user information is not supported"},
        {"http://127.0.0.1:99999/v1/events", "port 99999 is out of range (1-65535)"},
        {"http://127.0.0.1:65536/", "port 65536 is out of range"},
        {"http://127.0.0.1:0/x", "port 0 is out of range"},
        {"http://127.0.0.1:99999999999999999999/x", "is out of range"},
        {"http://127.0.0.1:/x", "empty port"},
        {"http://[::1]:/x", "empty port"},
        {"http://example.com:", "empty port"},
        {"http://127.0.0.1:abc/x", "port \"abc\" is not a number"},
        {"http://h:8a/x", "port \"8a\" is not a number"},
        {"http://h:-1/x", "port \"-1\" is not a number"},
        {"http://h:1.5/", "port \"1.5\" is not a number"},
        {"http://[::1]:x1/", "port \"x1\" is not a number"},
        {"http://[::1]x/", "unexpected text after the host"},
    }));
    CAPTURE(r.url);
    try {
        parse_endpoint_url(r.url);
        FAIL("accepted " << r.url);
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == evdispatch::error::invalid_url);
        CHECK_THAT(e.what(), Catch::Contains("\"" + std::string(r.url) + "\""));
        CHECK_THAT(e.what(), Catch::Contains(r.why));
    }
}

TEST_CASE("http_event_dispatcher refuses a bad port at construction", "[unit][url]") {
    const auto url = GENERATE(as<std::string>{}, "http://127.0.0.1:99999/v1/events",
                              "http://127.0.0.1:/v1/events", "https://localhost:https/v1/events");
    CAPTURE(url);
    boost::asio::io_context io;
    try {
        evdispatch::http_event_dispatcher d(io.get_executor(), url);
        FAIL("accepted " << url);
    } catch (const boost::system::system_error& e) {
        CHECK(e.code() == evdispatch::error::invalid_url);
        CHECK_THAT(e.what(), Catch::Contains(url) && Catch::Contains("port"));
    }
}
