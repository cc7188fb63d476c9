// clock.h — the clocks the readers use, and IntervalClock: when each interval closes.
// No Node-API; any thread.
#pragma once

#include <time.h>

#include <cstdint>

namespace ctmon {

inline int64_t clock_ns(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}
inline int64_t mono_ns() { return clock_ns(CLOCK_MONOTONIC); }
// CPU time of the calling thread: what a syscall costs, whoever else wants the CPU meanwhile.
inline int64_t thread_cpu_ns() { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }
inline int64_t wall_ms() { return clock_ns(CLOCK_REALTIME) / 1000000; }

// Interval closes on CLOCK_MONOTONIC, one interval apart. A reader that fell behind (a slow
// dump, a stalled thread) closes once and starts the next interval from then: no burst of
// closes to catch up, so no interval is shorter than the rest but the first after a stall.
class IntervalClock {
 public:
  IntervalClock(int64_t interval_ns, int64_t now_ns)
      : interval_ns_(interval_ns), next_ns_(now_ns + interval_ns) {}
  bool due(int64_t now_ns) const { return now_ns >= next_ns_; }
  // After an interval was closed at about `now_ns`.
  void advance(int64_t now_ns) {
    next_ns_ += interval_ns_;
    if (next_ns_ <= now_ns) next_ns_ = now_ns + interval_ns_;
  }
  int64_t next_ns() const { return next_ns_; }
  // Milliseconds until the next close, rounded up: a poll timeout that never wakes early.
  int timeout_ms(int64_t now_ns) const {
    return now_ns >= next_ns_ ? 0 : static_cast<int>((next_ns_ - now_ns + 999999) / 1000000);
  }

 private:
  int64_t interval_ns_;
  int64_t next_ns_;
};

}  // namespace ctmon
