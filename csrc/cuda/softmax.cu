// Softmax over the last axis, and the fused softmax + cross-entropy loss, on the GPU.
//
// Shapes: x, y are (rows, cols); logits, dlogits are (N, C); labels is (N) int64.
//
// One warp per row (8 rows per 256-thread block), each lane striding over the columns:
//   1. m = max over the row             (warp shuffle reduction)
//   2. s = sum of exp(x - m)            (warp shuffle reduction)
//   3. y = exp(x - m) / s
// Subtracting the row max keeps exp() from overflowing for any finite input.
//
// Softmax along an inner axis (x viewed as (outer, len, inner), inner > 1): one thread per
// (outer, inner) column, three passes down the column; neighbouring threads read neighbouring
// addresses, so the loads coalesce.
//
// Cross-entropy fuses the same pass: loss(row) = log(s) + m - x[label],
// dlogits = (softmax - onehot(label)) / N. Per-row losses go to a workspace and one block sums
// them in a fixed order (deterministic), divides by N and writes the mean; only that float and
// an error flag are copied back to the host. A label outside [0, C) is never used as an index:
// the row records itself in the flag (atomicMin keeps the first bad row) and the host raises.
#include <climits>

#include "cuda/common.cuh"

namespace fastconv {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kRowsPerBlock = kThreads / 32;


// x (rows, cols) -> y (rows, cols)
__global__ void softmax_kernel(const float* x, float* y, int64_t rows, int64_t cols) {
  const int lane = threadIdx.x & 31;
  for (int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + (threadIdx.x >> 5); row < rows;
       row += int64_t(gridDim.x) * kRowsPerBlock) {
    const float* xr = x + row * cols;
    float* yr = y + row * cols;
    float m = -INFINITY;
    for (int64_t j = lane; j < cols; j += 32) m = fmaxf(m, xr[j]);
    m = warp_max(m);
    float s = 0.f;
    for (int64_t j = lane; j < cols; j += 32) s += expf(xr[j] - m);
    s = warp_sum(s);
    const float inv = 1.f / s;
    for (int64_t j = lane; j < cols; j += 32) yr[j] = expf(xr[j] - m) * inv;
  }
}

// x (outer, len, inner) -> y, softmax along len.
__global__ void softmax_strided_kernel(const float* x, float* y, int64_t outer, int64_t len,
                                       int64_t inner) {
  const int64_t columns = outer * inner;
  for (int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; c < columns;
       c += int64_t(gridDim.x) * blockDim.x) {
    const int64_t o = c / inner, i = c - o * inner;
    const float* xc = x + o * len * inner + i;
    float* yc = y + o * len * inner + i;
    float m = -INFINITY;
    for (int64_t j = 0; j < len; ++j) m = fmaxf(m, xc[j * inner]);
    float s = 0.f;
    for (int64_t j = 0; j < len; ++j) s += expf(xc[j * inner] - m);
    const float inv = 1.f / s;
    for (int64_t j = 0; j < len; ++j) yc[j * inner] = expf(xc[j * inner] - m) * inv;
  }
}

// logits (N, C), labels (N) -> dlogits (N, C), row_loss (N); bad_row gets the first row whose
// label is out of range (it stays INT_MAX-ish when every label is valid).
__global__ void softmax_xent_kernel(const float* logits, const int64_t* labels, float* dlogits,
                                    float* row_loss, int* bad_row, int64_t N, int64_t C) {
  const int lane = threadIdx.x & 31;
  const float inv_n = 1.f / float(N);
  for (int64_t row = blockIdx.x * int64_t(kRowsPerBlock) + (threadIdx.x >> 5); row < N;
       row += int64_t(gridDim.x) * kRowsPerBlock) {
    const float* xr = logits + row * C;
    float* dr = dlogits + row * C;
    const int64_t label = labels[row];
    const bool ok = label >= 0 && label < C;
    float m = -INFINITY;
    for (int64_t j = lane; j < C; j += 32) m = fmaxf(m, xr[j]);
    m = warp_max(m);
    float s = 0.f;
    for (int64_t j = lane; j < C; j += 32) s += expf(xr[j] - m);
    s = warp_sum(s);
    const float inv = 1.f / s;
    for (int64_t j = lane; j < C; j += 32)
      dr[j] = (expf(xr[j] - m) * inv - (j == label ? 1.f : 0.f)) * inv_n;
    if (lane == 0) {
      if (ok) {
        row_loss[row] = logf(s) + m - xr[label];
      } else {
        row_loss[row] = NAN;
        atomicMin(bad_row, int(row < INT_MAX ? row : INT_MAX - 1));
      }
    }
  }
}

// One block: result->loss = sum(row_loss) / N, summed in a fixed order.
struct LossResult {
  float loss;
  int bad_row;
};

__global__ void mean_loss_kernel(const float* row_loss, int64_t N, LossResult* result) {
  __shared__ float partial[1024];
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) s += row_loss[i];
  partial[threadIdx.x] = s;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half >>= 1) {
    if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) result->loss = partial[0] / float(N);
}

}  // namespace

void softmax_forward(const float* x, float* y, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  softmax_kernel<<<grid_for(rows, kRowsPerBlock), kThreads, 0, stream()>>>(x, y, rows, cols);
  CUDA_CHECK_LAUNCH();
}

void softmax_strided_forward(const float* x, float* y, int64_t outer, int64_t len,
                             int64_t inner) {
  if (outer <= 0 || len <= 0 || inner <= 0) return;
  softmax_strided_kernel<<<grid_for(outer * inner, kThreads), kThreads, 0, stream()>>>(
      x, y, outer, len, inner);
  CUDA_CHECK_LAUNCH();
}

float softmax_cross_entropy(const float* logits, const int64_t* labels, float* dlogits,
                            int64_t N, int64_t C) {
  if (N <= 0) throw std::invalid_argument("softmax_cross_entropy: logits has no rows");
  if (C <= 0) throw std::invalid_argument("softmax_cross_entropy: logits has no columns");
  refuse_while_capturing("softmax_cross_entropy (it returns the loss to the host)");
  DeviceBuffer row_loss(size_t(N) * sizeof(float));
  DeviceBuffer result(sizeof(LossResult));
  LossResult* res = result.as<LossResult>();
  // 0x7f bytes: bad_row starts at 0x7f7f7f7f, above any row index a tensor can have.
  CUDA_CHECK(cudaMemsetAsync(&res->bad_row, 0x7f, sizeof(int), stream()));
  softmax_xent_kernel<<<grid_for(N, kRowsPerBlock), kThreads, 0, stream()>>>(
      logits, labels, dlogits, row_loss.as<float>(), &res->bad_row, N, C);
  CUDA_CHECK_LAUNCH();
  mean_loss_kernel<<<1, 1024, 0, stream()>>>(row_loss.as<float>(), N, res);
  CUDA_CHECK_LAUNCH();
  LossResult host{};
  CUDA_CHECK(cudaMemcpy(&host, res, sizeof(LossResult), cudaMemcpyDeviceToHost));
  if (host.bad_row != 0x7f7f7f7f)
    throw std::invalid_argument("softmax_cross_entropy: labels must lie in [0, " +
                                std::to_string(C) + "), but the label of row " +
                                std::to_string(host.bad_row) + " does not");
  return host.loss;
}

}  // namespace cuda
}  // namespace fastconv
