// Checkpoints: bit-exact resumption of training, the safetensors layout,
// rejection of damaged or foreign files without touching the target objects,
// saves that fail without damaging the previous file, the registry of model
// kinds, data sources of any kind, and files of format version 1.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "core/context.h"
#include "core/error.h"
#include "temp_files.h"
#include "counter_source.h"
#include "data/retrieval_data.h"
#include "models/registry.h"
#include "models/retrieval/retrieval_model.h"
#include "train/checkpoint.h"
#include "train/optimizer.h"

namespace fwp {
namespace {

using test::Bytes;
using test::read_bytes;
using test::write_bytes;

uint64_t header_length(const Bytes& file) {
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(file[i]);
  return n;
}

nlohmann::json header_of(const Bytes& file) {
  return nlohmann::json::parse(file.substr(8, header_length(file)));
}

// The same data section under another header.
Bytes with_header(const Bytes& file, const nlohmann::json& header) {
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  Bytes out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((text.size() >> (8 * i)) & 0xff);
  return out + text + file.substr(8 + header_length(file));
}

// The built-in kinds' parameter shapes, for registries made in tests.
std::vector<ParameterShape> builtin_shapes(const nlohmann::json& config) {
  return ModelRegistry::builtin().parameter_shapes(config);
}

std::shared_ptr<Context> make_context(uint64_t seed) {
  fwp_context_config cfg;
  fwp_context_config_init(&cfg);
  cfg.num_threads = 1;
  cfg.seed = seed;
  return std::make_shared<Context>(cfg);
}

RetrievalConfig small_config() {
  RetrievalConfig c;
  c.setting = 2;
  c.num_keys = 8;
  c.d_head = 16;
  c.feature_map = FeatureMap::Dpfp;
  c.dpfp_nu = 2;
  return c;
}

// A model, its optimizer and its data generator, trained step by step.
struct TrainingRun {
  std::shared_ptr<Context> ctx;
  std::shared_ptr<RetrievalModel> model;
  std::unique_ptr<Optimizer> opt;
  std::unique_ptr<RetrievalData> data;

  TrainingRun(const RetrievalConfig& c, uint64_t seed, fwp_optimizer_kind kind = FWP_OPTIMIZER_ADAM) {
    ctx = make_context(seed);
    model = std::make_shared<RetrievalModel>(ctx, c);
    OptimizerConfig oc;
    oc.kind = kind;
    oc.learning_rate = 3e-3;
    opt = std::make_unique<Optimizer>(ctx->backend(), model->parameters(), oc);
    data = std::make_unique<RetrievalData>(c.setting, c.num_keys, seed + 1000);
  }

  double step() {
    const int64_t B = 4, L = data->seq_len();
    std::vector<int32_t> k(B * L), v(B * L), q(B), t(B);
    data->sample(B, 1, k.data(), v.data(), q.data(), t.data());
    const RetrievalBatch batch{B, L, 1, k.data(), v.data(), q.data(), t.data()};
    opt->zero_grad();
    const double loss = model->network().forward(batch, nullptr);
    model->backward();
    opt->step();
    return loss;
  }

  // Everything a load may change, for before/after comparisons.
  struct Snapshot {
    std::vector<std::vector<float>> params, moments;
    int64_t steps;
    double lr;
    Rng::State model_rng, data_rng;
    bool operator==(const Snapshot& o) const {
      return params == o.params && moments == o.moments && steps == o.steps && lr == o.lr &&
             model_rng == o.model_rng && data_rng == o.data_rng;
    }
  };
  Snapshot snapshot() {
    Snapshot s;
    for (int64_t i = 0; i < model->parameters().size(); ++i) s.params.push_back(model->parameters()[i].value.to_host());
    for (const auto& t : opt->state_tensors()) s.moments.push_back(t.buffer->to_host());
    s.steps = opt->steps();
    s.lr = opt->learning_rate();
    s.model_rng = model->rng_state();
    s.data_rng = data->rng_state();
    return s;
  }
};

void expect_status(const std::function<void()>& f, fwp_status status, const std::string& what,
                   const std::string& message_part = "") {
  try {
    f();
    ADD_FAILURE() << what << ": expected status " << status;
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), status) << what << ": " << e.what();
    if (!message_part.empty()) {
      EXPECT_NE(std::string(e.what()).find(message_part), std::string::npos) << e.what();
    }
  }
}

// ---- resumption -----------------------------------------------------------------------------------

class CheckpointResume : public ::testing::TestWithParam<bool> {};

TEST_P(CheckpointResume, ResumedTrainingIsBitIdentical) {
  RetrievalConfig c = small_config();
  if (GetParam()) {
    // FAVOR+ with redraws: the model's own generator must resume too.
    c.feature_map = FeatureMap::Favor;
    c.favor_features = 12;
  }
  test::TempDir dir("fwp_checkpoint");
  const std::string path = dir.file("run.safetensors");
  const int N = 6, M = 6;
  TrainingRun a(c, 1);
  for (int i = 0; i < N; ++i) a.step();
  a.opt->set_learning_rate(2e-3);  // as a schedule would
  save_checkpoint(path, *a.model, a.opt.get(), a.data.get(), "hello");
  std::vector<double> expected;
  for (int i = 0; i < M; ++i) expected.push_back(a.step());

  TrainingRun b(c, 99);  // other parameters, other data stream
  load_checkpoint(path, *b.model, b.opt.get(), b.data.get());
  EXPECT_EQ(b.opt->steps(), N);
  EXPECT_EQ(b.opt->learning_rate(), 2e-3);
  for (int i = 0; i < M; ++i) EXPECT_EQ(b.step(), expected[i]) << "step " << i;
  EXPECT_TRUE(a.snapshot() == b.snapshot());

  // A model rebuilt from the file alone has the saved config and parameters.
  const auto loaded = load_model(make_context(3), path);
  EXPECT_EQ(loaded->config_json(), a.model->config_json());
  TrainingRun fresh(c, 1);
  for (int i = 0; i < N; ++i) fresh.step();
  for (int64_t i = 0; i < loaded->parameters().size(); ++i) {
    EXPECT_EQ(loaded->parameters()[i].value.to_host(), fresh.model->parameters()[i].value.to_host());
  }
}

