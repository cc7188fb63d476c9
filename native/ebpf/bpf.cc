// bpf.cc — see bpf.h.
#include "ebpf/bpf.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
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

ProbeStatus bpf_failure(const char* syscall, const std::string& what) {
  const int err = errno;
  return ProbeStatus{SysStatus{err, syscall}, what + ": " + std::strerror(err)};
}

ProbeStatus create_map(uint32_t type, uint32_t key_size, uint32_t value_size, uint32_t max_entries,
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
  return ProbeStatus{};
}

ProbeStatus load_program(const ProgramLoad& load, const std::vector<bpf_insn>& code, Fd& out) {
  bpf_attr attr{};
  attr.prog_type = load.type;
  attr.expected_attach_type = load.expected_attach_type;
  attr.attach_btf_id = load.attach_btf_id;
  attr.insns = bpf_ptr(code.data());
  attr.insn_cnt = static_cast<uint32_t>(code.size());
  attr.license = bpf_ptr(load.license);
  std::strncpy(attr.prog_name, load.name, sizeof attr.prog_name - 1);
  Fd fd(static_cast<int>(sys_bpf(BPF_PROG_LOAD, attr)));
  if (fd.get() >= 0) {
    out = std::move(fd);
    return ProbeStatus{};
  }
  const int err = errno;
  if (err != EACCES && err != EINVAL) {
    errno = err;
    return bpf_failure("bpf", "BPF_PROG_LOAD");
  }
  // The verifier refused it: load again with a log to say why.
  std::vector<char> log(1 << 20);
  attr.log_level = 1;
  attr.log_buf = bpf_ptr(log.data());
  attr.log_size = static_cast<uint32_t>(log.size());
  Fd again(static_cast<int>(sys_bpf(BPF_PROG_LOAD, attr)));
  log.back() = '\0';
  return ProbeStatus{SysStatus{err, "bpf"}, std::string("the verifier rejected the program (") +
                                                std::strerror(err) + "):\n" + log_tail(log, 6)};
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

SysStatus lookup_per_cpu(int map_fd, uint32_t key, size_t value_size, std::vector<uint8_t>& out) {
  static const unsigned cpus = possible_cpus();
  if (cpus == 0) return SysStatus{ENOENT, "open"};
  out.resize(((value_size + 7) & ~size_t{7}) * cpus);
  bpf_attr attr{};
  attr.map_fd = static_cast<uint32_t>(map_fd);
  attr.key = bpf_ptr(&key);
  attr.value = bpf_ptr(out.data());
  if (sys_bpf(BPF_MAP_LOOKUP_ELEM, attr) != 0) return SysStatus::from_errno("bpf");
  return SysStatus{};
}

SysStatus test_run(int program_fd, const uint8_t* data, size_t length, uint32_t& retval) {
  bpf_attr attr{};
  attr.test.prog_fd = static_cast<uint32_t>(program_fd);
  attr.test.data_in = bpf_ptr(data);
  attr.test.data_size_in = static_cast<uint32_t>(length);
  attr.test.repeat = 1;
  if (sys_bpf(BPF_PROG_TEST_RUN, attr) != 0) return SysStatus::from_errno("bpf");
  retval = attr.test.retval;
  return SysStatus{};
}

}  // namespace ctmon
