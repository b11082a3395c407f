// Standalone check and timing of fastconv's sgemm, built straight from csrc/cpu/gemm/, the
// ISA selection (csrc/cpu/isa.cpp) and the micro-kernels of csrc/cpu/<isa>/ without Python
// (llm.c style: reference, fast path, validate, time, napkin math).
//
// Build (each ISA folder's files with their own flags, as CMakeLists.txt does):
//   cd <repo> && mkdir -p build/gh && for f in csrc/cpu/gemm/*.cpp csrc/cpu/isa.cpp
//       csrc/cpu/avx2/sgemm_*.cpp csrc/cpu/avx512/sgemm_*.cpp benchmarks/gemm_harness.cpp; do
//     case $f in */avx512/*) fl="-mavx512f -mavx512dq -mavx512bw -mavx512vl -mavx2 -mfma";;
//                */avx2/*) fl="-mavx2 -mfma";; *) fl="";; esac
//     g++ -O3 -std=c++17 -fopenmp -DFASTCONV_X86=1 -Icsrc $fl -c $f -o build/gh/$(basename $f).o
//   done && g++ -fopenmp build/gh/*.o -o build/gh/gemm_harness
// Run:
//   build/gh/gemm_harness check            edge sizes x trans x alpha/beta vs the double loop,
//                                         epilogue, packed-B (im2col) entry, nested parallel
//   build/gh/gemm_harness bench [reps]     GFLOP/s (best and median of reps) at n = 256..2048
//                                         and conv-shaped sizes
//   build/gh/gemm_harness size M N K [ta tb]  one size
//   build/gh/gemm_harness clock            the clock the core runs at and its FP32 FMA peak,
//                                         measured (the peak bench_gemm.py's %peak divides by)
//   FASTCONV_ISA=avx2|generic|avx512 picks the kernel; OMP_NUM_THREADS=1|2 the threads;
//   FASTCONV_BENCH_CPUTIME=1 times by thread CPU time (one thread on a busy machine);
//   FASTCONV_BENCH_CPUTIME=process by all threads' CPU time (with OMP_WAIT_POLICY=passive:
//   GFLOP per CPU second, i.e. parallel efficiency, on a machine too busy for wall time).
//
// Napkin math. Zen 2 / Zen 3 / Zen 4 and Intel cores since Haswell: 2 FMA pipes x 8 floats
// x 2 FLOP = 32 FLOP/cycle with AVX2 (Zen 1: 128-bit pipes, 16). /proc/cpuinfo's MHz is the
// base clock on a virtual machine and turbo runs above it, so `clock` measures both factors:
//   clock: a chain of dependent integer adds (one cycle each on every x86 core since the P6)
//          timed by the thread's CPU time -> cycles per second;
//   FMA:   12 independent vfmadd231ps ymm chains (more than 2 pipes x 4-5 cycles of latency),
//          no memory -> the FP32 FLOP/s one core can issue; divided by the clock, FLOP/cycle.
// On the shared 2-vCPU EPYC (Zen 3) this gave 2.6-2.86 GHz and 30-31.7 FLOP/cycle, i.e. a
// peak of about 85-90 GFLOP/s per core, against 78.3 from cpuinfo's 2445 MHz.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <vector>

#include "cpu/gemm/sgemm.h"
#include "cpu/gemm/sgemm_kernels.h"
#include "cpu/isa.h"

using namespace fastconv;
using namespace fastconv::cpu;