INSTANTIATE_TEST_SUITE_P(Checkpoint, CheckpointResume, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return std::string(info.param ? "FavorRedraw" : "Dpfp");
                         });

// ---- learning-rate schedules ----------------------------------------------------------------------

// AdamW with clipping, a warm-up and a cosine decay that ends during the resumed part.
OptimizerConfig scheduled_config() {
  OptimizerConfig oc;
  oc.kind = FWP_OPTIMIZER_ADAMW;
  oc.learning_rate = 3e-3;
  oc.weight_decay = 0.01;
  oc.clip_grad_norm = 0.5;
  oc.lr_schedule = FWP_LR_WARMUP_COSINE;
  oc.warmup_steps = 3;
  oc.total_steps = 9;
  oc.min_learning_rate = 1e-4;
  return oc;
}

TrainingRun scheduled_run(const RetrievalConfig& c, uint64_t seed, const OptimizerConfig& oc) {
  TrainingRun run(c, seed);
  run.opt = std::make_unique<Optimizer>(run.ctx->backend(), run.model->parameters(), oc);
  return run;
}

TEST(CheckpointSchedule, ResumedTrainingWithAScheduleIsBitIdentical) {
  const RetrievalConfig c = small_config();
  test::TempDir dir("fwp_checkpoint");
  const std::string path = dir.file("scheduled.safetensors");
  const int N = 5, M = 7;  // saved mid-decay; the resumed part reaches the floor
  TrainingRun a = scheduled_run(c, 1, scheduled_config());
  for (int i = 0; i < N; ++i) a.step();
  a.opt->set_learning_rate(2e-3);  // a changed peak is part of the state
  save_checkpoint(path, *a.model, a.opt.get(), a.data.get(), nullptr);
  const double lr_at_save = a.opt->learning_rate();
  std::vector<double> expected, expected_lr;
  for (int i = 0; i < M; ++i) {
    expected_lr.push_back(a.opt->learning_rate());
    expected.push_back(a.step());
  }
  EXPECT_EQ(expected_lr.back(), 1e-4) << "the run ends on the floor";

  // The file holds the schedule and the step count, readable without fwp.
  const nlohmann::json meta =
      nlohmann::json::parse(header_of(read_bytes(path)).at("__metadata__").at("optimizer").get<std::string>());
  EXPECT_EQ(meta.at("step"), N);
  EXPECT_EQ(meta.at("config").at("lr_schedule"), "warmup_cosine");
  EXPECT_EQ(meta.at("config").at("warmup_steps"), 3);
  EXPECT_EQ(meta.at("config").at("total_steps"), 9);
  EXPECT_EQ(meta.at("config").at("learning_rate"), 2e-3);

  TrainingRun b = scheduled_run(c, 99, scheduled_config());  // other parameters, data, and the config's peak
  load_checkpoint(path, *b.model, b.opt.get(), b.data.get());
  EXPECT_EQ(b.opt->steps(), N);
  EXPECT_EQ(b.opt->base_learning_rate(), 2e-3);
  EXPECT_EQ(b.opt->learning_rate(), lr_at_save);
  for (int i = 0; i < M; ++i) {
    EXPECT_EQ(b.opt->learning_rate(), expected_lr[i]) << "step " << i;
    EXPECT_EQ(b.step(), expected[i]) << "step " << i;
  }
  EXPECT_TRUE(a.snapshot() == b.snapshot());
}

TEST(CheckpointSchedule, AnotherScheduleIsRefusedAndChangesNothing) {
  const RetrievalConfig c = small_config();
  test::TempDir dir("fwp_checkpoint");
  const std::string path = dir.file("scheduled.safetensors");
  TrainingRun a = scheduled_run(c, 1, scheduled_config());
  for (int i = 0; i < 4; ++i) a.step();
  save_checkpoint(path, *a.model, a.opt.get(), a.data.get(), nullptr);

  OptimizerConfig longer = scheduled_config();
  longer.total_steps = 90;
  OptimizerConfig constant;  // 0.1.0's only schedule
  constant.kind = FWP_OPTIMIZER_ADAMW;
  constant.learning_rate = 3e-3;
  constant.weight_decay = 0.01;
  constant.clip_grad_norm = 0.5;
  for (const auto& [other, field] : {std::pair{longer, "total_steps"}, std::pair{constant, "lr_schedule"}}) {
    TrainingRun b = scheduled_run(c, 99, other);
    b.step();
    const auto before = b.snapshot();
    try {
      load_checkpoint(path, *b.model, b.opt.get(), b.data.get());
      ADD_FAILURE() << "a checkpoint with another " << field << " was loaded";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), FWP_ERR_FORMAT);
      EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    }
    EXPECT_TRUE(before == b.snapshot()) << field;
  }
}

TEST(CheckpointSchedule, FilesWithoutScheduleLoadAsConstant) {
  // A checkpoint as 0.1.0 wrote it: the optimizer config has no schedule members.
  const RetrievalConfig c = small_config();
  test::TempDir dir("fwp_checkpoint");
  const std::string path = dir.file("old.safetensors");
  TrainingRun a(c, 1);
  for (int i = 0; i < 3; ++i) a.step();
  save_checkpoint(path, *a.model, a.opt.get(), a.data.get(), nullptr);
  const Bytes file = read_bytes(path);
  nlohmann::json header = header_of(file);
  nlohmann::json opt = nlohmann::json::parse(header["__metadata__"]["optimizer"].get<std::string>());
  for (const char* key : {"lr_schedule", "warmup_steps", "total_steps", "min_learning_rate"}) {
    ASSERT_TRUE(opt["config"].contains(key)) << key;
    opt["config"].erase(key);
  }
  header["__metadata__"]["optimizer"] = opt.dump();
  write_bytes(path, with_header(file, header));

  std::vector<double> expected;
  for (int i = 0; i < 3; ++i) expected.push_back(a.step());
  TrainingRun b(c, 99);
  load_checkpoint(path, *b.model, b.opt.get(), b.data.get());
  EXPECT_EQ(b.opt->steps(), 3);
  EXPECT_EQ(b.opt->config().lr_schedule, FWP_LR_CONSTANT);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(b.step(), expected[i]) << "step " << i;
}

