// C API of parallel text (fwp/parallel.h): pair files (text/pair_file.h) and
// the pair data source, a data source of kind FWP_DATA_PARALLEL_TEXT (data/pair_data.h).
#include <algorithm>
#include <memory>
#include <string>

#include "api/checks.h"
#include "api/guard.h"
#include "api/handles.h"
#include "core/error.h"
#include "data/pair_data.h"
#include "fwp/fwp.h"
#include "text/pair_file.h"

namespace {

// The pair source behind a data handle; FWP_ERR_INVALID_ARGUMENT for a source of another kind.
fwp::PairData& pair_data(const fwp_data* data) {
  fwp::api::check_not_null(data, "data");
  auto* source = dynamic_cast<fwp::PairData*>(data->impl.get());
  if (!source) {
    throw fwp::Error(FWP_ERR_INVALID_ARGUMENT,
                     "data is a '" + data->impl->kind_name() + "' data source, not a pair data source");
  }
  return *source;
}

fwp::PairPolicy policy(const fwp_pair_policy& field, const char* name) {
  const int32_t v = fwp::api::enum_value(field);
  if (v != FWP_PAIR_SKIP && v != FWP_PAIR_ERROR) {
    throw fwp::Error(FWP_ERR_INVALID_ARGUMENT, std::string(name) + " must be FWP_PAIR_SKIP (0) or FWP_PAIR_ERROR (1) (got " +
                                                   std::to_string(v) + ")");
  }
  return v == FWP_PAIR_SKIP ? fwp::PairPolicy::kSkip : fwp::PairPolicy::kError;
}

// Writes a file description into the caller's struct (only the fields of its version).
void write_info(fwp_pair_info* out, const fwp::PairFileInfo& i) {
  fwp::api::check_not_null(out, "info");
  fwp_pair_info full{};
  full.struct_size = sizeof(fwp_pair_info);
  full.vocab_size = i.vocab_size;
  full.tokenizer_vocab_size = i.tokenizer_vocab_size;
  full.pad_id = i.pad_id;
  full.bos_id = i.bos_id;
  full.eos_id = i.eos_id;
  full.unk_id = i.unk_id;
  full.num_pairs = i.num_pairs;
  full.source_tokens = i.source_tokens;
  full.target_tokens = i.target_tokens;
  full.lines = i.lines;
  full.skipped_empty = i.skipped_empty;
  full.skipped_too_long = i.skipped_too_long;
  full.max_source_tokens = i.max_source_tokens;
  full.max_target_tokens = i.max_target_tokens;
  full.longest_source = i.longest_source;
  full.longest_target = i.longest_target;
  fwp::api::write_config(out, full, "info");
}

// One int64 getter of the pair data source.
template <typename F>
fwp_status get(const char* function, const fwp_data* data, int64_t* out, const char* out_name, F&& value) {
  return fwp::api::guard(function, [&] {
    const fwp::PairData& source = pair_data(data);
    fwp::api::check_not_null(out, out_name);
    *out = value(source);
  });
}

}  // namespace

