// What the modules share about their parameters: how they declare one in
// the owner's ParameterList, and the init step that draws a parameter's
// values on the host in row-major order (so a seed gives the same values on
// every backend and in float and double) and uploads them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "nn/parameter.h"

namespace fwp {
namespace nn_init {

// Declares a parameter (a fixed buffer when !trainable) and returns its index in `params`. The one place where
// modules touch ParameterList's declaration API: today add() (which allocates
// at once); with the flat parameter block this becomes declare(), and the
// owner allocates the block after every module is constructed, then calls the
// modules' init.
template <typename T>
int64_t declare_parameter(ParameterList<T>& params, const std::shared_ptr<Backend<T>>& backend, std::string name,
                          std::vector<int64_t> shape, bool trainable = true) {
  params.add(backend, std::move(name), std::move(shape), trainable);
  return params.size() - 1;
}

// value[i] = draw() for i in row-major order.
template <typename T, typename Draw>
void fill(Backend<T>& backend, Parameter<T>& p, Draw&& draw) {
  const int64_t n = p.numel();
  std::vector<T> host(static_cast<size_t>(n));
  for (T& v : host) v = static_cast<T>(draw());
  if (n > 0) backend.upload(p.value.data(), host.data(), n);
}

}  // namespace nn_init
}  // namespace fwp
