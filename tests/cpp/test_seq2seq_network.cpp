// The translation network (models/seq2seq/seq2seq_network.h), in double on the
// CPU: gradients against central differences through padded batches, a padded
// batch against its pairs one by one, label smoothing, incremental decoding
// against the full forward, state reordering, a copy task trained with Adam,
// config validation, and float against double.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/error.h"
#include "core/rng.h"
#include "models/seq2seq/beam_search.h"
#include "models/seq2seq/network_decoder.h"
#include "models/seq2seq/seq2seq_config.h"
#include "models/seq2seq/seq2seq_network.h"
#include "train/optimizer.h"
#include "expect_error.h"

namespace fwp {
namespace {

constexpr int32_t kBos = 0, kPad = 1, kEos = 2;

using fwp::test::expect_error;

enum class Kind { Linear, Softmax, DeltaDecoder, Dpfp, Favor };

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Linear: return "linear";
    case Kind::Softmax: return "softmax";
    case Kind::DeltaDecoder: return "delta-decoder";
    case Kind::Dpfp: return "dpfp";
    case Kind::Favor: return "favor";
  }
  return "?";
}

void make_softmax(NonCausalAttentionConfig& c) {
  c.softmax = true;
  c.attn_normalize = false;
  c.sum_normalize = false;
  c.scale_output = false;
}

// A tiny translation network: vocabulary 9 (bos 0, pad 1, eos 2), d_model 8, 2 heads of 4, d_ff 12,
// 2 + 2 layers, dropout off.
Seq2SeqConfig tiny(Kind kind, bool pre_norm = false, bool tied = true, double smoothing = 0.1) {
  Seq2SeqConfig c;
  c.vocab_size = 9;
  c.pad_id = kPad;
  c.bos_id = kBos;
  c.eos_id = kEos;
  c.encoder_layers = 2;
  c.decoder_layers = 2;
  c.set_sizes(8, 2, 4);
  c.d_ff = 12;
  c.dropout = 0.0;
  c.label_smoothing = smoothing;
  c.pre_norm = pre_norm;
  c.tie_embeddings = tied;
  c.init_std = 0.4;
  c.encoder_attention.init_std = c.cross_attention.init_std = c.decoder_attention.init_std = 0.4;
  switch (kind) {
    case Kind::Linear: break;  // the defaults: the paper's linear (elu + 1, normalised) attention everywhere
    case Kind::Softmax:
      make_softmax(c.encoder_attention);
      make_softmax(c.cross_attention);
      c.decoder_attention.softmax = true;
      c.decoder_attention.attn_normalize = false;
      c.decoder_attention.sum_normalize = false;
      c.decoder_attention.update_rule = UpdateRule::Sum;
      break;
    case Kind::DeltaDecoder:
      c.decoder_attention.update_rule = UpdateRule::Delta;
      c.decoder_attention.feature_map = FeatureMap::Dpfp;
      c.decoder_attention.sum_normalize = true;
      break;
    case Kind::Dpfp:
      c.encoder_attention.feature_map = FeatureMap::Dpfp;
      c.cross_attention.feature_map = FeatureMap::Dpfp;
      c.decoder_attention.feature_map = FeatureMap::Dpfp;
      break;
    case Kind::Favor:  // the Performer; fixed projections, so the loss is a function of the parameters
      c.encoder_attention.feature_map = c.cross_attention.feature_map = FeatureMap::Favor;
      c.encoder_attention.favor_features = c.cross_attention.favor_features = 5;
      c.decoder_attention.feature_map = FeatureMap::Favor;
      c.decoder_attention.favor_features = 5;
      c.decoder_attention.favor_redraw = false;
      c.favor_redraw = false;
      break;
  }
  return c;
}

template <typename T = double>
std::unique_ptr<Seq2SeqNetwork<T>> make_net(const Seq2SeqConfig& c, uint64_t seed = 7) {
  return std::make_unique<Seq2SeqNetwork<T>>(c, make_cpu_backend<T>(1), Rng(seed));
}

