// snapshot.cc — see snapshot.h. No Node-API, no syscalls.
//
// Key layouts, chosen so that memcmp order is the natural order used to break ties:
//   address  [family][16 address bytes]      IPv4 (2) before IPv6 (10), then numerically
//   port     [protocol][hi][lo][0]           by protocol number, then port (or ICMP type)
//   state    [protocol][code][0][0]          by protocol number, then TCP state / status class
#include "ctnetlink/snapshot.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <new>

#include "base/hash.h"

namespace ctmon {
namespace {

constexpr uint32_t kSeenReply = 0x2;  // IPS_SEEN_REPLY
constexpr uint32_t kAssured = 0x4;    // IPS_ASSURED
constexpr uint8_t kNoTcpState = 0xff;

// Status classes of entries without a TCP state, in the order of their codes.
const char* const kStatusClasses[] = {"UNREPLIED", "REPLIED", "ASSURED"};

const char* const kTcpStates[kTcpStateCount] = {"NONE",     "SYN_SENT",   "SYN_RECV", "ESTABLISHED",
                                                "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT",
                                                "CLOSE",    "SYN_SENT2"};

bool has_ports(uint8_t l4proto) {
  switch (l4proto) {
    case IPPROTO_TCP:
    case IPPROTO_UDP:
    case IPPROTO_UDPLITE:
    case IPPROTO_SCTP:
    case IPPROTO_DCCP:
    case IPPROTO_GRE:  // the GRE key, in CTA_PROTO_DST_PORT
      return true;
    default:
      return false;
  }
}

// The TCP states the kernel's garbage collector may evict under pressure (its tcp_can_early_drop).
bool tcp_can_early_drop(uint8_t state) {
  switch (state) {
    case 4:  // FIN_WAIT
    case 5:  // CLOSE_WAIT
    case 6:  // LAST_ACK
    case 7:  // TIME_WAIT
    case 8:  // CLOSE
      return true;
    default:
      return false;
  }
}

bool is_icmp(uint8_t l4proto) { return l4proto == IPPROTO_ICMP || l4proto == IPPROTO_ICMPV6; }

// The ICMP types that create conntrack entries (the others are errors, attached to a flow).
const char* icmp_type_name(uint8_t l4proto, uint8_t type) {
  if (l4proto == IPPROTO_ICMP) {
    switch (type) {
      case 8:
        return "echo-request";
      case 13:
        return "timestamp-request";
      case 15:
        return "info-request";
      case 17:
        return "address-mask-request";
      default:
        return nullptr;
    }
  }
  switch (type) {
    case 128:
      return "echo-request";
    case 139:
      return "node-info-query";
    default:
      return nullptr;
  }
}

template <size_t N>
bool key_before(const typename KeyCounter<N>::Slot* a, const typename KeyCounter<N>::Slot* b) {
  if (a->count != b->count) return a->count > b->count;
  return std::memcmp(a->key, b->key, N) < 0;
}

template <size_t N>
TopGroup top_of(const KeyCounter<N>& counter, uint64_t entries, size_t limit,
                std::string (*text)(const uint8_t*)) {
  std::vector<const typename KeyCounter<N>::Slot*> used;
  used.reserve(counter.size());
  counter.for_each([&used](const typename KeyCounter<N>::Slot& s) { used.push_back(&s); });
  const size_t n = std::min(limit, used.size());
  std::partial_sort(used.begin(), used.begin() + static_cast<std::ptrdiff_t>(n), used.end(),
                    key_before<N>);
  TopGroup group;
  group.top.reserve(n);
  uint64_t listed = 0;
  for (size_t i = 0; i < n; ++i) {
    group.top.push_back(TopItem{text(used[i]->key), used[i]->count});
    listed += used[i]->count;
  }
  group.other = entries - listed;
  return group;
}

}  // namespace

template <size_t N>
KeyCounter<N>::KeyCounter(uint64_t seed, size_t initial_slots, size_t max_keys)
    : seed_(seed),
      max_keys_(max_keys),
      capacity_(initial_slots),
      slots_(static_cast<Slot*>(std::calloc(initial_slots, sizeof(Slot)))) {
  if (slots_ == nullptr) throw std::bad_alloc();
}

template <size_t N>
KeyCounter<N>::~KeyCounter() {
  std::free(slots_);
}

template <size_t N>
uint64_t KeyCounter<N>::hash(const uint8_t* key) const {
  uint64_t h = seed_;
  for (size_t at = 0; at < N; at += 8) {
    uint64_t word = 0;
    std::memcpy(&word, key + at, std::min<size_t>(8, N - at));
    h = fmix64(h ^ word) + 0x9e3779b97f4a7c15ULL;
  }
  return h;
}

template <size_t N>
bool KeyCounter<N>::add(const uint8_t* key, uint64_t h) {
  size_t mask = capacity_ - 1;
  size_t i = h & mask;
  for (;; i = (i + 1) & mask) {
    Slot& s = slots_[i];
    if (s.count == 0) break;
    if (std::memcmp(s.key, key, N) == 0) {
      if (s.count != UINT32_MAX) ++s.count;
      return true;
    }
  }
  if (used_.size() >= max_keys_) return false;
  if ((used_.size() + 1) * 4 > capacity_ * 3) {  // keep the load factor at most 3/4
    grow();
    mask = capacity_ - 1;
    for (i = h & mask; slots_[i].count != 0; i = (i + 1) & mask) {
    }
  }
  std::memcpy(slots_[i].key, key, N);
  slots_[i].count = 1;
  used_.push_back(static_cast<uint32_t>(i));
  return true;
}

// Doubles the map. Every key moves to a random slot of the new array, a cache miss each once
// the map outgrows the cache: the moves go through a small ring, each destination prefetched
// kAhead moves before it is written.
template <size_t N>
void KeyCounter<N>::grow() {
  constexpr size_t kAhead = 8;
  Slot* old = slots_;
  const size_t capacity = capacity_ * 2;
  Slot* fresh = static_cast<Slot*>(std::calloc(capacity, sizeof(Slot)));
  if (fresh == nullptr) throw std::bad_alloc();
  slots_ = fresh;
  capacity_ = capacity;
  const size_t mask = capacity - 1;
  uint32_t ring[kAhead];
  uint64_t ring_hash[kAhead];
  auto place = [&](size_t k) {
    const uint32_t from = ring[k % kAhead];
    size_t i = ring_hash[k % kAhead] & mask;
    while (slots_[i].count != 0) i = (i + 1) & mask;
    slots_[i] = old[from];
    used_[k] = static_cast<uint32_t>(i);
  };
  for (size_t k = 0; k < used_.size(); ++k) {
    const uint64_t h = hash(old[used_[k]].key);
    prefetch(h);
    if (k >= kAhead) place(k - kAhead);
    ring[k % kAhead] = used_[k];
    ring_hash[k % kAhead] = h;
  }
  for (size_t k = used_.size() > kAhead ? used_.size() - kAhead : 0; k < used_.size(); ++k)
    place(k);
  std::free(old);
}

template class KeyCounter<17>;
template class KeyCounter<4>;

namespace {
// Slots for `keys` keys at a load of at most 3/4, a power of two; 1 when none are expected.
size_t slots_for(size_t keys) {
  size_t slots = 1;
  while (slots * 3 < keys * 4) slots *= 2;
  return slots;
}
}  // namespace

SnapshotGrouper::SnapshotGrouper(uint64_t seed, size_t expected_entries, size_t max_keys)
    : sources_(seed, slots_for(std::min(expected_entries, max_keys)), max_keys),
      destinations_(seed ^ 0x5bd1e995, slots_for(std::min(expected_entries, max_keys)), max_keys),
      ports_(seed ^ 0x27d4eb2f, slots_for(std::min(expected_entries, max_keys)), max_keys),
      states_(seed ^ 0x165667b1, 16, max_keys) {}

size_t SnapshotGrouper::add_batch(const Conntrack* entries, size_t n) {
  constexpr size_t kChunk = 16;
  struct Keys {
    uint8_t source[17];
    uint8_t destination[17];
    uint8_t port[4];
    uint8_t state[4];
    uint64_t source_hash;
    uint64_t destination_hash;
  } keys[kChunk];
  size_t ignored = 0;
  for (size_t at = 0; at < n; at += kChunk) {
    const size_t m = std::min(kChunk, n - at);
    size_t used = 0;
    // First pass: keys and hashes, and a prefetch of the address maps' slots.
    for (size_t i = 0; i < m; ++i) {
      const Conntrack& ct = entries[at + i];
      if (!ct.has(Conntrack::kHasOrig)) {
        ++ignored;
        continue;
      }
      ++entries_;
      const uint32_t status = ct.has(Conntrack::kHasStatus) ? ct.status : 0;
      const uint8_t proto = ct.orig.l4proto;
      const bool unassured = (status & kAssured) == 0;
      const bool closing = proto == IPPROTO_TCP && ct.has(Conntrack::kHasTcpState) &&
                           tcp_can_early_drop(ct.tcp_state);
      unassured_ += unassured;
      tcp_closing_ += closing;
      evictable_ += unassured || closing;
      Keys& k = keys[used++];
      k.source[0] = k.destination[0] = ct.family;
      std::memcpy(k.source + 1, ct.orig.src, 16);
      std::memcpy(k.destination + 1, ct.orig.dst, 16);
      k.source_hash = sources_.hash(k.source);
      k.destination_hash = destinations_.hash(k.destination);
      sources_.prefetch(k.source_hash);
      destinations_.prefetch(k.destination_hash);
      std::memset(k.port, 0, sizeof k.port);
      k.port[0] = proto;
      if (has_ports(proto)) {
        k.port[1] = static_cast<uint8_t>(ct.orig.dst_port >> 8);
        k.port[2] = static_cast<uint8_t>(ct.orig.dst_port & 0xff);
      } else if (is_icmp(proto)) {
        k.port[1] = ct.orig.icmp_type;
      }
      std::memset(k.state, 0, sizeof k.state);
      k.state[0] = proto;
      if (proto == IPPROTO_TCP)
        k.state[1] = ct.has(Conntrack::kHasTcpState) ? ct.tcp_state : kNoTcpState;
      else
        k.state[1] = (status & kAssured) ? 2 : (status & kSeenReply) ? 1 : 0;
    }
    // Second pass: count. A key refused past max_keys is still in entries_, so in `other`.
    for (size_t i = 0; i < used; ++i) {
      sources_.add(keys[i].source, keys[i].source_hash);
      destinations_.add(keys[i].destination, keys[i].destination_hash);
      ports_.add(keys[i].port);
      states_.add(keys[i].state);
    }
  }
  return ignored;
}

TopReport SnapshotGrouper::top(size_t limit) const {
  TopReport r;
  r.entries = entries_;
  r.evictable = evictable_;
  r.unassured = unassured_;
  r.tcp_closing = tcp_closing_;
  r.groups[kBySource] = top_of(sources_, entries_, limit, address_key_text);
  r.groups[kByDestination] = top_of(destinations_, entries_, limit, address_key_text);
  r.groups[kByDestinationPort] = top_of(ports_, entries_, limit, port_key_text);
  r.groups[kByState] = top_of(states_, entries_, limit, state_key_text);
  return r;
}

size_t SnapshotGrouper::memory_bytes() const {
  return sources_.memory_bytes() + destinations_.memory_bytes() + ports_.memory_bytes() +
         states_.memory_bytes();
}

std::string protocol_name(uint8_t l4proto) {
  switch (l4proto) {
    case IPPROTO_ICMP:
      return "icmp";
    case IPPROTO_TCP:
      return "tcp";
    case IPPROTO_UDP:
      return "udp";
    case IPPROTO_DCCP:
      return "dccp";
    case IPPROTO_GRE:
      return "gre";
    case IPPROTO_ESP:
      return "esp";
    case IPPROTO_AH:
      return "ah";
    case IPPROTO_ICMPV6:
      return "icmpv6";
    case IPPROTO_SCTP:
      return "sctp";
    case IPPROTO_UDPLITE:
      return "udplite";
    default:
      return "proto-" + std::to_string(l4proto);
  }
}

std::string port_key_text(const uint8_t* key) {
  const uint8_t proto = key[0];
  if (has_ports(proto)) return protocol_name(proto) + "/" + std::to_string(key[1] << 8 | key[2]);
  if (is_icmp(proto)) {
    const char* name = icmp_type_name(proto, key[1]);
    return protocol_name(proto) + "/" + (name ? std::string(name) : std::to_string(key[1]));
  }
  return protocol_name(proto);
}

std::string state_key_text(const uint8_t* key) {
  const uint8_t proto = key[0];
  const uint8_t code = key[1];
  if (proto != IPPROTO_TCP)
    return protocol_name(proto) + "/" + (code < 3 ? kStatusClasses[code] : "?");
  if (code < kTcpStateCount) return std::string("tcp/") + kTcpStates[code];
  return code == kNoTcpState ? "tcp/UNKNOWN" : "tcp/" + std::to_string(code);
}

std::string address_key_text(const uint8_t* key) {
  char text[INET6_ADDRSTRLEN] = "";
  const int family = key[0] == AF_INET6 ? AF_INET6 : key[0] == AF_INET ? AF_INET : -1;
  if (family < 0 || inet_ntop(family, key + 1, text, sizeof text) == nullptr)
    return "family-" + std::to_string(key[0]);
  return text;
}

}  // namespace ctmon
