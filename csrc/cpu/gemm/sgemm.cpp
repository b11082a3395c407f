// The blocked sgemm driver: BLIS's five loops around a register-blocked micro-kernel.
//
//   C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C,  then the epilogue
//
//   for jc in N step nc:                       B block  (kc x nc)  -> L3, shared by threads
//     for pc in K step kc:
//       pack op(B)[pc:pc+kc, jc:jc+nc]          all threads, disjoint NR panels, into one of
//                                              two buffers; barrier (small M: B is read in
//                                              place, no packing)
//       for (ic, column slice) in my work items:
//         pack op(A)[ic:ic+mc, pc:pc+kc]        A block (mc x kc)  -> L2, private to a thread
//         for jr in the slice step NR:          B micro-panel (kc x NR) -> L1
//           for ir in mc step MR:
//             micro-kernel: C[ic+ir : +MR, jc+jr : +NR]  (alpha; beta on the first pc
//             slice, 1 on the later ones; the epilogue after the last)
//
// MR, NR, MC, KC, NC come from the dispatch table's entry (dispatch.cpp). The block sizes
// are then evened out per problem (M = 150 with MC = 144 runs as two blocks of 78 rows,
// not 144 + 6), which also balances the threads.
//
// Threads: outside an OpenMP parallel region the work is cut into items claimed from a
// queue. Each thread owns a contiguous range of items and steals from the others' ranges
// when its own is done, which keeps both cores busy when a neighbour process takes one
// away for a while. Two schedules:
//   * M <= MC (one A block; conv2d's M = 6..128 output channels): items are column slices
//     of C. Each thread packs all of op(A) once and packs the B panels of its own slices,
//     so threads never wait for each other (gemm_thread_columns).
//   * larger M: per (jc, pc) step, all threads pack the shared B block, one barrier, then
//     (A block, B column slice) items, so each B panel is packed once (gemm_thread).
// Every C tile is computed the same way whatever the thread count, so results are
// bit-identical for 1 or 2 threads. Inside a parallel region (conv2d over the batch)
// everything runs on the calling thread.
//
// Packing buffers are thread_local, 64-byte aligned and kept between calls: the first call
// on a thread allocates them, later ones reuse them.
#include "cpu/gemm/sgemm.h"

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <new>

#include "common/parallel.h"
#include "cpu/gemm/sgemm_kernels.h"

#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastconv {
namespace cpu {

namespace {

using gemm::SgemmKernel;

// A growable 64-byte-aligned float buffer that keeps its memory between calls.
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(data_); }
  float* get(int64_t n_floats) {
    if (n_floats > capacity_) {
      std::free(data_);
      const size_t bytes = (static_cast<size_t>(n_floats) * sizeof(float) + 63) / 64 * 64;
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!data_) {
        capacity_ = 0;
        throw std::bad_alloc();
      }
      capacity_ = n_floats;
    }
    return data_;
  }

 private:
  float* data_ = nullptr;
  int64_t capacity_ = 0;
};

thread_local AlignedBuffer tls_a_block;  // this thread's packed A block (MC x KC)
thread_local AlignedBuffer tls_b_blocks[2];  // the packed B blocks (two: see gemm_thread)
thread_local AlignedBuffer tls_b_edge;   // the last, partial B panel when B is read in place

// Read a stored B (K, N) in place instead of packing it when M is at most this many
// register tiles: few rows of C use each B panel only a few times, and packing B then
// costs more than it saves (M = 6..24 on the EPYC). Not when ldb is a multiple of 512
// floats (2 KiB): the kc rows of a panel then fall in a few L2 sets and evict each other
// (M = 16, N = 1024 or 4096 was slower in place).
constexpr int64_t kBInPlaceMaxTiles = 4;
// Also when K is short: a B micro-panel of at most 64 x NR floats (4 KiB for NR = 16) stays in
// L1 while up to 64 rows of C use it, so reading it in place costs nothing and packing it is
// a whole extra pass over B. Winograd's 16 GEMMs per group (M = K_out, K = C_in = 32 or 64,
// B = the transformed input): the small VGG's three Winograd layers, all passes at batch 128,
// came out slightly faster on one thread (no worse on two).
constexpr int64_t kBInPlaceShortK = 64;
constexpr int64_t kBInPlaceShortKMaxM = 64;
constexpr int64_t kBInPlaceBadStride = 512;

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }
inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

