// SPDX-License-Identifier: MIT OR GPL-2.0
/* ct_events.bpf.c — the socket filters on conntrack-monitor's ctnetlink event sockets
 * (SO_ATTACH_BPF). Map layouts, constants and ct_flow_key() are in ct_events.h, shared with
 * user space.
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
 *   off 56|80   the ports (two 6-byte attributes), or the ICMP id, type and code (6, 5, 5)
 *
 * ct_read_tuple() (ct_events.h) checks each of these headers and reads the tuple; a message
 * that differs is counted by kind as CT_CLASS_UNKNOWN rather than guessed at. ct_count stops
 * there and drops it.
 *
 * ct_monitor goes on, for the namespace whose socket it runs for (ct_namespaces):
 *
 *   NEW: claim a slot for the flow, with its class, TCP state (CTA_PROTOINFO) and deadline
 *   (now + CTA_TIMEOUT); drop. Without CTA_TIMEOUT (never seen): pass. A NEW whose key is
 *   held already is a new incarnation of the tuple (the old one's DESTROY raced it): it takes
 *   the slot over.
 *
 *   UPDATE: find the flow, set its TCP state (when CTA_PROTOINFO says) and deadline; drop.
 *   Not held: pass (user space holds it, or learns it).
 *
 *   DESTROY: free the flow's slot; drop. Not held: pass (user space may hold it).
 *
 * During a listing of the namespace, an event marks the slot it changed (CT_META_TOUCHED), and
 * a DESTROY records its key in ct_gone, so that user space applying the listing keeps what the
 * events said. What it cannot do it passes: a bucket with no free slot, a layout it does not
 * know, a namespace not registered. User space counts the table by scanning it (it is mapped).
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

/* Each message's start is read once, with one bpf_skb_load_bytes: 192 bytes hold everything
 * ct_monitor reads of an IPv4 TCP event (the tuples, CTA_ID, CTA_STATUS, CTA_TIMEOUT and the TCP
 * state of CTA_PROTOINFO end at byte 156); what lies further (IPv6, other attributes first) is
 * read attribute by attribute. */
#define HEAD_BYTES 192
#define ATTRS_OFFSET 20                          /* nlmsghdr + nfgenmsg */
#define TUPLE_OFFSET (ATTRS_OFFSET + NLA_HDRLEN) /* CTA_TUPLE_ORIG's payload */
#define TIMEOUT_ABSENT 0xffffffffu               /* a real CTA_TIMEOUT is < 2^31 jiffies / HZ */
#define TCP_STATE_NONE 0

/* Indexed by namespace index; user space sizes it (one for ct_count). */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct ct_counters);
} ct_counters SEC(".maps");

/* Sized by user space; ct_control.bucket_mask says how. */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(map_flags, BPF_F_MMAPABLE);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct ct_flow_bucket);
} ct_flows SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1);
  __type(key, __u64); /* bpf_get_socket_cookie() of the namespace's event socket */
  __type(value, struct ct_namespace);
} ct_namespaces SEC(".maps");

/* Keys of flows a DESTROY removed while their namespace was being listed. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 65536);
  __type(key, __u64);
  __type(value, __u8);
} ct_gone SEC(".maps");

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
  struct ct_tuple tuple; /* when class is not CT_CLASS_UNKNOWN */
};

/* What a walk of the top-level attributes found. */
struct attributes {
  __u32 timeout; /* TIMEOUT_ABSENT without CTA_TIMEOUT */
  __u16 zone;    /* 0 without CTA_ZONE */
  __u8 protoinfo;
  __u8 tcp_state; /* CTA_PROTOINFO_TCP_STATE, when protoinfo */
};

static __always_inline __u16 head_u16(const struct message* m, __u32 off) {
  __u16 v;
  __builtin_memcpy(&v, m->head + off, sizeof v);
  return v;
}

static __always_inline __u32 be32(const __u8* p) {
  return (__u32)p[0] << 24 | (__u32)p[1] << 16 | (__u32)p[2] << 8 | p[3];
}

static __always_inline void count_diagnostic(struct ct_counters* c, enum ct_diagnostic d) {
  __sync_fetch_and_add(&c->diagnostics[d], 1);
}

/* Reads the message's start into m, tells its kind and class and counts it in c. Returns false
 * for a message that is not counted (too short, not a conntrack event), counted as a
 * diagnostic. */
