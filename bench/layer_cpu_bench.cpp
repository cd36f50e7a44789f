// CPU benchmark of the fast-weight layer (forward + backward through the C API)
// and of the fast-weight op alone (forward + backward through the CPU backend),
// at the shapes of ../shared/spec/performance.md. Prints Google Benchmark's
// table with tokens/s; bench/RESULTS.md records the figures.
//
//   build/bench/fwp_bench_cpu --benchmark_min_time=2 [--benchmark_filter=...]
// Thread count: FWP_BENCH_THREADS (default: all hardware threads).
#include <benchmark/benchmark.h>

#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/backend.h"
#include "core/rng.h"
#include "fwp/fwp.h"
#include "ops/cpu_backend.h"

namespace {

struct Shape {
  const char* name;
  int64_t batch, seq_len, heads, d_head;
};

// paper-small, paper-medium, mid-64 of performance.md.
const Shape kShapes[] = {
    {"B32_T256_H8_D16", 32, 256, 8, 16},
    {"B56_T384_H8_D32", 56, 384, 8, 32},
    {"B8_T2048_H16_D64", 8, 2048, 16, 64},
};

int bench_threads() {
  const char* s = std::getenv("FWP_BENCH_THREADS");
  return s ? std::atoi(s) : 0;
}

void check(fwp_status st) {
  if (st != FWP_OK) throw std::runtime_error(fwp_last_error_message());
}

std::vector<float> random_vector(size_t n, uint64_t seed, float scale = 1.0f) {
  fwp::Rng rng(seed);
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.normal()) * scale;
  return v;
}

// Layer forward + backward through the public API. phi: elu (d_dot = d_head,
// the performance.md setting) or softmax.
void BM_Layer(benchmark::State& state, Shape s, fwp_feature_map phi, fwp_update_rule rule,
              fwp_algorithm algo) {
  fwp_context_config cc;
  fwp_context_config_init(&cc);
  cc.num_threads = bench_threads();
  fwp_context* ctx = nullptr;
  check(fwp_context_create(&cc, &ctx));
  fwp_layer_config lc;
  fwp_layer_config_init(&lc);
  lc.num_heads = s.heads;
  lc.d_head = s.d_head;
  lc.d_model = s.heads * s.d_head;
  lc.feature_map = phi;
  lc.update_rule = rule;
  lc.algorithm = algo;
  lc.sum_normalize = phi == FWP_FEATURE_MAP_SOFTMAX ? 0 : 1;
  fwp_layer* layer = nullptr;
  check(fwp_layer_create(ctx, &lc, &layer));
  const size_t n = static_cast<size_t>(s.batch * s.seq_len * lc.d_model);
  auto x = random_vector(n, 1);
  auto dy = random_vector(n, 2, 1e-3f);
  std::vector<float> y(n), dx(n);
  // One untimed pass: the timed ones then measure the steady state of a
  // training loop (workspaces allocated and touched), not first-touch page
  // faults, which dominate when a large shape runs only one iteration.
  check(fwp_layer_forward(layer, x.data(), s.batch, s.seq_len, y.data()));
  check(fwp_layer_backward(layer, dy.data(), s.batch, s.seq_len, dx.data()));
  for (auto _ : state) {
    check(fwp_layer_forward(layer, x.data(), s.batch, s.seq_len, y.data()));
    check(fwp_layer_backward(layer, dy.data(), s.batch, s.seq_len, dx.data()));
    benchmark::DoNotOptimize(dx.data());
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(s.batch * s.seq_len), benchmark::Counter::kIsIterationInvariantRate);
  int32_t threads = 0;
  fwp_context_get_num_threads(ctx, &threads);
  state.counters["threads"] = threads;
  fwp_layer_destroy(layer);
  fwp_context_destroy(ctx);
}

