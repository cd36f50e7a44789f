#include "lm_task.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace fwp_cli {
namespace {

using json = nlohmann::json;

// Seed streams: the context (initial weights, dropout, FAVOR+ draws) takes
// --seed itself; nothing else here draws random numbers (the training data
// is read in order).

fwp_feature_map feature_map_of(const std::string& phi) {
  if (phi == "elu") return FWP_FEATURE_MAP_ELU;
  if (phi == "favor") return FWP_FEATURE_MAP_FAVOR;
  if (phi == "softmax") return FWP_FEATURE_MAP_SOFTMAX;
  return FWP_FEATURE_MAP_DPFP;
}

}  // namespace

void apply_training_preset(const std::string& preset, LmRunConfig* cfg) {
  // The paper's runs (the authors' example scripts): Adam 2.5e-4, 2000 warm-up
  // steps, cosine decay, clipping 0.25; small: segments of 256, batch 8 (as the
  // public script); medium: 384 and 56. cpu-small: short segments and a larger
  // learning rate so that a few minutes on two cores learn something.
  if (preset == "cpu-small") {
    cfg->length = 64;
    cfg->batch = 16;
    cfg->lr = 1e-3;
    cfg->warmup = 200;
  } else if (preset == "paper-small") {
    cfg->length = 256;
    cfg->batch = 8;
    cfg->lr = 2.5e-4;
    cfg->warmup = 2000;
  } else if (preset == "paper-medium") {
    cfg->length = 384;
    cfg->batch = 56;
    cfg->lr = 2.5e-4;
    cfg->warmup = 2000;
  } else {
    throw UsageError(fmt::format("unknown preset '{}' (cpu-small, paper-small, paper-medium)", preset));
  }
  cfg->clip = 0.25;
  cfg->preset = preset;
}

void resolve_model_preset(LmRunConfig* cfg) {
  fwp_lm_config preset;
  fwp_lm_config_init(&preset);
  check_input_status(fwp_lm_config_preset(cfg->preset.c_str(), &preset), "reading the model preset");
  if (cfg->layers == 0) cfg->layers = preset.num_layers;
  if (cfg->d_model == 0) cfg->d_model = preset.attention.d_model;
  if (cfg->heads == 0) cfg->heads = preset.attention.num_heads;
  if (cfg->d_head == 0) cfg->d_head = preset.attention.d_head;
  if (cfg->d_ff == 0) cfg->d_ff = preset.d_ff;
}

fwp_lm_config model_config(const LmRunConfig& cfg) {
  fwp_lm_config c;
  fwp_lm_config_init(&c);
  check_input_status(fwp_lm_config_preset(cfg.preset.c_str(), &c), "reading the model preset");
  c.vocab_size = cfg.vocab;
  c.num_layers = cfg.layers;
  c.d_ff = cfg.d_ff;
  c.dropout = static_cast<float>(cfg.dropout);
  c.position = cfg.positions == "none" ? FWP_LM_POSITION_NONE : FWP_LM_POSITION_SINUSOIDAL;
  c.pre_norm = cfg.pre_norm ? 1 : 0;
  c.tie_embeddings = cfg.tie ? 1 : 0;
  if (cfg.cutoffs.size() > FWP_LM_MAX_CUTOFFS) {
    throw UsageError(fmt::format("--cutoffs takes at most {} values", FWP_LM_MAX_CUTOFFS));
  }
  c.num_cutoffs = static_cast<int64_t>(cfg.cutoffs.size());
  for (size_t i = 0; i < cfg.cutoffs.size(); ++i) c.cutoffs[i] = cfg.cutoffs[i];
  c.div_val = cfg.div_val;
  c.attention.d_model = cfg.d_model;
  c.attention.num_heads = cfg.heads;
  c.attention.d_head = cfg.d_head;
  c.attention.feature_map = feature_map_of(cfg.phi);
  c.attention.dpfp_nu = cfg.dpfp_nu;
  c.attention.favor_features = cfg.favor_m;
  c.attention.update_rule = cfg.rule == "delta" ? FWP_UPDATE_DELTA : FWP_UPDATE_SUM;
  c.attention.sum_normalize = cfg.phi != "softmax" && cfg.sum_norm ? 1 : 0;
  c.attention.attn_normalize = cfg.phi != "softmax" && cfg.attn_norm ? 1 : 0;
  return c;
}

