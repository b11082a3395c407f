// Host emulation of fastconv's CUDA GEMM engine and pooling bodies: checks on a CPU, without a
// GPU, the index code that the kernels run.
//
// What runs here is the kernels' own code: the loaders, epilogues and tile helpers of
// gemm.cuh / conv2d.cu / linear.cu are __host__ __device__, and each op's wiring (which
// loaders, which epilogue, which M/N/Kd) is a template over the GEMM engine. EmuGemm replays
// implicit_gemm_kernel block by block and, between two __syncthreads, thread by thread (the
// kernel is phase-structured: fetch -> store -> barrier -> multiply -> store -> barrier), with
// the same tile choice and split-K plan as on the GPU. The pooling kernels' loop bodies, the
// upsampling forward and gather-backward bodies (upsample2d.cu) and the pad / crop / channel
// copy index decodes (tensor_ops.cu) are called for every element. Results are compared with
// naive float64 loops written here.
//
// Not covered: the TF32 (WMMA) multiply, the warp-level softmax, the bias reduction, launch
// configuration errors, real concurrency (races would not show up here). Build and run (a few
// minutes to compile, since the kernels are compiled for sm_80 too):
//   nvcc -std=c++17 -O1 -arch=sm_80 -Icsrc tests/cuda_host_emulation.cu csrc/cuda/runtime.cu \
//        -o build/cuda_host_emulation && build/cuda_host_emulation
// With AddressSanitizer, which turns any out-of-bounds read by a loader into an error (every
// buffer here has its exact size), compile with -Xcompiler=-fsanitize=address and link with
//   g++ -fsanitize=address emu.o runtime.o -L/usr/local/cuda/lib64 -lcudart_static -ldl -lpthread -lrt
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "cuda/conv2d.cu"
#include "cuda/linear.cu"
#include "cuda/pool2d.cu"
#include "cuda/tensor_ops.cu"
#include "cuda/upsample2d.cu"

using namespace fastconv;
using namespace fastconv::cuda;

namespace {

template <class T, class AL, class BL, class Epi>
void emulate_kernel(const SplitPlan& plan, int64_t M, int64_t N, int64_t Kd, const AL& al,
                    const BL& bl, const Epi& epi) {
  constexpr int NT = T::kThreads;
  using AOp = TileOperand<T::BM, T::BK, NT, AL>;
  using BOp = TileOperand<T::BN, T::BK, NT, BL>;
  struct alignas(16) Smem {
    float As[2][T::BK][AOp::kLd];
    float Bs[2][T::BK][BOp::kLd];
  };
  struct RegA { float r[AOp::kPer]; };
  struct RegB { float r[BOp::kPer]; };
  struct Acc { float v[T::TM][T::TN]; };
  std::unique_ptr<Smem> sm(new Smem);
  for (int64_t z = 0; z < plan.splits; ++z)
    for (int64_t by = 0; by < plan.grid_m; ++by)
      for (int64_t bx = 0; bx < plan.grid_n; ++bx) {
        // Poison shared memory: a read of anything not stored this k-tile shows up as NaN.
        for (auto& b : sm->As) for (auto& r : b) for (float& v : r) v = NAN;
        for (auto& b : sm->Bs) for (auto& r : b) for (float& v : r) v = NAN;
        const int64_t m0 = by * T::BM, n0 = bx * T::BN;
        const int64_t kbeg = z * plan.k_chunk;
        const int64_t kend = std::min(Kd, kbeg + plan.k_chunk);
        std::vector<AOp> a;
        std::vector<BOp> b;
        for (int tid = 0; tid < NT; ++tid) {
          a.emplace_back(al, tid, m0, M);
          b.emplace_back(bl, tid, n0, N);
        }
        std::vector<RegA> ra(NT);
        std::vector<RegB> rb(NT);
        std::vector<Acc> acc(NT);
        for (auto& t : acc) for (auto& r : t.v) for (float& v : r) v = 0.f;
        int buf = 0;
        if (kbeg < kend)
          for (int tid = 0; tid < NT; ++tid) {
            a[tid].fetch(ra[tid].r, kbeg, kend);
            b[tid].fetch(rb[tid].r, kbeg, kend);
            a[tid].store(sm->As[0], ra[tid].r);
            b[tid].store(sm->Bs[0], rb[tid].r);
          }
        for (int64_t kt = kbeg; kt < kend; kt += T::BK) {
          const bool has_next = kt + T::BK < kend;
          for (int tid = 0; tid < NT; ++tid) {
            if (has_next) {
              a[tid].fetch(ra[tid].r, kt + T::BK, kend);
              b[tid].fetch(rb[tid].r, kt + T::BK, kend);
            }
            const int tx = tid % (T::BN / T::TN), ty = tid / (T::BN / T::TN);
            multiply_tile<T>(acc[tid].v, sm->As[buf], sm->Bs[buf], tx, ty);
          }
          for (int tid = 0; tid < NT && has_next; ++tid) {
            a[tid].store(sm->As[buf ^ 1], ra[tid].r);
            b[tid].store(sm->Bs[buf ^ 1], rb[tid].r);
          }
          buf ^= 1;
        }
        for (int tid = 0; tid < NT; ++tid) {
          const int tx = tid % (T::BN / T::TN), ty = tid / (T::BN / T::TN);
          write_tile<T>(acc[tid].v, epi, M, N, m0, n0, tx, ty, int(z));
        }
      }
}

struct EmuGemm {
  int sms = 132;  // an H100's multiprocessors: the tile and split-K choices of the real run
  mutable int last_splits = 0;
  mutable int last_bm = 0;

