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

namespace ctmon {

namespace {

// BPF_PROG_TEST_RUN builds a socket filter's skb as if from a device: it pulls an Ethernet
// header (eth_type_trans) before the program runs, so the message goes after 14 bytes.
constexpr size_t kTestRunPrefix = 14;

// The thread's namespace's nf_conntrack_max: a namespace never holds more entries. The
// buckets cost 16 bytes per entry of it (hash maps round it up to a power of two).
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
  Status st = create_map(image, "ct_counters", 0, counters_);
  if (st.ok() && monitor) {
    // Buckets of 8 slots for 2 x max_flows slots: at a full namespace table (nf_conntrack_max
    // entries, all of them UDP) ~2% of buckets overflow and their NEWs go to user space.
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
    if (st.ok()) st = create_map(image, "ct_wheel", 0, wheel_);
    if (st.ok()) st = create_map(image, "ct_control", 0, control_);
    key_seed_ = options.key_seed;
    if (st.ok() && key_seed_ == 0 &&
        ::getrandom(&key_seed_, sizeof key_seed_, 0) != sizeof key_seed_)
      st = bpf_failure("getrandom", "seed the flow keys");
    if (st.ok() && !set_control(0).ok()) st = bpf_failure("bpf", "BPF_MAP_UPDATE_ELEM ct_control");
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
                       {"ct_wheel", wheel_.get()},
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
  wheel_.reset();
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
  if (fd < 0) return Status{EBADF, "setsockopt"};
  if (::setsockopt(socket_fd, SOL_SOCKET, SO_ATTACH_BPF, &fd, sizeof fd) != 0)
    return Status::from_errno("setsockopt");
  return Status{};
}

Status EventCounter::read(ct_counters& out) const {
  out = ct_counters{};
  const Status st = lookup_per_cpu(counters_.get(), 0, sizeof(ct_counters), per_cpu_);
  if (!st.ok()) return st;
  // Every field is 64 bits wide, so the struct is summed word by word.
  static_assert(sizeof(ct_counters) % sizeof(uint64_t) == 0, "64-bit fields only");
  constexpr size_t kWords = sizeof(ct_counters) / sizeof(uint64_t);
  uint64_t sum[kWords] = {};
  for (size_t cpu = 0; cpu < per_cpu_.size() / sizeof(ct_counters); ++cpu) {
    uint64_t words[kWords];
    std::memcpy(words, per_cpu_.data() + cpu * sizeof(ct_counters), sizeof words);
    for (size_t i = 0; i < kWords; ++i) sum[i] += words[i];  // wraps: int64 fields sum right
  }
  std::memcpy(&out, sum, sizeof out);
  return Status{};
}

Status EventCounter::test_run(const uint8_t* message, size_t length, uint32_t& verdict) const {
  if (length > UINT16_MAX) return Status{EMSGSIZE, "bpf"};  // a netlink message is smaller
  std::vector<uint8_t> data(kTestRunPrefix + length);
  std::copy(message, message + length, data.begin() + kTestRunPrefix);
  return ctmon::test_run(program_.get(), data.data(), data.size(), verdict);
}

Status EventCounter::read_wheel(uint32_t slot, ct_wheel_slot& out) const {
  out = ct_wheel_slot{};
  const Status st = lookup_per_cpu(wheel_.get(), slot, sizeof(ct_wheel_slot), per_cpu_);
  if (!st.ok()) return st;
  // Each CPU's copy is padded to 8 bytes; a slot is 16.
  static_assert(sizeof(ct_wheel_slot) % 8 == 0, "no padding between CPUs' copies");
  for (size_t off = 0; off + sizeof(ct_wheel_slot) <= per_cpu_.size();
       off += sizeof(ct_wheel_slot)) {
    ct_wheel_slot cpu;
    std::memcpy(&cpu, per_cpu_.data() + off, sizeof cpu);
    for (uint32_t c = 0; c < CT_TRACKED_CLASSES; ++c)
      out.flows[c] = static_cast<int32_t>(static_cast<uint32_t>(out.flows[c]) +
                                          static_cast<uint32_t>(cpu.flows[c]));
  }
  return Status{};
}

Status EventCounter::set_control(uint32_t bits) const {
  const uint32_t key = 0;
  ct_control value{};
  value.bits = bits;
  value.bucket_mask = flow_buckets_ - 1;
  value.key_seed = key_seed_;
  bpf_attr attr{};
  attr.map_fd = static_cast<uint32_t>(control_.get());
  attr.key = bpf_ptr(&key);
  attr.value = bpf_ptr(&value);
  attr.flags = BPF_ANY;
  if (sys_bpf(BPF_MAP_UPDATE_ELEM, attr) != 0) return Status::from_errno("bpf");
  return Status{};
}

void EventCounter::for_each_flow(
    const std::function<void(const ct_flow_slot& seen, ct_flow_slot& slot)>& fn) const {
  for (uint32_t b = 0; table_ != nullptr && b < flow_buckets_; ++b) {
    for (ct_flow_slot& slot : table_[b].slots) {
      ct_flow_slot seen;
      seen.key = __atomic_load_n(&slot.key, __ATOMIC_ACQUIRE);
      if (seen.key == 0) continue;
      seen.deadline_ds = __atomic_load_n(&slot.deadline_ds, __ATOMIC_RELAXED);
      seen.meta = __atomic_load_n(&slot.meta, __ATOMIC_RELAXED);
      fn(seen, slot);
    }
  }
}

bool EventCounter::release_flow(ct_flow_slot& slot, uint64_t key) {
  __u64 expected = key;
  return __atomic_compare_exchange_n(&slot.key, &expected, __u64{0}, false, __ATOMIC_SEQ_CST,
                                     __ATOMIC_SEQ_CST);
}

}  // namespace ctmon
