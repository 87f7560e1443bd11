#pragma once

/// @file config.hpp
/// Configuration of the processor and the HTTP dispatcher: plain aggregates, set with
/// designated initialisers. Each field states its default, its unit and what 0 means.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>

namespace evdispatch {

/// When a batch is closed and sent.
struct batch_config {
    /// Events per batch; a batch closes when it holds this many. Default 10. 0 is invalid.
    std::size_t batch_size = 10;
    /// Bytes per batch body; a batch closes before exceeding it. An event whose own
    /// envelope+visitor exceeds it is dropped (reason too_large). Default 1 MiB (Optimizely's
    /// Event API takes up to 3.5 MB). Must be at least 1024.
    std::size_t max_batch_bytes = 1024 * 1024;
    /// A batch closes when its oldest event is this old. Default 30 s. Any value >= 1 ms
    /// works; 0 is invalid.
    std::chrono::milliseconds flush_interval{30'000};
};

/// HTTP transport (used by http_event_dispatcher).
/// Content-Encoding of batch requests (http_config::compression).
enum class http_compression {
    none,  ///< The JSON as it is. The default.
    gzip,  ///< gzip (RFC 1952), compressed once when the batch is sealed.
};

struct http_config {
    /// Keep-alive connections to the endpoint; also the number of requests in flight.
    /// Default 4. 0 is invalid.
    std::size_t max_connections = 4;
    /// Deadline for opening a connection: one deadline, from the start, covering name
    /// resolution (waiting for addresses), TCP connect and TLS handshake together. Default 5 s.
    /// 0 is invalid.
    std::chrono::milliseconds connect_timeout{5'000};
    /// Whole request/response exchange timeout. Default 10 s. 0 is invalid.
    std::chrono::milliseconds request_timeout{10'000};
    /// Largest response (headers + body) read; a larger one fails the attempt. Default 64 KiB.
    std::size_t max_response_bytes = 64 * 1024;
    /// Value of the User-Agent header. Default "evdispatch/<version>".
    std::string user_agent;
    /// A connection is closed after this many requests (recycled). Default 0: no limit.
    std::size_t max_requests_per_connection = 0;
    /// An idle keep-alive connection older than this is closed instead of reused. Default 30 s.
    /// 0 means no limit.
    std::chrono::milliseconds idle_timeout{30'000};
    /// How long the resolved addresses of an endpoint host are reused for new connections.
    /// Once older, they are still used while a refresh runs in the background, and kept if the
    /// refresh fails. Default 30 s. 0 means no reuse: every new connection waits for a
    /// resolution (concurrent ones share it). IP-literal hosts are never resolved. Negative is
    /// invalid. (See host_resolver.hpp.)
    std::chrono::milliseconds dns_ttl{30'000};
    /// Compress batch bodies. Default none: Optimizely's event endpoint does not document
    /// gzip. With gzip, each batch is compressed once when it is sealed (retries send the
    /// same bytes) and sent with `Content-Encoding: gzip`; an endpoint that answers 415 or 400
    /// to a gzipped batch gets that batch again uncompressed at once, and every later one
    /// uncompressed too (for the rest of the processor's life). Only the built-in HTTP
    /// dispatcher uses the compressed bytes (log_event::gzip_body).
    http_compression compression = http_compression::none;
    /// zlib level for gzip, 1 (fastest) to 9 (smallest). Default 6.
    int compression_level = 6;
};

/// When and how a failed batch is sent again (see retry_policy.hpp and docs/delivery.md).
struct retry_config {
    /// Attempts per batch, the first included. Default 5. 1 means no retries; 0 is invalid.
    unsigned max_attempts = 5;
    /// Backoff before the first retry; doubles each attempt, full jitter. Default 200 ms.
    std::chrono::milliseconds base_backoff{200};
    /// Largest backoff between two attempts. Default 30 s.
    std::chrono::milliseconds max_backoff{30'000};
    /// Total time a batch may spend retrying, from its first attempt; a retry that would start
    /// later is not made. Default 2 min. 0 means no limit (max_attempts still applies).
    std::chrono::milliseconds max_retry_time{120'000};
    /// Largest wait honoured from a Retry-After header; a longer one is capped. Default 60 s.
    std::chrono::milliseconds max_retry_after{60'000};
};

/// Endpoint health: how an outage is recognised, probed and ridden out (docs/delivery.md).
struct health_config {
    /// Consecutive endpoint-level failures (refused, reset, resolve failure, connect or request
    /// timeout, TLS handshake failure, malformed response, 408, 429, 5xx) after which the
    /// endpoint is `down`: no batch is attempted, batches are held, and one probe at a time
    /// checks whether it is back. Default 3. 0 turns health tracking off (every batch retries
    /// on its own, as retry_config says). A 429 with Retry-After makes it down at once.
    unsigned failure_threshold = 3;
    /// Wait before the first probe of an outage; doubles after each failed probe, with
    /// jitter (each wait is between half and all of the step). Default 250 ms. Must be >= 1 ms.
    std::chrono::milliseconds probe_initial{250};
    /// Longest wait between two probes. Default 5 s. Must be >= probe_initial. It bounds how
    /// long an endpoint that is back stays unused (its held batches, and the room they fill,
    /// wait for the next probe); a probe costs one request.
    std::chrono::milliseconds probe_max{5'000};
    /// A batch not delivered this long after it was closed is dropped (reason `expired`),
    /// whatever its stage. Default 24 h. 0 means no limit.
    std::chrono::milliseconds max_age{24 * 3600 * 1000};
};

/// When spooled bytes are made durable (docs/delivery.md, "Disk spool").
enum class spool_fsync {
    /// Never by evdispatch: the kernel writes the page cache back. Survives the process dying
    /// (kill -9, a crash), not a power loss or a kernel crash.
    none,
    /// fdatasync at most spool_config::fsync_interval after a write: a power loss loses at most
    /// that much. The default.
    interval,
    /// fdatasync after every batch, before it counts as spooled: nothing spooled is lost.
    every_batch,
};

/// Which batches go to the disk spool.
enum class spool_mode {
    /// A sealed batch is written when the memory room (backlog_max_bytes) is half full, when its
    /// endpoint is down, or when the close deadline passes; it is read back when the endpoint
    /// is up and there is room. The default.
    overflow,
    /// Every batch is written before its first attempt (and kept in memory too): a kill -9 loses
    /// at most what the fsync policy allows. Costs a disk write per batch.
    always,
};

/// The disk spool (docs/delivery.md): batches that do not fit in memory, wait out an outage
/// longer than the memory room holds, or are pending at close survive in files under `dir`,
/// and a later processor with the same `dir` delivers them. Off while `dir` is empty.
struct spool_config {
    /// Directory of the spool; must exist and be writable. Each processor writes its own
    /// subdirectory (held with a lock) and adopts those of processes that are gone. Default
    /// empty: no spool.
    std::string dir;
    /// Largest size of this processor's spool files, in bytes. When it is reached, the newest
    /// batch that does not fit in memory either is dropped (reason spool_full). Default 1 GiB.
    /// Must be >= segment_bytes.
    std::uint64_t max_bytes = 1ull << 30;
    /// Size of one spool file (segment); a file is removed once each of its batches is settled.
    /// Default 8 MiB. Must be >= batch.max_batch_bytes + 4 KiB.
    std::uint64_t segment_bytes = 8ull << 20;
    spool_fsync fsync = spool_fsync::interval;  ///< Default interval.
    /// With fsync interval: the longest time written bytes stay unsynced. Default 1 s. > 0.
    std::chrono::milliseconds fsync_interval{1'000};
    spool_mode mode = spool_mode::overflow;  ///< Default overflow.
    /// A spooled batch older than this (since it was sealed, across restarts) is dropped
    /// (reason expired) instead of sent. Default 7 days. 0 means no limit.
    std::chrono::milliseconds max_age{7 * 24 * 3600 * 1000ll};
};

/// TLS settings for https:// endpoints.
struct tls_config {
    /// Extra CA bundle file (PEM) trusted besides the system store. Default: none.
    std::string ca_file;
    /// Extra CA directory (hashed, as `openssl rehash`) trusted besides the system store.
    std::string ca_path;
    /// Turns off certificate and host name verification. Default false. Insecure: a
    /// man-in-the-middle can read and change every batch. Only for tests against self-signed
    /// servers when a CA file cannot be given.
    bool insecure_skip_verify = false;
};

/// Configuration of batch_event_processor.
struct processor_config {
    /// Endpoint URL of the built-in HTTP dispatcher, checked at construction (http:// or
    /// https://). Each batch goes to the endpoint of its events' context; the dispatcher keeps a
    /// pool per endpoint, and this one is used for a context without an endpoint.
    std::string endpoint = "https://logx.optimizely.com/v1/events";
    /// Capacity of the lock-free hand-off ring, in events. Default 10,000. Must be >= 2.
    std::size_t queue_capacity = 10'000;
    batch_config batch;    ///< Batching rules.
    http_config http;      ///< HTTP transport.
    tls_config tls;        ///< TLS verification.
    retry_config retry;    ///< Retries with backoff.
    health_config health;  ///< Outage detection, holding and probing.
    spool_config spool;    ///< The disk spool (off by default).
    /// Bytes of closed batches waiting to be sent: queued for a free connection, waiting to
    /// retry, or held while their endpoint is down. While they leave no room for one more full
    /// batch, the ring is not drained (process() then refuses with queue_full once the ring is
    /// full). A batch that still does not fit is dropped (reason backlog_full). Default 16 MiB.
    /// Must be at least batch.max_batch_bytes.
    std::size_t backlog_max_bytes = 16 * 1024 * 1024;
    /// Deadline used by the destructor of a processor that is still open. Default 5 s.
    std::chrono::milliseconds destructor_close_timeout{5'000};
    /// Events moved from the ring per strand turn before yielding to I/O. Default 1024.
    std::size_t drain_chunk = 1024;
    /// While events keep coming, the strand looks at the ring again this long after a drain
    /// that found events, instead of waiting to be woken: producers then never make the system
    /// call that wakes it (an eventfd write of ~1-3 us on the thread that decides a
    /// variation). A look that finds the ring empty lets the strand sleep, and the next event
    /// wakes it as before. An event waits at most this long before it is batched. 0: a
    /// producer wakes the strand every time it went idle. Default 200 us; at most 1 s.
    std::chrono::microseconds drain_poll{200};
};

}  // namespace evdispatch