// Where op(B) comes from: a stored matrix, or a caller's packing callback.
struct BSource {
  bool trans_b = false;
  const float* B = nullptr;
  int64_t ldb = 0;
  const SgemmPackB* packer = nullptr;

  void pack(int64_t k0, int64_t kc, int64_t j0, int64_t nc, int64_t nr, float* dst) const {
    if (packer)
      (*packer)(k0, kc, j0, nc, nr, dst);
    else
      sgemm_pack_b(trans_b, B, ldb, k0, kc, j0, nc, nr, dst);
  }
};

struct Problem {
  bool trans_a;
  int64_t M, N, K;
  float alpha;
  const float* A;
  int64_t lda;
  BSource b;
  float beta;
  float* C;
  int64_t ldc;
  const SgemmEpilogue* epilogue;  // null: none
};

inline float activate(Activation act, float v, float alpha) {
  switch (act) {
    case Activation::ReLU: return v < 0.0f ? 0.0f : v;   // NaN stays NaN
    case Activation::Tanh: return std::tanh(v);
    case Activation::Sigmoid: return 1.0f / (1.0f + std::exp(-v));
    case Activation::LeakyReLU: return v > 0.0f ? v : alpha * v;
    case Activation::ELU: return v > 0.0f ? v : alpha * std::expm1(v);
    case Activation::GELU: return 0.5f * v * std::erfc(-v * 0.70710678f);
    case Activation::GELUTanh:
      return 0.5f * v * (1.0f + std::tanh(0.79788456f * (v + 0.044715f * v * v * v)));
    default: return v;
  }
}

// C[i][j] = act(C[i][j] + row_bias[row0 + i] + col_bias[col0 + j]) on an m x n tile of C.
void apply_epilogue(const SgemmEpilogue& ep, float* C, int64_t ldc, int64_t m, int64_t n,
                    int64_t row0, int64_t col0) {
  for (int64_t i = 0; i < m; ++i) {
    float* c = C + i * ldc;
    const float rb = ep.row_bias ? ep.row_bias[row0 + i] : 0.0f;
    if (ep.col_bias) {
      const float* cb = ep.col_bias + col0;
      for (int64_t j = 0; j < n; ++j) c[j] += rb + cb[j];
    } else if (ep.row_bias) {
      for (int64_t j = 0; j < n; ++j) c[j] += rb;
    }
    switch (ep.act) {
      case Activation::None: break;
      case Activation::ReLU:
        for (int64_t j = 0; j < n; ++j) c[j] = c[j] < 0.0f ? 0.0f : c[j];   // NaN stays NaN
        break;
      default:
        for (int64_t j = 0; j < n; ++j) c[j] = activate(ep.act, c[j], ep.alpha);
        break;
    }
  }
}

bool has_effect(const SgemmEpilogue* ep) {
  return ep && (ep->row_bias || ep->col_bias || ep->act != Activation::None);
}

// K == 0 or alpha == 0: C = beta * C (zeros when beta == 0, C not read), then the epilogue.
void scale_only(const Problem& p) {
  for (int64_t i = 0; i < p.M; ++i) {
    float* c = p.C + i * p.ldc;
    if (p.beta == 0.0f) {
      for (int64_t j = 0; j < p.N; ++j) c[j] = 0.0f;
    } else if (p.beta != 1.0f) {
      for (int64_t j = 0; j < p.N; ++j) c[j] *= p.beta;
    }
  }
  if (has_effect(p.epilogue)) apply_epilogue(*p.epilogue, p.C, p.ldc, p.M, p.N, 0, 0);
}

// Block sizes for one problem: the kernel's MC, KC, NC evened out so the blocks of a loop
// are about equal (MC, NC rounded up to the register tile).
struct Blocking {
  int64_t mc, kc, nc;
};

Blocking blocking_for(const SgemmKernel& kr, const Problem& p) {
  Blocking b;
  b.mc = round_up(ceil_div(p.M, ceil_div(p.M, kr.MC)), kr.MR);
  b.kc = ceil_div(p.K, ceil_div(p.K, kr.KC));
  b.nc = round_up(ceil_div(p.N, ceil_div(p.N, kr.NC)), kr.NR);
  return b;
}

