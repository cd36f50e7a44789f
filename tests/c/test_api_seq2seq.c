/* C API contract of the translation model (fwp/seq2seq.h): config init, presets and the
 * create / get_config round trip; every argument check (status + a message naming the field);
 * a copy task trained with Adam, then translated by greedy and beam search (greedy == the
 * argmax path, read off teacher-forced losses); every attention kind runs a step; padding
 * invariance of losses and gradients; evaluate vs forward; checkpoints (fwp_model_load gives
 * bit-identical losses and translations) and random byte flips of a saved checkpoint. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "fwp/fwp.h"
#include "api_test_macros.h"

/* Vocabulary: bos 0, pad 1, eos 2, words 3..11. */
#define VOCAB 12
#define BOS 0
#define PAD 1
#define EOS 2
#define FIRST_WORD 3

static fwp_context* make_context(void) {
  fwp_context_config cfg;
  fwp_context_config_init(&cfg);
  cfg.num_threads = 1;
  cfg.seed = 77;
  fwp_context* ctx = NULL;
  CHECK_OK(fwp_context_create(&cfg, &ctx));
  return ctx;
}

static void set_sizes(fwp_layer_config* a) {
  a->d_model = 16;
  a->num_heads = 2;
  a->d_head = 8;
  a->init_std = 0.1f;
}

/* The tiny model of the brief: d_model 16, 2 heads of 8, d_ff 32, 1 + 1 layers, dropout 0,
   label smoothing 0.1, the paper's linear attention everywhere. */
static void tiny_config(fwp_seq2seq_config* c) {
  fwp_seq2seq_config_init(c);
  c->vocab_size = VOCAB;
  c->pad_id = PAD;
  c->bos_id = BOS;
  c->eos_id = EOS;
  c->encoder_layers = 1;
  c->decoder_layers = 1;
  c->d_ff = 32;
  c->dropout = 0.0f;
  c->label_smoothing = 0.1f;
  /* Larger than 0.02 (which suits d_model 1024): the words must stand out of the sinusoids. */
  c->init_std = 0.1f;
  c->seed = 5;
  set_sizes(&c->encoder_attention);
  set_sizes(&c->decoder_attention);
  set_sizes(&c->cross_attention);
}

static fwp_model* make_model(fwp_context* ctx, const fwp_seq2seq_config* c) {
  fwp_model* m = NULL;
  CHECK_OK(fwp_seq2seq_create(ctx, c, &m));
  return m;
}

static void make_softmax(fwp_layer_config* a) {
  a->feature_map = FWP_FEATURE_MAP_SOFTMAX;
  a->update_rule = FWP_UPDATE_SUM;
  a->sum_normalize = 0;
  a->attn_normalize = 0;
  a->scale_output = 0;
}

/* ---- batches ------------------------------------------------------------------------------ */

enum { MAXB = 16, MAXL = 12 };

/* Pairs laid out as fwp_pair_data_next() does: source x eos, target input bos y, target output
   y eos, each right-padded (plus `extra` more pad columns). */
typedef struct {
  int32_t x[MAXB][MAXL], y[MAXB][MAXL];
  int n[MAXB], m[MAXB];
  int count;
  int32_t src[MAXB * MAXL], src_len[MAXB], tgt_in[MAXB * MAXL], tgt_out[MAXB * MAXL], tgt_len[MAXB];
} pairs;

static void add_pair(pairs* p, const int32_t* x, int n, const int32_t* y, int m) {
  assert_true(p->count < MAXB && n + 2 <= MAXL && m + 2 <= MAXL);
  memcpy(p->x[p->count], x, (size_t)n * sizeof(int32_t));
  memcpy(p->y[p->count], y, (size_t)m * sizeof(int32_t));
  p->n[p->count] = n;
  p->m[p->count] = m;
  ++p->count;
}

static fwp_seq2seq_batch lay_out(pairs* p, int first, int count, int extra) {
  int S = 0, T = 0;
  for (int i = first; i < first + count; ++i) {
    if (p->n[i] + 1 > S) S = p->n[i] + 1;
    if (p->m[i] + 1 > T) T = p->m[i] + 1;
  }
  S += extra;
  T += extra;
  assert_true(S <= MAXL && T <= MAXL);
  for (int b = 0; b < count; ++b) {
    const int i = first + b;
    for (int s = 0; s < S; ++s) p->src[b * S + s] = s < p->n[i] ? p->x[i][s] : s == p->n[i] ? EOS : PAD;
    for (int t = 0; t < T; ++t) {
      p->tgt_in[b * T + t] = t == 0 ? BOS : t <= p->m[i] ? p->y[i][t - 1] : PAD;
      p->tgt_out[b * T + t] = t < p->m[i] ? p->y[i][t] : t == p->m[i] ? EOS : PAD;
    }
    p->src_len[b] = p->n[i] + 1;
    p->tgt_len[b] = p->m[i] + 1;
  }
  fwp_seq2seq_batch batch;
  batch.source = p->src;
  batch.source_lengths = p->src_len;
  batch.target_input = p->tgt_in;
  batch.target_output = p->tgt_out;
  batch.target_lengths = p->tgt_len;
  batch.batch = count;
  batch.source_length = S;
  batch.target_length = T;
  return batch;
}

static uint64_t rng_state = 88172645463325252ull;
static uint32_t next_random(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 11);
}

static void random_words(int32_t* x, int n) {
  for (int i = 0; i < n; ++i) x[i] = FIRST_WORD + (int32_t)(next_random() % (VOCAB - FIRST_WORD));
}

/* A small mixed batch of pairs of different lengths. */
static fwp_seq2seq_batch three_pairs(pairs* p) {
  memset(p, 0, sizeof *p);
  const int32_t a[] = {3, 4, 5, 6}, b[] = {7}, c[] = {8, 9, 10};
  const int32_t ya[] = {4, 5}, yb[] = {9, 9, 11, 3, 5}, yc[] = {10};
  add_pair(p, a, 4, ya, 2);
  add_pair(p, b, 1, yb, 5);
  add_pair(p, c, 3, yc, 1);
  return lay_out(p, 0, 3, 0);
}

/* ---- config -------------------------------------------------------------------------------- */

static void expect_attention(const fwp_layer_config* a, int64_t d, int64_t heads, int64_t d_head) {
  assert_int_equal(a->struct_size, sizeof(fwp_layer_config));
  assert_int_equal(a->d_model, d);
  assert_int_equal(a->num_heads, heads);
  assert_int_equal(a->d_head, d_head);
  assert_int_equal(a->feature_map, FWP_FEATURE_MAP_ELU);
  assert_int_equal(a->update_rule, FWP_UPDATE_SUM);
  assert_int_equal(a->sum_normalize, 0);
  assert_int_equal(a->attn_normalize, 1);
  assert_int_equal(a->scale_output, 0);
  assert_int_equal(a->use_bias, 0);
  assert_int_equal(a->carry_state, 0);
  assert_int_equal(a->algorithm, FWP_ALGORITHM_AUTO);
  assert_int_equal(a->chunk_size, 0);
}

