// The sweep plot of `fwp retrieval --plot` (issue 10, plots): a log loss axis,
// the "solved" threshold drawn, runs stopped by the step cap marked, and lines
// told apart by dash and point type where they overlap. Checks the gnuplot
// script; cli_retrieval_sweep_plot renders one with gnuplot.
#include "cli_support.h"
#include "retrieval_sweep.h"
#include "train/gnuplot.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <vector>

#include <sys/stat.h>

namespace {

using fwp_cli::SweepRow;

SweepRow row(const std::string& model, int64_t keys, double loss, const std::string& stopped_by) {
  SweepRow r;
  r.model = model;
  r.keys = keys;
  r.final_eval_loss = loss;
  r.best_eval_loss = loss;
  r.stopped_by = stopped_by;
  return r;
}

std::vector<SweepRow> two_models() {
  return {row("DPFP nu=1 sum", 20, 0.0, "target"), row("DPFP nu=1 sum", 40, 0.02, "max_steps"),
          row("Linear sum", 20, 0.0, "target"), row("Linear sum", 40, 0.3, "patience")};
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

TEST(SweepPlot, LossAxisIsLogarithmicWithZeroDrawnAtTheFloor) {
  const std::string script = fwp_cli::sweep_plot_script(two_models(), 0.001);
  EXPECT_TRUE(contains(script, "set logscale y")) << script;
  EXPECT_TRUE(contains(script, "20 1e-06\n")) << "a loss of 0 must be drawn at the floor:\n" << script;
  EXPECT_FALSE(contains(script, "20 0\n")) << script;
}

TEST(SweepPlot, TheSolvedThresholdIsDrawn) {
  const std::string script = fwp_cli::sweep_plot_script(two_models(), 0.0025);
  EXPECT_TRUE(contains(script, "0.0025 with lines dt 2")) << script;
  EXPECT_TRUE(contains(script, "'solved (loss <= 0.0025)'")) << script;
}

TEST(SweepPlot, RunsStoppedByTheStepCapAreMarked) {
  const std::string script = fwp_cli::sweep_plot_script(two_models(), 0.001);
  const size_t capped = script.find("$capped << EOD\n");
  ASSERT_NE(capped, std::string::npos) << script;
  // Exactly the one capped run (S = 40 of the first model).
  EXPECT_EQ(script.substr(capped, script.find("EOD\n", capped + 15) - capped), "$capped << EOD\n40 0.02\n");
  EXPECT_TRUE(contains(script, "title 'stopped by the step cap'")) << script;

  std::vector<SweepRow> none = two_models();
  for (SweepRow& r : none) r.stopped_by = "target";
  EXPECT_FALSE(contains(fwp_cli::sweep_plot_script(none, 0.001), "$capped")) << "no cap marker without capped runs";
}

TEST(SweepPlot, EachLineHasItsOwnDashAndPointType) {
  const std::string script = fwp_cli::sweep_plot_script(two_models(), 0.001);
  EXPECT_TRUE(contains(script, "$line0 using 1:2 with linespoints lw 2 dt 1 pt 7")) << script;
  EXPECT_TRUE(contains(script, "$line1 using 1:2 with linespoints lw 2 dt 2 pt 5")) << script;
}

// gnuplot accepts the script (when it is installed).
TEST(SweepPlot, GnuplotRendersIt) {
  std::string gnuplot;
  try {
    gnuplot = fwp_cli::train::find_gnuplot("--plot");
  } catch (const fwp_cli::RunError&) {
    GTEST_SKIP() << "gnuplot is not installed";
  }
  const std::string png = "sweep_plot_test.png";
  std::remove(png.c_str());
  fwp_cli::render_sweep_plot(gnuplot, png, two_models(), 0.001);
  struct stat info {};
  ASSERT_EQ(::stat(png.c_str(), &info), 0);
  EXPECT_GT(info.st_size, 1000);
}

// --skip-done: which runs of a sweep table count as finished.
TEST(SweepResume, AFinishedRunIsOneOfTheSameExperimentNotStoppedBelowTheCap) {
  SweepRow by_target = row("DPFP nu=1 sum", 20, 0.0, "target");
  by_target.seed = 3;
  by_target.eval_pairs = 20;
  by_target.steps = 500;
  SweepRow by_cap = row("DPFP nu=1 sum", 40, 0.2, "max_steps");
  by_cap.seed = 3;
  by_cap.eval_pairs = 40;
  by_cap.steps = 1000;
  const std::vector<SweepRow> rows{by_target, by_cap};
  using fwp_cli::finished_row;
  EXPECT_TRUE(finished_row(rows, "DPFP nu=1 sum", 1, 20, 3, 20, 100000));
  EXPECT_FALSE(finished_row(rows, "DPFP nu=1 sum", 1, 60, 3, 60, 100000)) << "no row for S = 60";
  EXPECT_FALSE(finished_row(rows, "DPFP nu=2 sum", 1, 20, 3, 20, 100000)) << "another model";
  EXPECT_FALSE(finished_row(rows, "DPFP nu=1 sum", 2, 20, 3, 20, 100000)) << "another setting";
  EXPECT_FALSE(finished_row(rows, "DPFP nu=1 sum", 1, 20, 4, 20, 100000)) << "another seed";
  EXPECT_FALSE(finished_row(rows, "DPFP nu=1 sum", 1, 20, 3, 30, 100000)) << "another evaluation length";
  EXPECT_TRUE(finished_row(rows, "DPFP nu=1 sum", 1, 40, 3, 40, 1000)) << "capped at the same cap";
  EXPECT_TRUE(finished_row(rows, "DPFP nu=1 sum", 1, 40, 3, 40, 800)) << "capped above a lower cap";
  EXPECT_FALSE(finished_row(rows, "DPFP nu=1 sum", 1, 40, 3, 40, 2000)) << "the cap was raised";
}

}  // namespace
