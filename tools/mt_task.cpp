#include "mt_task.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace fwp_cli {

using json = nlohmann::json;

// ---- text ---------------------------------------------------------------------------

size_t invalid_utf8_at(const std::string& text) {
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(text[i]); };
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = byte(i);
    size_t length = 1;
    unsigned char low = 0x80, high = 0xbf;  // range of the second byte
    if (c < 0x80) {
      ++i;
      continue;
    } else if (c >= 0xc2 && c <= 0xdf) {
      length = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      length = 3;
      low = c == 0xe0 ? 0xa0 : 0x80;   // overlong
      high = c == 0xed ? 0x9f : 0xbf;  // surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      length = 4;
      low = c == 0xf0 ? 0x90 : 0x80;   // overlong
      high = c == 0xf4 ? 0x8f : 0xbf;  // above U+10FFFF
    } else {
      return i;
    }
    if (i + 1 >= text.size() || byte(i + 1) < low || byte(i + 1) > high) return i;
    for (size_t k = 2; k < length; ++k) {
      if (i + k >= text.size() || (byte(i + k) & 0xc0) != 0x80) return i;
    }
    i += length;
  }
  return std::string::npos;
}

std::vector<std::string> split_lines(const std::string& text, const std::string& where) {
  std::vector<std::string> lines;
  std::string line;
  bool open_line = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '\n' || c == '\r') {
      lines.push_back(line);
      line.clear();
      open_line = false;
      if (c == '\r' && i + 1 < text.size() && text[i + 1] == '\n') ++i;
    } else {
      line.push_back(c);
      open_line = true;
    }
  }
  if (open_line) lines.push_back(line);
  for (size_t n = 0; n < lines.size(); ++n) {
    const size_t bad = invalid_utf8_at(lines[n]);
    if (bad != std::string::npos) {
      throw UsageError(fmt::format("{}: line {} is not valid UTF-8 (byte {} of the line)", where, n + 1, bad + 1));
    }
  }
  return lines;
}

std::string tokenizer_fingerprint(const std::string& flag, const std::string& path) {
  if (!file_exists(path)) throw UsageError(fmt::format("{} {}: no such file", flag, path));
  uint64_t h = 0xcbf29ce484222325ull;
  for (const char c : read_file(path)) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ull;
  return fmt::format("{:016x}", h);
}

std::vector<std::string> read_lines(const std::string& flag, const std::string& path) {
  if (!file_exists(path)) throw UsageError(fmt::format("{} {}: no such file", flag, path));
  return split_lines(read_file(path), flag + " " + path);
}

// ---- translation --------------------------------------------------------------------

namespace {

// The library's length limit of a source of n tokens (eos included), computed as it does: double from the floats.
int64_t output_limit(const SearchSettings& search, int64_t n) {
  return static_cast<int64_t>(std::floor(static_cast<double>(static_cast<float>(search.max_len_a)) *
                                             static_cast<double>(n) +
                                         static_cast<double>(static_cast<float>(search.max_len_b))));
}

}  // namespace

Translator::Translator(fwp_model* model, const fwp_tokenizer* tokenizer, const SearchSettings& search)
    : model_(model), tokenizer_(tokenizer), search_(search) {
  // The shortest source translated is one token and eos (n = 2); the limit grows with n (a >= 0).
  if (output_limit(search, 2) < 1) {
    throw UsageError(fmt::format("--max-len-a {} and --max-len-b {} leave no room for a translation: "
                                 "floor(a * n + b) must be at least 1 for a source of n = 2 tokens (one and eos)",
                                 search.max_len_a, search.max_len_b));
  }
  fwp_seq2seq_config config;
  fwp_seq2seq_config_init(&config);
  check_status(fwp_seq2seq_get_config(model, &config), "reading the model config");
  int64_t vocab = 0;
  check_status(fwp_pair_special_ids(tokenizer, &vocab, &pad_, &bos_, &eos_, nullptr), "reading the special ids");
  check_status(fwp_tokenizer_vocab_size(tokenizer, &tokenizer_vocab_), "reading the vocabulary size");
  if (vocab != config.vocab_size || pad_ != config.pad_id || bos_ != config.bos_id || eos_ != config.eos_id) {
    throw UsageError(fmt::format(
        "the model (vocabulary {}, pad {}, bos {}, eos {}) was not trained with this tokenizer (vocabulary {}, pad "
        "{}, bos {}, eos {})",
        config.vocab_size, config.pad_id, config.bos_id, config.eos_id, vocab, pad_, bos_, eos_));
  }
}

