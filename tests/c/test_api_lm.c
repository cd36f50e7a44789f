/* C API contract of the language model (fwp/lm.h): config init, presets and
 * round trip; every argument check (status + a message naming the argument);
 * a tiny corpus memorised with Adam; checkpoint save / load / fwp_model_load
 * bit-exact; carried state through fwp_lm_forward; evaluation modes; steps,
 * sampling and seeded generation (greedy == argmax of the step's log-probs);
 * adaptive input + softmax (cutoffs, div_val, tied): names, training, steps
 * against forwards, evaluation, generation, a checkpoint round trip, and every
 * bad cutoff / div_val. */
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

#define VOCAB 11

static fwp_context* make_context(void) {
  fwp_context_config cfg;
  fwp_context_config_init(&cfg);
  cfg.num_threads = 1;
  cfg.seed = 77;
  fwp_context* ctx = NULL;
  CHECK_OK(fwp_context_create(&cfg, &ctx));
  return ctx;
}

/* A tiny LM: 2 layers, d_model 16, 2 heads of 8, d_ff 32. */
static void tiny_config(fwp_lm_config* c, fwp_feature_map map, fwp_update_rule rule) {
  fwp_lm_config_init(c);
  c->vocab_size = VOCAB;
  c->num_layers = 2;
  c->attention.d_model = 16;
  c->attention.num_heads = 2;
  c->attention.d_head = 8;
  c->attention.feature_map = map;
  c->attention.update_rule = rule;
  if (map == FWP_FEATURE_MAP_SOFTMAX) c->attention.sum_normalize = 0;
  c->d_ff = 32;
  c->dropout = 0.0f;
  c->seed = 5;
}

static fwp_model* make_lm(fwp_context* ctx, fwp_feature_map map, fwp_update_rule rule) {
  fwp_lm_config c;
  tiny_config(&c, map, rule);
  fwp_model* m = NULL;
  CHECK_OK(fwp_lm_create(ctx, &c, &m));
  return m;
}

/* ---- config ----------------------------------------------------------------------- */

static void test_config_presets_and_round_trip(void** unused) {
  (void)unused;
  fwp_lm_config c;
  fwp_lm_config_init(&c);
  assert_int_equal(c.struct_size, sizeof(fwp_lm_config));
  assert_int_equal(c.num_layers, 16);
  assert_int_equal(c.attention.d_model, 128);
  assert_int_equal(c.d_ff, 2048);
  assert_int_equal(c.vocab_size, 0);
  CHECK_OK(fwp_lm_config_preset("paper-medium", &c));
  assert_int_equal(c.attention.d_model, 256);
  assert_int_equal(c.attention.d_head, 32);
  assert_int_equal(c.attention.num_heads, 8);
  assert_int_equal(c.num_layers, 16);
  CHECK_OK(fwp_lm_config_preset("paper-small", &c));
  assert_int_equal(c.attention.d_model, 128);
  assert_int_equal(c.attention.d_head, 16);
  CHECK_OK(fwp_lm_config_preset("cpu-small", &c));
  assert_int_equal(c.num_layers, 4);
  assert_int_equal(c.d_ff, 512);
  EXPECT_ERROR(fwp_lm_config_preset("huge", &c), FWP_ERR_INVALID_ARGUMENT, "cpu-small");
  EXPECT_ERROR(fwp_lm_config_preset(NULL, &c), FWP_ERR_NULL_POINTER, "name");
  EXPECT_ERROR(fwp_lm_config_preset("cpu-small", NULL), FWP_ERR_NULL_POINTER, "config");

  fwp_context* ctx = make_context();
  c.vocab_size = 50;
  c.tie_embeddings = 1;
  c.pre_norm = 1;
  c.position = FWP_LM_POSITION_NONE;
  c.seed = 12;
  fwp_model* m = NULL;
  CHECK_OK(fwp_lm_create(ctx, &c, &m));
  fwp_model_kind kind;
  CHECK_OK(fwp_model_get_kind(m, &kind));
  assert_int_equal(kind, FWP_MODEL_LANGUAGE);
  fwp_lm_config back;
  back.struct_size = sizeof back;
  CHECK_OK(fwp_lm_get_config(m, &back));
  assert_int_equal(back.vocab_size, 50);
  assert_int_equal(back.num_layers, 4);
  assert_int_equal(back.d_ff, 512);
  assert_int_equal(back.tie_embeddings, 1);
  assert_int_equal(back.pre_norm, 1);
  assert_int_equal(back.position, FWP_LM_POSITION_NONE);
  assert_int_equal(back.attention.d_model, 128);
  assert_int_equal(back.attention.feature_map, FWP_FEATURE_MAP_ELU);
  assert_int_equal(back.seed, 12);
  /* The same seed gives the same parameters. */
  fwp_model* m2 = NULL;
  CHECK_OK(fwp_lm_create(ctx, &c, &m2));
  fwp_param_info info;
  CHECK_OK(fwp_model_param_info(m, 0, &info));
  assert_string_equal(info.name, "embedding.weight");
  assert_int_equal(info.shape[0], 50);
  int64_t index = -1;
  CHECK_OK(fwp_model_param_index(m, "layers.1.norm2.bias", &index));
  CHECK_OK(fwp_model_param_index(m, "output.bias", &index));
  CHECK_OK(fwp_model_param_info(m, index, &info));
  assert_int_equal(info.numel, 50);
  EXPECT_ERROR(fwp_model_param_index(m, "output.weight", &index), FWP_ERR_INVALID_ARGUMENT, "output.weight");
  CHECK_OK(fwp_model_param_index(m, "layers.0.ff.linear1.weight", &index));
  CHECK_OK(fwp_model_param_info(m, index, &info));
  float* w1 = malloc((size_t)info.numel * sizeof(float));
  float* w2 = malloc((size_t)info.numel * sizeof(float));
  CHECK_OK(fwp_model_get_param(m, index, w1, info.numel));
  CHECK_OK(fwp_model_get_param(m2, index, w2, info.numel));
  assert_memory_equal(w1, w2, (size_t)info.numel * sizeof(float));
  free(w1);
  free(w2);
  fwp_model_destroy(m);
  fwp_model_destroy(m2);
  fwp_context_destroy(ctx);
}

