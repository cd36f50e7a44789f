// The evaluation log (--csv): one CSV row per evaluation. Its columns are the
// columns that identify a run within a shared log (e.g. "keys" for the S of a
// retrieval sweep; none for a single run), then step, eval_loss, best and
// seconds, then the task's metrics (e.g. perplexity). Several invocations may
// fill one log: a fresh run replaces the rows of its own identity, a resumed
// run drops the rows written after its checkpoint, rows of other runs stay.
#ifndef FWP_TOOLS_TRAIN_EVAL_LOG_H
#define FWP_TOOLS_TRAIN_EVAL_LOG_H

#include "train_state.h"

#include <cstdio>
#include <string>
#include <vector>

namespace fwp_cli {
namespace train {

/// The values of the identity columns of one run, e.g. {"20"} for S = 20.
using RunId = std::vector<std::string>;

class EvalLog {
 public:
  /// An empty log writes nothing until opened.
  EvalLog() = default;
  ~EvalLog();
  EvalLog(const EvalLog&) = delete;
  EvalLog& operator=(const EvalLog&) = delete;

  /// The header line for the given identity and metric columns.
  static std::string header(const std::vector<std::string>& id_columns, const std::vector<std::string>& metrics);

  /// Opens `path` for fresh runs with the given identities: their earlier rows
  /// are dropped. Throws RunError when the file has another header or cannot be written.
  void open_fresh(const std::string& path, const std::vector<std::string>& id_columns,
                  const std::vector<std::string>& metrics, const std::vector<RunId>& runs);

  /// Opens `path` to continue run `run` resumed at `step`: its rows past that step are dropped.
  void open_resumed(const std::string& path, const std::vector<std::string>& id_columns,
                    const std::vector<std::string>& metrics, const RunId& run, int64_t step);

  /// Appends the row of the latest evaluation in `state`. Throws RunError.
  void append(const RunId& run, const TrainState& state);

  bool is_open() const { return file_ != nullptr; }

 private:
  template <typename Keep>
  void open_keeping(const std::string& path, const std::string& header, size_t id_count, Keep keep);

  std::string path_;
  size_t columns_ = 0;
  FILE* file_ = nullptr;
};

}  // namespace train
}  // namespace fwp_cli

#endif  // FWP_TOOLS_TRAIN_EVAL_LOG_H
