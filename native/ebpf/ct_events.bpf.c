// SPDX-License-Identifier: MIT OR GPL-2.0
/* ct_events.bpf.c — the socket filter on the monitor's ctnetlink event socket (SO_ATTACH_BPF).
 * Map layouts, constants and ct_flow_key() are in ct_events.h, shared with user space.
 *
 * The kernel runs a socket filter for every message it broadcasts to the socket, in the
 * sender's context and before the message is queued: a message the filter drops (returns 0)
 * costs no receive buffer and cannot be lost, and one it counts is counted whatever happens to
 * the queue. Returning -1 keeps the whole message.
 *
 * Every message: its kind from nlmsg_type and nlmsg_flags, its protocol class from the
 * original tuple, which ctnetlink always lays out the same way:
 *
 *   off  0  nlmsghdr (16, host order)   len | type | flags | seq | pid
 *   off 16  nfgenmsg (4)                family | version | res_id
 *   off 20  CTA_TUPLE_ORIG nest (4)
 *   off 24    CTA_TUPLE_IP nest: 20 bytes for AF_INET (two 8-byte address attributes),
 *             44 for AF_INET6 (two 20-byte ones)
 *   off 44|68 CTA_TUPLE_PROTO nest (4)
 *   off 48|72   CTA_PROTO_NUM attribute (len 5) whose payload, at 52|76, is the L4 protocol
 *
 * Each of these headers is checked; a message that differs is counted by kind as
 * CT_CLASS_UNKNOWN rather than guessed at. ct_count stops there and drops it.
 *
 * ct_monitor goes on:
 *   unknown class          pass: user space's decoder is the judge
 *   TCP                    NEW and DESTROY pass; an UPDATE passes when it carries
 *                          CTA_PROTOINFO (a state change), else is dropped: user space's
 *                          tracked table keeps TCP states and TIME_WAIT
 *   other protocols        read CTA_ZONE, CTA_ID, CTA_STATUS, CTA_TIMEOUT (and see whether
 *                          CTA_PROTOINFO is there), hash the flow's key, then
 *     NEW                  track it: its slot gets {key, deadline, class}, the wheel +1 at the
 *                          deadline, tracked[class] +1; drop. A NEW without a timeout, with one
 *                          beyond CT_WHEEL_MAX_TIMEOUT_S, or whose bucket is full, passes; one
 *                          with timeout 0 (under a second left) is kept, already ended
 *     UPDATE, tracked      move its deadline (see move_deadline); drop. A timeout beyond the
 *                          wheel hands the flow to user space: withdrawn, freed, passed
 *     UPDATE, untracked    pass when ASSURED or carrying CTA_PROTOINFO, else drop: user space
 *                          knows this entry from a dump, or not at all
 *     DESTROY, tracked     withdraw a future deadline (tracked[class] -1) and free the slot;
 *                          while user space dumps, mark it instead (CT_FLOW_DESTROYED); drop
 *     DESTROY, untracked   pass
 */
#include "ebpf/ct_events.h"

#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>
#include <linux/bpf.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <stdbool.h>

#define PASS -1 /* keep the whole message: the return value is the length to keep */
#define DROP 0

#define FAMILY_INET 2
#define FAMILY_INET6 10
#define PROTO_ICMP 1
#define PROTO_TCP 6
#define PROTO_UDP 17
#define PROTO_ICMPV6 58

#define HEAD_BYTES 128                           /* read of each message's start */
#define ATTRS_OFFSET 20                          /* nlmsghdr + nfgenmsg */
#define TUPLE_OFFSET (ATTRS_OFFSET + NLA_HDRLEN) /* CTA_TUPLE_ORIG's payload */
#define TIMEOUT_ABSENT 0xffffffffu               /* a real CTA_TIMEOUT is < 2^31 jiffies / HZ */

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct ct_counters);
} ct_counters SEC(".maps");

