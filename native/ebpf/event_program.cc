// event_program.cc — see event_program.h.
//
// Every message: read up to 128 bytes of it into the stack (one bpf_skb_load_bytes; a socket
// filter may not read skb->data directly), tell its kind from nlmsg_type and nlmsg_flags, and
// its protocol from the original tuple, which ctnetlink always lays out the same way:
//
//   off  0  nlmsghdr (16, host order)   len | type | flags | seq | pid
//   off 16  nfgenmsg (4)                family | version | res_id
//   off 20  CTA_TUPLE_ORIG nest (4)
//   off 24    CTA_TUPLE_IP nest: 20 bytes for AF_INET (two 8-byte address attributes),
//             44 for AF_INET6 (two 20-byte ones)
//   off 44|68 CTA_TUPLE_PROTO nest (4)
//   off 48|72   CTA_PROTO_NUM attribute (len 5) whose payload, at 52|76, is the L4 protocol
//
// Each of these headers is checked (type & NLA_TYPE_MASK, and the lengths); a message that
// differs is counted by kind with kClassUnknown rather than guessed at. Then
//   counters.messages[kind][class] += 1
// and kCountOnly returns 0. The stack buffer is zeroed first, so bytes past a short message
// read as 0 and fail the header checks.
//
// kMonitor goes on (return -1 passes the whole message to the socket, 0 drops it):
//   unknown class          pass: user space's decoder is the judge
//   TCP                    NEW and DESTROY pass; an UPDATE passes when it carries
//                          CTA_PROTOINFO (a state change), else is dropped, as the classic
//                          filter does: the tracked table keeps TCP states and TIME_WAIT
//   other protocols        walk the top-level attributes for CTA_ZONE, CTA_ID, CTA_STATUS,
//                          CTA_TIMEOUT (and CTA_PROTOINFO), hash the flow's key, then
//     NEW                  track it: flows[key] = {deadline, class}, wheel[deadline][class]
//                          += 1, tracked[class] += 1; drop. A NEW without a timeout, with one
//                          longer than kWheelMaxTimeoutS, or that the map refuses, passes;
//                          one with timeout 0 (under a second left) is kept, already ended.
//     UPDATE, tracked      move its deadline: the old one is exchanged out of the flow map
//                          (an atomic xchg, so two CPUs updating one flow each withdraw the
//                          deadline the other installed) and withdrawn from the wheel if
//                          still in the future, else the flow counts as started again; the
//                          new one is added; drop. A timeout beyond the wheel hands the flow
//                          to user space: withdrawn, deleted, passed.
//     UPDATE, untracked    pass when ASSURED or carrying CTA_PROTOINFO (the classic rule),
//                          else drop: user space knows this entry from a dump, or not at all
//     DESTROY, tracked     withdraw a future deadline (tracked[class] -= 1), delete; while
//                          user space dumps, also record the key in the graveyard; drop
//     DESTROY, untracked   pass
// Attributes are read one bpf_skb_load_bytes each (8 bytes: header and the first 4 of the
// payload), in an unrolled walk of at most kWalkSteps, which stops at what it looks for:
// ctnetlink writes CTA_ZONE, CTA_ID, CTA_STATUS, then CTA_TIMEOUT, then CTA_PROTOINFO.
#include "ebpf/event_program.h"

#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "base/hash.h"
#include "ebpf/assembler.h"

