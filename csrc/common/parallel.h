// OpenMP helpers that compile to plain serial code where OpenMP is missing.
//
// Three rules every CPU kernel follows, and the helpers below that carry them:
//
//  1. One thread count for the whole process. OpenMP's own setting (omp_set_num_threads,
//     the nthreads-var ICV) belongs to the thread that sets it: a Python thread started after
//     fastconv.set_num_threads would run with OpenMP's default. So the count lives in one
//     process-wide variable (thread_setting), and every parallel region in the kernels names
//     it: `#pragma omp parallel ... num_threads(omp_threads())`.
//  2. A region may get fewer threads than it asks for (OMP_THREAD_LIMIT, OMP_DYNAMIC on a
//     busy machine, a call from inside another parallel region). Work split by thread number
//     is split by the count the region actually got, read inside it: parallel_team().
//  3. No exception leaves a parallel region (that ends the process: std::terminate). A body
//     that can throw (a workspace allocation: std::bad_alloc) runs under ParallelErrors, which
//     keeps the first exception and rethrows it on the calling thread after the region; the
//     bindings turn std::bad_alloc into MemoryError.
#pragma once
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <new>
#include <utility>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastconv {

// The process-wide thread count set by set_num_threads; 0 until it is called (then OpenMP's
// default for the calling thread applies: OMP_NUM_THREADS or the CPU count). A function-local
// static in an inline function: one variable in the whole module, and header-only, so the
// GEMM harness (benchmarks/gemm_harness.cpp) links without threads.cpp.
inline std::atomic<int>& thread_setting() {
  static std::atomic<int> n{0};
  return n;
}

// Threads a parallel region of the kernels asks for (an upper bound: see parallel_team).
inline int omp_threads() {
#ifdef _OPENMP
  const int n = thread_setting().load(std::memory_order_relaxed);
  return n > 0 ? n : omp_get_max_threads();
#else
  return 1;
#endif
}
inline int omp_thread_id() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
// Threads in the running region (1 outside one): may be fewer than num_threads asked for.
inline int omp_team_size() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

// Keeps the first exception thrown by any thread of a parallel region, to rethrow on the
// calling thread after it. Once one body has failed, later bodies are skipped.
//
//   ParallelErrors errors;
//   #pragma omp parallel for num_threads(omp_threads())
//   for (...) errors.run([&] { ... });
//   errors.rethrow();
class ParallelErrors {
 public:
  template <class Body>
  void run(Body&& body) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;
    try {
      body();
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!first_) first_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  void rethrow() {
    if (first_) std::rethrow_exception(first_);
  }

 private:
  std::atomic<bool> failed_{false};
  std::mutex mutex_;
  std::exception_ptr first_;
};

// Runs body(t, nt) once on each thread t of a parallel region of at most max_threads threads
// (no region when max_threads <= 1) and returns nt, the number of threads the region got.
// Per-thread work and partial sums follow nt, never max_threads: OpenMP may run fewer. A
// buffer sized for max_threads partials holds them; the caller adds the first nt.
// Exceptions from any thread are rethrown here, after the region.
template <class Body>
int parallel_team(int max_threads, Body&& body) {
  ParallelErrors errors;
  int team = 1;
  if (max_threads <= 1) {
    body(0, 1);
    return 1;
  }
#ifdef _OPENMP
#pragma omp parallel num_threads(max_threads)
  {
    const int nt = omp_get_num_threads(), t = omp_get_thread_num();
    if (t == 0) team = nt;  // every thread reads the same nt; only one writes it
    errors.run([&] { body(t, nt); });
  }
  errors.rethrow();
#else
  body(0, 1);
#endif
  return team;
}

// A growable float buffer aligned to 64 bytes, kept per thread and reused across calls so a
// training loop does not allocate (and page-fault) fresh workspaces every step. Throws
// std::bad_alloc when the memory is not there (callers inside a parallel region run under
// ParallelErrors).
class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() { std::free(data_); }
  float* get(int64_t n) {
    if (n > capacity_) {
      std::free(data_);
      data_ = nullptr;
      capacity_ = 0;
      if (uint64_t(n) > (SIZE_MAX - 64) / sizeof(float)) throw std::bad_alloc();
      size_t bytes = ((size_t(n) * sizeof(float) + 63) / 64) * 64;
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!data_) throw std::bad_alloc();
      capacity_ = n;
    }
    return data_;
  }
 private:
  float* data_ = nullptr;
  int64_t capacity_ = 0;
};

// The workspace of the calling thread; `slot` picks one of a few independent buffers. Slots
// 0-3 are scratch for any kernel; slot 4 belongs to the direct conv2d kernels' padded image
// (avx2/conv2d_direct_avx2.cpp), which keeps its zero border from one call to the next.
inline float* thread_workspace(int slot, int64_t n) {
  thread_local Workspace ws[5];
  return ws[slot].get(n);
}

// Reserves this thread's workspace ``slot`` for n floats under ``errors`` (a failed allocation
// is kept there, to rethrow after the region) and says whether it is there. Afterwards,
// thread_workspace(slot, m) with m <= n neither allocates nor throws, so a per-image loop can
// reserve first and keep its body a plain loop body, outside errors.run's lambda: the
// variables a lambda captures by reference are reloaded around every call the body makes, and
// the direct and row kernels' loops ran measurably slower that way.
inline bool reserve_workspace(ParallelErrors& errors, int slot, int64_t n) {
  bool ok = false;
  errors.run([&] {
    thread_workspace(slot, n);
    ok = true;
  });
  return ok;
}

}  // namespace fastconv
