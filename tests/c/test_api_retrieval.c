/* C API contract of the retrieval model, optimizers, checkpoints and the
 * retrieval data generator: every class of bad argument (status + a message
 * naming the argument), failed calls leaving handles unchanged, handle
 * lifetimes, a checkpoint round trip and a short training run. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "fwp/fwp.h"
#include "api_test_macros.h"

#define S 6
#define L S /* setting 1 */
#define B 3
#define Q 2

/* ---- helpers ------------------------------------------------------------------------ */

static fwp_context* make_context(uint64_t seed) {
  fwp_context_config cfg;
  fwp_context_config_init(&cfg);
  cfg.num_threads = 1;
  cfg.seed = seed;
  fwp_context* ctx = NULL;
  CHECK_OK(fwp_context_create(&cfg, &ctx));
  return ctx;
}

static void small_config(fwp_retrieval_config* cfg) {
  fwp_retrieval_config_init(cfg);
  cfg->num_keys = S;
  cfg->d_head = 8;
}

static fwp_model* make_model(fwp_context* ctx) {
  fwp_retrieval_config cfg;
  small_config(&cfg);
  fwp_model* model = NULL;
  CHECK_OK(fwp_model_create_retrieval(ctx, &cfg, &model));
  assert_non_null(model);
  return model;
}

typedef struct {
  int32_t keys[B * L], values[B * L], queries[B * Q], targets[B * Q];
  fwp_retrieval_batch batch;
} host_batch;

static void fill_batch(host_batch* h, fwp_retrieval_data* data) {
  CHECK_OK(fwp_retrieval_data_sample(data, B, Q, h->keys, h->values, h->queries, h->targets));
  h->batch.batch_size = B;
  h->batch.seq_len = L;
  h->batch.num_queries = Q;
  h->batch.keys = h->keys;
  h->batch.values = h->values;
  h->batch.queries = h->queries;
  h->batch.targets = h->targets;
}

/* Copies every parameter of a model into one malloc'd array. */
static float* all_params(const fwp_model* model, int64_t* total) {
  int64_t count = 0, n = 0;
  CHECK_OK(fwp_model_num_params(model, &count));
  for (int64_t i = 0; i < count; ++i) {
    fwp_param_info info;
    CHECK_OK(fwp_model_param_info(model, i, &info));
    n += info.numel;
  }
  float* out = (float*)malloc((size_t)n * sizeof(float));
  assert_non_null(out);
  int64_t at = 0;
  for (int64_t i = 0; i < count; ++i) {
    fwp_param_info info;
    CHECK_OK(fwp_model_param_info(model, i, &info));
    CHECK_OK(fwp_model_get_param(model, i, out + at, info.numel));
    at += info.numel;
  }
  *total = n;
  return out;
}

static void assert_params_equal(const fwp_model* model, const float* expected, int64_t n) {
  int64_t m = 0;
  float* now = all_params(model, &m);
  assert_int_equal(m, n);
  assert_memory_equal(now, expected, (size_t)n * sizeof(float));
  free(now);
}

/* ---- config and creation ------------------------------------------------------------ */

static void test_config_defaults_and_bad_configs(void** state) {
  (void)state;
  fwp_retrieval_config cfg;
  fwp_retrieval_config_init(&cfg);
  fwp_retrieval_config_init(NULL);
  assert_int_equal(cfg.struct_size, sizeof(fwp_retrieval_config));
  assert_int_equal(cfg.setting, 1);
  assert_int_equal(cfg.num_keys, 20);
  assert_int_equal(cfg.d_head, 64);
  assert_int_equal(cfg.feature_map, FWP_FEATURE_MAP_DPFP);
  assert_int_equal(cfg.dpfp_nu, 1);
  assert_int_equal(cfg.update_rule, FWP_UPDATE_DELTA);
  assert_int_equal(cfg.sum_normalize, 1);
  assert_int_equal(cfg.attn_normalize, 0);
  assert_true(cfg.norm_eps == 1e-6f);

  fwp_context* ctx = make_context(1);
  fwp_model* model = (fwp_model*)0x1;
  EXPECT_ERROR(fwp_model_create_retrieval(NULL, &cfg, &model), FWP_ERR_NULL_POINTER, "ctx");
  assert_null(model);
  EXPECT_ERROR(fwp_model_create_retrieval(ctx, NULL, &model), FWP_ERR_NULL_POINTER, "config");
  EXPECT_ERROR(fwp_model_create_retrieval(ctx, &cfg, NULL), FWP_ERR_NULL_POINTER, "out");

#define BAD(body, st, text)                                            \
  do {                                                                 \
    fwp_retrieval_config c;                                            \
    small_config(&c);                                                  \
    body;                                                              \
    fwp_model* m = (fwp_model*)0x1;                                    \
    EXPECT_ERROR(fwp_model_create_retrieval(ctx, &c, &m), st, text);   \
    assert_null(m);                                                    \
  } while (0)
  BAD(c.struct_size = 8, FWP_ERR_INVALID_ARGUMENT, "struct_size");
  BAD(c.setting = 3, FWP_ERR_INVALID_ARGUMENT, "config->setting");
  BAD(c.num_keys = 1, FWP_ERR_INVALID_ARGUMENT, "config->num_keys");
  BAD(c.d_head = 0, FWP_ERR_INVALID_ARGUMENT, "config->d_head");
  BAD(c.dpfp_nu = 0, FWP_ERR_INVALID_ARGUMENT, "config->dpfp_nu");
  BAD(c.norm_eps = 0.0f, FWP_ERR_INVALID_ARGUMENT, "config->norm_eps");
  BAD(c.norm_eps = NAN, FWP_ERR_INVALID_ARGUMENT, "config->norm_eps");
  BAD(c.favor_redraw = 2, FWP_ERR_INVALID_ARGUMENT, "config->favor_redraw");
  BAD(c.sum_normalize = -1, FWP_ERR_INVALID_ARGUMENT, "config->sum_normalize");
  BAD(c.attn_normalize = 5, FWP_ERR_INVALID_ARGUMENT, "config->attn_normalize");
  BAD(c.feature_map = (fwp_feature_map)9, FWP_ERR_OUT_OF_RANGE, "config->feature_map");
  BAD(c.update_rule = (fwp_update_rule)-1, FWP_ERR_OUT_OF_RANGE, "config->update_rule");
  BAD(c.feature_map = FWP_FEATURE_MAP_SOFTMAX, FWP_ERR_INVALID_ARGUMENT, "update_rule");
  BAD((c.feature_map = FWP_FEATURE_MAP_FAVOR, c.favor_features = 0), FWP_ERR_INVALID_ARGUMENT,
      "config->favor_features");
#undef BAD

  /* Softmax with the neutral fast-weight options is fine. */
  small_config(&cfg);
  cfg.feature_map = FWP_FEATURE_MAP_SOFTMAX;
  cfg.update_rule = FWP_UPDATE_SUM;
  cfg.sum_normalize = 0;
  CHECK_OK(fwp_model_create_retrieval(ctx, &cfg, &model));
  fwp_retrieval_config back;
  fwp_retrieval_config_init(&back);
  CHECK_OK(fwp_model_get_retrieval_config(model, &back));
  assert_int_equal(back.feature_map, FWP_FEATURE_MAP_SOFTMAX);
  assert_int_equal(back.num_keys, S);
  fwp_model_destroy(model);
  fwp_model_destroy(NULL);
  fwp_context_destroy(ctx);
}

