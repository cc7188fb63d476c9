// drop_program.cc — see drop_program.h.
//
// What the program does, per kfree_skb (the tracepoint fires for every freed-with-reason skb,
// so the first three tests are the hot path and read only the context):
//   1. reason == NETFILTER_DROP, location in [nf_hook_slow, next symbol), skb->_nfct == 0.
//      That is the conntrack table-full signature (measured on 6.18: 200 of 200 drops): nf_tables
//      frees its own drops in nft_do_chain, and a drop after conntrack has attached an entry has
//      _nfct != 0.
//   2. The namespace: skb->dev (ingress/forward/post-routing) else skb->sk (local out, where
//      skb->dev is still NULL) else the route's device, then net->ns.inum.
//   3. Count it per namespace (HASH; insert-if-missing with BPF_NOEXIST, then atomic add) and
//      per flow (LRU_HASH: bounded, the oldest flows are evicted; user space reads and clears
//      it when it wants, so there is no per-packet wakeup). Both the count and the last-drop
//      time of a flow are written by the program; the count is atomic, the time is not.
// Loads through skb/dev/sk/net are direct BTF-checked loads (the verifier rejects an offset
// that does not land on a member of the right size); the route chain and the packet bytes go
// through bpf_probe_read_kernel because `_skb_refdst` and `head` are not typed pointers.
#include "ebpf/drop_program.h"

#include <linux/in.h>
#include <sys/socket.h>

#include "ebpf/assembler.h"

