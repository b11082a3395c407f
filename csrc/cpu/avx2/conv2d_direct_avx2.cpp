// Direct conv2d forward with AVX2+FMA: no im2col, no GEMM.
//
//   x  is (N, C, H, W)    w is (K, C, R, S)    b is (K)    y is (N, K, P, Q)
//
// Why: with K small (LeNet's C3: K = 16, C*R*S = 150, P*Q = 100) im2col + GEMM spends more
// time writing the im2col matrix and packing it for the micro-kernel than multiplying: every
// element of it is used by only K rows. Here the image is read in place instead.
//
// Algorithm, per image (images spread over OpenMP threads), per chunk of up to 32 output
// channels (the image, a few KB to a few tens of KB, stays in cache across the chunks):
//   wt (CRS, KV*8)  = w transposed so one filter tap's K weights are KV vectors (zero-padded)
//   xp (C, Hp, Wp)  = x_n zero-padded (only when there is padding; otherwise x_n itself)
//   for blocks of PB consecutive output pixels (p_i, q_i) of the flattened P*Q plane:
//       acc[i][v] (PB x KV vectors of 8 channels) += broadcast(xp[c][p_i*sh + r*dh][q_i*sw + s*dw])
//                                                    * wt[(c, r, s)][v]     over every tap (c, r, s)
//       (the last block is shifted back to end at P*Q, recomputing a few pixels, so there is
//       no slow remainder loop)
//       the block is written out transposed into y_n (K, P*Q) through a small stack tile
//   then y_n = act(y_n + b), row by row, with the vectorised kernels of vmath.h.
// Registers: PB*KV = 12 accumulators (PB = 12 / KV), the KV weights and a broadcast; at
// KV = 4 that is one more than the 16 ymm, so the compiler reads some weights from memory
// (L1) as FMA operands. Per tap: the tap's offset (one flat table, tap_off), up to KV + PB
// vector loads for PB*KV FMAs. Compiled with -mavx2 -mfma (csrc/cpu/avx2/); reached only through conv2d.cpp's
// dispatch table (the avx2 entry, which the avx512 level uses too).
//
// Backward weight is the same loop nest with the roles of taps and pixels swapped: a block is
// TB consecutive filter taps (c, r, s) x KV vectors of output channels, accumulated over every
// output pixel of the image, with dy_n transposed to (P*Q, K) so a pixel's channels are
// vectors; each thread sums its images into its own dw^T, added in thread order at the end.
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

constexpr int64_t kChunk = 32;   // output channels per pass over the image: 4 vectors

// PB consecutive output pixels pix0 ... pix0+PB-1 of the flattened (P*Q) plane (a block may
// span output rows) x KV*8 channels. tile receives (PB, KV*8). tap_off (CRS) holds each tap's
// offset in xp from the pixel's tap (0, 0, 0): one flat loop over the taps, one load of the
// offset each; the (c, r, s) loop nest it replaces cost a multiply and stack reloads per tap
// and left the loads, not the FMAs, setting the pace.
template <int KV, int PB>
inline void block(const float* xp, int64_t Wp, const int64_t* tap_off, const float* wt,
                  const Conv2dParams& p, int64_t pix0, float* tile) {
  const float* base[PB];                                      // x at tap (0, 0, 0) of each pixel
  for (int i = 0; i < PB; ++i) {
    const int64_t op = (pix0 + i) / p.Q, oq = (pix0 + i) % p.Q;
    base[i] = xp + op * p.stride_h * Wp + oq * p.stride_w;
  }
  __m256 acc[PB][KV];
  for (int i = 0; i < PB; ++i)
    for (int v = 0; v < KV; ++v) acc[i][v] = _mm256_setzero_ps();
  const int64_t CRS = p.C * p.R * p.S;
  const float* wtap = wt;                                      // (CRS, KV*8), row (c, r, s)
  for (int64_t t = 0; t < CRS; ++t, wtap += KV * 8) {
    const int64_t off = tap_off[t];
    __m256 wv[KV];
    for (int v = 0; v < KV; ++v) wv[v] = _mm256_load_ps(wtap + v * 8);
    for (int i = 0; i < PB; ++i) {
      const __m256 xv = _mm256_broadcast_ss(base[i] + off);
      for (int v = 0; v < KV; ++v) acc[i][v] = _mm256_fmadd_ps(xv, wv[v], acc[i][v]);
    }
  }
  for (int i = 0; i < PB; ++i)
    for (int v = 0; v < KV; ++v) _mm256_store_ps(tile + i * KV * 8 + v * 8, acc[i][v]);
}

