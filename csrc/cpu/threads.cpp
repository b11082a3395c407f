// The thread count the CPU kernels use: one process-wide setting (common/parallel.h says why
// OpenMP's own per-thread setting is not enough), 1 where OpenMP is missing.
#include <algorithm>
#include <thread>

#include "common/parallel.h"
#include "common/shapes.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

int get_num_threads() { return omp_threads(); }

int max_num_threads() {
#ifdef _OPENMP
  const int cpus = std::max(1, omp_get_num_procs());
#else
  const int cpus = std::max(1u, std::thread::hardware_concurrency());
#endif
  // Four threads a CPU is already far past any speed-up; the floor leaves room for tests of
  // oversubscription on small machines, the ceiling keeps a typo (10**6) from asking libgomp
  // for a million threads (it crashed) or a million per-thread workspaces.
  return std::min(1024, std::max(64, 4 * cpus));
}

void set_num_threads(int n) {
  if (n < 1 || n > max_num_threads())
    fail("set_num_threads: n must be between 1 and ", max_num_threads(),
         " (4 per CPU, at least 64, at most 1024), got ", n);
  thread_setting().store(n, std::memory_order_relaxed);
#ifdef _OPENMP
  // Also OpenMP's setting of the calling thread, for any OpenMP code outside fastconv's
  // kernels that runs on it (the kernels themselves read thread_setting()).
  omp_set_num_threads(n);
#endif
}

}  // namespace cpu
}  // namespace fastconv
