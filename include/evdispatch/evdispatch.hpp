#pragma once

/// @file evdispatch.hpp
/// Umbrella header of evdispatch::evdispatch: the pipeline (processor, configuration, events,
/// metrics, errors) and the HTTP(S) dispatcher. The Optimizely event builder and datafile are
/// in <evdispatch/optimizely.hpp> (target evdispatch::optimizely); the loopback collector in
/// <evdispatch/collector/collector.hpp> (target evdispatch::collector).

#include <evdispatch/config.hpp>
#include <evdispatch/endpoint_url.hpp>
#include <evdispatch/error.hpp>
#include <evdispatch/event.hpp>
#include <evdispatch/event_dispatcher.hpp>
#include <evdispatch/host_resolver.hpp>
#include <evdispatch/http_event_dispatcher.hpp>
#include <evdispatch/log_event.hpp>
#include <evdispatch/metrics.hpp>
#include <evdispatch/processor.hpp>
#include <evdispatch/retry_policy.hpp>
#include <evdispatch/spool.hpp>
#include <evdispatch/version.hpp>
