// event_counter.h — loads the ctnetlink event socket filter (event_program.h), attaches it to
// an event socket and reads its counts.
//
//   EventCounter counter;
//   ProbeStatus st = counter.open();            // maps + program, kCountOnly by default
//   st.sys = counter.attach(event_socket_fd);   // SO_ATTACH_BPF, before joining the groups
//   EventCounters c; counter.read(c);           // cumulative, summed over CPUs
//
// The socket must be a NETLINK_NETFILTER socket subscribed to the NFNLGRP_CONNTRACK_* groups
// whose messages are to be counted; the program then runs for each of them in the kernel.
// One open() serves any number of sockets (each attach() adds one). The maps live while the
// EventCounter is open or a socket holds the program.
//
// Needs CAP_BPF (or CAP_SYS_ADMIN), unless kernel.unprivileged_bpf_disabled is 0. Linux 4.x
// for kCountOnly. No Node-API. Not thread-safe: one thread owns an EventCounter (reads may
// come from any one thread; the kernel side is safe against concurrent runs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/fd.h"
#include "ebpf/bpf.h"
#include "ebpf/event_program.h"

namespace ctmon {

struct EventCounterOptions {
  EventProgramVariant variant = EventProgramVariant::kCountOnly;
};

class EventCounter {
 public:
  EventCounter() = default;
  EventCounter(const EventCounter&) = delete;
  EventCounter& operator=(const EventCounter&) = delete;

  // Creates the maps, assembles and loads the program. On failure `reason` says why in one
  // line (the verifier's last lines after it) and nothing stays open.
  ProbeStatus open(const EventCounterOptions& options = {});
  bool is_open() const { return program_.get() >= 0; }
  void close();

  // SO_ATTACH_BPF: from now on the program filters every message queued to `socket_fd`
  // (replacing any filter it had).
  SysStatus attach(int socket_fd) const;

  // Cumulative counts since open(), summed over CPUs.
  SysStatus read(EventCounters& out) const;

  // Runs the program once on one netlink message (BPF_PROG_TEST_RUN) and returns what it
  // returned: 0 for a message dropped, nonzero for one passed. The counters count it.
  SysStatus test_run(const uint8_t* message, size_t length, uint32_t& verdict) const;

  int program_fd() const { return program_.get(); }

 private:
  Fd counters_;
  Fd program_;
  mutable std::vector<uint8_t> per_cpu_;  // lookup buffer, reused
};

}  // namespace ctmon