static void test_bad_configs(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_lm_config c;
  fwp_model* m = (fwp_model*)1;
  tiny_config(&c, FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA);
  EXPECT_ERROR(fwp_lm_create(NULL, &c, &m), FWP_ERR_NULL_POINTER, "ctx");
  assert_null(m);
  EXPECT_ERROR(fwp_lm_create(ctx, NULL, &m), FWP_ERR_NULL_POINTER, "config");
  EXPECT_ERROR(fwp_lm_create(ctx, &c, NULL), FWP_ERR_NULL_POINTER, "out");
  c.vocab_size = 0;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "config->vocab_size");
  tiny_config(&c, FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA);
  /* Adaptive softmax: cutoffs strictly increasing in (0, vocab_size), div_val >= 1 and small enough. */
  c.num_cutoffs = 2;
  c.cutoffs[0] = 5;
  c.cutoffs[1] = 5;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "config->cutoffs[1] must be greater");
  assert_null(m);
  c.cutoffs[1] = VOCAB;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "config->cutoffs[1] must be in (0, vocab_size");
  c.cutoffs[0] = 0;
  c.cutoffs[1] = 5;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "config->cutoffs[0]");
  c.cutoffs[0] = 3;
  c.div_val = 0;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "config->div_val must be >= 1");
  c.div_val = 5; /* d_model 16: widths 16, 3, 0 */
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "config->div_val is too large");
  c.div_val = 4; /* widths 16, 4, 1: accepted */
  CHECK_OK(fwp_lm_create(ctx, &c, &m));
  fwp_model_destroy(m);
  m = (fwp_model*)1;
  c.num_cutoffs = -1;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "config->num_cutoffs");
  c.div_val = 1;
  c.num_cutoffs = 99;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "config->num_cutoffs");
  c.num_cutoffs = 0;
  c.attn_dropout = 0.1f;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_UNSUPPORTED, "attn_dropout");
  c.attn_dropout = 0.0f;
  c.dropout = -0.5f;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "config->dropout");
  c.dropout = 0.0f;
  c.pre_norm = 2;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "config->pre_norm");
  c.pre_norm = 0;
  c.position = (fwp_lm_position)7;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_OUT_OF_RANGE, "config->position");
  c.position = FWP_LM_POSITION_SINUSOIDAL;
  c.attention.carry_state = 1;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "carry_state");
  c.attention.carry_state = 0;
  c.attention.feature_map = FWP_FEATURE_MAP_SOFTMAX;  /* with the delta rule and sum_normalize: refused */
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "config->attention.update_rule");
  c.attention.feature_map = FWP_FEATURE_MAP_ELU;
  c.attention.num_heads = 0;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "config->attention.num_heads");
  c.attention.num_heads = 2;
  c.attention.struct_size = 3;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "config->attention->struct_size");
  c.attention.struct_size = sizeof(fwp_layer_config);
  c.struct_size = 3;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "config->struct_size");
  c.struct_size = sizeof(fwp_lm_config) + 8;
  EXPECT_ERROR(fwp_lm_create(ctx, &c, &m), FWP_ERR_INVALID_ARGUMENT, "newer fwp.h");
  /* Another kind of model. */
  fwp_retrieval_config rc;
  fwp_retrieval_config_init(&rc);
  fwp_model* r = NULL;
  CHECK_OK(fwp_model_create_retrieval(ctx, &rc, &r));
  fwp_lm_config back;
  back.struct_size = sizeof back;
  EXPECT_ERROR(fwp_lm_get_config(r, &back), FWP_ERR_INVALID_ARGUMENT, "not a language model");
  int32_t ids[2] = {0, 1};
  double loss;
  EXPECT_ERROR(fwp_lm_forward(r, ids, ids, 1, 2, NULL, &loss, NULL), FWP_ERR_INVALID_ARGUMENT, "not a language model");
  fwp_model_destroy(r);
  fwp_context_destroy(ctx);
}

/* ---- forward, backward, training ----------------------------------------------------- */

