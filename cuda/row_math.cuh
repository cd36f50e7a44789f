// The per-element and per-row arithmetic of the module kernels (activations,
// layer normalisation, softmax cross-entropy), written once as __host__
// __device__ functions like tile_math.cuh. cuda/activation.cu,
// cuda/layer_norm.cu and cuda/cross_entropy.cu call these;
// tests/cpp/test_cuda_row_math.cpp compiles them with g++ and drives them the
// way the kernels do (32 lanes striding over a row) against the CPU backend in
// double precision.
#pragma once

#include <cmath>
#include <cstdint>

#include "tile_math.cuh"

namespace fwp {
namespace rowmath {

FWP_HD inline float erf_f(float x) {
#if defined(__CUDA_ARCH__)
  return erff(x);
#else
  return std::erf(x);
#endif
}

// ---- activations ------------------------------------------------------------------------------

FWP_HD inline float relu(float x) { return x > 0.0f ? x : 0.0f; }
// The derivative at 0 is taken as 0 (PyTorch's choice).
FWP_HD inline float relu_grad(float x, float dy) { return x > 0.0f ? dy : 0.0f; }

// Exact GELU: x Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2.
FWP_HD inline float normal_cdf(float x) { return 0.5f * (1.0f + erf_f(x * 0.70710678118654752f)); }
FWP_HD inline float normal_pdf(float x) { return 0.39894228040143268f * tile::exp_f(-0.5f * x * x); }
FWP_HD inline float gelu(float x) { return x * normal_cdf(x); }
FWP_HD inline float gelu_grad(float x, float dy) { return dy * (normal_cdf(x) + x * normal_pdf(x)); }

// ---- layer normalisation ----------------------------------------------------------------------
// A kernel sums a row in two passes (x, then (x - mean)^2), so float keeps its
// precision when |mean| >> std; these turn the sums into the statistics.

FWP_HD inline float layer_norm_mean(float sum, int64_t d) { return sum / static_cast<float>(d); }
FWP_HD inline float layer_norm_rstd(float squared_deviation_sum, int64_t d, float eps) {
  return 1.0f / tile::sqrt_f(squared_deviation_sum / static_cast<float>(d) + eps);
}
FWP_HD inline float layer_norm_apply(float x, float mean, float rstd, float gain, float bias) {
  return (x - mean) * rstd * gain + bias;
}
// dx = rstd (g - mean(g) - xhat mean(g xhat)) with g = dy gain; the kernel
// first sums g and g xhat over the row. beta 0 overwrites (old not read), 1 accumulates.
FWP_HD inline float layer_norm_dx(float x, float dy, float gain, float mean, float rstd, float sum_g,
                                  float sum_g_xhat, int64_t d, float beta, float old) {
  const float inv_d = 1.0f / static_cast<float>(d);
  const float xhat = (x - mean) * rstd;
  const float grad = rstd * (dy * gain - sum_g * inv_d - xhat * (sum_g_xhat * inv_d));
  return beta == 0.0f ? grad : grad + beta * old;
}

// ---- softmax cross-entropy --------------------------------------------------------------------

// lse = max + log(sum of exp(l - max)).
FWP_HD inline float cross_entropy_lse(float row_max, float sum_exp) { return row_max + tile::log_f(sum_exp); }
// Loss of a row; NaN for a target past the classes (a caller bug made visible), 0 when ignored.
FWP_HD inline float cross_entropy_loss(float lse, float target_logit, int32_t target, int64_t classes) {
  if (target < 0) return 0.0f;
  if (target >= classes) return NAN;
  return lse - target_logit;
}
// dlogit = scale (softmax - onehot); 0 for an ignored row.
FWP_HD inline float cross_entropy_grad(float logit, float lse, bool is_target, bool ignored, float scale) {
  if (ignored) return 0.0f;
  const float p = tile::exp_f(logit - lse);
  return scale * (is_target ? p - 1.0f : p);
}

// Label smoothing (fairseq's): the weight e = smoothing / (classes - 1) of every non-target class.
FWP_HD inline float smoothing_other_weight(float smoothing, int64_t classes) {
  return smoothing > 0.0f ? smoothing / static_cast<float>(classes - 1) : 0.0f;
}
// Smoothed loss of a row from its nll = lse - l_t and spread = sum_c (lse - l_c); 0 when ignored.
FWP_HD inline float smoothed_cross_entropy_loss(float nll, float spread, int32_t target, float smoothing,
                                                float other) {
  if (target < 0) return 0.0f;
  return (1.0f - smoothing - other) * nll + other * spread;
}
// dlogit = scale (softmax - e - (1 - smoothing - e) [target]); 0 for an ignored row.
FWP_HD inline float smoothed_cross_entropy_grad(float logit, float lse, bool is_target, bool ignored,
                                                float smoothing, float other, float scale) {
  if (ignored) return 0.0f;
  const float p = tile::exp_f(logit - lse);
  return scale * (p - other - (is_target ? 1.0f - smoothing - other : 0.0f));
}

}  // namespace rowmath
}  // namespace fwp
