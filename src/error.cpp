#include <evdispatch/error.hpp>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>

#include <string>

namespace evdispatch {

namespace {

class category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "evdispatch"; }
    std::string message(int ev) const override {
        switch (static_cast<error>(ev)) {
            case error::ok: return "success";
            case error::invalid_config: return "invalid configuration: a field is out of range";
            case error::invalid_url:
                return "invalid endpoint URL: expected http://host[:port]/path or https://...";
            case error::queue_full:
                return "the hand-off queue is full: raise queue_capacity or send less";
            case error::closed: return "the processor is closed and accepts no more events";
            case error::event_too_large:
                return "the event alone is larger than batch.max_batch_bytes";
            case error::backlog_full:
                return "the backlog of unsent batches is full: the endpoint is too slow or down";
            case error::resolve_failed: return "the endpoint host name could not be resolved";
            case error::connect_failed: return "could not connect to the endpoint";
            case error::connect_timeout: return "connecting to the endpoint timed out";
            case error::request_timeout: return "the request to the endpoint timed out";
            case error::connection_lost: return "the connection was lost during the request";
            case error::response_too_large: return "the response exceeded the size cap";
            case error::bad_response: return "the response was not valid HTTP";
            case error::http_status: return "the endpoint answered with a non-2xx status";
            case error::tls_handshake_failed: return "the TLS handshake failed";
            case error::tls_verify_failed:
                return "the server certificate or host name failed verification";
            case error::close_deadline: return "the close deadline passed before delivery";
            case error::dispatcher_failed: return "the event dispatcher reported a failure";
            case error::unknown_event_key: return "the event key is not in the datafile";
            case error::invalid_datafile: return "the datafile is malformed or unsupported";
            case error::invalid_input: return "the input is malformed";
        }
        return "unknown evdispatch error";
    }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
    static const category c;
    return c;
}

std::string_view to_string(drop_reason r) noexcept {
    switch (r) {
        case drop_reason::queue_full: return "queue_full";
        case drop_reason::closed: return "closed";
        case drop_reason::too_large: return "too_large";
        case drop_reason::backlog_full: return "backlog_full";
        case drop_reason::connect_failed: return "connect_failed";
        case drop_reason::timeout: return "timeout";
        case drop_reason::network_error: return "network_error";
        case drop_reason::rejected_4xx: return "rejected_4xx";
        case drop_reason::server_error: return "server_error";
        case drop_reason::tls_failed: return "tls_failed";
        case drop_reason::tls_verify_failed: return "tls_verify_failed";
        case drop_reason::close_deadline: return "close_deadline";
        case drop_reason::dispatcher_failed: return "dispatcher_failed";
    }
    return "unknown";
}

drop_reason classify_failure(const boost::system::error_code& ec) noexcept {
    if (ec.category() == error_category()) {
        switch (static_cast<error>(ec.value())) {
            case error::resolve_failed:
            case error::connect_failed: return drop_reason::connect_failed;
            case error::connect_timeout:
            case error::request_timeout: return drop_reason::timeout;
            case error::connection_lost:
            case error::response_too_large:
            case error::bad_response: return drop_reason::network_error;
            case error::http_status: return drop_reason::server_error;
            case error::tls_handshake_failed: return drop_reason::tls_failed;
            case error::tls_verify_failed: return drop_reason::tls_verify_failed;
            case error::close_deadline: return drop_reason::close_deadline;
            case error::backlog_full: return drop_reason::backlog_full;
            case error::event_too_large: return drop_reason::too_large;
            default: return drop_reason::dispatcher_failed;
        }
    }
    if (ec == boost::beast::error::timeout) return drop_reason::timeout;
    if (ec == boost::asio::error::connection_refused || ec == boost::asio::error::host_not_found ||
        ec == boost::asio::error::host_unreachable || ec == boost::asio::error::network_unreachable)
        return drop_reason::connect_failed;
    if (ec.category() == boost::asio::error::get_ssl_category() ||
        ec.category() == boost::asio::ssl::error::get_stream_category())
        return drop_reason::tls_failed;
    return drop_reason::dispatcher_failed;
}

}  // namespace evdispatch