static void test_model_queries_and_params(void** state) {
  (void)state;
  fwp_context* ctx = make_context(2);
  fwp_model* model = make_model(ctx);
  fwp_context_destroy(ctx); /* the model keeps its context alive */

  fwp_model_kind kind = (fwp_model_kind)-1;
  CHECK_OK(fwp_model_get_kind(model, &kind));
  assert_int_equal(kind, FWP_MODEL_RETRIEVAL);
  EXPECT_ERROR(fwp_model_get_kind(NULL, &kind), FWP_ERR_NULL_POINTER, "model");
  EXPECT_ERROR(fwp_model_get_kind(model, NULL), FWP_ERR_NULL_POINTER, "kind");

  fwp_retrieval_config cfg, expect;
  small_config(&expect);
  fwp_retrieval_config_init(&cfg);
  CHECK_OK(fwp_model_get_retrieval_config(model, &cfg));
  assert_memory_equal(&cfg, &expect, sizeof cfg);
  cfg.struct_size = 4;
  EXPECT_ERROR(fwp_model_get_retrieval_config(model, &cfg), FWP_ERR_INVALID_ARGUMENT, "struct_size");
  EXPECT_ERROR(fwp_model_get_retrieval_config(model, NULL), FWP_ERR_NULL_POINTER, "config");

  CHECK_OK(fwp_model_set_training(model, 0));
  CHECK_OK(fwp_model_set_training(model, 1));
  EXPECT_ERROR(fwp_model_set_training(model, 2), FWP_ERR_INVALID_ARGUMENT, "training");
  EXPECT_ERROR(fwp_model_set_training(NULL, 1), FWP_ERR_NULL_POINTER, "model");

  int64_t count = 0;
  CHECK_OK(fwp_model_num_params(model, &count));
  assert_int_equal(count, 7);
  EXPECT_ERROR(fwp_model_num_params(model, NULL), FWP_ERR_NULL_POINTER, "count");
  const char* names[7] = {"key_embedding", "k_proj.weight", "k_proj.bias", "q_proj.weight",
                          "q_proj.bias",   "beta_proj.weight", "beta_proj.bias"};
  const int64_t E = 13; /* int(2 * 6 * 1.1) */
  const int64_t numel[7] = {S * E, 8 * (S + E), 8, 8 * E, 8, S + E, 1};
  for (int64_t i = 0; i < count; ++i) {
    fwp_param_info info;
    CHECK_OK(fwp_model_param_info(model, i, &info));
    assert_string_equal(info.name, names[i]);
    assert_int_equal(info.numel, numel[i]);
    assert_int_equal(info.trainable, 1);
    int64_t index = -1;
    CHECK_OK(fwp_model_param_index(model, names[i], &index));
    assert_int_equal(index, i);
  }
  fwp_param_info info;
  EXPECT_ERROR(fwp_model_param_info(model, 7, &info), FWP_ERR_OUT_OF_RANGE, "index");
  EXPECT_ERROR(fwp_model_param_info(model, -1, &info), FWP_ERR_OUT_OF_RANGE, "index");
  EXPECT_ERROR(fwp_model_param_info(model, 0, NULL), FWP_ERR_NULL_POINTER, "info");
  int64_t index;
  EXPECT_ERROR(fwp_model_param_index(model, "nope", &index), FWP_ERR_INVALID_ARGUMENT, "nope");
  EXPECT_ERROR(fwp_model_param_index(model, NULL, &index), FWP_ERR_NULL_POINTER, "name");

  float bias[8], got[8];
  for (int i = 0; i < 8; ++i) bias[i] = 0.125f * (float)i;
  CHECK_OK(fwp_model_set_param(model, 2, bias, 8));
  CHECK_OK(fwp_model_get_param(model, 2, got, 8));
  assert_memory_equal(bias, got, sizeof bias);
  EXPECT_ERROR(fwp_model_set_param(model, 2, bias, 7), FWP_ERR_SHAPE_MISMATCH, "count");
  EXPECT_ERROR(fwp_model_get_param(model, 2, got, 9), FWP_ERR_SHAPE_MISMATCH, "count");
  EXPECT_ERROR(fwp_model_get_grad(model, 9, got, 8), FWP_ERR_OUT_OF_RANGE, "index");
  EXPECT_ERROR(fwp_model_get_param(model, 2, NULL, 8), FWP_ERR_NULL_POINTER, "data");
  float bad[8];
  memcpy(bad, bias, sizeof bad);
  bad[5] = INFINITY;
  EXPECT_ERROR(fwp_model_set_param(model, 2, bad, 8), FWP_ERR_INVALID_ARGUMENT, "not finite");
  CHECK_OK(fwp_model_get_param(model, 2, got, 8));
  assert_memory_equal(bias, got, sizeof bias); /* unchanged by the rejected call */
  CHECK_OK(fwp_model_zero_grad(model));
  EXPECT_ERROR(fwp_model_zero_grad(NULL), FWP_ERR_NULL_POINTER, "model");
  fwp_model_destroy(model);
}

