// What the fuzz targets of the readers share (tests/fuzz/fuzz.cmake builds
// each target twice: a libFuzzer program in a clang build with FWP_FUZZ, and
// with FWP_FUZZ_REPLAY a plain program that replays the committed corpus).
//
// A target defines LLVMFuzzerTestOneInput, sets fuzz::input_accepted when the
// reader accepted its input (the replay checks that every seed named
// "seed_valid*" still is, so the fuzzer keeps starting from inputs that reach
// every check), and may define write_seeds(dir) for `<target>_replay
// --write-seeds DIR` (seeds made by the library itself).
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <iterator>
#include <string>
#include <vector>

#include "core/error.h"

namespace fuzz {

// Whether the last input was accepted (see the top).
inline bool input_accepted = false;

// Prints why the input is a finding and aborts (libFuzzer keeps the input).
[[noreturn]] inline void finding(const std::string& what) {
  std::fprintf(stderr, "fuzz finding: %s\n", what.c_str());
  std::abort();
}

inline void check(bool condition, const std::string& what) {
  if (!condition) finding(what);
}

// A temporary file that lives as long as the program (one per target and role).
class TempFile {
 public:
  explicit TempFile(const char* tag) {
    std::string name = std::string("/tmp/fwp_fuzz_") + tag + "_XXXXXX";
    const int fd = mkstemp(name.data());
    if (fd < 0) std::abort();
    ::close(fd);
    path_ = name;
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  const std::string& path() const { return path_; }
  void write(const void* bytes, size_t size) const {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out.write(static_cast<const char*>(bytes), static_cast<std::streamsize>(size));
    if (!out) std::abort();
  }
  void write(const std::string& bytes) const { write(bytes.data(), bytes.size()); }

 private:
  std::string path_;
};

// Runs `read`: returns true if it succeeded, false if it threw fwp::Error with
// one of the `expected` statuses (the answer to a bad input); any other
// status or exception is a finding.
template <typename F>
bool accepts(const char* where, std::initializer_list<fwp_status> expected, F&& read) {
  try {
    read();
    return true;
  } catch (const fwp::Error& e) {
    for (const fwp_status s : expected) {
      if (e.status() == s) return false;
    }
    finding(std::string(where) + " failed with status " + std::to_string(static_cast<int>(e.status())) + ": " +
            e.what());
  } catch (const std::exception& e) {
    finding(std::string(where) + " threw a non-fwp exception: " + e.what());
  }
}

}  // namespace fuzz

#ifdef FWP_FUZZ_REPLAY
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size);
// Writes the target's library-made seeds into an existing folder.
void write_seeds(const std::string& dir);

// Replays files (or every file of the directories) given on the command line.
int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--write-seeds") {
    write_seeds(argv[2]);
    return 0;
  }
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    struct stat st;
    if (::stat(argv[i], &st) != 0) {
      std::fprintf(stderr, "%s: no such file or directory: %s\n", argv[0], argv[i]);
      return 2;
    }
    if (!S_ISDIR(st.st_mode)) {
      files.push_back(argv[i]);
      continue;
    }
    DIR* d = ::opendir(argv[i]);
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') files.push_back(std::string(argv[i]) + "/" + e->d_name);
    }
    ::closedir(d);
  }
  std::sort(files.begin(), files.end());
  if (files.empty()) {
    std::fprintf(stderr, "%s: no inputs\n", argv[0]);
    return 2;
  }
  int accepted = 0, valid_refused = 0;
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    fuzz::input_accepted = false;
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    accepted += fuzz::input_accepted ? 1 : 0;
    if (f.substr(f.find_last_of('/') + 1).rfind("seed_valid", 0) == 0 && !fuzz::input_accepted) {
      std::fprintf(stderr, "%s: the valid seed %s is no longer accepted\n", argv[0], f.c_str());
      ++valid_refused;
    }
  }
  std::printf("%s: %zu inputs (%d accepted), no finding\n", argv[0], files.size(), accepted);
  return valid_refused == 0 ? 0 : 1;
}
#endif
