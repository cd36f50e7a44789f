#include "train/checkpoint.h"

#include <cmath>
#include <cstring>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/context.h"
#include "core/error.h"
#include "core/limits.h"
#include "data/data_source.h"
#include "io/bounded_json.h"
#include "io/rng_json.h"
#include "io/safetensors.h"
#include "models/model.h"
#include "models/registry.h"
#include "nn/attention_state.h"
#include "train/optimizer.h"

#ifndef FWP_VERSION_STRING
#define FWP_VERSION_STRING "unknown"
#endif

namespace fwp {

namespace {

constexpr const char* kFormat = "fwp-checkpoint";
constexpr const char* kFormatVersion = "2";
// Version 1 (fwp 0.1) differs only in the layout of "data"; see data_record().
constexpr const char* kFormatVersion1 = "1";
constexpr const char* kOptimizerPrefix = "optimizer/";
constexpr const char* kStatePrefix = "state/";
// Bound on the caller's metadata string (it lives in the bounded header).
constexpr size_t kMaxUserMetadataBytes = 16u << 20;

[[noreturn]] void format_error(const std::string& path, const std::string& what) {
  throw Error(FWP_ERR_FORMAT, "'" + path + "': " + what);
}

// Longest message of a config or state parser that a load passes on: those
// parsers may quote file content, and a message must not grow with the file.
constexpr size_t kMaxNestedMessage = 400;

// Runs `parse` and prefixes the message of a format error it throws with the
// file's name (the parsers of configs and states do not know the file),
// bounding its length.
template <typename F>
auto in_file(const std::string& path, F&& parse) -> decltype(parse()) {
  try {
    return parse();
  } catch (const Error& e) {
    if (e.status() != FWP_ERR_FORMAT) throw;
    format_error(path, excerpt(e.what(), kMaxNestedMessage));
  }
}

// A JSON metadata value, with the nesting bounded before anything recursive
// (comparison, dump() for a message) runs on it.
nlohmann::json parse_json(const std::string& text, const std::string& path, const std::string& what) {
  return in_file(path, [&] { return parse_file_json(text, what); });
}

// Reports the first member where two config objects differ.
// File values are quoted as short excerpts.
std::string config_difference(const nlohmann::json& file, const nlohmann::json& object) {
  if (!file.is_object() || !object.is_object()) {
    return "the file has " + excerpt(file.dump()) + ", here " + excerpt(object.dump());
  }
  for (const auto& [key, value] : object.items()) {
    const auto it = file.find(key);
    if (it == file.end()) return "'" + key + "' is missing from the file";
    if (*it != value) return "'" + key + "' is " + excerpt(it->dump()) + " in the file but " + value.dump() + " here";
  }
  for (const auto& [key, value] : file.items()) {
    if (object.find(key) == object.end()) return "the file has an unknown member '" + excerpt(key) + "'";
  }
  return "they differ";
}

// The "kind" member of a config or record as text for messages ("?" if absent).
std::string kind_of(const nlohmann::json& j) {
  if (!j.is_object()) return "?";
  const auto it = j.find("kind");
  return it != j.end() && it->is_string() ? excerpt(it->get<std::string>()) : "?";
}

// Checks that the file is an fwp checkpoint of a version this library reads; returns the version.
std::string check_format(const SafetensorsReader& file) {
  const std::string* format = file.find_metadata("format");
  if (!format || *format != kFormat) {
    format_error(file.path(), "not an fwp checkpoint (no __metadata__ format \"fwp-checkpoint\")");
  }
  const std::string* version = file.find_metadata("format_version");
  if (!version || (*version != kFormatVersion && *version != kFormatVersion1)) {
    format_error(file.path(), "unsupported checkpoint format_version (this library reads versions " +
                                  std::string(kFormatVersion1) + " and " + kFormatVersion + ")");
  }
  return *version;
}

nlohmann::json model_config(const SafetensorsReader& file) {
  const std::string* model_meta = file.find_metadata("model");
  if (!model_meta) format_error(file.path(), "the metadata holds no model config");
  return parse_json(*model_meta, file.path(), "the model config");
}

// The data record {"kind", "config", "state"} of the file. Version 1 knew one
// data source, the retrieval generator, and stored {"setting", "num_keys",
// "rng"}, which is turned into the same record.
nlohmann::json data_record(const SafetensorsReader& file, const std::string& version) {
  const std::string& path = file.path();
  const std::string* meta = file.find_metadata("data");
  if (!meta) format_error(path, "the checkpoint holds no data source state");
  const nlohmann::json j = parse_json(*meta, path, "the data source state");
  if (version == kFormatVersion1) {
    if (!j.is_object() || !j.contains("setting") || !j.contains("num_keys") || !j.contains("rng")) {
      format_error(path, "the data generator state needs 'setting', 'num_keys' and 'rng'");
    }
    return nlohmann::json{{"kind", "retrieval"},
                          {"config", {{"setting", j["setting"]}, {"num_keys", j["num_keys"]}}},
                          {"state", {{"rng", j["rng"]}}}};
  }
  if (!j.is_object() || !j.contains("kind") || !j["kind"].is_string() || !j.contains("config") ||
      !j.contains("state")) {
    format_error(path, "the data source state needs a string 'kind', a 'config' and a 'state'");
  }
  return j;
}

std::string optimizer_tensor_name(const Optimizer& opt, const Optimizer::StateTensor& t) {
  return std::string(kOptimizerPrefix) + opt.params()[t.param_index].name + "/" + t.kind;
}

// Every value finite and, with `nonnegative`, >= 0: the same rule as
// fwp_model_set_param, so a file cannot put into a model what the API refuses.
void check_values(const std::string& path, const std::string& name, const std::vector<float>& values,
                  bool nonnegative) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      format_error(path, "tensor '" + excerpt(name) + "' holds a non-finite value (" + std::to_string(values[i]) +
                             " at element " + std::to_string(i) + ")");
    }
    if (nonnegative && values[i] < 0) {
      format_error(path, "tensor '" + excerpt(name) + "' is a second moment but holds a negative value (" +
                             std::to_string(values[i]) + " at element " + std::to_string(i) + ")");
    }
  }
}

