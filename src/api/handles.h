// The structs behind the opaque handles of fwp.h. A handle holds shared
// ownership of everything it needs (its context in particular), so handles can
// be destroyed in any order.
#pragma once

#include <memory>

#include "core/context.h"
#include "fwp/fwp.h"

namespace fwp {
template <typename T> class FastWeightLayer;  // nn/fast_weight_layer.h
class Model;                                   // nn/model.h (retrieval and later models)
class Optimizer;                               // train/optimizer.h
class DataSource;                              // data/data_source.h (retrieval and later kinds)
}  // namespace fwp

struct fwp_context {
  std::shared_ptr<fwp::Context> impl;
};

struct fwp_layer {
  std::shared_ptr<fwp::Context> context;
  std::unique_ptr<fwp::FastWeightLayer<float>> impl;
};

struct fwp_model {
  std::shared_ptr<fwp::Context> context;
  std::shared_ptr<fwp::Model> impl;
};

struct fwp_optimizer {
  std::shared_ptr<fwp::Context> context;
  std::unique_ptr<fwp::Optimizer> impl;
  const fwp_model* model = nullptr;  // the model it updates, or NULL for a layer
  const fwp_layer* layer = nullptr;  // the layer it updates, or NULL for a model
};

// One handle for every kind of data source (fwp_retrieval_data is the same type).
struct fwp_data {
  std::unique_ptr<fwp::DataSource> impl;
};
