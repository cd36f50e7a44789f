#include "nn/adaptive_softmax.h"

#include <utility>

#include "core/limits.h"
#include "nn/module_init.h"

namespace fwp {

namespace {

std::string out_weight_name(const std::string& name, int64_t k) {
  return name + ".out_layers." + std::to_string(k) + ".weight";
}
std::string out_bias_name(const std::string& name, int64_t k) {
  return name + ".out_layers." + std::to_string(k) + ".bias";
}
std::string out_proj_name(const std::string& name, int64_t k) { return name + ".out_projs." + std::to_string(k); }

// Reallocates an id buffer only when its size changes (contents then undefined).
template <typename T>
void resize_ids(IdBuffer<T>& ids, const std::shared_ptr<Backend<T>>& backend, int64_t n) {
  if (ids.size() != n || ids.data() == nullptr) ids = IdBuffer<T>(backend, n);
}

}  // namespace

template <typename T>
std::vector<ModuleParameterShape> AdaptiveSoftmax<T>::parameter_shapes(const std::string& name, int64_t vocab,
                                                                       int64_t d_model,
                                                                       const std::vector<int64_t>& cutoffs,
                                                                       int64_t div_val, bool tie_weights,
                                                                       bool tie_projections) {
  const AdaptiveLayout l = AdaptiveLayout::make("AdaptiveSoftmax '" + name + "'", vocab, d_model, cutoffs, div_val);
  // The authors tie only the tail projections, and only projections that exist.
  require(!tie_projections || (div_val > 1 && l.clusters() > 1), FWP_ERR_INVALID_ARGUMENT,
          "AdaptiveSoftmax '" + name +
              "': tie_projections ties the tail clusters' projections, which exist only with div_val > 1 and at "
              "least one cutoff (got div_val " + std::to_string(div_val) + ", " + std::to_string(cutoffs.size()) +
              " cutoffs)");
  require(!tie_projections || tie_weights, FWP_ERR_INVALID_ARGUMENT,
          "AdaptiveSoftmax '" + name + "': tie_projections needs the AdaptiveInput to tie to");
  std::vector<ModuleParameterShape> shapes;
  const int64_t tails = l.clusters() - 1;
  if (tails > 0) {
    shapes.push_back({name + ".cluster_weight", {tails, l.dim(0)}});
    shapes.push_back({name + ".cluster_bias", {tails}});
  }
  if (div_val == 1) {
    if (!tie_weights) shapes.push_back({out_weight_name(name, 0), {vocab, d_model}});
    shapes.push_back({out_bias_name(name, 0), {vocab}});
    return shapes;
  }
  for (int64_t k = 0; k < l.clusters(); ++k) {
    if (!tie_weights) shapes.push_back({out_weight_name(name, k), {l.size(k), l.dim(k)}});
    shapes.push_back({out_bias_name(name, k), {l.size(k)}});
  }
  for (int64_t k = 0; k < l.clusters(); ++k)
    if (!(tie_projections && k > 0)) shapes.push_back({out_proj_name(name, k), {d_model, l.dim(k)}});
  return shapes;
}

template <typename T>
AdaptiveSoftmax<T>::AdaptiveSoftmax(ParameterList<T>& params, std::shared_ptr<Backend<T>> backend, std::string name,
                                    int64_t vocab, int64_t d_model, std::vector<int64_t> cutoffs, int64_t div_val,
                                    const AdaptiveInput<T>* tie, bool tie_projections)
    : backend_(std::move(backend)), name_(std::move(name)) {
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "AdaptiveSoftmax '" + name_ + "' needs a backend");
  const auto shapes =
      parameter_shapes(name_, vocab, d_model, cutoffs, div_val, tie != nullptr, tie_projections);  // validates
  layout_ = AdaptiveLayout::make("AdaptiveSoftmax '" + name_ + "'", vocab, d_model, std::move(cutoffs), div_val);
  if (tie) {
    require(tie->layout().same_as(layout_), FWP_ERR_INVALID_ARGUMENT,
            "AdaptiveSoftmax '" + name_ + "': the tied AdaptiveInput '" + tie->name() +
                "' has another vocabulary size, d_model, cutoffs or div_val");
  }
  const int64_t first = params.size();
  for (const auto& s : shapes) own_.push_back(nn_init::declare_parameter(params, backend_, s.name, s.shape));
  auto index_of = [&](const std::string& n) {
    for (int64_t i = first; i < params.size(); ++i)
      if (params[i].name == n) return i;
    return int64_t(-1);
  };
  if (layout_.clusters() > 1) {
    cluster_weight_ = index_of(name_ + ".cluster_weight");
    cluster_bias_ = index_of(name_ + ".cluster_bias");
  }
  const bool shared_layer = div_val == 1;  // one out_layer sliced per cluster
  clusters_.resize(static_cast<size_t>(layout_.clusters()));
  for (int64_t k = 0; k < layout_.clusters(); ++k) {
    Cluster& c = clusters_[static_cast<size_t>(k)];
    const int64_t layer = shared_layer ? 0 : k;
    c.weight = tie ? tie->table_index(k) : index_of(out_weight_name(name_, layer));
    c.weight_row = shared_layer ? layout_.lo(k) : 0;
    c.bias = index_of(out_bias_name(name_, layer));
    c.bias_row = shared_layer ? layout_.lo(k) : 0;
    if (!shared_layer) c.proj = (tie_projections && k > 0) ? tie->projection_index(k) : index_of(out_proj_name(name_, k));
  }
}

