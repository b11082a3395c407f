// 3x3 convolutions with stride 1 by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray,
// "Fast Algorithms for Convolutional Neural Networks", arXiv 1509.09308).
//
// Each 2x2 block of outputs comes from a 4x4 patch d of the (padded) input and the 3x3 filter g:
//   Y = A^T [ (G g G^T) (.) (B^T d B) ] A          (.) elementwise on 4x4 tiles
//   B^T = | 1  0 -1  0 |   G = | 1    0    0  |   A^T = | 1  1  1  0 |
//         | 0  1  1  0 |       | 1/2  1/2  1/2|         | 0  1 -1 -1 |
//         | 0 -1  1  0 |       | 1/2 -1/2  1/2|
//         | 0  1  0 -1 |       | 0    0    1  |
// Summed over input channels, the elementwise products become 16 independent matrix products,
// one per position xi of the 4x4 tile:
//   M[xi] (K, T) = U[xi] (K, C) . V[xi] (C, T),   U = G g G^T per (k, c),  V = B^T d B per (c, t)
// with T the number of 2x2 output tiles. That is 16 multiplies per 4 outputs where the direct
// convolution needs 36: 2.25x fewer, paid for by the transforms (additions only, O(C*T) and
// O(K*T) against the products' O(K*C*T)). For the small VGG's 32- and 64-channel layers the
// products dominate.
//
// Layout and blocking: images are taken G at a time so that V and M (16 * C * T and 16 * K * T
// floats) stay near 1-2 MB; each group is one OpenMP work item. Per group:
//   1. each input plane is copied into a zero-padded plane xp, so the transforms need no
//      bounds checks (odd sizes, any padding);
//   2. input transform, 8 tiles at a time in AVX2 registers: each patch row deinterleaved into
//      d0..d3 of 8 neighbouring tiles, the row transform d B, then B^T over the rows, stored to
//      V[xi][c][t], contiguous in t;
//   3. 16 sgemm calls (single-threaded inside the parallel region);
//   4. output transform A^T M A, plus the bias, 8 tiles at a time, interleaved back into output
//      rows of y (the last tile row/column dropped when P or Q is odd), then the activation
//      over each output plane.
// Backward input with stride 1 is a forward convolution of dy with the flipped, transposed
// filter (see conv2d.cpp), so it runs here too.
//
// Compiled with -mavx2 -mfma (csrc/cpu/avx2/) so the transforms' loops are vectorised 8 wide;
// reached only through conv2d.cpp's dispatch table (the avx2 entry).
#include "cpu/conv2d_kernels.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "common/parallel.h"
#include "cpu/gemm/sgemm.h"
#include "cpu/vmath.h"

namespace fastconv {
namespace cpu {

namespace {

constexpr int64_t kTileFloatsTarget = 256 * 1024;  // V of a group: about 1 MB

// U[xi] (K, C) for every xi: G g G^T of each 3x3 filter w[k][c].
void transform_filters(const float* w, int64_t K, int64_t C, float* U) {
  const int64_t KC = K * C;
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c) {
      const float* g = w + (k * C + c) * 9;
      float t[4][3];  // G g: 4 x 3
      for (int j = 0; j < 3; ++j) {
        const float g0 = g[j], g1 = g[3 + j], g2 = g[6 + j];
        t[0][j] = g0;
        t[1][j] = 0.5f * (g0 + g1 + g2);
        t[2][j] = 0.5f * (g0 - g1 + g2);
        t[3][j] = g2;
      }
      for (int i = 0; i < 4; ++i) {  // (G g) G^T: 4 x 4
        const float a = t[i][0], b = t[i][1], d = t[i][2];
        float* u = U + (i * 4) * KC + k * C + c;
        u[0 * KC] = a;
        u[1 * KC] = 0.5f * (a + b + d);
        u[2 * KC] = 0.5f * (a - b + d);
        u[3 * KC] = d;
      }
    }
}

// xp (Hp, Wp): plane x (H, W) shifted by (pt, pl), zero elsewhere.
void pad_plane(const float* x, int64_t H, int64_t W, int64_t pt, int64_t pl, float* xp,
               int64_t Hp, int64_t Wp) {
  std::memset(xp, 0, sizeof(float) * size_t(Hp * Wp));
  const int64_t s1 = std::min<int64_t>(W, Wp - pl);
  for (int64_t h = 0; h < H; ++h) {
    const int64_t r = h + pt;
    if (r >= Hp || s1 <= 0) continue;
    std::memcpy(xp + r * Wp + pl, x + h * W, sizeof(float) * size_t(s1));
  }
}

// Even and odd elements of the 16 floats at p: (p[0], p[2], ..., p[14]), (p[1], ..., p[15]).
inline void deinterleave(const float* p, __m256& even, __m256& odd) {
  const __m256 a = _mm256_loadu_ps(p), b = _mm256_loadu_ps(p + 8);
  const __m256 e = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));  // a0 a2 b0 b2 | a4 a6 b4 b6
  const __m256 o = _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
  even = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), _MM_SHUFFLE(3, 1, 2, 0)));
  odd = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), _MM_SHUFFLE(3, 1, 2, 0)));
}

