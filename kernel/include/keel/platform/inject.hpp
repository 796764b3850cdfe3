// Seeded-bug injection points.
//
// Contract: kernel code marks a place where a realistic mistake could be made
// with `if (KEEL_INJECTED(name)) { <the mistake> } else { <the right code> }`.
// Normal builds define neither KEEL_INJECT nor KEEL_INJECT_AT_RUNTIME, so every
// point is a constant false condition and compiles away. A model's seeded-bug
// twin is the same model with that one point switched on; `make verify`
// requires the twin to fail, which proves the model can see that mistake in the
// shipped code.
//
// Two ways to switch a point on:
// - -DKEEL_INJECT=name: at compile time, one binary per twin.
// - -DKEEL_INJECT_AT_RUNTIME: the point named by the KEEL_INJECT environment
//   variable (read once, before main). `make verify` builds each model once this
//   way and runs the binary once per twin, so the kernel is compiled once per
//   model, not once per twin.
//
// Invariants: none of its own; it is how every model shows its checks can fail.
#pragma once

#include <string_view>

#if defined(KEEL_INJECT_AT_RUNTIME)
#include <cstdlib>

namespace keel::platform {
// Set before main from the environment; never written afterwards.
inline const std::string_view injected_point = [] {
  const char* name = std::getenv("KEEL_INJECT");  // NOLINT(concurrency-mt-unsafe): before main
  return name != nullptr ? std::string_view(name) : std::string_view();
}();
}  // namespace keel::platform

#else
#define KEEL_INJECT_STR2(x) #x
#define KEEL_INJECT_STR(x) KEEL_INJECT_STR2(x)

namespace keel::platform {
// Stringizing an undefined KEEL_INJECT yields "KEEL_INJECT", which names no point.
inline constexpr std::string_view injected_point = KEEL_INJECT_STR(KEEL_INJECT);
}  // namespace keel::platform
#endif

#define KEEL_INJECTED(name) (::keel::platform::injected_point == std::string_view(#name))
