// assembler.h — a tiny eBPF assembler: instructions plus forward jumps resolved at finish(),
// each instruction remembering the line of the C++ call that emitted it (the line info of an
// assembled program: a verifier refusal and drop_program.lst name it). The drop program
// (drop_program.cc) is written with it, because its offsets come from the running kernel's BTF;
// the event programs are C (ct_events.bpf.c). Pure; no Node-API, no system calls.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/status.h"

namespace ctmon {

class Assembler {
 public:
  using Label = int;
  Label label() {
    bound_.push_back(-1);
    return static_cast<Label>(bound_.size() - 1);
  }
  void bind(Label l) { bound_[static_cast<size_t>(l)] = static_cast<int>(code_.size()); }

  void emit(uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm,
            int line = __builtin_LINE()) {
    bpf_insn insn{};
    insn.code = code;
    insn.dst_reg = dst & 0xf;
    insn.src_reg = src & 0xf;
    insn.off = off;
    insn.imm = imm;
    code_.push_back(insn);
    lines_.push_back(line);
  }
  void mov_reg(uint8_t dst, uint8_t src, int line = __builtin_LINE()) {
    emit(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0, line);
  }
  void mov_imm(uint8_t dst, int32_t imm, int line = __builtin_LINE()) {
    emit(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm, line);
  }
  void alu_imm(uint8_t op, uint8_t dst, int32_t imm, int line = __builtin_LINE()) {
    emit(BPF_ALU64 | op | BPF_K, dst, 0, 0, imm, line);
  }
  void alu_reg(uint8_t op, uint8_t dst, uint8_t src, int line = __builtin_LINE()) {
    emit(BPF_ALU64 | op | BPF_X, dst, src, 0, 0, line);
  }
  void load(uint8_t size, uint8_t dst, uint8_t src, int16_t off, int line = __builtin_LINE()) {
    emit(BPF_LDX | size | BPF_MEM, dst, src, off, 0, line);
  }
  void store(uint8_t size, uint8_t dst, int16_t off, uint8_t src, int line = __builtin_LINE()) {
    emit(BPF_STX | size | BPF_MEM, dst, src, off, 0, line);
  }
  void store_imm(uint8_t size, uint8_t dst, int16_t off, int32_t imm, int line = __builtin_LINE()) {
    emit(BPF_ST | size | BPF_MEM, dst, 0, off, imm, line);
  }
  void atomic_add64(uint8_t dst, int16_t off, uint8_t src, int line = __builtin_LINE()) {
    emit(BPF_STX | BPF_DW | BPF_ATOMIC, dst, src, off, BPF_ADD, line);
  }
  void atomic_add32(uint8_t dst, int16_t off, uint8_t src, int line = __builtin_LINE()) {
    emit(BPF_STX | BPF_W | BPF_ATOMIC, dst, src, off, BPF_ADD, line);
  }
  // src = xchg(*(u32 *)(dst + off), src), zero-extended (Linux 5.12).
  void atomic_xchg32(uint8_t dst, int16_t off, uint8_t src, int line = __builtin_LINE()) {
    emit(BPF_STX | BPF_W | BPF_ATOMIC, dst, src, off, BPF_XCHG, line);
  }
  // r0 = cmpxchg(*(u64 *)(dst + off), r0, src): src is stored if the old value equals r0, and
  // r0 gets the old value (Linux 5.12).
  void atomic_cmpxchg64(uint8_t dst, int16_t off, uint8_t src, int line = __builtin_LINE()) {
    emit(BPF_STX | BPF_DW | BPF_ATOMIC, dst, src, off, BPF_CMPXCHG, line);
  }
  // dst = bswap to big endian (a no-op on big-endian hosts), 16/32/64 bits.
  void to_be(uint8_t dst, int32_t bits, int line = __builtin_LINE()) {
    emit(BPF_ALU | BPF_END | BPF_TO_BE, dst, 0, 0, bits, line);
  }
  void load_imm64(uint8_t dst, uint64_t value, uint8_t pseudo = 0, int line = __builtin_LINE()) {
    emit(BPF_LD | BPF_DW | BPF_IMM, dst, pseudo, 0, static_cast<int32_t>(value & 0xffffffffu),
         line);
    emit(0, 0, 0, 0, static_cast<int32_t>(value >> 32), line);
  }
  void load_map(uint8_t dst, int map_fd, int line = __builtin_LINE()) {
    load_imm64(dst, static_cast<uint32_t>(map_fd), BPF_PSEUDO_MAP_FD, line);
  }
  void call(int32_t helper, int line = __builtin_LINE()) {
    emit(BPF_JMP | BPF_CALL, 0, 0, 0, helper, line);
  }
  void exit(int line = __builtin_LINE()) { emit(BPF_JMP | BPF_EXIT, 0, 0, 0, 0, line); }
  void jump_imm(uint8_t op, uint8_t dst, int32_t imm, Label to, int line = __builtin_LINE()) {
    jump(BPF_JMP | op | BPF_K, dst, 0, imm, to, line);
  }
  void jump_imm32(uint8_t op, uint8_t dst, int32_t imm, Label to, int line = __builtin_LINE()) {
    jump(BPF_JMP32 | op | BPF_K, dst, 0, imm, to, line);
  }
  void jump_reg(uint8_t op, uint8_t dst, uint8_t src, Label to, int line = __builtin_LINE()) {
    jump(BPF_JMP | op | BPF_X, dst, src, 0, to, line);
  }
  void goto_(Label to, int line = __builtin_LINE()) { jump(BPF_JMP | BPF_JA, 0, 0, 0, to, line); }

  // The program, and per instruction the line that emitted it.
  Status finish(std::vector<bpf_insn>& out, std::vector<int>* lines = nullptr) {
    for (const Fixup& f : fixups_) {
      const int target = bound_[static_cast<size_t>(f.label)];
      if (target < 0) return Status::failure("internal error: unbound label");
      const int delta = target - (f.index + 1);
      if (delta < INT16_MIN || delta > INT16_MAX)
        return Status::failure("internal error: jump out of range");
      code_[static_cast<size_t>(f.index)].off = static_cast<int16_t>(delta);
    }
    out = code_;
    if (lines != nullptr) *lines = lines_;
    return Status{};
  }

 private:
  struct Fixup {
    int index;
    Label label;
  };
  void jump(uint8_t code, uint8_t dst, uint8_t src, int32_t imm, Label to, int line) {
    fixups_.push_back(Fixup{static_cast<int>(code_.size()), to});
    emit(code, dst, src, 0, imm, line);
  }
  std::vector<bpf_insn> code_;
  std::vector<int> lines_;
  std::vector<int> bound_;
  std::vector<Fixup> fixups_;
};

}  // namespace ctmon
