#include "progress.h"

#include "../cli_support.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include <unistd.h>

namespace fwp_cli {
namespace train {

Progress::Progress(bool enabled, FILE* stream)
    : enabled_(enabled), stream_(stream), tty_(enabled && ::isatty(::fileno(stream)) != 0) {}

void Progress::start(const std::string& label) {
  label_ = label;
  last_draw_ = Clock::now();
  drawn_ = false;
}

void Progress::step(const TrainState& state, int64_t max_steps, double train_loss, double steps_per_second,
                    double tokens_per_second) {
  if (!tty_) return;
  if (drawn_ && std::chrono::duration<double>(Clock::now() - last_draw_).count() < 0.25) return;
  draw(line(state, max_steps, train_loss, steps_per_second, tokens_per_second));
}

void Progress::evaluation(const TrainState& state, int64_t max_steps, double train_loss,
                          double steps_per_second, double tokens_per_second) {
  if (!enabled_) return;
  const std::string text = line(state, max_steps, train_loss, steps_per_second, tokens_per_second);
  if (tty_) {
    draw(text);
  } else {
    std::fprintf(stream_, "%s\n", text.c_str());
    std::fflush(stream_);
  }
}

void Progress::message(const std::string& text) {
  if (!enabled_) return;
  if (tty_ && drawn_) std::fputs("\r\x1b[K", stream_);
  drawn_ = false;
  std::fprintf(stream_, "%s\n", text.c_str());
  std::fflush(stream_);
}

std::string Progress::line(const TrainState& s, int64_t max_steps, double train_loss,
                           double steps_per_second, double tokens_per_second) const {
  const std::string eval = s.evaluations > 0 ? fmt::format("{:.6f}", s.last_eval) : std::string("-");
  const std::string best = std::isfinite(s.best) ? fmt::format("{:.6f}", s.best) : std::string("-");
  std::string metrics;
  for (const Metric& metric : s.last_metrics) metrics += fmt::format("  {} {:.4g}", metric.name, metric.value);
  const double eta = steps_per_second > 0 ? static_cast<double>(max_steps - s.step) / steps_per_second
                                          : std::numeric_limits<double>::quiet_NaN();
  const std::string tokens = tokens_per_second > 0 ? fmt::format("  {:.0f} tokens/s", tokens_per_second) : "";
  return fmt::format("[{}] step {}/{}  loss {:.5f}  eval {} (best {}){}  {:.1f} steps/s{}  ETA {}", label_, s.step,
                     max_steps, train_loss, eval, best, metrics, steps_per_second, tokens, format_duration(eta));
}

void Progress::draw(const std::string& text) {
  std::fprintf(stream_, "\r%s\x1b[K", text.c_str());
  std::fflush(stream_);
  last_draw_ = Clock::now();
  drawn_ = true;
}

}  // namespace train
}  // namespace fwp_cli
