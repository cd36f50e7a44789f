#include "gnuplot.h"

#include "../cli_support.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

namespace fwp_cli {
namespace train {
namespace {

std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

}  // namespace

std::string find_gnuplot(const std::string& flag) {
  const std::string gnuplot = find_in_path("gnuplot");
  if (gnuplot.empty()) {
    throw RunError(flag + " needs gnuplot, which is not in PATH (install it, e.g. apt-get install gnuplot-nox)");
  }
  return gnuplot;
}

std::string gnuplot_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) {
    if (c == '\'') quoted += '\'';  // a doubled quote stands for one quote
    quoted += c;
  }
  return quoted + "'";
}

void render_png(const std::string& gnuplot, const std::string& png_path, const std::string& script) {
  // gnuplot draws into a temporary of its own beside the target, renamed into
  // place once complete: a reader never sees half a PNG, and concurrent
  // renders to one path each replace it whole.
  const ExclusiveTemporary tmp = create_exclusive_temporary(png_path);
  ::close(tmp.fd);
  std::string full = "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
                     "  set terminal pngcairo size 960,620 font 'sans,11'\n"
                     "} else {\n"
                     "  set terminal png size 960,620\n"
                     "}\n";
  full += fmt::format("set output {}\n", gnuplot_quote(tmp.path));
  full += script;

  // gnuplot's stdout goes nowhere: when it cannot open its output it draws the
  // PNG on stdout instead, which would corrupt the program's own (--json) output.
  // Its messages go to stderr as before.
  const std::string command = shell_quote(gnuplot) + " >/dev/null";
  FILE* pipe = ::popen(command.c_str(), "w");
  if (pipe == nullptr) {
    const std::string reason = std::strerror(errno);
    ::unlink(tmp.path.c_str());
    throw RunError(fmt::format("cannot start gnuplot ({}): {}", gnuplot, reason));
  }
  const size_t written = std::fwrite(full.data(), 1, full.size(), pipe);
  const int status = ::pclose(pipe);
  struct stat info;
  const bool drawn = ::stat(tmp.path.c_str(), &info) == 0 && S_ISREG(info.st_mode) && info.st_size > 0;
  if (written != full.size() || status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || !drawn) {
    ::unlink(tmp.path.c_str());
    throw RunError(fmt::format("gnuplot failed to render {}", png_path));
  }
  if (::rename(tmp.path.c_str(), png_path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(tmp.path.c_str());
    throw RunError(fmt::format("cannot rename {} to {}: {}", tmp.path, png_path, reason));
  }
}

}  // namespace train
}  // namespace fwp_cli
