#include "models/retrieval/retrieval_model.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/context.h"
#include "core/error.h"
#include "core/id_buffer.h"
#include "core/limits.h"
#include "nn/fast_weight_layer.h"
#include "ops/favor_projection.h"

namespace fwp {

namespace {

template <typename V>
std::string got(V v) {
  std::ostringstream os;
  os << v;
  return " (got " + os.str() + ")";
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

// out[cols, rows] = in[rows, cols]^T. split_heads with B = 1, D = 1 is exactly
// this permutation ([1, rows, cols, 1] -> [1, cols, rows, 1]) on every backend.
template <typename T>
void transpose(Backend<T>& be, const T* in, T* out, int64_t rows, int64_t cols) {
  be.split_heads(in, out, 1, rows, cols, 1);
}

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
  IdBuffer<T> slots;       // [B*L]: b * S + value_i, the memory row pair i writes (sum rule)
  // Projections through the vocabulary (see "Keys" in forward()): per-id rows.
  Buffer<T> k_w_t;         // [S+E, d_head]: W_k transposed; rows [0, S) are the one-hot columns
  Buffer<T> k_by_key;      // [S, d_head]: emb W_k[:, S:]^T
  Buffer<T> beta_by_key;   // [S]: emb W_b[S:]^T
  Buffer<T> q_by_key;      // [S, d_head]: emb W_q^T
  Buffer<T> gathered;      // [B*L, d_head]: scratch for the second gather
  Buffer<T> k_lin;         // [B*L, d_head]
  Buffer<T> beta_lin;      // [B*L]: W_b x + b_b
  Buffer<T> beta;          // [B*L]: sigmoid(beta_lin)
  Buffer<T> q_lin;         // [B*Q, d_head]
  // [B*L, d_dot] / [B*Q, d_dot]: phi_k, phi_q are what the memory uses. With
  // sum normalisation they are the normalised rows and *_raw keeps phi itself;
  // without it, phi is written straight to phi_k, phi_q and *_raw stays empty.
  Buffer<T> phi_k_raw, phi_k;
  Buffer<T> phi_q_raw, phi_q;
  const T* raw_k(bool sum_normalize) const { return sum_normalize ? phi_k_raw.data() : phi_k.data(); }
  const T* raw_q(bool sum_normalize) const { return sum_normalize ? phi_q_raw.data() : phi_q.data(); }
  Buffer<T> v_onehot;      // [B*L, S] (delta rule and softmax)
  Buffer<T> u;             // [B*L, S] (delta rule)
  Buffer<T> saved;         // [B, ceil(L / interval), S, d_dot] states saved for the backward (delta rule)
  Buffer<T> state;         // [B, S, d_dot]
  Buffer<T> z;             // [B, d_dot] (attention normalisation)
  Buffer<T> y;             // [B*Q, S]
  Buffer<T> denom;         // [B*Q]
  Buffer<T> lse;           // [B*Q] (softmax)
  Buffer<T> loss_rows;     // [B*Q]
  Buffer<T> favor;         // [m, d_head]: this forward's redrawn FAVOR+ projection
  const T* favor_used = nullptr;

  // backward scratch
  Buffer<T> dy, dphi_q, d_state, dz, dphi_k, dv, dbeta, dk_lin, dq_lin, dbeta_lin;
  Buffer<T> d_k_w_t, d_k_w, d_k_by_key, d_beta_w, d_beta_by_key, d_q_by_key;
};

template <typename T>
RetrievalNetwork<T>::RetrievalNetwork(const RetrievalConfig& config, std::shared_ptr<Backend<T>> backend, Rng rng)
    : config_(config), backend_(std::move(backend)), rng_(rng) {
  config_.validate("config->");
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "RetrievalNetwork needs a backend");
  const int64_t S = config_.num_keys, E = config_.embedding_dim(), dh = config_.d_head;
  const bool delta = !config_.softmax && config_.update_rule == UpdateRule::Delta;

