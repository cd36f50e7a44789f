// The per-row arithmetic of cuda/adaptive_softmax.cu (cluster of an id, the
// head target of a row, a log-probability from a row's log-sum-exp), written
// once as __host__ __device__ functions like row_math.cuh, so that
// tests/cpp/test_adaptive_softmax.cpp compiles them with g++ and checks them
// against the CPU backend's adaptive_partition and log_softmax_rows.
#pragma once

#include <cstdint>

#include "core/backend/adaptive_softmax.h"
#include "tile_math.cuh"

namespace fwp {
namespace adaptive {

// The cluster k with bounds[k] <= id < bounds[k + 1]; -1 for a negative id
// (padding); `clusters` (no cluster) for an id >= vocab (a caller bug).
FWP_HD inline int32_t cluster_of(int32_t id, const AdaptiveBounds& b) {
  if (id < 0) return -1;
  if (id >= b.bounds[b.clusters]) return static_cast<int32_t>(b.clusters);
  int32_t k = 0;
  while (id >= b.bounds[k + 1]) ++k;
  return k;
}

// The head's target: the id in the shortlist, head_cols - k for tail cluster k
// (the authors' column -k), -1 for padding, head_cols (out of range: the
// cross-entropy writes NaN) for an id past the vocabulary.
FWP_HD inline int32_t head_target(int32_t id, int32_t cluster, int64_t clusters, int64_t head_cols) {
  if (cluster < 0) return -1;
  if (cluster >= clusters) return static_cast<int32_t>(head_cols);
  if (cluster == 0) return id;
  return static_cast<int32_t>(head_cols - cluster);
}

// log p = base + logit - lse (base: the head's log-probability of the cluster, or 0).
FWP_HD inline float log_prob(float logit, float lse, float base) { return base + (logit - lse); }

}  // namespace adaptive
}  // namespace fwp
