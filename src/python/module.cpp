// evdispatch._evdispatch: the engine behind the Python package's EventDispatcher
// (src/python/evdispatch/__init__.py, docs/python.md).
//
// Threads and the GIL: dispatch_event reads the LogEvent and writes each visitor's JSON while
// holding the GIL (the objects it reads may change under it otherwise), then releases it to
// hand the events over. No C++ thread ever calls into Python: the processor's own thread only
// sends, and metrics are polled.
//
// Fork: a pthread_atfork child handler counts forks (it runs for every fork(), uWSGI's
// included, which skips Python's os.register_at_fork hooks unless configured). Each call
// compares the engine's count with it, an atomic load instead of a getpid() system call; in a
// child, the inherited engine is abandoned (never destroyed: its mutexes may be held by threads
// that do not exist in the child, and its sockets are the parent's) and a fresh one starts.

#include <evdispatch/config.hpp>
#include <evdispatch/endpoint_url.hpp>
#include <evdispatch/error.hpp>
#include <evdispatch/event.hpp>
#include <evdispatch/metrics.hpp>
#include <evdispatch/processor.hpp>
#include <evdispatch/version.hpp>

#include "core/json_writer.hpp"

#include <boost/system/system_error.hpp>

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <pthread.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace py = pybind11;