TEST(Checkpoint, FileIsPlainSafetensors) {
  test::TempDir dir("fwp_checkpoint");
  const std::string path = dir.file("model.safetensors");
  TrainingRun a(small_config(), 1);
  a.step();
  save_checkpoint(path, *a.model, a.opt.get(), a.data.get(), "note: \xc3\xa9t\xc3\xa9");
  const Bytes file = read_bytes(path);
  const uint64_t n = header_length(file);
  EXPECT_EQ((8 + n) % 8, 0u) << "the data section is 8-byte aligned";
  const nlohmann::json h = header_of(file);
  const auto& meta = h.at("__metadata__");
  EXPECT_EQ(meta.at("format"), "fwp-checkpoint");
  EXPECT_EQ(meta.at("user"), "note: \xc3\xa9t\xc3\xa9");
  EXPECT_EQ(nlohmann::json::parse(meta.at("model").get<std::string>()), a.model->config_json());
  EXPECT_EQ(nlohmann::json::parse(meta.at("optimizer").get<std::string>()).at("step"), 1);
  for (const auto& [key, value] : meta.items()) EXPECT_TRUE(value.is_string()) << key;
  // Tensors: F32, contiguous, covering the data section exactly.
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  int params = 0, moments = 0;
  for (const auto& [name, t] : h.items()) {
    if (name == "__metadata__") continue;
    EXPECT_EQ(t.at("dtype"), "F32") << name;
    uint64_t numel = 1;
    for (const auto& d : t.at("shape")) numel *= d.get<uint64_t>();
    const uint64_t b = t.at("data_offsets")[0], e = t.at("data_offsets")[1];
    EXPECT_EQ(e - b, 4 * numel) << name;
    ranges.emplace_back(b, e);
    (name.rfind("optimizer/", 0) == 0 ? moments : params) += 1;
  }
  EXPECT_EQ(params, a.model->parameters().size());
  EXPECT_EQ(moments, 2 * params) << "exp_avg and exp_avg_sq per trainable parameter";
  std::sort(ranges.begin(), ranges.end());
  uint64_t at = 0;
  for (const auto& [b, e] : ranges) {
    EXPECT_EQ(b, at);
    at = e;
  }
  EXPECT_EQ(at, file.size() - 8 - n);
  // The bytes of a tensor are its little-endian floats.
  const auto& emb = h.at("key_embedding");
  const auto values = a.model->parameters()[0].value.to_host();
  const uint64_t off = 8 + n + emb.at("data_offsets")[0].get<uint64_t>();
  EXPECT_EQ(std::memcmp(file.data() + off, values.data(), values.size() * 4), 0);
}

// ---- damaged and foreign files --------------------------------------------------------------------

TEST(Checkpoint, DamagedFilesAreFormatErrorsAndChangeNothing) {
  test::TempDir dir("fwp_checkpoint");
  const std::string good_path = dir.file("good.safetensors");
  TrainingRun src(small_config(), 1);
  src.step();
  save_checkpoint(good_path, *src.model, src.opt.get(), src.data.get(), nullptr);
  const Bytes good = read_bytes(good_path);
  const uint64_t n = header_length(good);
  const nlohmann::json header = header_of(good);

  std::vector<std::pair<std::string, Bytes>> cases;
  for (size_t len : {size_t(0), size_t(4), size_t(8), size_t(8 + n / 2), size_t(8 + n), good.size() - 1}) {
    cases.emplace_back("truncated to " + std::to_string(len), good.substr(0, len));
  }
  {
    Bytes b = good;
    for (int i = 0; i < 8; ++i) b[i] = '\xff';
    cases.emplace_back("wrong magic (absurd header length)", b);
  }
  {
    Bytes b = good;
    const uint64_t big = (100ull << 20) + 1;
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((big >> (8 * i)) & 0xff);
    cases.emplace_back("header length over the bound", b);
  }
  cases.emplace_back("not a safetensors file", Bytes("PK\x03\x04 this is a zip file, not a checkpoint."));
  {
    Bytes b = good;
    b[8] = 'x';  // the opening brace
    cases.emplace_back("corrupted header", b);
  }
  {
    nlohmann::json h = header;
    h["__metadata__"].erase("format");
    cases.emplace_back("no fwp format marker", with_header(good, h));
  }
  {
    nlohmann::json h = header;
    h.erase("k_proj.bias");
    cases.emplace_back("missing parameter tensor", with_header(good, h));
  }
  {
    nlohmann::json h = header;
    h.erase("optimizer/q_proj.weight/exp_avg_sq");
    cases.emplace_back("missing optimizer tensor", with_header(good, h));
  }
  {
    nlohmann::json h = header;
    h["q_proj.bias"]["dtype"] = "F16";
    h["q_proj.bias"]["shape"] = {32};
    cases.emplace_back("wrong dtype", with_header(good, h));
  }
  {
    nlohmann::json h = header;
    h["q_proj.bias"]["shape"] = {2, 8};
    cases.emplace_back("wrong shape", with_header(good, h));
  }
  {
    nlohmann::json h = header;
    h["q_proj.bias"]["shape"] = {17};
    cases.emplace_back("offsets inconsistent with the shape", with_header(good, h));
  }
  {
    nlohmann::json h = header;
    h["q_proj.bias"]["data_offsets"] = {0, uint64_t(1) << 40};
    cases.emplace_back("offsets beyond the file", with_header(good, h));
  }
  {
    nlohmann::json h = header;
    h["q_proj.bias"]["shape"] = {-16};
    cases.emplace_back("negative shape", with_header(good, h));
  }
  {
    nlohmann::json h = header;
    h["__metadata__"]["model_rng"] = "[1,2]";
    cases.emplace_back("bad model rng", with_header(good, h));
  }
  {
    nlohmann::json h = header;
    h["__metadata__"]["model"] = "{\"kind\": ";
    cases.emplace_back("model config not JSON", with_header(good, h));
  }
  {
    RetrievalConfig other = small_config();
    other.num_keys = 10;
    TrainingRun foreign(other, 2);
    const std::string p = dir.file("foreign.safetensors");
    save_checkpoint(p, *foreign.model, foreign.opt.get(), foreign.data.get(), nullptr);
    cases.emplace_back("foreign config (S = 10)", read_bytes(p));
    RetrievalConfig elu = small_config();
    elu.feature_map = FeatureMap::Elu;
    TrainingRun foreign2(elu, 2);
    save_checkpoint(p, *foreign2.model, foreign2.opt.get(), foreign2.data.get(), nullptr);
    cases.emplace_back("foreign config (elu)", read_bytes(p));
    TrainingRun sgd(small_config(), 2, FWP_OPTIMIZER_SGD);
    save_checkpoint(p, *sgd.model, sgd.opt.get(), sgd.data.get(), nullptr);
    cases.emplace_back("optimizer of another kind", read_bytes(p));
    save_checkpoint(p, *src.model, nullptr, src.data.get(), nullptr);
    cases.emplace_back("no optimizer state", read_bytes(p));
    save_checkpoint(p, *src.model, src.opt.get(), nullptr, nullptr);
    cases.emplace_back("no data state", read_bytes(p));
    RetrievalData other_data(1, 8, 3);
    save_checkpoint(p, *src.model, src.opt.get(), &other_data, nullptr);
    cases.emplace_back("data generator of another setting", read_bytes(p));
  }

  TrainingRun target(small_config(), 7);
  target.step();
  const TrainingRun::Snapshot before = target.snapshot();
  const std::string bad_path = dir.file("bad.safetensors");
  for (const auto& [what, bytes] : cases) {
    write_bytes(bad_path, bytes);
    expect_status([&] { load_checkpoint(bad_path, *target.model, target.opt.get(), target.data.get()); },
                  FWP_ERR_FORMAT, what);
    EXPECT_TRUE(target.snapshot() == before) << what << " changed the target";
  }
  expect_status([&] { load_checkpoint(dir.file("absent"), *target.model, target.opt.get(), nullptr); }, FWP_ERR_IO,
                "missing file");
  write_bytes(bad_path, good.substr(0, good.size() - 1));
  expect_status([&] { load_model(make_context(1), bad_path); }, FWP_ERR_FORMAT, "load_model of a truncated file");
  EXPECT_TRUE(target.snapshot() == before);
  // The good file still loads, and optional parts may be skipped.
  EXPECT_NO_THROW(load_checkpoint(good_path, *target.model, nullptr, nullptr));
  EXPECT_NO_THROW(load_checkpoint(good_path, *target.model, target.opt.get(), target.data.get()));
}

