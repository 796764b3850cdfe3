// The task registry: functions a worker process can run, found by name.
//
// Contract: register_task(name, fn) records fn under a unique, non-empty name
// (ValueError otherwise, and the registry is unchanged) and returns a typed
// TaskRef<R(A...)> whose parameter types are fn's, decayed (const T& and T
// both travel as T). Register at namespace scope or in main before
// keel::bootstrap(), so the parent and every fresh worker image hold the same
// table. A worker runs a task with detail::invoke_task(name, encoded args):
// arguments that do not decode exactly are a ProtocolError before fn runs
// (IPC-1); an unknown name is a ValueError; fn's exceptions propagate, and
// encode_error/decode_error carry their demangled type and what() to the
// parent as a RemoteError, both strings kept exactly.
//
// Invariants: IPC-1 (malformed argument, result or error bytes are a ProtocolError),
// LIFE-11 (the registry's lock is held across fork(), and the registry is
// built when the program starts, so a forked child can look tasks up).
#pragma once

#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "keel/error.hpp"
#include "keel/process/codec.hpp"
#include "keel/process/detail/task_invoker.hpp"

namespace keel {

template <class Sig>
class TaskRef;

namespace detail {
struct TaskRefFactory;
}  // namespace detail

/// A typed handle to a registered task: its name, and the types its arguments
/// and result travel as. Made by register_task or TaskRef::lookup.
template <class R, class... A>
class TaskRef<R(A...)> {
 public:
  /// The task's result type, as it travels back.
  using result_type = R;
  /// Its parameter types, decayed, as its arguments travel.
  using args_type = std::tuple<A...>;
  /// Its signature, checked by lookup against the registered one.
  using signature = R(A...);

  /// The name it was registered under.
  const std::string& name() const noexcept { return name_; }

  /// The argument bytes invoke_task expects, converting each argument to the
  /// parameter's type first.
  static std::string encode_args(const A&... a) { return keel::encode(a...); }
  /// The result a worker sent back, decoded (ProtocolError if the bytes are not exactly an R).
  static R decode_result(std::string_view bytes) { return detail::decode_result<R>(bytes); }

  /// The handle of a task registered elsewhere (e.g. in another translation
  /// unit). ValueError if no task has that name, or it has another signature.
  static TaskRef lookup(std::string name) {
    if (!detail::task_registered(name)) throw ValueError("keel: no task named '" + name + "' is registered");
    if (!detail::task_signature_matches(name, typeid(signature))) {
      throw ValueError("keel: task '" + name + "' is registered with another signature than " +
                       detail::type_name(typeid(signature)));
    }
    return TaskRef(std::move(name));
  }

  /// Whether both name the same task.
  friend bool operator==(const TaskRef& a, const TaskRef& b) { return a.name_ == b.name_; }

 private:
  friend struct detail::TaskRefFactory;
  explicit TaskRef(std::string name) : name_(std::move(name)) {}

  std::string name_;
};

namespace detail {
struct TaskRefFactory {
  template <class Sig>
  static TaskRef<Sig> make(std::string name) {
    return TaskRef<Sig>(std::move(name));
  }
};
}  // namespace detail

/// Registers `fn` (a function pointer, or a callable object with one
/// non-template operator()) under `name`. ValueError if the name is empty or
/// already registered. Every parameter and the result must have a keel::Codec.
template <class F>
auto register_task(std::string name, F fn) {
  using Traits = detail::CallableTraits<F>;
  static_assert(Traits::valid,
                "keel::register_task needs a function pointer or a callable object with one non-template "
                "operator() (a generic lambda or an overload set has no single signature: cast it)");
  if constexpr (Traits::valid) {
    using Sig = typename Traits::signature;
    using Result = typename Traits::result;
    using Args = typename Traits::args;
    constexpr bool codecs = detail::task_value_ok<Result> && detail::task_args_ok(static_cast<Args*>(nullptr));
    // Where the reason is known (a pointer, a union, ...), the codec's own
    // static_assert says it, and the compiler's note above it names the type;
    // then this one adds where. Registration is left out, so no cascade of
    // decode errors follows.
    static_assert(codecs || detail::task_codec_missing_reported<Result>(static_cast<Args*>(nullptr)),
                  "keel::register_task: a parameter or the result of this task has no keel::Codec "
                  "(the task's signature is in the note above)");
    if constexpr (codecs) {
      if (name.empty()) throw ValueError("keel: a task name must not be empty");
      detail::register_task_entry(
          name, detail::make_invoker<F, Result>(std::move(fn), static_cast<typename Traits::params*>(nullptr)),
          typeid(Sig));
    }
    return detail::TaskRefFactory::make<Sig>(std::move(name));
  }
}

}  // namespace keel
