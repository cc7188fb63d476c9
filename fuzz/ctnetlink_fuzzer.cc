// ctnetlink_fuzzer.cc — libFuzzer target for everything in native/ that reads bytes the
// kernel (or /proc) hands us: the ctnetlink decoder (events and dump entries), the stats
// reply decoders, the NLMSG_ERROR reader, the /proc text parsers, the BTF and kallsyms
// parsers of the drop probe, and what consumes the decoder's output: the tracked table, the
// aggregator, the snapshot grouping, and the node monitor's header classifier (checked to agree
// with the decoder). Built with ASan and UBSan by fuzz/run.mjs.
//
// Besides "no crash, no UB", the tracked table is checked against a plain std::map model
// after every step: its counts by protocol and TCP state must equal the model's. That is
// what catches a wrong backward shift in the open-addressing table, not just a bad read.
// Likewise the snapshot grouping (snapshot.h) against a std::map per group: its top N and its
// `other` must be the model's, with its maps starting at one slot and a bound of 48 keys.
// Likewise the tuple the event program reads (ebpf/ct_events.h: ct_read_tuple) against the
// decoder's: wherever the program accepts a message's layout, both must name the same flow, or a
// listing written into the kernel's table would hold a flow twice.
//
// Input: a sequence of records  [op u8][length u16 little endian][payload]  (a short last
// record takes what is left). fuzz/run.mjs wraps the captured fixtures in this format.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/proc_text.h"
#include "ctnetlink/aggregator.h"
#include "ctnetlink/count_filter.h"
#include "ctnetlink/decoder.h"
#include "ctnetlink/kernel_flows.h"
#include "ctnetlink/snapshot.h"
#include "ctnetlink/table.h"
#include "ebpf/btf.h"
#include "ebpf/ct_events.h"
#include "ebpf/kallsyms.h"

using namespace ctmon;

