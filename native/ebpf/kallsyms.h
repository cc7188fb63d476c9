// kallsyms.h — the address range of a kernel function, from /proc/kallsyms.
//
// The drop probe uses it to tell "freed by nf_hook_slow" from other NETFILTER_DROP frees
// (nf_tables frees its own drops in nft_do_chain). Addresses move with KASLR, so this is read
// at run time. No Node-API.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "base/status.h"

namespace ctmon {

struct SymbolRange {
  uint64_t start = 0;  // the function's address
  uint64_t end = 0;    // the next higher symbol's address: [start, end) covers the function
};

// Reads `path` and finds text symbol `name` (type t or T, core kernel or module).
// The failure says why not: missing, ambiguous (several addresses), or hidden (all-zero
// addresses: not root, or kernel.kptr_restrict=2).
Status find_function_range(const char* name, SymbolRange& out, const char* path = "/proc/kallsyms");

// The same over kallsyms text already read (`text` need not be NUL-terminated).
Status function_range_in(const char* text, size_t length, const char* name, SymbolRange& out);

}  // namespace ctmon
