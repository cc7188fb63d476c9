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

// The identity of an entry: zone, family, original tuple and CTA_ID (the id alone repeats
// after an entry is freed; the tuple alone repeats when a flow is reopened).
uint64_t ConntrackTable::key_of(const Conntrack& ct) const {
  uint64_t words[6] = {};
  uint8_t* p = reinterpret_cast<uint8_t*>(words);
  std::memcpy(p, ct.orig.src, 16);
  std::memcpy(p + 16, ct.orig.dst, 16);
  words[4] = static_cast<uint64_t>(ct.orig.src_port) |
             static_cast<uint64_t>(ct.orig.dst_port) << 16 |
             static_cast<uint64_t>(ct.orig.icmp_type) << 32 |
             static_cast<uint64_t>(ct.orig.icmp_code) << 40 |
             static_cast<uint64_t>(ct.orig.l4proto) << 48 | static_cast<uint64_t>(ct.family) << 56;
  words[5] = static_cast<uint64_t>(ct.id) | static_cast<uint64_t>(ct.zone) << 32;
  uint64_t h = seed_;
  for (uint64_t w : words) h = fmix64(h ^ w) + 0x9e3779b97f4a7c15ULL;
  return h == 0 ? 1 : h;  // 0 marks an empty slot
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
  count(s, +1);
  return &s;
}

// Backward-shift deletion keeps probe chains intact without tombstones.
void ConntrackTable::erase_at(size_t hole) {
  count(slots_[hole], -1);
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

void ConntrackTable::count(const Slot& s, int delta) {
  counts_.entries += delta;
  counts_.protocols[s.protocol] += delta;
  if (s.protocol == kProtoTcp)
    counts_.tcp_states[s.tcp_state < kTcpStateCount ? s.tcp_state : 0] += delta;
}

void ConntrackTable::upsert(uint64_t key, const Conntrack& ct, uint64_t now_ms,
                            uint32_t deadline_pad_ms, bool confirms) {
  if (ct.has(Conntrack::kHasTimeout) && ct.timeout_s == 0) return;  // already expired
  Slot* s = find(key);
  if (s == nullptr) {
    s = insert(key, ct);
    // Not confirmed: the previous generation, which end_dump() drops unless the dump lists it.
    if (!confirms) s->generation = static_cast<uint16_t>(generation_ - 1);
  }
  if (confirms) s->generation = generation_;
  if (ct.has(Conntrack::kHasTcpState) && s->protocol == kProtoTcp && s->tcp_state != ct.tcp_state) {
    count(*s, -1);
    s->tcp_state = ct.tcp_state < kTcpStateCount ? ct.tcp_state : 0;
    count(*s, +1);
  }
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
  // An event's CTA_TIMEOUT was set by the packet that caused it: it is fresh, no padding.
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

bool ConntrackTable::erase(uint64_t key) {
  Slot* s = find(key);
  if (s == nullptr) return false;
  erase_at(static_cast<size_t>(s - slots_.data()));
  return true;
}

size_t ConntrackTable::expire(uint64_t now_ms) {
  const uint64_t now_ds = now_ms / 100;
  size_t removed = 0;
  for (size_t i = 0; i < slots_.size();) {
    if (slots_[i].key != 0 && slots_[i].deadline_ds <= now_ds) {
      erase_at(i);
      ++removed;
    } else {
      ++i;
    }
  }
  return removed;
}

}  // namespace ctmon
