// The interface shared by complete networks with a loss (the retrieval model
// now, language and translation models later). The C API's fwp_model_*
// functions, the optimizers and the checkpoints work through it, so they treat
// every kind of model alike; each kind adds its own forward on top.
#pragma once

#include <memory>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "core/rng.h"
#include "fwp/model.h"
#include "nn/attention_state.h"
#include "nn/parameter.h"

namespace fwp {

class Context;

class Model {
 public:
  virtual ~Model() = default;

  virtual fwp_model_kind kind() const = 0;

  // Parameters and their gradients, in a fixed order. Fixed buffers (e.g. a
  // FAVOR+ projection) are included with trainable = false.
  virtual ParameterList<float>& parameters() = 0;
  virtual const ParameterList<float>& parameters() const = 0;

  // Training (true, the default) or evaluation mode.
  virtual void set_training(bool training) = 0;
  virtual bool training() const = 0;

  // Adds dLoss/dparams of the last forward to the gradients. Throws
  // Error(FWP_ERR_BAD_STATE) when there was no forward since the last backward.
  virtual void backward() = 0;

  // The model's settings as a JSON object with a "kind" member; checkpoints
  // store it, and the kind's factory in the registry (models/registry.h)
  // rebuilds the model from it.
  virtual nlohmann::json config_json() const = 0;

  // The state of the model's own random generator (e.g. FAVOR+ redraws), so a
  // resumed run draws the numbers an uninterrupted one would have drawn.
  virtual Rng::State rng_state() const = 0;
  virtual void set_rng_state(const Rng::State& state) = 0;

  // Makes this replica's dropout masks its own (data-parallel rank r uses
  // stream r; 0, the default, leaves the masks as a single process draws
  // them). The random generator itself, and so FAVOR+ redraws, is unchanged.
  // Models without dropout keep this default.
  virtual void set_dropout_stream(uint64_t /*stream*/) {}

  // What the model carries from one call to the next: one AttentionState spec
  // per attention layer, in the model's order (fwp_state_create() makes a
  // state of these on the model's backend). Kinds whose every forward starts
  // from zero (the retrieval model) keep this default: none, and
  // fwp_state_create() reports FWP_ERR_UNSUPPORTED.
  virtual std::vector<AttentionStateSpec> attention_state_specs() const { return {}; }

  // The context the model computes in (its backend holds the parameters).
  virtual const std::shared_ptr<Context>& context() const = 0;
};

}  // namespace fwp
