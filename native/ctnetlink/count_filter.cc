// count_filter.cc — see count_filter.h. No Node-API.
//
// nlmsghdr fields are in host byte order, so the filter loads single bytes (as in
// event_filter.cc): the low byte of nlmsg_type is IPCTNL_MSG_CT_*, its high byte the nfnetlink
// subsystem; the high byte of nlmsg_flags carries NLM_F_CREATE (0x400), which tells a NEW
// event (NLM_F_CREATE|NLM_F_EXCL) from an UPDATE (no flags) of the same message type
// (the kernel's ctnetlink_conntrack_event sets the flags that way).
#include "ctnetlink/count_filter.h"

#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>

#include <cstring>

namespace ctmon {
namespace {

#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
constexpr unsigned kMsgTypeLowByte = 4;   // nlmsg_type & 0xff: IPCTNL_MSG_CT_*
constexpr unsigned kMsgTypeHighByte = 5;  // nlmsg_type >> 8: the nfnetlink subsystem
constexpr unsigned kFlagsHighByte = 7;    // nlmsg_flags >> 8: NLM_F_CREATE is 0x04 here
#else
constexpr unsigned kMsgTypeLowByte = 5;
constexpr unsigned kMsgTypeHighByte = 4;
constexpr unsigned kFlagsHighByte = 6;
#endif

constexpr sock_filter stmt(unsigned short code, unsigned k) { return {code, 0, 0, k}; }
constexpr sock_filter jump(unsigned short code, unsigned k, unsigned char jt, unsigned char jf) {
  return {code, jt, jf, k};
}

// Jump offsets count from the next instruction; KEEP is 7 and DROP 8.
const sock_filter kProgram[] = {
    /* 0 */ stmt(BPF_LD | BPF_B | BPF_ABS, kMsgTypeHighByte),
    /* 1 */ jump(BPF_JMP | BPF_JEQ | BPF_K, NFNL_SUBSYS_CTNETLINK, 0, 6),
    /* 2 */ stmt(BPF_LD | BPF_B | BPF_ABS, kMsgTypeLowByte),
    /* 3 */ jump(BPF_JMP | BPF_JEQ | BPF_K, IPCTNL_MSG_CT_DELETE, 3, 0),  // DESTROY
    /* 4 */ jump(BPF_JMP | BPF_JEQ | BPF_K, IPCTNL_MSG_CT_NEW, 0, 3),
    /* 5 */ stmt(BPF_LD | BPF_B | BPF_ABS, kFlagsHighByte),
    /* 6 */ jump(BPF_JMP | BPF_JSET | BPF_K, NLM_F_CREATE >> 8, 0, 1),  // NEW, not UPDATE
    /* 7 */ stmt(BPF_RET | BPF_K, kCountedHeaderBytes),
    /* 8 */ stmt(BPF_RET | BPF_K, 0),
};

}  // namespace

FilterProgram count_filter() { return {kProgram, sizeof kProgram / sizeof kProgram[0]}; }

HeaderKind classify_event_header(const uint8_t* data, size_t length) {
  if (data == nullptr || length < kCountedHeaderBytes) return HeaderKind::kOther;
  nlmsghdr header;
  std::memcpy(&header, data, sizeof header);
  if (header.nlmsg_type >> 8 != NFNL_SUBSYS_CTNETLINK) return HeaderKind::kOther;
  const uint8_t msg = header.nlmsg_type & 0xff;
  if (msg == IPCTNL_MSG_CT_DELETE) return HeaderKind::kDestroy;
  if (msg == IPCTNL_MSG_CT_NEW && (header.nlmsg_flags & NLM_F_CREATE) != 0) return HeaderKind::kNew;
  return HeaderKind::kOther;
}

}  // namespace ctmon
