// The engine that calls the caller's all-reduce (FWP_DIST_CALLBACK): fwp links
// no communication library, and MPI.jl, Rust's mpi crate, Gloo or an
// application's own communicator plug in through one function.
#include <string>
#include <vector>

#include "core/error.h"
#include "dist/communicator.h"

namespace fwp {

void Communicator::broadcast_floats(float* data, int64_t n) {
  if (rank() != 0) std::fill(data, data + n, 0.0f);  // host memory: engines with device buffers override
  sum_floats(data, n);
}

void Communicator::broadcast_doubles(double* data, int64_t n) {
  if (rank() != 0) std::fill(data, data + n, 0.0);
  sum_doubles(data, n);
}

namespace {

class CallbackCommunicator final : public Communicator {
 public:
  explicit CallbackCommunicator(const fwp_dist_config& config)
      : fn_(config.allreduce), user_(config.user_data), rank_(config.rank), world_(config.world_size) {}

  int rank() const override { return rank_; }
  int world_size() const override { return world_; }

  void sum_floats(float* data, int64_t n) override { call(data, n, FWP_DIST_FLOAT32); }
  void sum_doubles(double* data, int64_t n) override { call(data, n, FWP_DIST_FLOAT64); }
  void barrier() override {
    double token = 0.0;  // an all-reduce completes only when every rank has joined it
    call(&token, 1, FWP_DIST_FLOAT64);
  }
  void abort(int) override {}  // the caller owns its processes

 private:
  void call(void* data, int64_t n, fwp_dist_dtype dtype) {
    int rc = 0;
    try {
      rc = fn_(data, n, dtype, user_);
    } catch (...) {
      // A C++ callback must not throw across the C boundary; treat it as a failure.
      rc = -1;
    }
    if (rc != 0) {
      throw Error(FWP_ERR_DISTRIBUTED, "the all-reduce callback failed (returned " + std::to_string(rc) + ") on " +
                                           std::to_string(n) + (dtype == FWP_DIST_FLOAT32 ? " floats" : " doubles") +
                                           "; the group cannot go on");
    }
  }

  fwp_dist_allreduce_fn fn_;
  void* user_;
  int rank_;
  int world_;
};

}  // namespace

std::unique_ptr<Communicator> make_callback_communicator(const fwp_dist_config& config) {
  return std::make_unique<CallbackCommunicator>(config);
}

}  // namespace fwp
