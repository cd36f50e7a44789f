// Versioning, status strings and the thread-local last-error message.
#include <cstdint>
#include <cstring>
#include <string>

#include "api/guard.h"
#include "fwp/fwp.h"

#define FWP_STRINGIFY_(x) #x
#define FWP_STRINGIFY(x) FWP_STRINGIFY_(x)
#define FWP_HEADER_VERSION_STRING \
  FWP_STRINGIFY(FWP_VERSION_MAJOR) "." FWP_STRINGIFY(FWP_VERSION_MINOR) "." FWP_STRINGIFY(FWP_VERSION_PATCH)

namespace {

constexpr bool same_string(const char* a, const char* b) {
  while (*a && *a == *b) {
    ++a;
    ++b;
  }
  return *a == *b;
}

#ifdef FWP_VERSION_STRING
// The build system's project version and the header's macros must agree, or the
// SONAME and fwp_version() would disagree.
static_assert(same_string(FWP_VERSION_STRING, FWP_HEADER_VERSION_STRING),
              "CMake project version and FWP_VERSION_* in fwp.h differ");
#endif

// The message of the last failed call on this thread. A std::string per thread
// keeps the pointer returned by fwp_last_error_message() valid until the next
// failed call on the same thread.
thread_local std::string t_last_error;

}  // namespace

namespace fwp::api {

// Never throws (guard() calls it from a noexcept function).
void set_last_error(const char* function, const std::string& message) {
  try {
    t_last_error.clear();
    if (function && *function) {
      t_last_error += function;
      t_last_error += ": ";
    }
    t_last_error += message;
  } catch (...) {
    // Out of memory while recording the message: keep whatever fits rather
    // than letting an exception escape the C boundary.
  }
}

}  // namespace fwp::api

extern "C" {

FWP_API void fwp_version(int* major, int* minor, int* patch) {
  if (major) *major = FWP_VERSION_MAJOR;
  if (minor) *minor = FWP_VERSION_MINOR;
  if (patch) *patch = FWP_VERSION_PATCH;
}

FWP_API const char* fwp_version_string(void) { return FWP_HEADER_VERSION_STRING; }

FWP_API const char* fwp_status_string(fwp_status status) {
  // Callers may pass any int; read it as one (an out-of-range value read
  // through the enum type would be undefined behaviour in C++).
  int32_t value;
  static_assert(sizeof value == sizeof status, "C enums of fwp.h are int-sized");
  std::memcpy(&value, &status, sizeof value);
  switch (value) {
    case FWP_OK: return "success";
    case FWP_ERR_INVALID_ARGUMENT: return "invalid argument";
    case FWP_ERR_NULL_POINTER: return "null pointer";
    case FWP_ERR_SHAPE_MISMATCH: return "shape mismatch";
    case FWP_ERR_OUT_OF_RANGE: return "out of range";
    case FWP_ERR_BAD_STATE: return "bad state";
    case FWP_ERR_UNSUPPORTED: return "unsupported";
    case FWP_ERR_DEVICE: return "device error";
    case FWP_ERR_OUT_OF_MEMORY: return "out of memory";
    case FWP_ERR_IO: return "I/O error";
    case FWP_ERR_FORMAT: return "bad file format";
    case FWP_ERR_CONTEXT_MISMATCH: return "context mismatch";
    case FWP_ERR_INTERNAL: return "internal error";
    case FWP_ERR_DISTRIBUTED: return "distributed group failed";
  }
  return "unknown status";
}

FWP_API const char* fwp_last_error_message(void) { return t_last_error.c_str(); }

FWP_API void fwp_clear_error(void) { t_last_error.clear(); }

}  // extern "C"
