// kafka_event_dispatcher: one librdkafka producer; one Kafka message per batch.
//
// Ownership of a batch in flight: async_dispatch makes a `pending` (the log_event, whose body
// librdkafka reads without copying, and the handler), lists it in `outstanding` and hands its
// address to librdkafka as the message's opaque. Whoever takes it out of `outstanding` under
// the mutex completes it, exactly once: the delivery report (on the polling thread, or on the
// destructor's thread while it flushes), a produce() that refused it, or the destructor after
// rd_kafka_destroy (no report can come any more). Handlers run with no lock held.

#include <evdispatch/error.hpp>
#include <evdispatch/kafka.hpp>

#include <boost/system/system_error.hpp>

#include <librdkafka/rdkafka.h>

#include <array>
#include <atomic>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

namespace evdispatch {

using boost::system::error_code;

namespace detail {

namespace {

struct pending {
    std::shared_ptr<const log_event> ev;
    boost::asio::any_completion_handler<dispatch_signature> handler;
};

[[noreturn]] void invalid(std::string what) {
    throw boost::system::system_error(make_error_code(error::invalid_config), what);
}

bool valid_topic_name(const std::string& t) {
    if (t.empty() || t.size() > 249 || t == "." || t == "..")
        return false;
    for (const char c : t) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

// Refusals that another attempt of the same message cannot change.
bool permanent(rd_kafka_resp_err_t err) {
    switch (err) {
        case RD_KAFKA_RESP_ERR__FATAL:
        case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
        case RD_KAFKA_RESP_ERR_INVALID_RECORD:
        case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
        case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
        case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
        case RD_KAFKA_RESP_ERR__INVALID_ARG:
            return true;
        default:
            return false;
    }
}

}  // namespace

struct kafka_producer {
    kafka_config cfg;
    rd_kafka_t* rk = nullptr;
    std::mutex mutex;
    std::unordered_set<pending*> outstanding;  // guarded by mutex
    std::atomic<bool> shut_down{false};
    std::atomic<bool> stop_polling{false};
    std::thread poller;

    explicit kafka_producer(kafka_config c) : cfg(std::move(c)) {
        if (cfg.topic.empty())
            invalid("kafka_config::topic is empty: name the topic batches are produced to");
        if (!valid_topic_name(cfg.topic))
            invalid("kafka_config::topic \"" + cfg.topic +
                    "\" is not a valid Kafka topic name (1-249 of a-z A-Z 0-9 . _ -)");
        if (cfg.max_in_flight == 0)
            invalid("kafka_config::max_in_flight is 0: at least 1 batch must be in flight");
        if (cfg.message_timeout.count() <= 0)
            invalid("kafka_config::message_timeout must be positive");
        if (cfg.close_timeout.count() < 0)
            invalid("kafka_config::close_timeout is negative");

        rd_kafka_conf_t* conf = rd_kafka_conf_new();
        char errstr[512];
        auto set = [&](const std::string& name, const std::string& value, bool ours) {
            if (rd_kafka_conf_set(conf, name.c_str(), value.c_str(), errstr, sizeof errstr) !=
                RD_KAFKA_CONF_OK) {
                rd_kafka_conf_destroy(conf);
                invalid((ours ? "kafka_config: " : "kafka_config::properties: \"") + name +
                        (ours ? "" : "\"") + ": " + errstr);
            }
        };
        set("acks", "all", true);
        set("enable.idempotence", "true", true);
        set("message.timeout.ms", std::to_string(cfg.message_timeout.count()), true);
        bool has_brokers = false;
        for (const auto& [name, value] : cfg.properties) {
            set(name, value, false);
            if (name == "bootstrap.servers" || name == "metadata.broker.list" ||
                name == "test.mock.num.brokers")
                has_brokers = has_brokers || !value.empty();
        }
        if (!has_brokers) {
            rd_kafka_conf_destroy(conf);
            invalid(
                "kafka_config::properties: \"bootstrap.servers\" is required (host:port[,...])");
        }
        rd_kafka_conf_set_opaque(conf, this);
        rd_kafka_conf_set_dr_msg_cb(conf, &kafka_producer::on_delivery);
        rd_kafka_conf_set_log_cb(conf, &kafka_producer::on_log);
        rd_kafka_conf_set_error_cb(conf, &kafka_producer::on_error);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
        if (!rk) {
            rd_kafka_conf_destroy(conf);  // not taken over on failure
            invalid(std::string("kafka_config::properties: librdkafka refused them: ") + errstr);
        }
        try {
            poller = std::thread([this] { poll_loop(); });
        } catch (...) {
            rd_kafka_destroy(rk);
            throw;
        }
    }

