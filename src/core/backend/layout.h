// Head layout permutations. CPU: src/ops/cpu_backend.cpp; CUDA: cuda/layout.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class LayoutOps : public virtual BackendFamily {
 public:
  // in [B, T, H, D] -> out [B, H, T, D]
  virtual void split_heads(const T* in, T* out, int64_t B, int64_t T_, int64_t H, int64_t D) {
    this->unsupported("split_heads");
  }

  // in [B, H, T, D] -> out [B, T, H, D]
  virtual void merge_heads(const T* in, T* out, int64_t B, int64_t T_, int64_t H, int64_t D) {
    this->unsupported("merge_heads");
  }
};

}  // namespace fwp
