// The implicit-GEMM engine under conv2d (forward, backward input, backward weight) and linear.
//
//   C (M, N) = sum over k in [0, Kd) of A(m, k) * B(k, n),   then  epilogue(m, n, C(m, n))
//
// A and B are never materialised: each is a *loader*, a small struct that says where element
// (m, k) or (k, n) lives in global memory, or that it is a zero (padding, a stride hole). For
// convolution that is the im2col index computed on the fly while a tile is loaded, so no
// im2col buffer ever exists in global memory. The epilogue writes the result wherever it
// belongs (NCHW output, bias and activation fused; a weight gradient; a row-major matrix).
//
// Kernel (one thread block per BM x BN tile of C, 256 threads, each owning a TM x TN register
// tile; the classic SGEMM of Volkov/Demmel and llm.c's matmul kernels):
//
//   As[2][BK][BM+4], Bs[2][BK][BN+4]      shared, k-major, double-buffered, +4 against bank
//                                         conflicts (keeps rows 16-byte aligned for float4)
//   fetch tile t+1 from global into registers   (loads in flight while tile t is computed)
//   acc[TM][TN] += As[t][kk][ty*TM + i] * Bs[t][kk][tx*TN + j]   for kk < BK
//   store the registers into the other shared buffer; one __syncthreads per k-tile
//
// Coalescing: a loader declares which index is contiguous in memory (kFastK: k, otherwise m or
// n). Consecutive threads then walk that index, and the per-thread index decode ("pre") on the
// fixed axis is done once (per kernel for m/n, per k-tile for k) instead of per element.
//
// Split-K: when M x N has too few tiles to fill the GPU and Kd is long (the weight gradient of
// a convolution: M = K, N = C*R*S, Kd = N*P*Q), blockIdx.z takes one slice of Kd and writes
// its partial tile to a workspace (splits, M, N); a second kernel sums the slices in a fixed
// order and applies the epilogue, so the result is deterministic (no atomics).
//
// TF32 (set_allow_tf32(True), off by default): the same loaders, tiles and pipeline, but the
// multiply is done by tensor cores through WMMA (m16n16k8, TF32 inputs rounded from FP32 with
// __float_to_tf32, FP32 accumulation). Eight warps tile the block: warp (wm, wn) owns rows
// [16*wm, 16*wm + 16) and BN/WN columns, i.e. FN 16x16 accumulator fragments. The shared tiles
// already have the layouts WMMA reads: As[k][m] is a col-major A, Bs[k][n] a row-major B, and
// every fragment pointer is 32-byte aligned (rows of BM+4 / BN+4 floats, k steps of 8). At
// the end the accumulators go through shared memory (aliasing the A/B tiles) so the epilogue
// sees one (m, n) at a time, as in the FP32 kernel. TF32 keeps 10 mantissa bits: expect
// relative errors around 1e-3, as with cuDNN's TF32 convolutions.
//
// Indexing: m, n, k are int64; loaders decode their indices in int32 (the bindings keep every
// decoded product below 2^31) and form addresses in int64.
#pragma once
#include <mma.h>

#include <algorithm>

#include "cuda/common.cuh"

namespace fastconv {
namespace cuda {

template <int BM_, int BN_, int BK_, int TM_, int TN_>
struct GemmTile {
  static constexpr int BM = BM_, BN = BN_, BK = BK_, TM = TM_, TN = TN_;
  static constexpr int kThreads = (BM / TM) * (BN / TN);
  static_assert(BM % TM == 0 && BN % TN == 0, "thread tile must divide the block tile");
  static_assert(TM % 4 == 0 && TN % 4 == 0, "thread tiles are read from shared as float4");
};

// One operand (A or B) as seen by one thread: which elements of the k-major shared tile
// (BK x BMN) it fetches, and the decode it can hoist out of the loop.
template <int BMN, int BK, int NT, class L>
struct TileOperand {
  static constexpr int kPer = BMN * BK / NT;  // elements each thread fetches per k-tile
  static constexpr int kLd = BMN + 4;         // shared row length
  static_assert((BMN * BK) % NT == 0, "the tile must split evenly over the threads");
  static_assert(L::kFastK ? (NT % BK == 0) : (NT % BMN == 0 && BMN <= NT),
                "threads must tile the contiguous axis exactly");

