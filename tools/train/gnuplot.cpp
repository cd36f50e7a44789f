#include "gnuplot.h"

#include "../cli_support.h"

#include <fmt/format.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>
#include <sstream>
#include <string>
#include <vector>

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

void render_eval_curves(const std::string& gnuplot, const std::string& png, const std::string& csv,
                        const CurveSpec& spec) {
  std::stringstream lines(read_file(csv));
  std::string line;
  std::getline(lines, line);
  const std::vector<std::string> header = split_csv_record(line);
  auto column = [&](const std::string& name) {
    for (size_t i = 0; i < header.size(); ++i) {
      if (header[i] == name) return i;
    }
    throw RunError(fmt::format("{} has no column '{}'", csv, name));
  };
  const size_t model_col = column("model"), step_col = column("step"), value_col = column(spec.column);
  std::map<std::string, std::string> blocks;
  std::vector<std::string> order;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    const std::vector<std::string> f = split_csv_record(line);
    if (f.size() != header.size()) continue;
    if (blocks.find(f[model_col]) == blocks.end()) order.push_back(f[model_col]);
    blocks[f[model_col]] += f[step_col] + " " + f[value_col] + "\n";
  }
  if (order.empty()) return;
  std::string script;
  for (size_t i = 0; i < order.size(); ++i) script += fmt::format("$run{} << EOD\n{}EOD\n", i, blocks[order[i]]);
  script += "set title " + gnuplot_quote(spec.title) + "\nset xlabel 'training step'\nset ylabel " +
            gnuplot_quote(spec.ylabel) + "\n" + (spec.log_scale ? "set logscale y\n" : "") +
            "set grid\nset key top right\nplot ";
  for (size_t i = 0; i < order.size(); ++i) {
    script += fmt::format("{}$run{} using 1:2 with linespoints title {}", i == 0 ? "" : ", ", i,
                          gnuplot_quote(order[i]));
  }
  script += "\n";
  render_png(gnuplot, png, script);
}

}  // namespace train
}  // namespace fwp_cli
