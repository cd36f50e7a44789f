// Decoding latency of the language model as the context grows: one
// fwp_lm_step per token (batch 1, evaluation mode, log-probabilities of the
// whole vocabulary written each step), for the delta rule and for softmax
// attention. A fast-weight layer's state is a fixed-size W and z, so its cost
// per token stays flat; a softmax layer's key/value cache grows by one position
// per token, so its cost grows linearly with the context.
//
//   build/bench/fwp_bench_lm_generate [--preset paper-small] [--vocab 8000] [--max-context 10000]
//                                     [--window 50] [--threads 1] [--attention delta,softmax]
//
// Prints, for each attention, the mean milliseconds per token over the
// `window` tokens that end at each reported context length (100, 1k, 2k, 5k,
// 10k, up to --max-context), and the best single step in that window (the
// figure least disturbed by other processes on a shared machine).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "fwp/fwp.h"

namespace {

void check(fwp_status st, const char* what) {
  if (st != FWP_OK) throw std::runtime_error(std::string(what) + ": " + fwp_last_error_message());
}

struct Options {
  std::string preset = "paper-small";
  int64_t vocab = 8000;
  int64_t max_context = 10000;
  int64_t window = 50;
  int threads = 1;
  std::vector<std::string> attentions{"delta", "softmax"};
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "fwp_bench_lm_generate: %s\n"
               "usage: fwp_bench_lm_generate [--preset cpu-small|paper-small|paper-medium] [--vocab V]\n"
               "  [--max-context N] [--window W] [--threads N] [--attention delta,sum,softmax]\n",
               why.c_str());
  std::exit(2);
}

int64_t positive_int(const std::string& flag, const char* text) {
  char* end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || v < 1) usage(flag + " needs an integer >= 1 (got '" + text + "')");
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") usage("ms per generated token as the context grows");
    if (i + 1 >= argc) usage(flag + " needs a value");
    const char* v = argv[++i];
    if (flag == "--preset") {
      o.preset = v;
    } else if (flag == "--vocab") {
      o.vocab = positive_int(flag, v);
    } else if (flag == "--max-context") {
      o.max_context = positive_int(flag, v);
    } else if (flag == "--window") {
      o.window = positive_int(flag, v);
    } else if (flag == "--threads") {
      o.threads = static_cast<int>(positive_int(flag, v));
    } else if (flag == "--attention") {
      o.attentions.clear();
      std::stringstream list(v);
      std::string item;
      while (std::getline(list, item, ',')) {
        if (item != "delta" && item != "sum" && item != "softmax")
          usage("--attention takes delta, sum and softmax (got '" + item + "')");
        o.attentions.push_back(item);
      }
      if (o.attentions.empty()) usage("--attention needs at least one of delta, sum, softmax");
    } else {
      usage("unknown flag " + flag);
    }
  }
  return o;
}

// The reported context lengths: the brief's 100, 1k, 2k, 5k, 10k, those up to max_context,
// and max_context itself when it is none of them.
std::vector<int64_t> report_points(int64_t max_context) {
  std::vector<int64_t> points;
  for (int64_t c : {100, 1000, 2000, 5000, 10000})
    if (c <= max_context) points.push_back(c);
  if (points.empty() || points.back() != max_context) points.push_back(max_context);
  return points;
}

struct Row {
  int64_t context;
  double mean_ms, best_ms;
};

