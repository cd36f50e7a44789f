// Reliability of the `fwp` program's file handling (issue 10, command line):
// the checkpoint-header reader is the library's bounded one (a FIFO fails at
// once, deep nesting and huge header lengths are refused), files are written
// through unique exclusive temporaries (concurrent writers to one path never
// share one, and a failed write leaves nothing behind), output paths are
// checked before training, and gnuplot never writes to the program's stdout.
#include "cli_support.h"
#include "train/checkpoint.h"
#include "train/gnuplot.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace {

using fwp_cli::RunError;
using fwp_cli::UsageError;

// A fresh empty folder under the test's working directory.
std::string fresh_folder(const std::string& name) {
  const std::string dir = "cli_reliability_" + name;
  std::system(("rm -rf '" + dir + "'").c_str());
  EXPECT_EQ(::mkdir(dir.c_str(), 0755), 0);
  return dir;
}

std::vector<std::string> folder_entries(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return names;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(d);
  return names;
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  ASSERT_TRUE(out.good());
}

// A safetensors file: the 8-byte little-endian length, then the header.
std::string safetensors_bytes(const std::string& header, uint64_t declared_length) {
  std::string bytes(8, '\0');
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((declared_length >> (8 * i)) & 0xff);
  return bytes + header;
}

// Runs the reader on `path`, failing the test (instead of hanging it) when it
// does not return within 10 s, and returns its error message.
std::string reader_error(const std::string& path) {
  auto reading = std::async(std::launch::async, [path]() -> std::string {
    try {
      fwp_cli::train::read_checkpoint_user_metadata(path);
    } catch (const RunError& e) {
      return e.what();
    }
    return "";
  });
  if (reading.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    // Unblock a reader stuck in open() of a FIFO so the test can end.
    const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK);
    if (fd >= 0) ::close(fd);
    ADD_FAILURE() << "reading " << path << " did not return within 10 s";
  }
  return reading.get();
}

TEST(CheckpointHeader, AFifoFailsAtOnceWithAClearMessage) {
  const std::string dir = fresh_folder("fifo");
  const std::string fifo = dir + "/run.safetensors";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0644), 0);
  const auto start = std::chrono::steady_clock::now();
  const std::string message = reader_error(fifo);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  EXPECT_NE(message.find("not a regular file"), std::string::npos) << message;
  EXPECT_NE(message.find(fifo), std::string::npos) << message;
}

TEST(CheckpointHeader, DeepNestingIsRefusedWithoutRecursion) {
  const std::string dir = fresh_folder("nested");
  const std::string path = dir + "/run.safetensors";
  const int depth = 200000;  // far beyond what a recursive walk survives
  const std::string header = "{\"__metadata__\":{\"user\":\"{}\"},\"deep\":" + std::string(depth, '[') +
                             std::string(depth, ']') + "}";
  write_bytes(path, safetensors_bytes(header, header.size()));
  const std::string message = reader_error(path);
  EXPECT_NE(message.find("nests deeper than"), std::string::npos) << message;
  EXPECT_LT(message.size(), 400u) << "the message quotes the file";
}

TEST(CheckpointHeader, HugeHeaderLengthIsRefusedBeforeAllocating) {
  const std::string dir = fresh_folder("huge");
  const std::string path = dir + "/run.safetensors";
  for (const uint64_t length : {~uint64_t{0}, uint64_t{1} << 40, uint64_t{101} << 20, uint64_t{4096}}) {
    write_bytes(path, safetensors_bytes("{\"__metadata__\":{\"user\":\"{}\"}}", length));
    const std::string message = reader_error(path);
    EXPECT_NE(message.find(path), std::string::npos) << "length " << length << ": " << message;
    EXPECT_LT(message.size(), 400u) << message;
  }
}

TEST(CheckpointHeader, DeeplyNestedRunMetadataIsRefused) {
  // The "user" string is JSON too: parsed with the same nesting limit.
  const std::string dir = fresh_folder("nested_user");
  const std::string path = dir + "/run.safetensors";
  const std::string user = std::string(100000, '[') + std::string(100000, ']');
  const std::string header = "{\"__metadata__\":{\"user\":\"" + user + "\"}}";
  write_bytes(path, safetensors_bytes(header, header.size()));
  try {
    fwp_cli::train::read_saved_run(path, {"fwp-cli-test", 1, "fwp test"});
    FAIL() << "a run metadata nested 100000 deep was accepted";
  } catch (const RunError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find("nests deeper than"), std::string::npos) << message;
    EXPECT_LT(message.size(), 400u);
  }
}

