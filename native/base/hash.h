// Role: murmur3's 64-bit finalizer (fmix64), the one mixing step of every hash here: the
// tracked table's, the snapshot's grouping, and the eBPF event program's flow keys, which the
// program computes in the kernel and user space must compute alike. Any thread; pure.
#pragma once

#include <cstdint>

namespace ctmon {

constexpr uint64_t kFmix64Multiplier1 = 0xff51afd7ed558ccdULL;
constexpr uint64_t kFmix64Multiplier2 = 0xc4ceb9fe1a85ec53ULL;

inline uint64_t fmix64(uint64_t x) {
  x ^= x >> 33;
  x *= kFmix64Multiplier1;
  x ^= x >> 33;
  x *= kFmix64Multiplier2;
  x ^= x >> 33;
  return x;
}

}  // namespace ctmon
