// Random projections for the FAVOR+ feature map (Performer, Choromanski et al. 2021).
#pragma once

#include <cstdint>

#include "core/rng.h"

namespace fwp {

// Draws R, [m, d] row-major on the host: rows are orthogonal within each block
// of d consecutive rows (the last block is truncated when d does not divide m),
// blocks are independent, and each row's length is an independent chi(d)
// sample (the norm of a d-dimensional standard normal vector). Every row is
// therefore marginally N(0, I_d), which keeps phi(q).phi(k) an unbiased
// estimate of exp(q.k), while orthogonality lowers its variance.
//
// Draw order (part of the reproducibility contract; computed in double, so float
// and double results agree up to rounding): for each block, d*d normals filling
// a d x d matrix column by column, then one d-vector of normals per row of the
// block for its norm.
template <typename T>
void draw_favor_projection(Rng& rng, int64_t m, int64_t d, T* out);

}  // namespace fwp
