// The synthetic associative-retrieval model of the paper (section 6.1): one
// fast-weight (or softmax-attention) layer that reads S (key, value) pairs and
// then answers queries for the value stored under a key.
//
// For sequence b with pairs (key_i, value_i), i < L, and query keys q_j:
//   x_i   = [onehot(value_i) ; e(key_i)]              (e: trainable [S, E] embedding, E = int(2 S * 1.1))
//   k_i   = W_k x_i + b_k,  beta_i = sigmoid(W_b x_i + b_b)   (beta: delta rule only)
//   q_j   = W_q e(q_j) + b_q
//   fast weights: W_L = the memory after writing v_i = onehot(value_i) under phi(k_i) for all i
//   y_j   = W_L phi(q_j), divided by (z_L . phi(q_j) + eps) with attn_normalize (z_L = sum_i phi(k_i))
//   softmax baseline: y_j = sum_i softmax_i(q_j . k_i / sqrt(d_head)) onehot(value_i)
//   loss  = mean over non-padding queries of 0.5 * ||onehot(target_j) - y_j||^2
//
// RetrievalNetwork<T> holds the computation, written against Backend<T> only
// (float and double on the CPU, float on CUDA); RetrievalModel wraps the float
// network behind the Model interface for the C API.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/backend.h"
#include "core/buffer.h"
#include "core/rng.h"
#include "data/retrieval_data.h"
#include "models/model.h"
#include "nn/parameter.h"

namespace fwp {

// Settings (the C++ mirror of fwp_retrieval_config; see fwp.h).
struct RetrievalConfig {
  int32_t setting = 1;                        // 1: L = S pairs; 2: trained on L = 2 S, any L accepted
  int64_t num_keys = 20;                      // S
  int64_t d_head = 64;
  bool softmax = false;                       // softmax attention instead of a fast-weight memory
  FeatureMap feature_map = FeatureMap::Dpfp;  // unused with softmax
  int64_t dpfp_nu = 1;
  int64_t favor_features = 64;
  bool favor_redraw = true;
  UpdateRule update_rule = UpdateRule::Delta;
  bool sum_normalize = true;
  bool attn_normalize = false;
  double norm_eps = 1e-6;

  // Throws Error(FWP_ERR_INVALID_ARGUMENT) naming the first bad field as
  // prefix + field (e.g. "config->num_keys must be >= 2 (got 1)").
  void validate(const std::string& prefix = "") const;
  // E = int(2 S * 1.1), computed as the authors' Python does.
  int64_t embedding_dim() const;
  FeatureMapSpec feature_spec() const;
  // Width of phi; 0 for softmax.
  int64_t d_dot() const;

  nlohmann::json to_json() const;
  // Parses to_json()'s output; Error(FWP_ERR_FORMAT) for a missing or mistyped
  // member, Error(FWP_ERR_FORMAT) also for values validate() rejects.
  static RetrievalConfig from_json(const nlohmann::json& j);
};

// A batch in host memory (the C++ mirror of fwp_retrieval_batch).
struct RetrievalBatch {
  int64_t batch_size = 0;
  int64_t seq_len = 0;
  int64_t num_queries = 0;
  const int32_t* keys = nullptr;     // [B][L]
  const int32_t* values = nullptr;   // [B][L]
  const int32_t* queries = nullptr;  // [B][Q], -1 = padding
  const int32_t* targets = nullptr;  // [B][Q], ignored for padding
};

template <typename T>
class RetrievalNetwork {
 public:
  // Parameters are drawn from `rng`, which the network keeps for FAVOR+ redraws.
  RetrievalNetwork(const RetrievalConfig& config, std::shared_ptr<Backend<T>> backend, Rng rng);
  ~RetrievalNetwork();
  RetrievalNetwork(const RetrievalNetwork&) = delete;
  RetrievalNetwork& operator=(const RetrievalNetwork&) = delete;

  const RetrievalConfig& config() const { return config_; }
  const std::shared_ptr<Backend<T>>& backend() const { return backend_; }
  ParameterList<T>& params() { return params_; }
  const ParameterList<T>& params() const { return params_; }

  bool training() const { return training_; }
  void set_training(bool training) { training_ = training; }

  // Checks every field and id of the batch against the config; throws Error
  // naming the field and position ("batch->keys[3][7] must be in [0, 20) (got 20)").
  void validate_batch(const RetrievalBatch& batch) const;

  // Validates the batch, runs the forward and returns the loss. outputs
  // (nullable): host [B][Q][S], zeros for padding queries. Keeps what backward()
  // needs. On error the network is unchanged except that no forward is pending.
  double forward(const RetrievalBatch& batch, T* outputs);
  // Adds dLoss/dparams of the last forward to the gradients; BAD_STATE when
  // there was no forward since the last backward.
  void backward();
  bool has_forward() const { return has_forward_; }

  Rng::State rng_state() const { return rng_.state(); }
  void set_rng_state(const Rng::State& state) { rng_.set_state(state); }

 private:
  struct Workspace;

  RetrievalConfig config_;
  std::shared_ptr<Backend<T>> backend_;
  Rng rng_;
  bool training_ = true;
  ParameterList<T> params_;
  // Indices into params_ (-1 if absent).
  int64_t emb_ = -1, k_w_ = -1, k_b_ = -1, q_w_ = -1, q_b_ = -1, beta_w_ = -1, beta_b_ = -1, favor_ = -1;
  std::unique_ptr<Workspace> ws_;
  bool has_forward_ = false;
};

extern template class RetrievalNetwork<float>;
extern template class RetrievalNetwork<double>;

// The float network behind the Model interface (what fwp_model holds).
class RetrievalModel final : public Model {
 public:
  // Validates the config; parameters are seeded through context->make_rng().
  RetrievalModel(std::shared_ptr<Context> context, const RetrievalConfig& config);

  RetrievalNetwork<float>& network() { return net_; }
  const RetrievalNetwork<float>& network() const { return net_; }
  const RetrievalConfig& config() const { return net_.config(); }

  fwp_model_kind kind() const override { return FWP_MODEL_RETRIEVAL; }
  ParameterList<float>& parameters() override { return net_.params(); }
  const ParameterList<float>& parameters() const override { return net_.params(); }
  void set_training(bool training) override { net_.set_training(training); }
  bool training() const override { return net_.training(); }
  void backward() override { net_.backward(); }
  nlohmann::json config_json() const override;
  Rng::State rng_state() const override { return net_.rng_state(); }
  void set_rng_state(const Rng::State& state) override { net_.set_rng_state(state); }
  const std::shared_ptr<Context>& context() const override { return context_; }

 private:
  std::shared_ptr<Context> context_;
  RetrievalNetwork<float> net_;
};

}  // namespace fwp
