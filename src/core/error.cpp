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
            case error::invalid_config:
                return "invalid configuration: a field is out of range (the message names it)";
            case error::invalid_url:
                return "invalid endpoint URL: expected http://host[:port]/path or "
                       "https://host[:port]/path with a port in 1-65535";
            case error::closed:
                return "the processor is closed: it accepts no more events or flushes";
            case error::backlog_full:
                return "the backlog of unsent batches is full: the endpoint is too slow or down "
                       "(raise backlog_max_bytes or http.max_connections)";
            case error::resolve_failed:
                return "the endpoint host name could not be resolved: check the URL and DNS";
            case error::connect_failed:
                return "could not connect to the endpoint: is it up and reachable?";
            case error::connect_timeout:
                return "connecting to the endpoint timed out (resolve, TCP connect and TLS "
                       "handshake share http.connect_timeout)";
            case error::request_timeout:
                return "the request to the endpoint timed out (http.request_timeout)";
            case error::connection_lost:
                return "the connection was lost during the request";
            case error::response_too_large:
                return "the response exceeded http.max_response_bytes";
            case error::bad_response:
                return "the response was not valid HTTP";
            case error::http_status:
                return "the endpoint answered with a non-2xx status";
            case error::tls_handshake_failed:
                return "the TLS handshake failed: does the endpoint speak TLS 1.2 or later?";
            case error::tls_verify_failed:
                return "the server certificate or host name failed verification: give the CA "
                       "with tls.ca_file or check the host name";
            case error::close_deadline:
                return "the close deadline passed before delivery (a longer deadline delivers "
                       "more)";
            case error::dispatcher_failed:
                return "the event dispatcher reported a failure";
            case error::unknown_event_key:
                return "the event key is not in the datafile";
            case error::invalid_datafile:
                return "the datafile is malformed or unsupported";
            case error::invalid_input:
                return "the input is malformed (the message names the field)";
            case error::expired:
                return "the batch was not delivered within health.max_age of its closing";
            case error::spool_full:
                return "the disk spool is full (spool.max_bytes): deliver or drain it "
                       "(evdispatch spool drain), or raise spool.max_bytes";
            case error::spool_write_failed:
                return "the disk refused a spool write (full disk or I/O error): free space in "
                       "spool.dir; events stay in memory meanwhile";
            case error::spool_corrupt:
                return "a spooled record failed its checksum and was skipped";
            case error::spool_version:
                return "the spool directory was written by a newer evdispatch (format version): "
                       "left untouched; drain it with that version";
            case error::dispatcher_rejected:
                return "the dispatcher's destination refused the batch for good (not retried; "
                       "the message gives the reason)";
        }
        return "unknown evdispatch error";
    }
};

}  // namespace

const boost::system::error_category& error_category() noexcept {
    static const category c;
    return c;
}

drop_reason classify_failure(const boost::system::error_code& ec) noexcept {
    if (ec.category() == error_category()) {
        switch (static_cast<error>(ec.value())) {
            case error::resolve_failed:
            case error::connect_failed:
                return drop_reason::connect_failed;
            case error::connect_timeout:
            case error::request_timeout:
                return drop_reason::timeout;
            case error::connection_lost:
            case error::response_too_large:
            case error::bad_response:
                return drop_reason::network_error;
            case error::http_status:
                return drop_reason::server_error;
            case error::tls_handshake_failed:
                return drop_reason::tls_failed;
            case error::tls_verify_failed:
                return drop_reason::tls_verify_failed;
            case error::close_deadline:
                return drop_reason::close_deadline;
            case error::backlog_full:
                return drop_reason::backlog_full;
            case error::expired:
                return drop_reason::expired;
            case error::spool_full:
                return drop_reason::spool_full;
            case error::spool_corrupt:
                return drop_reason::spool_corrupt;
            default:
                return drop_reason::dispatcher_failed;
        }
    }
    if (ec == boost::beast::error::timeout)
        return drop_reason::timeout;
    if (ec == boost::asio::error::connection_refused || ec == boost::asio::error::host_not_found ||
        ec == boost::asio::error::host_unreachable || ec == boost::asio::error::network_unreachable)
        return drop_reason::connect_failed;
    if (ec.category() == boost::asio::error::get_ssl_category() ||
        ec.category() == boost::asio::ssl::error::get_stream_category())
        return drop_reason::tls_failed;
    return drop_reason::dispatcher_failed;
}

}  // namespace evdispatch
