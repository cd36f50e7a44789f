// Forward + backward time of the output layer of a word-level language model:
// AdaptiveSoftmax with cutoffs against a plain softmax (cutoffs empty, i.e.
// Linear + cross-entropy) on the CPU backend in float, for N rows of width d
// over a vocabulary of V words. Targets are drawn from a Zipf law (word
// frequencies, ids sorted by frequency as the tokenizer sorts them), so most
// rows fall in the head and only a few pay for a tail cluster. Prints the
// median and best time per forward+backward and the ratio of the best times.
//
//   build-cpu/bench/fwp_bench_adaptive [threads] [rounds]   (defaults 1, 7)
//
// Defaults: N = 2048, d = 128, V = 40000, cutoffs {2000, 10000}, div_val 1.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <vector>

#include "core/backend.h"
#include "core/buffer.h"
#include "core/id_buffer.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "nn/adaptive_softmax.h"
#include "nn/parameter.h"

namespace {

using fwp::Backend;

struct Timing {
  double median_ms, best_ms, loss;
};

Timing time_softmax(const std::shared_ptr<Backend<float>>& be, int64_t n, int64_t d, int64_t vocab,
                    const std::vector<int64_t>& cutoffs, int64_t div_val, const std::vector<int32_t>& targets,
                    int rounds) {
  fwp::ParameterList<float> params;
  fwp::AdaptiveSoftmax<float> softmax(params, be, "crit", vocab, d, cutoffs, div_val, nullptr, false);
  params.allocate(be);
  fwp::Rng rng(1);
  softmax.init_normal(params, rng, 0.02);
  std::vector<float> hidden(static_cast<size_t>(n * d));
  for (float& v : hidden) v = static_cast<float>(rng.normal());
  fwp::Buffer<float> h(be, n * d), dh(be, n * d);
  h.from_host(hidden.data(), n * d);
  fwp::IdBuffer<float> t;
  t.upload(be, targets.data(), n);
  std::vector<double> ms;
  double loss = 0.0;
  for (int r = 0; r < rounds + 1; ++r) {  // the first round warms up (allocations)
    const auto start = std::chrono::steady_clock::now();
    loss = softmax.forward(params, fwp::ConstView<float>(h.data(), {n, d}), t.view({n}));
    softmax.backward(params, 1.0f / static_cast<float>(n), fwp::TensorView<float>(dh.data(), {n, d}));
    be->synchronize();
    const auto stop = std::chrono::steady_clock::now();
    if (r > 0) ms.push_back(std::chrono::duration<double, std::milli>(stop - start).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms[ms.size() / 2], ms.front(), loss / static_cast<double>(n)};
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 1;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 7;
  if (threads < 1 || rounds < 1) {
    std::fprintf(stderr, "usage: %s [threads >= 1] [rounds >= 1]\n", argv[0]);
    return 2;
  }
  const int64_t n = 2048, d = 128, vocab = 40000;
  const std::vector<int64_t> cutoffs{2000, 10000};
  // Zipf(1) targets over the vocabulary: p(w) ~ 1 / (w + 1).
  std::vector<double> cdf(static_cast<size_t>(vocab));
  double total = 0.0;
  for (int64_t w = 0; w < vocab; ++w) cdf[w] = (total += 1.0 / static_cast<double>(w + 1));
  fwp::Rng rng(7);
  std::vector<int32_t> targets(static_cast<size_t>(n));
  int64_t in_tail[3] = {0, 0, 0};
  for (auto& t : targets) {
    const double u = rng.uniform() * total;
    t = static_cast<int32_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
    ++in_tail[t < 2000 ? 0 : t < 10000 ? 1 : 2];
  }
  auto be = fwp::make_cpu_backend<float>(threads);
  std::printf("N = %lld rows, d = %lld, V = %lld, Zipf targets: %lld in the shortlist, %lld in [2000, 10000), "
              "%lld in [10000, 40000); %d thread(s), %d rounds\n",
              static_cast<long long>(n), static_cast<long long>(d), static_cast<long long>(vocab),
              static_cast<long long>(in_tail[0]), static_cast<long long>(in_tail[1]),
              static_cast<long long>(in_tail[2]), threads, rounds);
  const Timing plain = time_softmax(be, n, d, vocab, {}, 1, targets, rounds);
  std::printf("plain softmax            forward+backward: median %8.2f ms, best %8.2f ms (mean loss %.3f)\n",
              plain.median_ms, plain.best_ms, plain.loss);
  for (int64_t div_val : {1, 4}) {
    const Timing a = time_softmax(be, n, d, vocab, cutoffs, div_val, targets, rounds);
    std::printf("adaptive {2000, 10000} div_val %lld: median %8.2f ms, best %8.2f ms (mean loss %.3f); "
                "plain / adaptive (best) = %.1fx\n",
                static_cast<long long>(div_val), a.median_ms, a.best_ms, a.loss, plain.best_ms / a.best_ms);
  }
  return 0;
}
