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
//   user            (optional) the caller's string
// A save never damages an existing file (the write is atomic). A load reads
// and checks everything before it changes any object.
#pragma once

#include <memory>
#include <string>

namespace fwp {

class Context;
class DataSource;
class Model;
class ModelRegistry;
class Optimizer;

// Saves the model, and optionally its optimizer and the state of a data
// source, to `path`. user_metadata may be nullptr. Error(FWP_ERR_IO) when
// writing fails (the previous file at `path`, if any, is then left as it was).
void save_checkpoint(const std::string& path, const Model& model, Optimizer* optimizer, const DataSource* data,
                     const char* user_metadata);

// Loads a checkpoint into existing objects: the model's kind and config must
// equal the file's; with an optimizer the file must hold optimizer state of
// the same kind and hyper-parameters (the learning rate and step count are
// restored); with a data source the file must hold the state of a source of
// the same kind and config. Everything is read and checked first; on any error
// nothing is changed.
void load_checkpoint(const std::string& path, Model& model, Optimizer* optimizer, DataSource* data);

// Creates a model of the kind and config stored in a checkpoint (through
// `registry`) and loads its parameters. Error(FWP_ERR_FORMAT) for a kind the
// registry does not know.
std::shared_ptr<Model> load_model(const std::shared_ptr<Context>& context, const std::string& path,
                                  const ModelRegistry& registry);
// The same with the library's built-in kinds.
std::shared_ptr<Model> load_model(const std::shared_ptr<Context>& context, const std::string& path);

}  // namespace fwp
