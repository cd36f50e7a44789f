#include "ops/favor_projection.h"

#include <algorithm>
#include <cmath>

#include <Eigen/Core>
#include <Eigen/QR>

namespace fwp {

template <typename T>
void draw_favor_projection(Rng& rng, int64_t m, int64_t d, T* out) {
  if (m <= 0 || d <= 0) return;
  Eigen::MatrixXd gaussian(d, d);
  for (int64_t row0 = 0; row0 < m; row0 += d) {
    const int64_t rows = std::min(d, m - row0);
    for (int64_t c = 0; c < d; ++c) {
      for (int64_t r = 0; r < d; ++r) gaussian(r, c) = rng.normal();
    }
    // G = QR; Q diag(sign(R_ii)) is Haar-distributed on O(d). Without the sign
    // correction the Householder Q is biased (e.g. Q(0,0) always has the sign
    // opposite to G(0,0)).
    const Eigen::HouseholderQR<Eigen::MatrixXd> qr(gaussian);
    const Eigen::MatrixXd q = qr.householderQ();
    const auto& r_factor = qr.matrixQR();
    for (int64_t i = 0; i < rows; ++i) {
      double norm_sq = 0.0;
      for (int64_t k = 0; k < d; ++k) {
        const double g = rng.normal();
        norm_sq += g * g;
      }
      const double sign = r_factor(i, i) < 0.0 ? -1.0 : 1.0;
      const double length = std::sqrt(norm_sq);
      // Row i of the block: column i of the sign-corrected Q, scaled to a chi(d) length.
      T* dst = out + (row0 + i) * d;
      for (int64_t k = 0; k < d; ++k) dst[k] = static_cast<T>(sign * length * q(k, i));
    }
  }
}

template void draw_favor_projection<float>(Rng&, int64_t, int64_t, float*);
template void draw_favor_projection<double>(Rng&, int64_t, int64_t, double*);

}  // namespace fwp
