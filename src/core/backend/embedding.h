// Embedding tables: row gather and scatter-add, and one-hot rows (an embedding
// by the identity table). Ids are int32 arrays on the backend (allocate_int /
// upload_int). CPU: src/ops/embedding.cpp; CUDA: cuda/embedding.cu.
#pragma once

#include <cstdint>

#include "core/backend/family.h"

namespace fwp {

template <typename T>
class EmbeddingOps : public virtual BackendFamily {
 public:
  // Row gather: out[r, :] = table[ids[r], :] for r < rows. A negative id (padding) gives a zero
  // row. table: [*, dim]; ids: [rows]; out: [rows, dim].
  virtual void embedding_gather(const T* table, const int32_t* ids, T* out, int64_t rows, int64_t dim) {
    this->unsupported("embedding_gather");
  }

  // Scatter-add: dtable[ids[r], :] += dout[r, :]; rows with a negative id are skipped and repeated
  // ids add up.
  virtual void embedding_scatter_accumulate(T* dtable, const int32_t* ids, const T* dout, int64_t rows,
                                            int64_t dim) {
    this->unsupported("embedding_scatter_accumulate");
  }

  // out[r, :] = [onehot(ids[r]) ; x[r, :]], rows of width num_classes + d, with 0 <= ids[r] <
  // num_classes. x is [rows, d] and may be nullptr iff d == 0 (plain one-hot rows).
  virtual void onehot_concat(const int32_t* ids, const T* x, T* out, int64_t rows, int64_t num_classes,
                             int64_t d) {
    this->unsupported("onehot_concat");
  }
};

}  // namespace fwp
