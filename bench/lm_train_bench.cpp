// Training throughput of the whole language model through the public C API:
// fwp_lm_forward + fwp_model_backward + an Adam step (clipping 0.25, as
// `fwp lm train`) on random tokens. Warm-up steps first (allocations, caches),
// then timed steps; prints the parameter count by group (to compare with
// bench/lm_torch.py, which builds the same network in PyTorch), the mean time
// of each phase and the training tokens per second.
//
//   build/bench/fwp_bench_lm_train --preset cpu-small --vocab 8000 --attention delta --threads 2
//   build/bench/fwp_bench_lm_train --layers 2 --d-model 64 --heads 4 --d-head 16 --d-ff 256
//       --vocab 1000 --batch 4 --length 32 --attention softmax --steps 3   (one command line)
//
// Data-parallel (--dist mpi|nccl, launched with mpirun -np N): --batch is the
// global batch, each rank trains on B / N rows, the gradients are averaged
// (fwp_dist_average_gradients) and timed apart ("comm"); rank 0 prints the
// group's tokens/s and the bytes each rank all-reduces per step:
//
//   mpirun -np 2 build/bench/fwp_bench_lm_train --dist mpi --threads 1 --batch 16
//
// --attention: softmax (the Transformer baseline), sum (linear attention,
// elu + 1 sum-normalised) or delta (the same with the delta rule, the
// paper's default). Explicit sizes override the preset's. Batch and length
// default to the training preset of `fwp lm train` (cpu-small: 16 x 64;
// paper-*: 8 x 256 and 56 x 384). The last line, "RESULT key=value ...", is
// what bench/lm_compare.sh reads.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "fwp/fwp.h"

namespace {

void check(fwp_status st, const char* what) {
  if (st != FWP_OK) throw std::runtime_error(std::string(what) + ": " + fwp_last_error_message());
}

struct Options {
  std::string preset = "cpu-small";
  std::string attention = "delta";
  int64_t vocab = 8000;
  int64_t layers = 0, d_model = 0, heads = 0, d_head = 0, d_ff = 0;  // 0: the preset's
  int64_t batch = 0, length = 0;                                     // 0: the training preset's
  int threads = 1;
  int warmup = 2, steps = 10;
  std::string algorithm = "auto";
  std::string device = "cpu";
  std::string dist;  // "" (one process), "mpi" or "nccl"
  double timeout = 600;  // fwp_dist_config.timeout_seconds (0: MPI's blocking all-reduce)
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "fwp_bench_lm_train: %s\n"
               "usage: fwp_bench_lm_train [--preset cpu-small|paper-small|paper-medium] [--vocab V]\n"
               "  [--attention softmax|sum|delta] [--layers L] [--d-model D] [--heads H] [--d-head E] [--d-ff F]\n"
               "  [--batch B] [--length T] [--threads N] [--warmup S] [--steps S]\n"
               "  [--algorithm auto|recurrent|chunked] [--device cpu|cuda] [--dist mpi|nccl] [--timeout S]\n",
               why.c_str());
  std::exit(2);
}