    ~kafka_producer() {
        stop_polling.store(true);
        poller.join();
        // Delivery reports are served on this thread from here on: by flush(), then by poll().
        if (!shut_down.load() && cfg.close_timeout.count() > 0)
            rd_kafka_flush(rk, static_cast<int>(cfg.close_timeout.count()));
        shut_down.store(true);
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        // The purged messages' reports; bounded (a purge needs no broker).
        const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (has_outstanding() && std::chrono::steady_clock::now() < until)
            rd_kafka_poll(rk, 10);
        rd_kafka_destroy(rk);
        // No report can come now: whatever is left is completed here.
        std::vector<pending*> rest;
        {
            std::lock_guard lock(mutex);
            rest.assign(outstanding.begin(), outstanding.end());
            outstanding.clear();
        }
        for (auto* p : rest)
            complete(std::unique_ptr<pending>(p), make_error_code(error::close_deadline),
                     "dispatcher destroyed before the delivery report", false);
    }

    bool has_outstanding() {
        std::lock_guard lock(mutex);
        return !outstanding.empty();
    }

    // The polling thread: serves delivery reports (and the log and error callbacks).
    void poll_loop() noexcept {
        while (!stop_polling.load(std::memory_order_relaxed)) {
            try {
                rd_kafka_poll(rk, 100);
            } catch (...) {
                // Nothing here throws (handlers are guarded); keep serving reports regardless.
            }
        }
    }

    std::unique_ptr<pending> take(pending* p) {
        std::lock_guard lock(mutex);
        if (outstanding.erase(p) == 0)
            return nullptr;
        return std::unique_ptr<pending>(p);
    }

    static void complete(std::unique_ptr<pending> p, error_code ec, std::string message,
                         bool on_wire) noexcept {
        try {
            dispatch_result r;
            r.message = std::move(message);
            r.bytes_on_wire = on_wire;
            if (!ec)
                r.bytes_sent = p->ev->body.size();
            auto h = std::move(p->handler);
            p.reset();  // the body may go before the processor hears about it
            std::move(h)(ec, std::move(r));
        } catch (...) {
            // A handler that throws breaks its contract; it must not end the polling thread.
        }
    }

    // librdkafka's error code -> evdispatch's (and whether the processor retries it).
    error_code classify(rd_kafka_resp_err_t err, std::string& message) const {
        const std::string name = rd_kafka_err2name(err);
        switch (err) {
            case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
            case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
                message = "kafka " + name + ": purged at shutdown before its delivery report";
                return make_error_code(error::close_deadline);
            case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
            case RD_KAFKA_RESP_ERR__TIMED_OUT:
            case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
            case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
                message =
                    "kafka " + name + " (not delivered within message.timeout.ms): " + message;
                return make_error_code(error::request_timeout);
            case RD_KAFKA_RESP_ERR__TRANSPORT:
            case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
            case RD_KAFKA_RESP_ERR__RESOLVE:
                message = "kafka " + name + ": " + message;
                return make_error_code(error::connect_failed);
            case RD_KAFKA_RESP_ERR__QUEUE_FULL:
                message = "kafka " + name +
                          ": librdkafka's local queue is full (queue.buffering.max.messages, "
                          "queue.buffering.max.kbytes)";
                return make_error_code(error::dispatcher_failed);
            default:
                break;
        }
        char fatal[256] = {0};
        if (err == RD_KAFKA_RESP_ERR__FATAL || rd_kafka_fatal_error(rk, fatal, sizeof fatal)) {
            message = "kafka fatal producer error: " + std::string(fatal) + " (" + message + ")";
            return make_error_code(error::dispatcher_rejected);
        }
        message = "kafka " + name + ": " + message;
        return make_error_code(permanent(err) ? error::dispatcher_rejected
                                              : error::dispatcher_failed);
    }

    static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* msg, void* opaque) noexcept {
        auto* self = static_cast<kafka_producer*>(opaque);
        auto p = self->take(static_cast<pending*>(msg->_private));
        if (!p)
            return;
        if (!msg->err) {
            complete(std::move(p), {}, {}, true);
            return;
        }
        try {
            std::string message = rd_kafka_message_errstr(msg);
            const auto ec = self->classify(msg->err, message);
            const bool on_wire = rd_kafka_message_status(msg) != RD_KAFKA_MSG_STATUS_NOT_PERSISTED;
            complete(std::move(p), ec, std::move(message), on_wire);
        } catch (...) {  // out of memory building the message
            complete(std::move(p), make_error_code(error::dispatcher_failed), {}, false);
        }
    }

