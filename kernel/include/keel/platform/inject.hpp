// Seeded-bug injection points.
//
// Contract: kernel code marks a place where a realistic mistake could be made
// with `if constexpr (KEEL_INJECTED(name)) { <the mistake> } else { <the right code> }`.
// Normal builds leave KEEL_INJECT undefined, so every injection point is a
// compile-time false branch and costs nothing. A model's seeded-bug twin is the
// same model built with -DKEEL_INJECT=name; `make verify` requires the twin to
// fail, which proves the model can see that mistake in the shipped code.
//
// Invariants: none of its own; it is how every model shows its checks can fail.
#pragma once

#include <string_view>

#define KEEL_INJECT_STR2(x) #x
#define KEEL_INJECT_STR(x) KEEL_INJECT_STR2(x)

namespace keel::platform {
// Stringizing an undefined KEEL_INJECT yields "KEEL_INJECT", which names no point.
inline constexpr std::string_view injected_point = KEEL_INJECT_STR(KEEL_INJECT);
}  // namespace keel::platform

#define KEEL_INJECTED(name) (::keel::platform::injected_point == std::string_view(#name))
