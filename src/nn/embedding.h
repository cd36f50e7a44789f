// Embedding: token ids -> rows of a table [num_embeddings, dim]. A negative id
// (padding, conventionally -1) gives a zero row and no gradient. The gradient
// of the table is a scatter-add (repeated ids add up). See linear.h for how
// modules hold their parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "nn/parameter.h"

namespace fwp {

template <typename T>
class Embedding {
 public:
  // Declares "<name>.weight" [num_embeddings, dim]. Throws
  // Error(FWP_ERR_INVALID_ARGUMENT) unless both are >= 1 and num_embeddings
  // fits int32 ids.
  Embedding(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend, std::string name, int64_t num_embeddings,
            int64_t dim);

  // Table ~ N(0, std^2), drawn row-major.
  void init_normal(ParameterList<T>& params, Rng& rng, double std) const;

  // ids: [...] (rank <= 3) with values in [-1, num_embeddings) (the caller
  // checks ids at the C boundary: they are device data here); out: [..., dim].
  void forward(const ParameterList<T>& params, IdView ids, TensorView<T> out) const;

  // Adds dout's rows into the table gradient at their ids (padding skipped).
  void backward(ParameterList<T>& params, IdView ids, ConstView<T> dout) const;

  const std::string& name() const { return name_; }
  int64_t num_embeddings() const { return num_; }
  int64_t dim() const { return dim_; }
  int64_t weight_index() const { return weight_; }

 private:
  void check_params(const ParameterList<T>& params) const;
  void check_shapes(IdView ids, const Shape& rows_shape, const char* what) const;

  std::shared_ptr<Backend<T>> backend_;
  std::string name_;
  int64_t num_ = 0, dim_ = 0;
  int64_t weight_ = -1;
};

extern template class Embedding<float>;
extern template class Embedding<double>;

}  // namespace fwp
