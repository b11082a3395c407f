// Row-vectorised direct conv2d with AVX2+FMA, for layers with few output channels (K < 8).
//
//   x  is (N, C, H, W)    w is (K, C, R, S)    b is (K)    y is (N, K, P, Q)    stride_w = 1
//
// Why: the channel-vectorised direct kernel (conv2d_direct_avx2.cpp) puts 8 output channels
// in a vector, so with K < 8 most lanes are padding; im2col + GEMM has a GEMM of M = K < 8
// rows, which spends more time writing and packing the im2col matrix than multiplying
// (LeNet's C1, 1 -> 6 channels, 5x5 on 32x32, runs far below the GEMM's peak that way). Here a vector runs
// along an output row instead: 8 neighbouring output pixels of one channel, which with
// stride_w = 1 read 8 neighbouring input pixels, one unaligned load.
//
// Forward, per image, per output row op, per chunk of KB <= 6 output channels, per block of NV
// vectors of 8 columns (the last vector of a row is shifted back to end at Q: it recomputes a
// few pixels instead of running a masked remainder):
//   acc[k][j] (KB x NV vectors) += broadcast(w[k0+k][c][r][s]) * xp[c][op*sh + r*dh][q_j + s*dw ...+8]
//       over every tap (c, r, s) whose input row is not all padding (skipped: it adds zeros)
//   y[k0+k][op][q_j ... +8] = acc[k][j]
// then y = act(y + b), plane by plane (vmath.h).
// Registers: KB*NV accumulators + NV input vectors + 1 broadcast <= 16 ymm.
//
// Backward input with stride 1 is a forward of dy with the flipped filter (conv2d.cpp); with
// C < 8 input channels that flipped problem has K' = C < 8 and runs here (LeNet's C3: C = 6).
//
// Backward weight: the same products, summed over pixels instead of taps. For one (c, r) and a
// block of SB taps s0 ... s0+SB-1 of that filter row:
//   acc[k][i] (KB x SB vectors) += dyp[k][op][qv ... +8] * xp[c][op*sh + r*dh][qv + (s0+i)*dw ... +8]
//       over every output row op (but rows reading only padding) and every vector qv of it
//   dw[k0+k][c][r][s0+i] += the 8 lanes of acc[k][i] summed
// dyp is dy_n with each row padded with zeros to Qp, a multiple of 8 columns, so the lanes
// past Q add nothing; xp's rows have spare zero columns so those loads stay in the buffer.
// Each thread sums its images into its own dw, added in thread order at the end, so a given
// thread count always gives the same bits.
//
// Compiled with -mavx2 -mfma (csrc/cpu/avx2/); reached only through conv2d.cpp's dispatch table.
#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/parallel.h"
#include "cpu/conv2d_kernels.h"
#include "cpu/vmath.h"