// Checks the file's tensor list against the parameters a model has (or, before
// it is built, would have): every parameter present as F32 of its shape, and
// nothing else but optimizer moments of those parameters, of the same shape.
// An unknown tensor means the file is not what this library wrote for this
// model, so it is refused rather than ignored. Only the header is read.
void check_tensor_list(const SafetensorsReader& file, const std::vector<ParameterShape>& params) {
  const std::string& path = file.path();
  std::map<std::string, const std::vector<int64_t>*> by_name;
  for (const ParameterShape& p : params) by_name[p.name] = &p.shape;
  auto check_entry = [&](const std::string& name, const SafetensorsEntry& e, const std::vector<int64_t>& shape) {
    if (e.dtype != "F32") {
      format_error(path, "tensor '" + excerpt(name) + "' has dtype " + excerpt(e.dtype) + ", expected F32");
    }
    if (e.shape != shape) format_error(path, "tensor '" + excerpt(name) + "' has another shape than the model's");
  };
  for (const ParameterShape& p : params) {
    const auto it = file.tensors().find(p.name);
    if (it == file.tensors().end()) format_error(path, "tensor '" + excerpt(p.name) + "' is missing");
    check_entry(p.name, it->second, p.shape);
  }
  const bool has_optimizer = file.find_metadata("optimizer") != nullptr;
  const bool has_state = file.find_metadata("state") != nullptr;
  const std::string prefix = kOptimizerPrefix;
  for (const auto& [name, entry] : file.tensors()) {
    if (by_name.count(name)) continue;
    // Run-state tensors are checked against the state record by read_run_state().
    if (has_state && name.compare(0, std::strlen(kStatePrefix), kStatePrefix) == 0) continue;
    const size_t slash = name.rfind('/');
    if (has_optimizer && name.compare(0, prefix.size(), prefix) == 0 && slash != std::string::npos &&
        slash > prefix.size()) {
      const std::string param = name.substr(prefix.size(), slash - prefix.size());
      const std::string kind = name.substr(slash + 1);
      const auto it = by_name.find(param);
      if (it != by_name.end() && (kind == "exp_avg" || kind == "exp_avg_sq" || kind == "momentum_buffer")) {
        check_entry(name, entry, *it->second);
        continue;
      }
    }
    format_error(path, "unknown tensor '" + excerpt(name) + "' (neither a parameter of the model nor" +
                           (has_optimizer ? " an optimizer moment of one)" : " optimizer state: the file has none)"));
  }
}

std::vector<ParameterShape> shapes_of(const ParameterList<float>& params) {
  std::vector<ParameterShape> out;
  for (int64_t i = 0; i < params.size(); ++i) out.push_back({params[i].name, params[i].shape});
  return out;
}

// ---- the optimizer's part ------------------------------------------------------------------

