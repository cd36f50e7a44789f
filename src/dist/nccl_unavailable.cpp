// The NCCL engine where this build lacks it: without CUDA, NCCL or MPI
// (cuda/nccl_communicator.cu has the engine itself).
#include "core/error.h"
#include "dist/communicator.h"

namespace fwp {

#if !FWP_HAVE_NCCL

bool nccl_engine_built() { return false; }

std::unique_ptr<Communicator> make_nccl_communicator(const fwp_dist_config&, Context&) {
  throw Error(FWP_ERR_UNSUPPORTED,
              "distributed training over NCCL is not compiled into this build of fwp (it needs the CUDA backend, "
              "NCCL and MPI; fwp_dist_engine_available() says what a build has)");
}

#endif

}  // namespace fwp