namespace {

enum Op : uint8_t {
  kEventDatagram,  // payload: one datagram from the event socket
  kBeginDump,
  kDumpDatagram,  // payload: one datagram of a table dump
  kEndDump,
  kAbortDump,
  kAdvanceClock,   // payload: u16 seconds
  kStatsDatagram,  // payload: one datagram of a GET_STATS_CPU / GET_STATS reply; closes an interval
  kProcText,       // payload: the text of a /proc file
  kCompactEvent,   // payload: a few bytes describing an event (see compact_event), so that
                   // inputs can hold hundreds of entries and make the table collide and grow
  kBtf,            // payload: a raw BTF blob, as /sys/kernel/btf/vmlinux (the drop probe's input)
  kKallsyms,       // payload: /proc/kallsyms text
  kSnapshotDatagram,  // payload: one datagram of a table dump, into the snapshot grouping
  kSnapshotCompact,   // payload: entries of 8 bytes each (see compact_entry), into the grouping
  kSnapshotTop,       // payload: u8 limit; the grouping's top N is checked against its model
  kVerify,            // the kernel showed every entry alive now (a walk of the table)
  kOpCount
};

// The node monitor's filter path keeps only the first 20 bytes of NEW and DESTROY messages
// (count_filter.h): what it calls a datagram from them must be what the decoder calls the
// whole message.
void check_header_classifier(const std::vector<uint8_t>& datagram) {
  MessageWalker walker(datagram.data(), datagram.size());
  Message msg;
  if (!walker.next(msg) || datagram.size() < kCountedHeaderBytes) return;
  Conntrack ct;
  const DecodeStatus st = decode_conntrack(msg, ct);
  const HeaderKind want = st == DecodeStatus::kNotConntrack ? HeaderKind::kOther
                          : ct.kind == EventKind::kNew      ? HeaderKind::kNew
                          : ct.kind == EventKind::kDestroy  ? HeaderKind::kDestroy
                                                            : HeaderKind::kOther;
  if (classify_event_header(datagram.data(), kCountedHeaderBytes) != want) std::abort();
}

// The model: the same semantics as ConntrackTable, written the obvious way.
struct ModelEntry {
  uint8_t protocol;
  uint8_t tcp_state;
  uint64_t deadline_ds;
};

uint8_t classify(uint8_t l4proto) {
  switch (l4proto) {
    case 6:
      return kProtoTcp;
    case 17:
      return kProtoUdp;
    case 1:
    case 58:
      return kProtoIcmp;
    default:
      return kProtoOther;
  }
}

// The kernel holds one entry per original tuple and zone at a time.
std::string identity(const Conntrack& ct) {
  std::string k;
  auto put = [&k](const void* p, size_t n) { k.append(static_cast<const char*>(p), n); };
  put(ct.orig.src, 16);
  put(ct.orig.dst, 16);
  put(&ct.orig.src_port, 2);
  put(&ct.orig.dst_port, 2);
  put(&ct.orig.icmp_type, 1);
  put(&ct.orig.icmp_code, 1);
  put(&ct.orig.l4proto, 1);
  put(&ct.family, 1);
  put(&ct.zone, 2);
  return k;
}

class Model {
 public:
  void event(const Conntrack& ct, uint64_t now_ms) {
    const std::string key = identity(ct);
    if (dumping_) touched_.insert(key);
    if (ct.kind == EventKind::kDestroy) {
      erase(key);
      return;
    }
    // During a dump only a NEW shows the entry outlives the dump's start; an UPDATE does not.
    upsert(key, ct, now_ms, 0);
    if (!dumping_ || ct.kind == EventKind::kNew) confirmed_.insert(key);
  }
  void begin_dump() {
    dumping_ = true;
    confirmed_.clear();
  }
  void dump_entry(const Conntrack& ct, uint64_t now_ms) {
    const std::string key = identity(ct);
    // Touched: the event said more about its state (or that it is gone), not that it exists.
    if (touched_.count(key) == 0)
      upsert(key, ct, now_ms, 1000);
    else if (entries_.count(key) == 0)
      return;
    confirmed_.insert(key);
  }
  // Keeps what is confirmed since the dump began: listed by it, made by a NEW during it.
  void end_dump() {
    dumping_ = false;
    touched_.clear();
    for (auto it = entries_.begin(); it != entries_.end();)
      it = confirmed_.count(it->first) ? std::next(it) : entries_.erase(it);
  }
  void abort_dump() {
    dumping_ = false;
    touched_.clear();
  }
  // Listed: the deadline is ahead, or passed before the latest verification (alive then).
  TableTally tally(uint64_t now_ms, uint64_t verified_ms) const {
    TableTally t;
    for (const auto& [key, e] : entries_) {
      TableCounts& c = e.deadline_ds > now_ms / 100 || e.deadline_ds <= verified_ms / 100
                           ? t.listed
                           : t.unverified;
      ++c.entries;
      ++c.protocols[e.protocol];
      if (e.protocol == kProtoTcp) ++c.tcp_states[e.tcp_state];
      // Refreshed: alive more than the second CTA_TIMEOUT's rounding past the deadline.
      if (&c == &t.listed && e.deadline_ds <= now_ms / 100 &&
          e.deadline_ds + 10 <= verified_ms / 100)
        ++t.survivors;
    }
    return t;
  }

 private:
  void erase(const std::string& key) {
    entries_.erase(key);
    confirmed_.erase(key);
  }
  // A timeout of 0 (under a second left) gives the deadline now: verified at the next walk.
  void upsert(const std::string& key, const Conntrack& ct, uint64_t now_ms, uint32_t pad_ms) {
    ModelEntry& e = entries_.try_emplace(key, ModelEntry{classify(ct.orig.l4proto), 0, UINT32_MAX})
                        .first->second;
    if (ct.has(Conntrack::kHasTcpState) && e.protocol == kProtoTcp)
      e.tcp_state = ct.tcp_state < kTcpStateCount ? ct.tcp_state : 0;
    if (ct.has(Conntrack::kHasTimeout)) {
      const uint64_t ds = (now_ms + uint64_t{ct.timeout_s} * 1000 + pad_ms + 99) / 100;
      e.deadline_ds = ds >= UINT32_MAX ? UINT32_MAX - 1 : ds;
    }
  }

