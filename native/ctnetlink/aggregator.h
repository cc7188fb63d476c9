// aggregator.h — turns a stream of events and periodic kernel stat readings into one
// IntervalSample per interval.
//
// No Node-API, no syscalls, no clock: the caller passes timestamps, so tests can drive it
// with an injected clock. count_event() is the per-event hot path and only increments.
// Kernel counters are 32-bit per-CPU values that wrap; deltas are taken per CPU in
// uint32 arithmetic and summed into 64-bit totals.
#pragma once

#include <cstdint>
#include <vector>

#include "ctnetlink/decoder.h"

namespace ctmon {

// Order matches the public sample's `counts` keys.
enum Counter : int {
  kInsert,         // NEW events (the kernel's own insert stat is dead on the packet path)
  kDelete,         // DESTROY events
  kDrop,           // CTA_STATS_DROP: table full, dropping packet
  kEarlyDrop,      // CTA_STATS_EARLY_DROP
  kInsertFailed,   // CTA_STATS_INSERT_FAILED
  kInvalid,        // CTA_STATS_INVALID
  kIcmpError,      // CTA_STATS_ERROR
  kClashResolve,   // CTA_STATS_CLASH_RESOLVE (kernel >= 5.10)
  kChainTooLong,   // CTA_STATS_CHAIN_TOOLONG (kernel >= 5.15)
  kSearchRestart,  // CTA_STATS_SEARCH_RESTART
  kCounterCount
};
constexpr int kFirstKernelCounter = kDrop;

// The CTA_STATS_* id behind each kernel counter (0 for event-derived counters).
extern const uint8_t kCounterStatsId[kCounterCount];

struct IntervalSample {
  int64_t end_wall_ms = 0;       // CLOCK_REALTIME at the end of the interval
  int64_t duration_ns = 0;       // actual length of the interval
  bool final = false;            // the partial interval closed by stop()
  uint32_t known = 0;            // bit c set when counter c is known in this interval
  bool kernel_stats_ok = false;  // the per-CPU stats request succeeded
  int stats_error = 0;           // else its errno (set by the monitor, which made the request)
  uint64_t counts[kCounterCount] = {};
  uint64_t totals[kCounterCount] = {};
  bool has_entries = false;
  bool has_max = false;
  uint32_t entries = 0;
  uint32_t max = 0;
  uint64_t events_received = 0;  // conntrack messages read from the event socket
  uint64_t events_updates = 0;   // of which UPDATEs (NEW and DESTROY are counts[kInsert/kDelete])
  // UPDATEs since start: received, or with count_in_kernel, every one the kernel sent.
  uint64_t events_updates_total = 0;
  uint64_t events_lost = 0;  // SK_MEMINFO_DROPS delta: events the kernel could not queue
  uint64_t events_lost_total = 0;
  // CLOCK_REALTIME when a loss was first seen, -1 for none: in this interval, and since start.
  // Seen while draining as well as at the close, so that it says when the loss began.
  int64_t first_loss_wall_ms = -1;
  int64_t first_loss_ever_wall_ms = -1;
  uint64_t malformed_total = 0;  // messages that could not be decoded (skipped)
};

// One reading of the kernel's stats; cpus == nullptr when the request failed.
struct KernelReading {
  const CpuStats* cpus = nullptr;
  size_t cpu_count = 0;
  const GlobalStats* global = nullptr;
  bool drops_ok = false;
  uint32_t socket_drops = 0;
  // The eBPF event filter's counts of NEW, DESTROY and UPDATE messages since it was loaded,
  // when the aggregator counts from the kernel (count_in_kernel) and the read succeeded.
  bool event_counts_ok = false;
  uint64_t kernel_inserts = 0;
  uint64_t kernel_deletes = 0;
  uint64_t kernel_updates = 0;
};

class Aggregator {
 public:
  // Takes the baseline that the first interval's deltas are measured from. With
  // count_in_kernel, inserts and deletes come from KernelReading's event counts (the eBPF
  // event filter counts every message, queued or not) rather than from received events; the
  // kernel's counts start at 0 when its program is loaded, before any event.
  void start(int64_t now_mono_ns, const KernelReading& baseline, bool count_in_kernel = false);

  // Hot path: called once per decoded event.
  void count_event(EventKind kind) {
    ++events_received_;
    if (kind == EventKind::kUpdate)
      ++events_updates_;
    else if (!count_in_kernel_)
      ++pending_[kind == EventKind::kNew ? kInsert : kDelete];
  }
  // Events counted elsewhere (an in-kernel counter read once per interval), n at once.
  void count_events(EventKind kind, uint64_t n) {
    events_received_ += n;
    if (kind == EventKind::kNew)
      pending_[kInsert] += n;
    else if (kind == EventKind::kDestroy)
      pending_[kDelete] += n;
    else
      events_updates_ += n;
  }
  void count_malformed() { ++malformed_total_; }

  // A reading of the event socket's SK_MEMINFO_DROPS between closes (the monitor takes one
  // after each drain): it does not change what close() books, only when a loss was first seen.
  void observe_socket_drops(int64_t now_wall_ms, uint32_t drops);

  IntervalSample close(int64_t now_mono_ns, int64_t now_wall_ms, const KernelReading& reading,
                       bool final);

 private:
  struct CpuBaseline {
    bool seen = false;
    uint32_t values[kStatsSlots] = {};
  };
  void absorb_cpu_stats(const KernelReading& reading, uint64_t* deltas, uint32_t* present);

  int64_t interval_start_ns_ = 0;
  uint64_t pending_[kCounterCount] = {};
  uint64_t totals_[kCounterCount] = {};
  uint64_t events_received_ = 0;
  uint64_t events_updates_ = 0;
  uint64_t updates_total_ = 0;
  uint64_t lost_total_ = 0;
  bool count_in_kernel_ = false;
  uint64_t kernel_events_seen_[2] = {};  // inserts, deletes read at the last close
  uint64_t malformed_total_ = 0;
  bool have_drops_baseline_ = false;
  uint32_t last_socket_drops_ = 0;
  uint32_t observed_drops_ = 0;  // the latest reading, at a close or while draining
  int64_t first_loss_wall_ms_ = -1;
  int64_t first_loss_ever_wall_ms_ = -1;
  std::vector<CpuBaseline> cpus_;  // indexed by CPU id; grows on the stats path only
};

}  // namespace ctmon
