// keel::Timer. See keel/sync/timer.hpp.
#include "keel/sync/timer.hpp"

namespace keel {

Timer::~Timer() {
  cancel();
  if (thread_.joinable()) thread_.join();
}

void Timer::start() {
  if (started_.exchange(true, std::memory_order_acq_rel)) throw MisuseError("keel::Timer::start: already started");
  thread_.start([this] { run(); });
}

bool Timer::cancel() {
  cancel_requested_.set();
  std::int32_t expected = waiting_phase;
  const bool won = phase_.compare_exchange_strong(expected, cancelled_phase, std::memory_order_acq_rel);
  if (won && !started_.load(std::memory_order_acquire)) done_.set();
  return won || expected == cancelled_phase;
}

void Timer::join() {
  if (thread_.joinable()) thread_.join();
}

void Timer::run() {
  // wait_for returns true when cancel() set the event; it wins either way
  // through the phase CAS below, which settles a cancel racing the expiry.
  cancel_requested_.wait_for(interval_);
  std::int32_t expected = waiting_phase;
  const bool fire = KEEL_INJECTED(timer_fire_ignores_cancel)
                        ? (phase_.store(fired_phase, std::memory_order_release), true)
                        : phase_.compare_exchange_strong(expected, fired_phase, std::memory_order_acq_rel);
  if (fire) {
    try {
      fn_();
    } catch (...) {
      error_ = std::current_exception();
    }
  }
  done_.set();
}

}  // namespace keel
