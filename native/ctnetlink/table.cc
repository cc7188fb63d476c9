// table.cc — see table.h. No Node-API, no syscalls.
#include "ctnetlink/table.h"

#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include "base/hash.h"

namespace ctmon {
namespace {

constexpr uint32_t kNever = UINT32_MAX;

ProtocolClass classify(uint8_t l4proto) {
  switch (l4proto) {
    case IPPROTO_TCP:
      return kProtoTcp;
    case IPPROTO_UDP:
      return kProtoUdp;
    case IPPROTO_ICMP:
    case IPPROTO_ICMPV6:
      return kProtoIcmp;
    default:
      return kProtoOther;
  }
}

uint32_t deadline_ds(uint64_t now_ms, uint32_t timeout_s, uint32_t pad_ms) {
  const uint64_t ds = (now_ms + static_cast<uint64_t>(timeout_s) * 1000 + pad_ms + 99) / 100;
  return ds >= kNever ? kNever - 1 : static_cast<uint32_t>(ds);
}

}  // namespace

ConntrackTable::ConntrackTable(uint64_t seed, size_t initial_slots)
    : seed_(seed), slots_(initial_slots) {}

ct_tuple tuple_of(const Conntrack& ct, uint16_t ns) {
  ct_tuple t{};
  std::memcpy(t.src, ct.orig.src, sizeof t.src);
  std::memcpy(t.dst, ct.orig.dst, sizeof t.dst);
  t.sport = ct.orig.src_port;
  t.dport = ct.orig.dst_port;
  t.icmp_type = ct.orig.icmp_type;
  t.icmp_code = ct.orig.icmp_code;
  t.family = ct.family;
  t.proto = ct.orig.l4proto;
  t.zone = ct.zone;
  t.ns = ns;
  return t;
}

void TableCounts::add(const TableCounts& other) {
  entries += other.entries;
  for (int p = 0; p < kProtoClassCount; ++p) protocols[p] += other.protocols[p];
  for (int t = 0; t < kTcpStateCount; ++t) tcp_states[t] += other.tcp_states[t];
}

// The identity of an entry: its canonical tuple (original tuple and zone). The kernel holds
// one entry per tuple at a time; a NEW for a tuple held here is a later incarnation, whose
// predecessor's DESTROY is yet to come or was lost.
uint64_t ConntrackTable::key_of(const Conntrack& ct) const {
  const ct_tuple t = tuple_of(ct, 0);
  return ct_flow_key(seed_, &t);
}

ConntrackTable::Slot* ConntrackTable::find(uint64_t key) {
  const size_t mask = slots_.size() - 1;
  for (size_t i = key & mask;; i = (i + 1) & mask) {
    if (slots_[i].key == key) return &slots_[i];
    if (slots_[i].key == 0) return nullptr;
  }
}

ConntrackTable::Slot* ConntrackTable::insert(uint64_t key, const Conntrack& ct) {
  if ((used_ + 1) * 2 > slots_.size()) grow();  // keep the load factor at most 1/2
  const size_t mask = slots_.size() - 1;
  size_t i = key & mask;
  while (slots_[i].key != 0) i = (i + 1) & mask;
  Slot& s = slots_[i];
  s.key = key;
  s.deadline_ds = kNever;
  s.generation = generation_;
  s.protocol = classify(ct.orig.l4proto);
  s.tcp_state = 0;
  ++used_;
  return &s;
}

// Backward-shift deletion keeps probe chains intact without tombstones.
void ConntrackTable::erase_at(size_t hole) {
  --used_;
  const size_t mask = slots_.size() - 1;
  for (size_t j = (hole + 1) & mask; slots_[j].key != 0; j = (j + 1) & mask) {
    const size_t home = slots_[j].key & mask;
    // Move j into the hole unless its home lies cyclically in (hole, j].
    const bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (stays) continue;
    slots_[hole] = slots_[j];
    hole = j;
  }
  slots_[hole].key = 0;
}

void ConntrackTable::grow() {
  std::vector<Slot> old(slots_.size() * 2);
  old.swap(slots_);
  const size_t mask = slots_.size() - 1;
  for (const Slot& s : old) {
    if (s.key == 0) continue;
    size_t i = s.key & mask;
    while (slots_[i].key != 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
}

void ConntrackTable::upsert(uint64_t key, const Conntrack& ct, uint64_t now_ms,
                            uint32_t deadline_pad_ms, bool confirms) {
  // A timeout of 0 (under a second left) makes the deadline now: the entry is verified next.
  Slot* s = find(key);
  if (s == nullptr) {
    s = insert(key, ct);
    // Not confirmed: the previous generation, which end_dump() drops unless the dump lists it.
    if (!confirms) s->generation = static_cast<uint16_t>(generation_ - 1);
  }
  if (confirms) s->generation = generation_;
  if (ct.has(Conntrack::kHasTcpState) && s->protocol == kProtoTcp)
    s->tcp_state = ct.tcp_state < kTcpStateCount ? ct.tcp_state : 0;
  if (ct.has(Conntrack::kHasTimeout))
    s->deadline_ds = deadline_ds(now_ms, ct.timeout_s, deadline_pad_ms);
}

void ConntrackTable::apply_event(const Conntrack& ct, uint64_t now_ms) {
  const uint64_t key = key_of(ct);  // hashed once per event
  if (dumping_) touched_.insert(key);
  if (ct.kind == EventKind::kDestroy) {
    // Duplicate DESTROYs (reliable-delivery listeners elsewhere) and DESTROY for entries
    // this table never saw are both harmless: there is nothing to erase.
    if (Slot* s = find(key)) erase_at(static_cast<size_t>(s - slots_.data()));
    return;
  }
  // An event's CTA_TIMEOUT was set by the packet that caused it, usually within the same tick:
  // no padding (the deadline is exact but for the rare tick between; kRefreshedDs allows it).
  // An UPDATE for an unknown entry inserts it: the kernel has it, or had it.
  // During a dump, only a NEW proves that its entry outlives the dump's start (the queue was
  // drained before the dump began). An UPDATE may be older than its entry's DESTROY, and when
  // events are being lost that DESTROY may never come: the entry an UPDATE names then
  // survives end_dump() only if the dump lists it. Otherwise such an entry, gone from the
  // kernel, stayed until its own deadline (a CLOSE entry 10 s, an ESTABLISHED one days).
  upsert(key, ct, now_ms, 0, !dumping_ || ct.kind == EventKind::kNew);
}

void ConntrackTable::begin_dump() {
  ++generation_;
  dumping_ = true;
}

// A dump's CTA_TIMEOUT is rounded down to whole seconds: the entry lives up to 1 s longer.
void ConntrackTable::apply_dump_entry(const Conntrack& ct, uint64_t now_ms) {
  const uint64_t key = key_of(ct);
  if (touched_.contains(key)) {
    // An event during the dump said more about its state (or that it is gone: then it is not
    // found); the dump says that it exists.
    if (Slot* s = find(key)) s->generation = generation_;
    return;
  }
  upsert(key, ct, now_ms, 1000, true);
}

void ConntrackTable::abort_dump() {
  dumping_ = false;
  touched_.clear();
}

size_t ConntrackTable::end_dump() {
  dumping_ = false;
  touched_.clear();
  size_t removed = 0;
  for (size_t i = 0; i < slots_.size();) {
    if (slots_[i].key != 0 && slots_[i].generation != generation_) {
      erase_at(i);  // a later entry may shift into i: look at i again
      ++removed;
    } else {
      ++i;
    }
  }
  return removed;
}

void ConntrackTable::KeySet::insert(uint64_t key) {
  if ((used_ + 1) * 2 > keys_.size()) {
    std::vector<uint64_t> old(keys_.size() * 2);
    old.swap(keys_);
    used_ = 0;
    for (uint64_t k : old)
      if (k != 0) insert(k);
  }
  const size_t mask = keys_.size() - 1;
  for (size_t i = key & mask;; i = (i + 1) & mask) {
    if (keys_[i] == key) return;
    if (keys_[i] == 0) {
      keys_[i] = key;
      ++used_;
      return;
    }
  }
}

bool ConntrackTable::KeySet::contains(uint64_t key) const {
  if (used_ == 0) return false;
  const size_t mask = keys_.size() - 1;
  for (size_t i = key & mask;; i = (i + 1) & mask) {
    if (keys_[i] == key) return true;
    if (keys_[i] == 0) return false;
  }
}

void ConntrackTable::KeySet::clear() {
  if (used_ == 0) return;
  std::fill(keys_.begin(), keys_.end(), 0);
  used_ = 0;
}

void ConntrackTable::tally(uint64_t now_ms, uint64_t verified_ms, TableTally& out) const {
  const uint64_t now_ds = now_ms / 100, verified_ds = verified_ms / 100;
  for (const Slot& s : slots_) {
    if (s.key == 0) continue;
    if (s.deadline_ds > now_ds) {
      out.listed.add(s.protocol, s.tcp_state);
    } else if (s.deadline_ds <= verified_ds) {
      out.listed.add(s.protocol, s.tcp_state);
      if (refreshed(s.deadline_ds, verified_ds)) ++out.survivors;
    } else {
      out.unverified.add(s.protocol, s.tcp_state);
    }
  }
}

}  // namespace ctmon
