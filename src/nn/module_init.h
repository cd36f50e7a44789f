// The init step the modules share: draw a parameter's values on the host in
// row-major order (so a seed gives the same values on every backend and in
// float and double) and upload them.
#pragma once

#include <vector>

#include "core/backend.h"
#include "nn/parameter.h"

namespace fwp {
namespace nn_init {

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
