#include "retrieval_sweep.h"

#include "cli_support.h"
#include "train/gnuplot.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <sstream>
#include <utility>

namespace fwp_cli {
namespace {

using train::gnuplot_quote;

constexpr size_t kColumns = 10;
// The header before the eval_pairs column was added; such files are still read.
constexpr const char* kHeaderWithoutEvalPairs =
    "model,keys,final_eval_loss,best_eval_loss,steps,seconds,setting,stopped_by,seed";

std::string format_number(double value) {
  if (std::isnan(value)) return "nan";
  return fmt::format("{:.8g}", value);
}

double parse_double(const std::string& text, const std::string& where) {
  char* end = nullptr;
  errno = 0;
  const double value = std::strtod(text.c_str(), &end);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE) {
    throw RunError(fmt::format("{}: '{}' is not a number", where, text));
  }
  return value;
}

int64_t parse_int(const std::string& text, const std::string& where) {
  char* end = nullptr;
  errno = 0;
  const long long value = std::strtoll(text.c_str(), &end, 10);
  if (text.empty() || end != text.c_str() + text.size() || errno == ERANGE) {
    throw RunError(fmt::format("{}: '{}' is not an integer", where, text));
  }
  return value;
}

}  // namespace

const char* sweep_csv_header() {
  return "model,keys,final_eval_loss,best_eval_loss,steps,seconds,setting,stopped_by,seed,eval_pairs";
}

