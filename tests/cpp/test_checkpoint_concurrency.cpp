// Concurrent saves and loads of one checkpoint path (issue 10): threads of this
// process and forked processes save two different models to one path while
// other threads load it. Every save must succeed (each writes its own
// temporary file and renames it over the path), every load must succeed and
// see one whole file, never a mix (a load opens the file once), and no
// temporary file may be left behind. Bounded to about two seconds.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/context.h"
#include "core/error.h"
#include "models/retrieval/retrieval_model.h"
#include "temp_files.h"
#include "train/checkpoint.h"

namespace fwp {
namespace {

std::shared_ptr<Context> make_context(uint64_t seed) {
  fwp_context_config cfg;
  fwp_context_config_init(&cfg);
  cfg.num_threads = 1;
  cfg.seed = seed;
  return std::make_shared<Context>(cfg);
}

RetrievalConfig config_with_keys(int64_t num_keys) {
  RetrievalConfig c;
  c.setting = 1;
  c.num_keys = num_keys;
  c.d_head = 8;
  c.feature_map = FeatureMap::Dpfp;
  c.dpfp_nu = 1;
  return c;
}

std::vector<std::vector<float>> values_of(const Model& model) {
  std::vector<std::vector<float>> out;
  for (int64_t i = 0; i < model.parameters().size(); ++i) out.push_back(model.parameters()[i].value.to_host());
  return out;
}

using Clock = std::chrono::steady_clock;

TEST(CheckpointConcurrency, ThreadsAndProcessesSavingAndLoadingOnePath) {
  test::TempDir dir("fwp_checkpoint_stress");
  const std::string path = dir.file("shared.safetensors");
  // Two models of different configs, so a load that mixed two files would
  // fail ("config does not match") or show parameters of neither.
  const RetrievalModel a(make_context(1), config_with_keys(8));
  const RetrievalModel b(make_context(2), config_with_keys(10));
  const auto a_values = values_of(a), b_values = values_of(b);
  save_checkpoint(path, a, nullptr, nullptr, "a");
  const auto deadline = Clock::now() + std::chrono::milliseconds(1500);

  // Processes first, before this test starts any thread.
  std::vector<pid_t> children;
  for (int p = 0; p < 2; ++p) {
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0) << "fork failed";
    if (pid == 0) {
      int failures = 0;
      for (int i = 0; Clock::now() < deadline; ++i) {
        try {
          save_checkpoint(path, (i + p) % 2 ? b : a, nullptr, nullptr, (i + p) % 2 ? "b" : "a");
        } catch (const Error& e) {
          std::fprintf(stderr, "child save failed: %s\n", e.what());
          ++failures;
        }
      }
      ::_exit(failures == 0 ? 0 : 1);
    }
    children.push_back(pid);
  }

  std::atomic<int> saves{0}, loads{0}, failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; Clock::now() < deadline; ++i) {
        try {
          save_checkpoint(path, (i + t) % 2 ? b : a, nullptr, nullptr, (i + t) % 2 ? "b" : "a");
          ++saves;
        } catch (const Error& e) {
          ADD_FAILURE() << "save failed: " << e.what();
          ++failures;
        }
      }
    });
  }
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&] {
      while (Clock::now() < deadline) {
        try {
          const std::shared_ptr<Model> m = load_model(make_context(9), path);
          const auto v = values_of(*m);
          if (v != a_values && v != b_values) {
            ADD_FAILURE() << "a load saw parameters of neither model";
            ++failures;
          }
          ++loads;
        } catch (const Error& e) {
          ADD_FAILURE() << "load failed: " << e.what();
          ++failures;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "a child process's save failed";
  }
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(saves.load(), 3);
  EXPECT_GT(loads.load(), 1);
  // Whatever won last is a whole file, and nothing temporary is left.
  const std::shared_ptr<Model> last = load_model(make_context(9), path);
  EXPECT_TRUE(values_of(*last) == a_values || values_of(*last) == b_values);
  for (const std::string& name : test::list_dir(dir.path())) {
    EXPECT_EQ(name, "shared.safetensors") << "left behind";
  }
}

}  // namespace
}  // namespace fwp