  // Declare every parameter, allocate the one block, then draw on the host in
  // parameter order. The embedding is N(0, 1) as in the paper; projections use
  // PyTorch's nn.Linear default (the authors' code), U(-1/sqrt(fan_in),
  // 1/sqrt(fan_in)) for weights and biases.
  auto fill = [&](int64_t index, auto draw) {
    Parameter<T>& p = params_[index];
    std::vector<T> host(static_cast<size_t>(p.numel()));
    for (T& v : host) v = static_cast<T>(draw());
    p.value.from_host(host.data(), p.numel());
  };
  auto add_linear = [&](const std::string& name, int64_t out, int64_t in, int64_t& w_index, int64_t& b_index) {
    params_.declare(name + ".weight", {out, in});
    w_index = params_.size() - 1;
    params_.declare(name + ".bias", {out});
    b_index = params_.size() - 1;
  };
  auto fill_linear = [&](int64_t w_index, int64_t b_index) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(params_[w_index].shape[1]));  // fan_in
    auto uniform = [&] { return (2.0 * rng_.uniform() - 1.0) * bound; };
    fill(w_index, uniform);
    fill(b_index, uniform);
  };
  params_.declare("key_embedding", {S, E});
  emb_ = params_.size() - 1;
  add_linear("k_proj", dh, S + E, k_w_, k_b_);
  add_linear("q_proj", dh, E, q_w_, q_b_);
  if (delta) add_linear("beta_proj", 1, S + E, beta_w_, beta_b_);
  const int64_t m = config_.favor_features;
  if (!config_.softmax && config_.feature_map == FeatureMap::Favor) {
    params_.declare("favor.projection", {m, dh}, /*trainable=*/false);
    favor_ = params_.size() - 1;
  }
  params_.allocate(backend_);
  fill(emb_, [&] { return rng_.normal(); });
  fill_linear(k_w_, k_b_);
  fill_linear(q_w_, q_b_);
  if (delta) fill_linear(beta_w_, beta_b_);
  if (favor_ >= 0) {
    std::vector<T> host(static_cast<size_t>(m * dh));
    draw_favor_projection<T>(rng_, m, dh, host.data());
    params_[favor_].value.from_host(host.data(), m * dh);
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
  // Setting 1 writes every key once (L = S). The model has no positions, so
  // setting 2 takes any length: the paper trains on 2 S pairs, evaluates on S.
  if (config_.setting == 1 && b.seq_len != S) {
    throw Error(FWP_ERR_SHAPE_MISMATCH, "batch->seq_len must be L = S = " + std::to_string(S) +
                                            " for setting 1" + got(b.seq_len));
  }
  if (config_.setting == 2 && (b.seq_len < 1 || b.seq_len > kMaxRetrievalPairs)) {
    throw Error(FWP_ERR_SHAPE_MISMATCH, "batch->seq_len must be in [1, " + std::to_string(kMaxRetrievalPairs) +
                                            "] for setting 2" + got(b.seq_len));
  }
  if (b.num_queries < 1) {
    throw Error(FWP_ERR_INVALID_ARGUMENT, "batch->num_queries must be >= 1" + got(b.num_queries));
  }
  const int64_t pairs = checked_mul(b.batch_size, b.seq_len, "batch->batch_size * batch->seq_len");
  checked_mul(pairs, std::max<int64_t>(S, config_.d_dot()), "batch->batch_size * batch->seq_len * max(S, d_dot)");
  const int64_t rows = checked_mul(b.batch_size, b.num_queries, "batch->batch_size * batch->num_queries");
  checked_mul(rows, std::max<int64_t>(S, config_.embedding_dim()), "batch->batch_size * batch->num_queries * E");
  if (config_.softmax) checked_mul(rows, b.seq_len, "batch->batch_size * batch->num_queries * batch->seq_len");
  // The sum rule addresses the rows of all B memories with one int32 index.
  require(b.batch_size <= std::numeric_limits<int32_t>::max() / S, FWP_ERR_INVALID_ARGUMENT,
          "batch->batch_size * S must be < 2^31" + got(b.batch_size * S));

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

  // Keys: k_i = W_k [onehot(v_i) ; e(key_i)] + b_k = W_k[:, v_i] + (W_k[:, S:] e(key_i)) + b_k.
  // Both terms depend on one id only, so they are computed once per id
  // (O(S E d_head)) and gathered per pair (O(B L d_head)), instead of a
  // product over the B L rows of [onehot ; e] (O(B L (S + E) d_head)).
  ws.k_w_t.resize(bp, W * dh);
  transpose(be, k_w.value.data(), ws.k_w_t.data(), dh, W);
  ws.k_by_key.resize(bp, S * dh);
  be.gemm(false, true, S, dh, E, T(1), emb.value.data(), E, k_w.value.data() + S, W, T(0), ws.k_by_key.data(), dh);
  ws.k_lin.resize(bp, BL * dh);
  ws.gathered.resize(bp, BL * dh);
  be.embedding_gather(ws.k_w_t.data(), ws.values.data(), ws.k_lin.data(), BL, dh);
  be.embedding_gather(ws.k_by_key.data(), ws.keys.data(), ws.gathered.data(), BL, dh);
  be.axpy(BL * dh, T(1), ws.gathered.data(), ws.k_lin.data());
  be.add_bias(ws.k_lin.data(), params_[k_b_].value.data(), BL, dh);

  // Queries: q = W_q e(query) + b_q, gathered the same way (padding ids give
  // a zero row, i.e. q = b_q).
  ws.q_by_key.resize(bp, S * dh);
  be.gemm(false, true, S, dh, E, T(1), emb.value.data(), E, q_w.value.data(), E, T(0), ws.q_by_key.data(), dh);
  ws.q_lin.resize(bp, BQ * dh);
  be.embedding_gather(ws.q_by_key.data(), ws.queries_ids.data(), ws.q_lin.data(), BQ, dh);
  be.add_bias(ws.q_lin.data(), params_[q_b_].value.data(), BQ, dh);

  // The stored values: one-hot rows (the sum rule writes them by index instead).
  const bool sum_write = !config_.softmax && !delta;
  if (!sum_write) {
    ws.v_onehot.resize(bp, BL * S);
    be.onehot_concat(ws.values.data(), nullptr, ws.v_onehot.data(), BL, S, 0);
  } else {
    std::vector<int32_t> slots(static_cast<size_t>(BL));
    for (int64_t r = 0; r < BL; ++r) {
      slots[static_cast<size_t>(r)] = static_cast<int32_t>((r / L) * S + batch.values[r]);
    }
    ws.slots.upload(bp, slots.data(), BL);
  }

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
      // beta_i = sigmoid(W_b[v_i] + (W_b[S:] . e(key_i)) + b_b), gathered like the keys.
      const T* b_w = params_[beta_w_].value.data();
      ws.beta_by_key.resize(bp, S);
      be.gemm(false, true, S, 1, E, T(1), emb.value.data(), E, b_w + S, W, T(0), ws.beta_by_key.data(), 1);
      be.embedding_gather(b_w, ws.values.data(), ws.beta_lin.data(), BL, 1);
      be.embedding_gather(ws.beta_by_key.data(), ws.keys.data(), ws.gathered.data(), BL, 1);
      be.axpy(BL, T(1), ws.gathered.data(), ws.beta_lin.data());
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
    const bool sum_norm = config_.sum_normalize;
    ws.phi_k.resize(bp, BL * dd);
    ws.phi_q.resize(bp, BQ * dd);
    if (sum_norm) {
      ws.phi_k_raw.resize(bp, BL * dd);
      ws.phi_q_raw.resize(bp, BQ * dd);
    }
    T* raw_k = sum_norm ? ws.phi_k_raw.data() : ws.phi_k.data();
    T* raw_q = sum_norm ? ws.phi_q_raw.data() : ws.phi_q.data();
    be.feature_map_forward(spec, ws.favor_used, ws.k_lin.data(), raw_k, BL);
    be.feature_map_forward(spec, ws.favor_used, ws.q_lin.data(), raw_q, BQ);
    if (sum_norm) {
      be.sum_normalize_forward(raw_k, ws.phi_k.data(), BL, dd, eps);
      be.sum_normalize_forward(raw_q, ws.phi_q.data(), BQ, dd, eps);
    }

    // Write all L pairs into the memory, then read every query from the final state.
    ws.state.resize(bp, B * S * dd);
    if (delta) {
      const FastWeightShape write{B, L, dd, S};
      ws.u.resize(bp, BL * S);
      const int64_t interval = be.fast_weight_state_interval(write, 0);
      ws.saved.resize(bp, B * ((L + interval - 1) / interval) * S * dd);
      be.fast_weight_forward(UpdateRule::Delta, Algorithm::Auto, 0, write, nullptr, ws.phi_k.data(),
                             ws.v_onehot.data(), ws.beta.data(), nullptr, nullptr, ws.u.data(), ws.state.data(),
                             ws.saved.data());
    } else {
      // Sum rule with one-hot values: W = sum_i onehot(v_i) phi(k_i)^T adds
      // phi(k_i) to row v_i of its sequence's memory (O(B L d_dot), not O(B L d_dot S)).
      ws.state.zero();
      be.embedding_scatter_accumulate(ws.state.data(), ws.slots.data(), ws.phi_k.data(), BL, dd);
    }
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

    ws.dphi_k.resize(bp, BL * dd);
    if (delta) {
      const FastWeightShape write{B, L, dd, S};
      ws.dv.resize(bp, BL * S);  // the values are fixed one-hot rows: computed, then unused
      ws.dbeta.resize(bp, BL);
      be.fast_weight_backward(UpdateRule::Delta, Algorithm::Auto, 0, write, nullptr, ws.phi_k.data(),
                              ws.v_onehot.data(), ws.beta.data(), ws.u.data(), ws.state.data(), nullptr,
                              ws.d_state.data(), nullptr, ws.dphi_k.data(), ws.dv.data(), ws.dbeta.data(), nullptr,
                              ws.saved.data());
    } else {
      // The transpose of the scatter: each pair reads back its memory row's gradient.
      be.embedding_gather(ws.d_state.data(), ws.slots.data(), ws.dphi_k.data(), BL, dd);
    }
    // z = sum_i phi(k_i) feeds every phi(k_i).
    if (config_.attn_normalize) be.step_broadcast_accumulate(ws.dz.data(), ws.dphi_k.data(), B, L, dd);

    if (config_.sum_normalize) {
      be.sum_normalize_backward(ws.phi_k_raw.data(), ws.dphi_k.data(), ws.dphi_k.data(), BL, dd, eps);
      be.sum_normalize_backward(ws.phi_q_raw.data(), ws.dphi_q.data(), ws.dphi_q.data(), BQ, dd, eps);
    }
    be.feature_map_backward(spec, ws.favor_used, ws.k_lin.data(), ws.raw_k(config_.sum_normalize),
                            ws.dphi_k.data(), ws.dk_lin.data(), BL);
    be.feature_map_backward(spec, ws.favor_used, ws.q_lin.data(), ws.raw_q(config_.sum_normalize),
                            ws.dphi_q.data(), ws.dq_lin.data(), BQ);
    if (delta) {
      ws.dbeta_lin.resize(bp, BL);
      be.sigmoid_backward(ws.beta.data(), ws.dbeta.data(), ws.dbeta_lin.data(), BL);
    }
  }

  Parameter<T>& emb = params_[emb_];
  Parameter<T>& k_w = params_[k_w_];
  Parameter<T>& q_w = params_[q_w_];
  // The transposes of the per-id gathers of forward(): scatter the row
  // gradients to their ids, then take the per-id products back to the
  // weights and the embedding (all accumulated into the gradients).
  // Key projection: d(W_k^T) rows [0, S) by value id, rows [S, S+E) = emb^T dK, dK by key id.
  ws.d_k_w_t.resize(bp, W * dh);
  ws.d_k_w_t.zero();
  be.embedding_scatter_accumulate(ws.d_k_w_t.data(), ws.values.data(), ws.dk_lin.data(), BL, dh);
  ws.d_k_by_key.resize(bp, S * dh);
  ws.d_k_by_key.zero();
  be.embedding_scatter_accumulate(ws.d_k_by_key.data(), ws.keys.data(), ws.dk_lin.data(), BL, dh);
  be.gemm(true, false, E, dh, S, T(1), emb.value.data(), E, ws.d_k_by_key.data(), dh, T(0),
          ws.d_k_w_t.data() + S * dh, dh);
  ws.d_k_w.resize(bp, dh * W);
  transpose(be, ws.d_k_w_t.data(), ws.d_k_w.data(), W, dh);
  be.axpy(dh * W, T(1), ws.d_k_w.data(), k_w.grad.data());
  be.bias_grad_accumulate(params_[k_b_].grad.data(), ws.dk_lin.data(), BL, dh);
  be.gemm(false, false, S, E, dh, T(1), ws.d_k_by_key.data(), dh, k_w.value.data() + S, W, T(1), emb.grad.data(), E);

  // Query projection.
  ws.d_q_by_key.resize(bp, S * dh);
  ws.d_q_by_key.zero();
  be.embedding_scatter_accumulate(ws.d_q_by_key.data(), ws.queries_ids.data(), ws.dq_lin.data(), BQ, dh);
  be.gemm(true, false, dh, E, S, T(1), ws.d_q_by_key.data(), dh, emb.value.data(), E, T(1), q_w.grad.data(), E);
  be.bias_grad_accumulate(params_[q_b_].grad.data(), ws.dq_lin.data(), BQ, dh);
  be.gemm(false, false, S, E, dh, T(1), ws.d_q_by_key.data(), dh, q_w.value.data(), E, T(1), emb.grad.data(), E);

  if (delta) {
    // Beta projection (W_b is one row, so its transpose is itself).
    Parameter<T>& b_w = params_[beta_w_];
    ws.d_beta_w.resize(bp, W);
    ws.d_beta_w.zero();
    be.embedding_scatter_accumulate(ws.d_beta_w.data(), ws.values.data(), ws.dbeta_lin.data(), BL, 1);
    ws.d_beta_by_key.resize(bp, S);
    ws.d_beta_by_key.zero();
    be.embedding_scatter_accumulate(ws.d_beta_by_key.data(), ws.keys.data(), ws.dbeta_lin.data(), BL, 1);
    be.gemm(true, false, E, 1, S, T(1), emb.value.data(), E, ws.d_beta_by_key.data(), 1, T(0),
            ws.d_beta_w.data() + S, 1);
    be.axpy(W, T(1), ws.d_beta_w.data(), b_w.grad.data());
    be.bias_grad_accumulate(params_[beta_b_].grad.data(), ws.dbeta_lin.data(), BL, 1);
    be.gemm(false, false, S, E, 1, T(1), ws.d_beta_by_key.data(), 1, b_w.value.data() + S, W, T(1),
            emb.grad.data(), E);
  }
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