namespace fastconv {
namespace cpu {

namespace {

constexpr int kMaxChunk = 6;  // output channels per pass: 6 x 2 vectors = 12 accumulators

// The second side of a block for a chunk of KB channels (forward: NV vectors of columns;
// backward weight: SB taps) such that KB*NV accumulators + NV input vectors + 1 <= 16 ymm.
constexpr int max_vectors(int KB) { return KB <= 2 ? 4 : (KB <= 4 ? 3 : 2); }

// x_n (C, H, W) zero-padded into buf (C, Hp, ld), ld >= Wp; the columns past Wp are zero too.
void pad_rows(const float* xn, const Conv2dParams& p, int64_t Hp, int64_t ld, float* buf) {
  std::memset(buf, 0, sizeof(float) * p.C * Hp * ld);
  for (int64_t c = 0; c < p.C; ++c)
    for (int64_t h = 0; h < p.H; ++h)
      std::memcpy(buf + (c * Hp + h + p.pad_top) * ld + p.pad_left, xn + (c * p.H + h) * p.W,
                  sizeof(float) * p.W);
}

// The filter rows [r0, r1) whose input row op*sh + r*dh lies in the image, not the padding.
// (The input row grows with r, so they are one range.)
inline void live_rows(const Conv2dParams& p, int64_t op, int64_t* r0, int64_t* r1) {
  int64_t lo = 0, hi = p.R;
  while (lo < hi && op * p.stride_h + lo * p.dil_h < p.pad_top) ++lo;
  while (hi > lo && op * p.stride_h + (hi - 1) * p.dil_h >= p.pad_top + p.H) --hi;
  *r0 = lo;
  *r1 = hi;
}

inline float lane_sum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Forward: output row op, KB channels, NV vectors starting at output columns col[0..NV).
// xp (C, Hp, ld); wt (C*R*S, KB): wt[tap][k] = w[k0+k][tap]; y (KB, P, Q): the chunk's planes.
template <int KB, int NV>
// (Always inlined, like weight_block below: see the note in conv2d_direct_avx2.cpp.)
__attribute__((always_inline)) inline void forward_block(const float* xp, int64_t Hp, int64_t ld,
                                                         const float* wt, const Conv2dParams& p,
                                                         int64_t op, int64_t r0, int64_t r1,
                                                         const int64_t* col, float* y) {
  __m256 acc[KB][NV];
  for (int k = 0; k < KB; ++k)
    for (int j = 0; j < NV; ++j) acc[k][j] = _mm256_setzero_ps();
  for (int64_t c = 0; c < p.C; ++c)
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = xp + (c * Hp + op * p.stride_h + r * p.dil_h) * ld;   // input row
      const float* wr = wt + (c * p.R + r) * p.S * KB;                          // taps (c, r, *)
      for (int64_t s = 0; s < p.S; ++s, wr += KB) {
        const float* xs = xr + s * p.dil_w;
        __m256 xv[NV];
        for (int j = 0; j < NV; ++j) xv[j] = _mm256_loadu_ps(xs + col[j]);
        for (int k = 0; k < KB; ++k) {
          const __m256 wb = _mm256_broadcast_ss(wr + k);
          for (int j = 0; j < NV; ++j) acc[k][j] = _mm256_fmadd_ps(xv[j], wb, acc[k][j]);
        }
      }
    }
  const int64_t PQ = p.P * p.Q;
  for (int k = 0; k < KB; ++k)
    for (int j = 0; j < NV; ++j) _mm256_storeu_ps(y + k * PQ + op * p.Q + col[j], acc[k][j]);
}

// Forward of one chunk of KB channels of one image, NV vectors a block.
template <int KB, int NV>
void forward_chunk(const float* xp, int64_t Hp, int64_t ld, const float* wt, const Conv2dParams& p,
                   float* y) {
  int64_t col[NV];
  for (int64_t op = 0; op < p.P; ++op) {
    int64_t r0, r1;
    live_rows(p, op, &r0, &r1);
    for (int64_t q0 = 0; q0 < p.Q; q0 += NV * 8) {
      for (int j = 0; j < NV; ++j) col[j] = std::min<int64_t>(q0 + 8 * j, p.Q - 8);
      forward_block<KB, NV>(xp, Hp, ld, wt, p, op, r0, r1, col, y);
    }
  }
}

template <int KB>
void forward_chunk_nv(const float* xp, int64_t Hp, int64_t ld, const float* wt,
                      const Conv2dParams& p, float* y) {
  // As many vectors as a row needs, at most what fits the registers (only those NV are
  // instantiated).
  const int nv = std::min(static_cast<int>((p.Q + 7) / 8), max_vectors(KB));
  if constexpr (max_vectors(KB) >= 4) if (nv >= 4) return forward_chunk<KB, 4>(xp, Hp, ld, wt, p, y);
  if constexpr (max_vectors(KB) >= 3) if (nv == 3) return forward_chunk<KB, 3>(xp, Hp, ld, wt, p, y);
  if (nv >= 2) return forward_chunk<KB, 2>(xp, Hp, ld, wt, p, y);
  forward_chunk<KB, 1>(xp, Hp, ld, wt, p, y);
}

// Backward weight: KB channels x SB taps (c, r, s0 ... s0+SB-1), summed over the image.
// xp (C, Hp, ld); dyp (KB, P, Qp): the chunk's rows, zero past Q; dw (K, C*R*S) at channel k0.
template <int KB, int SB>
__attribute__((always_inline)) inline void weight_block(const float* xp, int64_t Hp, int64_t ld,
                                                        const float* dyp, int64_t Qp,
                                                        const Conv2dParams& p, int64_t c,
                                                        int64_t r, int64_t s0, float* dw) {
  __m256 acc[KB][SB];
  for (int k = 0; k < KB; ++k)
    for (int i = 0; i < SB; ++i) acc[k][i] = _mm256_setzero_ps();
  // The output rows whose input row (op*sh + r*dh) is in the image, not the padding: one
  // range [op0, op1), walked with the row vectors in one flat loop (nested loops made GCC
  // store the accumulators after every row).
  int64_t op0 = 0, op1 = p.P;
  while (op0 < op1 && op0 * p.stride_h + r * p.dil_h < p.pad_top) ++op0;
  while (op1 > op0 && (op1 - 1) * p.stride_h + r * p.dil_h >= p.pad_top + p.H) --op1;
  const int64_t plane = p.P * Qp;
  const float* xr = xp + (c * Hp + op0 * p.stride_h + r * p.dil_h) * ld + s0 * p.dil_w;
  const float* dr = dyp + op0 * Qp;
  int64_t qv = 0;
  for (int64_t it = 0, n = (op1 - op0) * (Qp / 8); it < n; ++it) {
    __m256 xv[SB];
    for (int i = 0; i < SB; ++i) xv[i] = _mm256_loadu_ps(xr + qv + i * p.dil_w);
    for (int k = 0; k < KB; ++k) {
      const __m256 dv = _mm256_load_ps(dr + k * plane + qv);
      for (int i = 0; i < SB; ++i) acc[k][i] = _mm256_fmadd_ps(dv, xv[i], acc[k][i]);
    }
    qv += 8;
    if (qv == Qp) {
      qv = 0;
      xr += p.stride_h * ld;
      dr += Qp;
    }
  }
  const int64_t CRS = p.C * p.R * p.S, tap = (c * p.R + r) * p.S + s0;
  for (int k = 0; k < KB; ++k)
    for (int i = 0; i < SB; ++i) dw[k * CRS + tap + i] += lane_sum(acc[k][i]);
}


template <int KB>
void weight_chunk(const float* xp, int64_t Hp, int64_t ld, const float* dyp, int64_t Qp,
                  const Conv2dParams& p, float* dw) {
  for (int64_t c = 0; c < p.C; ++c)
    for (int64_t r = 0; r < p.R; ++r)
      for (int64_t s0 = 0; s0 < p.S;) {
        const int64_t sb = std::min<int64_t>(max_vectors(KB), p.S - s0);
        if constexpr (max_vectors(KB) >= 4) if (sb == 4) { weight_block<KB, 4>(xp, Hp, ld, dyp, Qp, p, c, r, s0, dw); s0 += 4; continue; }
        if constexpr (max_vectors(KB) >= 3) if (sb == 3) { weight_block<KB, 3>(xp, Hp, ld, dyp, Qp, p, c, r, s0, dw); s0 += 3; continue; }
        if (sb == 2) { weight_block<KB, 2>(xp, Hp, ld, dyp, Qp, p, c, r, s0, dw); s0 += 2; continue; }
        weight_block<KB, 1>(xp, Hp, ld, dyp, Qp, p, c, r, s0, dw);
        s0 += 1;
      }
}

// Chunk i of n over K channels: [K*i/n, K*(i+1)/n), n = ceil(K / kMaxChunk): sizes differ by 1.
inline int64_t chunk_start(int64_t K, int64_t i) {
  const int64_t n = (K + kMaxChunk - 1) / kMaxChunk;
  return K * i / n;
}

}  // namespace

void conv2d_forward_rows_avx2(const float* x, const float* w, const float* b, float* y,
                              const Conv2dParams& p, Activation act, float alpha) {
  const int64_t CRS = p.C * p.R * p.S, PQ = p.P * p.Q, CHW = p.C * p.H * p.W;
  const int64_t Hp = p.H + p.pad_top + p.pad_bottom, Wp = p.W + p.pad_left + p.pad_right;
  const bool padded = Hp != p.H || Wp != p.W;
  const int64_t n_chunks = (p.K + kMaxChunk - 1) / kMaxChunk;
  const ActivationKernel out_pass = activation_kernel(vec_math(), act, alpha);

  // wt: chunk i (channels k0 ... k1-1) is (CRS, k1-k0) at k0*CRS: wt[tap][k] = w[k0+k][tap].
  std::vector<float> wt(size_t(p.K * CRS));
  for (int64_t i = 0; i < n_chunks; ++i) {
    const int64_t k0 = chunk_start(p.K, i), kc = chunk_start(p.K, i + 1) - k0;
    for (int64_t tap = 0; tap < CRS; ++tap)
      for (int64_t k = 0; k < kc; ++k) wt[size_t(k0 * CRS + tap * kc + k)] = w[(k0 + k) * CRS + tap];
  }

  ParallelErrors errors;                                             // the padded image's workspace
#pragma omp parallel num_threads(omp_threads()) if (p.N > 1)
  {
    // The workspace first (the one step that can throw), then a plain loop (reserve_workspace
    // says why); a thread without it skips its images and the call rethrows.
    const bool ready = !padded || reserve_workspace(errors, 0, p.C * Hp * Wp);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < p.N; ++n) {
      if (!ready) continue;
      const float* xp = x + n * CHW;                                   // (C, Hp, Wp)
      if (padded) {
        float* buf = thread_workspace(0, p.C * Hp * Wp);
        pad_rows(xp, p, Hp, Wp, buf);
        xp = buf;
      }
      float* yn = y + n * p.K * PQ;                                    // (K, P, Q)
      for (int64_t i = 0; i < n_chunks; ++i) {
        const int64_t k0 = chunk_start(p.K, i), kc = chunk_start(p.K, i + 1) - k0;
        const float* wc = wt.data() + k0 * CRS;
        float* yc = yn + k0 * PQ;
        switch (kc) {
          case 1: forward_chunk_nv<1>(xp, Hp, Wp, wc, p, yc); break;
          case 2: forward_chunk_nv<2>(xp, Hp, Wp, wc, p, yc); break;
          case 3: forward_chunk_nv<3>(xp, Hp, Wp, wc, p, yc); break;
          case 4: forward_chunk_nv<4>(xp, Hp, Wp, wc, p, yc); break;
          case 5: forward_chunk_nv<5>(xp, Hp, Wp, wc, p, yc); break;
          default: forward_chunk_nv<6>(xp, Hp, Wp, wc, p, yc); break;
        }
      }
      if (b || act != Activation::None)
        for (int64_t k = 0; k < p.K; ++k) out_pass(yn + k * PQ, b ? b[k] : 0.f, yn + k * PQ, PQ);
    }
  }
  errors.rethrow();
}