  std::map<std::string, ModelEntry> entries_;
  std::set<std::string> touched_;    // keys an event named during the dump
  std::set<std::string> confirmed_;  // keys of the current generation (see end_dump)
  bool dumping_ = false;
};

// Where the event program accepts a message's original tuple (the layout ctnetlink writes), it
// must read the flow the decoder reads, in the same class.
void check_program_tuple(const Conntrack& ct) {
  if (ct.orig_tuple == nullptr) return;
  ct_tuple program;
  const uint32_t cls = ct_read_tuple(ct.orig_tuple, ct.orig_tuple_length, ct.family, &program);
  if (cls == CT_CLASS_UNKNOWN) return;
  program.zone = ct.zone;  // the program reads CTA_ZONE from the top-level attributes
  const ct_tuple decoded = tuple_of(ct, 0);
  if (std::memcmp(&program, &decoded, sizeof program) == 0 && cls == classify(ct.orig.l4proto))
    return;
  std::fprintf(stderr, "the event program's tuple diverged from the decoder's (class %u)\n", cls);
  std::abort();
}

// [kind: 0 NEW, 1 UPDATE, 2 DESTROY, 3 dump entry][l4proto][tcp_state][flags][port lo][port
// hi][timeout s] -> an event; short payloads leave fields zero. Flags bit 0: has TCP state, bit 1:
// has timeout.
Conntrack compact_event(const std::vector<uint8_t>& p) {
  auto at = [&p](size_t i) -> uint8_t { return i < p.size() ? p[i] : 0; };
  Conntrack ct;
  ct.kind = at(0) % 4 == 2   ? EventKind::kDestroy
            : at(0) % 4 == 1 ? EventKind::kUpdate
                             : EventKind::kNew;
  ct.family = 2;
  ct.orig.l4proto = at(1) % 4 == 0 ? 6 : at(1) % 4 == 1 ? 17 : at(1) % 4 == 2 ? 1 : at(1);
  ct.tcp_state = at(2);
  ct.orig.src_port = static_cast<uint16_t>(at(4) | at(5) << 8);
  ct.timeout_s = at(6);
  ct.fields = Conntrack::kHasOrig | (at(3) & 1 ? Conntrack::kHasTcpState : 0) |
              (at(3) & 2 ? Conntrack::kHasTimeout : 0);
  return ct;
}

// [family bit][l4proto][src last byte][dst last byte][port lo][port hi][status][tcp state]
// -> a dump entry: a few distinct addresses and ports, so keys repeat and maps collide.
Conntrack compact_entry(const uint8_t* p) {
  Conntrack ct;
  ct.family = p[0] & 1 ? 10 : 2;
  static const uint8_t kProtos[] = {6, 17, 1, 58, 132, 47, 50, 253};
  ct.orig.l4proto = kProtos[p[1] % 8];
  ct.orig.src[0] = 10;
  ct.orig.src[3] = p[2] % 64;
  ct.orig.dst[0] = 10;
  ct.orig.dst[15] = p[3];
  ct.orig.dst_port = static_cast<uint16_t>(p[4] | p[5] << 8);
  ct.orig.icmp_type = p[4];
  ct.status = p[6];
  ct.tcp_state = p[7] % 12;
  ct.fields =
      Conntrack::kHasOrig | Conntrack::kHasStatus | (p[7] & 0x80 ? 0 : Conntrack::kHasTcpState);
  return ct;
}

// The snapshot grouping written the obvious way: one std::map per group, keyed by the same
// bytes, a key past the bound left out of its map (its entry is still counted).
class GroupingModel {
 public:
  static constexpr size_t kMaxKeys = 48;
  void add(const Conntrack& ct) {
    if (!ct.has(Conntrack::kHasOrig)) return;
    ++entries_;
    const uint32_t status = ct.has(Conntrack::kHasStatus) ? ct.status : 0;
    const uint8_t p = ct.orig.l4proto;
    // The two classes the kernel reclaims: unassured, and TCP in FIN_WAIT (4) to CLOSE (8).
    const bool unassured = !(status & 0x4);
    const bool closing =
        p == 6 && ct.has(Conntrack::kHasTcpState) && ct.tcp_state >= 4 && ct.tcp_state <= 8;
    unassured_ += unassured;
    tcp_closing_ += closing;
    evictable_ += unassured || closing;
    std::string src(1, static_cast<char>(ct.family)), dst = src;
    src.append(reinterpret_cast<const char*>(ct.orig.src), 16);
    dst.append(reinterpret_cast<const char*>(ct.orig.dst), 16);
    std::string port{static_cast<char>(p), 0, 0, 0};
    if (p == 6 || p == 17 || p == 136 || p == 132 || p == 33 || p == 47) {
      port[1] = static_cast<char>(ct.orig.dst_port >> 8);
      port[2] = static_cast<char>(ct.orig.dst_port & 0xff);
    } else if (p == 1 || p == 58) {
      port[1] = static_cast<char>(ct.orig.icmp_type);
    }
    std::string state{static_cast<char>(p), 0, 0, 0};
    state[1] = static_cast<char>(p == 6 ? (ct.has(Conntrack::kHasTcpState) ? ct.tcp_state : 0xff)
                                        : (status & 0x4   ? 2
                                           : status & 0x2 ? 1
                                                          : 0));
    count(maps_[kBySource], src);
    count(maps_[kByDestination], dst);
    count(maps_[kByDestinationPort], port);
    count(maps_[kByState], state);
  }
  void check(const TopReport& got, size_t limit) const {
    if (got.entries != entries_ || got.evictable != evictable_ || got.unassured != unassured_ ||
        got.tcp_closing != tcp_closing_)
      fail("entries, evictable, unassured or tcp_closing");
    std::string (*text[])(const uint8_t*) = {address_key_text, address_key_text, port_key_text,
                                             state_key_text};
    for (int g = 0; g < kSnapshotGroupCount; ++g) {
      std::vector<std::pair<std::string, uint64_t>> all(maps_[g].begin(), maps_[g].end());
      std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first < b.first;
      });
      if (all.size() > limit) all.resize(limit);
      const TopGroup& group = got.groups[g];
      if (group.top.size() != all.size()) fail("top size");
      uint64_t listed = 0;
      for (size_t i = 0; i < all.size(); ++i) {
        const auto* key = reinterpret_cast<const uint8_t*>(all[i].first.data());
        if (group.top[i].entries != all[i].second || group.top[i].key != text[g](key))
          fail("top item");
        listed += all[i].second;
      }
      if (group.other != entries_ - listed) fail("other");
    }
  }

 private:
  static void count(std::map<std::string, uint64_t>& m, const std::string& key) {
    auto it = m.find(key);
    if (it != m.end())
      ++it->second;
    else if (m.size() < kMaxKeys)
      m.emplace(key, 1);
  }
  [[noreturn]] static void fail(const char* what) {
    std::fprintf(stderr, "snapshot grouping diverged from the model: %s\n", what);
    std::abort();
  }
  uint64_t entries_ = 0;
  uint64_t evictable_ = 0;
  uint64_t unassured_ = 0;
  uint64_t tcp_closing_ = 0;
  std::map<std::string, uint64_t> maps_[kSnapshotGroupCount];
};

