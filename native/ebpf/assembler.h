// assembler.h — a tiny eBPF assembler: instructions plus forward jumps resolved at finish().
// The programs (drop_program.cc, event_program.cc) are written with it in C++, so neither
// clang nor libbpf is needed at install or run time. Pure; no Node-API, no system calls.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ctmon {

class Assembler {
 public:
  using Label = int;
  Label label() {
    bound_.push_back(-1);
    return static_cast<Label>(bound_.size() - 1);
  }
  void bind(Label l) { bound_[static_cast<size_t>(l)] = static_cast<int>(code_.size()); }

  void emit(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm) {
    bpf_insn insn{};
    insn.code = code;
    insn.dst_reg = dst & 0xf;
    insn.src_reg = src & 0xf;
    insn.off = off;
    insn.imm = imm;
    code_.push_back(insn);
  }
  void mov_reg(uint8_t dst, uint8_t src) { emit(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0); }
  void mov_imm(uint8_t dst, int32_t imm) { emit(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm); }
  void alu_imm(uint8_t op, uint8_t dst, int32_t imm) {
    emit(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm);
  }
  void alu_reg(uint8_t op, uint8_t dst, uint8_t src) {
    emit(BPF_ALU64 | op | BPF_X, dst, src, 0, 0);
  }
  void load(uint8_t size, uint8_t dst, uint8_t src, int16_t off) {
    emit(BPF_LDX | size | BPF_MEM, dst, src, off, 0);
  }
  void store(uint8_t size, uint8_t dst, int16_t off, uint8_t src) {
    emit(BPF_STX | size | BPF_MEM, dst, src, off, 0);
  }
  void store_imm(uint8_t size, uint8_t dst, int16_t off, int32_t imm) {
    emit(BPF_ST | size | BPF_MEM, dst, 0, off, imm);
  }
  void atomic_add64(uint8_t dst, int16_t off, uint8_t src) {
    emit(BPF_STX | BPF_DW | BPF_ATOMIC, dst, src, off, BPF_ADD);
  }
  void atomic_add32(uint8_t dst, int16_t off, uint8_t src) {
    emit(BPF_STX | BPF_W | BPF_ATOMIC, dst, src, off, BPF_ADD);
  }
  // src = xchg(*(u32 *)(dst + off), src), zero-extended (Linux 5.12).
  void atomic_xchg32(uint8_t dst, int16_t off, uint8_t src) {
    emit(BPF_STX | BPF_W | BPF_ATOMIC, dst, src, off, BPF_XCHG);
  }
  // r0 = cmpxchg(*(u64 *)(dst + off), r0, src): src is stored if the old value equals r0, and
  // r0 gets the old value (Linux 5.12).
  void atomic_cmpxchg64(uint8_t dst, int16_t off, uint8_t src) {
    emit(BPF_STX | BPF_DW | BPF_ATOMIC, dst, src, off, BPF_CMPXCHG);
  }
  // dst = bswap to big endian (a no-op on big-endian hosts), 16/32/64 bits.
  void to_be(uint8_t dst, int32_t bits) { emit(BPF_ALU | BPF_END | BPF_TO_BE, dst, 0, 0, bits); }
  void load_imm64(uint8_t dst, uint64_t value, uint8_t pseudo = 0) {
    emit(BPF_LD | BPF_DW | BPF_IMM, dst, pseudo, 0, static_cast<int32_t>(value & 0xffffffffu));
    emit(0, 0, 0, 0, static_cast<int32_t>(value >> 32));
  }
  void load_map(uint8_t dst, int map_fd) {
    load_imm64(dst, static_cast<uint32_t>(map_fd), BPF_PSEUDO_MAP_FD);
  }
  void call(int32_t helper) { emit(BPF_JMP | BPF_CALL, 0, 0, 0, helper); }
  void exit() { emit(BPF_JMP | BPF_EXIT, 0, 0, 0, 0); }
  void jump_imm(uint8_t op, uint8_t dst, int32_t imm, Label to) {
    jump(BPF_JMP | op | BPF_K, dst, 0, imm, to);
  }
  void jump_imm32(uint8_t op, uint8_t dst, int32_t imm, Label to) {
    jump(BPF_JMP32 | op | BPF_K, dst, 0, imm, to);
  }
  void jump_reg(uint8_t op, uint8_t dst, uint8_t src, Label to) {
    jump(BPF_JMP | op | BPF_X, dst, src, 0, to);
  }
  void goto_(Label to) { jump(BPF_JMP | BPF_JA, 0, 0, 0, to); }

  std::string finish(std::vector<bpf_insn>& out) {
    for (const Fixup& f : fixups_) {
      const int target = bound_[static_cast<size_t>(f.label)];
      if (target < 0) return "internal error: unbound label";
      const int delta = target - (f.index + 1);
      if (delta < INT16_MIN || delta > INT16_MAX) return "internal error: jump out of range";
      code_[static_cast<size_t>(f.index)].off = static_cast<int16_t>(delta);
    }
    out = code_;
    return "";
  }

 private:
  struct Fixup {
    int index;
    Label label;
  };
  void jump(uint8_t code, uint8_t dst, uint8_t src, int32_t imm, Label to) {
    fixups_.push_back(Fixup{static_cast<int>(code_.size()), to});
    emit(code, dst, src, 0, imm);
  }
  std::vector<bpf_insn> code_;
  std::vector<int> bound_;
  std::vector<Fixup> fixups_;
};

}  // namespace ctmon
