// The SAX validator of event-batch bodies (collector/check.hpp). Boost.JSON's basic_parser
// drives a handler that keeps a small stack of frames, one per object or array of the schema it
// is inside; anything the schema does not describe (unknown keys, tags, decision contents) is
// skipped by counting nesting depth. No DOM, no allocation per value: keys and strings are
// only copied when they arrive in pieces.
//
// Rules beyond check_event_batch's summary: a known key may not appear twice in one object, an
// event's uuid may not be empty, `visitors` may be empty.
//
// The parser is instantiated here only, on a concrete handler; uuids leave through the
// uuid_sink interface, one virtual call per event.

#include "collector/check.hpp"

#include <evdispatch/collector/check.hpp>

#include <boost/json/basic_parser_impl.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace evdispatch {
namespace detail {
namespace {

namespace check_detail {

// What a value slot accepts.
enum class expect : std::uint8_t {
    any,  // unknown key: anything, not looked into
    string,
    uuid,  // non-empty string, reported to the sink
    boolean,
    integer,
    number,
    scalar,  // string, boolean or number
    object,  // any object, not looked into (tags, decisions[i])
    root,
    visitor,
    attribute,
    snapshot,
    event,
    visitors,
    attributes,
    snapshots,
    events,
    decisions,
};

// The kind of a JSON value as the parser reports it.
enum class jkind : std::uint8_t { object, array, string, boolean, integer, fraction, null };

const char* kind_name(jkind k) noexcept {
    switch (k) {
        case jkind::object:
            return "object";
        case jkind::array:
            return "array";
        case jkind::string:
            return "string";
        case jkind::boolean:
            return "boolean";
        case jkind::integer:
            return "integer";
        case jkind::fraction:
            return "non-integer number";
        case jkind::null:
            return "null";
    }
    return "?";
}

const char* expect_name(expect e) noexcept {
    switch (e) {
        case expect::string:
            return "string";
        case expect::uuid:
            return "string";
        case expect::boolean:
            return "boolean";
        case expect::integer:
            return "integer";
        case expect::number:
            return "number";
        case expect::scalar:
            return "string, boolean or number";
        case expect::visitors:
        case expect::attributes:
        case expect::snapshots:
        case expect::events:
        case expect::decisions:
            return "array";
        default:
            return "object";
    }
}

struct field_spec {
    std::string_view name;
    expect type;
    bool required;
};

// Frames: the schema's objects and arrays. Object frames are those with a field table.
enum class frame_kind : std::uint8_t {
    root,
    visitor,
    attribute,
    snapshot,
    event,
    visitors,
    attributes,
    snapshots,
    events,
    decisions,
};

constexpr field_spec root_fields[] = {
    {"account_id", expect::string, true},        {"project_id", expect::string, true},
    {"revision", expect::string, true},          {"client_name", expect::string, true},
    {"client_version", expect::string, true},    {"anonymize_ip", expect::boolean, true},
    {"enrich_decisions", expect::boolean, true}, {"visitors", expect::visitors, true},
};
constexpr field_spec visitor_fields[] = {
    {"visitor_id", expect::string, true},
    {"attributes", expect::attributes, true},
    {"snapshots", expect::snapshots, true},
};
constexpr field_spec attribute_fields[] = {
    {"entity_id", expect::string, true},
    {"key", expect::string, true},
    {"type", expect::string, true},
    {"value", expect::scalar, true},
};
constexpr field_spec snapshot_fields[] = {
    {"events", expect::events, true},
    {"decisions", expect::decisions, false},
};
constexpr field_spec event_fields[] = {
    {"entity_id", expect::string, true}, {"key", expect::string, true},
    {"uuid", expect::uuid, true},        {"timestamp", expect::integer, true},
    {"revenue", expect::integer, false}, {"value", expect::number, false},
    {"tags", expect::object, false},
};

std::span<const field_spec> fields_of(frame_kind k) noexcept {
    switch (k) {
        case frame_kind::root:
            return root_fields;
        case frame_kind::visitor:
            return visitor_fields;
        case frame_kind::attribute:
            return attribute_fields;
        case frame_kind::snapshot:
            return snapshot_fields;
        case frame_kind::event:
            return event_fields;
        default:
            return {};
    }
}

bool is_object(frame_kind k) noexcept {
    return k <= frame_kind::event;
}

expect element_of(frame_kind k) noexcept {
    switch (k) {
        case frame_kind::visitors:
            return expect::visitor;
        case frame_kind::attributes:
            return expect::attribute;
        case frame_kind::snapshots:
            return expect::snapshot;
        case frame_kind::events:
            return expect::event;
        default:
            return expect::object;  // decisions
    }
}

struct frame {
    frame_kind kind = frame_kind::root;
    std::int8_t pending = -1;  // object: index of the field whose value comes next, -1 unknown
    std::uint16_t seen = 0;    // object: bit i set when field i was present
    std::uint32_t next = 0;    // array: elements begun so far (current one is next - 1)
};

}  // namespace check_detail

// The SAX handler given to basic_parser.
class batch_handler {
    using error_code = boost::json::error_code;
    using string_view = boost::json::string_view;
    using expect = check_detail::expect;
    using jkind = check_detail::jkind;
    using frame_kind = check_detail::frame_kind;

public:
    static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
    static constexpr std::size_t max_object_size = static_cast<std::size_t>(-1);
    static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);
    static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);

