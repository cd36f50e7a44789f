// What the modules share about their parameters: how they declare one in
// the owner's ParameterList (declare -> the owner allocates -> init), and the
// init step that draws a parameter's values on the host in row-major order
// (so a seed gives the same values on every backend and in float and double)
// and uploads them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "nn/parameter.h"

namespace fwp {
namespace nn_init {

// Declares a parameter (a fixed buffer when !trainable) in `params` and
// returns its index. Modules only declare: the owner constructs every module,
// allocates the list's one block (params.allocate), then calls the modules'
// init. `backend` is the module's own (kept in the signature so that every
// module declares the same way; the block lives on the backend the owner
// allocates on).
template <typename T>
int64_t declare_parameter(ParameterList<T>& params, const std::shared_ptr<Backend<T>>& backend, std::string name,
                          std::vector<int64_t> shape, bool trainable = true) {
  require(backend != nullptr, FWP_ERR_INTERNAL, "declaring '" + name + "' needs the module's backend");
  params.declare(std::move(name), std::move(shape), trainable);
  return params.size() - 1;
}

// value[i] = draw() for i in row-major order.
template <typename T, typename Draw>
void fill(Backend<T>& backend, Parameter<T>& p, Draw&& draw) {
  const int64_t n = p.numel();
  require(p.value.size() == n, FWP_ERR_INTERNAL,
          "'" + p.name + "' is initialised before its list is allocated: construct every module, then " +
              "allocate the ParameterList, then init");
  std::vector<T> host(static_cast<size_t>(n));
  for (T& v : host) v = static_cast<T>(draw());
  if (n > 0) backend.upload(p.value.data(), host.data(), n);
}

}  // namespace nn_init
}  // namespace fwp