// The NaN/Inf policy of fwp.h: a save refuses what a load would refuse, so every
// file written can be loaded. (An update with a huge learning rate or gradient
// can overflow a parameter or an Adam moment to infinity.)
std::vector<float> savable_values(const std::string& name, std::vector<float> values) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      throw Error(FWP_ERR_INVALID_ARGUMENT, "'" + name + "' holds a non-finite value (" + std::to_string(values[i]) +
                                                " at element " + std::to_string(i) +
                                                "), which a load would refuse; nothing was written");
    }
  }
  return values;
}

void add_optimizer(SafetensorsWriter& writer, Optimizer& optimizer, const ParameterList<float>& params) {
  require(&optimizer.params() == &params, FWP_ERR_CONTEXT_MISMATCH, "opt is the optimizer of another model or layer");
  nlohmann::json names = nlohmann::json::array();
  for (const Optimizer::StateTensor& t : optimizer.state_tensors()) {
    const std::string name = optimizer_tensor_name(optimizer, t);
    names.push_back(name);
    writer.add_f32(name, params[t.param_index].shape, savable_values(name, t.buffer->to_host()));
  }
  writer.set_metadata(
      "optimizer",
      nlohmann::json{{"config", optimizer.config().to_json()}, {"step", optimizer.steps()}, {"tensors", names}}.dump());
}

// The optimizer state of a file, read and checked, not yet applied.
struct OptimizerState {
  std::vector<Optimizer::StateTensor> tensors;
  std::vector<std::vector<float>> values;
  int64_t step = 0;
  double lr = 0.0;
};

// Same kind and hyper-parameters, every moment tensor present.
OptimizerState read_optimizer(const SafetensorsReader& file, Optimizer& optimizer,
                              const ParameterList<float>& params) {
  const std::string& path = file.path();
  OptimizerState out;
  const std::string* meta = file.find_metadata("optimizer");
  if (!meta) format_error(path, "the checkpoint holds no optimizer state");
  const nlohmann::json j = parse_json(*meta, path, "the optimizer state");
  if (!j.is_object() || !j.contains("config") || !j.contains("step") || !j["step"].is_number_integer()) {
    format_error(path, "the optimizer state needs a 'config' and an integer 'step'");
  }
  const OptimizerConfig saved = in_file(path, [&] { return OptimizerConfig::from_json(j["config"]); });
  out.step = j["step"].get<int64_t>();
  if (out.step < 0) format_error(path, "the optimizer step count is negative");
  out.lr = saved.learning_rate;
  // Everything but the learning rate (which schedules change) must match.
  OptimizerConfig compare = saved;
  compare.learning_rate = optimizer.config().learning_rate;
  if (compare.to_json() != optimizer.config().to_json()) {
    format_error(path, "the checkpoint's optimizer config does not match the optimizer: " +
                           config_difference(compare.to_json(), optimizer.config().to_json()));
  }
  out.tensors = optimizer.state_tensors();
  for (const Optimizer::StateTensor& t : out.tensors) {
    const std::string name = optimizer_tensor_name(optimizer, t);
    out.values.push_back(file.read_f32(name, params[t.param_index].shape));
    // A second moment is a mean of squares: negative, Adam's sqrt would be NaN.
    check_values(path, name, out.values.back(), t.kind == "exp_avg_sq");
  }
  return out;
}

void restore_optimizer(Optimizer& optimizer, const OptimizerState& state) {
  for (size_t i = 0; i < state.tensors.size(); ++i) {
    state.tensors[i].buffer->from_host(state.values[i].data(), static_cast<int64_t>(state.values[i].size()));
  }
  optimizer.restore(state.step, state.lr);
}

// ---- the run state's part -----------------------------------------------------------------

std::string state_tensor_name(size_t layer, const char* part) {
  return std::string(kStatePrefix) + std::to_string(layer) + "/" + part;
}

