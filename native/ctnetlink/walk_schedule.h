// walk_schedule.h — when a reader may walk the conntrack table to verify the flows past their
// announced deadline (RequestSocket::evict_expired), and what the latest walk verified.
//
// A walk holds the kernel's ctnetlink mutex and keeps softirqs off on its CPU while it runs
// (~8 ms at 262,144 buckets, ~0.2 us more per entry it visits, ~2.5 us per expired entry it
// kills). Two bounds, both on the CPU time the walking thread spends (not the time a walk
// takes, which a busy machine stretches):
// - its own cost: walks start at least kSpacingFactor times the last one's own cost apart;
//   killing an expired entry (and sending its DESTROY) is work the kernel's garbage collector
//   would do anyway, a little later, so that part is left out here;
// - everything, the killing included: at most 1/share of the time (kMonitorShare: 1%), from a
//   budget that fills at that rate up to 0.2 s. A reader of a whole node walks a table that
//   holds every namespace's entries (~90 ms at 200,000) for namespaces that each also cost it
//   their samples: kNodeShare (0.5%) keeps its walks to a quarter of a node's ~2% of a core. A walk
//   goes only when it covers what it would cost (its own cost and ~2.5 us per entry past its
//   deadline, each likely to be killed). After a flood of short flows most of a walk would be
//   killing (100,000 expired UDP flows: ~0.3 s), so the walk waits for the garbage collector to
//   reap the bulk: its cost does not grow with the flood.
// Pure; no clock.
#pragma once

#include <algorithm>
#include <cstdint>

namespace ctmon {

class WalkSchedule {
 public:
  static constexpr int64_t kSpacingFactor = 100;  // own cost: at most 1% of a CPU
  static constexpr int64_t kMonitorShare = 100;   // everything: 1% of a CPU for one namespace,
  static constexpr int64_t kNodeShare = 200;      // 0.5% for a whole node
  static constexpr int64_t kBudgetMaxNs = 200'000'000;  // saved up: at most 0.2 s
  static constexpr int64_t kKillNs = 2500;            // a killed entry's share of a walk (measured)
  static constexpr int64_t kFirstOwnNs = 10'000'000;  // before any walk: 262,144 buckets here
  static constexpr int64_t kStartBudgetNs = 5 * kFirstOwnNs;  // a few ordinary walks at once

  explicit WalkSchedule(int64_t share) : share_(share) {}

  // Whether a walk may start at now_ns, with `waiting` entries past their deadline.
  bool may_walk(int64_t now_ns, uint64_t waiting) {
    if (budget_at_ns_ == 0) start_budget(now_ns);
    const int64_t own = walks_ > 0 ? own_ns_ : kFirstOwnNs;
    if (walks_ > 0 && now_ns - last_start_ns_ < kSpacingFactor * own) return false;
    return budget(now_ns) >= own + static_cast<int64_t>(waiting) * kKillNs;
  }
  // A walk that began at start_ns, ended at end_ns, cost the thread cpu_ns of CPU time and
  // killed `killed` expired entries: every flow whose deadline had passed at start_ns and that
  // is still held afterwards is alive (its DESTROY would have come).
  void walked(int64_t start_ns, int64_t end_ns, int64_t cpu_ns, uint64_t killed = 0) {
    if (budget_at_ns_ == 0) start_budget(start_ns);
    budget_ns_ = budget(start_ns) - cpu_ns;  // may go below zero: paid back before the next
    budget_at_ns_ = start_ns;
    last_start_ns_ = start_ns;
    last_duration_ns_ = end_ns - start_ns;
    own_ns_ = std::max(cpu_ns - static_cast<int64_t>(killed) * kKillNs, cpu_ns / 10);
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
  // Enough for a walk or two at once, not for one that would mostly reap a flood.
  void start_budget(int64_t now_ns) {
    budget_ns_ = kStartBudgetNs;
    budget_at_ns_ = now_ns;
  }
  int64_t budget(int64_t now_ns) const {
    return std::min(budget_ns_ + (now_ns - budget_at_ns_) / share_, kBudgetMaxNs);
  }

  const int64_t share_;
  int64_t budget_ns_ = 0;
  int64_t budget_at_ns_ = 0;
  int64_t last_start_ns_ = 0;
  int64_t last_duration_ns_ = 0;
  int64_t own_ns_ = 0;
  uint64_t walks_ = 0;
};

}  // namespace ctmon
