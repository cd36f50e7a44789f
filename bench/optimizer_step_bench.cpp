// The cost of one optimizer step (fwp_optimizer_step: global gradient norm,
// clipping factor, Adam update of every trainable parameter) through the C
// API, for the retrieval model and for layers of the paper's shapes. Prints
// one line per case: parameter tensors, trainable elements, and the median
// and best time per step over several rounds (the best is the figure least
// disturbed by other processes on a shared machine).
//
//   build/bench/fwp_bench_optimizer [threads]     (default 1 thread)
//
// Only the public C API is used, so the same source measures any library
// version (bench/RESULTS.md records before/after figures).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

#include "fwp/fwp.h"

namespace {

void check(fwp_status st) {
  if (st != FWP_OK) throw std::runtime_error(fwp_last_error_message());
}

struct Timing {
  double median_us, best_us;
};

// Times `steps_per_round` steps per round over `rounds` rounds; gradients stay
// whatever the caller left (non-zero, finite), so every element is updated.
Timing time_steps(fwp_optimizer* opt, int rounds, int steps_per_round) {
  std::vector<double> per_step;
  for (int r = 0; r < rounds; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int s = 0; s < steps_per_round; ++s) check(fwp_optimizer_step(opt, nullptr));
    const auto t1 = std::chrono::steady_clock::now();
    per_step.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count() / steps_per_round);
  }
  std::sort(per_step.begin(), per_step.end());
  return {per_step[per_step.size() / 2], per_step.front()};
}

void report(const std::string& name, int64_t tensors, int64_t elements, Timing t) {
  std::printf("%-34s %8lld %10lld %12.2f %12.2f\n", name.c_str(), static_cast<long long>(tensors),
              static_cast<long long>(elements), t.median_us, t.best_us);
}

fwp_optimizer_config adam() {
  fwp_optimizer_config c;
  fwp_optimizer_config_init(&c);
  c.kind = FWP_OPTIMIZER_ADAM;
  c.learning_rate = 1e-6f;  // tiny: the parameters barely move over thousands of steps
  c.clip_grad_norm = 1.0f;
  return c;
}

void bench_retrieval(fwp_context* ctx, int64_t keys, fwp_update_rule rule) {
  fwp_retrieval_config rc;
  fwp_retrieval_config_init(&rc);
  rc.num_keys = static_cast<int32_t>(keys);
  rc.update_rule = rule;
  fwp_model* model = nullptr;
  check(fwp_model_create_retrieval(ctx, &rc, &model));
  // One forward/backward on a generated batch: real, non-zero gradients.
  fwp_retrieval_data* data = nullptr;
  check(fwp_retrieval_data_create(rc.setting, rc.num_keys, 7, &data));
  int64_t seq_len = 0;
  check(fwp_retrieval_data_seq_len(data, &seq_len));
  const int64_t batch = 8;
  std::vector<int32_t> keys_v(static_cast<size_t>(batch * seq_len)), values(keys_v.size());
  std::vector<int32_t> queries(static_cast<size_t>(batch)), targets(queries.size());
  check(fwp_retrieval_data_sample(data, batch, 1, keys_v.data(), values.data(), queries.data(), targets.data()));
  fwp_retrieval_batch b;
  b.batch_size = batch;
  b.seq_len = seq_len;
  b.num_queries = 1;
  b.keys = keys_v.data();
  b.values = values.data();
  b.queries = queries.data();
  b.targets = targets.data();
  float loss = 0;
  check(fwp_retrieval_forward(model, &b, &loss, nullptr, 0));
  check(fwp_model_backward(model));

  int64_t tensors = 0, elements = 0;
  check(fwp_model_num_params(model, &tensors));
  for (int64_t i = 0; i < tensors; ++i) {
    fwp_param_info info;
    check(fwp_model_param_info(model, i, &info));
    if (info.trainable) elements += info.numel;
  }
  const fwp_optimizer_config oc = adam();
  fwp_optimizer* opt = nullptr;
  check(fwp_optimizer_create_for_model(model, &oc, &opt));
  const Timing t = time_steps(opt, 15, 400);
  report("retrieval S=" + std::to_string(keys) + (rule == FWP_UPDATE_DELTA ? " delta" : " sum"), tensors, elements,
         t);
  fwp_optimizer_destroy(opt);
  fwp_retrieval_data_destroy(data);
  fwp_model_destroy(model);
}

void bench_layer(fwp_context* ctx, const char* name, int64_t heads, int64_t d_head, fwp_update_rule rule) {
  fwp_layer_config lc;
  fwp_layer_config_init(&lc);
  lc.num_heads = heads;
  lc.d_head = d_head;
  lc.d_model = heads * d_head;
  lc.update_rule = rule;
  fwp_layer* layer = nullptr;
  check(fwp_layer_create(ctx, &lc, &layer));
  const int64_t batch = 2, seq_len = 8, n = batch * seq_len * lc.d_model;
  std::vector<float> x(static_cast<size_t>(n)), y(x.size()), dx(x.size());
  for (int64_t i = 0; i < n; ++i) x[static_cast<size_t>(i)] = 0.01f * static_cast<float>(i % 97) - 0.4f;
  check(fwp_layer_forward(layer, x.data(), batch, seq_len, y.data()));
  check(fwp_layer_backward(layer, y.data(), batch, seq_len, dx.data()));

  int64_t tensors = 0, elements = 0;
  check(fwp_layer_num_params(layer, &tensors));
  for (int64_t i = 0; i < tensors; ++i) {
    fwp_param_info info;
    check(fwp_layer_param_info(layer, i, &info));
    if (info.trainable) elements += info.numel;
  }
  const fwp_optimizer_config oc = adam();
  fwp_optimizer* opt = nullptr;
  check(fwp_optimizer_create_for_layer(layer, &oc, &opt));
  const Timing t = time_steps(opt, 15, 200);
  report(std::string("layer ") + name + (rule == FWP_UPDATE_DELTA ? " delta" : " sum"), tensors, elements, t);
  fwp_optimizer_destroy(opt);
  fwp_layer_destroy(layer);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    fwp_context_config cc;
    fwp_context_config_init(&cc);
    cc.num_threads = argc > 1 ? std::atoi(argv[1]) : 1;
    fwp_context* ctx = nullptr;
    check(fwp_context_create(&cc, &ctx));
    int32_t threads = 0;
    check(fwp_context_get_num_threads(ctx, &threads));
    std::printf("fwp %s, optimizer step (Adam, clip_grad_norm 1), %d thread(s)\n", fwp_version_string(), threads);
    std::printf("%-34s %8s %10s %12s %12s\n", "case", "tensors", "elements", "median us", "best us");
    bench_retrieval(ctx, 100, FWP_UPDATE_DELTA);
    bench_retrieval(ctx, 400, FWP_UPDATE_DELTA);
    bench_layer(ctx, "paper-small H8 D16", 8, 16, FWP_UPDATE_DELTA);
    bench_layer(ctx, "paper-medium H8 D32", 8, 32, FWP_UPDATE_DELTA);
    fwp_context_destroy(ctx);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fwp_bench_optimizer: %s\n", e.what());
    return 1;
  }
  return 0;
}
