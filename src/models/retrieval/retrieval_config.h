// The retrieval model's settings (RetrievalConfig), shared by the network
// (retrieval_model.h) and its memory (retrieval_memory.h). Defined in
// retrieval_model.cpp.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/backend/types.h"

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

}  // namespace fwp
