// Fuzz target for the checkpoint reader (io/safetensors.h, train/checkpoint.h).
//
// Each input is written to a temporary file and read the three ways the
// library reads checkpoints: the bare safetensors reader (every F32 tensor),
// load_checkpoint into an existing model + optimizer + data source, and
// load_model. Any failure other than Error(FWP_ERR_FORMAT) -- a crash, a
// sanitizer report, another status, an exception of another type, a hang
// (libFuzzer's -timeout) or an allocation beyond -malloc_limit_mb -- is a
// finding. After a load succeeds the model runs one forward, which draws from
// the restored FAVOR+ generator (a zero generator state once hung there).
//
// Built two ways (tests/fuzz/fuzz.cmake): with clang's libFuzzer, ASan and
// UBSan in a build configured with FWP_FUZZ (CI's build-asan/; ctest
// "fuzz_checkpoint" runs tests/fuzz/run_fuzz.sh), and with the
// project's compiler and FWP_FUZZ_REPLAY as a plain program that replays the
// committed corpus (ctest "fuzz_checkpoint_replay"), so every past finding
// stays a regression test even where clang is missing. The replay program
// also writes the seed checkpoint: fuzz_checkpoint_replay --write-seed PATH.
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

#include "core/context.h"
#include "core/error.h"
#include "data/retrieval_data.h"
#include "io/safetensors.h"
#include "models/retrieval/retrieval_model.h"
#include "train/checkpoint.h"
#include "train/optimizer.h"

namespace {

using namespace fwp;

// The objects a checkpoint is loaded into (the seed corpus was saved from them).
struct Target {
  std::shared_ptr<Context> ctx;
  std::shared_ptr<RetrievalModel> model;
  std::unique_ptr<Optimizer> opt;
  std::unique_ptr<RetrievalData> data;
  std::string path;

  Target() {
    fwp_context_config cfg;
    fwp_context_config_init(&cfg);
    cfg.num_threads = 1;
    cfg.seed = 3;
    ctx = std::make_shared<Context>(cfg);
    RetrievalConfig c;
    c.setting = 1;
    c.num_keys = 4;
    c.d_head = 4;
    c.feature_map = FeatureMap::Favor;
    c.favor_features = 4;
    c.favor_redraw = true;
    model = std::make_shared<RetrievalModel>(ctx, c);
    OptimizerConfig oc;
    oc.kind = FWP_OPTIMIZER_ADAM;
    opt = std::make_unique<Optimizer>(ctx->backend(), model->parameters(), oc);
    data = std::make_unique<RetrievalData>(c.setting, c.num_keys, 5);
    char name[] = "/tmp/fwp_fuzz_checkpoint_XXXXXX";
    const int fd = mkstemp(name);
    if (fd < 0) std::abort();
    ::close(fd);
    path = name;
  }
  ~Target() { ::unlink(path.c_str()); }

  // One training step, so the seed holds non-zero moments.
  void step() {
    const int64_t B = 2, L = data->seq_len();
    std::vector<int32_t> k(B * L), v(B * L), q(B), t(B);
    data->sample(B, 1, k.data(), v.data(), q.data(), t.data());
    const RetrievalBatch batch{B, L, 1, k.data(), v.data(), q.data(), t.data()};
    opt->zero_grad();
    model->network().forward(batch, nullptr);
    model->backward();
    opt->step();
  }
};

Target& target() {
  static Target t;
  return t;
}

// Whether the last input loaded with load_checkpoint (the replay program
// checks that the valid seeds still do, so the fuzzer starts from files that
// reach every check).
bool last_input_loaded = false;

[[noreturn]] void finding(const char* where, const Error& e) {
  std::fprintf(stderr, "fuzz_checkpoint: %s failed with status %d instead of FWP_ERR_FORMAT: %s\n", where,
               static_cast<int>(e.status()), e.what());
  std::abort();
}

// Runs `load`; a format error is the expected answer to a bad file, anything else is a finding.
template <typename F>
bool loads(const char* where, F&& load) {
  try {
    load();
    return true;
  } catch (const Error& e) {
    if (e.status() != FWP_ERR_FORMAT) finding(where, e);
    return false;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* bytes, size_t size) {
  Target& t = target();
  {
    std::ofstream out(t.path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(bytes), static_cast<std::streamsize>(size));
    if (!out) std::abort();
  }
  loads("SafetensorsReader", [&] {
    const SafetensorsReader reader(t.path);
    for (const auto& [name, entry] : reader.tensors()) {
      if (entry.dtype == "F32") (void)reader.read_f32(name, entry.shape);
    }
  });
  last_input_loaded = loads("load_checkpoint", [&] { load_checkpoint(t.path, *t.model, t.opt.get(), t.data.get()); });
  if (last_input_loaded) t.step();  // draws from both restored generators and uses the restored moments
  loads("load_model", [&] { (void)load_model(t.ctx, t.path); });
  return 0;
}

#ifdef FWP_FUZZ_REPLAY
// Replays files (or every file of the directories) given on the command line.
#include <dirent.h>
#include <sys/stat.h>

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--write-seed") {
    Target& t = target();
    t.step();
    save_checkpoint(argv[2], *t.model, t.opt.get(), t.data.get(), "fuzz seed");
    return 0;
  }
  std::vector<std::string> files;
  for (int i = 1; i < argc; ++i) {
    struct stat st;
    if (::stat(argv[i], &st) != 0) {
      std::fprintf(stderr, "fuzz_checkpoint_replay: no such file or directory: %s\n", argv[i]);
      return 2;
    }
    if (!S_ISDIR(st.st_mode)) {
      files.push_back(argv[i]);
      continue;
    }
    DIR* d = ::opendir(argv[i]);
    while (const dirent* e = ::readdir(d)) {
      if (e->d_name[0] != '.') files.push_back(std::string(argv[i]) + "/" + e->d_name);
    }
    ::closedir(d);
  }
  if (files.empty()) {
    std::fprintf(stderr, "fuzz_checkpoint_replay: no inputs\n");
    return 2;
  }
  int loaded = 0, valid_refused = 0;
  for (const std::string& f : files) {
    std::ifstream in(f, std::ios::binary);
    const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()), data.size());
    loaded += last_input_loaded ? 1 : 0;
    // make_corpus.py names the checkpoints that must load "seed_valid*".
    if (f.substr(f.find_last_of('/') + 1).rfind("seed_valid", 0) == 0 && !last_input_loaded) {
      std::fprintf(stderr, "fuzz_checkpoint_replay: the valid seed %s no longer loads\n", f.c_str());
      ++valid_refused;
    }
  }
  std::printf("fuzz_checkpoint_replay: %zu inputs (%d loaded), no finding\n", files.size(), loaded);
  return valid_refused == 0 ? 0 : 1;
}
#endif