/* Sized by user space from nf_conntrack_max; ct_control.bucket_mask says how. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(map_flags, BPF_F_MMAPABLE);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct ct_flow_bucket);
} ct_flows SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, CT_WHEEL_SLOTS);
  __type(key, __u32);
  __type(value, struct ct_wheel_slot);
} ct_wheel SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct ct_control);
} ct_control SEC(".maps");

/* The start of a message, as read. */
struct message {
  __u8 head[HEAD_BYTES]; /* zeroed, then the first `length` bytes */
  __u32 length;          /* bytes read into head */
  __u32 end;             /* where the message ends: min(skb->len, nlmsg_len) */
  __u32 kind;            /* enum ct_kind */
  __u32 class;           /* enum ct_class */
};

/* What a walk of the top-level attributes found. */
struct attributes {
  __u32 timeout; /* TIMEOUT_ABSENT without CTA_TIMEOUT */
  __u32 id;
  __u32 status;
  __u16 zone; /* 0 without CTA_ZONE */
  __u8 protoinfo;
};

static __always_inline __u16 head_u16(const struct message* m, __u32 off) {
  __u16 v;
  __builtin_memcpy(&v, m->head + off, sizeof v);
  return v;
}

static __always_inline void count_diagnostic(struct ct_counters* c, enum ct_diagnostic d) {
  __sync_fetch_and_add(&c->diagnostics[d], 1);
}

/* The class of the original tuple's protocol, for a family whose CTA_TUPLE_IP nest is ip_nest
 * bytes long; CT_CLASS_UNKNOWN unless every header on the way is as ctnetlink writes it. */
static __always_inline __u32 classify_tuple(const struct message* m, __u32 ip_nest) {
  const __u32 proto_nest = TUPLE_OFFSET + ip_nest;
  const __u32 proto_num = proto_nest + NLA_HDRLEN;
  const __u32 proto = proto_num + NLA_HDRLEN;

  if (m->length <= proto) return CT_CLASS_UNKNOWN; /* every byte looked at was read */
  if ((head_u16(m, ATTRS_OFFSET + 2) & NLA_TYPE_MASK) != CTA_TUPLE_ORIG ||
      head_u16(m, TUPLE_OFFSET) != ip_nest ||
      (head_u16(m, TUPLE_OFFSET + 2) & NLA_TYPE_MASK) != CTA_TUPLE_IP ||
      (head_u16(m, proto_nest + 2) & NLA_TYPE_MASK) != CTA_TUPLE_PROTO ||
      head_u16(m, proto_num) != NLA_HDRLEN + 1 ||
      (head_u16(m, proto_num + 2) & NLA_TYPE_MASK) != CTA_PROTO_NUM)
    return CT_CLASS_UNKNOWN;
  /* The nests must hold what they were found to contain. */
  if (head_u16(m, ATTRS_OFFSET) < NLA_HDRLEN + ip_nest + 2 * NLA_HDRLEN + 1 ||
      head_u16(m, proto_nest) < 2 * NLA_HDRLEN + 1)
    return CT_CLASS_UNKNOWN;
  switch (m->head[proto]) {
    case PROTO_TCP:
      return CT_CLASS_TCP;
    case PROTO_UDP:
      return CT_CLASS_UDP;
    case PROTO_ICMP:
    case PROTO_ICMPV6:
      return CT_CLASS_ICMP;
    default:
      return CT_CLASS_OTHER;
  }
}

/* Reads the message's start into m, tells its kind and class and counts it. Returns the
 * counters of this CPU, or NULL for a message that is not counted (too short, not a conntrack
 * event), which is counted as a diagnostic when the counters are there. */
