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
// Memory is bounded: an address slot takes 24 bytes and a port/state slot 8 (plus 4 to list
// it), at a load of at most 3/4, and a group holds at most kMaxSnapshotKeys distinct keys (an
// entry whose key would be a new one past that is still counted, in `other`). Maps are sized
// up front for the namespace's entry count, but only the pages keys land in are touched: a
// 262,144-entry table of distinct destinations takes ~14 MiB while grouping, one of a few
// sources and ports far less; everything is freed with the object.
//
// What the kernel can reclaim, in two classes that overlap:
// - unassured: entries without IPS_ASSURED, the only ones the kernel's early_drop() evicts when
//   an insert finds the table full;
// - closing TCP: entries in FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT or CLOSE, which the
//   kernel's garbage collector also evicts, assured or not, once an insert has failed and the
//   namespace holds 95% of nf_conntrack_max (its gc_worker_can_early_drop, tcp_can_early_drop).
// An unassured TCP entry in CLOSE_WAIT is in both: counted in each class, and once in
// `evictable`, the union.
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
  uint64_t evictable = 0;    // unassured or closing TCP: each entry once
  uint64_t unassured = 0;    // without IPS_ASSURED
  uint64_t tcp_closing = 0;  // TCP in FIN_WAIT, CLOSE_WAIT, LAST_ACK, TIME_WAIT or CLOSE
  TopGroup groups[kSnapshotGroupCount];
};

// A map from a key of N bytes to a count. Open addressing with linear probing; a count of 0
// marks an empty slot. Keys compare with memcmp, which is their natural order (see .cc).
// The slots come from calloc: a large array is fresh zero pages, and a page costs nothing
// until a key lands in it, so a map sized for many keys that receives few stays small in
// memory. The used slots are listed, so growing and reading never scan the whole array.
template <size_t N>
class KeyCounter {
 public:
  struct Slot {
    uint8_t key[N];
    uint32_t count;
  };

  // initial_slots: a power of two. Throws std::bad_alloc when memory runs out.
  KeyCounter(uint64_t seed, size_t initial_slots, size_t max_keys);
  ~KeyCounter();
  KeyCounter(const KeyCounter&) = delete;
  KeyCounter& operator=(const KeyCounter&) = delete;

  // Counts one entry for `key`; false when the key is new and the map is at max_keys.
  bool add(const uint8_t* key) { return add(key, hash(key)); }
  bool add(const uint8_t* key, uint64_t hash);
  uint64_t hash(const uint8_t* key) const;
  // Starts loading the slot a hash probes first (batches hide the cache misses of large maps).
  void prefetch(uint64_t hash) const { __builtin_prefetch(&slots_[hash & (capacity_ - 1)]); }
  size_t size() const { return used_.size(); }
  template <typename Visit>
  void for_each(Visit&& visit) const {
    for (uint32_t i : used_) visit(slots_[i]);
  }
  size_t memory_bytes() const {
    return capacity_ * sizeof(Slot) + used_.capacity() * sizeof(uint32_t);
  }

 private:
  void grow();

  uint64_t seed_;
  size_t max_keys_;
  size_t capacity_;
  Slot* slots_;
  std::vector<uint32_t> used_;  // indices of the used slots, in insertion order
};

class SnapshotGrouper {
 public:
  // expected_entries sizes the maps for that many distinct keys (the namespace's count before
  // the dump: untouched slots cost no memory); the fuzzer gives 0 to make the maps grow early.
  explicit SnapshotGrouper(uint64_t seed, size_t expected_entries = 0,
                           size_t max_keys = kMaxSnapshotKeys);

  // One dump entry. Entries without an original tuple are ignored (returns false): a dump
  // always sends one, so such a message is malformed.
  bool add(const Conntrack& ct) { return add_batch(&ct, 1) == 0; }
  // The entries of one datagram; returns how many were ignored. The address maps' slots are
  // prefetched a chunk ahead: with many distinct addresses each lookup is a cache miss.
  size_t add_batch(const Conntrack* entries, size_t n);

  // The `limit` heaviest keys of each group (partial sort), the rest summed in `other`.
  TopReport top(size_t limit) const;

  uint64_t entries() const { return entries_; }
  size_t memory_bytes() const;

 private:
  uint64_t entries_ = 0;
  uint64_t evictable_ = 0;
  uint64_t unassured_ = 0;
  uint64_t tcp_closing_ = 0;
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
