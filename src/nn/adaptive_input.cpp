#include "nn/adaptive_input.h"

#include <cmath>
#include <limits>
#include <utility>

#include "core/buffer.h"
#include "core/id_buffer.h"
#include "core/limits.h"
#include "nn/module_init.h"

namespace fwp {

AdaptiveLayout AdaptiveLayout::make(const std::string& who, int64_t vocab, int64_t d_model,
                                    std::vector<int64_t> cutoffs, int64_t div_val) {
  auto fail = [&](const std::string& what) { throw Error(FWP_ERR_INVALID_ARGUMENT, who + ": " + what); };
  if (vocab < 1 || vocab > std::numeric_limits<int32_t>::max())
    fail("the vocabulary size must be in [1, 2^31 - 1] (got " + std::to_string(vocab) + ")");
  if (d_model < 1) fail("d_model must be >= 1 (got " + std::to_string(d_model) + ")");
  if (div_val < 1) fail("div_val must be >= 1 (got " + std::to_string(div_val) + ")");
  if (static_cast<int64_t>(cutoffs.size()) + 1 > kMaxAdaptiveClusters)
    fail("at most " + std::to_string(kMaxAdaptiveClusters - 1) + " cutoffs are supported (got " +
         std::to_string(cutoffs.size()) + ")");
  int64_t prev = 0;
  for (size_t i = 0; i < cutoffs.size(); ++i) {
    const int64_t c = cutoffs[i];
    if (c <= prev || c >= vocab)
      fail("cutoffs must be strictly increasing and within (0, vocab = " + std::to_string(vocab) + "); cutoff " +
           std::to_string(i) + " is " + std::to_string(c) + (i > 0 ? " after " + std::to_string(prev) : ""));
    prev = c;
  }
  AdaptiveLayout l;
  l.vocab = vocab;
  l.d_model = d_model;
  l.div_val = div_val;
  l.cutoffs = std::move(cutoffs);
  l.bounds.clusters = static_cast<int64_t>(l.cutoffs.size()) + 1;
  l.bounds.bounds[0] = 0;
  for (size_t i = 0; i < l.cutoffs.size(); ++i) l.bounds.bounds[i + 1] = l.cutoffs[i];
  l.bounds.bounds[l.bounds.clusters] = vocab;
  if (div_val > 1) {
    const int64_t last = l.bounds.clusters - 1;
    if (l.dim(last) < 1)
      fail("cluster " + std::to_string(last) + " would have width d_model / div_val^" + std::to_string(last) + " = " +
           std::to_string(d_model) + " / " + std::to_string(div_val) + "^" + std::to_string(last) +
           " < 1; use fewer cutoffs or a smaller div_val");
  }
  return l;
}

int64_t AdaptiveLayout::dim(int64_t k) const {
  if (div_val == 1) return d_model;
  int64_t d = d_model;
  for (int64_t i = 0; i < k; ++i) d /= div_val;  // the authors' d_embed // (div_val ** i)
  return d;
}

template <typename T>
std::vector<ModuleParameterShape> AdaptiveInput<T>::parameter_shapes(const std::string& name, int64_t vocab,
                                                                     int64_t d_model,
                                                                     const std::vector<int64_t>& cutoffs,
                                                                     int64_t div_val) {
  const AdaptiveLayout l = AdaptiveLayout::make("AdaptiveInput '" + name + "'", vocab, d_model, cutoffs, div_val);
  std::vector<ModuleParameterShape> shapes;
  if (div_val == 1) {
    shapes.push_back({name + ".emb_layers.0.weight", {vocab, d_model}});
    return shapes;
  }
  // The authors' order: every table (ModuleList), then every projection (ParameterList).
  for (int64_t k = 0; k < l.clusters(); ++k)
    shapes.push_back({name + ".emb_layers." + std::to_string(k) + ".weight", {l.size(k), l.dim(k)}});
  for (int64_t k = 0; k < l.clusters(); ++k)
    shapes.push_back({name + ".emb_projs." + std::to_string(k), {d_model, l.dim(k)}});
  return shapes;
}

template <typename T>
AdaptiveInput<T>::AdaptiveInput(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend, std::string name,
                                int64_t vocab, int64_t d_model, std::vector<int64_t> cutoffs, int64_t div_val)
    : backend_(std::move(backend)), name_(std::move(name)) {
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "AdaptiveInput '" + name_ + "' needs a backend");
  const auto shapes = parameter_shapes(name_, vocab, d_model, cutoffs, div_val);  // validates
  layout_ = AdaptiveLayout::make("AdaptiveInput '" + name_ + "'", vocab, d_model, std::move(cutoffs), div_val);
  emb_scale_ = static_cast<T>(std::sqrt(static_cast<double>(d_model)));
  for (const auto& s : shapes) {
    int64_t n = 1;
    for (int64_t e : s.shape) n = checked_mul(n, e, "AdaptiveInput '" + name_ + "' parameter " + s.name);
    (void)n;  // only the overflow check matters here
    const int64_t index = nn_init::declare_parameter(params, backend_, s.name, s.shape);
    (s.name.find(".emb_projs.") != std::string::npos ? projs_ : tables_).push_back(index);
  }
}

