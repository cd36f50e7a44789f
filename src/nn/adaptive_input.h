// AdaptiveInput: the adaptive input embedding of Baevski & Auli as the
// fast-weight authors' toolkit has it (IDSIA/lmtool-fwp, AdaptiveEmbedding in
// src/model_main.py, from Transformer-XL). The vocabulary, sorted by
// frequency, is cut into clusters [0, c1), [c1, c2), ..., [c_last, vocab);
// cluster k has a table of width d_model / div_val^k and a projection to
// d_model. The output is multiplied by emb_scale = sqrt(d_model) (the
// authors' sqrt(d_proj); here d_embed = d_proj = d_model, as their default
// d_embed = d_model).
//
// Parameters (the authors' names under <name>):
//  - div_val == 1: one table "<name>.emb_layers.0.weight" [vocab, d_model] and
//    no projection (the authors project only when d_embed != d_proj), whatever
//    the cutoffs: the input is then exactly an Embedding times the scale;
//  - div_val > 1: per cluster k "<name>.emb_layers.<k>.weight" [size_k, d_k]
//    and "<name>.emb_projs.<k>" [d_model, d_k] (PyTorch's F.linear layout:
//    out = emb @ proj^T), also when the cutoffs are empty (one cluster).
// A negative id (padding) gives a zero row and no gradient (PyTorch would
// raise an index error; this is the library's padding convention). With
// div_val > 1 the scale is applied inside the projection product rather than
// to the finished rows (the same value up to rounding). See linear.h for how
// modules hold their parameters.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "nn/parameter.h"

namespace fwp {

// The authors' projection init std (train.py --proj_init_std) next to their
// init_std 0.02 for tables and output weights.
constexpr double kAdaptiveProjInitStd = 0.01;

// A parameter that a configuration implies (name, shape), listed without
// allocating (for the model registry's ParameterShapesFn).
struct ModuleParameterShape {
  std::string name;
  std::vector<int64_t> shape;
};

// The cluster layout shared by AdaptiveInput and AdaptiveSoftmax, validated.
struct AdaptiveLayout {
  int64_t vocab = 0, d_model = 0, div_val = 1;
  std::vector<int64_t> cutoffs;
  AdaptiveBounds bounds;  // cluster k = ids [bounds[k], bounds[k + 1])

  // Throws Error(FWP_ERR_INVALID_ARGUMENT) naming `who` unless vocab is in
  // [1, 2^31 - 1], d_model >= 1, the cutoffs are strictly increasing within
  // (0, vocab), at most kMaxAdaptiveClusters - 1 of them, div_val >= 1 and
  // every cluster width d_model / div_val^k is >= 1.
  static AdaptiveLayout make(const std::string& who, int64_t vocab, int64_t d_model, std::vector<int64_t> cutoffs,
                             int64_t div_val);

  int64_t clusters() const { return bounds.clusters; }
  int64_t lo(int64_t k) const { return bounds.bounds[k]; }
  int64_t hi(int64_t k) const { return bounds.bounds[k + 1]; }
  int64_t size(int64_t k) const { return hi(k) - lo(k); }
  // Width of cluster k's table / output layer: d_model // div_val^k (all
  // d_model when div_val == 1).
  int64_t dim(int64_t k) const;
  bool same_as(const AdaptiveLayout& o) const {
    return vocab == o.vocab && d_model == o.d_model && div_val == o.div_val && cutoffs == o.cutoffs;
  }
};

template <typename T>
class AdaptiveInput {
 public:
  // Declares the parameters above. Throws Error(FWP_ERR_INVALID_ARGUMENT) for
  // a bad configuration (see AdaptiveLayout::make).
  AdaptiveInput(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend, std::string name, int64_t vocab,
                int64_t d_model, std::vector<int64_t> cutoffs, int64_t div_val);

  // The parameters the constructor would declare, in order, allocating nothing.
  static std::vector<ModuleParameterShape> parameter_shapes(const std::string& name, int64_t vocab, int64_t d_model,
                                                            const std::vector<int64_t>& cutoffs, int64_t div_val);

  // Tables ~ N(0, std^2), projections ~ N(0, proj_std^2) (the authors' init_std
  // and proj_init_std), each drawn row-major in declaration order.
  void init_normal(ParameterList<T>& params, Rng& rng, double std, double proj_std = kAdaptiveProjInitStd) const;

  // ids: [...] (rank <= 3) with values in [-1, vocab) (checked at the C
  // boundary: device data here); out: [..., d_model], overwritten.
  void forward(const ParameterList<T>& params, IdView ids, TensorView<T> out) const;

  // Adds the parameter gradients of dout (padding rows skipped).
  void backward(ParameterList<T>& params, IdView ids, ConstView<T> dout) const;

  const std::string& name() const { return name_; }
  const AdaptiveLayout& layout() const { return layout_; }
  T emb_scale() const { return emb_scale_; }
  // Index of cluster k's table in the list: with div_val == 1 the one table
  // serves every cluster (its rows [lo(k), hi(k))).
  int64_t table_index(int64_t k) const { return tables_[static_cast<size_t>(layout_.div_val == 1 ? 0 : k)]; }
  // Index of cluster k's projection [d_model, d_k], -1 without (div_val == 1).
  int64_t projection_index(int64_t k) const {
    return projs_.empty() ? -1 : projs_[static_cast<size_t>(k)];
  }

 private:
  void check_params(const ParameterList<T>& params) const;
  void check_shapes(IdView ids, const Shape& rows_shape, const char* what) const;

  std::shared_ptr<Backend<T>> backend_;
  std::string name_;
  AdaptiveLayout layout_;
  T emb_scale_ = T(1);
  std::vector<int64_t> tables_, projs_;
};

extern template class AdaptiveInput<float>;
extern template class AdaptiveInput<double>;

}  // namespace fwp
