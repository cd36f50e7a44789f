// The CPU thread pool (core/thread_pool.h) and parallel_for on it
// (ops/cpu_parallel.h): every item runs exactly once, exceptions come back to
// the caller, nested and concurrent calls are safe, and the default thread
// count honours FWP_NUM_THREADS and OMP_NUM_THREADS.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/thread_pool.h"
#include "ops/cpu_parallel.h"

namespace {

TEST(ThreadPool, EveryItemRunsExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    for (int64_t n : {1, 2, 7, 64, 1000, 100003}) {
      for (int64_t cost : {1, 100, 1 << 20}) {
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        fwp::cpu::parallel_for(threads, n, cost, [&](int64_t b, int64_t e) {
          ASSERT_LE(0, b);
          ASSERT_LT(b, e);
          ASSERT_LE(e, n);
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        });
        for (int64_t i = 0; i < n; ++i) {
          ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "threads " << threads << " n " << n << " item " << i;
        }
      }
    }
  }
}

TEST(ThreadPool, LargeWorkUsesMoreThanOneThread) {
  // Items that each take a while: with 2 threads, both must take part at least
  // once in a few tries (one may be descheduled on a busy machine).
  bool saw_two = false;
  for (int attempt = 0; attempt < 40 && !saw_two; ++attempt) {
    std::mutex m;
    std::vector<std::thread::id> ids;
    fwp::cpu::parallel_for(2, 8, int64_t(1) << 24, [&](int64_t, int64_t) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
      while (std::chrono::steady_clock::now() < until) {
      }
      std::lock_guard<std::mutex> lock(m);
      ids.push_back(std::this_thread::get_id());
    });
    for (const auto& id : ids) saw_two = saw_two || id != ids.front();
  }
  EXPECT_TRUE(saw_two);
}

TEST(ThreadPool, ExceptionsReachTheCaller) {
  for (int threads : {1, 2, 4}) {
    std::atomic<int> ran{0};
    EXPECT_THROW(fwp::cpu::parallel_for(threads, 64, int64_t(1) << 20,
                                        [&](int64_t b, int64_t) {
                                          ran.fetch_add(1);
                                          if (b == 0) throw std::runtime_error("boom");
                                        }),
                 std::runtime_error);
    EXPECT_GE(ran.load(), 1);
    // The pool is usable afterwards.
    std::atomic<int64_t> sum{0};
    fwp::cpu::parallel_for(threads, 100, int64_t(1) << 20, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) sum.fetch_add(i);
    });
    EXPECT_EQ(sum.load(), 4950);
  }
}

TEST(ThreadPool, NestedCallsRunInline) {
  std::atomic<int64_t> sum{0};
  fwp::cpu::parallel_for(2, 4, int64_t(1) << 20, [&](int64_t b, int64_t e) {
    EXPECT_TRUE(fwp::in_parallel_region());
    for (int64_t i = b; i < e; ++i) {
      fwp::cpu::parallel_for(2, 10, int64_t(1) << 20, [&](int64_t b2, int64_t e2) {
        for (int64_t j = b2; j < e2; ++j) sum.fetch_add(j);
      });
    }
  });
  EXPECT_EQ(sum.load(), 4 * 45);
  EXPECT_FALSE(fwp::in_parallel_region());
}

TEST(ThreadPool, ConcurrentCallersEachGetTheirWorkDone) {
  // Distinct handles may be used from distinct threads: the pool serves one
  // caller at a time and the others run inline; all results must be right.
  std::vector<std::thread> callers;
  std::vector<int64_t> sums(6, 0);
  for (int c = 0; c < 6; ++c) {
    callers.emplace_back([&, c] {
      for (int rep = 0; rep < 50; ++rep) {
        std::atomic<int64_t> sum{0};
        fwp::cpu::parallel_for(3, 1000, int64_t(1) << 16, [&](int64_t b, int64_t e) {
          int64_t local = 0;
          for (int64_t i = b; i < e; ++i) local += i;
          sum.fetch_add(local);
        });
        sums[static_cast<size_t>(c)] += sum.load();
      }
    });
  }
  for (auto& t : callers) t.join();
  for (int64_t s : sums) EXPECT_EQ(s, 50 * 499500);
}

class ThreadEnv : public ::testing::Test {
 protected:
  void SetUp() override {
    save("FWP_NUM_THREADS", fwp_);
    save("OMP_NUM_THREADS", omp_);
  }
  void TearDown() override {
    restore("FWP_NUM_THREADS", fwp_);
    restore("OMP_NUM_THREADS", omp_);
  }

 private:
  struct Saved {
    bool set = false;
    std::string value;
  };
  static void save(const char* name, Saved& s) {
    const char* v = std::getenv(name);
    s.set = v != nullptr;
    if (v) s.value = v;
  }
  static void restore(const char* name, const Saved& s) {
    if (s.set) {
      setenv(name, s.value.c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  Saved fwp_, omp_;
};

TEST_F(ThreadEnv, VariablesPickTheDefaultThreadCount) {
  unsetenv("FWP_NUM_THREADS");
  unsetenv("OMP_NUM_THREADS");
  std::string bad;
  const int affinity = fwp::default_num_threads(&bad);
  EXPECT_GE(affinity, 1);
  EXPECT_TRUE(bad.empty());

  setenv("OMP_NUM_THREADS", "3,2", 1);  // nested OpenMP lists: the first level counts
  EXPECT_EQ(fwp::default_num_threads(&bad), 3);
  setenv("FWP_NUM_THREADS", "5", 1);  // FWP_NUM_THREADS wins
  EXPECT_EQ(fwp::default_num_threads(&bad), 5);
  EXPECT_TRUE(bad.empty());

  setenv("FWP_NUM_THREADS", "", 1);  // empty: skipped
  EXPECT_EQ(fwp::default_num_threads(&bad), 3);
  for (const char* junk : {"0", "-2", "two", "4x", "99999"}) {
    setenv("FWP_NUM_THREADS", junk, 1);
    bad.clear();
    EXPECT_EQ(fwp::default_num_threads(&bad), 3) << junk;
    EXPECT_EQ(bad, std::string("FWP_NUM_THREADS=") + junk);
  }
}

}  // namespace