// Pairs as data/pair_data.h feeds them: src = x + eos, tgt_in = bos + y, tgt_out = y + eos, right-padded.
struct Batch {
  std::vector<int32_t> src, src_len, tgt_in, tgt_out, tgt_len;
  int64_t B = 0, S = 0, T = 0;
  Seq2SeqBatch view() const {
    Seq2SeqBatch b;
    b.src = src.data();
    b.src_lengths = src_len.data();
    b.tgt_in = tgt_in.data();
    b.tgt_out = tgt_out.data();
    b.tgt_lengths = tgt_len.data();
    b.batch = B;
    b.src_length = S;
    b.tgt_length = T;
    return b;
  }
};

using Pair = std::pair<std::vector<int32_t>, std::vector<int32_t>>;

Batch make_batch(const std::vector<Pair>& pairs) {
  Batch b;
  b.B = static_cast<int64_t>(pairs.size());
  for (const Pair& p : pairs) {
    b.S = std::max<int64_t>(b.S, static_cast<int64_t>(p.first.size()) + 1);
    b.T = std::max<int64_t>(b.T, static_cast<int64_t>(p.second.size()) + 1);
  }
  b.src.assign(static_cast<size_t>(b.B * b.S), kPad);
  b.tgt_in.assign(static_cast<size_t>(b.B * b.T), kPad);
  b.tgt_out.assign(static_cast<size_t>(b.B * b.T), kPad);
  for (int64_t r = 0; r < b.B; ++r) {
    const Pair& p = pairs[static_cast<size_t>(r)];
    const int64_t n = static_cast<int64_t>(p.first.size()), m = static_cast<int64_t>(p.second.size());
    for (int64_t i = 0; i < n; ++i) b.src[static_cast<size_t>(r * b.S + i)] = p.first[static_cast<size_t>(i)];
    b.src[static_cast<size_t>(r * b.S + n)] = kEos;
    b.tgt_in[static_cast<size_t>(r * b.T)] = kBos;
    for (int64_t i = 0; i < m; ++i) {
      b.tgt_in[static_cast<size_t>(r * b.T + i + 1)] = p.second[static_cast<size_t>(i)];
      b.tgt_out[static_cast<size_t>(r * b.T + i)] = p.second[static_cast<size_t>(i)];
    }
    b.tgt_out[static_cast<size_t>(r * b.T + m)] = kEos;
    b.src_len.push_back(static_cast<int32_t>(n + 1));
    b.tgt_len.push_back(static_cast<int32_t>(m + 1));
  }
  return b;
}

std::vector<int32_t> random_words(Rng& rng, int64_t n, int64_t vocab) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = static_cast<int32_t>(3 + rng.below(static_cast<uint64_t>(vocab - 3)));
  return v;
}

// Three pairs of different lengths (so both sides are padded).
std::vector<Pair> padded_pairs(uint64_t seed = 3) {
  Rng rng(seed);
  return {{random_words(rng, 4, 9), random_words(rng, 2, 9)},
          {random_words(rng, 2, 9), random_words(rng, 4, 9)},
          {random_words(rng, 3, 9), random_words(rng, 3, 9)}};
}

// The worst relative error of up to `per_tensor` entries of every trainable parameter against central
// differences of the summed smoothed loss.
double gradient_error(Seq2SeqNetwork<double>& net, const Batch& batch, int64_t per_tensor, std::string* worst) {
  ParameterList<double>& params = net.params();
  params.zero_grad();
  net.forward(batch.view());
  net.backward(1.0);
  double err = 0.0;
  for (int64_t p = 0; p < params.size(); ++p) {
    Parameter<double>& par = params[p];
    if (!par.trainable) continue;
    const int64_t n = par.numel(), stride = std::max<int64_t>(1, n / per_tensor);
    for (int64_t i = 0; i < n; i += stride) {
      double* v = par.value.data() + i;
      const double saved = *v, h = 1e-6;
      *v = saved + h;
      const double lp = net.forward(batch.view()).loss_sum;
      *v = saved - h;
      const double lm = net.forward(batch.view()).loss_sum;
      *v = saved;
      const double numeric = (lp - lm) / (2 * h), analytic = par.grad.data()[i];
      const double e = std::abs(numeric - analytic) / std::max(1e-3, std::abs(numeric));
      if (e > err) {
        err = e;
        if (worst)
          *worst = par.name + "[" + std::to_string(i) + "] analytic " + std::to_string(analytic) + " numeric " +
                   std::to_string(numeric);
      }
    }
  }
  return err;
}

