// proc_text.h — parsers for the few /proc text files the reader thread reads (a sysctl's
// integer, the TIME_WAIT socket count in net/sockstat). Pure functions over a NUL-terminated
// buffer, so the fuzzer can reach them; the reading itself stays in monitor.cc.
#pragma once

#include <cstdint>

namespace ctmon {

// The leading decimal integer of a sysctl file ("262144\n"), or -1 when there is none.
int64_t parse_sysctl_integer(const char* text);

// `tw` of the "TCP:" line of net/sockstat (the /proc backend, which must work without the addon,
// has the same parser in TypeScript: src/backends/procfs.ts)
// ("TCP: inuse 5 orphan 0 tw 12 alloc 7 mem 1"), or -1 when the line or field is missing.
int64_t parse_sockstat_time_wait(const char* text);

}  // namespace ctmon
