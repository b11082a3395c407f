// conv2d on the GPU: forward, backward input, backward weight as implicit GEMMs, and the bias
// gradient as a reduction. No im2col buffer is ever written to global memory: the loaders
// below decode the im2col index while the GEMM engine (gemm.cuh) fills its shared tiles.
//
// Shapes (NCHW images, OIHW filters, dense, float32):
//   x  is (N, C, H, W)     w  is (K, C, R, S)     b is (K)     y, dy are (N, K, P, Q)
//   h = p*stride_h - pad_top + r*dil_h,   w_ = q*stride_w - pad_left + s*dil_w   (else zero)
//
// The three GEMMs (M x N output, Kd the reduction):
//   forward          y  (K | N*P*Q)  = w  (K | C*R*S)  x  im2col(x)  (C*R*S | N*P*Q)
//                    M = K, N = N*P*Q, Kd = C*R*S; bias and activation in the epilogue.
//   backward input   dx (C | N*H*W)  = w^T (C | K*R*S) x  gather(dy) (K*R*S | N*H*W)
//                    dx(n,c,h,w) = sum over (k,r,s) of w(k,c,r,s) * dy(n,k,p,q) where
//                    p = (h + pad_top - r*dil_h) / stride_h must divide exactly and lie in
//                    [0, P), the same for q; every x pixel is written once (no atomics).
//   backward weight  dw (K | C*R*S)  = dy (K | N*P*Q) x  im2col(x)^T (N*P*Q | C*R*S)
//                    M = K, N = C*R*S, Kd = N*P*Q: few output tiles and a long reduction,
//                    so the engine splits Kd across blocks and sums the slices in a second,
//                    deterministic pass.
//   backward bias    db(k) = sum over n, p, q of dy(n,k,p,q): per-chunk partial sums, then
//                    a fixed-order sum of the chunks (deterministic).
//
// Napkin math, VGG conv 32->64 3x3 at 14x14, batch 256: 2*64*288*50176 = 1.85 GFLOP per pass;
// at ~50 TFLOP/s (H100 FP32 non-tensor peak ~60) that is ~37 us; the bytes (x 6.4 MB, y
// 12.8 MB) take ~6 us at 3 TB/s, so these convolutions are compute-bound and the register
// tile's FMA rate is what matters.
#include "cuda/gemm.cuh"