TEST(Seq2SeqGradient, EveryParameterMatchesCentralDifferencesWithPadding) {
  struct Case {
    Kind kind;
    bool pre_norm, tied;
  };
  for (const Case& c : {Case{Kind::Linear, false, true}, Case{Kind::Softmax, false, true},
                        Case{Kind::DeltaDecoder, false, true}, Case{Kind::Linear, true, false},
                        Case{Kind::Softmax, true, true}, Case{Kind::Dpfp, false, false},
                        Case{Kind::Favor, false, false}}) {
    SCOPED_TRACE(std::string(kind_name(c.kind)) + (c.pre_norm ? " pre-LN" : " post-LN") +
                 (c.tied ? " tied" : " untied"));
    auto net = make_net(tiny(c.kind, c.pre_norm, c.tied));
    const Batch batch = make_batch(padded_pairs());
    std::string worst;
    EXPECT_LT(gradient_error(*net, batch, 12, &worst), 1e-5) << worst;
    // Padded positions hold the pad id and nothing else does: untied, its embedding row gets no
    // gradient (tied, the row is also pad's output weight, which every softmax row touches).
    if (c.tied) continue;
    net->params().zero_grad();
    net->forward(batch.view());
    net->backward(1.0);
    const Parameter<double>& emb = net->params()[net->params().find("embedding.weight")];
    for (int64_t j = 0; j < 8; ++j) EXPECT_EQ(emb.grad.data()[kPad * 8 + j], 0.0) << j;
  }
}

TEST(Seq2SeqPadding, PaddedBatchEqualsPairsOneByOne) {
  for (Kind kind : {Kind::Linear, Kind::Softmax, Kind::DeltaDecoder}) {
    for (bool pre_norm : {false, true}) {
      SCOPED_TRACE(std::string(kind_name(kind)) + (pre_norm ? " pre-LN" : " post-LN"));
      auto net = make_net(tiny(kind, pre_norm));
      const std::vector<Pair> pairs = padded_pairs(11);
      ParameterList<double>& params = net->params();
      params.zero_grad();
      const Seq2SeqLoss all = net->forward(make_batch(pairs).view());
      net->backward(1.0);
      std::vector<double> grad_all(params.grad_block(), params.grad_block() + params.block_size());
      params.zero_grad();
      Seq2SeqLoss sum;
      for (const Pair& p : pairs) {
        const Seq2SeqLoss one = net->forward(make_batch({p}).view());
        net->backward(1.0);
        sum.loss_sum += one.loss_sum;
        sum.nll_sum += one.nll_sum;
        sum.tokens += one.tokens;
      }
      EXPECT_EQ(all.tokens, sum.tokens);
      EXPECT_EQ(all.tokens, 3 + 5 + 4);  // every target word and eos, no pad
      EXPECT_NEAR(all.loss_sum, sum.loss_sum, 1e-10 * std::abs(sum.loss_sum));
      EXPECT_NEAR(all.nll_sum, sum.nll_sum, 1e-10 * std::abs(sum.nll_sum));
      double worst = 0.0;
      for (int64_t i = 0; i < params.block_size(); ++i)
        worst = std::max(worst, std::abs(grad_all[static_cast<size_t>(i)] - params.grad_block()[i]));
      EXPECT_LT(worst, 1e-10);
    }
  }
}

