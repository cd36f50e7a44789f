#include "retrieval_task.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace fwp_cli {
namespace {

using json = nlohmann::json;

// Seed streams: the context (initial weights, FAVOR+ draws) takes --seed
// itself; training and evaluation data get their own derived seeds.
constexpr uint64_t kTrainDataStream = 1;
constexpr uint64_t kEvalDataStream = 2;

// A sequence holds at most min(S, L) distinct keys.
int64_t eval_queries(const RetrievalConfig& cfg) {
  return std::min<int64_t>({cfg.keys, cfg.eval_pairs, kMaxEvalQueries});
}

fwp_feature_map feature_map_of(const std::string& phi) {
  if (phi == "elu") return FWP_FEATURE_MAP_ELU;
  if (phi == "favor") return FWP_FEATURE_MAP_FAVOR;
  if (phi == "softmax") return FWP_FEATURE_MAP_SOFTMAX;
  return FWP_FEATURE_MAP_DPFP;
}

}  // namespace

int64_t paper_eval_pairs(int /*setting*/, int64_t keys) { return keys; }

bool default_sum_norm(const std::string& phi, const std::string& rule) {
  return phi != "softmax" && rule == "delta";
}
bool default_attn_norm(const std::string& phi, const std::string& rule) {
  return phi != "softmax" && rule == "sum";
}

std::string model_label(const RetrievalConfig& cfg) {
  if (cfg.phi == "softmax") return "Softmax";
  std::string label;
  if (cfg.phi == "elu") {
    label = "Linear";
  } else if (cfg.phi == "favor") {
    label = fmt::format("FAVOR+ m={}", cfg.favor_m);
  } else {
    label = fmt::format("DPFP nu={}", cfg.nu);
  }
  label += " " + cfg.rule;
  // Name the normalisations only where they differ from the paper's choice for the rule.
  if (cfg.sum_norm != default_sum_norm(cfg.phi, cfg.rule)) label += cfg.sum_norm ? " +sum-norm" : " -sum-norm";
  if (cfg.attn_norm != default_attn_norm(cfg.phi, cfg.rule)) label += cfg.attn_norm ? " +attn-norm" : " -attn-norm";
  return label;
}

json defining_json(const RetrievalConfig& cfg) {
  json j = {{"setting", cfg.setting},     {"phi", cfg.phi},
            {"rule", cfg.rule},           {"keys", cfg.keys},
            {"seed", cfg.seed},           {"batch", cfg.batch},
            {"lr", cfg.lr},               {"eval_every", cfg.eval_every},
            {"eval_seqs", cfg.eval_seqs}, {"eval_pairs", cfg.eval_pairs},
            {"patience", cfg.patience},
            {"target_loss", cfg.target_loss}, {"sum_norm", cfg.sum_norm},
            {"attn_norm", cfg.attn_norm}};
  if (cfg.phi == "dpfp") j["nu"] = cfg.nu;
  if (cfg.phi == "favor") j["m"] = cfg.favor_m;
  return j;
}

json config_json(const RetrievalConfig& cfg) {
  json j = defining_json(cfg);
  j["model"] = model_label(cfg);
  j["eval_queries"] = eval_queries(cfg);
  j["max_steps"] = cfg.max_steps;
  j["threads"] = cfg.threads;
  j["device"] = cfg.device;
  return j;
}

RetrievalConfig config_from_json(const json& j) {
  RetrievalConfig cfg;
  cfg.setting = j.at("setting").get<int>();
  cfg.phi = j.at("phi").get<std::string>();
  cfg.rule = j.at("rule").get<std::string>();
  cfg.keys = j.at("keys").get<int64_t>();
  cfg.seed = j.at("seed").get<uint64_t>();
  cfg.batch = j.at("batch").get<int64_t>();
  cfg.lr = j.at("lr").get<double>();
  cfg.eval_every = j.at("eval_every").get<int64_t>();
  cfg.eval_seqs = j.at("eval_seqs").get<int64_t>();
  cfg.eval_pairs = j.contains("eval_pairs") ? j.at("eval_pairs").get<int64_t>()
                                             : (cfg.setting == 2 ? 2 * cfg.keys : cfg.keys);
  cfg.patience = j.at("patience").get<int64_t>();
  cfg.target_loss = j.at("target_loss").get<double>();
  cfg.sum_norm = j.at("sum_norm").get<bool>();
  cfg.attn_norm = j.at("attn_norm").get<bool>();
  if (cfg.phi == "dpfp") cfg.nu = j.at("nu").get<int64_t>();
  if (cfg.phi == "favor") cfg.favor_m = j.at("m").get<int64_t>();
  cfg.max_steps = j.at("max_steps").get<int64_t>();
  cfg.threads = j.at("threads").get<int>();
  cfg.device = j.at("device").get<std::string>();
  return cfg;
}

train::TrainingPlan training_plan(const RetrievalConfig& cfg) {
  train::TrainingPlan plan;
  plan.max_steps = cfg.max_steps;
  plan.eval_every = cfg.eval_every;
  plan.patience = cfg.patience;
  plan.target_loss = cfg.target_loss;
  return plan;
}

// ---- the task -------------------------------------------------------------------