// --resume reads the run metadata and the tensors from one open file: a save
// that replaces the path in between (here: a checkpoint one step further)
// cannot pair the metadata of one version with the tensors of the other.
TEST(CheckpointResume, MetadataAndTensorsComeFromTheFileThatWasOpened) {
  const std::string dir = fresh_folder("one_open");
  const std::string path = dir + "/run.safetensors", newer = dir + "/newer.safetensors";
  fwp_context_config cc;
  fwp_context_config_init(&cc);
  cc.num_threads = 1;
  fwp_context* ctx = nullptr;
  ASSERT_EQ(fwp_context_create(&cc, &ctx), FWP_OK);
  fwp_retrieval_config rc;
  fwp_retrieval_config_init(&rc);
  rc.num_keys = 4;
  fwp_model* model = nullptr;
  ASSERT_EQ(fwp_model_create_retrieval(ctx, &rc, &model), FWP_OK);
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  fwp_optimizer* opt = nullptr;
  ASSERT_EQ(fwp_optimizer_create_for_model(model, &oc, &opt), FWP_OK);
  const fwp_cli::train::TrainingObjects objects{model, opt, nullptr};
  const fwp_cli::train::CheckpointFormat format{"fwp-cli-test", 1, "fwp test"};

  fwp_cli::train::TrainState state;
  fwp_cli::train::save_checkpoint(path, objects, format, {{"task", "test"}}, state);  // step 0
  ASSERT_EQ(fwp_model_zero_grad(model), FWP_OK);
  ASSERT_EQ(fwp_optimizer_step(opt, nullptr), FWP_OK);
  state.step = 1;
  fwp_cli::train::save_checkpoint(newer, objects, format, {{"task", "test"}}, state);

  const fwp_cli::train::SavedRun saved = fwp_cli::train::read_saved_run(path, format);
  ASSERT_EQ(saved.state.step, 0);
  ASSERT_EQ(std::rename(newer.c_str(), path.c_str()), 0);  // a save replaces the file now
  EXPECT_NO_THROW(fwp_cli::train::load_checkpoint(path, objects, saved));
  int64_t steps = -1;
  ASSERT_EQ(fwp_optimizer_get_step(opt, &steps), FWP_OK);
  EXPECT_EQ(steps, 0) << "the tensors came from the file that replaced the one whose metadata was read";

  fwp_optimizer_destroy(opt);
  fwp_model_destroy(model);
  fwp_context_destroy(ctx);
}

// Messages name the user's path, not the /proc path the file is read through.
TEST(CheckpointResume, MessagesNameTheGivenPath) {
  const std::string dir = fresh_folder("message_path");
  const std::string path = dir + "/run.safetensors";
  write_bytes(path, std::string("\x05\0\0\0\0\0\0\0{}", 10));
  try {
    fwp_cli::train::read_saved_run(path, {"fwp-cli-test", 1, "fwp test"});
    FAIL() << "a truncated header was accepted";
  } catch (const RunError& e) {
    const std::string message = e.what();
    EXPECT_NE(message.find(path), std::string::npos) << message;
    EXPECT_EQ(message.find("/proc/self/fd"), std::string::npos) << message;
  }
}

TEST(WriteFileAtomically, ConcurrentWritersToOnePathEachReplaceItWhole) {
  const std::string dir = fresh_folder("concurrent");
  const std::string path = dir + "/table.csv";
  constexpr int kThreads = 8, kWrites = 200;
  std::vector<std::string> contents;
  // Different sizes, so a file mixed from two writes or truncated is detected.
  for (int t = 0; t < kThreads; ++t) contents.push_back(std::string(1000 + 4099 * t, static_cast<char>('a' + t)));
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      try {
        for (int i = 0; i < kWrites; ++i) fwp_cli::write_file_atomically(path, contents[t]);
      } catch (const std::exception& e) {
        errors[t] = e.what();
      }
    });
  }
  // Readers only ever see one writer's whole contents.
  int reads = 0;
  bool mixed = false;
  for (int i = 0; i < 300; ++i) {
    if (!fwp_cli::file_exists(path)) continue;
    const std::string seen = fwp_cli::read_file(path);
    ++reads;
    bool whole = false;
    for (const std::string& c : contents) whole = whole || seen == c;
    mixed = mixed || !whole;
  }
  for (std::thread& t : threads) t.join();
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(errors[t], "") << "writer " << t;
  EXPECT_FALSE(mixed) << "a reader saw a partial or mixed file (" << reads << " reads)";
  const std::string final_text = fwp_cli::read_file(path);
  bool whole = false;
  for (const std::string& c : contents) whole = whole || final_text == c;
  EXPECT_TRUE(whole) << "the final file is not one writer's contents (" << final_text.size() << " bytes)";
  EXPECT_EQ(folder_entries(dir), std::vector<std::string>{"table.csv"}) << "a temporary was left behind";
}