static void test_forward_bad_input(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_model* m = make_lm(ctx, FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA);
  int32_t in[6] = {1, 2, 3, 4, 5, 6}, tg[6] = {2, 3, 4, 5, 6, 7};
  double loss = 0;
  float losses[6];
  CHECK_OK(fwp_lm_forward(m, in, tg, 2, 3, NULL, &loss, losses));
  assert_true(loss > 0 && isfinite(loss));
  double mean = 0;
  for (int i = 0; i < 6; ++i) mean += losses[i] / 6.0;
  assert_true(fabs(mean - loss) < 1e-5);
  CHECK_OK(fwp_model_backward(m));
  EXPECT_ERROR(fwp_model_backward(m), FWP_ERR_BAD_STATE, "forward");
  EXPECT_ERROR(fwp_lm_forward(NULL, in, tg, 2, 3, NULL, &loss, NULL), FWP_ERR_NULL_POINTER, "model");
  EXPECT_ERROR(fwp_lm_forward(m, NULL, tg, 2, 3, NULL, &loss, NULL), FWP_ERR_NULL_POINTER, "inputs");
  EXPECT_ERROR(fwp_lm_forward(m, in, NULL, 2, 3, NULL, &loss, NULL), FWP_ERR_NULL_POINTER, "targets");
  EXPECT_ERROR(fwp_lm_forward(m, in, tg, 2, 3, NULL, NULL, NULL), FWP_ERR_NULL_POINTER, "mean_loss");
  EXPECT_ERROR(fwp_lm_forward(m, in, tg, 0, 3, NULL, &loss, NULL), FWP_ERR_INVALID_ARGUMENT, "batch");
  EXPECT_ERROR(fwp_lm_forward(m, in, tg, 2, -1, NULL, &loss, NULL), FWP_ERR_INVALID_ARGUMENT, "length");
  EXPECT_ERROR(fwp_lm_forward(m, in, tg, INT64_MAX, INT64_MAX, NULL, &loss, NULL), FWP_ERR_INVALID_ARGUMENT,
               "batch * length");
  in[4] = VOCAB;
  EXPECT_ERROR(fwp_lm_forward(m, in, tg, 2, 3, NULL, &loss, NULL), FWP_ERR_OUT_OF_RANGE, "inputs[4]");
  in[4] = -1;
  EXPECT_ERROR(fwp_lm_forward(m, in, tg, 2, 3, NULL, &loss, NULL), FWP_ERR_OUT_OF_RANGE, "inputs[4]");
  in[4] = 5;
  tg[1] = 1000;
  EXPECT_ERROR(fwp_lm_forward(m, in, tg, 2, 3, NULL, &loss, NULL), FWP_ERR_OUT_OF_RANGE, "targets[1]");
  int32_t none[6] = {-1, -1, -1, -1, -1, -1};
  EXPECT_ERROR(fwp_lm_forward(m, in, none, 2, 3, NULL, &loss, NULL), FWP_ERR_INVALID_ARGUMENT, "all negative");
  tg[1] = -1;  /* ignored target */
  CHECK_OK(fwp_lm_forward(m, in, tg, 2, 3, NULL, &loss, losses));
  assert_true(losses[1] == 0.0f);

  /* States: of another model, of another batch. */
  fwp_model* other = make_lm(ctx, FWP_FEATURE_MAP_DPFP, FWP_UPDATE_SUM);
  fwp_state* foreign = NULL;
  CHECK_OK(fwp_state_create(other, 2, &foreign));
  EXPECT_ERROR(fwp_lm_forward(m, in, tg, 2, 3, foreign, &loss, NULL), FWP_ERR_SHAPE_MISMATCH, "state");
  fwp_state* three = NULL;
  CHECK_OK(fwp_state_create(m, 3, &three));
  EXPECT_ERROR(fwp_lm_forward(m, in, tg, 2, 3, three, &loss, NULL), FWP_ERR_SHAPE_MISMATCH, "batch");
  fwp_context* ctx2 = make_context();
  fwp_model* elsewhere = make_lm(ctx2, FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA);
  fwp_state* other_ctx = NULL;
  CHECK_OK(fwp_state_create(elsewhere, 2, &other_ctx));
  EXPECT_ERROR(fwp_lm_forward(m, in, tg, 2, 3, other_ctx, &loss, NULL), FWP_ERR_CONTEXT_MISMATCH, "context");
  fwp_state_destroy(foreign);
  fwp_state_destroy(three);
  fwp_state_destroy(other_ctx);
  fwp_model_destroy(elsewhere);
  fwp_context_destroy(ctx2);
  fwp_model_destroy(other);
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
}

/* The repeated sentence "0 1 2 ... 9 10" (period 11) memorised with Adam. */
static void memorise(fwp_feature_map map, fwp_update_rule rule) {
  fwp_context* ctx = make_context();
  fwp_model* m = make_lm(ctx, map, rule);
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  oc.learning_rate = 3e-3f;
  fwp_optimizer* opt = NULL;
  CHECK_OK(fwp_optimizer_create_for_model(m, &oc, &opt));
  enum { B = 4, T = 16 };
  int32_t in[B * T], tg[B * T];
  double loss = 0, first = 0;
  for (int step = 0; step < 300; ++step) {
    for (int b = 0; b < B; ++b)
      for (int t = 0; t < T; ++t) {
        in[b * T + t] = (step * 3 + b * 5 + t) % VOCAB;
        tg[b * T + t] = (step * 3 + b * 5 + t + 1) % VOCAB;
      }
    CHECK_OK(fwp_model_zero_grad(m));
    CHECK_OK(fwp_lm_forward(m, in, tg, B, T, NULL, &loss, NULL));
    if (step == 0) first = loss;
    CHECK_OK(fwp_model_backward(m));
    CHECK_OK(fwp_optimizer_step(opt, NULL));
  }
  if (!(first > 2.0 && loss < 0.05)) fail_msg("feature map %d: loss %g -> %g after 300 steps", (int)map, first, loss);
  fwp_optimizer_destroy(opt);
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
}

static void test_memorises_a_tiny_corpus(void** unused) {
  (void)unused;
  memorise(FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA);
  memorise(FWP_FEATURE_MAP_SOFTMAX, FWP_UPDATE_SUM);
}