// Writes a tile (PB, KV*8) of pixels pix0 ... pix0+PB-1, channels 0 ... kc-1, to yk at
// channel stride ks, output row stride rs and column stride cs.
template <int KV, int PB>
inline void store_tile(const float* tile, float* yk, int64_t kc, int64_t pix0, int64_t Q,
                       const Conv2dOutputStrides& out) {
  int64_t off[PB];
  for (int i = 0; i < PB; ++i) off[i] = (pix0 + i) / Q * out.row + (pix0 + i) % Q * out.col;
  for (int64_t k = 0; k < kc; ++k)
    for (int i = 0; i < PB; ++i) yk[k * out.k + off[i]] = tile[i * KV * 8 + k];
}

// One chunk of kc <= KV*8 output channels of one image: yk holds channel 0 of the chunk,
// pixel (0, 0) (strides as out), wt is (CRS, KV*8).
template <int KV>
void forward_image(const float* xp, int64_t Wp, const int64_t* tap_off, const float* wt,
                   float* yk, int64_t kc, const Conv2dParams& p, const Conv2dOutputStrides& out) {
  constexpr int PB = 12 / KV;
  const int64_t PQ = p.P * p.Q;
  alignas(32) float tile[PB * KV * 8];
  for (int64_t pix0 = 0; pix0 < PQ; pix0 += PB) {
    if (pix0 + PB > PQ && PQ >= PB) pix0 = PQ - PB;           // last block: shift back, overlap
    if (pix0 + PB <= PQ) {
      block<KV, PB>(xp, Wp, tap_off, wt, p, pix0, tile);
      store_tile<KV, PB>(tile, yk, kc, pix0, p.Q, out);
    } else {                                                   // a plane smaller than one block
      for (int64_t pix = pix0; pix < PQ; ++pix) {
        block<KV, 1>(xp, Wp, tap_off, wt, p, pix, tile);
        store_tile<KV, 1>(tile, yk, kc, pix, p.Q, out);
      }
    }
  }
}

// x_n (C, H, W) zero-padded into the thread's workspace slot 4 as (C, Hp, Wp), or x_n itself
// when there is no padding. The border is zeroed only when the buffer last held another
// geometry: the images of a batch (and the next step's) overwrite the interior alone. Row by
// row with plain loops: the images here are small (7x7 to 32x32), and a memcpy call per row
// cost more than its copying.
const float* padded_image(const float* xn, const Conv2dParams& p, int64_t Hp, int64_t Wp) {
  if (Hp == p.H && Wp == p.W) return xn;
  float* buf = thread_workspace(4, p.C * Hp * Wp);
  struct Geometry {                                     // what the zero border fits
    const float* buf;
    int64_t C, H, W, top, left, Hp, Wp;
    bool operator==(const Geometry& o) const {
      return buf == o.buf && C == o.C && H == o.H && W == o.W && top == o.top && left == o.left &&
             Hp == o.Hp && Wp == o.Wp;
    }
  };
  thread_local Geometry zeroed = {nullptr, 0, 0, 0, 0, 0, 0, 0};
  const Geometry now = {buf, p.C, p.H, p.W, p.pad_top, p.pad_left, Hp, Wp};
  if (!(zeroed == now)) {
    std::fill(buf, buf + p.C * Hp * Wp, 0.f);
    zeroed = now;
  }
  const int64_t W = p.W;
  for (int64_t c = 0; c < p.C; ++c) {
    float* dst = buf + (c * Hp + p.pad_top) * Wp + p.pad_left;   // row 0 of channel c's interior
    const float* src = xn + c * p.H * W;                          // (H, W)
    for (int64_t h = 0; h < p.H; ++h, dst += Wp, src += W)
      for (int64_t i = 0; i < W; ++i) dst[i] = src[i];
  }
  return buf;
}

