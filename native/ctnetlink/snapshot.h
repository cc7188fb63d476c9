// snapshot.h — what fills the table: the entries of one dump grouped by source address,
// destination address, destination port and state (all from the ORIGINAL direction), with
// the heaviest keys of each group and the entries the kernel may evict.
//
// Pure: no Node-API, no syscalls, no clock, any one thread. Fed decoded dump entries
// (decoder.h) one at a time while the dump is read; nothing per entry is kept. Each group
// counts into a flat open-addressing map keyed by raw bytes (family + 16 address bytes, or a
// packed protocol/port or protocol/state word) under a seeded hash, so an entry costs four
// hashes and increments and allocates nothing unless a map grows. Keys become text only for
// the top N of each group.
//
// Memory is bounded: an address slot takes 24 bytes and a port/state slot 8, at a load of at
// most 3/4, and a group holds at most kMaxSnapshotKeys distinct keys (an entry whose key
// would be a new one past that is still counted, in `other`). A 262,144-entry table of
// distinct destinations takes ~12 MiB while grouping; everything is freed with the object.
//
// Evictable: entries without IPS_ASSURED, the only ones early_drop() evicts when an insert
// finds the table full (net/netfilter/nf_conntrack_core.c, early_drop_list).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ctnetlink/decoder.h"

namespace ctmon {

enum SnapshotGroup : int {
  kBySource,
  kByDestination,
  kByDestinationPort,
  kByState,
  kSnapshotGroupCount
};

constexpr size_t kMaxSnapshotKeys = size_t{1} << 20;

struct TopItem {
  std::string key;
  uint64_t entries = 0;
};

struct TopGroup {
  std::vector<TopItem> top;  // entries descending, ties by key in its natural order
  uint64_t other = 0;        // entries of every key not in `top`
};

struct TopReport {
  uint64_t entries = 0;
  uint64_t evictable = 0;  // without IPS_ASSURED
  TopGroup groups[kSnapshotGroupCount];
};

// A map from a key of N bytes to a count. Open addressing with linear probing; a count of 0
// marks an empty slot. Keys compare with memcmp, which is their natural order (see .cc).
template <size_t N>
class KeyCounter {
 public:
  struct Slot {
    uint8_t key[N];
    uint32_t count;
  };

  KeyCounter(uint64_t seed, size_t initial_slots, size_t max_keys);
  // Counts one entry for `key`; false when the key is new and the map is at max_keys.
  bool add(const uint8_t* key);
  size_t size() const { return used_; }
  const std::vector<Slot>& slots() const { return slots_; }
  size_t memory_bytes() const { return slots_.capacity() * sizeof(Slot); }

 private:
  uint64_t hash(const uint8_t* key) const;
  void grow();

  uint64_t seed_;
  size_t max_keys_;
  size_t used_ = 0;
  std::vector<Slot> slots_;
};

class SnapshotGrouper {
 public:
  // initial_slots (a power of two) is small only in the fuzzer, to make maps grow early.
  explicit SnapshotGrouper(uint64_t seed, size_t initial_slots = 1024,
                           size_t max_keys = kMaxSnapshotKeys);

  // One dump entry. Entries without an original tuple are ignored (returns false): a dump
  // always sends one, so such a message is malformed.
  bool add(const Conntrack& ct);

  // The `limit` heaviest keys of each group (partial sort), the rest summed in `other`.
  TopReport top(size_t limit) const;

  uint64_t entries() const { return entries_; }
  size_t memory_bytes() const;

 private:
  uint64_t entries_ = 0;
  uint64_t evictable_ = 0;
  KeyCounter<17> sources_;  // family, address (16 bytes, IPv4 in the first 4)
  KeyCounter<17> destinations_;
  KeyCounter<4> ports_;   // protocol, port (be16) or ICMP type, 0
  KeyCounter<4> states_;  // protocol, TCP state or status class, 0, 0
};

// Key texts, exposed for tests: "udp/53", "icmp/echo-request", "tcp/TIME_WAIT", "udp/ASSURED".
std::string protocol_name(uint8_t l4proto);
std::string port_key_text(const uint8_t* key);
std::string state_key_text(const uint8_t* key);
std::string address_key_text(const uint8_t* key);

}  // namespace ctmon