    explicit batch_handler(uuid_sink& sink) : sink_(&sink) {}

    void reset() noexcept {
        depth_ = 0;
        skip_ = 0;
        in_key_ = in_string_ = collecting_ = failed_ = false;
        visitors_ = 0;
        error_.clear();
    }

    bool failed() const noexcept { return failed_; }
    const std::string& error() const noexcept { return error_; }
    std::uint64_t visitors() const noexcept { return visitors_; }

    bool on_document_begin(error_code&) { return true; }
    bool on_document_end(error_code&) { return true; }
    bool on_object_begin(error_code& ec) { return value(jkind::object, ec); }
    bool on_object_end(std::size_t, error_code& ec) { return end(ec); }
    bool on_array_begin(error_code& ec) { return value(jkind::array, ec); }
    bool on_array_end(std::size_t, error_code& ec) { return end(ec); }

    bool on_key_part(string_view s, std::size_t, error_code&) {
        if (skip_ != 0)
            return true;
        if (!in_key_) {
            in_key_ = true;
            key_buf_.clear();
        }
        key_buf_.append(s.data(), s.size());
        return true;
    }
    bool on_key(string_view s, std::size_t, error_code& ec) {
        if (skip_ != 0) {
            in_key_ = false;
            return true;
        }
        std::string_view k(s.data(), s.size());
        if (in_key_) {
            in_key_ = false;
            key_buf_.append(s.data(), s.size());
            k = key_buf_;
        }
        return key(k, ec);
    }

    bool on_string_part(string_view s, std::size_t, error_code& ec) {
        if (!in_string_) {
            in_string_ = true;
            if (!value(jkind::string, ec))
                return false;
            if (collecting_)
                str_buf_.clear();
        }
        if (collecting_)
            str_buf_.append(s.data(), s.size());
        return true;
    }
    bool on_string(string_view s, std::size_t, error_code& ec) {
        std::string_view v(s.data(), s.size());
        if (in_string_) {
            in_string_ = false;
            if (!collecting_)
                return true;
            str_buf_.append(s.data(), s.size());
            v = str_buf_;
        } else if (!value(jkind::string, ec)) {
            return false;
        }
        if (!collecting_)
            return true;
        collecting_ = false;
        if (v.empty())
            return fail_value(ec, ": empty uuid");
        sink_->on_uuid(v);
        return true;
    }