// Backward weight, one image, one chunk of KV*8 channels: TB consecutive taps t0 ... t0+TB-1
// (flattened (c, r, s)) x KV vectors of channels, summed over every output pixel:
//   acc[i][v] += broadcast(xp at tap t0+i of pixel (p, q)) * dyt[(p, q)][v]
// then added into dwt (CRS, KV*8) at taps t0 ... t0+TB-1. The last CRS % TB taps run one at a
// time (TB = 1).
// Always inlined: compiled as a function of its own, GCC 12 -O3 kept acc in registers but
// also stored all of it to the stack after every pixel (the assembly shows it): 12 stores
// beside 12 FMAs, and LeNet's C3 backward weight ran far slower than the forward.
template <int KV, int TB>
__attribute__((always_inline)) inline void weight_block(const float* xp, int64_t Hp, int64_t Wp,
                                                        const float* dyt, float* dwt,
                                                        const Conv2dParams& p, int64_t t0) {
  const float* tap[TB];                                       // x at tap t0+i of pixel (0, 0)
  for (int i = 0; i < TB; ++i) {
    const int64_t t = t0 + i, c = t / (p.R * p.S), r = t / p.S % p.R, s = t % p.S;
    tap[i] = xp + (c * Hp + r * p.dil_h) * Wp + s * p.dil_w;
  }
  __m256 acc[TB][KV];
  for (int i = 0; i < TB; ++i)
    for (int v = 0; v < KV; ++v) acc[i][v] = _mm256_setzero_ps();
  // The forward's loop shape: a pointer per tap, one offset per pixel.
  const int64_t P = p.P, Q = p.Q, sw = p.stride_w, row_step = p.stride_h * Wp;
  const float* dyrow = dyt;                                   // (P*Q, KV*8)
  for (int64_t op = 0; op < P; ++op)
    for (int64_t oq = 0; oq < Q; ++oq, dyrow += KV * 8) {
      const int64_t off = op * row_step + oq * sw;
      __m256 dv[KV];
      for (int v = 0; v < KV; ++v) dv[v] = _mm256_load_ps(dyrow + v * 8);
      for (int i = 0; i < TB; ++i) {
        const __m256 xv = _mm256_broadcast_ss(tap[i] + off);
        for (int v = 0; v < KV; ++v) acc[i][v] = _mm256_fmadd_ps(xv, dv[v], acc[i][v]);
      }
    }
  for (int i = 0; i < TB; ++i)
    for (int v = 0; v < KV; ++v) {
      float* d = dwt + (t0 + i) * KV * 8 + v * 8;
      _mm256_storeu_ps(d, _mm256_add_ps(_mm256_loadu_ps(d), acc[i][v]));
    }
}

template <int KV>
void weight_image(const float* xp, int64_t Hp, int64_t Wp, const float* dyt, float* dwt,
                  const Conv2dParams& p) {
  constexpr int TB = 12 / KV;
  const int64_t CRS = p.C * p.R * p.S;
  int64_t t0 = 0;
  for (; t0 + TB <= CRS; t0 += TB) weight_block<KV, TB>(xp, Hp, Wp, dyt, dwt, p, t0);
  for (; t0 < CRS; ++t0) weight_block<KV, 1>(xp, Hp, Wp, dyt, dwt, p, t0);   // the last few taps
}

}  // namespace

