// Binary cross-entropy from logits and mean squared error on the GPU, each with a variant that
// adds into device float64 sums instead of copying the loss back (the trainer's no-sync step,
// as softmax_xent_sums in training.cu).
//
//   logits / y, targets, dlogits / dy are (N, inner); weights (N) per sample or null
//   bce  l = w_n (max(z, 0) - z t + log1p(e^-|z|)),  d = w_n (sigmoid(z) - t) / (N inner)
//   mse  l = (y - t)^2,                               d = 2 (y - t) / (N inner)
//   loss = sum l / (N inner)
//
// One thread per element writes d and keeps its l; each block reduces its threads' l in a
// fixed tree (float64), then either (a) writes one partial per block, summed in block order by
// a one-block kernel (deterministic, the loss copied back), or (b) adds the block's sum of
// per-sample losses (l / inner) into sums[0] with one atomicAdd per block.
#include "cuda/common.cuh"

namespace fastconv {
namespace cuda {
namespace {

constexpr int kLossThreads = 256;
constexpr int64_t kLossMaxBlocks = 1024;

__device__ double loss_block_sum(double v) {
  __shared__ double shared[kLossThreads];
  shared[threadIdx.x] = v;
  __syncthreads();
  for (int s = kLossThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) shared[threadIdx.x] += shared[threadIdx.x + s];
    __syncthreads();
  }
  return shared[0];
}

// The per-element loss and gradient of one element. kind 0 bce, 1 mse.
__device__ __forceinline__ double loss_at(int kind, const float* z, const float* t,
                                          const float* weights, float* d, int64_t i,
                                          int64_t inner, float inv_count, bool* correct) {
  const float zi = z[i], ti = t[i];
  if (kind == 1) {
    const float diff = zi - ti;
    d[i] = 2.f * diff * inv_count;
    *correct = false;
    return double(diff) * double(diff);
  }
  const float w = weights ? weights[i / inner] : 1.f;
  const float e = expf(-fabsf(zi));
  const float s = zi >= 0.f ? 1.f / (1.f + e) : e / (1.f + e);
  d[i] = w * (s - ti) * inv_count;
  *correct = (zi > 0.f) == (ti > 0.5f);
  return double(w) * (double(fmaxf(zi, 0.f)) - double(zi) * double(ti) + double(log1pf(e)));
}

// partial[block] = sum of its elements' losses (sums == null), or sums[0] += that / inner and
// sums[1] += the correct elements (bce).
__global__ void loss_kernel(int kind, const float* z, const float* t, const float* weights,
                            float* d, double* partial, double* sums, int64_t total,
                            int64_t inner, float inv_count) {
  double acc = 0.0, hits = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    bool correct;
    acc += loss_at(kind, z, t, weights, d, i, inner, inv_count, &correct);
    hits += correct ? 1.0 : 0.0;
  }
  const double block = loss_block_sum(acc);
  __syncthreads();
  const double block_hits = loss_block_sum(hits);
  if (threadIdx.x != 0) return;
  if (!sums) {
    partial[blockIdx.x] = block;
    return;
  }
  atomicAdd(&sums[0], block / double(inner));
  if (kind == 0) atomicAdd(&sums[1], block_hits);
}

__global__ void sum_partials_kernel(const double* partial, int64_t blocks, double* out) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  double s = 0.0;
  for (int64_t b = 0; b < blocks; ++b) s += partial[b];
  *out = s;
}

unsigned loss_blocks(int64_t total) {
  const int64_t b = (total + kLossThreads - 1) / kLossThreads;
  return unsigned(b < 1 ? 1 : (b > kLossMaxBlocks ? kLossMaxBlocks : b));
}

double run_loss(int kind, const float* z, const float* t, const float* weights, float* d,
                int64_t N, int64_t inner) {
  refuse_while_capturing("a loss that returns its value to the host (use the *_sums variant)");
  const int64_t total = N * inner;
  const unsigned blocks = loss_blocks(total);
  DeviceBuffer partial(sizeof(double) * (blocks + 1));
  double* p = partial.as<double>();
  loss_kernel<<<blocks, kLossThreads, 0, stream()>>>(kind, z, t, weights, d, p, nullptr, total,
                                                     inner, float(1.0 / double(total)));
  CUDA_CHECK_LAUNCH();
  sum_partials_kernel<<<1, 32, 0, stream()>>>(p, blocks, p + blocks);
  CUDA_CHECK_LAUNCH();
  double sum = 0.0;
  copy_device_to_host(&sum, p + blocks, sizeof(double));
  return sum / double(total);
}

void run_loss_sums(int kind, const float* z, const float* t, const float* weights, float* d,
                   double* sums, int64_t N, int64_t inner) {
  const int64_t total = N * inner;
  loss_kernel<<<loss_blocks(total), kLossThreads, 0, stream()>>>(
      kind, z, t, weights, d, nullptr, sums, total, inner, float(1.0 / double(total)));
  CUDA_CHECK_LAUNCH();
}

}  // namespace

double bce_with_logits(const float* logits, const float* targets, const float* weights,
                       float* dlogits, int64_t N, int64_t inner) {
  if (N * inner <= 0) return 0.0;
  return run_loss(0, logits, targets, weights, dlogits, N, inner);
}

void bce_with_logits_sums(const float* logits, const float* targets, const float* weights,
                          float* dlogits, double* sums, int64_t N, int64_t inner) {
  if (N * inner <= 0) return;
  run_loss_sums(0, logits, targets, weights, dlogits, sums, N, inner);
}

double mse(const float* y, const float* t, float* dy, int64_t N, int64_t inner) {
  if (N * inner <= 0) return 0.0;
  return run_loss(1, y, t, nullptr, dy, N, inner);
}

void mse_sums(const float* y, const float* t, float* dy, double* sums, int64_t N, int64_t inner) {
  if (N * inner <= 0) return;
  run_loss_sums(1, y, t, nullptr, dy, sums, N, inner);
}

}  // namespace cuda
}  // namespace fastconv
