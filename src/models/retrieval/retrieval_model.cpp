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
#include "nn/fast_weight_layer.h"  // validate_attention_options
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

// Every pair input is x_i = [onehot(value_i) ; e(key_i)] and every query input
// e(query_j): the inputs come from a vocabulary of S values and S keys. The
// projections are therefore evaluated per id (O(S E d_head)) and the rows of
// the B L pairs and B Q queries gathered (O(B L d_head)), instead of running
// over B L rows of width S + E (O(B L (S + E) d_head)):
//   queries: q_proj over the embedding table (the rows e(0) .. e(S-1); the
//            Linear module's forward and backward), then row query_j, or the
//            bias (a zero input's projection) for padding;
//   pairs:   proj(x_i) = W[:, value_i] + W[:, S:] e(key_i) + b: a column of W
//            (a row of W^T) plus a row of the key table emb W[:, S:]^T, plus b.
// The pair form reads the Linear's weight and bias by index: running the
// module over the 2 S one-hot and embedding rows of the vocabulary took 1.5x
// the step time at S = 400 (most of the columns are one-hot zeros). The
// embedding of every id is the table itself, so the projections read the
// Embedding's table and add to its gradient in place (a gather and a
// scatter-add over all S ids would only copy it: 2-4% of a step at S = 400).
//
// Activations of the last forward (device buffers) and the backward's scratch.
// Rows of [B*L, ...] arrays are pair i of sequence b at b * L + i; rows of
// [B*Q, ...] arrays are query j of sequence b at b * Q + j.
template <typename T>
struct RetrievalNetwork<T>::Workspace {
  int64_t batch = 0, seq_len = 0, queries = 0;
  int64_t valid_queries = 0;
  IdBuffer<T> keys, values, targets;  // targets: -1 for padding
  IdBuffer<T> query_rows;             // [B*Q]: the query's row of q_table (S for padding)
  Buffer<T> q_table;                  // [S + 1, d_head]
  Buffer<T> w_t;                      // [S + E, d_head]: a pair projection's W transposed
  Buffer<T> key_table;                // [S, d_head]: emb W[:, S:]^T
  Buffer<T> gathered;                 // [B*L, d_head]: scratch for the second gather
  Buffer<T> k_lin;                    // [B*L, d_head]
  Buffer<T> beta_lin, beta;           // [B*L]: W_b x + b_b and its sigmoid (delta rule)
  Buffer<T> q_lin;                    // [B*Q, d_head]
  Buffer<T> y;                        // [B*Q, S]
  Buffer<T> loss_rows;                // [B*Q]
  Buffer<T> favor;                    // [m, d_head]: this forward's redrawn FAVOR+ projection

  // backward scratch
  Buffer<T> dy, dk_lin, dq_lin, dbeta, dbeta_lin, dq_table;
  Buffer<T> dw_t, dw, d_key_table;  // a pair projection's [S + E, d], [d, S + E], [S, d]
};

