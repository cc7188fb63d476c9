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
//               tracked table needs: TCP NEW, DESTROY and state changes, and messages about
//               entries it does not track. Entries of other protocols created while it runs
//               are kept in kernel maps instead (a flow map and an expiry wheel, below), so
//               their counts by protocol, with local expiry, need no message at all.
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
  kDiagFlowsFull,      // kMonitor: a NEW whose flow table bucket was full: passed
  kDiagFlowExists,     // kMonitor: a NEW whose key is already tracked: passed
  kDiagDestroyUntracked,  // kMonitor: DESTROY of an entry the kernel maps do not hold: passed
  kDiagUpdateUntracked,   // kMonitor: UPDATE of an untracked entry: passed when user space needs it
  kDiagSlotReused,        // kMonitor: a NEW took the slot of a flow that had ended (bucket full)
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

// kMonitor: the expiry wheel. Slot s of the per-CPU array holds, per class, the net number of
// tracked flows whose deadline (in deciseconds of CLOCK_MONOTONIC) is congruent to s modulo
// kWheelSlots: +1 when a deadline is set, -1 when a deadline still in the future is withdrawn.
// A slot's values only grow lap after lap; user space keeps what it has read of each.
constexpr uint32_t kWheelSlots = 4096;       // 409.6 s of deciseconds
constexpr uint32_t kWheelMaxTimeoutS = 360;  // longer timeouts are left to user space
constexpr uint64_t kDecisecondNs = 100000000;
struct WheelSlot {
  int32_t flows[kTrackedClassCount] = {};
};

// kMonitor: the flow table, a lock-free hash table in an array map (BPF_F_MMAPABLE, so user
// space reads it in place). A flow's bucket is its flow_key() & (buckets - 1); a NEW claims a
// free slot of the bucket with an atomic compare-and-exchange of the key from 0, its UPDATEs and
// DESTROY find it by key. No lock: the kernel's hash map takes a spinlock with interrupts off
// per update, which cost ~1 us a message on a paravirtualized 2-vCPU VM. A NEW whose bucket
// is full takes the slot of a flow that has ended; with none, it goes to user space.
struct FlowSlot {
  uint64_t key = 0;          // flow_key(), 0 when the slot is free
  uint32_t deadline_ds = 0;  // CLOCK_MONOTONIC deciseconds; at or before now: ended
  uint32_t meta = 0;         // EventClassIndex, | kFlowDestroyed
};
constexpr uint32_t kFlowDestroyed = 1u << 8;  // DESTROYed during a dump: user space frees it
constexpr uint32_t kFlowClassMask = 0xff;
constexpr uint32_t kFlowSlotsPerBucket = 8;
struct FlowBucket {
  FlowSlot slots[kFlowSlotsPerBucket];
};
static_assert(sizeof(FlowSlot) == 16 && sizeof(FlowBucket) == 128, "the program reads by offset");

// Bits of the control map's value (user space writes them).
enum EventControl : uint32_t {
  // A table dump is running: DESTROY marks its flow kFlowDestroyed and leaves the key, so
  // that user space learns which of the flows the dump listed went meanwhile.
  kControlDumping = 1,
};

// The control map's value. `classes` is {0, 1, 2, 3}: the program reads its class back from it
// so that, to the verifier, the class is a value in [0, 3] rather than one constant per path,
// and the code that follows is verified once instead of once per protocol class.
struct EventControlValue {
  uint32_t bits = 0;  // EventControl
  uint8_t classes[kTrackedClassCount] = {0, 1, 2, 3};
  // The same for a slot's offset in its bucket, which is otherwise one constant per slot.
  uint8_t slot_offsets[kFlowSlotsPerBucket] = {0, 16, 32, 48, 64, 80, 96, 112};
};

struct EventProgramLayout {
  EventProgramVariant variant = EventProgramVariant::kCountOnly;
  int counters_map_fd = -1;  // BPF_MAP_TYPE_PERCPU_ARRAY, 1 x EventCounters
  // kMonitor only:
  int flows_map_fd = -1;      // BPF_MAP_TYPE_ARRAY, flow_buckets x FlowBucket
  uint32_t flow_buckets = 0;  // a power of two
  int wheel_map_fd = -1;      // BPF_MAP_TYPE_PERCPU_ARRAY, kWheelSlots x WheelSlot
  int control_map_fd = -1;    // BPF_MAP_TYPE_ARRAY, 1 x EventControlValue
  uint64_t key_seed = 0;      // flow_key()'s seed, random per program
};

// Assembles the program. Returns "" on success, else which input is unusable.
std::string assemble_event_program(const EventProgramLayout& layout, std::vector<bpf_insn>& out);

// The key the kMonitor program gives a flow: a seeded 64-bit hash of the CTA_TUPLE_ORIG nest's
// payload as ctnetlink lays it out (the same bytes in events and in dump replies), the family,
// CTA_ZONE (0 when absent) and CTA_ID (the id alone repeats; the tuple alone repeats when a
// flow is reopened); never 0. `tuple_length` is a multiple of 4, at most kMaxTupleBytes. Pure:
// user space recomputes it for dump entries, and the tests check it against the program's.
constexpr size_t kMaxTupleBytes = 100;
uint64_t flow_key(uint64_t seed, const uint8_t* tuple, size_t tuple_length, uint8_t family,
                  uint16_t zone, uint32_t id);

}  // namespace ctmon