// Lanes [0, n) set: the mask of a partial block of n < 8 tiles.
inline __m256i lane_mask(int64_t n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(n)), idx);
}

// V[xi][c][t0 + i*tw + j] for every tile (i, j) of the padded plane xp (rows of Wp floats,
// Wp >= 2 * round_up(tw, 8) + 2 so a block of 8 tiles never reads past a row), 8 tiles a step:
// each patch row gives d0..d3 of 8 tiles by deinterleaving, d B on them, then B^T over rows.
void input_transform(const float* xp, int64_t Wp, int64_t th, int64_t tw, float* V, int64_t c,
                     int64_t C, int64_t T, int64_t t0) {
  const int64_t CT = C * T;
  for (int64_t i = 0; i < th; ++i)
    for (int64_t j = 0; j < tw; j += 8) {
      __m256 rt[4][4];  // rt[r][col]: (d B) of patch row r
      for (int r = 0; r < 4; ++r) {
        const float* row = xp + (2 * i + r) * Wp + 2 * j;
        __m256 d0, d1, d2, d3;
        deinterleave(row, d0, d1);
        deinterleave(row + 2, d2, d3);
        rt[r][0] = _mm256_sub_ps(d0, d2);
        rt[r][1] = _mm256_add_ps(d1, d2);
        rt[r][2] = _mm256_sub_ps(d2, d1);
        rt[r][3] = _mm256_sub_ps(d1, d3);
      }
      const int64_t n = std::min<int64_t>(8, tw - j);
      float* base = V + c * T + t0 + i * tw + j;
      for (int col = 0; col < 4; ++col) {
        const __m256 v[4] = {_mm256_sub_ps(rt[0][col], rt[2][col]),
                             _mm256_add_ps(rt[1][col], rt[2][col]),
                             _mm256_sub_ps(rt[2][col], rt[1][col]),
                             _mm256_sub_ps(rt[1][col], rt[3][col])};
        for (int a = 0; a < 4; ++a) {
          float* dst = base + (a * 4 + col) * CT;
          if (n == 8) _mm256_storeu_ps(dst, v[a]);
          else _mm256_maskstore_ps(dst, lane_mask(n), v[a]);
        }
      }
    }
}

