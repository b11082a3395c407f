// Inverted dropout on the CPU, forward (the backward is dy * mask, a plain multiply).
//
//   x, y, mask: n floats.  u_i = uniform01(seed, step, i)  (common/counter_rng.h)
//   mask_i = (u_i >= rate) / (1 - rate);  y_i = x_i * mask_i
//
// The numbers come from a counter-based hash of (seed, step, index) instead of a stateful
// generator: each element is independent, so the array splits into chunks over the OpenMP
// threads, the loop vectorises (vmath's dropout entry, by ISA), and the CPU keeps exactly the
// elements the CUDA kernel (cuda/training.cu) keeps for the same seed and step. NumPy's
// generator, drawing, comparing and scaling a float32 array, took about a fifth of a DCGAN
// discriminator's training step.
#include <cstdint>

#include "common/counter_rng.h"
#include "common/parallel.h"
#include "cpu/vmath.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

void dropout_forward(const float* x, float* y, float* mask, int64_t n, float rate, uint64_t seed,
                     uint64_t step) {
  const DropoutFn kernel = vec_math().dropout;
  const uint32_t threshold = keep_threshold(rate);
  const float scale = 1.f / (1.f - rate);
  // Fixed chunks, not one per thread: small arrays stay on the calling thread.
  constexpr int64_t kChunk = 16384;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (chunks > 1)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t first = c * kChunk, len = n - first < kChunk ? n - first : kChunk;
    kernel(x + first, y + first, mask + first, len, uint64_t(first), seed, step, threshold, scale);
  }
}

}  // namespace cpu
}  // namespace fastconv