TEST(Checkpoint, OptimizerOfAnotherModelIsAContextMismatch) {
  test::TempDir dir("fwp_checkpoint");
  TrainingRun a(small_config(), 1), b(small_config(), 2);
  expect_status([&] { save_checkpoint(dir.file("x"), *a.model, b.opt.get(), nullptr, nullptr); },
                FWP_ERR_CONTEXT_MISMATCH, "save");
  save_checkpoint(dir.file("x"), *a.model, a.opt.get(), nullptr, nullptr);
  expect_status([&] { load_checkpoint(dir.file("x"), *a.model, b.opt.get(), nullptr); }, FWP_ERR_CONTEXT_MISMATCH,
                "load");
}

// ---- failed saves ----------------------------------------------------------------------------------

TEST(Checkpoint, FailedSaveLeavesThePreviousFileIntact) {
  test::TempDir dir("fwp_checkpoint");
  const std::string path = dir.file("ckpt.safetensors");
  TrainingRun a(small_config(), 1);
  save_checkpoint(path, *a.model, a.opt.get(), a.data.get(), "first");
  const Bytes first = read_bytes(path);
  a.step();
  // An unwritable destination: a directory that does not exist.
  expect_status([&] { save_checkpoint(dir.file("no/such/dir/x.safetensors"), *a.model, nullptr, nullptr, nullptr); },
                FWP_ERR_IO, "missing directory");
  // Renaming over a directory fails after the temporary was written: it must be removed.
  const std::string dir_target = dir.file("a_directory");
  ASSERT_EQ(::mkdir(dir_target.c_str(), 0755), 0);
  expect_status([&] { save_checkpoint(dir_target, *a.model, nullptr, nullptr, nullptr); }, FWP_ERR_IO,
                "rename over a directory");
  EXPECT_EQ(read_bytes(path), first);
  for (const std::string& name : test::list_dir(dir.path())) {
    EXPECT_EQ(name.find(".tmp."), std::string::npos) << "a temporary file was left: " << name;
  }
  // And a save that works replaces the file.
  save_checkpoint(path, *a.model, a.opt.get(), a.data.get(), "second");
  EXPECT_NE(read_bytes(path), first);
  EXPECT_EQ(header_of(read_bytes(path))["__metadata__"]["user"], "second");
}

TEST(Checkpoint, RejectsUserMetadataThatIsNotUtf8) {
  test::TempDir dir("fwp_checkpoint");
  TrainingRun a(small_config(), 1);
  expect_status([&] { save_checkpoint(dir.file("x"), *a.model, nullptr, nullptr, "bad \xff byte"); },
                FWP_ERR_INVALID_ARGUMENT, "invalid UTF-8");
  struct stat st;
  EXPECT_NE(::stat(dir.file("x").c_str(), &st), 0);
}

// ---- the registry of model kinds ------------------------------------------------------------------

