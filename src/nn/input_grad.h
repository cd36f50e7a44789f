// How a module's backward writes the gradient of its input: overwrite it, or
// add to what is there (when the input also feeds another branch, e.g. a
// residual connection, whose gradient the caller has already put in dx).
// Parameter gradients always accumulate.
#pragma once

namespace fwp {

enum class InputGrad { Overwrite, Accumulate };

}  // namespace fwp
