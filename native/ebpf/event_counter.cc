// event_counter.cc — see event_counter.h.
#include "ebpf/event_counter.h"

#include <sys/random.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/fault_injection.h"
#include "base/proc_text.h"
#include "base/read_file.h"

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

ProbeStatus explain(ProbeStatus st) {
  if (st.sys.code == EPERM)
    st.reason +=
        " (loading a socket filter needs CAP_BPF or CAP_SYS_ADMIN, or "
        "kernel.unprivileged_bpf_disabled=0)";
  return st;
}

}  // namespace

ProbeStatus EventCounter::open(const EventCounterOptions& options) {
  close();
  const bool monitor = options.variant == EventProgramVariant::kMonitor;
  ProbeStatus st = create_map(BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(uint32_t), sizeof(EventCounters), 1,
                              0, "ctmon_ev_count", counters_);
  if (st.ok() && monitor) {
    max_flows_ = options.max_flows != 0 ? options.max_flows : default_max_flows();
    // Allocated as flows come (BPF_F_NO_PREALLOC): only the buckets are taken up front.
    st = create_map(BPF_MAP_TYPE_HASH, sizeof(uint64_t), sizeof(FlowValue), max_flows_,
                    BPF_F_NO_PREALLOC, "ctmon_ev_flows", flows_);
    if (st.ok())
      st = create_map(BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(uint32_t), sizeof(WheelSlot), kWheelSlots,
                      0, "ctmon_ev_wheel", wheel_);
    if (st.ok())
      st = create_map(BPF_MAP_TYPE_ARRAY, sizeof(uint32_t), sizeof(EventControlValue), 1, 0,
                      "ctmon_ev_ctl", control_);
    if (st.ok() && !set_control(0).ok())
      st = bpf_failure("bpf", "BPF_MAP_UPDATE_ELEM ctmon_ev_ctl");
    // DESTROYs during one dump: a dump of a full table takes about a second.
    if (st.ok())
      st = create_map(BPF_MAP_TYPE_HASH, sizeof(uint64_t), sizeof(uint32_t),
                      std::max<uint32_t>(max_flows_ / 4, 1024), BPF_F_NO_PREALLOC, "ctmon_ev_grave",
                      graveyard_);
    if (st.ok() && ::getrandom(&key_seed_, sizeof key_seed_, 0) != sizeof key_seed_)
      st = bpf_failure("getrandom", "seed the flow keys");
  }
  if (!st.ok()) return close(), explain(st);

  EventProgramLayout layout;
  layout.variant = options.variant;
  layout.counters_map_fd = counters_.get();
  layout.flows_map_fd = flows_.get();
  layout.wheel_map_fd = wheel_.get();
  layout.control_map_fd = control_.get();
  layout.graveyard_map_fd = graveyard_.get();
  layout.key_seed = key_seed_;
  std::vector<bpf_insn> code;
  const std::string error = assemble_event_program(layout, code);
  if (!error.empty()) return close(), ProbeStatus{SysStatus{}, error};

  ProgramLoad load;
  // Tests set another type to make the kernel refuse the load (fault_injection.h).
  load.type =
      static_cast<uint32_t>(fault_injection().event_program_type.load(std::memory_order_relaxed));
  load.name = "ctmon_ct_events";
  load.license = "Dual MIT/GPL";
  st = load_program(load, code, program_);
  if (!st.ok()) return close(), explain(st);
  return ProbeStatus{};
}

void EventCounter::close() {
  program_.reset();
  counters_.reset();
  flows_.reset();
  wheel_.reset();
  control_.reset();
  graveyard_.reset();
  key_seed_ = 0;
  max_flows_ = 0;
}

SysStatus EventCounter::attach(int socket_fd) const {
  const int fd = program_.get();
  if (fd < 0) return SysStatus{EBADF, "setsockopt"};
  if (::setsockopt(socket_fd, SOL_SOCKET, SO_ATTACH_BPF, &fd, sizeof fd) != 0)
    return SysStatus::from_errno("setsockopt");
  return SysStatus{};
}

SysStatus EventCounter::read(EventCounters& out) const {
  out = EventCounters{};
  const SysStatus st = lookup_per_cpu(counters_.get(), 0, sizeof(EventCounters), per_cpu_);
  if (!st.ok()) return st;
  // Every field is 64 bits wide, so the struct is summed word by word.
  constexpr size_t kWords = sizeof(EventCounters) / sizeof(uint64_t);
  uint64_t sum[kWords] = {};
  for (size_t cpu = 0; cpu < per_cpu_.size() / sizeof(EventCounters); ++cpu) {
    uint64_t words[kWords];
    std::memcpy(words, per_cpu_.data() + cpu * sizeof(EventCounters), sizeof words);
    for (size_t i = 0; i < kWords; ++i) sum[i] += words[i];  // wraps: int64 fields sum right
  }
  std::memcpy(&out, sum, sizeof out);
  return SysStatus{};
}

