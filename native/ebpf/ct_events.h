/* ct_events.h — what the ctnetlink event socket filters (ct_events.bpf.c) and user space
 * share: the layouts of their maps, their constants, and ct_flow_key(). Compiled for BPF
 * (clang -target bpf) and for the host (C++), so the two cannot disagree.
 *
 * Two programs:
 *   ct_count    counts every conntrack message by kind (NEW, UPDATE, DESTROY) and protocol
 *               class into a per-CPU array and returns 0: nothing reaches user space.
 *   ct_monitor  counts the same way per network namespace, and keeps every flow in one flow
 *               table (its protocol class, TCP state and deadline), which user space maps and
 *               counts; it passes to user space only what the table cannot hold.
 * One ct_monitor and one set of maps serve every namespace a reader watches: each namespace's
 * event socket is opened inside it (so it receives that namespace's events only), the program
 * knows the socket by bpf_get_socket_cookie(), and ct_namespaces gives its namespace's index.
 * ct_events.bpf.c says what ct_monitor does with each message; native/ebpf/README.md how to
 * change, build and test the programs. */
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
#define CT_TCP_STATES 10     /* enum tcp_conntrack: NONE (0) .. SYN_SENT2 (9) */

/* What ct_monitor saw besides the counted messages; cumulative, for diagnosis. */
enum ct_diagnostic {
  CT_DIAG_SHORT,             /* shorter than nlmsghdr + nfgenmsg: not counted */
  CT_DIAG_NOT_CONNTRACK,     /* another subsystem or message type: not counted */
  CT_DIAG_PASSED,            /* messages passed to user space */
  CT_DIAG_TRACKED,           /* NEWs whose flow the table now holds */
  CT_DIAG_UNKNOWN_LAYOUT,    /* tuple or attributes not as expected: passed */
  CT_DIAG_NO_TIMEOUT,        /* without CTA_TIMEOUT: a NEW passed, an UPDATE keeps the deadline */
  CT_DIAG_FLOWS_FULL,        /* a NEW whose bucket was full: passed */
  CT_DIAG_FLOW_EXISTS,       /* a NEW whose key the table holds already: a new incarnation */
  CT_DIAG_DESTROY_UNTRACKED, /* DESTROY of a flow the table does not hold: passed */
  CT_DIAG_UPDATE_UNTRACKED,  /* UPDATE of a flow the table does not hold: passed */
  CT_DIAG_NO_NAMESPACE,      /* from a socket whose namespace is not registered: passed */
  CT_DIAG_GONE_FULL,         /* a DESTROY during a listing ct_gone could not hold */
  CT_DIAG_COUNT = 16,        /* room for more without changing the layout */
};

/* The per-CPU counters of one namespace (ct_counters is indexed by namespace index). The
 * programs add to the running CPU's copy (atomically: a softirq may interrupt a process-context
 * run on the same CPU); user space sums the copies. */
struct ct_counters {
  __u64 messages[CT_KIND_COUNT][CT_CLASS_COUNT];
  __u64 diagnostics[CT_DIAG_COUNT];
};

/* A flow's identity, canonical: the fields of its original tuple (as ctnetlink's events and
 * dumps and /proc/net/nf_conntrack all give them), its zone and its namespace's index. Every
 * byte is set (padding zero), so equal flows hash equally. */
struct ct_tuple {
  __u8 src[16]; /* IPv4 in the first 4 bytes */
  __u8 dst[16];
  __u16 sport; /* host order: the source port, the ICMP id, the GRE key */
  __u16 dport; /* host order: the destination port, the GRE key */
  __u8 icmp_type;
  __u8 icmp_code;
  __u8 family; /* AF_INET, AF_INET6 */
  __u8 proto;  /* IPPROTO_* */
  __u16 zone;  /* CTA_ZONE, 0 without */
  __u16 ns;    /* the namespace's index */
  __u32 pad;
};

/* Attribute ids of the original tuple, as ctnetlink numbers them (linux/netfilter/
 * nfnetlink_conntrack.h), for the layout check below. */