/* ---- forward and backward ------------------------------------------------------------------ */

static void test_forward_rejects_every_bad_batch(void** state) {
  (void)state;
  fwp_context* ctx = make_context(3);
  fwp_model* model = make_model(ctx);
  fwp_retrieval_data* data = NULL;
  CHECK_OK(fwp_retrieval_data_create(1, S, 9, &data));
  host_batch h;
  fill_batch(&h, data);
  float loss = -1.0f;
  float outputs[B * Q * S];

  EXPECT_ERROR(fwp_model_backward(model), FWP_ERR_BAD_STATE, "forward");
  CHECK_OK(fwp_retrieval_forward(model, &h.batch, &loss, outputs, B * Q * S));
  assert_true(loss > 0.0f && isfinite(loss));
  int64_t n = 0;
  float* params = all_params(model, &n);

  fwp_retrieval_batch b;
  float untouched = -7.0f;
#define BAD_BATCH(edit, st, text)                                                           \
  do {                                                                                      \
    host_batch c = h;                                                                       \
    c.batch.keys = c.keys;                                                                  \
    c.batch.values = c.values;                                                              \
    c.batch.queries = c.queries;                                                            \
    c.batch.targets = c.targets;                                                            \
    edit;                                                                                   \
    EXPECT_ERROR(fwp_retrieval_forward(model, &c.batch, &untouched, NULL, 0), st, text);    \
    assert_true(untouched == -7.0f);                                                        \
  } while (0)
  BAD_BATCH(c.batch.batch_size = 0, FWP_ERR_INVALID_ARGUMENT, "batch->batch_size");
  BAD_BATCH(c.batch.seq_len = L + 1, FWP_ERR_SHAPE_MISMATCH, "batch->seq_len");
  BAD_BATCH(c.batch.num_queries = 0, FWP_ERR_INVALID_ARGUMENT, "batch->num_queries");
  BAD_BATCH(c.batch.batch_size = INT64_MAX / 2, FWP_ERR_INVALID_ARGUMENT, "too large");
  BAD_BATCH(c.batch.keys = NULL, FWP_ERR_NULL_POINTER, "batch->keys");
  BAD_BATCH(c.batch.values = NULL, FWP_ERR_NULL_POINTER, "batch->values");
  BAD_BATCH(c.batch.queries = NULL, FWP_ERR_NULL_POINTER, "batch->queries");
  BAD_BATCH(c.batch.targets = NULL, FWP_ERR_NULL_POINTER, "batch->targets");
  BAD_BATCH(c.keys[1 * L + 4] = S, FWP_ERR_INVALID_ARGUMENT, "batch->keys[1][4]");
  BAD_BATCH(c.keys[0] = -1, FWP_ERR_INVALID_ARGUMENT, "batch->keys[0][0]");
  BAD_BATCH(c.values[2 * L + 5] = 100, FWP_ERR_INVALID_ARGUMENT, "batch->values[2][5]");
  BAD_BATCH(c.queries[1] = S, FWP_ERR_INVALID_ARGUMENT, "batch->queries[0][1]");
  BAD_BATCH(c.queries[2] = -3, FWP_ERR_INVALID_ARGUMENT, "batch->queries[1][0]");
  BAD_BATCH(c.targets[5] = -1, FWP_ERR_INVALID_ARGUMENT, "batch->targets[2][1]");
  BAD_BATCH(for (int i = 0; i < B * Q; ++i) c.queries[i] = -1, FWP_ERR_INVALID_ARGUMENT, "padding");
#undef BAD_BATCH
  /* Padding queries may carry any target. */
  host_batch p = h;
  p.batch.keys = p.keys;
  p.batch.values = p.values;
  p.batch.queries = p.queries;
  p.batch.targets = p.targets;
  p.queries[3] = -1;
  p.targets[3] = 1000;

  b = h.batch;
  EXPECT_ERROR(fwp_retrieval_forward(NULL, &b, &loss, NULL, 0), FWP_ERR_NULL_POINTER, "model");
  EXPECT_ERROR(fwp_retrieval_forward(model, NULL, &loss, NULL, 0), FWP_ERR_NULL_POINTER, "batch");
  EXPECT_ERROR(fwp_retrieval_forward(model, &b, NULL, NULL, 0), FWP_ERR_NULL_POINTER, "loss");
  EXPECT_ERROR(fwp_retrieval_forward(model, &b, &loss, outputs, B * Q * S - 1), FWP_ERR_SHAPE_MISMATCH,
               "outputs_count");

  /* The rejected calls changed nothing: the first forward is still pending. */
  assert_params_equal(model, params, n);
  CHECK_OK(fwp_model_backward(model));
  EXPECT_ERROR(fwp_model_backward(model), FWP_ERR_BAD_STATE, "forward");
  EXPECT_ERROR(fwp_model_backward(NULL), FWP_ERR_NULL_POINTER, "model");

  float padded_out[B * Q * S];
  CHECK_OK(fwp_retrieval_forward(model, &p.batch, &loss, padded_out, B * Q * S));
  for (int s = 0; s < S; ++s) assert_true(padded_out[3 * S + s] == 0.0f);
  free(params);
  fwp_retrieval_data_destroy(data);
  fwp_model_destroy(model);
  fwp_context_destroy(ctx);
}

