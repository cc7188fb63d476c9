/* ct_events.h — what the ctnetlink event socket filter (ct_events.bpf.c) and user space share:
 * the layouts of its maps, its constants, and flow_key(). Compiled for BPF (clang -target bpf)
 * and for the host (C++), so the two cannot disagree.
 *
 * Two programs, one per socket-filter variant:
 *   ct_count    counts every conntrack message by kind (NEW, UPDATE, DESTROY) and protocol
 *               class into a per-CPU array and returns 0: nothing reaches user space.
 *   ct_monitor  counts the same way, then keeps flows of protocols other than TCP in the
 *               maps below (the flow table and the expiry wheel) and passes to user space only
 *               what its tracked table needs: TCP NEW, DESTROY and state changes, and messages
 *               about entries the maps do not hold.
 * ct_events.bpf.c says what each does with a message; native/ebpf/README.md how to change,
 * build and test them. */
#pragma once

#include <linux/types.h>

#include "base/hash.h"

/* Message kinds, as the kernel sends them: DESTROY is IPCTNL_MSG_CT_DELETE; NEW and UPDATE are
 * both IPCTNL_MSG_CT_NEW, and only NEW carries NLM_F_CREATE|NLM_F_EXCL. */
enum ct_kind { CT_KIND_NEW, CT_KIND_UPDATE, CT_KIND_DESTROY, CT_KIND_COUNT };

/* Protocol classes in the order of the sample's `protocols`, plus CT_CLASS_UNKNOWN for a
 * message whose original tuple is not laid out as ctnetlink lays it out (it is still counted
 * by kind). */
enum ct_class {
  CT_CLASS_TCP,
  CT_CLASS_UDP,
  CT_CLASS_ICMP, /* ICMP and ICMPv6 */
  CT_CLASS_OTHER,
  CT_CLASS_UNKNOWN,
  CT_CLASS_COUNT
};
#define CT_TRACKED_CLASSES 4 /* tcp, udp, icmp, other */

/* What the programs saw besides the counted messages; cumulative, for diagnosis. */
enum ct_diagnostic {
  CT_DIAG_SHORT,             /* shorter than nlmsghdr + nfgenmsg: not counted */
  CT_DIAG_NOT_CONNTRACK,     /* another subsystem or message type: not counted */
  CT_DIAG_PASSED,            /* ct_monitor: messages passed to user space */
  CT_DIAG_TRACKED,           /* ct_monitor: NEWs whose entry the maps now hold */
  CT_DIAG_UNKNOWN_LAYOUT,    /* ct_monitor: tuple or attributes not as expected: passed */
  CT_DIAG_NO_TIMEOUT,        /* ct_monitor: NEW/UPDATE without CTA_TIMEOUT */
  CT_DIAG_LONG_TIMEOUT,      /* ct_monitor: timeout beyond the wheel: left to user space */
  CT_DIAG_FLOWS_FULL,        /* ct_monitor: a NEW whose flow table bucket was full: passed */
  CT_DIAG_FLOW_EXISTS,       /* ct_monitor: a NEW whose key the maps hold already: passed */
  CT_DIAG_DESTROY_UNTRACKED, /* ct_monitor: DESTROY of an entry the maps do not hold: passed */
  CT_DIAG_UPDATE_UNTRACKED,  /* ct_monitor: UPDATE of an untracked entry */
  CT_DIAG_SLOT_REUSED,       /* ct_monitor: a NEW took the slot of a flow that had ended */
  CT_DIAG_COUNT = 16,        /* room for more without changing the layout */
};

/* Key 0 of the per-CPU counters map. The programs add to the running CPU's copy (atomically:
 * a softirq may interrupt a process-context run on the same CPU); user space sums the copies. */
struct ct_counters {
  __u64 messages[CT_KIND_COUNT][CT_CLASS_COUNT];
  __u64 diagnostics[CT_DIAG_COUNT];
  /* ct_monitor: per class, flows started (NEW, or an UPDATE after the deadline) minus flows
   * that ended before their deadline (DESTROY, or a timeout moved out of the wheel). A CPU's
   * copy may be negative; the sum is not. */
  __s64 tracked[CT_TRACKED_CLASSES];
};

