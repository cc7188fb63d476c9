/* hash.h — murmur3's 64-bit finalizer (fmix64), the one mixing step of every hash here: the
 * tracked table's, the snapshot's grouping, and the eBPF event program's flow keys, which the
 * program computes in the kernel and user space must compute alike. C and C++: the eBPF
 * programs include it too. Any thread; pure. */
#pragma once

#include <linux/types.h>

#define CT_FMIX64_MULTIPLIER_1 0xff51afd7ed558ccdULL
#define CT_FMIX64_MULTIPLIER_2 0xc4ceb9fe1a85ec53ULL

static inline __u64 ct_fmix64(__u64 x) {
  x ^= x >> 33;
  x *= CT_FMIX64_MULTIPLIER_1;
  x ^= x >> 33;
  x *= CT_FMIX64_MULTIPLIER_2;
  x ^= x >> 33;
  return x;
}

#ifdef __cplusplus
#include <cstdint>

namespace ctmon {
inline uint64_t fmix64(uint64_t x) { return ct_fmix64(x); }
}  // namespace ctmon
#endif
