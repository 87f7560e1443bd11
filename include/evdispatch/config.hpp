#pragma once

/// @file config.hpp
/// Configuration of the processor and the HTTP dispatcher: plain aggregates, set with
/// designated initialisers. Each field states its default, its unit and what 0 means.

#include <chrono>
#include <cstddef>
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
struct http_config {
    /// Keep-alive connections to the endpoint; also the number of requests in flight.
    /// Default 4. 0 is invalid.
    std::size_t max_connections = 4;
    /// Resolve + TCP connect (+ TLS handshake) timeout. Default 5 s. 0 is invalid.
    std::chrono::milliseconds connect_timeout{5'000};
    /// Whole request/response exchange timeout. Default 10 s. 0 is invalid.
    std::chrono::milliseconds request_timeout{10'000};
    /// Largest response (headers + body) read; a larger one fails the attempt. Default 64 KiB.
    std::size_t max_response_bytes = 64 * 1024;
    /// Value of the User-Agent header. Default "evdispatch/<version>".
    std::string user_agent;
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
    /// Endpoint URL used by the built-in HTTP dispatcher when the processor creates one.
    /// http:// or https://. Events carry their own endpoint in their context; the HTTP
    /// dispatcher accepts events for this endpoint (host, port, scheme) only.
    std::string endpoint = "https://logx.optimizely.com/v1/events";
    /// Capacity of the lock-free hand-off ring, in events. Default 10,000. Must be >= 2.
    std::size_t queue_capacity = 10'000;
    batch_config batch;   ///< Batching rules.
    http_config http;     ///< HTTP transport.
    tls_config tls;       ///< TLS verification.
    /// Bytes of closed batches waiting for a free connection; a batch that would exceed it is
    /// dropped (reason backlog_full). Default 16 MiB. Must be at least batch.max_batch_bytes.
    std::size_t backlog_max_bytes = 16 * 1024 * 1024;
    /// Deadline used by the destructor of a processor that is still open. Default 5 s.
    std::chrono::milliseconds destructor_close_timeout{5'000};
    /// Events moved from the ring per strand turn before yielding to I/O. Default 1024.
    std::size_t drain_chunk = 1024;
};

}  // namespace evdispatch
