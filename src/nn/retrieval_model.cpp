#include "nn/retrieval_model.h"

#include <algorithm>
#include <cmath>
#include <sstream>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/context.h"
#include "core/error.h"
#include "nn/fast_weight_layer.h"
#include "ops/favor_projection.h"

namespace fwp {

namespace {

// Same bound as the C API's checks (2^40 elements): larger sizes are mistakes.
constexpr int64_t kMaxElements = int64_t(1) << 40;

template <typename V>
std::string got(V v) {
  std::ostringstream os;
  os << v;
  return " (got " + os.str() + ")";
}

int64_t mul(int64_t a, int64_t b, const char* what) {
  if (a < 0 || b < 0) throw Error(FWP_ERR_INVALID_ARGUMENT, std::string(what) + " is negative");
  if (a != 0 && b > kMaxElements / a) {
    throw Error(FWP_ERR_INVALID_ARGUMENT, std::string(what) + " is too large (more than 2^40 elements)");
  }
  return a * b;
}

const char* feature_map_name(const RetrievalConfig& c) {
  if (c.softmax) return "softmax";
  switch (c.feature_map) {
    case FeatureMap::Elu: return "elu";
    case FeatureMap::Favor: return "favor";
    case FeatureMap::Dpfp: return "dpfp";
  }
  return "unknown";
}

// int32 ids on a backend, reallocated only when the count changes.
template <typename T>
class IdBuffer {
 public:
  IdBuffer() = default;
  IdBuffer(const IdBuffer&) = delete;
  IdBuffer& operator=(const IdBuffer&) = delete;
  ~IdBuffer() { release(); }

  void upload(const std::shared_ptr<Backend<T>>& backend, const int32_t* host, int64_t n) {
    if (backend != backend_ || n != size_) {
      release();
      backend_ = backend;
      data_ = backend_->allocate_int(n);
      size_ = n;
    }
    if (n > 0) backend_->upload_int(data_, host, n);
  }
  const int32_t* data() const { return data_; }