    bool on_number_part(string_view, error_code&) { return true; }
    bool on_int64(std::int64_t, string_view, error_code& ec) { return value(jkind::integer, ec); }
    bool on_uint64(std::uint64_t, string_view, error_code& ec) { return value(jkind::integer, ec); }
    bool on_double(double, string_view, error_code& ec) { return value(jkind::fraction, ec); }
    bool on_bool(bool, error_code& ec) { return value(jkind::boolean, ec); }
    bool on_null(error_code& ec) { return value(jkind::null, ec); }
    bool on_comment_part(string_view, error_code&) { return true; }
    bool on_comment(string_view, error_code&) { return true; }

private:
    static constexpr std::size_t max_frames = 8;  // deepest schema path is 7 frames

    static bool matches(expect e, jkind v) noexcept {
        switch (e) {
            case expect::any:
                return true;
            case expect::string:
            case expect::uuid:
                return v == jkind::string;
            case expect::boolean:
                return v == jkind::boolean;
            case expect::integer:
                return v == jkind::integer;
            case expect::number:
                return v == jkind::integer || v == jkind::fraction;
            case expect::scalar:
                return v == jkind::string || v == jkind::boolean || v == jkind::integer ||
                       v == jkind::fraction;
            case expect::visitors:
            case expect::attributes:
            case expect::snapshots:
            case expect::events:
            case expect::decisions:
                return v == jkind::array;
            default:
                return v == jkind::object;
        }
    }

    // A value (scalar or start of a container) arrives.
    bool value(jkind v, error_code& ec) {
        bool container = v == jkind::object || v == jkind::array;
        if (skip_ != 0) {
            if (container)
                ++skip_;
            return true;
        }
        expect e = expect::root;
        if (depth_ != 0) {
            check_detail::frame& f = stack_[depth_ - 1];
            if (check_detail::is_object(f.kind)) {
                e = f.pending < 0 ? expect::any : check_detail::fields_of(f.kind)[f.pending].type;
            } else {
                e = check_detail::element_of(f.kind);
                ++f.next;
            }
        }
        if (!matches(e, v)) {
            std::string msg = ": expected ";
            msg += check_detail::expect_name(e);
            msg += ", got ";
            msg += check_detail::kind_name(v);
            return fail_value(ec, msg);
        }
        switch (e) {
            case expect::any:
            case expect::object:
                if (container)
                    skip_ = 1;
                return true;
            case expect::uuid:
                collecting_ = true;
                return true;
            case expect::root:
                return push(frame_kind::root);
            case expect::visitor:
                ++visitors_;
                return push(frame_kind::visitor);
            case expect::attribute:
                return push(frame_kind::attribute);
            case expect::snapshot:
                return push(frame_kind::snapshot);
            case expect::event:
                return push(frame_kind::event);
            case expect::visitors:
                return push(frame_kind::visitors);
            case expect::attributes:
                return push(frame_kind::attributes);
            case expect::snapshots:
                return push(frame_kind::snapshots);
            case expect::events:
                return push(frame_kind::events);
            case expect::decisions:
                return push(frame_kind::decisions);
            default:
                return true;
        }
    }

    bool push(frame_kind k) {
        // Cannot overflow: the schema nests at most 7 frames and deeper values are skipped.
        stack_[depth_++] = check_detail::frame{k};
        return true;
    }

    bool key(std::string_view k, error_code& ec) {
        check_detail::frame& f = stack_[depth_ - 1];
        auto fields = check_detail::fields_of(f.kind);
        f.pending = -1;
        for (std::size_t i = 0; i < fields.size(); ++i) {
            if (fields[i].name != k)
                continue;
            auto bit = static_cast<std::uint16_t>(1u << i);
            if ((f.seen & bit) != 0) {
                std::string msg = ": duplicate \"";
                msg.append(k);
                msg += '"';
                return fail_at(ec, depth_ - 1, msg);
            }
            f.seen |= bit;
            f.pending = static_cast<std::int8_t>(i);
            break;
        }
        return true;
    }

    // End of an object or array.
    bool end(error_code& ec) {
        if (skip_ != 0) {
            --skip_;
            return true;
        }
        const check_detail::frame& f = stack_[depth_ - 1];
        if (check_detail::is_object(f.kind)) {
            auto fields = check_detail::fields_of(f.kind);
            for (std::size_t i = 0; i < fields.size(); ++i) {
                if (fields[i].required && (f.seen & (1u << i)) == 0) {
                    std::string msg = ": missing \"";
                    msg.append(fields[i].name);
                    msg += '"';
                    return fail_at(ec, depth_ - 1, msg);
                }
            }
        }
        --depth_;
        return true;
    }

