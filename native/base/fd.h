// fd.h — Fd, an owned file descriptor closed on destruction; and Status (status.h), in which
// every native function that can fail reports it.
//
// No Node-API, no threads of its own; any thread may use them.
#pragma once

#include "base/status.h"

namespace ctmon {

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