/* ---- optimizers ----------------------------------------------------------------------------------- */

static void test_optimizer_arguments(void** state) {
  (void)state;
  fwp_context* ctx = make_context(4);
  fwp_model* model = make_model(ctx);
  fwp_optimizer_config cfg;
  fwp_optimizer_config_init(&cfg);
  fwp_optimizer_config_init(NULL);
  assert_int_equal(cfg.struct_size, sizeof cfg);
  assert_int_equal(cfg.kind, FWP_OPTIMIZER_ADAM);
  assert_true(cfg.learning_rate == 1e-3f && cfg.beta1 == 0.9f && cfg.beta2 == 0.999f && cfg.eps == 1e-8f);
  assert_true(cfg.weight_decay == 0.0f && cfg.momentum == 0.0f && cfg.clip_grad_norm == 0.0f);

  fwp_optimizer* opt = (fwp_optimizer*)0x1;
  EXPECT_ERROR(fwp_optimizer_create_for_model(NULL, &cfg, &opt), FWP_ERR_NULL_POINTER, "model");
  assert_null(opt);
  EXPECT_ERROR(fwp_optimizer_create_for_model(model, NULL, &opt), FWP_ERR_NULL_POINTER, "config");
  EXPECT_ERROR(fwp_optimizer_create_for_model(model, &cfg, NULL), FWP_ERR_NULL_POINTER, "out");
  EXPECT_ERROR(fwp_optimizer_create_for_layer(NULL, &cfg, &opt), FWP_ERR_NULL_POINTER, "layer");
#define BAD_OPT(edit, st, text)                                                \
  do {                                                                         \
    fwp_optimizer_config c;                                                    \
    fwp_optimizer_config_init(&c);                                             \
    edit;                                                                      \
    fwp_optimizer* o = (fwp_optimizer*)0x1;                                    \
    EXPECT_ERROR(fwp_optimizer_create_for_model(model, &c, &o), st, text);     \
    assert_null(o);                                                            \
  } while (0)
  BAD_OPT(c.struct_size = 0, FWP_ERR_INVALID_ARGUMENT, "struct_size");
  BAD_OPT(c.kind = (fwp_optimizer_kind)7, FWP_ERR_OUT_OF_RANGE, "config->kind");
  BAD_OPT(c.learning_rate = -1.0f, FWP_ERR_INVALID_ARGUMENT, "config->learning_rate");
  BAD_OPT(c.beta1 = 1.0f, FWP_ERR_INVALID_ARGUMENT, "config->beta1");
  BAD_OPT(c.beta2 = NAN, FWP_ERR_INVALID_ARGUMENT, "config->beta2");
  BAD_OPT(c.eps = 0.0f, FWP_ERR_INVALID_ARGUMENT, "config->eps");
  BAD_OPT(c.weight_decay = -0.5f, FWP_ERR_INVALID_ARGUMENT, "config->weight_decay");
  BAD_OPT(c.clip_grad_norm = INFINITY, FWP_ERR_INVALID_ARGUMENT, "config->clip_grad_norm");
  BAD_OPT(c.momentum = 0.9f, FWP_ERR_INVALID_ARGUMENT, "config->momentum");
  BAD_OPT((c.kind = FWP_OPTIMIZER_SGD, c.momentum = 1.5f), FWP_ERR_INVALID_ARGUMENT, "config->momentum");
#undef BAD_OPT

  CHECK_OK(fwp_optimizer_create_for_model(model, &cfg, &opt));
  float lr = 0.0f;
  CHECK_OK(fwp_optimizer_get_lr(opt, &lr));
  assert_true(lr == 1e-3f);
  CHECK_OK(fwp_optimizer_set_lr(opt, 0.5f));
  CHECK_OK(fwp_optimizer_get_lr(opt, &lr));
  assert_true(lr == 0.5f);
  EXPECT_ERROR(fwp_optimizer_set_lr(opt, -0.1f), FWP_ERR_INVALID_ARGUMENT, "lr");
  EXPECT_ERROR(fwp_optimizer_set_lr(opt, NAN), FWP_ERR_INVALID_ARGUMENT, "lr");
  EXPECT_ERROR(fwp_optimizer_set_lr(NULL, 0.1f), FWP_ERR_NULL_POINTER, "opt");
  EXPECT_ERROR(fwp_optimizer_get_lr(opt, NULL), FWP_ERR_NULL_POINTER, "lr");
  EXPECT_ERROR(fwp_optimizer_get_lr(NULL, &lr), FWP_ERR_NULL_POINTER, "opt");
  CHECK_OK(fwp_optimizer_get_lr(opt, &lr));
  assert_true(lr == 0.5f);
  int64_t steps = -1;
  CHECK_OK(fwp_optimizer_get_step(opt, &steps));
  assert_int_equal(steps, 0);
  EXPECT_ERROR(fwp_optimizer_get_step(opt, NULL), FWP_ERR_NULL_POINTER, "steps");
  EXPECT_ERROR(fwp_optimizer_step(NULL, NULL), FWP_ERR_NULL_POINTER, "opt");
  EXPECT_ERROR(fwp_optimizer_zero_grad(NULL), FWP_ERR_NULL_POINTER, "opt");

  /* A gradient step moves the parameters; grad_norm may be NULL. */
  fwp_retrieval_data* data = NULL;
  CHECK_OK(fwp_retrieval_data_create(1, S, 1, &data));
  host_batch h;
  fill_batch(&h, data);
  float loss, norm = -1.0f;
  CHECK_OK(fwp_optimizer_zero_grad(opt));
  CHECK_OK(fwp_retrieval_forward(model, &h.batch, &loss, NULL, 0));
  CHECK_OK(fwp_model_backward(model));
  int64_t n = 0;
  float* before = all_params(model, &n);
  CHECK_OK(fwp_optimizer_step(opt, &norm));
  assert_true(norm > 0.0f && isfinite(norm));
  CHECK_OK(fwp_optimizer_step(opt, NULL));
  CHECK_OK(fwp_optimizer_get_step(opt, &steps));
  assert_int_equal(steps, 2);
  float* after = all_params(model, &n);
  assert_true(memcmp(before, after, (size_t)n * sizeof(float)) != 0);

  /* Parameters so large that the forward overflows: NaN gradients are refused and nothing moves. */
  fwp_param_info info;
  CHECK_OK(fwp_model_param_info(model, 0, &info));
  float* huge = (float*)malloc((size_t)info.numel * sizeof(float));
  for (int64_t i = 0; i < info.numel; ++i) huge[i] = (i % 2 ? 1e30f : -1e30f);
  CHECK_OK(fwp_model_set_param(model, 0, huge, info.numel));
  CHECK_OK(fwp_optimizer_zero_grad(opt));
  CHECK_OK(fwp_retrieval_forward(model, &h.batch, &loss, NULL, 0));
  CHECK_OK(fwp_model_backward(model));
  free(after);
  after = all_params(model, &n);
  EXPECT_ERROR(fwp_optimizer_step(opt, &norm), FWP_ERR_INVALID_ARGUMENT, "not finite");
  assert_params_equal(model, after, n);
  CHECK_OK(fwp_optimizer_get_step(opt, &steps));
  assert_int_equal(steps, 2);
  free(huge);
  free(before);
  free(after);

  /* The optimizer keeps the model's parameters alive after the model handle is gone. */
  fwp_model_destroy(model);
  CHECK_OK(fwp_optimizer_zero_grad(opt));
  CHECK_OK(fwp_optimizer_step(opt, &norm));
  assert_true(norm == 0.0f);
  fwp_optimizer_destroy(opt);
  fwp_optimizer_destroy(NULL);

  /* An optimizer over a layer. */
  fwp_layer_config lc;
  fwp_layer_config_init(&lc);
  lc.d_model = 8;
  lc.num_heads = 2;
  lc.d_head = 4;
  fwp_layer* layer = NULL;
  CHECK_OK(fwp_layer_create(ctx, &lc, &layer));
  CHECK_OK(fwp_optimizer_create_for_layer(layer, &cfg, &opt));
  float x[2 * 3 * 8], y[2 * 3 * 8];
  for (int i = 0; i < 48; ++i) x[i] = (float)((i * 7) % 11) / 11.0f - 0.5f;
  CHECK_OK(fwp_layer_forward(layer, x, 2, 3, y));
  CHECK_OK(fwp_layer_backward(layer, x, 2, 3, NULL));
  CHECK_OK(fwp_optimizer_step(opt, &norm));
  assert_true(norm > 0.0f);
  fwp_optimizer_destroy(opt);
  fwp_layer_destroy(layer);
  fwp_retrieval_data_destroy(data);
  fwp_context_destroy(ctx);
}