#define CT_NLA_HDRLEN 4
#define CT_NLA_TYPE_MASK 0x3fff
#define CT_TUPLE_IP 1
#define CT_TUPLE_PROTO 2
#define CT_IP_V4_SRC 1
#define CT_IP_V4_DST 2
#define CT_IP_V6_SRC 3
#define CT_IP_V6_DST 4
#define CT_PROTO_NUM 1
#define CT_PROTO_SRC_PORT 2
#define CT_PROTO_DST_PORT 3
#define CT_PROTO_ICMP_ID 4   /* then TYPE 5, CODE 6 */
#define CT_PROTO_ICMPV6_ID 7 /* then TYPE 8, CODE 9 */

static inline __u16 ct_u16(const __u8* p) { /* host order, as nla_len and nla_type are */
  __u16 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
static inline __u16 ct_be16(const __u8* p) { return (__u16)(p[0] << 8 | p[1]); }
static inline int ct_attr_is(const __u8* p, __u16 type, __u16 len) {
  return ct_u16(p) == len && (ct_u16(p + 2) & CT_NLA_TYPE_MASK) == type;
}

/* Reads the canonical tuple from CTA_TUPLE_ORIG's payload (`orig`, `length` bytes of it), laid
 * out as ctnetlink always lays it out: CTA_TUPLE_IP with the two addresses, then CTA_TUPLE_PROTO
 * with CTA_PROTO_NUM and either two ports (TCP, UDP, UDP-Lite, SCTP, DCCP; GRE's keys), the ICMP
 * id, type and code, or nothing else. Returns its class, or CT_CLASS_UNKNOWN for any other
 * layout (nothing is guessed). t->zone and t->ns are the caller's. The program and user space
 * both use it, so that they accept the same messages and give them the same keys. */
static inline __u32 ct_read_tuple(const __u8* orig, __u32 length, __u8 family, struct ct_tuple* t) {
  __builtin_memset(t, 0, sizeof *t);
  const int v6 = family == 10;
  if (family != 2 && !v6) return CT_CLASS_UNKNOWN;
  const __u32 address = v6 ? 16 : 4;
  const __u32 address_attr = CT_NLA_HDRLEN + address;
  const __u32 ip_nest = CT_NLA_HDRLEN + 2 * address_attr;
  const __u32 proto_num = ip_nest + CT_NLA_HDRLEN;   /* CTA_PROTO_NUM's header */
  const __u32 first = proto_num + CT_NLA_HDRLEN + 4; /* the attribute after it */
  if (length < first) return CT_CLASS_UNKNOWN;
  if (!ct_attr_is(orig, CT_TUPLE_IP, (__u16)ip_nest) ||
      !ct_attr_is(orig + CT_NLA_HDRLEN, v6 ? CT_IP_V6_SRC : CT_IP_V4_SRC, (__u16)address_attr) ||
      !ct_attr_is(orig + CT_NLA_HDRLEN + address_attr, v6 ? CT_IP_V6_DST : CT_IP_V4_DST,
                  (__u16)address_attr) ||
      (ct_u16(orig + ip_nest + 2) & CT_NLA_TYPE_MASK) != CT_TUPLE_PROTO ||
      !ct_attr_is(orig + proto_num, CT_PROTO_NUM, CT_NLA_HDRLEN + 1))
    return CT_CLASS_UNKNOWN;
  const __u16 nest = ct_u16(orig + ip_nest);
  if (ip_nest + nest > length) return CT_CLASS_UNKNOWN;
  if (v6) { /* constant sizes: BPF has no memcpy call */
    __builtin_memcpy(t->src, orig + 2 * CT_NLA_HDRLEN, 16);
    __builtin_memcpy(t->dst, orig + 3 * CT_NLA_HDRLEN + 16, 16);
  } else {
    __builtin_memcpy(t->src, orig + 2 * CT_NLA_HDRLEN, 4);
    __builtin_memcpy(t->dst, orig + 3 * CT_NLA_HDRLEN + 4, 4);
  }
  t->family = family;
  t->proto = orig[proto_num + CT_NLA_HDRLEN];
  const __u32 cls = t->proto == 6                     ? CT_CLASS_TCP
                    : t->proto == 17                  ? CT_CLASS_UDP
                    : t->proto == 1 || t->proto == 58 ? CT_CLASS_ICMP
                                                      : CT_CLASS_OTHER;
  if (nest == CT_NLA_HDRLEN + 8) return cls == CT_CLASS_OTHER ? cls : (__u32)CT_CLASS_UNKNOWN;
  if (t->proto == 1 || t->proto == 58) {
    const __u16 id = t->proto == 1 ? CT_PROTO_ICMP_ID : CT_PROTO_ICMPV6_ID;
    if (nest != CT_NLA_HDRLEN + 4 * 8 || !ct_attr_is(orig + first, id, CT_NLA_HDRLEN + 2) ||
        !ct_attr_is(orig + first + 8, id + 1, CT_NLA_HDRLEN + 1) ||
        !ct_attr_is(orig + first + 16, id + 2, CT_NLA_HDRLEN + 1))
      return CT_CLASS_UNKNOWN;
    t->sport = ct_be16(orig + first + CT_NLA_HDRLEN);
    t->icmp_type = orig[first + 8 + CT_NLA_HDRLEN];
    t->icmp_code = orig[first + 16 + CT_NLA_HDRLEN];
    return cls;
  }
  if (nest != CT_NLA_HDRLEN + 3 * 8 ||
      !ct_attr_is(orig + first, CT_PROTO_SRC_PORT, CT_NLA_HDRLEN + 2) ||
      !ct_attr_is(orig + first + 8, CT_PROTO_DST_PORT, CT_NLA_HDRLEN + 2))
    return CT_CLASS_UNKNOWN;
  t->sport = ct_be16(orig + first + CT_NLA_HDRLEN);
  t->dport = ct_be16(orig + first + 8 + CT_NLA_HDRLEN);
  return cls;
}

/* The flow key: a seeded 64-bit hash of a ct_tuple; never 0 (0 marks a free slot). */
static inline __u64 ct_flow_key(__u64 seed, const struct ct_tuple* t) {
  __u64 words[sizeof(struct ct_tuple) / 8];
  __builtin_memcpy(words, t, sizeof words);
  __u64 h = seed;
  for (int i = 0; i < (int)(sizeof words / sizeof words[0]); i++) h = ct_fmix64(h ^ words[i]);
  return h == 0 ? 1 : h;
}

/* The flow table: a lock-free hash table in an array map (BPF_F_MMAPABLE, so user space reads
 * and writes it in place). A flow's bucket is its key & ct_control.bucket_mask; a NEW claims a
 * free slot of its bucket with an atomic compare-and-exchange of the key from 0, its UPDATEs
 * and DESTROY find it by key. User space claims slots the same way for the flows a listing
 * shows. No lock: the kernel's hash map takes a spinlock with interrupts off per update, which
 * cost ~1 us a message on a paravirtualized 2-vCPU VM. A flow whose bucket is full goes to
 * user space. */
struct ct_flow_slot {
  __u64 key;         /* ct_flow_key(), 0 when the slot is free */
  __u32 deadline_ds; /* CLOCK_MONOTONIC deciseconds the flow expires at, unless refreshed */
  __u32 meta;        /* CT_META_* below */
};
#define CT_META_CLASS(m) ((m)&0x3u)              /* enum ct_class, tracked ones */
#define CT_META_TCP_STATE(m) (((m) >> 2) & 0xfu) /* enum tcp_conntrack, TCP only */
#define CT_META_TOUCHED (1u << 6)                /* an event changed it during a listing */
#define CT_META_LISTED (1u << 7)                 /* user space: the listing showed it */
#define CT_META_NS(m) ((m) >> 16)                /* the namespace's index */
#define CT_META(cls, state, ns) ((__u32)(cls) | (__u32)(state) << 2 | (__u32)(ns) << 16)
#define CT_SLOTS_PER_BUCKET 8
struct ct_flow_bucket {
  struct ct_flow_slot slots[CT_SLOTS_PER_BUCKET];
};
#define CT_DECISECOND_NS 100000000ULL

/* ct_namespaces: bpf_get_socket_cookie() of a namespace's event socket -> its entry. */
struct ct_namespace {
  __u32 index; /* into ct_counters, and in the flows' meta */
  __u32 flags; /* CT_NS_* */
};
/* A listing of the namespace is being applied: events mark what they change (CT_META_TOUCHED)
 * and DESTROYs record their key in ct_gone, so that the listing does not undo them. */
#define CT_NS_LISTING 1u

/* ct_monitor's settings, key 0 of ct_control, written by user space before it attaches. */
struct ct_control {
  __u32 bucket_mask; /* the flow table's buckets - 1 (a power of two, less one) */
  __u32 pad;
  __u64 key_seed; /* ct_flow_key()'s seed, random per reader */
};
