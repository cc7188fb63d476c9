// drop_program_listing.cc — prints the assembled drop program (native/ebpf/drop_program.cc) as
// JSON, one [code, dst, src, off, imm, line] per instruction, for npm run build:bpf to write
// native/ebpf/drop_program.lst. The layout below is this project's reference kernel's (6.18):
// at load time the offsets come from the running kernel's BTF, the map fds from the maps just
// created, and the address range from /proc/kallsyms, so a live program differs in those
// operands only.
#include <cstdio>

#include "ebpf/drop_program.h"

int main() {
  ctmon::DropProgramLayout l;
  l.arg_skb = 0;  // btf_trace_kfree_skb(void *, struct sk_buff *, void *, enum ..., ...)
  l.arg_location = 1;
  l.arg_reason = 2;
  l.drop_reason = 12;  // SKB_DROP_REASON_NETFILTER_DROP
  l.location_start = 0xffffffff81000000;  // [nf_hook_slow, next symbol)
  l.location_end = 0xffffffff81000200;
  const auto member = [](uint32_t offset, uint32_t size, bool pointer) {
    ctmon::BtfMember m;
    m.offset = offset;
    m.size = size;
    m.pointer = pointer;
    return m;
  };
  l.skb_nfct = member(104, 8, false);
  l.skb_dev = member(16, 8, true);
  l.skb_sk = member(24, 8, true);
  l.skb_refdst = member(88, 8, false);
  l.skb_head = member(192, 8, true);
  l.skb_network_header = member(180, 2, false);
  l.device_net = member(264, 8, true);
  l.socket_net = member(48, 8, true);
  l.route_device = member(0, 8, true);
  l.net_inode = member(184, 4, false);
  l.namespace_map_fd = 1;  // shown as map[1], map[2], map[3]
  l.flow_map_fd = 2;
  l.counter_map_fd = 3;
  std::vector<bpf_insn> code;
  std::vector<int> lines;
  const ctmon::Status st = ctmon::assemble_drop_program(l, code, &lines);
  if (!st.ok()) {
    std::fprintf(stderr, "%s\n", st.text().c_str());
    return 1;
  }
  std::printf("[");
  for (size_t i = 0; i < code.size(); ++i)
    std::printf("%s[%u,%u,%u,%d,%d,%d]", i ? "," : "", code[i].code, code[i].dst_reg,
                code[i].src_reg, code[i].off, code[i].imm, lines[i]);
  std::printf("]\n");
  return 0;
}