TEST(Seq2SeqLoss, LabelSmoothingZeroIsTheNll) {
  const Batch batch = make_batch(padded_pairs());
  auto plain = make_net(tiny(Kind::Linear, false, true, 0.0));
  const Seq2SeqLoss a = plain->forward(batch.view());
  EXPECT_DOUBLE_EQ(a.loss_sum, a.nll_sum);
  EXPECT_GT(a.nll_sum, 0.0);
  // The same parameters with smoothing: the same nll, a different (smoothed) loss.
  auto smoothed = make_net(tiny(Kind::Linear, false, true, 0.2));
  const Seq2SeqLoss b = smoothed->forward(batch.view());
  EXPECT_NEAR(b.nll_sum, a.nll_sum, 1e-12 * a.nll_sum);
  EXPECT_GT(std::abs(b.loss_sum - b.nll_sum), 1e-6);
  EXPECT_EQ(a.tokens, b.tokens);
}

// log_softmax of every row of logits [rows][V].
std::vector<double> log_softmax(const std::vector<double>& logits, int64_t V) {
  std::vector<double> out(logits.size());
  for (size_t r = 0; r < logits.size() / static_cast<size_t>(V); ++r) {
    const double* row = logits.data() + r * V;
    const double mx = *std::max_element(row, row + V);
    double s = 0.0;
    for (int64_t v = 0; v < V; ++v) s += std::exp(row[v] - mx);
    for (int64_t v = 0; v < V; ++v) out[r * V + v] = row[v] - mx - std::log(s);
  }
  return out;
}

TEST(Seq2SeqDecoding, StepByStepEqualsTheFullForward) {
  for (Kind kind : {Kind::Linear, Kind::Softmax, Kind::DeltaDecoder, Kind::Dpfp, Kind::Favor}) {
    for (bool pre_norm : {false, true}) {
      SCOPED_TRACE(std::string(kind_name(kind)) + (pre_norm ? " pre-LN" : " post-LN"));
      auto net = make_net(tiny(kind, pre_norm));
      net->set_training(false);
      const Batch batch = make_batch(padded_pairs(5));
      const int64_t V = 9;
      std::vector<double> logits(static_cast<size_t>(batch.B * batch.T * V));
      net->forward(batch.view(), logits.data());
      const std::vector<double> full = log_softmax(logits, V);
      Seq2SeqDecodeState<double> state = net->encode(batch.src.data(), batch.src_len.data(), batch.B, batch.S);
      std::vector<double> lp(static_cast<size_t>(batch.B * V));
      double worst = 0.0;
      for (int64_t t = 0; t < batch.T; ++t) {
        std::vector<int32_t> tokens(static_cast<size_t>(batch.B));
        for (int64_t b = 0; b < batch.B; ++b) tokens[static_cast<size_t>(b)] = batch.tgt_in[static_cast<size_t>(b * batch.T + t)];
        net->step(tokens.data(), state, lp.data());
        for (int64_t b = 0; b < batch.B; ++b) {
          if (t >= batch.tgt_len[static_cast<size_t>(b)]) continue;  // padded in the full forward
          for (int64_t v = 0; v < V; ++v)
            worst = std::max(worst, std::abs(lp[static_cast<size_t>(b * V + v)] -
                                             full[static_cast<size_t>((b * batch.T + t) * V + v)]));
        }
      }
      EXPECT_LT(worst, 1e-10);
      for (int64_t p : state.positions) EXPECT_EQ(p, batch.T);
    }
  }
}