static __always_inline struct ct_counters* read_and_count(struct __sk_buff* skb,
                                                          struct message* m) {
  const __u32 zero = 0;
  struct ct_counters* c = bpf_map_lookup_elem(&ct_counters, &zero);
  if (!c) return NULL; /* an array's key 0 is always there; the verifier wants the test */

  __builtin_memset(m, 0, sizeof *m); /* bytes past a short message read as 0 */
  __u32 length = skb->len;
  m->end = length;
  if (length < ATTRS_OFFSET) goto short_message;
  if (length > HEAD_BYTES) length = HEAD_BYTES;
  if (bpf_skb_load_bytes(skb, 0, m->head, length)) goto short_message;
  m->length = length;
  const struct nlmsghdr* nlh = (const struct nlmsghdr*)m->head;
  if (nlh->nlmsg_len < m->end) m->end = nlh->nlmsg_len;

  if (nlh->nlmsg_type >> 8 != NFNL_SUBSYS_CTNETLINK) goto not_conntrack;
  switch (nlh->nlmsg_type & 0xff) {
    case IPCTNL_MSG_CT_DELETE:
      m->kind = CT_KIND_DESTROY;
      break;
    case IPCTNL_MSG_CT_NEW:
      m->kind = nlh->nlmsg_flags & NLM_F_CREATE ? CT_KIND_NEW : CT_KIND_UPDATE;
      break;
    default:
      goto not_conntrack;
  }

  const __u8 family = m->head[sizeof(struct nlmsghdr)];
  if (family == FAMILY_INET)
    m->class = classify_tuple(m, NLA_HDRLEN + 2 * (NLA_HDRLEN + 4));
  else if (family == FAMILY_INET6)
    m->class = classify_tuple(m, NLA_HDRLEN + 2 * (NLA_HDRLEN + 16));
  else
    m->class = CT_CLASS_UNKNOWN;
  if (m->kind < CT_KIND_COUNT && m->class < CT_CLASS_COUNT)
    __sync_fetch_and_add(&c->messages[m->kind][m->class], 1);
  return c;

short_message:
  count_diagnostic(c, CT_DIAG_SHORT);
  return NULL;
not_conntrack:
  count_diagnostic(c, CT_DIAG_NOT_CONNTRACK);
  return NULL;
}

SEC("socket")
int ct_count(struct __sk_buff* skb) {
  struct message m;
  read_and_count(skb, &m);
  return DROP;
}

/* ---- ct_monitor ---- */

/* What a walk looks for, and where it stops: ctnetlink writes CTA_ZONE, CTA_ID, CTA_STATUS,
 * then CTA_TIMEOUT, then CTA_PROTOINFO; an UPDATE may carry helper, mark, labels and
 * timestamps after CTA_PROTOINFO. */
enum walk { WALK_TCP_UPDATE, WALK_NEW, WALK_UPDATE, WALK_DESTROY };
#define WALK_STEPS 16      /* top-level attributes looked at, at most */
#define WALK_STEPS_SHORT 8 /* ... before CTA_TIMEOUT (NEW) or CTA_STATUS (DESTROY) */

/* The attribute header and the first 4 bytes of its payload. */
struct attribute {
  __u16 len;
  __u16 type;
  __u8 payload[4];
};

static __always_inline __u32 be32(const __u8* p) {
  return (__u32)p[0] << 24 | (__u32)p[1] << 16 | (__u32)p[2] << 8 | p[3];
}

/* Reads the top-level attributes after CTA_TUPLE_ORIG into a, one bpf_skb_load_bytes each,
 * until the walk's stop attribute or the end of the message. Returns false when an attribute
 * is malformed or there were more than the walk's steps before its stop. */
static __always_inline bool walk_attributes(struct __sk_buff* skb, const struct message* m,
                                            enum walk walk, struct attributes* a) {
  a->timeout = TIMEOUT_ABSENT;
  a->id = 0;
  a->status = 0;
  a->zone = 0;
  a->protoinfo = 0;
  /* The walk starts after CTA_TUPLE_ORIG: its length, rounded up to 4. */
  __u32 cursor = (ATTRS_OFFSET + head_u16(m, ATTRS_OFFSET) + 3) & ~3u;
  const int steps = walk == WALK_NEW || walk == WALK_DESTROY ? WALK_STEPS_SHORT : WALK_STEPS;

  for (int step = 0; step < steps; step++) {
    if (cursor + NLA_HDRLEN > m->end) return true; /* the end of the message */
    /* An attribute with less than 4 bytes of payload is the last one (padding is 4). */
    struct attribute at = {};
    if (bpf_skb_load_bytes(skb, cursor, &at, sizeof at)) return true;
    if (at.len < NLA_HDRLEN) return false;
    const __u16 type = at.type & NLA_TYPE_MASK;
    if (type == CTA_PROTOINFO) {
      a->protoinfo = 1;
      if (walk == WALK_TCP_UPDATE || walk == WALK_UPDATE) return true;
    } else if (walk != WALK_TCP_UPDATE) {
      if (type == CTA_ZONE) {
        a->zone = (__u16)(at.payload[0] << 8 | at.payload[1]);
      } else if (type == CTA_ID) {
        a->id = be32(at.payload);
      } else if (type == CTA_STATUS) {
        a->status = be32(at.payload);
        if (walk == WALK_DESTROY) return true; /* CTA_ZONE and CTA_ID come before it */
      } else if (type == CTA_TIMEOUT) {
        a->timeout = be32(at.payload);
        if (walk == WALK_NEW) return true;
      }
    }
    cursor += (at.len + 3) & ~3u;
  }
  return false;
}