/* ---- checkpoints ----------------------------------------------------------------------------------- */

static void test_checkpoints(void** state) {
  (void)state;
  char dir[] = "/tmp/fwp_c_ckpt_XXXXXX";
  assert_non_null(mkdtemp(dir));
  char path[256], garbage[256], missing[256];
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  snprintf(garbage, sizeof garbage, "%s/garbage.bin", dir);
  snprintf(missing, sizeof missing, "%s/absent.safetensors", dir);

  fwp_context* ctx = make_context(5);
  fwp_context* other_ctx = make_context(5);
  fwp_model* model = make_model(ctx);
  fwp_model* other = make_model(ctx);
  fwp_model* foreign = make_model(other_ctx);
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  fwp_optimizer *opt = NULL, *other_opt = NULL, *foreign_opt = NULL;
  CHECK_OK(fwp_optimizer_create_for_model(model, &oc, &opt));
  CHECK_OK(fwp_optimizer_create_for_model(other, &oc, &other_opt));
  CHECK_OK(fwp_optimizer_create_for_model(foreign, &oc, &foreign_opt));
  fwp_retrieval_data* data = NULL;
  CHECK_OK(fwp_retrieval_data_create(1, S, 3, &data));

  /* One training step, then save. */
  host_batch h;
  fill_batch(&h, data);
  float loss;
  CHECK_OK(fwp_retrieval_forward(model, &h.batch, &loss, NULL, 0));
  CHECK_OK(fwp_model_backward(model));
  CHECK_OK(fwp_optimizer_step(opt, NULL));
  CHECK_OK(fwp_checkpoint_save(path, model, opt, data, "run 1"));
  CHECK_OK(fwp_checkpoint_save(path, model, NULL, NULL, NULL));
  CHECK_OK(fwp_checkpoint_save(path, model, opt, data, "run 1"));

  EXPECT_ERROR(fwp_checkpoint_save(NULL, model, opt, data, NULL), FWP_ERR_NULL_POINTER, "path");
  EXPECT_ERROR(fwp_checkpoint_save(path, NULL, opt, data, NULL), FWP_ERR_NULL_POINTER, "model");
  EXPECT_ERROR(fwp_checkpoint_save(path, model, other_opt, data, NULL), FWP_ERR_CONTEXT_MISMATCH, "opt");
  EXPECT_ERROR(fwp_checkpoint_save(path, model, foreign_opt, data, NULL), FWP_ERR_CONTEXT_MISMATCH, "contexts");
  EXPECT_ERROR(fwp_checkpoint_save("/nonexistent-dir/x/y.safetensors", model, NULL, NULL, NULL), FWP_ERR_IO,
               "nonexistent-dir");

  /* Load into another model of the same config. */
  int64_t n = 0;
  float* saved = all_params(model, &n);
  float* other_before = all_params(other, &n);
  EXPECT_ERROR(fwp_checkpoint_load(NULL, other, other_opt, NULL), FWP_ERR_NULL_POINTER, "path");
  EXPECT_ERROR(fwp_checkpoint_load(path, NULL, other_opt, NULL), FWP_ERR_NULL_POINTER, "model");
  EXPECT_ERROR(fwp_checkpoint_load(path, other, opt, NULL), FWP_ERR_CONTEXT_MISMATCH, "opt");
  EXPECT_ERROR(fwp_checkpoint_load(path, other, foreign_opt, NULL), FWP_ERR_CONTEXT_MISMATCH, "contexts");
  EXPECT_ERROR(fwp_checkpoint_load(missing, other, other_opt, NULL), FWP_ERR_IO, "absent");
  FILE* f = fopen(garbage, "wb");
  assert_non_null(f);
  fputs("this is not a checkpoint at all, just some text", f);
  fclose(f);
  EXPECT_ERROR(fwp_checkpoint_load(garbage, other, other_opt, NULL), FWP_ERR_FORMAT, "garbage.bin");
  assert_params_equal(other, other_before, n);
  CHECK_OK(fwp_checkpoint_load(path, other, other_opt, NULL));
  assert_params_equal(other, saved, n);
  int64_t steps = 0;
  CHECK_OK(fwp_optimizer_get_step(other_opt, &steps));
  assert_int_equal(steps, 1);

  /* A model of another size is a format error. */
  fwp_retrieval_config big;
  small_config(&big);
  big.num_keys = S + 1;
  fwp_model* bigger = NULL;
  CHECK_OK(fwp_model_create_retrieval(ctx, &big, &bigger));
  EXPECT_ERROR(fwp_checkpoint_load(path, bigger, NULL, NULL), FWP_ERR_FORMAT, "num_keys");

  /* fwp_model_load rebuilds the model from the file. */
  fwp_model* loaded = (fwp_model*)0x1;
  EXPECT_ERROR(fwp_model_load(NULL, path, &loaded), FWP_ERR_NULL_POINTER, "ctx");
  assert_null(loaded);
  EXPECT_ERROR(fwp_model_load(ctx, NULL, &loaded), FWP_ERR_NULL_POINTER, "path");
  EXPECT_ERROR(fwp_model_load(ctx, path, NULL), FWP_ERR_NULL_POINTER, "out");
  EXPECT_ERROR(fwp_model_load(ctx, garbage, &loaded), FWP_ERR_FORMAT, "garbage.bin");
  EXPECT_ERROR(fwp_model_load(ctx, missing, &loaded), FWP_ERR_IO, "absent");
  CHECK_OK(fwp_model_load(other_ctx, path, &loaded));
  assert_params_equal(loaded, saved, n);
  fwp_retrieval_config cfg;
  fwp_retrieval_config_init(&cfg);
  CHECK_OK(fwp_model_get_retrieval_config(loaded, &cfg));
  assert_int_equal(cfg.num_keys, S);

  /* The data generator resumes where it was saved. */
  host_batch next1, next2;
  fill_batch(&next1, data);
  fwp_retrieval_data* data2 = NULL;
  CHECK_OK(fwp_retrieval_data_create(1, S, 12345, &data2));
  CHECK_OK(fwp_checkpoint_load(path, loaded, NULL, data2));
  fill_batch(&next2, data2);
  assert_memory_equal(next1.keys, next2.keys, sizeof next1.keys);
  assert_memory_equal(next1.queries, next2.queries, sizeof next1.queries);

  free(saved);
  free(other_before);
  fwp_model_destroy(loaded);
  fwp_model_destroy(bigger);
  fwp_optimizer_destroy(opt);
  fwp_optimizer_destroy(other_opt);
  fwp_optimizer_destroy(foreign_opt);
  fwp_model_destroy(model);
  fwp_model_destroy(other);
  fwp_model_destroy(foreign);
  fwp_retrieval_data_destroy(data);
  fwp_retrieval_data_destroy(data2);
  fwp_context_destroy(ctx);
  fwp_context_destroy(other_ctx);
  unlink(path);
  unlink(garbage);
  rmdir(dir);
}

