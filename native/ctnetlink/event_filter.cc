// event_filter.cc — see event_filter.h. No Node-API.
//
// nlmsghdr fields are in host byte order, so byte loads pick the right byte per endianness.
// SKF_AD_NLATTR finds a top-level attribute (A = where attributes start, X = type) and
// SKF_AD_NLATTR_NEST one inside the nest at offset A; both return the attribute's offset or 0.
// BPF_W loads convert from network order, which suits ctnetlink's big-endian CTA_STATUS.
#include "ctnetlink/event_filter.h"

#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <netinet/in.h>

namespace ctmon {
namespace {

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
constexpr unsigned kMsgTypeLowByte = 4;  // nlmsg_type & 0xff: IPCTNL_MSG_CT_*
constexpr unsigned kFlagsHighByte = 7;   // nlmsg_flags >> 8: NLM_F_CREATE is 0x04 here
#else
constexpr unsigned kMsgTypeLowByte = 5;
constexpr unsigned kFlagsHighByte = 6;
#endif
constexpr unsigned kAttrsOffset = 16 + 4;  // nlmsghdr + nfgenmsg
constexpr unsigned kAttrHeader = 4;
constexpr unsigned kAccept = 0xffffffff;

constexpr sock_filter stmt(unsigned short code, unsigned k) { return {code, 0, 0, k}; }
constexpr sock_filter jump(unsigned short code, unsigned k, unsigned char jt, unsigned char jf) {
  return {code, jt, jf, k};
}

// Jump offsets count from the next instruction; ACCEPT is 28 and DROP 29.
const sock_filter kProgram[] = {
    /* 0 */ stmt(BPF_LD | BPF_B | BPF_ABS, kMsgTypeLowByte),
    /* 1 */ jump(BPF_JMP | BPF_JEQ | BPF_K, IPCTNL_MSG_CT_DELETE, 26, 0),  // DESTROY
    /* 2 */ stmt(BPF_LD | BPF_B | BPF_ABS, kFlagsHighByte),
    /* 3 */ jump(BPF_JMP | BPF_JSET | BPF_K, 0x04, 24, 0),  // NEW (NLM_F_CREATE)
    // An UPDATE with CTA_PROTOINFO is a TCP (or SCTP) state change.
    /* 4 */ stmt(BPF_LDX | BPF_W | BPF_IMM, CTA_PROTOINFO),
    /* 5 */ stmt(BPF_LD | BPF_W | BPF_IMM, kAttrsOffset),
    /* 6 */ stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_NLATTR),
    /* 7 */ jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 20),
    // Protocol: CTA_TUPLE_ORIG > CTA_TUPLE_PROTO > CTA_PROTO_NUM. Unparseable: accept.
    /* 8 */ stmt(BPF_LDX | BPF_W | BPF_IMM, CTA_TUPLE_ORIG),
    /* 9 */ stmt(BPF_LD | BPF_W | BPF_IMM, kAttrsOffset),
    /* 10 */ stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_NLATTR),
    /* 11 */ jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 16, 0),
    /* 12 */ stmt(BPF_LDX | BPF_W | BPF_IMM, CTA_TUPLE_PROTO),
    /* 13 */ stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_NLATTR_NEST),
    /* 14 */ jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 13, 0),
    /* 15 */ stmt(BPF_LDX | BPF_W | BPF_IMM, CTA_PROTO_NUM),
    /* 16 */ stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_NLATTR_NEST),
    /* 17 */ jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 10, 0),
    /* 18 */ stmt(BPF_MISC | BPF_TAX, 0),
    /* 19 */ stmt(BPF_LD | BPF_B | BPF_IND, kAttrHeader),         // A = protocol
    /* 20 */ jump(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 8, 0),  // TCP, same state: drop
    // Other protocols: accept once the entry is ASSURED.
    /* 21 */ stmt(BPF_LDX | BPF_W | BPF_IMM, CTA_STATUS),
    /* 22 */ stmt(BPF_LD | BPF_W | BPF_IMM, kAttrsOffset),
    /* 23 */ stmt(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_NLATTR),
    /* 24 */ jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 3, 0),
    /* 25 */ stmt(BPF_MISC | BPF_TAX, 0),
    /* 26 */ stmt(BPF_LD | BPF_W | BPF_IND, kAttrHeader),  // A = status
    /* 27 */ jump(BPF_JMP | BPF_JSET | BPF_K, IPS_ASSURED, 0, 1),
    /* 28 */ stmt(BPF_RET | BPF_K, kAccept),
    /* 29 */ stmt(BPF_RET | BPF_K, 0),
};

}  // namespace

FilterProgram event_filter() { return {kProgram, sizeof kProgram / sizeof kProgram[0]}; }

}  // namespace ctmon