  L l;
  int tid;
  int64_t mn0, MN;
  typename L::Pre pre_mn;  // decode of this thread's fixed m/n (kFastK == false only)
  bool mn_ok;

  FC_HD TileOperand(const L& loader, int thread, int64_t first, int64_t count)
      : l(loader), tid(thread), mn0(first), MN(count), pre_mn{}, mn_ok(false) {
    if constexpr (!L::kFastK) {
      const int64_t mn = mn0 + tid % BMN;
      mn_ok = mn < MN;
      pre_mn = l.pre(mn_ok ? mn : 0);
    }
  }

  // Fetch the elements for k in [kt, kt + BK) (zeros past kend or past MN) into registers.
  FC_HD void fetch(float (&r)[kPer], int64_t kt, int64_t kend) const {
    if constexpr (L::kFastK) {
      const int64_t k = kt + tid % BK;
      const bool k_ok = k < kend;
      const typename L::Pre pre = l.pre(k_ok ? k : 0);
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        const int64_t mn = mn0 + tid / BK + i * (NT / BK);
        r[i] = (k_ok && mn < MN) ? l.at(pre, mn) : 0.f;
      }
    } else {
#pragma unroll
      for (int i = 0; i < kPer; ++i) {
        const int64_t k = kt + tid / BMN + i * (NT / BMN);
        r[i] = (mn_ok && k < kend) ? l.at(pre_mn, k) : 0.f;
      }
    }
  }

  FC_HD void store(float (*tile)[kLd], const float (&r)[kPer]) const {
    if constexpr (L::kFastK) {
#pragma unroll
      for (int i = 0; i < kPer; ++i) tile[tid % BK][tid / BK + i * (NT / BK)] = r[i];
    } else {
#pragma unroll
      for (int i = 0; i < kPer; ++i) tile[tid / BMN + i * (NT / BMN)][tid % BMN] = r[i];
    }
  }
};

// One k-tile of FMAs for the thread at (ty, tx): acc[i][j] += As[kk][ty*TM + i] *
// Bs[kk][tx*TN + j] for kk < BK. Shared by the kernel and the host emulation.
template <class T>
FC_HD void multiply_tile(float (&acc)[T::TM][T::TN], const float (*As)[T::BM + 4],
                         const float (*Bs)[T::BN + 4], int tx, int ty) {
  constexpr int BK = T::BK, TM = T::TM, TN = T::TN;
#pragma unroll
  for (int kk = 0; kk < BK; ++kk) {
    float av[TM], bv[TN];
#pragma unroll
    for (int i = 0; i < TM; i += 4) {
      const float4 v = *reinterpret_cast<const float4*>(&As[kk][ty * TM + i]);
      av[i] = v.x; av[i + 1] = v.y; av[i + 2] = v.z; av[i + 3] = v.w;
    }
#pragma unroll
    for (int j = 0; j < TN; j += 4) {
      const float4 v = *reinterpret_cast<const float4*>(&Bs[kk][tx * TN + j]);
      bv[j] = v.x; bv[j + 1] = v.y; bv[j + 2] = v.z; bv[j + 3] = v.w;
    }
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
  }
}

// The thread's TM x TN results through the epilogue (rows/columns past M, N skipped).
template <class T, class Epi>
FC_HD void write_tile(const float (&acc)[T::TM][T::TN], const Epi& epi, int64_t M, int64_t N,
                      int64_t m0, int64_t n0, int tx, int ty, int z) {
#pragma unroll
  for (int i = 0; i < T::TM; ++i) {
    const int64_t m = m0 + ty * T::TM + i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < T::TN; ++j) {
      const int64_t n = n0 + tx * T::TN + j;
      if (n < N) epi(m, n, acc[i][j], z);
    }
  }
}