/* ct_monitor's expiry wheel: slot s of the per-CPU array holds, per class, the net number of
 * tracked flows whose deadline (in deciseconds of CLOCK_MONOTONIC) is congruent to s modulo
 * CT_WHEEL_SLOTS: +1 when a deadline is set, -1 when a deadline still in the future is
 * withdrawn. A slot's values only grow lap after lap; user space keeps what it read of each. */
#define CT_WHEEL_SLOTS 4096        /* 409.6 s of deciseconds; a power of two */
#define CT_WHEEL_MAX_TIMEOUT_S 360 /* longer timeouts are left to user space */
#define CT_DECISECOND_NS 100000000ULL
struct ct_wheel_slot {
  __s32 flows[CT_TRACKED_CLASSES];
};

/* ct_monitor's flow table: a lock-free hash table in an array map (BPF_F_MMAPABLE, so user space
 * reads it in place). A flow's bucket is its flow key & control.bucket_mask; a NEW claims a free
 * slot of the bucket with an atomic compare-and-exchange of the key from 0, its UPDATEs and
 * DESTROY find it by key. No lock: the kernel's hash map takes a spinlock with interrupts off
 * per update, which cost ~1 us a message on a paravirtualized 2-vCPU VM. A NEW whose bucket is
 * full takes the slot of a flow that has ended; with none, it goes to user space. */
struct ct_flow_slot {
  __u64 key;         /* ct_flow_key(), 0 when the slot is free */
  __u32 deadline_ds; /* CLOCK_MONOTONIC deciseconds; at or before now: ended */
  __u32 meta;        /* enum ct_class, | CT_FLOW_DESTROYED */
};
#define CT_FLOW_DESTROYED (1u << 8) /* DESTROYed during a dump: user space frees the slot */
#define CT_FLOW_CLASS_MASK 0xffu
#define CT_SLOTS_PER_BUCKET 8
struct ct_flow_bucket {
  struct ct_flow_slot slots[CT_SLOTS_PER_BUCKET];
};

/* Bits of ct_control.bits (user space sets them). */
enum ct_control_bits {
  /* A table dump is running: DESTROY marks its flow CT_FLOW_DESTROYED and leaves the key, so
   * that user space learns which of the flows the dump listed went meanwhile. */
  CT_CONTROL_DUMPING = 1,
};

/* ct_monitor's settings, key 0 of the control map, written by user space before the program
 * is attached. */
struct ct_control {
  __u32 bits;        /* enum ct_control_bits */
  __u32 bucket_mask; /* the flow table's buckets - 1 (a power of two, less one) */
  __u64 key_seed;    /* ct_flow_key()'s seed, random per program */
};

/* The key ct_monitor gives a flow: a seeded 64-bit hash of the CTA_TUPLE_ORIG nest's payload as
 * ctnetlink lays it out (the same bytes in events and in dump replies), the family, CTA_ZONE
 * (0 when absent) and CTA_ID (the id alone repeats; the tuple alone repeats when a flow is
 * reopened); never 0. `length` is a multiple of 4, at most CT_MAX_TUPLE_BYTES. */
#define CT_MAX_TUPLE_BYTES 100
static inline __u64 ct_flow_key(__u64 seed, const __u8* tuple, __u32 length, __u8 family,
                                __u16 zone, __u32 id) {
  __u64 h = seed;
  __u32 off = 0;
  for (int i = 0; i < CT_MAX_TUPLE_BYTES / 8; i++) {
    if (off + 8 > length) break;
    __u64 word;
    __builtin_memcpy(&word, tuple + off, sizeof word);
    h = ct_fmix64(h ^ word);
    off += 8;
  }
  if (off < length) { /* a last half word, read as a 32-bit value */
    __u32 half;
    __builtin_memcpy(&half, tuple + off, sizeof half);
    h = ct_fmix64(h ^ half);
  }
  const __u64 tail = (__u64)length | (__u64)family << 8 | (__u64)zone << 16 | (__u64)id << 32;
  h = ct_fmix64(h ^ tail);
  return h == 0 ? 1 : h; /* 0 marks a free slot */
}
