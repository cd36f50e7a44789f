// Speed of the translation model (include/fwp/seq2seq.h) through the public C API, on
// synthetic random batches (the figures do not depend on the data; a random model is as fast
// as a trained one when every output is forced to the same length):
//   1. training: fwp_seq2seq_forward + fwp_model_backward + an Adam step (as `fwp mt train`:
//      betas 0.9/0.98, no clipping) on B pairs of S source / T target tokens -> tokens/s
//      (source + target tokens);
//   2. translation of N sources of S tokens with beam 4 and greedy, every output forced to
//      --out-len tokens (min_length = max_len_b = out-len, max_len_a = 0) -> sentences/s;
//   3. decoding cost per output token as the output grows: one sentence translated to forced
//      lengths L_1 < L_2 < ...; the time per token between two lengths is
//      (t(L_i) - t(L_{i-1})) / (L_i - L_{i-1}), t the process CPU time (with one thread, the
//      work done, which other processes on a shared machine disturb least; the wall figure is
//      printed too): flat for the linear kinds (a fixed-size state), growing for softmax (its
//      key/value cache, which beam search also reorders every step).
// bench/mt_torch.py times the same things on the same network in PyTorch; bench/mt_compare.sh
// runs both. The "RESULT kind=... key=value" lines are what mt_compare.sh reads; --json prints
// one JSON object instead of the table.
//
//   build/bench/fwp_bench_mt --attention elu --threads 1
//   build/bench/fwp_bench_mt --attention softmax --steps 3 --sentences 8 --growth 32,64,128
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "fwp/fwp.h"

namespace {

void check(fwp_status st, const char* what) {
  if (st != FWP_OK) throw std::runtime_error(std::string(what) + ": " + fwp_last_error_message());
}

struct Options {
  std::string attention = "elu";
  int64_t vocab = 8000;
  int64_t encoder_layers = 2, decoder_layers = 2, d_model = 128, heads = 4, d_head = 32, d_ff = 512;
  int64_t batch = 32, src_len = 24, tgt_len = 24;  // training batch: B x S source, B x T target
  int threads = 1;
  std::string device = "cpu";  // cpu | cuda
  int warmup = 2, steps = 10;
  int64_t sentences = 32;   // translated sources (S tokens each), in one batch
  int64_t out_len = 24;     // forced output length of the translation timing
  std::vector<int64_t> growth{32, 64, 128, 256, 512};
  int growth_repeats = 2;   // best of this many per length
  bool json = false;
  std::string dump;         // --dump DIR: write the check data for mt_torch.py --check DIR, then exit
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(stderr,
               "fwp_bench_mt: %s\n"
               "usage: fwp_bench_mt [--attention softmax|elu] [--vocab V] [--encoder-layers N] [--decoder-layers M]\n"
               "  [--d-model D] [--heads H] [--d-head E] [--d-ff F] [--batch B] [--src-len S] [--tgt-len T]\n"
               "  [--threads N] [--warmup S] [--steps S] [--sentences N] [--out-len L]\n"
               "  [--growth L1,L2,...] [--growth-repeats R] [--device cpu|cuda] [--json] [--dump DIR]\n",
               why.c_str());
  std::exit(2);
}

int64_t positive_int(const std::string& flag, const char* text) {
  char* end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || v < 1) usage(flag + " needs an integer >= 1 (got '" + text + "')");
  return v;
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") usage("training tokens/s and translation speed of the translation model");
    if (flag == "--json") {
      o.json = true;
      continue;
    }
    if (i + 1 >= argc) usage(flag + " needs a value");
    const char* v = argv[++i];
    if (flag == "--attention") o.attention = v;
    else if (flag == "--vocab") o.vocab = positive_int(flag, v);
    else if (flag == "--encoder-layers") o.encoder_layers = positive_int(flag, v);
    else if (flag == "--decoder-layers") o.decoder_layers = positive_int(flag, v);
    else if (flag == "--d-model") o.d_model = positive_int(flag, v);
    else if (flag == "--heads") o.heads = positive_int(flag, v);
    else if (flag == "--d-head") o.d_head = positive_int(flag, v);
    else if (flag == "--d-ff") o.d_ff = positive_int(flag, v);
    else if (flag == "--batch") o.batch = positive_int(flag, v);
    else if (flag == "--src-len") o.src_len = positive_int(flag, v);
    else if (flag == "--tgt-len") o.tgt_len = positive_int(flag, v);
    else if (flag == "--threads") o.threads = static_cast<int>(positive_int(flag, v));
    else if (flag == "--device") o.device = v;
    else if (flag == "--warmup") o.warmup = std::strcmp(v, "0") == 0 ? 0 : static_cast<int>(positive_int(flag, v));
    else if (flag == "--steps") o.steps = static_cast<int>(positive_int(flag, v));
    else if (flag == "--sentences") o.sentences = positive_int(flag, v);
    else if (flag == "--out-len") o.out_len = positive_int(flag, v);
    else if (flag == "--dump") o.dump = v;
    else if (flag == "--growth-repeats") o.growth_repeats = static_cast<int>(positive_int(flag, v));
    else if (flag == "--growth") {
      o.growth.clear();
      std::stringstream list(v);
      std::string item;
      while (std::getline(list, item, ',')) o.growth.push_back(positive_int(flag, item.c_str()));
      if (o.growth.empty()) usage("--growth needs at least one length");
      if (!std::is_sorted(o.growth.begin(), o.growth.end()) ||
          std::adjacent_find(o.growth.begin(), o.growth.end()) != o.growth.end())
        usage("--growth lengths must be increasing");
    } else {
      usage("unknown flag " + flag);
    }
  }
  if (o.attention != "softmax" && o.attention != "elu")
    usage("--attention must be softmax or elu (got '" + o.attention + "')");
  if (o.device != "cpu" && o.device != "cuda") usage("--device must be cpu or cuda (got '" + o.device + "')");
  if (o.vocab < 4) usage("--vocab must be >= 4 (pad, bos, eos and a word)");
  // One source token is the eos; the target input starts with bos.
  if (o.src_len < 2 || o.tgt_len < 2) usage("--src-len and --tgt-len must be >= 2");
  return o;
}