SysStatus EventCounter::test_run(const uint8_t* message, size_t length, uint32_t& verdict) const {
  if (length > UINT16_MAX) return SysStatus{EMSGSIZE, "bpf"};  // a netlink message is smaller
  std::vector<uint8_t> data(kTestRunPrefix + length);
  std::copy(message, message + length, data.begin() + kTestRunPrefix);
  return ctmon::test_run(program_.get(), data.data(), data.size(), verdict);
}

SysStatus EventCounter::read_wheel(uint32_t slot, WheelSlot& out) const {
  out = WheelSlot{};
  const SysStatus st = lookup_per_cpu(wheel_.get(), slot, sizeof(WheelSlot), per_cpu_);
  if (!st.ok()) return st;
  // Each CPU's copy is padded to 8 bytes; WheelSlot is 16.
  for (size_t off = 0; off + sizeof(WheelSlot) <= per_cpu_.size(); off += sizeof(WheelSlot)) {
    WheelSlot cpu;
    std::memcpy(&cpu, per_cpu_.data() + off, sizeof cpu);
    for (uint32_t c = 0; c < kTrackedClassCount; ++c)
      out.flows[c] = static_cast<int32_t>(static_cast<uint32_t>(out.flows[c]) +
                                          static_cast<uint32_t>(cpu.flows[c]));
  }
  return SysStatus{};
}

SysStatus EventCounter::set_control(uint32_t bits) const {
  const uint32_t key = 0;
  EventControlValue value;
  value.bits = bits;
  bpf_attr attr{};
  attr.map_fd = static_cast<uint32_t>(control_.get());
  attr.key = bpf_ptr(&key);
  attr.value = bpf_ptr(&value);
  attr.flags = BPF_ANY;
  if (sys_bpf(BPF_MAP_UPDATE_ELEM, attr) != 0) return SysStatus::from_errno("bpf");
  return SysStatus{};
}

SysStatus EventCounter::for_each_flow(
    const std::function<void(uint64_t key, const FlowValue&)>& fn) const {
  return batch(flows_.get(), false, sizeof(FlowValue), [&](uint64_t key, const uint8_t* value) {
    FlowValue v;
    std::memcpy(&v, value, sizeof v);
    fn(key, v);
  });
}

SysStatus EventCounter::drain_graveyard(const std::function<void(uint64_t key)>& fn) const {
  return batch(graveyard_.get(), true, sizeof(uint32_t),
               [&](uint64_t key, const uint8_t*) { fn(key); });
}

SysStatus EventCounter::delete_flow(uint64_t key) const {
  bpf_attr attr{};
  attr.map_fd = static_cast<uint32_t>(flows_.get());
  attr.key = bpf_ptr(&key);
  if (sys_bpf(BPF_MAP_DELETE_ELEM, attr) != 0 && errno != ENOENT)
    return SysStatus::from_errno("bpf");
  return SysStatus{};
}

SysStatus EventCounter::batch(
    int map_fd, bool and_delete, size_t value_size,
    const std::function<void(uint64_t key, const uint8_t* value)>& fn) const {
  // A batch must hold a whole bucket's elements (else ENOSPC); buckets hold few.
  constexpr uint32_t kBatch = 1024;
  batch_keys_.resize(kBatch);
  batch_values_.resize(kBatch * value_size);
  uint64_t cursor = 0;  // the kernel's position token (a bucket index for hash maps)
  for (bool first = true;; first = false) {
    bpf_attr attr{};
    attr.batch.in_batch = first ? 0 : bpf_ptr(&cursor);
    attr.batch.out_batch = bpf_ptr(&cursor);
    attr.batch.keys = bpf_ptr(batch_keys_.data());
    attr.batch.values = bpf_ptr(batch_values_.data());
    attr.batch.count = kBatch;
    attr.batch.map_fd = static_cast<uint32_t>(map_fd);
    const long rc =
        sys_bpf(and_delete ? BPF_MAP_LOOKUP_AND_DELETE_BATCH : BPF_MAP_LOOKUP_BATCH, attr);
    const int err = rc == 0 ? 0 : errno;
    if (err != 0 && err != ENOENT) return SysStatus{err, "bpf"};
    for (uint32_t i = 0; i < attr.batch.count && i < kBatch; ++i)
      fn(batch_keys_[i], batch_values_.data() + i * value_size);
    if (err == ENOENT) return SysStatus{};  // that was the last batch
  }
}

}  // namespace ctmon