// The fast-weight op alone (q, k, v given; keys L2-normalised as in performance.md).
void BM_FastWeightOp(benchmark::State& state, Shape s, fwp::UpdateRule rule, fwp::Algorithm algo) {
  int threads = bench_threads();
  auto backend = fwp::make_cpu_backend<float>(threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));
  fwp::FastWeightShape shape{s.batch * s.heads, s.seq_len, s.d_head, s.d_head};
  const size_t n = static_cast<size_t>(shape.streams * shape.steps * s.d_head);
  auto q = random_vector(n, 3);
  auto k = random_vector(n, 4);
  auto v = random_vector(n, 5);
  for (size_t r = 0; r < n; r += static_cast<size_t>(s.d_head)) {
    double norm = 0;
    for (int64_t j = 0; j < s.d_head; ++j) norm += double(k[r + j]) * k[r + j];
    for (int64_t j = 0; j < s.d_head; ++j) k[r + j] = static_cast<float>(k[r + j] / std::sqrt(norm + 1e-12));
  }
  std::vector<float> beta(static_cast<size_t>(shape.streams * shape.steps), 0.5f);
  const bool delta = rule == fwp::UpdateRule::Delta;
  std::vector<float> out(n), u(n), state_out(static_cast<size_t>(shape.streams * s.d_head * s.d_head));
  auto d_out = random_vector(n, 6, 1e-3f);
  std::vector<float> dq(n), dk(n), dv(n), dbeta(beta.size());
  auto pass = [&] {
    backend->fast_weight_forward(rule, algo, 0, shape, q.data(), k.data(), v.data(), delta ? beta.data() : nullptr,
                                 nullptr, out.data(), u.data(), state_out.data());
    backend->fast_weight_backward(rule, algo, 0, shape, q.data(), k.data(), v.data(),
                                  delta ? beta.data() : nullptr, u.data(), state_out.data(), d_out.data(), nullptr,
                                  dq.data(), dk.data(), dv.data(), delta ? dbeta.data() : nullptr, nullptr);
  };
  pass();  // untimed warm-up, as in BM_Layer
  for (auto _ : state) {
    pass();
    benchmark::DoNotOptimize(dq.data());
  }
  state.counters["tokens/s"] =
      benchmark::Counter(static_cast<double>(s.batch * s.seq_len), benchmark::Counter::kIsIterationInvariantRate);
}

void register_all() {
  using fwp::Algorithm;
  using fwp::UpdateRule;
  for (const Shape& s : kShapes) {
    const std::string sh = s.name;
    for (auto [rule, rname] : {std::pair{FWP_UPDATE_DELTA, "delta"}, std::pair{FWP_UPDATE_SUM, "sum"}}) {
      for (auto [algo, aname] : {std::pair{FWP_ALGORITHM_RECURRENT, "recurrent"},
                                 std::pair{FWP_ALGORITHM_CHUNKED, "chunked"}}) {
        benchmark::RegisterBenchmark(("Layer/elu/" + std::string(rname) + "/" + aname + "/" + sh).c_str(),
                                     BM_Layer, s, FWP_FEATURE_MAP_ELU, rule, algo)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
    }
    benchmark::RegisterBenchmark(("Layer/softmax/" + sh).c_str(), BM_Layer, s, FWP_FEATURE_MAP_SOFTMAX,
                                 FWP_UPDATE_SUM, FWP_ALGORITHM_AUTO)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
    for (auto [rule, rname] : {std::pair{UpdateRule::Delta, "delta"}, std::pair{UpdateRule::Sum, "sum"}}) {
      for (auto [algo, aname] :
           {std::pair{Algorithm::Recurrent, "recurrent"}, std::pair{Algorithm::Chunked, "chunked"}}) {
        benchmark::RegisterBenchmark(("FastWeightOp/" + std::string(rname) + "/" + aname + "/" + sh).c_str(),
                                     BM_FastWeightOp, s, rule, algo)
            ->Unit(benchmark::kMillisecond)
            ->UseRealTime();
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  register_all();
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
