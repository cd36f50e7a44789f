// C API of the retrieval data generator, a data source of kind FWP_DATA_RETRIEVAL.
#include <memory>
#include <string>

#include "api/guard.h"
#include "api/handles.h"
#include "core/error.h"
#include "data/retrieval_data.h"
#include "fwp/fwp.h"

namespace {

// The generator behind a data handle; FWP_ERR_INVALID_ARGUMENT for a source of another kind.
fwp::RetrievalData& retrieval(const fwp_data* data) {
  fwp::api::check_not_null(data, "data");
  auto* generator = dynamic_cast<fwp::RetrievalData*>(data->impl.get());
  if (!generator) {
    throw fwp::Error(FWP_ERR_INVALID_ARGUMENT, "data is a '" + data->impl->kind_name() +
                                                   "' data source, not a retrieval generator");
  }
  return *generator;
}

}  // namespace

extern "C" {

FWP_API fwp_status fwp_retrieval_data_create(int32_t setting, int64_t num_keys, uint64_t seed,
                                             fwp_retrieval_data** out) {
  return fwp::api::guard(__func__, [&] {
    fwp::api::check_not_null(out, "out");
    *out = nullptr;
    auto handle = std::make_unique<fwp_data>();
    handle->impl = std::make_unique<fwp::RetrievalData>(setting, num_keys, seed);
    *out = handle.release();
  });
}

FWP_API fwp_status fwp_retrieval_data_create_with_length(int32_t setting, int64_t num_keys, int64_t num_pairs,
                                                         uint64_t seed, fwp_retrieval_data** out) {
  return fwp::api::guard(__func__, [&] {
    fwp::api::check_not_null(out, "out");
    *out = nullptr;
    auto handle = std::make_unique<fwp_data>();
    handle->impl = std::make_unique<fwp::RetrievalData>(setting, num_keys, seed, num_pairs);
    *out = handle.release();
  });
}

FWP_API void fwp_retrieval_data_destroy(fwp_retrieval_data* data) { fwp_data_destroy(data); }

FWP_API fwp_status fwp_retrieval_data_seq_len(const fwp_retrieval_data* data, int64_t* seq_len) {
  return fwp::api::guard(__func__, [&] {
    const fwp::RetrievalData& generator = retrieval(data);
    fwp::api::check_not_null(seq_len, "seq_len");
    *seq_len = generator.seq_len();
  });
}

FWP_API fwp_status fwp_retrieval_data_sample(fwp_retrieval_data* data, int64_t batch_size, int64_t queries_per_seq,
                                             int32_t* keys, int32_t* values, int32_t* queries, int32_t* targets) {
  return fwp::api::guard(__func__, [&] {
    retrieval(data).sample(batch_size, queries_per_seq, keys, values, queries, targets);
  });
}

}  // extern "C"
