#include "data/pair_data.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <numeric>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.h"

namespace fwp {
namespace {

std::string hex64(uint64_t v) {
  char text[17];
  std::snprintf(text, sizeof text, "%016" PRIx64, v);
  return text;
}

std::string str(int64_t v) { return std::to_string(v); }

// SplitMix64 (Steele, Lea & Flood 2014): fully specified, so an epoch's order
// is the same with every compiler and standard library.
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Uniform in [0, n) without modulo bias (rejection of the short last interval).
uint64_t uniform_below(uint64_t& state, uint64_t n) {
  const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  for (;;) {
    const uint64_t r = splitmix64(state);
    if (r < limit) return r % n;
  }
}

// (epoch, batch) of a stored state; Error(FWP_ERR_FORMAT) unless both are
// integers with epoch >= 0 and batch in [0, batches).
std::pair<int64_t, int64_t> parse_state(const nlohmann::json& state, int64_t batches) {
  require(state.is_object() && state.contains("epoch") && state.contains("batch") &&
              state["epoch"].is_number_integer() && state["batch"].is_number_integer(),
          FWP_ERR_FORMAT, "the pair data source's state must be an object with integers 'epoch' and 'batch'");
  const bool epoch_ok = state["epoch"].is_number_unsigned() || state["epoch"].get<int64_t>() >= 0;
  const bool batch_ok = state["batch"].is_number_unsigned() || state["batch"].get<int64_t>() >= 0;
  require(epoch_ok && batch_ok && state["epoch"].get<uint64_t>() <= uint64_t(INT64_MAX) &&
              state["batch"].get<uint64_t>() < uint64_t(batches),
          FWP_ERR_FORMAT,
          "the pair data source's state (epoch " + state["epoch"].dump() + ", batch " + state["batch"].dump() +
              ") is outside epoch >= 0, batch in [0, " + str(batches) + ")");
  return {state["epoch"].get<int64_t>(), state["batch"].get<int64_t>()};
}

}  // namespace

PairData::PairData(const std::string& path, const PairDataOptions& options) : options_(options) {
  require(options.max_tokens >= 1, FWP_ERR_INVALID_ARGUMENT,
          "config->max_tokens must be >= 1 (got " + str(options.max_tokens) + ")");
  require(options.max_sentences >= 0, FWP_ERR_INVALID_ARGUMENT,
          "config->max_sentences must be >= 0 (0: no limit; got " + str(options.max_sentences) + ")");
  file_ = std::make_unique<MappedPairFile>(path);
  const MappedPairFile& f = *file_;
  const int64_t P = f.num_pairs();

  pairs_.resize(static_cast<size_t>(P));
  std::iota(pairs_.begin(), pairs_.end(), int64_t(0));
  if (options.shuffle) {
    // Similar lengths together (fairseq orders by target, then source length); ties by index.
    std::sort(pairs_.begin(), pairs_.end(), [&f](int64_t a, int64_t b) {
      const auto ka = std::make_tuple(f.target_length(a), f.source_length(a), a);
      const auto kb = std::make_tuple(f.target_length(b), f.source_length(b), b);
      return ka < kb;
    });
  }
  // Greedy cut: a pair joins the open batch while the padded batch stays within the budget.
  int64_t rows = 0, longest = 0;
  for (int64_t k = 0; k < P; ++k) {
    const int64_t p = pairs_[static_cast<size_t>(k)];
    const int64_t S = f.source_length(p) + 1, T = f.target_length(p) + 1;
    const int64_t alone = std::max(S, T);
    require(alone <= options.max_tokens, FWP_ERR_INVALID_ARGUMENT,
            "pair " + str(p) + " (line-aligned pair of " + str(S - 1) + " source and " + str(T - 1) +
                " target tokens) needs " + str(alone) + " tokens with eos/bos, more than max_tokens = " +
                str(options.max_tokens) + " (raise max_tokens, or encode with a length limit)");
    const int64_t widest = std::max(longest, alone);
    // (rows + 1) * widest > max_tokens, without the product (it could overflow).
    const bool full = rows > 0 && (rows + 1 > options.max_tokens / widest ||
                                   (options.max_sentences > 0 && rows + 1 > options.max_sentences));
    if (rows == 0 || full) {
      batch_starts_.push_back(k);
      rows = 0;
      longest = 0;
    }
    ++rows;
    longest = std::max(longest, alone);
  }
  batch_starts_.push_back(P);
  compute_max_shape();
  make_epoch_order();
}

std::pair<int64_t, int64_t> PairData::part_of(int64_t batch) const {
  const int64_t begin = batch_starts_[static_cast<size_t>(batch)], end = batch_starts_[static_cast<size_t>(batch) + 1];
  // floor(i B / c) in 128 bits: i B overflows int64 for a large count.
  __extension__ typedef unsigned __int128 u128;
  const auto row = [&](int64_t i) {
    return static_cast<int64_t>(u128(i) * u128(end - begin) / u128(shard_count()));
  };
  return {begin + row(shard_index()), begin + row(shard_index() + 1)};
}

void PairData::compute_max_shape() {
  PairBatchShape m;
  for (int64_t b = 0; b < batches_per_epoch(); ++b) {
    const PairBatchShape s = shape_of(b);
    m.batch_size = std::max(m.batch_size, s.batch_size);
    m.source_length = std::max(m.source_length, s.source_length);
    m.target_length = std::max(m.target_length, s.target_length);
  }
  max_shape_ = m;
}

PairBatchShape PairData::shape_of(int64_t batch) const {
  PairBatchShape s;
  const auto [begin, end] = part_of(batch);
  s.batch_size = end - begin;
  for (int64_t k = begin; k < end; ++k) {
    const int64_t p = pairs_[static_cast<size_t>(k)];
    s.source_length = std::max(s.source_length, file_->source_length(p) + 1);
    s.target_length = std::max(s.target_length, file_->target_length(p) + 1);
  }
  return s;
}

void PairData::make_epoch_order() {
  order_.clear();
  if (!options_.shuffle) return;
  const int64_t K = batches_per_epoch();
  order_.resize(static_cast<size_t>(K));
  std::iota(order_.begin(), order_.end(), int64_t(0));
  // The generator of an epoch: the seed mixed with the epoch, so epochs differ and any can be recreated.
  uint64_t state = options_.seed;
  state = splitmix64(state) ^ (static_cast<uint64_t>(epoch_) * 0xd1b54a32d192ed03ull);
  for (int64_t i = K - 1; i > 0; --i) {
    const auto j = static_cast<int64_t>(uniform_below(state, static_cast<uint64_t>(i) + 1));
    std::swap(order_[static_cast<size_t>(i)], order_[static_cast<size_t>(j)]);
  }
}

void PairData::next(const PairBatchShape& shape, int32_t* source, int32_t* source_lengths, int32_t* target_input,
                    int32_t* target_output, int32_t* target_lengths, int64_t* pair_indices) {
  // An empty part (B = 0, a batch with fewer pairs than shards) writes nothing, so its arrays may be NULL.
  if (shape.batch_size != 0) {
    require(source != nullptr, FWP_ERR_NULL_POINTER, "source must not be NULL");
    require(source_lengths != nullptr, FWP_ERR_NULL_POINTER, "source_lengths must not be NULL");
    require(target_input != nullptr, FWP_ERR_NULL_POINTER, "target_input must not be NULL");
    require(target_output != nullptr, FWP_ERR_NULL_POINTER, "target_output must not be NULL");
    require(target_lengths != nullptr, FWP_ERR_NULL_POINTER, "target_lengths must not be NULL");
  }
  const int64_t b = current_batch();
  const PairBatchShape want = shape_of(b);
  require(shape.batch_size == want.batch_size && shape.source_length == want.source_length &&
              shape.target_length == want.target_length,
          FWP_ERR_SHAPE_MISMATCH,
          "the next batch is B = " + str(want.batch_size) + ", S = " + str(want.source_length) +
              ", T = " + str(want.target_length) + " (fwp_pair_data_peek()), not B = " + str(shape.batch_size) +
              ", S = " + str(shape.source_length) + ", T = " + str(shape.target_length));
  const MappedPairFile& f = *file_;
  const int32_t pad = f.info().pad_id, bos = f.info().bos_id, eos = f.info().eos_id;
  const int64_t S = want.source_length, T = want.target_length;
  const int64_t begin = part_of(b).first;
  for (int64_t r = 0; r < want.batch_size; ++r) {
    const int64_t p = pairs_[static_cast<size_t>(begin + r)];
    const int64_t n = f.source_length(p), m = f.target_length(p);
    int32_t* x = source + r * S;
    int32_t* y_in = target_input + r * T;
    int32_t* y_out = target_output + r * T;
    std::copy(f.source(p), f.source(p) + n, x);
    x[n] = eos;
    std::fill(x + n + 1, x + S, pad);
    y_in[0] = bos;
    std::copy(f.target(p), f.target(p) + m, y_in + 1);
    std::copy(f.target(p), f.target(p) + m, y_out);
    y_out[m] = eos;
    std::fill(y_in + m + 1, y_in + T, pad);
    std::fill(y_out + m + 1, y_out + T, pad);
    source_lengths[r] = static_cast<int32_t>(n + 1);
    target_lengths[r] = static_cast<int32_t>(m + 1);
    if (pair_indices) pair_indices[r] = p;
  }
  if (++batch_ == batches_per_epoch()) {
    batch_ = 0;
    ++epoch_;
    make_epoch_order();
  }
}

void PairData::reset(int64_t epoch) {
  require(epoch >= 0, FWP_ERR_INVALID_ARGUMENT, "epoch must be >= 0 (got " + str(epoch) + ")");
  epoch_ = epoch;
  batch_ = 0;
  make_epoch_order();
}

nlohmann::json PairData::config_json() const {
  return nlohmann::json{{"max_tokens", options_.max_tokens},
                        {"max_sentences", options_.max_sentences},
                        {"shuffle", options_.shuffle},
                        {"seed", hex64(options_.seed)},
                        {"num_pairs", file_->num_pairs()},
                        {"checksum", hex64(file_->info().checksum)}};
}

nlohmann::json PairData::state_json() const { return nlohmann::json{{"epoch", epoch_}, {"batch", batch_}}; }

void PairData::check_state(const nlohmann::json& state) const { (void)parse_state(state, batches_per_epoch()); }

void PairData::restore_state(const nlohmann::json& state) {
  const auto [epoch, batch] = parse_state(state, batches_per_epoch());
  epoch_ = epoch;
  make_epoch_order();
  batch_ = batch;
}

}  // namespace fwp