namespace ctmon {

namespace {

constexpr int kHeadBytes = 128;                          // read of each message's start
constexpr int kAttrsOffset = 20;                         // nlmsghdr + nfgenmsg
constexpr int kTupleOffset = kAttrsOffset + NLA_HDRLEN;  // CTA_TUPLE_ORIG's payload
constexpr int kWalkSteps = 16;                           // top-level attributes looked at, at most
constexpr int kWalkStepsShort = 8;  // ... before CTA_TIMEOUT (NEW) or CTA_STATUS (DESTROY)
constexpr int32_t kPass = -1;       // keep the whole message (the return value is a length)
constexpr uint32_t kTimeoutAbsent = 0xffffffff;  // a real CTA_TIMEOUT is < 2^31 jiffies / HZ
constexpr uint64_t kMix1 = kFmix64Multiplier1;   // fmix64 (base/hash.h), as user space hashes
constexpr uint64_t kMix2 = kFmix64Multiplier2;

// Stack layout (offsets from r10), every slot 8-byte aligned.
constexpr int16_t kHead = -128;        // the first kHeadBytes of the message
constexpr int16_t kMapKey = -136;      // u32 key of an array map
constexpr int16_t kLength = -144;      // u64: bytes read into kHead
constexpr int16_t kEnd = -152;         // u64: end of the message, min(skb->len, nlmsg_len)
constexpr int16_t kCursor = -160;      // u64: offset of the next attribute
constexpr int16_t kAttr = -168;        // an attribute's header and first 4 payload bytes
constexpr int16_t kZone = -176;        // u64, host order; 0 without CTA_ZONE
constexpr int16_t kId = -184;          // u64, host order
constexpr int16_t kStatus = -192;      // u64, host order
constexpr int16_t kTimeout = -200;     // u64, host order; kTimeoutAbsent without CTA_TIMEOUT
constexpr int16_t kProtoinfo = -208;   // u64: 1 when CTA_PROTOINFO was seen
constexpr int16_t kFlowKey = -216;     // u64 flow_key()
constexpr int16_t kSlot = -224;        // FlowSlot *: the flow's slot in the flow table
constexpr int16_t kNowNs = -232;       // u64 bpf_ktime_get_ns()
constexpr int16_t kNowDs = -240;       // u64 deciseconds
constexpr int16_t kOldDs = -248;       // u64: the deadline exchanged out
constexpr int16_t kNewDs = -256;       // u64: the deadline put in
constexpr int16_t kControlPtr = -264;  // EventControlValue *

// Registers that live across helper calls.
constexpr uint8_t kSkb = BPF_REG_6;
constexpr uint8_t kCounters = BPF_REG_7;  // &EventCounters of this CPU
constexpr uint8_t kKind = BPF_REG_8;      // EventKindIndex
constexpr uint8_t kClass = BPF_REG_9;     // EventClassIndex

using Label = Assembler::Label;

int16_t head(int offset) { return static_cast<int16_t>(kHead + offset); }

int16_t diagnostic_offset(EventDiagnostic d) {
  return static_cast<int16_t>(offsetof(EventCounters, diagnostics) + 8 * d);
}

// counters->diagnostics[d] += 1. Clobbers r1.
void count_diagnostic(Assembler& a, EventDiagnostic d) {
  a.mov_imm(BPF_REG_1, 1);
  a.atomic_add64(kCounters, diagnostic_offset(d), BPF_REG_1);
}

// counters->tracked[kClass] += delta. Clobbers r1, r2.
void count_tracked(Assembler& a, int32_t delta) {
  a.mov_reg(BPF_REG_2, kClass);
  a.alu_imm(BPF_LSH, BPF_REG_2, 3);
  a.alu_reg(BPF_ADD, BPF_REG_2, kCounters);
  a.mov_imm(BPF_REG_1, delta);
  a.atomic_add64(BPF_REG_2, offsetof(EventCounters, tracked), BPF_REG_1);
}

void verdict(Assembler& a, int32_t value) {
  a.mov_imm(BPF_REG_0, value);
  a.exit();
}

// r1 = &map (fd), r2 = r10 + key.
void map_and_key(Assembler& a, int map_fd, int16_t key) {
  a.load_map(BPF_REG_1, map_fd);
  a.mov_reg(BPF_REG_2, BPF_REG_10);
  a.alu_imm(BPF_ADD, BPF_REG_2, key);
}

// kClass = the class of the original tuple's protocol, or kClassUnknown, for one family.
// ip_nest is the length of CTA_TUPLE_IP for that family.
void classify(Assembler& a, int ip_nest, Label done) {
  const int proto_nest = kTupleOffset + ip_nest;
  const int proto_num = proto_nest + NLA_HDRLEN;
  const int proto = proto_num + NLA_HDRLEN;
  const Label icmp = a.label();
  // Every byte checked lies inside what was read.
  a.load(BPF_DW, BPF_REG_2, BPF_REG_10, kLength);
  a.jump_imm(BPF_JLE, BPF_REG_2, proto, done);
  const struct {
    int offset;
    int value;
    bool type;  // compare nla_type & NLA_TYPE_MASK rather than nla_len
  } checks[] = {
      {kAttrsOffset + 2, CTA_TUPLE_ORIG, true}, {kTupleOffset, ip_nest, false},
      {kTupleOffset + 2, CTA_TUPLE_IP, true},   {proto_nest + 2, CTA_TUPLE_PROTO, true},
      {proto_num, NLA_HDRLEN + 1, false},       {proto_num + 2, CTA_PROTO_NUM, true},
  };
  for (const auto& c : checks) {
    a.load(BPF_H, BPF_REG_2, BPF_REG_10, head(c.offset));
    if (c.type) a.alu_imm(BPF_AND, BPF_REG_2, NLA_TYPE_MASK);
    a.jump_imm(BPF_JNE, BPF_REG_2, c.value, done);
  }
  // The nests must hold what they were found to contain.
  a.load(BPF_H, BPF_REG_2, BPF_REG_10, head(kAttrsOffset));
  a.jump_imm(BPF_JLT, BPF_REG_2, NLA_HDRLEN + ip_nest + NLA_HDRLEN + NLA_HDRLEN + 1, done);
  a.load(BPF_H, BPF_REG_2, BPF_REG_10, head(proto_nest));
  a.jump_imm(BPF_JLT, BPF_REG_2, NLA_HDRLEN + NLA_HDRLEN + 1, done);

  a.load(BPF_B, BPF_REG_2, BPF_REG_10, head(proto));
  a.mov_imm(kClass, kClassTcp);
  a.jump_imm(BPF_JEQ, BPF_REG_2, IPPROTO_TCP, done);
  a.mov_imm(kClass, kClassUdp);
  a.jump_imm(BPF_JEQ, BPF_REG_2, IPPROTO_UDP, done);
  a.jump_imm(BPF_JEQ, BPF_REG_2, IPPROTO_ICMP, icmp);
  a.jump_imm(BPF_JEQ, BPF_REG_2, IPPROTO_ICMPV6, icmp);
  a.mov_imm(kClass, kClassOther);
  a.goto_(done);
  a.bind(icmp);
  a.mov_imm(kClass, kClassIcmp);
  a.goto_(done);
}

// kControlPtr = &control (the control map's value), and kClass = control->classes[kClass]: the
// same class, read back from a map, which the verifier sees as any value in [0, 3] rather than
// one constant per path (event_program.h). Without it every class would have the code after
// this verified separately.
void load_control(Assembler& a, int control_map_fd, Label fail) {
  a.store_imm(BPF_W, BPF_REG_10, kMapKey, 0);
  map_and_key(a, control_map_fd, kMapKey);
  a.call(BPF_FUNC_map_lookup_elem);
  a.jump_imm(BPF_JEQ, BPF_REG_0, 0, fail);
  a.store(BPF_DW, BPF_REG_10, kControlPtr, BPF_REG_0);
  a.alu_reg(BPF_ADD, BPF_REG_0, kClass);
  a.load(BPF_B, kClass, BPF_REG_0, offsetof(EventControlValue, classes));
  a.alu_imm(BPF_AND, kClass, kTrackedClassCount - 1);
}

// r0 = the bucket of kFlowKey in the flow table, or `fail`. Clobbers r1-r5.
void flow_bucket(Assembler& a, const EventProgramLayout& l, Label fail) {
  a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kFlowKey);
  a.alu_imm(BPF_AND, BPF_REG_1, static_cast<int32_t>(l.flow_buckets - 1));
  a.store(BPF_W, BPF_REG_10, kMapKey, BPF_REG_1);
  map_and_key(a, l.flows_map_fd, kMapKey);
  a.call(BPF_FUNC_map_lookup_elem);
  a.jump_imm(BPF_JEQ, BPF_REG_0, 0, fail);
}

// `slot` += control->slot_offsets[index]: the slot's address, its offset read back from a map
// like the class, so that the eight slots of a bucket do not each have the code after this
// verified. `index` holds a constant 0..7 on each path. Clobbers r1.
void slot_address(Assembler& a, uint8_t slot, uint8_t index) {
  a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kControlPtr);
  a.alu_reg(BPF_ADD, BPF_REG_1, index);
  a.load(BPF_B, BPF_REG_1, BPF_REG_1, offsetof(EventControlValue, slot_offsets));
  a.alu_imm(BPF_AND, BPF_REG_1, (kFlowSlotsPerBucket - 1) * sizeof(FlowSlot));
  a.alu_reg(BPF_ADD, slot, BPF_REG_1);
}