std::vector<int32_t> Translator::encode(const std::string& line, int64_t line_number) const {
  // eos is appended here, not by the tokenizer: its add_eos leaves an empty text empty, and every
  // source, an empty line's too, must end in eos.
  int64_t count = 0;
  check_input_status(fwp_tokenizer_encode(tokenizer_, line.data(), line.size(), 0, nullptr, 0, &count),
                     fmt::format("encoding line {}", line_number).c_str());
  if (count + 1 > kMaxSourceTokens) {
    throw UsageError(fmt::format("line {} has {} tokens; the longest source translated is {}", line_number,
                                 count + 1, kMaxSourceTokens));
  }
  std::vector<int32_t> ids(static_cast<size_t>(count) + 1);
  check_input_status(fwp_tokenizer_encode(tokenizer_, line.data(), line.size(), 0, ids.data(), count, &count),
                     fmt::format("encoding line {}", line_number).c_str());
  ids.back() = eos_;
  return ids;
}

std::string Translator::decode(const std::vector<int32_t>& ids) const {
  std::vector<int32_t> kept;
  for (int32_t id : ids) {
    if (id != pad_ && id != bos_ && id != eos_ && id < tokenizer_vocab_) kept.push_back(id);
  }
  size_t length = 0;
  check_status(fwp_tokenizer_decode(tokenizer_, kept.data(), static_cast<int64_t>(kept.size()), nullptr, 0, &length),
               "decoding a translation");
  std::string text(length + 1, '\0');
  check_status(fwp_tokenizer_decode(tokenizer_, kept.data(), static_cast<int64_t>(kept.size()), text.data(),
                                    text.size(), &length),
               "decoding a translation");
  text.resize(length);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  return text;
}

std::vector<std::string> Translator::translate(const std::vector<std::vector<int32_t>>& sources) const {
  // Longest first, so that batches hold sentences of similar length (less padding).
  // A source of eos alone (an empty or blank line) has nothing to translate: its translation is
  // the empty line, and it is left out of the search.
  std::vector<size_t> order;
  for (size_t i = 0; i < sources.size(); ++i) {
    if (sources[i].size() > 1) order.push_back(i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sources[a].size() > sources[b].size(); });
  fwp_seq2seq_search_config search;
  fwp_seq2seq_search_config_init(&search);
  search.beam_size = search_.beam;
  search.length_penalty = static_cast<float>(search_.length_penalty);
  search.max_len_a = static_cast<float>(search_.max_len_a);
  search.max_len_b = static_cast<float>(search_.max_len_b);
  std::vector<std::string> out(sources.size());
  std::vector<int32_t> src, lengths, output;
  std::vector<int64_t> output_lengths;
  for (size_t first = 0; first < order.size(); first += static_cast<size_t>(search_.batch_sentences)) {
    const size_t count = std::min(order.size() - first, static_cast<size_t>(search_.batch_sentences));
    const int64_t S = static_cast<int64_t>(sources[order[first]].size());
    const int64_t limit = output_limit(search_, S);  // the batch's longest source has the highest
    if (limit > kMaxOutputTokens) {
      throw UsageError(fmt::format("--max-len-a {} and --max-len-b {} allow {} output tokens for line {} ({} tokens "
                                   "with eos); the most is {}",
                                   search_.max_len_a, search_.max_len_b, limit, order[first] + 1, S,
                                   kMaxOutputTokens));
    }
    const int64_t capacity = std::max<int64_t>(1, limit + 1);  // one more than the limit is room enough
    src.assign(count * static_cast<size_t>(S), pad_);
    lengths.assign(count, 0);
    for (size_t i = 0; i < count; ++i) {
      const auto& s = sources[order[first + i]];
      std::copy(s.begin(), s.end(), src.begin() + static_cast<ptrdiff_t>(i * static_cast<size_t>(S)));
      lengths[i] = static_cast<int32_t>(s.size());
    }
    output.assign(count * static_cast<size_t>(capacity), pad_);
    output_lengths.assign(count, 0);
    check_status(fwp_seq2seq_translate(model_, src.data(), lengths.data(), static_cast<int64_t>(count), S, &search,
                                       output.data(), capacity, output_lengths.data(), nullptr),
                 "translating");
    for (size_t i = 0; i < count; ++i) {
      const auto begin = output.begin() + static_cast<ptrdiff_t>(i * static_cast<size_t>(capacity));
      out[order[first + i]] = decode(std::vector<int32_t>(begin, begin + output_lengths[i]));
    }
  }
  return out;
}

