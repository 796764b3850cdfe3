// The registry's machinery behind keel/process/task.hpp: the type-erased
// invoker of one registered task, how a callable's signature is deduced, and
// the registry's out-of-line entry points. Not for users: task.hpp is the
// contract.
//
// Contract: an invoker decodes its arguments exactly (ProtocolError before the
// function runs otherwise), calls the function and encodes its result; an
// error report keeps the exception's demangled type and what().
//
// Invariants: IPC-1 (malformed argument, result or error bytes are a ProtocolError).
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

namespace keel::detail {

// One registered task, type-erased: decodes the arguments, calls the
// function, encodes the result.
class TaskInvoker {
 public:
  virtual ~TaskInvoker() = default;
  virtual std::string invoke(std::string_view name, std::string_view args) = 0;
};

// ValueError if the name is empty or taken (and then nothing is registered).
void register_task_entry(std::string name, std::unique_ptr<TaskInvoker> invoker, const std::type_info& signature);
// Whether `name` is registered with exactly this signature (R(A...), decayed).
bool task_signature_matches(std::string_view name, const std::type_info& signature);

bool task_registered(std::string_view name);

// Runs the task: decodes args (ProtocolError if they do not decode exactly),
// calls it, encodes the result (void -> empty). ValueError for an unknown
// name. Exceptions from the task propagate.
std::string invoke_task(std::string_view name, std::string_view args);
// The registered task `name` (ValueError if none), for a caller that runs it
// many times (a map chunk's calls): tasks are never unregistered, so the
// reference stays valid for the life of the process.
TaskInvoker& find_task(std::string_view name);

// The encoding invoke_task expects. Each argument's type must be the task's
// parameter type exactly (an int is not a long here); TaskRef::encode_args
// converts for you.
template <class... A>
std::string encode_args(const A&... a) {
  return keel::encode(a...);
}

template <class R>
R decode_result(std::string_view bytes) {
  if constexpr (std::is_void_v<R>) {
    Decoder(bytes).expect_end();
  } else {
    return keel::decode<R>(bytes);
  }
}

// An exception as bytes: its demangled dynamic type and what(). For an object
// that is not a std::exception the type is still named (e.g. "int") and the
// message is "unknown exception". ValueError for a null exception_ptr.
std::string encode_error(const std::exception_ptr& e);
// The same, at most max_bytes long: a message too long for it is cut and ends
// with " [cut from N bytes]", and a type name longer than half the room is cut
// too, so a task's own error always fits the channel it must travel on.
// ValueError if max_bytes < min_error_bytes.
inline constexpr std::size_t min_error_bytes = 128;
std::string encode_error(const std::exception_ptr& e, std::size_t max_bytes);
// The RemoteError a parent throws for bytes from encode_error; ProtocolError
// if they are malformed.
RemoteError decode_error(std::string_view bytes);

// The readable name of a type ("std::runtime_error"); the raw name if
// demangling fails.
std::string demangle(const char* mangled);
std::string type_name(const std::type_info& t);

// ---- deducing a task's signature -----------------------------------------------

template <class R, class... P>
struct TaskSignature {
  static constexpr bool valid = true;
  using result = std::decay_t<R>;
  using signature = result(std::decay_t<P>...);
  using args = std::tuple<std::decay_t<P>...>;
  using params = std::tuple<P...>;
};

template <class F, class = void>
struct CallableTraits {
  static constexpr bool valid = false;
};
template <class R, class... P>
struct CallableTraits<R (*)(P...), void> : TaskSignature<R, P...> {};
template <class R, class... P>
struct CallableTraits<R (*)(P...) noexcept, void> : TaskSignature<R, P...> {};

template <class M>
struct MemberCallTraits {
  static constexpr bool valid = false;
};
template <class C, class R, class... P>
struct MemberCallTraits<R (C::*)(P...)> : TaskSignature<R, P...> {};
template <class C, class R, class... P>
struct MemberCallTraits<R (C::*)(P...) const> : TaskSignature<R, P...> {};
template <class C, class R, class... P>
struct MemberCallTraits<R (C::*)(P...) noexcept> : TaskSignature<R, P...> {};
template <class C, class R, class... P>
struct MemberCallTraits<R (C::*)(P...) const noexcept> : TaskSignature<R, P...> {};

// Callable objects with one, non-template operator() (lambdas, functors).
template <class F>
struct CallableTraits<F, std::void_t<decltype(&F::operator())>> : MemberCallTraits<decltype(&F::operator())> {};

template <class F, class R, class... P>
class TaskInvokerImpl final : public TaskInvoker {
 public:
  explicit TaskInvokerImpl(F fn) : fn_(std::move(fn)) {}

  std::string invoke(std::string_view name, std::string_view args) override {
    std::tuple<std::decay_t<P>...> values = decode_args(name, args);
    return call(values, std::index_sequence_for<P...>{});
  }

 private:
  static std::tuple<std::decay_t<P>...> decode_args(std::string_view name, std::string_view args) {
    try {
      return decode_tuple<std::tuple<std::decay_t<P>...>>(args);
    } catch (const ProtocolError& e) {
      throw ProtocolError("keel: the arguments of task '" + std::string(name) +
                          "' do not decode: " + detail::what_of(e));
    }
  }

  template <std::size_t... I>
  std::string call(std::tuple<std::decay_t<P>...>& values, std::index_sequence<I...>) {
    // static_cast<P&&> hands each decoded value over as the parameter wants
    // it: moved for T and T&&, by reference for T& and const T&.
    if constexpr (std::is_void_v<R>) {
      std::invoke(fn_, static_cast<P&&>(std::get<I>(values))...);
      return {};
    } else {
      return keel::encode(std::invoke(fn_, static_cast<P&&>(std::get<I>(values))...));
    }
  }

  F fn_;
};

template <class F, class R, class... P>
std::unique_ptr<TaskInvoker> make_invoker(F fn, std::tuple<P...>*) {
  return std::make_unique<TaskInvokerImpl<F, R, P...>>(std::move(fn));
}

template <class T>
inline constexpr bool task_value_ok = std::is_void_v<T> || has_codec<T>;

template <class... A>
constexpr bool task_args_ok(std::tuple<A...>*) {
  return (has_codec<A> && ...);
}

// For a task whose result or parameters lack a codec: the codec's own
// static_assert for each type whose reason is known (see
// missing_codec_reported); returns whether one was made.
template <class R, class... A>
constexpr bool task_codec_missing_reported(std::tuple<A...>*) {
  bool reported = false;
  if constexpr (!std::is_void_v<R>) reported = missing_codec_reported<R>();
  return (reported || ... || missing_codec_reported<A>());
}

}  // namespace keel::detail
