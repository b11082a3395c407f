// The OpenMP thread count the CPU kernels use (1 where OpenMP is missing).
#include "common/parallel.h"
#include "ops.h"

namespace fastconv {
namespace cpu {

int get_num_threads() { return omp_threads(); }

void set_num_threads(int n) {
#ifdef _OPENMP
  omp_set_num_threads(n < 1 ? 1 : n);
#else
  (void)n;
#endif
}

}  // namespace cpu
}  // namespace fastconv