/* The flow's key (ct_flow_key over the tuple as read), or false when the tuple is not a
 * multiple of 4 or does not fit in what was read. */
static __always_inline bool hash_flow(const struct message* m, const struct attributes* a,
                                      const struct ct_control* ctl, __u64* key) {
  const __u32 tuple = head_u16(m, ATTRS_OFFSET) - NLA_HDRLEN;
  if (tuple & 3 || tuple > CT_MAX_TUPLE_BYTES || TUPLE_OFFSET + tuple > m->length) return false;
  *key = ct_flow_key(ctl->key_seed, m->head + TUPLE_OFFSET, tuple, m->head[16], a->zone, a->id);
  return true;
}

static __always_inline struct ct_flow_bucket* flow_bucket(const struct ct_control* ctl, __u64 key) {
  const __u32 index = (__u32)key & ctl->bucket_mask;
  return bpf_map_lookup_elem(&ct_flows, &index);
}

static __always_inline struct ct_flow_slot* find_slot(struct ct_flow_bucket* b, __u64 key) {
  for (int i = 0; i < CT_SLOTS_PER_BUCKET; i++)
    if (b->slots[i].key == key) return &b->slots[i];
  return NULL;
}

/* Claims a slot of bucket b for key: a free one first; else one whose flow has ended (its
 * deadline is past: the wheel has counted it out already, and should it live on, refreshed by
 * packets that send no event, its next event goes to user space, which then counts it). The key
 * goes in with an atomic compare-and-exchange, so two CPUs never claim one slot.
 * Not atomic with the key: the deadline. A CPU that reads an ended slot's deadline just before
 * another CPU's event for that flow moves it (or just after another NEW claimed the slot and
 * before it wrote its own) takes the slot all the same. The wheel and `tracked` stay paired
 * (every +1 has its deadline), so what is off is one flow's count, until its deadline at most;
 * it needs two CPUs on one full bucket within a few instructions. */
static __always_inline struct ct_flow_slot* claim_slot(struct ct_flow_bucket* b, __u64 key,
                                                       __u64 now_ds, struct ct_counters* c) {
  for (int i = 0; i < CT_SLOTS_PER_BUCKET; i++)
    if (__sync_val_compare_and_swap(&b->slots[i].key, 0, key) == 0) return &b->slots[i];
  for (int i = 0; i < CT_SLOTS_PER_BUCKET; i++) {
    struct ct_flow_slot* s = &b->slots[i];
    const __u32 deadline = s->deadline_ds;
    /* Deadline 0 is a DESTROY under way, or a flow marked during a dump: not those. */
    if (deadline == 0 || deadline > now_ds) continue;
    const __u64 old = s->key;
    if (__sync_val_compare_and_swap(&s->key, old, key) == old) {
      count_diagnostic(c, CT_DIAG_SLOT_REUSED);
      return s;
    }
  }
  return NULL;
}

/* Frees slot s if it still holds key (another CPU may have reused it meanwhile). */
static __always_inline void free_slot(struct ct_flow_slot* s, __u64 key) {
  __sync_val_compare_and_swap(&s->key, key, 0);
}

