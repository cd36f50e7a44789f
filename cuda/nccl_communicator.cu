// The NCCL engine (FWP_DIST_NCCL): the gradient block is summed on the GPU by
// NCCL on the backend's own stream; host numbers (losses, counts, barriers)
// and the bootstrap of the NCCL communicator (rank 0's unique id) go over MPI.
// The communicator is non-blocking, so that a peer that died or hangs ends in
// FWP_ERR_DISTRIBUTED after the timeout (ncclCommAbort) instead of a wait
// forever. Built when CMake finds NCCL and MPI with CUDA on (FWP_HAVE_NCCL).
//
// Not yet run on a GPU (no GPU lent to the project so far): compiled in CI only.
#include <chrono>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>

#include "core/context.h"
#include "core/error.h"
#include "cuda_backend.h"
#include "dist/communicator.h"

#if FWP_HAVE_NCCL
#include <nccl.h>
#endif

namespace fwp {

#if FWP_HAVE_NCCL

namespace {

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(const fwp_dist_config& config, Context& context)
      : host_(make_mpi_communicator(config)), timeout_(config.timeout_seconds) {
    auto* backend = dynamic_cast<CudaBackend*>(context.backend().get());
    require(backend != nullptr, FWP_ERR_UNSUPPORTED,
            "the NCCL engine needs a CUDA context (this context computes on the CPU: use FWP_DIST_MPI)");
    device_ = backend->device_index();
    stream_ = backend->stream();

    // Rank 0 makes the unique id; MPI carries it to the others as 32-bit pieces
    // in doubles (exact), so that the host engine needs no byte broadcast.
    ncclUniqueId id;
    std::memset(&id, 0, sizeof(id));
    if (host_->rank() == 0) {
      const ncclResult_t rc = ncclGetUniqueId(&id);
      if (rc != ncclSuccess) fail("ncclGetUniqueId", rc);
    }
    constexpr size_t kWords = sizeof(id.internal) / 4;
    double words[kWords];
    for (size_t i = 0; i < kWords; ++i) {
      uint32_t w = 0;
      std::memcpy(&w, id.internal + 4 * i, 4);
      words[i] = static_cast<double>(w);
    }
    host_->broadcast_doubles(words, static_cast<int64_t>(kWords));
    for (size_t i = 0; i < kWords; ++i) {
      const uint32_t w = static_cast<uint32_t>(words[i]);
      std::memcpy(id.internal + 4 * i, &w, 4);
    }

    cuda::DeviceGuard guard(device_);
    ncclConfig_t nccl_config = NCCL_CONFIG_INITIALIZER;
    nccl_config.blocking = 0;
    const ncclResult_t rc = ncclCommInitRankConfig(&comm_, host_->world_size(), id, host_->rank(), &nccl_config);
    if (rc != ncclSuccess && rc != ncclInProgress) fail("ncclCommInitRankConfig", rc);
    wait_for_comm("setting up the NCCL communicator");
  }

  ~NcclCommunicator() override {
    if (comm_ == nullptr) return;
    cuda::DeviceGuard guard(device_);
    if (broken_) {
      ncclCommAbort(comm_);
    } else {
      ncclCommDestroy(comm_);
    }
  }

  int rank() const override { return host_->rank(); }
  int world_size() const override { return host_->world_size(); }
  bool device_buffers() const override { return true; }

  void sum_floats(float* data, int64_t n) override {
    cuda::DeviceGuard guard(device_);
    const ncclResult_t rc = ncclAllReduce(data, data, static_cast<size_t>(n), ncclFloat, ncclSum, comm_, stream_);
    if (rc != ncclSuccess && rc != ncclInProgress) fail("ncclAllReduce", rc);
    wait_for_stream("an all-reduce of " + std::to_string(n) + " floats");
  }

  void broadcast_floats(float* data, int64_t n) override {
    cuda::DeviceGuard guard(device_);
    const ncclResult_t rc = ncclBroadcast(data, data, static_cast<size_t>(n), ncclFloat, 0, comm_, stream_);
    if (rc != ncclSuccess && rc != ncclInProgress) fail("ncclBroadcast", rc);
    wait_for_stream("a broadcast of " + std::to_string(n) + " floats");
  }

  void sum_doubles(double* data, int64_t n) override { host_->sum_doubles(data, n); }
  void broadcast_doubles(double* data, int64_t n) override { host_->broadcast_doubles(data, n); }
  void barrier() override { host_->barrier(); }

  void abort(int code) override {
    if (comm_ != nullptr) {
      cuda::DeviceGuard guard(device_);
      ncclCommAbort(comm_);
      comm_ = nullptr;
    }
    host_->abort(code);
  }

 private:
  double elapsed(std::chrono::steady_clock::time_point start) const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  void wait_for_comm(const std::string& what) {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm_, &state);
      if (state == ncclSuccess) return;
      if (state != ncclInProgress) fail(what, state);
      if (timeout_ > 0 && elapsed(start) > timeout_) timed_out(what);
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
  }

  // Waits for the stream (the collective was queued on it), watching the
  // communicator for errors a dead peer causes.
  void wait_for_stream(const std::string& what) {
    const auto start = std::chrono::steady_clock::now();
    for (int polls = 0;; ++polls) {
      const cudaError_t status = cudaStreamQuery(stream_);
      if (status == cudaSuccess) return;
      if (status != cudaErrorNotReady) {
        broken_ = true;
        throw Error(FWP_ERR_DISTRIBUTED, what + " failed on the GPU: " + cudaGetErrorString(status));
      }
      ncclResult_t state = ncclSuccess;
      ncclCommGetAsyncError(comm_, &state);
      if (state != ncclSuccess && state != ncclInProgress) fail(what, state);
      if (timeout_ > 0 && elapsed(start) > timeout_) timed_out(what);
      if (polls > 2000) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
  }

  [[noreturn]] void timed_out(const std::string& what) {
    std::ostringstream os;
    os << what << " did not complete within " << timeout_ << " s on rank " << rank() << " of " << world_size()
       << ": a rank died or stopped answering; the group cannot go on (fwp_dist_abort() ends it)";
    broken_ = true;
    throw Error(FWP_ERR_DISTRIBUTED, os.str());
  }

  [[noreturn]] void fail(const std::string& what, ncclResult_t rc) {
    broken_ = true;
    throw Error(FWP_ERR_DISTRIBUTED, what + " failed on rank " + std::to_string(rank()) + ": " +
                                         ncclGetErrorString(rc) + "; the group cannot go on");
  }

  std::unique_ptr<Communicator> host_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int device_ = 0;
  double timeout_ = 0.0;
  bool broken_ = false;
};

}  // namespace

bool nccl_engine_built() { return true; }

std::unique_ptr<Communicator> make_nccl_communicator(const fwp_dist_config& config, Context& context) {
  return std::make_unique<NcclCommunicator>(config, context);
}

#endif  // FWP_HAVE_NCCL

}  // namespace fwp