// ---- run configuration --------------------------------------------------------------

namespace {

fwp_feature_map feature_map_of(const std::string& kind) {
  if (kind == "softmax") return FWP_FEATURE_MAP_SOFTMAX;
  if (kind == "favor") return FWP_FEATURE_MAP_FAVOR;
  if (kind == "dpfp") return FWP_FEATURE_MAP_DPFP;
  return FWP_FEATURE_MAP_ELU;
}

// One attention's kind. The paper's linear translation models: sum rule with the attention
// normalisation of Katharopoulos et al.; a delta-rule decoder uses the sum-normalised phi of the
// paper's delta layers instead.
void set_attention(fwp_layer_config& a, const std::string& kind, const MtRunConfig& cfg, bool delta) {
  a.feature_map = feature_map_of(kind);
  a.dpfp_nu = cfg.dpfp_nu;
  a.favor_features = cfg.favor_m;
  a.update_rule = delta ? FWP_UPDATE_DELTA : FWP_UPDATE_SUM;
  const bool linear = kind != "softmax";
  a.sum_normalize = linear && delta ? 1 : 0;
  a.attn_normalize = linear && !delta ? 1 : 0;
  a.scale_output = 0;
}

std::string kind_label(const std::string& kind, const MtRunConfig& cfg) {
  if (kind == "softmax") return "Transformer";
  if (kind == "elu") return "Linear";
  if (kind == "favor") return fmt::format("Performer m={}", cfg.favor_m);
  return fmt::format("DPFP nu={}", cfg.dpfp_nu);
}

}  // namespace

void apply_mt_training_preset(const std::string& preset, MtRunConfig* cfg) {
  // fairseq's Transformer recipes: Adam (0.9, 0.98), inverse-square-root
  // schedule after a linear warm-up, label smoothing 0.1, no clipping. The
  // CPU preset shortens the warm-up and raises the peak rate so that a few
  // thousand steps on two cores learn something.
  if (preset == "cpu-small") {
    cfg->max_tokens = 2048;
    cfg->lr = 1e-3;
    cfg->warmup = 1000;
    cfg->dropout = 0.1;
  } else if (preset == "base") {
    cfg->max_tokens = 4096;
    cfg->lr = 7e-4;
    cfg->warmup = 4000;
    cfg->dropout = 0.1;
  } else if (preset == "paper-big") {
    cfg->max_tokens = 4096;
    cfg->lr = 5e-4;
    cfg->warmup = 4000;
    cfg->dropout = 0.3;
  } else {
    throw UsageError(fmt::format("unknown preset '{}' (cpu-small, base, paper-big)", preset));
  }
  cfg->preset = preset;
}