void add_run_state(SafetensorsWriter& writer, const Model& model, const RunState& state) {
  const std::vector<AttentionStateSpec> specs = model.attention_state_specs();
  require(specs.size() == state.size(), FWP_ERR_SHAPE_MISMATCH, "state was not made for this model");
  const int64_t batch = state.empty() ? 0 : state.front().batch();
  nlohmann::json layers = nlohmann::json::array();
  for (size_t l = 0; l < state.size(); ++l) {
    const AttentionState<float>& s = state[l];
    require(s.spec() == specs[l], FWP_ERR_SHAPE_MISMATCH, "state was not made for this model");
    // Layers move together; an empty layer (never used) is stored as zeros of the batch.
    const int64_t H = s.spec().num_heads, dh = s.spec().d_head, dd = s.spec().d_dot;
    nlohmann::json record{{"position", s.position()}};
    if (batch > 0 && s.is_softmax()) {
      const int64_t L = s.empty() ? 0 : s.length();
      record["length"] = L;
      if (L > 0) {
        std::vector<float> k(static_cast<size_t>(batch * H * L * dh)), v(k.size());
        s.get_cache_host(k.data(), v.data());
        writer.add_f32(state_tensor_name(l, "k"), {batch * H, L, dh}, savable_values(state_tensor_name(l, "k"), k));
        writer.add_f32(state_tensor_name(l, "v"), {batch * H, L, dh}, savable_values(state_tensor_name(l, "v"), v));
      }
    } else if (batch > 0) {
      std::vector<float> w(static_cast<size_t>(s.w_count(batch)), 0.0f), z(static_cast<size_t>(s.z_count(batch)), 0.0f);
      if (!s.empty()) s.get_host(w.data(), z.data());
      writer.add_f32(state_tensor_name(l, "w"), {batch, H, dh, dd}, savable_values(state_tensor_name(l, "w"), w));
      writer.add_f32(state_tensor_name(l, "z"), {batch, H, dd}, savable_values(state_tensor_name(l, "z"), z));
    }
    layers.push_back(record);
  }
  writer.set_metadata("state", nlohmann::json{{"batch", batch}, {"layers", layers}}.dump());
}

// A run state read from a file and checked, not yet applied.
struct RunStateRecord {
  int64_t batch = 0;
  std::vector<int64_t> positions, lengths;
  std::vector<std::vector<float>> first, second;  // w and z, or k and v
};

RunStateRecord read_run_state(const SafetensorsReader& file, const std::vector<AttentionStateSpec>& specs) {
  const std::string& path = file.path();
  const std::string* meta = file.find_metadata("state");
  if (!meta) format_error(path, "the checkpoint holds no run state (it was saved without an fwp_state)");
  const nlohmann::json j = parse_json(*meta, path, "the run state");
  if (!j.is_object() || !j.contains("batch") || !j["batch"].is_number_integer() || !j.contains("layers") ||
      !j["layers"].is_array()) {
    format_error(path, "the run state needs an integer 'batch' and a 'layers' array");
  }
  RunStateRecord out;
  out.batch = j["batch"].get<int64_t>();
  if (out.batch < 0 || out.batch > kMaxElements) format_error(path, "the run state's batch is out of range");
  if (j["layers"].size() != specs.size()) {
    format_error(path, "the run state has " + std::to_string(j["layers"].size()) + " layers, the model " +
                           std::to_string(specs.size()));
  }
  std::set<std::string> expected;
  for (size_t l = 0; l < specs.size(); ++l) {
    const AttentionStateSpec& spec = specs[l];
    const nlohmann::json& layer = j["layers"][l];
    auto integer = [&](const char* key) -> int64_t {
      if (!layer.is_object() || !layer.contains(key) || !layer[key].is_number_integer() ||
          layer[key].get<int64_t>() < 0 || layer[key].get<int64_t>() > kMaxElements) {
        format_error(path, "run state layer " + std::to_string(l) + " needs a non-negative integer '" + key + "'");
      }
      return layer[key].get<int64_t>();
    };
    out.positions.push_back(integer("position"));
    const int64_t H = spec.num_heads, dh = spec.d_head, dd = spec.d_dot, N = out.batch;
    std::vector<float> a, b;
    if (N > 0 && spec.softmax) {
      const int64_t L = integer("length");
      out.lengths.push_back(L);
      if (L > 0) {
        if (double(N) * double(H) * double(L) * double(dh) > double(kMaxElements)) {
          format_error(path, "the run state's key/value cache is too large");
        }
        for (const char* part : {"k", "v"}) {
          const std::string name = state_tensor_name(l, part);
          expected.insert(name);
          if (!file.tensors().count(name)) format_error(path, "tensor '" + name + "' is missing");
          (part[0] == 'k' ? a : b) = file.read_f32(name, {N * H, L, dh});
          check_values(path, name, part[0] == 'k' ? a : b, false);
        }
      }
    } else {
      out.lengths.push_back(0);
      if (N > 0) {
        if (double(N) * double(H) * double(dh) * double(dd) > double(kMaxElements)) {
          format_error(path, "the run state's fast weights are too large");
        }
        for (const char* part : {"w", "z"}) {
          const std::string name = state_tensor_name(l, part);
          expected.insert(name);
          if (!file.tensors().count(name)) format_error(path, "tensor '" + name + "' is missing");
          const std::vector<int64_t> shape =
              part[0] == 'w' ? std::vector<int64_t>{N, H, dh, dd} : std::vector<int64_t>{N, H, dd};
          (part[0] == 'w' ? a : b) = file.read_f32(name, shape);
          check_values(path, name, part[0] == 'w' ? a : b, false);
        }
      }
    }
    out.first.push_back(std::move(a));
    out.second.push_back(std::move(b));
  }
  for (const auto& [name, entry] : file.tensors()) {
    if (name.compare(0, std::strlen(kStatePrefix), kStatePrefix) == 0 && !expected.count(name)) {
      format_error(path, "unknown tensor '" + excerpt(name) + "' (not part of the stored run state)");
    }
  }
  return out;
}

