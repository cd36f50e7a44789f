#include "data/token_data.h"

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "core/limits.h"

namespace fwp {
namespace {

std::string hex64(uint64_t v) {
  char text[17];
  std::snprintf(text, sizeof text, "%016" PRIx64, v);
  return text;
}

// (epoch, segment) of a stored state; Error(FWP_ERR_FORMAT) unless both are
// integers with epoch >= 0 and segment in [0, segments_per_epoch).
std::pair<int64_t, int64_t> parse_state(const nlohmann::json& state, int64_t segments_per_epoch) {
  require(state.is_object() && state.contains("epoch") && state.contains("segment") &&
              state["epoch"].is_number_integer() && state["segment"].is_number_integer(),
          FWP_ERR_FORMAT, "the token data source's state must be an object with integers 'epoch' and 'segment'");
  const bool epoch_ok = state["epoch"].is_number_unsigned() || state["epoch"].get<int64_t>() >= 0;
  const bool segment_ok = state["segment"].is_number_unsigned() || state["segment"].get<int64_t>() >= 0;
  require(epoch_ok && segment_ok && state["epoch"].get<uint64_t>() <= uint64_t(INT64_MAX) &&
              state["segment"].get<uint64_t>() < uint64_t(segments_per_epoch),
          FWP_ERR_FORMAT,
          "the token data source's state (epoch " + state["epoch"].dump() + ", segment " + state["segment"].dump() +
              ") is outside epoch >= 0, segment in [0, " + std::to_string(segments_per_epoch) + ")");
  return {state["epoch"].get<int64_t>(), state["segment"].get<int64_t>()};
}

}  // namespace

TokenData::TokenData(const std::string& path, int64_t batch_size, int64_t segment_length)
    : batch_size_(batch_size), segment_length_(segment_length) {
  require(batch_size >= 1, FWP_ERR_INVALID_ARGUMENT,
          "config->batch_size must be >= 1 (got " + std::to_string(batch_size) + ")");
  require(segment_length >= 1, FWP_ERR_INVALID_ARGUMENT,
          "config->segment_length must be >= 1 (got " + std::to_string(segment_length) + ")");
  (void)checked_mul(batch_size, segment_length, "config->batch_size * config->segment_length");
  file_ = std::make_unique<MappedTokenFile>(path);
  const int64_t n = file_->header().num_tokens;
  stream_length_ = n / batch_size;
  require(stream_length_ >= segment_length + 1, FWP_ERR_INVALID_ARGUMENT,
          "token file '" + path + "' has " + std::to_string(n) + " tokens, too few for batch_size " +
              std::to_string(batch_size) + " streams of segment_length + 1 = " + std::to_string(segment_length + 1) +
              " tokens each (at least " + std::to_string(batch_size * (segment_length + 1)) + " needed)");
  segments_per_epoch_ = (stream_length_ - 1) / segment_length;
}

void TokenData::next(int32_t* inputs, int32_t* targets, int64_t count) {
  require(inputs != nullptr, FWP_ERR_NULL_POINTER, "inputs must not be NULL");
  require(targets != nullptr, FWP_ERR_NULL_POINTER, "targets must not be NULL");
  const int64_t rows = shard_rows(), first = shard_index() * rows;
  const int64_t want = rows * segment_length_;
  require(count == want, FWP_ERR_SHAPE_MISMATCH,
          shard_count() == 1
              ? "count must be batch_size * segment_length = " + std::to_string(want) + " (got " +
                    std::to_string(count) + ")"
              : "count must be (batch_size / shard count) * segment_length = " + std::to_string(rows) + " * " +
                    std::to_string(segment_length_) + " = " + std::to_string(want) + " (got " +
                    std::to_string(count) + ")");
  const int32_t* tokens = file_->tokens();
  const size_t row = static_cast<size_t>(segment_length_);
  for (int64_t r = 0; r < rows; ++r) {
    const int32_t* start = tokens + (first + r) * stream_length_ + segment_ * segment_length_;
    std::memcpy(inputs + r * segment_length_, start, row * sizeof(int32_t));
    std::memcpy(targets + r * segment_length_, start + 1, row * sizeof(int32_t));
  }
  if (++segment_ == segments_per_epoch_) {
    segment_ = 0;
    ++epoch_;
  }
}

void TokenData::check_shard(int64_t count) const {
  require(batch_size_ % count == 0, FWP_ERR_INVALID_ARGUMENT,
          "count must divide the token data source's batch_size " + std::to_string(batch_size_) + " (got " +
              std::to_string(count) + "): each shard reads batch_size / count whole streams");
}

nlohmann::json TokenData::config_json() const {
  return nlohmann::json{{"batch_size", batch_size_},
                        {"segment_length", segment_length_},
                        {"num_tokens", num_tokens()},
                        {"vocab_size", vocab_size()},
                        {"checksum", hex64(file_->header().checksum)}};
}

nlohmann::json TokenData::state_json() const { return nlohmann::json{{"epoch", epoch_}, {"segment", segment_}}; }

void TokenData::check_state(const nlohmann::json& state) const { (void)parse_state(state, segments_per_epoch_); }

void TokenData::restore_state(const nlohmann::json& state) {
  const auto [epoch, segment] = parse_state(state, segments_per_epoch_);
  epoch_ = epoch;
  segment_ = segment;
}

}  // namespace fwp
