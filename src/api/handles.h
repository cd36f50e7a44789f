// The structs behind the opaque handles of fwp.h. A handle holds shared
// ownership of everything it needs (its context in particular), so handles can
// be destroyed in any order.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "core/context.h"
#include "fwp/fwp.h"

namespace fwp {
template <typename T> class FastWeightLayer;  // nn/fast_weight_layer.h
template <typename T> class AttentionState;   // nn/attention_state.h
class Model;                                   // nn/model.h (retrieval and later models)
class Optimizer;                               // train/optimizer.h
class DataSource;                              // data/data_source.h (retrieval and later kinds)
class Tokenizer;                               // text/tokenizer.h (word level, SentencePiece)
class Communicator;                            // dist/communicator.h (MPI, NCCL, the caller's all-reduce)
}  // namespace fwp

struct fwp_context {
  std::shared_ptr<fwp::Context> impl;
};

struct fwp_layer {
  std::shared_ptr<fwp::Context> context;
  // Shared with the optimizers and states made for the layer.
  std::shared_ptr<fwp::FastWeightLayer<float>> impl;
};

struct fwp_model {
  std::shared_ptr<fwp::Context> context;
  std::shared_ptr<fwp::Model> impl;
};

struct fwp_optimizer {
  std::shared_ptr<fwp::Context> context;
  // Holds shared ownership of the layer or model implementation it updates
  // (not of its handle, which the caller may destroy first).
  std::unique_ptr<fwp::Optimizer> impl;
};

// The run state of one layer, or of every attention layer of a model in the
// model's order (nn/attention_state.h; api/state.cpp). All have the same batch.
struct fwp_state {
  std::shared_ptr<fwp::Context> context;
  std::shared_ptr<const void> owner;  // the layer or model implementation it was made for
  std::vector<fwp::AttentionState<float>> layers;
};

// One handle for every kind of data source (fwp_retrieval_data is the same type).
struct fwp_data {
  std::unique_ptr<fwp::DataSource> impl;
};

// A tokenizer of any kind (api/text.cpp); immutable once built.
struct fwp_tokenizer {
  std::shared_ptr<const fwp::Tokenizer> impl;
};

// A data-parallel group (api/distributed.cpp). Once a collective has failed the
// group is broken: every later collective reports the same failure.
struct fwp_dist {
  std::shared_ptr<fwp::Context> context;
  std::unique_ptr<fwp::Communicator> comm;
  int64_t bucket_elements = 0;
  std::string broken;              // why the group is broken; "" while it works
  std::vector<float> host_staging; // device gradients staged for a host engine
};