template <typename T>
void AdaptiveSoftmax<T>::check_params(const ParameterList<T>& params) const {
  bool ok = true;
  auto holds = [&](int64_t index, int64_t numel) {
    ok = ok && index >= 0 && index < params.size() && params[index].numel() == numel;
  };
  const int64_t tails = layout_.clusters() - 1;
  if (tails > 0) {
    holds(cluster_weight_, tails * layout_.dim(0));
    holds(cluster_bias_, tails);
  }
  const bool shared_layer = layout_.div_val == 1;
  for (int64_t k = 0; k < layout_.clusters(); ++k) {
    const Cluster& c = clusters_[static_cast<size_t>(k)];
    const int64_t rows = shared_layer ? layout_.vocab : layout_.size(k);
    holds(c.weight, rows * layout_.dim(k));
    holds(c.bias, rows);
    if (c.proj >= 0) holds(c.proj, layout_.d_model * layout_.dim(k));
  }
  require(ok, FWP_ERR_INTERNAL, "AdaptiveSoftmax '" + name_ + "': the parameter list does not hold its parameters");
}

template <typename T>
void AdaptiveSoftmax<T>::init_normal(ParameterList<T>& params, Rng& rng, double std, double proj_std) const {
  check_params(params);
  // Own parameters only, in declaration order; the names say what each is.
  const std::string out_layers = name_ + ".out_layers.", out_projs = name_ + ".out_projs.";
  for (int64_t i : own_) {
    Parameter<T>& p = params[i];
    const bool is_bias = p.name == name_ + ".cluster_bias" ||
                         (p.name.compare(0, out_layers.size(), out_layers) == 0 &&
                          p.name.size() > 5 && p.name.compare(p.name.size() - 5, 5, ".bias") == 0);
    const bool is_proj = p.name.compare(0, out_projs.size(), out_projs) == 0;
    if (is_bias)
      nn_init::fill(*backend_, p, [] { return 0.0; });
    else if (is_proj)
      nn_init::fill(*backend_, p, [&] { return proj_std * rng.normal(); });
    else
      nn_init::fill(*backend_, p, [&] { return std * rng.normal(); });
  }
}

template <typename T>
const T* AdaptiveSoftmax<T>::weight_of(const ParameterList<T>& params, int64_t k) const {
  const Cluster& c = clusters_[static_cast<size_t>(k)];
  return params[c.weight].value.data() + c.weight_row * layout_.dim(k);
}

template <typename T>
const T* AdaptiveSoftmax<T>::bias_of(const ParameterList<T>& params, int64_t k) const {
  const Cluster& c = clusters_[static_cast<size_t>(k)];
  return params[c.bias].value.data() + c.bias_row;
}

