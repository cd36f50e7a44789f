#include "train/checkpoint.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/context.h"
#include "core/error.h"
#include "data/retrieval_data.h"
#include "models/model.h"
#include "models/retrieval/retrieval_model.h"
#include "train/optimizer.h"

#ifndef FWP_VERSION_STRING
#define FWP_VERSION_STRING "unknown"
#endif

// Tensor data are written and read as raw host memory; safetensors is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "fwp checkpoints assume a little-endian host");

namespace fwp {

namespace {

constexpr const char* kFormat = "fwp-checkpoint";
constexpr const char* kFormatVersion = "1";
constexpr const char* kOptimizerPrefix = "optimizer/";
// Bound on the caller's metadata string (it lives in the bounded header).
constexpr size_t kMaxUserMetadataBytes = 16u << 20;

[[noreturn]] void format_error(const std::string& path, const std::string& what) {
  throw Error(FWP_ERR_FORMAT, "'" + path + "': " + what);
}

std::string errno_text() { return std::strerror(errno); }

// Bytes per element of the safetensors dtypes; 0 for an unknown dtype.
uint64_t dtype_size(const std::string& dtype) {
  static const std::map<std::string, uint64_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U64", 8},  {"U32", 4},     {"U16", 2},     {"U8", 1},
      {"BOOL", 1}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

nlohmann::json rng_to_json(const Rng::State& state) {
  nlohmann::json words = nlohmann::json::array();
  for (uint64_t w : state) words.push_back(std::to_string(w));
  return words;
}

// Parses rng_to_json()'s output; throws FORMAT naming `what`.
Rng::State rng_from_json(const nlohmann::json& j, const std::string& path, const std::string& what) {
  Rng::State state{};
  if (!j.is_array() || j.size() != state.size()) format_error(path, what + " must be an array of 6 strings");
  for (size_t i = 0; i < state.size(); ++i) {
    if (!j[i].is_string()) format_error(path, what + " must be an array of 6 strings");
    const std::string& s = j[i].get_ref<const std::string&>();
    if (s.empty() || s.size() > 20 || s.find_first_not_of("0123456789") != std::string::npos) {
      format_error(path, what + " holds a word that is not a decimal 64-bit number");
    }
    errno = 0;
    char* end = nullptr;
    const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
    if (errno == ERANGE || end != s.c_str() + s.size()) format_error(path, what + " holds a word out of range");
    state[i] = static_cast<uint64_t>(v);
  }
  return state;
}

nlohmann::json parse_json(const std::string& text, const std::string& path, const std::string& what) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    format_error(path, what + " is not valid JSON");
  }
}

// Reports the first member where two config objects differ.
std::string config_difference(const nlohmann::json& file, const nlohmann::json& object) {
  for (const auto& [key, value] : object.items()) {
    const auto it = file.find(key);
    if (it == file.end()) return "'" + key + "' is missing from the file";
    if (*it != value) return "'" + key + "' is " + it->dump() + " in the file but " + value.dump() + " here";
  }
  for (const auto& [key, value] : file.items()) {
    if (object.find(key) == object.end()) return "the file has an unknown member '" + key + "'";
  }
  return "they differ";
}

// ---- writing -------------------------------------------------------------------------------

struct TensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  std::vector<float> data;
};