template <typename T>
RetrievalNetwork<T>::RetrievalNetwork(const RetrievalConfig& config, std::shared_ptr<Backend<T>> backend, Rng rng)
    : config_(config), backend_(std::move(backend)), rng_(rng) {
  config_.validate("config->");
  require(backend_ != nullptr, FWP_ERR_INTERNAL, "RetrievalNetwork needs a backend");
  const int64_t S = config_.num_keys, E = config_.embedding_dim(), dh = config_.d_head;
  const bool delta = !config_.softmax && config_.update_rule == UpdateRule::Delta;

  // Declare every parameter (the order and the names are the checkpoint
  // format), allocate the one block, then draw on the host in parameter order.
  key_embedding_ = std::make_unique<Embedding<T>>(params_, backend_, "key_embedding", S, E);
  // The checkpoints name the table "key_embedding" (they predate the module's "<name>.weight").
  params_[key_embedding_->weight_index()].name = "key_embedding";
  k_proj_ = std::make_unique<Linear<T>>(params_, backend_, "k_proj", S + E, dh, /*bias=*/true);
  q_proj_ = std::make_unique<Linear<T>>(params_, backend_, "q_proj", E, dh, /*bias=*/true);
  if (delta) beta_proj_ = std::make_unique<Linear<T>>(params_, backend_, "beta_proj", S + E, 1, /*bias=*/true);
  const int64_t m = config_.favor_features;
  if (!config_.softmax && config_.feature_map == FeatureMap::Favor) {
    params_.declare("favor.projection", {m, dh}, /*trainable=*/false);
    favor_ = params_.size() - 1;
  }
  params_.allocate(backend_);
  // The embedding is N(0, 1) as in the paper; projections use PyTorch's
  // nn.Linear default (the authors' code), U(-1/sqrt(fan_in), 1/sqrt(fan_in))
  // for weights and biases.
  key_embedding_->init_normal(params_, rng_, 1.0);
  k_proj_->init_uniform_fan_in(params_, rng_);
  q_proj_->init_uniform_fan_in(params_, rng_);
  if (beta_proj_) beta_proj_->init_uniform_fan_in(params_, rng_);
  if (favor_ >= 0) {
    std::vector<T> host(static_cast<size_t>(m * dh));
    draw_favor_projection<T>(rng_, m, dh, host.data());
    params_[favor_].value.from_host(host.data(), m * dh);
  }
  memory_ = std::make_unique<RetrievalMemory<T>>(config_, backend_);
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
void RetrievalNetwork<T>::project_pairs(const Linear<T>& proj, Buffer<T>& out) {
  Workspace& ws = *ws_;
  Backend<T>& be = *backend_;
  const auto& bp = backend_;
  const int64_t S = config_.num_keys, E = config_.embedding_dim(), W = S + E, d = proj.out_features();
  const int64_t BL = ws.batch * ws.seq_len;
  const T* weight = params_[proj.weight_index()].value.data();  // [d, W]
  // Rows of W^T by value id (a one-row W is its own transpose).
  const T* w_t = weight;
  if (d > 1) {
    ws.w_t.resize(bp, W * d);
    transpose(be, weight, ws.w_t.data(), d, W);
    w_t = ws.w_t.data();
  }
  ws.key_table.resize(bp, S * config_.d_head);
  const T* table = params_[key_embedding_->weight_index()].value.data();  // [S, E]
  be.gemm(false, true, S, d, E, T(1), table, E, weight + S, W, T(0), ws.key_table.data(), d);
  out.resize(bp, BL * d);
  ws.gathered.resize(bp, BL * config_.d_head);
  // Per block of sequences, so that the rows gathered are still in cache when added up.
  const int64_t L = ws.seq_len;
  const T* bias = params_[proj.bias_index()].value.data();
  be.for_each_block(ws.batch, L * 2 * d * static_cast<int64_t>(sizeof(T)), [&](int64_t b0, int64_t b1) {
    const int64_t r0 = b0 * L, rows = (b1 - b0) * L;
    be.embedding_gather(w_t, ws.values.data() + r0, out.data() + r0 * d, rows, d);
    be.embedding_gather(ws.key_table.data(), ws.keys.data() + r0, ws.gathered.data() + r0 * d, rows, d);
    be.axpy(rows * d, T(1), ws.gathered.data() + r0 * d, out.data() + r0 * d);
    be.add_bias(out.data() + r0 * d, bias, rows, d);
  });
}

template <typename T>
void RetrievalNetwork<T>::project_pairs_backward(const Linear<T>& proj, const Buffer<T>& dout) {
  Workspace& ws = *ws_;
  Backend<T>& be = *backend_;
  const auto& bp = backend_;
  const int64_t S = config_.num_keys, E = config_.embedding_dim(), W = S + E, d = proj.out_features();
  const int64_t BL = ws.batch * ws.seq_len;
  Parameter<T>& weight = params_[proj.weight_index()];
  // The transposes of the gathers: dW^T rows [0, S) by value id; rows [S, S+E)
  // = emb^T d(key_table), d(key_table) by key id; then d emb += d(key_table) W[:, S:].
  Parameter<T>& table = params_[key_embedding_->weight_index()];  // [S, E]
  ws.dw_t.resize(bp, W * config_.d_head);  // one size for k and beta: no reallocation per step
  be.fill(ws.dw_t.data(), T(0), W * d);
  be.embedding_scatter_accumulate(ws.dw_t.data(), ws.values.data(), dout.data(), BL, d);
  ws.d_key_table.resize(bp, S * config_.d_head);
  be.fill(ws.d_key_table.data(), T(0), S * d);
  be.embedding_scatter_accumulate(ws.d_key_table.data(), ws.keys.data(), dout.data(), BL, d);
  be.gemm(true, false, E, d, S, T(1), table.value.data(), E, ws.d_key_table.data(), d, T(0), ws.dw_t.data() + S * d,
          d);
  const T* dw = ws.dw_t.data();
  if (d > 1) {
    ws.dw.resize(bp, d * W);
    transpose(be, ws.dw_t.data(), ws.dw.data(), W, d);
    dw = ws.dw.data();
  }
  be.axpy(d * W, T(1), dw, weight.grad.data());
  be.bias_grad_accumulate(params_[proj.bias_index()].grad.data(), dout.data(), BL, d);
  be.gemm(false, false, S, E, d, T(1), ws.d_key_table.data(), d, weight.value.data() + S, W, T(1),
          table.grad.data(), E);
}

template <typename T>
double RetrievalNetwork<T>::forward(const RetrievalBatch& batch, T* outputs) {
  validate_batch(batch);
  has_forward_ = false;
  Workspace& ws = *ws_;
  Backend<T>& be = *backend_;
  const auto& bp = backend_;
  const int64_t S = config_.num_keys, E = config_.embedding_dim(), dh = config_.d_head;
  const int64_t B = batch.batch_size, L = batch.seq_len, Q = batch.num_queries;
  const int64_t BL = B * L, BQ = B * Q;

  // Ids: padding queries read the query table's last row and carry target -1.
  std::vector<int32_t> targets(static_cast<size_t>(BQ)), query_rows(static_cast<size_t>(BQ));
  int64_t valid = 0;
  for (int64_t r = 0; r < BQ; ++r) {
    const bool pad = batch.queries[r] < 0;
    targets[static_cast<size_t>(r)] = pad ? -1 : batch.targets[r];
    query_rows[static_cast<size_t>(r)] = pad ? static_cast<int32_t>(S) : batch.queries[r];
    valid += pad ? 0 : 1;
  }
  ws.keys.upload(bp, batch.keys, BL);
  ws.values.upload(bp, batch.values, BL);
  ws.query_rows.upload(bp, query_rows.data(), BQ);
  ws.targets.upload(bp, targets.data(), BQ);
  ws.batch = B;
  ws.seq_len = L;
  ws.queries = Q;
  ws.valid_queries = valid;

  // k_i = W_k x_i + b_k; beta_i = sigmoid(W_b x_i + b_b); q_j = W_q e(q_j) + b_q.
  project_pairs(*k_proj_, ws.k_lin);
  if (beta_proj_) {
    project_pairs(*beta_proj_, ws.beta_lin);
    ws.beta.resize(bp, BL);
    be.sigmoid_forward(ws.beta_lin.data(), ws.beta.data(), BL);
  }
  // Rows [0, S): q_proj of every embedding row; row S (padding): the bias.
  const ConstView<T> table(params_[key_embedding_->weight_index()].value.data(), {S, E});
  ws.q_table.resize(bp, (S + 1) * dh);
  q_proj_->forward(params_, table, TensorView<T>(ws.q_table.data(), {S, dh}));
  be.copy(ws.q_table.data() + S * dh, params_[q_proj_->bias_index()].value.data(), dh);
  ws.q_lin.resize(bp, BQ * dh);
  be.embedding_gather(ws.q_table.data(), ws.query_rows.data(), ws.q_lin.data(), BQ, dh);

  // FAVOR+ draws fresh features for each training forward unless told not to.
  const T* favor = nullptr;
  if (favor_ >= 0) {
    if (!training_ || !config_.favor_redraw) {
      favor = params_[favor_].value.data();
    } else {
      const int64_t m = config_.favor_features;
      std::vector<T> host(static_cast<size_t>(m * dh));
      draw_favor_projection<T>(rng_, m, dh, host.data());
      ws.favor.resize(bp, m * dh);
      ws.favor.from_host(host.data(), m * dh);
      favor = ws.favor.data();
    }
  }

  ws.y.resize(bp, BQ * S);
  memory_->forward(ConstView<T>(ws.k_lin.data(), {B, L, dh}),
                   beta_proj_ ? ConstView<T>(ws.beta.data(), {B, L}) : ConstView<T>(), ws.values.view({B, L}),
                   batch.values, ConstView<T>(ws.q_lin.data(), {B, Q, dh}), favor,
                   TensorView<T>(ws.y.data(), {B, Q, S}));

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
  const int64_t S = config_.num_keys, E = config_.embedding_dim(), dh = config_.d_head;
  const int64_t B = ws.batch, L = ws.seq_len, Q = ws.queries;
  const int64_t BL = B * L, BQ = B * Q;

  // dLoss/dy, averaged over the non-padding queries.
  ws.dy.resize(bp, BQ * S);
  be.onehot_mse_backward(ws.y.data(), ws.targets.data(), T(1) / static_cast<T>(ws.valid_queries), ws.dy.data(),
                         BQ, S);
  ws.dk_lin.resize(bp, BL * dh);
  ws.dq_lin.resize(bp, BQ * dh);
  if (beta_proj_) ws.dbeta.resize(bp, BL);
  memory_->backward(ConstView<T>(ws.dy.data(), {B, Q, S}), TensorView<T>(ws.dk_lin.data(), {B, L, dh}),
                    beta_proj_ ? TensorView<T>(ws.dbeta.data(), {B, L}) : TensorView<T>(),
                    TensorView<T>(ws.dq_lin.data(), {B, Q, dh}));

  // The projections (see Workspace), each adding to the embedding table's gradient.
  Parameter<T>& table = params_[key_embedding_->weight_index()];
  ws.dq_table.resize(bp, (S + 1) * dh);
  ws.dq_table.zero();
  be.embedding_scatter_accumulate(ws.dq_table.data(), ws.query_rows.data(), ws.dq_lin.data(), BQ, dh);
  q_proj_->backward(params_, ConstView<T>(table.value.data(), {S, E}), ConstView<T>(ws.dq_table.data(), {S, dh}),
                    TensorView<T>(table.grad.data(), {S, E}), InputGrad::Accumulate);
  // The padding row is the bias itself.
  be.bias_grad_accumulate(params_[q_proj_->bias_index()].grad.data(), ws.dq_table.data() + S * dh, 1, dh);
  project_pairs_backward(*k_proj_, ws.dk_lin);
  if (beta_proj_) {
    ws.dbeta_lin.resize(bp, BL);
    be.sigmoid_backward(ws.beta.data(), ws.dbeta.data(), ws.dbeta_lin.data(), BL);
    project_pairs_backward(*beta_proj_, ws.dbeta_lin);
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
