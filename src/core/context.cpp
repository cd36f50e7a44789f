#include "core/context.h"

#include <cstring>
#include <string>

#include "core/thread_pool.h"

namespace fwp {

namespace {

// The int stored in a C enum field, read without going through the enum type
// (an out-of-range value read as the enum would be undefined behaviour in C++).
template <typename E>
int32_t raw_enum(const E& field) {
  static_assert(sizeof(E) == sizeof(int32_t), "C enums of fwp.h are int-sized");
  int32_t v;
  std::memcpy(&v, &field, sizeof v);
  return v;
}

}  // namespace

Context::Context(const fwp_context_config& config) {
  const int32_t device = raw_enum(config.device);
  require(device == FWP_DEVICE_CPU || device == FWP_DEVICE_CUDA, FWP_ERR_OUT_OF_RANGE,
          "config->device must be FWP_DEVICE_CPU or FWP_DEVICE_CUDA (got " + std::to_string(device) + ")");
  require(config.num_threads >= 0, FWP_ERR_INVALID_ARGUMENT,
          "config->num_threads must be >= 0 (got " + std::to_string(config.num_threads) + ")");
  const int32_t log_level = raw_enum(config.log_level);
  require(log_level >= FWP_LOG_DEBUG && log_level <= FWP_LOG_OFF, FWP_ERR_OUT_OF_RANGE,
          "config->log_level must be in [FWP_LOG_DEBUG, FWP_LOG_OFF] (got " + std::to_string(log_level) + ")");
  require(config.device_index >= 0, FWP_ERR_OUT_OF_RANGE,
          "config->device_index must be >= 0 (got " + std::to_string(config.device_index) + ")");

  if (config.num_threads > 0) {
    num_threads_ = config.num_threads;
  } else {
    std::string bad_variable;
    num_threads_ = default_num_threads(&bad_variable);
    require(bad_variable.empty(), FWP_ERR_INVALID_ARGUMENT,
            "the environment variable " + bad_variable +
                " is not a thread count (an integer in [1, 4096]); unset it or fix it");
  }
  seed_ = config.seed;
  log_callback_ = config.log_callback;
  log_user_data_ = config.log_user_data;
  log_level_ = config.log_level;
  rng_.reseed(seed_);

  if (config.device == FWP_DEVICE_CPU) {
    device_ = Device::Cpu;
    backend_ = make_cpu_backend<float>(num_threads_);
  } else {
#if FWP_HAVE_CUDA
    const int count = cuda_device_count();
    require(count > 0, FWP_ERR_DEVICE, "no CUDA device is present");
    require(config.device_index < count, FWP_ERR_OUT_OF_RANGE,
            "config->device_index must be < " + std::to_string(count) + ", the number of CUDA devices (got " +
                std::to_string(config.device_index) + ")");
    device_ = Device::Cuda;
    backend_ = make_cuda_backend(config.device_index);
#else
    throw Error(FWP_ERR_UNSUPPORTED, "this build of fwp has no CUDA backend");
#endif
  }
  log(FWP_LOG_DEBUG, std::string("context created: device ") + device_name(device_) + ", " +
                         std::to_string(num_threads_) + " threads, seed " + std::to_string(seed_));
}

Rng Context::make_rng() {
  std::lock_guard<std::mutex> lock(rng_mutex_);
  return rng_.split();
}

void Context::log(fwp_log_level level, const std::string& message) const {
  if (!log_callback_ || log_level_ == FWP_LOG_OFF || level < log_level_ || level >= FWP_LOG_OFF) return;
  log_callback_(level, message.c_str(), log_user_data_);
}

}  // namespace fwp
