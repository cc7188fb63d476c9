// status.h — the one error vocabulary of the native code: whether an operation worked and,
// when not, what failed (errno and the system call), what was being done, and the sentence
// for the user. JS receives it as { message, errno, syscall, context } (binding/convert.h) and
// src/errors.ts turns that into a ConntrackError.
//
// No Node-API; any thread. Cheap to return on a hot path: a success holds two empty strings.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

namespace ctmon {

struct Status {
  int code = 0;              // errno of the failing system call; 0 when none failed
  const char* syscall = "";  // its name ("setns", "bpf", ...); "" when none
  std::string context;       // what was being done: "subscribe to conntrack events"
  std::string message;       // the whole sentence, when "<context>: <strerror>" would not say it

  Status() = default;
  Status(int code, const char* syscall, std::string context = {}, std::string message = {})
      : code(code), syscall(syscall), context(std::move(context)), message(std::move(message)) {}

  bool ok() const { return code == 0 && message.empty(); }

  static Status from_errno(const char* syscall) { return Status(errno, syscall); }
  // A failure with its sentence; code and syscall when a system call is behind it.
  static Status failure(std::string message, int code = 0, const char* syscall = "") {
    return Status(code, syscall, {}, std::move(message));
  }
  // This status saying what was being done when it failed (the first context given stays).
  Status in(std::string what) const {
    Status s = *this;
    if (!s.ok() && s.context.empty()) s.context = std::move(what);
    return s;
  }
  // The sentence: the message, else "<context>: <strerror(code)>".
  std::string text() const {
    if (!message.empty()) return message;
    const std::string why = code != 0 ? std::strerror(code) : "failed";
    return context.empty() ? (*syscall ? std::string(syscall) + ": " + why : why)
                           : context + ": " + why;
  }
};

}  // namespace ctmon
