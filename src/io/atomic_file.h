// Files written whole or not at all, and files opened for reading without
// blocking, for the formats that stream their content (tokenizer and token
// files; the safetensors writer uses the same temporary files).
//
// AtomicFileWriter writes to a temporary file of its own next to the
// destination ("<path>.tmp.<pid>.<n>": unique per process and call, created
// with O_EXCL), and commit() flushes it to disk and renames it over the
// destination. Until commit() succeeds the destination is untouched; a writer
// destroyed without commit() (an error, an exception) removes its temporary
// file, so nothing is left behind.
//
// A process killed inside a save (SIGKILL, power loss) cannot remove its
// temporary. Policy: every save to <path> first removes the temporaries of
// <path> whose writer process no longer exists on this machine (exactly the
// names "<path>.tmp.<pid>.<n>", regular files, pid not this process's and not
// alive by kill(pid, 0)). So stale temporaries never accumulate: at most the
// ones of the last killed save stay, until the next save to the same path.
// Limits: a dead writer's pid reused by a live process keeps its temporary
// until that process ends; writers in another pid namespace or on another
// machine sharing the folder look dead, so their save fails cleanly (its
// rename finds no temporary) instead of being waited for.
#pragma once

#include <cstdint>
#include <string>

namespace fwp {

class AtomicFileWriter {
 public:
  // Creates the temporary file; Error(FWP_ERR_IO) naming it if that fails,
  // Error(FWP_ERR_INVALID_ARGUMENT) for an empty path.
  explicit AtomicFileWriter(const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  // Appends bytes (buffered); Error(FWP_ERR_IO) on failure.
  void write(const void* data, size_t bytes);
  // Overwrites bytes already written at `offset` (e.g. a header completed at
  // the end); the range must lie inside what was written.
  void write_at(uint64_t offset, const void* data, size_t bytes);
  // Bytes written so far.
  uint64_t size() const { return size_; }
  // Flushes, fsyncs, closes and renames over the destination; Error(FWP_ERR_IO)
  // on failure (the temporary file is removed then).
  void commit();

 private:
  void flush_buffer();
  [[noreturn]] void fail(const std::string& what);

  std::string path_;
  std::string tmp_;
  int fd_ = -1;
  uint64_t size_ = 0;
  std::string buffer_;
  bool committed_ = false;
};

// Removes the stale temporaries of saves to `path` (the policy above); best
// effort: a folder or file that cannot be read or removed is left alone.
void remove_stale_temporaries(const std::string& path);

// Creates the temporary file of one save to `path` (after removing stale
// ones) and returns its descriptor, open for writing; *tmp receives its name.
// Error(FWP_ERR_IO) naming it if it cannot be created.
int create_temporary_for(const std::string& path, std::string* tmp);

// Opens `path` for reading: O_NONBLOCK (a FIFO or device is refused, not
// waited on) and only a regular file is accepted. Returns the descriptor and
// its size; Error(FWP_ERR_IO) naming the path otherwise. `what` names the file
// in messages ("token file").
int open_regular_file(const std::string& path, const char* what, uint64_t* size);

// Reads exactly `bytes` at `offset` (pread); false if the file ended first or a read failed.
bool read_exact_at(int fd, void* data, size_t bytes, uint64_t offset);

// Whether two paths name the same existing file (same device and inode).
bool same_file(const std::string& a, const std::string& b);

}  // namespace fwp