  template <class AL, class BL, class Epi>
  void operator()(int64_t M, int64_t N, int64_t Kd, const AL& a, const BL& b,
                  const Epi& epi) const {
    if (M <= 0 || N <= 0) return;
    dispatch_tile(M, N, sms, [&](auto tile) {
      using T = decltype(tile);
      const SplitPlan plan = plan_gemm<T>(M, N, Kd, sms);
      last_splits = int(plan.splits);
      last_bm = T::BM;
      if (plan.splits == 1) {
        emulate_kernel<T>(plan, M, N, Kd, a, b, epi);
        return;
      }
      std::vector<float> partial(size_t(plan.splits * M * N));
      emulate_kernel<T>(plan, M, N, Kd, a, b, PartialStore{partial.data(), M, N});
      for (int64_t i = 0; i < M * N; ++i) {  // split_k_reduce_kernel's body
        float s = 0.f;
        for (int64_t z = 0; z < plan.splits; ++z) s += partial[size_t(z * M * N + i)];
        epi(i / N, i % N, s, 0);
      }
    });
  }
};

int g_failures = 0;

void check(const char* what, const std::vector<float>& got, const std::vector<double>& want,
           double tol) {
  double worst = 0;
  size_t at = 0;
  bool nan = false;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!std::isfinite(got[i])) nan = true;
    const double err = std::fabs(got[i] - want[i]) / (1.0 + std::fabs(want[i]));
    if (err > worst) { worst = err; at = i; }
  }
  const bool ok = !nan && worst <= tol && got.size() == want.size();
  if (!ok) ++g_failures;
  std::printf("%-4s %-60s max rel err %.2e%s\n", ok ? "ok" : "FAIL", what, worst,
              nan ? " (non-finite values)" : "");
  if (!ok && !want.empty())
    std::printf("       at %zu: got %.6f want %.6f\n", at, double(got[at]), want[at]);
}

