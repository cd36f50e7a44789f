#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/bounded_json.h"

// Tensor data are written and read as raw host memory; safetensors is little-endian.
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "fwp's safetensors I/O assumes a little-endian host");

namespace fwp {

namespace {

[[noreturn]] void format_error(const std::string& path, const std::string& what) {
  throw Error(FWP_ERR_FORMAT, "'" + path + "': " + what);
}

std::string errno_text() { return std::strerror(errno); }

// Whether s is valid UTF-8 (nlohmann::json refuses to write anything else).
bool valid_utf8(const std::string& s) {
  try {
    (void)nlohmann::json(s).dump();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

// Writes all of `bytes` to fd; false on error.
bool write_all(int fd, const void* data, size_t n) {
  const auto* bytes = static_cast<const char*>(data);
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

// Checks that the entries tile [0, data_size) exactly, as the reference
// reader demands: overlapping tensors would alias, gaps and trailing bytes
// mean the file is not what its header says.
void check_tiling(const std::string& path, const std::map<std::string, SafetensorsEntry>& tensors,
                  uint64_t data_size) {
  std::vector<std::pair<const std::string*, const SafetensorsEntry*>> by_offset;
  for (const auto& [name, e] : tensors) by_offset.emplace_back(&name, &e);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto& a, const auto& b) {
    return a.second->begin != b.second->begin ? a.second->begin < b.second->begin : a.second->end < b.second->end;
  });
  uint64_t covered = 0;
  const std::string* previous = nullptr;
  for (const auto& [name, e] : by_offset) {
    if (e->begin < covered) {
      format_error(path, "tensor '" + excerpt(*name) + "' overlaps tensor '" + excerpt(*previous) +
                             "' (data_offsets [" + std::to_string(e->begin) + ", " + std::to_string(e->end) + "))");
    }
    if (e->begin > covered) {
      format_error(path, "the data section has unused bytes [" + std::to_string(covered) + ", " +
                             std::to_string(e->begin) + ") before tensor '" + excerpt(*name) + "'");
    }
    covered = e->end;
    previous = name;
  }
  if (covered != data_size) {
    format_error(path, "the data section has " + std::to_string(data_size - covered) +
                           " bytes after the last tensor (the header describes " + std::to_string(covered) + " of " +
                           std::to_string(data_size) + ")");
  }
}

}  // namespace

uint64_t safetensors_dtype_size(const std::string& dtype) {
  static const std::map<std::string, uint64_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"F8_E4M3", 1}, {"F8_E5M2", 1}, {"I64", 8},
      {"I32", 4}, {"I16", 2}, {"I8", 1},  {"U64", 8},  {"U32", 4},     {"U16", 2},     {"U8", 1},
      {"BOOL", 1}};
  const auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

// ---- reader ----------------------------------------------------------------------------------

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO without a writer (or a device) must not wait;
  // such files are refused below. On a regular file the flag changes nothing.
  fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd_ < 0) throw Error(FWP_ERR_IO, "cannot open '" + path + "' for reading: " + errno_text());
  struct stat st;
  if (::fstat(fd_, &st) != 0) {
    const std::string reason = errno_text();
    ::close(fd_);
    throw Error(FWP_ERR_IO, "cannot read the size of '" + path + "': " + reason);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd_);
    throw Error(FWP_ERR_IO, "'" + path + "' is not a regular file (a directory, FIFO, socket or device)");
  }
  // From here on the destructor does not run if the constructor throws.
  try {
    read_header(static_cast<uint64_t>(st.st_size));
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

SafetensorsReader::~SafetensorsReader() {
  if (fd_ >= 0) ::close(fd_);
}

void SafetensorsReader::read_at(uint64_t offset, void* out, uint64_t n, const std::string& what) const {
  auto* bytes = static_cast<char*>(out);
  while (n > 0) {
    const ssize_t r = ::pread(fd_, bytes, static_cast<size_t>(std::min<uint64_t>(n, 1u << 30)),
                              static_cast<off_t>(offset));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw Error(FWP_ERR_IO, "cannot read " + what + " from '" + path_ + "': " + errno_text());
    // The sizes were checked against fstat, so the file shrank under us.
    if (r == 0) throw Error(FWP_ERR_IO, "cannot read " + what + " from '" + path_ + "': the file was truncated");
    bytes += r;
    offset += static_cast<uint64_t>(r);
    n -= static_cast<uint64_t>(r);
  }
}

void SafetensorsReader::read_header(uint64_t size) {
  const std::string& path = path_;
  if (size < 8) format_error(path, "truncated: shorter than the 8-byte header length");
  unsigned char length[8];
  read_at(0, length, sizeof length, "the header length");
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
  read_at(8, text.data(), n, "the header");
  data_start_ = 8 + n;
  const uint64_t data_size = size - data_start_;

  nlohmann::json header;
  try {
    header = parse_file_json(text, "the header");
  } catch (const Error& e) {
    format_error(path, e.what());
  }
  if (!header.is_object()) format_error(path, "the header is not a JSON object");
  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) format_error(path, "__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) format_error(path, "__metadata__ value '" + excerpt(key) + "' is not a string");
        metadata_[key] = value.get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + excerpt(name) + "'";
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
    const uint64_t element = safetensors_dtype_size(e.dtype);
    if (element == 0) format_error(path, where + " has an unknown dtype '" + excerpt(e.dtype) + "'");
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
  check_tiling(path, tensors_, data_size);
}

const std::string* SafetensorsReader::find_metadata(const std::string& key) const {
  const auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

std::vector<float> SafetensorsReader::read_f32(const std::string& name, const std::vector<int64_t>& shape) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) format_error(path_, "tensor '" + excerpt(name) + "' is missing");
  const SafetensorsEntry& e = it->second;
  if (e.dtype != "F32") {
    format_error(path_, "tensor '" + excerpt(name) + "' has dtype " + excerpt(e.dtype) + ", expected F32");
  }
  if (e.shape != shape) format_error(path_, "tensor '" + excerpt(name) + "' has another shape than expected");
  // The entry was checked against the file's size, so this allocation is bounded by it.
  std::vector<float> out(static_cast<size_t>((e.end - e.begin) / sizeof(float)));
  read_at(data_start_ + e.begin, out.data(), e.end - e.begin, "tensor '" + excerpt(name) + "'");
  return out;
}

