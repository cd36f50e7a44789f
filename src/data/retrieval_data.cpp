#include "data/retrieval_data.h"

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/limits.h"
#include "io/rng_json.h"

namespace fwp {

RetrievalData::RetrievalData(int32_t setting, int64_t num_keys, uint64_t seed, int64_t num_pairs)
    : setting_(setting), num_keys_(num_keys), seq_len_(num_pairs), rng_(seed) {
  require(setting == 1 || setting == 2, FWP_ERR_INVALID_ARGUMENT,
          "setting must be 1 or 2 (got " + std::to_string(setting) + ")");
  require(num_keys >= 2 && num_keys <= kMaxRetrievalKeys, FWP_ERR_INVALID_ARGUMENT,
          "num_keys must be in [2, " + std::to_string(kMaxRetrievalKeys) + "] (got " + std::to_string(num_keys) +
              ")");
  if (num_pairs == 0) seq_len_ = training_seq_len(setting, num_keys);
  if (setting == 1) {
    // Setting 1 writes every key exactly once, so its length is fixed.
    require(seq_len_ == num_keys, FWP_ERR_INVALID_ARGUMENT,
            "num_pairs must be 0 or S = " + std::to_string(num_keys) +
                " for setting 1, whose sequences hold every key once (got " + std::to_string(num_pairs) + ")");
  } else {
    require(seq_len_ >= 1 && seq_len_ <= kMaxRetrievalPairs, FWP_ERR_INVALID_ARGUMENT,
            "num_pairs must be 0 (2 S) or in [1, " + std::to_string(kMaxRetrievalPairs) + "] for setting 2 (got " +
                std::to_string(num_pairs) + ")");
  }
}

void RetrievalData::sample(int64_t batch_size, int64_t queries_per_seq, int32_t* keys, int32_t* values,
                           int32_t* queries, int32_t* targets) {
  require(keys != nullptr, FWP_ERR_NULL_POINTER, "keys must not be NULL");
  require(values != nullptr, FWP_ERR_NULL_POINTER, "values must not be NULL");
  require(queries != nullptr, FWP_ERR_NULL_POINTER, "queries must not be NULL");
  require(targets != nullptr, FWP_ERR_NULL_POINTER, "targets must not be NULL");
  require(batch_size >= 1, FWP_ERR_INVALID_ARGUMENT, "batch_size must be >= 1 (got " + std::to_string(batch_size) + ")");
  require(batch_size % shard_count() == 0, FWP_ERR_INVALID_ARGUMENT,
          "batch_size must be a multiple of the data source's shard count " + std::to_string(shard_count()) +
              " (got " + std::to_string(batch_size) + "): it is the global batch, cut into equal shards");
  require(queries_per_seq >= 1, FWP_ERR_INVALID_ARGUMENT,
          "queries_per_seq must be >= 1 (got " + std::to_string(queries_per_seq) + ")");
  const int64_t L = seq_len(), S = num_keys_, Q = queries_per_seq;
  checked_mul(batch_size, std::max(L, Q), "batch_size * the ids per sequence");

  // Scratch, allocated before the first draw.
  std::vector<int32_t> latest(static_cast<size_t>(S));  // most recent value per key, -1 if absent
  std::vector<int32_t> order;                           // distinct keys by first appearance
  order.reserve(static_cast<size_t>(S));
  // This shard's rows of the global batch; the others are drawn into one
  // scratch row, so the generator moves on as it does without shards.
  const int64_t rows = batch_size / shard_count(), first = shard_index() * rows;
  std::vector<int32_t> other_ids;  // [keys | values] of a row of another shard
  int32_t other_query[2];          // its training query and target (evaluation queries draw nothing)
  if (rows < batch_size) other_ids.resize(2 * static_cast<size_t>(L));

  auto shuffle = [&](int32_t* out) {
    std::iota(out, out + S, 0);
    for (int64_t i = S - 1; i > 0; --i) {
      const auto j = static_cast<int64_t>(rng_.below(static_cast<uint64_t>(i + 1)));
      std::swap(out[i], out[j]);
    }
  };

  for (int64_t b = 0; b < batch_size; ++b) {
    const bool mine = b >= first && b < first + rows;
    int32_t* k = mine ? keys + (b - first) * L : other_ids.data();
    int32_t* v = mine ? values + (b - first) * L : other_ids.data() + L;
    if (setting_ == 1) {
      shuffle(k);
      shuffle(v);
    } else {
      for (int64_t i = 0; i < L; ++i) k[i] = static_cast<int32_t>(rng_.below(static_cast<uint64_t>(S)));
      for (int64_t i = 0; i < L; ++i) v[i] = static_cast<int32_t>(rng_.below(static_cast<uint64_t>(S)));
    }
    std::fill(latest.begin(), latest.end(), -1);
    order.clear();
    for (int64_t i = 0; i < L; ++i) {
      if (latest[static_cast<size_t>(k[i])] < 0) order.push_back(k[i]);
      latest[static_cast<size_t>(k[i])] = v[i];
    }
    if (!mine && Q > 1) continue;
    int32_t* q = mine ? queries + (b - first) * Q : other_query;
    int32_t* t = mine ? targets + (b - first) * Q : other_query + 1;
    if (Q == 1) {
      q[0] = order[static_cast<size_t>(rng_.below(order.size()))];
      t[0] = latest[static_cast<size_t>(q[0])];
    } else {
      for (int64_t j = 0; j < Q; ++j) {
        if (j < static_cast<int64_t>(order.size())) {
          q[j] = order[static_cast<size_t>(j)];
          t[j] = latest[static_cast<size_t>(q[j])];
        } else {
          q[j] = -1;
          t[j] = -1;
        }
      }
    }
  }
}

nlohmann::json RetrievalData::config_json() const {
  nlohmann::json config{{"setting", setting_}, {"num_keys", num_keys_}};
  if (seq_len_ != training_seq_len(setting_, num_keys_)) config["seq_len"] = seq_len_;
  return config;
}

nlohmann::json RetrievalData::state_json() const { return nlohmann::json{{"rng", rng_state_to_json(rng_.state())}}; }

namespace {
// The generator state inside state_json()'s object; Error(FWP_ERR_FORMAT) otherwise.
Rng::State parse_state(const nlohmann::json& state) {
  require(state.is_object() && state.contains("rng"), FWP_ERR_FORMAT,
          "the retrieval generator's state must be an object with an 'rng'");
  return rng_state_from_json(state["rng"], "the retrieval generator's rng");
}
}  // namespace

void RetrievalData::check_state(const nlohmann::json& state) const { (void)parse_state(state); }

void RetrievalData::restore_state(const nlohmann::json& state) { rng_.set_state(parse_state(state)); }

}  // namespace fwp
