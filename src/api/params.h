// Parameter access shared by the C API of layers and models (fwp_layer_param_*,
// fwp_model_param_*): describe, find, read, write and read the gradient of a
// parameter in a ParameterList. The functions throw fwp::Error and are meant to
// be called inside fwp::api::guard(); the caller checks its own handle pointer.
//
// The lists may hold any scalar type T (float in the library, double in some
// tests); values cross the C boundary as float.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "api/guard.h"
#include "core/error.h"
#include "fwp/fwp.h"
#include "nn/parameter.h"

namespace fwp::api {

// Throws FWP_ERR_OUT_OF_RANGE unless 0 <= index < params.size().
template <typename T>
const Parameter<T>& checked_param(const ParameterList<T>& params, int64_t index) {
  if (index < 0 || index >= params.size()) {
    throw Error(FWP_ERR_OUT_OF_RANGE, "index must be in [0, " + std::to_string(params.size()) + ") (got " +
                                          std::to_string(index) + ")");
  }
  return params[index];
}

template <typename T>
Parameter<T>& checked_param(ParameterList<T>& params, int64_t index) {
  const ParameterList<T>& cparams = params;
  return const_cast<Parameter<T>&>(checked_param(cparams, index));
}

// Throws FWP_ERR_SHAPE_MISMATCH unless count equals the parameter's numel.
template <typename T>
void check_param_count(const Parameter<T>& p, int64_t count) {
  if (count != p.numel()) {
    throw Error(FWP_ERR_SHAPE_MISMATCH, "count must equal the number of elements of '" + p.name + "' (" +
                                            std::to_string(p.numel()) + ") (got " + std::to_string(count) +
                                            ")");
  }
}

// Fills *info for parameter `index`. The name points into the list, which must
// outlive the use of info->name.
template <typename T>
void param_info(const ParameterList<T>& params, int64_t index, fwp_param_info* info) {
  check_not_null(info, "info");
  const Parameter<T>& p = checked_param(params, index);
  require(!p.shape.empty() && p.shape.size() <= FWP_MAX_DIMS, FWP_ERR_INTERNAL,
          "parameter '" + p.name + "' has an unsupported number of dimensions");
  fwp_param_info out{};
  out.name = p.name.c_str();
  out.ndim = static_cast<int32_t>(p.shape.size());
  for (size_t i = 0; i < p.shape.size(); ++i) out.shape[i] = p.shape[i];
  out.numel = p.numel();
  out.trainable = p.trainable ? 1 : 0;
  *info = out;
}

// The index of the parameter called `name`; FWP_ERR_INVALID_ARGUMENT if there is none.
template <typename T>
int64_t param_index(const ParameterList<T>& params, const char* name) {
  check_not_null(name, "name");
  const int64_t index = params.find(name);
  if (index < 0) throw Error(FWP_ERR_INVALID_ARGUMENT, "name: no parameter is called '" + std::string(name) + "'");
  return index;
}

namespace detail {
template <typename T>
void download_as_float(const BlockView<T>& buffer, float* data, int64_t count) {
  const std::vector<T> host = buffer.to_host();
  for (int64_t i = 0; i < count; ++i) data[i] = static_cast<float>(host[static_cast<size_t>(i)]);
}
}  // namespace detail

// Copies the values of parameter `index` into data (count must equal numel).
template <typename T>
void get_param(const ParameterList<T>& params, int64_t index, float* data, int64_t count) {
  check_not_null(data, "data");
  const Parameter<T>& p = checked_param(params, index);
  check_param_count(p, count);
  detail::download_as_float(p.value, data, count);
}

// Copies the accumulated gradient of parameter `index` into data.
template <typename T>
void get_grad(const ParameterList<T>& params, int64_t index, float* data, int64_t count) {
  check_not_null(data, "data");
  const Parameter<T>& p = checked_param(params, index);
  check_param_count(p, count);
  detail::download_as_float(p.grad, data, count);
}

// Overwrites parameter `index` with data. Every value is checked before anything
// is written, so a rejected call (NaN or infinity) leaves the parameter unchanged.
template <typename T>
void set_param(ParameterList<T>& params, int64_t index, const float* data, int64_t count) {
  check_not_null(data, "data");
  Parameter<T>& p = checked_param(params, index);
  check_param_count(p, count);
  std::vector<T> host(static_cast<size_t>(count));
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(data[i])) {
      throw Error(FWP_ERR_INVALID_ARGUMENT, "data[" + std::to_string(i) + "] is not finite (parameter '" +
                                                p.name + "')");
    }
    host[static_cast<size_t>(i)] = static_cast<T>(data[i]);
  }
  p.value.from_host(host.data(), count);
}

}  // namespace fwp::api