/* ---- checkpoints ------------------------------------------------------------------------ */

static void test_checkpoint_round_trip(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_lm_config c;
  tiny_config(&c, FWP_FEATURE_MAP_FAVOR, FWP_UPDATE_DELTA);
  c.dropout = 0.1f;
  c.tie_embeddings = 1;
  fwp_model* m = NULL;
  CHECK_OK(fwp_lm_create(ctx, &c, &m));
  int32_t in[8] = {1, 2, 3, 4, 5, 6, 7, 8}, tg[8] = {2, 3, 4, 5, 6, 7, 8, 9};
  double loss;
  CHECK_OK(fwp_lm_forward(m, in, tg, 2, 4, NULL, &loss, NULL));
  char dir[] = "/tmp/fwp_c_lm_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256];
  snprintf(path, sizeof path, "%s/lm.safetensors", dir);
  CHECK_OK(fwp_checkpoint_save(path, m, NULL, NULL, "lm test"));
  fwp_model* loaded = NULL;
  CHECK_OK(fwp_model_load(ctx, path, &loaded));
  fwp_model_kind kind;
  CHECK_OK(fwp_model_get_kind(loaded, &kind));
  assert_int_equal(kind, FWP_MODEL_LANGUAGE);
  fwp_lm_config back;
  back.struct_size = sizeof back;
  CHECK_OK(fwp_lm_get_config(loaded, &back));
  assert_int_equal(back.tie_embeddings, 1);
  assert_int_equal(back.attention.feature_map, FWP_FEATURE_MAP_FAVOR);
  assert_int_equal(back.seed, 0);  /* not stored: the file holds the parameters and the generator */
  int64_t n = 0, n2 = 0;
  CHECK_OK(fwp_model_num_params(m, &n));
  CHECK_OK(fwp_model_num_params(loaded, &n2));
  assert_int_equal(n, n2);
  for (int64_t i = 0; i < n; ++i) {
    fwp_param_info a, b;
    CHECK_OK(fwp_model_param_info(m, i, &a));
    CHECK_OK(fwp_model_param_info(loaded, i, &b));
    assert_string_equal(a.name, b.name);
    assert_int_equal(a.numel, b.numel);
    float* x = malloc((size_t)a.numel * sizeof(float));
    float* y = malloc((size_t)a.numel * sizeof(float));
    CHECK_OK(fwp_model_get_param(m, i, x, a.numel));
    CHECK_OK(fwp_model_get_param(loaded, i, y, b.numel));
    assert_memory_equal(x, y, (size_t)a.numel * sizeof(float));
    free(x);
    free(y);
  }
  /* The same dropout masks and FAVOR+ draws from here on: the generator was saved. */
  double l1, l2;
  CHECK_OK(fwp_lm_forward(m, in, tg, 2, 4, NULL, &l1, NULL));
  CHECK_OK(fwp_lm_forward(loaded, in, tg, 2, 4, NULL, &l2, NULL));
  assert_true(l1 == l2);
  /* And into an existing model of the same config. */
  fwp_model* same = NULL;
  c.seed = 99;
  CHECK_OK(fwp_lm_create(ctx, &c, &same));
  CHECK_OK(fwp_checkpoint_load(path, same, NULL, NULL));
  CHECK_OK(fwp_lm_forward(same, in, tg, 2, 4, NULL, &l2, NULL));
  CHECK_OK(fwp_model_set_training(m, 0));
  CHECK_OK(fwp_model_set_training(same, 0));
  CHECK_OK(fwp_lm_forward(m, in, tg, 2, 4, NULL, &l1, NULL));
  CHECK_OK(fwp_lm_forward(same, in, tg, 2, 4, NULL, &l2, NULL));
  assert_true(l1 == l2);
  /* A model of another shape refuses the file. */
  fwp_model* wider = NULL;
  c.d_ff = 64;
  CHECK_OK(fwp_lm_create(ctx, &c, &wider));
  EXPECT_ERROR(fwp_checkpoint_load(path, wider, NULL, NULL), FWP_ERR_FORMAT, "");
  remove(path);
  rmdir(dir);
  fwp_model_destroy(wider);
  fwp_model_destroy(same);
  fwp_model_destroy(loaded);
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
}

/* ---- carried state and evaluation ---------------------------------------------------------- */