void conv2d_backward_weight_rows_avx2(const float* dy, const float* x, float* dw,
                                      const Conv2dParams& p) {
  const int64_t CRS = p.C * p.R * p.S, PQ = p.P * p.Q, CHW = p.C * p.H * p.W;
  const int64_t Hp = p.H + p.pad_top + p.pad_bottom, Wp = p.W + p.pad_left + p.pad_right;
  const int64_t Qp = (p.Q + 7) / 8 * 8;
  // xp rows: the loads of the last vector reach column Qp - 1 + (S-1)*dw, past Wp - 1 by up to 7.
  const int64_t ld = std::max(Wp, Qp + (p.S - 1) * p.dil_w);
  const int64_t n_chunks = (p.K + kMaxChunk - 1) / kMaxChunk;
  const int max_nt = static_cast<int>(std::min<int64_t>(omp_threads(), p.N));
  std::vector<float> partial(size_t(max_nt) * p.K * CRS, 0.f);       // per thread: dw (K, CRS)
  // Thread t of the nt that run (nt <= max_nt, read inside the region) takes images
  // [N*t/nt, N*(t+1)/nt). The workspaces are reserved first and the loop is a plain region
  // body, not parallel_team's lambda (reserve_workspace says why).
  ParallelErrors errors;
  int team = 1;
#pragma omp parallel num_threads(max_nt) if (max_nt > 1)
  {
    const int nt = omp_team_size(), t = omp_thread_id();
    if (t == 0) team = nt;
    const bool ready = reserve_workspace(errors, 0, p.C * Hp * ld) &&
                       reserve_workspace(errors, 2, p.K * p.P * Qp);
    float* dwt = partial.data() + size_t(t) * p.K * CRS;
    float* xp = ready ? thread_workspace(0, p.C * Hp * ld) : nullptr;     // (C, Hp, ld)
    float* dyp = ready ? thread_workspace(2, p.K * p.P * Qp) : nullptr;   // (K, P, Qp)
    for (int64_t n = p.N * t / nt; ready && n < p.N * (t + 1) / nt; ++n) {
      pad_rows(x + n * CHW, p, Hp, ld, xp);
      const float* dyn = dy + n * p.K * PQ;                          // (K, P, Q)
      for (int64_t row = 0; row < p.K * p.P; ++row) {
        std::memcpy(dyp + row * Qp, dyn + row * p.Q, sizeof(float) * p.Q);
        std::memset(dyp + row * Qp + p.Q, 0, sizeof(float) * (Qp - p.Q));
      }
      for (int64_t i = 0; i < n_chunks; ++i) {
        const int64_t k0 = chunk_start(p.K, i), kc = chunk_start(p.K, i + 1) - k0;
        const float* dc = dyp + k0 * p.P * Qp;
        float* dwc = dwt + k0 * CRS;
        switch (kc) {
          case 1: weight_chunk<1>(xp, Hp, ld, dc, Qp, p, dwc); break;
          case 2: weight_chunk<2>(xp, Hp, ld, dc, Qp, p, dwc); break;
          case 3: weight_chunk<3>(xp, Hp, ld, dc, Qp, p, dwc); break;
          case 4: weight_chunk<4>(xp, Hp, ld, dc, Qp, p, dwc); break;
          case 5: weight_chunk<5>(xp, Hp, ld, dc, Qp, p, dwc); break;
          default: weight_chunk<6>(xp, Hp, ld, dc, Qp, p, dwc); break;
        }
      }
    }
  }
  errors.rethrow();
  for (int64_t i = 0; i < p.K * CRS; ++i) {
    float sum = partial[size_t(i)];
    for (int th = 1; th < team; ++th) sum += partial[size_t(th) * p.K * CRS + i];
    dw[i] = sum;
  }
}

}  // namespace cpu
}  // namespace fastconv
