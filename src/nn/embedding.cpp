#include "nn/embedding.h"

#include <limits>
#include <utility>

#include "core/limits.h"
#include "nn/module_init.h"

namespace fwp {

template <typename T>
Embedding<T>::Embedding(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend, std::string name,
                        int64_t num_embeddings, int64_t dim)
    : backend_(std::move(backend)), name_(std::move(name)), num_(num_embeddings), dim_(dim) {
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "Embedding '" + name_ + "' needs a backend");
  require(num_ >= 1 && num_ <= std::numeric_limits<int32_t>::max(), FWP_ERR_INVALID_ARGUMENT,
          "Embedding '" + name_ + "': num_embeddings must be in [1, 2^31 - 1] (got " + std::to_string(num_) + ")");
  require(dim_ >= 1, FWP_ERR_INVALID_ARGUMENT,
          "Embedding '" + name_ + "': dim must be >= 1 (got " + std::to_string(dim_) + ")");
  checked_mul(num_, dim_, "Embedding '" + name_ + "' table");
  weight_ = nn_init::declare_parameter(params, backend_, name_ + ".weight", {num_, dim_});
}

template <typename T>
void Embedding<T>::check_params(const ParameterList<T>& params) const {
  require(weight_ < params.size() && params[weight_].numel() == num_ * dim_, FWP_ERR_INTERNAL,
          "Embedding '" + name_ + "': the parameter list does not hold its table");
}

template <typename T>
void Embedding<T>::check_shapes(IdView ids, const Shape& rows_shape, const char* what) const {
  require(ids.rank() < kMaxTensorRank, FWP_ERR_SHAPE_MISMATCH,
          "Embedding '" + name_ + "' ids have rank 4; at most 3 is allowed");
  check_shape(rows_shape, append_dim(ids.shape(), dim_), "Embedding '" + name_ + "' " + what);
}

template <typename T>
void Embedding<T>::init_normal(ParameterList<T>& params, Rng& rng, double std) const {
  check_params(params);
  nn_init::fill(*backend_, params[weight_], [&] { return std * rng.normal(); });
}

template <typename T>
void Embedding<T>::forward(const ParameterList<T>& params, IdView ids, TensorView<T> out) const {
  check_params(params);
  check_shapes(ids, out.shape(), "output");
  if (ids.numel() == 0) return;
  backend_->embedding_gather(params[weight_].value.data(), ids.data(), out.data(), ids.numel(), dim_);
}

template <typename T>
void Embedding<T>::backward(ParameterList<T>& params, IdView ids, ConstView<T> dout) const {
  check_params(params);
  check_shapes(ids, dout.shape(), "output gradient");
  if (ids.numel() == 0) return;
  backend_->embedding_scatter_accumulate(params[weight_].grad.data(), ids.data(), dout.data(), ids.numel(), dim_);
}

template class Embedding<float>;
template class Embedding<double>;

}  // namespace fwp
