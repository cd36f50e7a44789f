// AdaptiveSoftmax: the projected adaptive log-softmax of the fast-weight
// authors' toolkit (IDSIA/lmtool-fwp src/utils/proj_adaptive_softmax.py, from
// Transformer-XL), with its loss. Clusters as in AdaptiveInput (cutoffs c_1 <
// ... < c_K-1, div_val). The head scores the shortlist [0, c_1) plus one logit
// per tail cluster; a word w in tail cluster k has
//   log p(w) = log softmax(head)[head_cols - k] + log softmax(tail_k)[w - lo_k]
// (the authors read the cluster logit at column -k, so cluster 1 is the head's
// LAST column and cluster_weight's last row). Rows only pay for the tail
// cluster of their own target (they are gathered per cluster, as the authors
// do), so a large vocabulary with cutoffs costs far less than a full softmax.
//
// Parameters (the authors' names under <name>, in their declaration order):
//  - with tail clusters: "<name>.cluster_weight" [clusters - 1, d_model] and
//    "<name>.cluster_bias" [clusters - 1];
//  - div_val == 1: "<name>.out_layers.0.weight" [vocab, d_model] and
//    ".out_layers.0.bias" [vocab], sliced per cluster, no projection (the
//    authors project only when d_embed != d_proj; here d_embed = d_model);
//  - div_val > 1: per cluster k "<name>.out_layers.<k>.weight" [size_k, d_k],
//    ".out_layers.<k>.bias" [size_k], then per cluster "<name>.out_projs.<k>"
//    [d_model, d_k] (hidden @ proj gives the cluster's d_k features).
// Tying (the authors' tie_weight / tie_projs): with `tie`, the out_layers
// weights are NOT declared: the AdaptiveInput's tables are used (the gradients
// of both uses add into the same parameter); the biases stay the softmax's
// own. With tie_projections (div_val > 1 only: with div_val == 1 there is no
// projection), the TAIL clusters' projections are the AdaptiveInput's and
// out_projs.0 stays own: the authors' WikiText-103 setting tie_projs = [False]
// + [True] * len(cutoffs) (train.py). Cutoffs empty: a plain softmax, i.e.
// Linear(d_model -> vocab, bias) + CrossEntropyLoss (with div_val > 1, as the
// authors, a [d_model, d_model] projection first).
// Where this differs from the authors' code, and why: the per-row losses stay
// in row order (their keep_order=True; their default returns them grouped by
// cluster, which only a sum can use); a negative target is ignored (loss 0,
// no gradient) instead of being an index error, the library's padding
// convention; d_embed is d_model (their default; no separate width).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/buffer.h"
#include "core/id_buffer.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "nn/adaptive_input.h"
#include "nn/parameter.h"

namespace fwp {

template <typename T>
class AdaptiveSoftmax {
 public:
  // Declares the parameters above. Throws Error(FWP_ERR_INVALID_ARGUMENT) for
  // a bad configuration (AdaptiveLayout::make), when `tie` has another
  // configuration, or for tie_projections without `tie`. `tie` must declare
  // into the same list and outlive this module.
  AdaptiveSoftmax(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend, std::string name, int64_t vocab,
                  int64_t d_model, std::vector<int64_t> cutoffs, int64_t div_val, const AdaptiveInput<T>* tie,
                  bool tie_projections);

  // The parameters the constructor would declare (tied ones are not listed:
  // they belong to the AdaptiveInput), in order, allocating nothing.
  static std::vector<ModuleParameterShape> parameter_shapes(const std::string& name, int64_t vocab, int64_t d_model,
                                                            const std::vector<int64_t>& cutoffs, int64_t div_val,
                                                            bool tie_weights, bool tie_projections);

  // The authors' init of its OWN parameters (tied ones are the input's to
  // initialise), each drawn row-major in declaration order: cluster_weight and
  // the output weights ~ N(0, std^2), biases 0, projections ~ N(0, proj_std^2).
  void init_normal(ParameterList<T>& params, Rng& rng, double std, double proj_std = kAdaptiveProjInitStd) const;

  // hidden: [N, d_model]; targets: [N] in [-1, vocab), -1 (any negative) =
  // ignored (loss 0). Returns the SUM of the per-row NLLs (host double); keeps
  // them in row_losses() and what backward needs (hidden is copied).
  double forward(const ParameterList<T>& params, ConstView<T> hidden, IdView targets);

  // dhidden [N, d_model] = scale * d(sum of losses)/d hidden (overwritten);
  // parameter gradients are added. Needs the last forward.
  void backward(ParameterList<T>& params, T scale, TensorView<T> dhidden);

  // Full log-probabilities out [N, vocab] (for generation and sampling). Uses
  // its own scratch: the state of the last forward is kept.
  void log_probs(const ParameterList<T>& params, ConstView<T> hidden, TensorView<T> out) const;

  // Per-row losses of the last forward, [N] on the backend.
  const Buffer<T>& row_losses() const { return row_loss_; }

  const std::string& name() const { return name_; }
  const AdaptiveLayout& layout() const { return layout_; }
  int64_t head_cols() const { return layout_.size(0) + layout_.clusters() - 1; }

 private:
  struct Cluster {
    int64_t weight = -1, weight_row = 0;  // parameter index, first row of this cluster in it
    int64_t bias = -1, bias_row = 0;
    int64_t proj = -1;                    // [d_model, d_k], -1 without
  };
  // Per-forward state of one tail cluster.
  struct TailState {
    int64_t count = 0, offset = 0;
    Buffer<T> hidden, projected, logits, loss, lse;
  };

  void check_params(const ParameterList<T>& params) const;
  const T* weight_of(const ParameterList<T>& params, int64_t k) const;
  const T* bias_of(const ParameterList<T>& params, int64_t k) const;
  // Writes logits [rows, size_k] (or with ldc, into a wider array) of
  // features x [rows, d_k] for cluster k, bias included (via a ones column,
  // so that it works on a column block).
  void cluster_logits(const ParameterList<T>& params, int64_t k, const T* x, int64_t rows, T* logits, int64_t ldc,
                      const T* ones) const;
  // Head logits [rows, head_cols] of features x [rows, d_0].
  void head_logits(const ParameterList<T>& params, const T* x, int64_t rows, T* logits, const T* ones) const;

  std::shared_ptr<Backend<T>> backend_;
  std::string name_;
  AdaptiveLayout layout_;
  int64_t cluster_weight_ = -1, cluster_bias_ = -1;
  std::vector<Cluster> clusters_;
  std::vector<int64_t> own_;  // indices of the parameters it declared (not the tied ones)

  // State of the last forward.
  int64_t saved_rows_ = -1;
  Shape saved_shape_;
  Buffer<T> hidden_, head_projected_, head_logits_, head_loss_, head_lse_, row_loss_, ones_;
  IdBuffer<T> part_rows_, part_ids_, head_targets_;
  std::vector<TailState> tails_;
};

extern template class AdaptiveSoftmax<float>;
extern template class AdaptiveSoftmax<double>;

}  // namespace fwp
