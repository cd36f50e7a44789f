// GPU benchmark of the fast-weight op (forward + backward) on the CUDA backend,
// at the shapes of /work/shared/spec/performance.md:
//   paper-small  B32 T256  H8  D16     paper-medium B56 T384  H8  D32
//   mid-64       B8  T2048 H16 D64     long-128     B4  T4096 H16 D128
// streams = B * H, d_key = d_value = D, keys and queries L2-normalised,
// beta in (0, 1). For each shape, rule (delta, sum) and algorithm (recurrent,
// chunked, and what Auto picks) it prints the median over repeated runs after
// warm-up, timed with CUDA events on the backend's stream, in ms and tokens/s
// (tokens = B * T). Each configuration is checked before it is timed: the
// output of the first two streams is compared with the CPU backend.
//
// Usage: gpu_fast_weight_bench [--reps N] [--quick] [--shape NAME]
// Without a CUDA device it prints "no CUDA device" and exits 0, or exits 1 when
// FWP_REQUIRE_CUDA is set (scripts/gpu-check.sh: the run must measure something).
// A benchmark, not a test: it never fails on speed.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "core/rng.h"


namespace {
// FWP_REQUIRE_CUDA set to anything but "" or "0": no device is a failure.
bool cuda_required() {
  const char* v = std::getenv("FWP_REQUIRE_CUDA");
  return v != nullptr && *v != '\0' && std::strcmp(v, "0") != 0;
}
}  // namespace

#if FWP_HAVE_CUDA
#include <cuda_runtime.h>

#include "cuda/cuda_backend.h"