TEST(WriteFileAtomically, AFailedWriteRemovesItsTemporaryAndKeepsTheOldFile) {
  const std::string dir = fresh_folder("failed");
  const std::string target = dir + "/taken";  // a folder: the final rename fails
  ASSERT_EQ(::mkdir(target.c_str(), 0755), 0);
  write_bytes(target + "/inside", "old");
  EXPECT_THROW(fwp_cli::write_file_atomically(target, "new"), RunError);
  EXPECT_EQ(folder_entries(dir), std::vector<std::string>{"taken"}) << "the temporary was left behind";
  EXPECT_EQ(fwp_cli::read_file(target + "/inside"), "old");
  EXPECT_THROW(fwp_cli::write_file_atomically(dir + "/missing/file.csv", "new"), RunError);
}

TEST(CheckOutputPath, RefusesMissingAndNonFolders) {
  const std::string dir = fresh_folder("outputs");
  write_bytes(dir + "/file", "x");
  ASSERT_EQ(::mkdir((dir + "/sub").c_str(), 0755), 0);
  EXPECT_NO_THROW(fwp_cli::check_output_path("--csv", dir + "/new.csv"));
  EXPECT_NO_THROW(fwp_cli::check_output_path("--csv", dir + "/file"));
  EXPECT_NO_THROW(fwp_cli::check_output_path("--csv", "relative-in-cwd.csv"));
  for (const std::string& bad :
       {dir + "/missing/x.csv", dir + "/file/x.csv", dir + "/sub", dir + "/sub/", std::string()}) {
    try {
      fwp_cli::check_output_path("--plot", bad);
      ADD_FAILURE() << "'" << bad << "' was accepted";
    } catch (const UsageError& e) {
      EXPECT_EQ(std::string(e.what()).rfind("--plot", 0), 0u) << e.what();
    }
  }
  if (::geteuid() != 0) {  // root may write anywhere
    ASSERT_EQ(::chmod((dir + "/sub").c_str(), 0555), 0);
    EXPECT_THROW(fwp_cli::check_output_path("--csv", dir + "/sub/x.csv"), UsageError);
    ::chmod((dir + "/sub").c_str(), 0755);
  }
}

TEST(Gnuplot, AnUnwritablePlotNeverReachesStdout) {
  const std::string gnuplot = fwp_cli::find_in_path("gnuplot");
  if (gnuplot.empty()) GTEST_SKIP() << "gnuplot is not installed";
  const std::string dir = fresh_folder("plot");
  // Capture this process's stdout (gnuplot inherits it) in a file.
  const std::string captured = dir + "/stdout";
  std::fflush(stdout);
  const int saved = ::dup(1);
  const int file = ::open(captured.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(file, 0);
  ::dup2(file, 1);
  ::close(file);
  int failures = 0;
  try {
    fwp_cli::train::render_png(gnuplot, dir + "/missing/plot.png", "plot x\n");
  } catch (const RunError&) {
    ++failures;
  }
  // gnuplot itself failing to open its output (here a script that redirects
  // it) draws on its stdout: that must not be the program's.
  try {
    fwp_cli::train::render_png(gnuplot, dir + "/plot.png", "set output '" + dir + "/missing/x.png'\nplot x\n");
  } catch (const RunError&) {
    ++failures;
  }
  std::fflush(stdout);
  ::dup2(saved, 1);
  ::close(saved);
  EXPECT_EQ(failures, 2) << "rendering into a missing folder did not fail";
  EXPECT_EQ(fwp_cli::read_file(captured), "") << "gnuplot wrote to stdout";

  // And a good path renders a PNG, leaving no temporary.
  fwp_cli::train::render_png(gnuplot, dir + "/plot.png", "plot x\n");
  EXPECT_EQ(fwp_cli::read_file(dir + "/plot.png").substr(1, 3), "PNG");
  const auto entries = folder_entries(dir);
  EXPECT_EQ(entries.size(), 2u) << "a temporary was left behind";
}

}  // namespace
