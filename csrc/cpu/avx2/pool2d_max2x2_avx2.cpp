// 2x2 stride-2 max pooling with byte indices, AVX2: the training pair of pool2d.cpp for the
// common window, 8 outputs a step.
//
//   x is (N, C, H, W)   y is (N, C, P, Q)   idx is (N, C, P, Q) uint8   dy, dx as y, x
//   P = H / 2, Q = W / 2 (rows and columns past 2P, 2Q belong to no window: dx there is 0)
//
// Forward, per output row, 8 outputs at once: two 16-float loads of the two input rows,
// split into even and odd columns (a b / c d, the window's four cells), then
//   m = max(a, b, c, d) with a NaN winning;  idx = 0 if a holds m, else 1 if b, 2 if c, 3
// (the same first-maximum rule as pool2d.cpp's plain loops, so the same bits).
// Backward: dx's four cells = dy where idx names them, else 0; interleaved back into rows.
// Why: the compiler left pool2d.cpp's byte-index loops scalar, several times slower than the
// plain (index-free) forward it vectorises.
//
// Compiled with -mavx2 -mfma (csrc/cpu/avx2/); reached only through pool2d.cpp's dispatch table.
#include <immintrin.h>

#include <algorithm>
#include <cstring>

#include "common/parallel.h"
#include "cpu/pool2d_kernels.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

namespace {

// (v > m or v is NaN) ? v : m, lane by lane.
inline __m256 nan_max8(__m256 m, __m256 v) {
  const __m256 take = _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_GT_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  return _mm256_blendv_ps(m, v, take);
}
// All ones where v == m or v is NaN.
inline __m256 is_max8(__m256 v, __m256 m) {
  return _mm256_or_ps(_mm256_cmp_ps(v, m, _CMP_EQ_OQ), _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
}
// 16 floats -> their even and odd elements, in order.
inline void split_even_odd(const float* p, __m256* even, __m256* odd) {
  const __m256 lo = _mm256_loadu_ps(p), hi = _mm256_loadu_ps(p + 8);
  *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
  *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
}
// even, odd (8 each) -> 16 floats interleaved, stored at p.
inline void store_interleaved(float* p, __m256 even, __m256 odd) {
  const __m256 lo = _mm256_unpacklo_ps(even, odd), hi = _mm256_unpackhi_ps(even, odd);
  _mm256_storeu_ps(p, _mm256_permute2f128_ps(lo, hi, 0x20));
  _mm256_storeu_ps(p + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
}

// Lanes 0 .. n-1 on (n <= 8), for the masked loads and stores of rows under 8 outputs.
inline __m256i first_lanes(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
// Like split_even_odd, for the first 2n <= 16 floats at p; `whole`: the 16 floats at p are in
// the array, so plain loads may read past the 2n (masked loads are slow on Zen 1).
inline void split_even_odd_first(const float* p, int64_t n, bool whole, __m256* even, __m256* odd) {
  const __m256 lo = whole ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, first_lanes(std::min<int64_t>(2 * n, 8)));
  const __m256 hi = whole ? _mm256_loadu_ps(p + 8)
                          : _mm256_maskload_ps(p + 8, first_lanes(std::max<int64_t>(2 * n - 8, 0)));
  *even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0x88)), 0xD8));
  *odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(lo, hi, 0xDD)), 0xD8));
}
// Like store_interleaved, writing only the first 2n <= 16 floats (masked stores: one every
// dozen cycles or so on Zen 1, so callers write whole vectors where they may).
inline void store_interleaved_first(float* p, int64_t n, __m256 even, __m256 odd) {
  const __m256 lo = _mm256_unpacklo_ps(even, odd), hi = _mm256_unpackhi_ps(even, odd);
  _mm256_maskstore_ps(p, first_lanes(std::min<int64_t>(2 * n, 8)), _mm256_permute2f128_ps(lo, hi, 0x20));
  _mm256_maskstore_ps(p + 8, first_lanes(std::max<int64_t>(2 * n - 8, 0)), _mm256_permute2f128_ps(lo, hi, 0x31));
}

// The window's maximum and the index of its first maximum, for 8 windows (cells a b / c d).
inline void max_and_index(__m256 a, __m256 b, __m256 c, __m256 d, __m256* m_out, __m256i* j_out) {
  const __m256 m = nan_max8(nan_max8(nan_max8(a, b), c), d);
  // not_a = -1 where a is not the maximum; not_ab, not_abc alike: idx = their count.
  const __m256i not_a = _mm256_castps_si256(_mm256_xor_ps(is_max8(a, m), _mm256_castsi256_ps(_mm256_set1_epi32(-1))));
  const __m256i not_ab = _mm256_andnot_si256(_mm256_castps_si256(is_max8(b, m)), not_a);
  const __m256i not_abc = _mm256_andnot_si256(_mm256_castps_si256(is_max8(c, m)), not_ab);
  *m_out = m;
  *j_out = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_add_epi32(_mm256_add_epi32(not_a, not_ab), not_abc));
}
// 8 int32 lanes (0..3) -> 8 bytes.
inline int64_t to_bytes(__m256i j) {
  const __m128i j16 = _mm_packs_epi32(_mm256_castsi256_si128(j), _mm256_extracti128_si256(j, 1));
  return _mm_cvtsi128_si64(_mm_packus_epi16(j16, j16));
}

}  // namespace