std::vector<SweepRow> read_sweep_csv(const std::string& path) {
  std::vector<SweepRow> rows;
  if (!file_exists(path)) return rows;
  std::istringstream text(read_file(path));
  std::string line;
  int line_number = 0;
  size_t columns = kColumns;
  while (std::getline(text, line)) {
    ++line_number;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    if (line_number == 1) {
      if (line == kHeaderWithoutEvalPairs) {
        columns = kColumns - 1;
        continue;
      }
      if (line != sweep_csv_header()) {
        throw RunError(fmt::format("{}: not a sweep CSV of fwp retrieval (its header is not '{}')", path,
                                   sweep_csv_header()));
      }
      continue;
    }
    const std::string where = fmt::format("{}:{}", path, line_number);
    const std::vector<std::string> fields = split_csv_record(line);
    if (fields.size() != columns) {
      throw RunError(fmt::format("{}: expected {} fields, found {}", where, columns, fields.size()));
    }
    SweepRow row;
    row.model = fields[0];
    row.keys = parse_int(fields[1], where);
    row.final_eval_loss = parse_double(fields[2], where);
    row.best_eval_loss = parse_double(fields[3], where);
    row.steps = parse_int(fields[4], where);
    row.seconds = parse_double(fields[5], where);
    row.setting = static_cast<int>(parse_int(fields[6], where));
    row.stopped_by = fields[7];
    row.seed = static_cast<uint64_t>(std::strtoull(fields[8].c_str(), nullptr, 10));
    if (columns == kColumns) {
      row.eval_pairs = parse_int(fields[9], where);
    } else {
      row.eval_pairs = row.setting == 2 ? 2 * row.keys : row.keys;  // what runs before the column evaluated on
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

void merge_sweep_row(std::vector<SweepRow>& rows, const SweepRow& row) {
  for (SweepRow& existing : rows) {
    if (existing.model == row.model && existing.setting == row.setting && existing.keys == row.keys) {
      existing = row;
      return;
    }
  }
  rows.push_back(row);
}

bool finished_row(const std::vector<SweepRow>& rows, const std::string& model, int setting, int64_t keys,
                  uint64_t seed, int64_t eval_pairs, int64_t max_steps) {
  for (const SweepRow& r : rows) {
    if (r.model != model || r.setting != setting || r.keys != keys || r.seed != seed || r.eval_pairs != eval_pairs) {
      continue;
    }
    return r.stopped_by != "max_steps" || r.steps >= max_steps;
  }
  return false;
}

void write_sweep_csv(const std::string& path, const std::vector<SweepRow>& rows) {
  std::string text = sweep_csv_header();
  text += '\n';
  for (const SweepRow& row : rows) {
    text += fmt::format("{},{},{},{},{},{:.3f},{},{},{},{}\n", csv_field(row.model), row.keys,
                        format_number(row.final_eval_loss), format_number(row.best_eval_loss), row.steps,
                        row.seconds, row.setting, csv_field(row.stopped_by), row.seed, row.eval_pairs);
  }
  write_file_atomically(path, text);
}

std::string sweep_plot_script(const std::vector<SweepRow>& rows, double solved_threshold) {
  if (rows.empty()) throw RunError("no results to plot");

  // One line per (setting, model), in order of first appearance, points sorted by S.
  std::vector<std::pair<int, std::string>> order;
  std::map<std::pair<int, std::string>, std::vector<const SweepRow*>> lines;
  std::set<int> settings;
  for (const SweepRow& row : rows) {
    const auto id = std::make_pair(row.setting, row.model);
    if (lines.find(id) == lines.end()) order.push_back(id);
    lines[id].push_back(&row);
    settings.insert(row.setting);
  }
  const bool one_setting = settings.size() == 1;
  int64_t min_keys = rows.front().keys, max_keys = rows.front().keys;
  double max_loss = std::max(solved_threshold, kPlotLossFloor * 10);
  for (const SweepRow& row : rows) {
    min_keys = std::min(min_keys, row.keys);
    max_keys = std::max(max_keys, row.keys);
    if (std::isfinite(row.final_eval_loss)) max_loss = std::max(max_loss, row.final_eval_loss);
  }
  // Pad the S axis so the end points are not on the frame (and one S is not an empty range).
  const double pad = std::max(1.0, 0.04 * static_cast<double>(max_keys - min_keys));
  // A loss of 0 has no place on a log axis: drawn at the floor (the label says so).
  auto shown = [](double loss) { return std::isfinite(loss) ? std::max(loss, kPlotLossFloor) : loss; };

  std::string script;
  if (one_setting) {
    const int setting = *settings.begin();
    script += fmt::format("set title {}\n",
                          gnuplot_quote(fmt::format("Associative retrieval, setting {} ({}): final eval loss vs S",
                                                    setting, setting == 1 ? "capacity" : "update")));
  } else {
    script += "set title 'Associative retrieval: final eval loss vs S'\n";
  }
  script += fmt::format("set xlabel 'Number of unique keys S'\n"
                        "set ylabel {}\n"
                        "set logscale y\n"
                        "set format y '10^{{%L}}'\n"
                        "set grid\n"
                        "set key outside right top\n"
                        "set datafile missing 'nan'\n",
                        gnuplot_quote(fmt::format("Final evaluation loss (log; below {:g} drawn at {:g})",
                                                  kPlotLossFloor, kPlotLossFloor)));
  script += fmt::format("set yrange [{:g}:{:g}]\n", kPlotLossFloor / 2, max_loss * 3);
  script += fmt::format("set xrange [{}:{}]\n", static_cast<double>(min_keys) - pad,
                        static_cast<double>(max_keys) + pad);

  // Each line its own dash type and point type (colours alone merge where lines overlap).
  static const int kPointTypes[] = {7, 5, 9, 11, 13, 3, 1, 2};
  std::string plot = "plot ";
  std::string capped;  // the points of runs the step cap stopped
  for (size_t i = 0; i < order.size(); ++i) {
    std::vector<const SweepRow*> points = lines[order[i]];
    std::sort(points.begin(), points.end(), [](const SweepRow* a, const SweepRow* b) { return a->keys < b->keys; });
    script += fmt::format("$line{} << EOD\n", i);
    for (const SweepRow* p : points) {
      const std::string point = fmt::format("{} {}\n", p->keys, format_number(shown(p->final_eval_loss)));
      script += point;
      if (p->stopped_by == "max_steps") capped += point;
    }
    script += "EOD\n";
    const std::string title =
        one_setting ? order[i].second : fmt::format("setting {}: {}", order[i].first, order[i].second);
    plot += fmt::format("{}$line{} using 1:2 with linespoints lw 2 dt {} pt {} ps 1.3 title {}",
                        i == 0 ? "" : ", \\\n  ", i, i % 5 + 1, kPointTypes[i % 8], gnuplot_quote(title));
  }
  // The threshold a run must reach to count as solved.
  plot += fmt::format(", \\\n  {:g} with lines dt 2 lw 1.5 lc rgb 'gray30' title {}", solved_threshold,
                      gnuplot_quote(fmt::format("solved (loss <= {:g})", solved_threshold)));
  if (!capped.empty()) {
    script += "$capped << EOD\n" + capped + "EOD\n";
    plot += ", \\\n  $capped using 1:2 with points pt 6 ps 3 lw 1.5 lc rgb 'black' title "
            "'stopped by the step cap'";
  }
  return script + plot + "\n";
}

void render_sweep_plot(const std::string& gnuplot, const std::string& png_path, const std::vector<SweepRow>& rows,
                       double solved_threshold) {
  train::render_png(gnuplot, png_path, sweep_plot_script(rows, solved_threshold));
}

}  // namespace fwp_cli
