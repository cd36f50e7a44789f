// The translation model's settings (issue 13, paper section 6.2): a
// Transformer encoder-decoder as fairseq builds it, with the attention of each
// kind chosen separately. Defined in seq2seq_config.cpp.
//
// The paper's models are fairseq's Transformer "big" (6 + 6 layers, d_model
// 1024, 16 heads, FFN 4096, post-LN, one embedding table shared by source,
// target and output over a joint 32K BPE vocabulary) in which EVERY softmax
// attention (encoder self, decoder self, cross) is replaced by the linear kind
// under test (sum rule; elu+1 "Linear", FAVOR+ "Performer", or DPFP), with the
// Katharopoulos et al. normalisation. The defaults below are that "Linear"
// model; the softmax Transformer baseline sets softmax in all three.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "models/lm/lm_config.h"  // PositionEncoding
#include "nn/fast_weight_attention.h"
#include "nn/noncausal_attention.h"

namespace fwp {

struct Seq2SeqConfig {
  // One vocabulary for source and target (the paper's joint BPE).
  int64_t vocab_size = 0;
  int32_t pad_id = 1, bos_id = 0, eos_id = 2;  // fairseq's dictionary order
  int64_t encoder_layers = 6;
  int64_t decoder_layers = 6;
  int64_t d_ff = 4096;
  double dropout = 0.3;          // embeddings, attention outputs, inside and after the FFN (fairseq's dropout)
  double label_smoothing = 0.1;  // fairseq's label_smoothed_cross_entropy
  // true: the output weight is the embedding table (the paper shares all three);
  // false: a separate output weight [V, d_model]. There is no output bias (fairseq has none).
  bool tie_embeddings = true;
  PositionEncoding position = PositionEncoding::Sinusoidal;
  bool pre_norm = false;  // false: post-LN (the paper); true: pre-LN with a final LayerNorm per stack
  double init_std = 0.02;  // embedding, FFN and (untied) output weights: N(0, init_std^2)
  // A fresh FAVOR+ projection per training forward for the encoder and cross
  // attentions (the decoder's own setting is decoder_attention.favor_redraw).
  bool favor_redraw = true;
  uint64_t seed = 0;  // 0: parameters drawn from the context's generator (not in to_json())

  // Each attention's d_model must equal the model's (encoder_attention.d_model);
  // heads and d_head may differ per kind. set_sizes() sets all three.
  NonCausalAttentionConfig encoder_attention = default_noncausal();
  FastWeightAttentionConfig decoder_attention = default_decoder();
  NonCausalAttentionConfig cross_attention = default_noncausal();

  int64_t d_model() const { return encoder_attention.d_model; }
  void set_sizes(int64_t d_model, int64_t num_heads, int64_t d_head);

  // Throws Error(FWP_ERR_INVALID_ARGUMENT) naming prefix + the first bad field.
  void validate(const std::string& prefix = "") const;

  // The config as checkpoints store it (kind "seq2seq"), and back;
  // from_json() reports a missing or mistyped member, or a config validate()
  // rejects, as Error(FWP_ERR_FORMAT).
  nlohmann::json to_json() const;
  static Seq2SeqConfig from_json(const nlohmann::json& j);

  // The paper's "Linear" attention: elu + 1, normalised, no sum normalisation, no output scale.
  static NonCausalAttentionConfig default_noncausal();
  // The same as a causal sum-rule fast-weight memory.
  static FastWeightAttentionConfig default_decoder();
};

constexpr int64_t kMaxSeq2SeqLayers = 1024;

}  // namespace fwp
