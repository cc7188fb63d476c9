// fd.h — the two vocabulary types every native file shares: SysStatus (errno plus the name of
// the system call that failed) and Fd (an owned file descriptor, closed on destruction).
//
// No Node-API, no threads of its own; any thread may use them.
#pragma once

#include <cerrno>

namespace ctmon {

struct SysStatus {
  int code = 0;  // errno, 0 on success
  const char* syscall = "";
  bool ok() const { return code == 0; }
  static SysStatus from_errno(const char* syscall) { return SysStatus{errno, syscall}; }
};

// Owns a file descriptor; closes it on destruction.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(other.release()) {}
  Fd& operator=(Fd&& other) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release();
  void reset();

 private:
  int fd_ = -1;
};

}  // namespace ctmon