std::vector<float> random_vec(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> d(-1.f, 1.f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

Conv2dParams conv_params(int64_t N, int64_t C, int64_t H, int64_t W, int64_t K, int64_t R,
                         int64_t S, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t pb,
                         int64_t pr, int64_t dh, int64_t dw) {
  Conv2dParams p{};
  p.N = N; p.C = C; p.H = H; p.W = W; p.K = K; p.R = R; p.S = S;
  p.stride_h = sh; p.stride_w = sw;
  p.pad_top = pt; p.pad_left = pl; p.pad_bottom = pb; p.pad_right = pr;
  p.dil_h = dh; p.dil_w = dw;
  p.P = conv_out_size(H, R, sh, pt, pb, dh);
  p.Q = conv_out_size(W, S, sw, pl, pr, dw);
  return p;
}

// Naive float64 conv and its two gradients, straight from the definition.
void conv_reference(const Conv2dParams& p, const std::vector<float>& x,
                    const std::vector<float>& w, const std::vector<float>& b,
                    const std::vector<float>& dy, std::vector<double>& y,
                    std::vector<double>& dx, std::vector<double>& dw) {
  y.assign(size_t(p.N * p.K * p.P * p.Q), 0.0);
  dx.assign(size_t(p.N * p.C * p.H * p.W), 0.0);
  dw.assign(size_t(p.K * p.C * p.R * p.S), 0.0);
  for (int64_t n = 0; n < p.N; ++n)
    for (int64_t k = 0; k < p.K; ++k)
      for (int64_t oh = 0; oh < p.P; ++oh)
        for (int64_t ow = 0; ow < p.Q; ++ow) {
          const size_t yi = size_t(((n * p.K + k) * p.P + oh) * p.Q + ow);
          double s = b.empty() ? 0.0 : b[size_t(k)];
          for (int64_t c = 0; c < p.C; ++c)
            for (int64_t r = 0; r < p.R; ++r)
              for (int64_t q = 0; q < p.S; ++q) {
                const int64_t h = oh * p.stride_h - p.pad_top + r * p.dil_h;
                const int64_t ww = ow * p.stride_w - p.pad_left + q * p.dil_w;
                if (h < 0 || h >= p.H || ww < 0 || ww >= p.W) continue;
                const size_t xi = size_t(((n * p.C + c) * p.H + h) * p.W + ww);
                const size_t wi = size_t(((k * p.C + c) * p.R + r) * p.S + q);
                s += double(x[xi]) * w[wi];
                dx[xi] += double(dy[yi]) * w[wi];
                dw[wi] += double(dy[yi]) * x[xi];
              }
          y[yi] = s;
        }
}

void test_conv(const char* name, const Conv2dParams& p, int sms = 132) {
  std::mt19937 rng(42);
  const auto x = random_vec(size_t(p.N * p.C * p.H * p.W), rng);
  const auto w = random_vec(size_t(p.K * p.C * p.R * p.S), rng);
  const auto b = random_vec(size_t(p.K), rng);
  const auto dy = random_vec(size_t(p.N * p.K * p.P * p.Q), rng);
  std::vector<double> y_ref, dx_ref, dw_ref;
  conv_reference(p, x, w, b, dy, y_ref, dx_ref, dw_ref);
  EmuGemm gemm;
  gemm.sms = sms;
  char what[160];

  std::vector<float> y(y_ref.size(), NAN);
  conv2d_forward_with(gemm, x.data(), w.data(), b.data(), y.data(), p, Activation::None);
  std::snprintf(what, sizeof what, "%s forward (tile %d, splits %d)", name, gemm.last_bm,
                gemm.last_splits);
  check(what, y, y_ref, 1e-4);

  std::vector<double> y_tanh(y_ref);
  for (double& v : y_tanh) v = std::tanh(v);
  conv2d_forward_with(gemm, x.data(), w.data(), b.data(), y.data(), p, Activation::Tanh);
  std::snprintf(what, sizeof what, "%s forward + bias + tanh", name);
  check(what, y, y_tanh, 1e-4);

  std::vector<float> dx(dx_ref.size(), NAN);
  conv2d_backward_input_with(gemm, dy.data(), w.data(), dx.data(), p);
  std::snprintf(what, sizeof what, "%s backward input (tile %d, splits %d)", name, gemm.last_bm,
                gemm.last_splits);
  check(what, dx, dx_ref, 1e-4);

  std::vector<float> dw(dw_ref.size(), NAN);
  conv2d_backward_weight_with(gemm, dy.data(), x.data(), dw.data(), p);
  std::snprintf(what, sizeof what, "%s backward weight (tile %d, splits %d)", name,
                gemm.last_bm, gemm.last_splits);
  check(what, dw, dw_ref, 1e-4);
}

void test_linear(int64_t N, int64_t I, int64_t O, int sms = 132) {
  std::mt19937 rng(7);
  const auto x = random_vec(size_t(N * I), rng), w = random_vec(size_t(O * I), rng);
  const auto b = random_vec(size_t(O), rng), dy = random_vec(size_t(N * O), rng);
  std::vector<double> y_ref(size_t(N * O)), dx_ref(size_t(N * I), 0.0), dw_ref(size_t(O * I), 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t o = 0; o < O; ++o) {
      double s = b[size_t(o)];
      for (int64_t i = 0; i < I; ++i) {
        s += double(x[size_t(n * I + i)]) * w[size_t(o * I + i)];
        dx_ref[size_t(n * I + i)] += double(dy[size_t(n * O + o)]) * w[size_t(o * I + i)];
        dw_ref[size_t(o * I + i)] += double(dy[size_t(n * O + o)]) * x[size_t(n * I + i)];
      }
      y_ref[size_t(n * O + o)] = s > 0 ? s : 0;  // relu
    }
  EmuGemm gemm;
  gemm.sms = sms;
  char what[160];
  std::vector<float> y(y_ref.size(), NAN), dx(dx_ref.size(), NAN), dw(dw_ref.size(), NAN);
  linear_forward_with(gemm, x.data(), w.data(), b.data(), y.data(), N, I, O, Activation::ReLU);
  std::snprintf(what, sizeof what, "linear N=%ld I=%ld O=%ld forward + relu", long(N), long(I),
                long(O));
  check(what, y, y_ref, 1e-4);
  linear_backward_with(gemm, dy.data(), x.data(), w.data(), dx.data(), dw.data(), N, I, O);
  std::snprintf(what, sizeof what, "linear N=%ld I=%ld O=%ld backward dx", long(N), long(I),
                long(O));
  check(what, dx, dx_ref, 1e-4);
  std::snprintf(what, sizeof what, "linear N=%ld I=%ld O=%ld backward dw (splits %d)", long(N),
                long(I), long(O), gemm.last_splits);
  check(what, dw, dw_ref, 1e-4);
}

void test_sgemm(int64_t M, int64_t N, int64_t K) {
  std::mt19937 rng(9);
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      const auto A = random_vec(size_t(M * K), rng), B = random_vec(size_t(K * N), rng);
      std::vector<double> want(size_t(M * N), 0.0);
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          double s = 0;
          for (int64_t k = 0; k < K; ++k)
            s += double(ta ? A[size_t(k * M + m)] : A[size_t(m * K + k)]) *
                 (tb ? B[size_t(n * K + k)] : B[size_t(k * N + n)]);
          want[size_t(m * N + n)] = s;
        }
      std::vector<float> C(want.size(), NAN);
      sgemm_with(EmuGemm{}, ta, tb, M, N, K, A.data(), ta ? M : K, B.data(), tb ? K : N,
                 C.data(), N);
      char what[160];
      std::snprintf(what, sizeof what, "sgemm %ldx%ldx%ld trans_a=%d trans_b=%d", long(M),
                    long(N), long(K), ta, tb);
      check(what, C, want, 1e-4);
    }
}