static void test_config_init_and_presets(void** unused) {
  (void)unused;
  fwp_seq2seq_config_init(NULL); /* ignored */
  fwp_seq2seq_config c;
  memset(&c, 0x5a, sizeof c);
  fwp_seq2seq_config_init(&c);
  assert_int_equal(c.struct_size, sizeof(fwp_seq2seq_config));
  assert_int_equal(c.vocab_size, 0);
  assert_int_equal(c.pad_id, 1);
  assert_int_equal(c.bos_id, 0);
  assert_int_equal(c.eos_id, 2);
  assert_int_equal(c.encoder_layers, 6);
  assert_int_equal(c.decoder_layers, 6);
  assert_int_equal(c.d_ff, 4096);
  assert_true(c.dropout == 0.3f);
  assert_true(c.label_smoothing == 0.1f);
  assert_int_equal(c.tie_embeddings, 1);
  assert_int_equal(c.position, FWP_LM_POSITION_SINUSOIDAL);
  assert_int_equal(c.pre_norm, 0);
  assert_true(c.init_std == 0.02f);
  assert_int_equal(c.seed, 0);
  expect_attention(&c.encoder_attention, 1024, 16, 64);
  expect_attention(&c.decoder_attention, 1024, 16, 64);
  expect_attention(&c.cross_attention, 1024, 16, 64);

  fwp_seq2seq_config p;
  CHECK_OK(fwp_seq2seq_config_preset("paper-big", &p));
  assert_int_equal(p.encoder_layers, 6);
  assert_int_equal(p.d_ff, 4096);
  assert_true(p.dropout == 0.3f);
  expect_attention(&p.cross_attention, 1024, 16, 64);
  CHECK_OK(fwp_seq2seq_config_preset("base", &p));
  assert_int_equal(p.struct_size, sizeof(fwp_seq2seq_config));
  assert_int_equal(p.encoder_layers, 6);
  assert_int_equal(p.decoder_layers, 6);
  assert_int_equal(p.d_ff, 2048);
  assert_true(p.dropout == 0.1f);
  assert_true(p.label_smoothing == 0.1f);
  expect_attention(&p.encoder_attention, 512, 8, 64);
  expect_attention(&p.decoder_attention, 512, 8, 64);
  expect_attention(&p.cross_attention, 512, 8, 64);
  CHECK_OK(fwp_seq2seq_config_preset("cpu-small", &p));
  assert_int_equal(p.encoder_layers, 3);
  assert_int_equal(p.decoder_layers, 3);
  assert_int_equal(p.d_ff, 1024);
  assert_true(p.dropout == 0.1f);
  expect_attention(&p.encoder_attention, 256, 4, 64);
  expect_attention(&p.decoder_attention, 256, 4, 64);
  expect_attention(&p.cross_attention, 256, 4, 64);
  assert_int_equal(p.vocab_size, 0); /* left for the caller */
  EXPECT_ERROR(fwp_seq2seq_config_preset("huge", &p), FWP_ERR_INVALID_ARGUMENT, "cpu-small");
  EXPECT_ERROR(fwp_seq2seq_config_preset("huge", &p), FWP_ERR_INVALID_ARGUMENT, "huge");
  EXPECT_ERROR(fwp_seq2seq_config_preset(NULL, &p), FWP_ERR_NULL_POINTER, "name");
  EXPECT_ERROR(fwp_seq2seq_config_preset("base", NULL), FWP_ERR_NULL_POINTER, "config");

  /* A preset with a vocabulary creates (cpu-small: small enough here). */
  fwp_context* ctx = make_context();
  CHECK_OK(fwp_seq2seq_config_preset("cpu-small", &p));
  p.vocab_size = 40;
  fwp_model* m = make_model(ctx, &p);
  fwp_model_kind kind;
  CHECK_OK(fwp_model_get_kind(m, &kind));
  assert_int_equal(kind, FWP_MODEL_SEQ2SEQ);
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
}

static void expect_same_attention(const fwp_layer_config* a, const fwp_layer_config* b, int check_redraw) {
  assert_int_equal(a->d_model, b->d_model);
  assert_int_equal(a->num_heads, b->num_heads);
  assert_int_equal(a->d_head, b->d_head);
  assert_int_equal(a->feature_map, b->feature_map);
  assert_int_equal(a->dpfp_nu, b->dpfp_nu);
  assert_int_equal(a->favor_features, b->favor_features);
  if (check_redraw) assert_int_equal(a->favor_redraw, b->favor_redraw);
  assert_int_equal(a->update_rule, b->update_rule);
  assert_int_equal(a->sum_normalize, b->sum_normalize);
  assert_int_equal(a->attn_normalize, b->attn_normalize);
  assert_true(a->norm_eps == b->norm_eps);
  assert_int_equal(a->scale_output, b->scale_output);
  assert_int_equal(a->use_bias, b->use_bias);
  assert_true(a->init_std == b->init_std);
  assert_int_equal(a->algorithm, b->algorithm);
  assert_int_equal(a->chunk_size, b->chunk_size);
  assert_int_equal(a->carry_state, b->carry_state);
}

/* Every field but the seed (checkpoints do not store it). */
static void expect_same_config(const fwp_seq2seq_config* a, const fwp_seq2seq_config* b) {
  assert_int_equal(a->vocab_size, b->vocab_size);
  assert_int_equal(a->pad_id, b->pad_id);
  assert_int_equal(a->bos_id, b->bos_id);
  assert_int_equal(a->eos_id, b->eos_id);
  assert_int_equal(a->encoder_layers, b->encoder_layers);
  assert_int_equal(a->decoder_layers, b->decoder_layers);
  assert_int_equal(a->d_ff, b->d_ff);
  assert_true(a->dropout == b->dropout);
  assert_true(a->label_smoothing == b->label_smoothing);
  assert_int_equal(a->tie_embeddings, b->tie_embeddings);
  assert_int_equal(a->position, b->position);
  assert_int_equal(a->pre_norm, b->pre_norm);
  assert_true(a->init_std == b->init_std);
  expect_same_attention(&a->encoder_attention, &b->encoder_attention, 1);
  expect_same_attention(&a->decoder_attention, &b->decoder_attention, 1);
  expect_same_attention(&a->cross_attention, &b->cross_attention, 1);
}

/* A config that sets every field away from its default, each attention differently. */
static void unusual_config(fwp_seq2seq_config* c) {
  tiny_config(c);
  c->vocab_size = 15;
  c->pad_id = 14;
  c->bos_id = 3;
  c->eos_id = 7;
  c->encoder_layers = 2;
  c->decoder_layers = 3;
  c->d_ff = 24;
  c->dropout = 0.25f;
  c->label_smoothing = 0.05f;
  c->tie_embeddings = 0;
  c->position = FWP_LM_POSITION_NONE;
  c->pre_norm = 1;
  c->init_std = 0.07f;
  c->seed = 1234;
  c->encoder_attention.feature_map = FWP_FEATURE_MAP_FAVOR;
  c->encoder_attention.favor_features = 6;
  c->encoder_attention.favor_redraw = 0;
  c->encoder_attention.sum_normalize = 1;
  c->encoder_attention.norm_eps = 1e-4f;
  c->encoder_attention.num_heads = 4;
  c->encoder_attention.d_head = 3;
  c->cross_attention.feature_map = FWP_FEATURE_MAP_DPFP;
  c->cross_attention.dpfp_nu = 2;
  c->cross_attention.favor_redraw = 0; /* agrees with the encoder's (one shared setting) */
  c->cross_attention.use_bias = 1;
  c->cross_attention.scale_output = 1;
  c->cross_attention.attn_normalize = 0;
  c->cross_attention.init_std = 0.3f;
  c->decoder_attention.feature_map = FWP_FEATURE_MAP_DPFP;
  c->decoder_attention.update_rule = FWP_UPDATE_DELTA;
  c->decoder_attention.sum_normalize = 1;
  c->decoder_attention.favor_redraw = 1;
  c->decoder_attention.algorithm = FWP_ALGORITHM_CHUNKED;
  c->decoder_attention.chunk_size = 4;
  c->decoder_attention.num_heads = 1;
  c->decoder_attention.d_head = 5;
}