namespace evdispatch::python {

namespace {

using namespace std::chrono;

std::atomic<std::uint64_t> fork_count{0};

extern "C" void count_fork_in_child() {
    fork_count.fetch_add(1, std::memory_order_relaxed);
}

// ---- reading Python values ------------------------------------------------------------------

// Nesting deeper than this is refused (json.dumps would recurse until RecursionError, or
// report a circular reference).
constexpr int max_depth = 100;

// The path of the value being written, kept as borrowed objects and indexes; made into text
// only for an error message.
class value_path {
public:
    void push_key(PyObject* key) { parts_.push_back({key, 0}); }
    void push_index(Py_ssize_t i) { parts_.push_back({nullptr, i}); }
    void pop() { parts_.pop_back(); }
    std::string text() const {
        std::string out = "params";
        for (const auto& p : parts_) {
            if (p.key) {
                out += '.';
                out += py::str(py::handle(p.key)).cast<std::string>();
            } else {
                out += '[' + std::to_string(p.index) + ']';
            }
        }
        return out;
    }

private:
    struct part {
        PyObject* key;
        Py_ssize_t index;
    };
    std::vector<part> parts_;
};

[[noreturn]] void type_error(const value_path& path, PyObject* value, const char* what) {
    throw py::type_error(path.text() + ": " + what + " of type '" + Py_TYPE(value)->tp_name +
                         "' is not JSON serializable");
}

// The UTF-8 text of a str. A lone surrogate (which UTF-8 cannot hold) becomes U+FFFD, as
// invalid UTF-8 does everywhere else in evdispatch.
void append_str(std::string& out, PyObject* s) {
    Py_ssize_t n = 0;
    if (const char* p = PyUnicode_AsUTF8AndSize(s, &n)) {
        detail::append_json_string(out, std::string_view(p, static_cast<std::size_t>(n)));
        return;
    }
    PyErr_Clear();
    const py::object bytes =
        py::reinterpret_steal<py::object>(PyUnicode_AsEncodedString(s, "utf-8", "surrogatepass"));
    if (!bytes)
        throw py::error_already_set();
    char* p = nullptr;
    PyBytes_AsStringAndSize(bytes.ptr(), &p, &n);
    std::string text(p, static_cast<std::size_t>(n));
    // Surrogates are ED A0..BF xx in this encoding, and nothing else starts so.
    for (std::size_t i = 0; i + 2 < text.size(); ++i)
        if (static_cast<unsigned char>(text[i]) == 0xED &&
            (static_cast<unsigned char>(text[i + 1]) & 0xE0) == 0xA0)
            text.replace(i, 3, "\xEF\xBF\xBD");
    detail::append_json_string(out, text);
}

// An int of any size, as json.dumps writes it.
void append_int(std::string& out, PyObject* v) {
    int overflow = 0;
    const long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow == 0 && !(x == -1 && PyErr_Occurred())) {
        detail::append_json_int(out, x);
        return;
    }
    PyErr_Clear();
    // Beyond 64 bits: its decimal digits (int.__repr__, not a subclass's __str__).
    const py::object digits = py::reinterpret_steal<py::object>(PyLong_Type.tp_repr(v));
    if (!digits)
        throw py::error_already_set();
    out += py::str(digits).cast<std::string>();
}

// A dict key, as json.dumps turns it into a string: str, int, float, bool or None.
void append_key(std::string& out, PyObject* key, const value_path& path) {
    if (PyUnicode_Check(key)) {
        append_str(out, key);
    } else if (key == Py_True || key == Py_False || key == Py_None) {
        out += key == Py_True ? "\"true\"" : key == Py_False ? "\"false\"" : "\"null\"";
    } else if (PyLong_Check(key)) {
        out += '"';
        append_int(out, key);
        out += '"';
    } else if (PyFloat_Check(key)) {
        const py::object text = py::reinterpret_steal<py::object>(PyFloat_Type.tp_repr(key));
        if (!text)
            throw py::error_already_set();
        detail::append_json_string(out, py::str(text).cast<std::string>());
    } else {
        throw py::type_error(path.text() + ": a key of type '" + Py_TYPE(key)->tp_name +
                             "' (keys must be str, int, float, bool or None)");
    }
}

// Writes `v` as JSON, as json.dumps(v) would (values equal; the notation of floats may
// differ), except that NaN and +-Infinity become null and invalid UTF-8 is replaced.
void append_value(std::string& out, PyObject* v, value_path& path, int depth) {
    if (depth > max_depth)
        throw py::value_error(path.text() + ": nested deeper than " + std::to_string(max_depth) +
                              " levels (a circular reference?)");
    if (PyUnicode_Check(v)) {
        append_str(out, v);
    } else if (v == Py_None) {
        out += "null";
    } else if (v == Py_True || v == Py_False) {
        out += v == Py_True ? "true" : "false";
    } else if (PyLong_Check(v)) {
        append_int(out, v);
    } else if (PyFloat_Check(v)) {
        detail::append_json_double(out, PyFloat_AS_DOUBLE(v));  // non-finite: null
    } else if (PyDict_Check(v)) {
        out += '{';
        PyObject* key = nullptr;
        PyObject* item = nullptr;
        Py_ssize_t pos = 0;
        bool first = true;
        while (PyDict_Next(v, &pos, &key, &item)) {
            if (!first)
                out += ',';
            first = false;
            append_key(out, key, path);
            out += ':';
            path.push_key(key);
            append_value(out, item, path, depth + 1);
            path.pop();
        }
        out += '}';
    } else if (PyList_Check(v) || PyTuple_Check(v)) {
        const bool list = PyList_Check(v);
        out += '[';
        // A list may change size while its items run Python code (a str subclass): re-read it.
        for (Py_ssize_t i = 0; i < (list ? PyList_GET_SIZE(v) : PyTuple_GET_SIZE(v)); ++i) {
            if (i)
                out += ',';
            path.push_index(i);
            append_value(out, list ? PyList_GET_ITEM(v, i) : PyTuple_GET_ITEM(v, i), path,
                         depth + 1);
            path.pop();
        }
        out += ']';
    } else {
        type_error(path, v, "a value");
    }
}

// ---- the envelope ---------------------------------------------------------------------------

PyObject* item(PyObject* dict, const char* key) {
    return PyDict_GetItemString(dict, key);  // borrowed; null when absent (no error set)
}

std::string required_string(PyObject* params, const char* key) {
    PyObject* v = item(params, key);
    if (!v)
        throw py::value_error(std::string("params: no '") + key + "' (not an event batch)");
    if (!PyUnicode_Check(v))
        throw py::type_error(std::string("params.") + key + ": must be a str, not '" +
                             Py_TYPE(v)->tp_name + "'");
    Py_ssize_t n = 0;
    const char* p = PyUnicode_AsUTF8AndSize(v, &n);
    if (!p) {
        PyErr_Clear();
        throw py::value_error(std::string("params.") + key + ": not encodable as UTF-8");
    }
    return std::string(p, static_cast<std::size_t>(n));
}

std::optional<bool> optional_bool(PyObject* params, const char* key) {
    PyObject* v = item(params, key);
    if (!v)
        return std::nullopt;
    if (!PyBool_Check(v))
        throw py::type_error(std::string("params.") + key + ": must be a bool, not '" +
                             Py_TYPE(v)->tp_name + "'");
    return v == Py_True;
}

bool known_key(std::string_view k) {
    for (std::string_view known :
         {"account_id", "project_id", "revision", "client_name", "client_version", "anonymize_ip",
          "enrich_decisions", "visitors"})
        if (k == known)
            return true;
    return false;
}

bool is_http_url(std::string_view u) {
    auto starts = [&](std::string_view p) {
        if (u.size() < p.size())
            return false;
        for (std::size_t i = 0; i < p.size(); ++i)
            if (std::tolower(static_cast<unsigned char>(u[i])) != p[i])
                return false;
        return true;
    };
    return starts("http://") || starts("https://");
}

std::string attribute_string(PyObject* obj, const char* name, bool optional_none) {
    const py::object v = py::reinterpret_steal<py::object>(PyObject_GetAttrString(obj, name));
    if (!v) {
        PyErr_Clear();
        throw py::type_error(std::string("dispatch_event: the log event has no '") + name +
                             "' attribute (expected an optimizely LogEvent)");
    }
    if (optional_none && v.is_none())
        return {};
    if (!PyUnicode_Check(v.ptr()))
        throw py::type_error(std::string("dispatch_event: log_event.") + name +
                             " must be a str, not '" + Py_TYPE(v.ptr())->tp_name + "'");
    return v.cast<std::string>();
}

// ---- the dispatcher -------------------------------------------------------------------------

// The counts that are not 0, by reason name.
py::dict by_reason(const std::array<std::uint64_t, drop_reason_count>& counts) {
    py::dict out;
    for (std::size_t i = 0; i < drop_reason_count; ++i)
        if (counts[i])
            out[py::str(std::string(to_string(static_cast<drop_reason>(i))))] = counts[i];
    return out;
}

py::dict to_dict(const metrics_snapshot& m) {
    py::dict d;
    d["accepted"] = m.accepted;
    d["delivered"] = m.delivered;
    d["dropped"] = by_reason(m.dropped);
    d["dropped_total"] = m.dropped_total();
    d["pending"] = m.pending;
    d["submitted"] = m.submitted();
    d["queue_depth"] = m.queue_depth;
    d["open_batch_events"] = m.open_batch_events;
    d["backlog_events"] = m.backlog_events;
    d["backlog_bytes"] = m.backlog_bytes;
    d["in_flight_events"] = m.in_flight_events;
    d["in_flight"] = m.in_flight;
    d["retry_wait_events"] = m.retry_wait_events;
    d["held_events"] = m.held_events;
    d["held_bytes"] = m.held_bytes;
    d["state"] = std::string(to_string(m.state));
    d["endpoints_down"] = m.endpoints_down;
    d["outages"] = m.outages;
    d["outage_ms"] = m.outage_ms;
    d["probes"] = m.probes;
    d["batches_sent"] = m.batches_sent;
    d["batches_delivered"] = m.batches_delivered;
    d["batches_failed"] = m.batches_failed;
    d["requests"] = m.requests;
    d["retries"] = m.retries;
    d["bytes_sent"] = m.bytes_sent;
    d["connections_opened"] = m.connections_opened;
    d["spooled_events"] = m.spooled_events;
    d["spool_writes"] = m.spool_writes;
    d["spool_bytes"] = m.spool_bytes;
    d["left_in_spool"] = m.left_in_spool;
    d["recovered"] = m.recovered;
    d["delivered_recovered"] = m.delivered_recovered;
    d["pending_recovered"] = m.pending_recovered;
    d["balanced"] = m.balanced();
    return d;
}

py::dict to_dict(const close_report& r) {
    py::dict d;
    d["delivered"] = r.delivered;
    d["not_delivered"] = r.not_delivered;
    d["dropped"] = by_reason(r.dropped);
    d["deadline_passed"] = r.deadline_passed;
    d["spooled"] = r.spooled;
    d["metrics"] = to_dict(r.metrics);
    return d;
}

milliseconds seconds_arg(double s, const char* name, double at_least) {
    if (!std::isfinite(s) || s < at_least || s > 7 * 24 * 3600.0)
        throw py::value_error(std::string(name) + ": " + std::to_string(s) +
                              " is not a number of seconds between " + std::to_string(at_least) +
                              " and a week");
    return milliseconds(static_cast<std::int64_t>(std::llround(s * 1000.0)));
}

class dispatcher {
public:
    explicit dispatcher(processor_config cfg, std::string endpoint)
        : cfg_(std::move(cfg)), endpoint_(std::move(endpoint)) {
        if (!endpoint_.empty())
            cfg_.endpoint = endpoint_;
        start();  // configuration errors surface here, not at the first event
    }