TEST(Seq2SeqDecoding, ReorderSwapsAndExpandsRows) {
  for (Kind kind : {Kind::Linear, Kind::Softmax, Kind::DeltaDecoder}) {
    SCOPED_TRACE(kind_name(kind));
    auto net = make_net(tiny(kind));
    net->set_training(false);
    const Batch batch = make_batch({padded_pairs(9)[0], padded_pairs(9)[1]});
    const int64_t V = 9;
    auto steps = [&](Seq2SeqDecodeState<double>& st, const std::vector<std::vector<int32_t>>& tokens) {
      std::vector<double> lp(static_cast<size_t>(st.rows() * V));
      for (const auto& tk : tokens) net->step(tk.data(), st, lp.data());
      return lp;
    };
    auto reference = net->encode(batch.src.data(), batch.src_len.data(), 2, batch.S);
    const std::vector<double> ref = steps(reference, {{kBos, kBos}, {5, 6}, {7, 8}});
    // Rows compared to rounding (a different row count may change the GEMM's summation order).
    auto same_row = [&](const std::vector<double>& a, int64_t ra, const std::vector<double>& b, int64_t rb) {
      double worst = 0.0;
      for (int64_t v = 0; v < V; ++v)
        worst = std::max(worst, std::abs(a[static_cast<size_t>(ra * V + v)] - b[static_cast<size_t>(rb * V + v)]));
      return worst < 1e-12;
    };
    // Swap after two steps.
    auto swapped = net->encode(batch.src.data(), batch.src_len.data(), 2, batch.S);
    steps(swapped, {{kBos, kBos}, {5, 6}});
    const int64_t swap[] = {1, 0};
    net->reorder(swapped, swap, 2);
    const std::vector<double> s = steps(swapped, {{8, 7}});
    EXPECT_TRUE(same_row(s, 0, ref, 1));
    EXPECT_TRUE(same_row(s, 1, ref, 0));
    // Expand two sentences into three rows before the first step (as a beam search starts).
    auto expanded = net->encode(batch.src.data(), batch.src_len.data(), 2, batch.S);
    const int64_t expand[] = {0, 1, 1};
    net->reorder(expanded, expand, 3);
    const std::vector<double> e = steps(expanded, {{kBos, kBos, kBos}, {5, 6, 6}, {7, 8, 8}});
    EXPECT_TRUE(same_row(e, 0, ref, 0));
    EXPECT_TRUE(same_row(e, 1, ref, 1));
    EXPECT_TRUE(same_row(e, 2, ref, 1));
    const int64_t bad[] = {0, 3};
    expect_error(FWP_ERR_OUT_OF_RANGE, "parents[1]", [&] { net->reorder(expanded, bad, 2); });
  }
}