static void test_create_get_config_round_trip(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_seq2seq_config c;
  unusual_config(&c);
  fwp_model* m = make_model(ctx, &c);
  fwp_seq2seq_config back;
  memset(&back, 0, sizeof back);
  back.struct_size = sizeof back;
  CHECK_OK(fwp_seq2seq_get_config(m, &back));
  assert_int_equal(back.struct_size, sizeof back);
  expect_same_config(&c, &back);
  assert_int_equal(back.seed, 1234);
  /* And the default (tiny) one, FAVOR+ in the cross attention alone. */
  fwp_seq2seq_config t;
  tiny_config(&t);
  t.cross_attention.feature_map = FWP_FEATURE_MAP_FAVOR;
  t.cross_attention.favor_redraw = 0;
  fwp_model* m2 = make_model(ctx, &t);
  CHECK_OK(fwp_seq2seq_get_config(m2, &back));
  expect_same_attention(&t.cross_attention, &back.cross_attention, 1);
  expect_same_attention(&t.decoder_attention, &back.decoder_attention, 1);
  expect_same_attention(&t.encoder_attention, &back.encoder_attention, 0);
  /* The same seed gives the same parameters; the names are fairseq's. */
  fwp_model* m3 = make_model(ctx, &t);
  int64_t n = 0, index = -1;
  CHECK_OK(fwp_model_num_params(m2, &n));
  assert_true(n > 10);
  CHECK_OK(fwp_model_param_index(m2, "decoder.layers.0.encoder_attn.favor.projection", &index));
  CHECK_OK(fwp_model_param_index(m2, "encoder.layers.0.fc1.weight", &index));
  fwp_param_info info;
  CHECK_OK(fwp_model_param_info(m2, index, &info));
  assert_int_equal(info.shape[0], 32);
  assert_int_equal(info.shape[1], 16);
  float* w1 = malloc((size_t)info.numel * sizeof(float));
  float* w2 = malloc((size_t)info.numel * sizeof(float));
  CHECK_OK(fwp_model_get_param(m2, index, w1, info.numel));
  CHECK_OK(fwp_model_get_param(m3, index, w2, info.numel));
  assert_memory_equal(w1, w2, (size_t)info.numel * sizeof(float));
  free(w1);
  free(w2);
  /* get_config's own checks. */
  EXPECT_ERROR(fwp_seq2seq_get_config(NULL, &back), FWP_ERR_NULL_POINTER, "model");
  EXPECT_ERROR(fwp_seq2seq_get_config(m, NULL), FWP_ERR_NULL_POINTER, "config");
  back.struct_size = 3;
  EXPECT_ERROR(fwp_seq2seq_get_config(m, &back), FWP_ERR_INVALID_ARGUMENT, "struct_size");
  fwp_model_destroy(m3);
  fwp_model_destroy(m2);
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
}

#define EXPECT_CREATE_ERROR(edit, want, needle)                         \
  do {                                                                  \
    fwp_seq2seq_config c_;                                              \
    tiny_config(&c_);                                                   \
    edit;                                                               \
    fwp_model* m_ = (fwp_model*)1;                                      \
    EXPECT_ERROR(fwp_seq2seq_create(ctx, &c_, &m_), (want), (needle));  \
    assert_null(m_);                                                    \
  } while (0)

static void test_bad_configs(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_seq2seq_config c;
  tiny_config(&c);
  fwp_model* m = (fwp_model*)1;
  EXPECT_ERROR(fwp_seq2seq_create(NULL, &c, &m), FWP_ERR_NULL_POINTER, "ctx");
  assert_null(m);
  EXPECT_ERROR(fwp_seq2seq_create(ctx, NULL, &m), FWP_ERR_NULL_POINTER, "config");
  EXPECT_ERROR(fwp_seq2seq_create(ctx, &c, NULL), FWP_ERR_NULL_POINTER, "out");
  EXPECT_CREATE_ERROR(c_.struct_size = 3, FWP_ERR_INVALID_ARGUMENT, "config->struct_size");
  EXPECT_CREATE_ERROR(c_.struct_size = sizeof(fwp_seq2seq_config) + 8, FWP_ERR_INVALID_ARGUMENT, "newer fwp.h");
  EXPECT_CREATE_ERROR(c_.encoder_attention.struct_size = 3, FWP_ERR_INVALID_ARGUMENT, "config->encoder_attention");
  EXPECT_CREATE_ERROR(c_.vocab_size = 0, FWP_ERR_INVALID_ARGUMENT, "config->vocab_size");
  EXPECT_CREATE_ERROR(c_.vocab_size = 2, FWP_ERR_INVALID_ARGUMENT, "config->vocab_size");
  /* Enums. */
  EXPECT_CREATE_ERROR(c_.position = (fwp_lm_position)7, FWP_ERR_OUT_OF_RANGE, "config->position");
  EXPECT_CREATE_ERROR(c_.encoder_attention.feature_map = (fwp_feature_map)9, FWP_ERR_OUT_OF_RANGE,
                      "config->encoder_attention.feature_map");
  EXPECT_CREATE_ERROR(c_.cross_attention.feature_map = (fwp_feature_map)-1, FWP_ERR_OUT_OF_RANGE,
                      "config->cross_attention.feature_map");
  EXPECT_CREATE_ERROR(c_.decoder_attention.feature_map = (fwp_feature_map)4, FWP_ERR_OUT_OF_RANGE,
                      "config->decoder_attention.feature_map");
  EXPECT_CREATE_ERROR(c_.decoder_attention.update_rule = (fwp_update_rule)5, FWP_ERR_OUT_OF_RANGE,
                      "config->decoder_attention.update_rule");
  /* Special ids. */
  EXPECT_CREATE_ERROR(c_.pad_id = EOS, FWP_ERR_INVALID_ARGUMENT, "config->pad_id");
  EXPECT_CREATE_ERROR(c_.pad_id = BOS, FWP_ERR_INVALID_ARGUMENT, "config->pad_id");
  EXPECT_CREATE_ERROR(c_.bos_id = EOS, FWP_ERR_INVALID_ARGUMENT, "config->bos_id");
  EXPECT_CREATE_ERROR(c_.eos_id = VOCAB, FWP_ERR_INVALID_ARGUMENT, "config->eos_id");
  EXPECT_CREATE_ERROR(c_.bos_id = -1, FWP_ERR_INVALID_ARGUMENT, "config->bos_id");
  EXPECT_CREATE_ERROR(c_.pad_id = VOCAB + 5, FWP_ERR_INVALID_ARGUMENT, "config->pad_id");
  /* Sizes and numbers. */
  EXPECT_CREATE_ERROR(c_.encoder_layers = 0, FWP_ERR_INVALID_ARGUMENT, "config->encoder_layers");
  EXPECT_CREATE_ERROR(c_.decoder_layers = 1025, FWP_ERR_INVALID_ARGUMENT, "config->decoder_layers");
  EXPECT_CREATE_ERROR(c_.d_ff = 0, FWP_ERR_INVALID_ARGUMENT, "config->d_ff");
  EXPECT_CREATE_ERROR(c_.dropout = 1.0f, FWP_ERR_INVALID_ARGUMENT, "config->dropout");
  EXPECT_CREATE_ERROR(c_.dropout = NAN, FWP_ERR_INVALID_ARGUMENT, "config->dropout");
  EXPECT_CREATE_ERROR(c_.label_smoothing = -0.1f, FWP_ERR_INVALID_ARGUMENT, "config->label_smoothing");
  EXPECT_CREATE_ERROR(c_.init_std = 0.0f, FWP_ERR_INVALID_ARGUMENT, "config->init_std");
  EXPECT_CREATE_ERROR(c_.pre_norm = 2, FWP_ERR_INVALID_ARGUMENT, "config->pre_norm");
  EXPECT_CREATE_ERROR(c_.tie_embeddings = -1, FWP_ERR_INVALID_ARGUMENT, "config->tie_embeddings");
  EXPECT_CREATE_ERROR(c_.decoder_attention.d_model = 8, FWP_ERR_INVALID_ARGUMENT, "config->decoder_attention.d_model");
  EXPECT_CREATE_ERROR(c_.cross_attention.d_model = 8, FWP_ERR_INVALID_ARGUMENT, "config->cross_attention.d_model");
  EXPECT_CREATE_ERROR(c_.encoder_attention.num_heads = 0, FWP_ERR_INVALID_ARGUMENT,
                      "config->encoder_attention.num_heads");
  /* What a non-causal attention cannot do. */
  EXPECT_CREATE_ERROR(c_.encoder_attention.update_rule = FWP_UPDATE_DELTA, FWP_ERR_INVALID_ARGUMENT,
                      "config->encoder_attention.update_rule");
  EXPECT_CREATE_ERROR(c_.cross_attention.update_rule = FWP_UPDATE_DELTA, FWP_ERR_INVALID_ARGUMENT,
                      "config->cross_attention.update_rule");
  EXPECT_CREATE_ERROR(c_.encoder_attention.algorithm = FWP_ALGORITHM_CHUNKED, FWP_ERR_INVALID_ARGUMENT,
                      "config->encoder_attention.algorithm");
  EXPECT_CREATE_ERROR(c_.cross_attention.chunk_size = 8, FWP_ERR_INVALID_ARGUMENT, "config->cross_attention.chunk_size");
  /* No carried state anywhere. */
  EXPECT_CREATE_ERROR(c_.decoder_attention.carry_state = 1, FWP_ERR_INVALID_ARGUMENT,
                      "config->decoder_attention.carry_state");
  EXPECT_CREATE_ERROR(c_.encoder_attention.carry_state = 1, FWP_ERR_INVALID_ARGUMENT,
                      "config->encoder_attention.carry_state");
  EXPECT_CREATE_ERROR(c_.cross_attention.carry_state = 1, FWP_ERR_INVALID_ARGUMENT, "config->cross_attention.carry_state");
  /* The encoder and cross FAVOR+ attentions share one redraw setting. */
  EXPECT_CREATE_ERROR((c_.encoder_attention.feature_map = FWP_FEATURE_MAP_FAVOR,
                       c_.cross_attention.feature_map = FWP_FEATURE_MAP_FAVOR, c_.cross_attention.favor_redraw = 0),
                      FWP_ERR_INVALID_ARGUMENT, "config->cross_attention.favor_redraw");
  EXPECT_CREATE_ERROR(c_.encoder_attention.favor_redraw = 3, FWP_ERR_INVALID_ARGUMENT,
                      "config->encoder_attention.favor_redraw");
  /* Softmax with a fast-weight normalisation. */
  EXPECT_CREATE_ERROR((c_.decoder_attention.feature_map = FWP_FEATURE_MAP_SOFTMAX), FWP_ERR_INVALID_ARGUMENT,
                      "config->decoder_attention");
  /* A refused config does not advance the context's generator: the next unseeded model is the one
     a fresh context gives. */
  fwp_context* fresh = make_context();
  tiny_config(&c);
  c.seed = 0;
  fwp_model* a = make_model(ctx, &c);
  fwp_model* b = make_model(fresh, &c);
  int64_t index = -1;
  CHECK_OK(fwp_model_param_index(a, "embedding.weight", &index));
  fwp_param_info info;
  CHECK_OK(fwp_model_param_info(a, index, &info));
  float* ea = malloc((size_t)info.numel * sizeof(float));
  float* eb = malloc((size_t)info.numel * sizeof(float));
  CHECK_OK(fwp_model_get_param(a, index, ea, info.numel));
  CHECK_OK(fwp_model_get_param(b, index, eb, info.numel));
  assert_memory_equal(ea, eb, (size_t)info.numel * sizeof(float));
  free(ea);
  free(eb);
  fwp_model_destroy(a);
  fwp_model_destroy(b);
  fwp_context_destroy(fresh);
  fwp_context_destroy(ctx);
}