int64_t positive_int(const char* flag, const char* text) {
  char* end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || v < 1) usage(std::string(flag) + " needs an integer >= 1 (got '" + text + "')");
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") usage("training tokens/s of the language model");
    if (i + 1 >= argc) usage(flag + " needs a value");
    const char* v = argv[++i];
    if (flag == "--preset") o.preset = v;
    else if (flag == "--attention") o.attention = v;
    else if (flag == "--vocab") o.vocab = positive_int("--vocab", v);
    else if (flag == "--layers") o.layers = positive_int("--layers", v);
    else if (flag == "--d-model") o.d_model = positive_int("--d-model", v);
    else if (flag == "--heads") o.heads = positive_int("--heads", v);
    else if (flag == "--d-head") o.d_head = positive_int("--d-head", v);
    else if (flag == "--d-ff") o.d_ff = positive_int("--d-ff", v);
    else if (flag == "--batch") o.batch = positive_int("--batch", v);
    else if (flag == "--length") o.length = positive_int("--length", v);
    else if (flag == "--threads") o.threads = static_cast<int>(positive_int("--threads", v));
    else if (flag == "--warmup") {
      // 0 warm-up steps is allowed (then the first timed step pays for the allocations).
      o.warmup = std::strcmp(v, "0") == 0 ? 0 : static_cast<int>(positive_int("--warmup", v));
    } else if (flag == "--steps") o.steps = static_cast<int>(positive_int("--steps", v));
    else if (flag == "--algorithm") o.algorithm = v;
    else if (flag == "--device") o.device = v;
    else if (flag == "--dist") o.dist = v;
    else if (flag == "--timeout") {
      char* end = nullptr;
      o.timeout = std::strtod(v, &end);
      if (end == v || *end != '\0' || !(o.timeout >= 0)) usage("--timeout needs seconds >= 0");
    }
    else usage("unknown flag " + flag);
  }
  if (o.attention != "softmax" && o.attention != "sum" && o.attention != "delta")
    usage("--attention must be softmax, sum or delta (got '" + o.attention + "')");
  if (o.algorithm != "auto" && o.algorithm != "recurrent" && o.algorithm != "chunked")
    usage("--algorithm must be auto, recurrent or chunked (got '" + o.algorithm + "')");
  if (!o.dist.empty() && o.dist != "mpi" && o.dist != "nccl") usage("--dist must be mpi or nccl (got '" + o.dist + "')");
  if (o.device != "cpu" && o.device != "cuda") usage("--device must be cpu or cuda (got '" + o.device + "')");
  // The segment shapes `fwp lm train` uses for each preset (tools/lm_task.cpp).
  const int64_t preset_batch = o.preset == "paper-small" ? 8 : o.preset == "paper-medium" ? 56 : 16;
  const int64_t preset_length = o.preset == "paper-small" ? 256 : o.preset == "paper-medium" ? 384 : 64;
  if (o.batch == 0) o.batch = preset_batch;
  if (o.length == 0) o.length = preset_length;
  return o;
}

fwp_lm_config make_config(const Options& o) {
  fwp_lm_config c;
  check(fwp_lm_config_preset(o.preset.c_str(), &c), "--preset");
  c.vocab_size = o.vocab;
  if (o.layers) c.num_layers = o.layers;
  if (o.heads) c.attention.num_heads = o.heads;
  if (o.d_head) c.attention.d_head = o.d_head;
  if (o.d_model) c.attention.d_model = o.d_model;
  if (o.d_ff) c.d_ff = o.d_ff;
  c.seed = 1;
  if (o.attention == "softmax") {
    c.attention.feature_map = FWP_FEATURE_MAP_SOFTMAX;
    c.attention.update_rule = FWP_UPDATE_SUM;
    c.attention.sum_normalize = 0;
    c.attention.attn_normalize = 0;
  } else {
    // The presets' linear attention (elu + 1, sum-normalised); only the rule changes.
    c.attention.feature_map = FWP_FEATURE_MAP_ELU;
    c.attention.update_rule = o.attention == "delta" ? FWP_UPDATE_DELTA : FWP_UPDATE_SUM;
  }
  c.attention.algorithm = o.algorithm == "recurrent" ? FWP_ALGORITHM_RECURRENT
                          : o.algorithm == "chunked" ? FWP_ALGORITHM_CHUNKED
                                                     : FWP_ALGORITHM_AUTO;
  return c;
}

// The group a parameter belongs to, by name (bench/lm_torch.py groups its own the same way).
std::string group_of(const std::string& name) {
  if (name.rfind("embedding", 0) == 0) return "embedding";
  if (name.rfind("output", 0) == 0) return "output";
  if (name.find(".attn.") != std::string::npos) return "attention";
  if (name.find(".ff.") != std::string::npos) return "feed_forward";
  if (name.find("norm") != std::string::npos) return "layer_norm";
  return "other";
}

// Trainable elements per group and in all.
std::map<std::string, int64_t> count_params(const fwp_model* model) {
  std::map<std::string, int64_t> groups;
  int64_t tensors = 0;
  check(fwp_model_num_params(model, &tensors), "fwp_model_num_params");
  for (int64_t i = 0; i < tensors; ++i) {
    fwp_param_info info;
    check(fwp_model_param_info(model, i, &info), "fwp_model_param_info");
    if (!info.trainable) continue;
    groups[group_of(info.name)] += info.numel;
    groups["total"] += info.numel;
  }
  return groups;
}

