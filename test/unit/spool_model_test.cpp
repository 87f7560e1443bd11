// Seeded random sequences of append / next / ack / sync / rotation / crash / reopen on the
// in-memory file system, checked against a model: after each crash or reopen the store brings
// back exactly what was appended and not acknowledged (fsync every_batch), each record once per
// store, whole; the counters agree; live_bytes stays within max_bytes.

#include "spool/frame.hpp"
#include "spool/store.hpp"
#include "support/faulty_fs.hpp"
#include "unit/spool_test_support.hpp"

#include <evdispatch/error.hpp>

#include <catch2/catch.hpp>

#include <cerrno>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>

using namespace evdispatch;
using namespace evdispatch::detail::spool;
using namespace evdispatch::test::spool_support;
using evdispatch::test::faulty_file_system;
using fop = faulty_file_system::op;

namespace {

const std::string root = "/spool";

struct model_rec {
    std::uint32_t events = 0;
    bool unread = false;            // next() of the current store has it still to return
    std::optional<record_ref> ref;  // known to the caller in the current store
};

class model_run {
public:
    model_run(std::uint64_t seed, bool faults) : rng_(seed), faults_(faults) {
        fs_ = std::make_shared<faulty_file_system>();
        error_code ec;
        fs_->mkdir(root, ec);
        fs_->sync_dir("/", ec);
        opts_ = options(root);
        opts_.segment_bytes = 300 + rng_() % 900;  // a few frames per segment
        opts_.max_bytes = opts_.segment_bytes * (2 + rng_() % 6);
        opts_.fsync = fsync_policy::every_batch;
        open();
    }

    void run(int steps) {
        for (int i = 0; i < steps; ++i) {
            const auto dice = rng_() % 100;
            if (faults_ && dice < 8)
                inject();
            else if (dice < 45)
                append();
            else if (dice < 70)
                next();
            else if (dice < 90)
                ack();
            else if (dice < 94)
                s_->sync();
            else if (dice < 97)
                crash();
            else
                reopen();
            check();
        }
        fs_->clear_faults();
        crash();
        // Everything left comes back once.
        std::set<std::string> got;
        while (auto r = s_->next(0, {})) {
            CHECK(got.insert(r->body).second);
            if (!faults_)
                CHECK(live_.count(r->body) == 1);
            s_->ack({r->origin, r->id});
        }
        for (const auto& [body, m] : live_)
            CHECK(got.count(body) == 1);
        s_.reset();
        CHECK(fs_->files_under(root).empty());  // all settled: every directory removed
    }

private:
    void open() {
        fs_->reboot();
        s_ = std::make_unique<store>(opts_, fs_);
        std::uint64_t events = 0;
        for (auto& [body, m] : live_) {
            m.unread = true;
            m.ref.reset();
            events += m.events;
        }
        returned_.clear();
        if (!faults_) {
            CHECK(s_->counters().recovered_records == live_.size());
            CHECK(s_->counters().recovered_events == events);
        } else {
            // Acks that failed may bring records back; nothing live is lost.
            CHECK(s_->counters().recovered_records >= live_.size());
        }
        CHECK(s_->counters().corrupt_bytes == 0);
        CHECK(s_->counters().corrupt_records == 0);
    }

    void crash() {
        fs_->crash();
        s_.reset();
        open();
    }

    void reopen() {
        s_.reset();
        open();
    }

    void inject() {
        switch (rng_() % 5) {
            case 0:
                fs_->set_space(rng_() % 2000);
                break;
            case 1:
                fs_->fail(fop::sync, EIO, 1 + static_cast<int>(rng_() % 3));
                break;
            case 2:
                fs_->short_write(rng_() % 100);
                break;
            case 3:
                fs_->fail(rng_() % 2 == 0 ? fop::unlink : fop::rename, EIO,
                          1 + static_cast<int>(rng_() % 3));
                break;
            default:
                fs_->clear_faults();
                break;
        }
    }

    void append() {
        const auto n = ++serial_;
        const auto body = body_of(n, 20 + rng_() % 300);
        const auto events = static_cast<std::uint32_t>(1 + rng_() % 50);
        const bool read_back = rng_() % 4 != 0;
        auto [ec, ref] = s_->append(meta_of(events), body, read_back);
        if (ec) {
            CHECK((ec == make_error_code(error::spool_full) ||
                   (faults_ && ec == make_error_code(error::spool_write_failed))));
            if (ec == make_error_code(error::spool_write_failed))
                CHECK(s_->degraded());
            return;
        }
        CHECK_FALSE(s_->degraded());
        auto& m = live_[body];
        m.events = events;
        m.unread = read_back;
        m.ref = ref;
    }

    void next() {
        auto r = s_->next(0, {});
        if (!r) {
            for (const auto& [body, m] : live_)
                CHECK_FALSE(m.unread);
            return;
        }
        CHECK(returned_.insert(r->body).second);  // once per store
        if (faults_ && live_.count(r->body) == 0)
            return;  // an ack that failed to be written: delivered again
        REQUIRE(live_.count(r->body) == 1);
        auto& m = live_[r->body];
        CHECK(m.unread);
        CHECK(r->meta.event_count == m.events);
        m.unread = false;
        m.ref = record_ref{r->origin, r->id};
    }

    void ack() {
        std::vector<std::string> known;
        for (const auto& [body, m] : live_)
            if (m.ref)
                known.push_back(body);
        if (known.empty())
            return;
        const auto body = known[rng_() % known.size()];
        s_->ack(*live_[body].ref);
        live_.erase(body);
    }

    void check() {
        const auto& c = s_->counters();
        CHECK(c.live_bytes <= opts_.max_bytes);
        CHECK(c.live_bytes_peak <= opts_.max_bytes);
        if (faults_)
            return;
        std::uint64_t unread = 0, events = 0;
        for (const auto& [body, m] : live_)
            if (m.unread) {
                ++unread;
                events += m.events;
            }
        CHECK(s_->unread_records() == unread);
        CHECK(s_->unread_events() == events);
        // live_bytes: the own segment files, exactly.
        std::uint64_t on_disk = 0;
        for (const auto& f : fs_->files_under(s_->path()))
            if (f.find("/seg-") != std::string::npos)
                on_disk += fs_->contents(f).size();
        CHECK(c.live_bytes == on_disk);
        CHECK(c.write_failures == 0);
        CHECK(c.sync_failures == 0);
    }

    std::mt19937_64 rng_;
    bool faults_;
    std::shared_ptr<faulty_file_system> fs_;
    store_options opts_;
    std::unique_ptr<store> s_;
    std::map<std::string, model_rec> live_;  // appended, not acknowledged: by body
    std::set<std::string> returned_;
    std::uint64_t serial_ = 0;
};

}  // namespace

TEST_CASE("spool model: random sequences with crashes match the model (every_batch)",
          "[unit][spool]") {
    for (std::uint64_t seed = 1; seed <= 200; ++seed) {
        INFO("seed " << seed);
        model_run(seed, false).run(100);
    }
}

TEST_CASE("spool model: random sequences with disk faults lose nothing unacknowledged",
          "[unit][spool]") {
    for (std::uint64_t seed = 1001; seed <= 1100; ++seed) {
        INFO("seed " << seed);
        model_run(seed, true).run(100);
    }
}