/* Another kind of model passed to every fwp_seq2seq_* call. */
static void test_wrong_model_kind(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_lm_config lc;
  fwp_lm_config_init(&lc);
  lc.vocab_size = VOCAB;
  lc.num_layers = 1;
  lc.attention.d_model = 16;
  lc.attention.num_heads = 2;
  lc.attention.d_head = 8;
  lc.d_ff = 16;
  fwp_model* lm = NULL;
  CHECK_OK(fwp_lm_create(ctx, &lc, &lm));
  fwp_seq2seq_config back;
  back.struct_size = sizeof back;
  EXPECT_ERROR(fwp_seq2seq_get_config(lm, &back), FWP_ERR_INVALID_ARGUMENT, "not a translation");
  pairs p;
  fwp_seq2seq_batch batch = three_pairs(&p);
  fwp_seq2seq_loss loss;
  EXPECT_ERROR(fwp_seq2seq_forward(lm, &batch, &loss), FWP_ERR_INVALID_ARGUMENT, "not a translation");
  EXPECT_ERROR(fwp_seq2seq_evaluate(lm, &batch, &loss), FWP_ERR_INVALID_ARGUMENT, "not a translation");
  fwp_seq2seq_search_config sc;
  fwp_seq2seq_search_config_init(&sc);
  int32_t out[3 * 32];
  int64_t lengths[3];
  EXPECT_ERROR(fwp_seq2seq_translate(lm, batch.source, batch.source_lengths, 3, batch.source_length, &sc, out, 32,
                                     lengths, NULL),
               FWP_ERR_INVALID_ARGUMENT, "not a translation");
  EXPECT_ERROR(fwp_seq2seq_forward(NULL, &batch, &loss), FWP_ERR_NULL_POINTER, "model");
  /* And the LM's calls refuse a translation model. */
  fwp_seq2seq_config c;
  tiny_config(&c);
  fwp_model* m = make_model(ctx, &c);
  fwp_lm_config lback;
  lback.struct_size = sizeof lback;
  EXPECT_ERROR(fwp_lm_get_config(m, &lback), FWP_ERR_INVALID_ARGUMENT, "not a language model");
  fwp_model_destroy(m);
  fwp_model_destroy(lm);
  fwp_context_destroy(ctx);
}

static void test_batch_checks(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_seq2seq_config c;
  tiny_config(&c);
  fwp_model* m = make_model(ctx, &c);
  pairs p;
  fwp_seq2seq_batch good = three_pairs(&p);
  fwp_seq2seq_loss loss;
  CHECK_OK(fwp_seq2seq_forward(m, &good, &loss));
  /* tokens: 3 + 6 + 2 targets (each with its eos). */
  assert_int_equal(loss.tokens, 11);
  assert_true(loss.loss_sum > 0 && isfinite(loss.loss_sum));
  assert_true(loss.nll_sum > 0 && isfinite(loss.nll_sum));
  fwp_seq2seq_batch b;
  for (int evaluate = 0; evaluate < 2; ++evaluate) {
    fwp_status (*run)(fwp_model*, const fwp_seq2seq_batch*, fwp_seq2seq_loss*) =
        evaluate ? fwp_seq2seq_evaluate : fwp_seq2seq_forward;
    EXPECT_ERROR(run(m, NULL, &loss), FWP_ERR_NULL_POINTER, "batch");
    EXPECT_ERROR(run(m, &good, NULL), FWP_ERR_NULL_POINTER, "loss");
    b = good;
    b.source = NULL;
    EXPECT_ERROR(run(m, &b, &loss), FWP_ERR_NULL_POINTER, "batch->source");
    b = good;
    b.source_lengths = NULL;
    EXPECT_ERROR(run(m, &b, &loss), FWP_ERR_NULL_POINTER, "batch->source_lengths");
    b = good;
    b.target_input = NULL;
    EXPECT_ERROR(run(m, &b, &loss), FWP_ERR_NULL_POINTER, "batch->target_input");
    b = good;
    b.target_output = NULL;
    EXPECT_ERROR(run(m, &b, &loss), FWP_ERR_NULL_POINTER, "batch->target_output");
    b = good;
    b.target_lengths = NULL;
    EXPECT_ERROR(run(m, &b, &loss), FWP_ERR_NULL_POINTER, "batch->target_lengths");
    b = good;
    b.batch = 0;
    EXPECT_ERROR(run(m, &b, &loss), FWP_ERR_INVALID_ARGUMENT, "batch->batch");
    b = good;
    b.source_length = -2;
    EXPECT_ERROR(run(m, &b, &loss), FWP_ERR_INVALID_ARGUMENT, "batch->source_length");
    b = good;
    b.target_length = 0;
    EXPECT_ERROR(run(m, &b, &loss), FWP_ERR_INVALID_ARGUMENT, "batch->target_length");
    b = good;
    b.batch = INT64_MAX;
    b.source_length = INT64_MAX;
    EXPECT_ERROR(run(m, &b, &loss), FWP_ERR_INVALID_ARGUMENT, "batch");
    /* Lengths. */
    p.src_len[1] = 0;
    EXPECT_ERROR(run(m, &good, &loss), FWP_ERR_INVALID_ARGUMENT, "batch->source_lengths[1]");
    p.src_len[1] = (int32_t)good.source_length + 1;
    EXPECT_ERROR(run(m, &good, &loss), FWP_ERR_INVALID_ARGUMENT, "batch->source_lengths[1]");
    p.src_len[1] = 2;
    p.tgt_len[2] = -1;
    EXPECT_ERROR(run(m, &good, &loss), FWP_ERR_INVALID_ARGUMENT, "batch->target_lengths[2]");
    p.tgt_len[2] = (int32_t)good.target_length + 1;
    EXPECT_ERROR(run(m, &good, &loss), FWP_ERR_INVALID_ARGUMENT, "batch->target_lengths[2]");
    p.tgt_len[2] = 2;
    /* Ids. */
    p.src[4] = VOCAB;
    EXPECT_ERROR(run(m, &good, &loss), FWP_ERR_OUT_OF_RANGE, "batch->source[4]");
    p.src[4] = -1;
    EXPECT_ERROR(run(m, &good, &loss), FWP_ERR_OUT_OF_RANGE, "batch->source[4]");
    p.src[4] = 5;
    p.tgt_in[3] = 100;
    EXPECT_ERROR(run(m, &good, &loss), FWP_ERR_OUT_OF_RANGE, "batch->target_input[3]");
    p.tgt_in[3] = 4;
    p.tgt_out[7] = -3;
    EXPECT_ERROR(run(m, &good, &loss), FWP_ERR_OUT_OF_RANGE, "batch->target_output[7]");
    good = three_pairs(&p);
    /* No scored token: every target inside its length is pad. */
    pairs q;
    memset(&q, 0, sizeof q);
    const int32_t x[] = {3, 4};
    const int32_t y[] = {PAD};
    add_pair(&q, x, 2, y, 1);
    fwp_seq2seq_batch none = lay_out(&q, 0, 1, 0);
    q.tgt_len[0] = 1; /* only the pad is inside the length */
    EXPECT_ERROR(run(m, &none, &loss), FWP_ERR_INVALID_ARGUMENT, "score");
  }
  /* A failed forward leaves no backward pending. */
  CHECK_OK(fwp_seq2seq_forward(m, &good, &loss));
  p.src[0] = -1;
  EXPECT_ERROR(fwp_seq2seq_forward(m, &good, &loss), FWP_ERR_OUT_OF_RANGE, "batch->source[0]");
  EXPECT_ERROR(fwp_model_backward(m), FWP_ERR_BAD_STATE, "forward");
  /* Nor does a refused evaluate or translate (they would replace the activations). */
  p.src[0] = 3;
  CHECK_OK(fwp_seq2seq_forward(m, &good, &loss));
  p.src[0] = -1;
  EXPECT_ERROR(fwp_seq2seq_evaluate(m, &good, &loss), FWP_ERR_OUT_OF_RANGE, "batch->source[0]");
  EXPECT_ERROR(fwp_model_backward(m), FWP_ERR_BAD_STATE, "forward");
  p.src[0] = 3;
  CHECK_OK(fwp_seq2seq_forward(m, &good, &loss));
  fwp_seq2seq_search_config s;
  fwp_seq2seq_search_config_init(&s);
  int32_t out[3 * 16];
  int64_t lengths[3];
  EXPECT_ERROR(fwp_seq2seq_translate(m, good.source, good.source_lengths, 3, good.source_length, &s, out, 2, lengths,
                                     NULL),
               FWP_ERR_INVALID_ARGUMENT, "capacity");
  EXPECT_ERROR(fwp_model_backward(m), FWP_ERR_BAD_STATE, "forward");
  /* A forward, then a backward: the pair still works after all that. */
  CHECK_OK(fwp_seq2seq_forward(m, &good, &loss));
  CHECK_OK(fwp_model_backward(m));
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
}

