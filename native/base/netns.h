// netns.h — opens a network namespace file (/var/run/netns/NAME, /proc/PID/ns/net) for setns()
// without ever blocking, and checks that it is one before anything waits on it or enters it.
//
// Why: open() of a FIFO waits for a writer forever, and opening a device can have effects of
// its own. So the path is stat()ed first and only a regular file is opened (namespace files
// are regular empty files on nsfs), with O_NONBLOCK in case it was swapped for a FIFO in
// between; then fstatfs() must say nsfs and NS_GET_NSTYPE (Linux >= 4.11; skipped where the
// kernel lacks it, setns() checks the type there) must say CLONE_NEWNET.
//
// No Node-API. Any thread; the caller decides which (the monitor's reader thread).
#pragma once

#include "base/fd.h"

namespace ctmon {

// On success `out` holds the namespace, opened O_RDONLY | O_CLOEXEC. On failure, the status
// names the call that failed; for a file that is not a network namespace the status is EINVAL
// and `*what` says what the file is instead ("a FIFO", "a directory", "a mount namespace",
// ...), else `*what` is left null.
Status open_network_namespace(const char* path, Fd& out, const char** what);

}  // namespace ctmon