fwp_seq2seq_config make_config(const Options& o) {
  fwp_seq2seq_config c;
  fwp_seq2seq_config_init(&c);  // post-LN, tied embeddings, sinusoids, label smoothing 0.1
  c.vocab_size = o.vocab;
  c.encoder_layers = o.encoder_layers;
  c.decoder_layers = o.decoder_layers;
  c.d_ff = o.d_ff;
  c.dropout = 0.1f;
  c.seed = 1;
  for (fwp_layer_config* a : {&c.encoder_attention, &c.decoder_attention, &c.cross_attention}) {
    a->d_model = o.d_model;
    a->num_heads = o.heads;
    a->d_head = o.d_head;
    if (o.attention == "softmax") {
      a->feature_map = FWP_FEATURE_MAP_SOFTMAX;
      a->sum_normalize = 0;
      a->attn_normalize = 0;
      a->scale_output = 0;
    }
    // elu: the defaults (elu + 1, sum rule, attention normalisation), the paper's "Linear".
  }
  return c;
}

int64_t count_params(const fwp_model* model) {
  int64_t tensors = 0, total = 0;
  check(fwp_model_num_params(model, &tensors), "fwp_model_num_params");
  for (int64_t i = 0; i < tensors; ++i) {
    fwp_param_info info;
    check(fwp_model_param_info(model, i, &info), "fwp_model_param_info");
    if (info.trainable) total += info.numel;
  }
  return total;
}

