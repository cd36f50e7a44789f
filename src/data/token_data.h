// The token data source (FWP_DATA_TOKEN_FILE): a memory-mapped token file
// (text/token_file.h) read as the authors' LMOrderedIterator reads a corpus.
//
// Layout: with N tokens and batch size B, the first B * floor(N / B) tokens
// are cut into B contiguous streams of S = floor(N / B) tokens; stream b is
// tokens [b S, (b + 1) S). A segment of length T is, for every stream, the
// inputs x[b][t] = stream_b[i + t] and the next-token targets
// y[b][t] = stream_b[i + t + 1], t < T, for i = 0, T, 2 T, ... An epoch is the
// K = floor((S - 1) / T) full segments; the authors' last, shorter segment
// (fewer than T positions per stream) is not produced, since batches here
// have a fixed shape, and neither are the N mod B tokens after the streams
// (the authors drop those too). After segment K - 1 the next epoch starts again
// at segment 0: the order is fixed, as the authors' ordered iterator's is.
//
// Shards: B is the global number of streams and must be a multiple of the
// shard count c; shard i reads streams [i B / c, (i + 1) B / c) at the same
// global position, so the c shards of a segment are the whole batch.
//
// Checkpoints: kind "token_file", config {"batch_size", "segment_length",
// "num_tokens", "vocab_size", "checksum" (16 hex digits)} so that a state of
// another file or layout is refused, state {"epoch", "segment"}.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "data/data_source.h"
#include "text/token_file.h"

namespace fwp {

class TokenData final : public DataSource {
 public:
  // Maps and verifies the file (Error(FWP_ERR_IO / FWP_ERR_FORMAT)); batch_size
  // and segment_length >= 1, and the file must hold at least one segment:
  // floor(N / B) >= T + 1 (Error(FWP_ERR_INVALID_ARGUMENT) naming the sizes).
  TokenData(const std::string& path, int64_t batch_size, int64_t segment_length);

  // The global number of streams B (the config's batch_size).
  int64_t batch_size() const { return batch_size_; }
  // The streams this shard reads: B / shard_count().
  int64_t shard_rows() const { return batch_size_ / shard_count(); }
  int64_t segment_length() const { return segment_length_; }
  int64_t stream_length() const { return stream_length_; }
  int64_t segments_per_epoch() const { return segments_per_epoch_; }
  int64_t vocab_size() const { return file_->header().vocab_size; }
  int64_t num_tokens() const { return file_->header().num_tokens; }
  int64_t epoch() const { return epoch_; }
  int64_t segment() const { return segment_; }

  // Fills inputs and targets, each [shard_rows()][T] (count == shard_rows() * T,
  // else Error(FWP_ERR_SHAPE_MISMATCH)), with this shard's streams of the
  // current segment and moves to the next.
  void next(int32_t* inputs, int32_t* targets, int64_t count);

  fwp_data_kind kind() const override { return FWP_DATA_TOKEN_FILE; }
  std::string kind_name() const override { return "token_file"; }
  nlohmann::json config_json() const override;
  nlohmann::json state_json() const override;
  void check_state(const nlohmann::json& state) const override;
  void restore_state(const nlohmann::json& state) override;

 protected:
  // B must be a multiple of count.
  void check_shard(int64_t count) const override;

 private:
  std::unique_ptr<MappedTokenFile> file_;
  int64_t batch_size_;
  int64_t segment_length_;
  int64_t stream_length_ = 0;
  int64_t segments_per_epoch_ = 0;
  int64_t epoch_ = 0;
  int64_t segment_ = 0;
};

}  // namespace fwp
