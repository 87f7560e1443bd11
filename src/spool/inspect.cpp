#include <evdispatch/spool.hpp>

#include "spool/file_system.hpp"
#include "spool/store.hpp"

namespace evdispatch {

spool_info inspect_spool(const std::string& dir) {
    auto fs = detail::spool::make_posix_file_system();
    const auto r = detail::spool::inspect(dir, *fs);
    spool_info info;
    info.quarantined_files = r.quarantined_files;
    info.quarantined_bytes = r.quarantined_bytes;
    info.refused = r.refused;
    for (const auto& d : r.dirs) {
        spool_dir_info o;
        o.path = d.path;
        o.in_use = d.locked;
        o.segments = d.segments;
        o.records = d.records;
        o.events = d.events;
        o.bytes = d.bytes;
        o.acked_records = d.acked_records;
        o.oldest_created_ms = d.oldest_created_ms;
        o.corrupt_records = d.corrupt_records;
        o.corrupt_events = d.corrupt_events;
        o.corrupt_bytes = d.corrupt_bytes;
        info.dirs.push_back(std::move(o));
    }
    return info;
}

}  // namespace evdispatch