void resolve_mt_model_preset(MtRunConfig* cfg) {
  fwp_seq2seq_config preset;
  fwp_seq2seq_config_init(&preset);
  check_input_status(fwp_seq2seq_config_preset(cfg->preset.c_str(), &preset), "reading the model preset");
  if (cfg->encoder_layers == 0) cfg->encoder_layers = preset.encoder_layers;
  if (cfg->decoder_layers == 0) cfg->decoder_layers = preset.decoder_layers;
  if (cfg->d_model == 0) cfg->d_model = preset.encoder_attention.d_model;
  if (cfg->heads == 0) cfg->heads = preset.encoder_attention.num_heads;
  if (cfg->d_head == 0) cfg->d_head = preset.encoder_attention.d_head;
  if (cfg->d_ff == 0) cfg->d_ff = preset.d_ff;
}

fwp_seq2seq_config mt_model_config(const MtRunConfig& cfg, int32_t pad, int32_t bos, int32_t eos) {
  if (cfg.decoder_rule == "delta" && cfg.decoder_attn == "softmax") {
    throw UsageError("--decoder-rule delta needs a fast-weight decoder attention (not softmax)");
  }
  fwp_seq2seq_config c;
  fwp_seq2seq_config_init(&c);
  check_input_status(fwp_seq2seq_config_preset(cfg.preset.c_str(), &c), "reading the model preset");
  c.vocab_size = cfg.vocab;
  c.pad_id = pad;
  c.bos_id = bos;
  c.eos_id = eos;
  c.encoder_layers = cfg.encoder_layers;
  c.decoder_layers = cfg.decoder_layers;
  c.d_ff = cfg.d_ff;
  c.dropout = static_cast<float>(cfg.dropout);
  c.label_smoothing = static_cast<float>(cfg.label_smoothing);
  c.pre_norm = cfg.pre_norm ? 1 : 0;
  c.tie_embeddings = cfg.tie ? 1 : 0;
  for (fwp_layer_config* a : {&c.encoder_attention, &c.decoder_attention, &c.cross_attention}) {
    a->d_model = cfg.d_model;
    a->num_heads = cfg.heads;
    a->d_head = cfg.d_head;
  }
  set_attention(c.encoder_attention, cfg.encoder_attn, cfg, false);
  set_attention(c.decoder_attention, cfg.decoder_attn, cfg, cfg.decoder_rule == "delta");
  set_attention(c.cross_attention, cfg.cross_attn, cfg, false);
  return c;
}

std::string mt_model_label(const MtRunConfig& cfg) {
  std::string label;
  if (cfg.encoder_attn == cfg.decoder_attn && cfg.decoder_attn == cfg.cross_attn) {
    label = kind_label(cfg.encoder_attn, cfg);
  } else {
    label = fmt::format("enc {} dec {} cross {}", kind_label(cfg.encoder_attn, cfg), kind_label(cfg.decoder_attn, cfg),
                        kind_label(cfg.cross_attn, cfg));
  }
  if (cfg.decoder_rule == "delta") label += " delta decoder";
  return label;
}

json mt_config_json(const MtRunConfig& cfg) {
  return json{{"data", cfg.data},
              {"preset", cfg.preset},
              {"encoder_attn", cfg.encoder_attn},
              {"decoder_attn", cfg.decoder_attn},
              {"cross_attn", cfg.cross_attn},
              {"decoder_rule", cfg.decoder_rule},
              {"nu", cfg.dpfp_nu},
              {"m", cfg.favor_m},
              {"encoder_layers", cfg.encoder_layers},
              {"decoder_layers", cfg.decoder_layers},
              {"d_model", cfg.d_model},
              {"heads", cfg.heads},
              {"d_head", cfg.d_head},
              {"d_ff", cfg.d_ff},
              {"dropout", cfg.dropout},
              {"label_smoothing", cfg.label_smoothing},
              {"pre_norm", cfg.pre_norm},
              {"tie", cfg.tie},
              {"vocab", cfg.vocab},
              {"tokenizer", cfg.tokenizer},
              {"max_tokens", cfg.max_tokens},
              {"lr", cfg.lr},
              {"warmup", cfg.warmup},
              {"clip", cfg.clip},
              {"seed", cfg.seed},
              {"eval_every", cfg.eval_every},
              {"bleu_sentences", cfg.bleu_sentences},
              {"patience", cfg.patience},
              {"model", mt_model_label(cfg)},
              {"max_steps", cfg.max_steps},
              {"threads", cfg.threads},
              {"device", cfg.device}};
}