TEST(CheckpointRegistry, BuiltinKindsAndUnknownKinds) {
  EXPECT_EQ(ModelRegistry::builtin().kinds(), (std::vector<std::string>{"lm", "retrieval", "seq2seq"}));
  test::TempDir dir("fwp_checkpoint");
  const std::string good_path = dir.file("good.safetensors");
  TrainingRun src(small_config(), 1);
  save_checkpoint(good_path, *src.model, src.opt.get(), src.data.get(), nullptr);
  const Bytes good = read_bytes(good_path);
  const nlohmann::json header = header_of(good);
  auto with_model_config = [&](const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json h = header;
    nlohmann::json config = nlohmann::json::parse(h["__metadata__"]["model"].get<std::string>());
    edit(config);
    h["__metadata__"]["model"] = config.dump();
    const std::string p = dir.file("edited.safetensors");
    write_bytes(p, with_header(good, h));
    return p;
  };

  // A kind this library does not build.
  const std::string lm = with_model_config([](nlohmann::json& c) { c["kind"] = "mamba"; });
  expect_status([&] { load_model(make_context(1), lm); }, FWP_ERR_FORMAT, "unknown kind",
                "unknown model kind 'mamba' (this library knows 'lm', 'retrieval', 'seq2seq')");
  // Loading into an existing model of another kind names both kinds and changes nothing.
  TrainingRun target(small_config(), 7);
  const TrainingRun::Snapshot before = target.snapshot();
  expect_status([&] { load_checkpoint(lm, *target.model, target.opt.get(), target.data.get()); }, FWP_ERR_FORMAT,
                "load into another kind", "a model of kind 'mamba', not 'retrieval'");
  EXPECT_TRUE(target.snapshot() == before);

  const std::string no_kind = with_model_config([](nlohmann::json& c) { c.erase("kind"); });
  expect_status([&] { load_model(make_context(1), no_kind); }, FWP_ERR_FORMAT, "no kind", "no string 'kind'");
  const std::string bad_config = with_model_config([](nlohmann::json& c) { c["num_keys"] = 1; });
  expect_status([&] { load_model(make_context(1), bad_config); }, FWP_ERR_FORMAT, "config the factory rejects",
                "num_keys");
  expect_status([&] { load_model(make_context(1), bad_config); }, FWP_ERR_FORMAT, "the message names the file",
                bad_config);

  // load_model goes through the registry it is given.
  ModelRegistry empty;
  EXPECT_TRUE(empty.kinds().empty());
  expect_status([&] { load_model(make_context(1), good_path, empty); }, FWP_ERR_FORMAT, "empty registry",
                "unknown model kind 'retrieval' (this library knows none)");
  ModelRegistry counting;
  int built = 0;
  counting.add(
      "retrieval",
      [&](const std::shared_ptr<Context>& ctx, const nlohmann::json& config) {
        ++built;
        return std::shared_ptr<Model>(std::make_shared<RetrievalModel>(ctx, RetrievalConfig::from_json(config)));
      },
      builtin_shapes);
  EXPECT_TRUE(counting.contains("retrieval"));
  const auto loaded = load_model(make_context(5), good_path, counting);
  EXPECT_EQ(built, 1);
  for (int64_t i = 0; i < loaded->parameters().size(); ++i) {
    EXPECT_EQ(loaded->parameters()[i].value.to_host(), src.model->parameters()[i].value.to_host());
  }
  EXPECT_EQ(loaded->rng_state(), src.model->rng_state());

  const ModelFactory any = [](const std::shared_ptr<Context>&, const nlohmann::json&) -> std::shared_ptr<Model> {
    return nullptr;
  };
  expect_status([&] { counting.add("retrieval", any, builtin_shapes); }, FWP_ERR_INVALID_ARGUMENT, "duplicate",
                "twice");
  expect_status([&] { counting.add("", any, builtin_shapes); }, FWP_ERR_INVALID_ARGUMENT, "empty name", "empty");
  expect_status([&] { counting.add("x", ModelFactory(), builtin_shapes); }, FWP_ERR_INVALID_ARGUMENT,
                "empty factory", "empty");
  expect_status([&] { counting.add("x", any, ParameterShapesFn()); }, FWP_ERR_INVALID_ARGUMENT, "empty shapes",
                "parameter shapes function");
  EXPECT_EQ(counting.kinds(), std::vector<std::string>{"retrieval"});
}

// ---- data sources of any kind ------------------------------------------------------------------------

using test_support::CounterSource;

TEST(CheckpointData, StoresKindConfigAndStateOfAnySource) {
  test::TempDir dir("fwp_checkpoint");
  const std::string path = dir.file("counter.safetensors");
  TrainingRun a(small_config(), 1);
  CounterSource counter(5);
  for (int i = 0; i < 3; ++i) counter.next();
  save_checkpoint(path, *a.model, a.opt.get(), &counter, nullptr);
  const nlohmann::json meta = header_of(read_bytes(path))["__metadata__"];
  EXPECT_EQ(meta["format_version"], "2");
  EXPECT_EQ(nlohmann::json::parse(meta["data"].get<std::string>()),
            (nlohmann::json{{"kind", "counter"}, {"config", {{"period", 5}}}, {"state", {{"position", 3}}}}));

  CounterSource resumed(5);
  load_checkpoint(path, *a.model, nullptr, &resumed);
  EXPECT_EQ(resumed.position(), 3);
  EXPECT_EQ(resumed.next(), counter.next());

  // The retrieval generator's record has the same three parts.
  save_checkpoint(path, *a.model, nullptr, a.data.get(), nullptr);
  const nlohmann::json record =
      nlohmann::json::parse(header_of(read_bytes(path))["__metadata__"]["data"].get<std::string>());
  EXPECT_EQ(record["kind"], "retrieval");
  EXPECT_EQ(record["config"], (nlohmann::json{{"setting", 2}, {"num_keys", 8}}));
  EXPECT_EQ(record["state"]["rng"].size(), 6u);
}

