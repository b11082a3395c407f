// The counter-based random numbers of dropout, shared by the CPU and CUDA kernels.
//
// random24(seed, step, i) is the top 24 bits of SplitMix64's finaliser over seed + step * c1 +
// (i + 1) * c2: the same (seed, step, i) gives the same number on every device and thread, with
// no generator state to carry between elements, calls or kernels (so the work can be split any
// way and the masks stay the same bits). uniform01 = random24 / 2^24 is exact in float32, so
// u >= rate is the integer test random24 >= keep_threshold(rate) (= ceil(rate 2^24), exact in
// double): the CPU compares integers, which vectorise, and keeps exactly the GPU's elements.
#pragma once
#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define FASTCONV_HOST_DEVICE __host__ __device__ __forceinline__
#else
// static: each file gets its own copy, compiled with its own ISA flags (an inline function
// with external linkage could be merged with the AVX2 file's copy and run on any CPU).
#define FASTCONV_HOST_DEVICE static inline
#endif

namespace fastconv {

FASTCONV_HOST_DEVICE uint32_t random24(uint64_t seed, uint64_t step, uint64_t i) {
  uint64_t z = seed + step * 0xD1B54A32D192ED03ull + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return uint32_t(z >> 40);
}

FASTCONV_HOST_DEVICE float uniform01(uint64_t seed, uint64_t step, uint64_t i) {
  return float(random24(seed, step, i)) * (1.f / 16777216.f);  // [0, 1), exact
}

// The smallest random24 that uniform01 >= rate keeps (rate in [0, 1)).
FASTCONV_HOST_DEVICE uint32_t keep_threshold(float rate) {
  return uint32_t(std::ceil(double(rate) * 16777216.0));
}

}  // namespace fastconv