MtRunConfig mt_config_from_json(const json& j) {
  MtRunConfig cfg;
  cfg.data = j.at("data").get<std::string>();
  cfg.preset = j.at("preset").get<std::string>();
  cfg.encoder_attn = j.at("encoder_attn").get<std::string>();
  cfg.decoder_attn = j.at("decoder_attn").get<std::string>();
  cfg.cross_attn = j.at("cross_attn").get<std::string>();
  cfg.decoder_rule = j.at("decoder_rule").get<std::string>();
  cfg.dpfp_nu = j.at("nu").get<int64_t>();
  cfg.favor_m = j.at("m").get<int64_t>();
  cfg.encoder_layers = j.at("encoder_layers").get<int64_t>();
  cfg.decoder_layers = j.at("decoder_layers").get<int64_t>();
  cfg.d_model = j.at("d_model").get<int64_t>();
  cfg.heads = j.at("heads").get<int64_t>();
  cfg.d_head = j.at("d_head").get<int64_t>();
  cfg.d_ff = j.at("d_ff").get<int64_t>();
  cfg.dropout = j.at("dropout").get<double>();
  cfg.label_smoothing = j.at("label_smoothing").get<double>();
  cfg.pre_norm = j.at("pre_norm").get<bool>();
  cfg.tie = j.at("tie").get<bool>();
  cfg.vocab = j.at("vocab").get<int64_t>();
  cfg.tokenizer = j.value("tokenizer", std::string());  // optional: absent in the first checkpoints
  cfg.max_tokens = j.at("max_tokens").get<int64_t>();
  cfg.lr = j.at("lr").get<double>();
  cfg.warmup = j.at("warmup").get<int64_t>();
  cfg.clip = j.at("clip").get<double>();
  cfg.seed = j.at("seed").get<uint64_t>();
  cfg.eval_every = j.at("eval_every").get<int64_t>();
  cfg.bleu_sentences = j.at("bleu_sentences").get<int64_t>();
  cfg.patience = j.at("patience").get<int64_t>();
  cfg.max_steps = j.at("max_steps").get<int64_t>();
  cfg.threads = j.at("threads").get<int>();
  cfg.device = j.at("device").get<std::string>();
  return cfg;
}

train::TrainingPlan mt_training_plan(const MtRunConfig& cfg) {
  train::TrainingPlan plan;
  plan.max_steps = cfg.max_steps;
  plan.eval_every = cfg.eval_every;
  plan.patience = cfg.patience > 0 ? cfg.patience : INT64_MAX;  // a fixed budget unless asked
  plan.target_loss = 0.0;                                       // never reached on real text
  return plan;
}

// ---- the task -----------------------------------------------------------------------