    ~dispatcher() {
        if (engine_ && forks_ != fork_count.load(std::memory_order_relaxed))
            abandon();
        if (engine_) {
            // Its destructor closes with destructor_close_timeout; it never takes the GIL.
            py::gil_scoped_release unlocked;
            engine_.reset();
        }
    }

    void dispatch_event(py::handle log_event) {
        std::shared_ptr<batch_event_processor> engine = current();  // closed: counts refusals
        PyObject* ev = log_event.ptr();
        const std::string verb = attribute_string(ev, "http_verb", true);
        if (!verb.empty() && verb != "POST" && verb != "post")
            throw py::value_error("dispatch_event: http_verb '" + verb +
                                  "' (an event batch is POSTed)");
        std::string url = attribute_string(ev, "url", false);
        if (url != last_url_) {
            if (!is_http_url(url))
                throw py::value_error("dispatch_event: url '" + url + "' is not http(s)");
            try {
                parse_endpoint_url(url);
            } catch (const boost::system::system_error& e) {
                throw py::value_error(std::string("dispatch_event: ") + e.what());
            }
            last_url_ = url;
        }
        const py::object params =
            py::reinterpret_steal<py::object>(PyObject_GetAttrString(ev, "params"));
        if (!params) {
            PyErr_Clear();
            throw py::type_error(
                "dispatch_event: the log event has no 'params' attribute (expected an "
                "optimizely LogEvent)");
        }
        if (!PyDict_Check(params.ptr()))
            throw py::type_error(std::string("dispatch_event: log_event.params must be a dict, "
                                             "not '") +
                                 Py_TYPE(params.ptr())->tp_name + "'");
        std::vector<event_ptr> events = split(params.ptr(), url);
        {
            py::gil_scoped_release unlocked;
            for (auto& e : events)
                engine->process(std::move(e));
        }
    }