int64_t gcd64(int64_t a, int64_t b) {
  while (b) {
    const int64_t t = a % b;
    a = b;
    b = t;
  }
  return a;
}

// Claims work items of one (jc, pc) step. Thread t owns the contiguous items
// [first(t), first(t+1)) and takes them in order (consecutive items share an A block, so
// it packs each A block once); a thread that runs out steals the next unclaimed item of
// the other ranges, so a thread descheduled by a busy machine does not hold up the step.
// Two sets of counters alternate between steps: set s % 2 serves step s, and each owner
// clears its counter of the other set during step s (all threads finished step s - 1, the
// set's last use, at the barrier before).
struct WorkQueue {
  static constexpr int kMaxThreads = 256;
  std::atomic<int64_t> claimed[2][kMaxThreads];  // items taken from thread t's range, per set

  static int64_t first(int64_t n_items, int t, int nthreads) { return n_items * t / nthreads; }

  // The next item for thread tid, or -1 when the step has none left.
  int64_t next(int set, int64_t n_items, int tid, int nthreads) {
    for (int i = 0; i < nthreads; ++i) {
      const int owner = (tid + i) % nthreads;
      const int64_t lo = first(n_items, owner, nthreads), hi = first(n_items, owner + 1, nthreads);
      if (lo + claimed[set][owner].load(std::memory_order_relaxed) >= hi) continue;
      const int64_t item = lo + claimed[set][owner].fetch_add(1, std::memory_order_relaxed);
      if (item < hi) return item;
    }
    return -1;
  }
};

// The macro-kernel: C[ic : ic+mc, jc + jp0*NR : jc + jp1*NR] (clipped to the block's nc
// columns) += the packed A block (mc x kc) times B panels jp0 .. jp1-1 of the block at jc,
// row slice pc. Panel jp is at b_panels + (jp - first_panel) * kc * NR, or with b_in_place
// read from the stored B (the last, partial one packed into b_edge). beta applies to this
// slice (the caller's beta on the first, 1 after); the epilogue runs after the last.
void macro_kernel(const SgemmKernel& kr, const Problem& p, int64_t ic, int64_t mc,
                  const float* a_block, int64_t pc, int64_t kc, float beta, bool last_pc,
                  int64_t jc, int64_t nc, int64_t jp0, int64_t jp1, const float* b_panels,
                  int64_t first_panel, bool b_in_place, float* b_edge) {
  const int MR = kr.MR, NR = kr.NR;
  const bool epilogue = last_pc && has_effect(p.epilogue);
  for (int64_t jp = jp0; jp < jp1; ++jp) {
    const int64_t jr = jp * NR;
    const int n = static_cast<int>(min64(NR, nc - jr));
    const float* b_panel = b_edge;
    int64_t b_stride = NR;
    if (!b_in_place) {            // the packed panel
      b_panel = b_panels + (jp - first_panel) * kc * NR;
    } else if (n == NR) {         // NR columns of B (K, N) straight from memory
      b_panel = p.b.B + pc * p.b.ldb + jc + jr;
      b_stride = p.b.ldb;
    } else {                      // the last columns: pack them, zero-padded
      sgemm_pack_b(false, p.b.B, p.b.ldb, pc, kc, jc + jr, n, NR, b_edge);
    }
    for (int64_t ir = 0; ir < mc; ir += MR) {
      const int m = static_cast<int>(min64(MR, mc - ir));
      float* c_tile = p.C + (ic + ir) * p.ldc + jc + jr;
      kr.micro_kernel(kc, a_block + ir * kc, b_panel, b_stride, c_tile, p.ldc, m, n, p.alpha,
                      beta);
      if (epilogue) apply_epilogue(*p.epilogue, c_tile, p.ldc, m, n, ic + ir, jc + jr);
    }
  }
}

// Column slices of C for gemm_thread_columns: at most nc columns each, at least 4 per thread
// to share out, none under 4 panels.
int64_t column_slices(const Problem& p, const Blocking& bl, int NR, int nthreads) {
  const int64_t n_panels = ceil_div(p.N, NR);
  int64_t n_slices = ceil_div(p.N, bl.nc);
  while (nthreads > 1 && n_slices < 4 * nthreads && n_panels >= 8 * n_slices) n_slices *= 2;
  return max64(min64(n_slices, n_panels), nthreads > 1 ? min64(nthreads, n_panels) : 1);
}