void test_pool(const char* name, int64_t N, int64_t C, int64_t H, int64_t W, int kh, int kw,
               int sh, int sw, int pt, int pl, int pb, int pr, bool include_pad) {
  Pool2dParams p{};
  p.N = N; p.C = C; p.H = H; p.W = W; p.kh = kh; p.kw = kw; p.stride_h = sh; p.stride_w = sw;
  p.pad_top = pt; p.pad_left = pl; p.pad_bottom = pb; p.pad_right = pr;
  p.P = (H + pt + pb - kh) / sh + 1;
  p.Q = (W + pl + pr - kw) / sw + 1;
  p.count_include_pad = include_pad;
  std::mt19937 rng(3);
  auto x = random_vec(size_t(N * C * H * W), rng);
  for (size_t i = 0; i < x.size(); i += 7) x[i] = 0.5f;  // ties: the first maximum must win
  const auto dy = random_vec(size_t(N * C * p.P * p.Q), rng);
  std::vector<double> ymax(dy.size()), yavg(dy.size()), dxmax(x.size(), 0.0), dxavg(x.size(), 0.0);
  for (int64_t pl_ = 0; pl_ < N * C; ++pl_)
    for (int64_t oh = 0; oh < p.P; ++oh)
      for (int64_t ow = 0; ow < p.Q; ++ow) {
        const size_t yi = size_t((pl_ * p.P + oh) * p.Q + ow);
        double best = 0, sum = 0;
        int64_t arg = -1, cells = 0;
        for (int i = 0; i < kh; ++i)
          for (int j = 0; j < kw; ++j) {
            const int64_t h = oh * sh - pt + i, w = ow * sw - pl + j;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            const int64_t xi = (pl_ * H + h) * W + w;
            const double v = x[size_t(xi)];
            if (arg < 0 || v > best) { best = v; arg = xi; }
            sum += v;
            ++cells;
          }
        const double div = include_pad ? double(kh * kw) : double(cells);
        ymax[yi] = best;
        yavg[yi] = sum / div;
        dxmax[size_t(arg)] += dy[yi];
        for (int i = 0; i < kh; ++i)
          for (int j = 0; j < kw; ++j) {
            const int64_t h = oh * sh - pt + i, w = ow * sw - pl + j;
            if (h < 0 || h >= H || w < 0 || w >= W) continue;
            dxavg[size_t((pl_ * H + h) * W + w)] += dy[yi] / div;
          }
      }
  const PoolGeom g = make_geom(p);
  std::vector<float> y(dy.size()), dx(x.size());
  char what[160];
  for (size_t i = 0; i < y.size(); ++i) y[i] = max_pool_forward_at(x.data(), g, int64_t(i));
  std::snprintf(what, sizeof what, "%s max forward", name);
  check(what, y, ymax, 0);
  for (size_t i = 0; i < dx.size(); ++i)
    dx[i] = max_pool_backward_at(dy.data(), x.data(), g, int64_t(i));
  std::snprintf(what, sizeof what, "%s max backward", name);
  check(what, dx, dxmax, 1e-6);
  for (size_t i = 0; i < y.size(); ++i)
    y[i] = avg_pool_forward_at(x.data(), g, include_pad, int64_t(i));
  std::snprintf(what, sizeof what, "%s avg forward (count_include_pad=%d)", name, include_pad);
  check(what, y, yavg, 1e-6);
  for (size_t i = 0; i < dx.size(); ++i)
    dx[i] = avg_pool_backward_at(dy.data(), g, include_pad, int64_t(i));
  std::snprintf(what, sizeof what, "%s avg backward (count_include_pad=%d)", name, include_pad);
  check(what, dx, dxavg, 1e-6);
}