template <typename T>
void AdaptiveSoftmax<T>::cluster_logits(const ParameterList<T>& params, int64_t k, const T* x, int64_t rows,
                                        T* logits, int64_t ldc, const T* ones) const {
  const int64_t dk = layout_.dim(k), size = layout_.size(k);
  backend_->gemm(false, true, rows, size, dk, T(1), x, dk, weight_of(params, k), dk, T(0), logits, ldc);
  // + ones[rows, 1] bias[1, size]: a bias add that also works on a column block.
  backend_->gemm(false, false, rows, size, 1, T(1), ones, 1, bias_of(params, k), size, T(1), logits, ldc);
}

template <typename T>
void AdaptiveSoftmax<T>::head_logits(const ParameterList<T>& params, const T* x, int64_t rows, T* logits,
                                     const T* ones) const {
  const int64_t h = head_cols(), shortlist = layout_.size(0), tails = layout_.clusters() - 1, d0 = layout_.dim(0);
  cluster_logits(params, 0, x, rows, logits, h, ones);
  if (tails == 0) return;
  backend_->gemm(false, true, rows, tails, d0, T(1), x, d0, params[cluster_weight_].value.data(), d0, T(0),
                 logits + shortlist, h);
  backend_->gemm(false, false, rows, tails, 1, T(1), ones, 1, params[cluster_bias_].value.data(), tails, T(1),
                 logits + shortlist, h);
}

template <typename T>
double AdaptiveSoftmax<T>::forward(const ParameterList<T>& params, ConstView<T> hidden, IdView targets) {
  check_params(params);
  require(targets.rank() < kMaxTensorRank, FWP_ERR_SHAPE_MISMATCH,
          "AdaptiveSoftmax '" + name_ + "' targets have rank 4; at most 3 is allowed");
  check_shape(hidden.shape(), append_dim(targets.shape(), layout_.d_model),
              "AdaptiveSoftmax '" + name_ + "' hidden");
  const int64_t n = targets.numel(), d = layout_.d_model, h = head_cols(), d0 = layout_.dim(0);
  saved_rows_ = -1;  // invalid until this forward completes
  saved_shape_ = hidden.shape();
  row_loss_.resize(backend_, n);
  tails_.resize(static_cast<size_t>(layout_.clusters()));
  if (n == 0) {
    saved_rows_ = 0;
    return 0.0;
  }
  hidden_.resize(backend_, n * d);
  backend_->copy(hidden_.data(), hidden.data(), n * d);
  ones_.resize(backend_, n);
  backend_->fill(ones_.data(), T(1), n);

  // Which rows go to which tail cluster, and the head's target of every row.
  resize_ids(part_rows_, backend_, n);
  resize_ids(part_ids_, backend_, n);
  resize_ids(head_targets_, backend_, n);
  std::vector<int64_t> counts(static_cast<size_t>(layout_.clusters()), 0);
  backend_->adaptive_partition(targets.data(), n, layout_.bounds, part_rows_.data(), part_ids_.data(),
                               head_targets_.data(), h, counts.data());

  // Head over every row.
  const T* x0 = hidden_.data();
  const Cluster& c0 = clusters_[0];
  if (c0.proj >= 0) {
    head_projected_.resize(backend_, n * d0);
    backend_->gemm(false, false, n, d0, d, T(1), hidden_.data(), d, params[c0.proj].value.data(), d0, T(0),
                   head_projected_.data(), d0);
    x0 = head_projected_.data();
  }
  head_logits_.resize(backend_, n * h);
  head_logits(params, x0, n, head_logits_.data(), ones_.data());
  head_loss_.resize(backend_, n);
  head_lse_.resize(backend_, n);
  backend_->cross_entropy_forward(head_logits_.data(), head_targets_.data(), head_loss_.data(), head_lse_.data(), n,
                                  h);
  backend_->copy(row_loss_.data(), head_loss_.data(), n);

  // Each tail cluster over the rows whose target lies in it.
  int64_t offset = counts[0];
  for (int64_t k = 1; k < layout_.clusters(); ++k) {
    TailState& t = tails_[static_cast<size_t>(k)];  // buffers kept from the last forward
    t.count = counts[static_cast<size_t>(k)];
    t.offset = offset;
    offset += t.count;
    if (t.count == 0) continue;
    const int64_t m = t.count, dk = layout_.dim(k), size = layout_.size(k);
    const int32_t* rows = part_rows_.data() + t.offset;
    t.hidden.resize(backend_, m * d);
    backend_->embedding_gather(hidden_.data(), rows, t.hidden.data(), m, d);
    const T* x = t.hidden.data();
    const Cluster& c = clusters_[static_cast<size_t>(k)];
    if (c.proj >= 0) {
      t.projected.resize(backend_, m * dk);
      backend_->gemm(false, false, m, dk, d, T(1), t.hidden.data(), d, params[c.proj].value.data(), dk, T(0),
                     t.projected.data(), dk);
      x = t.projected.data();
    }
    t.logits.resize(backend_, m * size);
    cluster_logits(params, k, x, m, t.logits.data(), size, ones_.data());
    t.loss.resize(backend_, m);
    t.lse.resize(backend_, m);
    backend_->cross_entropy_forward(t.logits.data(), part_ids_.data() + t.offset, t.loss.data(), t.lse.data(), m,
                                    size);
    // row loss += the tail's term (a scatter of width 1; each row is in one cluster).
    backend_->embedding_scatter_accumulate(row_loss_.data(), rows, t.loss.data(), m, 1);
  }
  saved_rows_ = n;
  const std::vector<T> host = row_loss_.to_host();
  double sum = 0.0;
  for (T v : host) sum += static_cast<double>(v);
  return sum;
}