static __always_inline bool read_and_count(struct __sk_buff* skb, struct message* m,
                                           struct ct_counters* c) {
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

  /* The original tuple: CTA_TUPLE_ORIG's payload, as far as it was read. */
  m->class = CT_CLASS_UNKNOWN;
  const __u16 orig = head_u16(m, ATTRS_OFFSET);
  if ((head_u16(m, ATTRS_OFFSET + 2) & NLA_TYPE_MASK) == CTA_TUPLE_ORIG && orig >= NLA_HDRLEN) {
    __u32 available = orig - NLA_HDRLEN;
    if (available > m->length - TUPLE_OFFSET) available = m->length - TUPLE_OFFSET;
    m->class = ct_read_tuple(m->head + TUPLE_OFFSET, available, m->head[sizeof(struct nlmsghdr)],
                             &m->tuple);
  }
  if (m->kind < CT_KIND_COUNT && m->class < CT_CLASS_COUNT)
    __sync_fetch_and_add(&c->messages[m->kind][m->class], 1);
  return true;

short_message:
  count_diagnostic(c, CT_DIAG_SHORT);
  return false;
not_conntrack:
  count_diagnostic(c, CT_DIAG_NOT_CONNTRACK);
  return false;
}

static __always_inline struct ct_counters* counters_of(__u32 index) {
  return bpf_map_lookup_elem(&ct_counters, &index);
}

SEC("socket")
int ct_count(struct __sk_buff* skb) {
  struct message m;
  struct ct_counters* c = counters_of(0);
  if (c) read_and_count(skb, &m, c); /* an array's key 0 is always there: for the verifier */
  return DROP;
}

/* ---- ct_monitor ---- */

/* The attribute header and the first 4 bytes of its payload. */
struct attribute {
  __u16 len;
  __u16 type;
  __u8 payload[4];
};

/* CTA_PROTOINFO as ctnetlink writes it for TCP: the nest, the TCP nest, then the state. */
struct tcp_protoinfo {
  struct nlattr protoinfo;
  struct nlattr tcp;
  struct nlattr state;
  __u8 value;
  __u8 pad[3];
};

#define WALK_STEPS 16 /* top-level attributes looked at, at most */

/* What one top-level attribute tells walk_attributes. */
enum visit { VISIT_NEXT, VISIT_DONE, VISIT_MALFORMED, VISIT_TCP_PROTOINFO };

/* CTA_ZONE, CTA_TIMEOUT and CTA_PROTOINFO (with the TCP state), which ctnetlink writes in that
 * order, go into a; a DESTROY needs only the zone, which comes before CTA_STATUS. A TCP
 * CTA_PROTOINFO is the caller's to read (tcp_state_of). */
static __always_inline enum visit visit(const struct message* m, const struct attribute* at,
                                        struct attributes* a) {
  if (at->len < NLA_HDRLEN) return VISIT_MALFORMED;
  const __u16 type = at->type & NLA_TYPE_MASK;
  if (type == CTA_ZONE) {
    a->zone = (__u16)(at->payload[0] << 8 | at->payload[1]);
  } else if (type == CTA_STATUS && m->kind == CT_KIND_DESTROY) {
    return VISIT_DONE;
  } else if (type == CTA_TIMEOUT) {
    a->timeout = be32(at->payload);
  } else if (type == CTA_PROTOINFO) {
    a->protoinfo = 1;
    return m->class == CT_CLASS_TCP ? VISIT_TCP_PROTOINFO : VISIT_DONE;
  }
  return VISIT_NEXT;
}

static __always_inline bool tcp_state_of(const struct tcp_protoinfo* p, struct attributes* a) {
  if ((p->tcp.nla_type & NLA_TYPE_MASK) != CTA_PROTOINFO_TCP ||
      (p->state.nla_type & NLA_TYPE_MASK) != CTA_PROTOINFO_TCP_STATE ||
      p->state.nla_len != NLA_HDRLEN + 1 || p->value >= CT_TCP_STATES)
    return false;
  a->tcp_state = p->value;
  return true;
}

/* The walk starts after CTA_TUPLE_ORIG: its length, rounded up to 4. */
static __always_inline __u32 walk_start(const struct message* m, struct attributes* a) {
  a->timeout = TIMEOUT_ABSENT;
  a->zone = 0;
  a->protoinfo = 0;
  a->tcp_state = TCP_STATE_NONE;
  return (ATTRS_OFFSET + head_u16(m, ATTRS_OFFSET) + 3) & ~3u;
}

enum walk { WALK_DONE, WALK_MALFORMED, WALK_BEYOND_HEAD };