TEST(CheckpointData, SourceOfAnotherKindOrConfigChangesNothing) {
  test::TempDir dir("fwp_checkpoint");
  TrainingRun src(small_config(), 1);
  src.step();
  const std::string retrieval_file = dir.file("retrieval.safetensors");
  save_checkpoint(retrieval_file, *src.model, src.opt.get(), src.data.get(), nullptr);
  CounterSource counter_of_3(3);
  counter_of_3.next();
  const std::string counter_file = dir.file("counter.safetensors");
  save_checkpoint(counter_file, *src.model, src.opt.get(), &counter_of_3, nullptr);
  const Bytes counter_bytes = read_bytes(counter_file);

  TrainingRun target(small_config(), 7);
  target.step();
  CounterSource counter(3);
  counter.next();
  counter.next();
  const TrainingRun::Snapshot before = target.snapshot();
  auto unchanged = [&](const std::string& what) {
    EXPECT_TRUE(target.snapshot() == before) << what << " changed the model or optimizer";
    EXPECT_EQ(counter.position(), 2) << what << " changed the counter";
  };

  // A retrieval file into a counter, and a counter file into a retrieval generator.
  expect_status([&] { load_checkpoint(retrieval_file, *target.model, target.opt.get(), &counter); }, FWP_ERR_FORMAT,
                "retrieval state into a counter", "a 'retrieval' data source, not of a 'counter' one");
  unchanged("retrieval state into a counter");
  expect_status([&] { load_checkpoint(counter_file, *target.model, target.opt.get(), target.data.get()); },
                FWP_ERR_FORMAT, "counter state into the generator", "a 'counter' data source, not of a 'retrieval'");
  unchanged("counter state into the generator");
  // Another config of the same kind.
  CounterSource counter_of_4(4);
  expect_status([&] { load_checkpoint(counter_file, *target.model, target.opt.get(), &counter_of_4); },
                FWP_ERR_FORMAT, "another period", "'period' is 3 in the file but 4 here");
  EXPECT_EQ(counter_of_4.position(), 0);
  unchanged("another period");
  RetrievalData setting_1(1, 8, 5);
  const Rng::State setting_1_rng = setting_1.rng_state();
  expect_status([&] { load_checkpoint(retrieval_file, *target.model, target.opt.get(), &setting_1); },
                FWP_ERR_FORMAT, "another setting", "'setting' is 2 in the file but 1 here");
  EXPECT_EQ(setting_1.rng_state(), setting_1_rng);
  unchanged("another setting");

  // Damaged data records: the source's own check and the generic layout.
  const nlohmann::json header = header_of(counter_bytes);
  const std::string bad = dir.file("bad.safetensors");
  auto with_data = [&](const std::string& data) {
    nlohmann::json h = header;
    h["__metadata__"]["data"] = data;
    write_bytes(bad, with_header(counter_bytes, h));
  };
  const std::vector<std::pair<std::string, std::string>> records = {
      {R"({"kind": "counter", "config": {"period": 3}, "state": {"position": 3}})", "outside [0, 3)"},
      {R"({"kind": "counter", "config": {"period": 3}, "state": {}})", "integer 'position'"},
      {R"({"kind": "counter", "config": {"period": 3}})", "needs a string 'kind', a 'config' and a 'state'"},
      {R"({"kind": 5, "config": {"period": 3}, "state": {"position": 0}})", "string 'kind'"},
      {R"([1, 2])", "string 'kind'"},
      {R"({"kind": "counter", )", "not valid JSON"},
  };
  for (const auto& [record, message] : records) {
    with_data(record);
    expect_status([&] { load_checkpoint(bad, *target.model, target.opt.get(), &counter); }, FWP_ERR_FORMAT, record,
                  message);
    unchanged(record);
  }
  // The retrieval generator checks its state too.
  const Bytes retrieval_bytes = read_bytes(retrieval_file);
  nlohmann::json h = header_of(retrieval_bytes);
  nlohmann::json record = nlohmann::json::parse(h["__metadata__"]["data"].get<std::string>());
  record["state"]["rng"][2] = "-1";
  h["__metadata__"]["data"] = record.dump();
  write_bytes(bad, with_header(retrieval_bytes, h));
  const Rng::State data_rng = target.data->rng_state();
  expect_status([&] { load_checkpoint(bad, *target.model, target.opt.get(), target.data.get()); }, FWP_ERR_FORMAT,
                "bad generator state", "rng");
  EXPECT_EQ(target.data->rng_state(), data_rng);
  unchanged("bad generator state");

  // Without a data source the record is not read at all.
  EXPECT_NO_THROW(load_checkpoint(bad, *target.model, target.opt.get(), nullptr));
}

// ---- files of earlier format versions ---------------------------------------------------------------

// A file as fwp 0.1 wrote it: format_version "1", the generator's state as
// {"setting", "num_keys", "rng"}.
Bytes as_version_1(const Bytes& file) {
  nlohmann::json h = header_of(file);
  nlohmann::json& meta = h["__metadata__"];
  meta["format_version"] = "1";
  if (meta.contains("data")) {
    const nlohmann::json record = nlohmann::json::parse(meta["data"].get<std::string>());
    meta["data"] = nlohmann::json{{"setting", record["config"]["setting"]},
                                  {"num_keys", record["config"]["num_keys"]},
                                  {"rng", record["state"]["rng"]}}
                       .dump();
  }
  return with_header(file, h);
}

TEST(CheckpointVersions, ReadsVersion1Files) {
  test::TempDir dir("fwp_checkpoint");
  const std::string path = dir.file("v2.safetensors");
  TrainingRun a(small_config(), 1);
  for (int i = 0; i < 3; ++i) a.step();
  save_checkpoint(path, *a.model, a.opt.get(), a.data.get(), "old");
  const std::string v1 = dir.file("v1.safetensors");
  write_bytes(v1, as_version_1(read_bytes(path)));

  TrainingRun b(small_config(), 99);
  load_checkpoint(v1, *b.model, b.opt.get(), b.data.get());
  EXPECT_TRUE(a.snapshot() == b.snapshot());
  EXPECT_EQ(a.step(), b.step());
  EXPECT_NO_THROW(load_model(make_context(2), v1));

  // Version 1 data records are checked like any other.
  RetrievalData other(1, 8, 3);
  const Rng::State other_rng = other.rng_state();
  expect_status([&] { load_checkpoint(v1, *b.model, nullptr, &other); }, FWP_ERR_FORMAT, "v1 other setting",
                "'setting' is 2 in the file but 1 here");
  EXPECT_EQ(other.rng_state(), other_rng);
  CounterSource counter(3);
  expect_status([&] { load_checkpoint(v1, *b.model, nullptr, &counter); }, FWP_ERR_FORMAT, "v1 into a counter",
                "'retrieval' data source");

  // Versions this library does not know.
  for (const char* version : {"3", "0", ""}) {
    nlohmann::json h = header_of(read_bytes(path));
    h["__metadata__"]["format_version"] = version;
    write_bytes(v1, with_header(read_bytes(path), h));
    expect_status([&] { load_checkpoint(v1, *b.model, nullptr, nullptr); }, FWP_ERR_FORMAT,
                  std::string("version '") + version + "'", "format_version");
    expect_status([&] { load_model(make_context(2), v1); }, FWP_ERR_FORMAT, "load_model of an unknown version",
                  "format_version");
  }
}

// ---- hostile files (issue 10) -----------------------------------------------------------------------