MtTask::MtTask(const MtRunConfig& cfg, train::Distributed& dist) : cfg_(cfg), dist_(&dist) {
  const MtDataFiles files{cfg.data};
  fwp_tokenizer* tokenizer = nullptr;
  check_input_status(fwp_tokenizer_load(files.tokenizer().c_str(), &tokenizer),
                     fmt::format("loading {}", files.tokenizer()).c_str());
  tokenizer_.reset(tokenizer);
  int32_t pad = 0, bos = 0, eos = 0;
  int64_t vocab = 0;
  check_status(fwp_pair_special_ids(tokenizer, &vocab, &pad, &bos, &eos, nullptr), "reading the special ids");
  if (vocab != cfg.vocab) {
    throw UsageError(fmt::format("{} has a vocabulary of {}, the run {}: not the data it was started on",
                                 files.tokenizer(), vocab, cfg.vocab));
  }
  if (!cfg.tokenizer.empty() && tokenizer_fingerprint("--data", files.tokenizer()) != cfg.tokenizer) {
    throw UsageError(fmt::format("{} is not the tokenizer of the data the run was started on",
                                 files.tokenizer()));
  }
  context_ = create_context(cfg.device, cfg.threads, cfg.seed);
  dist.join(context_.get());
  const fwp_seq2seq_config model_cfg = mt_model_config(cfg, pad, bos, eos);
  fwp_model* model = nullptr;
  check_input_status(fwp_seq2seq_create(context_.get(), &model_cfg, &model), "creating the translation model");
  model_.reset(model);
  num_parameters_ = count_trainable_parameters(model);
  // fairseq's optimisation of the Transformer: Adam with betas (0.9, 0.98), a
  // linear warm-up to --lr, then lr * sqrt(warmup / step).
  fwp_optimizer_config opt;
  fwp_optimizer_config_init(&opt);
  opt.kind = FWP_OPTIMIZER_ADAM;
  opt.learning_rate = static_cast<float>(cfg.lr);
  opt.beta1 = 0.9f;
  opt.beta2 = 0.98f;
  opt.eps = 1e-8f;
  opt.clip_grad_norm = static_cast<float>(cfg.clip);
  opt.lr_schedule = FWP_LR_INVERSE_SQRT;
  opt.warmup_steps = cfg.warmup;
  fwp_optimizer* optimizer = nullptr;
  check_input_status(fwp_optimizer_create_for_model(model, &opt, &optimizer), "creating the optimizer");
  optimizer_.reset(optimizer);

  fwp_pair_data_config train_cfg;
  fwp_pair_data_config_init(&train_cfg);
  train_cfg.max_tokens = cfg.max_tokens;
  train_cfg.shuffle = 1;
  train_cfg.seed = cfg.seed;
  fwp_data* data = nullptr;
  check_input_status(fwp_pair_data_create(files.pairs("train").c_str(), &train_cfg, &data),
                     fmt::format("opening {}", files.pairs("train")).c_str());
  train_data_.reset(data);
  // --max-tokens budgets the global batch; each process trains on its contiguous part of it.
  dist.shard(data);
  int64_t B = 0, S = 0, T = 0;
  check_status(fwp_pair_data_max_shape(data, &B, &S, &T), "reading the batch shapes");
  src_.resize(static_cast<size_t>(B * S));
  src_len_.resize(static_cast<size_t>(B));
  tgt_in_.resize(static_cast<size_t>(B * T));
  tgt_out_.resize(tgt_in_.size());
  tgt_len_.resize(static_cast<size_t>(B));

  // Validation: every pair, in file order; no pair is left out for length, so
  // the budget grows to hold the longest one alone.
  fwp_pair_info info;
  std::memset(&info, 0, sizeof info);
  info.struct_size = sizeof info;
  check_input_status(fwp_pair_file_info(files.pairs("valid").c_str(), &info),
                     fmt::format("reading {}", files.pairs("valid")).c_str());
  fwp_pair_data_config valid_cfg;
  fwp_pair_data_config_init(&valid_cfg);
  valid_cfg.shuffle = 0;
  valid_cfg.max_tokens = std::max(cfg.max_tokens, std::max(info.longest_source, info.longest_target) + 1);
  check_input_status(fwp_pair_data_create(files.pairs("valid").c_str(), &valid_cfg, &data),
                     fmt::format("opening {}", files.pairs("valid")).c_str());
  valid_data_.reset(data);
  check_status(fwp_pair_data_max_shape(data, &B, &S, &T), "reading the batch shapes");
  src_.resize(std::max(src_.size(), static_cast<size_t>(B * S)));
  src_len_.resize(std::max(src_len_.size(), static_cast<size_t>(B)));
  tgt_in_.resize(std::max(tgt_in_.size(), static_cast<size_t>(B * T)));
  tgt_out_.resize(tgt_in_.size());
  tgt_len_.resize(src_len_.size());

  // The BLEU sample: the first bleu_sentences valid pairs and their reference text.
  const std::vector<std::string> references = read_lines("--data", files.text("valid", "target"));
  if (static_cast<int64_t>(references.size()) != info.num_pairs) {
    throw RunError(fmt::format("{} has {} lines but {} holds {} pairs: the data folder is inconsistent (prepare it "
                               "again)",
                               files.text("valid", "target"), references.size(), files.pairs("valid"),
                               info.num_pairs));
  }
  const int64_t n = cfg.bleu_sentences > 0 ? std::min(cfg.bleu_sentences, info.num_pairs) : info.num_pairs;
  for (int64_t i = 0; i < n; ++i) {
    int64_t source_length = 0, target_length = 0;
    check_status(fwp_pair_data_get_pair(data, i, nullptr, 0, &source_length, nullptr, 0, &target_length),
                 "reading a validation pair");
    std::vector<int32_t> source(static_cast<size_t>(source_length) + 1);
    std::vector<int32_t> target(static_cast<size_t>(std::max<int64_t>(target_length, 1)));
    check_status(fwp_pair_data_get_pair(data, i, source.data(), source_length, &source_length, target.data(),
                                        target_length, &target_length),
                 "reading a validation pair");
    source.back() = eos;
    bleu_sources_.push_back(std::move(source));
    bleu_references_.push_back(references[static_cast<size_t>(i)]);
  }
}

