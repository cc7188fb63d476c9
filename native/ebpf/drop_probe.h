// drop_probe.h — host-wide attribution of conntrack table-full drops, with eBPF.
//
// A BPF program on the skb:kfree_skb tracepoint (tp_btf form) counts, per network namespace,
// the packets freed with the conntrack table-full signature and samples their flows into a
// bounded LRU map (see drop_program.cc for what the program checks). No libbpf, no clang: the
// program is assembled in drop_program.cc and loaded with the bpf() syscall; every offset, the
// drop reason's value and nf_hook_slow's address range are read from the running kernel.
//
// Needs CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN), /sys/kernel/btf/vmlinux, readable
// /proc/kallsyms addresses, and a lockdown level below "confidentiality". The probe sees every
// namespace on the host regardless of the caller's namespace.
//
// No Node-API. Calls return Status/Status and never throw. Not thread-safe: use one
// DropProbe from one thread (the kernel side is safe against concurrent readers).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "base/fd.h"
#include "ebpf/bpf.h"
#include "ebpf/drop_program.h"

namespace ctmon {

struct DropProbeOptions {
  uint32_t max_namespaces = 4096;  // namespaces counted; more are tallied in kNamespaceMapFull
  uint32_t max_flows = 4096;       // sampled flows kept between reads (LRU beyond that)
  bool route_chain_only = false;   // test hook: find the namespace through skb_dst() only
};

struct DroppedFlow {
  uint32_t netns = 0;    // namespace inode (as in /proc/PID/ns/net -> net:[INODE])
  int family = 0;        // AF_INET, AF_INET6, 0 for a non-IP packet
  int protocol = 0;      // IPPROTO_*
  uint8_t src[16] = {};  // IPv4 uses the first 4 bytes
  uint8_t dst[16] = {};
  uint16_t sport = 0;  // host byte order; 0 when the protocol has no ports
  uint16_t dport = 0;
  uint64_t count = 0;    // drops since the previous read_and_clear_flows()
  uint64_t last_ns = 0;  // CLOCK_MONOTONIC of the latest one
};

struct ProgramStats {
  uint32_t id = 0;
  uint32_t instructions = 0;      // as loaded (xlated)
  uint64_t run_count = 0;         // only while run-time stats are enabled
  uint64_t run_time_ns = 0;       // idem
  uint64_t recursion_misses = 0;  // runs skipped because the program was already running on the CPU
};

class DropProbe {
 public:
  // Opens (and attaches) a probe and closes it again: what open() would say.
  static Status check_available(const DropProbeOptions& options = {});

  // Creates the maps, assembles and loads the program, attaches it to skb:kfree_skb. `stats`,
  // when given, gets what the verifier reported.
  Status open(const DropProbeOptions& options = {}, VerifierStats* stats = nullptr);
  bool is_open() const { return link_.get() >= 0; }
  void close();  // detaches and frees everything (also done by the destructor)

  // Cumulative drops per namespace since open(). Namespaces stay until forget_namespace().
  Status read_namespaces(const std::function<void(uint32_t netns, uint64_t drops)>& fn) const;
  Status forget_namespace(uint32_t netns);

  // The flows dropped since the previous call, each with its count; the map is emptied.
  // When more than max_flows distinct flows dropped in between, the least recent are missing
  // (the per-namespace counts are still exact).
  Status read_and_clear_flows(const std::function<void(const DroppedFlow&)>& fn);

  // The program's own counters (DropCounter slots), cumulative.
  Status read_counters(uint64_t (&counters)[kDropCounterCount]) const;
  Status read_program_stats(ProgramStats& out) const;

  // BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): every program's run_time_ns/run_cnt accumulate while
  // `out` stays open (the kernel-wide switch is released with the fd). For benchmarks.
  static Status enable_run_time_stats(Fd& out);

 private:
  Fd namespaces_;
  Fd flows_;
  Fd counters_;
  Fd program_;
  Fd link_;
  uint32_t max_flows_ = 0;
  std::vector<DroppedFlowKey> batch_keys_;
  std::vector<DroppedFlowValue> batch_values_;
};

}  // namespace ctmon
