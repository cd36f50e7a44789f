// C API of contexts.
#include <memory>

#include "api/checks.h"
#include "api/guard.h"
#include "api/handles.h"
#include "core/context.h"
#include "fwp/fwp.h"

extern "C" {

FWP_API void fwp_context_config_init(fwp_context_config* config) {
  if (!config) return;
  *config = fwp_context_config{};
  config->struct_size = sizeof(fwp_context_config);
  config->device = FWP_DEVICE_CPU;
  config->device_index = 0;
  config->num_threads = 0;
  config->seed = 42;
  config->log_callback = nullptr;
  config->log_user_data = nullptr;
  config->log_level = FWP_LOG_WARN;
}

FWP_API fwp_status fwp_context_create(const fwp_context_config* config, fwp_context** out) {
  return fwp::api::guard(__func__, [&] {
    fwp::api::check_not_null(out, "out");
    *out = nullptr;
    fwp_context_config defaults;
    fwp_context_config_init(&defaults);
    const fwp_context_config c = config ? fwp::api::read_config(*config, fwp_context_config_init, "config") : defaults;
    auto handle = std::make_unique<fwp_context>();
    handle->impl = std::make_shared<fwp::Context>(c);
    *out = handle.release();
  });
}

FWP_API void fwp_context_destroy(fwp_context* ctx) { delete ctx; }

FWP_API fwp_status fwp_context_get_device(const fwp_context* ctx, fwp_device* device) {
  return fwp::api::guard(__func__, [&] {
    fwp::api::check_not_null(ctx, "ctx");
    fwp::api::check_not_null(device, "device");
    *device = ctx->impl->device() == fwp::Device::Cuda ? FWP_DEVICE_CUDA : FWP_DEVICE_CPU;
  });
}

FWP_API fwp_status fwp_context_get_num_threads(const fwp_context* ctx, int32_t* num_threads) {
  return fwp::api::guard(__func__, [&] {
    fwp::api::check_not_null(ctx, "ctx");
    fwp::api::check_not_null(num_threads, "num_threads");
    *num_threads = ctx->impl->num_threads();
  });
}

FWP_API int fwp_cuda_is_built(void) { return FWP_HAVE_CUDA ? 1 : 0; }

FWP_API fwp_status fwp_cuda_device_count(int32_t* count) {
  return fwp::api::guard(__func__, [&] {
    fwp::api::check_not_null(count, "count");
#if FWP_HAVE_CUDA
    *count = fwp::cuda_device_count();
#else
    *count = 0;
#endif
  });
}

}  // extern "C"