namespace fastconv {
namespace cuda {
namespace {

// Geometry in int32 for fast index decoding (the binding keeps each product below 2^31), with
// a FastDiv for every divisor the decodes use.
struct ConvGeom {
  int N, C, H, W, K, R, S, P, Q;
  int sh, sw, pt, pl, dh, dw;
  int RS, HW, PQ;
  FastDiv div_S, div_Q, div_W, div_RS, div_HW, div_PQ, div_sh, div_sw;
};

ConvGeom make_geom(const Conv2dParams& p) {
  ConvGeom g;
  g.N = int(p.N); g.C = int(p.C); g.H = int(p.H); g.W = int(p.W);
  g.K = int(p.K); g.R = int(p.R); g.S = int(p.S); g.P = int(p.P); g.Q = int(p.Q);
  g.sh = int(p.stride_h); g.sw = int(p.stride_w);
  g.pt = int(p.pad_top); g.pl = int(p.pad_left);
  g.dh = int(p.dil_h); g.dw = int(p.dil_w);
  g.RS = g.R * g.S; g.HW = g.H * g.W; g.PQ = g.P * g.Q;
  g.div_S = FastDiv(g.S); g.div_Q = FastDiv(g.Q); g.div_W = FastDiv(g.W);
  g.div_RS = FastDiv(g.RS); g.div_HW = FastDiv(g.HW); g.div_PQ = FastDiv(g.PQ);
  g.div_sh = FastDiv(g.sh); g.div_sw = FastDiv(g.sw);
  return g;
}

// ---------------------------------------------------------------- forward
// A (K | C*R*S): the filters, row-major as stored; k (the reduction index) is contiguous.
struct FwdFilterLoader {
  static constexpr bool kFastK = true;
  const float* w;  // (K, C*R*S)
  int64_t CRS;
  struct Pre { int64_t crs; };
  FC_HD Pre pre(int64_t k) const { return Pre{k}; }
  FC_HD float at(const Pre& p, int64_t m) const {
    return ldg(w + m * CRS + p.crs);
  }
};

// B (C*R*S | N*P*Q): im2col(x) decoded on the fly; output pixels (n) are contiguous.
struct FwdImageLoader {
  static constexpr bool kFastK = false;
  const float* x;  // (N, C, H, W)
  ConvGeom g;
  struct Pre { int64_t base; int h0, w0; };
  FC_HD Pre pre(int64_t col) const {
    const int n = int(col);
    const int img = g.div_PQ.div(n), pq = n - img * g.PQ;
    const int p = g.div_Q.div(pq), q = pq - p * g.Q;
    return Pre{int64_t(img) * g.C * g.HW, p * g.sh - g.pt, q * g.sw - g.pl};
  }
  FC_HD float at(const Pre& pre, int64_t k) const {
    const int crs = int(k);
    const int c = g.div_RS.div(crs), rs = crs - c * g.RS;
    const int r = g.div_S.div(rs), s = rs - r * g.S;
    const int h = pre.h0 + r * g.dh, w_ = pre.w0 + s * g.dw;
    if (unsigned(h) >= unsigned(g.H) || unsigned(w_) >= unsigned(g.W)) return 0.f;
    return ldg(x + pre.base + (int64_t(c) * g.H + h) * g.W + w_);
  }
};

// y(n, k, p, q) = act(acc + b(k)); column index = n*P*Q + p*Q + q.
struct FwdOutputStore {
  float* y;  // (N, K, P, Q)
  const float* b;
  int K, PQ, act;
  FastDiv div_PQ;
  float alpha;  // the activation's parameter
  FC_HD void operator()(int64_t m, int64_t col, float v, int) const {
    const int img = div_PQ.div(int(col)), pq = int(col) - img * PQ;
    if (b) v += ldg(b + m);
    y[(int64_t(img) * K + m) * PQ + pq] = apply_activation(act, v, alpha);
  }
};

// ---------------------------------------------------------------- backward input
// A (C | K*R*S): w^T; element (c, k*R*S + rs) = w[(k*C + c)*R*S + rs]. rs is contiguous.
struct BwdInFilterLoader {
  static constexpr bool kFastK = true;
  const float* w;  // (K, C, R, S)
  int C, RS;
  FastDiv div_RS;
  struct Pre { int64_t off; };
  FC_HD Pre pre(int64_t kd) const {
    const int krs = int(kd);
    const int k = div_RS.div(krs), rs = krs - k * RS;
    return Pre{int64_t(k) * C * RS + rs};
  }
  FC_HD float at(const Pre& p, int64_t c) const {
    return ldg(w + p.off + c * RS);
  }
};

// B (K*R*S | N*H*W): dy gathered for input pixel (n, h, w); zero where the filter tap (r, s)
// would come from a stride hole or from outside (P, Q). Input pixels are contiguous.
struct BwdInGradLoader {
  static constexpr bool kFastK = false;
  const float* dy;  // (N, K, P, Q)
  ConvGeom g;
  struct Pre { int64_t base; int hp, wp; };
  FC_HD Pre pre(int64_t col) const {
    const int n = int(col);
    const int img = g.div_HW.div(n), hw = n - img * g.HW;
    const int h = g.div_W.div(hw), w_ = hw - h * g.W;
    return Pre{int64_t(img) * g.K * g.PQ, h + g.pt, w_ + g.pl};
  }
  FC_HD float at(const Pre& pre, int64_t kd) const {
    const int krs = int(kd);
    const int k = g.div_RS.div(krs), rs = krs - k * g.RS;
    const int r = g.div_S.div(rs), s = rs - r * g.S;
    const int ph = pre.hp - r * g.dh, qw = pre.wp - s * g.dw;  // p*stride_h, q*stride_w
    if (ph < 0 || qw < 0) return 0.f;
    const int p = g.div_sh.div(ph), q = g.div_sw.div(qw);
    if (p * g.sh != ph || q * g.sw != qw || p >= g.P || q >= g.Q) return 0.f;
    return ldg(dy + pre.base + (int64_t(k) * g.P + p) * g.Q + q);
  }
};

// dx(n, c, h, w) = acc; column index = n*H*W + h*W + w.
struct BwdInStore {
  float* dx;  // (N, C, H, W)
  int C, HW;
  FastDiv div_HW;
  FC_HD void operator()(int64_t c, int64_t col, float v, int) const {
    const int img = div_HW.div(int(col)), hw = int(col) - img * HW;
    dx[(int64_t(img) * C + c) * HW + hw] = v;
  }
};

// ---------------------------------------------------------------- backward weight
// A (K | N*P*Q): dy; element (k, n*P*Q + pq) = dy[(n*K + k)*P*Q + pq]. pq is contiguous.
struct BwdWGradLoader {
  static constexpr bool kFastK = true;
  const float* dy;  // (N, K, P, Q)
  int K, PQ;
  FastDiv div_PQ;
  struct Pre { int64_t off; };
  FC_HD Pre pre(int64_t kd) const {
    const int npq = int(kd);
    const int img = div_PQ.div(npq), pq = npq - img * PQ;
    return Pre{int64_t(img) * K * PQ + pq};
  }
  FC_HD float at(const Pre& p, int64_t k) const {
    return ldg(dy + p.off + k * PQ);
  }
};

// B (N*P*Q | C*R*S): im2col(x)^T; output pixels (the reduction index) are contiguous.
struct BwdWImageLoader {
  static constexpr bool kFastK = true;
  const float* x;  // (N, C, H, W)
  ConvGeom g;
  struct Pre { int64_t base; int h0, w0; };
  FC_HD Pre pre(int64_t kd) const {
    const int npq = int(kd);
    const int img = g.div_PQ.div(npq), pq = npq - img * g.PQ;
    const int p = g.div_Q.div(pq), q = pq - p * g.Q;
    return Pre{int64_t(img) * g.C * g.HW, p * g.sh - g.pt, q * g.sw - g.pl};
  }
  FC_HD float at(const Pre& pre, int64_t col) const {
    const int crs = int(col);
    const int c = g.div_RS.div(crs), rs = crs - c * g.RS;
    const int r = g.div_S.div(rs), s = rs - r * g.S;
    const int h = pre.h0 + r * g.dh, w_ = pre.w0 + s * g.dw;
    if (unsigned(h) >= unsigned(g.H) || unsigned(w_) >= unsigned(g.W)) return 0.f;
    return ldg(x + pre.base + (int64_t(c) * g.H + h) * g.W + w_);
  }
};

// dw (K, C*R*S) row-major.
struct BwdWStore {
  float* dw;
  int64_t CRS;
  FC_HD void operator()(int64_t k, int64_t crs, float v, int) const {
    dw[k * CRS + crs] = v;
  }
};

// ---------------------------------------------------------------- backward bias
constexpr int kBiasThreads = 256;

// partial (K, chunks): block (k, chunk) sums dy(n, k, :, :) over its share of (n, pq).
__global__ void bias_grad_partial_kernel(const float* dy, float* partial, int64_t N, int64_t K,
                                         int64_t PQ, int64_t per_chunk) {
  // dy is (N, K, PQ); this block covers flat (n, pq) indices [begin, end).
  const int64_t k = blockIdx.x;
  const int64_t chunks = gridDim.y;
  const int64_t begin = int64_t(blockIdx.y) * per_chunk;
  const int64_t total = N * PQ;
  const int64_t end = begin + per_chunk < total ? begin + per_chunk : total;
  float s = 0.f;
  for (int64_t i = begin + threadIdx.x; i < end; i += kBiasThreads) {
    const int64_t n = i / PQ, pq = i - n * PQ;
    s += ldg(dy + (n * K + k) * PQ + pq);
  }
  // Block reduction: warp shuffles, then the warp sums in shared memory.
  __shared__ float warp_sums[kBiasThreads / 32];
  for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
  if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    float t = 0.f;
    for (int i = 0; i < kBiasThreads / 32; ++i) t += warp_sums[i];
    partial[k * chunks + blockIdx.y] = t;
  }
}

// db(k) = sum over chunks of partial (K, chunks), in chunk order.
__global__ void bias_grad_finish_kernel(const float* partial, float* db, int64_t K, int chunks) {
  for (int64_t k = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; k < K;
       k += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int c = 0; c < chunks; ++c) s += partial[k * chunks + c];
    db[k] = s;
  }
}

// The three GEMMs, wired once for any engine: DeviceGemm on the GPU, the host emulation in
// tests/cuda_host_emulation.cu.
template <class Gemm>
void conv2d_forward_with(const Gemm& gemm, const float* x, const float* w, const float* b,
                         float* y, const Conv2dParams& p, Activation act, float alpha = 0.f) {
  const ConvGeom g = make_geom(p);
  const int64_t M = p.K, N = p.N * p.P * p.Q, Kd = p.C * p.R * p.S;
  gemm(M, N, Kd, FwdFilterLoader{w, Kd}, FwdImageLoader{x, g},
       FwdOutputStore{y, b, g.K, g.PQ, int(act), g.div_PQ, alpha});
}

template <class Gemm>
void conv2d_backward_input_with(const Gemm& gemm, const float* dy, const float* w, float* dx,
                                const Conv2dParams& p) {
  const ConvGeom g = make_geom(p);
  const int64_t M = p.C, N = p.N * p.H * p.W, Kd = p.K * p.R * p.S;
  gemm(M, N, Kd, BwdInFilterLoader{w, g.C, g.RS, g.div_RS}, BwdInGradLoader{dy, g},
       BwdInStore{dx, g.C, g.HW, g.div_HW});
}

template <class Gemm>
void conv2d_backward_weight_with(const Gemm& gemm, const float* dy, const float* x, float* dw,
                                 const Conv2dParams& p) {
  const ConvGeom g = make_geom(p);
  const int64_t M = p.K, N = p.C * p.R * p.S, Kd = p.N * p.P * p.Q;
  gemm(M, N, Kd, BwdWGradLoader{dy, g.K, g.PQ, g.div_PQ}, BwdWImageLoader{x, g}, BwdWStore{dw, N});
}

}  // namespace

