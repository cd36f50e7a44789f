// CpuBackend: the feature maps phi (elu+1, FAVOR+, DPFP) and sum
// normalisation, forward and backward. Rows are independent, so every op is
// parallelised over contiguous ranges of rows; inner loops run over one row
// and are written as Eigen array expressions or plain loops the compiler vectorises.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/aligned_vector.h"
#include "ops/cpu_backend.h"
#include "ops/cpu_parallel.h"

namespace fwp {

namespace {

using cpu::ArrMap;
using cpu::ConstArrMap;

// FAVOR+ processes this many rows per dense product: large enough for an
// efficient GEMM, small enough that the per-thread scratch stays in cache.
constexpr int64_t kFavorRowBlock = 64;

// ---- elu + 1 --------------------------------------------------------------------------
// phi = x + 1 for x > 0, exp(x) otherwise; both branches meet at 1 with slope 1.

template <typename T>
void elu_forward(const T* x, T* phi, int64_t n) {
  // max(x, 0) + exp(min(x, 0)) is exactly the two branches, without a select
  // (Eigen does not vectorise select, which would make exp scalar).
  const auto xa = ConstArrMap<T>(x, n);
  ArrMap<T>(phi, n) = xa.max(T(0)) + xa.min(T(0)).exp();
}

template <typename T>
void elu_backward(const T* x, const T* phi, const T* dphi, T* dx, int64_t n) {
  // For x <= 0 the derivative exp(x) is phi itself.
  for (int64_t i = 0; i < n; ++i) dx[i] = x[i] > T(0) ? dphi[i] : dphi[i] * phi[i];
}

// ---- DPFP -------------------------------------------------------------------------------
// z = [relu(x); relu(-x)] (length n2 = 2d); block j (1..nu) of phi is
// z * roll(z, j) with torch.roll semantics: roll(z, j)[i] = z[(i - j) mod n2].

template <typename T>
void dpfp_make_z(const T* x, int64_t d, T* z) {
  for (int64_t i = 0; i < d; ++i) {
    z[i] = std::max(x[i], T(0));
    z[d + i] = std::max(-x[i], T(0));
  }
}

template <typename T>
void dpfp_forward_row(const T* x, int64_t d, int64_t nu, T* z, T* phi) {
  const int64_t n2 = 2 * d;
  dpfp_make_z(x, d, z);
  for (int64_t j = 1; j <= nu; ++j) {
    const int64_t s = j % n2;
    T* out = phi + (j - 1) * n2;
    // Two contiguous pieces so that both loops vectorise.
    for (int64_t i = 0; i < s; ++i) out[i] = z[i] * z[i - s + n2];
    for (int64_t i = s; i < n2; ++i) out[i] = z[i] * z[i - s];
  }
}

// dz[a] = sum_j dphi_j[a] z[(a - j) mod n2] + dphi_j[(a + j) mod n2] z[(a + j) mod n2];
// then dx[k] = dz[k] [x_k > 0] - dz[d + k] [x_k < 0] (relu'(0) taken as 0).
template <typename T>
void dpfp_backward_row(const T* x, const T* dphi, int64_t d, int64_t nu, T* z, T* dz, T* dx) {
  const int64_t n2 = 2 * d;
  dpfp_make_z(x, d, z);
  std::fill(dz, dz + n2, T(0));
  for (int64_t j = 1; j <= nu; ++j) {
    const int64_t s = j % n2;
    const T* g = dphi + (j - 1) * n2;
    // a as the first factor's index.
    for (int64_t a = 0; a < s; ++a) dz[a] += g[a] * z[a - s + n2];
    for (int64_t a = s; a < n2; ++a) dz[a] += g[a] * z[a - s];
    // a as the rolled factor's index: i = (a + s) mod n2.
    for (int64_t a = 0; a < n2 - s; ++a) dz[a] += g[a + s] * z[a + s];
    for (int64_t a = n2 - s; a < n2; ++a) dz[a] += g[a + s - n2] * z[a + s - n2];
  }
  for (int64_t k = 0; k < d; ++k) {
    const T pos = x[k] > T(0) ? dz[k] : T(0);
    const T neg = x[k] < T(0) ? dz[d + k] : T(0);
    dx[k] = pos - neg;
  }
}

}  // namespace

template <typename T>
void CpuBackend<T>::feature_map_forward(const FeatureMapSpec& spec, const T* favor_projection, const T* x,
                                        T* phi, int64_t rows) {
  const int64_t d = spec.d_in;
  const int64_t d_out = spec.d_out();
  if (rows <= 0 || d_out <= 0) return;
  switch (spec.kind) {
    case FeatureMap::Elu:
      cpu::parallel_for(num_threads_, rows, 8 * d, [&](int64_t r0, int64_t r1) {
        elu_forward(x + r0 * d, phi + r0 * d, (r1 - r0) * d);
      });
      return;

    case FeatureMap::Dpfp:
      cpu::parallel_for(num_threads_, rows, d_out, [&](int64_t r0, int64_t r1) {
        AlignedVector<T> z(static_cast<size_t>(2 * d));
        for (int64_t r = r0; r < r1; ++r) dpfp_forward_row(x + r * d, d, spec.nu, z.data(), phi + r * d_out);
      });
      return;

    case FeatureMap::Favor: {
      // phi(x) = (2m)^(-1/2) [exp(Rx - |x|^2/2); exp(-Rx - |x|^2/2)].
      const int64_t m = spec.m;
      const auto R = cpu::row_map(favor_projection, m, d, d);
      const T log_c = T(-0.5) * std::log(T(2 * m));
      cpu::parallel_for(num_threads_, rows, 2 * m * d + 16 * m, [&](int64_t r0, int64_t r1) {
        for (int64_t b0 = r0; b0 < r1; b0 += kFavorRowBlock) {
          const int64_t nb = std::min(kFavorRowBlock, r1 - b0);
          const auto xb = cpu::row_map(x + b0 * d, nb, d, d);
          // Rx goes straight into the first half of each phi row.
          auto proj = cpu::row_map(phi + b0 * d_out, nb, m, d_out);
          proj.noalias() = xb * R.transpose();
          for (int64_t r = 0; r < nb; ++r) {
            const T shift = log_c - T(0.5) * xb.row(r).squaredNorm();
            auto plus = ArrMap<T>(phi + (b0 + r) * d_out, m);
            ArrMap<T>(phi + (b0 + r) * d_out + m, m) = (shift - plus).exp();
            plus = (plus + shift).exp();
          }
        }
      });
      return;
    }
  }
}

template <typename T>
void CpuBackend<T>::feature_map_backward(const FeatureMapSpec& spec, const T* favor_projection, const T* x,
                                         const T* phi, const T* dphi, T* dx, int64_t rows) {
  const int64_t d = spec.d_in;
  const int64_t d_out = spec.d_out();
  if (rows <= 0 || d <= 0) return;
  switch (spec.kind) {
    case FeatureMap::Elu:
      cpu::parallel_for(num_threads_, rows, 2 * d, [&](int64_t r0, int64_t r1) {
        elu_backward(x + r0 * d, phi + r0 * d, dphi + r0 * d, dx + r0 * d, (r1 - r0) * d);
      });
      return;

    case FeatureMap::Dpfp:
      cpu::parallel_for(num_threads_, rows, 4 * d_out, [&](int64_t r0, int64_t r1) {
        AlignedVector<T> z(static_cast<size_t>(2 * d)), dz(static_cast<size_t>(2 * d));
        for (int64_t r = r0; r < r1; ++r) {
          dpfp_backward_row(x + r * d, dphi + r * d_out, d, spec.nu, z.data(), dz.data(), dx + r * d);
        }
      });
      return;

    case FeatureMap::Favor: {
      // With phi+_i = c exp(r_i - s), phi-_i = c exp(-r_i - s), r = Rx, s = |x|^2/2:
      //   dx = R^T (dphi+ * phi+ - dphi- * phi-) - x * sum(dphi * phi).
      const int64_t m = spec.m;
      const auto R = cpu::row_map(favor_projection, m, d, d);
      cpu::parallel_for(num_threads_, rows, 2 * m * d + 4 * m, [&](int64_t r0, int64_t r1) {
        cpu::RowMat<T> g(std::min(kFavorRowBlock, r1 - r0), m);
        AlignedVector<T> total(static_cast<size_t>(kFavorRowBlock));
        for (int64_t b0 = r0; b0 < r1; b0 += kFavorRowBlock) {
          const int64_t nb = std::min(kFavorRowBlock, r1 - b0);
          for (int64_t r = 0; r < nb; ++r) {
            const T* p = phi + (b0 + r) * d_out;
            const T* dp = dphi + (b0 + r) * d_out;
            const auto pp = ConstArrMap<T>(p, m), pm = ConstArrMap<T>(p + m, m);
            const auto dpp = ConstArrMap<T>(dp, m), dpm = ConstArrMap<T>(dp + m, m);
            auto gr = ArrMap<T>(g.data() + r * m, m);
            gr = dpp * pp - dpm * pm;
            total[r] = (dpp * pp).sum() + (dpm * pm).sum();
          }
          auto dxb = cpu::row_map(dx + b0 * d, nb, d, d);
          dxb.noalias() = g.topRows(nb) * R;
          for (int64_t r = 0; r < nb; ++r) {
            ArrMap<T>(dx + (b0 + r) * d, d) -= total[r] * ConstArrMap<T>(x + (b0 + r) * d, d);
          }
        }
      });
      return;
    }
  }
}

template <typename T>
void CpuBackend<T>::sum_normalize_forward(const T* phi, T* out, int64_t rows, int64_t d, T eps) {
  cpu::parallel_for(num_threads_, rows, 2 * d, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const auto p = ConstArrMap<T>(phi + r * d, d);
      const T inv = T(1) / (p.sum() + eps);
      // Elementwise, so out == phi is safe.
      ArrMap<T>(out + r * d, d) = p * inv;
    }
  });
}

