// bpf_image.h — an eBPF object compiled ahead of time (native/ebpf/*.bpf.c), as
// scripts/build-bpf.mjs writes it into native/ebpf/*.gen.cc, and its loader: create the maps
// the object defines, patch their descriptors into each program's map loads, load the
// program with the object's BTF so that the verifier's log names source lines.
//
//   Fd counters;
//   create_map(kCtEventsImage, "ct_counters", 0, counters);
//   Fd program;
//   load_program(kCtEventsImage, "ct_count", {{"ct_counters", counters.get()}}, {}, program);
//
// No libbpf, no libelf: the object was read at build time. No Node-API; any thread.
#pragma once

#include <linux/bpf.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/fd.h"
#include "ebpf/bpf.h"

namespace ctmon {

// A map as the object defines it (its BTF map definition).
struct BpfMapDefinition {
  const char* name;
  uint32_t type;
  uint32_t key_size;
  uint32_t value_size;
  uint32_t max_entries;
  uint32_t flags;
};

// Instruction `insn` (a 64-bit immediate load) loads map `map` (an index into the maps).
struct BpfMapRelocation {
  uint32_t insn;
  uint32_t map;
};

struct BpfProgramImage {
  const char* name;
  const bpf_insn* insns;
  size_t insn_count;
  const BpfMapRelocation* relocations;
  size_t relocation_count;
  const bpf_func_info* func_info;  // instruction indexes, BTF type ids
  size_t func_info_count;
  const bpf_line_info* line_info;  // instruction indexes, BTF string offsets
  size_t line_info_count;
};

struct BpfObjectImage {
  const char* source;  // the .bpf.c, relative to the repository
  const uint8_t* btf;
  size_t btf_size;
  const BpfMapDefinition* maps;
  size_t map_count;
  const BpfProgramImage* programs;
  size_t program_count;

  const BpfMapDefinition* map(const char* name) const;
  const BpfProgramImage* program(const char* name) const;
};

extern const BpfObjectImage kCtEventsImage;  // ct_events.gen.cc

// Creates the object's map `name`; max_entries 0 keeps the definition's.
Status create_map(const BpfObjectImage& image, const char* name, uint32_t max_entries, Fd& out);

struct BpfProgramOptions {
  uint32_t type = BPF_PROG_TYPE_SOCKET_FILTER;
  const char* license = "Dual MIT/GPL";
  bool collect_stats = false;  // fill the VerifierStats
};

// Loads program `name` of the image with the given map descriptors (by map name; every map the
// program loads must be there) and the image's BTF, so that when the verifier refuses it the
// reason says where: the source line (file:line and its text), the instruction, and why.
Status load_program(const BpfObjectImage& image, const char* name,
                    const std::vector<std::pair<const char*, int>>& maps,
                    const BpfProgramOptions& options, Fd& out, VerifierStats* stats = nullptr);

}  // namespace ctmon