static void test_carried_state_and_evaluation(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_model* m = make_lm(ctx, FWP_FEATURE_MAP_DPFP, FWP_UPDATE_DELTA);
  CHECK_OK(fwp_model_set_training(m, 0));
  int32_t stream[25];
  for (int i = 0; i < 25; ++i) stream[i] = (i * 7 + 3) % VOCAB;
  /* One segment of 24 vs three carried segments of 8. */
  double whole;
  float whole_losses[24];
  CHECK_OK(fwp_lm_forward(m, stream, stream + 1, 1, 24, NULL, &whole, whole_losses));
  fwp_state* st = NULL;
  CHECK_OK(fwp_state_create(m, 1, &st));
  double total = 0;
  for (int s = 0; s < 3; ++s) {
    double l;
    float losses[8];
    CHECK_OK(fwp_lm_forward(m, stream + 8 * s, stream + 8 * s + 1, 1, 8, st, &l, losses));
    for (int t = 0; t < 8; ++t)
      if (fabsf(losses[t] - whole_losses[8 * s + t]) > 1e-4f) fail_msg("segment %d position %d differs", s, t);
    total += l * 8;
  }
  assert_true(fabs(total / 24 - whole) < 1e-5);
  /* Evaluation: carry == the whole stream as one segment. */
  double nll_carry, nll_seg, nll_slide;
  int64_t n_carry, n_seg, n_slide;
  CHECK_OK(fwp_lm_evaluate(m, stream, 25, FWP_LM_EVAL_CARRY, 5, &nll_carry, &n_carry));
  CHECK_OK(fwp_lm_evaluate(m, stream, 25, FWP_LM_EVAL_SEGMENTS, 24, &nll_seg, &n_seg));
  CHECK_OK(fwp_lm_evaluate(m, stream, 25, FWP_LM_EVAL_SLIDING, 6, &nll_slide, &n_slide));
  assert_int_equal(n_carry, 24);
  assert_int_equal(n_seg, 24);
  assert_int_equal(n_slide, 24);
  assert_true(fabs(nll_carry - nll_seg) < 1e-3);
  assert_true(fabs(nll_seg - whole * 24) < 1e-3);
  EXPECT_ERROR(fwp_lm_evaluate(m, stream, 25, (fwp_lm_eval_mode)9, 5, &nll_seg, &n_seg), FWP_ERR_OUT_OF_RANGE, "mode");
  EXPECT_ERROR(fwp_lm_evaluate(m, stream, 1, FWP_LM_EVAL_SEGMENTS, 5, &nll_seg, &n_seg), FWP_ERR_INVALID_ARGUMENT, "count");
  EXPECT_ERROR(fwp_lm_evaluate(m, stream, 25, FWP_LM_EVAL_SEGMENTS, 0, &nll_seg, &n_seg), FWP_ERR_INVALID_ARGUMENT, "length");
  EXPECT_ERROR(fwp_lm_evaluate(m, NULL, 25, FWP_LM_EVAL_SEGMENTS, 5, &nll_seg, &n_seg), FWP_ERR_NULL_POINTER, "tokens");
  EXPECT_ERROR(fwp_lm_evaluate(m, stream, 25, FWP_LM_EVAL_SEGMENTS, 5, NULL, &n_seg), FWP_ERR_NULL_POINTER, "total_nll");
  EXPECT_ERROR(fwp_lm_evaluate(m, stream, 25, FWP_LM_EVAL_SEGMENTS, 5, &nll_seg, NULL), FWP_ERR_NULL_POINTER, "scored");
  /* The training flag is restored. */
  CHECK_OK(fwp_model_set_training(m, 1));
  CHECK_OK(fwp_lm_evaluate(m, stream, 25, FWP_LM_EVAL_SLIDING, 6, &nll_slide, &n_slide));
  int32_t in[2] = {1, 2};
  double l;
  CHECK_OK(fwp_lm_forward(m, in, in + 1, 1, 1, NULL, &l, NULL));
  CHECK_OK(fwp_model_backward(m));  /* a training forward */
  /* Softmax models: no carry mode. */
  fwp_model* soft = make_lm(ctx, FWP_FEATURE_MAP_SOFTMAX, FWP_UPDATE_SUM);
  EXPECT_ERROR(fwp_lm_evaluate(soft, stream, 25, FWP_LM_EVAL_CARRY, 5, &nll_seg, &n_seg), FWP_ERR_UNSUPPORTED, "carry");
  fwp_model_destroy(soft);
  fwp_state_destroy(st);
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
}

/* ---- steps, sampling, generation --------------------------------------------------------- */

