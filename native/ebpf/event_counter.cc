// event_counter.cc — see event_counter.h.
#include "ebpf/event_counter.h"

#include <sys/mman.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/fault_injection.h"
#include "base/proc_text.h"
#include "base/read_file.h"
#include "ebpf/bpf_image.h"

#ifndef SO_ATTACH_BPF
#define SO_ATTACH_BPF 50
#endif
#ifndef SO_COOKIE
#define SO_COOKIE 57
#endif

namespace ctmon {

namespace {

// The thread's namespace's nf_conntrack_max: a namespace never holds more entries.
uint32_t default_max_flows() {
  char text[32];
  const int64_t max = read_small_file("/proc/sys/net/netfilter/nf_conntrack_max", text)
                          ? parse_sysctl_integer(text)
                          : -1;
  constexpr int64_t kFloor = 1 << 12, kCeiling = 1 << 22;
  return static_cast<uint32_t>(max < kFloor ? (max < 0 ? 1 << 18 : kFloor)
                                            : (max > kCeiling ? kCeiling : max));
}

Status explain(Status st) {
  if (st.code == EPERM)
    st.message +=
        " (loading a socket filter needs CAP_BPF or CAP_SYS_ADMIN, or "
        "kernel.unprivileged_bpf_disabled=0)";
  return st;
}

}  // namespace

Status EventCounter::open(const EventCounterOptions& options, VerifierStats* stats) {
  close();
  const bool monitor = options.variant == EventProgramVariant::kMonitor;
  const BpfObjectImage& image = kCtEventsImage;
  max_namespaces_ = monitor ? std::max<uint32_t>(1, options.max_namespaces) : 1;
  Status st = create_map(image, "ct_counters", max_namespaces_, counters_);
  if (st.ok() && monitor) {
    // Buckets of 8 slots for 2 x max_flows slots: at a full namespace table (nf_conntrack_max
    // entries) ~2% of buckets overflow and their flows go to user space.
    const uint32_t max_flows = options.max_flows != 0 ? options.max_flows : default_max_flows();
    flow_buckets_ = 1024;
    while (flow_buckets_ < max_flows / 4 && flow_buckets_ < (1u << 22)) flow_buckets_ *= 2;
    st = create_map(image, "ct_flows", flow_buckets_, flows_);
    if (st.ok()) {
      table_bytes_ = static_cast<size_t>(flow_buckets_) * sizeof(ct_flow_bucket);
      void* p = ::mmap(nullptr, table_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, flows_.get(), 0);
      if (p == MAP_FAILED) {
        table_bytes_ = 0;
        st = bpf_failure("mmap", "map the flow table");
      } else {
        table_ = static_cast<ct_flow_bucket*>(p);
      }
    }
    if (st.ok()) st = create_map(image, "ct_namespaces", max_namespaces_, namespaces_);
    if (st.ok()) st = create_map(image, "ct_gone", 0, gone_);
    if (st.ok()) st = create_map(image, "ct_control", 0, control_);
    key_seed_ = options.key_seed;
    if (st.ok() && key_seed_ == 0 &&
        ::getrandom(&key_seed_, sizeof key_seed_, 0) != sizeof key_seed_)
      st = bpf_failure("getrandom", "seed the flow keys");
    if (st.ok()) {
      const uint32_t key = 0;
      ct_control value{};
      value.bucket_mask = flow_buckets_ - 1;
      value.key_seed = key_seed_;
      if (!update_element(control_.get(), &key, &value).ok())
        st = bpf_failure("bpf", "BPF_MAP_UPDATE_ELEM ct_control");
    }
  }
  if (!st.ok()) return close(), explain(st);

  BpfProgramOptions load;
  // Tests set another type to make the kernel refuse the load (fault_injection.h).
  load.type =
      static_cast<uint32_t>(fault_injection().event_program_type.load(std::memory_order_relaxed));
  load.collect_stats = stats != nullptr;
  if (monitor) {
    st = load_program(image, "ct_monitor",
                      {{"ct_counters", counters_.get()},
                       {"ct_flows", flows_.get()},
                       {"ct_namespaces", namespaces_.get()},
                       {"ct_gone", gone_.get()},
                       {"ct_control", control_.get()}},
                      load, program_, stats);
  } else {
    st = load_program(image, "ct_count", {{"ct_counters", counters_.get()}}, load, program_, stats);
  }
  if (!st.ok()) return close(), explain(st);
  return Status{};
}

void EventCounter::close() {
  unmap();
  program_.reset();
  counters_.reset();
  flows_.reset();
  namespaces_.reset();
  gone_.reset();
  control_.reset();
  key_seed_ = 0;
  flow_buckets_ = 0;
}

void EventCounter::unmap() {
  if (table_ != nullptr) ::munmap(table_, table_bytes_);
  table_ = nullptr;
  table_bytes_ = 0;
}

Status EventCounter::attach(int socket_fd) const {
  const int fd = program_.get();
  if (fd < 0) return Status{EBADF, "SO_ATTACH_BPF"};
  if (::setsockopt(socket_fd, SOL_SOCKET, SO_ATTACH_BPF, &fd, sizeof fd) != 0)
    return Status::from_errno("SO_ATTACH_BPF");
  return Status{};
}

Status EventCounter::register_namespace(int socket_fd, uint32_t index, uint64_t& cookie) {
  if (index >= max_namespaces_) return Status{ENOSPC, "bpf", "register a network namespace"};
  socklen_t len = sizeof cookie;
  if (::getsockopt(socket_fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0)
    return Status::from_errno("getsockopt").in("read the event socket's cookie (SO_COOKIE)");
  // A namespace index reused: its counters start again from zero.
  std::vector<uint8_t> zeros(sizeof(ct_counters) * std::max(1u, possible_cpus()));
  Status st = update_element(counters_.get(), &index, zeros.data());
  const ct_namespace value{index, 0};
  if (st.ok()) st = update_element(namespaces_.get(), &cookie, &value);
  return st.in("register a network namespace");
}

Status EventCounter::unregister_namespace(uint64_t cookie) {
  bpf_attr attr{};
  attr.map_fd = static_cast<uint32_t>(namespaces_.get());
  attr.key = bpf_ptr(&cookie);
  if (sys_bpf(BPF_MAP_DELETE_ELEM, attr) != 0 && errno != ENOENT)
    return Status::from_errno("bpf").in("forget a network namespace");
  return Status{};
}

Status EventCounter::set_listing(uint64_t cookie, uint32_t index, bool listing) const {
  const ct_namespace value{index, listing ? CT_NS_LISTING : 0u};
  return update_element(namespaces_.get(), &cookie, &value).in("mark a listing");
}

Status EventCounter::read(uint32_t index, ct_counters& out) const {
  out = ct_counters{};
  const Status st = lookup_per_cpu(counters_.get(), index, sizeof(ct_counters), per_cpu_);
  if (!st.ok()) return st;
  // Every field is 64 bits wide, so the struct is summed word by word.
  static_assert(sizeof(ct_counters) % sizeof(uint64_t) == 0, "64-bit fields only");
  constexpr size_t kWords = sizeof(ct_counters) / sizeof(uint64_t);
  uint64_t sum[kWords] = {};
  for (size_t cpu = 0; cpu < per_cpu_.size() / sizeof(ct_counters); ++cpu) {
    uint64_t words[kWords];
    std::memcpy(words, per_cpu_.data() + cpu * sizeof(ct_counters), sizeof words);
    for (size_t i = 0; i < kWords; ++i) sum[i] += words[i];
  }
  std::memcpy(&out, sum, sizeof out);
  return Status{};
}

bool EventCounter::gone(uint64_t key) const {
  uint8_t value = 0;
  bpf_attr attr{};
  attr.map_fd = static_cast<uint32_t>(gone_.get());
  attr.key = bpf_ptr(&key);
  attr.value = bpf_ptr(&value);
  return sys_bpf(BPF_MAP_LOOKUP_ELEM, attr) == 0;
}

bool EventCounter::next_gone(const uint64_t* key, uint64_t& next) const {
  bpf_attr attr{};
  attr.map_fd = static_cast<uint32_t>(gone_.get());
  attr.key = key != nullptr ? bpf_ptr(key) : 0;  // NULL: the first key
  attr.next_key = bpf_ptr(&next);
  return sys_bpf(BPF_MAP_GET_NEXT_KEY, attr) == 0;
}

bool EventCounter::any_gone() const {
  uint64_t first = 0;
  return next_gone(nullptr, first);
}

void EventCounter::clear_gone() const {
  // Delete the keys one by one (a new map would need the program reloaded), each after the
  // next one is known: asked for the key after a deleted one, the kernel starts again from its
  // first bucket, which made a clear of n keys scan the 65,536 buckets n times.
  uint64_t key = 0, next = 0;
  for (bool more = next_gone(nullptr, key); more; key = next) {
    more = next_gone(&key, next);
    bpf_attr del{};
    del.map_fd = static_cast<uint32_t>(gone_.get());
    del.key = bpf_ptr(&key);
    sys_bpf(BPF_MAP_DELETE_ELEM, del);
  }
}

}  // namespace ctmon