// r0 = the slot of kFlowKey in bucket r0, or `missing`. Clobbers r1-r3.
void find_slot(Assembler& a, Label missing) {
  const Label found = a.label();
  a.load(BPF_DW, BPF_REG_2, BPF_REG_10, kFlowKey);
  for (uint32_t i = 0; i < kFlowSlotsPerBucket; ++i) {
    const Label next = a.label();
    a.load(BPF_DW, BPF_REG_1, BPF_REG_0, static_cast<int16_t>(i * sizeof(FlowSlot)));
    a.jump_reg(BPF_JNE, BPF_REG_1, BPF_REG_2, next);
    a.mov_imm(BPF_REG_3, static_cast<int32_t>(i));
    a.goto_(found);
    a.bind(next);
  }
  a.goto_(missing);
  a.bind(found);
  slot_address(a, BPF_REG_0, BPF_REG_3);
}

// Claims a slot of bucket r0 for kFlowKey: r0 = the slot, or `full`. A free slot first; else
// one whose flow has ended (its deadline is past: the wheel has counted it out already, and
// should it live on, refreshed by packets that send no event, its next event goes to user
// space, which then counts it). The key goes in with an atomic compare-and-exchange, so two
// CPUs never claim one slot. Needs kNowDs; clobbers r1-r5.
// Not atomic with the key: the deadline. A CPU that reads an ended slot's deadline just
// before another CPU's event for that flow moves it (or just after another NEW claimed the
// slot and before it wrote its own) takes the slot all the same. The wheel and `tracked`
// stay paired (every +1 has its deadline), so what is off is one flow's count, until its
// deadline at most; it needs two CPUs on one full bucket within a few instructions.
void claim_slot(Assembler& a, Label full) {
  const Label claimed = a.label(), reused = a.label();
  a.mov_reg(BPF_REG_5, BPF_REG_0);
  a.load(BPF_DW, BPF_REG_4, BPF_REG_10, kFlowKey);
  for (uint32_t i = 0; i < kFlowSlotsPerBucket; ++i) {
    a.mov_imm(BPF_REG_0, 0);
    a.atomic_cmpxchg64(BPF_REG_5, static_cast<int16_t>(i * sizeof(FlowSlot)), BPF_REG_4);
    a.mov_imm(BPF_REG_3, static_cast<int32_t>(i));
    a.jump_imm(BPF_JEQ, BPF_REG_0, 0, claimed);
  }
  // Deadline 0 is a DESTROY under way, or a flow marked during a dump: not those.
  a.load(BPF_DW, BPF_REG_2, BPF_REG_10, kNowDs);
  for (uint32_t i = 0; i < kFlowSlotsPerBucket; ++i) {
    const Label next = a.label();
    const int16_t slot = static_cast<int16_t>(i * sizeof(FlowSlot));
    a.load(BPF_W, BPF_REG_1, BPF_REG_5,
           static_cast<int16_t>(slot + offsetof(FlowSlot, deadline_ds)));
    a.jump_imm(BPF_JEQ, BPF_REG_1, 0, next);
    a.jump_reg(BPF_JGT, BPF_REG_1, BPF_REG_2, next);
    a.load(BPF_DW, BPF_REG_1, BPF_REG_5, slot);
    a.mov_reg(BPF_REG_0, BPF_REG_1);
    a.atomic_cmpxchg64(BPF_REG_5, slot, BPF_REG_4);
    a.mov_imm(BPF_REG_3, static_cast<int32_t>(i));
    a.jump_reg(BPF_JEQ, BPF_REG_0, BPF_REG_1, reused);
    a.bind(next);
  }
  a.goto_(full);
  a.bind(reused);
  count_diagnostic(a, kDiagSlotReused);
  a.bind(claimed);
  a.mov_reg(BPF_REG_0, BPF_REG_5);
  slot_address(a, BPF_REG_0, BPF_REG_3);
}

// Frees slot r0 if it still holds kFlowKey (another CPU may have reused it meanwhile).
// Clobbers r0-r2.
void free_slot(Assembler& a) {
  a.mov_reg(BPF_REG_2, BPF_REG_0);
  a.load(BPF_DW, BPF_REG_0, BPF_REG_10, kFlowKey);
  a.mov_imm(BPF_REG_1, 0);
  a.atomic_cmpxchg64(BPF_REG_2, offsetof(FlowSlot, key), BPF_REG_1);
}

// What a walk of the top-level attributes looks for, and where it stops.
enum class Walk { kTcpUpdate, kNew, kUpdate, kDestroy };