// Few rows (M <= MC, one A block) and op(A) small enough to pack whole: the threads split
// the columns of C into slices and never wait for each other. Each thread packs all of
// op(A) (every KC slice) once, then for each column slice it claims, for each KC slice,
// packs that slice's B panels into its own buffer (or reads B in place) and runs the
// macro-kernel. conv2d's GEMMs (M = output channels) take this path.
void gemm_thread_columns(const SgemmKernel& kr, const Problem& p, const Blocking& bl,
                         bool b_in_place, WorkQueue* queue, int tid, int nthreads) {
  const int MR = kr.MR, NR = kr.NR;
  const int64_t mc = p.M, mc_padded = round_up(p.M, MR);
  // a_all holds ceil(K / kc) packed A blocks (mc_padded x kc each), block pc at pc * mc_padded.
  float* a_all = tls_a_block.get(mc_padded * p.K);
  for (int64_t pc = 0; pc < p.K; pc += bl.kc)
    gemm::pack_a(p.trans_a, p.A, p.lda, 0, mc, pc, min64(bl.kc, p.K - pc), MR,
                 a_all + pc * mc_padded);

  const int64_t n_panels = ceil_div(p.N, NR);
  const int64_t n_slices = column_slices(p, bl, NR, nthreads);
  const int64_t max_slice_panels = ceil_div(n_panels, n_slices);
  float* b_slice = b_in_place ? nullptr : tls_b_blocks[0].get(bl.kc * max_slice_panels * NR);
  float* b_edge = b_in_place ? tls_b_edge.get(bl.kc * NR) : nullptr;

  for (int64_t slice = 0;; ++slice) {
    if (queue) slice = queue->next(0, n_slices, tid, nthreads);
    if (slice < 0 || slice >= n_slices) break;
    const int64_t jp0 = n_panels * slice / n_slices, jp1 = n_panels * (slice + 1) / n_slices;
    for (int64_t pc = 0; pc < p.K; pc += bl.kc) {
      const int64_t kc = min64(bl.kc, p.K - pc);
      if (!b_in_place)
        p.b.pack(pc, kc, jp0 * NR, min64(p.N, jp1 * NR) - jp0 * NR, NR, b_slice);
      macro_kernel(kr, p, 0, mc, a_all + pc * mc_padded, pc, kc, pc == 0 ? p.beta : 1.0f,
                   pc + kc == p.K, 0, p.N, jp0, jp1, b_slice, jp0, b_in_place, b_edge);
    }
  }
}

