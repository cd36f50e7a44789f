// C API of data sources of every kind (fwp/data.h); each kind's own functions
// are in their own file (retrieval_data.cpp).
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

}  // extern "C"
