// The language model of the paper (section 6.3) as a training task: a data
// folder made by `fwp lm prepare`, the model (a preset plus overrides), Adam
// with the paper's warm-up + cosine schedule and gradient clipping, training
// segments from the token data source, and the evaluation (mean NLL per token
// of a validation prefix, reported as perplexity). The driver in tools/train/
// does the rest; lm_command.cpp turns flags into an LmRunConfig.
#ifndef FWP_TOOLS_LM_TASK_H
#define FWP_TOOLS_LM_TASK_H

#include "cli_support.h"
#include "train/distributed.h"
#include "train/train_state.h"
#include "train/training_task.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace fwp_cli {

/// The files of a data folder made by `fwp lm prepare`.
struct LmDataFiles {
  std::string folder;
  std::string tokenizer() const { return folder + "/tokenizer.fwptok"; }
  std::string split(const std::string& name) const { return folder + "/" + name + ".tokens.bin"; }
  std::string manifest() const { return folder + "/prepare.json"; }
};

/// The resolved configuration of one language-model run.
struct LmRunConfig {
  std::string data;             ///< The data folder.
  std::string preset = "cpu-small";
  // The model (starting from the preset; each may be overridden by a flag).
  std::string phi = "elu";      ///< elu | favor | dpfp | softmax
  std::string rule = "delta";   ///< sum | delta (softmax: sum)
  int64_t dpfp_nu = 1;
  int64_t favor_m = 16;
  bool sum_norm = true;
  bool attn_norm = false;
  int64_t layers = 0, d_model = 0, heads = 0, d_head = 0, d_ff = 0;
  double dropout = 0.1;
  std::string positions = "sinusoidal";  ///< sinusoidal | none
  bool pre_norm = false;
  bool tie = false;
  std::vector<int64_t> cutoffs;  ///< Adaptive softmax cutoffs; empty = plain softmax.
  int64_t div_val = 1;
  int64_t vocab = 0;             ///< From the data folder.
  // Training.
  int64_t batch = 16;
  int64_t length = 64;           ///< Segment length T.
  bool carry = false;            ///< Carry the fast weights from one segment to the next.
  double lr = 1e-3;
  int64_t warmup = 200;
  /// Step at which the cosine decay reaches 0: the fresh run's --max-steps
  /// unless given (--decay-steps), and kept on --resume so that a run resumed
  /// with a larger cap follows the schedule it started with.
  int64_t decay_steps = 0;
  double clip = 0.25;
  uint64_t seed = 1;
  int64_t eval_every = 200;
  int64_t eval_tokens = 0;       ///< Validation tokens scored per evaluation; 0 = all.
  int64_t patience = 0;          ///< 0: no early stopping.
  // Run control: may differ between a run and its resumption.
  int64_t max_steps = 1000;
  int threads = 0;
  std::string device = "cpu";
};

/// The training settings of a preset: segment length, batch, lr, warm-up.
/// Throws UsageError for an unknown preset.
void apply_training_preset(const std::string& preset, LmRunConfig* cfg);

/// Fills the model fields of `cfg` that are still 0 from the library's preset.
void resolve_model_preset(LmRunConfig* cfg);

/// The library's model config for `cfg`. Throws RunError / UsageError.
fwp_lm_config model_config(const LmRunConfig& cfg);

/// The label of a model in progress lines, logs and plots, e.g. "Linear delta";
/// never contains a comma.
std::string lm_model_label(const LmRunConfig& cfg);

/// The settings a resumed run must keep.
nlohmann::json lm_defining_json(const LmRunConfig& cfg);
/// Everything, as stored in checkpoints and reported by --json.
nlohmann::json lm_config_json(const LmRunConfig& cfg);
/// Reads lm_config_json() back; throws nlohmann::json exceptions on missing fields.
LmRunConfig lm_config_from_json(const nlohmann::json& j);

train::TrainingPlan lm_training_plan(const LmRunConfig& cfg);

/// Reads `count` tokens of a token file (count < 0: all of it). Throws RunError.
std::vector<int32_t> read_token_file(const std::string& path, int64_t count = -1);

/// Owns any data source (fwp_data_destroy).
struct AnyDataDeleter {
  void operator()(fwp_data* p) const { fwp_data_destroy(p); }
};
using AnyDataPtr = std::unique_ptr<fwp_data, AnyDataDeleter>;
struct StateDeleter {
  void operator()(fwp_state* p) const { fwp_state_destroy(p); }
};
using StatePtr = std::unique_ptr<fwp_state, StateDeleter>;
struct TokenizerDeleter {
  void operator()(fwp_tokenizer* p) const { fwp_tokenizer_destroy(p); }
};
using TokenizerPtr = std::unique_ptr<fwp_tokenizer, TokenizerDeleter>;

class LmTask : public train::TrainingTask {
 public:
  /// Creates the context, model, optimizer and training data of `cfg`, and
  /// reads the validation prefix; with --dist joins `dist`'s group (which must
  /// outlive the task) and reads its shard of every batch. Throws RunError.
  LmTask(const LmRunConfig& cfg, train::Distributed& dist);

  std::string label() const override;
  nlohmann::json describe() const override { return lm_config_json(cfg_); }
  train::TrainingObjects objects() override;
  train::StepResult train_step(int64_t step) override;
  train::Evaluation evaluate(int64_t step) override;

  int64_t num_parameters() const { return num_parameters_; }
  int64_t tokens_per_step() const { return cfg_.batch * cfg_.length; }  ///< of the global batch
  int64_t eval_token_count() const { return static_cast<int64_t>(valid_.size()); }

 private:
  LmRunConfig cfg_;
  train::Distributed* dist_;
  int64_t local_batch_ = 0;  ///< This process's rows of the global batch cfg_.batch.
  ContextPtr context_;
  ModelPtr model_;
  OptimizerPtr optimizer_;
  AnyDataPtr train_data_;
  StatePtr carried_;  ///< The fast weights carried across training segments (--carry).
  std::vector<int32_t> inputs_, targets_;
  std::vector<int32_t> valid_;
  int64_t num_parameters_ = 0;
};

}  // namespace fwp_cli

#endif  // FWP_TOOLS_LM_TASK_H
