// evdispatch: command-line front of the library.

#include "commands.hpp"
#include "options.hpp"

#include <evdispatch/event.hpp>

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

namespace {

void usage(std::FILE* out) {
    std::fprintf(out,
                 "usage: evdispatch <command> [options]\n"
                 "\n"
                 "commands:\n"
                 "  bench      drive the processor against the embedded loopback collector\n"
                 "  collector  run the loopback collector on its own\n"
                 "  payload    print the event batches evdispatch would send for JSON inputs\n"
                 "  relay      take event batches from SDKs over HTTP, deliver them re-batched\n"
                 "  spool      look into a disk spool (inspect) or deliver what it holds (drain)\n"
                 "  sweep      run bench over a grid of batch sizes and flush intervals (CSV+SVG)\n"
                 "  version    print the version\n"
                 "\n"
                 "'evdispatch <command> --help' lists the options of a command.\n");
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const std::string cmd = argv[1];
    evdispatch::app::args rest(argv + 2, argv + argc);
    try {
        if (cmd == "bench")
            return evdispatch::app::run_bench(rest);
        if (cmd == "collector")
            return evdispatch::app::run_collector(rest);
        if (cmd == "payload")
            return evdispatch::app::run_payload(rest);
        if (cmd == "relay")
            return evdispatch::app::run_relay(rest);
        if (cmd == "spool")
            return evdispatch::app::run_spool(rest);
        if (cmd == "sweep")
            return evdispatch::app::run_sweep(rest);
        if (cmd == "version" || cmd == "--version") {
            std::printf("evdispatch %s\n", std::string(evdispatch::version()).c_str());
            return 0;
        }
        if (cmd == "help" || cmd == "--help" || cmd == "-h") {
            usage(stdout);
            return 0;
        }
    } catch (const evdispatch::app::usage_error& e) {
        std::fprintf(stderr, "evdispatch %s: %s\n", cmd.c_str(), e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "evdispatch %s: %s\n", cmd.c_str(), e.what());
        return 1;
    }
    std::fprintf(stderr, "evdispatch: unknown command '%s'\n", cmd.c_str());
    usage(stderr);
    return 2;
}
