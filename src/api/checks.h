// Argument checks shared by the C API entry points (in addition to
// check_not_null in guard.h). They throw fwp::Error with a message that names
// the argument, for guard() to turn into a status.
#pragma once

#include <cstdint>
#include <cstring>
#include <limits>
#include <string>

#include "api/guard.h"
#include "core/backend.h"
#include "core/error.h"
#include "fwp/fwp.h"

namespace fwp::api {

// The largest number of elements one array argument or internal buffer may
// have (2^40). Larger requests are certainly mistakes (4 TiB of floats) and are
// rejected before anything is allocated.
constexpr int64_t kMaxElements = int64_t(1) << 40;

// Config structs must come from the matching fwp_*_config_init() of this
// version of the header: a smaller struct_size means an old or uninitialised
// struct, a larger one fields this library would silently ignore.
inline void check_struct_size(uint32_t struct_size, size_t expected, const char* name) {
  if (struct_size != expected) {
    std::string msg = std::string(name) + "->struct_size must be " + std::to_string(expected) + " (got " +
                      std::to_string(struct_size) + ")";
    msg += struct_size < expected ? "; fill the struct with its fwp_*_config_init() first"
                                  : "; the caller was built against a newer fwp.h than this library";
    throw Error(FWP_ERR_INVALID_ARGUMENT, msg);
  }
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

// a * b for non-negative sizes; FWP_ERR_INVALID_ARGUMENT when the product
// exceeds kMaxElements (which also rules out int64 overflow).
inline int64_t checked_mul(int64_t a, int64_t b, const char* what) {
  if (a < 0 || b < 0) throw Error(FWP_ERR_INVALID_ARGUMENT, std::string(what) + " is negative");
  if (a != 0 && b > kMaxElements / a) {
    throw Error(FWP_ERR_INVALID_ARGUMENT, std::string(what) + " is too large (more than 2^40 elements)");
  }
  return a * b;
}

inline int64_t checked_mul(int64_t a, int64_t b, int64_t c, const char* what) {
  return checked_mul(checked_mul(a, b, what), c, what);
}

inline int64_t checked_mul(int64_t a, int64_t b, int64_t c, int64_t d, const char* what) {
  return checked_mul(checked_mul(a, b, c, what), d, what);
}

// A C boolean flag argument or field: 0 or 1.
inline void check_flag(int64_t value, const char* name) {
  if (value != 0 && value != 1) {
    throw Error(FWP_ERR_INVALID_ARGUMENT,
                std::string(name) + " must be 0 or 1 (got " + std::to_string(value) + ")");
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
