// keel::MapProgress and keel::zip: what the maps of every pool share beyond
// their futures. MapProgress is the progress callback of MapOptions and
// ProcessMapOptions; zip pairs several ranges up for starmap (Python's
// `starmap(fn, zip(a, b))`, which stops at the shortest).
//
// Contract, progress (detail::ProgressTracker is its one implementation):
// - the callback gets (done, total) once per call of the map that reaches a
//   final state (a value, an error, or cancelled through its future):
//   done = 1, 2, ..., each value once, in that order; total is the number of
//   calls when the map knows it (a sized range; a process or cluster pool's
//   map always does), else 0; a process pool's chunk of calls reaches its
//   final state as one, until futures() gives each call a future of its
//   own: from then each call counts at its own (a cancel of one call counts
//   at the cancel);
// - it runs on the thread that made the call final (a thread pool worker,
//   a process or cluster pool's supervisor thread), or on the thread that
//   asked for the future when the call was already final then (run by the
//   caller, or done before the map watched it); never two at once: the
//   calls are serialized by one lock, held while the callback runs;
// - never after the map's results object was destroyed (its destructor
//   waits for a running call): so it must not destroy those results itself;
//   and by then every call that was final is counted: a count whose call
//   was final but whose own report had not run yet is given by the
//   destroying thread, so a map consumed to its end always reaches total;
// - an exception it throws goes to the error reporter
//   (keel::set_error_reporter, where "map progress callback") and the map
//   goes on.
//
// Contract, zip(r...): a range of std::tuple<reference...>, one element of
// each range in turn, ending with the shortest. An lvalue range is used in
// place (it must outlive the zip); an rvalue range is moved into the zip.
//
// Invariants: MAP-1 (progress: each count once, in order, never after the
// results are gone; proofs/INVARIANTS.md).
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <functional>
#include <iterator>
#include <memory>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "keel/error.hpp"
#include "keel/future/future.hpp"
#include "keel/sync/mutex.hpp"

namespace keel {

/// A map's progress callback: (calls final so far, calls in all or 0 when unknown); see map_progress.hpp.
using MapProgress = std::function<void(std::size_t done, std::size_t total)>;

namespace detail {

// One map's progress: counts final calls and reports each count once, under
// its lock, until stop() (the results' destructor) returns.
class ProgressTracker {
 public:
  // `chunks`: how many chunks watch_chunk() will be given (a process pool's
  // map with chunksize > 1), each counted apart.
  ProgressTracker(MapProgress fn, std::size_t total, std::size_t chunks = 0)
      : fn_(std::move(fn)), total_(total), chunk_counted_(chunks, 0) {}

  // Watches f: `weight` counts (the calls it stands for) when it is final
  // (at once, here, if it already is).
  template <class R>
  static void watch(const std::shared_ptr<ProgressTracker>& self, Future<R> f, std::size_t weight = 1) {
    f.add_done_callback([self, weight](const Future<R>&) { self->some_done(weight); });
  }
  // Watches chunk c (c < chunks), whose future f stands for n calls: when f
  // is final, the chunk's calls not counted one by one yet (watch_chunk_call,
  // once its calls have futures of their own) count. Each call of the chunk
  // counts once whichever of the two comes first: a call cancelled on its
  // own counts at its cancel, not when the last of its chunk ends.
  template <class F>
  static void watch_chunk(const std::shared_ptr<ProgressTracker>& self, F f, std::size_t c, std::size_t n) {
    f.add_done_callback([self, c, n](const F&) { self->chunk_done(c, n); });
  }
  // Watches f, one call of chunk c (of n calls) split off it: it counts
  // when it is final, unless its chunk's count came first.
  template <class R>
  static void watch_chunk_call(const std::shared_ptr<ProgressTracker>& self, Future<R> f, std::size_t c,
                               std::size_t n) {
    f.add_done_callback([self, c, n](const Future<R>&) { self->chunk_call_done(c, n); });
  }
  // `final_now` of the watched calls are final (the caller counted them):
  // their counts not yet given are given here, on this thread; then no call
  // starts after this returns, and none is running then. A final call's own
  // report may still be on its way (futures wake their waiters before they
  // run their callbacks): it finds the tracker stopped.
  void stop(std::size_t final_now) noexcept {
    LockGuard g(m_);
    while (live_ && done_ < final_now) report();
    live_ = false;
  }

 private:
  void some_done(std::size_t n) noexcept {
    LockGuard g(m_);
    for (std::size_t i = 0; i < n && live_; ++i) report();
  }
  void chunk_done(std::size_t c, std::size_t n) noexcept {
    LockGuard g(m_);
    const std::size_t rest = n - chunk_counted_[c];
    chunk_counted_[c] = n;
    for (std::size_t i = 0; i < rest && live_; ++i) report();
  }
  void chunk_call_done(std::size_t c, std::size_t n) noexcept {
    LockGuard g(m_);
    if (chunk_counted_[c] == n) return;  // the chunk's own count had this call
    ++chunk_counted_[c];
    if (live_) report();
  }
  void report() noexcept KEEL_REQUIRES(m_) {
    ++done_;
    try {
      fn_(done_, total_);
    } catch (...) {
      report_error("map progress callback", std::current_exception());
    }
  }