// ---- writer ----------------------------------------------------------------------------------

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  require(!key.empty(), FWP_ERR_INVALID_ARGUMENT, "a safetensors metadata key must not be empty");
  require(valid_utf8(key), FWP_ERR_INVALID_ARGUMENT, "the metadata key '" + key + "' is not valid UTF-8");
  require(valid_utf8(value), FWP_ERR_INVALID_ARGUMENT, "the metadata value of '" + key + "' is not valid UTF-8");
  metadata_[key] = value;
}

void SafetensorsWriter::add_f32(const std::string& name, const std::vector<int64_t>& shape,
                                const std::vector<float>& data) {
  add_tensor(name, "F32", shape, data.data(), data.size() * sizeof(float));
}

void SafetensorsWriter::add_tensor(const std::string& name, const std::string& dtype,
                                   const std::vector<int64_t>& shape, const void* data, size_t bytes) {
  require(!name.empty(), FWP_ERR_INVALID_ARGUMENT, "a safetensors tensor name must not be empty");
  require(name != "__metadata__", FWP_ERR_INVALID_ARGUMENT, "'__metadata__' is reserved, not a tensor name");
  require(valid_utf8(name), FWP_ERR_INVALID_ARGUMENT, "the tensor name '" + name + "' is not valid UTF-8");
  for (const Tensor& t : tensors_) {
    require(t.name != name, FWP_ERR_INVALID_ARGUMENT, "tensor '" + name + "' is added twice");
  }
  const uint64_t element = safetensors_dtype_size(dtype);
  require(element != 0, FWP_ERR_INVALID_ARGUMENT, "tensor '" + name + "' has an unknown dtype '" + dtype + "'");
  // The expected byte count, without overflow: while it stays <= bytes, the next product cannot wrap.
  for (int64_t d : shape) {
    require(d >= 0, FWP_ERR_INVALID_ARGUMENT,
            "tensor '" + name + "' has a negative dimension (" + std::to_string(d) + ")");
  }
  const bool empty = std::find(shape.begin(), shape.end(), int64_t(0)) != shape.end();
  uint64_t expected = empty ? 0 : element;
  for (int64_t d : shape) {
    if (empty) break;
    require(expected <= bytes / static_cast<uint64_t>(d), FWP_ERR_INVALID_ARGUMENT,
            "tensor '" + name + "' has " + std::to_string(bytes) + " bytes, fewer than its dtype and shape need");
    expected *= static_cast<uint64_t>(d);
  }
  require(expected == bytes, FWP_ERR_INVALID_ARGUMENT,
          "tensor '" + name + "' has " + std::to_string(bytes) + " bytes but its dtype and shape need " +
              std::to_string(expected));
  require(bytes == 0 || data != nullptr, FWP_ERR_NULL_POINTER, "the data of tensor '" + name + "' is NULL");
  Tensor t{name, dtype, shape, {}};
  if (bytes > 0) {
    const auto* p = static_cast<const unsigned char*>(data);
    t.bytes.assign(p, p + bytes);
  }
  tensors_.push_back(std::move(t));
}

std::string SafetensorsWriter::header() const {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata_.empty()) header["__metadata__"] = metadata_;
  uint64_t offset = 0;
  for (const Tensor& t : tensors_) {
    const uint64_t end = offset + t.bytes.size();
    header[t.name] = {{"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, end}}};
    offset = end;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  require(text.size() <= kMaxSafetensorsHeaderBytes, FWP_ERR_INVALID_ARGUMENT,
          "the safetensors header would exceed " + std::to_string(kMaxSafetensorsHeaderBytes) + " bytes");
  return text;
}

void SafetensorsWriter::write(const std::string& path) const {
  require(!path.empty(), FWP_ERR_INVALID_ARGUMENT, "path must not be empty");
  const std::string text = header();  // checked before anything touches the disk
  // A temporary no other writer uses (io/atomic_file.h), stale ones of killed saves removed first.
  std::string tmp;
  const int fd = create_temporary_for(path, &tmp);
  auto fail = [&](const std::string& what) {
    const std::string reason = errno_text();
    ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(FWP_ERR_IO, what + " '" + tmp + "': " + reason);
  };
  unsigned char length[8];
  const uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) length[i] = static_cast<unsigned char>(n >> (8 * i));
  if (!write_all(fd, length, sizeof length) || !write_all(fd, text.data(), text.size())) fail("cannot write");
  for (const Tensor& t : tensors_) {
    if (!write_all(fd, t.bytes.data(), t.bytes.size())) fail("cannot write");
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

}  // namespace fwp