void conv2d_backward_weight_direct_avx2(const float* dy, const float* x, float* dw,
                                        const Conv2dParams& p) {
  const int64_t CRS = p.C * p.R * p.S, PQ = p.P * p.Q, CHW = p.C * p.H * p.W;
  const int64_t Hp = p.H + p.pad_top + p.pad_bottom, Wp = p.W + p.pad_left + p.pad_right;
  const int64_t Kpad = (p.K + 7) / 8 * 8;
  // Per thread, a partial dw^T in chunks like wt in the forward: chunk k0 (kc channels, ld =
  // ceil(kc/8)*8) is (CRS, ld) at k0*CRS. Thread t of the nt that run takes images
  // [N*t/nt, N*(t+1)/nt) (nt <= max_nt: parallel_team).
  const int max_nt = static_cast<int>(std::min<int64_t>(omp_threads(), p.N));
  std::vector<float> partial(size_t(max_nt) * CRS * Kpad, 0.f);
  ParallelErrors errors;
  int team = 1;
#pragma omp parallel num_threads(max_nt) if (max_nt > 1)
  {
    // Workspaces reserved first, then a plain loop (reserve_workspace says why).
    const int nt = omp_team_size(), t = omp_thread_id();
    if (t == 0) team = nt;
    const bool padded = Hp != p.H || Wp != p.W;
    const bool ready = reserve_workspace(errors, 2, PQ * Kpad) &&
                       (!padded || reserve_workspace(errors, 4, p.C * Hp * Wp));
    float* dwt = partial.data() + size_t(t) * CRS * Kpad;
    float* dyt = ready ? thread_workspace(2, PQ * Kpad) : nullptr;  // dy_n transposed, by chunk
    for (int64_t n = p.N * t / nt; ready && n < p.N * (t + 1) / nt; ++n) {
      const float* xp = padded_image(x + n * CHW, p, Hp, Wp);        // (C, Hp, Wp)
      const float* dyn = dy + n * p.K * PQ;                          // (K, P*Q)
      for (int64_t k0 = 0; k0 < p.K; k0 += kChunk) {
        const int64_t kc = std::min(kChunk, p.K - k0), ld = (kc + 7) / 8 * 8;
        float* dc = dyt + k0 * PQ;                                   // (P*Q, ld)
        for (int64_t pq = 0; pq < PQ; ++pq)
          for (int64_t k = 0; k < ld; ++k) dc[pq * ld + k] = k < kc ? dyn[(k0 + k) * PQ + pq] : 0.f;
        float* dwc = dwt + k0 * CRS;                                 // (CRS, ld)
        switch (ld / 8) {
          case 1: weight_image<1>(xp, Hp, Wp, dc, dwc, p); break;
          case 2: weight_image<2>(xp, Hp, Wp, dc, dwc, p); break;
          case 3: weight_image<3>(xp, Hp, Wp, dc, dwc, p); break;
          default: weight_image<4>(xp, Hp, Wp, dc, dwc, p); break;
        }
      }
    }
  }
  errors.rethrow();
  // dw (K, CRS) = the partials summed in thread order, read back from the chunked dw^T.
  for (int64_t k0 = 0; k0 < p.K; k0 += kChunk) {
    const int64_t kc = std::min(kChunk, p.K - k0), ld = (kc + 7) / 8 * 8;
    for (int64_t k = 0; k < kc; ++k)
      for (int64_t crs = 0; crs < CRS; ++crs) {
        const size_t at = size_t(k0 * CRS + crs * ld + k);
        float sum = partial[at];
        for (int th = 1; th < team; ++th) sum += partial[size_t(th) * CRS * Kpad + at];
        dw[(k0 + k) * CRS + crs] = sum;
      }
  }
}