// Word ids spread over the vocabulary, never pad (1), bos (0) or eos (2).
struct TokenStream {
  uint64_t s;
  int32_t next(int64_t vocab) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return 3 + static_cast<int32_t>((s >> 33) % static_cast<uint64_t>(vocab - 3));
  }
};

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// N full-length sources: S - 1 words, then eos.
void make_sources(TokenStream& tokens, int64_t vocab, int64_t n, int64_t S, std::vector<int32_t>& src,
                  std::vector<int32_t>& lengths) {
  src.assign(static_cast<size_t>(n * S), 0);
  lengths.assign(static_cast<size_t>(n), static_cast<int32_t>(S));
  for (int64_t b = 0; b < n; ++b) {
    for (int64_t t = 0; t + 1 < S; ++t) src[static_cast<size_t>(b * S + t)] = tokens.next(vocab);
    src[static_cast<size_t>(b * S + S - 1)] = 2;
  }
}

struct TrainResult {
  double step_ms = 0, median_ms = 0, best_ms = 0, fwd_ms = 0, bwd_ms = 0, opt_ms = 0, cpu_ms = 0, tokens_per_s = 0;
  double loss = 0;
};

TrainResult train(fwp_model* model, const Options& o) {
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  oc.kind = FWP_OPTIMIZER_ADAM;  // `fwp mt train`'s (constant lr here: the schedule costs nothing)
  oc.learning_rate = 5e-4f;
  oc.beta1 = 0.9f;
  oc.beta2 = 0.98f;
  fwp_optimizer* opt = nullptr;
  check(fwp_optimizer_create_for_model(model, &oc, &opt), "fwp_optimizer_create_for_model");
  const int64_t B = o.batch, S = o.src_len, T = o.tgt_len;
  std::vector<int32_t> src, src_len, tgt_in(static_cast<size_t>(B * T)), tgt_out(tgt_in.size()),
      tgt_len(static_cast<size_t>(B), static_cast<int32_t>(T));
  TokenStream tokens{12345};
  TrainResult r;
  std::vector<double> step_ms;
  double cpu_s = 0;
  for (int s = 0; s < o.warmup + o.steps; ++s) {
    make_sources(tokens, o.vocab, B, S, src, src_len);
    for (int64_t b = 0; b < B; ++b) {  // bos y_1 .. y_{T-1} / y_1 .. y_{T-1} eos
      tgt_in[static_cast<size_t>(b * T)] = 0;
      for (int64_t t = 1; t < T; ++t) {
        const int32_t y = tokens.next(o.vocab);
        tgt_in[static_cast<size_t>(b * T + t)] = y;
        tgt_out[static_cast<size_t>(b * T + t - 1)] = y;
      }
      tgt_out[static_cast<size_t>(b * T + T - 1)] = 2;
    }
    fwp_seq2seq_batch batch{src.data(), src_len.data(), tgt_in.data(), tgt_out.data(), tgt_len.data(), B, S, T};
    fwp_seq2seq_loss loss;
    const std::clock_t c0 = std::clock();
    const auto t0 = std::chrono::steady_clock::now();
    check(fwp_model_zero_grad(model), "fwp_model_zero_grad");
    check(fwp_seq2seq_forward(model, &batch, &loss), "fwp_seq2seq_forward");
    const double f = ms_since(t0);
    const auto t1 = std::chrono::steady_clock::now();
    check(fwp_model_backward(model), "fwp_model_backward");
    const double bw = ms_since(t1);
    const auto t2 = std::chrono::steady_clock::now();
    check(fwp_optimizer_step(opt, nullptr), "fwp_optimizer_step");
    const double u = ms_since(t2);
    const double total = ms_since(t0);
    r.loss = loss.loss_sum / static_cast<double>(loss.tokens);
    if (s < o.warmup) continue;
    cpu_s += static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
    r.fwd_ms += f;
    r.bwd_ms += bw;
    r.opt_ms += u;
    step_ms.push_back(total);
  }
  fwp_optimizer_destroy(opt);
  double sum = 0;
  for (double t : step_ms) sum += t;
  std::sort(step_ms.begin(), step_ms.end());
  r.step_ms = sum / o.steps;
  r.median_ms = step_ms[step_ms.size() / 2];
  r.best_ms = step_ms.front();
  r.fwd_ms /= o.steps;
  r.bwd_ms /= o.steps;
  r.opt_ms /= o.steps;
  r.cpu_ms = 1e3 * cpu_s / o.steps;
  r.tokens_per_s = static_cast<double>(B * (S + T)) / (r.step_ms / 1e3);
  return r;
}

