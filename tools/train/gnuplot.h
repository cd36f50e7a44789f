// Plots of training results, drawn by gnuplot into PNG files. Commands build
// the plot (data blocks and a plot command); this file finds gnuplot, sets up
// the PNG terminal, quotes strings and runs it.
#ifndef FWP_TOOLS_TRAIN_GNUPLOT_H
#define FWP_TOOLS_TRAIN_GNUPLOT_H

#include <string>

namespace fwp_cli {
namespace train {

/// The gnuplot executable in PATH. Throws RunError saying how to install it,
/// so a command can fail before training rather than after.
std::string find_gnuplot(const std::string& flag);

/// A gnuplot single-quoted string.
std::string gnuplot_quote(const std::string& text);

/// Runs `script` (without terminal or output settings) with `gnuplot` to
/// write the PNG file `png_path`. Throws RunError when gnuplot fails.
void render_png(const std::string& gnuplot, const std::string& png_path, const std::string& script);

/// One metric of an evaluation log drawn against the step, one line per run.
struct CurveSpec {
  std::string column;  ///< The CSV column to draw (e.g. "perplexity", "bleu").
  std::string title;
  std::string ylabel;
  bool log_scale = false;
};

/// Draws `spec.column` of every run in the evaluation log `csv` (its "model"
/// column names the runs; "step" is the x axis) into `png`. Nothing is drawn
/// for a log without rows. Throws RunError for a log without those columns or
/// when gnuplot fails.
void render_eval_curves(const std::string& gnuplot, const std::string& png, const std::string& csv,
                        const CurveSpec& spec);

}  // namespace train
}  // namespace fwp_cli

#endif  // FWP_TOOLS_TRAIN_GNUPLOT_H
