// The beam search's view of a Seq2SeqNetwork (beam_search.h's StepDecoder):
// it owns the decode state that Seq2SeqNetwork::encode() made for a batch of
// source sentences; log_probs() is one step() of every row and reorder() the
// network's gather of every per-row state (self-attention fast weights or
// key/value caches, cross-attention memories, positions).
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/error.h"
#include "models/seq2seq/beam_search.h"
#include "models/seq2seq/seq2seq_network.h"

namespace fwp {
namespace seq2seq {

template <typename T>
class NetworkStepDecoder final : public StepDecoder {
 public:
  // `network` must outlive the decoder; `state` comes from network.encode().
  NetworkStepDecoder(Seq2SeqNetwork<T>& network, Seq2SeqDecodeState<T> state)
      : network_(network), state_(std::move(state)) {}

  int64_t vocab_size() const override { return network_.config().vocab_size; }

  void log_probs(const int32_t* last_tokens, int64_t rows, float* out) override {
    require(rows == state_.rows(), FWP_ERR_INTERNAL,
            "NetworkStepDecoder: the search has " + std::to_string(rows) + " rows, the decode state " +
                std::to_string(state_.rows()));
    if constexpr (std::is_same_v<T, float>) {
      network_.step(last_tokens, state_, out);
    } else {  // a double network (tests): the search reads float
      scratch_.resize(static_cast<size_t>(rows * vocab_size()));
      network_.step(last_tokens, state_, scratch_.data());
      for (size_t i = 0; i < scratch_.size(); ++i) out[i] = static_cast<float>(scratch_[i]);
    }
  }

  void reorder(const int64_t* parent_rows, int64_t rows) override { network_.reorder(state_, parent_rows, rows); }

  const Seq2SeqDecodeState<T>& state() const { return state_; }

 private:
  Seq2SeqNetwork<T>& network_;
  Seq2SeqDecodeState<T> state_;
  std::vector<T> scratch_;
};

}  // namespace seq2seq
}  // namespace fwp