 private:
  void release() noexcept {
    if (data_ && backend_) backend_->deallocate_int(data_);
    data_ = nullptr;
    size_ = 0;
  }
  std::shared_ptr<Backend<T>> backend_;
  int32_t* data_ = nullptr;
  int64_t size_ = 0;
};

}  // namespace

// ---- config -----------------------------------------------------------------------------

int64_t RetrievalConfig::embedding_dim() const {
  // Python's int(2 * S * 1.1): the integer product, then a double multiply, truncated.
  return static_cast<int64_t>(static_cast<double>(2 * num_keys) * 1.1);
}

FeatureMapSpec RetrievalConfig::feature_spec() const {
  FeatureMapSpec spec;
  spec.kind = feature_map;
  spec.d_in = d_head;
  spec.nu = dpfp_nu;
  spec.m = feature_map == FeatureMap::Favor ? favor_features : 0;
  return spec;
}

int64_t RetrievalConfig::d_dot() const { return softmax ? 0 : feature_spec().d_out(); }

void RetrievalConfig::validate(const std::string& prefix) const {
  require(setting == 1 || setting == 2, FWP_ERR_INVALID_ARGUMENT, prefix + "setting must be 1 or 2" + got(setting));
  require(num_keys >= 2 && num_keys <= kMaxRetrievalKeys, FWP_ERR_INVALID_ARGUMENT,
          prefix + "num_keys must be in [2, " + std::to_string(kMaxRetrievalKeys) + "]" + got(num_keys));
  require(d_head >= 1 && d_head <= kMaxFeatureDim, FWP_ERR_INVALID_ARGUMENT,
          prefix + "d_head must be in [1, " + std::to_string(kMaxFeatureDim) + "]" + got(d_head));
  // The same rules as the layer.
  validate_attention_options(prefix, softmax, update_rule, sum_normalize, attn_normalize, norm_eps, feature_map,
                             d_head, dpfp_nu, favor_features);
}

nlohmann::json RetrievalConfig::to_json() const {
  nlohmann::json j;
  j["kind"] = "retrieval";
  j["setting"] = setting;
  j["num_keys"] = num_keys;
  j["d_head"] = d_head;
  j["feature_map"] = feature_map_name(*this);
  j["dpfp_nu"] = dpfp_nu;
  j["favor_features"] = favor_features;
  j["favor_redraw"] = favor_redraw;
  j["update_rule"] = update_rule == UpdateRule::Delta ? "delta" : "sum";
  j["sum_normalize"] = sum_normalize;
  j["attn_normalize"] = attn_normalize;
  j["norm_eps"] = norm_eps;
  return j;
}

RetrievalConfig RetrievalConfig::from_json(const nlohmann::json& j) {
  auto fail = [](const std::string& what) { throw Error(FWP_ERR_FORMAT, "retrieval model config: " + what); };
  if (!j.is_object()) fail("not a JSON object");
  auto member = [&](const char* name) -> const nlohmann::json& {
    const auto it = j.find(name);
    if (it == j.end()) fail(std::string("member '") + name + "' is missing");
    return *it;
  };
  auto integer = [&](const char* name) -> int64_t {
    const auto& v = member(name);
    if (!v.is_number_integer()) fail(std::string("member '") + name + "' must be an integer");
    return v.get<int64_t>();
  };
  auto boolean = [&](const char* name) -> bool {
    const auto& v = member(name);
    if (!v.is_boolean()) fail(std::string("member '") + name + "' must be true or false");
    return v.get<bool>();
  };
  auto text = [&](const char* name) -> std::string {
    const auto& v = member(name);
    if (!v.is_string()) fail(std::string("member '") + name + "' must be a string");
    return v.get<std::string>();
  };

  if (text("kind") != "retrieval") fail("kind must be \"retrieval\"");
  RetrievalConfig c;
  const int64_t setting = integer("setting");
  if (setting != 1 && setting != 2) fail("setting must be 1 or 2");
  c.setting = static_cast<int32_t>(setting);
  c.num_keys = integer("num_keys");
  c.d_head = integer("d_head");
  const std::string fm = text("feature_map");
  if (fm == "elu") {
    c.feature_map = FeatureMap::Elu;
  } else if (fm == "favor") {
    c.feature_map = FeatureMap::Favor;
  } else if (fm == "dpfp") {
    c.feature_map = FeatureMap::Dpfp;
  } else if (fm == "softmax") {
    c.softmax = true;
  } else {
    fail("unknown feature_map '" + fm + "'");
  }
  c.dpfp_nu = integer("dpfp_nu");
  c.favor_features = integer("favor_features");
  c.favor_redraw = boolean("favor_redraw");
  const std::string rule = text("update_rule");
  if (rule == "delta") {
    c.update_rule = UpdateRule::Delta;
  } else if (rule == "sum") {
    c.update_rule = UpdateRule::Sum;
  } else {
    fail("unknown update_rule '" + rule + "'");
  }
  c.sum_normalize = boolean("sum_normalize");
  c.attn_normalize = boolean("attn_normalize");
  const auto& eps = member("norm_eps");
  if (!eps.is_number()) fail("member 'norm_eps' must be a number");
  c.norm_eps = eps.get<double>();
  try {
    c.validate();
  } catch (const Error& e) {
    fail(e.what());
  }
  return c;
}

// ---- network ------------------------------------------------------------------------------

// Activations of the last forward (device buffers) and the backward's scratch.
// Rows of [B*L, ...] arrays are pair i of sequence b at b * L + i; rows of
// [B*Q, ...] arrays are query j of sequence b at b * Q + j.
template <typename T>
struct RetrievalNetwork<T>::Workspace {
  int64_t batch = 0, seq_len = 0, queries = 0;
  int64_t valid_queries = 0;
  IdBuffer<T> keys, values, queries_ids, targets;  // targets: -1 for padding
  Buffer<T> e_k;           // [B*L, E]: e(key)
  Buffer<T> x_kv;          // [B*L, S+E]: [onehot(value) ; e(key)]
  Buffer<T> k_lin;         // [B*L, d_head]
  Buffer<T> beta_lin;      // [B*L]: W_b x + b_b
  Buffer<T> beta;          // [B*L]: sigmoid(beta_lin)
  Buffer<T> e_q;           // [B*Q, E]
  Buffer<T> q_lin;         // [B*Q, d_head]
  Buffer<T> phi_k_raw, phi_k;  // [B*L, d_dot]; phi_k is sum-normalised (or a copy of the raw one)
  Buffer<T> phi_q_raw, phi_q;  // [B*Q, d_dot]
  Buffer<T> v_onehot;      // [B*L, S]
  Buffer<T> u;             // [B*L, S]
  Buffer<T> state;         // [B, S, d_dot]
  Buffer<T> z;             // [B, d_dot] (attention normalisation)
  Buffer<T> y;             // [B*Q, S]
  Buffer<T> denom;         // [B*Q]
  Buffer<T> lse;           // [B*Q] (softmax)
  Buffer<T> loss_rows;     // [B*Q]
  Buffer<T> favor;         // [m, d_head]: this forward's redrawn FAVOR+ projection
  const T* favor_used = nullptr;