// y plane (P, Q) of channel k from M[xi][k][t0 + i*tw + j]: A^T M A + bias, 8 tiles a step
// (16 output columns, interleaved from the tiles' left and right outputs).
void output_transform(const float* M, int64_t k, int64_t K, int64_t T, int64_t t0, int64_t th,
                      int64_t tw, float bias, float* y, int64_t P, int64_t Q) {
  const int64_t KT = K * T;
  const __m256 vb = _mm256_set1_ps(bias);
  for (int64_t i = 0; i < th; ++i)
    for (int64_t j = 0; j < tw; j += 8) {
      const int64_t n = std::min<int64_t>(8, tw - j);
      const __m256i mask = lane_mask(n);
      const float* base = M + k * T + t0 + i * tw + j;
      __m256 r[2][4];  // A^T over the rows of the 4x4
      for (int col = 0; col < 4; ++col) {
        __m256 m[4];
        for (int a = 0; a < 4; ++a) {
          const float* src = base + (a * 4 + col) * KT;
          m[a] = n == 8 ? _mm256_loadu_ps(src) : _mm256_maskload_ps(src, mask);
        }
        r[0][col] = _mm256_add_ps(_mm256_add_ps(m[0], m[1]), m[2]);
        r[1][col] = _mm256_sub_ps(_mm256_sub_ps(m[1], m[2]), m[3]);
      }
      for (int rr = 0; rr < 2; ++rr) {
        const int64_t h = 2 * i + rr;
        if (h >= P) break;
        const __m256 o0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(r[rr][0], r[rr][1]), r[rr][2]), vb);
        const __m256 o1 = _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(r[rr][1], r[rr][2]), r[rr][3]), vb);
        const __m256 lo = _mm256_unpacklo_ps(o0, o1), hi = _mm256_unpackhi_ps(o0, o1);
        const __m256 first = _mm256_permute2f128_ps(lo, hi, 0x20);   // tiles 0-3, both columns
        const __m256 second = _mm256_permute2f128_ps(lo, hi, 0x31);  // tiles 4-7
        float* dst = y + h * Q + 2 * j;
        const int64_t cols = std::min<int64_t>(16, Q - 2 * j);
        if (cols == 16) {
          _mm256_storeu_ps(dst, first);
          _mm256_storeu_ps(dst + 8, second);
        } else {
          alignas(32) float buf[16];
          _mm256_store_ps(buf, first);
          _mm256_store_ps(buf + 8, second);
          std::memcpy(dst, buf, sizeof(float) * size_t(cols));
        }
      }
    }
}

// Wt[xi][k][t0 + i*tw + j] = A dY A^T for every 2x2 tile of the padded gradient plane dyp
// (rows of Wq >= 2 * round_up(tw, 8) floats, zero past P and Q), 8 tiles a step. A^T is the
// output transform's: the weight gradient is the forward's transpose, dU = (A dY A^T) (.) V.
//   A dY: rows z0 = y0, z1 = y0 + y1, z2 = y0 - y1, z3 = -y1; then the same on the columns.
void grad_transform(const float* dyp, int64_t Wq, int64_t th, int64_t tw, float* Wt, int64_t k,
                    int64_t K, int64_t T, int64_t t0) {
  const int64_t KT = K * T;
  for (int64_t i = 0; i < th; ++i)
    for (int64_t j = 0; j < tw; j += 8) {
      __m256 y[2][2];  // y[row][col] of 8 tiles
      deinterleave(dyp + (2 * i) * Wq + 2 * j, y[0][0], y[0][1]);
      deinterleave(dyp + (2 * i + 1) * Wq + 2 * j, y[1][0], y[1][1]);
      const __m256 zero = _mm256_setzero_ps();
      __m256 z[4][2];
      for (int col = 0; col < 2; ++col) {
        z[0][col] = y[0][col];
        z[1][col] = _mm256_add_ps(y[0][col], y[1][col]);
        z[2][col] = _mm256_sub_ps(y[0][col], y[1][col]);
        z[3][col] = _mm256_sub_ps(zero, y[1][col]);
      }
      const int64_t n = std::min<int64_t>(8, tw - j);
      float* base = Wt + k * T + t0 + i * tw + j;
      for (int a = 0; a < 4; ++a) {
        const __m256 v[4] = {z[a][0], _mm256_add_ps(z[a][0], z[a][1]),
                             _mm256_sub_ps(z[a][0], z[a][1]), _mm256_sub_ps(zero, z[a][1])};
        for (int b = 0; b < 4; ++b) {
          float* dst = base + (a * 4 + b) * KT;
          if (n == 8) _mm256_storeu_ps(dst, v[b]);
          else _mm256_maskstore_ps(dst, lane_mask(n), v[b]);
        }
      }
    }
}