std::string lm_model_label(const LmRunConfig& cfg) {
  if (cfg.phi == "softmax") return "Transformer";
  std::string label;
  if (cfg.phi == "elu") {
    label = "Linear";
  } else if (cfg.phi == "favor") {
    label = fmt::format("Performer m={}", cfg.favor_m);
  } else {
    label = fmt::format("DPFP nu={}", cfg.dpfp_nu);
  }
  label += " " + cfg.rule;
  if (cfg.carry) label += " carry";
  // Positions only when they are not the default for the run (none with --carry, as the paper).
  const std::string default_positions = cfg.carry ? "none" : "sinusoidal";
  if (cfg.positions != default_positions) label += cfg.positions == "none" ? " no positions" : " positions";
  return label;
}

json lm_defining_json(const LmRunConfig& cfg) {
  json j = {{"preset", cfg.preset},     {"phi", cfg.phi},         {"rule", cfg.rule},
            {"sum_norm", cfg.sum_norm}, {"attn_norm", cfg.attn_norm}, {"layers", cfg.layers},
            {"d_model", cfg.d_model},   {"heads", cfg.heads},     {"d_head", cfg.d_head},
            {"d_ff", cfg.d_ff},         {"dropout", cfg.dropout}, {"positions", cfg.positions},
            {"pre_norm", cfg.pre_norm}, {"tie", cfg.tie},         {"cutoffs", cfg.cutoffs},
            {"div_val", cfg.div_val},   {"vocab", cfg.vocab},     {"batch", cfg.batch},
            {"length", cfg.length},     {"carry", cfg.carry},     {"lr", cfg.lr},
            {"warmup", cfg.warmup},     {"decay_steps", cfg.decay_steps}, {"clip", cfg.clip},       {"seed", cfg.seed},
            {"eval_every", cfg.eval_every}, {"eval_tokens", cfg.eval_tokens}, {"patience", cfg.patience}};
  if (cfg.phi == "dpfp") j["nu"] = cfg.dpfp_nu;
  if (cfg.phi == "favor") j["m"] = cfg.favor_m;
  return j;
}

json lm_config_json(const LmRunConfig& cfg) {
  json j = lm_defining_json(cfg);
  j["data"] = cfg.data;
  j["model"] = lm_model_label(cfg);
  j["max_steps"] = cfg.max_steps;
  j["threads"] = cfg.threads;
  j["device"] = cfg.device;
  return j;
}

LmRunConfig lm_config_from_json(const json& j) {
  LmRunConfig cfg;
  cfg.data = j.at("data").get<std::string>();
  cfg.preset = j.at("preset").get<std::string>();
  cfg.phi = j.at("phi").get<std::string>();
  cfg.rule = j.at("rule").get<std::string>();
  cfg.sum_norm = j.at("sum_norm").get<bool>();
  cfg.attn_norm = j.at("attn_norm").get<bool>();
  cfg.layers = j.at("layers").get<int64_t>();
  cfg.d_model = j.at("d_model").get<int64_t>();
  cfg.heads = j.at("heads").get<int64_t>();
  cfg.d_head = j.at("d_head").get<int64_t>();
  cfg.d_ff = j.at("d_ff").get<int64_t>();
  cfg.dropout = j.at("dropout").get<double>();
  cfg.positions = j.at("positions").get<std::string>();
  cfg.pre_norm = j.at("pre_norm").get<bool>();
  cfg.tie = j.at("tie").get<bool>();
  cfg.cutoffs = j.at("cutoffs").get<std::vector<int64_t>>();
  cfg.div_val = j.at("div_val").get<int64_t>();
  cfg.vocab = j.at("vocab").get<int64_t>();
  cfg.batch = j.at("batch").get<int64_t>();
  cfg.length = j.at("length").get<int64_t>();
  cfg.carry = j.at("carry").get<bool>();
  cfg.lr = j.at("lr").get<double>();
  cfg.warmup = j.at("warmup").get<int64_t>();
  cfg.decay_steps = j.at("decay_steps").get<int64_t>();
  cfg.clip = j.at("clip").get<double>();
  cfg.seed = j.at("seed").get<uint64_t>();
  cfg.eval_every = j.at("eval_every").get<int64_t>();
  cfg.eval_tokens = j.at("eval_tokens").get<int64_t>();
  cfg.patience = j.at("patience").get<int64_t>();
  if (cfg.phi == "dpfp") cfg.dpfp_nu = j.at("nu").get<int64_t>();
  if (cfg.phi == "favor") cfg.favor_m = j.at("m").get<int64_t>();
  cfg.max_steps = j.at("max_steps").get<int64_t>();
  cfg.threads = j.at("threads").get<int>();
  cfg.device = j.at("device").get<std::string>();
  return cfg;
}

