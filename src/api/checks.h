// Argument checks shared by the C API entry points (in addition to
// check_not_null in guard.h). They throw fwp::Error with a message that names
// the argument, for guard() to turn into a status.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <cstring>
#include <limits>
#include <string>

#include "api/guard.h"
#include "core/backend.h"
#include "core/error.h"
#include "core/limits.h"
#include "fwp/fwp.h"

namespace fwp::api {

using fwp::checked_mul;  // core/limits.h: the one bound on sizes (2^40 elements)
using fwp::kMaxElements;

// ---- config structs of every released header version ----------------------------
//
// A caller built against an older fwp.h passes a smaller config struct (fields
// are only ever appended; libgit2's rule). Each released layout is described by
// its sizeof and the bytes its fields cover: trailing padding of an old struct
// may hold a field of a newer one, so only field bytes are ever read. The
// layouts of earlier releases are kept in src/api/config_history.h.
struct ConfigLayout {
  size_t size;         // sizeof the struct in that release
  size_t field_bytes;  // leading bytes that hold its fields
};
// The layout of a frozen copy `Old` of a released struct whose last field is `last`.
#define FWP_CONFIG_LAYOUT(Old, last) \
  ::fwp::api::ConfigLayout { sizeof(Old), offsetof(Old, last) + sizeof(((Old*)nullptr)->last) }

// The number of leading bytes of the caller's struct that hold fields, for any
// struct_size from the smallest released one up to sizeof(C) (the largest
// release not larger than struct_size is honoured). Error(INVALID_ARGUMENT)
// for a size below every release (an uninitialised struct) or above sizeof(C)
// (a caller built against a newer fwp.h than this library).
template <typename C>
size_t config_field_bytes(uint32_t struct_size, const char* name, std::initializer_list<ConfigLayout> older) {
  size_t smallest = sizeof(C), honoured = 0;
  for (const ConfigLayout& l : older) {
    smallest = std::min(smallest, l.size);
    if (l.size <= struct_size) honoured = std::max(honoured, l.field_bytes);
  }
  if (struct_size == sizeof(C)) return sizeof(C);
  if (struct_size < smallest || struct_size > sizeof(C)) {
    std::string msg = std::string(name) + "->struct_size must be in [" + std::to_string(smallest) + ", " +
                      std::to_string(sizeof(C)) + "] (got " + std::to_string(struct_size) + ")";
    msg += struct_size < smallest ? "; fill the struct with its fwp_*_config_init() first"
                                  : "; the caller was built against a newer fwp.h than this library";
    throw Error(FWP_ERR_INVALID_ARGUMENT, msg);
  }
  return honoured;
}

// The caller's config as this library's struct: the defaults of `init` with
// the fields of the caller's version copied over.
template <typename C>
C read_config(const C& user, void (*init)(C*), const char* name, std::initializer_list<ConfigLayout> older = {}) {
  const size_t bytes = config_field_bytes<C>(user.struct_size, name, older);
  C config;
  init(&config);
  std::memcpy(static_cast<void*>(&config), &user, bytes);
  config.struct_size = sizeof(C);
  return config;
}

// Writes `full` into the caller's struct, only the fields its version has
// (struct_size is left as the caller set it).
template <typename C>
void write_config(C* user, const C& full, const char* name, std::initializer_list<ConfigLayout> older = {}) {
  const uint32_t struct_size = user->struct_size;
  const size_t bytes = config_field_bytes<C>(struct_size, name, older);
  std::memcpy(static_cast<void*>(user), &full, bytes);
  user->struct_size = struct_size;
}

// The integer stored in a C enum field. A caller may store any int there; in
// C++ reading an out-of-range value through the enum type is undefined, so the
// bytes are copied out instead.
template <typename E>
int32_t enum_value(const E& field) {
  static_assert(sizeof(E) == sizeof(int32_t), "C enums of fwp.h are int-sized");
  int32_t v;
  std::memcpy(&v, &field, sizeof v);
  return v;
}

// Requires value >= 1.
inline void check_positive(int64_t value, const char* name) {
  if (value < 1) {
    throw Error(FWP_ERR_INVALID_ARGUMENT,
                std::string(name) + " must be >= 1 (got " + std::to_string(value) + ")");
  }
}

// A C boolean flag argument or field: 0 or 1.
inline void check_flag(int64_t value, const char* name) {
  if (value != 0 && value != 1) {
    throw Error(FWP_ERR_INVALID_ARGUMENT,
                std::string(name) + " must be 0 or 1 (got " + std::to_string(value) + ")");
  }
}

// The NaN/Inf policy of fwp.h: values that become the library's own state
// (layer and model states set by the caller) must be finite. Checks all values
// before the caller changes anything; a NULL array (zeros) passes.
inline void check_finite(const float* data, int64_t count, const char* name) {
  if (!data) return;
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(data[i])) {
      throw Error(FWP_ERR_INVALID_ARGUMENT, std::string(name) + "[" + std::to_string(i) + "] is not finite (" +
                                                std::to_string(data[i]) + ")");
    }
  }
}

// Feature-map and rule enums between fwp.h and the internal configs, shared by
// the layer and model entry points. Internally softmax attention is a flag
// beside the feature map; `feature_map` must already be range-checked.
inline FeatureMap internal_feature_map(int feature_map) {
  switch (feature_map) {
    case FWP_FEATURE_MAP_FAVOR: return FeatureMap::Favor;
    case FWP_FEATURE_MAP_DPFP: return FeatureMap::Dpfp;
    default: return FeatureMap::Elu;  // elu, or softmax (where the map is unused)
  }
}
inline fwp_feature_map public_feature_map(bool softmax, FeatureMap feature_map) {
  if (softmax) return FWP_FEATURE_MAP_SOFTMAX;
  switch (feature_map) {
    case FeatureMap::Favor: return FWP_FEATURE_MAP_FAVOR;
    case FeatureMap::Dpfp: return FWP_FEATURE_MAP_DPFP;
    case FeatureMap::Elu: break;
  }
  return FWP_FEATURE_MAP_ELU;
}
inline UpdateRule internal_update_rule(int rule) {
  return rule == FWP_UPDATE_DELTA ? UpdateRule::Delta : UpdateRule::Sum;
}
inline fwp_update_rule public_update_rule(UpdateRule rule) {
  return rule == UpdateRule::Delta ? FWP_UPDATE_DELTA : FWP_UPDATE_SUM;
}

}  // namespace fwp::api