template <typename T>
void AdaptiveSoftmax<T>::backward(ParameterList<T>& params, T scale, TensorView<T> dhidden) {
  require(saved_rows_ >= 0, FWP_ERR_BAD_STATE,
          "AdaptiveSoftmax '" + name_ + "': backward needs a forward first (one backward per forward)");
  check_params(params);
  check_shape(dhidden.shape(), saved_shape_, "AdaptiveSoftmax '" + name_ + "' hidden gradient");
  const int64_t n = saved_rows_, d = layout_.d_model, h = head_cols(), d0 = layout_.dim(0);
  const int64_t shortlist = layout_.size(0), tails = layout_.clusters() - 1;
  saved_rows_ = -1;  // the logits become their gradients in place below
  if (n == 0) return;

  // Head: dlogits in place of the logits.
  T* dlog = head_logits_.data();
  backend_->cross_entropy_backward(head_logits_.data(), head_targets_.data(), head_lse_.data(), scale, dlog, n, h);
  const Cluster& c0 = clusters_[0];
  const T* x0 = c0.proj >= 0 ? head_projected_.data() : hidden_.data();
  T* dw0 = params[c0.weight].grad.data() + c0.weight_row * d0;
  T* db0 = params[c0.bias].grad.data() + c0.bias_row;
  backend_->gemm(true, false, shortlist, d0, n, T(1), dlog, h, x0, d0, T(1), dw0, d0);
  backend_->gemm(true, false, 1, shortlist, n, T(1), ones_.data(), 1, dlog, h, T(1), db0, shortlist);
  if (tails > 0) {
    backend_->gemm(true, false, tails, d0, n, T(1), dlog + shortlist, h, x0, d0, T(1),
                   params[cluster_weight_].grad.data(), d0);
    backend_->gemm(true, false, 1, tails, n, T(1), ones_.data(), 1, dlog + shortlist, h, T(1),
                   params[cluster_bias_].grad.data(), tails);
  }
  // d x0 = dlog[:, :shortlist] W0 + dlog[:, shortlist:] cluster_weight.
  Buffer<T> dx0_scratch;
  T* dx0 = dhidden.data();
  if (c0.proj >= 0) {
    dx0_scratch = Buffer<T>(backend_, n * d0);
    dx0 = dx0_scratch.data();
  }
  backend_->gemm(false, false, n, d0, shortlist, T(1), dlog, h, weight_of(params, 0), d0, T(0), dx0, d0);
  if (tails > 0)
    backend_->gemm(false, false, n, d0, tails, T(1), dlog + shortlist, h, params[cluster_weight_].value.data(), d0,
                   T(1), dx0, d0);
  if (c0.proj >= 0) {
    backend_->gemm(true, false, d, d0, n, T(1), hidden_.data(), d, dx0, d0, T(1), params[c0.proj].grad.data(), d0);
    backend_->gemm(false, true, n, d, d0, T(1), dx0, d0, params[c0.proj].value.data(), d0, T(0), dhidden.data(), d);
  }

  // Tails: their rows' gradients are added into dhidden.
  for (int64_t k = 1; k < layout_.clusters(); ++k) {
    TailState& t = tails_[static_cast<size_t>(k)];
    if (t.count == 0) continue;
    const int64_t m = t.count, dk = layout_.dim(k), size = layout_.size(k);
    const Cluster& c = clusters_[static_cast<size_t>(k)];
    T* dl = t.logits.data();
    backend_->cross_entropy_backward(t.logits.data(), part_ids_.data() + t.offset, t.lse.data(), scale, dl, m, size);
    const T* x = c.proj >= 0 ? t.projected.data() : t.hidden.data();
    backend_->gemm(true, false, size, dk, m, T(1), dl, size, x, dk, T(1),
                   params[c.weight].grad.data() + c.weight_row * dk, dk);
    backend_->bias_grad_accumulate(params[c.bias].grad.data() + c.bias_row, dl, m, size);
    Buffer<T> dx(backend_, m * dk);
    backend_->gemm(false, false, m, dk, size, T(1), dl, size, weight_of(params, k), dk, T(0), dx.data(), dk);
    Buffer<T> dh;
    const T* drows = dx.data();
    if (c.proj >= 0) {
      backend_->gemm(true, false, d, dk, m, T(1), t.hidden.data(), d, dx.data(), dk, T(1),
                     params[c.proj].grad.data(), dk);
      dh = Buffer<T>(backend_, m * d);
      backend_->gemm(false, true, m, d, dk, T(1), dx.data(), dk, params[c.proj].value.data(), dk, T(0), dh.data(), d);
      drows = dh.data();
    }
    backend_->embedding_scatter_accumulate(dhidden.data(), part_rows_.data() + t.offset, drows, m, d);
  }
}