/* ---- data generator --------------------------------------------------------------------------------- */

static void test_retrieval_data_arguments(void** state) {
  (void)state;
  fwp_retrieval_data* data = (fwp_retrieval_data*)0x1;
  EXPECT_ERROR(fwp_retrieval_data_create(0, 10, 1, &data), FWP_ERR_INVALID_ARGUMENT, "setting");
  assert_null(data);
  EXPECT_ERROR(fwp_retrieval_data_create(3, 10, 1, &data), FWP_ERR_INVALID_ARGUMENT, "setting");
  EXPECT_ERROR(fwp_retrieval_data_create(1, 1, 1, &data), FWP_ERR_INVALID_ARGUMENT, "num_keys");
  EXPECT_ERROR(fwp_retrieval_data_create(1, 10, 1, NULL), FWP_ERR_NULL_POINTER, "out");
  CHECK_OK(fwp_retrieval_data_create(2, 5, 1, &data));
  int64_t len = 0;
  CHECK_OK(fwp_retrieval_data_seq_len(data, &len));
  assert_int_equal(len, 10);
  EXPECT_ERROR(fwp_retrieval_data_seq_len(NULL, &len), FWP_ERR_NULL_POINTER, "data");
  EXPECT_ERROR(fwp_retrieval_data_seq_len(data, NULL), FWP_ERR_NULL_POINTER, "seq_len");
  int32_t k[20], v[20], q[4], t[4];
  EXPECT_ERROR(fwp_retrieval_data_sample(NULL, 2, 2, k, v, q, t), FWP_ERR_NULL_POINTER, "data");
  EXPECT_ERROR(fwp_retrieval_data_sample(data, 2, 2, NULL, v, q, t), FWP_ERR_NULL_POINTER, "keys");
  EXPECT_ERROR(fwp_retrieval_data_sample(data, 2, 2, k, NULL, q, t), FWP_ERR_NULL_POINTER, "values");
  EXPECT_ERROR(fwp_retrieval_data_sample(data, 2, 2, k, v, NULL, t), FWP_ERR_NULL_POINTER, "queries");
  EXPECT_ERROR(fwp_retrieval_data_sample(data, 2, 2, k, v, q, NULL), FWP_ERR_NULL_POINTER, "targets");
  EXPECT_ERROR(fwp_retrieval_data_sample(data, 0, 2, k, v, q, t), FWP_ERR_INVALID_ARGUMENT, "batch_size");
  EXPECT_ERROR(fwp_retrieval_data_sample(data, 2, 0, k, v, q, t), FWP_ERR_INVALID_ARGUMENT, "queries_per_seq");
  EXPECT_ERROR(fwp_retrieval_data_sample(data, INT64_MAX, 1, k, v, q, t), FWP_ERR_INVALID_ARGUMENT, "too large");
  CHECK_OK(fwp_retrieval_data_sample(data, 2, 2, k, v, q, t));
  for (int i = 0; i < 20; ++i) assert_true(k[i] >= 0 && k[i] < 5 && v[i] >= 0 && v[i] < 5);
  for (int b = 0; b < 2; ++b) {
    assert_int_equal(q[b * 2], k[b * 10]); /* first query: the first key */
    assert_true(q[b * 2 + 1] != q[b * 2]);
  }
  fwp_retrieval_data_destroy(data);
  fwp_retrieval_data_destroy(NULL);

  /* The evaluation length: 0 = the training length, setting 2 any L, setting 1 only S. */
  data = (fwp_retrieval_data*)0x1;
  EXPECT_ERROR(fwp_retrieval_data_create_with_length(1, 5, 4, 1, &data), FWP_ERR_INVALID_ARGUMENT, "num_pairs");
  assert_null(data);
  EXPECT_ERROR(fwp_retrieval_data_create_with_length(2, 5, -1, 1, &data), FWP_ERR_INVALID_ARGUMENT, "num_pairs");
  EXPECT_ERROR(fwp_retrieval_data_create_with_length(2, 5, (int64_t)1 << 20, 1, &data), FWP_ERR_INVALID_ARGUMENT,
               "num_pairs");
  EXPECT_ERROR(fwp_retrieval_data_create_with_length(3, 5, 0, 1, &data), FWP_ERR_INVALID_ARGUMENT, "setting");
  EXPECT_ERROR(fwp_retrieval_data_create_with_length(2, 5, 5, 1, NULL), FWP_ERR_NULL_POINTER, "out");
  CHECK_OK(fwp_retrieval_data_create_with_length(2, 5, 0, 1, &data));
  CHECK_OK(fwp_retrieval_data_seq_len(data, &len));
  assert_int_equal(len, 10);
  fwp_retrieval_data_destroy(data);
  CHECK_OK(fwp_retrieval_data_create_with_length(2, 5, 5, 1, &data));
  CHECK_OK(fwp_retrieval_data_seq_len(data, &len));
  assert_int_equal(len, 5);
  CHECK_OK(fwp_retrieval_data_sample(data, 2, 2, k, v, q, t)); /* q, t hold B * Q = 4 */
  for (int i = 0; i < 10; ++i) assert_true(k[i] >= 0 && k[i] < 5 && v[i] >= 0 && v[i] < 5);
  fwp_retrieval_data_destroy(data);
}