  Mutex m_;
  const MapProgress fn_;
  const std::size_t total_;
  std::size_t done_ KEEL_GUARDED_BY(m_) = 0;
  bool live_ KEEL_GUARDED_BY(m_) = true;
  std::vector<std::size_t> chunk_counted_ KEEL_GUARDED_BY(m_);  // per chunk: its calls counted so far
};

// How many of fs are final now.
template <class Futures>
std::size_t count_final(const Futures& fs) {
  std::size_t n = 0;
  for (const auto& f : fs) n += f.done() ? 1 : 0;
  return n;
}

// A tracker for `total` calls, or null without a callback.
inline std::shared_ptr<ProgressTracker> make_progress(const MapProgress& fn, std::size_t total,
                                                      std::size_t chunks = 0) {
  return fn ? std::make_shared<ProgressTracker>(fn, total, chunks) : nullptr;
}

// The number of elements of r when it is a sized range, else 0 (unknown).
template <class Range>
std::size_t size_or_zero(Range& r) {
  if constexpr (std::ranges::sized_range<Range>) {
    return static_cast<std::size_t>(std::ranges::size(r));
  } else {
    (void)r;
    return 0;
  }
}

template <class T>
concept TupleLike = requires {
  std::tuple_size<std::remove_cvref_t<T>>::value;
};

// Whether Fn can be called with the elements of a Tuple, each copied and
// passed as an rvalue (as submit passes its arguments).
template <class Fn, class Tuple, std::size_t... I>
constexpr bool applicable_at(std::index_sequence<I...>) {
  return std::is_invocable_v<Fn, std::decay_t<std::tuple_element_t<I, Tuple>>&&...>;
}
template <class Fn, class Tuple>
constexpr bool applicable() {
  if constexpr (TupleLike<Tuple>) {
    using T = std::remove_cvref_t<Tuple>;
    return applicable_at<Fn, T>(std::make_index_sequence<std::tuple_size_v<T>>{});
  } else {
    return false;
  }
}

// A tuple of copies of t's elements: what a starmap task keeps of one input.
template <class Tuple>
auto copy_tuple(Tuple&& t) {
  return std::apply([](auto&&... xs) { return std::tuple<std::decay_t<decltype(xs)>...>(xs...); },
                    std::forward<Tuple>(t));
}

// fn applied to a tuple of arguments (starmap's task).
template <class F>
struct Applied {
  F fn;
  // Each task calls its own copy, once.
  template <class Tuple>
  decltype(auto) operator()(Tuple&& t) {
    return std::apply(std::move(fn), std::forward<Tuple>(t));
  }
};

// The iterator of a Zip: one iterator per range; the end when any is at its end.
template <class... It>
class ZipIterator {
 public:
  using difference_type = std::ptrdiff_t;
  using value_type = std::tuple<std::iter_reference_t<It>...>;

  ZipIterator() = default;
  explicit ZipIterator(std::tuple<It...> its) : its_(std::move(its)) {}
  value_type operator*() const {
    return std::apply([](const auto&... it) { return value_type(*it...); }, its_);
  }
  ZipIterator& operator++() {
    std::apply([](auto&... it) { (++it, ...); }, its_);
    return *this;
  }
  void operator++(int) { ++*this; }
  template <class... S>
  bool at_end(const std::tuple<S...>& ends) const {
    return at_end_of(ends, std::index_sequence_for<It...>{});
  }

 private:
  template <class Ends, std::size_t... I>
  bool at_end_of(const Ends& ends, std::index_sequence<I...>) const {
    return ((std::get<I>(its_) == std::get<I>(ends)) || ...);
  }
  std::tuple<It...> its_;
};

// Zip's end: the ranges' own ends.
template <class... S>
struct ZipSentinel {
  std::tuple<S...> ends;
  template <class... It>
  friend bool operator==(const ZipIterator<It...>& it, const ZipSentinel& s) {
    return it.at_end(s.ends);
  }
};

}  // namespace detail

/// Ranges side by side (what zip returns): std::tuple<reference...> elements, as long as the shortest range.
template <class... R>
class Zip {
 public:
  /// Holds each range: an lvalue by reference, an rvalue moved in (keel::zip makes one).
  template <class... A>
  explicit Zip(std::in_place_t, A&&... rs) : rs_(std::forward<A>(rs)...) {}
  /// The first tuple.
  auto begin() {
    return detail::ZipIterator<decltype(std::ranges::begin(std::declval<R&>()))...>(
        std::apply([](auto&... r) { return std::tuple(std::ranges::begin(r)...); }, rs_));
  }
  /// The end: where the shortest range ends.
  auto end() {
    return detail::ZipSentinel<decltype(std::ranges::end(std::declval<R&>()))...>{
        std::apply([](auto&... r) { return std::tuple(std::ranges::end(r)...); }, rs_)};
  }
  /// The shortest range's length (only when every range is sized).
  std::size_t size() requires(std::ranges::sized_range<std::remove_reference_t<R>>&&...) {
    return std::apply([](auto&... r) { return std::min({static_cast<std::size_t>(std::ranges::size(r))...}); }, rs_);
  }

 private:
  std::tuple<R...> rs_;
};

/// The ranges side by side, to the end of the shortest (Python's zip), for starmap.
template <class... R>
Zip<R...> zip(R&&... rs) {
  static_assert(sizeof...(R) > 0, "keel::zip: give it at least one range");
  return Zip<R...>(std::in_place, std::forward<R>(rs)...);
}

}  // namespace keel
