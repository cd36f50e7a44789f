// The state behind an fwp_context handle: the device backend, thread count,
// seed and logger. Layers and models hold a shared_ptr to it, which is what
// lets a user destroy handles in any order.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "core/backend.h"
#include "core/rng.h"
#include "fwp/context.h"

namespace fwp {

class Context {
 public:
  // Validates the config and creates the backend; throws Error.
  explicit Context(const fwp_context_config& config);

  Device device() const { return device_; }
  int num_threads() const { return num_threads_; }
  uint64_t seed() const { return seed_; }
  const std::shared_ptr<Backend<float>>& backend() const { return backend_; }

  // A fresh generator for a new object: objects created in the same order from
  // contexts with the same seed get the same streams.
  Rng make_rng();

  void log(fwp_log_level level, const std::string& message) const;

 private:
  Device device_ = Device::Cpu;
  int num_threads_ = 1;
  uint64_t seed_ = 42;
  fwp_log_callback log_callback_ = nullptr;
  void* log_user_data_ = nullptr;
  fwp_log_level log_level_ = FWP_LOG_WARN;
  std::shared_ptr<Backend<float>> backend_;
  std::mutex rng_mutex_;
  Rng rng_;
};

}  // namespace fwp