void max_pool2d_2x2_forward_indices_avx2(const float* x, float* y, uint8_t* idx, const Pool2dParams& p) {
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q, W = p.W, Q = p.Q;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (planes * HW > (1 << 15))
  for (int64_t i = 0; i < planes; ++i)
    for (int64_t op = 0; op < p.P; ++op) {
      const float* x0 = x + i * HW + 2 * op * W;     // (W): the window's top row
      const float* x1 = x0 + W;                      // (W): its bottom row
      float* yr = y + i * PQ + op * Q;               // (Q)
      uint8_t* ir = idx + i * PQ + op * Q;           // (Q)
      // Rows under 8 outputs (the small VGG's second pool: 7): one step, with whole-vector
      // loads and stores while they stay inside the plane (a store past the row lands on rows
      // this thread writes later) and masked ones after.
      if (Q < 8) {
        __m256 a, b, c, d, m;
        __m256i j;
        const float* x_end = x + (i + 1) * HW;
        split_even_odd_first(x0, Q, x0 + 16 <= x_end, &a, &b);
        split_even_odd_first(x1, Q, x1 + 16 <= x_end, &c, &d);
        max_and_index(a, b, c, d, &m, &j);
        if (yr + 8 <= y + (i + 1) * PQ) _mm256_storeu_ps(yr, m);
        else _mm256_maskstore_ps(yr, first_lanes(Q), m);
        const int64_t bytes = to_bytes(j);
        std::memcpy(ir, &bytes, size_t(Q));
        continue;
      }
      // Vectors of 8 outputs; the last one shifted back to end at Q (it recomputes a few
      // outputs, the same bits, instead of a scalar tail, which mispredicts on random data).
      for (int64_t next = 0; next < Q; next += 8) {
        const int64_t oq = next + 8 <= Q ? next : Q - 8;
        __m256 a, b, c, d, m;
        __m256i j;
        split_even_odd(x0 + 2 * oq, &a, &b);
        split_even_odd(x1 + 2 * oq, &c, &d);
        max_and_index(a, b, c, d, &m, &j);
        _mm256_storeu_ps(yr + oq, m);
        const int64_t bytes = to_bytes(j);
        std::memcpy(ir + oq, &bytes, 8);
      }
    }
}

void max_pool2d_2x2_backward_indices_avx2(const float* dy, const uint8_t* idx, float* dx, const Pool2dParams& p) {
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q, W = p.W, Q = p.Q;
#pragma omp parallel for schedule(static) num_threads(omp_threads()) if (planes * HW > (1 << 15))
  for (int64_t i = 0; i < planes; ++i) {
    for (int64_t op = 0; op < p.P; ++op) {
      float* d0 = dx + i * HW + 2 * op * W;          // (W)
      float* d1 = d0 + W;                            // (W)
      const float* dyr = dy + i * PQ + op * Q;       // (Q)
      const uint8_t* ir = idx + i * PQ + op * Q;     // (Q)
      const auto cells = [&](int64_t oq, int64_t n, __m256 g) {   // n outputs from oq
        int64_t bytes = 0;
        std::memcpy(&bytes, ir + oq, size_t(n));
        const __m256i j = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(bytes));
        const auto cell = [&](int k) {
          return _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(j, _mm256_set1_epi32(k))));
        };
        // Whole vectors where the 16 floats stay inside the plane: what lands past the row
        // is written again later by this thread (the next rows, or the zeroing below).
        const float* dx_end = dx + (i + 1) * HW;
        if (n == 8 || d0 + 2 * oq + 16 <= dx_end) store_interleaved(d0 + 2 * oq, cell(0), cell(1));
        else store_interleaved_first(d0 + 2 * oq, n, cell(0), cell(1));
        if (n == 8 || d1 + 2 * oq + 16 <= dx_end) store_interleaved(d1 + 2 * oq, cell(2), cell(3));
        else store_interleaved_first(d1 + 2 * oq, n, cell(2), cell(3));
      };
      if (Q < 8) {                                   // one step, masked near the plane's end
        cells(0, Q, dyr + 8 <= dy + (i + 1) * PQ ? _mm256_loadu_ps(dyr) : _mm256_maskload_ps(dyr, first_lanes(Q)));
      } else {
        for (int64_t next = 0; next < Q; next += 8) {   // the last vector shifted back
          const int64_t oq = next + 8 <= Q ? next : Q - 8;
          cells(oq, 8, _mm256_loadu_ps(dyr + oq));
        }
      }
      for (int64_t w = 2 * Q; w < W; ++w) d0[w] = d1[w] = 0.f;   // a last odd column
    }
    std::memset(dx + i * HW + 2 * p.P * W, 0, sizeof(float) * (p.H - 2 * p.P) * W);  // an odd last row
  }
}

}  // namespace cpu
}  // namespace fastconv
