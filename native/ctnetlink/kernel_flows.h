// kernel_flows.h — a reader's eBPF event path: the ct_monitor program (ebpf/ct_events.bpf.c) on
// the event socket of every namespace the reader watches, and what user space makes of its
// maps:
//   - the events it counted per namespace (inserts and deletes are these counts: exact,
//     whatever the queue);
//   - the flows it holds in its one flow table, counted per namespace by class and TCP state
//     with a scan of the mapped table (tally);
//   - listings (dumps) applied to the table: flows the kernel lists are written into it (slots
//     claimed as the program claims them), the deadline and state of those no event changed
//     meanwhile are corrected, and flows it no longer lists are freed.
// A flow past its deadline is unverified until the kernel shows it alive (monitor.cc walks the
// table: every expired flow's DESTROY frees its slot, synchronously); the namespace's
// verification time says which flows a walk or listing checked.
//
// Reader thread only; no Node-API.
#pragma once

#include <cstdint>
#include <vector>

#include "base/fd.h"
#include "ctnetlink/decoder.h"
#include "ctnetlink/table.h"
#include "ebpf/event_counter.h"

namespace ctmon {

// Per namespace, what a tally of the kernel's flow table found.
using KernelTally = TableTally;

class KernelFlows {
 public:
  // Creates the maps and loads the program for up to `max_namespaces` namespaces (see
  // EventCounter::open); max_flows 0: the calling thread's nf_conntrack_max.
  Status open(uint32_t max_namespaces, uint32_t max_flows = 0, VerifierStats* stats = nullptr);
  bool is_open() const { return counter_.is_open(); }
  int program_fd() const { return counter_.program_fd(); }
  void close() { counter_.close(); }

  // A namespace: its event socket (opened inside it) gets index `index`; attach the program to
  // the socket after this. remove() frees its flows.
  Status add(uint32_t index, int event_socket_fd);
  Status attach(int event_socket_fd) const { return counter_.attach(event_socket_fd); }
  void remove(uint32_t index);

  // The program's counters of namespace `index`, cumulative since add().
  Status read_counters(uint32_t index, ct_counters& out) const { return counter_.read(index, out); }

  // One pass over the flow table: per namespace (indexed by index), the flows listed at now_ds
  // and those past their deadline; `verified_ds[index]` is when each namespace's flows were
  // last checked against the kernel (a walk or a listing).
  void tally(uint64_t now_ds, const std::vector<uint64_t>& verified_ds,
             std::vector<KernelTally>& out) const;

  // A listing of namespace `index`: begin, then entry() for every entry the kernel lists
  // (false when the table cannot hold it: the caller keeps it in user space), then end() once
  // the listing is complete and the events queued meanwhile are applied. Flows of the
  // namespace neither listed nor changed by an event meanwhile are freed.
  Status begin_listing(uint32_t index);
  bool entry(uint32_t index, const Conntrack& ct, uint64_t now_ns);
  void end_listing(uint32_t index);
  void abort_listing(uint32_t index);

  uint32_t flow_slots() const { return counter_.flow_buckets() * CT_SLOTS_PER_BUCKET; }

 private:
  ct_flow_slot* find(uint64_t key) const;
  ct_flow_slot* claim(uint64_t key);
  void settle();
  void clear_marks(uint32_t index);

  // Slots a listing claimed that a DESTROY recorded in ct_gone may have ended: checked in
  // batches (settle), one system call per batch while no DESTROY came, instead of one a flow.
  // That call scans ct_gone's 65,536 buckets when it is empty (~0.1 ms): a batch of 8,192 keys
  // (64 KiB) makes it ~12 ns a listed flow.
  static constexpr size_t kSettleBatch = 8192;

  EventCounter counter_;
  std::vector<uint64_t> cookies_;  // per index: its event socket's cookie, 0 when free
  std::vector<uint64_t> unsettled_;
};

}  // namespace ctmon
