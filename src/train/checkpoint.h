// Checkpoints as safetensors files (https://github.com/huggingface/safetensors):
//
//   [8-byte little-endian header length N][N bytes of JSON header][raw tensor data]
//
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin,
// end)} (offsets into the data section) and "__metadata__" to a string->string
// map. fwp writes the model's parameters under their own names, the optimizer's
// moments as "optimizer/<parameter>/<exp_avg|exp_avg_sq|momentum_buffer>", all
// F32, and in the metadata:
//   format       "fwp-checkpoint" (what marks the file as ours)
//   format_version "1"
//   fwp_version  the library version that wrote it
//   model        the model's config JSON (Model::config_json())
//   model_rng    the model's generator state, a JSON array of 6 decimal strings
//   optimizer    (optional) {"config": {...}, "step": n, "tensors": [names]}
//   data         (optional) {"setting", "num_keys", "rng": [6 decimal strings]}
//   user         (optional) the caller's string
// Files are written to "<path>.tmp.<pid>", flushed to disk and renamed over
// <path>, so a failed save never damages an existing file. The reader bounds
// every size against the file before allocating and validates everything
// before it changes any object.
#pragma once

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace fwp {

class Context;
class Model;
class Optimizer;
class RetrievalData;

// Largest JSON header the reader accepts.
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

// One tensor entry of a safetensors header, validated against the file size.
struct SafetensorsEntry {
  std::string dtype;           // "F32", "I64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range within the data section
};

// A parsed and validated safetensors file (header only; tensor data are read on demand).
class SafetensorsReader {
 public:
  // Reads and validates the header. Error(FWP_ERR_IO) if the file cannot be
  // opened or read, Error(FWP_ERR_FORMAT) if it is truncated or malformed.
  explicit SafetensorsReader(const std::string& path);

  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::map<std::string, SafetensorsEntry>& tensors() const { return tensors_; }
  // The metadata value, or nullptr.
  const std::string* find_metadata(const std::string& key) const;
  // Reads an F32 tensor whose shape must equal `shape`; Error(FWP_ERR_FORMAT)
  // if it is missing or has another dtype or shape.
  std::vector<float> read_f32(const std::string& name, const std::vector<int64_t>& shape) const;

 private:
  std::string path_;
  mutable std::ifstream in_;  // kept open: tensors are read from the file that was validated
  uint64_t data_start_ = 0;  // file offset of the data section
  std::map<std::string, std::string> metadata_;
  std::map<std::string, SafetensorsEntry> tensors_;
};

// Saves the model, and optionally its optimizer and a data generator, to
// `path`. user_metadata may be nullptr. Error(FWP_ERR_IO) when writing fails
// (the previous file at `path`, if any, is then left as it was).
void save_checkpoint(const std::string& path, const Model& model, Optimizer* optimizer, const RetrievalData* data,
                     const char* user_metadata);

// Loads a checkpoint into existing objects: the model's config must equal the
// file's; with an optimizer the file must hold optimizer state of the same kind
// and hyper-parameters (the learning rate and step count are restored); with a
// data generator the file must hold the state of one with the same setting and
// S. Everything is read and checked first; on any error nothing is changed.
void load_checkpoint(const std::string& path, Model& model, Optimizer* optimizer, RetrievalData* data);

// Creates a model from the config and parameters of a checkpoint.
std::shared_ptr<Model> load_model(const std::shared_ptr<Context>& context, const std::string& path);

}  // namespace fwp
