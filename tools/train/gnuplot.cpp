#include "gnuplot.h"

#include "../cli_support.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <sys/wait.h>

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
  std::string full = "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
                     "  set terminal pngcairo size 960,620 font 'sans,11'\n"
                     "} else {\n"
                     "  set terminal png size 960,620\n"
                     "}\n";
  full += fmt::format("set output {}\n", gnuplot_quote(png_path));
  full += script;

  FILE* pipe = ::popen(shell_quote(gnuplot).c_str(), "w");
  if (pipe == nullptr) throw RunError(fmt::format("cannot start gnuplot ({}): {}", gnuplot, std::strerror(errno)));
  const size_t written = std::fwrite(full.data(), 1, full.size(), pipe);
  const int status = ::pclose(pipe);
  if (written != full.size() || status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    throw RunError(fmt::format("gnuplot failed to render {}", png_path));
  }
  if (!file_exists(png_path)) throw RunError(fmt::format("gnuplot did not write {}", png_path));
}

}  // namespace train
}  // namespace fwp_cli
