#pragma once

/// @file evdispatch.hpp
/// Umbrella header: the whole public API of evdispatch.

#include <evdispatch/collector.hpp>
#include <evdispatch/config.hpp>
#include <evdispatch/error.hpp>
#include <evdispatch/event.hpp>
#include <evdispatch/event_builder.hpp>
#include <evdispatch/event_dispatcher.hpp>
#include <evdispatch/host_resolver.hpp>
#include <evdispatch/http_event_dispatcher.hpp>
#include <evdispatch/log_event.hpp>
#include <evdispatch/metrics.hpp>
#include <evdispatch/processor.hpp>
#include <evdispatch/project_config.hpp>
#include <evdispatch/retry_policy.hpp>
#include <evdispatch/sdk_batch.hpp>
#include <evdispatch/value.hpp>