// Each block: the (blockIdx.y, blockIdx.x) tile of C over the k slice blockIdx.z.
template <class T, class AL, class BL, class Epi>
__global__ void __launch_bounds__(T::kThreads)
implicit_gemm_kernel(int64_t M, int64_t N, int64_t Kd, int64_t k_chunk, AL a_loader,
                     BL b_loader, Epi epi) {
  constexpr int BM = T::BM, BN = T::BN, BK = T::BK, TM = T::TM, TN = T::TN, NT = T::kThreads;
  using AOp = TileOperand<BM, BK, NT, AL>;
  using BOp = TileOperand<BN, BK, NT, BL>;
  __shared__ __align__(16) float As[2][BK][AOp::kLd];  // As[buf][k][m]
  __shared__ __align__(16) float Bs[2][BK][BOp::kLd];  // Bs[buf][k][n]

  const int tid = threadIdx.x;
  const int tx = tid % (BN / TN), ty = tid / (BN / TN);
  const int64_t m0 = int64_t(blockIdx.y) * BM;
  const int64_t n0 = int64_t(blockIdx.x) * BN;
  const int64_t kbeg = int64_t(blockIdx.z) * k_chunk;
  const int64_t kend = (kbeg + k_chunk < Kd) ? kbeg + k_chunk : Kd;

  const AOp a(a_loader, tid, m0, M);
  const BOp b(b_loader, tid, n0, N);
  float ra[AOp::kPer], rb[BOp::kPer];
  float acc[TM][TN];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TN; ++j) acc[i][j] = 0.f;

  int buf = 0;
  if (kbeg < kend) {
    a.fetch(ra, kbeg, kend);
    b.fetch(rb, kbeg, kend);
    a.store(As[0], ra);
    b.store(Bs[0], rb);
  }
  __syncthreads();
  for (int64_t kt = kbeg; kt < kend; kt += BK) {
    const bool has_next = kt + BK < kend;
    if (has_next) {  // global loads of the next tile overlap the FMAs below
      a.fetch(ra, kt + BK, kend);
      b.fetch(rb, kt + BK, kend);
    }
    multiply_tile<T>(acc, As[buf], Bs[buf], tx, ty);
    if (has_next) {  // the other buffer was last read before the previous barrier
      a.store(As[buf ^ 1], ra);
      b.store(Bs[buf ^ 1], rb);
    }
    __syncthreads();
    buf ^= 1;
  }
  write_tile<T>(acc, epi, M, N, m0, n0, tx, ty, int(blockIdx.z));
}