// Writes all of `bytes` to fd; false on error.
bool write_all(int fd, const char* bytes, size_t n) {
  while (n > 0) {
    const ssize_t w = ::write(fd, bytes, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    bytes += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

void write_file_atomically(const std::string& path, const std::string& header,
                           const std::vector<TensorToWrite>& tensors) {
  const std::string tmp = path + ".tmp." + std::to_string(static_cast<long long>(::getpid()));
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(FWP_ERR_IO, "cannot create '" + tmp + "': " + errno_text());
  auto fail = [&](const std::string& what) {
    const std::string reason = errno_text();
    ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(FWP_ERR_IO, what + " '" + tmp + "': " + reason);
  };
  unsigned char length[8];
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(n >> (8 * i));
  if (!write_all(fd, reinterpret_cast<const char*>(length), sizeof length) ||
      !write_all(fd, header.data(), header.size())) {
    fail("cannot write");
  }
  for (const TensorToWrite& t : tensors) {
    if (!write_all(fd, reinterpret_cast<const char*>(t.data.data()), t.data.size() * sizeof(float))) {
      fail("cannot write");
    }
  }
  if (::fsync(fd) != 0) fail("cannot flush");
  if (::close(fd) != 0) {
    const std::string reason = errno_text();
    ::unlink(tmp.c_str());
    throw Error(FWP_ERR_IO, "cannot close '" + tmp + "': " + reason);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = errno_text();
    ::unlink(tmp.c_str());
    throw Error(FWP_ERR_IO, "cannot rename '" + tmp + "' to '" + path + "': " + reason);
  }
  // Make the rename itself durable (best effort: some file systems refuse to
  // fsync a directory, and the file is already complete either way).
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

// Whether s is valid UTF-8 (nlohmann::json refuses to write anything else).
bool valid_utf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

std::string optimizer_tensor_name(const Optimizer& opt, const Optimizer::StateTensor& t) {
  return std::string(kOptimizerPrefix) + opt.params()[t.param_index].name + "/" + t.kind;
}

}  // namespace

// ---- reader ----------------------------------------------------------------------------------

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path), in_(path, std::ios::binary) {
  std::ifstream& in = in_;
  if (!in) throw Error(FWP_ERR_IO, "cannot open '" + path + "' for reading: " + errno_text());
  in.seekg(0, std::ios::end);
  const std::streamoff file_size = in.tellg();
  if (file_size < 0) throw Error(FWP_ERR_IO, "cannot read the size of '" + path + "'");
  const auto size = static_cast<uint64_t>(file_size);
  if (size < 8) format_error(path, "truncated: shorter than the 8-byte header length");
  in.seekg(0, std::ios::beg);
  unsigned char length[8];
  if (!in.read(reinterpret_cast<char*>(length), sizeof length)) {
    throw Error(FWP_ERR_IO, "cannot read '" + path + "'");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | length[i];
  if (n > kMaxSafetensorsHeaderBytes) {
    format_error(path, "header length " + std::to_string(n) + " exceeds the limit of " +
                           std::to_string(kMaxSafetensorsHeaderBytes) + " bytes (not a safetensors file?)");
  }
  if (n > size - 8) {
    format_error(path, "truncated: the header needs " + std::to_string(n) + " bytes but the file has " +
                           std::to_string(size - 8) + " after the length");
  }
  if (n < 2) format_error(path, "the header is too short to be a JSON object");
  std::string text(static_cast<size_t>(n), '\0');
  if (!in.read(text.data(), static_cast<std::streamsize>(n))) throw Error(FWP_ERR_IO, "cannot read '" + path + "'");
  data_start_ = 8 + n;
  const uint64_t data_size = size - data_start_;

  const nlohmann::json header = parse_json(text, path, "the header");
  if (!header.is_object()) format_error(path, "the header is not a JSON object");
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) format_error(path, "__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) format_error(path, "__metadata__ value '" + key + "' is not a string");
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + name + "'";
    if (!entry.is_object()) format_error(path, where + " is not an object");
    const auto dtype = entry.find("dtype");
    const auto shape = entry.find("shape");
    const auto offsets = entry.find("data_offsets");
    if (dtype == entry.end() || !dtype->is_string() || shape == entry.end() || !shape->is_array() ||
        offsets == entry.end() || !offsets->is_array() || offsets->size() != 2) {
      format_error(path, where + " needs a string dtype, an array shape and two data_offsets");
    }
    SafetensorsEntry e;
    e.dtype = dtype->get<std::string>();
    const uint64_t element = dtype_size(e.dtype);
    if (element == 0) format_error(path, where + " has an unknown dtype '" + e.dtype + "'");
    // Element count with overflow checks: every factor is bounded by the data size.
    uint64_t numel = 1;
    for (const auto& dim : *shape) {
      if (!dim.is_number_unsigned()) format_error(path, where + " has a shape entry that is not a size");
      const uint64_t d = dim.get<uint64_t>();
      if (d != 0 && numel > data_size / d) format_error(path, where + " is larger than the file's data");
      numel *= d;
      e.shape.push_back(static_cast<int64_t>(d));
    }
    if (numel != 0 && element > data_size / numel) format_error(path, where + " is larger than the file's data");
    for (const auto& off : *offsets) {
      if (!off.is_number_unsigned()) format_error(path, where + " has data_offsets that are not sizes");
    }
    e.begin = (*offsets)[0].get<uint64_t>();
    e.end = (*offsets)[1].get<uint64_t>();
    if (e.begin > e.end || e.end > data_size) {
      format_error(path, where + " has data_offsets [" + std::to_string(e.begin) + ", " + std::to_string(e.end) +
                             ") outside the data section of " + std::to_string(data_size) + " bytes (truncated?)");
    }
    if (e.end - e.begin != numel * element) {
      format_error(path, where + " has data_offsets that do not match its dtype and shape");
    }
    tensors_.emplace(name, std::move(e));
  }
}

const std::string* SafetensorsReader::find_metadata(const std::string& key) const {
  const auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

std::vector<float> SafetensorsReader::read_f32(const std::string& name, const std::vector<int64_t>& shape) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) format_error(path_, "tensor '" + name + "' is missing");
  const SafetensorsEntry& e = it->second;
  if (e.dtype != "F32") format_error(path_, "tensor '" + name + "' has dtype " + e.dtype + ", expected F32");
  if (e.shape != shape) format_error(path_, "tensor '" + name + "' has another shape than expected");
  std::vector<float> out(static_cast<size_t>((e.end - e.begin) / sizeof(float)));
  in_.clear();
  in_.seekg(static_cast<std::streamoff>(data_start_ + e.begin));
  if (!out.empty() && !in_.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(e.end - e.begin))) {
    // The header was checked against the size, so the file changed or failed under us.
    throw Error(FWP_ERR_IO, "cannot read tensor '" + name + "' from '" + path_ + "'");
  }
  return out;
}

