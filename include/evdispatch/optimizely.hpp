#pragma once

/// @file optimizely.hpp
/// Umbrella header of evdispatch::optimizely: Optimizely v1 events built field for field as
/// the official SDKs build them (event_builder), datafile lookups (project_config), and the
/// splitter for batches an SDK already made (sdk_batch). Includes <evdispatch/evdispatch.hpp>.

#include <evdispatch/evdispatch.hpp>
#include <evdispatch/optimizely/event_builder.hpp>
#include <evdispatch/optimizely/project_config.hpp>
#include <evdispatch/optimizely/sdk_batch.hpp>
#include <evdispatch/optimizely/value.hpp>