// FastDiv against the hardware divide: small divisors exhaustively over edge dividends, and
// random (divisor, dividend) pairs up to 2^31 - 1.
void test_fastdiv() {
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> any(0, 0x7fffffff);
  int64_t bad = 0, tried = 0;
  auto probe = [&](int d, int n) {
    ++tried;
    if (FastDiv(d).div(n) != n / d) ++bad;
  };
  for (int d = 1; d <= 4096; ++d) {
    for (int n : {0, 1, d - 1, d, d + 1, 2 * d - 1, 2 * d, 0x7fffffff, 0x7ffffffe, 0x40000000})
      if (n >= 0) probe(d, n);
    for (int i = 0; i < 64; ++i) probe(d, any(rng));
  }
  for (int i = 0; i < 200000; ++i) probe(std::max(1, any(rng) >> (i % 31)), any(rng));
  const bool ok = bad == 0;
  if (!ok) ++g_failures;
  std::printf("%-4s %-60s %ld of %ld wrong\n", ok ? "ok" : "FAIL", "FastDiv vs integer divide",
              long(bad), long(tried));
}

// Upsampling: the forward and the gather backward bodies for every element, against float64
// taps computed here and the backward written as the forward's scatter.
void test_upsample(const char* name, int64_t planes, int64_t H, int64_t W, int64_t sh, int64_t sw, bool ac) {
  std::mt19937 rng(uint32_t(H * 131 + W * 7 + sh + 3 * sw + ac));
  const int64_t Ho = H * sh, Wo = W * sw;
  const std::vector<float> x = random_vec(size_t(planes * H * W), rng), dy = random_vec(size_t(planes * Ho * Wo), rng);
  auto taps = [ac](int64_t in, int64_t out) {
    std::vector<std::array<double, 3>> t;
    for (int64_t o = 0; o < out; ++o) {
      double src = ac ? (out > 1 ? double(o) * double(in - 1) / double(out - 1) : 0.0)
                      : std::max((double(o) + 0.5) * double(in) / double(out) - 0.5, 0.0);
      const int64_t i0 = std::min(int64_t(src), in - 1), i1 = std::min(i0 + 1, in - 1);
      t.push_back({double(i0), double(i1), src - double(i0)});
    }
    return t;
  };
  const auto rt = taps(H, Ho), ct = taps(W, Wo);
  std::vector<double> y_want(size_t(planes * Ho * Wo)), dx_want(size_t(planes * H * W), 0.0);
  std::vector<double> dxn_want(size_t(planes * H * W), 0.0);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t h = 0; h < Ho; ++h)
      for (int64_t w = 0; w < Wo; ++w) {
        const auto& r = rt[size_t(h)];
        const auto& c = ct[size_t(w)];
        const int64_t a0 = int64_t(r[0]), a1 = int64_t(r[1]), b0 = int64_t(c[0]), b1 = int64_t(c[1]);
        const float* xp = x.data() + p * H * W;
        const double wts[4] = {(1 - r[2]) * (1 - c[2]), (1 - r[2]) * c[2], r[2] * (1 - c[2]), r[2] * c[2]};
        const int64_t at[4] = {a0 * W + b0, a0 * W + b1, a1 * W + b0, a1 * W + b1};
        double v = 0;
        const double g = dy[size_t((p * Ho + h) * Wo + w)];
        for (int k = 0; k < 4; ++k) {
          v += wts[k] * xp[at[k]];
          dx_want[size_t(p * H * W + at[k])] += wts[k] * g;
        }
        y_want[size_t((p * Ho + h) * Wo + w)] = v;
        dxn_want[size_t(p * H * W + (h / sh) * W + w / sw)] += g;
      }
  std::vector<float> y(y_want.size()), dx(dx_want.size()), dxn(dx_want.size());
  for (size_t e = 0; e < y.size(); ++e) y[e] = upsample_bilinear_forward_at(x.data(), H, W, Ho, Wo, ac, int64_t(e));
  for (size_t e = 0; e < dx.size(); ++e) {
    dx[e] = upsample_bilinear_backward_at(dy.data(), H, W, Ho, Wo, ac, int64_t(e));
    dxn[e] = upsample_nearest_backward_at(dy.data(), H, W, sh, sw, int64_t(e));
  }
  char what[160];
  std::snprintf(what, sizeof what, "%s bilinear forward (align_corners=%d)", name, int(ac));
  check(what, y, y_want, 1e-5);
  std::snprintf(what, sizeof what, "%s bilinear backward gather (align_corners=%d)", name, int(ac));
  check(what, dx, dx_want, 1e-5);
  std::snprintf(what, sizeof what, "%s nearest backward gather", name);
  check(what, dxn, dxn_want, 1e-6);
}

