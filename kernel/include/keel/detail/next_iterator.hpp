// keel::detail::NextIterator: the input iterator of any sequence with a
// next() that returns std::optional of its value_type (as_completed, both
// pools' map results), so each of them is usable in a range-for.
//
// Contract: a range-for calls next() once per element and once more for the
// std::nullopt that ends it; begin() already calls it once. The iterator
// holds the current element; all iterators at the end compare equal.
//
// Invariants: none of its own (its sequences keep theirs).
#pragma once

#include <cstddef>
#include <optional>

namespace keel::detail {

// The input iterator of a sequence whose next() returns std::optional of its
// value_type, nullopt at the end (as_completed, ThreadPoolExecutor::map): a
// range-for over the sequence calls next() once per element.
template <class Seq>
class NextIterator {
 public:
  using value_type = typename Seq::value_type;
  using difference_type = std::ptrdiff_t;
  NextIterator() = default;
  explicit NextIterator(Seq* seq) : seq_(seq) { ++*this; }
  value_type& operator*() { return *cur_; }
  NextIterator& operator++() {
    cur_ = seq_->next();
    if (!cur_) seq_ = nullptr;
    return *this;
  }
  void operator++(int) { ++*this; }
  friend bool operator==(const NextIterator& a, const NextIterator& b) { return a.seq_ == b.seq_; }

 private:
  Seq* seq_ = nullptr;
  std::optional<value_type> cur_;
};

}  // namespace keel::detail
