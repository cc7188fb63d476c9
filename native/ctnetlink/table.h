// table.h — user space's table of tracked entries: every entry's protocol, TCP state and
// announced deadline, kept up to date from events and table listings (dumps), and counted by
// tally(). The classic-filter path keeps every entry here; the eBPF path only those the
// kernel's flow table could not hold (ct_events.h).
//
// No Node-API, no syscalls, no clock (callers pass monotonic milliseconds). Entries are keyed
// by ct_flow_key() of their canonical tuple (ct_events.h: original tuple and zone); a 16-byte
// slot per entry in an open-addressing table. Applying an event allocates nothing unless the
// table grows.
//
// Why deadlines, and why an entry stays past its deadline: the kernel refreshes an entry's
// timeout on every packet without an event, so a deadline an event announced is when the
// entry expires *unless refreshed*. Past it, the entry is counted again only once the kernel
// shows it alive (kernel_flows.h: a walk that makes the kernel reap what expired, then a
// listing); until then tally() reports it as unverified. DESTROY removes an entry; a listing
// removes the entries it no longer shows (their DESTROY was lost, or never sent under
// nf_conntrack_events=2).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ctnetlink/decoder.h"
#include "ebpf/ct_events.h"

namespace ctmon {

// The canonical tuple of a decoded entry (ct_events.h), in namespace `ns`.
ct_tuple tuple_of(const Conntrack& ct, uint16_t ns);

enum ProtocolClass : uint8_t { kProtoTcp, kProtoUdp, kProtoIcmp, kProtoOther, kProtoClassCount };

struct TableCounts {
  uint32_t entries = 0;
  uint32_t protocols[kProtoClassCount] = {};
  uint32_t tcp_states[kTcpStateCount] = {};  // index: enum tcp_conntrack; NONE for unknown
  // Inline: a tally calls it once per entry of a table that may hold a million.
  void add(uint8_t protocol, uint8_t tcp_state) {
    ++entries;
    ++protocols[protocol < kProtoClassCount ? protocol : static_cast<uint8_t>(kProtoOther)];
    if (protocol == kProtoTcp) ++tcp_states[tcp_state < kTcpStateCount ? tcp_state : 0];
  }
  void add(const TableCounts& other);
};

// What a tally found: the entries the kernel lists (deadline ahead, or shown alive by the
// latest verification), and how many are past their deadline, not verified since.
struct TableTally {
  TableCounts listed;
  TableCounts unverified;  // by protocol and TCP state, so that only what they touch is unknown
  // Of listed: alive at the latest verification more than kRefreshedDs past their deadline,
  // so refreshed by packets; a listing learns the deadline the kernel now holds.
  uint32_t survivors = 0;
};

// CTA_TIMEOUT is the time left rounded down to whole seconds, so an entry may live up to a
// second past the deadline an event gave it: alive less than that past it proves no refresh.
constexpr uint32_t kRefreshedDs = 10;

// Whether an entry alive at `verified_ds` with deadline `deadline_ds` was refreshed.
inline bool refreshed(uint32_t deadline_ds, uint64_t verified_ds) {
  return deadline_ds + uint64_t{kRefreshedDs} <= verified_ds;
}

class ConntrackTable {
 public:
  // initial_slots (a power of two) is small only in the fuzzer, to make collisions common.
  explicit ConntrackTable(uint64_t seed, size_t initial_slots = 1024);

  // A NEW, UPDATE or DESTROY event received at now_ms.
  void apply_event(const Conntrack& ct, uint64_t now_ms);

  // Resynchronisation: begin_dump(), apply_dump_entry() for each entry of a full dump, then
  // end_dump(), which drops every entry the dump did not list (its DESTROY was lost or never
  // sent) unless a NEW event during the dump created it. Events read between begin_dump() and
  // end_dump() (the reader drains the event socket between the dump's datagrams, and once
  // more before end_dump()) win over the dump's view of an entry's state; an UPDATE alone
  // does not keep an entry the dump does not list.
  void begin_dump();
  void apply_dump_entry(const Conntrack& ct, uint64_t now_ms);
  size_t end_dump();
  void abort_dump();  // a failed or cancelled dump: keep the previous state

  // Counts the entries at now_ms: those whose deadline is ahead, and those past it that the
  // latest verification (a walk or listing at verified_ms) found alive; the others are
  // unverified. One pass over the table.
  void tally(uint64_t now_ms, uint64_t verified_ms, TableTally& out) const;

  // An entry's identity as this table hashes it, and whether it holds it: a listing leaves an
  // entry this table holds here rather than hand it to the kernel's flow table (kernel_flows.h).
  uint64_t key(const Conntrack& ct) const { return key_of(ct); }
  bool contains(uint64_t key) { return find(key) != nullptr; }

  size_t memory_bytes() const { return slots_.capacity() * sizeof(Slot); }

 private:
  struct Slot {
    uint64_t key;          // 0 = empty
    uint32_t deadline_ds;  // expiry in deciseconds of the caller's clock (13 years of range)
    uint16_t generation;   // the dump that last saw it
    uint8_t protocol;      // ProtocolClass
    uint8_t tcp_state;     // enum tcp_conntrack, NONE (0) when unknown
  };
  static_assert(sizeof(Slot) == 16, "one cache line holds four entries");

  uint64_t key_of(const Conntrack& ct) const;
  Slot* find(uint64_t key);
  Slot* insert(uint64_t key, const Conntrack& ct);
  // `confirms`: this message shows the entry exists now (a dump entry, a NEW, any event
  // outside a dump), so it gets the current generation.
  void upsert(uint64_t key, const Conntrack& ct, uint64_t now_ms, uint32_t deadline_pad_ms,
              bool confirms);
  void erase_at(size_t index);
  void grow();

  // Keys touched by events during a dump: a flat open-addressing set, cleared (not freed)
  // after each dump, so a dump under load allocates only while it grows.
  class KeySet {
   public:
    void insert(uint64_t key);
    bool contains(uint64_t key) const;
    void clear();

   private:
    std::vector<uint64_t> keys_ = std::vector<uint64_t>(1024);
    size_t used_ = 0;
  };

  uint64_t seed_;
  std::vector<Slot> slots_;
  bool dumping_ = false;
  KeySet touched_;
  size_t used_ = 0;
  uint16_t generation_ = 0;
};

}  // namespace ctmon