    bool flush(std::optional<double> timeout) {
        auto engine = current();
        const milliseconds limit =
            timeout ? seconds_arg(*timeout, "flush: timeout", 0.0) : milliseconds::zero();
        auto done = std::make_shared<std::promise<void>>();
        auto fut = done->get_future();
        engine->async_flush([done](boost::system::error_code) { done->set_value(); });
        py::gil_scoped_release unlocked;
        if (!timeout) {
            fut.wait();
            return true;
        }
        return fut.wait_for(limit) == std::future_status::ready;
    }

    py::dict close(double timeout) {
        const auto deadline = seconds_arg(timeout, "close: timeout", 0.0);
        auto engine = current();
        closed_ = true;
        auto done = std::make_shared<std::promise<close_report>>();
        auto fut = done->get_future();
        engine->async_close(deadline, [done](boost::system::error_code, close_report r) {
            done->set_value(std::move(r));
        });
        close_report r;
        {
            py::gil_scoped_release unlocked;
            r = fut.get();  // async_close never waits past its deadline
        }
        return to_dict(r);
    }

    py::dict metrics() { return to_dict(current()->metrics()); }

    bool closed() const { return closed_; }

private:
    // The engine of this process (closed or not). In a child of a fork: a fresh one, open.
    std::shared_ptr<batch_event_processor> current() {
        if (forks_ != fork_count.load(std::memory_order_relaxed)) {
            abandon();
            closed_ = false;  // the child has not closed its dispatcher
            start();
        }
        return engine_;
    }

