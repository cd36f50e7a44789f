// Lines of text as the authors' toolkit reads them (Python's text-mode file
// iteration, "universal newlines"): a line ends at "\n", "\r\n" or a lone
// "\r"; the last line of a file counts even without a terminator; an empty
// file has no lines. Bytes are passed through unchanged (no decoding).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace fwp {

// Calls f(line, terminated) for each line of an in-memory text (line without
// its terminator; terminated is false only for a last line without one).
template <typename F>
void for_each_line(std::string_view text, F&& f) {
  size_t start = 0;
  while (start < text.size()) {
    size_t end = start;
    while (end < text.size() && text[end] != '\n' && text[end] != '\r') ++end;
    if (end == text.size()) {
      f(text.substr(start), false);
      return;
    }
    f(text.substr(start, end - start), true);
    start = end + ((text[end] == '\r' && end + 1 < text.size() && text[end + 1] == '\n') ? 2 : 1);
  }
}

// Reads a file line by line with a bounded buffer: at most one line (and one
// read chunk) is held in memory.
class LineReader {
 public:
  static constexpr size_t kDefaultChunkBytes = size_t(1) << 20;

  // Lines longer than max_line_bytes are refused with Error(FWP_ERR_FORMAT)
  // naming the file and line. Error(FWP_ERR_IO) if the file cannot be opened
  // or is not a regular file. `what` names the file in messages. chunk_bytes
  // (>= 1): how much one read takes (tests make it small to cut lines across reads).
  LineReader(const std::string& path, const char* what, size_t max_line_bytes,
             size_t chunk_bytes = kDefaultChunkBytes);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line (without its terminator) into `line`; false at the end of the file.
  bool next(std::string& line);
  // 1-based number of the line last returned by next().
  int64_t line_number() const { return line_number_; }
  const std::string& path() const { return path_; }

 private:
  bool fill();  // reads the next chunk; false at the end of the file

  std::string path_;
  std::string what_;
  size_t max_line_bytes_;
  int fd_ = -1;
  std::vector<char> buffer_;
  size_t pos_ = 0, end_ = 0;
  bool eof_ = false;
  bool skip_lf_ = false;  // the last line ended at '\r': a '\n' right after it belongs to it
  int64_t line_number_ = 0;
};

}  // namespace fwp