static void generation_checks(fwp_feature_map map, fwp_update_rule rule) {
  fwp_context* ctx = make_context();
  fwp_model* m = make_lm(ctx, map, rule);
  fwp_state* st = NULL;
  CHECK_OK(fwp_state_create(m, 1, &st));
  const int32_t prompt[3] = {4, 1, 7};
  /* Greedy generation == argmax of the step log-probs, fed back. */
  fwp_sampler_config greedy;
  fwp_sampler_config_init(&greedy);
  greedy.temperature = 0.0f;
  int32_t out[12];
  int64_t generated = 0;
  CHECK_OK(fwp_lm_generate(m, st, prompt, 3, 12, &greedy, NULL, 0, out, 12, &generated));
  assert_int_equal(generated, 12);
  fwp_state* ref = NULL;
  CHECK_OK(fwp_state_create(m, 1, &ref));
  float lp[VOCAB];
  for (int i = 0; i < 3; ++i) CHECK_OK(fwp_lm_step(m, ref, prompt + i, i == 2 ? lp : NULL));
  for (int i = 0; i < 12; ++i) {
    int32_t best = 0;
    for (int v = 1; v < VOCAB; ++v)
      if (lp[v] > lp[best]) best = v;
    assert_int_equal(out[i], best);
    double mass = 0;
    for (int v = 0; v < VOCAB; ++v) mass += exp(lp[v]);
    assert_true(fabs(mass - 1.0) < 1e-4);
    CHECK_OK(fwp_lm_step(m, ref, &out[i], lp));
  }
  /* Seeded sampling is reproducible; another seed gives other text (almost surely over 12 tokens). */
  fwp_sampler_config s;
  fwp_sampler_config_init(&s);
  s.temperature = 1.5f;
  s.seed = 1234;
  int32_t a[12], b[12], cc[12];
  int64_t na, nb, nc;
  CHECK_OK(fwp_state_reset(st));
  CHECK_OK(fwp_lm_generate(m, st, prompt, 3, 12, &s, NULL, 0, a, 12, &na));
  CHECK_OK(fwp_state_reset(st));
  CHECK_OK(fwp_lm_generate(m, st, prompt, 3, 12, &s, NULL, 0, b, 12, &nb));
  assert_int_equal(na, 12);
  assert_memory_equal(a, b, sizeof a);
  s.seed = 99;
  CHECK_OK(fwp_state_reset(st));
  CHECK_OK(fwp_lm_generate(m, st, prompt, 3, 12, &s, NULL, 0, cc, 12, &nc));
  assert_true(memcmp(a, cc, sizeof a) != 0);
  /* Stop tokens end the text before them. */
  CHECK_OK(fwp_state_reset(st));
  CHECK_OK(fwp_lm_generate(m, st, prompt, 3, 12, &greedy, &out[4], 1, b, 12, &nb));
  int64_t first_stop = 0;
  while (out[first_stop] != out[4]) ++first_stop;
  assert_int_equal(nb, first_stop);
  /* A second call continues the text: the same as one prompt holding all of it (softmax layers feed
     the second prompt token by token into their non-empty cache, fast-weight layers in one forward). */
  {
    int32_t first_part[4], joined[3 + 4 + 2], cont[5], ref_cont[5];
    const int32_t more[2] = {2, 9};
    int64_t n1, n2, n3;
    CHECK_OK(fwp_state_reset(st));
    CHECK_OK(fwp_lm_generate(m, st, prompt, 3, 4, &greedy, NULL, 0, first_part, 4, &n1));
    CHECK_OK(fwp_lm_generate(m, st, more, 2, 5, &greedy, NULL, 0, cont, 5, &n2));
    memcpy(joined, prompt, sizeof prompt);
    memcpy(joined + 3, first_part, sizeof first_part);
    memcpy(joined + 7, more, sizeof more);
    CHECK_OK(fwp_state_reset(st));
    CHECK_OK(fwp_lm_generate(m, st, joined, 9, 5, &greedy, NULL, 0, ref_cont, 5, &n3));
    assert_int_equal(n2, 5);
    assert_int_equal(n3, 5);
    assert_memory_equal(cont, ref_cont, sizeof cont);
  }
  /* Bad input. */
  EXPECT_ERROR(fwp_lm_generate(m, st, prompt, 0, 12, &s, NULL, 0, a, 12, &na), FWP_ERR_INVALID_ARGUMENT, "prompt_length");
  EXPECT_ERROR(fwp_lm_generate(m, st, prompt, 3, 12, &s, NULL, 0, a, 5, &na), FWP_ERR_INVALID_ARGUMENT, "capacity");
  EXPECT_ERROR(fwp_lm_generate(m, st, prompt, 3, -1, &s, NULL, 0, a, 5, &na), FWP_ERR_INVALID_ARGUMENT, "max_new_tokens");
  EXPECT_ERROR(fwp_lm_generate(m, st, prompt, 3, 2, &s, NULL, 1, a, 5, &na), FWP_ERR_NULL_POINTER, "stop_tokens");
  EXPECT_ERROR(fwp_lm_generate(m, NULL, prompt, 3, 2, &s, NULL, 0, a, 5, &na), FWP_ERR_NULL_POINTER, "state");
  EXPECT_ERROR(fwp_lm_generate(m, st, prompt, 3, 2, NULL, NULL, 0, a, 5, &na), FWP_ERR_NULL_POINTER, "sampler");
  const int32_t bad_prompt[2] = {1, VOCAB};
  EXPECT_ERROR(fwp_lm_generate(m, st, bad_prompt, 2, 2, &s, NULL, 0, a, 5, &na), FWP_ERR_OUT_OF_RANGE, "prompt[1]");
  fwp_state* two = NULL;
  CHECK_OK(fwp_state_create(m, 2, &two));
  EXPECT_ERROR(fwp_lm_generate(m, two, prompt, 3, 2, &s, NULL, 0, a, 5, &na), FWP_ERR_SHAPE_MISMATCH, "batch 1");
  const int32_t pair[2] = {0, VOCAB + 3};
  EXPECT_ERROR(fwp_lm_step(m, two, pair, NULL), FWP_ERR_OUT_OF_RANGE, "tokens[1]");
  EXPECT_ERROR(fwp_lm_step(m, NULL, pair, NULL), FWP_ERR_NULL_POINTER, "state");
  EXPECT_ERROR(fwp_lm_step(m, two, NULL, NULL), FWP_ERR_NULL_POINTER, "tokens");
  s.struct_size = 2;
  EXPECT_ERROR(fwp_lm_generate(m, st, prompt, 3, 2, &s, NULL, 0, a, 5, &na), FWP_ERR_INVALID_ARGUMENT, "sampler->struct_size");
  fwp_state_destroy(two);
  fwp_state_destroy(ref);
  fwp_state_destroy(st);
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
}

static void test_generation(void** unused) {
  (void)unused;
  generation_checks(FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA);
  generation_checks(FWP_FEATURE_MAP_SOFTMAX, FWP_UPDATE_SUM);
}