    void start() {
        const auto forks = fork_count.load(std::memory_order_relaxed);
        try {
            engine_ = std::make_shared<batch_event_processor>(cfg_);
            forks_ = forks;  // (if it failed, the next call tries again)
        } catch (const boost::system::system_error& e) {
            if (e.code() == error::invalid_config || e.code() == error::invalid_url)
                throw py::value_error(e.what());
            throw;
        }
    }

    // The inherited engine belongs to the parent: never destroyed here. Its events stay the
    // parent's (which delivers them); its sockets are left alone.
    void abandon() {
        if (engine_)
            new std::shared_ptr<batch_event_processor>(std::move(engine_));  // leaked on purpose
        engine_.reset();
    }

    // One event per visitor, sharing a context built from the envelope (reused while the
    // envelope stays the same). Everything is checked before any event is handed over.
    std::vector<event_ptr> split(PyObject* params, const std::string& url) {
        Py_ssize_t pos = 0;
        PyObject* key = nullptr;
        PyObject* value = nullptr;
        while (PyDict_Next(params, &pos, &key, &value)) {
            if (!PyUnicode_Check(key))
                throw py::value_error("params: a key that is not a str (not an event batch)");
            Py_ssize_t n = 0;
            const char* k = PyUnicode_AsUTF8AndSize(key, &n);
            if (!k || !known_key(std::string_view(k, static_cast<std::size_t>(n)))) {
                PyErr_Clear();
                throw py::value_error("params: unknown field '" + py::str(key).cast<std::string>() +
                                      "' (evdispatch would not send it)");
            }
        }
        event_context ctx;
        ctx.account_id = required_string(params, "account_id");
        ctx.project_id = required_string(params, "project_id");
        ctx.revision = required_string(params, "revision");
        ctx.client_name = required_string(params, "client_name");
        ctx.client_version = required_string(params, "client_version");
        ctx.anonymize_ip = optional_bool(params, "anonymize_ip").value_or(false);
        if (!optional_bool(params, "enrich_decisions").value_or(true))
            throw py::value_error(
                "params.enrich_decisions: false is not supported (evdispatch sends true, as the "
                "Optimizely SDKs do)");
        ctx.endpoint = endpoint_.empty() ? url : endpoint_;
        if (!context_ || !(*context_ == ctx))
            context_ = std::make_shared<const event_context>(std::move(ctx));

        PyObject* visitors = item(params, "visitors");
        if (!visitors)
            throw py::value_error("params: no 'visitors' (not an event batch)");
        if (!PyList_Check(visitors))
            throw py::type_error(std::string("params.visitors: must be a list, not '") +
                                 Py_TYPE(visitors)->tp_name + "'");
        const auto created = steady_clock::now();
        std::vector<event_ptr> out;
        std::string scratch;
        out.reserve(static_cast<std::size_t>(PyList_GET_SIZE(visitors)));
        value_path path;
        static PyObject* const visitors_key = PyUnicode_InternFromString("visitors");
        path.push_key(visitors_key);
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(visitors); ++i) {
            PyObject* v = PyList_GET_ITEM(visitors, i);
            path.push_index(i);
            if (!PyDict_Check(v))
                throw py::type_error(path.text() + ": a visitor must be a dict, not '" +
                                     Py_TYPE(v)->tp_name + "'");
            PyObject* id = item(v, "visitor_id");
            if (!id || !PyUnicode_Check(id))
                throw py::value_error(path.text() + ".visitor_id: must be a str");
            PyObject* snapshots = item(v, "snapshots");
            if (!snapshots || !PyList_Check(snapshots))
                throw py::value_error(path.text() + ".snapshots: must be a list");
            scratch.clear();
            append_value(scratch, v, path, 2);
            out.push_back(make_event(context_, scratch, created));
            path.pop();
        }
        return out;
    }

    processor_config cfg_;
    std::string endpoint_;  // empty: each log event's own url
    std::shared_ptr<batch_event_processor> engine_;
    std::uint64_t forks_ = 0;  // fork_count when engine_ started
    bool closed_ = false;
    std::string last_url_;  // the last url checked
    std::shared_ptr<const event_context> context_;
};

}  // namespace

}  // namespace evdispatch::python

