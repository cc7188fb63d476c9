// event_counter.h — loads the ctnetlink event socket filter (ct_events.bpf.c, its maps and
// constants in ct_events.h), attaches it to an event socket and reads its counts.
//
//   EventCounter counter;
//   Status st = counter.open();            // maps + program, kCountOnly by default
//   st = counter.attach(event_socket_fd);       // SO_ATTACH_BPF, before joining the groups
//   ct_counters c; counter.read(c);             // cumulative, summed over CPUs
//
// The socket must be a NETLINK_NETFILTER socket subscribed to the NFNLGRP_CONNTRACK_* groups
// whose messages are to be counted; the program then runs for each of them in the kernel.
// One open() serves any number of sockets (each attach() adds one). The maps live while the
// EventCounter is open or a socket holds the program.
//
// Needs CAP_BPF (or CAP_SYS_ADMIN), unless kernel.unprivileged_bpf_disabled is 0; Linux 5.12
// (the atomics of -mcpu=v3). No Node-API. Not thread-safe: one thread owns an EventCounter (reads
// may come from any one thread; the kernel side is safe against concurrent runs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "ebpf/bpf.h"
#include "ebpf/ct_events.h"

namespace ctmon {

// Which of ct_events.bpf.c's programs: ct_count, or ct_monitor with its flow table and wheel.
enum class EventProgramVariant : uint8_t { kCountOnly, kMonitor };

// Messages of one kind, over every class.
inline uint64_t kind_total(const ct_counters& c, uint32_t kind) {
  uint64_t n = 0;
  for (uint32_t k = 0; k < CT_CLASS_COUNT; ++k) n += c.messages[kind][k];
  return n;
}

struct EventCounterOptions {
  EventProgramVariant variant = EventProgramVariant::kCountOnly;
  // ct_monitor: flows the kernel's table is sized for (a quarter of its slots; a NEW whose
  // bucket is full passes to user space). 0: the calling thread's nf_conntrack_max, which
  // bounds a namespace's entries.
  uint32_t max_flows = 0;
  uint64_t key_seed = 0;  // ct_monitor: ct_flow_key()'s seed; 0 (the default): a random one
};

class EventCounter {
 public:
  EventCounter() = default;
  ~EventCounter() { close(); }
  EventCounter(const EventCounter&) = delete;
  EventCounter& operator=(const EventCounter&) = delete;

  // Creates the maps and loads the program. On failure `reason` says why and nothing stays
  // open. `stats`, when given, gets the verifier's statistics.
  Status open(const EventCounterOptions& options = {}, VerifierStats* stats = nullptr);
  bool is_open() const { return program_.get() >= 0; }
  void close();

  // SO_ATTACH_BPF: from now on the program filters every message queued to `socket_fd`
  // (replacing any filter it had).
  Status attach(int socket_fd) const;

  // Cumulative counts since open(), summed over CPUs.
  Status read(ct_counters& out) const;

  // Runs the program once on one netlink message (BPF_PROG_TEST_RUN) and returns what it
  // returned: 0 for a message dropped, nonzero for one passed. The counters count it.
  Status test_run(const uint8_t* message, size_t length, uint32_t& verdict) const;

  int program_fd() const { return program_.get(); }

  // ct_monitor: the maps behind the non-TCP flows the program tracks (ct_events.h).
  uint64_t key_seed() const { return key_seed_; }
  uint32_t flow_buckets() const { return flow_buckets_; }
  // One slot of the expiry wheel, summed over CPUs.
  Status read_wheel(uint32_t slot, ct_wheel_slot& out) const;
  // Sets the control bits (enum ct_control_bits) the program reads.
  Status set_control(uint32_t bits) const;
  // Every occupied slot of the flow table, read in place (the table is mapped into this
  // process): fn(a copy, the slot). Flows come and go meanwhile.
  void for_each_flow(
      const std::function<void(const ct_flow_slot& seen, ct_flow_slot& slot)>& fn) const;
  // Frees `slot` if it still holds `key` (an atomic compare-and-exchange, as the program's).
  static bool release_flow(ct_flow_slot& slot, uint64_t key);

 private:
  void unmap();

  Fd counters_;
  Fd flows_;
  Fd wheel_;
  Fd control_;
  Fd program_;
  uint64_t key_seed_ = 0;
  uint32_t flow_buckets_ = 0;
  ct_flow_bucket* table_ = nullptr;  // flows_ mapped (mmap)
  size_t table_bytes_ = 0;
  mutable std::vector<uint8_t> per_cpu_;  // lookup buffer, reused
};

}  // namespace ctmon
