// table.h — the monitor's own view of the conntrack table: every tracked entry's
// protocol, TCP state and expiry deadline, kept up to date from events and table dumps, with
// counts by protocol and TCP state maintained incrementally.
//
// No Node-API, no syscalls, no clock (callers pass monotonic milliseconds). Entries are keyed
// by a seeded 64-bit hash of (zone, family, original tuple, CTA_ID); a 16-byte slot per entry
// in an open-addressing table. Applying an event allocates nothing unless the table grows.
//
// Why deadlines: the kernel reaps expired entries 1 to 60 s late, and entries created before
// any listener existed (nf_conntrack_events=2) never send DESTROY at all. Counting what the
// kernel *lists* means expiring entries here, at the deadline CTA_TIMEOUT gives.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "ctnetlink/decoder.h"

namespace ctmon {

enum ProtocolClass : uint8_t { kProtoTcp, kProtoUdp, kProtoIcmp, kProtoOther, kProtoClassCount };

struct TableCounts {
  uint32_t entries = 0;
  uint32_t protocols[kProtoClassCount] = {};
  uint32_t tcp_states[kTcpStateCount] = {};  // index: enum tcp_conntrack; NONE for unknown
};

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

  // Drops entries whose deadline has passed; returns how many.
  size_t expire(uint64_t now_ms);

  const TableCounts& counts() const { return counts_; }
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
  void count(const Slot& s, int delta);
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
  TableCounts counts_;
};

}  // namespace ctmon
