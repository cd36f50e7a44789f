// A group of processes that sum buffers together: the engines behind the C
// API's fwp_dist (fwp/distributed.h). One interface, three engines:
//   MpiCommunicator      (mpi_communicator.cpp)   host buffers over MPI
//   NcclCommunicator     (cuda/nccl_communicator.cu) gradient buffers on the GPU, host ones over MPI
//   CallbackCommunicator (callback_communicator.cpp) the caller's all-reduce
// Every collective throws Error(FWP_ERR_DISTRIBUTED) when it fails or times
// out; the API layer then marks the group broken.
#pragma once

#include <cstdint>
#include <memory>

#include "fwp/distributed.h"

namespace fwp {

class Context;

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // True when sum_floats() and broadcast_floats() take device memory (the
  // backend's), false when they take host memory.
  virtual bool device_buffers() const { return false; }

  // Sums n >= 1 floats over the ranks, in place; every rank ends with the same
  // values. Host or device memory as device_buffers() says.
  virtual void sum_floats(float* data, int64_t n) = 0;
  // Sums n >= 1 doubles of host memory over the ranks, in place.
  virtual void sum_doubles(double* data, int64_t n) = 0;
  // Rank 0's n floats to every rank (memory as for sum_floats). The default is
  // a sum in which the other ranks give zeros: exact, and all a callback needs.
  virtual void broadcast_floats(float* data, int64_t n);
  // Rank 0's n host doubles to every rank; the same default.
  virtual void broadcast_doubles(double* data, int64_t n);
  virtual void barrier() = 0;

  // Ends every process of the group with `code` (MPI_Abort). Returns only for
  // engines that cannot (the callback engine).
  virtual void abort(int code) = 0;
};

// The engines this build has (fwp_dist_engine_available()).
bool mpi_engine_built();
bool nccl_engine_built();

// The engines. Each validates what is engine-specific and throws
// Error(FWP_ERR_UNSUPPORTED) when this build lacks it. `config` was checked
// by the API layer for the fields all engines share.
std::unique_ptr<Communicator> make_mpi_communicator(const fwp_dist_config& config);
std::unique_ptr<Communicator> make_nccl_communicator(const fwp_dist_config& config, Context& context);
std::unique_ptr<Communicator> make_callback_communicator(const fwp_dist_config& config);

}  // namespace fwp
