// The compute interface that modules and models are written against (the idea
// of ggml's backends): the ops of one device, grouped in families, one header
// each under core/backend/ and named like the files that implement them in
// src/ops (CPU, templated so tests can run in double precision) and cuda/
// (float only). A backend implements the memory family and whichever ops it
// has; any other op reports FWP_ERR_UNSUPPORTED naming the op and the device,
// so a new op (or a new backend) does not have to be written everywhere at once.
// Every pointer is a device pointer of the backend that received the call; all
// arrays are dense and row-major.
//
// Conventions for every op:
// - Gradient outputs are OVERWRITTEN, never accumulated, unless the name says
//   "accumulate". The caller sums contributions itself (axpy).
// - Arguments are already validated by the caller (modules/models check user
//   input); ops only assert internal invariants.
// - "streams" = independent sequences = batch * heads; a [streams, T, d] array
//   holds stream s, step t at offset (s * T + t) * d.
#pragma once

#include <cstdint>
#include <memory>

#include "core/backend/activation.h"
#include "core/backend/adaptive_softmax.h"
#include "core/backend/attn_norm.h"
#include "core/backend/cross_entropy.h"
#include "core/backend/dropout.h"
#include "core/backend/elementwise.h"
#include "core/backend/embedding.h"
#include "core/backend/family.h"
#include "core/backend/fast_weight.h"
#include "core/backend/feature_map.h"
#include "core/backend/layer_norm.h"
#include "core/backend/layout.h"
#include "core/backend/linear.h"
#include "core/backend/loss.h"
#include "core/backend/memory.h"
#include "core/backend/optimizer_ops.h"
#include "core/backend/padded_attention.h"
#include "core/backend/retrieval_ops.h"
#include "core/backend/schedule.h"
#include "core/backend/softmax_attention.h"
#include "core/backend/types.h"
#include "core/error.h"

namespace fwp {

// Every op family of one device. A concrete backend derives from this and
// overrides device(), the memory ops and the ops it implements.
template <typename T>
class Backend : public MemoryOps<T>,
                public LinearOps<T>,
                public LayoutOps<T>,
                public ElementwiseOps<T>,
                public FeatureMapOps<T>,
                public FastWeightOps<T>,
                public AttnNormOps<T>,
                public SoftmaxAttentionOps<T>,
                public PaddedAttentionOps<T>,
                public EmbeddingOps<T>,
                public RetrievalOps<T>,
                public LossOps<T>,
                public OptimizerOps<T>,
                public ActivationOps<T>,
                public LayerNormOps<T>,
                public CrossEntropyOps<T>,
                public DropoutOps<T>,
                public AdaptiveSoftmaxOps<T>,
                public ScheduleOps<T> {
 public:
  Device device() const override = 0;
};

// The CPU backend; num_threads >= 1.
template <typename T>
std::shared_ptr<Backend<T>> make_cpu_backend(int num_threads);

}  // namespace fwp

#if defined(FWP_HAVE_CUDA) && FWP_HAVE_CUDA
namespace fwp {
// The CUDA backend (cuda/); throws Error(FWP_ERR_DEVICE) when the device is unusable.
std::shared_ptr<Backend<float>> make_cuda_backend(int device_index);
// Number of visible CUDA devices; 0 when the driver reports none or fails.
int cuda_device_count();
}  // namespace fwp
#endif