// The file with one more F32 tensor at the end of the data section.
Bytes with_extra_tensor(const Bytes& file, const std::string& name, const std::vector<float>& values) {
  nlohmann::json h = header_of(file);
  const uint64_t data_size = file.size() - 8 - header_length(file);
  h[name] = {{"dtype", "F32"},
             {"shape", {values.size()}},
             {"data_offsets", {data_size, data_size + 4 * values.size()}}};
  Bytes out = with_header(file, h);
  out.append(reinterpret_cast<const char*>(values.data()), 4 * values.size());
  return out;
}

// The file with element `index` of tensor `name` set to `value`.
Bytes with_value(const Bytes& file, const std::string& name, size_t index, float value) {
  const uint64_t begin = header_of(file).at(name).at("data_offsets")[0].get<uint64_t>();
  Bytes out = file;
  std::memcpy(out.data() + 8 + header_length(file) + begin + 4 * index, &value, 4);
  return out;
}

// The file with one metadata value replaced.
Bytes with_metadata(const Bytes& file, const std::string& key, const std::string& value) {
  nlohmann::json h = header_of(file);
  h["__metadata__"][key] = value;
  return with_header(file, h);
}

// Every case must be refused as FWP_ERR_FORMAT by load_checkpoint (target
// unchanged) and, if `also_load_model` (the part is one load_model reads), by
// load_model, with a short message of printable ASCII.
void expect_refused(const std::vector<std::pair<std::string, Bytes>>& cases, const std::string& message_part = "",
                    bool also_load_model = true) {
  test::TempDir dir("fwp_checkpoint");
  const std::string path = dir.file("bad.safetensors");
  TrainingRun target(small_config(), 7);
  const TrainingRun::Snapshot before = target.snapshot();
  for (const auto& [what, bytes] : cases) {
    write_bytes(path, bytes);
    for (int use_load_model = 0; use_load_model < (also_load_model ? 2 : 1); ++use_load_model) {
      try {
        if (use_load_model) {
          (void)load_model(make_context(1), path);
        } else {
          load_checkpoint(path, *target.model, target.opt.get(), target.data.get());
        }
        ADD_FAILURE() << what << ": accepted (load_model: " << use_load_model << ")";
      } catch (const Error& e) {
        const std::string message = e.what();
        EXPECT_EQ(e.status(), FWP_ERR_FORMAT) << what << ": " << message.substr(0, 300);
        EXPECT_LT(message.size(), 700u) << what << ": " << message.substr(0, 300);
        for (char c : message) {
          ASSERT_TRUE(c >= 0x20 && c < 0x7f) << what << ": unescaped byte in " << message;
        }
        if (!message_part.empty()) {
          EXPECT_NE(message.find(message_part), std::string::npos) << what << ": " << message;
        }
      }
    }
    EXPECT_TRUE(target.snapshot() == before) << what << " changed the target";
  }
}

class CheckpointHostile : public ::testing::Test {
 protected:
  void SetUp() override {
    TrainingRun src(small_config(), 1);
    src.step();
    src.step();
    save_checkpoint(dir.file("good.safetensors"), *src.model, src.opt.get(), src.data.get(), nullptr);
    good = read_bytes(dir.file("good.safetensors"));
  }
  test::TempDir dir{"fwp_checkpoint"};
  Bytes good;
};

TEST_F(CheckpointHostile, DeeplyNestedMetadataIsRefusedWithoutRecursion) {
  // Before the fix, building the "config does not match" message dumped the
  // nested value recursively and overflowed the stack.
  const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
  nlohmann::json config = nlohmann::json::parse(header_of(good)["__metadata__"]["model"].get<std::string>());
  std::string text = config.dump();
  const std::string key = "\"num_keys\":8";
  ASSERT_NE(text.find(key), std::string::npos) << text;
  text.replace(text.find(key), key.size(), "\"num_keys\":" + deep);
  expect_refused({{"nested model config", with_metadata(good, "model", text)},
                  {"nested model_rng", with_metadata(good, "model_rng", deep)}},
                 "nests deeper than 32 levels");
  expect_refused({{"nested optimizer state", with_metadata(good, "optimizer", "{\"config\": " + deep + "}")},
                  {"nested data state", with_metadata(good, "data", "{\"kind\": " + deep + "}")}},
                 "nests deeper than 32 levels", false);
}

TEST_F(CheckpointHostile, FileContentInMessagesIsShortAndEscaped) {
  const std::string long_text = std::string(1 << 20, 'x') + "\n\x01";
  nlohmann::json config = nlohmann::json::parse(header_of(good)["__metadata__"]["model"].get<std::string>());
  nlohmann::json long_kind = config, long_value = config, long_member = config;
  long_kind["kind"] = long_text;
  long_value["feature_map"] = long_text;
  long_member[long_text] = 1;
  nlohmann::json data = nlohmann::json::parse(header_of(good)["__metadata__"]["data"].get<std::string>());
  data["kind"] = long_text;
  expect_refused({{"long kind", with_metadata(good, "model", long_kind.dump())},
                  {"long config value", with_metadata(good, "model", long_value.dump())},
                  {"long unknown member", with_metadata(good, "model", long_member.dump())},
                  {"long tensor name", with_extra_tensor(good, long_text, {1.f})}});
  expect_refused({{"long data kind", with_metadata(good, "data", data.dump())}}, "", false);
}

