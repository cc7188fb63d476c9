// kernel_flows.cc — see kernel_flows.h.
#include "ctnetlink/kernel_flows.h"

#include <netinet/in.h>

#include <algorithm>

namespace ctmon {

Status KernelFlows::open(uint64_t now_ds) {
  EventCounterOptions options;
  options.variant = EventProgramVariant::kMonitor;
  const Status st = counter_.open(options);
  if (!st.ok()) return st;
  counters_ = ct_counters{};
  wheel_.start(now_ds);
  rebases_ = 0;
  dumping_ = false;
  dumped_.clear();
  return st;
}

Status KernelFlows::refresh(uint64_t now_ds) {
  // The counters first: a flow counted in them but not yet in a passed slot is still listed,
  // which is what it is at that moment.
  Status st = counter_.read(counters_);
  if (!st.ok()) return st;
  const bool in_time = wheel_.advance(
      now_ds, [this](uint32_t slot, ct_wheel_slot& out) { return counter_.read_wheel(slot, out); },
      st);
  if (!in_time) return rebase(now_ds);
  return st;
}

// Read too late, the wheel may hold two laps in one slot: start again from the flow table,
// which has every tracked flow's deadline. Flows changing meanwhile may be off by one each.
Status KernelFlows::rebase(uint64_t now_ds) {
  ++rebases_;
  std::vector<ct_wheel_slot> live(CT_WHEEL_SLOTS), slots(CT_WHEEL_SLOTS);
  int64_t live_total[CT_TRACKED_CLASSES] = {};
  counter_.for_each_flow([&](const ct_flow_slot& seen, ct_flow_slot&) {
    const uint32_t cls = seen.meta & CT_FLOW_CLASS_MASK;
    if (seen.deadline_ds <= now_ds || cls >= CT_TRACKED_CLASSES) return;
    ++live[seen.deadline_ds % CT_WHEEL_SLOTS].flows[cls];
    ++live_total[cls];
  });
  Status st;
  for (uint32_t s = 0; st.ok() && s < CT_WHEEL_SLOTS; ++s) st = counter_.read_wheel(s, slots[s]);
  if (st.ok()) st = counter_.read(counters_);
  if (!st.ok()) return st;
  int64_t expired[CT_TRACKED_CLASSES];
  for (uint32_t c = 0; c < CT_TRACKED_CLASSES; ++c)
    expired[c] = counters_.tracked[c] - live_total[c];
  wheel_.rebase(now_ds, slots, live, expired);
  return Status{};
}

uint32_t KernelFlows::listed(uint32_t cls) const {
  if (cls >= CT_TRACKED_CLASSES) return 0;
  const int64_t n = counters_.tracked[cls] - wheel_.expired()[cls];
  return n > 0 ? static_cast<uint32_t>(n) : 0;  // a race of a few microseconds can cross zero
}

Status KernelFlows::begin_dump() {
  dumped_.clear();
  dumping_ = true;
  release_destroyed();  // left by a DESTROY that raced the end of the previous dump
  return counter_.set_control(CT_CONTROL_DUMPING);
}

// Frees the slots DESTROY marked during a dump; a flow the dump listed leaves the table too.
void KernelFlows::release_destroyed(ConntrackTable* table) {
  counter_.for_each_flow([&](const ct_flow_slot& seen, ct_flow_slot& slot) {
    if (!(seen.meta & CT_FLOW_DESTROYED)) return;
    if (table != nullptr)
      if (const uint64_t* listed = table_key(seen.key)) table->erase(*listed);
    EventCounter::release_flow(slot, seen.key);
  });
}

bool kernel_flow_key(uint64_t seed, const Conntrack& ct, uint64_t& key) {
  if (ct.orig.l4proto == IPPROTO_TCP || ct.orig_tuple == nullptr || ct.orig_tuple_length % 4 != 0 ||
      ct.orig_tuple_length > CT_MAX_TUPLE_BYTES)
    return false;
  key = ct_flow_key(seed, ct.orig_tuple, ct.orig_tuple_length, ct.family, ct.zone, ct.id);
  return true;
}

void KernelFlows::note_dump_entry(const Conntrack& ct, uint64_t table_key) {
  uint64_t key;
  if (dumping_ && kernel_flow_key(counter_.key_seed(), ct, key))
    dumped_.emplace_back(key, table_key);
}

const uint64_t* KernelFlows::table_key(uint64_t flow_key) const {
  const auto it =
      std::lower_bound(dumped_.begin(), dumped_.end(), std::make_pair(flow_key, uint64_t{0}));
  return it != dumped_.end() && it->first == flow_key ? &it->second : nullptr;
}

Status KernelFlows::end_dump(ConntrackTable& table, uint64_t now_ds) {
  std::sort(dumped_.begin(), dumped_.end());
  counter_.for_each_flow([&](const ct_flow_slot& seen, ct_flow_slot& slot) {
    if (seen.meta & CT_FLOW_DESTROYED) return;  // below
    const uint64_t* listed = table_key(seen.key);
    if (seen.deadline_ds > now_ds) {
      if (listed != nullptr) table.erase(*listed);  // counted here
    } else if (listed != nullptr) {
      // Alive past its last event (packets refresh the timeout without one): the table has
      // it, with the dump's timeout, and the kernel forgets it.
      if (table.contains(*listed)) EventCounter::release_flow(slot, seen.key);
    } else if (seen.deadline_ds + kStaleDs < now_ds) {
      EventCounter::release_flow(slot, seen.key);  // its DESTROY was lost
    }
  });
  // DESTROYs during the dump removed flows it may have listed. Twice: once more after the
  // flag is cleared, for those that came while it was being cleared.
  release_destroyed(&table);
  const Status st = counter_.set_control(0);
  dumping_ = false;
  release_destroyed(&table);
  dumped_.clear();
  return st;
}

void KernelFlows::abort_dump() {
  counter_.set_control(0);
  release_destroyed();
  dumping_ = false;
  dumped_.clear();
}

}  // namespace ctmon