std::string MtTask::label() const { return mt_model_label(cfg_); }

train::TrainingObjects MtTask::objects() {
  return train::TrainingObjects{model_.get(), optimizer_.get(), train_data_.get(), nullptr, dist_};
}

train::StepResult MtTask::train_step(int64_t step) {
  int64_t B = 0, S = 0, T = 0;
  check_status(fwp_pair_data_peek(train_data_.get(), &B, &S, &T), "reading the next batch's shape");
  check_status(fwp_pair_data_next(train_data_.get(), B, S, T, src_.data(), src_len_.data(), tgt_in_.data(),
                                  tgt_out_.data(), tgt_len_.data(), nullptr),
               "reading a training batch");
  int64_t fed = 0;
  for (int64_t b = 0; b < B; ++b) fed += src_len_[static_cast<size_t>(b)] + tgt_len_[static_cast<size_t>(b)];
  check_status(fwp_model_zero_grad(model_.get()), "zeroing the gradients");
  // With --dist a process's part of a batch of fewer pairs than processes can be
  // empty. It still runs a forward and backward, on a stand-in pair (source eos,
  // target bos -> eos), and joins the average with weight 0: the model's random
  // generator then draws as on the other ranks (dropout seeds, FAVOR+ redraws),
  // so the replicas' FAVOR+ projections stay equal and rank 0's generator state
  // in a checkpoint is every rank's.
  fwp_seq2seq_loss loss{};
  if (B > 0) {
    const fwp_seq2seq_batch batch{src_.data(), src_len_.data(), tgt_in_.data(), tgt_out_.data(), tgt_len_.data(),
                                  B,           S,               T};
    check_status(fwp_seq2seq_forward(model_.get(), &batch, &loss),
                 fmt::format("training forward at step {}", step).c_str());
  } else {
    fwp_seq2seq_config config;
    config.struct_size = sizeof(config);
    check_status(fwp_seq2seq_get_config(model_.get(), &config), "reading the model's special ids");
    int32_t source = config.eos_id, target_in = config.bos_id, target_out = config.eos_id, one = 1;
    const fwp_seq2seq_batch stand_in{&source, &one, &target_in, &target_out, &one, 1, 1, 1};
    fwp_seq2seq_loss ignored{};
    check_status(fwp_seq2seq_forward(model_.get(), &stand_in, &ignored),
                 fmt::format("training forward (stand-in for an empty part) at step {}", step).c_str());
  }
  // The gradient is that of this part's mean over its target tokens, so the
  // parts are weighted by their tokens: the global batch's mean, as one process.
  const double weight = B > 0 ? static_cast<double>(loss.tokens) : 0.0;
  train::StepResult result;
  result.loss = dist_->reduce_step(loss.loss_sum, weight, static_cast<double>(fed));
  result.tokens = dist_->step_tokens();
  tokens_seen_ += static_cast<int64_t>(result.tokens);
  if (!std::isfinite(result.loss)) {
    result.grad_norm = std::nan("");  // no update from a broken loss (on every rank alike)
    return result;
  }
  // (An empty part's stand-in gradient is scaled by its weight 0 in the average.)
  check_status(fwp_model_backward(model_.get()), fmt::format("training backward at step {}", step).c_str());
  dist_->average_gradients(model_.get(), weight);
  result.grad_norm = train::take_optimizer_step(optimizer_.get(), step);
  return result;
}