train::TrainingPlan lm_training_plan(const LmRunConfig& cfg) {
  train::TrainingPlan plan;
  plan.max_steps = cfg.max_steps;
  plan.eval_every = cfg.eval_every;
  // No early stopping unless asked: the paper trains for a fixed budget.
  plan.patience = cfg.patience > 0 ? cfg.patience : INT64_MAX;
  plan.target_loss = 0.0;  // a perplexity of 1 is never reached on real text
  return plan;
}

std::vector<int32_t> read_token_file(const std::string& path, int64_t count) {
  int64_t vocab = 0, total = 0;
  check_input_status(fwp_token_file_info(path.c_str(), &vocab, &total), fmt::format("reading {}", path).c_str());
  const int64_t n = count < 0 ? total : std::min(count, total);
  std::vector<int32_t> tokens(static_cast<size_t>(n));
  if (n > 0) {
    check_input_status(fwp_token_file_read(path.c_str(), 0, tokens.data(), n), fmt::format("reading {}", path).c_str());
  }
  return tokens;
}

// ---- the task -------------------------------------------------------------------

LmTask::LmTask(const LmRunConfig& cfg, train::Distributed& dist) : cfg_(cfg), dist_(&dist) {
  const LmDataFiles files{cfg.data};
  context_ = create_context(cfg.device, cfg.threads, cfg.seed);
  fwp_context* context = context_.get();
  dist.join(context);
  // --batch is the global batch: each of N processes trains on batch / N streams.
  local_batch_ = dist.local_batch("--batch", cfg.batch);

  const fwp_lm_config model_cfg = model_config(cfg);
  fwp_model* model = nullptr;
  check_input_status(fwp_lm_create(context, &model_cfg, &model), "creating the language model");
  model_.reset(model);
  num_parameters_ = count_trainable_parameters(model);

  // The paper's optimisation: Adam, linear warm-up then cosine decay to 0 at
  // --decay-steps (default: the step cap), gradients clipped to a global norm of 0.25.
  fwp_optimizer_config optimizer_config;
  fwp_optimizer_config_init(&optimizer_config);
  optimizer_config.kind = FWP_OPTIMIZER_ADAM;
  optimizer_config.learning_rate = static_cast<float>(cfg.lr);
  optimizer_config.clip_grad_norm = static_cast<float>(cfg.clip);
  if (cfg.decay_steps > 1) {
    // The warm-up must end before the decay does (a run shorter than its
    // warm-up still gets one step of decay).
    optimizer_config.lr_schedule = FWP_LR_WARMUP_COSINE;
    optimizer_config.warmup_steps = std::min(cfg.warmup, cfg.decay_steps - 1);
    optimizer_config.total_steps = cfg.decay_steps;
  } else {
    optimizer_config.lr_schedule = FWP_LR_CONSTANT;  // a one-step run: nothing to schedule
  }
  fwp_optimizer* optimizer = nullptr;
  check_status(fwp_optimizer_create_for_model(model, &optimizer_config, &optimizer), "creating the optimizer");
  optimizer_.reset(optimizer);

  fwp_token_data_config data_config;
  fwp_token_data_config_init(&data_config);
  data_config.batch_size = cfg.batch;
  data_config.segment_length = cfg.length;
  fwp_data* data = nullptr;
  check_input_status(fwp_token_data_create(files.split("train").c_str(), &data_config, &data),
               "opening the training tokens");
  train_data_.reset(data);
  dist.shard(data);
  inputs_.assign(static_cast<size_t>(local_batch_ * cfg.length), 0);
  targets_.assign(inputs_.size(), 0);
  if (cfg.carry) {
    fwp_state* state = nullptr;
    check_status(fwp_state_create(model, local_batch_, &state), "creating the carried state");
    carried_.reset(state);
  }
  valid_ = read_token_file(files.split("valid"), cfg.eval_tokens > 0 ? cfg.eval_tokens : -1);
  if (static_cast<int64_t>(valid_.size()) < 2) {
    throw RunError(fmt::format("{} holds fewer than 2 tokens: nothing to evaluate", files.split("valid")));
  }
}