// The new layer states, built aside from `state`'s specs (the caller swaps them in once
// everything else is read, so a failed allocation changes nothing).
RunState build_run_state(const RunState& state, const RunStateRecord& record) {
  RunState fresh;
  fresh.reserve(state.size());
  for (size_t l = 0; l < state.size(); ++l) {
    const AttentionState<float>& old = state[l];
    if (record.batch == 0) {
      fresh.emplace_back(old.backend(), old.spec());
    } else if (old.is_softmax()) {
      fresh.emplace_back(old.backend(), old.spec(), record.batch);
      fresh.back().set_cache_host(record.batch, record.lengths[l], record.first[l].data(), record.second[l].data());
    } else {
      fresh.emplace_back(old.backend(), old.spec());
      fresh.back().set_host(record.batch, record.first[l].data(), record.second[l].data());
    }
    fresh.back().set_position(record.positions[l]);
  }
  return fresh;
}

}  // namespace

// ---- save --------------------------------------------------------------------------------------

void save_checkpoint(const std::string& path, const Model& model, Optimizer* optimizer, const DataSource* data,
                     const char* user_metadata, const RunState* state) {
  require(!path.empty(), FWP_ERR_INVALID_ARGUMENT, "path must not be empty");
  SafetensorsWriter writer;
  writer.set_metadata("format", kFormat);
  writer.set_metadata("format_version", kFormatVersion);
  writer.set_metadata("fwp_version", FWP_VERSION_STRING);
  writer.set_metadata("model", model.config_json().dump());
  writer.set_metadata("model_rng", rng_state_to_json(model.rng_state()).dump());
  if (user_metadata) {
    const std::string user(user_metadata);
    require(user.size() <= kMaxUserMetadataBytes, FWP_ERR_INVALID_ARGUMENT,
            "user_metadata must be at most " + std::to_string(kMaxUserMetadataBytes) + " bytes");
    try {
      writer.set_metadata("user", user);
    } catch (const Error&) {
      throw Error(FWP_ERR_INVALID_ARGUMENT, "user_metadata must be valid UTF-8");
    }
  }

  const ParameterList<float>& params = model.parameters();
  for (int64_t i = 0; i < params.size(); ++i) {
    writer.add_f32(params[i].name, params[i].shape, savable_values(params[i].name, params[i].value.to_host()));
  }
  if (optimizer) add_optimizer(writer, *optimizer, params);
  if (data) {
    writer.set_metadata("data", nlohmann::json{{"kind", data->kind_name()},
                                               {"config", data->config_json()},
                                               {"state", data->state_json()}}
                                    .dump());
  }
  if (state) add_run_state(writer, model, *state);
  writer.write(path);
}

// ---- load --------------------------------------------------------------------------------------