/* The walk within the message's start, which holds all an IPv4 event needs: no helper call. */
static __always_inline enum walk walk_head(const struct message* m, struct attributes* a) {
  __u32 cursor = walk_start(m, a);
  for (int step = 0; step < WALK_STEPS; step++) {
    if (cursor + NLA_HDRLEN > m->end) return WALK_DONE; /* the end of the message */
    if (cursor > HEAD_BYTES - sizeof(struct tcp_protoinfo)) return WALK_BEYOND_HEAD;
    /* Bytes past the message's end read as 0 (the head was zeroed): an attribute with less
     * than 4 bytes of payload is the last one (padding is 4). */
    struct attribute at;
    __builtin_memcpy(&at, m->head + cursor, sizeof at);
    const enum visit v = visit(m, &at, a);
    if (v == VISIT_DONE) return WALK_DONE;
    if (v == VISIT_MALFORMED) return WALK_MALFORMED;
    if (v == VISIT_TCP_PROTOINFO) {
      struct tcp_protoinfo p;
      __builtin_memcpy(&p, m->head + cursor, sizeof p);
      return tcp_state_of(&p, a) ? WALK_DONE : WALK_MALFORMED;
    }
    cursor += (at.len + 3) & ~3u;
  }
  return WALK_MALFORMED;
}

/* The same walk over the whole message, one bpf_skb_load_bytes per attribute. */
static __always_inline bool walk_skb(struct __sk_buff* skb, const struct message* m,
                                     struct attributes* a) {
  __u32 cursor = walk_start(m, a);
  for (int step = 0; step < WALK_STEPS; step++) {
    if (cursor + NLA_HDRLEN > m->end) return true;
    struct attribute at = {};
    if (bpf_skb_load_bytes(skb, cursor, &at, sizeof at)) return true;
    const enum visit v = visit(m, &at, a);
    if (v == VISIT_DONE) return true;
    if (v == VISIT_MALFORMED) return false;
    if (v == VISIT_TCP_PROTOINFO) {
      struct tcp_protoinfo p = {};
      return !bpf_skb_load_bytes(skb, cursor, &p, sizeof p) && tcp_state_of(&p, a);
    }
    cursor += (at.len + 3) & ~3u;
  }
  return false;
}

/* Reads the top-level attributes after CTA_TUPLE_ORIG into a: from the message's start when it
 * holds them, else from the message. Returns false when an attribute is malformed, there were
 * too many, or a TCP CTA_PROTOINFO is not laid out as expected. */
static __always_inline bool walk_attributes(struct __sk_buff* skb, const struct message* m,
                                            struct attributes* a) {
  const enum walk w = walk_head(m, a);
  if (w == WALK_BEYOND_HEAD) return walk_skb(skb, m, a);
  return w == WALK_DONE;
}

/* Deciseconds of CLOCK_MONOTONIC, ceiling, `timeout_s` from now. */
static __always_inline __u32 deadline_after(__u64 now_ns, __u32 timeout_s) {
  return (now_ns + timeout_s * 1000000000ULL + CT_DECISECOND_NS - 1) / CT_DECISECOND_NS;
}

static __always_inline struct ct_flow_slot* find_slot(struct ct_flow_bucket* b, __u64 key) {
  for (int i = 0; i < CT_SLOTS_PER_BUCKET; i++)
    if (b->slots[i].key == key) return &b->slots[i];
  return NULL;
}

/* Claims a free slot of bucket b for key with an atomic compare-and-exchange, so that two
 * CPUs (or a CPU and user space) never claim one slot; NULL when all are taken. Two claimers
 * that both missed the key (user space writing a listing, and the program seeing the flow's
 * NEW) may claim two slots for it: the lower one wins, on both sides (kernel_flows.cc), so the
 * one with the higher slot gives its own back and uses the lower. */
static __always_inline struct ct_flow_slot* claim_slot(struct ct_flow_bucket* b, __u64 key) {
  int claimed = -1;
  for (int i = 0; i < CT_SLOTS_PER_BUCKET; i++)
    if (__sync_val_compare_and_swap(&b->slots[i].key, 0, key) == 0) {
      claimed = i;
      break;
    }
  if (claimed < 0) return NULL;
  for (int i = 0; i < CT_SLOTS_PER_BUCKET; i++) {
    if (i >= claimed) break;
    if (b->slots[i].key == key) {
      __sync_val_compare_and_swap(&b->slots[claimed].key, key, 0);
      return &b->slots[i];
    }
  }
  return &b->slots[claimed];
}

/* The slot's class and state from this event: the state only when it says one. */
static __always_inline __u32 meta_of(const struct ct_flow_slot* s, const struct message* m,
                                     const struct attributes* a, const struct ct_namespace* ns,
                                     bool existing) {
  __u32 state = a->protoinfo ? a->tcp_state : TCP_STATE_NONE;
  if (existing && !a->protoinfo) state = CT_META_TCP_STATE(s->meta);
  __u32 meta = CT_META(m->class, state, ns->index);
  if (ns->flags & CT_NS_LISTING) meta |= CT_META_TOUCHED;
  return meta;
}

