// bpf_image.cc — see bpf_image.h.
#include "ebpf/bpf_image.h"

#include <cerrno>
#include <cstring>
#include <mutex>

namespace ctmon {
namespace {

// The image's BTF in the kernel, loaded once per process and kept: every program of the image
// refers to it. -1 when the kernel would not take it (then programs load without line info).
int image_btf(const BpfObjectImage& image) {
  static std::mutex mu;
  static std::vector<std::pair<const BpfObjectImage*, int>> loaded;
  std::lock_guard<std::mutex> lock(mu);
  for (const auto& [which, fd] : loaded)
    if (which == &image) return fd;
  bpf_attr attr{};
  attr.btf = bpf_ptr(image.btf);
  attr.btf_size = static_cast<uint32_t>(image.btf_size);
  const int fd = static_cast<int>(sys_bpf(BPF_BTF_LOAD, attr));
  loaded.emplace_back(&image, fd < 0 ? -1 : fd);
  return fd < 0 ? -1 : fd;
}

}  // namespace

const BpfMapDefinition* BpfObjectImage::map(const char* name) const {
  for (size_t i = 0; i < map_count; ++i)
    if (std::strcmp(maps[i].name, name) == 0) return &maps[i];
  return nullptr;
}

const BpfProgramImage* BpfObjectImage::program(const char* name) const {
  for (size_t i = 0; i < program_count; ++i)
    if (std::strcmp(programs[i].name, name) == 0) return &programs[i];
  return nullptr;
}

Status create_map(const BpfObjectImage& image, const char* name, uint32_t max_entries, Fd& out) {
  const BpfMapDefinition* def = image.map(name);
  if (def == nullptr)
    return Status::failure(std::string("no map ") + name + " in " + image.source, ENOENT, "bpf");
  return create_map(def->type, def->key_size, def->value_size,
                    max_entries != 0 ? max_entries : def->max_entries, def->flags, name, out);
}

Status load_program(const BpfObjectImage& image, const char* name,
                    const std::vector<std::pair<const char*, int>>& maps,
                    const BpfProgramOptions& options, Fd& out, VerifierStats* stats) {
  const BpfProgramImage* prog = image.program(name);
  if (prog == nullptr)
    return Status::failure(std::string("no program ") + name + " in " + image.source, ENOENT,
                           "bpf");
  std::vector<bpf_insn> code(prog->insns, prog->insns + prog->insn_count);
  for (size_t r = 0; r < prog->relocation_count; ++r) {
    const BpfMapRelocation& rel = prog->relocations[r];
    const char* map = image.maps[rel.map].name;
    int fd = -1;
    for (const auto& [given, given_fd] : maps)
      if (std::strcmp(given, map) == 0) fd = given_fd;
    if (fd < 0)
      return Status::failure(std::string(name) + " loads map " + map + ", which was not created",
                             EBADF, "bpf");
    code[rel.insn].src_reg = BPF_PSEUDO_MAP_FD;
    code[rel.insn].imm = fd;
  }
  ProgramLoad load;
  load.type = options.type;
  load.name = name;
  load.license = options.license;
  load.collect_stats = options.collect_stats;
  load.btf_fd = image_btf(image);
  load.func_info = prog->func_info;
  load.func_info_count = static_cast<uint32_t>(prog->func_info_count);
  load.line_info = prog->line_info;
  load.line_info_count = static_cast<uint32_t>(prog->line_info_count);
  Status st = load_program(load, code, out, stats);
  // The kernel names a line's file by its base name; the reason names it from the repository.
  const std::string source = image.source;
  const std::string base = source.substr(source.rfind('/') + 1);
  const size_t at = st.message.find(" at " + base + ":");
  if (at != std::string::npos) st.message.replace(at + 4, base.size(), source);
  return st;
}

}  // namespace ctmon