bool same_counts(const TableCounts& a, const TableCounts& b) {
  bool same = a.entries == b.entries;
  for (int p = 0; p < kProtoClassCount; ++p) same = same && a.protocols[p] == b.protocols[p];
  for (int s = 0; s < kTcpStateCount; ++s) same = same && a.tcp_states[s] == b.tcp_states[s];
  return same;
}

void check_same(const TableTally& got, const TableTally& want) {
  if (same_counts(got.listed, want.listed) && same_counts(got.unverified, want.unverified) &&
      got.survivors == want.survivors)
    return;
  std::fprintf(stderr,
               "tracked table diverged from the model: listed %u vs %u, unverified %u vs %u, "
               "survivors %u vs %u\n",
               got.listed.entries, want.listed.entries, got.unverified.entries,
               want.unverified.entries, got.survivors, want.survivors);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  ConntrackTable table(0x5eed, 8);  // 8 slots: collisions and growth from the first entries
  Model model;
  Aggregator aggregator;
  aggregator.start(0, KernelReading{});
  std::vector<CpuStats> cpus(4);
  SnapshotGrouper grouper(0x5eed, 0, GroupingModel::kMaxKeys);  // grows from one slot
  GroupingModel grouping;
  uint64_t now_ms = 1000;
  uint64_t verified_ms = 0;
  int64_t now_ns = 0;

  // The same entry to the table and to the model, as an event or as a dump entry.
  auto apply = [&](const Conntrack& ct, bool dump_entry) {
    if (dump_entry) {
      table.apply_dump_entry(ct, now_ms);
      model.dump_entry(ct, now_ms);
    } else {
      table.apply_event(ct, now_ms);
      model.event(ct, now_ms);
    }
  };

  size_t at = 0;
  while (at < size) {
    const uint8_t op = data[at] % kOpCount;
    size_t length = at + 3 <= size ? (data[at + 1] | data[at + 2] << 8) : 0;
    at = at + 3 <= size ? at + 3 : size;
    if (length > size - at) length = size - at;
    // Copy the payload into its own allocation, so ASan flags any read past its end.
    std::vector<uint8_t> payload(data + at, data + at + length);
    at += length;

    switch (op) {
      case kEventDatagram:
      case kDumpDatagram: {
        if (op == kEventDatagram) check_header_classifier(payload);
        MessageWalker walker(payload.data(), payload.size());
        Message msg;
        Conntrack ct;
        while (walker.next(msg)) {
          const DecodeStatus st = decode_conntrack(msg, ct);
          if (st == DecodeStatus::kMalformed) aggregator.count_malformed();
          if (st != DecodeStatus::kOk) continue;
          if (op == kEventDatagram) aggregator.count_event(ct.kind);
          check_program_tuple(ct);
          apply(ct, op == kDumpDatagram);
        }
        break;
      }
      case kCompactEvent: {
        // Several compact events per record: 7 bytes each.
        for (size_t i = 0; i < payload.size(); i += 7) {
          const std::vector<uint8_t> one(payload.begin() + i,
                                         payload.begin() + std::min(i + 7, payload.size()));
          const Conntrack ct = compact_event(one);
          apply(ct, one[0] % 4 == 3);  // 3: a dump entry rather than an event
        }
        break;
      }
      case kBtf: {
        Btf btf;
        if (!btf.parse(payload).ok()) break;
        BtfMember m;
        int64_t value = 0;
        uint32_t id = 0;
        std::vector<Btf::Param> params;
        (void)btf.member("sk_buff", "dev", m);
        (void)btf.member("sock", "__sk_common.skc_net.net", m);
        (void)btf.enumerator("SKB_DROP_REASON_NETFILTER_DROP", value);
        if (btf.typedef_id("btf_trace_kfree_skb", id).ok()) (void)btf.function_params(id, params);
        for (uint32_t t = 1; t <= btf.type_count() && t <= 64; ++t) (void)btf.describe(t);
        break;
      }
      case kKallsyms: {
        SymbolRange range;
        (void)function_range_in(reinterpret_cast<const char*>(payload.data()), payload.size(),
                                "nf_hook_slow", range);
        break;
      }
      case kSnapshotDatagram: {
        MessageWalker walker(payload.data(), payload.size());
        Message msg;
        Conntrack ct;
        while (walker.next(msg)) {
          if (decode_conntrack(msg, ct) != DecodeStatus::kOk) continue;
          grouper.add(ct);
          grouping.add(ct);
        }
        break;
      }
      case kSnapshotCompact:
        for (size_t i = 0; i + 8 <= payload.size(); i += 8) {
          const Conntrack ct = compact_entry(payload.data() + i);
          grouper.add(ct);
          grouping.add(ct);
        }
        break;
      case kSnapshotTop: {
        const size_t limit = payload.empty() ? 10 : payload[0];
        grouping.check(grouper.top(limit), limit);
        break;
      }
      case kVerify:
        verified_ms = now_ms;
        break;
      case kBeginDump:
        table.begin_dump();
        model.begin_dump();
        break;
      case kEndDump:
        table.end_dump();
        model.end_dump();
        break;
      case kAbortDump:
        table.abort_dump();
        model.abort_dump();
        break;
      case kAdvanceClock: {
        const uint16_t seconds =
            payload.size() >= 2 ? static_cast<uint16_t>(payload[0] | payload[1] << 8) : 1;
        now_ms += uint64_t{seconds} * 1000;
        break;
      }
      case kStatsDatagram: {
        MessageWalker walker(payload.data(), payload.size());
        Message msg;
        size_t count = 0;
        GlobalStats global;
        while (walker.next(msg)) {
          if (count < cpus.size() && decode_cpu_stats(msg, cpus[count]) == DecodeStatus::kOk)
            ++count;
          decode_global_stats(msg, global);
          (void)decode_error_code(msg);
        }
        KernelReading reading;
        reading.cpus = cpus.data();
        reading.cpu_count = count;
        reading.global = &global;
        reading.drops_ok = payload.size() >= 4;
        if (reading.drops_ok) std::memcpy(&reading.socket_drops, payload.data(), 4);
        now_ns += 1000000000;
        const IntervalSample s = aggregator.close(now_ns, 0, reading, false);
        for (int c = 0; c < kCounterCount; ++c)
          if (s.totals[c] < s.counts[c]) std::abort();  // a total never lags its interval
        break;
      }
      case kProcText: {
        std::string text(payload.begin(),
                         payload.end());  // stops at an embedded NUL, as read() + C strings would
        (void)parse_sysctl_integer(text.c_str());
        (void)parse_sockstat_time_wait(text.c_str());
        break;
      }
    }
    TableTally got;
    table.tally(now_ms, verified_ms, got);
    check_same(got, model.tally(now_ms, verified_ms));
  }
  return 0;
}
