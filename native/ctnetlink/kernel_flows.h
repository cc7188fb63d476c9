// kernel_flows.h — the monitor's eBPF event path: the ct_monitor event program
// (native/ebpf/ct_events.bpf.c) on the event socket, and what user space makes of its maps:
//   - the events it counted (inserts and deletes are these counts: exact, whatever the queue),
//   - the flows of protocols other than TCP it tracks, by class, less those whose deadline
//     has passed (the expiry wheel, read by WheelReader),
//   - the hand-over with the tracked table (table.h) at each dump: an entry is counted either
//     here or there, never both.
//
// Reader thread only; no Node-API.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "ctnetlink/decoder.h"
#include "ctnetlink/table.h"
#include "ebpf/event_counter.h"
#include "ebpf/wheel_reader.h"

namespace ctmon {

// The flow key the ct_monitor program gives a decoded entry, when it could track it (a protocol
// other than TCP, an original tuple it can hash); false otherwise. Pure.
bool kernel_flow_key(uint64_t seed, const Conntrack& ct, uint64_t& key);

class KernelFlows {
 public:
  // Creates the maps and loads the program (see EventCounter::open).
  Status open(uint64_t now_ds);
  bool is_open() const { return counter_.is_open(); }
  int program_fd() const { return counter_.program_fd(); }
  void close() { counter_.close(); }

  // Reads the counters and the wheel slots that have passed. Call at least every few seconds
  // (a slot must be read within WheelReader::kMaxLagDs) and before each sample.
  Status refresh(uint64_t now_ds);
  const ct_counters& counters() const { return counters_; }  // as of the last refresh
  // Per class (tcp, udp, icmp, other): tracked flows not past their deadline, as of the last
  // refresh.
  uint32_t listed(uint32_t cls) const;
  uint64_t rebases() const { return rebases_; }  // times the wheel was read too late

  // A dump: begin_dump() before the request, note_dump_entry() for every entry it lists (with
  // the key the table gives it), end_dump() once the table has ended its dump and expired
  // what is due. Then entries the kernel tracks leave the table (the kernel counts them);
  // entries whose kernel deadline has passed but which the dump shows alive (refreshed by
  // packets that sent no event) stay in the table and the kernel forgets them; so do flows
  // whose DESTROY never came. Entries removed by a DESTROY during the dump leave the table.
  Status begin_dump();
  void note_dump_entry(const Conntrack& ct, uint64_t table_key);
  Status end_dump(ConntrackTable& table, uint64_t now_ds);
  void abort_dump();

  // Flows ended this long ago with no DESTROY are forgotten at the next dump: the kernel reaps
  // an expired entry within a minute (its garbage collector's longest interval).
  static constexpr uint64_t kStaleDs = 1200;

 private:
  Status rebase(uint64_t now_ds);
  void release_destroyed(ConntrackTable* table = nullptr);
  const uint64_t* table_key(uint64_t flow_key) const;  // the dump entry noted with flow_key

  EventCounter counter_;
  ct_counters counters_;
  WheelReader wheel_;
  uint64_t rebases_ = 0;
  bool dumping_ = false;
  std::vector<std::pair<uint64_t, uint64_t>> dumped_;  // (flow key, table key), non-TCP
};

}  // namespace ctmon