// Reads the top-level attributes after CTA_TUPLE_ORIG into the stack slots (kZone, kId,
// kStatus, kTimeout, kProtoinfo), one at a time, until the walk's stop attribute, the end of
// the message, or kWalkSteps. Goes to `done` when it stopped or reached the end, to
// `unknown` when an attribute is malformed or there were too many.
void walk_attributes(Assembler& a, Walk walk, Label done, Label unknown) {
  a.store_imm(BPF_DW, BPF_REG_10, kZone, 0);
  a.store_imm(BPF_DW, BPF_REG_10, kId, 0);
  a.store_imm(BPF_DW, BPF_REG_10, kStatus, 0);
  a.store_imm(BPF_DW, BPF_REG_10, kProtoinfo, 0);
  a.load_imm64(BPF_REG_1, kTimeoutAbsent);
  a.store(BPF_DW, BPF_REG_10, kTimeout, BPF_REG_1);
  // The cursor starts after CTA_TUPLE_ORIG: its length, rounded up to 4.
  a.load(BPF_H, BPF_REG_1, BPF_REG_10, head(kAttrsOffset));
  a.alu_imm(BPF_ADD, BPF_REG_1, kAttrsOffset + 3);
  a.alu_imm(BPF_AND, BPF_REG_1, ~3);
  a.store(BPF_DW, BPF_REG_10, kCursor, BPF_REG_1);

  // NEW and DESTROY stop early (after CTA_TIMEOUT, after CTA_STATUS); an UPDATE may carry
  // helper, mark, labels and timestamps after CTA_PROTOINFO.
  const int steps = walk == Walk::kNew || walk == Walk::kDestroy ? kWalkStepsShort : kWalkSteps;
  for (int step = 0; step < steps; ++step) {
    const Label next = a.label();
    const Label not_zone = a.label(), not_id = a.label(), not_status = a.label();
    const Label not_timeout = a.label(), not_protoinfo = a.label();
    // The end of the message: done.
    a.load(BPF_DW, BPF_REG_2, BPF_REG_10, kCursor);
    a.load(BPF_DW, BPF_REG_3, BPF_REG_10, kEnd);
    a.mov_reg(BPF_REG_4, BPF_REG_2);
    a.alu_imm(BPF_ADD, BPF_REG_4, NLA_HDRLEN);
    a.jump_reg(BPF_JGT, BPF_REG_4, BPF_REG_3, done);
    // Header and 4 payload bytes; an attribute with less payload is last (padding is 4).
    a.store_imm(BPF_DW, BPF_REG_10, kAttr, 0);
    a.mov_reg(BPF_REG_1, kSkb);
    a.mov_reg(BPF_REG_3, BPF_REG_10);
    a.alu_imm(BPF_ADD, BPF_REG_3, kAttr);
    a.mov_imm(BPF_REG_4, 8);
    a.call(BPF_FUNC_skb_load_bytes);
    a.jump_imm(BPF_JNE, BPF_REG_0, 0, done);
    a.load(BPF_H, BPF_REG_2, BPF_REG_10, kAttr);  // nla_len
    a.jump_imm(BPF_JLT, BPF_REG_2, NLA_HDRLEN, unknown);
    a.load(BPF_H, BPF_REG_3, BPF_REG_10, kAttr + 2);  // nla_type
    a.alu_imm(BPF_AND, BPF_REG_3, NLA_TYPE_MASK);
    a.load(BPF_W, BPF_REG_4, BPF_REG_10, kAttr + 4);  // payload, big endian
    if (walk != Walk::kTcpUpdate) {
      a.jump_imm(BPF_JNE, BPF_REG_3, CTA_ZONE, not_zone);
      a.to_be(BPF_REG_4, 16);
      a.store(BPF_DW, BPF_REG_10, kZone, BPF_REG_4);
      a.goto_(next);
      a.bind(not_zone);
      a.jump_imm(BPF_JNE, BPF_REG_3, CTA_ID, not_id);
      a.to_be(BPF_REG_4, 32);
      a.store(BPF_DW, BPF_REG_10, kId, BPF_REG_4);
      a.goto_(next);
      a.bind(not_id);
      a.jump_imm(BPF_JNE, BPF_REG_3, CTA_STATUS, not_status);
      a.to_be(BPF_REG_4, 32);
      a.store(BPF_DW, BPF_REG_10, kStatus, BPF_REG_4);
      // DESTROY needs the key only: CTA_ZONE and CTA_ID come before CTA_STATUS.
      a.goto_(walk == Walk::kDestroy ? done : next);
      a.bind(not_status);
      a.jump_imm(BPF_JNE, BPF_REG_3, CTA_TIMEOUT, not_timeout);
      a.to_be(BPF_REG_4, 32);
      a.store(BPF_DW, BPF_REG_10, kTimeout, BPF_REG_4);
      a.goto_(walk == Walk::kNew ? done : next);
      a.bind(not_timeout);
    }
    a.jump_imm(BPF_JNE, BPF_REG_3, CTA_PROTOINFO, not_protoinfo);
    a.store_imm(BPF_DW, BPF_REG_10, kProtoinfo, 1);
    if (walk == Walk::kTcpUpdate || walk == Walk::kUpdate) a.goto_(done);  // else fall into next
    a.bind(not_protoinfo);
    a.bind(next);
    // cursor += NLA_ALIGN(nla_len)
    a.load(BPF_H, BPF_REG_2, BPF_REG_10, kAttr);
    a.alu_imm(BPF_ADD, BPF_REG_2, 3);
    a.alu_imm(BPF_AND, BPF_REG_2, ~3);
    a.load(BPF_DW, BPF_REG_3, BPF_REG_10, kCursor);
    a.alu_reg(BPF_ADD, BPF_REG_3, BPF_REG_2);
    a.store(BPF_DW, BPF_REG_10, kCursor, BPF_REG_3);
  }
  a.goto_(unknown);  // more attributes than kWalkSteps before the stop
}

