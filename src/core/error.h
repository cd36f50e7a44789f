// Errors inside the library are C++ exceptions of type fwp::Error carrying an
// fwp_status; the C boundary (src/api) catches them and turns them into a
// status plus the thread-local message. Nothing else may throw across it.
#pragma once

#include <stdexcept>
#include <string>

#include "fwp/common.h"  // fwp_status

namespace fwp {

class Error : public std::runtime_error {
 public:
  Error(fwp_status status, const std::string& message) : std::runtime_error(message), status_(status) {}
  fwp_status status() const noexcept { return status_; }

 private:
  fwp_status status_;
};

// Throws Error(status, message) when `condition` is false. The message should
// name the argument and the problem, e.g. "d_head must be >= 1 (got 0)".
inline void require(bool condition, fwp_status status, const std::string& message) {
  if (!condition) throw Error(status, message);
}

}  // namespace fwp