template <typename T>
void AdaptiveInput<T>::check_params(const ParameterList<T>& params) const {
  bool ok = true;
  for (size_t k = 0; k < tables_.size(); ++k) {
    const int64_t rows = layout_.div_val == 1 ? layout_.vocab : layout_.size(static_cast<int64_t>(k));
    ok = ok && tables_[k] < params.size() && params[tables_[k]].numel() == rows * layout_.dim(static_cast<int64_t>(k));
  }
  for (size_t k = 0; k < projs_.size(); ++k)
    ok = ok && projs_[k] < params.size() &&
         params[projs_[k]].numel() == layout_.d_model * layout_.dim(static_cast<int64_t>(k));
  require(ok, FWP_ERR_INTERNAL, "AdaptiveInput '" + name_ + "': the parameter list does not hold its parameters");
}

template <typename T>
void AdaptiveInput<T>::check_shapes(IdView ids, const Shape& rows_shape, const char* what) const {
  require(ids.rank() < kMaxTensorRank, FWP_ERR_SHAPE_MISMATCH,
          "AdaptiveInput '" + name_ + "' ids have rank 4; at most 3 is allowed");
  check_shape(rows_shape, append_dim(ids.shape(), layout_.d_model), "AdaptiveInput '" + name_ + "' " + what);
}

template <typename T>
void AdaptiveInput<T>::init_normal(ParameterList<T>& params, Rng& rng, double std, double proj_std) const {
  check_params(params);
  // Declaration order (tables, then projections), as parameter_shapes lists them.
  for (int64_t index : tables_) nn_init::fill(*backend_, params[index], [&] { return std * rng.normal(); });
  for (int64_t index : projs_) nn_init::fill(*backend_, params[index], [&] { return proj_std * rng.normal(); });
}

namespace {

// The rows of each cluster and their ids inside it (device), with the host counts.
template <typename T>
struct ClusterRows {
  IdBuffer<T> rows, ids;
  std::vector<int64_t> counts, offsets;
};

template <typename T>
ClusterRows<T> partition_ids(const std::shared_ptr<Backend<T>>& backend, const AdaptiveLayout& layout, IdView ids) {
  ClusterRows<T> p;
  const int64_t n = ids.numel();
  p.rows = IdBuffer<T>(backend, n);
  p.ids = IdBuffer<T>(backend, n);
  p.counts.assign(static_cast<size_t>(layout.clusters()), 0);
  backend->adaptive_partition(ids.data(), n, layout.bounds, p.rows.data(), p.ids.data(), nullptr, 0,
                              p.counts.data());
  p.offsets.assign(p.counts.size(), 0);
  for (size_t k = 1; k < p.counts.size(); ++k) p.offsets[k] = p.offsets[k - 1] + p.counts[k - 1];
  return p;
}

}  // namespace