// A small generator for the token ids (the ids only need to be spread over the vocabulary).
struct TokenStream {
  uint64_t s;
  int32_t next(int64_t vocab) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<int32_t>((s >> 33) % static_cast<uint64_t>(vocab));
  }
};

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    fwp_context_config cc;
    fwp_context_config_init(&cc);
    cc.num_threads = o.threads;
    cc.device = o.device == "cuda" ? FWP_DEVICE_CUDA : FWP_DEVICE_CPU;
    fwp_context* ctx = nullptr;
    check(fwp_context_create(&cc, &ctx), "fwp_context_create");
    int32_t threads = 0;
    check(fwp_context_get_num_threads(ctx, &threads), "fwp_context_get_num_threads");

    const fwp_lm_config config = make_config(o);
    fwp_model* model = nullptr;
    check(fwp_lm_create(ctx, &config, &model), "fwp_lm_create");
    const auto params = count_params(model);

    fwp_dist* dist = nullptr;
    int32_t rank = 0, world = 1;
    if (!o.dist.empty()) {
      fwp_dist_config dc;
      fwp_dist_config_init(&dc);
      dc.engine = o.dist == "nccl" ? FWP_DIST_NCCL : FWP_DIST_MPI;
      dc.timeout_seconds = o.timeout;
      check(fwp_dist_create(ctx, &dc, &dist), "fwp_dist_create");
      check(fwp_dist_get_rank(dist, &rank, &world), "fwp_dist_get_rank");
      if (o.batch % world != 0) usage("--batch must be a multiple of the number of processes");
      check(fwp_dist_sync_model(dist, model), "fwp_dist_sync_model");
    }
    const bool root = rank == 0;

    fwp_optimizer_config oc;
    fwp_optimizer_config_init(&oc);
    oc.kind = FWP_OPTIMIZER_ADAM;
    oc.learning_rate = 2.5e-4f;
    oc.clip_grad_norm = 0.25f;  // the paper's clipping, as `fwp lm train`
    fwp_optimizer* opt = nullptr;
    check(fwp_optimizer_create_for_model(model, &oc, &opt), "fwp_optimizer_create_for_model");

    const int64_t B = o.batch / world, T = o.length, n = B * T;  // this rank's rows
    const fwp_layer_config& a = config.attention;
    if (root) {
    std::printf("fwp %s: LM training step (forward + backward + Adam, clip 0.25), %s, %d thread(s)",
                fwp_version_string(), o.device.c_str(), threads);
    if (dist) std::printf(" per process, %d processes (%s; global batch %lld)", world, o.dist.c_str(),
                          static_cast<long long>(o.batch));
    std::printf("\n");
    std::printf("model: %s, attention %s, vocab %lld, layers %lld, d_model %lld, heads %lld x %lld, d_ff %lld; "
                "batch %lld x length %lld\n",
                o.preset.c_str(), o.attention.c_str(), static_cast<long long>(config.vocab_size),
                static_cast<long long>(config.num_layers), static_cast<long long>(a.d_model),
                static_cast<long long>(a.num_heads), static_cast<long long>(a.d_head),
                static_cast<long long>(config.d_ff), static_cast<long long>(B), static_cast<long long>(T));
    std::printf("parameters:");
    for (const auto& [group, count] : params) std::printf(" %s=%lld", group.c_str(), static_cast<long long>(count));
    std::printf("\n");
    }

    std::vector<int32_t> inputs(static_cast<size_t>(n)), targets(inputs.size());
    TokenStream tokens{12345u + 7919u * static_cast<uint64_t>(rank)};
    double fwd_ms = 0, bwd_ms = 0, wait_ms = 0, comm_ms = 0, opt_ms = 0, loss = 0;
    std::vector<double> step_ms;
    // Process CPU time of the timed steps (all threads): a figure of the work done that
    // other processes on a shared machine disturb less than the wall time.
    double cpu_s = 0;
    for (int s = 0; s < o.warmup + o.steps; ++s) {
      for (size_t i = 0; i < inputs.size(); ++i) {
        inputs[i] = tokens.next(config.vocab_size);
        targets[i] = tokens.next(config.vocab_size);
      }
      const std::clock_t c0 = std::clock();
      const auto t0 = std::chrono::steady_clock::now();
      check(fwp_model_zero_grad(model), "fwp_model_zero_grad");
      check(fwp_lm_forward(model, inputs.data(), targets.data(), B, T, nullptr, &loss, nullptr), "fwp_lm_forward");
      const double f = ms_since(t0);
      const auto t1 = std::chrono::steady_clock::now();
      check(fwp_model_backward(model), "fwp_model_backward");
      const double b = ms_since(t1);
      // A barrier first, timed apart: the all-reduce alone is then what the
      // bandwidth model of docs/distributed.md needs, and "wait" the imbalance.
      const auto tw = std::chrono::steady_clock::now();
      if (dist) check(fwp_dist_barrier(dist), "fwp_dist_barrier");
      const double w = ms_since(tw);
      const auto tc = std::chrono::steady_clock::now();
      if (dist) check(fwp_dist_average_gradients(dist, model, 1.0, nullptr), "fwp_dist_average_gradients");
      const double c = ms_since(tc);
      const auto t2 = std::chrono::steady_clock::now();
      check(fwp_optimizer_step(opt, nullptr), "fwp_optimizer_step");
      const double u = ms_since(t2);
      if (s < o.warmup) continue;
      cpu_s += static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
      fwd_ms += f;
      bwd_ms += b;
      comm_ms += c;
      wait_ms += w;
      opt_ms += u;
      step_ms.push_back(ms_since(t0));
    }
    double total_ms = 0;
    for (double t : step_ms) total_ms += t;
    if (dist) {
      // The group is as fast as its slowest rank: report rank 0's view of the mean, and the slowest.
      double slowest = total_ms;
      std::vector<double> all(static_cast<size_t>(world), 0.0);
      all[static_cast<size_t>(rank)] = total_ms;
      check(fwp_dist_sum(dist, all.data(), world), "fwp_dist_sum");
      for (double t : all) slowest = std::max(slowest, t);
      total_ms = slowest;
    }
    const double tokens_per_s_group = static_cast<double>(n) * world * o.steps / (total_ms / 1e3);
    const int64_t reduced_bytes = dist ? 4 * params.at("total") : 0;
    std::sort(step_ms.begin(), step_ms.end());
    const double median_ms = step_ms[step_ms.size() / 2];
    const double tokens_per_s = tokens_per_s_group;
    if (root) {
    std::printf("%d timed steps after %d warm-up: mean step %.1f ms (median %.1f, best %.1f): forward %.1f, "
                "backward %.1f, optimizer %.1f ms; CPU time %.1f ms per step; loss %.3f (ln V = %.3f)\n",
                o.steps, o.warmup, total_ms / o.steps, median_ms, step_ms.front(), fwd_ms / o.steps,
                bwd_ms / o.steps, opt_ms / o.steps, 1e3 * cpu_s / o.steps, loss, std::log(static_cast<double>(config.vocab_size)));
    if (dist) {
      std::printf("all-reduce: %.2f ms per step (%.1f%% of the step), %lld bytes per rank per step (%.2f GB/s "
                  "algorithm bandwidth); waiting for the slowest rank before it: %.2f ms per step\n",
                  comm_ms / o.steps, 100.0 * comm_ms / total_ms, static_cast<long long>(reduced_bytes),
                  reduced_bytes / (comm_ms / o.steps * 1e-3) / 1e9, wait_ms / o.steps);
    }
    std::printf("tokens/s: %.0f\n", tokens_per_s);
    std::printf("RESULT impl=fwp attention=%s params=%lld tokens_per_s=%.1f step_ms=%.2f fwd_ms=%.2f bwd_ms=%.2f "
                "opt_ms=%.2f cpu_ms=%.2f threads=%d processes=%d comm_ms=%.3f wait_ms=%.3f reduced_bytes=%lld\n",
                o.attention.c_str(), static_cast<long long>(params.at("total")), tokens_per_s, total_ms / o.steps,
                fwd_ms / o.steps, bwd_ms / o.steps, opt_ms / o.steps, 1e3 * cpu_s / o.steps, threads, world,
                comm_ms / o.steps, wait_ms / o.steps, static_cast<long long>(reduced_bytes));
    }
    fwp_dist_destroy(dist);

    fwp_optimizer_destroy(opt);
    fwp_model_destroy(model);
    fwp_context_destroy(ctx);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fwp_bench_lm_train: %s\n", e.what());
    return 1;
  }
  return 0;
}