  // backward scratch
  Buffer<T> dy, dphi_q, d_state, dz, dphi_k, dv, dbeta, dk_lin, dq_lin, dbeta_lin, de_k, de_q;
};

template <typename T>
RetrievalNetwork<T>::RetrievalNetwork(const RetrievalConfig& config, std::shared_ptr<Backend<T>> backend, Rng rng)
    : config_(config), backend_(std::move(backend)), rng_(rng) {
  config_.validate("config->");
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "RetrievalNetwork needs a backend");
  const int64_t S = config_.num_keys, E = config_.embedding_dim(), dh = config_.d_head;
  const bool delta = !config_.softmax && config_.update_rule == UpdateRule::Delta;

  // Host-side draws in parameter order. The embedding is N(0, 1) as in the
  // paper; projections use PyTorch's nn.Linear default (the authors' code),
  // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases.
  auto fill = [&](Parameter<T>& p, auto draw) {
    std::vector<T> host(static_cast<size_t>(p.numel()));
    for (T& v : host) v = static_cast<T>(draw());
    p.value.from_host(host.data(), p.numel());
  };
  auto add_linear = [&](const std::string& name, int64_t out, int64_t in, int64_t& w_index, int64_t& b_index) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in));
    auto uniform = [&] { return (2.0 * rng_.uniform() - 1.0) * bound; };
    fill(params_.add(backend_, name + ".weight", {out, in}), uniform);
    w_index = params_.size() - 1;
    fill(params_.add(backend_, name + ".bias", {out}), uniform);
    b_index = params_.size() - 1;
  };
  fill(params_.add(backend_, "key_embedding", {S, E}), [&] { return rng_.normal(); });
  emb_ = params_.size() - 1;
  add_linear("k_proj", dh, S + E, k_w_, k_b_);
  add_linear("q_proj", dh, E, q_w_, q_b_);
  if (delta) add_linear("beta_proj", 1, S + E, beta_w_, beta_b_);
  if (!config_.softmax && config_.feature_map == FeatureMap::Favor) {
    const int64_t m = config_.favor_features;
    Parameter<T>& proj = params_.add(backend_, "favor.projection", {m, dh}, /*trainable=*/false);
    std::vector<T> host(static_cast<size_t>(m * dh));
    draw_favor_projection<T>(rng_, m, dh, host.data());
    proj.value.from_host(host.data(), m * dh);
    favor_ = params_.size() - 1;
  }
  ws_ = std::make_unique<Workspace>();
}

template <typename T>
RetrievalNetwork<T>::~RetrievalNetwork() = default;