static __always_inline void wheel_add(__u32 deadline_ds, __u32 class, __s32 delta) {
  const __u32 slot = deadline_ds & (CT_WHEEL_SLOTS - 1);
  struct ct_wheel_slot* w = bpf_map_lookup_elem(&ct_wheel, &slot);
  if (w && class < CT_TRACKED_CLASSES) __sync_fetch_and_add(&w->flows[class], delta);
}

static __always_inline void count_tracked(struct ct_counters* c, __u32 class, __s64 delta) {
  if (class < CT_TRACKED_CLASSES) __sync_fetch_and_add(&c->tracked[class], delta);
}

/* ceil(now + timeout s) in deciseconds of CLOCK_MONOTONIC; timeout is at most
 * CT_WHEEL_MAX_TIMEOUT_S. */
static __always_inline __u32 deadline_after(__u64 now_ns, __u32 timeout_s) {
  return (now_ns + timeout_s * 1000000000ULL + CT_DECISECOND_NS - 1) / CT_DECISECOND_NS;
}

/* Puts `deadline` into slot s and takes the old one out (an atomic exchange, so that two CPUs
 * updating one flow each withdraw the deadline the other put in). An old deadline still in the
 * future is withdrawn from the wheel: returns true. One already past was counted out by the
 * wheel: returns false. */
static __always_inline bool exchange_deadline(struct ct_flow_slot* s, __u32 deadline, __u32 class,
                                              __u64 now) {
  const __u32 old = __sync_lock_test_and_set(&s->deadline_ds, deadline);
  if (old <= now) return false;
  wheel_add(old, class, -1);
  return true;
}

static __always_inline int track_new(struct __sk_buff* skb, const struct message* m,
                                     const struct ct_control* ctl, struct ct_counters* c) {
  struct attributes a;
  __u64 key;
  if (!walk_attributes(skb, m, WALK_NEW, &a) || !hash_flow(m, &a, ctl, &key)) goto unknown;
  if (a.timeout == TIMEOUT_ABSENT) {
    count_diagnostic(c, CT_DIAG_NO_TIMEOUT);
    return PASS;
  }
  if (a.timeout > CT_WHEEL_MAX_TIMEOUT_S) { /* beyond the wheel: user space tracks it */
    count_diagnostic(c, CT_DIAG_LONG_TIMEOUT);
    return PASS;
  }
  const __u64 now_ns = bpf_ktime_get_ns(), now = now_ns / CT_DECISECOND_NS;
  /* 0: less than a second left (the kernel rounds down; a 1 s timeout can read 0 when a jiffy
   * passed before the event). Ended at once, but kept so that its DESTROY stays here too. */
  const __u32 deadline = a.timeout == 0 ? (__u32)now : deadline_after(now_ns, a.timeout);
  struct ct_flow_bucket* b = flow_bucket(ctl, key);
  if (!b) return PASS;
  if (find_slot(b, key)) { /* a NEW twice (a key collision): the first keeps the slot */
    count_diagnostic(c, CT_DIAG_FLOW_EXISTS);
    return PASS;
  }
  struct ct_flow_slot* s = claim_slot(b, key, now, c);
  if (!s) {
    count_diagnostic(c, CT_DIAG_FLOWS_FULL);
    return PASS;
  }
  s->deadline_ds = deadline;
  s->meta = m->class;
  count_diagnostic(c, CT_DIAG_TRACKED);
  if (a.timeout == 0) return DROP;
  wheel_add(deadline, m->class, +1);
  count_tracked(c, m->class, +1);
  return DROP;
unknown:
  count_diagnostic(c, CT_DIAG_UNKNOWN_LAYOUT);
  return PASS;
}

