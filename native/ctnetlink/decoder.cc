// decoder.cc — see decoder.h. No Node-API, no allocation.
#include "ctnetlink/decoder.h"

#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_conntrack.h>
#include <linux/netlink.h>

#include <cstring>

namespace ctmon {
namespace {

constexpr size_t kNlmsgHeader = 16;
constexpr size_t kNfgenHeader = 4;

uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
uint16_t load_be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t load_be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

bool read_u8(const Attr& a, uint8_t& out) {
  if (a.length < 1) return false;
  out = a.payload[0];
  return true;
}
bool read_be16(const Attr& a, uint16_t& out) {
  if (a.length < 2) return false;
  out = load_be16(a.payload);
  return true;
}
bool read_be32(const Attr& a, uint32_t& out) {
  if (a.length < 4) return false;
  out = load_be32(a.payload);
  return true;
}

// Attributes of a message start after nlmsghdr and nfgenmsg.
bool attributes_of(const Message& msg, AttrWalker& walker, uint8_t* family, uint16_t* res_id) {
  if (msg.body_length < kNfgenHeader) return false;
  if (family) *family = msg.body[0];
  if (res_id) *res_id = load_be16(msg.body + 2);
  walker = AttrWalker(msg.body + kNfgenHeader, msg.body_length - kNfgenHeader);
  return true;
}

bool decode_tuple_ip(const Attr& nest, Tuple& t) {
  AttrWalker w(nest);
  Attr a;
  while (w.next(a)) {
    switch (a.type) {
      case CTA_IP_V4_SRC:
      case CTA_IP_V4_DST:
        if (a.length < 4) return false;
        std::memcpy(a.type == CTA_IP_V4_SRC ? t.src : t.dst, a.payload, 4);
        break;
      case CTA_IP_V6_SRC:
      case CTA_IP_V6_DST:
        if (a.length < 16) return false;
        std::memcpy(a.type == CTA_IP_V6_SRC ? t.src : t.dst, a.payload, 16);
        break;
      default:
        break;
    }
  }
  return !w.malformed();
}

bool decode_tuple_proto(const Attr& nest, Tuple& t) {
  AttrWalker w(nest);
  Attr a;
  bool ok = true;
  while (w.next(a)) {
    switch (a.type) {
      case CTA_PROTO_NUM:
        ok = read_u8(a, t.l4proto);
        break;
      case CTA_PROTO_SRC_PORT:
        ok = read_be16(a, t.src_port);
        break;
      case CTA_PROTO_DST_PORT:
        ok = read_be16(a, t.dst_port);
        break;
      case CTA_PROTO_ICMP_ID:
      case CTA_PROTO_ICMPV6_ID:
        ok = read_be16(a, t.src_port);
        break;
      case CTA_PROTO_ICMP_TYPE:
      case CTA_PROTO_ICMPV6_TYPE:
        ok = read_u8(a, t.icmp_type);
        break;
      case CTA_PROTO_ICMP_CODE:
      case CTA_PROTO_ICMPV6_CODE:
        ok = read_u8(a, t.icmp_code);
        break;
      default:
        break;
    }
    if (!ok) return false;
  }
  return !w.malformed();
}

bool decode_tuple(const Attr& nest, Tuple& t) {
  AttrWalker w(nest);
  Attr a;
  while (w.next(a)) {
    if (a.type == CTA_TUPLE_IP && !decode_tuple_ip(a, t)) return false;
    if (a.type == CTA_TUPLE_PROTO && !decode_tuple_proto(a, t)) return false;
  }
  return !w.malformed();
}

// CTA_PROTOINFO { CTA_PROTOINFO_TCP { CTA_PROTOINFO_TCP_STATE u8 } }; other protocols skipped.
bool decode_protoinfo(const Attr& nest, Conntrack& ct) {
  AttrWalker w(nest);
  Attr a;
  while (w.next(a)) {
    if (a.type != CTA_PROTOINFO_TCP) continue;
    AttrWalker tcp(a);
    Attr s;
    while (tcp.next(s)) {
      if (s.type != CTA_PROTOINFO_TCP_STATE) continue;
      if (!read_u8(s, ct.tcp_state)) return false;
      ct.fields |= Conntrack::kHasTcpState;
    }
    if (tcp.malformed()) return false;
  }
  return !w.malformed();
}

}  // namespace

bool AttrWalker::next(Attr& out) {
  const size_t left = static_cast<size_t>(end_ - cursor_);
  if (left == 0) return false;
  if (left < NLA_HDRLEN) {
    malformed_ = true;
    return false;
  }
  const uint16_t length = load_u16(cursor_);
  if (length < NLA_HDRLEN || length > left) {
    malformed_ = true;
    return false;
  }
  out.type = load_u16(cursor_ + 2) & NLA_TYPE_MASK;
  out.payload = cursor_ + NLA_HDRLEN;
  out.length = static_cast<uint16_t>(length - NLA_HDRLEN);
  const size_t step = NLA_ALIGN(length);
  cursor_ += step < left ? step : left;
  return true;
}

bool MessageWalker::next(Message& out) {
  const size_t left = static_cast<size_t>(end_ - cursor_);
  if (left == 0) return false;
  if (left < kNlmsgHeader) {
    malformed_ = true;
    return false;
  }
  const uint32_t length = load_u32(cursor_);
  if (length < kNlmsgHeader || length > left) {
    malformed_ = true;
    return false;
  }
  out.type = load_u16(cursor_ + 4);
  out.flags = load_u16(cursor_ + 6);
  out.seq = load_u32(cursor_ + 8);
  out.body = cursor_ + kNlmsgHeader;
  out.body_length = length - kNlmsgHeader;
  const size_t step = NLMSG_ALIGN(length);
  cursor_ += step < left ? step : left;
  return true;
}

DecodeStatus decode_conntrack(const Message& msg, Conntrack& out) {
  if ((msg.type >> 8) != NFNL_SUBSYS_CTNETLINK) return DecodeStatus::kNotConntrack;
  const uint8_t kind = msg.type & 0xff;
  if (kind != IPCTNL_MSG_CT_DELETE && kind != IPCTNL_MSG_CT_NEW) return DecodeStatus::kNotConntrack;
  out = Conntrack{};  // nothing from a previous message may leak into this one
  if (kind == IPCTNL_MSG_CT_DELETE) {
    out.kind = EventKind::kDestroy;
  } else if (kind == IPCTNL_MSG_CT_NEW) {
    // NEW and UPDATE share a type; only NEW carries NLM_F_CREATE|NLM_F_EXCL
    // (the kernel's ctnetlink_conntrack_event).
    out.kind = (msg.flags & NLM_F_CREATE) ? EventKind::kNew : EventKind::kUpdate;
  } else {
    return DecodeStatus::kNotConntrack;
  }
  AttrWalker w(nullptr, 0);
  if (!attributes_of(msg, w, &out.family, nullptr)) return DecodeStatus::kMalformed;
  Attr a;
  bool ok = true;
  while (ok && w.next(a)) {
    switch (a.type) {
      case CTA_TUPLE_ORIG:
        ok = decode_tuple(a, out.orig);
        out.fields |= Conntrack::kHasOrig;
        out.orig_tuple = a.payload;
        out.orig_tuple_length = a.length;
        break;
      case CTA_ID:
        ok = read_be32(a, out.id);
        out.fields |= Conntrack::kHasId;
        break;
      case CTA_STATUS:
        ok = read_be32(a, out.status);
        out.fields |= Conntrack::kHasStatus;
        break;
      case CTA_TIMEOUT:
        ok = read_be32(a, out.timeout_s);
        out.fields |= Conntrack::kHasTimeout;
        break;
      case CTA_MARK:
        ok = read_be32(a, out.mark);
        out.fields |= Conntrack::kHasMark;
        break;
      case CTA_ZONE:
        ok = read_be16(a, out.zone);
        out.fields |= Conntrack::kHasZone;
        break;
      case CTA_PROTOINFO:
        ok = decode_protoinfo(a, out);
        break;
      default:
        break;  // reply tuple, counters, timestamps, labels, and ids newer than this file
    }
  }
  return ok && !w.malformed() ? DecodeStatus::kOk : DecodeStatus::kMalformed;
}

DecodeStatus decode_cpu_stats(const Message& msg, CpuStats& out) {
  if (msg.type != ((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET_STATS_CPU))
    return DecodeStatus::kNotConntrack;
  AttrWalker w(nullptr, 0);
  if (!attributes_of(msg, w, nullptr, &out.cpu)) return DecodeStatus::kMalformed;
  out.present = 0;
  Attr a;
  while (w.next(a)) {
    if (a.type == 0 || a.type >= kStatsSlots) continue;
    if (!read_be32(a, out.values[a.type])) return DecodeStatus::kMalformed;
    out.present |= 1u << a.type;
  }
  return w.malformed() ? DecodeStatus::kMalformed : DecodeStatus::kOk;
}

DecodeStatus decode_global_stats(const Message& msg, GlobalStats& out) {
  if (msg.type != ((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET_STATS))
    return DecodeStatus::kNotConntrack;
  AttrWalker w(nullptr, 0);
  if (!attributes_of(msg, w, nullptr, nullptr)) return DecodeStatus::kMalformed;
  Attr a;
  bool ok = true;
  while (ok && w.next(a)) {
    if (a.type == CTA_STATS_GLOBAL_ENTRIES) {
      ok = read_be32(a, out.entries);
      out.has_entries = ok;
    } else if (a.type == CTA_STATS_GLOBAL_MAX_ENTRIES) {
      ok = read_be32(a, out.max);
      out.has_max = ok;
    }
  }
  return ok && !w.malformed() ? DecodeStatus::kOk : DecodeStatus::kMalformed;
}

int decode_error_code(const Message& msg) {
  if (msg.type != NLMSG_ERROR || msg.body_length < sizeof(int32_t)) return 0;
  int32_t code;
  std::memcpy(&code, msg.body, sizeof code);
  return code;
}

}  // namespace ctmon