// Translates `n` sources of length S with every output forced to `out_len` tokens; returns
// the wall ms (and the CPU ms through cpu_ms). Checks that every output has out_len tokens.
double translate(fwp_model* model, const std::vector<int32_t>& src, const std::vector<int32_t>& src_len, int64_t n,
                 int64_t S, int64_t beam, int64_t out_len, double* cpu_ms) {
  fwp_seq2seq_search_config sc;
  fwp_seq2seq_search_config_init(&sc);
  sc.beam_size = beam;
  sc.max_len_a = 0.0f;
  sc.max_len_b = static_cast<float>(out_len);
  sc.min_length = out_len;
  std::vector<int32_t> out(static_cast<size_t>(n * out_len));
  std::vector<int64_t> out_lengths(static_cast<size_t>(n));
  const std::clock_t c0 = std::clock();
  const auto t0 = std::chrono::steady_clock::now();
  check(fwp_seq2seq_translate(model, src.data(), src_len.data(), n, S, &sc, out.data(), out_len, out_lengths.data(),
                              nullptr),
        "fwp_seq2seq_translate");
  const double ms = ms_since(t0);
  if (cpu_ms) *cpu_ms = 1e3 * static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
  for (int64_t len : out_lengths)
    if (len != out_len)
      throw std::runtime_error("an output has " + std::to_string(len) + " tokens, not the forced " +
                               std::to_string(out_len));
  return ms;
}

// --dump DIR: that the PyTorch network of bench/mt_torch.py is this one. Writes the
// parameters (params.txt: "name numel" per line; params.bin: their float32 values in that
// order), then check.txt with a small padded batch, its evaluation-mode loss, and the
// greedy and beam-4 translations of its sources (unforced: max length 1.2 n + 10, the
// defaults); `mt_torch.py --check DIR` loads the parameters and recomputes all of it.
void dump(fwp_model* model, const Options& o) {
  const std::string dir = o.dump;
  FILE* names = std::fopen((dir + "/params.txt").c_str(), "w");
  FILE* values = std::fopen((dir + "/params.bin").c_str(), "wb");
  FILE* out = std::fopen((dir + "/check.txt").c_str(), "w");
  if (!names || !values || !out) throw std::runtime_error("--dump: cannot write into " + dir);
  int64_t tensors = 0;
  check(fwp_model_num_params(model, &tensors), "fwp_model_num_params");
  for (int64_t i = 0; i < tensors; ++i) {
    fwp_param_info info;
    check(fwp_model_param_info(model, i, &info), "fwp_model_param_info");
    std::vector<float> v(static_cast<size_t>(info.numel));
    check(fwp_model_get_param(model, i, v.data(), info.numel), "fwp_model_get_param");
    std::fprintf(names, "%s %lld\n", info.name, static_cast<long long>(info.numel));
    std::fwrite(v.data(), sizeof(float), v.size(), values);
  }
  // Three pairs with padding (lengths below S and T) so the masks are checked too.
  const int64_t B = 3, S = 7, T = 6;
  const int32_t src_len[B] = {7, 4, 2}, tgt_len[B] = {6, 3, 5};
  std::vector<int32_t> src(B * S, 1), tgt_in(B * T, 1), tgt_out(B * T, 1);
  TokenStream tokens{99};
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t + 1 < src_len[b]; ++t) src[b * S + t] = tokens.next(o.vocab);
    src[b * S + src_len[b] - 1] = 2;
    tgt_in[b * T] = 0;
    for (int64_t t = 0; t + 1 < tgt_len[b]; ++t) tgt_in[b * T + t + 1] = tgt_out[b * T + t] = tokens.next(o.vocab);
    tgt_out[b * T + tgt_len[b] - 1] = 2;
  }
  fwp_seq2seq_batch batch{src.data(), src_len, tgt_in.data(), tgt_out.data(), tgt_len, B, S, T};
  fwp_seq2seq_loss loss;
  check(fwp_seq2seq_evaluate(model, &batch, &loss), "fwp_seq2seq_evaluate");
  auto ids = [&](const char* key, const int32_t* p, int64_t n) {
    std::fprintf(out, "%s", key);
    for (int64_t i = 0; i < n; ++i) std::fprintf(out, " %d", p[i]);
    std::fprintf(out, "\n");
  };
  std::fprintf(out, "shape %lld %lld %lld\n", static_cast<long long>(B), static_cast<long long>(S),
               static_cast<long long>(T));
  ids("src", src.data(), B * S);
  ids("src_len", src_len, B);
  ids("tgt_in", tgt_in.data(), B * T);
  ids("tgt_out", tgt_out.data(), B * T);
  ids("tgt_len", tgt_len, B);
  std::fprintf(out, "loss %.9g\nnll %.9g\ntokens %lld\n", loss.loss_sum, loss.nll_sum,
               static_cast<long long>(loss.tokens));
  for (int64_t beam : {int64_t{1}, int64_t{4}}) {
    fwp_seq2seq_search_config sc;
    fwp_seq2seq_search_config_init(&sc);
    sc.beam_size = beam;
    const int64_t cap = static_cast<int64_t>(std::floor(sc.max_len_a * S + sc.max_len_b));
    std::vector<int32_t> res(static_cast<size_t>(B * cap));
    std::vector<int64_t> lens(B);
    std::vector<float> scores(B);
    check(fwp_seq2seq_translate(model, src.data(), src_len, B, S, &sc, res.data(), cap, lens.data(), scores.data()),
          "fwp_seq2seq_translate");
    for (int64_t b = 0; b < B; ++b) {
      std::fprintf(out, "beam%lld %.9g", static_cast<long long>(beam), scores[b]);
      for (int64_t i = 0; i < lens[b]; ++i) std::fprintf(out, " %d", res[b * cap + i]);
      std::fprintf(out, "\n");
    }
  }
  std::fclose(names);
  std::fclose(values);
  std::fclose(out);
}

