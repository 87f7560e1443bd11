#include "support/vectors.hpp"

#include <boost/json/parse.hpp>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <utility>

namespace evdispatch::test {

std::string test_data_path(std::string_view rel) {
    return std::string(EVDISPATCH_TEST_DATA) + "/" + std::string(rel);
}

std::string read_text(std::string_view rel) {
    const std::string path = test_data_path(rel);
    std::ifstream f(path, std::ios::binary);
    if (!f)
        throw std::runtime_error("cannot open test data " + path);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

boost::json::value read_json(std::string_view rel) {
    return boost::json::parse(read_text(rel));
}

boost::json::value read_vector(std::string_view name) {
    return read_json("vectors/" + std::string(name));
}

void remove_path(boost::json::value& v, std::string_view path) {
    const auto dot = path.find('.');
    std::string_view seg = path.substr(0, dot);
    const bool last = dot == std::string_view::npos;
    if (!v.is_object())
        return;
    auto& o = v.get_object();
    bool each = false;
    if (seg.ends_with("[*]")) {
        each = true;
        seg.remove_suffix(3);
    }
    if (last && !each) {
        o.erase(seg);
        return;
    }
    auto it = o.find(seg);
    if (it == o.end())
        return;
    if (last)
        return;
    const std::string_view rest = path.substr(dot + 1);
    if (each) {
        if (!it->value().is_array())
            return;
        for (auto& e : it->value().get_array())
            remove_path(e, rest);
    } else {
        remove_path(it->value(), rest);
    }
}

void sort_attributes(boost::json::value& payload) {
    if (!payload.is_object())
        return;
    auto* visitors = payload.get_object().if_contains("visitors");
    if (!visitors || !visitors->is_array())
        return;
    for (auto& vis : visitors->get_array()) {
        if (!vis.is_object())
            continue;
        auto* attrs = vis.get_object().if_contains("attributes");
        if (!attrs || !attrs->is_array())
            continue;
        auto& a = attrs->get_array();
        std::stable_sort(a.begin(), a.end(), [](const auto& x, const auto& y) {
            auto field = [](const boost::json::value& e, const char* k) -> std::string {
                if (!e.is_object())
                    return {};
                const auto* f = e.get_object().if_contains(k);
                return f && f->is_string() ? std::string(f->get_string()) : std::string();
            };
            return std::pair(field(x, "key"), field(x, "entity_id")) <
                   std::pair(field(y, "key"), field(y, "entity_id"));
        });
    }
}

bool json_equal(const boost::json::value& a, const boost::json::value& b) {
    if (a.is_number() && b.is_number()) {
        if (a.is_double() || b.is_double())
            return a.to_number<double>() == b.to_number<double>();
        if (a.is_int64() && b.is_int64())
            return a.get_int64() == b.get_int64();
        if (a.is_uint64() && b.is_uint64())
            return a.get_uint64() == b.get_uint64();
        const auto& s = a.is_int64() ? a : b;  // int64 vs uint64
        const auto& u = a.is_int64() ? b : a;
        return s.get_int64() >= 0 && static_cast<std::uint64_t>(s.get_int64()) == u.get_uint64();
    }
    if (a.kind() != b.kind())
        return false;
    switch (a.kind()) {
        case boost::json::kind::object: {
            const auto& x = a.get_object();
            const auto& y = b.get_object();
            if (x.size() != y.size())
                return false;
            for (const auto& m : x) {
                const auto* other = y.if_contains(m.key());
                if (!other || !json_equal(m.value(), *other))
                    return false;
            }
            return true;
        }
        case boost::json::kind::array: {
            const auto& x = a.get_array();
            const auto& y = b.get_array();
            if (x.size() != y.size())
                return false;
            for (std::size_t i = 0; i < x.size(); ++i)
                if (!json_equal(x[i], y[i]))
                    return false;
            return true;
        }
        default:
            return a == b;
    }
}

}  // namespace evdispatch::test