// The TF32 tensor-core variant of implicit_gemm_kernel (see the header comment).
template <class T, class AL, class BL, class Epi>
__global__ void __launch_bounds__(T::kThreads)
implicit_gemm_tf32_kernel(int64_t M, int64_t N, int64_t Kd, int64_t k_chunk, AL a_loader,
                          BL b_loader, Epi epi) {
  using namespace nvcuda;
  constexpr int BM = T::BM, BN = T::BN, BK = T::BK, NT = T::kThreads;
  constexpr int kWarps = NT / 32, WM = BM / 16, WN = kWarps / WM, WARP_N = BN / WN;
  constexpr int FN = WARP_N / 16;
  static_assert(NT % 32 == 0 && BM % 16 == 0 && BK % 8 == 0, "WMMA m16n16k8 tiling");
  static_assert(WM * WN == kWarps && WARP_N % 16 == 0, "warps must tile the block exactly");
  using AOp = TileOperand<BM, BK, NT, AL>;
  using BOp = TileOperand<BN, BK, NT, BL>;
  constexpr int kLdA = AOp::kLd, kLdB = BOp::kLd, kLdC = BN + 4;
  constexpr int kBytesA = 2 * BK * kLdA * 4, kBytesB = 2 * BK * kLdB * 4;
  constexpr int kBytesC = BM * kLdC * 4;
  constexpr int kBytes = kBytesA + kBytesB > kBytesC ? kBytesA + kBytesB : kBytesC;
  static_assert(kBytesA % 32 == 0, "B tiles must start 32-byte aligned");
  __shared__ __align__(128) unsigned char smem[kBytes];
  auto As = reinterpret_cast<float (*)[BK][kLdA]>(smem);             // As[buf][k][m]
  auto Bs = reinterpret_cast<float (*)[BK][kLdB]>(smem + kBytesA);   // Bs[buf][k][n]
  auto Cs = reinterpret_cast<float (*)[kLdC]>(smem);                 // Cs[m][n], after the loop

  const int tid = threadIdx.x;
  const int warp = tid / 32, wm = warp % WM, wn = warp / WM;
  const int64_t m0 = int64_t(blockIdx.y) * BM;
  const int64_t n0 = int64_t(blockIdx.x) * BN;
  const int64_t kbeg = int64_t(blockIdx.z) * k_chunk;
  const int64_t kend = (kbeg + k_chunk < Kd) ? kbeg + k_chunk : Kd;

  const AOp a(a_loader, tid, m0, M);
  const BOp b(b_loader, tid, n0, N);
  float ra[AOp::kPer], rb[BOp::kPer];
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[FN];
#pragma unroll
  for (int f = 0; f < FN; ++f) wmma::fill_fragment(acc[f], 0.f);

  int buf = 0;
  if (kbeg < kend) {
    a.fetch(ra, kbeg, kend);
    b.fetch(rb, kbeg, kend);
    a.store(As[0], ra);
    b.store(Bs[0], rb);
  }
  __syncthreads();
  for (int64_t kt = kbeg; kt < kend; kt += BK) {
    const bool has_next = kt + BK < kend;
    if (has_next) {
      a.fetch(ra, kt + BK, kend);
      b.fetch(rb, kt + BK, kend);
    }
#pragma unroll
    for (int kk = 0; kk < BK; kk += 8) {
      wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fa;
      wmma::load_matrix_sync(fa, &As[buf][kk][wm * 16], kLdA);
#pragma unroll
      for (int t = 0; t < fa.num_elements; ++t) fa.x[t] = wmma::__float_to_tf32(fa.x[t]);
#pragma unroll
      for (int f = 0; f < FN; ++f) {
        wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fb;
        wmma::load_matrix_sync(fb, &Bs[buf][kk][wn * WARP_N + f * 16], kLdB);
#pragma unroll
        for (int t = 0; t < fb.num_elements; ++t) fb.x[t] = wmma::__float_to_tf32(fb.x[t]);
        wmma::mma_sync(acc[f], fa, fb, acc[f]);
      }
    }
    if (has_next) {
      a.store(As[buf ^ 1], ra);
      b.store(Bs[buf ^ 1], rb);
    }
    __syncthreads();
    buf ^= 1;
  }
  // Every read of the A/B tiles finished before the last barrier: reuse them for C.
#pragma unroll
  for (int f = 0; f < FN; ++f)
    wmma::store_matrix_sync(&Cs[wm * 16][wn * WARP_N + f * 16], acc[f], kLdC,
                            wmma::mem_row_major);
  __syncthreads();
  for (int idx = tid; idx < BM * BN; idx += NT) {
    const int mm = idx / BN, nn = idx % BN;
    const int64_t m = m0 + mm, n = n0 + nn;
    if (m < M && n < N) epi(m, n, Cs[mm][nn], int(blockIdx.z));
  }
}

// Split-K, pass 1 epilogue: partial (splits, M, N) gets this slice's sums.
struct PartialStore {
  float* partial;
  int64_t M, N;
  FC_HD void operator()(int64_t m, int64_t n, float v, int z) const {
    partial[(int64_t(z) * M + m) * N + n] = v;
  }
};