train::Evaluation MtTask::evaluate(int64_t step) {
  fwp_data* valid = valid_data_.get();
  check_status(fwp_pair_data_reset(valid, 0), "rewinding the validation pairs");
  int64_t batches = 0;
  check_status(fwp_pair_data_batches_per_epoch(valid, &batches), "counting the validation batches");
  double nll = 0.0;
  int64_t tokens = 0;
  for (int64_t i = 0; i < batches; ++i) {
    int64_t B = 0, S = 0, T = 0;
    check_status(fwp_pair_data_peek(valid, &B, &S, &T), "reading a validation batch's shape");
    check_status(fwp_pair_data_next(valid, B, S, T, src_.data(), src_len_.data(), tgt_in_.data(), tgt_out_.data(),
                                    tgt_len_.data(), nullptr),
                 "reading a validation batch");
    const fwp_seq2seq_batch batch{src_.data(), src_len_.data(), tgt_in_.data(), tgt_out_.data(), tgt_len_.data(),
                                  B,           S,               T};
    fwp_seq2seq_loss loss{};
    check_status(fwp_seq2seq_evaluate(model_.get(), &batch, &loss), fmt::format("evaluating at step {}", step).c_str());
    nll += loss.nll_sum;
    tokens += loss.tokens;
  }
  train::Evaluation evaluation;
  evaluation.loss = tokens > 0 ? nll / static_cast<double>(tokens) : std::nan("");
  evaluation.metrics.push_back({"ppl", std::exp(evaluation.loss)});

  // Greedy translations of the BLEU sample (beam search is for the final scores: `fwp mt translate`).
  SearchSettings greedy;
  greedy.beam = 1;
  const Translator translator(model_.get(), tokenizer_.get(), greedy);
  const std::vector<std::string> hyps = translator.translate(bleu_sources_);
  std::vector<const char*> hyp_ptrs, ref_ptrs;
  for (const auto& h : hyps) hyp_ptrs.push_back(h.c_str());
  for (const auto& r : bleu_references_) ref_ptrs.push_back(r.c_str());
  const char* const* refs[] = {ref_ptrs.data()};
  fwp_bleu_result bleu;
  fwp_bleu_result_init(&bleu);
  check_status(fwp_bleu(hyp_ptrs.data(), static_cast<int64_t>(hyps.size()), refs, 1, nullptr, &bleu), "scoring BLEU");
  fwp_chrf_result chrf;
  fwp_chrf_result_init(&chrf);
  check_status(fwp_chrf(hyp_ptrs.data(), static_cast<int64_t>(hyps.size()), refs, 1, nullptr, &chrf), "scoring chrF");
  evaluation.metrics.push_back({"bleu", bleu.score});
  evaluation.metrics.push_back({"chrf", chrf.score});
  float lr = 0.0f;
  check_status(fwp_optimizer_get_lr(optimizer_.get(), &lr), "reading the learning rate");
  evaluation.metrics.push_back({"lr", static_cast<double>(lr)});
  return evaluation;
}

}  // namespace fwp_cli