static void test_translate_checks(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_seq2seq_config c;
  tiny_config(&c);
  fwp_model* m = make_model(ctx, &c);
  pairs p;
  fwp_seq2seq_batch b = three_pairs(&p); /* source lengths 5, 2, 4; S 5 */
  fwp_seq2seq_search_config s;
  fwp_seq2seq_search_config_init(NULL);
  fwp_seq2seq_search_config_init(&s);
  assert_int_equal(s.struct_size, sizeof s);
  assert_int_equal(s.beam_size, 4);
  assert_true(s.length_penalty == 1.0f);
  assert_true(s.max_len_a == 1.2f);
  assert_true(s.max_len_b == 10.0f);
  assert_int_equal(s.min_length, 1);
  assert_int_equal(s.stop, FWP_BEAM_STOP_FINISHED);
  enum { CAP = 16 }; /* limit: floor(1.2 * 5 + 10) = 16 */
  int32_t out[3 * CAP];
  int64_t lengths[3];
  float scores[3];
  const int32_t* src = b.source;
  const int32_t* sl = b.source_lengths;
  const int64_t S = b.source_length;
  CHECK_OK(fwp_seq2seq_translate(m, src, sl, 3, S, &s, out, CAP, lengths, scores));
  for (int i = 0; i < 3; ++i) {
    assert_true(lengths[i] >= 1 && lengths[i] <= CAP); /* min_length 1 */
    assert_true(scores[i] <= 0.0f && isfinite(scores[i]));
    for (int64_t t = 0; t < lengths[i]; ++t) {
      const int32_t id = out[i * CAP + t];
      assert_true(id >= 0 && id < VOCAB && id != PAD && id != BOS && id != EOS);
    }
  }
  CHECK_OK(fwp_seq2seq_translate(m, src, sl, 3, S, &s, out, CAP, lengths, NULL)); /* scores optional */
  EXPECT_ERROR(fwp_seq2seq_translate(NULL, src, sl, 3, S, &s, out, CAP, lengths, NULL), FWP_ERR_NULL_POINTER, "model");
  EXPECT_ERROR(fwp_seq2seq_translate(m, NULL, sl, 3, S, &s, out, CAP, lengths, NULL), FWP_ERR_NULL_POINTER, "source");
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, NULL, 3, S, &s, out, CAP, lengths, NULL), FWP_ERR_NULL_POINTER,
               "source_lengths");
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, NULL, out, CAP, lengths, NULL), FWP_ERR_NULL_POINTER, "search");
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, &s, NULL, CAP, lengths, NULL), FWP_ERR_NULL_POINTER, "output");
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, &s, out, CAP, NULL, NULL), FWP_ERR_NULL_POINTER,
               "output_lengths");
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 0, S, &s, out, CAP, lengths, NULL), FWP_ERR_INVALID_ARGUMENT, "batch");
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, 0, &s, out, CAP, lengths, NULL), FWP_ERR_INVALID_ARGUMENT,
               "source_length");
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, &s, out, CAP - 1, lengths, NULL), FWP_ERR_INVALID_ARGUMENT,
               "capacity");
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, &s, out, 0, lengths, NULL), FWP_ERR_INVALID_ARGUMENT, "capacity");
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, INT64_MAX, INT64_MAX, &s, out, CAP, lengths, NULL),
               FWP_ERR_INVALID_ARGUMENT, "batch");
  /* Source lengths and ids. */
  p.src_len[2] = 0;
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, &s, out, CAP, lengths, NULL), FWP_ERR_INVALID_ARGUMENT,
               "source_lengths[2]");
  p.src_len[2] = (int32_t)S + 1;
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, &s, out, CAP, lengths, NULL), FWP_ERR_INVALID_ARGUMENT,
               "source_lengths[2]");
  p.src_len[2] = 4;
  p.src[6] = VOCAB;
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, &s, out, CAP, lengths, NULL), FWP_ERR_OUT_OF_RANGE, "source[6]");
  p.src[6] = 7;
  /* Search fields. */
  fwp_seq2seq_search_config bad = s;
  bad.beam_size = 0;
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, &bad, out, CAP, lengths, NULL), FWP_ERR_INVALID_ARGUMENT,
               "search->beam_size");
  bad = s;
  bad.length_penalty = NAN;
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, &bad, out, CAP, lengths, NULL), FWP_ERR_INVALID_ARGUMENT,
               "search->length_penalty");
  bad = s;
  bad.max_len_a = -1.0f;
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, &bad, out, CAP, lengths, NULL), FWP_ERR_INVALID_ARGUMENT,
               "search->max_len_a");
  bad = s;
  bad.max_len_b = INFINITY;
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, &bad, out, CAP, lengths, NULL), FWP_ERR_INVALID_ARGUMENT,
               "search->max_len_b");
  bad = s;
  bad.min_length = -1;
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, &bad, out, CAP, lengths, NULL), FWP_ERR_INVALID_ARGUMENT,
               "search->min_length");
  bad = s;
  bad.stop = (fwp_beam_stop)5;
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, &bad, out, CAP, lengths, NULL), FWP_ERR_OUT_OF_RANGE,
               "search->stop");
  bad = s;
  bad.struct_size = 5;
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, &bad, out, CAP, lengths, NULL), FWP_ERR_INVALID_ARGUMENT,
               "search->struct_size");
  /* A length limit below min_length is refused; a limit of 0 gives empty outputs (only eos is allowed). */
  bad = s;
  bad.max_len_b = -20.0f;
  EXPECT_ERROR(fwp_seq2seq_translate(m, src, sl, 3, S, &bad, out, CAP, lengths, NULL), FWP_ERR_INVALID_ARGUMENT,
               "max_len_b");
  bad.max_len_a = 0.0f;
  bad.max_len_b = 0.0f;
  bad.min_length = 0;
  CHECK_OK(fwp_seq2seq_translate(m, src, sl, 3, S, &bad, out, 1, lengths, scores));
  for (int i = 0; i < 3; ++i) {
    assert_int_equal(lengths[i], 0);
    assert_true(scores[i] <= 0.0f && isfinite(scores[i]));
  }
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
}

