// Seeded generator of the paper's synthetic associative-retrieval sequences
// (section 6.1), behind fwp_retrieval_data; the first DataSource.
//
// Setting 1 (capacity): L = S pairs; the keys are a random permutation of the
// S keys and the values an independent random permutation of the S values.
// Setting 2 (update): L = 2 S pairs, keys and values drawn uniformly with
// replacement; a query's target is the most recent value paired with its key.
// A setting-2 generator may be made for another L: the paper trains on 2 S
// pairs but evaluates on S pairs (the authors' get_all_queries draws one pair
// per key of the vocabulary).
//
// Draw order per sequence (part of the reproducibility contract): the L keys,
// then the L values, then (training queries only) the query. A permutation is
// a Fisher-Yates shuffle of 0..S-1 from the last position down.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "core/rng.h"
#include "data/data_source.h"

namespace fwp {
// Largest vocabulary accepted (the model's embedding alone is 2.2 S^2 values).
constexpr int64_t kMaxRetrievalKeys = int64_t(1) << 16;
// Longest setting-2 sequence accepted: the training length 2 S at the largest S.
constexpr int64_t kMaxRetrievalPairs = 2 * kMaxRetrievalKeys;
}  // namespace fwp

namespace fwp {

class RetrievalData final : public DataSource {
 public:
  // Throws Error(FWP_ERR_INVALID_ARGUMENT) unless setting is 1 or 2,
  // 2 <= num_keys <= kMaxRetrievalKeys, and num_pairs is 0 (the training length
  // of the setting), S for setting 1, or in [1, kMaxRetrievalPairs] for setting 2.
  RetrievalData(int32_t setting, int64_t num_keys, uint64_t seed, int64_t num_pairs = 0);

  // The length of training sequences: S for setting 1, 2 S for setting 2.
  static int64_t training_seq_len(int32_t setting, int64_t num_keys) {
    return setting == 2 ? 2 * num_keys : num_keys;
  }

  int32_t setting() const { return setting_; }
  int64_t num_keys() const { return num_keys_; }
  int64_t seq_len() const { return seq_len_; }

  // Draws batch_size sequences into host arrays: keys, values [B][L];
  // queries, targets [B][Q]. With queries_per_seq == 1, one key drawn uniformly
  // from the sequence's distinct keys (training). With Q > 1, the sequence's
  // distinct keys in order of first appearance, at most Q, then -1 padding with
  // target -1 (evaluation). Arguments are checked before anything is drawn.
  // With shards, batch_size is the global batch (a multiple of shard_count(),
  // else Error(FWP_ERR_INVALID_ARGUMENT)): all of it is drawn, as without
  // shards, and the arrays receive this shard's batch_size / shard_count()
  // rows, [batch_size / shard_count()][L] and [..][Q].
  void sample(int64_t batch_size, int64_t queries_per_seq, int32_t* keys, int32_t* values, int32_t* queries,
              int32_t* targets);

  // The generator's state: with setting() and num_keys() it resumes the exact
  // sequence of draws.
  Rng::State rng_state() const { return rng_.state(); }
  void set_rng_state(const Rng::State& state) { rng_.set_state(state); }

  // DataSource: kind "retrieval", config {"setting", "num_keys"} plus
  // "seq_len" where it is not the training length (so checkpoints written
  // before the length could be chosen still load), state {"rng"} (rng: the six
  // words of rng_state() as decimal strings).
  fwp_data_kind kind() const override { return FWP_DATA_RETRIEVAL; }
  std::string kind_name() const override { return "retrieval"; }
  nlohmann::json config_json() const override;
  nlohmann::json state_json() const override;
  void check_state(const nlohmann::json& state) const override;
  void restore_state(const nlohmann::json& state) override;

 private:
  int32_t setting_;
  int64_t num_keys_;
  int64_t seq_len_;
  Rng rng_;
};

}  // namespace fwp
