// kernel_flows.cc — see kernel_flows.h.
#include "ctnetlink/kernel_flows.h"

namespace ctmon {
namespace {

ct_flow_slot seen(const ct_flow_slot& slot) {
  ct_flow_slot s;
  s.key = __atomic_load_n(&slot.key, __ATOMIC_ACQUIRE);
  s.deadline_ds = __atomic_load_n(&slot.deadline_ds, __ATOMIC_RELAXED);
  s.meta = __atomic_load_n(&slot.meta, __ATOMIC_RELAXED);
  return s;
}

// Sets `bits` of a slot's meta and clears `clear`, with a compare-and-exchange: the program
// may rewrite the meta meanwhile (then the new value is the one to change).
void update_meta(ct_flow_slot& slot, uint32_t bits, uint32_t clear) {
  uint32_t meta = __atomic_load_n(&slot.meta, __ATOMIC_RELAXED);
  while (!__atomic_compare_exchange_n(&slot.meta, &meta, (meta | bits) & ~clear, false,
                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

// Frees a slot if it still holds `key` (the program may have freed and reused it).
void free_slot(ct_flow_slot& slot, uint64_t key) {
  __u64 expected = key;
  __atomic_store_n(&slot.meta, 0, __ATOMIC_RELAXED);  // a free slot carries no marks
  __atomic_store_n(&slot.deadline_ds, 0, __ATOMIC_RELAXED);
  __atomic_compare_exchange_n(&slot.key, &expected, __u64{0}, false, __ATOMIC_SEQ_CST,
                              __ATOMIC_SEQ_CST);
}

// A listing's CTA_TIMEOUT is rounded down to whole seconds: the entry lives up to 1 s longer.
uint32_t listed_deadline(uint64_t now_ns, uint32_t timeout_s) {
  return static_cast<uint32_t>(
      (now_ns + (uint64_t{timeout_s} + 1) * 1000000000 + CT_DECISECOND_NS - 1) / CT_DECISECOND_NS);
}

}  // namespace

Status KernelFlows::open(uint32_t max_namespaces, uint32_t max_flows, VerifierStats* stats) {
  EventCounterOptions options;
  options.variant = EventProgramVariant::kMonitor;
  options.max_flows = max_flows;
  options.max_namespaces = max_namespaces;
  const Status st = counter_.open(options, stats);
  cookies_.assign(st.ok() ? max_namespaces : 0, 0);
  return st;
}

Status KernelFlows::add(uint32_t index, int event_socket_fd) {
  if (index >= cookies_.size()) return Status{ENOSPC, "bpf", "register a network namespace"};
  uint64_t cookie = 0;
  const Status st = counter_.register_namespace(event_socket_fd, index, cookie);
  if (st.ok()) cookies_[index] = cookie;
  return st;
}

void KernelFlows::remove(uint32_t index) {
  if (index >= cookies_.size() || cookies_[index] == 0) return;
  counter_.unregister_namespace(cookies_[index]);
  cookies_[index] = 0;
  ct_flow_bucket* table = counter_.table();
  for (uint32_t b = 0; b < counter_.flow_buckets(); ++b)
    for (ct_flow_slot& slot : table[b].slots) {
      const ct_flow_slot s = seen(slot);
      if (s.key != 0 && CT_META_NS(s.meta) == index) free_slot(slot, s.key);
    }
}

void KernelFlows::tally(uint64_t now_ds, const std::vector<uint64_t>& verified_ds,
                        std::vector<KernelTally>& out) const {
  out.assign(verified_ds.size(), KernelTally{});
  const ct_flow_bucket* table = counter_.table();
  for (uint32_t b = 0; b < counter_.flow_buckets(); ++b) {
    for (const ct_flow_slot& slot : table[b].slots) {
      const ct_flow_slot s = seen(slot);
      // A key without a deadline is being claimed or freed: not a flow yet, or no more.
      if (s.key == 0 || s.deadline_ds == 0) continue;
      const uint32_t ns = CT_META_NS(s.meta);
      if (ns >= out.size()) continue;
      KernelTally& t = out[ns];
      const uint8_t cls = static_cast<uint8_t>(CT_META_CLASS(s.meta));
      const uint8_t state = static_cast<uint8_t>(CT_META_TCP_STATE(s.meta));
      if (s.deadline_ds > now_ds) {
        t.listed.add(cls, state);
      } else if (s.deadline_ds <= verified_ds[ns]) {
        t.listed.add(cls, state);
        if (refreshed(s.deadline_ds, verified_ds[ns])) ++t.survivors;
      } else {
        t.unverified.add(cls, state);
      }
    }
  }
}

ct_flow_slot* KernelFlows::find(uint64_t key) const {
  ct_flow_bucket& bucket = counter_.table()[key & (counter_.flow_buckets() - 1)];
  for (ct_flow_slot& slot : bucket.slots)
    if (__atomic_load_n(&slot.key, __ATOMIC_ACQUIRE) == key) return &slot;
  return nullptr;
}

Status KernelFlows::begin_listing(uint32_t index) {
  if (index >= cookies_.size() || cookies_[index] == 0) return Status{ENOENT, "bpf"};
  unsettled_.clear();  // settled by the last listing's end
  counter_.clear_gone();
  return counter_.set_listing(cookies_[index], index, true);
}

bool KernelFlows::entry(uint32_t index, const Conntrack& ct, uint64_t now_ns) {
  // Only what the program itself would track: the layout it reads, a timeout to expire by.
  ct_tuple t;
  const uint32_t cls = ct.orig_tuple != nullptr
                           ? ct_read_tuple(ct.orig_tuple, ct.orig_tuple_length, ct.family, &t)
                           : static_cast<uint32_t>(CT_CLASS_UNKNOWN);
  if (cls == CT_CLASS_UNKNOWN || !ct.has(Conntrack::kHasTimeout)) return false;
  t.zone = ct.zone;
  t.ns = static_cast<uint16_t>(index);
  const uint64_t k = ct_flow_key(counter_.key_seed(), &t);  // the program's key, by construction
  const uint8_t state =
      ct.has(Conntrack::kHasTcpState) && ct.tcp_state < CT_TCP_STATES ? ct.tcp_state : 0;
  const uint32_t meta = CT_META(cls, state, index) | CT_META_LISTED;
  const uint32_t deadline = listed_deadline(now_ns, ct.timeout_s);
  ct_flow_slot* slot = find(k);
  if (slot == nullptr) {
    slot = claim(k);
    if (slot == nullptr) return false;  // a full bucket: user space keeps it
    // Claimed first, then looked up in ct_gone (settle): the program records a DESTROY's key
    // before it looks for the slot, so either it frees this slot or settle finds its key.
    unsettled_.push_back(k);
  }
  // The deadline first, then the meta unless an event changed it meanwhile: an event since the
  // listing began knows better (it marks the slot TOUCHED), and keeps its state and deadline.
  // (Freeing clears a slot's marks, so a slot just claimed has none of its last flow's.)
  uint32_t old = __atomic_load_n(&slot->meta, __ATOMIC_RELAXED);
  if (old & CT_META_TOUCHED) {
    update_meta(*slot, CT_META_LISTED, 0);
    return true;
  }
  __atomic_store_n(&slot->deadline_ds, deadline, __ATOMIC_RELAXED);
  if (!__atomic_compare_exchange_n(&slot->meta, &old, meta, false, __ATOMIC_RELEASE,
                                   __ATOMIC_RELAXED))
    update_meta(*slot, CT_META_LISTED, 0);
  if (unsettled_.size() >= kSettleBatch) settle();
  return true;
}

// Frees the slots claimed for flows whose DESTROY the program recorded before it could find
// them. A slot an event changed since (CT_META_TOUCHED: the tuple's next incarnation took it
// over) stays; one the DESTROY found is free already.
void KernelFlows::settle() {
  if (!unsettled_.empty() && counter_.any_gone())
    for (const uint64_t k : unsettled_) {
      if (!counter_.gone(k)) continue;
      ct_flow_slot* slot = find(k);
      if (slot != nullptr && !(__atomic_load_n(&slot->meta, __ATOMIC_ACQUIRE) & CT_META_TOUCHED))
        free_slot(*slot, k);
    }
  unsettled_.clear();
}

// Claims a free slot for `key`, as the program does; when the program claimed another slot for
// the same key meanwhile, the lower one wins on both sides (ct_events.bpf.c: claim_slot).
ct_flow_slot* KernelFlows::claim(uint64_t key) {
  ct_flow_bucket& bucket = counter_.table()[key & (counter_.flow_buckets() - 1)];
  for (int i = 0; i < CT_SLOTS_PER_BUCKET; ++i) {
    __u64 expected = 0;
    if (!__atomic_compare_exchange_n(&bucket.slots[i].key, &expected, __u64{key}, false,
                                     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
      continue;
    for (int j = 0; j < i; ++j)
      if (__atomic_load_n(&bucket.slots[j].key, __ATOMIC_SEQ_CST) == key) {
        free_slot(bucket.slots[i], key);
        return &bucket.slots[j];
      }
    return &bucket.slots[i];
  }
  return nullptr;
}

void KernelFlows::end_listing(uint32_t index) {
  settle();
  if (index >= cookies_.size() || cookies_[index] == 0) return;
  // Flows of the namespace the listing did not show and no event named meanwhile are gone
  // (their DESTROY was lost, or never sent under nf_conntrack_events=2). Swept while the
  // program still marks what events change, so that an event during the sweep keeps its flow;
  // the marks it leaves after the sweep are cleared once it stops marking.
  ct_flow_bucket* table = counter_.table();
  for (uint32_t b = 0; b < counter_.flow_buckets(); ++b)
    for (ct_flow_slot& slot : table[b].slots) {
      const ct_flow_slot s = seen(slot);
      if (s.key == 0 || CT_META_NS(s.meta) != index) continue;
      if (s.meta & (CT_META_LISTED | CT_META_TOUCHED))
        update_meta(slot, 0, CT_META_LISTED | CT_META_TOUCHED);
      else
        free_slot(slot, s.key);
    }
  counter_.set_listing(cookies_[index], index, false);
  clear_marks(index);
  counter_.clear_gone();
}

// Clears the listing's marks of the namespace's flows.
void KernelFlows::clear_marks(uint32_t index) {
  ct_flow_bucket* table = counter_.table();
  for (uint32_t b = 0; b < counter_.flow_buckets(); ++b)
    for (ct_flow_slot& slot : table[b].slots) {
      const ct_flow_slot s = seen(slot);
      if (s.key != 0 && CT_META_NS(s.meta) == index &&
          (s.meta & (CT_META_LISTED | CT_META_TOUCHED)))
        update_meta(slot, 0, CT_META_LISTED | CT_META_TOUCHED);
    }
}

void KernelFlows::abort_listing(uint32_t index) {
  settle();
  if (index >= cookies_.size() || cookies_[index] == 0) return;
  counter_.set_listing(cookies_[index], index, false);
  clear_marks(index);
  counter_.clear_gone();
}

}  // namespace ctmon