static void test_sampler(void** unused) {
  (void)unused;
  const float lp[4] = {logf(0.5f), logf(0.25f), logf(0.125f), logf(0.125f)};
  fwp_sampler_config s;
  fwp_sampler_config_init(&s);
  assert_true(s.temperature == 1.0f && s.top_k == 0 && s.top_p == 1.0f);
  uint64_t rng = 3;
  int32_t tok = -1;
  s.top_k = 1;
  for (int i = 0; i < 20; ++i) {
    CHECK_OK(fwp_lm_sample(lp, 4, &s, &rng, &tok));
    assert_int_equal(tok, 0);
  }
  s.top_k = 0;
  s.top_p = 0.7f;  /* 0.5 + 0.25 reaches it: tokens 0 and 1 only */
  int counts[4] = {0, 0, 0, 0};
  for (int i = 0; i < 3000; ++i) {
    CHECK_OK(fwp_lm_sample(lp, 4, &s, &rng, &tok));
    counts[tok]++;
  }
  assert_int_equal(counts[2] + counts[3], 0);
  assert_true(counts[0] > 1800 && counts[0] < 2200);
  EXPECT_ERROR(fwp_lm_sample(NULL, 4, &s, &rng, &tok), FWP_ERR_NULL_POINTER, "log_probs");
  EXPECT_ERROR(fwp_lm_sample(lp, 4, NULL, &rng, &tok), FWP_ERR_NULL_POINTER, "config");
  EXPECT_ERROR(fwp_lm_sample(lp, 4, &s, NULL, &tok), FWP_ERR_NULL_POINTER, "rng_state");
  EXPECT_ERROR(fwp_lm_sample(lp, 4, &s, &rng, NULL), FWP_ERR_NULL_POINTER, "token");
  EXPECT_ERROR(fwp_lm_sample(lp, 0, &s, &rng, &tok), FWP_ERR_INVALID_ARGUMENT, "vocab");
  s.top_p = 1.5f;
  EXPECT_ERROR(fwp_lm_sample(lp, 4, &s, &rng, &tok), FWP_ERR_INVALID_ARGUMENT, "config->top_p");
  s.top_p = 1.0f;
  s.temperature = -1.0f;
  EXPECT_ERROR(fwp_lm_sample(lp, 4, &s, &rng, &tok), FWP_ERR_INVALID_ARGUMENT, "config->temperature");
}

/* ---- adaptive input and adaptive softmax ------------------------------------------------ */

/* Vocabulary 11 in clusters [0, 3), [3, 7), [7, 11); div_val 2: widths 16, 8, 4. */
static void adaptive_config(fwp_lm_config* c, int tied) {
  tiny_config(c, FWP_FEATURE_MAP_ELU, FWP_UPDATE_DELTA);
  c->num_cutoffs = 2;
  c->cutoffs[0] = 3;
  c->cutoffs[1] = 7;
  c->div_val = 2;
  c->tie_embeddings = tied;
}

static int has_param(const fwp_model* m, const char* name) {
  int64_t index = -1;
  return fwp_model_param_index(m, name, &index) == FWP_OK;
}