    // Error about the value being parsed: its path runs through every frame.
    bool fail_value(error_code& ec, std::string_view what) { return fail_at(ec, depth_, what); }

    // Error whose path is given by the first `levels` frames.
    bool fail_at(error_code& ec, std::size_t levels, std::string_view what) {
        error_.clear();
        for (std::size_t i = 0; i < levels; ++i) {
            const check_detail::frame& f = stack_[i];
            if (check_detail::is_object(f.kind)) {
                if (f.pending < 0)
                    continue;
                if (!error_.empty())
                    error_ += '.';
                error_.append(check_detail::fields_of(f.kind)[f.pending].name);
            } else {
                error_ += '[';
                error_ += std::to_string(f.next - 1);
                error_ += ']';
            }
        }
        if (error_.empty())
            error_ = "top level";
        error_.append(what);
        failed_ = true;
        ec = boost::json::make_error_code(boost::json::error::exception);
        return false;
    }

    uuid_sink* sink_;
    std::array<check_detail::frame, max_frames> stack_{};
    std::size_t depth_ = 0;
    std::size_t skip_ = 0;  // > 0: inside a value that is not checked, at this nesting
    bool in_key_ = false;
    bool in_string_ = false;
    bool collecting_ = false;  // the current string is a uuid
    bool failed_ = false;
    std::uint64_t visitors_ = 0;
    std::string key_buf_;
    std::string str_buf_;
    std::string error_;
};

}  // namespace

struct batch_checker::impl {
    explicit impl(uuid_sink& sink) : parser(options(), sink) {}

    static boost::json::parse_options options() {
        boost::json::parse_options o;
        o.max_depth = 64;
        return o;
    }

    boost::json::basic_parser<batch_handler> parser;
    std::string error;
    std::size_t offset = 0;
};

batch_checker::batch_checker(uuid_sink& sink) : impl_(std::make_unique<impl>(sink)) {}

batch_checker::~batch_checker() = default;

bool batch_checker::write(std::string_view piece, bool more) {
    impl& m = *impl_;
    if (!m.error.empty())
        return false;
    boost::json::error_code ec;
    std::size_t n = 0;
    if (!m.parser.done())
        n = m.parser.write_some(more, piece.data(), piece.size(), ec);
    if (ec) {
        if (m.parser.handler().failed()) {
            m.error = m.parser.handler().error();
        } else {
            m.error =
                "malformed JSON at byte " + std::to_string(m.offset + n) + ": " + ec.message();
        }
        return false;
    }
    for (; n < piece.size(); ++n) {
        char c = piece[n];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            m.error = "malformed JSON at byte " + std::to_string(m.offset + n) +
                      ": unexpected data after the batch";
            return false;
        }
    }
    m.offset += piece.size();
    return true;
}

void batch_checker::reset() noexcept {
    impl_->parser.reset();
    impl_->parser.handler().reset();
    impl_->error.clear();
    impl_->offset = 0;
}

const std::string& batch_checker::error() const noexcept {
    return impl_->error;
}

std::uint64_t batch_checker::visitors() const noexcept {
    return impl_->parser.handler().visitors();
}

}  // namespace detail

batch_check check_event_batch(std::string_view body) {
    struct string_sink final : detail::uuid_sink {
        explicit string_sink(std::vector<std::string>& out) : out_(&out) {}
        void on_uuid(std::string_view s) override { out_->emplace_back(s); }
        std::vector<std::string>* out_;
    };
    batch_check r;
    string_sink sink(r.uuids);
    detail::batch_checker checker(sink);
    r.ok = checker.write(body, false);
    if (r.ok) {
        r.visitors = checker.visitors();
    } else {
        r.error = checker.error();
        r.uuids.clear();
    }
    return r;
}

}  // namespace evdispatch