    static void on_log(const rd_kafka_t* rk, int level, const char* fac, const char* buf) noexcept {
        auto* self = static_cast<kafka_producer*>(rd_kafka_opaque(rk));
        if (!self || !self->cfg.logger)
            return;
        try {
            self->cfg.logger(level, fac ? fac : "", buf ? buf : "");
        } catch (...) {
        }
    }

    static void on_error(rd_kafka_t* rk, int err, const char* reason, void* opaque) noexcept {
        auto* self = static_cast<kafka_producer*>(opaque);
        if (!self->cfg.logger)
            return;
        try {
            self->cfg.logger(3, rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)),
                             reason ? reason : "");
        } catch (...) {
        }
        (void)rk;
    }

    void dispatch(std::shared_ptr<const log_event> ev,
                  boost::asio::any_completion_handler<dispatch_signature> handler) {
        auto owned = std::make_unique<pending>(pending{std::move(ev), std::move(handler)});
        if (shut_down.load()) {
            complete(std::move(owned), make_error_code(error::close_deadline),
                     "dispatcher shut down", false);
            return;
        }
        const log_event& e = *owned->ev;
        std::string key;
        if (cfg.key == kafka_key::project && e.context)
            key = e.context->account_id + ":" + e.context->project_id;
        else if (cfg.key == kafka_key::fixed)
            key = cfg.fixed_key;
        const std::string count = std::to_string(e.event_count);
        const char* key_data = cfg.key == kafka_key::none ? nullptr : key.data();
        const std::size_t key_size = cfg.key == kafka_key::none ? 0 : key.size();
        pending* p = owned.release();
        {
            std::lock_guard lock(mutex);
            outstanding.insert(p);
        }
        // No RD_KAFKA_MSG_F_COPY: librdkafka reads the body in place; `p` keeps it alive until
        // the report. The key and the headers are copied. (rd_kafka_produceva rather than the
        // RD_KAFKA_V_* macros, which are GNU statement expressions.)
        std::array<rd_kafka_vu_t, 7> vu{};
        std::size_t n = 0;
        vu[n].vtype = RD_KAFKA_VTYPE_TOPIC;
        vu[n++].u.cstr = cfg.topic.c_str();
        vu[n].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
        vu[n++].u.i = 0;
        vu[n].vtype = RD_KAFKA_VTYPE_VALUE;
        vu[n].u.mem.ptr = const_cast<char*>(e.body.data());
        vu[n++].u.mem.size = e.body.size();
        vu[n].vtype = RD_KAFKA_VTYPE_KEY;
        vu[n].u.mem.ptr = const_cast<char*>(key_data);
        vu[n++].u.mem.size = key_size;
        vu[n].vtype = RD_KAFKA_VTYPE_HEADER;
        vu[n].u.header.name = "content-type";
        vu[n].u.header.val = "application/json";
        vu[n++].u.header.size = 16;
        vu[n].vtype = RD_KAFKA_VTYPE_HEADER;
        vu[n].u.header.name = "event-count";
        vu[n].u.header.val = count.data();
        vu[n++].u.header.size = static_cast<ssize_t>(count.size());
        vu[n].vtype = RD_KAFKA_VTYPE_OPAQUE;
        vu[n++].u.ptr = p;
        rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
        if (rd_kafka_error_t* failed = rd_kafka_produceva(rk, vu.data(), n)) {
            err = rd_kafka_error_code(failed);
            rd_kafka_error_destroy(failed);
        }
        if (err) {
            if (auto back = take(p)) {
                std::string message = rd_kafka_err2str(err);
                const auto ec = classify(err, message);
                complete(std::move(back), ec, std::move(message), false);
            }
        }
    }

    void shutdown() noexcept {
        shut_down.store(true);
        // Each purged message gets its report (close_deadline) on the polling thread.
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    }
};

}  // namespace detail

kafka_event_dispatcher::kafka_event_dispatcher(kafka_config cfg)
    : impl_(std::make_unique<detail::kafka_producer>(std::move(cfg))) {}

kafka_event_dispatcher::~kafka_event_dispatcher() = default;

void kafka_event_dispatcher::async_dispatch(
    std::shared_ptr<const log_event> ev,
    boost::asio::any_completion_handler<dispatch_signature> handler) {
    impl_->dispatch(std::move(ev), std::move(handler));
}

std::size_t kafka_event_dispatcher::max_in_flight() const noexcept {
    return impl_->cfg.max_in_flight;
}

void kafka_event_dispatcher::shutdown() noexcept {
    impl_->shutdown();
}

const std::string& kafka_event_dispatcher::topic() const noexcept {
    return impl_->cfg.topic;
}

}  // namespace evdispatch
