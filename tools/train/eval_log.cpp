#include "eval_log.h"

#include "../cli_support.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace fwp_cli {
namespace train {
namespace {

std::string number_text(double value) { return std::isfinite(value) ? fmt::format("{:.8g}", value) : "nan"; }

}  // namespace

EvalLog::~EvalLog() {
  if (file_ != nullptr) std::fclose(file_);
}

std::string EvalLog::header(const std::vector<std::string>& id_columns, const std::vector<std::string>& metrics) {
  std::string text;
  for (const std::string& column : id_columns) text += column + ",";
  text += "step,eval_loss,best,seconds";
  for (const std::string& metric : metrics) text += "," + metric;
  return text;
}

void EvalLog::open_fresh(const std::string& path, const std::vector<std::string>& id_columns,
                         const std::vector<std::string>& metrics, const std::vector<RunId>& runs) {
  open_keeping(path, header(id_columns, metrics), id_columns.size(),
               [&runs](const RunId& id, int64_t) { return std::find(runs.begin(), runs.end(), id) == runs.end(); });
}

void EvalLog::open_resumed(const std::string& path, const std::vector<std::string>& id_columns,
                           const std::vector<std::string>& metrics, const RunId& run, int64_t step) {
  open_keeping(path, header(id_columns, metrics), id_columns.size(),
               [&run, step](const RunId& id, int64_t row_step) { return id != run || row_step <= step; });
}

void EvalLog::append(const RunId& run, const TrainState& s) {
  if (file_ == nullptr) return;
  std::string row;
  for (const std::string& value : run) row += csv_field(value) + ",";
  row += fmt::format("{},{},{},{:.3f}", s.step, number_text(s.last_eval), number_text(s.best), s.seconds);
  for (const Metric& metric : s.last_metrics) row += "," + number_text(metric.value);
  if (split_csv_record(row).size() != columns_) {
    throw RunError(fmt::format("{}: a row of {} fields does not fit the header", path_, split_csv_record(row).size()));
  }
  row += "\n";
  if (std::fputs(row.c_str(), file_) < 0 || std::fflush(file_) != 0) {
    throw RunError(fmt::format("cannot write {}: {}", path_, std::strerror(errno)));
  }
}

// Rewrites the file keeping the rows for which keep(id, step) holds, then opens it for appending.
template <typename Keep>
void EvalLog::open_keeping(const std::string& path, const std::string& header, size_t id_count, Keep keep) {
  if (file_ != nullptr) std::fclose(file_);
  file_ = nullptr;
  path_ = path;
  columns_ = split_csv_record(header).size();
  std::string kept = header + "\n";
  if (file_exists(path)) {
    std::istringstream text(read_file(path));
    std::string line;
    bool first = true;
    while (std::getline(text, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (first) {
        first = false;
        if (line != header) {
          throw RunError(fmt::format("{} is not an evaluation log of this kind of run (its header is not '{}')",
                                     path, header));
        }
        continue;
      }
      if (line.empty()) continue;
      const std::vector<std::string> fields = split_csv_record(line);
      if (fields.size() != columns_) throw RunError(fmt::format("{}: malformed row '{}'", path, line));
      const RunId id(fields.begin(), fields.begin() + static_cast<std::ptrdiff_t>(id_count));
      if (keep(id, std::strtoll(fields[id_count].c_str(), nullptr, 10))) kept += line + "\n";
    }
  }
  write_file_atomically(path, kept);
  file_ = std::fopen(path.c_str(), "a");
  if (file_ == nullptr) throw RunError(fmt::format("cannot open {}: {}", path, std::strerror(errno)));
}

}  // namespace train
}  // namespace fwp_cli