// Zero padding, cropping and the channel copy: the index decodes against direct loops.
void test_pad_crop_concat() {
  std::mt19937 rng(17);
  const int64_t planes = 3, H = 5, W = 4, t = 1, b = 2, l = 0, r = 3, Hp = H + t + b, Wp = W + l + r;
  const std::vector<float> x = random_vec(size_t(planes * H * W), rng);
  std::vector<float> y(size_t(planes * Hp * Wp));
  std::vector<double> y_want(y.size(), 0.0);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t i = 0; i < H; ++i)
      for (int64_t j = 0; j < W; ++j) y_want[size_t((p * Hp + i + t) * Wp + j + l)] = x[size_t((p * H + i) * W + j)];
  for (size_t e = 0; e < y.size(); ++e) {
    const int64_t s = zero_pad_source(int64_t(e), H, W, t, b, l, r);
    y[e] = s < 0 ? 0.f : x[size_t(s)];
  }
  check("zero_pad2d index decode", y, y_want, 0);
  std::vector<float> back(x.size());
  std::vector<double> back_want(x.begin(), x.end());
  for (size_t e = 0; e < back.size(); ++e) back[e] = y[size_t(crop_source(int64_t(e), H, W, t, b, l, r))];
  check("crop2d index decode (zero_pad2d's inverse)", back, back_want, 0);
  // concat of (2, 3, 6) and (2, 2, 6) along axis 1, then slicing the second back out
  const int64_t N = 2, inner = 6, C1 = 3, C2 = 2, C = C1 + C2;
  const std::vector<float> a = random_vec(size_t(N * C1 * inner), rng), c = random_vec(size_t(N * C2 * inner), rng);
  std::vector<float> cat(size_t(N * C * inner), NAN);
  std::vector<double> cat_want(cat.size());
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < C; ++k)
      for (int64_t j = 0; j < inner; ++j)
        cat_want[size_t((n * C + k) * inner + j)] =
            k < C1 ? a[size_t((n * C1 + k) * inner + j)] : c[size_t((n * C2 + k - C1) * inner + j)];
  for (int64_t e = 0; e < N * C1 * inner; ++e) {
    int64_t si, di;
    channel_copy_index(e, C1, inner, C1, 0, C, 0, &si, &di);
    cat[size_t(di)] = a[size_t(si)];
  }
  for (int64_t e = 0; e < N * C2 * inner; ++e) {
    int64_t si, di;
    channel_copy_index(e, C2, inner, C2, 0, C, C1, &si, &di);
    cat[size_t(di)] = c[size_t(si)];
  }
  check("concat along axis 1 (channel copy)", cat, cat_want, 0);
  std::vector<float> sl(c.size());
  std::vector<double> sl_want(c.begin(), c.end());
  for (int64_t e = 0; e < N * C2 * inner; ++e) {
    int64_t si, di;
    channel_copy_index(e, C2, inner, C, C1, C2, 0, &si, &di);
    sl[size_t(di)] = cat[size_t(si)];
  }
  check("slice of channels [3, 5) (concat's backward)", sl, sl_want, 0);
  // NCHW -> NHWC and back through batched_transpose's index decode
  const int64_t TN = 2, TC = 3, TH = 4, TW = 5;
  const std::vector<float> t4 = random_vec(size_t(TN * TC * TH * TW), rng);
  std::vector<float> nhwc(t4.size()), back4(t4.size());
  std::vector<double> nhwc_want(t4.size()), back4_want(t4.begin(), t4.end());
  for (int64_t n = 0; n < TN; ++n)
    for (int64_t c = 0; c < TC; ++c)
      for (int64_t h = 0; h < TH; ++h)
        for (int64_t w = 0; w < TW; ++w)
          nhwc_want[size_t(((n * TH + h) * TW + w) * TC + c)] = t4[size_t(((n * TC + c) * TH + h) * TW + w)];
  for (size_t e = 0; e < nhwc.size(); ++e) nhwc[e] = t4[size_t(batched_transpose_source(int64_t(e), TC, TH * TW))];
  check("nchw_to_nhwc (batched transpose)", nhwc, nhwc_want, 0);
  for (size_t e = 0; e < back4.size(); ++e) back4[e] = nhwc[size_t(batched_transpose_source(int64_t(e), TH * TW, TC))];
  check("nhwc_to_nchw, its inverse", back4, back4_want, 0);
}

