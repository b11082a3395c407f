// Non-temporal (streaming) stores for large outputs of memory-bound ops.
//
// A streaming store writes a whole cache line to memory without reading it first and without
// keeping it in the cache. That saves a third of the memory traffic of an op that reads one
// array and writes another, and leaves the cache to the input; it is a loss when the next op
// would have found the output in cache, so only outputs larger than half the last-level cache
// take this path (streams_output). The ops compute a block into an L1 buffer and stream_copy it
// out; stream_fence() after the loop orders the stores before the op returns.
//
// x86-64 only (SSE2's _mm_stream_ps is in the baseline ISA); elsewhere stream_copy is memcpy
// and streams_output is false, so no path changes.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>
#define FASTCONV_STREAM_STORES 1
#endif

namespace fastconv {
namespace cpu {

constexpr int64_t kStreamBlock = 2048;   // floats per L1 block: 8 KiB

// Whether an output of `bytes` bytes is written with streaming stores: more than half the
// last-level cache (cpu0's largest cache in sysfs, else sysconf's, else 8 MiB).
bool streams_output(int64_t bytes);

// The threshold in bytes; set_stream_store_threshold(-1) restores the default. For tests,
// which run the streaming path on small arrays and compare it with the ordinary one.
int64_t stream_store_threshold();
void set_stream_store_threshold(int64_t bytes);

// dst[0:n] = src[0:n], src 16-byte aligned; streaming stores where dst allows them.
inline void stream_copy(const float* src, float* dst, int64_t n) {
#ifdef FASTCONV_STREAM_STORES
  int64_t i = 0;
  while (i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15) != 0) {  // to a 16-byte boundary
    dst[i] = src[i];
    ++i;
  }
  if (((reinterpret_cast<uintptr_t>(src + i)) & 15) == 0)
    for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_load_ps(src + i));
  else
    for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
  for (; i < n; ++i) dst[i] = src[i];
#else
  std::memcpy(dst, src, sizeof(float) * size_t(n));
#endif
}

inline void stream_fence() {
#ifdef FASTCONV_STREAM_STORES
  _mm_sfence();
#endif
}

}  // namespace cpu
}  // namespace fastconv