extern "C" {

FWP_API void fwp_pair_encode_config_init(fwp_pair_encode_config* config) {
  if (!config) return;
  *config = fwp_pair_encode_config{};
  config->struct_size = sizeof(fwp_pair_encode_config);
  config->max_source_tokens = 0;
  config->max_target_tokens = 0;
  config->too_long = FWP_PAIR_SKIP;
  config->empty_lines = FWP_PAIR_SKIP;
}

FWP_API fwp_status fwp_pair_special_ids(const fwp_tokenizer* tokenizer, int64_t* vocab_size, int32_t* pad_id,
                                        int32_t* bos_id, int32_t* eos_id, int32_t* unk_id) {
  return fwp::api::guard(__func__, [&] {
    fwp::api::check_not_null(tokenizer, "tokenizer");
    const fwp::PairSpecials s = fwp::pair_specials(*tokenizer->impl);
    if (vocab_size) *vocab_size = s.vocab_size;
    if (pad_id) *pad_id = s.pad_id;
    if (bos_id) *bos_id = s.bos_id;
    if (eos_id) *eos_id = s.eos_id;
    if (unk_id) *unk_id = s.unk_id;
  });
}

FWP_API fwp_status fwp_pair_file_encode(const fwp_tokenizer* tokenizer, const char* source_path,
                                        const char* target_path, const char* pair_path,
                                        const fwp_pair_encode_config* config, fwp_pair_info* info) {
  return fwp::api::guard(__func__, [&] {
    fwp::api::check_not_null(tokenizer, "tokenizer");
    fwp::api::check_not_null(source_path, "source_path");
    fwp::api::check_not_null(target_path, "target_path");
    fwp::api::check_not_null(pair_path, "pair_path");
    fwp::api::check_not_null(config, "config");
    const fwp_pair_encode_config c = fwp::api::read_config(*config, fwp_pair_encode_config_init, "config");
    if (info) (void)fwp::api::config_field_bytes<fwp_pair_info>(info->struct_size, "info", {});  // before any work
    fwp::PairEncodeOptions options;
    options.max_source_tokens = c.max_source_tokens;
    options.max_target_tokens = c.max_target_tokens;
    options.too_long = policy(c.too_long, "config->too_long");
    options.empty = policy(c.empty_lines, "config->empty_lines");
    if (options.max_source_tokens < 0 || options.max_target_tokens < 0) {
      throw fwp::Error(FWP_ERR_INVALID_ARGUMENT,
                       std::string("config->") + (options.max_source_tokens < 0 ? "max_source_tokens" : "max_target_tokens") +
                           " must be >= 0 (0: no limit; got " +
                           std::to_string(std::min(options.max_source_tokens, options.max_target_tokens)) + ")");
    }
    const fwp::PairFileInfo written =
        fwp::encode_pair_file(*tokenizer->impl, source_path, target_path, pair_path, options);
    if (info) write_info(info, written);
  });
}

FWP_API fwp_status fwp_pair_file_info(const char* path, fwp_pair_info* info) {
  return fwp::api::guard(__func__, [&] {
    fwp::api::check_not_null(path, "path");
    fwp::api::check_not_null(info, "info");
    (void)fwp::api::config_field_bytes<fwp_pair_info>(info->struct_size, "info", {});
    const fwp::MappedPairFile file(path);
    write_info(info, file.info());
  });
}

FWP_API void fwp_pair_data_config_init(fwp_pair_data_config* config) {
  if (!config) return;
  *config = fwp_pair_data_config{};
  config->struct_size = sizeof(fwp_pair_data_config);
  config->max_tokens = 4096;
  config->max_sentences = 0;
  config->shuffle = 1;
  config->seed = 1;
}

FWP_API fwp_status fwp_pair_data_create(const char* pair_path, const fwp_pair_data_config* config, fwp_data** out) {
  return fwp::api::guard(__func__, [&] {
    fwp::api::check_not_null(out, "out");
    *out = nullptr;
    fwp::api::check_not_null(pair_path, "pair_path");
    fwp::api::check_not_null(config, "config");
    const fwp_pair_data_config c = fwp::api::read_config(*config, fwp_pair_data_config_init, "config");
    fwp::api::check_flag(c.shuffle, "config->shuffle");
    fwp::PairDataOptions options;
    options.max_tokens = c.max_tokens;
    options.max_sentences = c.max_sentences;
    options.shuffle = c.shuffle == 1;
    options.seed = c.seed;
    auto handle = std::make_unique<fwp_data>();
    handle->impl = std::make_unique<fwp::PairData>(pair_path, options);
    *out = handle.release();
  });
}

FWP_API fwp_status fwp_pair_data_get_config(const fwp_data* data, fwp_pair_data_config* config) {
  return fwp::api::guard(__func__, [&] {
    const fwp::PairData& source = pair_data(data);
    fwp::api::check_not_null(config, "config");
    fwp_pair_data_config full;
    fwp_pair_data_config_init(&full);
    full.max_tokens = source.options().max_tokens;
    full.max_sentences = source.options().max_sentences;
    full.shuffle = source.options().shuffle ? 1 : 0;
    full.seed = source.options().seed;
    fwp::api::write_config(config, full, "config");
  });
}

FWP_API fwp_status fwp_pair_data_info(const fwp_data* data, fwp_pair_info* info) {
  return fwp::api::guard(__func__, [&] { write_info(info, pair_data(data).file().info()); });
}

FWP_API fwp_status fwp_pair_data_peek(const fwp_data* data, int64_t* batch_size, int64_t* source_length,
                                      int64_t* target_length) {
  return fwp::api::guard(__func__, [&] {
    const fwp::PairData& source = pair_data(data);
    fwp::api::check_not_null(batch_size, "batch_size");
    fwp::api::check_not_null(source_length, "source_length");
    fwp::api::check_not_null(target_length, "target_length");
    const fwp::PairBatchShape s = source.peek();
    *batch_size = s.batch_size;
    *source_length = s.source_length;
    *target_length = s.target_length;
  });
}

FWP_API fwp_status fwp_pair_data_max_shape(const fwp_data* data, int64_t* batch_size, int64_t* source_length,
                                           int64_t* target_length) {
  return fwp::api::guard(__func__, [&] {
    const fwp::PairData& source = pair_data(data);
    fwp::api::check_not_null(batch_size, "batch_size");
    fwp::api::check_not_null(source_length, "source_length");
    fwp::api::check_not_null(target_length, "target_length");
    const fwp::PairBatchShape& s = source.max_shape();
    *batch_size = s.batch_size;
    *source_length = s.source_length;
    *target_length = s.target_length;
  });
}

FWP_API fwp_status fwp_pair_data_next(fwp_data* data, int64_t batch_size, int64_t source_length,
                                      int64_t target_length, int32_t* source, int32_t* source_lengths,
                                      int32_t* target_input, int32_t* target_output, int32_t* target_lengths,
                                      int64_t* pair_indices) {
  return fwp::api::guard(__func__, [&] {
    fwp::PairData& pairs = pair_data(data);
    fwp::PairBatchShape shape;
    shape.batch_size = batch_size;
    shape.source_length = source_length;
    shape.target_length = target_length;
    pairs.next(shape, source, source_lengths, target_input, target_output, target_lengths, pair_indices);
  });
}

FWP_API fwp_status fwp_pair_data_reset(fwp_data* data, int64_t epoch) {
  return fwp::api::guard(__func__, [&] { pair_data(data).reset(epoch); });
}

FWP_API fwp_status fwp_pair_data_epoch(const fwp_data* data, int64_t* epoch) {
  return get(__func__, data, epoch, "epoch", [](const fwp::PairData& s) { return s.epoch(); });
}

FWP_API fwp_status fwp_pair_data_position(const fwp_data* data, int64_t* batch) {
  return get(__func__, data, batch, "batch", [](const fwp::PairData& s) { return s.batch(); });
}

FWP_API fwp_status fwp_pair_data_batches_per_epoch(const fwp_data* data, int64_t* batches) {
  return get(__func__, data, batches, "batches", [](const fwp::PairData& s) { return s.batches_per_epoch(); });
}

FWP_API fwp_status fwp_pair_data_get_pair(const fwp_data* data, int64_t index, int32_t* source,
                                          int64_t source_capacity, int64_t* source_length, int32_t* target,
                                          int64_t target_capacity, int64_t* target_length) {
  return fwp::api::guard(__func__, [&] {
    const fwp::MappedPairFile& file = pair_data(data).file();
    fwp::api::check_not_null(source_length, "source_length");
    fwp::api::check_not_null(target_length, "target_length");
    if (source_capacity < 0 || target_capacity < 0) {
      throw fwp::Error(FWP_ERR_INVALID_ARGUMENT, std::string(source_capacity < 0 ? "source" : "target") +
                                                     "_capacity must be >= 0");
    }
    if (index < 0 || index >= file.num_pairs()) {
      throw fwp::Error(FWP_ERR_OUT_OF_RANGE, "index " + std::to_string(index) + " is outside the file's pairs [0, " +
                                                 std::to_string(file.num_pairs()) + ")");
    }
    const int64_t n = file.source_length(index), m = file.target_length(index);
    *source_length = n;
    *target_length = m;
    if (source_capacity == 0 && target_capacity == 0) return;
    fwp::api::check_not_null(source, "source");
    fwp::api::check_not_null(target, "target");
    if (source_capacity < n || target_capacity < m) {
      throw fwp::Error(FWP_ERR_SHAPE_MISMATCH, "pair " + std::to_string(index) + " has " + std::to_string(n) +
                                                   " source and " + std::to_string(m) +
                                                   " target ids; the capacities are " +
                                                   std::to_string(source_capacity) + " and " +
                                                   std::to_string(target_capacity));
    }
    std::copy(file.source(index), file.source(index) + n, source);
    std::copy(file.target(index), file.target(index) + m, target);
  });
}

}  // extern "C"