template <typename T>
void RetrievalNetwork<T>::validate_batch(const RetrievalBatch& b) const {
  const int64_t S = config_.num_keys;
  if (b.batch_size < 1) {
    throw Error(FWP_ERR_INVALID_ARGUMENT, "batch->batch_size must be >= 1" + got(b.batch_size));
  }
  if (b.seq_len != config_.seq_len()) {
    throw Error(FWP_ERR_SHAPE_MISMATCH, "batch->seq_len must be L = " + std::to_string(config_.seq_len()) +
                                            " for setting " + std::to_string(config_.setting) + " with S = " +
                                            std::to_string(S) + got(b.seq_len));
  }
  if (b.num_queries < 1) {
    throw Error(FWP_ERR_INVALID_ARGUMENT, "batch->num_queries must be >= 1" + got(b.num_queries));
  }
  const int64_t pairs = mul(b.batch_size, b.seq_len, "batch->batch_size * batch->seq_len");
  mul(pairs, S + config_.embedding_dim(), "batch->batch_size * batch->seq_len * (S + E)");
  mul(pairs, std::max<int64_t>(S, config_.d_dot()), "batch->batch_size * batch->seq_len * max(S, d_dot)");
  const int64_t rows = mul(b.batch_size, b.num_queries, "batch->batch_size * batch->num_queries");
  mul(rows, std::max<int64_t>(S, config_.embedding_dim()), "batch->batch_size * batch->num_queries * E");
  if (config_.softmax) mul(rows, b.seq_len, "batch->batch_size * batch->num_queries * batch->seq_len");

  require(b.keys != nullptr, FWP_ERR_NULL_POINTER, "batch->keys must not be NULL");
  require(b.values != nullptr, FWP_ERR_NULL_POINTER, "batch->values must not be NULL");
  require(b.queries != nullptr, FWP_ERR_NULL_POINTER, "batch->queries must not be NULL");
  require(b.targets != nullptr, FWP_ERR_NULL_POINTER, "batch->targets must not be NULL");

  // Messages are built only on failure: this loop runs over every id of every batch.
  auto bad_id = [&](const char* field, int64_t row, int64_t col, int32_t id, bool padding_allowed) {
    return Error(FWP_ERR_INVALID_ARGUMENT, std::string("batch->") + field + "[" + std::to_string(row) + "][" +
                                               std::to_string(col) + "] must be " +
                                               (padding_allowed ? "-1 (padding) or " : "") + "in [0, " +
                                               std::to_string(S) + ")" + got(id));
  };
  for (int64_t r = 0; r < b.batch_size; ++r) {
    for (int64_t i = 0; i < b.seq_len; ++i) {
      const int32_t key = b.keys[r * b.seq_len + i], value = b.values[r * b.seq_len + i];
      if (key < 0 || key >= S) throw bad_id("keys", r, i, key, false);
      if (value < 0 || value >= S) throw bad_id("values", r, i, value, false);
    }
  }
  int64_t valid = 0;
  for (int64_t r = 0; r < b.batch_size; ++r) {
    for (int64_t j = 0; j < b.num_queries; ++j) {
      const int32_t query = b.queries[r * b.num_queries + j];
      if (query == -1) continue;
      if (query < 0 || query >= S) throw bad_id("queries", r, j, query, true);
      const int32_t target = b.targets[r * b.num_queries + j];
      if (target < 0 || target >= S) throw bad_id("targets", r, j, target, false);
      ++valid;
    }
  }
  require(valid > 0, FWP_ERR_INVALID_ARGUMENT,
          "batch->queries are all -1 (padding): the loss needs at least one query");
}

