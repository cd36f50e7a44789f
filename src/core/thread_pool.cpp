#include "core/thread_pool.h"

#include <sched.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__SSE__) || defined(_M_X64)
#include <immintrin.h>
#define FWP_POOL_HAVE_MXCSR 1
#endif

namespace fwp {

namespace {

thread_local bool t_in_region = false;

inline void cpu_relax() {
#ifdef FWP_POOL_HAVE_MXCSR
  _mm_pause();
#endif
}

// One parallel call. Shared (by shared_ptr) between the caller and the workers
// it woke, so a worker that wakes after the job is over only ever touches this
// object, never the caller's stack: it calls `body` only after claiming a
// chunk, and the caller cannot return while a claimed chunk is unfinished.
struct Job {
  const std::function<void(int64_t)>* body = nullptr;
  int64_t chunks = 0;
  std::atomic<int64_t> next{0};      // next unclaimed chunk
  std::atomic<int64_t> finished{0};  // chunks claimed and done (or skipped)
  std::atomic<bool> failed{false};
  std::mutex error_mutex;
  std::exception_ptr error;

  // Claims and runs chunks until none is left.
  void work() {
    for (;;) {
      const int64_t c = next.fetch_add(1, std::memory_order_relaxed);
      if (c >= chunks) return;
      if (!failed.load(std::memory_order_relaxed)) {
        try {
          (*body)(c);
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex);
          if (!error) error = std::current_exception();
          failed.store(true, std::memory_order_relaxed);
        }
      }
      finished.fetch_add(1, std::memory_order_release);
    }
  }
};

class Pool {
 public:
  static Pool& instance() {
    // Leaked on purpose: workers may still be asleep at process exit, and a
    // static destructor would race with them.
    static Pool* pool = new Pool();
    return *pool;
  }

  // False when another caller's job is running (the caller then runs serially).
  bool try_run(int max_threads, int64_t chunks, const std::function<void(int64_t)>& body) {
    std::unique_lock<std::mutex> busy(busy_mutex_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    const int helpers = static_cast<int>(std::min<int64_t>(max_threads - 1, chunks - 1));
    ensure_workers(helpers);

    auto job = std::make_shared<Job>();
    job->body = &body;
    job->chunks = chunks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = job;
      ++generation_;
      wanted_ = helpers;
    }
    if (helpers >= static_cast<int>(workers_.size())) {
      wake_.notify_all();
    } else {
      for (int i = 0; i < helpers; ++i) wake_.notify_one();
    }

    t_in_region = true;
    job->work();
    // Wait for chunks other threads claimed: spin briefly (they are usually
    // short), then yield the core so a worker that shares it can finish.
    for (int spin = 0; job->finished.load(std::memory_order_acquire) < chunks; ++spin) {
      if (spin < 2000) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
    t_in_region = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_.reset();
      wanted_ = 0;
    }
    if (job->error) std::rethrow_exception(job->error);
    return true;
  }

 private:
  Pool() = default;

  void ensure_workers(int count) {
    while (static_cast<int>(workers_.size()) < count) {
      workers_.emplace_back([this] { worker_loop(); });
      workers_.back().detach();
    }
  }

  void worker_loop() {
    t_in_region = true;
#ifdef FWP_POOL_HAVE_MXCSR
    // Workers only ever run fwp's ops, which want denormals flushed (see
    // cpu::FlushDenormals): set it once for the thread's life.
    _mm_setcsr(_mm_getcsr() | 0x8040);
#endif
    uint64_t seen = 0;
    for (;;) {
      std::shared_ptr<Job> job;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen && wanted_ > 0; });
        seen = generation_;
        --wanted_;
        job = job_;
      }
      if (job) job->work();
    }
  }

  std::mutex busy_mutex_;  // held by the caller whose job runs
  std::mutex mutex_;       // guards job_, generation_, wanted_
  std::condition_variable wake_;
  std::shared_ptr<Job> job_;
  uint64_t generation_ = 0;
  int wanted_ = 0;  // workers still to join the current job
  std::vector<std::thread> workers_;
};

// The value of an environment variable as a thread count; 0 when unset or
// empty; -1 when set to something else than an integer >= 1.
int env_threads(const char* name, bool first_of_list) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') return 0;
  char* end = nullptr;
  const long n = std::strtol(value, &end, 10);
  const bool ok = end != value && (*end == '\0' || (first_of_list && *end == ',')) && n >= 1 && n <= 4096;
  return ok ? static_cast<int>(n) : -1;
}

}  // namespace

void run_in_pool(int max_threads, int64_t chunks, const std::function<void(int64_t)>& body) {
  if (chunks <= 0) return;
  if (max_threads > 1 && chunks > 1 && !t_in_region && Pool::instance().try_run(max_threads, chunks, body)) return;
  for (int64_t c = 0; c < chunks; ++c) body(c);
}

bool in_parallel_region() { return t_in_region; }

int default_num_threads(std::string* bad_variable) {
  for (const char* name : {"FWP_NUM_THREADS", "OMP_NUM_THREADS"}) {
    const int n = env_threads(name, std::string(name) == "OMP_NUM_THREADS");
    if (n > 0) return n;
    if (n < 0 && bad_variable && bad_variable->empty()) *bad_variable = std::string(name) + "=" + std::getenv(name);
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

}  // namespace fwp
