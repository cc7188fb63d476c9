// walk_schedule.h — when a reader may walk the conntrack table to verify the flows past their
// announced deadline (RequestSocket::evict_expired), and what the latest walk verified.
//
// A walk holds the kernel's ctnetlink mutex and keeps softirqs off on its CPU while it runs
// (~8 ms at 262,144 buckets, ~0.2 us more per entry it visits, ~2.5 us per expired entry it
// kills): walks are spaced so that their own cost takes at most 1/kSpacingFactor of the time,
// whatever the table. The cost is the CPU time the walking thread spent, not the time the walk
// took, which a busy machine stretches. Killing an expired entry (and sending its DESTROY) is
// work the kernel's garbage collector would do anyway, a little later: that part is not the
// walk's own cost, or a walk after a burst of expiries would put off the next one for many
// seconds. But it is done on the reader's CPU time, and under a flood of short flows it is most
// of a walk (100,000 expired UDP flows: ~0.3 s): everything included, walks take at most
// 1/kTotalSpacingFactor of the time, so that their cost does not grow with a flood. Pure; no
// clock.
#pragma once

#include <algorithm>
#include <cstdint>

namespace ctmon {

class WalkSchedule {
 public:
  static constexpr int64_t kSpacingFactor = 100;      // at most 1% of a CPU walking
  static constexpr int64_t kTotalSpacingFactor = 50;  // at most 2% with the reaping
  static constexpr int64_t kKillNs = 2500;            // a killed entry's share of a walk (measured)

  // Walks start at least kSpacingFactor times the last one's own cost, and kTotalSpacingFactor
  // times its whole cost, after it started: that bounds the share of time spent walking (start
  // to start is the period).
  bool may_walk(int64_t now_ns) const {
    return walks_ == 0 || now_ns - last_start_ns_ >= spacing_ns_;
  }
  // A walk that began at start_ns, ended at end_ns, cost the thread cpu_ns of CPU time and
  // killed `killed` expired entries: every flow whose deadline had passed at start_ns and that
  // is still held afterwards is alive (its DESTROY would have come).
  void walked(int64_t start_ns, int64_t end_ns, int64_t cpu_ns, uint64_t killed = 0) {
    last_start_ns_ = start_ns;
    last_duration_ns_ = end_ns - start_ns;
    const int64_t own = std::max(cpu_ns - static_cast<int64_t>(killed) * kKillNs, cpu_ns / 10);
    spacing_ns_ = std::max(kSpacingFactor * own, kTotalSpacingFactor * cpu_ns);
    ++walks_;
  }

  // What a walk or listing that began at verified_ns still vouches for at now_ns: a flow found
  // alive past its deadline may end the moment after, so the finding holds for the sample
  // that follows it, not the next one (that one walks again). Returns 0 when stale.
  static int64_t vouched(int64_t verified_ns, int64_t now_ns, int64_t interval_ns) {
    return now_ns - verified_ns < interval_ns / 2 ? verified_ns : 0;
  }
  int64_t last_duration_ns() const { return last_duration_ns_; }
  uint64_t walks() const { return walks_; }

 private:
  int64_t last_start_ns_ = 0;
  int64_t last_duration_ns_ = 0;
  int64_t spacing_ns_ = 0;
  uint64_t walks_ = 0;
};

}  // namespace ctmon