/* A generator is a data source (fwp_data) of kind FWP_DATA_RETRIEVAL: the same
 * handle type, no cast, and fwp_data_destroy() releases it. */
static void test_generator_is_a_data_source(void** state) {
  (void)state;
  fwp_retrieval_data* generator = NULL;
  CHECK_OK(fwp_retrieval_data_create(1, 5, 1, &generator));
  fwp_data* data = generator;
  fwp_data_kind kind = FWP_DATA_PARALLEL_TEXT;
  CHECK_OK(fwp_data_get_kind(data, &kind));
  assert_int_equal(kind, FWP_DATA_RETRIEVAL);
  EXPECT_ERROR(fwp_data_get_kind(NULL, &kind), FWP_ERR_NULL_POINTER, "data");
  EXPECT_ERROR(fwp_data_get_kind(data, NULL), FWP_ERR_NULL_POINTER, "kind");
  assert_int_equal(FWP_DATA_RETRIEVAL, 0);
  assert_int_equal(FWP_DATA_TOKEN_FILE, 1);
  assert_int_equal(FWP_DATA_PARALLEL_TEXT, 2);
  int64_t len = 0;
  CHECK_OK(fwp_retrieval_data_seq_len(data, &len));
  assert_int_equal(len, 5);
  fwp_data_destroy(data);
  fwp_data_destroy(NULL);
}