namespace ctmon {

namespace {

// Stack layout (offsets from r10). Every slot is 8-byte aligned.
constexpr int16_t kCounterKey = -8;     // u32
constexpr int16_t kNamespaceKey = -16;  // u32
constexpr int16_t kValue = -32;         // DroppedFlowValue, also the scratch for probe reads
constexpr int16_t kFlowKey = -80;       // DroppedFlowKey (44 bytes, 48 reserved)
constexpr int16_t kHeader = -120;       // 40 bytes: an IPv6 header, or the start of an IPv4 one
constexpr int16_t kPorts = -128;        // 4 bytes of the transport header

bool load_size(uint32_t bytes, uint8_t& size) {
  switch (bytes) {
    case 1:
      size = BPF_B;
      return true;
    case 2:
      size = BPF_H;
      return true;
    case 4:
      size = BPF_W;
      return true;
    case 8:
      size = BPF_DW;
      return true;
    default:
      return false;
  }
}

bool fits_offset(const BtfMember& m) { return m.offset <= INT16_MAX; }

// counters[slot] += 1. Clobbers r0-r5.
void count(Assembler& a, int counter_map_fd, DropCounter slot) {
  Assembler::Label done = a.label();
  a.store_imm(BPF_W, BPF_REG_10, kCounterKey, static_cast<int32_t>(slot));
  a.load_map(BPF_REG_1, counter_map_fd);
  a.mov_reg(BPF_REG_2, BPF_REG_10);
  a.alu_imm(BPF_ADD, BPF_REG_2, kCounterKey);
  a.call(BPF_FUNC_map_lookup_elem);
  a.jump_imm(BPF_JEQ, BPF_REG_0, 0, done);
  a.mov_imm(BPF_REG_1, 1);
  a.atomic_add64(BPF_REG_0, 0, BPF_REG_1);
  a.bind(done);
}

// bpf_probe_read_kernel(r10 + kValue, bytes, r3); on failure or a NULL result go to `fail`.
// The slot is zeroed first so a narrower read leaves the upper bytes 0. Result in `dst`.
void probe_read(Assembler& a, uint8_t dst, uint32_t bytes, uint8_t size, Assembler::Label fail) {
  a.store_imm(BPF_DW, BPF_REG_10, kValue, 0);
  a.mov_reg(BPF_REG_1, BPF_REG_10);
  a.alu_imm(BPF_ADD, BPF_REG_1, kValue);
  a.mov_imm(BPF_REG_2, static_cast<int32_t>(bytes));
  a.call(BPF_FUNC_probe_read_kernel);
  a.jump_imm(BPF_JNE, BPF_REG_0, 0, fail);
  a.load(size, dst, BPF_REG_10, kValue);
  a.jump_imm(BPF_JEQ, dst, 0, fail);
}

// Finds or creates map[key at r10+key_off] with the zeroed value at r10+kValue (value_words
// u64s), and leaves the value pointer in r0; goes to `fail` when the map refuses the insert.
// Lookup first: a namespace's entry exists after its first drop.
void find_or_create(Assembler& a, int map_fd, int16_t key_off, int value_words,
                    Assembler::Label fail) {
  Assembler::Label found = a.label();
  a.load_map(BPF_REG_1, map_fd);
  a.mov_reg(BPF_REG_2, BPF_REG_10);
  a.alu_imm(BPF_ADD, BPF_REG_2, key_off);
  a.call(BPF_FUNC_map_lookup_elem);
  a.jump_imm(BPF_JNE, BPF_REG_0, 0, found);
  for (int i = 0; i < value_words; ++i)
    a.store_imm(BPF_DW, BPF_REG_10, static_cast<int16_t>(kValue + 8 * i), 0);
  a.load_map(BPF_REG_1, map_fd);
  a.mov_reg(BPF_REG_2, BPF_REG_10);
  a.alu_imm(BPF_ADD, BPF_REG_2, key_off);
  a.mov_reg(BPF_REG_3, BPF_REG_10);
  a.alu_imm(BPF_ADD, BPF_REG_3, kValue);
  a.mov_imm(BPF_REG_4, BPF_NOEXIST);  // another CPU may have inserted it meanwhile: fine
  a.call(BPF_FUNC_map_update_elem);
  a.load_map(BPF_REG_1, map_fd);
  a.mov_reg(BPF_REG_2, BPF_REG_10);
  a.alu_imm(BPF_ADD, BPF_REG_2, key_off);
  a.call(BPF_FUNC_map_lookup_elem);
  a.jump_imm(BPF_JEQ, BPF_REG_0, 0, fail);
  a.bind(found);
}

}  // namespace

Status assemble_drop_program(const DropProgramLayout& l, std::vector<bpf_insn>& out,
                             std::vector<int>* lines) {
  if (l.arg_skb < 0 || l.arg_location < 0 || l.arg_reason < 0 || l.arg_skb > 11 ||
      l.arg_location > 11 || l.arg_reason > 11)
    return Status::failure("kfree_skb tracepoint arguments not identified");
  if (l.location_start == 0 || l.location_end <= l.location_start)
    return Status::failure("empty nf_hook_slow address range");
  if (l.namespace_map_fd < 0 || l.flow_map_fd < 0 || l.counter_map_fd < 0)
    return Status::failure("maps not created");
  const struct {
    const BtfMember& member;
    const char* name;
    bool pointer;
  } pointers[] = {
      {l.skb_nfct, "sk_buff._nfct", false},
      {l.skb_dev, "sk_buff.dev", true},
      {l.skb_sk, "sk_buff.sk", true},
      {l.skb_refdst, "sk_buff._skb_refdst", false},
      {l.skb_head, "sk_buff.head", true},
      {l.device_net, "net_device.nd_net.net", true},
      {l.socket_net, "sock.__sk_common.skc_net.net", true},
      {l.route_device, "dst_entry.dev", true},
  };
  for (const auto& p : pointers)
    if (p.member.size != 8 || p.member.pointer != p.pointer || !fits_offset(p.member))
      return Status::failure(std::string(p.name) + " is not a " +
                             (p.pointer ? "pointer" : "64-bit word") + " at a usable offset");
  uint8_t network_header_size, inode_size;
  if (!load_size(l.skb_network_header.size, network_header_size) ||
      !fits_offset(l.skb_network_header))
    return Status::failure("sk_buff.network_header has an unusable size");
  if (!load_size(l.net_inode.size, inode_size) || l.net_inode.size > 4 || !fits_offset(l.net_inode))
    return Status::failure("net.ns.inum is not an integer of at most 32 bits");

  Assembler a;
  const Assembler::Label exit = a.label();
  const Assembler::Label have_inode = a.label();
  const Assembler::Label try_socket = a.label();
  const Assembler::Label try_route = a.label();
  const Assembler::Label no_inode = a.label();
  const Assembler::Label flow = a.label();
  const Assembler::Label ipv4 = a.label();
  const Assembler::Label ipv6 = a.label();
  const Assembler::Label ports = a.label();
  const Assembler::Label read_ports = a.label();
  const Assembler::Label record_flow = a.label();
  const Assembler::Label flow_failed = a.label();

  // r6 = ctx, r7 = skb, r8 = netns inode, r9 = packet pointer. r0-r5 are clobbered by calls.
  // 1. The signature. Context reads only, so the common case costs a few instructions.
  a.mov_reg(BPF_REG_6, BPF_REG_1);
  a.load(BPF_DW, BPF_REG_2, BPF_REG_6, static_cast<int16_t>(8 * l.arg_reason));
  a.jump_imm32(BPF_JNE, BPF_REG_2, static_cast<int32_t>(l.drop_reason), exit);
  // Netfilter drops are rare next to other frees; counting the near misses costs little and
  // shows what the location and _nfct tests excluded.
  count(a, l.counter_map_fd, kNetfilterDrops);
  a.load(BPF_DW, BPF_REG_2, BPF_REG_6, static_cast<int16_t>(8 * l.arg_location));
  a.load_imm64(BPF_REG_3, l.location_start);
  a.jump_reg(BPF_JLT, BPF_REG_2, BPF_REG_3, exit);
  a.load_imm64(BPF_REG_3, l.location_end);
  a.jump_reg(BPF_JGE, BPF_REG_2, BPF_REG_3, exit);
  count(a, l.counter_map_fd, kFreedByHookSlow);
  a.load(BPF_DW, BPF_REG_7, BPF_REG_6, static_cast<int16_t>(8 * l.arg_skb));
  a.load(BPF_DW, BPF_REG_2, BPF_REG_7, static_cast<int16_t>(l.skb_nfct.offset));
  a.jump_imm(BPF_JNE, BPF_REG_2, 0, exit);
  count(a, l.counter_map_fd, kDropsMatched);

  // 2. The namespace inode.
  if (!l.route_chain_only) {
    a.load(BPF_DW, BPF_REG_2, BPF_REG_7, static_cast<int16_t>(l.skb_dev.offset));
    a.jump_imm(BPF_JEQ, BPF_REG_2, 0, try_socket);
    a.load(BPF_DW, BPF_REG_2, BPF_REG_2, static_cast<int16_t>(l.device_net.offset));
    a.load(inode_size, BPF_REG_8, BPF_REG_2, static_cast<int16_t>(l.net_inode.offset));
    count(a, l.counter_map_fd, kNetnsFromDevice);
    a.goto_(have_inode);
    a.bind(try_socket);
    a.load(BPF_DW, BPF_REG_2, BPF_REG_7, static_cast<int16_t>(l.skb_sk.offset));
    a.jump_imm(BPF_JEQ, BPF_REG_2, 0, try_route);
    a.load(BPF_DW, BPF_REG_2, BPF_REG_2, static_cast<int16_t>(l.socket_net.offset));
    a.load(inode_size, BPF_REG_8, BPF_REG_2, static_cast<int16_t>(l.net_inode.offset));
    count(a, l.counter_map_fd, kNetnsFromSocket);
    a.goto_(have_inode);
  }
  a.bind(try_route);
  // _skb_refdst is an unsigned long with SKB_DST_NOREF in bit 0 (skb_dst()).
  a.load(BPF_DW, BPF_REG_3, BPF_REG_7, static_cast<int16_t>(l.skb_refdst.offset));
  a.alu_imm(BPF_AND, BPF_REG_3, -2);
  a.jump_imm(BPF_JEQ, BPF_REG_3, 0, no_inode);
  a.alu_imm(BPF_ADD, BPF_REG_3, static_cast<int32_t>(l.route_device.offset));
  probe_read(a, BPF_REG_3, 8, BPF_DW, no_inode);  // dst->dev
  a.alu_imm(BPF_ADD, BPF_REG_3, static_cast<int32_t>(l.device_net.offset));
  probe_read(a, BPF_REG_3, 8, BPF_DW, no_inode);  // dev->nd_net.net
  a.alu_imm(BPF_ADD, BPF_REG_3, static_cast<int32_t>(l.net_inode.offset));
  probe_read(a, BPF_REG_8, l.net_inode.size, inode_size, no_inode);  // net->ns.inum
  count(a, l.counter_map_fd, kNetnsFromRoute);
  a.goto_(have_inode);
  a.bind(no_inode);
  count(a, l.counter_map_fd, kNetnsUnknown);
  a.mov_imm(BPF_REG_8, 0);

  // 3a. Per-namespace count.
  a.bind(have_inode);
  a.store(BPF_W, BPF_REG_10, kNamespaceKey, BPF_REG_8);
  {
    const Assembler::Label map_full = a.label();
    find_or_create(a, l.namespace_map_fd, kNamespaceKey, 1, map_full);
    a.mov_imm(BPF_REG_1, 1);
    a.atomic_add64(BPF_REG_0, 0, BPF_REG_1);
    a.goto_(flow);
    a.bind(map_full);
    count(a, l.counter_map_fd, kNamespaceMapFull);
  }

  // 3b. The flow: the IP header at skb->head + skb->network_header.
  a.bind(flow);
  for (int16_t off = 0; off < 48; off += 8) a.store_imm(BPF_DW, BPF_REG_10, kFlowKey + off, 0);
  a.store(BPF_W, BPF_REG_10, kFlowKey + 0, BPF_REG_8);
  a.load(BPF_DW, BPF_REG_9, BPF_REG_7, static_cast<int16_t>(l.skb_head.offset));
  a.load(network_header_size, BPF_REG_2, BPF_REG_7,
         static_cast<int16_t>(l.skb_network_header.offset));
  a.alu_reg(BPF_ADD, BPF_REG_9, BPF_REG_2);
  a.mov_reg(BPF_REG_1, BPF_REG_10);
  a.alu_imm(BPF_ADD, BPF_REG_1, kHeader);
  a.mov_imm(BPF_REG_2, 40);
  a.mov_reg(BPF_REG_3, BPF_REG_9);
  a.call(BPF_FUNC_probe_read_kernel);
  const Assembler::Label not_ip = a.label();
  a.jump_imm(BPF_JNE, BPF_REG_0, 0, not_ip);
  a.load(BPF_B, BPF_REG_2, BPF_REG_10, kHeader);
  a.mov_reg(BPF_REG_3, BPF_REG_2);
  a.alu_imm(BPF_RSH, BPF_REG_3, 4);
  a.jump_imm(BPF_JEQ, BPF_REG_3, 4, ipv4);
  a.jump_imm(BPF_JEQ, BPF_REG_3, 6, ipv6);
  a.bind(not_ip);
  count(a, l.counter_map_fd, kNotIp);
  a.goto_(record_flow);  // still sampled, as family 0, so the namespace shows up

  a.bind(ipv4);
  a.store_imm(BPF_B, BPF_REG_10, kFlowKey + 4, AF_INET);
  a.load(BPF_B, BPF_REG_3, BPF_REG_10, kHeader + 9);  // protocol
  a.store(BPF_B, BPF_REG_10, kFlowKey + 5, BPF_REG_3);
  a.load(BPF_W, BPF_REG_4, BPF_REG_10, kHeader + 12);  // saddr
  a.store(BPF_W, BPF_REG_10, kFlowKey + 8, BPF_REG_4);
  a.load(BPF_W, BPF_REG_4, BPF_REG_10, kHeader + 16);  // daddr
  a.store(BPF_W, BPF_REG_10, kFlowKey + 24, BPF_REG_4);
  // A non-first fragment has no ports: frag_off & IP_OFFSET, read as a little-endian u16 of the
  // big-endian field, is & 0xff1f.
  a.load(BPF_H, BPF_REG_4, BPF_REG_10, kHeader + 6);
  a.alu_imm(BPF_AND, BPF_REG_4, 0xff1f);
  a.jump_imm(BPF_JNE, BPF_REG_4, 0, record_flow);
  a.alu_imm(BPF_AND, BPF_REG_2, 0x0f);  // ihl, in 32-bit words
  a.alu_imm(BPF_LSH, BPF_REG_2, 2);
  a.alu_reg(BPF_ADD, BPF_REG_9, BPF_REG_2);
  a.goto_(ports);

  a.bind(ipv6);
  a.store_imm(BPF_B, BPF_REG_10, kFlowKey + 4, AF_INET6);
  a.load(BPF_B, BPF_REG_3, BPF_REG_10, kHeader + 6);  // nexthdr; extension headers: no ports
  a.store(BPF_B, BPF_REG_10, kFlowKey + 5, BPF_REG_3);
  for (int16_t off = 8; off < 40; off += 8) {  // saddr, daddr
    a.load(BPF_DW, BPF_REG_4, BPF_REG_10, kHeader + off);
    a.store(BPF_DW, BPF_REG_10, kFlowKey + off, BPF_REG_4);
  }
  a.alu_imm(BPF_ADD, BPF_REG_9, 40);

  // Ports are the first four bytes of TCP, UDP, UDP-Lite, SCTP and DCCP headers.
  a.bind(ports);
  a.jump_imm(BPF_JEQ, BPF_REG_3, IPPROTO_TCP, read_ports);
  a.jump_imm(BPF_JEQ, BPF_REG_3, IPPROTO_UDP, read_ports);
  a.jump_imm(BPF_JEQ, BPF_REG_3, IPPROTO_UDPLITE, read_ports);
  a.jump_imm(BPF_JEQ, BPF_REG_3, IPPROTO_SCTP, read_ports);
  a.jump_imm(BPF_JEQ, BPF_REG_3, IPPROTO_DCCP, read_ports);
  a.goto_(record_flow);
  a.bind(read_ports);
  a.mov_reg(BPF_REG_1, BPF_REG_10);
  a.alu_imm(BPF_ADD, BPF_REG_1, kPorts);
  a.mov_imm(BPF_REG_2, 4);
  a.mov_reg(BPF_REG_3, BPF_REG_9);
  a.call(BPF_FUNC_probe_read_kernel);
  a.jump_imm(BPF_JNE, BPF_REG_0, 0, record_flow);
  a.load(BPF_W, BPF_REG_2, BPF_REG_10, kPorts);
  a.store(BPF_W, BPF_REG_10, kFlowKey + 40, BPF_REG_2);

  // 3c. Per-flow count and last time. Lookup first: a repeat (a retransmitted SYN) then costs
  // one hash lookup. A new flow is inserted with its count already 1, and only an insert that
  // lost a race with another CPU (-EEXIST) looks up again and adds. Inserting first instead
  // would make every repeat take and give back an LRU node, measured at ~600 ns a drop.
  a.bind(record_flow);
  a.call(BPF_FUNC_ktime_get_ns);
  a.store(BPF_DW, BPF_REG_10, kValue + 8, BPF_REG_0);
  {
    const Assembler::Label add = a.label();
    a.load_map(BPF_REG_1, l.flow_map_fd);
    a.mov_reg(BPF_REG_2, BPF_REG_10);
    a.alu_imm(BPF_ADD, BPF_REG_2, kFlowKey);
    a.call(BPF_FUNC_map_lookup_elem);
    a.jump_imm(BPF_JNE, BPF_REG_0, 0, add);
    a.store_imm(BPF_DW, BPF_REG_10, kValue, 1);
    a.load_map(BPF_REG_1, l.flow_map_fd);
    a.mov_reg(BPF_REG_2, BPF_REG_10);
    a.alu_imm(BPF_ADD, BPF_REG_2, kFlowKey);
    a.mov_reg(BPF_REG_3, BPF_REG_10);
    a.alu_imm(BPF_ADD, BPF_REG_3, kValue);
    a.mov_imm(BPF_REG_4, BPF_NOEXIST);
    a.call(BPF_FUNC_map_update_elem);
    a.jump_imm(BPF_JEQ, BPF_REG_0, 0, exit);
    a.load_map(BPF_REG_1, l.flow_map_fd);
    a.mov_reg(BPF_REG_2, BPF_REG_10);
    a.alu_imm(BPF_ADD, BPF_REG_2, kFlowKey);
    a.call(BPF_FUNC_map_lookup_elem);
    a.jump_imm(BPF_JEQ, BPF_REG_0, 0, flow_failed);
    a.bind(add);
    a.mov_imm(BPF_REG_1, 1);
    a.atomic_add64(BPF_REG_0, 0, BPF_REG_1);
    a.load(BPF_DW, BPF_REG_1, BPF_REG_10, kValue + 8);
    a.store(BPF_DW, BPF_REG_0, 8, BPF_REG_1);
    a.goto_(exit);
  }
  a.bind(flow_failed);
  count(a, l.counter_map_fd, kFlowMapFailed);

  a.bind(exit);
  a.mov_imm(BPF_REG_0, 0);
  a.exit();
  return a.finish(out, lines);
}

}  // namespace ctmon
