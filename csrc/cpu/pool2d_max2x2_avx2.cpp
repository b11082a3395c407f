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
// Why: the compiler left pool2d.cpp's byte-index loops scalar (0.96 ms for the forward of
// 64x6x28x28, against 0.11 ms for the plain forward).
//
// Compiled with -mavx2 -mfma (the *avx2* file rule); pool2d.cpp calls it only on AVX2 machines.
#include <immintrin.h>

#include <cstring>

#include "common/parallel.h"
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

inline bool is_max1(float v, float m) { return (v == m) | (v != v); }
inline float nan_max1(float m, float v) { return (v > m || v != v) ? v : m; }

}  // namespace

void max_pool2d_2x2_forward_indices_avx2(const float* x, float* y, uint8_t* idx, const Pool2dParams& p) {
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q, W = p.W, Q = p.Q;
#pragma omp parallel for schedule(static) if (planes * HW > (1 << 15))
  for (int64_t i = 0; i < planes; ++i)
    for (int64_t op = 0; op < p.P; ++op) {
      const float* x0 = x + i * HW + 2 * op * W;     // (W): the window's top row
      const float* x1 = x0 + W;                      // (W): its bottom row
      float* yr = y + i * PQ + op * Q;               // (Q)
      uint8_t* ir = idx + i * PQ + op * Q;           // (Q)
      // Vectors of 8 outputs; the last one shifted back to end at Q (it recomputes a few
      // outputs, the same bits, instead of a scalar tail, which mispredicts on random data).
      int64_t oq = 0;
      for (int64_t next = 0; Q >= 8 && next < Q; next += 8) {
        oq = next + 8 <= Q ? next : Q - 8;
        __m256 a, b, c, d;
        split_even_odd(x0 + 2 * oq, &a, &b);
        split_even_odd(x1 + 2 * oq, &c, &d);
        const __m256 m = nan_max8(nan_max8(nan_max8(a, b), c), d);
        // not_a = -1 where a is not the maximum; not_ab, not_abc alike: idx = their count.
        const __m256i not_a = _mm256_castps_si256(_mm256_xor_ps(is_max8(a, m), _mm256_castsi256_ps(_mm256_set1_epi32(-1))));
        const __m256i not_ab = _mm256_andnot_si256(_mm256_castps_si256(is_max8(b, m)), not_a);
        const __m256i not_abc = _mm256_andnot_si256(_mm256_castps_si256(is_max8(c, m)), not_ab);
        const __m256i j = _mm256_sub_epi32(_mm256_setzero_si256(),
                                           _mm256_add_epi32(_mm256_add_epi32(not_a, not_ab), not_abc));
        _mm256_storeu_ps(yr + oq, m);
        // 8 int32 lanes (0..3) -> 8 bytes.
        const __m128i j16 = _mm_packs_epi32(_mm256_castsi256_si128(j), _mm256_extracti128_si256(j, 1));
        const __m128i j8 = _mm_packus_epi16(j16, j16);
        _mm_storel_epi64(reinterpret_cast<__m128i*>(ir + oq), j8);
      }
      for (oq = Q >= 8 ? Q : 0; oq < Q; ++oq) {     // rows under 8 outputs, one at a time
        const float a = x0[2 * oq], b = x0[2 * oq + 1], c = x1[2 * oq], d = x1[2 * oq + 1];
        const float m = nan_max1(nan_max1(nan_max1(a, b), c), d);
        const int na = !is_max1(a, m), nb = na & !is_max1(b, m), nc = nb & !is_max1(c, m);
        yr[oq] = m;
        ir[oq] = uint8_t(na + nb + nc);
      }
    }
}

void max_pool2d_2x2_backward_indices_avx2(const float* dy, const uint8_t* idx, float* dx, const Pool2dParams& p) {
  const int64_t planes = p.N * p.C, HW = p.H * p.W, PQ = p.P * p.Q, W = p.W, Q = p.Q;
#pragma omp parallel for schedule(static) if (planes * HW > (1 << 15))
  for (int64_t i = 0; i < planes; ++i) {
    for (int64_t op = 0; op < p.P; ++op) {
      float* d0 = dx + i * HW + 2 * op * W;          // (W)
      float* d1 = d0 + W;                            // (W)
      const float* dyr = dy + i * PQ + op * Q;       // (Q)
      const uint8_t* ir = idx + i * PQ + op * Q;     // (Q)
      int64_t oq = 0;
      for (int64_t next = 0; Q >= 8 && next < Q; next += 8) {   // the last vector shifted back
        oq = next + 8 <= Q ? next : Q - 8;
        const __m256 g = _mm256_loadu_ps(dyr + oq);
        int64_t bytes;
        std::memcpy(&bytes, ir + oq, 8);
        const __m256i j = _mm256_cvtepu8_epi32(_mm_cvtsi64_si128(bytes));
        const auto cell = [&](int k) {
          return _mm256_and_ps(g, _mm256_castsi256_ps(_mm256_cmpeq_epi32(j, _mm256_set1_epi32(k))));
        };
        store_interleaved(d0 + 2 * oq, cell(0), cell(1));
        store_interleaved(d1 + 2 * oq, cell(2), cell(3));
      }
      for (oq = Q >= 8 ? Q : 0; oq < Q; ++oq) {     // rows under 8 outputs
        const float g = dyr[oq];
        const int j = ir[oq];
        d0[2 * oq] = j == 0 ? g : 0.f;
        d0[2 * oq + 1] = j == 1 ? g : 0.f;
        d1[2 * oq] = j == 2 ? g : 0.f;
        d1[2 * oq + 1] = j == 3 ? g : 0.f;
      }
      for (int64_t w = 2 * Q; w < W; ++w) d0[w] = d1[w] = 0.f;   // a last odd column
    }
    std::memset(dx + i * HW + 2 * p.P * W, 0, sizeof(float) * (p.H - 2 * p.P) * W);  // an odd last row
  }
}

}  // namespace cpu
}  // namespace fastconv
