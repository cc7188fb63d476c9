// drop_program.h — the BPF program behind DropProbe, assembled as raw instructions, and the
// map layouts it shares with user space. Assembled rather than compiled from C because its
// loads use offsets read from the running kernel's BTF at load time: in C that is CO-RE, which
// needs libbpf's relocation engine; here it is a parameter. drop_program.lst lists it.
//
// Pure: it turns offsets and map fds into instructions and makes no system call, so it can be
// unit-tested or fuzzed. drop_probe.cc gathers the inputs (BTF, kallsyms) and loads the result.
// No Node-API.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <string>
#include <vector>

#include "ebpf/btf.h"

namespace ctmon {

// Key of the flow map (BPF_MAP_TYPE_LRU_HASH). Every byte is written by the program (the key
// is zeroed first), so equal flows hash equally.
struct DroppedFlowKey {
  uint32_t netns;    // network namespace inode (net->ns.inum)
  uint8_t family;    // AF_INET, AF_INET6, 0 when the packet was not IP
  uint8_t protocol;  // IPPROTO_*
  uint16_t reserved;
  uint8_t src[16];  // IPv4 in the first 4 bytes
  uint8_t dst[16];
  uint16_t sport;  // network byte order; 0 for protocols without ports and for fragments
  uint16_t dport;
};
static_assert(sizeof(DroppedFlowKey) == 44, "the program writes this layout by offset");

struct DroppedFlowValue {
  uint64_t count;    // drops of this flow since the entry was created
  uint64_t last_ns;  // bpf_ktime_get_ns() (CLOCK_MONOTONIC) of the latest drop
};

// Slots of the counter map (BPF_MAP_TYPE_ARRAY of u64), for diagnosis: which chain gave the
// namespace, and what could not be recorded.
enum DropCounter : uint32_t {
  kNetfilterDrops = 0,  // reason == NETFILTER_DROP, from anywhere (nft rules included)
  kFreedByHookSlow,     // ... and freed in nf_hook_slow
  kDropsMatched,        // ... and skb->_nfct == 0: the table-full signature, counted
  kNetnsFromDevice,     // skb->dev->nd_net (ingress, forward, post-routing)
  kNetnsFromSocket,     // skb->sk->__sk_common.skc_net (local out)
  kNetnsFromRoute,      // skb_dst(skb)->dev->nd_net (no device, no socket)
  kNetnsUnknown,        // none of the three: counted under namespace 0
  kNamespaceMapFull,    // the drop was not counted per namespace
  kFlowMapFailed,       // the flow could not be inserted (LRU eviction normally prevents it)
  kNotIp,               // no IPv4/IPv6 header at network_header: no flow sampled
  kDropCounterCount
};

struct DropProgramLayout {
  // tp_btf context slots (u64 each) of btf_trace_kfree_skb, __data excluded.
  int arg_skb = -1;
  int arg_location = -1;
  int arg_reason = -1;
  uint32_t drop_reason = 0;                       // SKB_DROP_REASON_NETFILTER_DROP
  uint64_t location_start = 0, location_end = 0;  // [nf_hook_slow, next symbol)
  // From BTF.
  BtfMember skb_nfct, skb_dev, skb_sk, skb_refdst, skb_head, skb_network_header;
  BtfMember device_net;    // net_device.nd_net.net
  BtfMember socket_net;    // sock.__sk_common.skc_net.net
  BtfMember route_device;  // dst_entry.dev
  BtfMember net_inode;     // net.ns.inum
  // Maps (fds of this process, embedded as BPF_PSEUDO_MAP_FD).
  int namespace_map_fd = -1;
  int flow_map_fd = -1;
  int counter_map_fd = -1;
  // Test hook: skip the device and socket chains so the route chain is exercised.
  bool route_chain_only = false;
};

// Assembles the program; a failure says which input is unusable. `lines`, when given, gets
// per instruction the line of drop_program.cc that emitted it (its line info).
Status assemble_drop_program(const DropProgramLayout& layout, std::vector<bpf_insn>& out,
                             std::vector<int>* lines = nullptr);

}  // namespace ctmon
