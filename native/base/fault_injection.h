// fault_injection.h — test-only redirections that make the real kernel fail the way a kernel
// without a feature would: a netlink protocol it does not implement (socket() answers
// EPROTONOSUPPORT, as on a kernel without nfnetlink) or an nfnetlink subsystem nobody
// registered (every request answers EINVAL, as on a kernel without nf_conntrack_netlink), or a
// BPF program type the kernel refuses to load (as one without eBPF socket filters, or a
// process without CAP_BPF, would).
// The tests set them through the binding's _injectFaults hook and restore them after; the
// defaults are the real values, so outside tests nothing else is ever read.
#pragma once

#include <linux/bpf.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netlink.h>

#include <atomic>

namespace ctmon {

struct FaultInjection {
  std::atomic<int> netlink_protocol{NETLINK_NETFILTER};
  std::atomic<int> ctnetlink_subsystem{
      NFNL_SUBSYS_CTNETLINK};  // requests only; events come by group
  std::atomic<int> event_program_type{BPF_PROG_TYPE_SOCKET_FILTER};  // the event socket's filter
  // The reader thread waits this long before opening the namespace file, as open() on a hung
  // filesystem would: start() must give up on it in bounded time.
  std::atomic<int> open_namespace_delay_ms{0};
  // Added to sk_buff._nfct's offset in the drop program: the verifier refuses the misplaced
  // load, as it would a layout read from a wrong BTF.
  std::atomic<int> drop_program_offset_delta{0};
};

inline FaultInjection& fault_injection() {
  static FaultInjection faults;
  return faults;
}

}  // namespace ctmon
