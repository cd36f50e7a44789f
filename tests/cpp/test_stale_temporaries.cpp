// The temporaries of killed saves (io/atomic_file.h, issue 10): the next save
// to the same path removes those whose writer process is dead, and nothing
// else -- not a live process's, not this process's, not another path's, not a
// name outside the pattern, not a directory.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/error.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "temp_files.h"

namespace fwp {
namespace {

// A pid that belonged to a process that has ended (a child that exited and was reaped).
pid_t dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  int status = 0;
  ::waitpid(child, &status, 0);
  return child;
}

bool exists(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

std::string tmp_name(const std::string& path, long long pid, int n) {
  return path + ".tmp." + std::to_string(pid) + "." + std::to_string(n);
}

class StaleTemporaries : public ::testing::Test {
 protected:
  test::TempDir dir{"fwp_stale_tmp"};
  std::string path = dir.file("model.safetensors");
  pid_t dead = dead_pid();
  // Temporaries that must stay: a live process's (this test's parent), this
  // process's, another path's, names outside the pattern, and a folder.
  std::vector<std::string> kept{tmp_name(path, ::getppid(), 0),
                                tmp_name(path, ::getpid(), 7),
                                tmp_name(dir.file("other.safetensors"), dead, 0),
                                path + ".tmp." + std::to_string(dead),
                                path + ".tmp." + std::to_string(dead) + ".x",
                                path + ".tmp.abc.0",
                                path + ".tmp." + std::to_string(dead) + ".3.bak",
                                dir.file("prefix") + "model.safetensors.tmp." + std::to_string(dead) + ".0"};
  std::vector<std::string> stale{tmp_name(path, dead, 0), tmp_name(path, dead, 12345)};
  std::string stale_folder = tmp_name(path, dead, 9);

  void SetUp() override {
    for (const auto& f : kept) test::write_bytes(f, "partial");
    for (const auto& f : stale) test::write_bytes(f, "partial");
    ASSERT_EQ(::mkdir(stale_folder.c_str(), 0755), 0);
  }

  void expect_only_stale_removed() {
    for (const auto& f : stale) EXPECT_FALSE(exists(f)) << f << " (its writer is dead) was not removed";
    for (const auto& f : kept) EXPECT_TRUE(exists(f)) << f << " was removed";
    EXPECT_TRUE(exists(stale_folder)) << "a folder with a temporary's name was removed";
  }
};

TEST_F(StaleTemporaries, ASafetensorsSaveRemovesTheDeadWritersTemporariesOfItsPath) {
  SafetensorsWriter writer;
  writer.add_f32("x", {1}, std::vector<float>{1.0f});
  writer.write(path);
  expect_only_stale_removed();
  EXPECT_TRUE(exists(path));
}

TEST_F(StaleTemporaries, AnAtomicFileWriteRemovesTheDeadWritersTemporariesOfItsPath) {
  AtomicFileWriter out(path);
  out.write("abc", 3);
  out.commit();
  expect_only_stale_removed();
  EXPECT_EQ(test::read_bytes(path), "abc");
}

TEST_F(StaleTemporaries, CleaningAloneRemovesTheSameAndAFailedSaveAddsNothing) {
  // Cleaning is best effort and never makes a save fail; the save's own temporary goes with its failure.
  const std::string missing_dir_path = dir.file("no_such_folder/model.safetensors");
  SafetensorsWriter writer;
  writer.add_f32("x", {1}, std::vector<float>{1.0f});
  EXPECT_THROW(writer.write(missing_dir_path), Error);
  remove_stale_temporaries(path);
  expect_only_stale_removed();
  const std::vector<std::string> names = test::list_dir(dir.path());
  const size_t ours = static_cast<size_t>(std::count_if(names.begin(), names.end(), [&](const std::string& n) {
    return n.rfind("model.safetensors.tmp." + std::to_string(::getpid()) + ".", 0) == 0;
  }));
  EXPECT_EQ(ours, 1u) << "only the planted temporary of this process stays";
}

}  // namespace
}  // namespace fwp
