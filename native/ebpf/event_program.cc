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
#include "ebpf/event_program.h"

#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>

#include "ebpf/assembler.h"

namespace ctmon {

namespace {

constexpr int kHeadBytes = 128;        // read of each message's start
constexpr int16_t kHead = -128;        // r10 + kHead: the first kHeadBytes of the message
constexpr int16_t kCounterKey = -136;  // u32 key 0 of the counters map
constexpr int16_t kLength = -144;      // u64: bytes read into kHead
constexpr int kAttrsOffset = 20;       // nlmsghdr + nfgenmsg
constexpr int32_t kPass = -1;          // keep the whole message (the return value is a length)

// Registers that live across helper calls.
constexpr uint8_t kSkb = BPF_REG_6;
constexpr uint8_t kCounters = BPF_REG_7;  // &EventCounters of this CPU
constexpr uint8_t kKind = BPF_REG_8;      // EventKindIndex
constexpr uint8_t kClass = BPF_REG_9;     // EventClassIndex

int16_t head(int offset) { return static_cast<int16_t>(kHead + offset); }

int16_t diagnostic_offset(EventDiagnostic d) {
  return static_cast<int16_t>(offsetof(EventCounters, diagnostics) + 8 * d);
}

// counters->diagnostics[d] += 1. Clobbers r1.
void count_diagnostic(Assembler& a, EventDiagnostic d) {
  a.mov_imm(BPF_REG_1, 1);
  a.atomic_add64(kCounters, diagnostic_offset(d), BPF_REG_1);
}

void verdict(Assembler& a, int32_t value) {
  a.mov_imm(BPF_REG_0, value);
  a.exit();
}

// kClass = the class of the original tuple's protocol, or kClassUnknown, for one family.
// ip_nest is the length of CTA_TUPLE_IP for that family.
void classify(Assembler& a, int ip_nest, Assembler::Label done) {
  const int proto_nest = kAttrsOffset + 4 + ip_nest;
  const int proto_num = proto_nest + 4;
  const int proto = proto_num + 4;
  const Assembler::Label other = a.label();
  const Assembler::Label icmp = a.label();
  // Every byte checked lies inside what was read.
  a.load(BPF_DW, BPF_REG_2, BPF_REG_10, kLength);
  a.jump_imm(BPF_JLE, BPF_REG_2, proto, done);
  const struct {
    int offset;
    int value;
    bool type;  // compare nla_type & NLA_TYPE_MASK rather than nla_len
  } checks[] = {
      {kAttrsOffset + 2, CTA_TUPLE_ORIG, true}, {kAttrsOffset + 4, ip_nest, false},
      {kAttrsOffset + 6, CTA_TUPLE_IP, true},   {proto_nest + 2, CTA_TUPLE_PROTO, true},
      {proto_num, NLA_HDRLEN + 1, false},       {proto_num + 2, CTA_PROTO_NUM, true},
  };
  for (const auto& c : checks) {
    a.load(BPF_H, BPF_REG_2, BPF_REG_10, head(c.offset));
    if (c.type) a.alu_imm(BPF_AND, BPF_REG_2, NLA_TYPE_MASK);
    a.jump_imm(BPF_JNE, BPF_REG_2, c.value, done);
  }
  // The nests must hold what they were found to contain.
  a.load(BPF_H, BPF_REG_2, BPF_REG_10, head(kAttrsOffset));
  a.jump_imm(BPF_JLT, BPF_REG_2, 4 + ip_nest + 4 + NLA_HDRLEN + 1, done);
  a.load(BPF_H, BPF_REG_2, BPF_REG_10, head(proto_nest));
  a.jump_imm(BPF_JLT, BPF_REG_2, 4 + NLA_HDRLEN + 1, done);

  a.load(BPF_B, BPF_REG_2, BPF_REG_10, head(proto));
  a.mov_imm(kClass, kClassTcp);
  a.jump_imm(BPF_JEQ, BPF_REG_2, IPPROTO_TCP, done);
  a.mov_imm(kClass, kClassUdp);
  a.jump_imm(BPF_JEQ, BPF_REG_2, IPPROTO_UDP, done);
  a.jump_imm(BPF_JEQ, BPF_REG_2, IPPROTO_ICMP, icmp);
  a.jump_imm(BPF_JEQ, BPF_REG_2, IPPROTO_ICMPV6, icmp);
  a.bind(other);
  a.mov_imm(kClass, kClassOther);
  a.goto_(done);
  a.bind(icmp);
  a.mov_imm(kClass, kClassIcmp);
  a.goto_(done);
}

}  // namespace

std::string assemble_event_program(const EventProgramLayout& l, std::vector<bpf_insn>& out) {
  if (l.counters_map_fd < 0) return "counters map not created";
  if (l.variant != EventProgramVariant::kCountOnly) return "only the count-only variant exists";
  // What the program returns for a message it does not count.
  const int32_t uncounted = l.variant == EventProgramVariant::kCountOnly ? 0 : kPass;

  Assembler a;
  const Assembler::Label short_message = a.label();
  const Assembler::Label not_conntrack = a.label();
  const Assembler::Label length_ok = a.label();
  const Assembler::Label kind_done = a.label();
  const Assembler::Label is_new = a.label();
  const Assembler::Label ipv6 = a.label();
  const Assembler::Label class_done = a.label();
  const Assembler::Label no_counters = a.label();

  a.mov_reg(kSkb, BPF_REG_1);
  for (int off = 0; off < kHeadBytes; off += 8) a.store_imm(BPF_DW, BPF_REG_10, head(off), 0);

  // The counters of this CPU. An array lookup of key 0 cannot fail; the verifier wants the test.
  a.store_imm(BPF_W, BPF_REG_10, kCounterKey, 0);
  a.load_map(BPF_REG_1, l.counters_map_fd);
  a.mov_reg(BPF_REG_2, BPF_REG_10);
  a.alu_imm(BPF_ADD, BPF_REG_2, kCounterKey);
  a.call(BPF_FUNC_map_lookup_elem);
  a.jump_imm(BPF_JEQ, BPF_REG_0, 0, no_counters);
  a.mov_reg(kCounters, BPF_REG_0);

  // Read min(skb->len, kHeadBytes) bytes: a bounded, nonzero length, as the helper requires.
  a.load(BPF_W, BPF_REG_4, kSkb, offsetof(__sk_buff, len));
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

  if (l.variant == EventProgramVariant::kCountOnly) verdict(a, 0);

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

}  // namespace ctmon
