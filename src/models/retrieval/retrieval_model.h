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
// RetrievalNetwork<T> is built from src/nn modules (Embedding for the table
// e, Linear for the three projections: they declare and draw the parameters,
// q_proj runs its forward and backward over the table) and a RetrievalMemory
// (retrieval_memory.h: the feature maps, the write of the L pairs, the
// readout, the softmax baseline). What is its own: the input layout, the
// per-id evaluation of the pair projections from k_proj's and beta_proj's
// weights (see the .cpp) and the loss. Written against Backend<T> only (float and double
// on the CPU, float on CUDA); RetrievalModel wraps the float network behind
// the Model interface for the C API.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "core/backend.h"
#include "core/buffer.h"
#include "core/rng.h"
#include "data/retrieval_data.h"
#include "models/model.h"
#include "models/retrieval/retrieval_config.h"
#include "models/retrieval/retrieval_memory.h"
#include "nn/embedding.h"
#include "nn/linear.h"
#include "nn/parameter.h"

namespace fwp {

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

  // out = proj over every pair input [onehot(value_i) ; e(key_i)] of the last
  // forward's batch, evaluated per id (see Workspace in the .cpp).
  void project_pairs(const Linear<T>& proj, Buffer<T>& out);
  // Its backward: adds to proj's parameter gradients and to the embedding
  // table's gradient.
  void project_pairs_backward(const Linear<T>& proj, const Buffer<T>& dout);

  RetrievalConfig config_;
  std::shared_ptr<Backend<T>> backend_;
  Rng rng_;
  bool training_ = true;
  ParameterList<T> params_;
  // The modules, which keep indices into params_.
  std::unique_ptr<Embedding<T>> key_embedding_;
  std::unique_ptr<Linear<T>> k_proj_, q_proj_;
  std::unique_ptr<Linear<T>> beta_proj_;  // the delta rule only
  int64_t favor_ = -1;                    // the fixed FAVOR+ projection's index (-1 if absent)
  std::unique_ptr<RetrievalMemory<T>> memory_;
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