// apply_activation and activation_grad (common.cuh), the bodies of the activation kernels and
// of the conv/linear epilogues: NaN propagates. relu(NaN) = NaN; relu's backward gives dy where
// y > 0 or y is NaN and 0 where y <= 0, whatever dy holds (PyTorch's threshold_backward).
void test_activation_nan() {
  const float nan = NAN, inf = INFINITY;
  const bool ok =
      std::isnan(apply_activation(1, nan)) && apply_activation(1, -2.f) == 0.f &&
      apply_activation(1, 3.f) == 3.f && apply_activation(1, inf) == inf &&
      apply_activation(1, -inf) == 0.f && std::isnan(apply_activation(2, nan)) &&
      std::isnan(apply_activation(3, nan)) && activation_grad(1, 2.f, nan, 0.f, 0.f) == 2.f &&
      std::isnan(activation_grad(1, nan, nan, 0.f, 0.f)) && activation_grad(1, nan, 0.f, 0.f, 0.f) == 0.f &&
      activation_grad(1, nan, -1.f, 0.f, 0.f) == 0.f && std::isnan(activation_grad(1, nan, 1.f, 0.f, 0.f)) &&
      activation_grad(1, 5.f, 1.f, 0.f, 0.f) == 5.f && std::isnan(activation_grad(2, 1.f, nan, 0.f, 0.f)) &&
      std::isnan(activation_grad(3, 1.f, nan, 0.f, 0.f)) && std::isnan(activation_grad(0, nan, 1.f, 0.f, 0.f));
  if (!ok) ++g_failures;
  std::printf("%-4s %-60s\n", ok ? "ok" : "FAIL", "activations: NaN propagates (relu, tanh, sigmoid, backward)");
}

}  // namespace