struct TranslateResult {
  int64_t beam;
  double ms, cpu_ms, sentences_per_s;
};

struct GrowthRow {
  int64_t beam, length;
  double ms, cpu_ms;        // best of the repeats (by CPU time), the whole translation
  double ms_per_token;      // marginal CPU ms: since the previous length (from 0 for the first)
  double wall_per_token;    // the same from the wall time
};

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    fwp_context_config cc;
    fwp_context_config_init(&cc);
    cc.num_threads = o.threads;
    cc.device = o.device == "cuda" ? FWP_DEVICE_CUDA : FWP_DEVICE_CPU;
    fwp_context* ctx = nullptr;
    check(fwp_context_create(&cc, &ctx), "fwp_context_create");
    int32_t threads = 0;
    check(fwp_context_get_num_threads(ctx, &threads), "fwp_context_get_num_threads");
    const fwp_seq2seq_config config = make_config(o);
    fwp_model* model = nullptr;
    check(fwp_seq2seq_create(ctx, &config, &model), "fwp_seq2seq_create");
    const int64_t params = count_params(model);
    if (!o.dump.empty()) {
      dump(model, o);
      std::printf("wrote %s/params.txt, params.bin, check.txt\n", o.dump.c_str());
      fwp_model_destroy(model);
      fwp_context_destroy(ctx);
      return 0;
    }

    if (!o.json) {
      std::printf("fwp %s: translation model on %s, attention %s, %d thread(s); %lld+%lld layers, d_model %lld, "
                  "heads %lld x %lld, d_ff %lld, vocab %lld (tied), post-LN; %lld parameters\n",
                  fwp_version_string(), o.device.c_str(), o.attention.c_str(), threads, static_cast<long long>(o.encoder_layers),
                  static_cast<long long>(o.decoder_layers), static_cast<long long>(o.d_model),
                  static_cast<long long>(o.heads), static_cast<long long>(o.d_head), static_cast<long long>(o.d_ff),
                  static_cast<long long>(o.vocab), static_cast<long long>(params));
      std::fflush(stdout);
    }

    // 1. Training.
    const TrainResult tr = train(model, o);
    if (!o.json) {
      std::printf("training, batch %lld x (%lld source + %lld target), %d steps after %d warm-up: mean step %.1f ms "
                  "(median %.1f, best %.1f): forward %.1f, backward %.1f, Adam %.1f; CPU %.1f ms/step; loss %.3f "
                  "(ln V = %.3f); %.0f tokens/s\n",
                  static_cast<long long>(o.batch), static_cast<long long>(o.src_len),
                  static_cast<long long>(o.tgt_len), o.steps, o.warmup, tr.step_ms, tr.median_ms, tr.best_ms,
                  tr.fwd_ms, tr.bwd_ms, tr.opt_ms, tr.cpu_ms, tr.loss, std::log(static_cast<double>(o.vocab)),
                  tr.tokens_per_s);
      std::fflush(stdout);
    }

    // 2. Translation of N sources, beam 4 and greedy (a one-sentence warm-up first).
    check(fwp_model_set_training(model, 0), "fwp_model_set_training");
    TokenStream tokens{777};
    std::vector<int32_t> src, src_len;
    make_sources(tokens, o.vocab, o.sentences, o.src_len, src, src_len);
    translate(model, src, src_len, 1, o.src_len, 4, o.out_len, nullptr);
    std::vector<TranslateResult> trans;
    for (int64_t beam : {int64_t{4}, int64_t{1}}) {
      TranslateResult t{beam, 0, 0, 0};
      t.ms = translate(model, src, src_len, o.sentences, o.src_len, beam, o.out_len, &t.cpu_ms);
      t.sentences_per_s = static_cast<double>(o.sentences) / (t.ms / 1e3);
      trans.push_back(t);
      if (!o.json) {
        std::printf("translate %lld sources of %lld tokens, beam %lld, outputs forced to %lld tokens: %.1f ms "
                    "(CPU %.1f ms): %.1f sentences/s\n",
                    static_cast<long long>(o.sentences), static_cast<long long>(o.src_len),
                    static_cast<long long>(beam), static_cast<long long>(o.out_len), t.ms, t.cpu_ms,
                    t.sentences_per_s);
        std::fflush(stdout);
      }
    }

    // 3. Cost per output token as the output grows: one sentence, forced lengths.
    std::vector<GrowthRow> growth;
    for (int64_t beam : {int64_t{4}, int64_t{1}}) {
      double prev_ms = 0, prev_cpu = 0;
      int64_t prev_len = 0;
      for (int64_t len : o.growth) {
        double best = 0, best_cpu = 0;
        for (int r = 0; r < o.growth_repeats; ++r) {
          double cpu = 0;
          const double ms = translate(model, src, src_len, 1, o.src_len, beam, len, &cpu);
          if (r == 0 || cpu < best_cpu) {
            best = ms;
            best_cpu = cpu;
          }
        }
        const auto step = static_cast<double>(len - prev_len);
        growth.push_back({beam, len, best, best_cpu, (best_cpu - prev_cpu) / step, (best - prev_ms) / step});
        prev_ms = best;
        prev_cpu = best_cpu;
        prev_len = len;
      }
    }

    if (o.json) {
      std::printf("{\"impl\": \"fwp\", \"version\": \"%s\", \"device\": \"%s\", \"attention\": \"%s\", \"threads\": %d, \"params\": %lld,\n",
                  fwp_version_string(), o.device.c_str(), o.attention.c_str(), threads, static_cast<long long>(params));
      std::printf(" \"model\": {\"encoder_layers\": %lld, \"decoder_layers\": %lld, \"d_model\": %lld, \"heads\": %lld, "
                  "\"d_head\": %lld, \"d_ff\": %lld, \"vocab\": %lld},\n",
                  static_cast<long long>(o.encoder_layers), static_cast<long long>(o.decoder_layers),
                  static_cast<long long>(o.d_model), static_cast<long long>(o.heads), static_cast<long long>(o.d_head),
                  static_cast<long long>(o.d_ff), static_cast<long long>(o.vocab));
      std::printf(" \"train\": {\"batch\": %lld, \"src_len\": %lld, \"tgt_len\": %lld, \"steps\": %d, \"step_ms\": %.3f, "
                  "\"median_ms\": %.3f, \"fwd_ms\": %.3f, \"bwd_ms\": %.3f, \"opt_ms\": %.3f, \"cpu_ms\": %.3f, "
                  "\"tokens_per_s\": %.1f, \"loss\": %.4f},\n",
                  static_cast<long long>(o.batch), static_cast<long long>(o.src_len),
                  static_cast<long long>(o.tgt_len), o.steps, tr.step_ms, tr.median_ms, tr.fwd_ms, tr.bwd_ms,
                  tr.opt_ms, tr.cpu_ms, tr.tokens_per_s, tr.loss);
      std::printf(" \"translate\": [");
      for (size_t i = 0; i < trans.size(); ++i)
        std::printf("%s{\"beam\": %lld, \"sentences\": %lld, \"out_len\": %lld, \"ms\": %.3f, \"cpu_ms\": %.3f, "
                    "\"sentences_per_s\": %.2f}",
                    i ? ", " : "", static_cast<long long>(trans[i].beam), static_cast<long long>(o.sentences),
                    static_cast<long long>(o.out_len), trans[i].ms, trans[i].cpu_ms, trans[i].sentences_per_s);
      std::printf("],\n \"growth\": [");
      for (size_t i = 0; i < growth.size(); ++i)
        std::printf("%s{\"beam\": %lld, \"length\": %lld, \"ms\": %.3f, \"cpu_ms\": %.3f, \"ms_per_token\": %.4f, "
                    "\"wall_ms_per_token\": %.4f}",
                    i ? ", " : "", static_cast<long long>(growth[i].beam), static_cast<long long>(growth[i].length),
                    growth[i].ms, growth[i].cpu_ms, growth[i].ms_per_token, growth[i].wall_per_token);
      std::printf("]}\n");
    } else {
      std::printf("\ndecoding one sentence: CPU ms of the whole translation and CPU ms per output token since the "
                  "previous forced length (best of %d by CPU time; wall ms/token in brackets)\n",
                  o.growth_repeats);
      std::printf("| output length | beam 4 CPU ms | ms/token | greedy CPU ms | ms/token |\n|---|---|---|---|---|\n");
      const size_t n = o.growth.size();
      for (size_t i = 0; i < n; ++i)
        std::printf("| %lld | %.1f | %.3f (%.3f) | %.1f | %.3f (%.3f) |\n", static_cast<long long>(o.growth[i]),
                    growth[i].cpu_ms, growth[i].ms_per_token, growth[i].wall_per_token, growth[n + i].cpu_ms,
                    growth[n + i].ms_per_token, growth[n + i].wall_per_token);
    }
    // The lines bench/mt_compare.sh reads (also after --json, which it does not use).
    if (!o.json) {
      std::printf("RESULT kind=train impl=fwp attention=%s params=%lld tokens_per_s=%.1f step_ms=%.2f cpu_ms=%.2f "
                  "threads=%d\n",
                  o.attention.c_str(), static_cast<long long>(params), tr.tokens_per_s, tr.step_ms, tr.cpu_ms,
                  threads);
      for (const auto& t : trans)
        std::printf("RESULT kind=translate beam=%lld sentences_per_s=%.2f ms=%.2f cpu_ms=%.2f\n",
                    static_cast<long long>(t.beam), t.sentences_per_s, t.ms, t.cpu_ms);
      for (const auto& g : growth)
        std::printf("RESULT kind=growth beam=%lld length=%lld ms=%.2f cpu_ms=%.2f ms_per_token=%.4f "
                    "wall_ms_per_token=%.4f\n",
                    static_cast<long long>(g.beam), static_cast<long long>(g.length), g.ms, g.cpu_ms, g.ms_per_token,
                    g.wall_per_token);
    }
    fwp_model_destroy(model);
    fwp_context_destroy(ctx);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fwp_bench_mt: %s\n", e.what());
    return 1;
  }
  return 0;
}
