// event_counter.h — counting a namespace's conntrack events in the kernel: a program attached
// to the event socket counts each message as the kernel delivers it and keeps none, so nothing
// is queued, nothing can be lost, and user space reads a few counters per interval.
//
// The node monitor (node_monitor.h) uses one counter per namespace when the kernel lets the
// process load one; otherwise it falls back to the classic filter of count_filter.h and reads
// the 20-byte headers it passes. No Node-API. Reader thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/fd.h"

namespace ctmon {

// Events counted since attach().
struct EventTotals {
  uint64_t created = 0;    // NEW
  uint64_t updated = 0;    // UPDATE (zero on a socket that joined only NEW and DESTROY)
  uint64_t destroyed = 0;  // DESTROY
};

class EventCounter {
 public:
  virtual ~EventCounter() = default;
  // Attaches the counting program to an event socket before it joins any group, so that no
  // event is queued uncounted.
  virtual SysStatus attach(int socket_fd) = 0;
  // Cumulative counts since attach (the program's per-CPU counters, summed).
  virtual SysStatus read(EventTotals& out) = 0;
};

// A new in-kernel counter, or nullptr with the reason it cannot be had here (no CAP_BPF, an
// old kernel, or a build without one) in `why_not`.
std::unique_ptr<EventCounter> make_kernel_event_counter(std::string& why_not);

}  // namespace ctmon
