/**
 * \file fwp.h
 * \brief The public C API of fwp: fast weight programmers (linear transformers)
 *        on the CPU and on NVIDIA GPUs.
 *
 * This umbrella header includes every public header of the library (one per
 * concept: common, context, layer, state, model, data, text, retrieval, lm,
 * seq2seq, parallel, optimizer, checkpoint, distributed, metrics). It is plain C99 and can be used from C, C++, Rust,
 * Julia or any language with a C FFI.
 *
 * \section conventions Conventions
 * - Every fallible function returns an ::fwp_status. On failure,
 *   fwp_last_error_message() returns a message naming the argument and the
 *   problem. A failed call leaves every handle usable and unchanged unless the
 *   function documents otherwise.
 * - Objects are opaque handles created by `fwp_*_create` and released by the
 *   matching `fwp_*_destroy`; destroying NULL is a no-op. Handles keep the
 *   objects they depend on alive internally, so handles may be destroyed in any
 *   order (e.g. a context before the layers created from it).
 * - Config structs start with `struct_size`; always fill them with the matching
 *   `fwp_*_config_init()` first and then change the fields you need. This lets
 *   later versions append fields without breaking old callers.
 * - Arrays are plain row-major `float` (or `int32_t`) buffers in host memory,
 *   owned by the caller, with shapes given explicitly. Every buffer argument is
 *   accompanied by its element count or by sizes that determine it; the library
 *   checks them. With a CUDA context the library copies host buffers to and from
 *   the device itself.
 * - No C++ exception, abort or exit crosses this API.
 *
 * \section nonfinite NaN and infinity
 * fwp propagates non-finite values through computations and refuses them
 * where they would become stored state:
 * - Compute functions propagate, like BLAS: a NaN or infinity in an input
 *   (fwp_layer_forward(), fwp_layer_step(), fwp_layer_backward()'s dy, the
 *   *_with_state variants) gives NaN or infinity in the outputs, the loss and
 *   the gradients, with FWP_OK. They do not scan their inputs.
 * - Setters refuse with FWP_ERR_INVALID_ARGUMENT and change nothing:
 *   fwp_layer_set_param(), fwp_model_set_param(), fwp_layer_set_state(),
 *   fwp_state_set(); likewise every floating-point config field must be finite
 *   (epsilons at least FLT_MIN, see the fields).
 * - fwp_optimizer_step() refuses a gradient holding NaN or infinity with
 *   FWP_ERR_INVALID_ARGUMENT: no parameter, moment or step count changes, and
 *   the message names the first such parameter ("the gradient of 'name' is not
 *   finite"). Zero the gradients (fwp_optimizer_zero_grad()) to skip the step.
 * - fwp_checkpoint_save() refuses a model or optimizer holding a non-finite
 *   value with FWP_ERR_INVALID_ARGUMENT (the previous file is kept), and
 *   fwp_checkpoint_load() / fwp_model_load() refuse a file holding one (or a
 *   negative second moment) with FWP_ERR_FORMAT, so every file saved loads.
 * The `fwp` program stops a run at the first non-finite loss or gradient and
 * names it (exit code 1).
 *
 * \section threads Thread safety
 * Distinct handles may be used from distinct threads at the same time. One
 * handle (and the objects created from it that share its state, e.g. an
 * optimizer and its model) must not be used by two threads at once. The error
 * message is thread-local. A context may be shared by objects used on
 * different threads.
 */
#ifndef FWP_FWP_H
#define FWP_FWP_H

#include "fwp/common.h"
#include "fwp/context.h"
#include "fwp/layer.h"
#include "fwp/model.h"
#include "fwp/state.h"
#include "fwp/data.h"
#include "fwp/text.h"
#include "fwp/parallel.h"
#include "fwp/retrieval.h"
#include "fwp/lm.h"
#include "fwp/seq2seq.h"
#include "fwp/optimizer.h"
#include "fwp/checkpoint.h"
#include "fwp/distributed.h"
#include "fwp/metrics.h"

#endif /* FWP_FWP_H */