// r1 = fmix64(r1 ^ r2). r4 and r5 hold kMix1 and kMix2; clobbers r3.
void mix(Assembler& a) {
  a.alu_reg(BPF_XOR, BPF_REG_1, BPF_REG_2);
  for (int round = 0; round < 2; ++round) {
    a.mov_reg(BPF_REG_3, BPF_REG_1);
    a.alu_imm(BPF_RSH, BPF_REG_3, 33);
    a.alu_reg(BPF_XOR, BPF_REG_1, BPF_REG_3);
    a.alu_reg(BPF_MUL, BPF_REG_1, round == 0 ? BPF_REG_4 : BPF_REG_5);
  }
  a.mov_reg(BPF_REG_3, BPF_REG_1);
  a.alu_imm(BPF_RSH, BPF_REG_3, 33);
  a.alu_reg(BPF_XOR, BPF_REG_1, BPF_REG_3);
}

// kFlowKey = flow_key(seed, tuple, ...), as the C++ flow_key() below computes it. Goes to
// `unknown` when the tuple is not a multiple of 4 or does not fit in what was read.
void hash_flow(Assembler& a, uint64_t seed, Label unknown) {
  const Label tail = a.label(), words_done = a.label();
  // r0 = tuple payload length, checked.
  a.load(BPF_H, BPF_REG_0, BPF_REG_10, head(kAttrsOffset));
  a.alu_imm(BPF_SUB, BPF_REG_0, NLA_HDRLEN);
  a.mov_reg(BPF_REG_1, BPF_REG_0);
  a.alu_imm(BPF_AND, BPF_REG_1, 3);
  a.jump_imm(BPF_JNE, BPF_REG_1, 0, unknown);
  a.jump_imm(BPF_JGT, BPF_REG_0, kMaxTupleBytes, unknown);
  a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kLength);
  a.mov_reg(BPF_REG_2, BPF_REG_0);
  a.alu_imm(BPF_ADD, BPF_REG_2, kTupleOffset);
  a.jump_reg(BPF_JGT, BPF_REG_2, BPF_REG_1, unknown);

  a.load_imm64(BPF_REG_1, seed);
  a.load_imm64(BPF_REG_4, kMix1);
  a.load_imm64(BPF_REG_5, kMix2);
  for (int off = 0; off + 4 <= static_cast<int>(kMaxTupleBytes); off += 8) {
    // r0 = bytes left from `off`: 0 ends, 4 is the last half word, 8 or more a whole word.
    a.jump_imm(BPF_JLE, BPF_REG_0, off, words_done);
    a.jump_imm(BPF_JEQ, BPF_REG_0, off + 4, tail);
    a.load(BPF_DW, BPF_REG_2, BPF_REG_10, head(kTupleOffset + off));
    mix(a);
  }
  a.goto_(words_done);
  a.bind(tail);
  // The last 4 bytes, at r0 - 4: a variable stack offset is not for every verifier, so the
  // offset is chosen by comparison.
  for (int off = 0; off + 4 <= static_cast<int>(kMaxTupleBytes); off += 8) {
    const Label not_here = a.label();
    a.jump_imm(BPF_JNE, BPF_REG_0, off + 4, not_here);
    a.load(BPF_W, BPF_REG_2, BPF_REG_10, head(kTupleOffset + off));
    mix(a);
    a.goto_(words_done);
    a.bind(not_here);
  }
  a.goto_(unknown);
  a.bind(words_done);
  // Then the length, family, zone and id.
  a.mov_reg(BPF_REG_2, BPF_REG_0);
  a.load(BPF_B, BPF_REG_3, BPF_REG_10, head(16));
  a.alu_imm(BPF_LSH, BPF_REG_3, 8);
  a.alu_reg(BPF_OR, BPF_REG_2, BPF_REG_3);
  a.load(BPF_DW, BPF_REG_3, BPF_REG_10, kZone);
  a.alu_imm(BPF_LSH, BPF_REG_3, 16);
  a.alu_reg(BPF_OR, BPF_REG_2, BPF_REG_3);
  a.load(BPF_DW, BPF_REG_3, BPF_REG_10, kId);
  a.alu_imm(BPF_LSH, BPF_REG_3, 32);
  a.alu_reg(BPF_OR, BPF_REG_2, BPF_REG_3);
  mix(a);
  const Label nonzero = a.label();
  a.jump_imm(BPF_JNE, BPF_REG_1, 0, nonzero);
  a.mov_imm(BPF_REG_1, 1);  // 0 marks a free slot
  a.bind(nonzero);
  a.store(BPF_DW, BPF_REG_10, kFlowKey, BPF_REG_1);
}

// wheel[*(r10 + deadline_slot) % kWheelSlots].flows[kClass] += delta. Clobbers r0-r5.
void wheel_add(Assembler& a, int wheel_map_fd, int16_t deadline_slot, int32_t delta) {
  const Label skip = a.label();
  a.load(BPF_DW, BPF_REG_1, BPF_REG_10, deadline_slot);
  a.alu_imm(BPF_AND, BPF_REG_1, kWheelSlots - 1);
  a.store(BPF_W, BPF_REG_10, kMapKey, BPF_REG_1);
  map_and_key(a, wheel_map_fd, kMapKey);
  a.call(BPF_FUNC_map_lookup_elem);
  a.jump_imm(BPF_JEQ, BPF_REG_0, 0, skip);  // cannot happen: the slot is in range
  a.mov_reg(BPF_REG_2, kClass);
  a.alu_imm(BPF_LSH, BPF_REG_2, 2);
  a.alu_reg(BPF_ADD, BPF_REG_2, BPF_REG_0);
  a.mov_imm(BPF_REG_1, delta);
  a.atomic_add32(BPF_REG_2, 0, BPF_REG_1);
  a.bind(skip);
}

// kNowNs, kNowDs = now.
void read_clock(Assembler& a) {
  a.call(BPF_FUNC_ktime_get_ns);
  a.store(BPF_DW, BPF_REG_10, kNowNs, BPF_REG_0);
  a.alu_imm(BPF_DIV, BPF_REG_0, kDecisecondNs);
  a.store(BPF_DW, BPF_REG_10, kNowDs, BPF_REG_0);
}

