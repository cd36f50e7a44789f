// Feature maps phi (rows are independent) and sum normalisation. CPU: src/ops/feature_map.cpp;
// CUDA: cuda/feature_map.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class FeatureMapOps : public virtual BackendFamily {
 public:
  // x [rows, spec.d_in] -> phi [rows, spec.d_out()].
  // favor_projection: [spec.m, spec.d_in] for FeatureMap::Favor, else nullptr.
  virtual void feature_map_forward(const FeatureMapSpec& spec, const T* favor_projection, const T* x,
                                   T* phi, int64_t rows) {
    this->unsupported("feature_map_forward");
  }

  // dx = (dphi/dx)^T dphi. Needs the forward's x and phi.
  virtual void feature_map_backward(const FeatureMapSpec& spec, const T* favor_projection, const T* x,
                                    const T* phi, const T* dphi, T* dx, int64_t rows) {
    this->unsupported("feature_map_backward");
  }

  // out[r] = phi[r] / (sum_j phi[r, j] + eps); out may alias phi.
  virtual void sum_normalize_forward(const T* phi, T* out, int64_t rows, int64_t d, T eps) {
    this->unsupported("sum_normalize_forward");
  }

  // dphi from dout; needs the un-normalised phi. dphi may alias dout.
  virtual void sum_normalize_backward(const T* phi, const T* dout, T* dphi, int64_t rows, int64_t d,
                                      T eps) {
    this->unsupported("sum_normalize_backward");
  }
};

}  // namespace fwp
