// event_program.h — the eBPF socket filter for the ctnetlink event socket
// (BPF_PROG_TYPE_SOCKET_FILTER, attached with SO_ATTACH_BPF), assembled as raw instructions
// (no clang, no libbpf), and the map layouts it shares with user space.
//
// The kernel runs a socket filter for every message it broadcasts to the socket, in the
// sender's context and before the message is queued (do_one_broadcast -> sk_filter): a
// message the program drops costs no receive buffer and cannot be lost, and one it counts is
// counted whatever happens to the queue. Two variants, one generator:
//
//   kCountOnly  counts every conntrack message by kind (NEW, UPDATE, DESTROY) and protocol
//               class into a per-CPU array and returns 0: nothing reaches user space.
//   kMonitor    counts the same way, then passes to user space only what the monitor's
//               tracked table needs (see event_program.cc), keeping the other entries in
//               kernel maps.
//
// Pure: it turns map fds into instructions and makes no system call, so it can be unit-tested
// or fuzzed; event_counter.cc loads it. No Node-API. Needs Linux 5.12 for the kMonitor
// variant's atomic exchange; kCountOnly runs on 4.x.
#pragma once

#include <linux/bpf.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ctmon {

enum class EventProgramVariant : uint8_t { kCountOnly, kMonitor };

// Message kinds, as ctnetlink_conntrack_event() sends them: DESTROY is IPCTNL_MSG_CT_DELETE;
// NEW and UPDATE are both IPCTNL_MSG_CT_NEW, and only NEW carries NLM_F_CREATE|NLM_F_EXCL.
enum EventKindIndex : uint32_t { kKindNew, kKindUpdate, kKindDestroy, kKindCount };

// Protocol classes in the order of the sample's `protocols` (and ConntrackTable's
// ProtocolClass), plus kClassUnknown for a message whose original tuple is not laid out as
// ctnetlink lays it out (the message is still counted by kind).
enum EventClassIndex : uint32_t {
  kClassTcp,
  kClassUdp,
  kClassIcmp,  // ICMP and ICMPv6
  kClassOther,
  kClassUnknown,
  kClassCount
};
constexpr uint32_t kTrackedClassCount = 4;  // tcp, udp, icmp, other

// What the program saw besides the counted messages; cumulative, for diagnosis.
enum EventDiagnostic : uint32_t {
  kDiagShort,          // shorter than nlmsghdr + nfgenmsg: not counted
  kDiagNotConntrack,   // another subsystem or message type: not counted
  kDiagPassed,         // kMonitor: messages queued to user space (before the queue's own check)
  kDiagTracked,        // kMonitor: NEWs whose entry is now kept in the kernel maps
  kDiagUnknownLayout,  // kMonitor: tuple or attributes not as expected: passed
  kDiagNoTimeout,      // kMonitor: NEW/UPDATE without CTA_TIMEOUT: passed (or, if tracked, dropped)
  kDiagLongTimeout,    // kMonitor: timeout beyond the wheel: the entry is left to user space
  kDiagFlowsFull,      // kMonitor: the flow map refused an insert (full): passed
  kDiagFlowExists,     // kMonitor: a NEW whose key is already tracked: passed
  kDiagDestroyUntracked,  // kMonitor: DESTROY of an entry the kernel maps do not hold: passed
  kDiagUpdateUntracked,   // kMonitor: UPDATE of an untracked entry: passed when user space needs it
  kDiagnosticCount = 16,  // room for more without changing the value's size
};

// The value of key 0 of the per-CPU counters map: the program adds to the running CPU's copy
// (atomically, as a softirq may interrupt a process-context run on the same CPU); user space
// sums the copies.
struct EventCounters {
  uint64_t messages[kKindCount][kClassCount] = {};
  uint64_t diagnostics[kDiagnosticCount] = {};
  // kMonitor: per class, flows started (NEW, or an UPDATE after the deadline) minus flows that
  // ended before their deadline (DESTROY, or a timeout moved out of the wheel). A CPU's copy
  // may be negative; the sum is not.
  int64_t tracked[kTrackedClassCount] = {};

  uint64_t kind_total(EventKindIndex kind) const {
    uint64_t n = 0;
    for (uint32_t c = 0; c < kClassCount; ++c) n += messages[kind][c];
    return n;
  }
};
static_assert(sizeof(EventCounters) == 8 * (kKindCount * kClassCount + kDiagnosticCount + 4),
              "the program adds to this layout by offset");

struct EventProgramLayout {
  EventProgramVariant variant = EventProgramVariant::kCountOnly;
  int counters_map_fd = -1;  // BPF_MAP_TYPE_PERCPU_ARRAY, 1 x EventCounters
};

// Assembles the program. Returns "" on success, else which input is unusable.
std::string assemble_event_program(const EventProgramLayout& layout, std::vector<bpf_insn>& out);

}  // namespace ctmon
