// keel::platform::Var<T>: a plain shared variable that the model checker watches.
//
// Contract: state that several threads touch without atomics, protected by a
// keel lock or ordered by keel atomics, is declared Var<T> and accessed only
// through load() and store(). Natively it is a plain T (no cost). Under
// KEEL_MODEL_RELACY it is rl::var<T>, so any access pair not ordered by
// happens-before is reported as a data race at the kernel's own source line.
//
// Invariants: PLAT-2 (shared plain state is visible to the model checker;
// proofs/shared_state.txt classifies every kernel member, and
// tools/check_shared_state.py checks that list against the source).
#pragma once

#include "keel/platform/config.hpp"

#include <cstddef>
#include <cstring>

namespace keel::platform {

#if KEEL_MODEL

namespace detail {
template <class T, bool = std::is_enum_v<T>>
struct VarStorage {
  using type = T;
};
// Relacy prints every value in its histories; enums print as their number.
template <class T>
struct VarStorage<T, true> {
  using type = std::underlying_type_t<T>;
};
// So do bytes: printed as characters they would put raw bytes in the log.
template <>
struct VarStorage<unsigned char, false> {
  using type = unsigned;
};
}  // namespace detail

template <class T>
class Var {
  using Stored = typename detail::VarStorage<T>::type;

 public:
  Var() : v_(Stored{}) {}
  explicit Var(T v) : v_(static_cast<Stored>(v)) {}
  Var(const Var&) = delete;
  Var& operator=(const Var&) = delete;
  T load(std::source_location l = std::source_location::current()) const {
    return static_cast<T>(Stored(v_(rl::debug_info(l.function_name(), l.file_name(), l.line())).load()));
  }
  void store(T v, std::source_location l = std::source_location::current()) {
    v_(rl::debug_info(l.function_name(), l.file_name(), l.line())).store(static_cast<Stored>(v));
  }

 private:
  rl::var<Stored> v_;
};

#else

template <class T>
class Var {
 public:
  constexpr Var() noexcept(std::is_nothrow_default_constructible_v<T>) : v_() {}
  constexpr explicit Var(T v) noexcept(std::is_nothrow_move_constructible_v<T>) : v_(std::move(v)) {}
  Var(const Var&) = delete;
  Var& operator=(const Var&) = delete;
  T load() const noexcept(std::is_nothrow_copy_constructible_v<T>) { return v_; }
  void store(T v) noexcept(std::is_nothrow_move_assignable_v<T>) { v_ = std::move(v); }

 private:
  T v_;
};

#endif

// Byte runs in an array of Var<unsigned char> (a ring in memory another
// process maps): natively one memcpy, since such a Var is a plain byte;
// under the model one watched access per byte, so a run read before its
// writer published it is reported as a race at the caller's line.
using Byte = Var<unsigned char>;
#if KEEL_MODEL
inline void store_bytes(Byte* dst, const char* src, std::size_t n,
                        std::source_location l = std::source_location::current()) {
  for (std::size_t i = 0; i < n; ++i) dst[i].store(static_cast<unsigned char>(src[i]), l);
}
inline void load_bytes(char* dst, const Byte* src, std::size_t n,
                       std::source_location l = std::source_location::current()) {
  for (std::size_t i = 0; i < n; ++i) dst[i] = static_cast<char>(src[i].load(l));
}
#else
static_assert(sizeof(Byte) == 1 && alignof(Byte) == 1);
inline void store_bytes(Byte* dst, const char* src, std::size_t n) noexcept {
  if (n) std::memcpy(static_cast<void*>(dst), src, n);
}
inline void load_bytes(char* dst, const Byte* src, std::size_t n) noexcept {
  if (n) std::memcpy(dst, static_cast<const void*>(src), n);
}
#endif

// RaceMark: stands beside plain data that Var cannot hold (a future's result
// of any user type). Writers call written(), readers call read() at the same
// places they touch the data; under the model these are Var<int> accesses, so
// an unordered pair is reported as a race exactly as for a Var. Natively it
// is empty and free.
#if KEEL_MODEL
class RaceMark {
 public:
  void written(std::source_location l = std::source_location::current()) { v_.store(v_.load(l) + 1, l); }
  void read(std::source_location l = std::source_location::current()) const { (void)v_.load(l); }

 private:
  Var<int> v_;
};
#else
class RaceMark {
 public:
  void written() noexcept {}
  void read() const noexcept {}
};
#endif

}  // namespace keel::platform