/* ---- greedy == the argmax path --------------------------------------------------------------- */

/* -log p(prefix + token) of one pair scored up to the token (teacher forcing, evaluation mode). */
static double prefix_nll(fwp_model* m, const int32_t* x, int n, const int32_t* prefix, int length, int32_t token) {
  pairs q;
  memset(&q, 0, sizeof q);
  int32_t y[MAXL];
  memcpy(y, prefix, (size_t)length * sizeof(int32_t));
  y[length] = token;
  /* token as the last scored target: y = prefix + token (the eos case: y = prefix, output ends in eos). */
  if (token == EOS) {
    add_pair(&q, x, n, y, length);
  } else {
    add_pair(&q, x, n, y, length + 1);
  }
  fwp_seq2seq_batch b = lay_out(&q, 0, 1, 0);
  q.tgt_len[0] = length + 1; /* score positions 0..length only */
  fwp_seq2seq_loss loss;
  CHECK_OK(fwp_seq2seq_evaluate(m, &b, &loss));
  assert_int_equal(loss.tokens, length + 1);
  return loss.nll_sum;
}

/* beam 1 gives the path of the most likely allowed token at every step, and its score. */
static void expect_greedy_is_argmax(fwp_model* m, const int32_t* x, int n, const fwp_seq2seq_search_config* s) {
  enum { CAP = MAXL - 2 };
  int32_t src[MAXL], out[CAP];
  for (int i = 0; i < n; ++i) src[i] = x[i];
  src[n] = EOS;
  const int32_t len = n + 1;
  int64_t length = -1;
  float score = 0;
  fwp_seq2seq_search_config greedy = *s;
  greedy.beam_size = 1;
  const int64_t limit = (int64_t)floorf(greedy.max_len_a * (float)len + greedy.max_len_b);
  assert_true(limit <= CAP);
  CHECK_OK(fwp_seq2seq_translate(m, src, &len, 1, len, &greedy, out, CAP, &length, &score));
  double total = 0;
  for (int t = 0; t <= length; ++t) {
    double best_nll = INFINITY;
    int32_t best = -1;
    for (int32_t v = 0; v < VOCAB; ++v) {
      if (v == PAD || v == BOS) continue;
      if (t >= limit && v != EOS) continue;
      if (v == EOS && t < greedy.min_length) continue;
      const double nll = prefix_nll(m, x, n, out, t, v);
      if (nll < best_nll) {
        best_nll = nll;
        best = v;
      }
    }
    const int32_t chosen = t < length ? out[t] : EOS;
    if (best != chosen) {
      /* A near tie (float rounding between the step decoder and the full forward) is no error. */
      const double chosen_nll = prefix_nll(m, x, n, out, t, chosen);
      if (chosen_nll - best_nll > 1e-4) fail_msg("step %d: greedy chose %d, the argmax is %d", t, chosen, best);
    }
    total = prefix_nll(m, x, n, out, t, chosen);
  }
  const double want = -total / pow((double)(length + 1), greedy.length_penalty);
  if (fabs(want - score) > 1e-4 * (1 + fabs(want))) fail_msg("greedy score %g, teacher-forced %g", score, want);
}

/* ---- the copy task ------------------------------------------------------------------------------ */

static void copy_batch(pairs* p, int count) {
  memset(p, 0, sizeof *p);
  for (int i = 0; i < count; ++i) {
    int32_t x[MAXL];
    const int n = 2 + (int)(next_random() % 4);
    random_words(x, n);
    add_pair(p, x, n, x, n);
  }
}

/* Trains the tiny model on target = source; returns the first and last-20 mean nll per token. */
static void train_copy(fwp_model* m, int steps, double* first, double* recent) {
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  oc.learning_rate = 5e-3f;
  fwp_optimizer* opt = NULL;
  CHECK_OK(fwp_optimizer_create_for_model(m, &oc, &opt));
  *recent = 0;
  for (int step = 0; step < steps; ++step) {
    pairs p;
    copy_batch(&p, 16);
    fwp_seq2seq_batch b = lay_out(&p, 0, 16, 0);
    fwp_seq2seq_loss loss;
    CHECK_OK(fwp_model_zero_grad(m));
    CHECK_OK(fwp_seq2seq_forward(m, &b, &loss));
    CHECK_OK(fwp_model_backward(m));
    CHECK_OK(fwp_optimizer_step(opt, NULL));
    const double nll = loss.nll_sum / (double)loss.tokens;
    if (step == 0) *first = nll;
    if (step >= steps - 20) *recent += nll / 20.0;
  }
  fwp_optimizer_destroy(opt);
}

static void test_copy_task(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_seq2seq_config c;
  tiny_config(&c);
  fwp_model* m = make_model(ctx, &c);
  fwp_seq2seq_search_config s;
  fwp_seq2seq_search_config_init(&s);
  s.max_len_a = 1.0f;
  s.max_len_b = 3.0f;
  /* Untrained: greedy is still the argmax path (here it tends to run to the length limit). */
  const int32_t probe[] = {5, 9, 4};
  expect_greedy_is_argmax(m, probe, 3, &s);
  double first = 0, recent = 0;
  train_copy(m, 600, &first, &recent);
  /* Label smoothing 0.1 over 12 ids keeps the nll near 0.1 at best. */
  if (!(first > 1.5 && recent < 0.3)) fail_msg("copy task: mean nll %g -> %g", first, recent);
  /* Held-out sources (a fresh random stream) of every trained length, in one padded batch. */
  pairs p;
  memset(&p, 0, sizeof p);
  const int lens[] = {2, 5, 3, 4, 5, 2};
  for (int i = 0; i < 6; ++i) {
    int32_t x[MAXL];
    random_words(x, lens[i]);
    add_pair(&p, x, lens[i], x, lens[i]);
  }
  fwp_seq2seq_batch b = lay_out(&p, 0, 6, 1); /* and one column of extra padding */
  enum { CAP = 10 };
  for (int beam = 1; beam <= 4; beam += 3) {
    s.beam_size = beam;
    int32_t out[6 * CAP];
    int64_t lengths[6];
    float scores[6];
    CHECK_OK(fwp_seq2seq_translate(m, b.source, b.source_lengths, 6, b.source_length, &s, out, CAP, lengths, scores));
    for (int i = 0; i < 6; ++i) {
      if (lengths[i] != lens[i] || memcmp(out + i * CAP, p.x[i], (size_t)lens[i] * sizeof(int32_t)) != 0)
        fail_msg("beam %d, sentence %d: not copied (length %lld)", beam, i, (long long)lengths[i]);
      assert_true(scores[i] <= 0.0f && scores[i] > -1.0f);
    }
  }
  /* Trained: greedy is the argmax path, for a held-out source too. */
  expect_greedy_is_argmax(m, p.x[1], lens[1], &s);
  expect_greedy_is_argmax(m, probe, 3, &s);
  /* Translation leaves the training flag alone: forward still trains (backward works). */
  fwp_seq2seq_loss loss;
  CHECK_OK(fwp_seq2seq_forward(m, &b, &loss));
  CHECK_OK(fwp_model_backward(m));
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
}

