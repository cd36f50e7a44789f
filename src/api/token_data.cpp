// C API of the token data source, a data source of kind FWP_DATA_TOKEN_FILE (fwp/data.h).
#include <memory>
#include <string>

#include "api/checks.h"
#include "api/guard.h"
#include "api/handles.h"
#include "core/error.h"
#include "data/token_data.h"
#include "fwp/fwp.h"

namespace {

// The token source behind a data handle; FWP_ERR_INVALID_ARGUMENT for a source of another kind.
fwp::TokenData& token_data(const fwp_data* data) {
  fwp::api::check_not_null(data, "data");
  auto* source = dynamic_cast<fwp::TokenData*>(data->impl.get());
  if (!source) {
    throw fwp::Error(FWP_ERR_INVALID_ARGUMENT,
                     "data is a '" + data->impl->kind_name() + "' data source, not a token data source");
  }
  return *source;
}

// One int64 getter of the token data source.
template <typename F>
fwp_status get(const char* function, const fwp_data* data, int64_t* out, const char* out_name, F&& value) {
  return fwp::api::guard(function, [&] {
    const fwp::TokenData& source = token_data(data);
    fwp::api::check_not_null(out, out_name);
    *out = value(source);
  });
}

}  // namespace

extern "C" {

FWP_API void fwp_token_data_config_init(fwp_token_data_config* config) {
  if (!config) return;
  *config = fwp_token_data_config{};
  config->struct_size = sizeof(fwp_token_data_config);
  config->batch_size = 8;
  config->segment_length = 256;
}

FWP_API fwp_status fwp_token_data_create(const char* token_path, const fwp_token_data_config* config,
                                         fwp_data** out) {
  return fwp::api::guard(__func__, [&] {
    fwp::api::check_not_null(out, "out");
    *out = nullptr;
    fwp::api::check_not_null(token_path, "token_path");
    fwp::api::check_not_null(config, "config");
    const fwp_token_data_config c = fwp::api::read_config(*config, fwp_token_data_config_init, "config");
    auto handle = std::make_unique<fwp_data>();
    handle->impl = std::make_unique<fwp::TokenData>(token_path, c.batch_size, c.segment_length);
    *out = handle.release();
  });
}

FWP_API fwp_status fwp_token_data_next(fwp_data* data, int32_t* inputs, int32_t* targets, int64_t count) {
  return fwp::api::guard(__func__, [&] { token_data(data).next(inputs, targets, count); });
}

FWP_API fwp_status fwp_token_data_get_config(const fwp_data* data, fwp_token_data_config* config) {
  return fwp::api::guard(__func__, [&] {
    const fwp::TokenData& source = token_data(data);
    fwp::api::check_not_null(config, "config");
    fwp_token_data_config full;
    fwp_token_data_config_init(&full);
    full.batch_size = source.batch_size();
    full.segment_length = source.segment_length();
    fwp::api::write_config(config, full, "config");
  });
}

FWP_API fwp_status fwp_token_data_epoch(const fwp_data* data, int64_t* epoch) {
  return get(__func__, data, epoch, "epoch", [](const fwp::TokenData& s) { return s.epoch(); });
}

FWP_API fwp_status fwp_token_data_position(const fwp_data* data, int64_t* segment) {
  return get(__func__, data, segment, "segment", [](const fwp::TokenData& s) { return s.segment(); });
}

FWP_API fwp_status fwp_token_data_segments_per_epoch(const fwp_data* data, int64_t* segments) {
  return get(__func__, data, segments, "segments", [](const fwp::TokenData& s) { return s.segments_per_epoch(); });
}

FWP_API fwp_status fwp_token_data_vocab_size(const fwp_data* data, int64_t* vocab_size) {
  return get(__func__, data, vocab_size, "vocab_size", [](const fwp::TokenData& s) { return s.vocab_size(); });
}

FWP_API fwp_status fwp_token_data_num_tokens(const fwp_data* data, int64_t* num_tokens) {
  return get(__func__, data, num_tokens, "num_tokens", [](const fwp::TokenData& s) { return s.num_tokens(); });
}

}  // extern "C"