template <typename T>
void AdaptiveInput<T>::forward(const ParameterList<T>& params, IdView ids, TensorView<T> out) const {
  check_params(params);
  check_shapes(ids, out.shape(), "output");
  const int64_t n = ids.numel(), d = layout_.d_model;
  if (n == 0) return;
  if (layout_.div_val == 1) {
    backend_->embedding_gather(params[tables_[0]].value.data(), ids.data(), out.data(), n, d);
    backend_->scale(n * d, emb_scale_, out.data());
    return;
  }
  // The authors' index_copy_ of each cluster's projected rows into a zero
  // array; here a scatter-add into zeros (each row lies in one cluster at
  // most), with emb_scale folded into the projection product.
  backend_->fill(out.data(), T(0), n * d);
  const ClusterRows<T> part = partition_ids(backend_, layout_, ids);
  for (int64_t k = 0; k < layout_.clusters(); ++k) {
    const int64_t m = part.counts[static_cast<size_t>(k)], dk = layout_.dim(k);
    if (m == 0) continue;
    const int64_t at = part.offsets[static_cast<size_t>(k)];
    Buffer<T> emb(backend_, m * dk), projected(backend_, m * d);
    backend_->embedding_gather(params[tables_[static_cast<size_t>(k)]].value.data(), part.ids.data() + at,
                               emb.data(), m, dk);
    backend_->gemm(false, true, m, d, dk, emb_scale_, emb.data(), dk, params[projs_[static_cast<size_t>(k)]].value.data(),
                   dk, T(0), projected.data(), d);
    backend_->embedding_scatter_accumulate(out.data(), part.rows.data() + at, projected.data(), m, d);
  }
}

template <typename T>
void AdaptiveInput<T>::backward(ParameterList<T>& params, IdView ids, ConstView<T> dout) const {
  check_params(params);
  check_shapes(ids, dout.shape(), "output gradient");
  const int64_t n = ids.numel(), d = layout_.d_model;
  if (n == 0) return;
  if (layout_.div_val == 1) {
    Buffer<T> scaled(backend_, n * d);
    backend_->copy(scaled.data(), dout.data(), n * d);
    backend_->scale(n * d, emb_scale_, scaled.data());
    backend_->embedding_scatter_accumulate(params[tables_[0]].grad.data(), ids.data(), scaled.data(), n, d);
    return;
  }
  const ClusterRows<T> part = partition_ids(backend_, layout_, ids);
  for (int64_t k = 0; k < layout_.clusters(); ++k) {
    const int64_t m = part.counts[static_cast<size_t>(k)], dk = layout_.dim(k);
    if (m == 0) continue;
    const int64_t at = part.offsets[static_cast<size_t>(k)];
    Parameter<T>& table = params[tables_[static_cast<size_t>(k)]];
    Parameter<T>& proj = params[projs_[static_cast<size_t>(k)]];
    Buffer<T> grad_rows(backend_, m * d), emb(backend_, m * dk), demb(backend_, m * dk);
    backend_->embedding_gather(dout.data(), part.rows.data() + at, grad_rows.data(), m, d);
    backend_->embedding_gather(table.value.data(), part.ids.data() + at, emb.data(), m, dk);
    // out_rows = scale * emb proj^T: dproj += scale * grad_rows^T emb, demb = scale * grad_rows proj.
    backend_->gemm(true, false, d, dk, m, emb_scale_, grad_rows.data(), d, emb.data(), dk, T(1), proj.grad.data(), dk);
    backend_->gemm(false, false, m, dk, d, emb_scale_, grad_rows.data(), d, proj.value.data(), dk, T(0), demb.data(),
                   dk);
    backend_->embedding_scatter_accumulate(table.grad.data(), part.ids.data() + at, demb.data(), m, dk);
  }
}

template class AdaptiveInput<float>;
template class AdaptiveInput<double>;

}  // namespace fwp
