// The sweep table of `fwp retrieval`: one row per trained configuration and
// number of keys S, kept in a CSV file that several invocations merge into,
// and its plot (final evaluation loss against S, one line per model) drawn by
// gnuplot like the figures of the paper's section 6.1.
#ifndef FWP_TOOLS_RETRIEVAL_SWEEP_H
#define FWP_TOOLS_RETRIEVAL_SWEEP_H

#include <cstdint>
#include <string>
#include <vector>

namespace fwp_cli {

/// One finished run.
struct SweepRow {
  std::string model;             ///< Label such as "DPFP nu=2 sum"; no commas.
  int64_t keys = 0;              ///< S.
  double final_eval_loss = 0.0;  ///< Loss of the last evaluation.
  double best_eval_loss = 0.0;   ///< Lowest evaluation loss seen.
  int64_t steps = 0;             ///< Training steps taken.
  double seconds = 0.0;          ///< Wall time of training and evaluation.
  int setting = 1;               ///< 1 (capacity) or 2 (update).
  std::string stopped_by;        ///< "target", "patience" or "max_steps".
  uint64_t seed = 0;             ///< The run's --seed.
  int64_t eval_pairs = 0;        ///< Pairs per evaluation sequence (files without the column: the training length).
};

/// The header line of the sweep CSV (without newline).
const char* sweep_csv_header();

/// Reads a sweep CSV; a missing or empty file gives no rows. Throws RunError
/// naming the line when the file is malformed. A file with the header of
/// before the eval_pairs column is read with eval_pairs = the training length
/// (S, or 2 S in setting 2), which is what those runs evaluated on; it is
/// written back with the column.
std::vector<SweepRow> read_sweep_csv(const std::string& path);

/// Replaces the row with the same model, setting and S, or appends `row`.
void merge_sweep_row(std::vector<SweepRow>& rows, const SweepRow& row);

/// Whether `rows` holds a finished run of this experiment (--skip-done): a
/// row of the same model, setting, S, seed and evaluation length that did not
/// stop at a step cap below max_steps (a raised cap makes it unfinished again).
bool finished_row(const std::vector<SweepRow>& rows, const std::string& model, int setting, int64_t keys,
                  uint64_t seed, int64_t eval_pairs, int64_t max_steps);

/// Writes the rows (with the header) atomically. Throws RunError.
void write_sweep_csv(const std::string& path, const std::vector<SweepRow>& rows);

/// The gnuplot script (without terminal and output) of render_sweep_plot():
/// final evaluation loss against S on a log axis (losses below kPlotLossFloor
/// drawn at the floor), one line per (setting, model) with its own dash and
/// point type so that overlapping lines stay apart, the "solved" threshold
/// drawn as a dashed line, and runs stopped by the step cap circled.
std::string sweep_plot_script(const std::vector<SweepRow>& rows, double solved_threshold);

/// The lowest loss the log axis shows.
constexpr double kPlotLossFloor = 1e-6;

/// Renders sweep_plot_script() to a PNG file with the given gnuplot executable.
/// Throws RunError on failure (or when there are no rows).
void render_sweep_plot(const std::string& gnuplot, const std::string& png_path, const std::vector<SweepRow>& rows,
                       double solved_threshold);

}  // namespace fwp_cli

#endif  // FWP_TOOLS_RETRIEVAL_SWEEP_H
