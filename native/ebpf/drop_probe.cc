// drop_probe.cc — see drop_probe.h.
//
// Why tp_btf and not the classic tracepoint: it needs no tracefs (not mounted on every host;
// the classic form needs events/skb/kfree_skb/id and /format from it) and no perf_event_open,
// its context is the tracepoint's C arguments (typed by BTF, so the verifier checks every
// direct load against struct sk_buff and friends), and the hot path reads no memory outside
// the context. Both forms passed the verifier on 6.18 when measured.
#include "ebpf/drop_probe.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/fault_injection.h"
#include "base/read_file.h"
#include "ebpf/btf.h"
#include "ebpf/kallsyms.h"

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif

namespace ctmon {

namespace {

constexpr int kEnotsupp = 524;  // the kernel-internal ENOTSUPP that bpf() can leak

// Loading a tracing program needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN (kernels before
// 5.8 know only the latter).
Status check_capabilities() {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return Status::from_errno("capget");
  const auto has = [&](unsigned cap) { return (data[cap / 32].effective >> (cap % 32)) & 1u; };
  if (has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON))) return Status{};
  return Status::failure("needs CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN");
}

// Lockdown "confidentiality" takes bpf_probe_read_kernel away. securityfs may not be mounted;
// then the verifier's refusal ("unknown func bpf_probe_read_kernel") is what reports it.
Status check_lockdown() {
  char level[512] = "";
  read_small_file("/sys/kernel/security/lockdown", level);
  if (std::strstr(level, "[confidentiality]") != nullptr)
    return Status::failure(
        "kernel lockdown is at \"confidentiality\", which forbids reading kernel memory from BPF");
  return Status{};
}

// Finds the btf_trace_kfree_skb argument slots by type: vmlinux BTF has no parameter names.
Status find_arguments(const Btf& btf, uint32_t& typedef_id, DropProgramLayout& l) {
  Status st = btf.typedef_id("btf_trace_kfree_skb", typedef_id);
  if (!st.ok())
    return Status::failure(st.text() + " (no skb:kfree_skb tracepoint in this kernel's BTF)");
  std::vector<Btf::Param> params;
  st = btf.function_params(typedef_id, params);
  if (!st.ok()) return st;
  for (size_t i = 1; i < params.size(); ++i) {  // [0] is `void *__data`
    const int slot = static_cast<int>(i - 1);
    int* target = nullptr;
    if (params[i].type == "struct sk_buff *")
      target = &l.arg_skb;
    else if (params[i].type == "enum skb_drop_reason")
      target = &l.arg_reason;
    else if (params[i].type == "void *")
      target = &l.arg_location;
    if (target == nullptr) continue;
    if (*target >= 0)
      return Status::failure("kfree_skb has two arguments of type " + params[i].type);
    *target = slot;
  }
  if (l.arg_skb < 0 || l.arg_reason < 0 || l.arg_location < 0)
    return Status::failure(
        "kfree_skb lacks an skb, location or drop reason argument (kernel older than 5.17?)");
  return Status{};
}

Status find_offsets(const Btf& btf, DropProgramLayout& l) {
  const struct {
    const char* type;
    const char* path;
    BtfMember* out;
  } members[] = {
      {"sk_buff", "_nfct", &l.skb_nfct},
      {"sk_buff", "dev", &l.skb_dev},
      {"sk_buff", "sk", &l.skb_sk},
      {"sk_buff", "_skb_refdst", &l.skb_refdst},
      {"sk_buff", "head", &l.skb_head},
      {"sk_buff", "network_header", &l.skb_network_header},
      {"net_device", "nd_net.net", &l.device_net},
      {"sock", "__sk_common.skc_net.net", &l.socket_net},
      {"dst_entry", "dev", &l.route_device},
      {"net", "ns.inum", &l.net_inode},
  };
  for (const auto& m : members) {
    const Status st = btf.member(m.type, m.path, *m.out);
    if (!st.ok()) return st;
  }
  int64_t reason = 0;
  const Status st = btf.enumerator("SKB_DROP_REASON_NETFILTER_DROP", reason);
  if (!st.ok()) return st;
  if (reason < 0 || reason > UINT32_MAX)
    return Status::failure("SKB_DROP_REASON_NETFILTER_DROP is out of range");
  l.drop_reason = static_cast<uint32_t>(reason);
  return Status{};
}

}  // namespace

Status DropProbe::check_available(const DropProbeOptions& options) {
  DropProbe probe;
  return probe.open(options);
}

