// stats_reader.h — one reading of a namespace's kernel counters, as the aggregator takes it:
// IPCTNL_MSG_CT_GET_STATS_CPU (the per-CPU counters) and IPCTNL_MSG_CT_GET_STATS (the
// namespace's entry count and the global nf_conntrack_max), both answered for the netns of the
// request socket, plus SK_MEMINFO_DROPS of the namespace's event socket.
//
// Shared by the single-namespace Monitor and the NodeMonitor (one reader per node, which
// reads every namespace in turn with one StatsReader). Reader thread; no Node-API. The reply
// buffers are reused from one reading to the next, so a reading allocates nothing once the
// CPU count is known. A KernelReading points into them: use it before the next read().
#pragma once

#include <vector>

#include "base/fd.h"
#include "ctnetlink/aggregator.h"
#include "ctnetlink/socket.h"

namespace ctmon {

class StatsReader {
 public:
  // A failed request leaves its part null (cpus or global) and its status in status().
  KernelReading read(RequestSocket& socket, int event_fd);
  Status status() const { return status_; }

 private:
  std::vector<CpuStats> cpu_stats_;
  GlobalStats global_stats_;
  Status status_;
};

}  // namespace ctmon