std::string LmTask::label() const { return lm_model_label(cfg_); }

train::TrainingObjects LmTask::objects() {
  return train::TrainingObjects{model_.get(), optimizer_.get(), train_data_.get(), carried_.get(), dist_};
}

train::StepResult LmTask::train_step(int64_t step) {
  check_status(fwp_token_data_next(train_data_.get(), inputs_.data(), targets_.data(),
                                   static_cast<int64_t>(inputs_.size())),
               "reading a training batch");
  check_status(fwp_model_zero_grad(model_.get()), "zeroing the gradients");
  double loss = 0.0;
  check_status(fwp_lm_forward(model_.get(), inputs_.data(), targets_.data(), local_batch_, cfg_.length,
                              carried_.get(), &loss, nullptr),
               fmt::format("training forward at step {}", step).c_str());
  train::StepResult result;
  // Equal shards: the global loss is the mean of the ranks' means (with --dist; else the loss itself).
  result.loss = dist_->reduce_step(loss, 1.0, static_cast<double>(inputs_.size()));
  result.tokens = dist_->step_tokens();
  if (!std::isfinite(result.loss)) {
    result.grad_norm = std::nan("");  // no update from a broken loss (on every rank alike)
    return result;
  }
  check_status(fwp_model_backward(model_.get()), fmt::format("training backward at step {}", step).c_str());
  dist_->average_gradients(model_.get(), 1.0);
  result.grad_norm = train::take_optimizer_step(optimizer_.get(), step);
  return result;
}

// Independent segments of the training length over the validation prefix (the
// paper's training-time evaluation); `fwp lm eval` gives the sliding window. A
// model trained with --carry is scored the way it is meant to run: the fast
// weights carried through the whole prefix (independent segments would judge
// it without the memory it learned to use).
train::Evaluation LmTask::evaluate(int64_t step) {
  double nll = 0.0;
  int64_t scored = 0;
  const fwp_lm_eval_mode mode = cfg_.carry ? FWP_LM_EVAL_CARRY : FWP_LM_EVAL_SEGMENTS;
  check_status(fwp_lm_evaluate(model_.get(), valid_.data(), static_cast<int64_t>(valid_.size()), mode,
                               cfg_.length, &nll, &scored),
               fmt::format("evaluating at step {}", step).c_str());
  train::Evaluation evaluation;
  evaluation.loss = scored > 0 ? nll / static_cast<double>(scored) : std::nan("");
  evaluation.metrics.push_back({"perplexity", std::exp(evaluation.loss)});
  float lr = 0.0f;
  check_status(fwp_optimizer_get_lr(optimizer_.get(), &lr), "reading the learning rate");
  evaluation.metrics.push_back({"lr", static_cast<double>(lr)});
  return evaluation;
}

}  // namespace fwp_cli