// Split-K, pass 2: C(m, n) = sum over z of partial (z, m, n), z ascending, then the epilogue.
template <class Epi>
__global__ void split_k_reduce_kernel(const float* partial, int splits, int64_t M, int64_t N,
                                      Epi epi) {
  const int64_t MN = M * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < MN;
       i += int64_t(gridDim.x) * blockDim.x) {
    float s = 0.f;
    for (int z = 0; z < splits; ++z) s += partial[z * MN + i];
    epi(i / N, i % N, s, 0);
  }
}

// How run_gemm cuts Kd: `splits` slices of k_chunk (a multiple of BK) each.
struct SplitPlan {
  int64_t grid_m, grid_n, splits, k_chunk;
};

// Split Kd when the tiles alone would leave most of the GPU (`sms` multiprocessors) idle: aim
// for two blocks per multiprocessor, each slice at least kMinSlice k's (four k-tiles) so the
// partial sums pay for themselves. LeNet's layers at batch 64 are the case: C1's weight
// gradient is one 16 x 256 tile with Kd = 50,176, C3's input gradient 49 tiles with Kd = 400;
// unsplit, each block walks the whole reduction alone and the step is latency-bound (on an
// H100 both took longer than cuDNN's, which splits the reduction).
constexpr int64_t kMinSlice = 64;
constexpr int64_t kMaxSplits = 256;

template <class T>
SplitPlan plan_gemm(int64_t M, int64_t N, int64_t Kd, int sms) {
  SplitPlan plan;
  plan.grid_n = (N + T::BN - 1) / T::BN;
  plan.grid_m = (M + T::BM - 1) / T::BM;
  if (plan.grid_m > 65535 || plan.grid_n > 0x7fffffff)
    throw std::invalid_argument("fastconv.cuda: GEMM of " + std::to_string(M) + " x " +
                                std::to_string(N) + " is too large for one launch");
  const int64_t tiles = plan.grid_m * plan.grid_n;
  const int64_t want = 2 * int64_t(sms);
  int64_t splits = 1;
  if (tiles < want && Kd >= 2 * kMinSlice) {
    splits = std::min<int64_t>((want + tiles - 1) / tiles, Kd / kMinSlice);
    splits = std::max<int64_t>(1, std::min<int64_t>(splits, kMaxSplits));
  }
  int64_t k_chunk = (Kd + splits - 1) / splits;
  k_chunk = std::max<int64_t>(T::BK, (k_chunk + T::BK - 1) / T::BK * T::BK);
  plan.splits = std::max<int64_t>(1, (Kd + k_chunk - 1) / k_chunk);
  plan.k_chunk = k_chunk;
  return plan;
}

// Launches the FP32 or the TF32 kernel for tile T.
template <class T, bool kTF32, class AL, class BL, class Epi>
void launch_gemm_kernel(dim3 grid, int64_t M, int64_t N, int64_t Kd, int64_t k_chunk,
                        const AL& a, const BL& b, const Epi& epi) {
  if constexpr (kTF32) {
    implicit_gemm_tf32_kernel<T><<<grid, T::kThreads, 0, stream()>>>(M, N, Kd, k_chunk, a, b, epi);
  } else {
    implicit_gemm_kernel<T><<<grid, T::kThreads, 0, stream()>>>(M, N, Kd, k_chunk, a, b, epi);
  }
  CUDA_CHECK_LAUNCH();
}

template <class T, bool kTF32, class AL, class BL, class Epi>
void run_gemm(int64_t M, int64_t N, int64_t Kd, const AL& a, const BL& b, const Epi& epi) {
  const SplitPlan plan = plan_gemm<T>(M, N, Kd, sm_count());
  const dim3 grid{unsigned(plan.grid_n), unsigned(plan.grid_m), unsigned(plan.splits)};
  if (plan.splits == 1) {
    launch_gemm_kernel<T, kTF32>(grid, M, N, Kd, plan.k_chunk, a, b, epi);
    return;
  }
  DeviceBuffer partial(size_t(plan.splits) * size_t(M) * size_t(N) * sizeof(float));
  launch_gemm_kernel<T, kTF32>(grid, M, N, Kd, plan.k_chunk, a, b,
                               PartialStore{partial.as<float>(), M, N});
  split_k_reduce_kernel<<<grid_for(M * N, 256), 256, 0, stream()>>>(partial.as<float>(), int(plan.splits),
                                                       M, N, epi);
  CUDA_CHECK_LAUNCH();
}

