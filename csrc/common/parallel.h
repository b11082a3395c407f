// OpenMP helpers that compile to plain serial code where OpenMP is missing.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <new>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace fastconv {

inline int omp_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
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

// A growable float buffer aligned to 64 bytes, kept per thread and reused across calls so a
// training loop does not allocate (and page-fault) fresh workspaces every step.
class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  ~Workspace() { std::free(data_); }
  float* get(int64_t n) {
    if (n > capacity_) {
      std::free(data_);
      size_t bytes = ((size_t(n) * sizeof(float) + 63) / 64) * 64;
      data_ = static_cast<float*>(std::aligned_alloc(64, bytes));
      if (!data_) { capacity_ = 0; throw std::bad_alloc(); }
      capacity_ = n;
    }
    return data_;
  }
 private:
  float* data_ = nullptr;
  int64_t capacity_ = 0;
};

// The workspace of the calling thread; `slot` picks one of a few independent buffers.
inline float* thread_workspace(int slot, int64_t n) {
  thread_local Workspace ws[4];
  return ws[slot].get(n);
}

}  // namespace fastconv
