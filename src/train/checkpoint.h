// Checkpoints: a model of any kind, optionally its optimizer and the state of
// a data source of any kind, in one safetensors file (io/safetensors.h).
//
// Tensors: the model's parameters under their own names, the optimizer's
// moments as "optimizer/<parameter>/<exp_avg|exp_avg_sq|momentum_buffer>",
// all F32. `__metadata__` (every value a string; JSON values as their text):
//   format          "fwp-checkpoint" (what marks the file as ours)
//   format_version  "2" (version 1, written by fwp 0.1, is still read)
//   fwp_version     the library version that wrote it
//   model           the model's config JSON (Model::config_json(), with its "kind")
//   model_rng       the model's generator state, a JSON array of 6 decimal strings
//   optimizer       (optional) {"config": {...}, "step": n, "tensors": [names]}
//   data            (optional) {"kind": "retrieval", "config": {...}, "state": {...}}
//                   (DataSource::kind_name(), config_json(), state_json())
//   state           (optional) a run state (fwp_state: per attention layer W and z, or a
//                   key/value cache): {"batch": N, "layers": [{"position": p, "length": L}, ...]}
//                   ("length" only for caches) with tensors "state/<layer>/w" [N, H, d_head, d_dot]
//                   and "state/<layer>/z" [N, H, d_dot], or "state/<layer>/k" and ".../v"
//                   [N * H, L, d_head] (absent when L = 0); batch 0 is an empty state
//   user            (optional) the caller's string
// A save never damages an existing file (the write is atomic). A load reads
// and checks everything before it changes any object.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace fwp {

class Context;
class DataSource;
class Model;
class ModelRegistry;
class Optimizer;
template <typename T>
class AttentionState;
// A model's run state: one attention state per layer (the contents of an fwp_state).
using RunState = std::vector<AttentionState<float>>;

// Saves the model, and optionally its optimizer and the state of a data
// source, to `path`. user_metadata may be nullptr. Error(FWP_ERR_IO) when
// writing fails (the previous file at `path`, if any, is then left as it was).
// With `state`, also that run state (made for this model: its layer specs must
// be the model's attention_state_specs()).
void save_checkpoint(const std::string& path, const Model& model, Optimizer* optimizer, const DataSource* data,
                     const char* user_metadata, const RunState* state = nullptr);

// Loads a checkpoint into existing objects: the model's kind and config must
// equal the file's; with an optimizer the file must hold optimizer state of
// the same kind and hyper-parameters (the learning rate and step count are
// restored); with a data source the file must hold the state of a source of
// the same kind and config. Everything is read and checked first; on any error
// nothing is changed. With `state` (made for this model), the file must hold a
// run state, which replaces it (batch included).
void load_checkpoint(const std::string& path, Model& model, Optimizer* optimizer, DataSource* data,
                     RunState* state = nullptr);

// Creates a model of the kind and config stored in a checkpoint (through
// `registry`) and loads its parameters. Error(FWP_ERR_FORMAT) for a kind the
// registry does not know.
std::shared_ptr<Model> load_model(const std::shared_ptr<Context>& context, const std::string& path,
                                  const ModelRegistry& registry);
// The same with the library's built-in kinds.
std::shared_ptr<Model> load_model(const std::shared_ptr<Context>& context, const std::string& path);

}  // namespace fwp
