// keel::platform stop tokens: the kernel's door to std::stop_source and
// std::stop_token (cooperative cancellation of a running task).
//
// Contract: StopSource and StopToken are the standard types, so a task written
// against std::stop_token receives exactly that. A StopSource made with
// no_stop_state() owns nothing and costs no allocation; kernel code creates a
// real one only for tasks that accept a token. Under KEEL_MODEL_RELACY the
// same standard types are used: their internal atomics are not explored by
// the model, which only observes whether a stop was requested.
//
// Invariants: PLAT-1 (<stop_token> is reached only through the shim).
#pragma once

#include "keel/platform/config.hpp"

#include <stop_token>

namespace keel::platform {

using StopSource = std::stop_source;
using StopToken = std::stop_token;

inline StopSource no_stop_state() noexcept { return StopSource(std::nostopstate); }

}  // namespace keel::platform