// Calls f(GemmTile<...>{}) with the block tile for this shape: a short M (few output
// channels, as in LeNet's C1 with K = 6) gets a wide, flat tile so fewer threads multiply
// padding rows; big problems with enough tiles get 128 x 128.
template <class F>
void dispatch_tile(int64_t M, int64_t N, int sms, F&& f) {
  if (M <= 16) {
    f(GemmTile<16, 256, 16, 4, 4>{});
  } else if (M <= 32) {
    f(GemmTile<32, 128, 16, 4, 4>{});
  } else if (M >= 128 && N >= 128 && ((M + 127) / 128) * ((N + 127) / 128) >= sms) {
    f(GemmTile<128, 128, 16, 8, 8>{});
  } else {
    f(GemmTile<64, 64, 16, 4, 4>{});
  }
}

// The TF32 kernel's tiles: eight warps of 16 x 32, so the C tile fits in the A/B tiles' shared
// memory (no 128 x 128 here).
template <class F>
void dispatch_tile_tf32(int64_t M, F&& f) {
  if (M <= 16) {
    f(GemmTile<16, 256, 16, 4, 4>{});
  } else if (M <= 32) {
    f(GemmTile<32, 128, 16, 4, 4>{});
  } else {
    f(GemmTile<64, 64, 16, 4, 4>{});
  }
}

// The engine on the GPU, as a function object so an op's wiring (which loaders, which
// epilogue) can also be run by the host emulation with another engine.
struct DeviceGemm {
  template <class AL, class BL, class Epi>
  void operator()(int64_t M, int64_t N, int64_t Kd, const AL& a, const BL& b,
                  const Epi& epi) const {
    if (M <= 0 || N <= 0) return;
    if (allow_tf32()) {
      dispatch_tile_tf32(M, [&](auto tile) {
        run_gemm<decltype(tile), true>(M, N, Kd, a, b, epi);
      });
    } else {
      dispatch_tile(M, N, sm_count(), [&](auto tile) {
        run_gemm<decltype(tile), false>(M, N, Kd, a, b, epi);
      });
    }
  }
};

template <class AL, class BL, class Epi>
void implicit_gemm(int64_t M, int64_t N, int64_t Kd, const AL& a, const BL& b, const Epi& epi) {
  DeviceGemm{}(M, N, Kd, a, b, epi);
}

// A row-major matrix as a loader: element (slow, fast) at ptr[slow * ld + fast], where "fast"
// is the contiguous index. kFastK says whether that index is k.
//   A (M, K) as stored: kFastK = true;  A stored (K, M) and transposed: kFastK = false.
//   B (K, N) as stored: kFastK = false; B stored (N, K) and transposed: kFastK = true.
template <bool kFastK_>
struct MatrixLoader {
  static constexpr bool kFastK = kFastK_;
  const float* ptr;
  int64_t ld;
  struct Pre { int64_t fast; };
  FC_HD Pre pre(int64_t fast) const { return Pre{fast}; }
  FC_HD float at(const Pre& p, int64_t slow) const {
    return ldg(ptr + slow * ld + p.fast);
  }
};

// Epilogue for a row-major C (M, N): C(m, n) = act(v + bias[n]); bias may be null.
struct MatrixStore {
  float* c;
  int64_t ldc;
  const float* bias;
  int act;
  float alpha = 0.f;  // the activation's parameter
  FC_HD void operator()(int64_t m, int64_t n, float v, int) const {
    if (bias) v += ldg(bias + n);
    c[m * ldc + n] = apply_activation(act, v, alpha);
  }
};

}  // namespace cuda
}  // namespace fastconv