// dw[k][c] (3x3) = G^T dU[.][k][c] G, dU (16, K, C): the filter transform's transpose.
void untransform_filters(const float* dU, int64_t K, int64_t C, float* dw) {
  const int64_t KC = K * C;
  for (int64_t k = 0; k < K; ++k)
    for (int64_t c = 0; c < C; ++c) {
      float u[4][4];
      for (int xi = 0; xi < 16; ++xi) u[xi / 4][xi % 4] = dU[xi * KC + k * C + c];
      float t[3][4];  // G^T dU
      for (int b = 0; b < 4; ++b) {
        t[0][b] = u[0][b] + 0.5f * (u[1][b] + u[2][b]);
        t[1][b] = 0.5f * (u[1][b] - u[2][b]);
        t[2][b] = 0.5f * (u[1][b] + u[2][b]) + u[3][b];
      }
      float* g = dw + (k * C + c) * 9;
      for (int r = 0; r < 3; ++r) {  // (G^T dU) G
        g[r * 3 + 0] = t[r][0] + 0.5f * (t[r][1] + t[r][2]);
        g[r * 3 + 1] = 0.5f * (t[r][1] - t[r][2]);
        g[r * 3 + 2] = 0.5f * (t[r][1] + t[r][2]) + t[r][3];
      }
    }
}

}  // namespace

void conv2d_forward_winograd_f2x2_3x3_avx2(const float* x, const float* w, const float* b,
                                           float* y, const Conv2dParams& p, Activation act,
                                           float alpha) {
  const int64_t C = p.C, K = p.K, H = p.H, W = p.W, P = p.P, Q = p.Q;
  const int64_t th = (P + 1) / 2, tw = (Q + 1) / 2, tiles = th * tw;  // tiles per image
  const int64_t Hp = 2 * th + 2, Wp = 2 * ((tw + 7) / 8 * 8) + 2;  // blocks of 8 tiles
  const int64_t per_image = 16 * std::max(C, K) * tiles;
  const int threads = std::max(1, omp_threads());
  int64_t G = std::max<int64_t>(1, kTileFloatsTarget / per_image);
  G = std::min(G, std::max<int64_t>(1, (p.N + threads - 1) / threads));  // a group per thread
  const int64_t groups = (p.N + G - 1) / G;

  std::vector<float> U(size_t(16 * K * C));  // (16, K, C)
  transform_filters(w, K, C, U.data());
  const ActivationKernel out_pass = activation_kernel(vec_math(), act, alpha);

  // The workspaces are reserved first (they may fail to allocate), then the groups run as a
  // plain loop: inside errors.run's lambda the many small transform calls of a 14x14 layer
  // reloaded the captured variables around each call (reserve_workspace says more).
  ParallelErrors errors;
#pragma omp parallel num_threads(omp_threads()) if (groups > 1)
  {
    const int64_t T_max = G * tiles;
    const bool ready = reserve_workspace(errors, 0, 16 * C * T_max) &&
                       reserve_workspace(errors, 1, 16 * K * T_max) &&
                       reserve_workspace(errors, 2, Hp * Wp);
#pragma omp for schedule(static)
    for (int64_t grp = 0; grp < groups; ++grp) {
      if (!ready) continue;
      const int64_t n0 = grp * G, Gn = std::min(G, p.N - n0), T = Gn * tiles;
      float* V = thread_workspace(0, 16 * C * T);       // (16, C, T)
      float* M = thread_workspace(1, 16 * K * T);       // (16, K, T)
      float* xp = thread_workspace(2, Hp * Wp);         // one padded plane
      for (int64_t g = 0; g < Gn; ++g)
        for (int64_t c = 0; c < C; ++c) {
          pad_plane(x + ((n0 + g) * C + c) * H * W, H, W, p.pad_top, p.pad_left, xp, Hp, Wp);
          input_transform(xp, Wp, th, tw, V, c, C, T, g * tiles);
        }
      for (int xi = 0; xi < 16; ++xi)
        sgemm(false, false, K, T, C, 1.f, U.data() + xi * K * C, C, V + xi * C * T, T, 0.f,
              M + xi * K * T, T);
      for (int64_t g = 0; g < Gn; ++g)
        for (int64_t k = 0; k < K; ++k) {
          float* yk = y + ((n0 + g) * K + k) * P * Q;
          output_transform(M, k, K, T, g * tiles, th, tw, b ? b[k] : 0.f, yk, P, Q);
          if (act != Activation::None) out_pass(yk, 0.f, yk, P * Q);
        }
    }
  }
  errors.rethrow();
}