/* A NEW, or an UPDATE of a flow the table holds: the slot gets the event's state and deadline
 * (an UPDATE without CTA_TIMEOUT keeps the deadline). The meta first: a freed slot's deadline
 * is 0, which user space's scan skips, so a slot just claimed is counted only once its meta is
 * this flow's. */
static __always_inline void set_flow(struct ct_flow_slot* s, const struct message* m,
                                     const struct attributes* a, const struct ct_namespace* ns,
                                     bool existing) {
  s->meta = meta_of(s, m, a, ns, existing);
  if (a->timeout != TIMEOUT_ABSENT) s->deadline_ds = deadline_after(bpf_ktime_get_ns(), a->timeout);
}

static __always_inline int track(struct __sk_buff* skb, const struct message* m,
                                 const struct ct_namespace* ns, struct ct_counters* c) {
  const __u32 zero = 0;
  const struct ct_control* ctl = bpf_map_lookup_elem(&ct_control, &zero);
  if (!ctl) return PASS;
  struct attributes a;
  if (!walk_attributes(skb, m, &a)) {
    count_diagnostic(c, CT_DIAG_UNKNOWN_LAYOUT);
    return PASS;
  }
  struct ct_tuple t = m->tuple;
  t.zone = a.zone;
  t.ns = (__u16)ns->index;
  const __u64 key = ct_flow_key(ctl->key_seed, &t);
  const __u32 bucket = (__u32)key & ctl->bucket_mask;
  struct ct_flow_bucket* b = bpf_map_lookup_elem(&ct_flows, &bucket);
  if (!b) return PASS;
  /* A DESTROY during a listing is recorded before the slot is looked for: user space claims a
   * listed flow's slot before it looks here (kernel_flows.cc), so one of the two sees the
   * other. */
  if (m->kind == CT_KIND_DESTROY && (ns->flags & CT_NS_LISTING)) {
    const __u8 one = 1;
    if (bpf_map_update_elem(&ct_gone, &key, &one, BPF_ANY)) count_diagnostic(c, CT_DIAG_GONE_FULL);
  }
  struct ct_flow_slot* s = find_slot(b, key);

  if (m->kind == CT_KIND_DESTROY) {
    if (!s) {
      count_diagnostic(c, CT_DIAG_DESTROY_UNTRACKED);
      return PASS; /* user space may hold it */
    }
    /* A free slot carries no marks: whoever claims it next starts clean. */
    s->meta = 0;
    s->deadline_ds = 0;
    __sync_val_compare_and_swap(&s->key, key, 0); /* unless another CPU reused it meanwhile */
    return DROP;
  }
  if (a.timeout == TIMEOUT_ABSENT) {
    count_diagnostic(c, CT_DIAG_NO_TIMEOUT);
    if (m->kind == CT_KIND_NEW) return PASS; /* no deadline to give it: user space's */
  }
  if (m->kind == CT_KIND_UPDATE) {
    if (!s) {
      count_diagnostic(c, CT_DIAG_UPDATE_UNTRACKED);
      return PASS; /* user space holds it, or learns it */
    }
    set_flow(s, m, &a, ns, true);
    return DROP;
  }
  /* NEW. A flow held already is an older incarnation whose DESTROY has not come yet: the
   * kernel holds one entry per tuple at a time, so the new one takes its place. */
  if (s) {
    count_diagnostic(c, CT_DIAG_FLOW_EXISTS);
  } else {
    s = claim_slot(b, key);
    if (!s) {
      count_diagnostic(c, CT_DIAG_FLOWS_FULL);
      return PASS;
    }
  }
  set_flow(s, m, &a, ns, false);
  count_diagnostic(c, CT_DIAG_TRACKED);
  return DROP;
}

SEC("socket")
int ct_monitor(struct __sk_buff* skb) {
  /* The receiving socket's: each namespace's event socket is opened inside it, and the kernel
   * delivers a namespace's events only to sockets of that namespace. */
  const __u64 cookie = bpf_get_socket_cookie(skb);
  const struct ct_namespace* ns = bpf_map_lookup_elem(&ct_namespaces, &cookie);
  if (!ns) {
    struct ct_counters* any = counters_of(0);
    if (any) count_diagnostic(any, CT_DIAG_NO_NAMESPACE);
    return PASS;
  }
  struct ct_counters* c = counters_of(ns->index);
  if (!c) return PASS;
  struct message m;
  if (!read_and_count(skb, &m, c)) return PASS; /* not counted: user space's decoder judges */
  int verdict = PASS;
  if (m.class == CT_CLASS_UNKNOWN)
    count_diagnostic(c, CT_DIAG_UNKNOWN_LAYOUT);
  else
    verdict = track(skb, &m, ns, c);
  if (verdict == PASS) count_diagnostic(c, CT_DIAG_PASSED);
  return verdict;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