// ---- save --------------------------------------------------------------------------------------

void save_checkpoint(const std::string& path, const Model& model, Optimizer* optimizer, const RetrievalData* data,
                     const char* user_metadata) {
  require(!path.empty(), FWP_ERR_INVALID_ARGUMENT, "path must not be empty");
  std::map<std::string, std::string> meta;
  meta["format"] = kFormat;
  meta["format_version"] = kFormatVersion;
  meta["fwp_version"] = FWP_VERSION_STRING;
  meta["model"] = model.config_json().dump();
  meta["model_rng"] = rng_to_json(model.rng_state()).dump();
  if (user_metadata) {
    const std::string user(user_metadata);
    require(user.size() <= kMaxUserMetadataBytes, FWP_ERR_INVALID_ARGUMENT,
            "user_metadata must be at most " + std::to_string(kMaxUserMetadataBytes) + " bytes");
    require(valid_utf8(user), FWP_ERR_INVALID_ARGUMENT, "user_metadata must be valid UTF-8");
    meta["user"] = user;
  }

  std::vector<TensorToWrite> tensors;
  const ParameterList<float>& params = model.parameters();
  for (int64_t i = 0; i < params.size(); ++i) {
    tensors.push_back({params[i].name, params[i].shape, params[i].value.to_host()});
  }
  if (optimizer) {
    require(&optimizer->params() == &params, FWP_ERR_CONTEXT_MISMATCH,
            "opt is the optimizer of another model or layer");
    nlohmann::json names = nlohmann::json::array();
    for (const Optimizer::StateTensor& t : optimizer->state_tensors()) {
      const std::string name = optimizer_tensor_name(*optimizer, t);
      names.push_back(name);
      tensors.push_back({name, params[t.param_index].shape, t.buffer->to_host()});
    }
    meta["optimizer"] =
        nlohmann::json{{"config", optimizer->config().to_json()}, {"step", optimizer->steps()}, {"tensors", names}}
            .dump();
  }
  if (data) {
    meta["data"] = nlohmann::json{{"setting", data->setting()},
                                  {"num_keys", data->num_keys()},
                                  {"rng", rng_to_json(data->rng_state())}}
                       .dump();
  }

  nlohmann::json header = nlohmann::json::object();
  header["__metadata__"] = meta;
  uint64_t offset = 0;
  for (const TensorToWrite& t : tensors) {
    const uint64_t bytes = t.data.size() * sizeof(float);
    header[t.name] = {{"dtype", "F32"}, {"shape", t.shape}, {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  // Pad with spaces so the data section starts 8-byte aligned, as the reference writer does.
  text.append((8 - text.size() % 8) % 8, ' ');
  require(text.size() <= kMaxSafetensorsHeaderBytes, FWP_ERR_INVALID_ARGUMENT,
          "the checkpoint header would exceed " + std::to_string(kMaxSafetensorsHeaderBytes) + " bytes");
  write_file_atomically(path, text, tensors);
}

// ---- load --------------------------------------------------------------------------------------

void load_checkpoint(const std::string& path, Model& model, Optimizer* optimizer, RetrievalData* data) {
  require(!path.empty(), FWP_ERR_INVALID_ARGUMENT, "path must not be empty");
  if (optimizer) {
    require(&optimizer->params() == &model.parameters(), FWP_ERR_CONTEXT_MISMATCH,
            "opt is the optimizer of another model or layer");
  }
  const SafetensorsReader file(path);
  const std::string* format = file.find_metadata("format");
  if (!format || *format != kFormat) format_error(path, "not an fwp checkpoint (no __metadata__ format \"fwp-checkpoint\")");
  const std::string* version = file.find_metadata("format_version");
  if (!version || *version != kFormatVersion) {
    format_error(path, "unsupported checkpoint format_version (this library reads version " +
                           std::string(kFormatVersion) + ")");
  }

  // Model: config, parameters, generator.
  const std::string* model_meta = file.find_metadata("model");
  if (!model_meta) format_error(path, "the metadata holds no model config");
  const nlohmann::json file_config = parse_json(*model_meta, path, "the model config");
  const nlohmann::json own_config = model.config_json();
  if (file_config != own_config) {
    format_error(path, "the checkpoint's model config does not match the model: " +
                           config_difference(file_config, own_config));
  }
  ParameterList<float>& params = model.parameters();
  std::vector<std::vector<float>> values;
  for (int64_t i = 0; i < params.size(); ++i) values.push_back(file.read_f32(params[i].name, params[i].shape));
  const std::string* model_rng = file.find_metadata("model_rng");
  if (!model_rng) format_error(path, "the metadata holds no model_rng");
  const Rng::State model_rng_state = rng_from_json(parse_json(*model_rng, path, "model_rng"), path, "model_rng");

  // Optimizer: same kind and hyper-parameters, every moment tensor present.
  std::vector<Optimizer::StateTensor> opt_tensors;
  std::vector<std::vector<float>> opt_values;
  int64_t opt_step = 0;
  double opt_lr = 0.0;
  if (optimizer) {
    const std::string* meta = file.find_metadata("optimizer");
    if (!meta) format_error(path, "the checkpoint holds no optimizer state");
    const nlohmann::json j = parse_json(*meta, path, "the optimizer state");
    if (!j.is_object() || !j.contains("config") || !j.contains("step") || !j["step"].is_number_integer()) {
      format_error(path, "the optimizer state needs a 'config' and an integer 'step'");
    }
    OptimizerConfig saved;
    try {
      saved = OptimizerConfig::from_json(j["config"]);
    } catch (const Error& e) {
      format_error(path, e.what());
    }
    opt_step = j["step"].get<int64_t>();
    if (opt_step < 0) format_error(path, "the optimizer step count is negative");
    opt_lr = saved.learning_rate;
    // Everything but the learning rate (which schedules change) must match.
    OptimizerConfig compare = saved;
    compare.learning_rate = optimizer->config().learning_rate;
    if (compare.to_json() != optimizer->config().to_json()) {
      format_error(path, "the checkpoint's optimizer config does not match the optimizer: " +
                             config_difference(compare.to_json(), optimizer->config().to_json()));
    }
    opt_tensors = optimizer->state_tensors();
    for (const Optimizer::StateTensor& t : opt_tensors) {
      opt_values.push_back(file.read_f32(optimizer_tensor_name(*optimizer, t), params[t.param_index].shape));
    }
  }

  // Data generator: same setting and S.
  Rng::State data_rng{};
  if (data) {
    const std::string* meta = file.find_metadata("data");
    if (!meta) format_error(path, "the checkpoint holds no data generator state");
    const nlohmann::json j = parse_json(*meta, path, "the data generator state");
    if (!j.is_object() || !j.contains("setting") || !j["setting"].is_number_integer() || !j.contains("num_keys") ||
        !j["num_keys"].is_number_integer() || !j.contains("rng")) {
      format_error(path, "the data generator state needs integer 'setting' and 'num_keys' and an 'rng'");
    }
    if (j["setting"].get<int64_t>() != data->setting() || j["num_keys"].get<int64_t>() != data->num_keys()) {
      format_error(path, "the checkpoint's data generator has setting " + j["setting"].dump() + " and S = " +
                             j["num_keys"].dump() + ", not setting " + std::to_string(data->setting()) +
                             " and S = " + std::to_string(data->num_keys()));
    }
    data_rng = rng_from_json(j["rng"], path, "the data generator's rng");
  }

  // Everything is read and checked: commit.
  for (int64_t i = 0; i < params.size(); ++i) {
    const auto& v = values[static_cast<size_t>(i)];
    params[i].value.from_host(v.data(), static_cast<int64_t>(v.size()));
  }
  model.set_rng_state(model_rng_state);
  if (optimizer) {
    for (size_t i = 0; i < opt_tensors.size(); ++i) {
      opt_tensors[i].buffer->from_host(opt_values[i].data(), static_cast<int64_t>(opt_values[i].size()));
    }
    optimizer->restore(opt_step, opt_lr);
  }
  if (data) data->set_rng_state(data_rng);
}

std::shared_ptr<Model> load_model(const std::shared_ptr<Context>& context, const std::string& path) {
  require(context != nullptr, FWP_ERR_NULL_POINTER, "ctx must not be NULL");
  require(!path.empty(), FWP_ERR_INVALID_ARGUMENT, "path must not be empty");
  std::shared_ptr<Model> model;
  {
    const SafetensorsReader file(path);
    const std::string* format = file.find_metadata("format");
    if (!format || *format != kFormat) format_error(path, "not an fwp checkpoint (no __metadata__ format \"fwp-checkpoint\")");
    const std::string* model_meta = file.find_metadata("model");
    if (!model_meta) format_error(path, "the metadata holds no model config");
    const nlohmann::json config = parse_json(*model_meta, path, "the model config");
    if (!config.is_object() || !config.contains("kind") || !config["kind"].is_string()) {
      format_error(path, "the model config has no 'kind'");
    }
    const std::string kind = config["kind"].get<std::string>();
    if (kind != "retrieval") format_error(path, "unknown model kind '" + kind + "'");
    RetrievalConfig rc;
    try {
      rc = RetrievalConfig::from_json(config);
    } catch (const Error& e) {
      format_error(path, e.what());
    }
    model = std::make_shared<RetrievalModel>(context, rc);
  }
  load_checkpoint(path, *model, nullptr, nullptr);
  return model;
}

}  // namespace fwp
