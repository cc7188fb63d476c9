// decoder.h — pure decoder for ctnetlink messages (events, dump entries, stats replies).
//
// Follows linux/netfilter/nfnetlink_conntrack.h. No Node-API, no allocation, no syscalls:
// bytes in, plain structs out. Every read is bounds-checked and unknown attributes are
// skipped, because newer kernels add attributes (CTA_TIMESTAMP_EVENT = 27 arrived in 6.14).
//
// Wire layout of one message (nlmsghdr is host byte order; attribute payloads big endian):
//
//   +-----------------------------+  nlmsghdr, 16 bytes
//   | len u32 | type u16 | flags u16 | seq u32 | pid u32 |   type = (subsys << 8) | msg
//   +-----------------------------+  nfgenmsg, 4 bytes
//   | family u8 | version u8 | res_id be16 |              res_id = cpu in STATS_CPU replies
//   +-----------------------------+  attributes, each padded to 4 bytes
//   | nla_len u16 | nla_type u16 | payload ... | pad |    nla_type & 0x3fff is the id;
//   +-----------------------------+                         0x8000 marks a nest
#pragma once

#include <cstddef>
#include <cstdint>

namespace ctmon {

// One attribute as seen by the walker: its id (flags masked off) and its payload.
struct Attr {
  uint16_t type;
  const uint8_t* payload;
  uint16_t length;
};

// Bounds-checked walk over a run of attributes. next() returns false at the end or at the
// first malformed attribute; malformed() tells the two apart.
class AttrWalker {
 public:
  AttrWalker(const uint8_t* data, size_t size) : cursor_(data), end_(data + size) {}
  explicit AttrWalker(const Attr& nest) : AttrWalker(nest.payload, nest.length) {}
  bool next(Attr& out);
  bool malformed() const { return malformed_; }

 private:
  const uint8_t* cursor_;
  const uint8_t* end_;
  bool malformed_ = false;
};

// Walk over the netlink messages packed in one datagram.
struct Message {
  uint16_t type;
  uint16_t flags;
  uint32_t seq;
  const uint8_t* body;  // after nlmsghdr
  uint32_t body_length;
};

class MessageWalker {
 public:
  MessageWalker(const uint8_t* data, size_t size) : cursor_(data), end_(data + size) {}
  bool next(Message& out);
  bool malformed() const { return malformed_; }

 private:
  const uint8_t* cursor_;
  const uint8_t* end_;
  bool malformed_ = false;
};

enum class EventKind : uint8_t { kNew, kUpdate, kDestroy };

// TCP states from linux/netfilter/nf_conntrack_tcp.h (enum tcp_conntrack).
constexpr uint8_t kTcpStateNone = 0xff;  // no CTA_PROTOINFO_TCP in the message
constexpr uint8_t kTcpStateCount = 10;   // NONE .. SYN_SENT2

struct Tuple {
  uint8_t l4proto = 0;
  uint8_t src[16] = {};  // IPv4 uses the first 4 bytes
  uint8_t dst[16] = {};
  uint16_t src_port = 0;  // TCP/UDP/SCTP ports, or the ICMP/ICMPv6 id
  uint16_t dst_port = 0;
  uint8_t icmp_type = 0;
  uint8_t icmp_code = 0;
};

// A conntrack entry as described by an event or a dump reply.
struct Conntrack {
  enum Field : uint16_t {
    kHasOrig = 1 << 0,
    kHasId = 1 << 1,
    kHasStatus = 1 << 2,
    kHasTimeout = 1 << 3,
    kHasTcpState = 1 << 4,
    kHasZone = 1 << 5,
    kHasMark = 1 << 6,
  };
  EventKind kind = EventKind::kUpdate;
  uint8_t family = 0;
  uint16_t fields = 0;
  Tuple orig;
  uint32_t id = 0;
  uint32_t status = 0;
  uint32_t timeout_s = 0;
  uint32_t mark = 0;
  uint16_t zone = 0;
  uint8_t tcp_state = kTcpStateNone;
  // CTA_TUPLE_ORIG's payload as received (the kernel event filter's flow key hashes it):
  // points into the message, valid only while the message is.
  const uint8_t* orig_tuple = nullptr;
  uint16_t orig_tuple_length = 0;
  bool has(Field f) const { return (fields & f) != 0; }
};

// Per-CPU counters of one IPCTNL_MSG_CT_GET_STATS_CPU reply, indexed by CTA_STATS_* id.
constexpr int kStatsSlots = 32;  // room for ids the kernel may add after CHAIN_TOOLONG (15)
struct CpuStats {
  uint16_t cpu = 0;
  uint32_t present = 0;  // bit i set when CTA_STATS id i was in the reply
  uint32_t values[kStatsSlots] = {};
};

// IPCTNL_MSG_CT_GET_STATS: entries of the socket's netns and the global nf_conntrack_max.
struct GlobalStats {
  bool has_entries = false;
  bool has_max = false;
  uint32_t entries = 0;
  uint32_t max = 0;
};

enum class DecodeStatus : uint8_t {
  kOk,
  kNotConntrack,  // another subsystem or message type: skip it
  kMalformed,     // lengths do not add up; the message is ignored
};

// Decode a conntrack NEW/UPDATE/DESTROY message (an event or a dump entry).
DecodeStatus decode_conntrack(const Message& msg, Conntrack& out);
DecodeStatus decode_cpu_stats(const Message& msg, CpuStats& out);
DecodeStatus decode_global_stats(const Message& msg, GlobalStats& out);

// The nlmsgerr code of an NLMSG_ERROR message (0 is an ACK), or 0 when it cannot be read.
int decode_error_code(const Message& msg);

}  // namespace ctmon