/* ---- a short training run through the C API --------------------------------------------------------- */

static void test_training_lowers_the_eval_loss(void** state) {
  (void)state;
  fwp_context* ctx = make_context(6);
  fwp_retrieval_config cfg;
  fwp_retrieval_config_init(&cfg);
  cfg.num_keys = 10;
  fwp_model* model = NULL;
  CHECK_OK(fwp_model_create_retrieval(ctx, &cfg, &model));
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  fwp_optimizer* opt = NULL;
  CHECK_OK(fwp_optimizer_create_for_model(model, &oc, &opt));
  fwp_retrieval_data *train = NULL, *eval = NULL;
  CHECK_OK(fwp_retrieval_data_create(1, 10, 1, &train));
  CHECK_OK(fwp_retrieval_data_create(1, 10, 2, &eval));
  enum { TB = 32, EB = 20, EQ = 10, SEQ = 10 };
  static int32_t k[TB * SEQ], v[TB * SEQ], q[TB], t[TB];
  static int32_t ek[EB * SEQ], ev[EB * SEQ], eq[EB * EQ], et[EB * EQ];
  CHECK_OK(fwp_retrieval_data_sample(eval, EB, EQ, ek, ev, eq, et));
  const fwp_retrieval_batch eval_batch = {EB, SEQ, EQ, ek, ev, eq, et};
  const fwp_retrieval_batch train_batch = {TB, SEQ, 1, k, v, q, t};
  float initial, final_loss, loss;
  CHECK_OK(fwp_model_set_training(model, 0));
  CHECK_OK(fwp_retrieval_forward(model, &eval_batch, &initial, NULL, 0));
  CHECK_OK(fwp_model_set_training(model, 1));
  for (int step = 0; step < 300; ++step) {
    CHECK_OK(fwp_retrieval_data_sample(train, TB, 1, k, v, q, t));
    CHECK_OK(fwp_optimizer_zero_grad(opt));
    CHECK_OK(fwp_retrieval_forward(model, &train_batch, &loss, NULL, 0));
    CHECK_OK(fwp_model_backward(model));
    CHECK_OK(fwp_optimizer_step(opt, NULL));
  }
  CHECK_OK(fwp_model_set_training(model, 0));
  CHECK_OK(fwp_retrieval_forward(model, &eval_batch, &final_loss, NULL, 0));
  if (!(final_loss < 0.5f * initial)) fail_msg("eval loss %g -> %g after 300 steps", initial, final_loss);
  fwp_optimizer_destroy(opt);
  fwp_model_destroy(model);
  fwp_retrieval_data_destroy(train);
  fwp_retrieval_data_destroy(eval);
  fwp_context_destroy(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_defaults_and_bad_configs),
      cmocka_unit_test(test_model_queries_and_params),
      cmocka_unit_test(test_forward_rejects_every_bad_batch),
      cmocka_unit_test(test_optimizer_arguments),
      cmocka_unit_test(test_checkpoints),
      cmocka_unit_test(test_retrieval_data_arguments),
      cmocka_unit_test(test_generator_is_a_data_source),
      cmocka_unit_test(test_training_lowers_the_eval_loss),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
