// The progress line of a training run: redrawn in place with \r on a
// terminal (a few times per second), printed as plain lines -- one per
// evaluation -- otherwise, and silent with --quiet.
#ifndef FWP_TOOLS_TRAIN_PROGRESS_H
#define FWP_TOOLS_TRAIN_PROGRESS_H

#include "train_state.h"

#include <chrono>
#include <cstdio>
#include <string>

namespace fwp_cli {
namespace train {

class Progress {
 public:
  /// `enabled` false prints nothing at all; `stream` is stdout, or stderr when
  /// stdout carries --json.
  Progress(bool enabled, FILE* stream);

  /// Starts the display of a run named `label`.
  void start(const std::string& label);

  /// After every training step: redraws at most four times a second, on a terminal only.
  /// `tokens_per_second` (of the whole group with --dist; 0 = not counted) is shown when > 0.
  void step(const TrainState& state, int64_t max_steps, double train_loss, double steps_per_second,
            double tokens_per_second = 0.0);

  /// After every evaluation.
  void evaluation(const TrainState& state, int64_t max_steps, double train_loss, double steps_per_second,
                  double tokens_per_second = 0.0);

  /// A line of its own (clears a line being redrawn first).
  void message(const std::string& text);

 private:
  std::string line(const TrainState& state, int64_t max_steps, double train_loss, double steps_per_second,
                   double tokens_per_second) const;
  void draw(const std::string& text);

  using Clock = std::chrono::steady_clock;
  bool enabled_;
  FILE* stream_;
  bool tty_;
  std::string label_;
  Clock::time_point last_draw_;
  bool drawn_ = false;
};

}  // namespace train
}  // namespace fwp_cli

#endif  // FWP_TOOLS_TRAIN_PROGRESS_H