namespace {

// The forward of nparts problems over the same padded images (see Conv2dDirectPart), in one
// parallel region over the images: each thread pads an image once and runs every part on it.
// act(y + b) afterwards for a single part with dense output (b and act apply to that only).
void forward_direct(const float* x, const Conv2dParams& p, const Conv2dDirectPart* parts,
                    int64_t nparts, const Conv2dOutputStrides& out, const float* b = nullptr,
                    Activation act = Activation::None, float alpha = 0.f) {
  const int64_t CRS = p.C * p.R * p.S, CHW = p.C * p.H * p.W, Kpad = (p.K + 7) / 8 * 8;
  const int64_t Hp = p.H + p.pad_top + p.pad_bottom, Wp = p.W + p.pad_left + p.pad_right;
  const ActivationKernel out_pass = activation_kernel(vec_math(), act, alpha);

  // Per part, the output channels in chunks of kChunk; chunk k0 has kc channels, KV = ceil(kc
  // / 8) vectors, and its wt (CRS, KV*8) at wt + k0*CRS: wt[crs][k] = w[k0 + k][crs], zero past
  // kc. Part i's at i*CRS*Kpad. Shared by the threads, read-only.
  float* wt_all = thread_workspace(3, nparts * CRS * Kpad);
  for (int64_t i = 0; i < nparts; ++i) {
    float* wt = wt_all + i * CRS * Kpad;
    const float* w = parts[i].w;
    for (int64_t k0 = 0; k0 < p.K; k0 += kChunk) {
      const int64_t kc = std::min(kChunk, p.K - k0), ld = (kc + 7) / 8 * 8;
      for (int64_t crs = 0; crs < CRS; ++crs)
        for (int64_t k = 0; k < ld; ++k) wt[k0 * CRS + crs * ld + k] = k < kc ? w[(k0 + k) * CRS + crs] : 0.f;
    }
  }

  // tap_off (CRS): tap (c, r, s)'s offset in the padded image from the pixel's tap (0, 0, 0).
  std::vector<int64_t> tap_off(static_cast<size_t>(CRS));
  for (int64_t c = 0, t = 0; c < p.C; ++c)
    for (int64_t r = 0; r < p.R; ++r)
      for (int64_t s = 0; s < p.S; ++s, ++t) tap_off[size_t(t)] = (c * Hp + r * p.dil_h) * Wp + s * p.dil_w;

  ParallelErrors errors;                                     // the padded image's workspace
  const bool padded = Hp != p.H || Wp != p.W;
#pragma omp parallel num_threads(omp_threads()) if (p.N > 1)
  {
    // padded_image's workspace first (the one step that can throw), then a plain loop
    // (reserve_workspace says why); a thread without it skips its images and the call rethrows.
    const bool ready = !padded || reserve_workspace(errors, 4, p.C * Hp * Wp);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < p.N; ++n) {
      if (!ready) continue;
      const float* xp = padded_image(x + n * CHW, p, Hp, Wp);  // (C, Hp, Wp)
      for (int64_t i = 0; i < nparts; ++i) {
        const Conv2dDirectPart& part = parts[i];
        Conv2dParams q = p;                                    // this part's output size
        q.P = part.P; q.Q = part.Q;
        const float* window = xp + part.window;
        float* yn = part.y + n * out.n;                        // (K, P, Q) at out's strides
        for (int64_t k0 = 0; k0 < p.K; k0 += kChunk) {
          const int64_t kc = std::min(kChunk, p.K - k0);
          const float* wc = wt_all + i * CRS * Kpad + k0 * CRS;
          float* yk = yn + k0 * out.k;                         // the chunk's kc channels
          switch ((kc + 7) / 8) {
            case 1: forward_image<1>(window, Wp, tap_off.data(), wc, yk, kc, q, out); break;
            case 2: forward_image<2>(window, Wp, tap_off.data(), wc, yk, kc, q, out); break;
            case 3: forward_image<3>(window, Wp, tap_off.data(), wc, yk, kc, q, out); break;
            default: forward_image<4>(window, Wp, tap_off.data(), wc, yk, kc, q, out); break;
          }
        }
        if (b || act != Activation::None) {                    // dense y (a single part)
          const int64_t PQ = part.P * part.Q;
          for (int64_t k = 0; k < p.K; ++k) out_pass(yn + k * PQ, b ? b[k] : 0.f, yn + k * PQ, PQ);
        }
      }
    }
  }
  errors.rethrow();
}

}  // namespace

void conv2d_forward_direct_avx2(const float* x, const float* w, const float* b, float* y,
                                const Conv2dParams& p, Activation act, float alpha) {
  const Conv2dDirectPart whole{w, 0, p.P, p.Q, y};
  forward_direct(x, p, &whole, 1, Conv2dOutputStrides{p.K * p.P * p.Q, p.P * p.Q, p.Q, 1}, b, act, alpha);
}

void conv2d_forward_direct_parts_avx2(const float* x, const Conv2dParams& p,
                                      const Conv2dDirectPart* parts, int64_t nparts,
                                      const Conv2dOutputStrides& out) {
  forward_direct(x, p, parts, nparts, out);
}

}  // namespace cpu
}  // namespace fastconv