namespace {

std::mt19937 rng(1234);

std::vector<float> random_vec(size_t n) {
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

int failures = 0, checks = 0;

// Compares C against the double-precision loop; the bound is the worst-case float error of
// a K-term dot product, (K + 2) * 2^-24 * sum |alpha a b| + |beta c|.
void check_one(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, float beta) {
  const int64_t lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 1, ldc = N + 2;  // padded rows
  std::vector<float> A = random_vec((ta ? K : M) * lda + 1), B = random_vec((tb ? N : K) * ldb + 1);
  std::vector<float> C0 = random_vec(M * ldc + 1);
  if (beta == 0.0f) std::fill(C0.begin(), C0.end(), NAN);  // beta == 0 must not read C
  std::vector<float> C = C0, R = C0;
  sgemm(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
  gemm::sgemm_reference(ta, tb, M, N, K, alpha, A.data(), lda, B.data(), ldb, beta, R.data(), ldc);
  double worst = 0.0;
  bool bad = false;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double scale = 0.0;
      for (int64_t k = 0; k < K; ++k)
        scale += std::fabs((ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]));
      scale = std::fabs(alpha) * scale + (beta == 0.0f ? 0.0 : std::fabs(beta * C0[i * ldc + j]));
      const double tol = (K + 2) * 6.0e-8 * scale + 1e-30;
      const double err = std::fabs(double(C[i * ldc + j]) - double(R[i * ldc + j]));
      if (!(err <= tol)) bad = true;
      worst = std::max(worst, err / (tol + 1e-30));
    }
  // The padding between rows of C is never written.
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = N; j < ldc && i * ldc + j < int64_t(C.size()); ++j)
      if (std::memcmp(&C[i * ldc + j], &C0[i * ldc + j], 4) != 0) bad = true;
  ++checks;
  if (bad) {
    ++failures;
    std::printf("FAIL ta=%d tb=%d M=%ld N=%ld K=%ld alpha=%g beta=%g worst err/tol=%g\n", ta, tb,
                long(M), long(N), long(K), alpha, beta, worst);
  }
}

// conv2d forward through sgemm_packed_b: y (K, P*Q) = relu(W (K, C*R*S) im2col(x) + b),
// x (C, H, W) one image, stride 1, no padding; checked against a direct convolution.
void check_packed_b_conv(int64_t Cin, int64_t H, int64_t W, int64_t Kout, int64_t R, int64_t S) {
  const int64_t P = H - R + 1, Q = W - S + 1;
  std::vector<float> x = random_vec(Cin * H * W), w = random_vec(Kout * Cin * R * S), b = random_vec(Kout);
  std::vector<float> y(Kout * P * Q, NAN), ref(Kout * P * Q);
  SgemmPackB pack_im2col = [&](int64_t k0, int64_t kc, int64_t j0, int64_t nc, int64_t nr, float* dst) {
    for (int64_t p0 = 0; p0 < nc; p0 += nr)
      for (int64_t k = 0; k < kc; ++k) {
        const int64_t crs = k0 + k, c = crs / (R * S), r = crs / S % R, s = crs % S;
        for (int64_t j = 0; j < nr; ++j) {
          const int64_t pq = j0 + p0 + j, p = pq / Q, q = pq % Q;
          dst[(p0 / nr) * kc * nr + k * nr + j] = (p0 + j < nc) ? x[(c * H + p + r) * W + q + s] : 0.0f;
        }
      }
  };
  SgemmEpilogue ep;
  ep.row_bias = b.data();
  ep.act = Activation::ReLU;
  sgemm_packed_b(false, Kout, P * Q, Cin * R * S, 1.0f, w.data(), Cin * R * S, pack_im2col, 0.0f,
                 y.data(), P * Q, ep);
  double worst = 0.0;
  for (int64_t k = 0; k < Kout; ++k)
    for (int64_t p = 0; p < P; ++p)
      for (int64_t q = 0; q < Q; ++q) {
        double s = b[k], scale = std::fabs(b[k]);
        for (int64_t c = 0; c < Cin; ++c)
          for (int64_t r = 0; r < R; ++r)
            for (int64_t t = 0; t < S; ++t) {
              const double wx = double(w[((k * Cin + c) * R + r) * S + t]) * x[(c * H + p + r) * W + q + t];
              s += wx;
              scale += std::fabs(wx);
            }
        s = std::max(s, 0.0);
        const double tol = (Cin * R * S + 3) * 6.0e-8 * scale;  // as in check_one
        worst = std::max(worst, std::fabs(s - y[(k * P + p) * Q + q]) / tol);
      }
  ++checks;
  if (!(worst <= 1.0)) {
    ++failures;
    std::printf("FAIL packed-B conv C=%ld K=%ld: max err/tol %g\n", long(Cin), long(Kout), worst);
  }
}

