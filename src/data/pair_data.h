// The pair data source (FWP_DATA_PARALLEL_TEXT): a memory-mapped pair file
// (text/pair_file.h) cut into variable-shape batches by a token budget, as
// fairseq's --max-tokens batching does.
//
// A pair of n source and m target ids is fed as
//   source        x_1 .. x_n eos           (S_i = n + 1 positions)
//   target input  bos y_1 .. y_m           (T_i = m + 1 positions)
//   target output y_1 .. y_m eos           (the next-token targets)
// and a batch of B pairs is [B][S] and [B][T] with S = max S_i, T = max T_i,
// each row right-padded with the pad id (pad in the target output means
// "no loss here"). The budget: B * max(S, T) <= max_tokens, and
// B <= max_sentences when that is set.
//
// Batches are formed once, when the source is opened:
// - shuffle (training): the pairs sorted by (target length, source length,
//   index), then cut greedily into batches in that order (similar lengths
//   share a batch, little padding). Each epoch visits every batch once in an
//   order shuffled from (seed, epoch) alone: Fisher-Yates with SplitMix64,
//   the same on every platform.
// - no shuffle (evaluation): the pairs in file order, cut greedily; every
//   epoch is the same sequence, so translations come out in file order.
// Every pair is in exactly one batch of an epoch. A pair that alone exceeds
// the budget is refused at open.
//
// Shards: every batch is formed as above and then cut into c contiguous
// parts; shard i takes rows [floor(i B / c), floor((i + 1) B / c)), which may
// be none when B < c (an empty part: B = S = T = 0). peek() and next() give
// the part, max_shape() the largest part.
//
// Checkpoints: kind "parallel_text", config {"max_tokens", "max_sentences",
// "shuffle", "seed", "num_pairs", "checksum" (16 hex digits)}, state
// {"epoch", "batch"}; the shuffled order of an epoch is a function of seed
// and epoch, so (epoch, batch) is the whole position.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "data/data_source.h"
#include "text/pair_file.h"

namespace fwp {

struct PairDataOptions {
  int64_t max_tokens = 4096;
  int64_t max_sentences = 0;  // 0: no limit
  bool shuffle = true;
  uint64_t seed = 1;
};

// The shape of one batch.
struct PairBatchShape {
  int64_t batch_size = 0;       // B
  int64_t source_length = 0;    // S (with eos)
  int64_t target_length = 0;    // T (with bos / eos)
};

class PairData final : public DataSource {
 public:
  // Maps and verifies the file (Error(FWP_ERR_IO / FWP_ERR_FORMAT));
  // Error(FWP_ERR_INVALID_ARGUMENT) for max_tokens < 1, max_sentences < 0,
  // or a pair that does not fit max_tokens alone (naming it).
  PairData(const std::string& path, const PairDataOptions& options);

  const PairDataOptions& options() const { return options_; }
  const MappedPairFile& file() const { return *file_; }
  int64_t batches_per_epoch() const { return static_cast<int64_t>(batch_starts_.size()) - 1; }
  int64_t epoch() const { return epoch_; }
  int64_t batch() const { return batch_; }
  // The largest batch dimensions over all batches (this shard's parts of
  // them), each maximised on its own (for allocating once).
  const PairBatchShape& max_shape() const { return max_shape_; }

  // The shape of the batch (this shard's part of it) next() gives.
  PairBatchShape peek() const { return shape_of(current_batch()); }
  // Fills the next batch (this shard's part) and moves on. The arrays are
  // [B][S] (source) and [B][T] (target input and output) for the shape
  // peek() gives; `shape` must equal it (Error(FWP_ERR_SHAPE_MISMATCH) naming
  // both, and nothing moves). An empty part (B = 0) takes NULL arrays. Lengths
  // are per row, S_i and T_i. pair_indices (may be NULL) receives each row's
  // pair index in the file.
  void next(const PairBatchShape& shape, int32_t* source, int32_t* source_lengths, int32_t* target_input,
            int32_t* target_output, int32_t* target_lengths, int64_t* pair_indices);
  // Moves to the first batch of `epoch` (>= 0).
  void reset(int64_t epoch);

  fwp_data_kind kind() const override { return FWP_DATA_PARALLEL_TEXT; }
  std::string kind_name() const override { return "parallel_text"; }
  nlohmann::json config_json() const override;
  nlohmann::json state_json() const override;
  void check_state(const nlohmann::json& state) const override;
  void restore_state(const nlohmann::json& state) override;

 protected:
  void shard_changed() override { compute_max_shape(); }

 private:
  int64_t current_batch() const { return order_.empty() ? batch_ : order_[static_cast<size_t>(batch_)]; }
  // This shard's rows of a batch: the range [first, second) of pairs_.
  std::pair<int64_t, int64_t> part_of(int64_t batch) const;
  PairBatchShape shape_of(int64_t batch) const;
  void compute_max_shape();
  void make_epoch_order();

  std::unique_ptr<MappedPairFile> file_;
  PairDataOptions options_;
  std::vector<int64_t> pairs_;         // pair indices, batch by batch
  std::vector<int64_t> batch_starts_;  // batch k is pairs_[batch_starts_[k], batch_starts_[k + 1])
  std::vector<int64_t> order_;         // this epoch's batch order (empty: in order)
  PairBatchShape max_shape_;
  int64_t epoch_ = 0;
  int64_t batch_ = 0;
};

}  // namespace fwp
