// event_counter.cc — see event_counter.h.
#include "ebpf/event_counter.h"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/fault_injection.h"

#ifndef SO_ATTACH_BPF
#define SO_ATTACH_BPF 50
#endif

namespace ctmon {

namespace {

// BPF_PROG_TEST_RUN builds a socket filter's skb as if from a device: it pulls an Ethernet
// header (eth_type_trans) before the program runs, so the message goes after 14 bytes.
constexpr size_t kTestRunPrefix = 14;

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
  ProbeStatus st = create_map(BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(uint32_t), sizeof(EventCounters), 1,
                              0, "ctmon_ev_count", counters_);
  if (!st.ok()) return close(), explain(st);

  EventProgramLayout layout;
  layout.variant = options.variant;
  layout.counters_map_fd = counters_.get();
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

}  // namespace ctmon