template <typename T>
void AdaptiveSoftmax<T>::log_probs(const ParameterList<T>& params, ConstView<T> hidden, TensorView<T> out) const {
  check_params(params);
  check_cols(hidden.shape(), layout_.d_model, "AdaptiveSoftmax '" + name_ + "' hidden");
  check_shape(out.shape(), with_cols(hidden.shape(), layout_.vocab), "AdaptiveSoftmax '" + name_ + "' log_probs");
  const int64_t n = hidden.rows(), d = layout_.d_model, h = head_cols(), v = layout_.vocab;
  const int64_t shortlist = layout_.size(0);
  if (n == 0) return;
  Buffer<T> ones(backend_, n);
  backend_->fill(ones.data(), T(1), n);
  // Features of cluster k for every row: hidden, or hidden @ proj_k.
  auto features = [&](int64_t k, Buffer<T>& scratch) -> const T* {
    const Cluster& c = clusters_[static_cast<size_t>(k)];
    if (c.proj < 0) return hidden.data();
    const int64_t dk = layout_.dim(k);
    scratch = Buffer<T>(backend_, n * dk);
    backend_->gemm(false, false, n, dk, d, T(1), hidden.data(), d, params[c.proj].value.data(), dk, T(0),
                   scratch.data(), dk);
    return scratch.data();
  };
  Buffer<T> scratch, head(backend_, n * h);
  head_logits(params, features(0, scratch), n, head.data(), ones.data());
  if (layout_.clusters() == 1) {
    backend_->log_softmax_rows(head.data(), n, h, h, nullptr, 0, out.data(), v);
    return;
  }
  Buffer<T> head_lp(backend_, n * h);
  backend_->log_softmax_rows(head.data(), n, h, h, nullptr, 0, head_lp.data(), h);
  backend_->log_softmax_rows(head.data(), n, h, shortlist, nullptr, 0, out.data(), v);
  for (int64_t k = 1; k < layout_.clusters(); ++k) {
    const int64_t size = layout_.size(k);
    Buffer<T> logits(backend_, n * size);
    cluster_logits(params, k, features(k, scratch), n, logits.data(), size, ones.data());
    // log p = head log-prob of the cluster (column h - k, as the authors) + the tail's log-softmax.
    backend_->log_softmax_rows(logits.data(), n, size, size, head_lp.data() + (h - k), h, out.data() + layout_.lo(k),
                               v);
  }
}

template class AdaptiveSoftmax<float>;
template class AdaptiveSoftmax<double>;

}  // namespace fwp