int main() {
  test_fastdiv();
  test_activation_nan();
  // LeNet-5 and VGG layers at small batch, then odd geometry, every tile, split-K.
  test_conv("lenet C1 1->6 5x5 32x32 N=2", conv_params(2, 1, 32, 32, 6, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1));
  test_conv("lenet C3 6->16 5x5 14x14 N=2", conv_params(2, 6, 14, 14, 16, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1));
  test_conv("lenet C5 16->120 5x5 5x5 N=3", conv_params(3, 16, 5, 5, 120, 5, 5, 1, 1, 0, 0, 0, 0, 1, 1));
  test_conv("vgg 32->64 3x3 same 14x14 N=2", conv_params(2, 32, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1));
  test_conv("vgg 1->32 3x3 same 28x28 N=2", conv_params(2, 1, 28, 28, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1));
  test_conv("stride 2x3 pad 1,0,2,1 dil 2x1", conv_params(2, 3, 11, 9, 5, 3, 2, 2, 3, 1, 0, 2, 1, 2, 1));
  test_conv("stride 2 same-style pad, 4x4 filter", conv_params(3, 4, 9, 10, 7, 4, 4, 2, 2, 1, 1, 2, 2, 1, 1));
  test_conv("1x1 conv, 128x128 tiles (sms=1)", conv_params(1, 130, 12, 12, 140, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1), 1);
  test_conv("split-K weight grad N=16 28x28", conv_params(16, 8, 28, 28, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1));
  test_conv("dilation 3 stride 3", conv_params(2, 2, 17, 16, 3, 3, 3, 3, 3, 2, 1, 0, 2, 3, 3));
  test_linear(7, 33, 9);
  test_linear(300, 70, 40);
  test_linear(600, 20, 10);  // long Kd for dw: split-K
  test_linear(130, 150, 140, 1);
  test_sgemm(45, 130, 70);
  test_sgemm(17, 3, 600);
  test_pool("pool 2x2/2", 2, 3, 8, 8, 2, 2, 2, 2, 0, 0, 0, 0, true);
  test_pool("pool 3x3/2 pad 1 (overlapping)", 2, 2, 9, 8, 3, 3, 2, 2, 1, 1, 1, 1, true);
  test_pool("pool 3x3/2 pad 1 exclude pad", 2, 2, 9, 8, 3, 3, 2, 2, 1, 1, 1, 1, false);
  test_pool("pool 2x3/1 pad 0,1,1,1 exclude pad", 1, 2, 7, 6, 2, 3, 1, 1, 0, 1, 1, 1, false);
  test_pool("pool 2x2/2 same-style pad bottom/right", 1, 2, 5, 7, 2, 2, 2, 2, 0, 0, 1, 1, false);
  for (bool ac : {false, true}) {
    test_upsample("upsample 2x2 7x7", 3, 7, 7, 2, 2, ac);
    test_upsample("upsample 3x2 5x6", 2, 5, 6, 3, 2, ac);
    test_upsample("upsample 1x4 1x3 (one row)", 2, 1, 3, 1, 4, ac);
    test_upsample("upsample 4x1 2x1 (one column)", 1, 2, 1, 4, 1, ac);
  }
  test_pad_crop_concat();
  std::printf(g_failures ? "\n%d FAILED\n" : "\nall passed\n", g_failures);
  return g_failures ? 1 : 0;
}
