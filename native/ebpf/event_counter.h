// event_counter.h — loads a ctnetlink event socket filter of ct_events.bpf.c (its maps and
// constants in ct_events.h), attaches it to event sockets and reads its maps.
//
//   EventCounter counter;
//   Status st = counter.open();                 // ct_count and its counters
//   st = counter.attach(event_socket_fd);       // SO_ATTACH_BPF, before joining the groups
//   ct_counters c; counter.read(0, c);          // cumulative, summed over CPUs
//
// With the monitor variant (ct_monitor), one EventCounter serves every namespace of a reader:
// register each namespace's event socket (register_namespace, by its socket cookie) before
// attaching the program to it; the flow table is mapped into this process (table()).
//
// The sockets must be NETLINK_NETFILTER sockets subscribed to the NFNLGRP_CONNTRACK_* groups
// whose messages are to be counted; the program then runs for each of them in the kernel. The
// maps live while the EventCounter is open or a socket holds the program.
//
// Needs CAP_BPF (or CAP_SYS_ADMIN), unless kernel.unprivileged_bpf_disabled is 0; Linux 5.12
// (the atomics of -mcpu=v3). No Node-API. Not thread-safe: one
// thread owns an EventCounter; the kernel side is safe against concurrent runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/fd.h"
#include "ebpf/bpf.h"
#include "ebpf/ct_events.h"

namespace ctmon {

// Which of ct_events.bpf.c's programs: ct_count, or ct_monitor with its flow table.
enum class EventProgramVariant : uint8_t { kCountOnly, kMonitor };

// Messages of one kind, over every class.
inline uint64_t kind_total(const ct_counters& c, uint32_t kind) {
  uint64_t n = 0;
  for (uint32_t k = 0; k < CT_CLASS_COUNT; ++k) n += c.messages[kind][k];
  return n;
}

struct EventCounterOptions {
  EventProgramVariant variant = EventProgramVariant::kCountOnly;
  // ct_monitor: flows the table is sized for, two slots each in buckets of 8 (a NEW whose
  // bucket is full passes to user space). 0: the calling thread's nf_conntrack_max.
  uint32_t max_flows = 0;
  // ct_monitor: namespaces it may serve at once (ct_counters' and ct_namespaces' size).
  uint32_t max_namespaces = 1;
  uint64_t key_seed = 0;  // ct_monitor: ct_flow_key()'s seed; 0 (the default): a random one
};

class EventCounter {
 public:
  EventCounter() = default;
  ~EventCounter() { close(); }
  EventCounter(const EventCounter&) = delete;
  EventCounter& operator=(const EventCounter&) = delete;

  // Creates the maps and loads the program; on failure nothing stays open. `stats`, when
  // given, gets the verifier's statistics.
  Status open(const EventCounterOptions& options = {}, VerifierStats* stats = nullptr);
  bool is_open() const { return program_.get() >= 0; }
  void close();

  // SO_ATTACH_BPF: from now on the program filters every message queued to `socket_fd`.
  Status attach(int socket_fd) const;

  // ct_monitor: the namespace whose event socket is `socket_fd` (opened inside it; known to the
  // program by the socket's cookie, SO_COOKIE) gets index `index`
  // (< max_namespaces; its counters start at zero); unregister forgets it. Register before
  // attaching: the program passes the events of sockets it does not know.
  Status register_namespace(int socket_fd, uint32_t index, uint64_t& cookie);
  Status unregister_namespace(uint64_t cookie);
  // Whether a listing of the namespace is being applied (CT_NS_LISTING).
  Status set_listing(uint64_t cookie, uint32_t index, bool listing) const;

  // Cumulative counts of namespace `index` (0 for ct_count), summed over CPUs.
  Status read(uint32_t index, ct_counters& out) const;

  int program_fd() const { return program_.get(); }

  // ct_monitor: the flow table, mapped (the program writes it concurrently: read slots with
  // atomic loads, claim and free them with compare-and-exchange).
  uint64_t key_seed() const { return key_seed_; }
  uint32_t flow_buckets() const { return flow_buckets_; }
  ct_flow_bucket* table() const { return table_; }
  // Whether a DESTROY recorded `key` while its namespace was being listed; forget them all.
  bool gone(uint64_t key) const;
  bool any_gone() const;  // one system call, where gone() is one per key
  void clear_gone() const;

 private:
  // ct_gone's key after `key` (nullptr: its first); false when there is none.
  bool next_gone(const uint64_t* key, uint64_t& next) const;
  void unmap();

  Fd counters_;
  Fd flows_;
  Fd namespaces_;
  Fd gone_;
  Fd control_;
  Fd program_;
  uint64_t key_seed_ = 0;
  uint32_t flow_buckets_ = 0;
  uint32_t max_namespaces_ = 1;
  ct_flow_bucket* table_ = nullptr;  // flows_ mapped (mmap)
  size_t table_bytes_ = 0;
  mutable std::vector<uint8_t> per_cpu_;  // lookup buffer, reused
};

}  // namespace ctmon
