// evdispatch payload: prints the batches evdispatch would send for user events given as JSON.

#include "commands.hpp"
#include "options.hpp"
#include "support/payload_input.hpp"

#include <evdispatch/config.hpp>
#include <evdispatch/optimizely/project_config.hpp>

#include <boost/system/system_error.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>

namespace evdispatch::app {

using namespace evdispatch::test;  // the payload input reader lives in evdispatch_testing

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

bool read_file(const std::string& path, std::string& out) {
    std::ifstream f(path, std::ios::binary);
    if (!f)
        return false;
    out.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    return !f.bad();
}

}  // namespace

int run_payload(const args& a) {
    // -h as well as --help, as before option_parser.
    args given = a;
    std::replace(given.begin(), given.end(), std::string("-h"), std::string("--help"));
    option_parser p(
        {"datafile", "batch-size", "max-batch-bytes", "endpoint", "client-name", "client-version"},
        {"help"});
    p.parse(given);
    if (p.flag("help")) {
        payload_usage(stdout);
        return 0;
    }

    const std::string datafile_path = p.str("datafile", "");
    if (p.has("datafile") && datafile_path.empty())
        throw usage_error("--datafile needs a file");
    const std::size_t batch_size = p.u64("batch-size", 0, 1);  // 0: one batch per context
    batch_config batch;
    batch.max_batch_bytes = p.u64("max-batch-bytes", batch.max_batch_bytes, 1024);
    test::payload_input_options opts;
    project_config::options cfg_opts;
    if (p.has("endpoint"))
        opts.endpoint = cfg_opts.endpoint = p.str("endpoint", "");
    if (p.has("client-name"))
        opts.client_name = cfg_opts.client_name = p.str("client-name", "");
    if (p.has("client-version"))
        opts.client_version = cfg_opts.client_version = p.str("client-version", "");

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

    boost::system::error_code ec;
    const auto entries = build_payload_events(input, opts, ec);
    if (ec) {
        std::fprintf(stderr, "evdispatch payload: input: not a valid JSON array: %s\n",
                     ec.message().c_str());
        return 2;
    }

    int status = 0;
    std::size_t good = 0;
    for (const auto& pe : entries) {
        if (pe.event) {
            ++good;
            continue;
        }
        std::fprintf(stderr, "evdispatch payload: %s\n", to_string(*pe.error).c_str());
        status = 2;
    }
    batch.batch_size = batch_size != 0 ? batch_size : std::max<std::size_t>(good, 1);
    std::vector<std::size_t> too_large;
    const auto batches = group_payload_events(entries, batch, &too_large);
    for (std::size_t index : too_large) {
        std::fprintf(stderr,
                     "evdispatch payload: input[%zu]: the event alone exceeds --max-batch-bytes "
                     "(%zu); it would be dropped (too_large)\n",
                     index, batch.max_batch_bytes);
        status = 2;
    }
    const std::string out = write_payload_json(batches);
    std::fwrite(out.data(), 1, out.size(), stdout);
    return status;
}

}  // namespace evdispatch::app