// The whole GEMM as seen by thread `tid` of `nthreads` (1 when it runs alone). b_blocks
// are the shared packed-B buffers (kc x nc each), null when B is read in place
// (b_in_place); queue is null when running alone.
//
// One barrier per (jc, pc) step, after packing B: step s packs into b_blocks[s % 2], so
// packing step s + 1 cannot overwrite the block a slower thread is still computing step s
// from, and the barrier of step s + 1 (everyone has packed, so everyone finished step s)
// is all it takes before b_blocks[s % 2] is packed again at step s + 2.
void gemm_thread(const SgemmKernel& kr, const Problem& p, const Blocking& bl,
                 float* const b_blocks[2], bool b_in_place, WorkQueue* queue, int tid,
                 int nthreads) {
  const int MR = kr.MR, NR = kr.NR;
  float* a_block = tls_a_block.get(bl.mc * bl.kc);
  float* b_edge = b_in_place ? tls_b_edge.get(bl.kc * NR) : nullptr;
  const int64_t n_ic = ceil_div(p.M, bl.mc);
  int step = 0;

  for (int64_t jc = 0; jc < p.N; jc += bl.nc) {
    const int64_t nc = min64(bl.nc, p.N - jc);
    const int64_t n_panels = ceil_div(nc, NR);
    // Column slices per A block: enough (ic, slice) items that each thread's range is a
    // whole number of them and, when there are threads, at least 4 per thread to steal
    // from; but no slice narrower than 4 panels.
    int64_t n_slices = nthreads / gcd64(n_ic, nthreads);
    while (nthreads > 1 && n_ic * n_slices < 4 * nthreads && n_panels >= 8 * n_slices)
      n_slices *= 2;
    n_slices = min64(n_slices, n_panels);
    const int64_t n_items = n_ic * n_slices;

    for (int64_t pc = 0; pc < p.K; pc += bl.kc, ++step) {
      const int64_t kc = min64(bl.kc, p.K - pc);
      const float beta = pc == 0 ? p.beta : 1.0f;
      const bool last_pc = pc + kc == p.K;
      float* b_block = b_in_place ? nullptr : b_blocks[step % 2];

      // Pack this thread's share of the B block's panels, then wait for the others'. With
      // B read in place the barrier only keeps the steps apart (the work queue's counters
      // of step s are reused at step s + 2), so the first step needs none.
      if (!b_in_place) {
        const int64_t p0 = n_panels * tid / nthreads, p1 = n_panels * (tid + 1) / nthreads;
        if (p1 > p0)
          p.b.pack(pc, kc, jc + p0 * NR, min64(nc, p1 * NR) - p0 * NR, NR, b_block + p0 * kc * NR);
      }
#ifdef _OPENMP
      if (nthreads > 1 && (!b_in_place || step > 0)) {
#pragma omp barrier
      }
#endif
      if (queue) queue->claimed[(step + 1) % 2][tid].store(0, std::memory_order_relaxed);

      int64_t packed_ic = -1;
      int64_t item = 0;
      while (true) {
        if (queue) {
          item = queue->next(step % 2, n_items, tid, nthreads);
          if (item < 0) break;
        } else if (item >= n_items) {
          break;
        }
        const int64_t ic = (item / n_slices) * bl.mc;
        const int64_t slice = item % n_slices;
        const int64_t mc = min64(bl.mc, p.M - ic);
        if (ic != packed_ic) {
          gemm::pack_a(p.trans_a, p.A, p.lda, ic, mc, pc, kc, MR, a_block);
          packed_ic = ic;
        }
        const int64_t jp0 = n_panels * slice / n_slices, jp1 = n_panels * (slice + 1) / n_slices;
        macro_kernel(kr, p, ic, mc, a_block, pc, kc, beta, last_pc, jc, nc, jp0, jp1, b_block, 0,
                     b_in_place, b_edge);
        if (!queue) ++item;
      }
    }
  }
}

// Gets the calling thread's packing buffers at the sizes gemm_thread_columns (by_columns) or
// gemm_thread will ask for with nthreads threads, so that they find them there and cannot
// fail between the barriers of a parallel GEMM. Throws std::bad_alloc.
void reserve_thread_buffers(const SgemmKernel& kr, const Problem& p, const Blocking& bl,
                            bool by_columns, bool b_in_place, int nthreads) {
  const int MR = kr.MR, NR = kr.NR;
  if (b_in_place) tls_b_edge.get(bl.kc * NR);
  if (!by_columns) {
    tls_a_block.get(bl.mc * bl.kc);
    return;
  }
  tls_a_block.get(round_up(p.M, MR) * p.K);
  if (!b_in_place)
    tls_b_blocks[0].get(bl.kc * ceil_div(ceil_div(p.N, NR), column_slices(p, bl, NR, nthreads)) * NR);
}

// Threads worth using: all of them outside a parallel region, unless the problem is too
// small to pay for waking them (about 0.5 MFLOP per thread: LeNet-5's F6 layer, 64 x 84 x 120,
// 1.3 MFLOP, is still faster on 2 threads than on one) or has too few tiles.
int threads_for(const SgemmKernel& kr, const Problem& p) {
#ifdef _OPENMP
  if (omp_in_parallel()) return 1;
  int64_t nthreads = omp_threads();   // the process-wide setting (common/parallel.h)
  const double flops = 2.0 * static_cast<double>(p.M) * static_cast<double>(p.N) * p.K;
  nthreads = min64(nthreads, static_cast<int64_t>(flops / 0.5e6));
  nthreads = min64(nthreads, ceil_div(p.M, kr.MR) * ceil_div(p.N, kr.NR));
  nthreads = min64(nthreads, WorkQueue::kMaxThreads);
  return nthreads < 1 ? 1 : static_cast<int>(nthreads);
#else
  return 1;
#endif
}

