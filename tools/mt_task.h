// Machine translation (paper section 6.2) for the `fwp mt` commands: the
// files of a data folder made by `fwp mt prepare`, text I/O shared by the
// subcommands, a Translator that turns lines of source text into lines of
// target text through fwp_seq2seq_translate(), and the training task (the
// model from a preset plus overrides, Adam with fairseq's inverse-square-root
// schedule, token-budget batches from the pair data source, and an
// evaluation that reports valid loss, perplexity, BLEU and chrF). The driver
// in tools/train/ runs the loop; mt_command.cpp turns flags into an MtRunConfig.
#ifndef FWP_TOOLS_MT_TASK_H
#define FWP_TOOLS_MT_TASK_H

#include "cli_support.h"
#include "lm_task.h"  // AnyDataPtr, TokenizerPtr
#include "train/distributed.h"
#include "train/train_state.h"
#include "train/training_task.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace fwp_cli {

/// The files of a data folder of `fwp mt prepare`.
struct MtDataFiles {
  std::string folder;
  std::string tokenizer() const { return folder + "/tokenizer.fwptok"; }
  std::string pairs(const std::string& split) const { return folder + "/" + split + ".pairs"; }
  /// The untokenised text of a valid/test side, one line per pair of the pair file; `side` is "source" or
  /// "target" (the target text is the BLEU reference).
  std::string text(const std::string& split, const std::string& side) const {
    return folder + "/" + split + "." + side + ".txt";
  }
  std::string manifest() const { return folder + "/prepare.json"; }
};

/// Where `text` stops being UTF-8 (byte offset), or npos. The library checks
/// too; this lets a message name the file and line.
size_t invalid_utf8_at(const std::string& text);

/// A fingerprint of a tokenizer file (FNV-1a 64 of its bytes, in hex): a model fits only the tokenizer
/// it was trained with, and two tokenizers of one vocabulary size are told apart by it. Throws UsageError
/// naming `flag` if the file cannot be read.
std::string tokenizer_fingerprint(const std::string& flag, const std::string& path);

/// The lines of a UTF-8 text file, as Python reads text files: lines end at
/// "\n", "\r\n" or "\r"; a final line end adds no empty line. A missing file
/// or invalid UTF-8 is a usage error (exit code 2) naming the flag, file and line.
std::vector<std::string> read_lines(const std::string& flag, const std::string& path);
/// The same for text already read; `where` names it in messages (e.g. "standard input").
std::vector<std::string> split_lines(const std::string& text, const std::string& where);

/// How a Translator searches (the flags of `fwp mt translate`).
struct SearchSettings {
  int64_t beam = 4;           ///< 1 = greedy
  double length_penalty = 1.0;
  double max_len_a = 1.2;     ///< max output tokens = floor(a * source tokens + b)
  double max_len_b = 10.0;
  int64_t batch_sentences = 32;  ///< sentences translated together
};

/// Lines of source text -> lines of target text with one model and tokenizer.
class Translator {
 public:
  /// `model` is a translation model whose special ids and vocabulary are the
  /// tokenizer's pair ids (fwp_pair_special_ids()), and `search` leaves room for at least one
  /// output token; throws UsageError otherwise.
  Translator(fwp_model* model, const fwp_tokenizer* tokenizer, const SearchSettings& search);

  /// Encodes one line (eos appended, also to an empty line); a line longer than kMaxSourceTokens is a
  /// UsageError naming it.
  std::vector<int32_t> encode(const std::string& line, int64_t line_number) const;
  /// Translates encoded sources (each ending in eos), in batches of similar length; returns one line
  /// of text per source, in order. A source of eos alone (an empty line) gets the empty line. A length
  /// limit over kMaxOutputTokens is a UsageError.
  std::vector<std::string> translate(const std::vector<std::vector<int32_t>>& sources) const;
  /// Decodes output ids to text, leaving out pad, bos, eos and ids the tokenizer does not have.
  std::string decode(const std::vector<int32_t>& ids) const;

  static constexpr int64_t kMaxSourceTokens = 1024;
  /// The longest output fwp_seq2seq_translate() searches (its limit on floor(a * n + b)).
  static constexpr int64_t kMaxOutputTokens = int64_t{1} << 20;

 private:
  fwp_model* model_;
  const fwp_tokenizer* tokenizer_;
  SearchSettings search_;
  int64_t tokenizer_vocab_ = 0;
  int32_t pad_ = 0, bos_ = 0, eos_ = 0;
};