static void test_adaptive_softmax(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  for (int tied = 0; tied <= 1; ++tied) {
    fwp_lm_config c;
    adaptive_config(&c, tied);
    fwp_model* m = NULL;
    CHECK_OK(fwp_lm_create(ctx, &c, &m));
    /* The authors' parameters; tied: the output uses the input's tables and tail projections. */
    fwp_param_info info;
    CHECK_OK(fwp_model_param_info(m, 0, &info));
    assert_string_equal(info.name, "embedding.emb_layers.0.weight");
    assert_int_equal(info.shape[0], 3);
    assert_int_equal(info.shape[1], 16);
    int64_t index = -1;
    CHECK_OK(fwp_model_param_index(m, "embedding.emb_layers.2.weight", &index));
    CHECK_OK(fwp_model_param_info(m, index, &info));
    assert_int_equal(info.shape[0], 4);
    assert_int_equal(info.shape[1], 4);
    assert_true(has_param(m, "output.cluster_weight"));
    assert_true(has_param(m, "output.out_layers.2.bias"));
    assert_true(has_param(m, "output.out_projs.0"));
    assert_int_equal(has_param(m, "output.out_layers.1.weight"), !tied);
    assert_int_equal(has_param(m, "output.out_projs.2"), !tied);
    assert_false(has_param(m, "embedding.weight"));
    fwp_lm_config back;
    back.struct_size = sizeof back;
    CHECK_OK(fwp_lm_get_config(m, &back));
    assert_int_equal(back.num_cutoffs, 2);
    assert_int_equal(back.cutoffs[0], 3);
    assert_int_equal(back.cutoffs[1], 7);
    assert_int_equal(back.div_val, 2);

    /* Training memorises the repeated sentence of memorise(). */
    fwp_optimizer_config oc;
    fwp_optimizer_config_init(&oc);
    oc.learning_rate = 3e-3f;
    fwp_optimizer* opt = NULL;
    CHECK_OK(fwp_optimizer_create_for_model(m, &oc, &opt));
    enum { B = 4, T = 16 };
    int32_t in[B * T], tg[B * T];
    double loss = 0, first = 0;
    for (int step = 0; step < 300; ++step) {
      for (int b = 0; b < B; ++b)
        for (int t = 0; t < T; ++t) {
          in[b * T + t] = (step * 3 + b * 5 + t) % VOCAB;
          tg[b * T + t] = (step * 3 + b * 5 + t + 1) % VOCAB;
        }
      CHECK_OK(fwp_model_zero_grad(m));
      CHECK_OK(fwp_lm_forward(m, in, tg, B, T, NULL, &loss, NULL));
      if (step == 0) first = loss;
      CHECK_OK(fwp_model_backward(m));
      CHECK_OK(fwp_optimizer_step(opt, NULL));
    }
    if (!(first > 2.0 && loss < 0.05)) fail_msg("tied %d: loss %g -> %g after 300 steps", tied, first, loss);
    fwp_optimizer_destroy(opt);

    /* Steps: the log-probabilities of the whole vocabulary (sum 1) and -the forward's token losses. */
    CHECK_OK(fwp_model_set_training(m, 0));
    int32_t stream[13];
    for (int i = 0; i < 13; ++i) stream[i] = (i * 4 + 1) % VOCAB;
    float token_losses[12];
    double mean;
    CHECK_OK(fwp_lm_forward(m, stream, stream + 1, 1, 12, NULL, &mean, token_losses));
    fwp_state* st = NULL;
    CHECK_OK(fwp_state_create(m, 1, &st));
    float lp[VOCAB];
    for (int t = 0; t < 12; ++t) {
      CHECK_OK(fwp_lm_step(m, st, stream + t, lp));
      double mass = 0;
      for (int v = 0; v < VOCAB; ++v) mass += exp(lp[v]);
      if (fabs(mass - 1.0) > 1e-5) fail_msg("position %d: probabilities sum to %g", t, mass);
      if (fabsf(-lp[stream[t + 1]] - token_losses[t]) > 1e-4f)
        fail_msg("position %d: step %g, forward %g", t, -lp[stream[t + 1]], token_losses[t]);
    }
    /* Evaluation: carry == segments of the whole stream; sliding scores every token. */
    double nll_carry, nll_seg, nll_slide;
    int64_t n_carry, n_seg, n_slide;
    CHECK_OK(fwp_lm_evaluate(m, stream, 13, FWP_LM_EVAL_CARRY, 5, &nll_carry, &n_carry));
    CHECK_OK(fwp_lm_evaluate(m, stream, 13, FWP_LM_EVAL_SEGMENTS, 12, &nll_seg, &n_seg));
    CHECK_OK(fwp_lm_evaluate(m, stream, 13, FWP_LM_EVAL_SLIDING, 4, &nll_slide, &n_slide));
    assert_int_equal(n_carry, 12);
    assert_int_equal(n_slide, 12);
    assert_true(fabs(nll_carry - nll_seg) < 1e-3);
    assert_true(fabs(nll_seg - mean * 12) < 1e-3);
    assert_true(isfinite(nll_slide) && nll_slide > 0);
    /* Greedy generation == argmax of the step's log-probabilities. */
    fwp_sampler_config greedy;
    fwp_sampler_config_init(&greedy);
    greedy.temperature = 0.0f;
    int32_t out[6];
    int64_t generated = 0;
    CHECK_OK(fwp_state_reset(st));
    CHECK_OK(fwp_lm_generate(m, st, stream, 2, 6, &greedy, NULL, 0, out, 6, &generated));
    assert_int_equal(generated, 6);
    CHECK_OK(fwp_state_reset(st));
    CHECK_OK(fwp_lm_step(m, st, stream, NULL));
    CHECK_OK(fwp_lm_step(m, st, stream + 1, lp));
    for (int i = 0; i < 6; ++i) {
      int32_t best = 0;
      for (int v = 1; v < VOCAB; ++v)
        if (lp[v] > lp[best]) best = v;
      assert_int_equal(out[i], best);
      CHECK_OK(fwp_lm_step(m, st, &out[i], lp));
    }

    /* Checkpoint round trip: the config (cutoffs, div_val, tying) and every parameter come back. */
    char dir[] = "/tmp/fwp_c_lm_adaptive_XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/lm.safetensors", dir);
    CHECK_OK(fwp_checkpoint_save(path, m, NULL, NULL, "adaptive"));
    fwp_model* loaded = NULL;
    CHECK_OK(fwp_model_load(ctx, path, &loaded));
    CHECK_OK(fwp_lm_get_config(loaded, &back));
    assert_int_equal(back.num_cutoffs, 2);
    assert_int_equal(back.cutoffs[0], 3);
    assert_int_equal(back.cutoffs[1], 7);
    assert_int_equal(back.div_val, 2);
    assert_int_equal(back.tie_embeddings, tied);
    int64_t n = 0, n2 = 0;
    CHECK_OK(fwp_model_num_params(m, &n));
    CHECK_OK(fwp_model_num_params(loaded, &n2));
    assert_int_equal(n, n2);
    CHECK_OK(fwp_model_set_training(loaded, 0));
    double again;
    float again_losses[12];
    CHECK_OK(fwp_lm_forward(loaded, stream, stream + 1, 1, 12, NULL, &again, again_losses));
    assert_true(again == mean);
    assert_memory_equal(again_losses, token_losses, sizeof token_losses);
    /* A model with other cutoffs refuses the file. */
    fwp_lm_config other = c;
    other.cutoffs[1] = 8;
    fwp_model* moved = NULL;
    CHECK_OK(fwp_lm_create(ctx, &other, &moved));
    EXPECT_ERROR(fwp_checkpoint_load(path, moved, NULL, NULL), FWP_ERR_FORMAT, "");
    remove(path);
    rmdir(dir);
    fwp_model_destroy(moved);
    fwp_model_destroy(loaded);
    fwp_state_destroy(st);
    fwp_model_destroy(m);
  }
  fwp_context_destroy(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_presets_and_round_trip),
      cmocka_unit_test(test_bad_configs),
      cmocka_unit_test(test_forward_bad_input),
      cmocka_unit_test(test_memorises_a_tiny_corpus),
      cmocka_unit_test(test_checkpoint_round_trip),
      cmocka_unit_test(test_carried_state_and_evaluation),
      cmocka_unit_test(test_generation),
      cmocka_unit_test(test_sampler),
      cmocka_unit_test(test_adaptive_softmax),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