void run(const Problem& p) {
  if (p.M <= 0 || p.N <= 0) return;
  if (p.K <= 0 || p.alpha == 0.0f) {
    scale_only(p);
    return;
  }
  const SgemmKernel& kr = gemm::selected_kernel();
  const Blocking bl = blocking_for(kr, p);
  // Small M: the micro-kernel reads a stored B (K, N) in place, NR columns at a time.
  const bool b_in_place = !p.b.packer && !p.b.trans_b &&
                          (p.M <= kBInPlaceMaxTiles * kr.MR ||
                           (p.M <= kBInPlaceShortKMaxM && p.K <= kBInPlaceShortK)) &&
                          p.b.ldb % kBInPlaceBadStride != 0;
  const int nthreads = threads_for(kr, p);
  // One A block, small enough to pack whole (<= 4 MiB): split columns, no barriers.
  const bool by_columns = p.M <= kr.MC && round_up(p.M, kr.MR) * p.K <= (int64_t(1) << 20);
  float* b_blocks[2] = {nullptr, nullptr};
  if (!b_in_place && !by_columns) {
    b_blocks[0] = b_blocks[1] = tls_b_blocks[0].get(bl.kc * bl.nc);
    if (p.N > bl.nc || p.K > bl.kc) b_blocks[1] = tls_b_blocks[1].get(bl.kc * bl.nc);
  }
  if (nthreads == 1) {
    if (by_columns)
      gemm_thread_columns(kr, p, bl, b_in_place, nullptr, 0, 1);
    else
      gemm_thread(kr, p, bl, b_blocks, b_in_place, nullptr, 0, 1);
    return;
  }
#ifdef _OPENMP
  WorkQueue queue;
  for (auto& set : queue.claimed)
    for (auto& count : set) count.store(0, std::memory_order_relaxed);
  ParallelErrors errors;
#pragma omp parallel num_threads(nthreads)
  {
    // The region may have fewer threads than nthreads (OMP_THREAD_LIMIT, OMP_DYNAMIC): the
    // work is split by the count it got. Each thread gets its packing buffers first; after one
    // barrier either all threads run the GEMM or, if any could not allocate, none does (a
    // thread leaving early would leave the others waiting at gemm_thread's barriers).
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    errors.run([&] { reserve_thread_buffers(kr, p, bl, by_columns, b_in_place, team); });
#pragma omp barrier
    errors.run([&] {
      if (by_columns)
        gemm_thread_columns(kr, p, bl, b_in_place, &queue, tid, team);
      else
        gemm_thread(kr, p, bl, b_blocks, b_in_place, &queue, tid, team);
    });
  }
  errors.rethrow();
#endif
}

}  // namespace

void sgemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
           const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
           int64_t ldc) {
  BSource b;
  b.trans_b = trans_b;
  b.B = B;
  b.ldb = ldb;
  run(Problem{trans_a, M, N, K, alpha, A, lda, b, beta, C, ldc, nullptr});
}

void sgemm_ex(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
              const float* A, int64_t lda, const float* B, int64_t ldb, float beta, float* C,
              int64_t ldc, const SgemmEpilogue& epilogue) {
  BSource b;
  b.trans_b = trans_b;
  b.B = B;
  b.ldb = ldb;
  run(Problem{trans_a, M, N, K, alpha, A, lda, b, beta, C, ldc, &epilogue});
}

void sgemm_packed_b(bool trans_a, int64_t M, int64_t N, int64_t K, float alpha, const float* A,
                    int64_t lda, const SgemmPackB& pack_b, float beta, float* C, int64_t ldc,
                    const SgemmEpilogue& epilogue) {
  BSource b;
  b.packer = &pack_b;
  run(Problem{trans_a, M, N, K, alpha, A, lda, b, beta, C, ldc, &epilogue});
}

namespace gemm {

void sgemm_reference(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                     const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                     float* C, int64_t ldc) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double sum = 0.0;
      for (int64_t k = 0; k < K; ++k) {
        const double a = trans_a ? A[k * lda + i] : A[i * lda + k];
        const double b = trans_b ? B[j * ldb + k] : B[k * ldb + j];
        sum += a * b;
      }
      float& c = C[i * ldc + j];
      c = static_cast<float>(alpha * sum + (beta == 0.0f ? 0.0 : static_cast<double>(beta) * c));
    }
}

}  // namespace gemm
}  // namespace cpu
}  // namespace fastconv