/// The resolved configuration of one translation run.
struct MtRunConfig {
  std::string data;                ///< The data folder.
  std::string preset = "cpu-small";
  // Attention of each kind: softmax | elu | favor | dpfp (`--attn` sets all three).
  std::string encoder_attn = "elu", decoder_attn = "elu", cross_attn = "elu";
  std::string decoder_rule = "sum";  ///< sum | delta (the decoder self-attention)
  int64_t dpfp_nu = 1;
  int64_t favor_m = 16;
  int64_t encoder_layers = 0, decoder_layers = 0, d_model = 0, heads = 0, d_head = 0, d_ff = 0;
  double dropout = 0.1;
  double label_smoothing = 0.1;
  bool pre_norm = false;
  bool tie = true;
  int64_t vocab = 0;               ///< From the data folder.
  /// tokenizer_fingerprint() of the data folder's tokenizer file; empty in checkpoints written before it was kept.
  std::string tokenizer;
  // Training.
  int64_t max_tokens = 2048;       ///< Token budget of a batch (fairseq's --max-tokens).
  double lr = 1e-3;
  int64_t warmup = 1000;
  double clip = 0.0;               ///< 0 = off (fairseq's transformer default)
  uint64_t seed = 1;
  int64_t eval_every = 500;
  int64_t bleu_sentences = 200;    ///< Valid sentences translated (greedy) at each evaluation; 0 = all.
  int64_t patience = 0;            ///< 0: no early stopping.
  // Run control: may differ between a run and its resumption.
  int64_t max_steps = 2000;
  int threads = 0;
  std::string device = "cpu";
};

/// The training settings of a preset (lr, warm-up, token budget, dropout). Throws UsageError.
void apply_mt_training_preset(const std::string& preset, MtRunConfig* cfg);
/// Fills the model sizes of `cfg` that are still 0 from the library's preset.
void resolve_mt_model_preset(MtRunConfig* cfg);
/// The library's model config for `cfg` with the data's special ids. Throws UsageError.
fwp_seq2seq_config mt_model_config(const MtRunConfig& cfg, int32_t pad, int32_t bos, int32_t eos);
/// "Transformer", "Linear", "Performer m=16", "DPFP nu=2", with " delta" for a delta-rule decoder
/// and the kinds spelled out when they differ; never contains a comma.
std::string mt_model_label(const MtRunConfig& cfg);

/// Everything, as stored in checkpoints and reported by --json.
nlohmann::json mt_config_json(const MtRunConfig& cfg);
/// Reads mt_config_json() back; throws nlohmann::json exceptions on missing fields.
MtRunConfig mt_config_from_json(const nlohmann::json& j);

train::TrainingPlan mt_training_plan(const MtRunConfig& cfg);

class MtTask : public train::TrainingTask {
 public:
  /// Creates the context, model, optimizer and training data of `cfg`, opens
  /// the validation pairs and reads the BLEU references; with --dist joins
  /// `dist`'s group (which must outlive the task) and trains on its part of
  /// every batch. Throws RunError / UsageError.
  MtTask(const MtRunConfig& cfg, train::Distributed& dist);

  std::string label() const override;
  nlohmann::json describe() const override { return mt_config_json(cfg_); }
  train::TrainingObjects objects() override;
  train::StepResult train_step(int64_t step) override;
  /// Valid loss (mean NLL per target token, no smoothing) over every valid pair, its
  /// perplexity, and greedy BLEU / chrF over the first bleu_sentences valid sentences.
  train::Evaluation evaluate(int64_t step) override;

  int64_t num_parameters() const { return num_parameters_; }
  /// Source + target tokens (with eos/bos) fed so far in this session, by all processes together.
  int64_t tokens_seen() const { return tokens_seen_; }

 private:
  MtRunConfig cfg_;
  train::Distributed* dist_;
  ContextPtr context_;
  ModelPtr model_;
  OptimizerPtr optimizer_;
  AnyDataPtr train_data_, valid_data_;
  TokenizerPtr tokenizer_;
  std::vector<int32_t> src_, src_len_, tgt_in_, tgt_out_, tgt_len_;
  std::vector<std::vector<int32_t>> bleu_sources_;
  std::vector<std::string> bleu_references_;
  int64_t num_parameters_ = 0;
  int64_t tokens_seen_ = 0;
};

}  // namespace fwp_cli

#endif  // FWP_TOOLS_MT_TASK_H
