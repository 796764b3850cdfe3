// The task registry: registration (function pointers, lambdas, functors;
// decayed signatures), duplicate/empty names, invoke_task round trips (void
// and tuple results), unknown names, arguments that do not decode (IPC-1: a
// ProtocolError before the task runs), exceptions propagating, and the error
// encoding a worker sends its parent: demangled type and what() kept exactly.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <type_traits>
#include <vector>

#include "../support/test_support.hpp"
#include "keel/error.hpp"
#include "keel/process/codec.hpp"
#include "keel/process/task.hpp"

using namespace std::string_literals;

namespace task_test_ns {

struct MyError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::int64_t square(std::int64_t x) { return x * x; }

std::string join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (std::size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

int calls = 0;
void count(int by) noexcept { calls += by; }

std::tuple<int, std::string> split_pair(std::pair<int, std::string> p) { return {p.first, p.second}; }

void raise_my_error(const std::string& msg) { throw MyError(msg); }
void raise_value_error() { throw keel::ValueError("bad value"); }
void raise_int() { throw 42; }

// Parameters taken every way: moved, by const ref, by ref, by rvalue ref.
std::string take_all(std::string a, const std::string& b, std::string& c, std::string&& d) {
  c += "!";
  return a + b + c + std::move(d);
}

struct Scale {
  double factor = 1;
  double operator()(double x) const { return x * factor; }
};

// Registered at namespace scope, as users do.
inline const auto square_task = keel::register_task("task_test.square", square);
inline const auto join_task = keel::register_task("task_test.join", join);
inline const auto count_task = keel::register_task("task_test.count", count);
inline const auto split_task = keel::register_task("task_test.split_pair", split_pair);
inline const auto my_error_task = keel::register_task("task_test.my_error", raise_my_error);
inline const auto value_error_task = keel::register_task("task_test.value_error", raise_value_error);
inline const auto int_task = keel::register_task("task_test.int", raise_int);
inline const auto take_all_task = keel::register_task("task_test.take_all", take_all);
inline const auto scale_task = keel::register_task("task_test.scale", Scale{2.5});
inline const auto lambda_task =
    keel::register_task("task_test.lambda", [](std::uint8_t a, bool b) { return b ? a + 1 : a - 1; });

}  // namespace task_test_ns

namespace {

using namespace task_test_ns;

// Names for registrations made inside tests: unique per run, so the tests can
// repeat (--gtest_repeat) in one process.
std::string fresh_name(const std::string& base) {
  static std::atomic<int> n{0};
  return "task_test." + base + "." + std::to_string(n.fetch_add(1));
}

// Signatures decay; results decay.
static_assert(std::is_same_v<decltype(square_task), const keel::TaskRef<std::int64_t(std::int64_t)>>);
static_assert(
    std::is_same_v<decltype(join_task), const keel::TaskRef<std::string(std::vector<std::string>, std::string)>>);
static_assert(std::is_same_v<decltype(count_task)::result_type, void>);
static_assert(std::is_same_v<decltype(take_all_task),
                             const keel::TaskRef<std::string(std::string, std::string, std::string, std::string)>>);
static_assert(std::is_same_v<decltype(scale_task)::signature, double(double)>);
static_assert(std::is_same_v<decltype(lambda_task)::args_type, std::tuple<std::uint8_t, bool>>);
static_assert(std::is_same_v<decltype(lambda_task)::result_type, int>);

TEST(Task, RegisteredTasksRunByName) {
  EXPECT_EQ(square_task.name(), "task_test.square");
  EXPECT_TRUE(keel::detail::task_registered("task_test.square"));
  const std::string out = keel::detail::invoke_task(square_task.name(), keel::detail::encode_args(std::int64_t{-12}));
  EXPECT_EQ(keel::detail::decode_result<std::int64_t>(out), 144);
  EXPECT_EQ(square_task.decode_result(keel::detail::invoke_task("task_test.square", square_task.encode_args(9))), 81)
      << "TaskRef::encode_args converts an int to the task's int64";

  const std::vector<std::string> parts{"a", "b", "c"};
  EXPECT_EQ(join_task.decode_result(keel::detail::invoke_task(join_task.name(), join_task.encode_args(parts, "-"))),
            "a-b-c");
  EXPECT_EQ(scale_task.decode_result(keel::detail::invoke_task(scale_task.name(), scale_task.encode_args(4.0))), 10.0);
  EXPECT_EQ(lambda_task.decode_result(keel::detail::invoke_task(lambda_task.name(), lambda_task.encode_args(7, true))),
            8);
}

TEST(Task, EveryParameterFormGetsItsValue) {
  const std::string out =
      keel::detail::invoke_task(take_all_task.name(), take_all_task.encode_args("a", "b", "c", "d"));
  EXPECT_EQ(take_all_task.decode_result(out), "abc!d");
}

TEST(Task, VoidResultsAreEmptyBytes) {
  calls = 0;
  const std::string out = keel::detail::invoke_task(count_task.name(), count_task.encode_args(5));
  EXPECT_EQ(out, "");
  EXPECT_EQ(calls, 5);
  EXPECT_NO_THROW(keel::detail::decode_result<void>(out));
  EXPECT_NO_THROW(count_task.decode_result(out));
  EXPECT_THROW(keel::detail::decode_result<void>("x"), keel::ProtocolError);
}

TEST(Task, TupleResultsRoundTrip) {
  const std::string out = keel::detail::invoke_task(split_task.name(), split_task.encode_args({3, "three"}));
  EXPECT_EQ(split_task.decode_result(out), std::make_tuple(3, "three"s));
  EXPECT_EQ(out, keel::encode(3, "three"s));
}

TEST(Task, CapturingAndMutableCallablesWork) {
  int seen = 0;
  const auto name = fresh_name("mutable");
  const auto t = keel::register_task(name, [&seen, n = 0](int x) mutable {
    seen += x;
    return ++n;
  });
  EXPECT_EQ(t.decode_result(keel::detail::invoke_task(name, t.encode_args(2))), 1);
  EXPECT_EQ(t.decode_result(keel::detail::invoke_task(name, t.encode_args(3))), 2);
  EXPECT_EQ(seen, 5);
}

TEST(Task, EmptyOrDuplicateNamesAreValueErrorsAndChangeNothing) {
  EXPECT_THROW(keel::register_task("", square), keel::ValueError);
  EXPECT_FALSE(keel::detail::task_registered(""));
  EXPECT_THROW(keel::register_task("task_test.square", join), keel::ValueError);
  // The first registration is untouched.
  EXPECT_EQ(square_task.decode_result(keel::detail::invoke_task("task_test.square", square_task.encode_args(3))), 9);
  const auto name = fresh_name("dup");
  keel::register_task(name, count);
  EXPECT_THROW(keel::register_task(name, count), keel::ValueError);
}

TEST(Task, UnknownNamesAreValueErrors) {
  EXPECT_FALSE(keel::detail::task_registered("task_test.no_such_task"));
  EXPECT_THROW(keel::detail::invoke_task("task_test.no_such_task", ""), keel::ValueError);
  try {
    keel::detail::invoke_task("task_test.no_such_task", "");
  } catch (const keel::ValueError& e) {
    EXPECT_NE(std::string(e.what()).find("task_test.no_such_task"), std::string::npos);
  }
  EXPECT_FALSE(keel::detail::task_registered("task_test.squar"));
  EXPECT_FALSE(keel::detail::task_registered("task_test.square2"));
}

TEST(Task, ArgumentsThatDoNotDecodeExactlyAreProtocolErrorsBeforeTheTaskRuns) {
  calls = 0;
  const std::string ok = count_task.encode_args(1);
  EXPECT_THROW(keel::detail::invoke_task(count_task.name(), ""), keel::ProtocolError);
  EXPECT_THROW(keel::detail::invoke_task(count_task.name(), ok.substr(0, 3)), keel::ProtocolError);
  EXPECT_THROW(keel::detail::invoke_task(count_task.name(), ok + "x"), keel::ProtocolError);
  EXPECT_THROW(keel::detail::invoke_task(count_task.name(), keel::encode(std::int64_t{1})), keel::ProtocolError)
      << "an int64 where an int is wanted";
  EXPECT_THROW(keel::detail::invoke_task(join_task.name(), keel::encode("a"s, "b"s)), keel::ProtocolError);
  EXPECT_THROW(keel::detail::invoke_task(lambda_task.name(), keel::encode(std::uint8_t{1}, std::uint8_t{2})),
               keel::ProtocolError)
      << "2 is not a bool";
  EXPECT_EQ(calls, 0);
  try {
    keel::detail::invoke_task(count_task.name(), "");
  } catch (const keel::ProtocolError& e) {
    EXPECT_NE(std::string(e.what()).find("task_test.count"), std::string::npos) << e.what();
  }
}

TEST(Task, ExceptionsFromTheTaskPropagate) {
  EXPECT_THROW(keel::detail::invoke_task(my_error_task.name(), my_error_task.encode_args("m")), MyError);
  EXPECT_THROW(keel::detail::invoke_task(value_error_task.name(), ""), keel::ValueError);
  EXPECT_THROW(keel::detail::invoke_task(int_task.name(), ""), int);
}

// What a worker does: run, catch, encode; and what the parent does: decode.
keel::RemoteError remote_error_of(const std::string& name, const std::string& args) {
  try {
    keel::detail::invoke_task(name, args);
  } catch (...) {
    return keel::detail::decode_error(keel::detail::encode_error(std::current_exception()));
  }
  ADD_FAILURE() << name << " did not throw";
  return keel::RemoteError("", "");
}

TEST(Task, ErrorsKeepTheirTypeAndMessageExactly) {
  const keel::RemoteError mine = remote_error_of(my_error_task.name(), my_error_task.encode_args("it broke"));
  EXPECT_EQ(mine.type(), "task_test_ns::MyError");
  EXPECT_EQ(mine.message(), "it broke");
  EXPECT_EQ(std::string(mine.what()), "task_test_ns::MyError: it broke");

  const keel::RemoteError value = remote_error_of(value_error_task.name(), "");
  EXPECT_EQ(value.type(), "keel::ValueError");
  EXPECT_EQ(value.message(), "bad value");

  const keel::RemoteError runtime =
      keel::detail::decode_error(keel::detail::encode_error(std::make_exception_ptr(std::runtime_error("rt"))));
  EXPECT_EQ(runtime.type(), "std::runtime_error");
  EXPECT_EQ(runtime.message(), "rt");

  const keel::RemoteError thrown_int = remote_error_of(int_task.name(), "");
  EXPECT_EQ(thrown_int.type(), "int");
  EXPECT_EQ(thrown_int.message(), "unknown exception");

  // Bytes a message may hold are kept, non-UTF-8 included (what() is a C
  // string, so a NUL can only come through the encoding itself).
  const std::string odd("a\tb\xff\n\x01"s);
  const keel::RemoteError kept = remote_error_of(my_error_task.name(), my_error_task.encode_args(odd));
  EXPECT_EQ(kept.message(), odd);
  const keel::RemoteError nul = keel::detail::decode_error(keel::encode("T\0U"s, "m\0n"s));
  EXPECT_EQ(nul.type(), "T\0U"s);
  EXPECT_EQ(nul.message(), "m\0n"s);
  const keel::RemoteError empty = remote_error_of(my_error_task.name(), my_error_task.encode_args(""));
  EXPECT_EQ(empty.message(), "");
}

TEST(Task, ErrorEncodingIsTypeThenMessage) {
  EXPECT_EQ(keel::detail::encode_error(std::make_exception_ptr(std::logic_error("x"))),
            keel::encode("std::logic_error"s, "x"s));
  const keel::RemoteError e = keel::detail::decode_error(keel::encode("Any Type<int>"s, "msg"s));
  EXPECT_EQ(e.type(), "Any Type<int>");
  EXPECT_EQ(e.message(), "msg");
  EXPECT_THROW(keel::detail::encode_error(nullptr), keel::ValueError);
}

TEST(Task, ErrorReportsAreCutToFitALimitAndSaySo) {
  const auto long_message = std::make_exception_ptr(std::runtime_error(std::string(5000, 'm')));
  for (std::size_t max : {keel::detail::min_error_bytes, std::size_t{129}, std::size_t{300}, std::size_t{4096}}) {
    const std::string bytes = keel::detail::encode_error(long_message, max);
    EXPECT_LE(bytes.size(), max);
    const keel::RemoteError e = keel::detail::decode_error(bytes);
    EXPECT_EQ(e.type(), "std::runtime_error") << max;
    EXPECT_EQ(e.message().substr(0, 10), std::string(10, 'm')) << max;
    EXPECT_NE(e.message().find(" [cut from 5000 bytes]"), std::string::npos) << e.message();
  }
  // A type name longer than half the room is cut as well; a report that fits
  // is the same as without a limit.
  using Long = std::vector<std::map<std::string, std::vector<std::pair<std::string, std::string>>>>;
  const auto long_type = std::make_exception_ptr(Long{});
  ASSERT_GT(keel::detail::decode_error(keel::detail::encode_error(long_type)).type().size(), 200u);
  const keel::RemoteError both = keel::detail::decode_error(keel::detail::encode_error(long_type, 128));
  EXPECT_EQ(both.type().substr(0, 12), "std::vector<");
  EXPECT_NE(both.type().find("[cut from"), std::string::npos) << both.type();
  EXPECT_EQ(both.message(), "unknown exception");
  // Both too long: each is cut, and the whole still fits.
  struct LongNamedErrorTypeForTheCutTestWithANameThatGoesOnAndOnAndOnAndOnAndOnAndOnAndOnAndOnAndOn
      : std::runtime_error {
    using std::runtime_error::runtime_error;
  };
  const auto long_both = std::make_exception_ptr(
      LongNamedErrorTypeForTheCutTestWithANameThatGoesOnAndOnAndOnAndOnAndOnAndOnAndOnAndOnAndOn(
          std::string(5000, 'm')));
  for (std::size_t max : {std::size_t{128}, std::size_t{200}}) {
    const std::string bytes = keel::detail::encode_error(long_both, max);
    EXPECT_LE(bytes.size(), max);
    const keel::RemoteError r = keel::detail::decode_error(bytes);
    EXPECT_NE(r.type().find("[cut from"), std::string::npos) << r.type();
    EXPECT_NE(r.message().find("[cut from 5000 bytes]"), std::string::npos) << r.message();
  }
  const auto small = std::make_exception_ptr(std::logic_error("x"));
  EXPECT_EQ(keel::detail::encode_error(small, 128), keel::detail::encode_error(small));
  EXPECT_THROW(keel::detail::encode_error(small, keel::detail::min_error_bytes - 1), keel::ValueError);
}

TEST(Task, MalformedErrorBytesAreProtocolErrors) {
  const std::string good = keel::encode("T"s, "m"s);
  for (std::size_t n = 0; n < good.size(); ++n) {
    EXPECT_THROW(keel::detail::decode_error(good.substr(0, n)), keel::ProtocolError) << n;
  }
  EXPECT_THROW(keel::detail::decode_error(good + "z"), keel::ProtocolError);
  EXPECT_THROW(keel::detail::decode_error("\xff\xff\xff\xff"s), keel::ProtocolError);
}

TEST(Task, LookupFindsATaskByNameAndChecksItsSignature) {
  const auto again = keel::TaskRef<std::int64_t(std::int64_t)>::lookup("task_test.square");
  EXPECT_EQ(again, square_task);
  EXPECT_THROW(keel::TaskRef<int(int)>::lookup("task_test.square"), keel::ValueError);
  EXPECT_THROW(keel::TaskRef<void()>::lookup("task_test.no_such_task"), keel::ValueError);
  EXPECT_NO_THROW((keel::TaskRef<std::string(std::vector<std::string>, std::string)>::lookup("task_test.join")));
}

TEST(Task, ConcurrentRegistrationAndInvocationAgree) {
  constexpr int threads = 4;
  const int per = keel_test::scaled(200, 20);
  const std::string base = fresh_name("concurrent");
  keel_test::Threads ts;
  std::atomic<int> wrong{0};
  for (int t = 0; t < threads; ++t) {
    ts.spawn([&, t] {
      for (int i = 0; i < per; ++i) {
        const std::string name = base + "." + std::to_string(t) + "." + std::to_string(i);
        const auto ref = keel::register_task(name, [t, i](int x) { return x + t * 1000 + i; });
        const int r = ref.decode_result(keel::detail::invoke_task(name, ref.encode_args(1)));
        if (r != 1 + t * 1000 + i) wrong.fetch_add(1);
        if (square_task.decode_result(keel::detail::invoke_task(square_task.name(), square_task.encode_args(i))) !=
            std::int64_t{i} * i) {
          wrong.fetch_add(1);
        }
      }
    });
  }
  ts.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_TRUE(keel::detail::task_registered(base + ".3." + std::to_string(per - 1)));
}

TEST(Task, DemangleGivesReadableNames) {
  EXPECT_EQ(keel::detail::type_name(typeid(std::runtime_error)), "std::runtime_error");
  EXPECT_EQ(keel::detail::type_name(typeid(task_test_ns::MyError)), "task_test_ns::MyError");
  EXPECT_EQ(keel::detail::demangle("not a mangled name"), "not a mangled name");
}

}  // namespace

namespace {

// A child that inherited the registry's lock held would hang at its first
// lookup (the registry holds it across fork).
TEST(Task, ForkWhileOtherThreadsLookUpTasksLeavesTheRegistryUsableInTheChild) {
  const int hung = keel_test::children_hung_while_forking(
      [] { (void)keel::detail::task_registered("task_test.nobody"); },
      [] { return keel::detail::task_registered("task_test.nobody") ? 1 : 0; }, keel_test::scaled(200, 20));
  EXPECT_EQ(hung, 0) << "a forked child hung on the task registry's lock";
}

}  // namespace
