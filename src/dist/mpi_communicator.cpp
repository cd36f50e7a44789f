// The MPI engine (FWP_DIST_MPI): host buffers summed with MPI_Iallreduce on a
// duplicate of the caller's communicator. Non-blocking calls polled against a
// deadline give the timeout: a rank that died or hangs makes the others fail
// with FWP_ERR_DISTRIBUTED instead of waiting forever (a started collective
// cannot be cancelled, so the group is broken after that and the caller
// aborts it). Built when CMake finds MPI (FWP_HAVE_MPI); otherwise creating
// the engine reports that it is not compiled in.
#include <string>

#include "core/error.h"
#include "dist/communicator.h"

#if FWP_HAVE_MPI
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <sstream>
#include <thread>
#endif

namespace fwp {

#if FWP_HAVE_MPI

namespace {

// Whether fwp called MPI_Init_thread (then fwp finalizes MPI at exit), and
// whether a rank of this process aborted (then it must not finalize).
std::mutex g_init_mutex;
bool g_initialized_by_fwp = false;

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

void ensure_mpi_initialized() {
  std::lock_guard<std::mutex> lock(g_init_mutex);
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized) {
    int finalized = 0;
    MPI_Finalized(&finalized);
    require(!finalized, FWP_ERR_DISTRIBUTED, "MPI was already finalized in this process; it cannot start again");
    return;
  }
  // fwp calls MPI from the thread that calls it (its own threads only compute).
  int provided = 0;
  const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  require(rc == MPI_SUCCESS, FWP_ERR_DISTRIBUTED, "MPI_Init_thread failed (error " + std::to_string(rc) + ")");
  g_initialized_by_fwp = true;
  std::atexit(finalize_at_exit);
}

std::string mpi_error_text(int rc) {
  char text[MPI_MAX_ERROR_STRING] = {0};
  int length = 0;
  if (MPI_Error_string(rc, text, &length) != MPI_SUCCESS) return "error " + std::to_string(rc);
  return std::string(text, static_cast<size_t>(std::max(0, length)));
}

std::string seconds_text(double s) {
  std::ostringstream os;
  os << s;
  return os.str();
}

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(const fwp_dist_config& config) : timeout_(config.timeout_seconds) {
    ensure_mpi_initialized();
    const MPI_Comm parent = config.mpi_comm ? *static_cast<const MPI_Comm*>(config.mpi_comm) : MPI_COMM_WORLD;
    // A duplicate keeps fwp's messages apart from the application's.
    check(MPI_Comm_dup(parent, &comm_), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    check(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
    check(MPI_Comm_size(comm_, &size_), "MPI_Comm_size");
  }

  ~MpiCommunicator() override {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && comm_ != MPI_COMM_NULL && !broken_) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int world_size() const override { return size_; }

  void sum_floats(float* data, int64_t n) override { all_reduce(data, n, MPI_FLOAT, "float"); }
  void sum_doubles(double* data, int64_t n) override { all_reduce(data, n, MPI_DOUBLE, "double"); }

  void broadcast_floats(float* data, int64_t n) override { broadcast(data, n, MPI_FLOAT); }
  void broadcast_doubles(double* data, int64_t n) override { broadcast(data, n, MPI_DOUBLE); }

  void barrier() override {
    MPI_Request request = MPI_REQUEST_NULL;
    check(MPI_Ibarrier(comm_, &request), "MPI_Ibarrier");
    wait(request, "a barrier");
  }

  void abort(int code) override { MPI_Abort(comm_ != MPI_COMM_NULL ? comm_ : MPI_COMM_WORLD, code); }

 private:
  // MPI counts are int: larger buffers go in pieces.
  static constexpr int64_t kMaxPiece = INT_MAX / 2;

  void all_reduce(void* data, int64_t n, MPI_Datatype type, const char* type_name) {
    const int64_t element = type == MPI_FLOAT ? 4 : 8;
    for (int64_t offset = 0; offset < n; offset += kMaxPiece) {
      const int count = static_cast<int>(std::min(kMaxPiece, n - offset));
      if (timeout_ <= 0) {  // no deadline: the blocking call, MPI's fastest
        check(MPI_Allreduce(MPI_IN_PLACE, static_cast<char*>(data) + offset * element, count, type, MPI_SUM, comm_),
              "MPI_Allreduce");
        continue;
      }
      MPI_Request request = MPI_REQUEST_NULL;
      check(MPI_Iallreduce(MPI_IN_PLACE, static_cast<char*>(data) + offset * element, count, type, MPI_SUM, comm_,
                           &request),
            "MPI_Iallreduce");
      wait(request, "an all-reduce of " + std::to_string(count) + " " + type_name + "s");
    }
  }

  void broadcast(void* data, int64_t n, MPI_Datatype type) {
    const int64_t element = type == MPI_FLOAT ? 4 : 8;
    for (int64_t offset = 0; offset < n; offset += kMaxPiece) {
      const int count = static_cast<int>(std::min(kMaxPiece, n - offset));
      MPI_Request request = MPI_REQUEST_NULL;
      check(MPI_Ibcast(static_cast<char*>(data) + offset * element, count, type, 0, comm_, &request), "MPI_Ibcast");
      wait(request, "a broadcast from rank 0");
    }
  }

  // Polls the request until it completes or the deadline passes. A
  // non-blocking collective advances only inside MPI calls, so the polls
  // follow each other closely (yielding the core between them) for the first
  // 50 ms -- a step's all-reduce or a short wait for a slower rank; after
  // that they sleep a little, so a rank that waits long (another rank
  // evaluating) leaves its core to the others.
  void wait(MPI_Request& request, const std::string& what) {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    int done = 0;
    for (;;) {
      const int rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      if (rc != MPI_SUCCESS) fail(what + " failed on rank " + std::to_string(rank_) + ": " + mpi_error_text(rc));
      if (done) return;
      if (timeout_ > 0 && std::chrono::duration<double>(Clock::now() - start).count() > timeout_) {
        fail(what + " did not complete within " + seconds_text(timeout_) + " s on rank " + std::to_string(rank_) +
             " of " + std::to_string(size_) + ": a rank died or stopped answering");
      }
      if (std::chrono::duration<double>(Clock::now() - start).count() < 0.05) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
  }

  void check(int rc, const char* call) {
    if (rc != MPI_SUCCESS) fail(std::string(call) + " failed: " + mpi_error_text(rc));
  }

  [[noreturn]] void fail(const std::string& message) {
    broken_ = true;  // a pending collective may still use the communicator: never free it
    throw Error(FWP_ERR_DISTRIBUTED, message + "; the group cannot go on (fwp_dist_abort() ends it)");
  }

  MPI_Comm comm_ = MPI_COMM_NULL;
  int rank_ = 0;
  int size_ = 1;
  double timeout_ = 0.0;
  bool broken_ = false;
};

}  // namespace

bool mpi_engine_built() { return true; }

std::unique_ptr<Communicator> make_mpi_communicator(const fwp_dist_config& config) {
  return std::make_unique<MpiCommunicator>(config);
}

#else  // !FWP_HAVE_MPI

bool mpi_engine_built() { return false; }

std::unique_ptr<Communicator> make_mpi_communicator(const fwp_dist_config&) {
  throw Error(FWP_ERR_UNSUPPORTED,
              "distributed training over MPI is not compiled into this build of fwp (install an MPI, e.g. Debian's "
              "libopenmpi-dev, and rebuild; fwp_dist_engine_available() says what a build has)");
}

#endif

}  // namespace fwp