Status DropProbe::open(const DropProbeOptions& options, VerifierStats* stats) {
  close();
  Status st = check_capabilities();
  if (st.ok()) st = check_lockdown();
  if (!st.ok()) return st;

  Btf btf;
  st = btf.load();
  if (!st.ok()) return Status::failure("no kernel BTF: " + st.text(), st.code, st.syscall);
  DropProgramLayout layout;
  uint32_t attach_btf_id = 0;
  st = find_arguments(btf, attach_btf_id, layout);
  if (st.ok()) st = find_offsets(btf, layout);
  SymbolRange range;
  if (st.ok()) st = find_function_range("nf_hook_slow", range);
  if (!st.ok()) return st;
  layout.location_start = range.start;
  layout.location_end = range.end;
  layout.route_chain_only = options.route_chain_only;
  if (options.max_namespaces == 0 || options.max_flows == 0)
    return Status::failure("map sizes must be > 0");

  st = create_map(BPF_MAP_TYPE_HASH, sizeof(uint32_t), sizeof(uint64_t), options.max_namespaces, 0,
                  "ctmon_ns_drops", namespaces_);
  if (st.ok())
    st = create_map(BPF_MAP_TYPE_LRU_HASH, sizeof(DroppedFlowKey), sizeof(DroppedFlowValue),
                    options.max_flows, 0, "ctmon_drop_flow", flows_);
  if (st.ok())
    st = create_map(BPF_MAP_TYPE_ARRAY, sizeof(uint32_t), sizeof(uint64_t), kDropCounterCount, 0,
                    "ctmon_drop_stat", counters_);
  if (!st.ok()) return close(), st;
  layout.namespace_map_fd = namespaces_.get();
  layout.flow_map_fd = flows_.get();
  layout.counter_map_fd = counters_.get();

  layout.skb_nfct.offset +=
      fault_injection().drop_program_offset_delta.load(std::memory_order_relaxed);
  std::vector<bpf_insn> code;
  std::vector<int> lines;
  st = assemble_drop_program(layout, code, &lines);
  if (!st.ok()) return close(), st;
  ProgramLoad load;
  load.type = BPF_PROG_TYPE_TRACING;
  load.expected_attach_type = BPF_TRACE_RAW_TP;
  load.attach_btf_id = attach_btf_id;
  load.name = "ctmon_ct_drops";
  load.license = "GPL";  // bpf_probe_read_kernel is GPL-only
  load.source = "native/ebpf/drop_program.cc";
  load.insn_lines = &lines;
  load.collect_stats = stats != nullptr;
  st = load_program(load, code, program_, stats);
  if (!st.ok()) return close(), st;

  bpf_attr attr{};
  attr.raw_tracepoint.name = 0;  // tp_btf: the target comes from attach_btf_id
  attr.raw_tracepoint.prog_fd = static_cast<uint32_t>(program_.get());
  Fd link(static_cast<int>(sys_bpf(BPF_RAW_TRACEPOINT_OPEN, attr)));
  if (link.get() < 0) {
    st = bpf_failure("bpf", "BPF_RAW_TRACEPOINT_OPEN kfree_skb");
    return close(), st;
  }
  link_ = std::move(link);
  max_flows_ = options.max_flows;
  batch_keys_.resize(max_flows_);
  batch_values_.resize(max_flows_);
  return Status{};
}

void DropProbe::close() {
  link_.reset();  // detaches first, so the program stops before its maps go
  program_.reset();
  namespaces_.reset();
  flows_.reset();
  counters_.reset();
  max_flows_ = 0;
  batch_keys_.clear();
  batch_values_.clear();
}

Status DropProbe::read_namespaces(
    const std::function<void(uint32_t netns, uint64_t drops)>& fn) const {
  if (namespaces_.get() < 0) return Status{EBADF, "bpf"};
  uint32_t key = 0, next = 0;
  bool first = true;
  for (;;) {
    bpf_attr attr{};
    attr.map_fd = static_cast<uint32_t>(namespaces_.get());
    attr.key = first ? 0 : bpf_ptr(&key);
    attr.next_key = bpf_ptr(&next);
    if (sys_bpf(BPF_MAP_GET_NEXT_KEY, attr) != 0) {
      if (errno == ENOENT) return Status{};
      return Status::from_errno("bpf");
    }
    uint64_t drops = 0;
    bpf_attr lookup{};
    lookup.map_fd = attr.map_fd;
    lookup.key = bpf_ptr(&next);
    lookup.value = bpf_ptr(&drops);
    if (sys_bpf(BPF_MAP_LOOKUP_ELEM, lookup) == 0)
      fn(next, drops);
    else if (errno != ENOENT)
      return Status::from_errno("bpf");
    key = next;
    first = false;
  }
}

Status DropProbe::forget_namespace(uint32_t netns) {
  bpf_attr attr{};
  attr.map_fd = static_cast<uint32_t>(namespaces_.get());
  attr.key = bpf_ptr(&netns);
  if (sys_bpf(BPF_MAP_DELETE_ELEM, attr) != 0 && errno != ENOENT) return Status::from_errno("bpf");
  return Status{};
}

