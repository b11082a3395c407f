// im2col / col2im for one image, the layout conv2d's GEMMs read.
//
//   x   is (C, H, W)                      one image
//   col is (C*R*S, P*Q)                   row (c, r, s), column (p, q):
//       col[(c*R + r)*S + s][p*Q + q] = x[c][p*sh - pt + r*dh][q*sw - pl + s*dw]  (0 outside)
//
// col2im is the adjoint: it adds each col entry back into dx at the same position.
#pragma once
#include <cstdint>
#include <cstring>

#include "ops.h"

namespace fastconv {
namespace cpu {

inline void im2col(const float* x, float* col, const Conv2dParams& p) {
  const int64_t PQ = p.P * p.Q;
  for (int64_t c = 0; c < p.C; ++c)
    for (int64_t r = 0; r < p.R; ++r)
      for (int64_t s = 0; s < p.S; ++s) {
        float* row = col + ((c * p.R + r) * p.S + s) * PQ;
        const float* xc = x + c * p.H * p.W;
        // Columns q whose input column w = q*sw - pl + s*dw lies in [0, W).
        const int64_t off_w = s * p.dil_w - p.pad_left;
        int64_t q_lo = 0, q_hi = p.Q;  // [q_lo, q_hi)
        while (q_lo < p.Q && q_lo * p.stride_w + off_w < 0) ++q_lo;
        while (q_hi > q_lo && (q_hi - 1) * p.stride_w + off_w >= p.W) --q_hi;
        for (int64_t op = 0; op < p.P; ++op) {
          float* dst = row + op * p.Q;
          const int64_t h = op * p.stride_h - p.pad_top + r * p.dil_h;
          if (h < 0 || h >= p.H) { std::memset(dst, 0, sizeof(float) * p.Q); continue; }
          const float* src = xc + h * p.W + off_w;
          for (int64_t q = 0; q < q_lo; ++q) dst[q] = 0.f;
          if (p.stride_w == 1) std::memcpy(dst + q_lo, src + q_lo, sizeof(float) * (q_hi - q_lo));
          else for (int64_t q = q_lo; q < q_hi; ++q) dst[q] = src[q * p.stride_w];
          for (int64_t q = q_hi; q < p.Q; ++q) dst[q] = 0.f;
        }
      }
}

inline void col2im(const float* col, float* dx, const Conv2dParams& p) {
  const int64_t PQ = p.P * p.Q;
  std::memset(dx, 0, sizeof(float) * p.C * p.H * p.W);
  for (int64_t c = 0; c < p.C; ++c)
    for (int64_t r = 0; r < p.R; ++r)
      for (int64_t s = 0; s < p.S; ++s) {
        const float* row = col + ((c * p.R + r) * p.S + s) * PQ;
        float* dxc = dx + c * p.H * p.W;
        const int64_t off_w = s * p.dil_w - p.pad_left;
        int64_t q_lo = 0, q_hi = p.Q;
        while (q_lo < p.Q && q_lo * p.stride_w + off_w < 0) ++q_lo;
        while (q_hi > q_lo && (q_hi - 1) * p.stride_w + off_w >= p.W) --q_hi;
        for (int64_t op = 0; op < p.P; ++op) {
          const int64_t h = op * p.stride_h - p.pad_top + r * p.dil_h;
          if (h < 0 || h >= p.H) continue;
          const float* src = row + op * p.Q;
          float* dst = dxc + h * p.W + off_w;
          for (int64_t q = q_lo; q < q_hi; ++q) dst[q * p.stride_w] += src[q];
        }
      }
}

}  // namespace cpu
}  // namespace fastconv