void conv2d_forward(const float* x, const float* w, const float* b, float* y,
                    const Conv2dParams& p, Activation act, float alpha) {
  conv2d_forward_with(DeviceGemm{}, x, w, b, y, p, act, alpha);
}

void conv2d_backward_input(const float* dy, const float* w, float* dx, const Conv2dParams& p) {
  conv2d_backward_input_with(DeviceGemm{}, dy, w, dx, p);
}

void conv2d_backward_weight(const float* dy, const float* x, float* dw, const Conv2dParams& p) {
  conv2d_backward_weight_with(DeviceGemm{}, dy, x, dw, p);
}

void conv2d_backward_bias(const float* dy, float* db, int64_t N, int64_t K, int64_t PQ) {
  if (K <= 0) return;
  const int64_t total = N * PQ;
  if (total <= 0) {
    fill_zero(db, size_t(K) * sizeof(float));
    return;
  }
  // About 4 waves of blocks over the GPU, each chunk at least 4096 elements.
  int64_t chunks = (4 * int64_t(sm_count()) + K - 1) / K;
  chunks = std::min<int64_t>(chunks, (total + 4095) / 4096);
  chunks = std::max<int64_t>(1, std::min<int64_t>(chunks, 1024));
  const int64_t per_chunk = (total + chunks - 1) / chunks;
  if (K > 0x7fffffff) throw std::invalid_argument("conv2d_backward_bias: too many channels");
  DeviceBuffer partial(size_t(K) * size_t(chunks) * sizeof(float));
  bias_grad_partial_kernel<<<dim3(unsigned(K), unsigned(chunks)), kBiasThreads, 0, stream()>>>(
      dy, partial.as<float>(), N, K, PQ, per_chunk);
  CUDA_CHECK_LAUNCH();
  bias_grad_finish_kernel<<<grid_for(K, 256), 256, 0, stream()>>>(partial.as<float>(), db, K, int(chunks));
  CUDA_CHECK_LAUNCH();
}

}  // namespace cuda
}  // namespace fastconv