template <typename T>
double RetrievalNetwork<T>::forward(const RetrievalBatch& batch, T* outputs) {
  validate_batch(batch);
  has_forward_ = false;
  Workspace& ws = *ws_;
  Backend<T>& be = *backend_;
  const auto& bp = backend_;
  const int64_t S = config_.num_keys, E = config_.embedding_dim(), dh = config_.d_head, dd = config_.d_dot();
  const int64_t B = batch.batch_size, L = batch.seq_len, Q = batch.num_queries;
  const int64_t BL = B * L, BQ = B * Q, W = S + E;
  const bool delta = !config_.softmax && config_.update_rule == UpdateRule::Delta;

  // Ids: padding queries read a zero embedding row and carry target -1.
  std::vector<int32_t> targets(static_cast<size_t>(BQ));
  int64_t valid = 0;
  for (int64_t r = 0; r < BQ; ++r) {
    const bool pad = batch.queries[r] < 0;
    targets[static_cast<size_t>(r)] = pad ? -1 : batch.targets[r];
    valid += pad ? 0 : 1;
  }
  ws.keys.upload(bp, batch.keys, BL);
  ws.values.upload(bp, batch.values, BL);
  ws.queries_ids.upload(bp, batch.queries, BQ);
  ws.targets.upload(bp, targets.data(), BQ);
  ws.batch = B;
  ws.seq_len = L;
  ws.queries = Q;
  ws.valid_queries = valid;

  const Parameter<T>& emb = params_[emb_];
  const Parameter<T>& k_w = params_[k_w_];
  const Parameter<T>& q_w = params_[q_w_];

  // Keys: x = [onehot(v) ; e(key)], k = W_k x + b_k.
  ws.e_k.resize(bp, BL * E);
  be.embedding_gather(emb.value.data(), ws.keys.data(), ws.e_k.data(), BL, E);
  ws.x_kv.resize(bp, BL * W);
  be.onehot_concat(ws.values.data(), ws.e_k.data(), ws.x_kv.data(), BL, S, E);
  ws.k_lin.resize(bp, BL * dh);
  be.gemm(false, true, BL, dh, W, T(1), ws.x_kv.data(), W, k_w.value.data(), W, T(0), ws.k_lin.data(), dh);
  be.add_bias(ws.k_lin.data(), params_[k_b_].value.data(), BL, dh);

  // Queries: q = W_q e(query) + b_q.
  ws.e_q.resize(bp, BQ * E);
  be.embedding_gather(emb.value.data(), ws.queries_ids.data(), ws.e_q.data(), BQ, E);
  ws.q_lin.resize(bp, BQ * dh);
  be.gemm(false, true, BQ, dh, E, T(1), ws.e_q.data(), E, q_w.value.data(), E, T(0), ws.q_lin.data(), dh);
  be.add_bias(ws.q_lin.data(), params_[q_b_].value.data(), BQ, dh);

  // The stored values: one-hot rows.
  ws.v_onehot.resize(bp, BL * S);
  be.onehot_concat(ws.values.data(), nullptr, ws.v_onehot.data(), BL, S, 0);

  ws.y.resize(bp, BQ * S);
  if (config_.softmax) {
    ws.lse.resize(bp, BQ);
    const T scale = T(1) / std::sqrt(static_cast<T>(dh));
    be.cross_attention_forward(B, Q, L, dh, S, ws.q_lin.data(), ws.k_lin.data(), ws.v_onehot.data(), scale,
                               ws.y.data(), ws.lse.data());
  } else {
    if (delta) {
      ws.beta_lin.resize(bp, BL);
      ws.beta.resize(bp, BL);
      be.gemm(false, true, BL, 1, W, T(1), ws.x_kv.data(), W, params_[beta_w_].value.data(), W, T(0),
              ws.beta_lin.data(), 1);
      be.add_bias(ws.beta_lin.data(), params_[beta_b_].value.data(), BL, 1);
      be.sigmoid_forward(ws.beta_lin.data(), ws.beta.data(), BL);
    }
    // FAVOR+ draws fresh features for each training forward unless told not to.
    ws.favor_used = nullptr;
    if (favor_ >= 0) {
      if (!training_ || !config_.favor_redraw) {
        ws.favor_used = params_[favor_].value.data();
      } else {
        const int64_t m = config_.favor_features;
        std::vector<T> host(static_cast<size_t>(m * dh));
        draw_favor_projection<T>(rng_, m, dh, host.data());
        ws.favor.resize(bp, m * dh);
        ws.favor.from_host(host.data(), m * dh);
        ws.favor_used = ws.favor.data();
      }
    }
    const FeatureMapSpec spec = config_.feature_spec();
    const T eps = static_cast<T>(config_.norm_eps);
    ws.phi_k_raw.resize(bp, BL * dd);
    ws.phi_k.resize(bp, BL * dd);
    ws.phi_q_raw.resize(bp, BQ * dd);
    ws.phi_q.resize(bp, BQ * dd);
    be.feature_map_forward(spec, ws.favor_used, ws.k_lin.data(), ws.phi_k_raw.data(), BL);
    be.feature_map_forward(spec, ws.favor_used, ws.q_lin.data(), ws.phi_q_raw.data(), BQ);
    if (config_.sum_normalize) {
      be.sum_normalize_forward(ws.phi_k_raw.data(), ws.phi_k.data(), BL, dd, eps);
      be.sum_normalize_forward(ws.phi_q_raw.data(), ws.phi_q.data(), BQ, dd, eps);
    } else {
      be.copy(ws.phi_k.data(), ws.phi_k_raw.data(), BL * dd);
      be.copy(ws.phi_q.data(), ws.phi_q_raw.data(), BQ * dd);
    }

    // Write all L pairs into the memory, then read every query from the final state.
    const FastWeightShape write{B, L, dd, S};
    ws.u.resize(bp, BL * S);
    ws.state.resize(bp, B * S * dd);
    be.fast_weight_forward(delta ? UpdateRule::Delta : UpdateRule::Sum, Algorithm::Auto, 0, write, nullptr,
                           ws.phi_k.data(), ws.v_onehot.data(), delta ? ws.beta.data() : nullptr, nullptr,
                           nullptr, ws.u.data(), ws.state.data());
    if (config_.attn_normalize) {
      ws.z.resize(bp, B * dd);
      ws.denom.resize(bp, BQ);
      be.step_sum(ws.phi_k.data(), ws.z.data(), B, L, dd);
    }
    const FastWeightShape read{B, Q, dd, S};
    be.fast_weight_readout_forward(read, ws.state.data(), config_.attn_normalize ? ws.z.data() : nullptr,
                                   ws.phi_q.data(), eps, ws.y.data(),
                                   config_.attn_normalize ? ws.denom.data() : nullptr);
  }

  ws.loss_rows.resize(bp, BQ);
  be.onehot_mse_forward(ws.y.data(), ws.targets.data(), ws.loss_rows.data(), BQ, S);
  const std::vector<T> rows = ws.loss_rows.to_host();
  double total = 0.0;
  for (T r : rows) total += static_cast<double>(r);

  if (outputs) {
    be.download(outputs, ws.y.data(), BQ * S);
    for (int64_t r = 0; r < BQ; ++r) {
      if (batch.queries[r] < 0) std::fill(outputs + r * S, outputs + (r + 1) * S, T(0));
    }
  }
  has_forward_ = true;
  return total / static_cast<double>(valid);
}

