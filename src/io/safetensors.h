// Reading and writing safetensors files (https://github.com/huggingface/safetensors):
//
//   [8-byte little-endian header length N][N bytes of JSON header][raw tensor data]
//
// The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin,
// end)} (byte offsets into the data section) and "__metadata__" to a
// string->string map. This file knows the format only; what a checkpoint puts
// into it is train/checkpoint.h's business.
//
// The reader opens the file once, without blocking (a FIFO or device is
// refused, not waited on), and reads the header and every tensor from that one
// descriptor, so an atomic replace of the file while it is read is never seen
// half-way. It bounds every size against the file before it allocates, limits
// the nesting of the header JSON, quotes file content in messages only as short
// excerpts (io/bounded_json.h), and accepts only what the reference
// implementation accepts: known dtypes, offsets that match dtype and shape,
// tensors that tile the data section exactly (no overlaps, no gaps, no
// trailing bytes), and no key twice. The writer writes a temporary file of its
// own (unique per process, thread and call), flushes it to disk and renames it
// over the destination, so a failed write never damages an existing file and
// concurrent writers to one path each replace it whole.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace fwp {

// Largest JSON header the reader accepts and the writer writes.
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

// Bytes per element of a safetensors dtype ("F32" -> 4); 0 for an unknown dtype.
uint64_t safetensors_dtype_size(const std::string& dtype);

// One tensor entry of a safetensors header, validated against the file size.
struct SafetensorsEntry {
  std::string dtype;            // "F32", "I64", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0, end = 0;  // byte range within the data section
};

// A parsed and validated safetensors file (the header; tensor data are read on demand).
class SafetensorsReader {
 public:
  // Reads and validates the header. Error(FWP_ERR_IO) if the file cannot be
  // opened or read or is not a regular file, Error(FWP_ERR_FORMAT) if it is
  // truncated or malformed.
  explicit SafetensorsReader(const std::string& path);
  ~SafetensorsReader();
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::map<std::string, SafetensorsEntry>& tensors() const { return tensors_; }
  // The metadata value, or nullptr.
  const std::string* find_metadata(const std::string& key) const;
  // Reads an F32 tensor whose shape must equal `shape`; Error(FWP_ERR_FORMAT)
  // if it is missing or has another dtype or shape.
  std::vector<float> read_f32(const std::string& name, const std::vector<int64_t>& shape) const;

 private:
  void read_header(uint64_t file_size);
  // Reads exactly n bytes at `offset` of the open file; Error(FWP_ERR_IO) naming `what` otherwise.
  void read_at(uint64_t offset, void* out, uint64_t n, const std::string& what) const;

  std::string path_;
  int fd_ = -1;              // kept open: tensors are read from the file that was validated
  uint64_t data_start_ = 0;  // file offset of the data section
  std::map<std::string, std::string> metadata_;
  std::map<std::string, SafetensorsEntry> tensors_;
};

// Collects metadata and tensors in memory, then writes them as one file.
// Tensors are laid out in the order they were added.
class SafetensorsWriter {
 public:
  // Error(FWP_ERR_INVALID_ARGUMENT) for an empty key or a key or value that is
  // not valid UTF-8. Setting a key again replaces its value.
  void set_metadata(const std::string& key, const std::string& value);

  // An F32 tensor; data.size() must be the product of the shape.
  void add_f32(const std::string& name, const std::vector<int64_t>& shape, const std::vector<float>& data);
  // A tensor of any dtype from its raw little-endian bytes; `bytes` must be
  // the product of the shape times the dtype's size. Error(FWP_ERR_INVALID_ARGUMENT)
  // for an unknown dtype, a negative dimension, a size mismatch, an empty,
  // non-UTF-8 or reserved ("__metadata__") name, or a name added before.
  void add_tensor(const std::string& name, const std::string& dtype, const std::vector<int64_t>& shape,
                  const void* data, size_t bytes);

  // The header as it will be written (padded with spaces so that the data
  // section starts 8-byte aligned, as the reference writer does).
  // Error(FWP_ERR_INVALID_ARGUMENT) if it would exceed kMaxSafetensorsHeaderBytes.
  std::string header() const;

  // Writes a new temporary file "<path>.tmp.<pid>.<n>" (n counts the writes
  // of this process; created with O_EXCL, so no two writers, threads or
  // processes, ever share one), flushes it to disk and renames it over `path`.
  // Error(FWP_ERR_IO) when any step fails; the temporary file is then removed
  // and a previous file at `path` is left as it was.
  void write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name, dtype;
    std::vector<int64_t> shape;
    std::vector<unsigned char> bytes;
  };
  std::map<std::string, std::string> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace fwp
