// The two ops that adaptive input and adaptive softmax need beyond gemm, row
// gather/scatter and cross-entropy: splitting rows by the vocabulary cluster
// of their id, and a row log-softmax written into a column block of a wider
// output (full log-probabilities). CPU: src/ops/adaptive_softmax.cpp; CUDA:
// cuda/adaptive_softmax.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

// Cluster k holds the ids [bounds[k], bounds[k + 1]); bounds[0] = 0 and
// bounds[clusters] = vocab. At most kMaxAdaptiveClusters clusters (the CUDA
// kernel takes the bounds by value).
constexpr int64_t kMaxAdaptiveClusters = 16;

struct AdaptiveBounds {
  int64_t clusters = 1;
  int64_t bounds[kMaxAdaptiveClusters + 1] = {};
};

template <typename T>
class AdaptiveSoftmaxOps : public virtual BackendFamily {
 public:
  // Stable partition of the rows by the cluster of ids[r]. Cluster k's rows
  // are listed in ascending order at cluster_rows[offset_k + j] (offset_k =
  // counts[0] + ... + counts[k - 1]), with the id inside the cluster,
  // ids[r] - bounds[k], at cluster_ids[offset_k + j]. Rows with a negative id
  // are in no cluster. counts[clusters] is a HOST array (the caller sizes its
  // per-cluster products from it, so the op synchronises). When head_targets
  // is not null it also writes the adaptive softmax's head target of each row:
  // the id itself in cluster 0, head_cols - k in tail cluster k (the authors'
  // cluster-logit column, counted from the end), -1 for a negative id.
  // An id >= vocab is a caller bug: the CPU throws Error(FWP_ERR_INTERNAL);
  // CUDA leaves the row in no cluster and gives it the head target head_cols
  // (out of range, so the cross-entropy writes NaN).
  // ids, head_targets: [rows]; cluster_rows, cluster_ids: [rows] (only the
  // first counts[0] + ... entries are written).
  virtual void adaptive_partition(const int32_t* ids, int64_t rows, const AdaptiveBounds& bounds,
                                  int32_t* cluster_rows, int32_t* cluster_ids, int32_t* head_targets,
                                  int64_t head_cols, int64_t* counts) {
    this->unsupported("adaptive_partition");
  }

  // Row log-softmax into a column block: for r < rows and c < write_cols,
  //   out[r * ldo + c] = (base ? base[r * base_stride] : 0) + logits[r, c] - lse_r,
  // lse_r = log sum_{c < cols} exp(logits[r, c]) (max-subtracted). logits:
  // [rows, cols] dense; write_cols <= cols; out must not overlap logits.
  virtual void log_softmax_rows(const T* logits, int64_t rows, int64_t cols, int64_t write_cols, const T* base,
                                int64_t base_stride, T* out, int64_t ldo) {
    this->unsupported("log_softmax_rows");
  }
};

}  // namespace fwp