RetrievalTask::RetrievalTask(const RetrievalConfig& cfg, train::Distributed& dist) : cfg_(cfg), dist_(&dist) {
  context_ = create_context(cfg.device, cfg.threads, cfg.seed);
  fwp_context* context = context_.get();
  dist.join(context);
  // --batch is the global batch: the generator draws it whole on every process and
  // each trains on its batch / N rows (fwp_data_set_shard()).
  const int64_t local_batch = dist.local_batch("--batch", cfg.batch);

  fwp_retrieval_config model_config;
  fwp_retrieval_config_init(&model_config);
  model_config.setting = cfg.setting;
  model_config.num_keys = cfg.keys;
  model_config.feature_map = feature_map_of(cfg.phi);
  model_config.dpfp_nu = cfg.nu;
  model_config.favor_features = cfg.favor_m;
  model_config.update_rule = cfg.rule == "delta" ? FWP_UPDATE_DELTA : FWP_UPDATE_SUM;
  model_config.sum_normalize = cfg.sum_norm ? 1 : 0;
  model_config.attn_normalize = cfg.attn_norm ? 1 : 0;
  fwp_model* model = nullptr;
  check_status(fwp_model_create_retrieval(context, &model_config, &model), "creating the retrieval model");
  model_.reset(model);

  fwp_optimizer_config optimizer_config;
  fwp_optimizer_config_init(&optimizer_config);
  optimizer_config.kind = FWP_OPTIMIZER_ADAM;
  optimizer_config.learning_rate = static_cast<float>(cfg.lr);
  fwp_optimizer* optimizer = nullptr;
  check_status(fwp_optimizer_create_for_model(model, &optimizer_config, &optimizer), "creating the optimizer");
  optimizer_.reset(optimizer);

  fwp_retrieval_data* data = nullptr;
  check_status(fwp_retrieval_data_create(cfg.setting, cfg.keys, mix_seed(cfg.seed, kTrainDataStream), &data),
               "creating the training data generator");
  train_data_.reset(data);
  dist.shard(data);
  int64_t seq_len = 0;
  check_status(fwp_retrieval_data_seq_len(data, &seq_len), "reading the sequence length");
  train_batch_.resize(local_batch, seq_len, 1, cfg.batch);
  eval_batch_.resize(cfg.eval_seqs, cfg.eval_pairs, eval_queries(cfg), cfg.eval_seqs);
}

std::string RetrievalTask::label() const { return fmt::format("{} S={}", model_label(cfg_), cfg_.keys); }

train::TrainingObjects RetrievalTask::objects() {
  return train::TrainingObjects{model_.get(), optimizer_.get(), train_data_.get(), nullptr, dist_};
}

train::StepResult RetrievalTask::train_step(int64_t step) {
  train_batch_.sample(train_data_.get(), "drawing a training batch");
  const fwp_retrieval_batch batch = train_batch_.view();
  float loss = 0.0f;
  check_status(fwp_model_zero_grad(model_.get()), "zeroing the gradients");
  check_status(fwp_retrieval_forward(model_.get(), &batch, &loss, nullptr, 0),
               fmt::format("training forward at step {}", step).c_str());
  train::StepResult result;
  // Equal shards: the global loss is the mean of the ranks' means (with --dist; else the loss itself).
  result.loss = dist_->reduce_step(static_cast<double>(loss), 1.0, 0.0);
  if (!std::isfinite(result.loss)) {
    result.grad_norm = std::nan("");  // no update from a broken loss (on every rank alike)
    return result;
  }
  check_status(fwp_model_backward(model_.get()), fmt::format("training backward at step {}", step).c_str());
  dist_->average_gradients(model_.get(), 1.0);
  result.grad_norm = train::take_optimizer_step(optimizer_.get(), step);
  return result;
}

// The evaluation of the paper: fresh sequences of cfg_.eval_pairs pairs (their
// seed derived from the run's seed and the step, so a resumed run sees the same
// ones), each queried with every distinct key it holds, at most
// kMaxEvalQueries of them.
train::Evaluation RetrievalTask::evaluate(int64_t step) {
  fwp_retrieval_data* raw = nullptr;
  check_status(fwp_retrieval_data_create_with_length(
                   cfg_.setting, cfg_.keys, cfg_.eval_pairs,
                   mix_seed(cfg_.seed, kEvalDataStream, static_cast<uint64_t>(step)), &raw),
               "creating the evaluation data generator");
  const DataPtr eval_data(raw);
  eval_batch_.sample(eval_data.get(), "drawing evaluation sequences");
  check_status(fwp_model_set_training(model_.get(), 0), "switching to evaluation mode");
  const fwp_retrieval_batch batch = eval_batch_.view();
  float loss = 0.0f;
  check_status(fwp_retrieval_forward(model_.get(), &batch, &loss, nullptr, 0),
               fmt::format("evaluating at step {}", step).c_str());
  check_status(fwp_model_set_training(model_.get(), 1), "switching to training mode");
  train::Evaluation evaluation;
  evaluation.loss = static_cast<double>(loss);
  return evaluation;
}

void RetrievalTask::Batch::resize(int64_t batch, int64_t length, int64_t queries_per_seq, int64_t drawn_batch) {
  batch_size = batch;
  drawn = drawn_batch;
  seq_len = length;
  num_queries = queries_per_seq;
  keys.assign(static_cast<size_t>(batch * length), 0);
  values.assign(keys.size(), 0);
  queries.assign(static_cast<size_t>(batch * queries_per_seq), 0);
  targets.assign(queries.size(), 0);
}

void RetrievalTask::Batch::sample(fwp_retrieval_data* data, const char* what) {
  check_status(fwp_retrieval_data_sample(data, drawn, num_queries, keys.data(), values.data(),
                                         queries.data(), targets.data()),
               what);
}

fwp_retrieval_batch RetrievalTask::Batch::view() const {
  return fwp_retrieval_batch{batch_size, seq_len, num_queries, keys.data(), values.data(), queries.data(),
                             targets.data()};
}

}  // namespace fwp_cli