/* Each attention kind creates, trains one step and translates. */
static void test_attention_kinds_run(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  for (int kind = 0; kind < 5; ++kind) {
    fwp_seq2seq_config c;
    tiny_config(&c);
    fwp_layer_config* all[3] = {&c.encoder_attention, &c.decoder_attention, &c.cross_attention};
    for (int i = 0; i < 3; ++i) {
      switch (kind) {
        case 0: make_softmax(all[i]); break;
        case 1: break; /* elu + 1, the default */
        case 2:
          all[i]->feature_map = FWP_FEATURE_MAP_FAVOR;
          all[i]->favor_features = 8;
          break;
        case 3:
          all[i]->feature_map = FWP_FEATURE_MAP_DPFP;
          all[i]->dpfp_nu = 2;
          break;
        default: break;
      }
    }
    if (kind == 4) { /* the delta rule in the decoder */
      c.decoder_attention.update_rule = FWP_UPDATE_DELTA;
      c.decoder_attention.sum_normalize = 1;
    }
    c.dropout = 0.1f;
    fwp_model* m = make_model(ctx, &c);
    fwp_optimizer_config oc;
    fwp_optimizer_config_init(&oc);
    fwp_optimizer* opt = NULL;
    CHECK_OK(fwp_optimizer_create_for_model(m, &oc, &opt));
    pairs p;
    fwp_seq2seq_batch b = three_pairs(&p);
    fwp_seq2seq_loss loss, after;
    CHECK_OK(fwp_seq2seq_forward(m, &b, &loss));
    assert_true(isfinite(loss.loss_sum) && loss.loss_sum > 0);
    CHECK_OK(fwp_model_backward(m));
    CHECK_OK(fwp_optimizer_step(opt, NULL));
    CHECK_OK(fwp_seq2seq_evaluate(m, &b, &after));
    assert_true(isfinite(after.loss_sum));
    fwp_seq2seq_search_config s;
    fwp_seq2seq_search_config_init(&s);
    int32_t out[3 * 16];
    int64_t lengths[3];
    CHECK_OK(fwp_seq2seq_translate(m, b.source, b.source_lengths, 3, b.source_length, &s, out, 16, lengths, NULL));
    fwp_optimizer_destroy(opt);
    fwp_model_destroy(m);
  }
  fwp_context_destroy(ctx);
}

/* ---- padding invariance ------------------------------------------------------------------------ */

static float* all_grads(fwp_model* m, int64_t* total) {
  int64_t n = 0, size = 0;
  CHECK_OK(fwp_model_num_params(m, &n));
  for (int64_t i = 0; i < n; ++i) {
    fwp_param_info info;
    CHECK_OK(fwp_model_param_info(m, i, &info));
    size += info.numel;
  }
  float* g = malloc((size_t)size * sizeof(float));
  int64_t at = 0;
  for (int64_t i = 0; i < n; ++i) {
    fwp_param_info info;
    CHECK_OK(fwp_model_param_info(m, i, &info));
    CHECK_OK(fwp_model_get_grad(m, i, g + at, info.numel));
    at += info.numel;
  }
  *total = size;
  return g;
}

static void padding_invariance(int softmax) {
  fwp_context* ctx = make_context();
  fwp_seq2seq_config c;
  tiny_config(&c);
  c.tie_embeddings = 0;
  if (softmax) {
    make_softmax(&c.encoder_attention);
    make_softmax(&c.decoder_attention);
    make_softmax(&c.cross_attention);
  } else {
    c.decoder_attention.update_rule = FWP_UPDATE_DELTA;
    c.decoder_attention.sum_normalize = 1;
  }
  fwp_model* m = make_model(ctx, &c);
  pairs p;
  three_pairs(&p);
  /* Three more columns of padding than the longest pair needs. */
  fwp_seq2seq_batch padded = lay_out(&p, 0, 3, 3);
  fwp_seq2seq_loss whole;
  CHECK_OK(fwp_model_zero_grad(m));
  CHECK_OK(fwp_seq2seq_forward(m, &padded, &whole));
  CHECK_OK(fwp_model_backward(m));
  int64_t size = 0;
  float* g = all_grads(m, &size);
  double loss_sum = 0, nll_sum = 0;
  int64_t tokens = 0;
  double* sum = calloc((size_t)size, sizeof(double));
  for (int i = 0; i < 3; ++i) {
    pairs one = p;
    fwp_seq2seq_batch b = lay_out(&one, i, 1, 0);
    fwp_seq2seq_loss l;
    CHECK_OK(fwp_model_zero_grad(m));
    CHECK_OK(fwp_seq2seq_forward(m, &b, &l));
    CHECK_OK(fwp_model_backward(m));
    loss_sum += l.loss_sum;
    nll_sum += l.nll_sum;
    tokens += l.tokens;
    int64_t n = 0;
    float* gi = all_grads(m, &n);
    /* backward gives the gradient of the mean: scale back to the sum. */
    for (int64_t k = 0; k < n; ++k) sum[k] += (double)gi[k] * (double)l.tokens;
    free(gi);
  }
  assert_int_equal(tokens, whole.tokens);
  if (fabs(loss_sum - whole.loss_sum) > 1e-4 * loss_sum) fail_msg("loss %g vs %g one by one", whole.loss_sum, loss_sum);
  if (fabs(nll_sum - whole.nll_sum) > 1e-4 * nll_sum) fail_msg("nll %g vs %g one by one", whole.nll_sum, nll_sum);
  double scale = 0;
  for (int64_t k = 0; k < size; ++k) scale = fmax(scale, fabs(sum[k]));
  assert_true(scale > 0);
  for (int64_t k = 0; k < size; ++k) {
    const double padded_grad = (double)g[k] * (double)whole.tokens;
    if (fabs(padded_grad - sum[k]) > 1e-4 * scale + 1e-4 * fabs(sum[k]))
      fail_msg("softmax %d: gradient %lld: padded %g, pairs one by one %g", softmax, (long long)k, padded_grad, sum[k]);
  }
  free(sum);
  free(g);
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
}

static void test_padding_invariance(void** unused) {
  (void)unused;
  padding_invariance(0);
  padding_invariance(1);
}

/* ---- evaluate ---------------------------------------------------------------------------------- */

static void test_evaluate(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_seq2seq_config c;
  tiny_config(&c);
  fwp_model* m = make_model(ctx, &c);
  pairs p;
  fwp_seq2seq_batch b = three_pairs(&p);
  fwp_seq2seq_loss f, e;
  /* Dropout 0, no FAVOR+: evaluate is forward. */
  CHECK_OK(fwp_seq2seq_forward(m, &b, &f));
  CHECK_OK(fwp_seq2seq_evaluate(m, &b, &e));
  assert_true(f.loss_sum == e.loss_sum);
  assert_true(f.nll_sum == e.nll_sum);
  assert_int_equal(f.tokens, e.tokens);
  /* evaluate replaced the forward's activations: nothing to differentiate. */
  EXPECT_ERROR(fwp_model_backward(m), FWP_ERR_BAD_STATE, "forward");
  CHECK_OK(fwp_seq2seq_forward(m, &b, &f));
  CHECK_OK(fwp_model_backward(m));
  EXPECT_ERROR(fwp_model_backward(m), FWP_ERR_BAD_STATE, "forward");
  fwp_model_destroy(m);

  /* With dropout: evaluate is deterministic and keeps the training flag either way. */
  c.dropout = 0.3f;
  m = make_model(ctx, &c);
  fwp_seq2seq_loss e2, f2;
  CHECK_OK(fwp_seq2seq_evaluate(m, &b, &e));
  CHECK_OK(fwp_seq2seq_forward(m, &b, &f));
  CHECK_OK(fwp_seq2seq_forward(m, &b, &f2));
  assert_true(f.loss_sum != f2.loss_sum); /* still training: new dropout masks */
  assert_true(f.loss_sum != e.loss_sum);
  CHECK_OK(fwp_seq2seq_evaluate(m, &b, &e2));
  assert_true(e.loss_sum == e2.loss_sum);
  CHECK_OK(fwp_model_set_training(m, 0));
  CHECK_OK(fwp_seq2seq_evaluate(m, &b, &e2));
  CHECK_OK(fwp_seq2seq_forward(m, &b, &f));
  assert_true(f.loss_sum == e.loss_sum); /* evaluation mode kept: no dropout */
  assert_true(e2.loss_sum == e.loss_sum);
  CHECK_OK(fwp_model_backward(m));
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
}