// Target = source: the linear model learns to copy with Adam in a few hundred steps.
TEST(Seq2SeqTraining, CopyTaskTrainsToNearZeroLoss) {
  Seq2SeqConfig c;
  c.vocab_size = 10;
  c.encoder_layers = 1;
  c.decoder_layers = 1;
  c.set_sizes(32, 4, 8);
  c.d_ff = 64;
  c.dropout = 0.0;
  c.label_smoothing = 0.0;
  // A larger init than the paper's 0.02 (which suits d_model 1024): at d_model 32 the tokens'
  // embeddings would start far below the position encodings and learning starts slowly.
  c.init_std = c.encoder_attention.init_std = c.cross_attention.init_std = c.decoder_attention.init_std = 0.1;
  auto net = make_net<float>(c, 1);
  OptimizerConfig oc;
  oc.learning_rate = 5e-3;
  Optimizer opt(net->backend(), net->params(), oc);
  Rng rng(21);
  double first = 0.0, recent = 0.0;  // mean nll per token: the first step, the last 20 steps
  const int kSteps = 500;
  for (int step = 0; step < kSteps; ++step) {
    std::vector<Pair> pairs;
    for (int i = 0; i < 16; ++i) {
      const auto x = random_words(rng, 2 + static_cast<int64_t>(rng.below(4)), c.vocab_size);
      pairs.push_back({x, x});
    }
    const Batch batch = make_batch(pairs);
    opt.zero_grad();
    const Seq2SeqLoss loss = net->forward(batch.view());
    net->backward(1.0 / static_cast<double>(loss.tokens));
    opt.step();
    const double nll = loss.nll_sum / static_cast<double>(loss.tokens);
    if (step == 0) first = nll;
    if (step >= kSteps - 20) recent += nll / 20.0;
  }
  EXPECT_GT(first, 1.5);  // chance: about ln 7 per word
  EXPECT_LT(recent, 0.05) << "mean nll per token over the last 20 of " << kSteps << " steps";

  // The trained network translates through the beam search (seq2seq/network_decoder.h):
  // greedy and a beam of 4 copy unseen sources of several lengths, one batch.
  net->set_training(false);
  std::vector<Pair> pairs;
  for (int64_t n : {2, 5, 3, 4}) {
    const auto x = random_words(rng, n, c.vocab_size);
    pairs.push_back({x, x});
  }
  const Batch batch = make_batch(pairs);
  std::vector<int64_t> source_lengths;
  for (const Pair& p : pairs) source_lengths.push_back(static_cast<int64_t>(p.first.size()));
  seq2seq::BeamSearchOptions options;
  options.bos_id = kBos;
  options.eos_id = kEos;
  options.pad_id = kPad;
  options.max_len_a = 1.0;
  options.max_len_b = 3.0;
  seq2seq::NetworkStepDecoder<float> greedy_decoder(*net, net->encode(batch.src.data(), batch.src_len.data(), batch.B, batch.S));
  const auto greedy = seq2seq::greedy_search(greedy_decoder, source_lengths, options);
  seq2seq::NetworkStepDecoder<float> beam_decoder(*net, net->encode(batch.src.data(), batch.src_len.data(), batch.B, batch.S));
  options.beam_size = 4;
  const auto beams = seq2seq::beam_search(beam_decoder, source_lengths, options);
  ASSERT_EQ(greedy.size(), pairs.size());
  ASSERT_EQ(beams.size(), pairs.size());
  for (size_t i = 0; i < pairs.size(); ++i) {
    EXPECT_EQ(greedy[i].tokens, pairs[i].first) << "greedy, sentence " << i;
    ASSERT_FALSE(beams[i].empty());
    EXPECT_EQ(beams[i][0].tokens, pairs[i].first) << "beam 4, sentence " << i;
  }
}

TEST(Seq2SeqConfigCheck, BadFieldsAreNamed) {
  auto bad = [](const std::string& field, auto&& edit) {
    Seq2SeqConfig c = tiny(Kind::Linear);
    edit(c);
    expect_error(FWP_ERR_INVALID_ARGUMENT, "config->" + field, [&] { make_net(c); });
  };
  bad("vocab_size", [](Seq2SeqConfig& c) { c.vocab_size = 2; });
  bad("pad_id", [](Seq2SeqConfig& c) { c.pad_id = c.eos_id; });
  bad("bos_id", [](Seq2SeqConfig& c) { c.bos_id = 9; });
  bad("eos_id", [](Seq2SeqConfig& c) { c.eos_id = -1; });
  bad("encoder_layers", [](Seq2SeqConfig& c) { c.encoder_layers = 0; });
  bad("decoder_layers", [](Seq2SeqConfig& c) { c.decoder_layers = 0; });
  bad("d_ff", [](Seq2SeqConfig& c) { c.d_ff = 0; });
  bad("dropout", [](Seq2SeqConfig& c) { c.dropout = 1.0; });
  bad("label_smoothing", [](Seq2SeqConfig& c) { c.label_smoothing = -0.1; });
  bad("init_std", [](Seq2SeqConfig& c) { c.init_std = 0.0; });
  bad("decoder_attention.d_model", [](Seq2SeqConfig& c) { c.decoder_attention.d_model = 16; });
  bad("cross_attention.d_model", [](Seq2SeqConfig& c) { c.cross_attention.d_model = 16; });
  bad("encoder_attention.num_heads", [](Seq2SeqConfig& c) { c.encoder_attention.num_heads = 0; });
  bad("decoder_attention.attn_normalize", [](Seq2SeqConfig& c) { c.decoder_attention.softmax = true; });
  bad("cross_attention.", [](Seq2SeqConfig& c) { c.cross_attention.softmax = true; });
}