// sgemm_ex with a column bias and each activation: linear forward y = act(x w^T + b).
void check_epilogue() {
  const int64_t N = 37, I = 45, O = 29;
  std::vector<float> x = random_vec(N * I), w = random_vec(O * I), b = random_vec(O), rb = random_vec(N);
  for (int act = 0; act < 4; ++act) {
    std::vector<float> y(N * O, NAN);
    SgemmEpilogue ep;
    ep.col_bias = b.data();
    ep.row_bias = rb.data();
    ep.act = static_cast<Activation>(act);
    sgemm_ex(false, true, N, O, I, 1.0f, x.data(), I, w.data(), I, 0.0f, y.data(), O, ep);
    double worst = 0.0;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t o = 0; o < O; ++o) {
        double s = double(b[o]) + rb[n];
        for (int64_t i = 0; i < I; ++i) s += double(x[n * I + i]) * w[o * I + i];
        if (act == 1) s = std::max(s, 0.0);
        if (act == 2) s = std::tanh(s);
        if (act == 3) s = 1.0 / (1.0 + std::exp(-s));
        worst = std::max(worst, std::fabs(s - y[n * O + o]));
      }
    ++checks;
    if (!(worst < 1e-5)) {
      ++failures;
      std::printf("FAIL epilogue act=%d: max err %g\n", act, worst);
    }
  }
}

// Called inside a parallel region: each thread runs its own GEMM alone.
void check_nested() {
  const int64_t M = 70, N = 90, K = 100;
  std::vector<float> A = random_vec(M * K), B = random_vec(K * N);
  std::vector<float> R(M * N);
  gemm::sgemm_reference(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, R.data(), N);
  int bad = 0;
#pragma omp parallel num_threads(2) reduction(+ : bad)
  {
    std::vector<float> C(M * N, NAN);
    for (int rep = 0; rep < 3; ++rep) sgemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(), N);
    for (int64_t i = 0; i < M * N; ++i) bad += !(std::fabs(C[i] - R[i]) < 1e-4);
  }
  ++checks;
  if (bad) {
    ++failures;
    std::printf("FAIL nested: %d bad elements\n", bad);
  }
}

