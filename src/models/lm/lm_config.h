// The language model's settings (LmConfig: the C++ mirror of fwp_lm_config in
// fwp/lm.h), shared by the network (lm_model.h) and its registry entry
// (lm_kind.cpp). Defined in lm_config.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "nn/fast_weight_attention.h"

namespace fwp {

enum class PositionEncoding { Sinusoidal, None };

struct LmConfig {
  int64_t vocab_size = 0;
  int64_t num_layers = 16;
  // Every layer's attention; attention.d_model is the model's width.
  FastWeightAttentionConfig attention;
  int64_t d_ff = 2048;
  double dropout = 0.1;       // embeddings, attention output, inside and after the feed-forward block
  double attn_dropout = 0.0;  // on attention weights: only 0 is built (the paper's scripts use 0)
  PositionEncoding position = PositionEncoding::Sinusoidal;
  bool pre_norm = false;      // false: post-LayerNorm residual blocks (the paper)
  // Plain softmax: the output weight is the embedding table. Adaptive: every
  // cluster's output weight is the adaptive input's table of that cluster,
  // and with div_val > 1 the tail clusters' projections are shared too (the
  // authors' WikiText-103 setting, tie_projs = [False] + [True] * cutoffs).
  bool tie_embeddings = false;
  // Adaptive input + adaptive softmax (nn/adaptive_input.h, adaptive_softmax.h)
  // when cutoffs is not empty or div_val > 1; otherwise an Embedding and a
  // Linear output layer (the plain softmax).
  std::vector<int64_t> cutoffs;  // strictly increasing, each in (0, vocab_size)
  int64_t div_val = 1;           // cluster k's width: d_model / div_val^k (integer division)
  double init_std = 0.02;        // embedding, feed-forward and output weights
  uint64_t seed = 0;             // 0: parameters drawn from the context's generator (not in to_json())

  int64_t d_model() const { return attention.d_model; }
  bool adaptive() const { return !cutoffs.empty() || div_val > 1; }
  // The tail clusters' projections are tied (see tie_embeddings).
  bool tie_projections() const { return tie_embeddings && div_val > 1 && !cutoffs.empty(); }

  // Throws Error naming prefix + the first bad field: FWP_ERR_INVALID_ARGUMENT
  // for a bad value, FWP_ERR_UNSUPPORTED for an option not built yet
  // (attention dropout).
  void validate(const std::string& prefix = "") const;

  nlohmann::json to_json() const;
  // Parses to_json()'s output; Error(FWP_ERR_FORMAT) for a missing or mistyped
  // member or a config validate() rejects.
  static LmConfig from_json(const nlohmann::json& j);
};

// Largest vocabulary and feed-forward width the model accepts (ids are int32;
// the bound keeps one row of logits or activations far below the element limit).
constexpr int64_t kMaxLmVocab = int64_t(1) << 24;
constexpr int64_t kMaxLmWidth = int64_t(1) << 16;
constexpr int64_t kMaxLmLayers = 1024;
// Adaptive-softmax cutoffs a config holds (FWP_LM_MAX_CUTOFFS of fwp/lm.h).
constexpr int64_t kMaxLmCutoffs = 8;

}  // namespace fwp
