#include "text/line_reader.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"
#include "io/atomic_file.h"

namespace fwp {

LineReader::LineReader(const std::string& path, const char* what, size_t max_line_bytes, size_t chunk_bytes)
    : path_(path), what_(what), max_line_bytes_(max_line_bytes) {
  require(chunk_bytes >= 1, FWP_ERR_INVALID_ARGUMENT, "LineReader: chunk_bytes must be >= 1");
  uint64_t size = 0;
  fd_ = open_regular_file(path, what, &size);
  buffer_.resize(chunk_bytes);
}

LineReader::~LineReader() {
  if (fd_ >= 0) ::close(fd_);
}

bool LineReader::fill() {
  if (eof_) return false;
  for (;;) {
    const ssize_t r = ::read(fd_, buffer_.data(), buffer_.size());
    if (r < 0) {
      if (errno == EINTR) continue;
      throw Error(FWP_ERR_IO, "cannot read " + what_ + " '" + path_ + "': " + std::strerror(errno));
    }
    pos_ = 0;
    end_ = static_cast<size_t>(r);
    if (r == 0) eof_ = true;
    return r > 0;
  }
}

bool LineReader::next(std::string& line) {
  line.clear();
  bool any = false;  // whether this line has started (a byte or a terminator seen)
  for (;;) {
    if (pos_ == end_ && !fill()) {
      if (!any) return false;
      ++line_number_;
      return true;  // a last line without a terminator
    }
    if (skip_lf_) {
      skip_lf_ = false;
      if (buffer_[pos_] == '\n') {
        ++pos_;
        continue;
      }
    }
    any = true;
    size_t stop = pos_;
    while (stop < end_ && buffer_[stop] != '\n' && buffer_[stop] != '\r') ++stop;
    if (line.size() + (stop - pos_) > max_line_bytes_) {
      throw Error(FWP_ERR_FORMAT, "line " + std::to_string(line_number_ + 1) + " of " + what_ + " '" + path_ +
                                      "' is longer than " + std::to_string(max_line_bytes_) + " bytes");
    }
    line.append(buffer_.data() + pos_, stop - pos_);
    if (stop < end_) {
      skip_lf_ = buffer_[stop] == '\r';
      pos_ = stop + 1;
      ++line_number_;
      return true;
    }
    pos_ = stop;
  }
}

}  // namespace fwp