PYBIND11_MODULE(_evdispatch, m) {
    using namespace evdispatch;
    using namespace evdispatch::python;
    m.doc() = "evdispatch's engine; use evdispatch.EventDispatcher.";
    m.attr("__version__") = std::string(version());
    static std::once_flag registered;
    std::call_once(registered, [] { pthread_atfork(nullptr, nullptr, count_fork_in_child); });

    py::class_<dispatcher>(m, "Engine")
        .def(py::init([](std::string endpoint, std::size_t batch_size, double flush_interval,
                         std::size_t max_batch_bytes, std::size_t queue_capacity,
                         std::size_t backlog_max_bytes, std::size_t connections,
                         double connect_timeout, double request_timeout, unsigned max_attempts,
                         double max_retry_time, std::string ca_file, std::string spool_dir,
                         double close_timeout, const std::string& compression) {
                 processor_config cfg;
                 cfg.batch.batch_size = batch_size;
                 cfg.batch.flush_interval = seconds_arg(flush_interval, "flush_interval", 0.001);
                 cfg.batch.max_batch_bytes = max_batch_bytes;
                 cfg.queue_capacity = queue_capacity;
                 cfg.backlog_max_bytes = backlog_max_bytes;
                 cfg.http.max_connections = connections;
                 cfg.http.connect_timeout = seconds_arg(connect_timeout, "connect_timeout", 0.001);
                 cfg.http.request_timeout = seconds_arg(request_timeout, "request_timeout", 0.001);
                 cfg.retry.max_attempts = max_attempts;
                 cfg.retry.max_retry_time = seconds_arg(max_retry_time, "max_retry_time", 0.0);
                 cfg.tls.ca_file = std::move(ca_file);
                 cfg.spool.dir = std::move(spool_dir);
                 cfg.destructor_close_timeout = seconds_arg(close_timeout, "close_timeout", 0.0);
                 if (compression == "gzip")
                     cfg.http.compression = http_compression::gzip;
                 else if (compression != "none")
                     throw py::value_error("compression must be 'none' or 'gzip', not '" +
                                           compression + "'");
                 return std::make_unique<dispatcher>(std::move(cfg), std::move(endpoint));
             }),
             py::arg("endpoint"), py::arg("batch_size"), py::arg("flush_interval"),
             py::arg("max_batch_bytes"), py::arg("queue_capacity"), py::arg("backlog_max_bytes"),
             py::arg("connections"), py::arg("connect_timeout"), py::arg("request_timeout"),
             py::arg("max_attempts"), py::arg("max_retry_time"), py::arg("ca_file"),
             py::arg("spool_dir"), py::arg("close_timeout"), py::arg("compression"))
        .def("dispatch_event", &dispatcher::dispatch_event, py::arg("log_event"))
        .def("flush", &dispatcher::flush, py::arg("timeout") = py::none())
        .def("close", &dispatcher::close, py::arg("timeout"))
        .def("metrics", &dispatcher::metrics)
        .def_property_readonly("closed", &dispatcher::closed);

    // Library defaults, for the Python signature.
    const processor_config d;
    py::dict defaults;
    defaults["batch_size"] = d.batch.batch_size;
    defaults["flush_interval"] = static_cast<double>(d.batch.flush_interval.count()) / 1000.0;
    defaults["max_batch_bytes"] = d.batch.max_batch_bytes;
    defaults["queue_capacity"] = d.queue_capacity;
    defaults["backlog_max_bytes"] = d.backlog_max_bytes;
    defaults["connections"] = d.http.max_connections;
    defaults["connect_timeout"] = static_cast<double>(d.http.connect_timeout.count()) / 1000.0;
    defaults["request_timeout"] = static_cast<double>(d.http.request_timeout.count()) / 1000.0;
    defaults["max_attempts"] = d.retry.max_attempts;
    defaults["max_retry_time"] = static_cast<double>(d.retry.max_retry_time.count()) / 1000.0;
    m.attr("DEFAULTS") = defaults;
}
