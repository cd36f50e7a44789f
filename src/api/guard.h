// The C boundary. Every exported function body runs inside fwp::api::guard(),
// which turns fwp::Error, std::bad_alloc and any other exception into a status
// and the thread-local message, so that nothing thrown ever crosses into C.
#pragma once

#include <exception>
#include <new>
#include <string>

#include "core/error.h"
#include "fwp/fwp.h"

namespace fwp::api {

// Records `message` (prefixed with the function name) as the calling thread's last error.
void set_last_error(const char* function, const std::string& message);

template <typename F>
fwp_status guard(const char* function, F&& body) noexcept {
  try {
    body();
    return FWP_OK;
  } catch (const Error& e) {
    set_last_error(function, e.what());
    return e.status();
  } catch (const std::bad_alloc&) {
    set_last_error(function, "out of host memory");
    return FWP_ERR_OUT_OF_MEMORY;
  } catch (const std::exception& e) {
    set_last_error(function, std::string("internal error: ") + e.what());
    return FWP_ERR_INTERNAL;
  } catch (...) {
    set_last_error(function, "internal error: unknown exception");
    return FWP_ERR_INTERNAL;
  }
}

// Argument checks used by every entry point; they throw fwp::Error.
inline void check_not_null(const void* p, const char* name) {
  if (!p) throw Error(FWP_ERR_NULL_POINTER, std::string(name) + " must not be NULL");
}

}  // namespace fwp::api
