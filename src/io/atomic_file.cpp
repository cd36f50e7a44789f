#include "io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace fwp {
namespace {

constexpr size_t kBufferBytes = 1u << 20;

std::string errno_text() { return std::strerror(errno); }

bool write_all_at(int fd, const char* data, size_t n, uint64_t offset) {
  while (n > 0) {
    const ssize_t w = ::pwrite(fd, data, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
  return true;
}

}  // namespace

AtomicFileWriter::AtomicFileWriter(const std::string& path) : path_(path) {
  require(!path.empty(), FWP_ERR_INVALID_ARGUMENT, "path must not be empty");
  // The pid separates processes, the counter the writes of this one; O_EXCL
  // turns a leftover of a crashed process with a reused pid into a retry.
  static std::atomic<uint64_t> counter{0};
  for (int attempt = 0; attempt < 100 && fd_ < 0; ++attempt) {
    tmp_ = path + ".tmp." + std::to_string(static_cast<long long>(::getpid())) + "." +
           std::to_string(counter.fetch_add(1));
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd_ < 0 && errno != EEXIST) break;
  }
  if (fd_ < 0) throw Error(FWP_ERR_IO, "cannot create '" + tmp_ + "': " + errno_text());
  buffer_.reserve(kBufferBytes);
}

AtomicFileWriter::~AtomicFileWriter() {
  if (!committed_ && fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicFileWriter::fail(const std::string& what) {
  const std::string reason = errno_text();
  ::close(fd_);
  ::unlink(tmp_.c_str());
  fd_ = -1;
  throw Error(FWP_ERR_IO, what + " '" + tmp_ + "': " + reason);
}

void AtomicFileWriter::flush_buffer() {
  const uint64_t start = size_ - buffer_.size();
  if (!buffer_.empty() && !write_all_at(fd_, buffer_.data(), buffer_.size(), start)) fail("cannot write");
  buffer_.clear();
}

void AtomicFileWriter::write(const void* data, size_t bytes) {
  require(fd_ >= 0 && !committed_, FWP_ERR_INTERNAL, "write to a closed file '" + tmp_ + "'");
  const char* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const size_t n = std::min(bytes, kBufferBytes - buffer_.size());
    buffer_.append(p, n);
    size_ += n;
    p += n;
    bytes -= n;
    if (buffer_.size() == kBufferBytes) flush_buffer();
  }
}

void AtomicFileWriter::write_at(uint64_t offset, const void* data, size_t bytes) {
  require(fd_ >= 0 && !committed_, FWP_ERR_INTERNAL, "write to a closed file '" + tmp_ + "'");
  require(offset <= size_ && bytes <= size_ - offset, FWP_ERR_INTERNAL, "write_at past the end of '" + tmp_ + "'");
  flush_buffer();
  if (!write_all_at(fd_, static_cast<const char*>(data), bytes, offset)) fail("cannot write");
}

void AtomicFileWriter::commit() {
  require(fd_ >= 0 && !committed_, FWP_ERR_INTERNAL, "commit of a closed file '" + tmp_ + "'");
  flush_buffer();
  if (::fsync(fd_) != 0) fail("cannot flush");
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    const std::string reason = errno_text();
    ::unlink(tmp_.c_str());
    throw Error(FWP_ERR_IO, "cannot close '" + tmp_ + "': " + reason);
  }
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const std::string reason = errno_text();
    ::unlink(tmp_.c_str());
    throw Error(FWP_ERR_IO, "cannot rename '" + tmp_ + "' to '" + path_ + "': " + reason);
  }
  committed_ = true;
  // Make the rename durable (best effort: some file systems refuse to fsync a directory).
  const size_t slash = path_.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path_.substr(0, slash));
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    (void)::fsync(dfd);
    ::close(dfd);
  }
}

int open_regular_file(const std::string& path, const char* what, uint64_t* size) {
  require(!path.empty(), FWP_ERR_INVALID_ARGUMENT, "path must not be empty");
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw Error(FWP_ERR_IO, std::string("cannot open ") + what + " '" + path + "': " + errno_text());
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const std::string reason = errno_text();
    ::close(fd);
    throw Error(FWP_ERR_IO, std::string("cannot stat ") + what + " '" + path + "': " + reason);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw Error(FWP_ERR_IO, std::string(what) + " '" + path + "' is not a regular file");
  }
  *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

bool read_exact_at(int fd, void* data, size_t bytes, uint64_t offset) {
  char* p = static_cast<char*>(data);
  while (bytes > 0) {
    const ssize_t r = ::pread(fd, p, bytes, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (r == 0) return false;
    p += r;
    bytes -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return true;
}

bool same_file(const std::string& a, const std::string& b) {
  struct stat sa {}, sb {};
  if (::stat(a.c_str(), &sa) != 0 || ::stat(b.c_str(), &sb) != 0) return false;
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

}  // namespace fwp
