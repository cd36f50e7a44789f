// CudaBackend: embedding rows (gather and its scatter-add transpose) and
// one-hot rows. The scatter-add is deterministic: the ids are sorted (a stable
// radix sort keeps rows with the same id in order), then every distinct id's
// rows are summed in order by one thread per column, exactly like the CPU.
#include <cub/device/device_radix_sort.cuh>

#include <cstdint>
#include <string>

#include "cuda_backend.h"
#include "cuda_common.cuh"

namespace fwp {

namespace {

__global__ void embedding_gather_kernel(const float* table, const int32_t* ids, float* out, int64_t rows,
                                        int64_t dim) {
  const int64_t n = rows * dim;
  for (int64_t e = cuda::global_thread_index(); e < n; e += cuda::global_thread_count()) {
    const int64_t r = e / dim, c = e - r * dim;
    const int32_t id = ids[r];
    out[e] = id < 0 ? 0.0f : table[static_cast<int64_t>(id) * dim + c];
  }
}

__global__ void iota_kernel(int32_t* x, int64_t n) {
  for (int64_t i = cuda::global_thread_index(); i < n; i += cuda::global_thread_count()) x[i] = static_cast<int32_t>(i);
}

// One thread per (sorted position, column); the first position of each run of
// equal ids sums the run's rows in their original order.
__global__ void scatter_runs_kernel(float* dtable, const int32_t* sorted_ids, const int32_t* sorted_rows,
                                    const float* dout, int64_t rows, int64_t dim) {
  const int64_t n = rows * dim;
  for (int64_t e = cuda::global_thread_index(); e < n; e += cuda::global_thread_count()) {
    const int64_t p = e / dim, c = e - p * dim;
    const int32_t id = sorted_ids[p];
    if (id < 0 || (p > 0 && sorted_ids[p - 1] == id)) continue;
    float acc = dtable[static_cast<int64_t>(id) * dim + c];
    for (int64_t i = p; i < rows && sorted_ids[i] == id; ++i) acc += dout[static_cast<int64_t>(sorted_rows[i]) * dim + c];
    dtable[static_cast<int64_t>(id) * dim + c] = acc;
  }
}

__global__ void onehot_concat_kernel(const int32_t* ids, const float* x, float* out, int64_t rows,
                                     int64_t num_classes, int64_t d) {
  const int64_t width = num_classes + d;
  const int64_t n = rows * width;
  for (int64_t e = cuda::global_thread_index(); e < n; e += cuda::global_thread_count()) {
    const int64_t r = e / width, c = e - r * width;
    out[e] = c < num_classes ? (ids[r] == c ? 1.0f : 0.0f) : x[r * d + (c - num_classes)];
  }
}

}  // namespace

void CudaBackend::embedding_gather(const float* table, const int32_t* ids, float* out, int64_t rows, int64_t dim) {
  if (rows <= 0 || dim <= 0) return;
  cuda::DeviceGuard guard(device_);
  embedding_gather_kernel<<<cuda::grid_for(rows * dim, 256), 256, 0, stream_>>>(table, ids, out, rows, dim);
  FWP_CUDA_CHECK_LAUNCH("embedding_gather_kernel");
}

void CudaBackend::embedding_scatter_accumulate(float* dtable, const int32_t* ids, const float* dout, int64_t rows,
                                               int64_t dim) {
  if (rows <= 0 || dim <= 0) return;
  if (rows > 0x7fffffff) {
    throw Error(FWP_ERR_UNSUPPORTED, "embedding_scatter_accumulate: " + std::to_string(rows) + " rows exceed int32");
  }
  cuda::DeviceGuard guard(device_);
  const int n = static_cast<int>(rows);
  cuda::Scratch<int32_t> keys_out(*this, rows), vals_in(*this, rows), vals_out(*this, rows);
  iota_kernel<<<cuda::grid_for(rows, 256), 256, 0, stream_>>>(vals_in.get(), rows);
  FWP_CUDA_CHECK_LAUNCH("iota_kernel");
  size_t temp_bytes = 0;
  FWP_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, ids, keys_out.get(), vals_in.get(),
                                                 vals_out.get(), n, 0, 32, stream_));
  cuda::Scratch<char> temp(*this, static_cast<int64_t>(temp_bytes));
  FWP_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.get(), temp_bytes, ids, keys_out.get(), vals_in.get(),
                                                 vals_out.get(), n, 0, 32, stream_));
  scatter_runs_kernel<<<cuda::grid_for(rows * dim, 256), 256, 0, stream_>>>(dtable, keys_out.get(), vals_out.get(),
                                                                            dout, rows, dim);
  FWP_CUDA_CHECK_LAUNCH("scatter_runs_kernel");
}

void CudaBackend::onehot_concat(const int32_t* ids, const float* x, float* out, int64_t rows, int64_t num_classes,
                                int64_t d) {
  if (rows <= 0 || num_classes + d <= 0) return;
  cuda::DeviceGuard guard(device_);
  onehot_concat_kernel<<<cuda::grid_for(rows * (num_classes + d), 256), 256, 0, stream_>>>(ids, x, out, rows,
                                                                                           num_classes, d);
  FWP_CUDA_CHECK_LAUNCH("onehot_concat_kernel");
}

}  // namespace fwp