static __always_inline int track_update(struct __sk_buff* skb, const struct message* m,
                                        const struct ct_control* ctl, struct ct_counters* c) {
  struct attributes a;
  __u64 key;
  if (!walk_attributes(skb, m, WALK_UPDATE, &a) || !hash_flow(m, &a, ctl, &key)) {
    count_diagnostic(c, CT_DIAG_UNKNOWN_LAYOUT);
    return PASS;
  }
  struct ct_flow_bucket* b = flow_bucket(ctl, key);
  struct ct_flow_slot* s = b ? find_slot(b, key) : NULL;
  if (!s) {
    /* Not held here: user space knows it from a dump, or not at all. */
    count_diagnostic(c, CT_DIAG_UPDATE_UNTRACKED);
    return a.protoinfo || a.status & IPS_ASSURED ? PASS : DROP;
  }
  if (a.timeout == TIMEOUT_ABSENT) { /* held here: keep its deadline, tell no one */
    count_diagnostic(c, CT_DIAG_NO_TIMEOUT);
    return DROP;
  }
  const __u64 now_ns = bpf_ktime_get_ns(), now = now_ns / CT_DECISECOND_NS;
  const __u32 class = m->class;
  if (a.timeout == 0 || a.timeout > CT_WHEEL_MAX_TIMEOUT_S) {
    /* Ended now (0: dying, its DESTROY comes next), or beyond the wheel: user space's. */
    if (exchange_deadline(s, (__u32)now, class, now)) count_tracked(c, class, -1);
    if (a.timeout == 0) return DROP;
    count_diagnostic(c, CT_DIAG_LONG_TIMEOUT);
    free_slot(s, key);
    return PASS;
  }
  const __u32 deadline = deadline_after(now_ns, a.timeout);
  /* An old deadline already past: the flow counts again from now. */
  if (!exchange_deadline(s, deadline, class, now)) count_tracked(c, class, +1);
  wheel_add(deadline, class, +1);
  return DROP;
}

static __always_inline int track_destroy(struct __sk_buff* skb, const struct message* m,
                                         const struct ct_control* ctl, struct ct_counters* c) {
  struct attributes a;
  __u64 key;
  if (!walk_attributes(skb, m, WALK_DESTROY, &a) || !hash_flow(m, &a, ctl, &key)) {
    count_diagnostic(c, CT_DIAG_UNKNOWN_LAYOUT);
    return PASS;
  }
  struct ct_flow_bucket* b = flow_bucket(ctl, key);
  struct ct_flow_slot* s = b ? find_slot(b, key) : NULL;
  if (!s) {
    count_diagnostic(c, CT_DIAG_DESTROY_UNTRACKED);
    return PASS;
  }
  const __u32 class = m->class;
  if (exchange_deadline(s, 0, class, bpf_ktime_get_ns() / CT_DECISECOND_NS))
    count_tracked(c, class, -1);
  /* While user space dumps it must learn which listed flows went: the slot is marked and keeps
   * its key, and user space frees it. Otherwise the slot is free at once. */
  if (ctl->bits & CT_CONTROL_DUMPING)
    s->meta = class | CT_FLOW_DESTROYED;
  else
    free_slot(s, key);
  return DROP;
}

SEC("socket")
int ct_monitor(struct __sk_buff* skb) {
  struct message m;
  struct ct_counters* c = read_and_count(skb, &m);
  if (!c) return PASS; /* not counted: user space's decoder is the judge */
  int verdict = PASS;
  if (m.class == CT_CLASS_UNKNOWN) {
    count_diagnostic(c, CT_DIAG_UNKNOWN_LAYOUT);
  } else if (m.class == CT_CLASS_TCP) {
    if (m.kind == CT_KIND_UPDATE) {
      struct attributes a;
      if (!walk_attributes(skb, &m, WALK_TCP_UPDATE, &a))
        count_diagnostic(c, CT_DIAG_UNKNOWN_LAYOUT);
      else if (!a.protoinfo)
        verdict = DROP; /* no state change */
    }
  } else {
    const __u32 zero = 0;
    const struct ct_control* ctl = bpf_map_lookup_elem(&ct_control, &zero);
    if (ctl) {
      if (m.kind == CT_KIND_NEW)
        verdict = track_new(skb, &m, ctl, c);
      else if (m.kind == CT_KIND_UPDATE)
        verdict = track_update(skb, &m, ctl, c);
      else
        verdict = track_destroy(skb, &m, ctl, c);
    }
  }
  if (verdict == PASS) count_diagnostic(c, CT_DIAG_PASSED);
  return verdict;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