// kNewDs = ceil((now + timeout s) in deciseconds). The timeout is at most kWheelMaxTimeoutS.
void compute_deadline(Assembler& a) {
  a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kTimeout);
  a.alu_imm(BPF_MUL, BPF_REG_1, 1000000000);
  a.load(BPF_DW, BPF_REG_2, BPF_REG_10, kNowNs);
  a.alu_reg(BPF_ADD, BPF_REG_1, BPF_REG_2);
  a.alu_imm(BPF_ADD, BPF_REG_1, kDecisecondNs - 1);
  a.alu_imm(BPF_DIV, BPF_REG_1, kDecisecondNs);
  a.store(BPF_DW, BPF_REG_10, kNewDs, BPF_REG_1);
}

// Exchanges r1 into the flow value at r0 (flows lookup result) and, when the deadline taken
// out is still in the future, withdraws it from the wheel and goes on at `withdrawn`; else at
// `ended`. Clobbers r0-r5.
void exchange_deadline(Assembler& a, const EventProgramLayout& l, Label withdrawn, Label ended) {
  a.atomic_xchg32(BPF_REG_0, offsetof(FlowSlot, deadline_ds), BPF_REG_1);
  a.store(BPF_DW, BPF_REG_10, kOldDs, BPF_REG_1);
  a.load(BPF_DW, BPF_REG_2, BPF_REG_10, kNowDs);
  a.jump_reg(BPF_JLE, BPF_REG_1, BPF_REG_2, ended);
  wheel_add(a, l.wheel_map_fd, kOldDs, -1);
  a.goto_(withdrawn);
}

std::string check_layout(const EventProgramLayout& l) {
  if (l.counters_map_fd < 0) return "counters map not created";
  if (l.variant != EventProgramVariant::kMonitor) return "";
  if (l.flows_map_fd < 0 || l.wheel_map_fd < 0 || l.control_map_fd < 0)
    return "monitor maps not created";
  if (l.flow_buckets == 0 || (l.flow_buckets & (l.flow_buckets - 1)) != 0 ||
      l.flow_buckets > (1u << 24))
    return "the flow table's bucket count is not a power of two";
  return "";
}

}  // namespace

