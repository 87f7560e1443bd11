// evdispatch payload: prints the batches evdispatch would send for user events given as JSON.

#include "commands.hpp"

#include <evdispatch/config.hpp>
#include <evdispatch/detail/payload_input.hpp>
#include <evdispatch/project_config.hpp>

#include <boost/system/system_error.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

namespace evdispatch::app {

namespace {

void payload_usage(std::FILE* out) {
    std::fprintf(
        out,
        "usage: evdispatch payload [options] < entries.json\n"
        "\n"
        "Reads user events from standard input (a JSON array, or one JSON object per line) in\n"
        "the shape of the Optimizely vectors' `inputs` entries and prints, as a JSON array, the\n"
        "batches evdispatch would send for them: url, http_verb, headers, params (the body).\n"
        "Events are grouped by context exactly as the processor's batcher groups them.\n"
        "\n"
        "options:\n"
        "  --datafile FILE        take the context, attribute ids and the ids of the keys the\n"
        "                         entries name from this datafile (entries' `context` and\n"
        "                         `attribute_ids_in_datafile` are then not used)\n"
        "  --batch-size N         events per batch (default: all the events of a context in\n"
        "                         one batch)\n"
        "  --max-batch-bytes N    bytes per batch body (default %zu, as the processor)\n"
        "  --endpoint URL         send every batch to URL instead of the region's endpoint\n"
        "  --client-name NAME     client_name (default evdispatch-cpp)\n"
        "  --client-version V     client_version (default: the library version)\n"
        "\n"
        "Numbers JSON cannot hold are written {\"$float\": \"nan\"|\"inf\"|\"-inf\"}.\n"
        "mocked_clock.timestamp_ms and mocked_clock.uuid fix an entry's timestamp and uuid.\n"
        "Exit status: 0 all entries printed; 2 bad usage, bad datafile or a bad entry (a\n"
        "message on stderr names the entry and the field; the other entries are printed).\n",
        batch_config{}.max_batch_bytes);
}

bool parse_size(const std::string& s, std::size_t& out) {
    const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
    return r.ec == std::errc{} && r.ptr == s.data() + s.size();
}

bool read_file(const std::string& path, std::string& out) {
    std::ifstream f(path, std::ios::binary);
    if (!f)
        return false;
    out.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    return !f.bad();
}

}  // namespace

int run_payload(const args& a) {
    std::string datafile_path;
    std::size_t batch_size = 0;  // 0: one batch per context
    batch_config batch;
    detail::payload_input_options opts;
    project_config::options cfg_opts;

    for (std::size_t i = 0; i < a.size(); ++i) {
        const std::string& arg = a[i];
        if (arg == "--help" || arg == "-h") {
            payload_usage(stdout);
            return 0;
        }
        auto next = [&](std::string& v) {
            if (i + 1 >= a.size())
                return false;
            v = a[++i];
            return true;
        };
        std::string v;
        if (arg == "--datafile") {
            if (!next(datafile_path)) {
                std::fprintf(stderr, "evdispatch payload: --datafile needs a file\n");
                return 2;
            }
        } else if (arg == "--batch-size" || arg == "--max-batch-bytes") {
            std::size_t n = 0;
            if (!next(v) || !parse_size(v, n) || n == 0 ||
                (arg == "--max-batch-bytes" && n < 1024)) {
                std::fprintf(stderr, "evdispatch payload: %s needs a number%s\n", arg.c_str(),
                             arg == "--batch-size" ? " >= 1" : " >= 1024");
                return 2;
            }
            (arg == "--batch-size" ? batch_size : batch.max_batch_bytes) = n;
        } else if (arg == "--endpoint") {
            if (!next(v)) {
                std::fprintf(stderr, "evdispatch payload: --endpoint needs a URL\n");
                return 2;
            }
            opts.endpoint = v;
            cfg_opts.endpoint = v;
        } else if (arg == "--client-name" || arg == "--client-version") {
            if (!next(v)) {
                std::fprintf(stderr, "evdispatch payload: %s needs a value\n", arg.c_str());
                return 2;
            }
            (arg == "--client-name" ? opts.client_name : opts.client_version) = v;
            (arg == "--client-name" ? cfg_opts.client_name : cfg_opts.client_version) = v;
        } else {
            std::fprintf(stderr, "evdispatch payload: unknown option '%s'\n", arg.c_str());
            payload_usage(stderr);
            return 2;
        }
    }

    if (!datafile_path.empty()) {
        std::string text;
        if (!read_file(datafile_path, text)) {
            std::fprintf(stderr, "evdispatch payload: cannot read datafile '%s'\n",
                         datafile_path.c_str());
            return 2;
        }
        try {
            opts.datafile = project_config::parse(text, cfg_opts);
        } catch (const boost::system::system_error& e) {
            std::fprintf(stderr, "evdispatch payload: %s: %s\n", datafile_path.c_str(), e.what());
            return 2;
        }
    }

    std::ostringstream ss;
    ss << std::cin.rdbuf();
    const std::string input = ss.str();

    std::vector<detail::payload_entry> entries;
    try {
        entries = detail::build_payload_events(input, opts);
    } catch (const detail::payload_input_error& e) {
        std::fprintf(stderr, "evdispatch payload: %s\n", e.what());
        return 2;
    }

    int status = 0;
    std::size_t good = 0;
    for (const auto& pe : entries) {
        if (pe.event) {
            ++good;
            continue;
        }
        std::fprintf(stderr, "evdispatch payload: %s\n", pe.error.c_str());
        status = 2;
    }
    batch.batch_size = batch_size != 0 ? batch_size : std::max<std::size_t>(good, 1);
    std::vector<std::size_t> too_large;
    const auto batches = detail::group_payload_events(entries, batch, &too_large);
    for (std::size_t index : too_large) {
        std::fprintf(stderr,
                     "evdispatch payload: input[%zu]: the event alone exceeds --max-batch-bytes "
                     "(%zu); it would be dropped (too_large)\n",
                     index, batch.max_batch_bytes);
        status = 2;
    }
    const std::string out = detail::write_payload_json(batches);
    std::fwrite(out.data(), 1, out.size(), stdout);
    return status;
}

}  // namespace evdispatch::app