template <typename T>
void CpuBackend<T>::sum_normalize_backward(const T* phi, const T* dout, T* dphi, int64_t rows, int64_t d,
                                           T eps) {
  // out = phi / S with S = sum(phi) + eps:
  //   dphi = (dout - (dout . phi) / S) / S.
  cpu::parallel_for(num_threads_, rows, 4 * d, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const auto p = ConstArrMap<T>(phi + r * d, d);
      const auto g = ConstArrMap<T>(dout + r * d, d);
      const T inv = T(1) / (p.sum() + eps);
      const T centre = (g * p).sum() * inv;
      // Both reductions are done before dphi (which may alias dout) is written.
      ArrMap<T>(dphi + r * d, d) = (g - centre) * inv;
    }
  });
}

#define FWP_INSTANTIATE_FEATURE_MAP(T)                                                                          \
  template void CpuBackend<T>::feature_map_forward(const FeatureMapSpec&, const T*, const T*, T*, int64_t);     \
  template void CpuBackend<T>::feature_map_backward(const FeatureMapSpec&, const T*, const T*, const T*,        \
                                                    const T*, T*, int64_t);                                     \
  template void CpuBackend<T>::sum_normalize_forward(const T*, T*, int64_t, int64_t, T);                        \
  template void CpuBackend<T>::sum_normalize_backward(const T*, const T*, T*, int64_t, int64_t, T);

FWP_INSTANTIATE_FEATURE_MAP(float)
FWP_INSTANTIATE_FEATURE_MAP(double)
#undef FWP_INSTANTIATE_FEATURE_MAP

}  // namespace fwp