int run_checks() {
  const gemm::SgemmKernel& kr = gemm::selected_kernel();
  std::printf("isa=%s MR=%d NR=%d MC=%ld KC=%ld NC=%ld threads=%d\n", isa_name(kr.needs), kr.MR, kr.NR,
              long(kr.MC), long(kr.KC), long(kr.NC), omp_get_max_threads());
  const int64_t MR = kr.MR, NR = kr.NR;
  const float ab[][2] = {{1.0f, 0.0f}, {0.5f, 0.0f}, {1.5f, -0.7f}, {-1.0f, 1.0f}, {0.0f, 2.0f}};
  std::vector<int64_t> small = {1, 2, 3, 7, 13, MR - 1, MR + 1, NR - 1, NR + 1};
  for (int t = 0; t < 4; ++t)
    for (int64_t M : small)
      for (int64_t N : small)
        for (int64_t K : {int64_t(1), int64_t(2), int64_t(3), int64_t(17)})
          for (auto& x : ab) check_one(t & 1, t & 2, M, N, K, x[0], x[1]);
  struct Size { int64_t M, N, K; };
  const Size big[] = {{kr.MC + 1, NR + 1, 5},      {MR + 1, kr.NC + 1, 3}, {13, 29, kr.KC + 1},
                      {kr.MC + 1, 97, 2 * kr.KC + 1}, {1000, 17, 31},        {7, 1000, 11},
                      {31, 23, 1000},                {1, 1, 1000},          {150, 4100, 7},
                      {0, 5, 5},                     {5, 0, 5},             {5, 5, 0}};
  for (int t = 0; t < 4; ++t)
    for (const Size& s : big)
      for (auto& x : {ab[0], ab[2]}) check_one(t & 1, t & 2, s.M, s.N, s.K, x[0], x[1]);
  // Several jc and pc steps, small M (B read in place) and large: the threads' step
  // hand-over (double-buffered B, work-queue counters) is exercised by OMP_NUM_THREADS > 2.
  const Size steps[] = {{20, 2 * kr.NC + 5, 2 * kr.KC + 3}, {2 * kr.MC + 7, kr.NC + 7, 2 * kr.KC + 9}};
  for (int t = 0; t < 4; t += 3)
    for (const Size& s : steps) check_one(t & 1, t & 2, s.M, s.N, s.K, ab[2][0], ab[2][1]);
  check_epilogue();
  check_packed_b_conv(3, 11, 13, 7, 3, 2);    // one thread, one step
  check_packed_b_conv(16, 40, 40, 24, 5, 5);  // threads split columns; K = 400: two slices
  check_packed_b_conv(12, 30, 30, 200, 5, 5); // M = 200 > MC: shared B blocks, barriers
  check_nested();
  std::printf("%d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}

// Wall-clock seconds, or with FASTCONV_BENCH_CPUTIME=1 the calling thread's CPU seconds: on
// a shared machine a one-thread run then ignores the time it spent descheduled.
// With FASTCONV_BENCH_CPUTIME=process: the CPU seconds of all threads, so GFLOP/s per
// thread = the printed figure (per CPU second) -- how well threads use the cores they get,
// spinning at barriers included, whatever the neighbours take.
double now() {
  static const char* cpu_time = std::getenv("FASTCONV_BENCH_CPUTIME");
  if (cpu_time) {
    timespec ts;
    clock_gettime(std::strcmp(cpu_time, "process") == 0 ? CLOCK_PROCESS_CPUTIME_ID
                                                        : CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void bench_one(const char* label, bool ta, bool tb, int64_t M, int64_t N, int64_t K, int reps) {
  std::vector<float> A = random_vec(M * K), B = random_vec(K * N), C(M * N);
  const double flops = 2.0 * M * N * K;
  // Enough calls per sample for ~20 ms, after a warm-up.
  sgemm(ta, tb, M, N, K, 1.0f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.0f, C.data(), N);
  const int inner = std::max(1, int(0.02 / (flops / 30e9)));
  std::vector<double> gflops;
  for (int r = 0; r < reps; ++r) {
    const double t0 = now();
    for (int i = 0; i < inner; ++i)
      sgemm(ta, tb, M, N, K, 1.0f, A.data(), ta ? M : K, B.data(), tb ? K : N, 0.0f, C.data(), N);
    gflops.push_back(flops * inner / (now() - t0) / 1e9);
  }
  std::sort(gflops.begin(), gflops.end());
  std::printf("%-10s ta=%d tb=%d M=%5ld N=%6ld K=%5ld  best %6.1f  median %6.1f GFLOP/s\n", label,
              ta, tb, long(M), long(N), long(K), gflops.back(), gflops[gflops.size() / 2]);
  std::fflush(stdout);
}

int run_bench(int reps, const char* which) {
  std::printf("isa=%s threads=%d\n", isa_name(gemm::selected_kernel().needs), omp_get_max_threads());
  const bool all = !which || !std::strcmp(which, "all");
  if (all || !std::strcmp(which, "square"))
    for (int64_t n : {256, 512, 1024, 2048}) bench_one("square", false, false, n, n, n, reps);
  if (all || !std::strcmp(which, "trans"))
    for (int t = 1; t < 4; ++t) bench_one("trans", t & 1, t & 2, 1024, 1024, 1024, reps);
  if (all || !std::strcmp(which, "conv")) {
    bench_one("conv", false, false, 6, 784 * 64, 25, reps);    // LeNet conv1, batch 64
    bench_one("conv", false, false, 16, 100 * 64, 150, reps);  // LeNet conv2, batch 64
    bench_one("conv", false, false, 32, 784, 288, reps);
    bench_one("conv", false, false, 64, 196, 576, reps);
    bench_one("conv", false, false, 128, 3136, 576, reps);
  }
  return 0;
}

}  // namespace

// The core's clock and FP32 FMA peak, measured by the calling thread's CPU time (see the
// napkin math at the top). The FMA loop needs AVX2 + FMA; it is skipped on CPUs without.
__attribute__((target("avx2,fma"))) double fma_gflops(long iters) {
  timespec t0, t1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  asm volatile(
      "vxorps %%ymm0, %%ymm0, %%ymm0\n vxorps %%ymm1, %%ymm1, %%ymm1\n"
      "vxorps %%ymm2, %%ymm2, %%ymm2\n vxorps %%ymm3, %%ymm3, %%ymm3\n"
      "vxorps %%ymm4, %%ymm4, %%ymm4\n vxorps %%ymm5, %%ymm5, %%ymm5\n"
      "vxorps %%ymm6, %%ymm6, %%ymm6\n vxorps %%ymm7, %%ymm7, %%ymm7\n"
      "vxorps %%ymm8, %%ymm8, %%ymm8\n vxorps %%ymm9, %%ymm9, %%ymm9\n"
      "vxorps %%ymm10, %%ymm10, %%ymm10\n vxorps %%ymm11, %%ymm11, %%ymm11\n"
      "vxorps %%ymm12, %%ymm12, %%ymm12\n vxorps %%ymm13, %%ymm13, %%ymm13\n"
      "mov %0, %%rcx\n"
      "1:\n"
      "vfmadd231ps %%ymm12, %%ymm13, %%ymm0\n vfmadd231ps %%ymm12, %%ymm13, %%ymm1\n"
      "vfmadd231ps %%ymm12, %%ymm13, %%ymm2\n vfmadd231ps %%ymm12, %%ymm13, %%ymm3\n"
      "vfmadd231ps %%ymm12, %%ymm13, %%ymm4\n vfmadd231ps %%ymm12, %%ymm13, %%ymm5\n"
      "vfmadd231ps %%ymm12, %%ymm13, %%ymm6\n vfmadd231ps %%ymm12, %%ymm13, %%ymm7\n"
      "vfmadd231ps %%ymm12, %%ymm13, %%ymm8\n vfmadd231ps %%ymm12, %%ymm13, %%ymm9\n"
      "vfmadd231ps %%ymm12, %%ymm13, %%ymm10\n vfmadd231ps %%ymm12, %%ymm13, %%ymm11\n"
      "sub $1, %%rcx\n jnz 1b\n"
      :
      : "r"(iters)
      : "rcx", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9",
        "xmm10", "xmm11", "xmm12", "xmm13", "cc");
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  const double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  return iters * 12.0 * 16.0 / s / 1e9;  // 12 FMAs x 8 lanes x 2 FLOP per iteration
}

double clock_ghz(long adds) {
  timespec t0, t1;
  long x = 0;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  asm volatile(
      "mov %1, %%rcx\n"
      "1:\n"
      "add $1, %0\n add $1, %0\n add $1, %0\n add $1, %0\n"
      "add $1, %0\n add $1, %0\n add $1, %0\n add $1, %0\n"
      "sub $1, %%rcx\n jnz 1b\n"
      : "+r"(x)
      : "r"(adds / 8)
      : "rcx", "cc");
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  const double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  return x / s / 1e9;
}

int run_clock(int reps) {
  const bool fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  std::printf("rep  clock GHz  FMA GFLOP/s  FLOP/cycle   (thread CPU time; 8 adds chained, 12 FMA chains)\n");
  for (int r = 0; r < reps; ++r) {
    const double ghz = clock_ghz(400000000L);
    if (fma) {
      const double gf = fma_gflops(100000000L);
      std::printf("%3d  %9.3f  %11.1f  %10.2f\n", r, ghz, gf, gf / ghz);
    } else {
      std::printf("%3d  %9.3f  %11s  %10s\n", r, ghz, "-", "-");
    }
  }
  return 0;
}

int main(int argc, char** argv) {
  if (argc >= 2 && !std::strcmp(argv[1], "check")) return run_checks();
  if (argc >= 2 && !std::strcmp(argv[1], "clock")) return run_clock(argc >= 3 ? std::atoi(argv[2]) : 5);
  if (argc >= 5 && !std::strcmp(argv[1], "size")) {  // size M N K [ta tb]
    std::printf("isa=%s threads=%d\n", isa_name(gemm::selected_kernel().needs), omp_get_max_threads());
    bench_one("size", argc >= 6 && argv[5][0] == '1', argc >= 7 && argv[6][0] == '1', std::atol(argv[2]),
              std::atol(argv[3]), std::atol(argv[4]), 7);
    return 0;
  }
  if (argc >= 2 && !std::strcmp(argv[1], "bench"))
    return run_bench(argc >= 3 ? std::atoi(argv[2]) : 7, argc >= 4 ? argv[3] : nullptr);
  std::printf("usage: %s check | bench [reps] [all|square|trans|conv] | size M N K [ta tb] | clock [reps]\n",
              argv[0]);
  return 2;
}