namespace {

struct Shape {
  const char* name;
  int64_t B, T, H, D;
};

const Shape kShapes[] = {
    {"paper-small", 32, 256, 8, 16},
    {"paper-medium", 56, 384, 8, 32},
    {"mid-64", 8, 2048, 16, 64},
    {"long-128", 4, 4096, 16, 128},
};

const char* algo_name(fwp::Algorithm a) {
  switch (a) {
    case fwp::Algorithm::Auto: return "auto";
    case fwp::Algorithm::Recurrent: return "recurrent";
    case fwp::Algorithm::Chunked: return "chunked";
  }
  return "?";
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

}  // namespace

namespace {

using fwp::Algorithm;
using fwp::UpdateRule;

void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "CUDA error in %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

std::vector<float> l2_rows(fwp::Rng& rng, int64_t rows, int64_t d) {
  std::vector<float> v(static_cast<size_t>(rows * d));
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0.0;
    for (int64_t j = 0; j < d; ++j) {
      const double x = rng.normal();
      v[r * d + j] = static_cast<float>(x);
      s += x * x;
    }
    const float inv = s > 0 ? static_cast<float>(1.0 / std::sqrt(s)) : 0.0f;
    for (int64_t j = 0; j < d; ++j) v[r * d + j] *= inv;
  }
  return v;
}

struct DeviceArray {
  std::shared_ptr<fwp::Backend<float>> be;
  float* p = nullptr;
  DeviceArray(std::shared_ptr<fwp::Backend<float>> b, int64_t n) : be(std::move(b)) { p = be->allocate(n); }
  ~DeviceArray() { be->deallocate(p); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
};

struct Row {
  std::string shape, rule, algo;
  double fwd_ms = 0, bwd_ms = 0, total_ms = 0, tokens_per_s = 0, check = 0;
  bool ok = true;
  std::string note;
};

// Largest |gpu - cpu| over the first `check_streams` streams, relative to max |cpu|.
double check_against_cpu(fwp::Backend<float>& cpu, UpdateRule rule, const fwp::FastWeightShape& sh,
                          int64_t check_streams, const std::vector<float>& q, const std::vector<float>& k,
                          const std::vector<float>& v, const std::vector<float>& beta,
                          const std::vector<float>& gpu_out) {
  fwp::FastWeightShape s = sh;
  s.streams = check_streams;
  const int64_t n_out = check_streams * sh.steps * sh.d_value;
  std::vector<float> out(static_cast<size_t>(n_out)), u(out.size()), st(static_cast<size_t>(check_streams * sh.d_key * sh.d_value));
  cpu.fast_weight_forward(rule, Algorithm::Recurrent, 0, s, q.data(), k.data(), v.data(),
                          rule == UpdateRule::Delta ? beta.data() : nullptr, nullptr, out.data(), u.data(), st.data());
  double scale = 1e-30, err = 0.0;
  for (int64_t i = 0; i < n_out; ++i) {
    scale = std::max(scale, std::fabs(double(out[i])));
    const double e = std::fabs(double(out[i]) - double(gpu_out[i]));
    if (!(e <= err)) err = e;  // NaN sticks
  }
  return err / scale;
}

int run(int argc, char** argv) {
  int reps = 20;
  bool quick = false;
  std::string only;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--reps") && i + 1 < argc) reps = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--shape") && i + 1 < argc) only = argv[++i];
    else {
      std::fprintf(stderr, "usage: %s [--reps N] [--quick] [--shape NAME]\n", argv[0]);
      return 2;
    }
  }
  if (quick) reps = std::min(reps, 5);

  if (fwp::cuda_device_count() < 1) {
    if (cuda_required()) {
      std::fprintf(stderr, "gpu_fast_weight_bench: no CUDA device, and FWP_REQUIRE_CUDA is set (exit 1)\n");
      return 1;
    }
    std::printf("gpu_fast_weight_bench: no CUDA device: nothing to measure (exit 0)\n");
    return 0;
  }
  auto be = fwp::make_cuda_backend(0);
  auto* cuda_be = dynamic_cast<fwp::CudaBackend*>(be.get());
  auto cpu = fwp::make_cpu_backend<float>(static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, cuda_be->device_index()), "cudaGetDeviceProperties");
  std::printf("device: %s (sm_%d%d, %d SMs), fp32%s, median of %d runs after warm-up\n", prop.name, prop.major,
              prop.minor, prop.multiProcessorCount,
              std::getenv("FWP_CUDA_ALLOW_TF32") ? " (FWP_CUDA_ALLOW_TF32 set: cuBLAS may use TF32)" : "", reps);

  cudaEvent_t e0, e1, e2;
  check_cuda(cudaEventCreate(&e0), "cudaEventCreate");
  check_cuda(cudaEventCreate(&e1), "cudaEventCreate");
  check_cuda(cudaEventCreate(&e2), "cudaEventCreate");
  cudaStream_t stream = cuda_be->stream();

  std::vector<Row> rows;
  for (const Shape& shp : kShapes) {
    if (!only.empty() && only != shp.name) continue;
    const int64_t S = shp.B * shp.H, T = shp.T, D = shp.D;
    const fwp::FastWeightShape sh{S, T, D, D};
    fwp::Rng rng(1234);
    std::printf("preparing %s (streams %lld, T %lld, D %lld)...\n", shp.name, (long long)S, (long long)T,
                (long long)D);
    std::fflush(stdout);
    const std::vector<float> k = l2_rows(rng, S * T, D), q = l2_rows(rng, S * T, D);
    std::vector<float> v(static_cast<size_t>(S * T * D)), beta(static_cast<size_t>(S * T)),
        dout(static_cast<size_t>(S * T * D));
    for (auto& x : v) x = static_cast<float>(rng.normal());
    for (auto& x : beta) x = static_cast<float>(1.0 / (1.0 + std::exp(-rng.normal())));
    for (auto& x : dout) x = static_cast<float>(rng.normal());
    const int64_t n = S * T * D, ns = S * D * D;
    DeviceArray gq(be, n), gk(be, n), gv(be, n), gb(be, S * T), gdo(be, n);
    DeviceArray gout(be, n), gu(be, n), gst(be, ns), gdq(be, n), gdk(be, n), gdv(be, n), gdb(be, S * T);
    be->upload(gq.p, q.data(), n);
    be->upload(gk.p, k.data(), n);
    be->upload(gv.p, v.data(), n);
    be->upload(gb.p, beta.data(), S * T);
    be->upload(gdo.p, dout.data(), n);

    for (UpdateRule rule : {UpdateRule::Delta, UpdateRule::Sum}) {
      const bool delta = rule == UpdateRule::Delta;
      const Algorithm autopick = fwp::CudaBackend::choose_algorithm(rule, sh);
      for (Algorithm algo : {Algorithm::Recurrent, Algorithm::Chunked}) {
        Row row;
        row.shape = shp.name;
        row.rule = delta ? "delta" : "sum";
        row.algo = std::string(algo_name(algo)) + (algo == autopick ? " (auto)" : "");
        auto forward = [&] {
          be->fast_weight_forward(rule, algo, 0, sh, gq.p, gk.p, gv.p, delta ? gb.p : nullptr, nullptr, gout.p, gu.p,
                                  gst.p);
        };
        auto backward = [&] {
          be->fast_weight_backward(rule, algo, 0, sh, gq.p, gk.p, gv.p, delta ? gb.p : nullptr, gu.p, gst.p, gdo.p,
                                   nullptr, gdq.p, gdk.p, gdv.p, delta ? gdb.p : nullptr, nullptr);
        };
        try {
          // Check first.
          forward();
          const int64_t cs = std::min<int64_t>(2, S);
          std::vector<float> got(static_cast<size_t>(cs * T * D));
          be->download(got.data(), gout.p, cs * T * D);
          row.check = check_against_cpu(*cpu, rule, sh, cs, q, k, v, beta, got);
          row.ok = row.check <= 1e-4;
          if (!row.ok) row.note = "CHECK FAILED";
          // Warm up, then time.
          for (int w = 0; w < 3; ++w) {
            forward();
            backward();
          }
          be->synchronize();
          std::vector<double> f_ms, b_ms, t_ms;
          for (int r = 0; r < reps; ++r) {
            check_cuda(cudaEventRecord(e0, stream), "cudaEventRecord");
            forward();
            check_cuda(cudaEventRecord(e1, stream), "cudaEventRecord");
            backward();
            check_cuda(cudaEventRecord(e2, stream), "cudaEventRecord");
            check_cuda(cudaEventSynchronize(e2), "cudaEventSynchronize");
            float a = 0, b = 0;
            check_cuda(cudaEventElapsedTime(&a, e0, e1), "cudaEventElapsedTime");
            check_cuda(cudaEventElapsedTime(&b, e1, e2), "cudaEventElapsedTime");
            f_ms.push_back(a);
            b_ms.push_back(b);
            t_ms.push_back(double(a) + b);
          }
          row.fwd_ms = median(f_ms);
          row.bwd_ms = median(b_ms);
          row.total_ms = median(t_ms);
          row.tokens_per_s = double(shp.B * T) / (row.total_ms * 1e-3);
        } catch (const fwp::Error& e) {
          row.ok = false;
          row.note = std::string("error: ") + e.what();
        }
        std::printf("  %-12s %-5s %-19s %s\n", row.shape.c_str(), row.rule.c_str(), row.algo.c_str(),
                    row.note.empty() ? "done" : row.note.c_str());
        std::fflush(stdout);
        rows.push_back(row);
      }
    }
  }

  std::printf("\nfast-weight op, forward + backward (%s)\n", prop.name);
  std::printf("| shape | rule | algorithm | fwd ms | bwd ms | fwd+bwd ms | tokens/s | check (rel err vs CPU) |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  for (const Row& r : rows) {
    if (r.total_ms > 0) {
      std::printf("| %s | %s | %s | %.4f | %.4f | %.4f | %.3g | %.1e%s |\n", r.shape.c_str(), r.rule.c_str(),
                  r.algo.c_str(), r.fwd_ms, r.bwd_ms, r.total_ms, r.tokens_per_s, r.check,
                  r.ok ? "" : " FAILED");
    } else {
      std::printf("| %s | %s | %s | - | - | - | - | %s |\n", r.shape.c_str(), r.rule.c_str(), r.algo.c_str(),
                  r.note.c_str());
    }
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  cudaEventDestroy(e2);
  bool all_ok = true;
  for (const Row& r : rows) all_ok = all_ok && r.ok;
  return all_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gpu_fast_weight_bench: %s\n", e.what());
    return 1;
  }
}

#else  // !FWP_HAVE_CUDA

int main() {
  if (cuda_required()) {
    std::fprintf(stderr,
                 "gpu_fast_weight_bench: this build has no CUDA backend, and FWP_REQUIRE_CUDA is set (exit 1)\n");
    return 1;
  }
  std::printf("gpu_fast_weight_bench: no CUDA device: this build has no CUDA backend (exit 0)\n");
  return 0;
}

#endif