TEST(Seq2SeqConfigCheck, DefaultsAreThePapersLinearModel) {
  Seq2SeqConfig c;
  c.vocab_size = 32000;
  EXPECT_NO_THROW(c.validate());
  EXPECT_EQ(c.d_model(), 1024);
  EXPECT_FALSE(c.encoder_attention.softmax || c.cross_attention.softmax || c.decoder_attention.softmax);
  EXPECT_EQ(c.decoder_attention.update_rule, UpdateRule::Sum);
  EXPECT_TRUE(c.tie_embeddings);
  EXPECT_FALSE(c.pre_norm);
}

TEST(Seq2SeqChecks, BadBatchesAndCallsAreRefused) {
  auto net = make_net(tiny(Kind::Linear));
  expect_error(FWP_ERR_BAD_STATE, "backward needs a forward", [&] { net->backward(1.0); });
  Batch batch = make_batch(padded_pairs());
  Batch b1 = batch;
  b1.src[1] = 9;
  expect_error(FWP_ERR_OUT_OF_RANGE, "src[1]", [&] { net->forward(b1.view()); });
  Batch b2 = batch;
  b2.tgt_len[2] = static_cast<int32_t>(batch.T + 1);
  expect_error(FWP_ERR_INVALID_ARGUMENT, "tgt_lengths[2]", [&] { net->forward(b2.view()); });
  Batch b3 = batch;
  b3.src_len[0] = 0;
  expect_error(FWP_ERR_INVALID_ARGUMENT, "src_lengths[0]", [&] { net->forward(b3.view()); });
  Batch b4 = batch;
  std::fill(b4.tgt_out.begin(), b4.tgt_out.end(), kPad);
  expect_error(FWP_ERR_INVALID_ARGUMENT, "no target", [&] { net->forward(b4.view()); });
  auto state = net->encode(batch.src.data(), batch.src_len.data(), batch.B, batch.S);
  const int32_t tokens[] = {kBos, kBos, 12};
  expect_error(FWP_ERR_OUT_OF_RANGE, "tokens[2]", [&] { net->step(tokens, state, nullptr); });
}

TEST(Seq2SeqPrecision, FloatMatchesDouble) {
  for (Kind kind : {Kind::Linear, Kind::Softmax}) {
    SCOPED_TRACE(kind_name(kind));
    const Seq2SeqConfig c = tiny(kind, false, true);
    auto d = make_net<double>(c);
    auto f = make_net<float>(c);
    // The same parameters in both (float: the double values rounded).
    for (int64_t p = 0; p < d->params().size(); ++p) {
      const auto host = d->params()[p].value.to_host();
      std::vector<float> as_float(host.begin(), host.end());
      f->params()[f->params().find(d->params()[p].name)].value.from_host(as_float.data(), static_cast<int64_t>(host.size()));
    }
    const Batch batch = make_batch(padded_pairs());
    const Seq2SeqLoss ld = d->forward(batch.view());
    const Seq2SeqLoss lf = f->forward(batch.view());
    EXPECT_NEAR(lf.loss_sum, ld.loss_sum, 1e-4 * std::abs(ld.loss_sum));
    d->params().zero_grad();
    f->params().zero_grad();
    d->backward(1.0);
    f->backward(1.0);
    double scale = 0.0, worst = 0.0;
    for (int64_t p = 0; p < d->params().size(); ++p) {
      const auto gd = d->params()[p].grad.to_host();
      const auto gf = f->params()[f->params().find(d->params()[p].name)].grad.to_host();
      for (size_t i = 0; i < gd.size(); ++i) {
        scale = std::max(scale, std::abs(gd[i]));
        worst = std::max(worst, std::abs(gd[i] - static_cast<double>(gf[i])));
      }
    }
    EXPECT_LT(worst, 1e-3 * scale);
  }
}

}  // namespace
}  // namespace fwp
