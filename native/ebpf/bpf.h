// bpf.h — the bpf() system calls the eBPF programs share: create a map, load a program (with
// the verifier's reason when it refuses), look up per-CPU values, run a program on test input.
// No libbpf: each call fills a bpf_attr and issues the syscall.
//
// No Node-API, no threads of its own; any thread may call these.
#pragma once

#include <linux/bpf.h>

#include <cstdint>
#include <string>
#include <vector>

#include "base/fd.h"

namespace ctmon {

// The raw syscall; returns what bpf() returns (errno set on -1).
long sys_bpf(int cmd, bpf_attr& attr);

inline uint64_t bpf_ptr(const void* p) {
  return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p));
}

// `what: strerror(errno)`, with the syscall named.
Status bpf_failure(const char* syscall, const std::string& what);

Status create_map(uint32_t type, uint32_t key_size, uint32_t value_size, uint32_t max_entries,
                  uint32_t flags, const char* name, Fd& out);

struct ProgramLoad {
  uint32_t type = 0;
  uint32_t expected_attach_type = 0;
  uint32_t attach_btf_id = 0;
  const char* name = "";
  const char* license = "GPL";
  // The program's BTF, function and line info (bpf_image.h): the verifier's log then names
  // the source line of each instruction. -1: none.
  int btf_fd = -1;
  const bpf_func_info* func_info = nullptr;
  uint32_t func_info_count = 0;
  const bpf_line_info* line_info = nullptr;
  uint32_t line_info_count = 0;
  // For an assembled program (no BTF): per instruction the line of `source` that emitted it.
  const char* source = "";
  const std::vector<int>* insn_lines = nullptr;
  // Ask the verifier for its statistics (VerifierStats).
  bool collect_stats = false;
};

// What the verifier reported of a program it accepted.
struct VerifierStats {
  uint64_t processed_insns = 0;  // "processed N insns (limit 1000000) ..."
  std::string summary;           // its statistics lines, as it wrote them
};

// Loads `code`. When the verifier refuses it, loads it again with a log and says where it
// stopped and why (explain_verifier_log).
Status load_program(const ProgramLoad& load, const std::vector<bpf_insn>& code, Fd& out,
                    VerifierStats* stats = nullptr);

// Of a verifier log: where it stopped (the last source annotation, "file:line" and the line's
// text, and the last instruction before the end) and why (the lines after them), in one
// sentence after "the verifier rejected <program>". Pure.
// `source` and `insn_lines` stand in for the annotations of an assembled program.
std::string explain_verifier_log(const std::string& program, const std::string& log,
                                 const char* source = "",
                                 const std::vector<int>* insn_lines = nullptr);

// CPUs the kernel may run on (/sys/devices/system/cpu/possible): a per-CPU map's lookup
// returns this many values. 0 when unreadable.
unsigned possible_cpus();

// BPF_MAP_UPDATE_ELEM (BPF_ANY). For a per-CPU map, `value` holds every possible CPU's copy.
Status update_element(int map_fd, const void* key, const void* value);

// One lookup of a per-CPU array map: `out` gets possible_cpus() values of `value_size`
// bytes, each padded to 8 bytes as the kernel copies them.
Status lookup_per_cpu(int map_fd, uint32_t key, size_t value_size, std::vector<uint8_t>& out);

}  // namespace ctmon
