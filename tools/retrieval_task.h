// The associative-retrieval model of the paper (section 6.1) as a training
// task: its configuration, model, optimizer and data generator, a training
// step on a fresh batch, and the paper's evaluation. The driver in
// tools/train/ does the rest; retrieval_command.cpp turns flags into configs.
#ifndef FWP_TOOLS_RETRIEVAL_TASK_H
#define FWP_TOOLS_RETRIEVAL_TASK_H

#include "cli_support.h"
#include "train/distributed.h"
#include "train/train_state.h"
#include "train/training_task.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace fwp_cli {

/// The largest number of queries per evaluation sequence (the paper's 200).
constexpr int64_t kMaxEvalQueries = 200;

/// The resolved configuration of one retrieval run (one S).
struct RetrievalConfig {
  int setting = 1;
  std::string phi = "dpfp";
  std::string rule = "sum";
  int64_t nu = 1;
  int64_t favor_m = 64;
  int64_t keys = 20;
  uint64_t seed = 1;
  int64_t batch = 32;
  double lr = 1e-3;
  int64_t eval_every = 100;
  int64_t eval_seqs = 20;
  /// Pairs per evaluation sequence, resolved (never 0): the paper's S in both settings.
  int64_t eval_pairs = 20;
  int64_t patience = 11;
  double target_loss = 0.001;
  bool sum_norm = false;
  bool attn_norm = false;
  // Run control: may differ between a run and its resumption.
  int64_t max_steps = 100000;
  int threads = 0;
  std::string device = "cpu";
};

/// The paper's evaluation length: S pairs in both settings (setting 2 trains on
/// 2 S pairs but its evaluation sequences have one pair per key of the vocabulary).
int64_t paper_eval_pairs(int setting, int64_t keys);

/// The paper's normalisation choices for a feature map and rule.
bool default_sum_norm(const std::string& phi, const std::string& rule);
bool default_attn_norm(const std::string& phi, const std::string& rule);

/// The label of a model in tables and plots, e.g. "DPFP nu=2 sum"; never contains a comma.
std::string model_label(const RetrievalConfig& cfg);

/// The settings that define a run: a resumed run must keep all of them.
nlohmann::json defining_json(const RetrievalConfig& cfg);
/// The full configuration, as stored in checkpoints and reported by --json.
nlohmann::json config_json(const RetrievalConfig& cfg);
/// Reads config_json() back; throws nlohmann::json exceptions on missing fields.
/// A config without "eval_pairs" (written before it could be chosen) evaluated
/// on the training length, and keeps doing so.
RetrievalConfig config_from_json(const nlohmann::json& j);

/// The stopping rules and step cap of a run.
train::TrainingPlan training_plan(const RetrievalConfig& cfg);

class RetrievalTask : public train::TrainingTask {
 public:
  /// Creates the context, model, Adam optimizer and training data of `cfg`;
  /// with --dist joins `dist`'s group (which must outlive the task) and trains
  /// on its rows of every batch. Throws RunError.
  RetrievalTask(const RetrievalConfig& cfg, train::Distributed& dist);

  std::string label() const override;
  nlohmann::json describe() const override { return config_json(cfg_); }
  train::TrainingObjects objects() override;
  train::StepResult train_step(int64_t step) override;
  train::Evaluation evaluate(int64_t step) override;

 private:
  /// Buffers of one batch of sequences.
  struct Batch {
    /// `drawn` is the batch the generator draws (the global one; a sharded
    /// generator fills this process's batch_size rows of it).
    void resize(int64_t batch_size, int64_t seq_len, int64_t queries, int64_t drawn);
    void sample(fwp_retrieval_data* data, const char* what);
    fwp_retrieval_batch view() const;
    int64_t batch_size = 0, seq_len = 0, num_queries = 0, drawn = 0;
    std::vector<int32_t> keys, values, queries, targets;
  };

  RetrievalConfig cfg_;
  train::Distributed* dist_;
  ContextPtr context_;
  ModelPtr model_;
  OptimizerPtr optimizer_;
  DataPtr train_data_;
  Batch train_batch_;
  Batch eval_batch_;
};

}  // namespace fwp_cli

#endif  // FWP_TOOLS_RETRIEVAL_TASK_H
