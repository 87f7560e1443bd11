// The error vocabulary: drop reasons and their names agree, every error has a message that
// says what to do, failures map to the documented drop reasons.

#include <evdispatch/error.hpp>

#include <boost/asio/error.hpp>

#include <catch2/catch.hpp>

#include <set>
#include <string>

using namespace evdispatch;

TEST_CASE("every drop reason has one distinct name, in enum order", "[unit][error]") {
    std::set<std::string_view> names;
    for (std::size_t i = 0; i < all_drop_reasons.size(); ++i) {
        CHECK(static_cast<std::size_t>(all_drop_reasons[i]) == i);
        const auto name = to_string(all_drop_reasons[i]);
        CHECK_FALSE(name.empty());
        CHECK(name.find(' ') == std::string_view::npos);
        names.insert(name);
    }
    CHECK(names.size() == drop_reason_count);
    CHECK(to_string(static_cast<drop_reason>(drop_reason_count)).empty());
}

TEST_CASE("every error code has its own message", "[unit][error]") {
    std::set<std::string> messages;
    const auto& cat = error_category();
    CHECK(std::string(cat.name()) == "evdispatch");
    for (int v = static_cast<int>(error::invalid_config);
         v <= static_cast<int>(error::dispatcher_rejected); ++v) {
        const auto m = cat.message(v);
        CHECK(m != "unknown evdispatch error");
        messages.insert(m);
    }
    CHECK(messages.size() == static_cast<std::size_t>(error::dispatcher_rejected) -
                                 static_cast<std::size_t>(error::invalid_config) + 1);
    CHECK(cat.message(0) == "unknown evdispatch error");  // 0 is success, never an evdispatch error
}

TEST_CASE("failures map to drop reasons", "[unit][error]") {
    struct row {
        boost::system::error_code ec;
        drop_reason expected;
    };
    const row r = GENERATE(values<row>({
        {make_error_code(error::resolve_failed), drop_reason::connect_failed},
        {make_error_code(error::connect_failed), drop_reason::connect_failed},
        {make_error_code(error::connect_timeout), drop_reason::timeout},
        {make_error_code(error::request_timeout), drop_reason::timeout},
        {make_error_code(error::connection_lost), drop_reason::network_error},
        {make_error_code(error::response_too_large), drop_reason::network_error},
        {make_error_code(error::bad_response), drop_reason::network_error},
        {make_error_code(error::http_status), drop_reason::server_error},
        {make_error_code(error::tls_handshake_failed), drop_reason::tls_failed},
        {make_error_code(error::tls_verify_failed), drop_reason::tls_verify_failed},
        {make_error_code(error::close_deadline), drop_reason::close_deadline},
        {make_error_code(error::backlog_full), drop_reason::backlog_full},
        {make_error_code(error::expired), drop_reason::expired},
        {make_error_code(error::dispatcher_failed), drop_reason::dispatcher_failed},
        {boost::asio::error::connection_refused, drop_reason::connect_failed},
        {boost::asio::error::host_unreachable, drop_reason::connect_failed},
        {boost::asio::error::operation_aborted, drop_reason::dispatcher_failed},
    }));
    CHECK(classify_failure(r.ec) == r.expected);
}
