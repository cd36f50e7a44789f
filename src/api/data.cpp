// C API of data sources of every kind (fwp/data.h); each kind's own functions
// are in their own files (retrieval_data.cpp, token_data.cpp, parallel.cpp).
#include "api/guard.h"
#include "api/handles.h"
#include "data/data_source.h"
#include "fwp/fwp.h"

extern "C" {

FWP_API void fwp_data_destroy(fwp_data* data) { delete data; }

FWP_API fwp_status fwp_data_get_kind(const fwp_data* data, fwp_data_kind* kind) {
  return fwp::api::guard(__func__, [&] {
    fwp::api::check_not_null(data, "data");
    fwp::api::check_not_null(kind, "kind");
    *kind = data->impl->kind();
  });
}

FWP_API fwp_status fwp_data_set_shard(fwp_data* data, int64_t index, int64_t count) {
  return fwp::api::guard(__func__, [&] {
    fwp::api::check_not_null(data, "data");
    data->impl->set_shard(index, count);
  });
}

FWP_API fwp_status fwp_data_get_shard(const fwp_data* data, int64_t* index, int64_t* count) {
  return fwp::api::guard(__func__, [&] {
    fwp::api::check_not_null(data, "data");
    fwp::api::check_not_null(index, "index");
    fwp::api::check_not_null(count, "count");
    *index = data->impl->shard_index();
    *count = data->impl->shard_count();
  });
}

}  // extern "C"
