// Binary cross-entropy from logits on the CPU (numerically stable), with per-sample weights.
//
//   logits z, targets t, dlogits are (N, inner); weights w (N) or null (all 1)
//   loss    = sum over n, j of w_n (max(z, 0) - z t + log1p(e^-|z|)) / (N inner)
//   dlogits = w_n (sigmoid(z) - t) / (N inner)
//
// max(z, 0) - z t + log1p(e^-|z|) is -t log sigmoid(z) - (1 - t) log(1 - sigmoid(z)) rewritten
// so no exponential can overflow and no log sees 0: e^-|z| is at most 1. The mean is Keras's
// (each sample's mean over its inner elements, weighted, summed, divided by N) and PyTorch's
// BCEWithLogitsLoss(weight=w[:, None]) alike: both equal the formula above. Sums in float64.
#include <cmath>

#include "ops.h"

namespace fastconv {
namespace cpu {

double bce_with_logits(const float* logits, const float* targets, const float* weights,
                       float* dlogits, int64_t N, int64_t inner) {
  const double count = double(N * inner);
  const float inv_count = float(1.0 / count);
  double total = 0.0;
  for (int64_t n = 0; n < N; ++n) {
    const float w = weights ? weights[n] : 1.f;
    double row = 0.0;
    for (int64_t j = 0; j < inner; ++j) {
      const int64_t i = n * inner + j;
      const double z = logits[i], t = targets[i];
      const double e = std::exp(-std::fabs(z));
      row += (z > 0.0 ? z : 0.0) - z * t + std::log1p(e);
      const double s = z >= 0.0 ? 1.0 / (1.0 + e) : e / (1.0 + e);   // sigmoid(z)
      dlogits[i] = float(double(w) * (s - t)) * inv_count;
    }
    total += double(w) * row;
  }
  return total / count;
}

}  // namespace cpu
}  // namespace fastconv