std::vector<Row> run(fwp_context* ctx, const Options& o, const std::string& attention, int64_t* params) {
  fwp_lm_config c;
  check(fwp_lm_config_preset(o.preset.c_str(), &c), "--preset");
  c.vocab_size = o.vocab;
  c.seed = 1;
  if (attention == "softmax") {
    c.attention.feature_map = FWP_FEATURE_MAP_SOFTMAX;
    c.attention.update_rule = FWP_UPDATE_SUM;
    c.attention.sum_normalize = 0;
    c.attention.attn_normalize = 0;
  } else {
    c.attention.feature_map = FWP_FEATURE_MAP_ELU;
    c.attention.update_rule = attention == "delta" ? FWP_UPDATE_DELTA : FWP_UPDATE_SUM;
  }
  fwp_model* model = nullptr;
  check(fwp_lm_create(ctx, &c, &model), "fwp_lm_create");
  check(fwp_model_set_training(model, 0), "fwp_model_set_training");
  int64_t tensors = 0;
  *params = 0;
  check(fwp_model_num_params(model, &tensors), "fwp_model_num_params");
  for (int64_t i = 0; i < tensors; ++i) {
    fwp_param_info info;
    check(fwp_model_param_info(model, i, &info), "fwp_model_param_info");
    *params += info.numel;
  }
  fwp_state* state = nullptr;
  check(fwp_state_create(model, 1, &state), "fwp_state_create");

  // Each step feeds the greedy choice of the last one, as generation does
  // (the token ids do not change the cost; the log-probabilities are written
  // every step so the output layer is part of the figure).
  std::vector<float> log_probs(static_cast<size_t>(o.vocab));
  std::vector<double> step_ms(static_cast<size_t>(o.max_context));
  int32_t token = 1;
  for (int64_t t = 0; t < o.max_context; ++t) {
    const auto t0 = std::chrono::steady_clock::now();
    check(fwp_lm_step(model, state, &token, log_probs.data()), "fwp_lm_step");
    step_ms[static_cast<size_t>(t)] =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    token = static_cast<int32_t>(std::max_element(log_probs.begin(), log_probs.end()) - log_probs.begin());
  }
  std::vector<Row> rows;
  for (int64_t context : report_points(o.max_context)) {
    // Steps context-window .. context-1 ran with a context of (about) `context` tokens.
    const int64_t first = std::max<int64_t>(0, context - o.window);
    double sum = 0, best = step_ms[static_cast<size_t>(first)];
    for (int64_t t = first; t < context; ++t) {
      sum += step_ms[static_cast<size_t>(t)];
      best = std::min(best, step_ms[static_cast<size_t>(t)]);
    }
    rows.push_back({context, sum / static_cast<double>(context - first), best});
  }
  fwp_state_destroy(state);
  fwp_model_destroy(model);
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    fwp_context_config cc;
    fwp_context_config_init(&cc);
    cc.num_threads = o.threads;
    fwp_context* ctx = nullptr;
    check(fwp_context_create(&cc, &ctx), "fwp_context_create");
    int32_t threads = 0;
    check(fwp_context_get_num_threads(ctx, &threads), "fwp_context_get_num_threads");
    std::printf("fwp %s: fwp_lm_step, batch 1, preset %s, vocab %lld, %d thread(s); mean (best) ms per token over the "
                "%lld tokens ending at each context length\n",
                fwp_version_string(), o.preset.c_str(), static_cast<long long>(o.vocab), threads,
                static_cast<long long>(o.window));
    std::vector<std::vector<Row>> results;
    for (const std::string& attention : o.attentions) {
      int64_t params = 0;
      const auto t0 = std::chrono::steady_clock::now();
      results.push_back(run(ctx, o, attention, &params));
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("%s: %lld parameters, %lld tokens in %.1f s\n", attention.c_str(), static_cast<long long>(params),
                  static_cast<long long>(o.max_context), s);
    }
    std::printf("\n| context |");
    for (const std::string& a : o.attentions) std::printf(" %s ms/token |", a.c_str());
    std::printf("\n|---|");
    for (size_t i = 0; i < o.attentions.size(); ++i) std::printf("---|");
    std::printf("\n");
    for (size_t r = 0; r < results.front().size(); ++r) {
      std::printf("| %lld |", static_cast<long long>(results.front()[r].context));
      for (const auto& rows : results) std::printf(" %.3f (%.3f) |", rows[r].mean_ms, rows[r].best_ms);
      std::printf("\n");
    }
    fwp_context_destroy(ctx);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fwp_bench_lm_generate: %s\n", e.what());
    return 1;
  }
  return 0;
}