/* ---- checkpoints ------------------------------------------------------------------------------- */

static int translate_all(fwp_model* m, const fwp_seq2seq_batch* b, int beam, int32_t* out, int64_t cap,
                         int64_t* lengths, float* scores) {
  fwp_seq2seq_search_config s;
  fwp_seq2seq_search_config_init(&s);
  s.beam_size = beam;
  return fwp_seq2seq_translate(m, b->source, b->source_lengths, b->batch, b->source_length, &s, out, cap, lengths,
                               scores);
}

static void test_checkpoint(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_seq2seq_config c;
  unusual_config(&c);
  /* Shrink the unusual config's vocabulary use to the batch's ids: pad 14, bos 3, eos 7. */
  c.encoder_attention.favor_redraw = 1;
  c.cross_attention.favor_redraw = 1;
  fwp_model* m = make_model(ctx, &c);
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  fwp_optimizer* opt = NULL;
  CHECK_OK(fwp_optimizer_create_for_model(m, &oc, &opt));
  /* A batch in this model's ids. */
  const int32_t src[2 * 4] = {4, 5, 6, 7, 8, 7, 14, 14};
  const int32_t src_len[2] = {4, 2};
  const int32_t tin[2 * 3] = {3, 9, 10, 3, 11, 14};
  const int32_t tout[2 * 3] = {9, 10, 7, 11, 7, 14};
  const int32_t tlen[2] = {3, 2};
  fwp_seq2seq_batch b = {src, src_len, tin, tout, tlen, 2, 4, 3};
  fwp_seq2seq_loss l1, l2;
  for (int i = 0; i < 3; ++i) {
    CHECK_OK(fwp_model_zero_grad(m));
    CHECK_OK(fwp_seq2seq_forward(m, &b, &l1));
    CHECK_OK(fwp_model_backward(m));
    CHECK_OK(fwp_optimizer_step(opt, NULL));
  }
  char dir[] = "/tmp/fwp_c_seq2seq_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/s2s.safetensors", dir);
  CHECK_OK(fwp_checkpoint_save(path, m, opt, NULL, "seq2seq test"));
  fwp_model* loaded = NULL;
  CHECK_OK(fwp_model_load(ctx, path, &loaded));
  fwp_model_kind kind;
  CHECK_OK(fwp_model_get_kind(loaded, &kind));
  assert_int_equal(kind, FWP_MODEL_SEQ2SEQ);
  fwp_seq2seq_config back;
  back.struct_size = sizeof back;
  CHECK_OK(fwp_seq2seq_get_config(loaded, &back));
  expect_same_config(&c, &back);
  assert_int_equal(back.seed, 0); /* not stored */
  /* Bit-identical evaluation, translation and (the generator was saved) training forwards. */
  CHECK_OK(fwp_seq2seq_evaluate(m, &b, &l1));
  CHECK_OK(fwp_seq2seq_evaluate(loaded, &b, &l2));
  assert_memory_equal(&l1, &l2, sizeof l1);
  enum { CAP = 16 };
  int32_t o1[2 * CAP], o2[2 * CAP];
  int64_t n1[2], n2[2];
  float s1[2], s2[2];
  for (int beam = 1; beam <= 3; beam += 2) {
    memset(o1, 0, sizeof o1);
    memset(o2, 0, sizeof o2);
    CHECK_OK(translate_all(m, &b, beam, o1, CAP, n1, s1));
    CHECK_OK(translate_all(loaded, &b, beam, o2, CAP, n2, s2));
    assert_memory_equal(n1, n2, sizeof n1);
    assert_memory_equal(o1, o2, sizeof o1);
    assert_memory_equal(s1, s2, sizeof s1);
  }
  CHECK_OK(fwp_seq2seq_forward(m, &b, &l1));
  CHECK_OK(fwp_seq2seq_forward(loaded, &b, &l2));
  assert_memory_equal(&l1, &l2, sizeof l1);
  /* Into an existing model with the optimizer: the same next step. */
  fwp_model* same = NULL;
  c.seed = 99;
  CHECK_OK(fwp_seq2seq_create(ctx, &c, &same));
  fwp_optimizer* opt2 = NULL;
  CHECK_OK(fwp_optimizer_create_for_model(same, &oc, &opt2));
  CHECK_OK(fwp_checkpoint_load(path, same, opt2, NULL));
  CHECK_OK(fwp_seq2seq_evaluate(same, &b, &l2));
  CHECK_OK(fwp_seq2seq_evaluate(m, &b, &l1));
  assert_memory_equal(&l1, &l2, sizeof l1);
  /* A translation model has no fwp_state. */
  fwp_state* st = (fwp_state*)1;
  EXPECT_ERROR(fwp_state_create(loaded, 1, &st), FWP_ERR_UNSUPPORTED, "state");
  assert_null(st);
  /* A model of another shape refuses the file. */
  fwp_model* wider = NULL;
  c.d_ff = 40;
  CHECK_OK(fwp_seq2seq_create(ctx, &c, &wider));
  EXPECT_ERROR(fwp_checkpoint_load(path, wider, NULL, NULL), FWP_ERR_FORMAT, "");

  /* Random byte flips never crash fwp_model_load: an error, or a model that runs. */
  FILE* f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  const long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char* bytes = malloc((size_t)size);
  assert_int_equal(fread(bytes, 1, (size_t)size, f), (size_t)size);
  fclose(f);
  uint64_t header = 0;
  for (int i = 7; i >= 0; --i) header = header * 256 + bytes[i];
  assert_true(header > 0 && header + 8 <= (uint64_t)size);
  char flipped[300];
  snprintf(flipped, sizeof flipped, "%s/flipped.safetensors", dir);
  unsigned char* copy = malloc((size_t)size);
  int loaded_count = 0;
  for (int round = 0; round < 300; ++round) {
    memcpy(copy, bytes, (size_t)size);
    const int flips = 1 + (int)(next_random() % 4);
    for (int k = 0; k < flips; ++k) {
      /* Mostly in the length and JSON header, where a flip reaches the parser and the config. */
      const uint64_t span = next_random() % 4 != 0 ? header + 8 : (uint64_t)size;
      const uint64_t at = next_random() % span;
      copy[at] ^= (unsigned char)(1u << (next_random() % 8));
    }
    f = fopen(flipped, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(copy, 1, (size_t)size, f), (size_t)size);
    fclose(f);
    fwp_model* any = (fwp_model*)1;
    const fwp_status st2 = fwp_model_load(ctx, flipped, &any);
    if (st2 == FWP_OK) {
      ++loaded_count;
      assert_non_null(any);
      /* It runs (a flipped float may make the loss NaN: no error required either way). */
      CHECK_OK(fwp_model_get_kind(any, &kind));
      if (kind == FWP_MODEL_SEQ2SEQ) {
        fwp_seq2seq_config cc;
        cc.struct_size = sizeof cc;
        CHECK_OK(fwp_seq2seq_get_config(any, &cc));
        if (cc.vocab_size == c.vocab_size) (void)fwp_seq2seq_evaluate(any, &b, &l2);
      }
      fwp_model_destroy(any);
    } else {
      if (st2 != FWP_ERR_FORMAT && st2 != FWP_ERR_IO)
        fail_msg("round %d: status %d (%s)", round, (int)st2, fwp_last_error_message());
      assert_null(any);
    }
  }
  assert_true(loaded_count > 0); /* flips in the tensors' data load */
  free(copy);
  free(bytes);
  remove(flipped);

  remove(path);
  rmdir(dir);
  fwp_model_destroy(wider);
  fwp_optimizer_destroy(opt2);
  fwp_model_destroy(same);
  fwp_model_destroy(loaded);
  fwp_optimizer_destroy(opt);
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_init_and_presets),
      cmocka_unit_test(test_create_get_config_round_trip),
      cmocka_unit_test(test_bad_configs),
      cmocka_unit_test(test_wrong_model_kind),
      cmocka_unit_test(test_batch_checks),
      cmocka_unit_test(test_translate_checks),
      cmocka_unit_test(test_copy_task),
      cmocka_unit_test(test_attention_kinds_run),
      cmocka_unit_test(test_padding_invariance),
      cmocka_unit_test(test_evaluate),
      cmocka_unit_test(test_checkpoint),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