namespace {

// The whole load from one open file (the caller opened it once, so every part
// comes from the same version of the file even if it is replaced meanwhile).
void load_from(const SafetensorsReader& file, Model& model, Optimizer* optimizer, DataSource* data,
               RunState* state) {
  const std::string& path = file.path();
  if (optimizer) {
    require(&optimizer->params() == &model.parameters(), FWP_ERR_CONTEXT_MISMATCH,
            "opt is the optimizer of another model or layer");
  }
  const std::string version = check_format(file);

  // Model: kind and config, parameters, generator.
  const nlohmann::json file_config = model_config(file);
  const nlohmann::json own_config = model.config_json();
  if (kind_of(file_config) != kind_of(own_config)) {
    format_error(path, "the checkpoint holds a model of kind '" + kind_of(file_config) + "', not '" +
                           kind_of(own_config) + "'");
  }
  if (file_config != own_config) {
    format_error(path, "the checkpoint's model config does not match the model: " +
                           config_difference(file_config, own_config));
  }
  ParameterList<float>& params = model.parameters();
  check_tensor_list(file, shapes_of(params));
  std::vector<std::vector<float>> values;
  for (int64_t i = 0; i < params.size(); ++i) {
    values.push_back(file.read_f32(params[i].name, params[i].shape));
    check_values(path, params[i].name, values.back(), false);
  }
  const std::string* model_rng = file.find_metadata("model_rng");
  if (!model_rng) format_error(path, "the metadata holds no model_rng");
  const nlohmann::json model_rng_json = parse_json(*model_rng, path, "model_rng");
  const Rng::State model_rng_state = in_file(path, [&] { return rng_state_from_json(model_rng_json, "model_rng"); });

  OptimizerState opt_state;
  if (optimizer) opt_state = read_optimizer(file, *optimizer, params);

  // Data source: same kind and config, a state it accepts.
  nlohmann::json data_state;
  if (data) {
    const nlohmann::json record = data_record(file, version);
    const std::string file_kind = excerpt(record["kind"].get<std::string>());
    if (file_kind != data->kind_name()) {
      format_error(path, "the checkpoint holds the state of a '" + file_kind + "' data source, not of a '" +
                             data->kind_name() + "' one");
    }
    const nlohmann::json own = data->config_json();
    if (record["config"] != own) {
      format_error(path, "the checkpoint's " + file_kind + " data source has another config: " +
                             config_difference(record["config"], own));
    }
    in_file(path, [&] { data->check_state(record["state"]); });
    data_state = record["state"];
  }

  RunState new_state;
  if (state) {
    const std::vector<AttentionStateSpec> specs = model.attention_state_specs();
    bool same = specs.size() == state->size();
    for (size_t l = 0; same && l < specs.size(); ++l) same = (*state)[l].spec() == specs[l];
    require(same, FWP_ERR_SHAPE_MISMATCH, "state was not made for this model");
    new_state = build_run_state(*state, read_run_state(file, specs));
  }

  // Everything is read and checked: commit.
  for (int64_t i = 0; i < params.size(); ++i) {
    const auto& v = values[static_cast<size_t>(i)];
    params[i].value.from_host(v.data(), static_cast<int64_t>(v.size()));
  }
  model.set_rng_state(model_rng_state);
  if (optimizer) restore_optimizer(*optimizer, opt_state);
  if (data) data->restore_state(data_state);
  if (state) state->swap(new_state);
}

}  // namespace

void load_checkpoint(const std::string& path, Model& model, Optimizer* optimizer, DataSource* data,
                     RunState* state) {
  require(!path.empty(), FWP_ERR_INVALID_ARGUMENT, "path must not be empty");
  if (optimizer) {
    require(&optimizer->params() == &model.parameters(), FWP_ERR_CONTEXT_MISMATCH,
            "opt is the optimizer of another model or layer");
  }
  const SafetensorsReader file(path);
  load_from(file, model, optimizer, data, state);
}

std::shared_ptr<Model> load_model(const std::shared_ptr<Context>& context, const std::string& path,
                                  const ModelRegistry& registry) {
  require(context != nullptr, FWP_ERR_NULL_POINTER, "ctx must not be NULL");
  require(!path.empty(), FWP_ERR_INVALID_ARGUMENT, "path must not be empty");
  const SafetensorsReader file(path);
  check_format(file);
  const nlohmann::json config = model_config(file);
  // The tensors are checked against what the config implies before the model
  // is built: the file holds every parameter, so the model's parameters can
  // take no more memory than the file's size.
  const std::vector<ParameterShape> shapes = in_file(path, [&] { return registry.parameter_shapes(config); });
  check_tensor_list(file, shapes);
  const std::shared_ptr<Model> model = in_file(path, [&] { return registry.create(context, config); });
  // A kind whose shapes function disagrees with its factory is a bug of the kind, not of the file.
  require(shapes_of(model->parameters()) == shapes, FWP_ERR_INTERNAL,
          "model kind '" + kind_of(config) + "': the registry's parameter shapes differ from the model's parameters");
  load_from(file, *model, nullptr, nullptr, nullptr);
  return model;
}

std::shared_ptr<Model> load_model(const std::shared_ptr<Context>& context, const std::string& path) {
  return load_model(context, path, ModelRegistry::builtin());
}

}  // namespace fwp
