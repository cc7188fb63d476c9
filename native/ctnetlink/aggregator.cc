// aggregator.cc — see aggregator.h. No Node-API, no syscalls.
#include "ctnetlink/aggregator.h"

#include <linux/netfilter/nfnetlink_conntrack.h>

namespace ctmon {

const uint8_t kCounterStatsId[kCounterCount] = {
    0,                         // kInsert: from NEW events
    0,                         // kDelete: from DESTROY events
    CTA_STATS_DROP,            //
    CTA_STATS_EARLY_DROP,      //
    CTA_STATS_INSERT_FAILED,   //
    CTA_STATS_INVALID,         //
    CTA_STATS_ERROR,           //
    CTA_STATS_CLASH_RESOLVE,   //
    CTA_STATS_CHAIN_TOOLONG,   //
    CTA_STATS_SEARCH_RESTART,  //
};

void Aggregator::start(int64_t now_mono_ns, const KernelReading& baseline) {
  *this = Aggregator();
  interval_start_ns_ = now_mono_ns;
  uint64_t ignored[kStatsSlots];
  uint32_t present;
  absorb_cpu_stats(baseline, ignored, &present);
  if (baseline.drops_ok) {
    have_drops_baseline_ = true;
    last_socket_drops_ = baseline.socket_drops;
    observed_drops_ = baseline.socket_drops;
  }
}

void Aggregator::observe_socket_drops(int64_t now_wall_ms, uint32_t drops) {
  if (!have_drops_baseline_ || drops == observed_drops_) return;
  observed_drops_ = drops;
  if (first_loss_wall_ms_ < 0) first_loss_wall_ms_ = now_wall_ms;
  if (first_loss_ever_wall_ms_ < 0) first_loss_ever_wall_ms_ = now_wall_ms;
}

// Sums per-CPU deltas since the previous reading into deltas[id]. A CPU seen for the first
// time only sets its baseline: its past is not this monitor's interval.
void Aggregator::absorb_cpu_stats(const KernelReading& reading, uint64_t* deltas,
                                  uint32_t* present) {
  for (int id = 0; id < kStatsSlots; ++id) deltas[id] = 0;
  *present = 0;
  for (size_t i = 0; i < reading.cpu_count; ++i) {
    const CpuStats& cpu = reading.cpus[i];
    if (cpu.cpu >= cpus_.size()) cpus_.resize(cpu.cpu + 1u);
    CpuBaseline& last = cpus_[cpu.cpu];
    for (int id = 0; id < kStatsSlots; ++id) {
      if (!(cpu.present & (1u << id))) continue;
      // uint32 subtraction is the wrap-safe delta of a 32-bit counter.
      if (last.seen) deltas[id] += static_cast<uint32_t>(cpu.values[id] - last.values[id]);
      last.values[id] = cpu.values[id];
    }
    last.seen = true;
    *present |= cpu.present;
  }
}

IntervalSample Aggregator::close(int64_t now_mono_ns, int64_t now_wall_ms,
                                 const KernelReading& reading, bool final) {
  IntervalSample s;
  s.end_wall_ms = now_wall_ms;
  s.duration_ns = now_mono_ns - interval_start_ns_;
  s.final = final;
  interval_start_ns_ = now_mono_ns;

  s.counts[kInsert] = pending_[kInsert];
  s.counts[kDelete] = pending_[kDelete];
  s.known = 1u << kInsert | 1u << kDelete;

  s.kernel_stats_ok = reading.cpus != nullptr;
  if (s.kernel_stats_ok) {
    uint64_t deltas[kStatsSlots];
    uint32_t present;
    absorb_cpu_stats(reading, deltas, &present);
    for (int c = kFirstKernelCounter; c < kCounterCount; ++c) {
      const uint8_t id = kCounterStatsId[c];
      if (!(present & (1u << id))) continue;  // this kernel does not report it
      s.counts[c] = deltas[id];
      s.known |= 1u << c;
    }
  }
  for (int c = 0; c < kCounterCount; ++c) {
    totals_[c] += s.counts[c];
    s.totals[c] = totals_[c];
    pending_[c] = 0;
  }

  if (reading.global != nullptr) {
    s.has_entries = reading.global->has_entries;
    s.entries = reading.global->entries;
    s.has_max = reading.global->has_max;
    s.max = reading.global->max;
  }

  s.events_received = events_received_;
  s.events_updates = events_updates_;
  updates_total_ += events_updates_;
  s.events_updates_total = updates_total_;
  events_received_ = 0;
  events_updates_ = 0;
  if (reading.drops_ok) {
    if (have_drops_baseline_) {
      s.events_lost = static_cast<uint32_t>(reading.socket_drops - last_socket_drops_);
      observe_socket_drops(now_wall_ms, reading.socket_drops);
    }
    have_drops_baseline_ = true;
    last_socket_drops_ = reading.socket_drops;
    observed_drops_ = reading.socket_drops;
  }
  lost_total_ += s.events_lost;
  s.events_lost_total = lost_total_;
  s.first_loss_wall_ms = s.events_lost > 0 ? first_loss_wall_ms_ : -1;
  s.first_loss_ever_wall_ms = first_loss_ever_wall_ms_;
  if (reading.drops_ok) first_loss_wall_ms_ = -1;  // else the next close books this loss
  s.malformed_total = malformed_total_;
  return s;
}

}  // namespace ctmon