namespace {

DroppedFlow to_flow(const DroppedFlowKey& k, const DroppedFlowValue& v) {
  DroppedFlow f;
  f.netns = k.netns;
  f.family = k.family;
  f.protocol = k.protocol;
  std::memcpy(f.src, k.src, sizeof f.src);
  std::memcpy(f.dst, k.dst, sizeof f.dst);
  f.sport = ntohs(k.sport);
  f.dport = ntohs(k.dport);
  f.count = v.count;
  f.last_ns = v.last_ns;
  return f;
}

}  // namespace

Status DropProbe::read_and_clear_flows(const std::function<void(const DroppedFlow&)>& fn) {
  if (flows_.get() < 0) return Status{EBADF, "bpf"};
  // One LOOKUP_AND_DELETE_BATCH per bucket range: an entry is read and removed atomically, so
  // a drop counted in between lands in a new entry and is reported next time, not lost.
  uint32_t cursor = 0;
  bool first = true;
  for (;;) {
    bpf_attr attr{};
    attr.batch.in_batch = first ? 0 : bpf_ptr(&cursor);
    attr.batch.out_batch = bpf_ptr(&cursor);
    attr.batch.keys = bpf_ptr(batch_keys_.data());
    attr.batch.values = bpf_ptr(batch_values_.data());
    attr.batch.count = max_flows_;
    attr.batch.map_fd = static_cast<uint32_t>(flows_.get());
    const long rc = sys_bpf(BPF_MAP_LOOKUP_AND_DELETE_BATCH, attr);
    const int err = rc == 0 ? 0 : errno;
    if (first && (err == EINVAL || err == kEnotsupp)) break;  // kernel < 5.6: the slow path below
    if (err != 0 && err != ENOENT) return Status{err, "bpf"};
    for (uint32_t i = 0; i < attr.batch.count && i < max_flows_; ++i)
      fn(to_flow(batch_keys_[i], batch_values_[i]));
    if (err == ENOENT) return Status{};  // that was the last batch
    first = false;
  }
  // Without batch operations: list the keys, then look each up and delete it. A drop counted
  // between the two calls is lost; the namespace count still has it.
  size_t n = 0;
  DroppedFlowKey next{};
  for (bool start = true; n < batch_keys_.size(); start = false) {
    bpf_attr attr{};
    attr.map_fd = static_cast<uint32_t>(flows_.get());
    attr.key = start ? 0 : bpf_ptr(&batch_keys_[n - 1]);
    attr.next_key = bpf_ptr(&next);
    if (sys_bpf(BPF_MAP_GET_NEXT_KEY, attr) != 0) {
      if (errno == ENOENT) break;
      return Status::from_errno("bpf");
    }
    batch_keys_[n++] = next;
  }
  for (size_t i = 0; i < n; ++i) {
    bpf_attr attr{};
    attr.map_fd = static_cast<uint32_t>(flows_.get());
    attr.key = bpf_ptr(&batch_keys_[i]);
    attr.value = bpf_ptr(&batch_values_[0]);
    if (sys_bpf(BPF_MAP_LOOKUP_ELEM, attr) != 0) continue;  // evicted meanwhile
    sys_bpf(BPF_MAP_DELETE_ELEM, attr);
    fn(to_flow(batch_keys_[i], batch_values_[0]));
  }
  return Status{};
}

Status DropProbe::read_counters(uint64_t (&counters)[kDropCounterCount]) const {
  for (uint32_t slot = 0; slot < kDropCounterCount; ++slot) {
    bpf_attr attr{};
    attr.map_fd = static_cast<uint32_t>(counters_.get());
    attr.key = bpf_ptr(&slot);
    attr.value = bpf_ptr(&counters[slot]);
    if (sys_bpf(BPF_MAP_LOOKUP_ELEM, attr) != 0) return Status::from_errno("bpf");
  }
  return Status{};
}

Status DropProbe::read_program_stats(ProgramStats& out) const {
  bpf_prog_info info{};
  bpf_attr attr{};
  attr.info.bpf_fd = static_cast<uint32_t>(program_.get());
  attr.info.info_len = sizeof info;
  attr.info.info = bpf_ptr(&info);
  if (sys_bpf(BPF_OBJ_GET_INFO_BY_FD, attr) != 0) return Status::from_errno("bpf");
  out.id = info.id;
  out.instructions = info.xlated_prog_len / sizeof(bpf_insn);
  out.run_count = info.run_cnt;
  out.run_time_ns = info.run_time_ns;
  out.recursion_misses = info.recursion_misses;
  return Status{};
}

Status DropProbe::enable_run_time_stats(Fd& out) {
  bpf_attr attr{};
  attr.enable_stats.type = BPF_STATS_RUN_TIME;
  Fd fd(static_cast<int>(sys_bpf(BPF_ENABLE_STATS, attr)));
  if (fd.get() < 0) return Status::from_errno("bpf");
  out = std::move(fd);
  return Status{};
}

}  // namespace ctmon
