// The field listing behind keel's codec for plain aggregates (codec.hpp):
// how many fields an aggregate has, their types, and a call with all of them,
// found with C++20 alone (Debian 12's Boost is 1.74, older than Boost.PFR).
// Not for users: codec.hpp is the contract.
//
// Contract: fields_listable<T> holds for a class aggregate whose fields the
// language lets us list exactly: at most max_fields of them, no C-array
// member, no field type that is neither default-constructible nor
// list-initializable from one value. A base class makes the listing a compile
// error (below). Then
// field_count<T> is the number of fields, field_types<T> their declared types
// in declaration order (a reference member shows as a reference), and
// for_each_field(t, fn) calls fn(type_list<declared types...>{}, f0, f1, ...)
// with const references to the fields.
//
// How the count is found: T{a0, ..., aN-1}, where each a converts to any type,
// is well formed exactly up to the number of fields (fewer leave the rest
// value-initialized). A C-array member swallows one a per element (brace
// elision), so the count is confirmed with every clause in braces, which
// elision cannot split: all {a}, or else all {} (some types, such as
// std::chrono's, are ambiguous or explicit from {a}; an empty class has no
// element to take the a).
// A structured binding with the count then names the fields; a base class
// with fields makes that binding ill-formed, which is a compile error, never
// a wrong encoding.
//
// Invariants: IPC-1 (through codec.hpp: the fields are encoded and checked
// like any other value).
#pragma once

#include <cstddef>
#include <cstdlib>
#include <type_traits>
#include <utility>

namespace keel::detail {

template <class... T>
struct type_list {};

// The most fields an aggregate may have for the codec to list them.
inline constexpr std::size_t max_fields = 24;
inline constexpr std::size_t no_field_count = static_cast<std::size_t>(-1);

// Converts to anything; only ever named in unevaluated operands. Defined all
// the same, since clang counts a declared-only function of a type with
// internal linkage (an anonymous namespace's) as used and undefined.
struct any_field {
  template <class U>
  [[noreturn]] operator U() const {  // NOLINT(google-explicit-constructor): the conversion is the point
    std::abort();
  }
};

template <class T, std::size_t... I>
constexpr bool init_with_plain(std::index_sequence<I...>) {
  return requires { T{((void)I, any_field{})...}; };
}

template <class T, std::size_t... I>
constexpr bool init_with_braced_any(std::index_sequence<I...>) {
  return requires { T{{((void)I, any_field{})}...}; };
}

// T{{}, ..., {}} with N clauses (a pack cannot expand to `{}`).
template <class T, std::size_t N>
constexpr bool init_with_empty_braces() {
  static_assert(N <= max_fields + 1);
  if constexpr (N == 0) {
    return requires { T{}; };
  } else if constexpr (N == 1) {
    return requires { T{{}}; };
  } else if constexpr (N == 2) {
    return requires { T{{}, {}}; };
  } else if constexpr (N == 3) {
    return requires { T{{}, {}, {}}; };
  } else if constexpr (N == 4) {
    return requires { T{{}, {}, {}, {}}; };
  } else if constexpr (N == 5) {
    return requires { T{{}, {}, {}, {}, {}}; };
  } else if constexpr (N == 6) {
    return requires { T{{}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 7) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 8) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 9) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 10) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 11) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 12) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 13) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 14) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 15) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 16) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 17) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 18) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 19) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 20) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 21) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 22) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 23) {
    return requires { T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}}; };
  } else if constexpr (N == 24) {
    return requires {
      T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}};
    };
  } else if constexpr (N == 25) {
    return requires {
      T{{}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}, {}};
    };
  }
}

// The largest N for which T{a0, ..., aN-1} is well formed, or no_field_count
// if there is none or it exceeds max_fields.
template <class T, std::size_t N = 0, bool seen = false>
constexpr std::size_t brace_count() {
  if constexpr (N > max_fields + 1) {
    return no_field_count;
  } else if constexpr (init_with_plain<T>(std::make_index_sequence<N>{})) {
    return brace_count<T, N + 1, true>();
  } else if constexpr (seen) {
    return N - 1;
  } else {
    return brace_count<T, N + 1, false>();
  }
}

template <class T>
constexpr std::size_t listable_count() {
  if constexpr (!std::is_class_v<T> || !std::is_aggregate_v<T>) {
    return no_field_count;
  } else {
    constexpr std::size_t n = brace_count<T>();
    if constexpr (n == no_field_count) {
      return no_field_count;
    } else {
      constexpr bool confirmed =
          init_with_braced_any<T>(std::make_index_sequence<n>{}) || init_with_empty_braces<T, n>();
      return confirmed ? n : no_field_count;
    }
  }
}

template <class T>
concept fields_listable = listable_count<std::remove_cv_t<T>>()
!= no_field_count;

template <class T>
requires fields_listable<T>
inline constexpr std::size_t field_count = listable_count<std::remove_cv_t<T>>();

