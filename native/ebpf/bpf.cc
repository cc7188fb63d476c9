// bpf.cc — see bpf.h.
#include "ebpf/bpf.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "base/read_file.h"

namespace ctmon {

namespace {

// The last `lines` lines of a verifier log, which is where it says why.
std::string log_tail(const std::vector<char>& log, int lines) {
  const size_t length = strnlen(log.data(), log.size());
  size_t start = length;
  while (start > 0 && log[start - 1] == '\n') --start;
  const size_t end = start;
  for (int seen = 0; start > 0; --start)
    if (log[start - 1] == '\n' && ++seen == lines) break;
  return std::string(log.data() + start, end - start);
}

}  // namespace

long sys_bpf(int cmd, bpf_attr& attr) { return ::syscall(__NR_bpf, cmd, &attr, sizeof attr); }

Status bpf_failure(const char* syscall, const std::string& what) {
  const int err = errno;
  return Status{err, syscall, {}, what + ": " + std::strerror(err)};
}

Status create_map(uint32_t type, uint32_t key_size, uint32_t value_size, uint32_t max_entries,
                  uint32_t flags, const char* name, Fd& out) {
  bpf_attr attr{};
  attr.map_type = type;
  attr.key_size = key_size;
  attr.value_size = value_size;
  attr.max_entries = max_entries;
  attr.map_flags = flags;
  std::strncpy(attr.map_name, name, sizeof attr.map_name - 1);
  Fd fd(static_cast<int>(sys_bpf(BPF_MAP_CREATE, attr)));
  if (fd.get() < 0) return bpf_failure("bpf", std::string("BPF_MAP_CREATE ") + name);
  out = std::move(fd);
  return Status{};
}

Status load_program(const ProgramLoad& load, const std::vector<bpf_insn>& code, Fd& out,
                    VerifierStats* stats) {
  bpf_attr attr{};
  attr.prog_type = load.type;
  attr.expected_attach_type = load.expected_attach_type;
  attr.attach_btf_id = load.attach_btf_id;
  attr.insns = bpf_ptr(code.data());
  attr.insn_cnt = static_cast<uint32_t>(code.size());
  attr.license = bpf_ptr(load.license);
  std::strncpy(attr.prog_name, load.name, sizeof attr.prog_name - 1);
  if (load.btf_fd >= 0) {
    attr.prog_btf_fd = static_cast<uint32_t>(load.btf_fd);
    attr.func_info_rec_size = sizeof(bpf_func_info);
    attr.func_info = bpf_ptr(load.func_info);
    attr.func_info_cnt = load.func_info_count;
    attr.line_info_rec_size = sizeof(bpf_line_info);
    attr.line_info = bpf_ptr(load.line_info);
    attr.line_info_cnt = load.line_info_count;
  }
  // The statistics are the log's last lines: a small buffer, as the kernel keeps the end.
  std::vector<char> log;
  if (load.collect_stats) {
    log.assign(64 * 1024, '\0');
    attr.log_level = 4;  // BPF_LOG_STATS
    attr.log_buf = bpf_ptr(log.data());
    attr.log_size = static_cast<uint32_t>(log.size());
  }
  Fd fd(static_cast<int>(sys_bpf(BPF_PROG_LOAD, attr)));
  if (fd.get() >= 0) {
    if (stats != nullptr && load.collect_stats) {
      log.back() = '\0';
      stats->summary = log_tail(log, 3);
      const char* p = std::strstr(log.data(), "processed ");
      stats->processed_insns = p ? std::strtoull(p + 10, nullptr, 10) : 0;
    }
    out = std::move(fd);
    return Status{};
  }
  const int err = errno;
  if (err != EACCES && err != EINVAL && err != E2BIG && err != ENOSPC) {
    errno = err;
    return bpf_failure("bpf", "BPF_PROG_LOAD");
  }
  // The verifier refused it: load again with the whole log to say where and why. Since 6.4 the
  // kernel keeps a log's end when it does not fit, which is where the reason is.
  log.assign(16 << 20, '\0');
  attr.log_level = 1;
  attr.log_buf = bpf_ptr(log.data());
  attr.log_size = static_cast<uint32_t>(log.size());
  Fd again(static_cast<int>(sys_bpf(BPF_PROG_LOAD, attr)));
  log.back() = '\0';
  // A developer changing a program wants the whole log: CTMON_BPF_VERIFIER_LOG=FILE writes it.
  if (const char* path = std::getenv("CTMON_BPF_VERIFIER_LOG"); path != nullptr && *path != '\0') {
    if (FILE* f = std::fopen(path, "w")) {
      std::fputs(log.data(), f);
      std::fclose(f);
    }
  }
  return Status::failure(explain_verifier_log(load.name, log.data(), load.source, load.insn_lines) +
                             " (" + std::strerror(err) + ")",
                         err, "bpf");
}

std::string explain_verifier_log(const std::string& program, const std::string& log,
                                 const char* source, const std::vector<int>* insn_lines) {
  std::vector<std::string> lines;
  for (size_t start = 0; start < log.size();) {
    size_t end = log.find('\n', start);
    if (end == std::string::npos) end = log.size();
    if (end > start) lines.push_back(log.substr(start, end - start));
    start = end + 1;
  }
  const auto is_insn = [](const std::string& l) {
    size_t i = 0;
    while (i < l.size() && l[i] >= '0' && l[i] <= '9') ++i;
    return i > 0 && l.compare(i, 3, ": (") == 0;
  };
  const auto is_statistics = [](const std::string& l) {
    return l.rfind("processed ", 0) == 0 || l.rfind("verification time", 0) == 0 ||
           l.rfind("stack depth", 0) == 0 || l.rfind("mark_precise", 0) == 0;
  };
  size_t insn = lines.size();
  for (size_t i = lines.size(); i-- > 0;) {
    if (is_insn(lines[i])) {
      insn = i;
      break;
    }
  }
  std::string where, why;
  if (insn < lines.size()) {
    for (size_t i = insn; i-- > 0;) {
      if (lines[i].rfind("; ", 0) == 0 && lines[i].find(" @ ") != std::string::npos) {
        // "; <source text> @ <file>:<line>" -> "<file>:<line> (<source text>)"
        const size_t at = lines[i].rfind(" @ ");
        where = " at " + lines[i].substr(at + 3) + " (" + lines[i].substr(2, at - 2) + ")";
        break;
      }
    }
    const std::string index = lines[insn].substr(0, lines[insn].find(':'));
    const size_t i = std::strtoul(index.c_str(), nullptr, 10);
    if (where.empty() && insn_lines != nullptr && i < insn_lines->size())
      where = std::string(" at ") + source + ":" + std::to_string((*insn_lines)[i]);
    where += ", instruction " + index;
  }
  for (size_t i = insn < lines.size() ? insn + 1 : 0; i < lines.size(); ++i) {
    if (is_statistics(lines[i]) || lines[i].rfind("; ", 0) == 0 || is_insn(lines[i])) continue;
    why += (why.empty() ? "" : "; ") + lines[i];
  }
  if (why.empty() && !lines.empty()) why = lines.back();
  return "the verifier rejected " + program + where + ": " + why;
}

unsigned possible_cpus() {
  // "0-3", "0,2-5", ...: count every CPU listed.
  char text[256] = "";
  if (!read_small_file("/sys/devices/system/cpu/possible", text)) return 0;
  unsigned count = 0;
  const char* p = text;
  while (*p >= '0' && *p <= '9') {
    char* end = nullptr;
    const unsigned long first = std::strtoul(p, &end, 10);
    unsigned long last = first;
    if (*end == '-') last = std::strtoul(end + 1, &end, 10);
    if (last < first || last - first > 65535) return 0;
    count += static_cast<unsigned>(last - first + 1);
    p = *end == ',' ? end + 1 : end;
  }
  return count;
}

Status update_element(int map_fd, const void* key, const void* value) {
  bpf_attr attr{};
  attr.map_fd = static_cast<uint32_t>(map_fd);
  attr.key = bpf_ptr(key);
  attr.value = bpf_ptr(value);
  attr.flags = BPF_ANY;
  if (sys_bpf(BPF_MAP_UPDATE_ELEM, attr) != 0) return Status::from_errno("bpf");
  return Status{};
}

Status lookup_per_cpu(int map_fd, uint32_t key, size_t value_size, std::vector<uint8_t>& out) {
  static const unsigned cpus = possible_cpus();
  if (cpus == 0) return Status{ENOENT, "open"};
  out.resize(((value_size + 7) & ~size_t{7}) * cpus);
  bpf_attr attr{};
  attr.map_fd = static_cast<uint32_t>(map_fd);
  attr.key = bpf_ptr(&key);
  attr.value = bpf_ptr(out.data());
  if (sys_bpf(BPF_MAP_LOOKUP_ELEM, attr) != 0) return Status::from_errno("bpf");
  return Status{};
}

}  // namespace ctmon
