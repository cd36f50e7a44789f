#include "io/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <limits>
#include <string_view>

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

// The pid in a temporary's name "<prefix><pid>.<n>" (both decimal), or -1 if the name is not one.
long long temporary_pid(std::string_view name, std::string_view prefix) {
  if (name.size() <= prefix.size() || name.substr(0, prefix.size()) != prefix) return -1;
  name.remove_prefix(prefix.size());
  const size_t dot = name.find('.');
  if (dot == 0 || dot == std::string_view::npos || dot > 10 || dot + 1 == name.size()) return -1;
  long long pid = 0;
  for (size_t i = 0; i < name.size(); ++i) {
    if (i == dot) continue;
    if (name[i] < '0' || name[i] > '9') return -1;
    if (i < dot) pid = pid * 10 + (name[i] - '0');
  }
  return pid;
}

}  // namespace

void remove_stale_temporaries(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
  const std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp.";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return;
  const long long self = static_cast<long long>(::getpid());
  while (const dirent* e = ::readdir(d)) {
    const long long pid = temporary_pid(e->d_name, prefix);
    // This process's own temporaries belong to saves of its other threads.
    if (pid <= 0 || pid == self || pid > std::numeric_limits<pid_t>::max()) continue;
    // Alive (EPERM: a process of another user); only "no such process" is dead.
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    struct stat st {};
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode)) continue;
    (void)::unlinkat(::dirfd(d), e->d_name, 0);  // another save may have removed it first
  }
  ::closedir(d);
}

int create_temporary_for(const std::string& path, std::string* tmp) {
  require(!path.empty(), FWP_ERR_INVALID_ARGUMENT, "path must not be empty");
  remove_stale_temporaries(path);
  // The pid separates processes, the counter the writes (and so the threads)
  // of this one; O_EXCL turns a leftover of a dead process whose pid came back
  // into a retry with the next number instead of a shared file.
  static std::atomic<uint64_t> counter{0};
  int fd = -1;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    *tmp = path + ".tmp." + std::to_string(static_cast<long long>(::getpid())) + "." +
           std::to_string(counter.fetch_add(1));
    fd = ::open(tmp->c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) throw Error(FWP_ERR_IO, "cannot create '" + *tmp + "': " + errno_text());
  return fd;
}

AtomicFileWriter::AtomicFileWriter(const std::string& path) : path_(path) {
  fd_ = create_temporary_for(path, &tmp_);
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