// fn(type_list<declared field types>{}, f0, ..., fN-1) with the fields of t,
// N = field_count<T>.
template <class T, class Fn>
requires fields_listable<T>
constexpr decltype(auto) for_each_field(const T& t, Fn&& fn) {
  constexpr std::size_t N = field_count<T>;
  static_assert(N <= max_fields);
  if constexpr (N == 0) {
    (void)t;
    return fn(type_list<>{});
  } else if constexpr (N == 1) {
    const auto& [f0] = t;
    return fn(type_list<decltype(f0)>{}, f0);
  } else if constexpr (N == 2) {
    const auto& [f0, f1] = t;
    return fn(type_list<decltype(f0), decltype(f1)>{}, f0, f1);
  } else if constexpr (N == 3) {
    const auto& [f0, f1, f2] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2)>{}, f0, f1, f2);
  } else if constexpr (N == 4) {
    const auto& [f0, f1, f2, f3] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3)>{}, f0, f1, f2, f3);
  } else if constexpr (N == 5) {
    const auto& [f0, f1, f2, f3, f4] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4)>{}, f0, f1, f2, f3, f4);
  } else if constexpr (N == 6) {
    const auto& [f0, f1, f2, f3, f4, f5] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5)>{}, f0, f1,
              f2, f3, f4, f5);
  } else if constexpr (N == 7) {
    const auto& [f0, f1, f2, f3, f4, f5, f6] = t;
    return fn(
        type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5), decltype(f6)>{},
        f0, f1, f2, f3, f4, f5, f6);
  } else if constexpr (N == 8) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5),
                        decltype(f6), decltype(f7)>{},
              f0, f1, f2, f3, f4, f5, f6, f7);
  } else if constexpr (N == 9) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5),
                        decltype(f6), decltype(f7), decltype(f8)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8);
  } else if constexpr (N == 10) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5),
                        decltype(f6), decltype(f7), decltype(f8), decltype(f9)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9);
  } else if constexpr (N == 11) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5),
                        decltype(f6), decltype(f7), decltype(f8), decltype(f9), decltype(f10)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10);
  } else if constexpr (N == 12) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5),
                        decltype(f6), decltype(f7), decltype(f8), decltype(f9), decltype(f10), decltype(f11)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11);
  } else if constexpr (N == 13) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12] = t;
    return fn(
        type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5), decltype(f6),
                  decltype(f7), decltype(f8), decltype(f9), decltype(f10), decltype(f11), decltype(f12)>{},
        f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12);
  } else if constexpr (N == 14) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5),
                        decltype(f6), decltype(f7), decltype(f8), decltype(f9), decltype(f10), decltype(f11),
                        decltype(f12), decltype(f13)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13);
  } else if constexpr (N == 15) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5),
                        decltype(f6), decltype(f7), decltype(f8), decltype(f9), decltype(f10), decltype(f11),
                        decltype(f12), decltype(f13), decltype(f14)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14);
  } else if constexpr (N == 16) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5),
                        decltype(f6), decltype(f7), decltype(f8), decltype(f9), decltype(f10), decltype(f11),
                        decltype(f12), decltype(f13), decltype(f14), decltype(f15)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15);
  } else if constexpr (N == 17) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5),
                        decltype(f6), decltype(f7), decltype(f8), decltype(f9), decltype(f10), decltype(f11),
                        decltype(f12), decltype(f13), decltype(f14), decltype(f15), decltype(f16)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16);
  } else if constexpr (N == 18) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5),
                        decltype(f6), decltype(f7), decltype(f8), decltype(f9), decltype(f10), decltype(f11),
                        decltype(f12), decltype(f13), decltype(f14), decltype(f15), decltype(f16), decltype(f17)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17);
  } else if constexpr (N == 19) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18] = t;
    return fn(
        type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5), decltype(f6),
                  decltype(f7), decltype(f8), decltype(f9), decltype(f10), decltype(f11), decltype(f12), decltype(f13),
                  decltype(f14), decltype(f15), decltype(f16), decltype(f17), decltype(f18)>{},
        f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18);
  } else if constexpr (N == 20) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19] = t;
    return fn(
        type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5), decltype(f6),
                  decltype(f7), decltype(f8), decltype(f9), decltype(f10), decltype(f11), decltype(f12), decltype(f13),
                  decltype(f14), decltype(f15), decltype(f16), decltype(f17), decltype(f18), decltype(f19)>{},
        f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19);
  } else if constexpr (N == 21) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5),
                        decltype(f6), decltype(f7), decltype(f8), decltype(f9), decltype(f10), decltype(f11),
                        decltype(f12), decltype(f13), decltype(f14), decltype(f15), decltype(f16), decltype(f17),
                        decltype(f18), decltype(f19), decltype(f20)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20);
  } else if constexpr (N == 22) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21] =
        t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5),
                        decltype(f6), decltype(f7), decltype(f8), decltype(f9), decltype(f10), decltype(f11),
                        decltype(f12), decltype(f13), decltype(f14), decltype(f15), decltype(f16), decltype(f17),
                        decltype(f18), decltype(f19), decltype(f20), decltype(f21)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21);
  } else if constexpr (N == 23) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21,
                 f22] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5),
                        decltype(f6), decltype(f7), decltype(f8), decltype(f9), decltype(f10), decltype(f11),
                        decltype(f12), decltype(f13), decltype(f14), decltype(f15), decltype(f16), decltype(f17),
                        decltype(f18), decltype(f19), decltype(f20), decltype(f21), decltype(f22)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21, f22);
  } else if constexpr (N == 24) {
    const auto& [f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21,
                 f22, f23] = t;
    return fn(type_list<decltype(f0), decltype(f1), decltype(f2), decltype(f3), decltype(f4), decltype(f5),
                        decltype(f6), decltype(f7), decltype(f8), decltype(f9), decltype(f10), decltype(f11),
                        decltype(f12), decltype(f13), decltype(f14), decltype(f15), decltype(f16), decltype(f17),
                        decltype(f18), decltype(f19), decltype(f20), decltype(f21), decltype(f22), decltype(f23)>{},
              f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21, f22,
              f23);
  }
}

// The declared field types, through a call that is only ever named in decltype
// (defined for the reason any_field is).
struct field_types_fn {
  template <class List, class... F>
  List operator()(List list, const F&...) const {
    return list;
  }
};

template <class T>
requires fields_listable<T>
using field_types = decltype(for_each_field(std::declval<const T&>(), field_types_fn{}));

}  // namespace keel::detail