template <typename T>
void RetrievalNetwork<T>::backward() {
  require(has_forward_, FWP_ERR_BAD_STATE, "backward needs a forward first (one backward per forward)");
  has_forward_ = false;
  Workspace& ws = *ws_;
  Backend<T>& be = *backend_;
  const auto& bp = backend_;
  const int64_t S = config_.num_keys, E = config_.embedding_dim(), dh = config_.d_head, dd = config_.d_dot();
  const int64_t B = ws.batch, L = ws.seq_len, Q = ws.queries;
  const int64_t BL = B * L, BQ = B * Q, W = S + E;
  const bool delta = !config_.softmax && config_.update_rule == UpdateRule::Delta;

  // dLoss/dy, averaged over the non-padding queries.
  ws.dy.resize(bp, BQ * S);
  be.onehot_mse_backward(ws.y.data(), ws.targets.data(), T(1) / static_cast<T>(ws.valid_queries), ws.dy.data(),
                         BQ, S);
  ws.dk_lin.resize(bp, BL * dh);
  ws.dq_lin.resize(bp, BQ * dh);

  if (config_.softmax) {
    const T scale = T(1) / std::sqrt(static_cast<T>(dh));
    be.cross_attention_backward(B, Q, L, dh, S, ws.q_lin.data(), ws.k_lin.data(), ws.v_onehot.data(), ws.y.data(),
                                ws.lse.data(), ws.dy.data(), scale, ws.dq_lin.data(), ws.dk_lin.data(), nullptr);
  } else {
    const FeatureMapSpec spec = config_.feature_spec();
    const T eps = static_cast<T>(config_.norm_eps);
    ws.dphi_q.resize(bp, BQ * dd);
    ws.d_state.resize(bp, B * S * dd);
    if (config_.attn_normalize) ws.dz.resize(bp, B * dd);
    const FastWeightShape read{B, Q, dd, S};
    be.fast_weight_readout_backward(read, ws.state.data(), config_.attn_normalize ? ws.z.data() : nullptr,
                                    ws.phi_q.data(), ws.y.data(), config_.attn_normalize ? ws.denom.data() : nullptr,
                                    ws.dy.data(), ws.dphi_q.data(), ws.d_state.data(),
                                    config_.attn_normalize ? ws.dz.data() : nullptr);

    const FastWeightShape write{B, L, dd, S};
    ws.dphi_k.resize(bp, BL * dd);
    ws.dv.resize(bp, BL * S);  // the values are fixed one-hot rows: computed, then unused
    if (delta) ws.dbeta.resize(bp, BL);
    be.fast_weight_backward(delta ? UpdateRule::Delta : UpdateRule::Sum, Algorithm::Auto, 0, write, nullptr,
                            ws.phi_k.data(), ws.v_onehot.data(), delta ? ws.beta.data() : nullptr, ws.u.data(),
                            ws.state.data(), nullptr, ws.d_state.data(), nullptr, ws.dphi_k.data(), ws.dv.data(),
                            delta ? ws.dbeta.data() : nullptr, nullptr);
    // z = sum_i phi(k_i) feeds every phi(k_i).
    if (config_.attn_normalize) be.step_broadcast_accumulate(ws.dz.data(), ws.dphi_k.data(), B, L, dd);

    if (config_.sum_normalize) {
      be.sum_normalize_backward(ws.phi_k_raw.data(), ws.dphi_k.data(), ws.dphi_k.data(), BL, dd, eps);
      be.sum_normalize_backward(ws.phi_q_raw.data(), ws.dphi_q.data(), ws.dphi_q.data(), BQ, dd, eps);
    }
    be.feature_map_backward(spec, ws.favor_used, ws.k_lin.data(), ws.phi_k_raw.data(), ws.dphi_k.data(),
                            ws.dk_lin.data(), BL);
    be.feature_map_backward(spec, ws.favor_used, ws.q_lin.data(), ws.phi_q_raw.data(), ws.dphi_q.data(),
                            ws.dq_lin.data(), BQ);
    if (delta) {
      ws.dbeta_lin.resize(bp, BL);
      be.sigmoid_backward(ws.beta.data(), ws.dbeta.data(), ws.dbeta_lin.data(), BL);
    }
  }

  Parameter<T>& emb = params_[emb_];
  Parameter<T>& k_w = params_[k_w_];
  Parameter<T>& q_w = params_[q_w_];
  // Projection gradients (accumulated: gemm with beta = 1).
  be.gemm(true, false, dh, W, BL, T(1), ws.dk_lin.data(), dh, ws.x_kv.data(), W, T(1), k_w.grad.data(), W);
  be.bias_grad_accumulate(params_[k_b_].grad.data(), ws.dk_lin.data(), BL, dh);
  be.gemm(true, false, dh, E, BQ, T(1), ws.dq_lin.data(), dh, ws.e_q.data(), E, T(1), q_w.grad.data(), E);
  be.bias_grad_accumulate(params_[q_b_].grad.data(), ws.dq_lin.data(), BQ, dh);
  if (delta) {
    Parameter<T>& b_w = params_[beta_w_];
    be.gemm(true, false, 1, W, BL, T(1), ws.dbeta_lin.data(), 1, ws.x_kv.data(), W, T(1), b_w.grad.data(), W);
    be.bias_grad_accumulate(params_[beta_b_].grad.data(), ws.dbeta_lin.data(), BL, 1);
  }

  // Embedding rows: only the e(key) columns of x (from column S on) are trainable.
  ws.de_k.resize(bp, BL * E);
  be.gemm(false, false, BL, E, dh, T(1), ws.dk_lin.data(), dh, k_w.value.data() + S, W, T(0), ws.de_k.data(), E);
  if (delta) {
    be.gemm(false, false, BL, E, 1, T(1), ws.dbeta_lin.data(), 1, params_[beta_w_].value.data() + S, W, T(1),
            ws.de_k.data(), E);
  }
  ws.de_q.resize(bp, BQ * E);
  be.gemm(false, false, BQ, E, dh, T(1), ws.dq_lin.data(), dh, q_w.value.data(), E, T(0), ws.de_q.data(), E);
  be.embedding_scatter_accumulate(emb.grad.data(), ws.keys.data(), ws.de_k.data(), BL, E);
  be.embedding_scatter_accumulate(emb.grad.data(), ws.queries_ids.data(), ws.de_q.data(), BQ, E);
}

template class RetrievalNetwork<float>;
template class RetrievalNetwork<double>;

// ---- Model adapter ------------------------------------------------------------------------

namespace {
// Checks run before the network is built, so that a rejected config does not
// advance the context's generator.
std::shared_ptr<Context> checked(std::shared_ptr<Context> context, const RetrievalConfig& config) {
  require(context != nullptr, FWP_ERR_NULL_POINTER, "ctx must not be NULL");
  config.validate("config->");
  return context;
}
}  // namespace

RetrievalModel::RetrievalModel(std::shared_ptr<Context> context, const RetrievalConfig& config)
    : context_(checked(std::move(context), config)), net_(config, context_->backend(), context_->make_rng()) {}

nlohmann::json RetrievalModel::config_json() const { return net_.config().to_json(); }

}  // namespace fwp