// dw (K, C, 3, 3) from dy (N, K, P, Q) and x (N, C, H, W): per group, V from x as in the
// forward, Wt = A dY A^T from dy, then dU[xi] (K, C) += Wt[xi] (K, T) . V[xi]^T (T, C); each
// thread sums its own contiguous range of groups, the partials are added in thread order
// (the same bits for a given thread count), and dw = G^T dU G.
void conv2d_backward_weight_winograd_f2x2_3x3_avx2(const float* dy, const float* x, float* dw,
                                                   const Conv2dParams& p) {
  const int64_t C = p.C, K = p.K, H = p.H, W = p.W, P = p.P, Q = p.Q;
  const int64_t th = (P + 1) / 2, tw = (Q + 1) / 2, tiles = th * tw;
  const int64_t tw8 = (tw + 7) / 8 * 8;
  const int64_t Hp = 2 * th + 2, Wp = 2 * tw8 + 2, Wq = 2 * tw8;
  const int64_t per_image = 16 * std::max(C, K) * tiles;
  const int threads = std::max(1, omp_threads());
  int64_t G = std::max<int64_t>(1, kTileFloatsTarget / per_image);
  G = std::min(G, std::max<int64_t>(1, (p.N + threads - 1) / threads));
  const int64_t groups = (p.N + G - 1) / G;
  const int max_nt = static_cast<int>(std::min<int64_t>(threads, groups));
  const int64_t UKC = 16 * K * C;
  std::vector<float> partial(size_t(max_nt) * UKC, 0.f);

  // Thread t of the nt that run (nt <= max_nt, read inside the region) takes a contiguous
  // range of groups; workspaces reserved first, then a plain loop (as in the forward).
  ParallelErrors errors;
  int team = 1;
#pragma omp parallel num_threads(max_nt) if (max_nt > 1)
  {
    const int nt = omp_team_size(), t = omp_thread_id();
    if (t == 0) team = nt;
    const int64_t T_max = G * tiles;
    const bool ready = reserve_workspace(errors, 0, 16 * C * T_max) &&
                       reserve_workspace(errors, 1, 16 * K * T_max) &&
                       reserve_workspace(errors, 2, Hp * Wp) &&
                       reserve_workspace(errors, 3, 2 * th * Wq);
    float* dU = partial.data() + size_t(t) * UKC;
    for (int64_t grp = groups * t / nt; ready && grp < groups * (t + 1) / nt; ++grp) {
      const int64_t n0 = grp * G, Gn = std::min(G, p.N - n0), T = Gn * tiles;
      float* V = thread_workspace(0, 16 * C * T);     // (16, C, T)
      float* Wt = thread_workspace(1, 16 * K * T);    // (16, K, T)
      float* xp = thread_workspace(2, Hp * Wp);       // a padded input plane
      float* dyp = thread_workspace(3, 2 * th * Wq);  // a padded gradient plane
      for (int64_t g = 0; g < Gn; ++g) {
        for (int64_t c = 0; c < C; ++c) {
          pad_plane(x + ((n0 + g) * C + c) * H * W, H, W, p.pad_top, p.pad_left, xp, Hp, Wp);
          input_transform(xp, Wp, th, tw, V, c, C, T, g * tiles);
        }
        for (int64_t k = 0; k < K; ++k) {
          pad_plane(dy + ((n0 + g) * K + k) * P * Q, P, Q, 0, 0, dyp, 2 * th, Wq);
          grad_transform(dyp, Wq, th, tw, Wt, k, K, T, g * tiles);
        }
      }
      for (int xi = 0; xi < 16; ++xi)
        sgemm(false, true, K, C, T, 1.f, Wt + xi * K * T, T, V + xi * C * T, T, 1.f,
              dU + xi * K * C, C);
    }
  }
  errors.rethrow();
  for (int t = 1; t < team; ++t)
    for (int64_t i = 0; i < UKC; ++i) partial[size_t(i)] += partial[size_t(t) * UKC + i];
  untransform_filters(partial.data(), K, C, dw);
}

}  // namespace cpu
}  // namespace fastconv