TEST_F(CheckpointHostile, ZeroGeneratorStatesAreRefused) {
  // From an all-zero state xoshiro only draws zeros: before the fix such a
  // state loaded and the next FAVOR+ draw looped forever.
  const std::string zeros = R"(["0","0","0","0","0","0"])";
  nlohmann::json data = nlohmann::json::parse(header_of(good)["__metadata__"]["data"].get<std::string>());
  data["state"]["rng"] = nlohmann::json::parse(zeros);
  expect_refused({{"zero data rng", with_metadata(good, "data", data.dump())}}, "all zero", false);
  expect_refused({{"zero model rng", with_metadata(good, "model_rng", zeros)},
                  {"has_spare 2", with_metadata(good, "model_rng", R"(["1","0","0","0","2","0")" "]")},
                  {"NaN spare", with_metadata(good, "model_rng", R"(["1","0","0","0","1","18444492273895866368"])")}},
                 "generator");
  // And everywhere else a state is set.
  Rng rng(5);
  const Rng::State before = rng.state();
  expect_status([&] { rng.set_state(Rng::State{0, 0, 0, 0, 0, 0}); }, FWP_ERR_INVALID_ARGUMENT, "Rng::set_state",
                "all zero");
  EXPECT_EQ(rng.state(), before);
  TrainingRun run(small_config(), 3);
  const Rng::State data_before = run.data->rng_state();
  expect_status([&] { run.data->set_rng_state(Rng::State{}); }, FWP_ERR_INVALID_ARGUMENT, "data set_rng_state");
  EXPECT_EQ(run.data->rng_state(), data_before);
  expect_status([&] { run.model->set_rng_state(Rng::State{}); }, FWP_ERR_INVALID_ARGUMENT, "model set_rng_state");
}

TEST_F(CheckpointHostile, NonFiniteParametersAndNegativeSecondMomentsAreRefused) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  expect_refused({{"NaN parameter", with_value(good, "k_proj.weight", 3, nan)},
                  {"Inf parameter", with_value(good, "key_embedding", 0, inf)},
                  {"-Inf bias", with_value(good, "q_proj.bias", 1, -inf)}},
                 "non-finite");
  test::TempDir d("fwp_checkpoint");
  const std::string path = d.file("bad.safetensors");
  TrainingRun target(small_config(), 7);
  const TrainingRun::Snapshot before = target.snapshot();
  const std::vector<std::pair<Bytes, std::string>> moments = {
      {with_value(good, "optimizer/k_proj.weight/exp_avg_sq", 2, -1e-3f), "negative"},
      {with_value(good, "optimizer/k_proj.weight/exp_avg", 2, nan), "non-finite"},
      {with_value(good, "optimizer/q_proj.bias/exp_avg_sq", 0, inf), "non-finite"}};
  for (const auto& [bytes, message] : moments) {
    write_bytes(path, bytes);
    expect_status([&] { load_checkpoint(path, *target.model, target.opt.get(), nullptr); }, FWP_ERR_FORMAT, message,
                  message);
    EXPECT_TRUE(target.snapshot() == before);
    // Without an optimizer the moments are not loaded, so not judged.
    TrainingRun other(small_config(), 8);
    EXPECT_NO_THROW(load_checkpoint(path, *other.model, nullptr, nullptr));
  }
}

TEST_F(CheckpointHostile, UnknownTensorsAreRefused) {
  test::TempDir d("fwp_checkpoint");
  TrainingRun src(small_config(), 1);
  save_checkpoint(d.file("no_opt"), *src.model, nullptr, nullptr, nullptr);
  const Bytes no_optimizer = read_bytes(d.file("no_opt"));
  expect_refused({{"unknown tensor", with_extra_tensor(good, "extra", {1.f, 2.f})},
                  {"unknown moment kind", with_extra_tensor(good, "optimizer/q_proj.bias/velocity", {1.f})},
                  {"moment of no parameter", with_extra_tensor(good, "optimizer/nothing/exp_avg", {1.f})},
                  {"moment without optimizer state",
                   with_extra_tensor(no_optimizer, "optimizer/q_proj.bias/exp_avg", std::vector<float>(16, 0.f))}},
                 "unknown tensor");
  nlohmann::json h = header_of(good);
  h["optimizer/q_proj.bias/exp_avg"]["shape"] = {4, 4};
  expect_refused({{"moment of another shape", with_header(good, h)}}, "another shape");
}

TEST_F(CheckpointHostile, LoadModelChecksTensorsBeforeBuildingTheModel) {
  // A small file whose config asks for a large model: refused from the header
  // alone, and the factory never runs (before the fix it allocated the model).
  nlohmann::json config = nlohmann::json::parse(header_of(good)["__metadata__"]["model"].get<std::string>());
  config["num_keys"] = 60000;
  config["d_head"] = 1024;
  const std::string path = dir.file("huge_config.safetensors");
  write_bytes(path, with_metadata(good, "model", config.dump()));
  ModelRegistry counting;
  int built = 0;
  counting.add(
      "retrieval",
      [&](const std::shared_ptr<Context>& ctx, const nlohmann::json& c) {
        ++built;
        return ModelRegistry::builtin().create(ctx, c);
      },
      builtin_shapes);
  expect_status([&] { load_model(make_context(1), path, counting); }, FWP_ERR_FORMAT, "huge config",
                "another shape than the model's");
  EXPECT_EQ(built, 0);
  // An unknown tensor is found before building too.
  write_bytes(path, with_extra_tensor(good, "extra", {1.f}));
  expect_status([&] { load_model(make_context(1), path, counting); }, FWP_ERR_FORMAT, "unknown", "unknown tensor");
  EXPECT_EQ(built, 0);
  write_bytes(path, good);
  EXPECT_NO_THROW(load_model(make_context(1), path, counting));
  EXPECT_EQ(built, 1);
}

TEST(CheckpointRegistry, ParameterShapesMatchTheBuiltModels) {
  std::vector<RetrievalConfig> configs;
  for (FeatureMap fm : {FeatureMap::Dpfp, FeatureMap::Elu, FeatureMap::Favor}) {
    for (UpdateRule rule : {UpdateRule::Delta, UpdateRule::Sum}) {
      RetrievalConfig c = small_config();
      c.feature_map = fm;
      c.update_rule = rule;
      c.favor_features = 8;
      configs.push_back(c);
    }
  }
  RetrievalConfig softmax = small_config();
  softmax.softmax = true;
  softmax.update_rule = UpdateRule::Sum;
  softmax.sum_normalize = false;
  configs.push_back(softmax);
  for (const RetrievalConfig& c : configs) {
    const RetrievalModel model(make_context(1), c);
    std::vector<ParameterShape> built;
    for (int64_t i = 0; i < model.parameters().size(); ++i) {
      built.push_back({model.parameters()[i].name, model.parameters()[i].shape});
    }
    EXPECT_TRUE(ModelRegistry::builtin().parameter_shapes(c.to_json()) == built) << c.to_json().dump();
  }
}

}  // namespace
}  // namespace fwp
