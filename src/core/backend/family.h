// What every op family of a backend shares: the device it runs on, and the
// default for an op the backend does not implement, which is a clear
// FWP_ERR_UNSUPPORTED error naming the op and the device (ggml's "supports
// op?"), never a crash. A backend overrides the ops it has; Backend<T>
// (core/backend.h) gathers every family.
#pragma once

#include <string>

#include "core/backend/types.h"
#include "core/error.h"

namespace fwp {

inline const char* device_name(Device device) { return device == Device::Cuda ? "CUDA" : "CPU"; }

class BackendFamily {
 public:
  virtual ~BackendFamily() = default;
  // Overridden once by the concrete backend; that one override serves every family.
  virtual Device device() const = 0;

 protected:
  [[noreturn]] void unsupported(const char* op) const {
    throw Error(FWP_ERR_UNSUPPORTED,
                std::string("the ") + op + " op is not supported on the " + device_name(device()) + " backend");
  }
};

}  // namespace fwp