std::string assemble_event_program(const EventProgramLayout& l, std::vector<bpf_insn>& out) {
  const std::string error = check_layout(l);
  if (!error.empty()) return error;
  const bool monitor = l.variant == EventProgramVariant::kMonitor;
  // What the program returns for a message it does not count.
  const int32_t uncounted = monitor ? kPass : 0;

  Assembler a;
  const Label short_message = a.label(), not_conntrack = a.label(), no_counters = a.label();
  const Label length_ok = a.label(), end_ok = a.label();
  const Label kind_done = a.label(), is_new = a.label();
  const Label ipv6 = a.label(), class_done = a.label();

  a.mov_reg(kSkb, BPF_REG_1);
  for (int off = 0; off < kHeadBytes; off += 8) a.store_imm(BPF_DW, BPF_REG_10, head(off), 0);

  // The counters of this CPU. An array lookup of key 0 cannot fail; the verifier wants the test.
  a.store_imm(BPF_W, BPF_REG_10, kMapKey, 0);
  map_and_key(a, l.counters_map_fd, kMapKey);
  a.call(BPF_FUNC_map_lookup_elem);
  a.jump_imm(BPF_JEQ, BPF_REG_0, 0, no_counters);
  a.mov_reg(kCounters, BPF_REG_0);

  // Read min(skb->len, kHeadBytes) bytes: a bounded, nonzero length, as the helper requires.
  a.load(BPF_W, BPF_REG_4, kSkb, offsetof(__sk_buff, len));
  a.store(BPF_DW, BPF_REG_10, kEnd, BPF_REG_4);
  a.jump_imm(BPF_JLT, BPF_REG_4, kAttrsOffset, short_message);
  a.jump_imm(BPF_JLE, BPF_REG_4, kHeadBytes, length_ok);
  a.mov_imm(BPF_REG_4, kHeadBytes);
  a.bind(length_ok);
  a.store(BPF_DW, BPF_REG_10, kLength, BPF_REG_4);
  a.mov_reg(BPF_REG_1, kSkb);
  a.mov_imm(BPF_REG_2, 0);
  a.mov_reg(BPF_REG_3, BPF_REG_10);
  a.alu_imm(BPF_ADD, BPF_REG_3, kHead);
  a.call(BPF_FUNC_skb_load_bytes);
  a.jump_imm(BPF_JNE, BPF_REG_0, 0, short_message);
  // The message ends at nlmsg_len, if that is shorter than the skb.
  a.load(BPF_W, BPF_REG_2, BPF_REG_10, head(0));
  a.load(BPF_DW, BPF_REG_3, BPF_REG_10, kEnd);
  a.jump_reg(BPF_JGE, BPF_REG_2, BPF_REG_3, end_ok);
  a.store(BPF_DW, BPF_REG_10, kEnd, BPF_REG_2);
  a.bind(end_ok);

  // Kind: nlmsg_type (host order) is (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_*.
  a.load(BPF_H, BPF_REG_2, BPF_REG_10, head(4));
  a.mov_reg(BPF_REG_3, BPF_REG_2);
  a.alu_imm(BPF_RSH, BPF_REG_3, 8);
  a.jump_imm(BPF_JNE, BPF_REG_3, NFNL_SUBSYS_CTNETLINK, not_conntrack);
  a.alu_imm(BPF_AND, BPF_REG_2, 0xff);
  a.mov_imm(kKind, kKindDestroy);
  a.jump_imm(BPF_JEQ, BPF_REG_2, IPCTNL_MSG_CT_DELETE, kind_done);
  a.jump_imm(BPF_JNE, BPF_REG_2, IPCTNL_MSG_CT_NEW, not_conntrack);
  a.load(BPF_H, BPF_REG_3, BPF_REG_10, head(6));  // nlmsg_flags
  a.jump_imm(BPF_JSET, BPF_REG_3, NLM_F_CREATE, is_new);
  a.mov_imm(kKind, kKindUpdate);
  a.goto_(kind_done);
  a.bind(is_new);
  a.mov_imm(kKind, kKindNew);
  a.bind(kind_done);

  // Class, from the family and the original tuple.
  a.mov_imm(kClass, kClassUnknown);
  a.load(BPF_B, BPF_REG_2, BPF_REG_10, head(16));
  a.jump_imm(BPF_JEQ, BPF_REG_2, AF_INET6, ipv6);
  a.jump_imm(BPF_JNE, BPF_REG_2, AF_INET, class_done);
  classify(a, NLA_HDRLEN + 2 * (NLA_HDRLEN + 4), class_done);  // two IPv4 addresses
  a.bind(ipv6);
  classify(a, NLA_HDRLEN + 2 * (NLA_HDRLEN + 16), class_done);  // two IPv6 addresses
  a.bind(class_done);

  // messages[kind][class] += 1. kKind and kClass are constants on every path here.
  a.mov_reg(BPF_REG_2, kKind);
  a.alu_imm(BPF_MUL, BPF_REG_2, kClassCount);
  a.alu_reg(BPF_ADD, BPF_REG_2, kClass);
  a.alu_imm(BPF_LSH, BPF_REG_2, 3);
  a.alu_reg(BPF_ADD, BPF_REG_2, kCounters);
  a.mov_imm(BPF_REG_1, 1);
  a.atomic_add64(BPF_REG_2, offsetof(EventCounters, messages), BPF_REG_1);

  if (!monitor) {
    verdict(a, 0);
  } else {
    const Label pass = a.label(), drop = a.label(), unknown = a.label();
    const Label not_tcp = a.label(), tcp_update_done = a.label();
    const Label nontcp_update = a.label(), nontcp_destroy = a.label();

    a.jump_imm(BPF_JEQ, kClass, kClassUnknown, unknown);
    a.jump_imm(BPF_JNE, kClass, kClassTcp, not_tcp);
    // TCP: NEW and DESTROY pass, an UPDATE only with a state change.
    a.jump_imm(BPF_JNE, kKind, kKindUpdate, pass);
    walk_attributes(a, Walk::kTcpUpdate, tcp_update_done, unknown);
    a.bind(tcp_update_done);
    a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kProtoinfo);
    a.jump_imm(BPF_JNE, BPF_REG_1, 0, pass);
    a.goto_(drop);

    a.bind(not_tcp);
    load_control(a, l.control_map_fd, pass);
    a.jump_imm(BPF_JEQ, kKind, kKindUpdate, nontcp_update);
    a.jump_imm(BPF_JEQ, kKind, kKindDestroy, nontcp_destroy);

    // NEW of another protocol: track it in the kernel.
    {
      const Label walked = a.label(), claimed = a.label(), exists = a.label(), full = a.label();
      const Label fits = a.label(), ended = a.label(), deadline_set = a.label();
      walk_attributes(a, Walk::kNew, walked, unknown);
      a.bind(walked);
      hash_flow(a, l.key_seed, unknown);
      a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kTimeout);
      a.load_imm64(BPF_REG_2, kTimeoutAbsent);
      const Label has_timeout = a.label();
      a.jump_reg(BPF_JNE, BPF_REG_1, BPF_REG_2, has_timeout);
      count_diagnostic(a, kDiagNoTimeout);
      a.goto_(pass);
      a.bind(has_timeout);
      // Beyond the wheel: user space tracks it.
      a.jump_imm(BPF_JLE, BPF_REG_1, kWheelMaxTimeoutS, fits);
      count_diagnostic(a, kDiagLongTimeout);
      a.goto_(pass);
      a.bind(fits);
      read_clock(a);
      // 0: less than a second left (the kernel rounds down; a 1 s timeout can read 0 when a
      // jiffy passed before the event). Ended at once, as the table counts it, but kept so
      // that its DESTROY stays here too.
      a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kTimeout);
      a.jump_imm(BPF_JEQ, BPF_REG_1, 0, ended);
      compute_deadline(a);
      a.goto_(deadline_set);
      a.bind(ended);
      a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kNowDs);
      a.store(BPF_DW, BPF_REG_10, kNewDs, BPF_REG_1);
      a.bind(deadline_set);
      flow_bucket(a, l, pass);
      a.mov_reg(BPF_REG_5, BPF_REG_0);  // a NEW twice (a key collision): the first keeps it
      find_slot(a, claimed);
      a.goto_(exists);
      a.bind(claimed);
      a.mov_reg(BPF_REG_0, BPF_REG_5);
      claim_slot(a, full);
      a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kNewDs);
      a.store(BPF_W, BPF_REG_0, offsetof(FlowSlot, deadline_ds), BPF_REG_1);
      a.store(BPF_W, BPF_REG_0, offsetof(FlowSlot, meta), kClass);
      count_diagnostic(a, kDiagTracked);
      a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kTimeout);
      a.jump_imm(BPF_JEQ, BPF_REG_1, 0, drop);
      wheel_add(a, l.wheel_map_fd, kNewDs, +1);
      count_tracked(a, +1);
      a.goto_(drop);
      a.bind(full);
      count_diagnostic(a, kDiagFlowsFull);
      a.goto_(pass);
      a.bind(exists);
      count_diagnostic(a, kDiagFlowExists);
      a.goto_(pass);
    }

    // UPDATE of another protocol.
    a.bind(nontcp_update);
    {
      const Label walked = a.label(), untracked = a.label(), has_timeout = a.label();
      const Label in_wheel = a.label(), leave = a.label(), leave_withdrawn = a.label();
      const Label leave_ended = a.label(), move_withdrawn = a.label(), move_restarted = a.label();
      walk_attributes(a, Walk::kUpdate, walked, unknown);
      a.bind(walked);
      hash_flow(a, l.key_seed, unknown);
      flow_bucket(a, l, untracked);
      find_slot(a, untracked);
      a.store(BPF_DW, BPF_REG_10, kSlot, BPF_REG_0);
      a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kTimeout);
      a.load_imm64(BPF_REG_2, kTimeoutAbsent);
      a.jump_reg(BPF_JNE, BPF_REG_1, BPF_REG_2, has_timeout);
      count_diagnostic(a, kDiagNoTimeout);  // tracked: keep its deadline, tell no one
      a.goto_(drop);
      a.bind(has_timeout);
      read_clock(a);
      a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kTimeout);
      a.jump_imm(BPF_JEQ, BPF_REG_1, 0, leave);
      a.jump_imm(BPF_JLE, BPF_REG_1, kWheelMaxTimeoutS, in_wheel);
      // Beyond the wheel (or 0): withdraw the old deadline; a long one goes to user space.
      a.bind(leave);
      a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kNowDs);  // ended now
      a.load(BPF_DW, BPF_REG_0, BPF_REG_10, kSlot);
      exchange_deadline(a, l, leave_withdrawn, leave_ended);
      a.bind(leave_withdrawn);
      count_tracked(a, -1);
      a.bind(leave_ended);
      a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kTimeout);
      a.jump_imm(BPF_JEQ, BPF_REG_1, 0, drop);  // dying: its DESTROY comes next
      count_diagnostic(a, kDiagLongTimeout);
      a.load(BPF_DW, BPF_REG_0, BPF_REG_10, kSlot);
      free_slot(a);
      a.goto_(pass);

      a.bind(in_wheel);
      compute_deadline(a);
      a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kNewDs);
      a.load(BPF_DW, BPF_REG_0, BPF_REG_10, kSlot);
      exchange_deadline(a, l, move_withdrawn, move_restarted);
      a.bind(move_restarted);
      count_tracked(a, +1);  // its old deadline had passed: it counts again from now
      a.bind(move_withdrawn);
      wheel_add(a, l.wheel_map_fd, kNewDs, +1);
      a.goto_(drop);

      // Not tracked here: user space knows it from a dump, or not at all. The classic rule.
      a.bind(untracked);
      count_diagnostic(a, kDiagUpdateUntracked);
      a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kProtoinfo);
      a.jump_imm(BPF_JNE, BPF_REG_1, 0, pass);
      a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kStatus);
      a.jump_imm(BPF_JSET, BPF_REG_1, IPS_ASSURED, pass);
      a.goto_(drop);
    }

    // DESTROY of another protocol.
    a.bind(nontcp_destroy);
    {
      const Label walked = a.label(), withdrawn = a.label(), ended = a.label();
      const Label untracked = a.label(), marked = a.label();
      walk_attributes(a, Walk::kDestroy, walked, unknown);
      a.bind(walked);
      hash_flow(a, l.key_seed, unknown);
      flow_bucket(a, l, untracked);
      find_slot(a, untracked);
      a.store(BPF_DW, BPF_REG_10, kSlot, BPF_REG_0);
      read_clock(a);
      a.load(BPF_DW, BPF_REG_0, BPF_REG_10, kSlot);
      a.mov_imm(BPF_REG_1, 0);
      exchange_deadline(a, l, withdrawn, ended);
      a.bind(withdrawn);
      count_tracked(a, -1);
      a.bind(ended);
      // While user space dumps it must learn which listed flows went: the slot is marked and
      // keeps its key, and user space frees it. Otherwise the slot is free at once.
      a.load(BPF_DW, BPF_REG_0, BPF_REG_10, kSlot);
      a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kControlPtr);
      a.load(BPF_W, BPF_REG_1, BPF_REG_1, offsetof(EventControlValue, bits));
      a.jump_imm(BPF_JSET, BPF_REG_1, kControlDumping, marked);
      free_slot(a);
      a.goto_(drop);
      a.bind(marked);
      a.mov_reg(BPF_REG_1, kClass);
      a.alu_imm(BPF_OR, BPF_REG_1, kFlowDestroyed);
      a.store(BPF_W, BPF_REG_0, offsetof(FlowSlot, meta), BPF_REG_1);
      a.goto_(drop);
      a.bind(untracked);
      count_diagnostic(a, kDiagDestroyUntracked);
      a.goto_(pass);
    }

    a.bind(unknown);
    count_diagnostic(a, kDiagUnknownLayout);
    a.bind(pass);
    count_diagnostic(a, kDiagPassed);
    verdict(a, kPass);
    a.bind(drop);
    verdict(a, 0);
  }

  a.bind(short_message);
  count_diagnostic(a, kDiagShort);
  verdict(a, uncounted);
  a.bind(not_conntrack);
  count_diagnostic(a, kDiagNotConntrack);
  verdict(a, uncounted);
  a.bind(no_counters);
  verdict(a, uncounted);
  return a.finish(out);
}

uint64_t flow_key(uint64_t seed, const uint8_t* tuple, size_t tuple_length, uint8_t family,
                  uint16_t zone, uint32_t id) {
  uint64_t h = seed;
  size_t off = 0;
  for (; off + 8 <= tuple_length; off += 8) {
    uint64_t word;
    std::memcpy(&word, tuple + off, sizeof word);
    h = fmix64(h ^ word);
  }
  if (off < tuple_length) {  // a last half word: read as a 32-bit value, as the program does
    uint32_t half;
    std::memcpy(&half, tuple + off, sizeof half);
    h = fmix64(h ^ half);
  }
  const uint64_t tail = static_cast<uint64_t>(tuple_length) | static_cast<uint64_t>(family) << 8 |
                        static_cast<uint64_t>(zone) << 16 | static_cast<uint64_t>(id) << 32;
  h = fmix64(h ^ tail);
  return h == 0 ? 1 : h;  // 0 marks a free slot
}

}  // namespace ctmon
