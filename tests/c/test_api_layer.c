/* C API contract of fwp_layer_*: lifecycle, parameters, every class of bad
 * argument (status + a message naming the argument), failed calls leaving the
 * layer unchanged, state and stepping, and a tiny training loop. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fwp/fwp.h"
#include "api_test_macros.h"

#define D_MODEL 8
#define HEADS 2
#define D_HEAD 4

/* ---- helpers ------------------------------------------------------------------------ */

static fwp_context* make_context(void) {
  fwp_context_config cfg;
  fwp_context_config_init(&cfg);
  cfg.num_threads = 1;
  cfg.seed = 123;
  fwp_context* ctx = NULL;
  assert_int_equal(fwp_context_create(&cfg, &ctx), FWP_OK);
  return ctx;
}

static void small_config(fwp_layer_config* cfg) {
  fwp_layer_config_init(cfg);
  cfg->d_model = D_MODEL;
  cfg->num_heads = HEADS;
  cfg->d_head = D_HEAD;
  cfg->init_std = 0.3f;
}

static fwp_layer* make_layer(fwp_context* ctx, const fwp_layer_config* cfg) {
  fwp_layer* layer = NULL;
  const fwp_status s = fwp_layer_create(ctx, cfg, &layer);
  if (s != FWP_OK) fail_msg("fwp_layer_create: %s", fwp_last_error_message());
  assert_non_null(layer);
  return layer;
}

static float* random_floats(size_t n, unsigned seed) {
  float* v = (float*)malloc(n * sizeof(float));
  assert_non_null(v);
  unsigned s = seed * 2654435761u + 1u;
  for (size_t i = 0; i < n; ++i) {
    s = s * 1103515245u + 12345u;
    v[i] = ((float)((s >> 8) & 0xFFFF) / 65535.0f) * 2.0f - 1.0f;
  }
  return v;
}

static void assert_floats_equal(const float* a, const float* b, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (a[i] != b[i]) fail_msg("element %zu differs: %.9g vs %.9g", i, (double)a[i], (double)b[i]);
}

static float max_abs_diff(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) {
    const float d = fabsf(a[i] - b[i]);
    if (d > m) m = d;
  }
  return m;
}

/* Field by field: padding bytes of the structs are unspecified. */
static void assert_configs_equal(const fwp_layer_config* a, const fwp_layer_config* b) {
  assert_int_equal(a->struct_size, b->struct_size);
  assert_int_equal(a->d_model, b->d_model);
  assert_int_equal(a->num_heads, b->num_heads);
  assert_int_equal(a->d_head, b->d_head);
  assert_int_equal(a->feature_map, b->feature_map);
  assert_int_equal(a->dpfp_nu, b->dpfp_nu);
  assert_int_equal(a->favor_features, b->favor_features);
  assert_int_equal(a->favor_redraw, b->favor_redraw);
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

/* ---- config and lifecycle ------------------------------------------------------------ */

static void test_config_defaults_and_round_trip(void** state) {
  (void)state;
  fwp_layer_config cfg;
  memset(&cfg, 0x5A, sizeof cfg);
  fwp_layer_config_init(&cfg);
  assert_int_equal(cfg.struct_size, sizeof(fwp_layer_config));
  assert_int_equal(cfg.d_model, 128);
  assert_int_equal(cfg.num_heads, 8);
  assert_int_equal(cfg.d_head, 16);
  assert_int_equal(cfg.feature_map, FWP_FEATURE_MAP_DPFP);
  assert_int_equal(cfg.dpfp_nu, 1);
  assert_int_equal(cfg.favor_features, 64);
  assert_int_equal(cfg.favor_redraw, 1);
  assert_int_equal(cfg.update_rule, FWP_UPDATE_DELTA);
  assert_int_equal(cfg.sum_normalize, 1);
  assert_int_equal(cfg.attn_normalize, 0);
  assert_true(cfg.norm_eps == 1e-6f);
  assert_int_equal(cfg.scale_output, 1);
  assert_int_equal(cfg.use_bias, 0);
  assert_true(cfg.init_std == 0.02f);
  assert_int_equal(cfg.algorithm, FWP_ALGORITHM_AUTO);
  assert_int_equal(cfg.chunk_size, 0);
  assert_int_equal(cfg.carry_state, 0);
  fwp_layer_config_init(NULL);

  fwp_context* ctx = make_context();
  small_config(&cfg);
  cfg.feature_map = FWP_FEATURE_MAP_FAVOR;
  cfg.favor_features = 5;
  cfg.update_rule = FWP_UPDATE_SUM;
  cfg.attn_normalize = 1;
  cfg.use_bias = 1;
  cfg.algorithm = FWP_ALGORITHM_CHUNKED;
  cfg.chunk_size = 8;
  cfg.carry_state = 1;
  cfg.norm_eps = 1e-3f;
  fwp_layer* layer = make_layer(ctx, &cfg);
  fwp_layer_config back;
  fwp_layer_config_init(&back);
  assert_int_equal(fwp_layer_get_config(layer, &back), FWP_OK);
  assert_configs_equal(&back, &cfg);
  int64_t d_dot = 0;
  assert_int_equal(fwp_layer_feature_dim(layer, &d_dot), FWP_OK);
  assert_int_equal(d_dot, 10);

  back.struct_size = 0;
  EXPECT_ERROR(fwp_layer_get_config(layer, &back), FWP_ERR_INVALID_ARGUMENT, "struct_size");
  EXPECT_ERROR(fwp_layer_get_config(layer, NULL), FWP_ERR_NULL_POINTER, "config");
  EXPECT_ERROR(fwp_layer_get_config(NULL, &back), FWP_ERR_NULL_POINTER, "layer");
  EXPECT_ERROR(fwp_layer_feature_dim(layer, NULL), FWP_ERR_NULL_POINTER, "d_dot");
  fwp_layer_destroy(layer);

  /* d_dot of each feature map. */
  const struct {
    fwp_feature_map map;
    int64_t nu, m, expected;
  } dims[] = {{FWP_FEATURE_MAP_ELU, 1, 1, D_HEAD},
              {FWP_FEATURE_MAP_DPFP, 3, 1, 2 * D_HEAD * 3},
              {FWP_FEATURE_MAP_FAVOR, 1, 7, 14},
              {FWP_FEATURE_MAP_SOFTMAX, 1, 1, 0}};
  for (size_t i = 0; i < sizeof dims / sizeof dims[0]; ++i) {
    small_config(&cfg);
    cfg.feature_map = dims[i].map;
    cfg.dpfp_nu = dims[i].nu;
    cfg.favor_features = dims[i].m;
    if (dims[i].map == FWP_FEATURE_MAP_SOFTMAX) {
      cfg.update_rule = FWP_UPDATE_SUM;
      cfg.sum_normalize = 0;
    }
    layer = make_layer(ctx, &cfg);
    assert_int_equal(fwp_layer_feature_dim(layer, &d_dot), FWP_OK);
    assert_int_equal(d_dot, dims[i].expected);
    fwp_layer_destroy(layer);
  }
  fwp_context_destroy(ctx);
}

static void test_lifecycle(void** state) {
  (void)state;
  fwp_layer_destroy(NULL);
  fwp_context_destroy(NULL);
  fwp_model_destroy(NULL);
  fwp_optimizer_destroy(NULL);
  fwp_retrieval_data_destroy(NULL);

  fwp_layer_config cfg;
  small_config(&cfg);
  const size_t n = 2 * 3 * D_MODEL;
  float* x = random_floats(n, 1);
  float y1[2 * 3 * D_MODEL], y2[2 * 3 * D_MODEL];

  /* Context destroyed before the layer: the layer keeps what it needs. */
  fwp_context* ctx = make_context();
  fwp_layer* layer = make_layer(ctx, &cfg);
  assert_int_equal(fwp_layer_forward(layer, x, 2, 3, y1), FWP_OK);
  fwp_context_destroy(ctx);
  assert_int_equal(fwp_layer_forward(layer, x, 2, 3, y2), FWP_OK);
  assert_floats_equal(y1, y2, n);
  assert_int_equal(fwp_layer_backward(layer, y2, 2, 3, NULL), FWP_OK);
  fwp_layer_destroy(layer);

  /* And after it. */
  ctx = make_context();
  layer = make_layer(ctx, &cfg);
  fwp_layer_destroy(layer);
  fwp_context_destroy(ctx);

  /* Same seed, same creation order: same parameters. */
  ctx = make_context();
  layer = make_layer(ctx, &cfg);
  assert_int_equal(fwp_layer_forward(layer, x, 2, 3, y2), FWP_OK);
  assert_floats_equal(y1, y2, n);
  fwp_layer_destroy(layer);

  /* Many cycles. */
  for (int i = 0; i < 200; ++i) {
    layer = make_layer(ctx, &cfg);
    if (i % 20 == 0) assert_int_equal(fwp_layer_forward(layer, x, 2, 3, y2), FWP_OK);
    fwp_layer_destroy(layer);
  }
  for (int i = 0; i < 50; ++i) {
    fwp_context* c = make_context();
    layer = make_layer(c, &cfg);
    fwp_context_destroy(c);
    fwp_layer_destroy(layer);
  }
  fwp_context_destroy(ctx);
  free(x);
}

/* ---- bad configs ------------------------------------------------------------------------ */

typedef void (*config_edit)(fwp_layer_config*);
static void e_struct0(fwp_layer_config* c) { c->struct_size = 0; }
static void e_struct_big(fwp_layer_config* c) { c->struct_size = sizeof(fwp_layer_config) + 8; }
static void e_d_model(fwp_layer_config* c) { c->d_model = 0; }
static void e_heads(fwp_layer_config* c) { c->num_heads = -3; }
static void e_d_head(fwp_layer_config* c) { c->d_head = 0; }
static void e_map(fwp_layer_config* c) { c->feature_map = (fwp_feature_map)9; }
static void e_map_neg(fwp_layer_config* c) { c->feature_map = (fwp_feature_map)-1; }
static void e_rule(fwp_layer_config* c) { c->update_rule = (fwp_update_rule)2; }
static void e_algo(fwp_layer_config* c) { c->algorithm = (fwp_algorithm)3; }
static void e_nu(fwp_layer_config* c) { c->dpfp_nu = 0; }
static void e_m(fwp_layer_config* c) { c->feature_map = FWP_FEATURE_MAP_FAVOR; c->favor_features = 0; }
static void e_chunk(fwp_layer_config* c) { c->chunk_size = -1; }
static void e_eps0(fwp_layer_config* c) { c->norm_eps = 0.0f; }
static void e_eps_nan(fwp_layer_config* c) { c->norm_eps = NAN; }
static void e_eps_inf(fwp_layer_config* c) { c->norm_eps = INFINITY; }
static void e_std(fwp_layer_config* c) { c->init_std = -1.0f; }
static void e_d_dot(fwp_layer_config* c) { c->d_head = 64; c->dpfp_nu = 64; }
static void e_huge(fwp_layer_config* c) { c->d_model = (int64_t)1 << 40; c->d_head = (int64_t)1 << 30; }
static void e_overflow(fwp_layer_config* c) { c->num_heads = INT64_MAX; c->d_head = 4; }
static void e_flag(fwp_layer_config* c) { c->sum_normalize = 2; }
static void e_flag2(fwp_layer_config* c) { c->carry_state = -1; }
static void e_softmax_delta(fwp_layer_config* c) { c->feature_map = FWP_FEATURE_MAP_SOFTMAX; c->sum_normalize = 0; }
static void e_softmax_sumnorm(fwp_layer_config* c) {
  c->feature_map = FWP_FEATURE_MAP_SOFTMAX;
  c->update_rule = FWP_UPDATE_SUM;
}
static void e_softmax_attn(fwp_layer_config* c) {
  c->feature_map = FWP_FEATURE_MAP_SOFTMAX;
  c->update_rule = FWP_UPDATE_SUM;
  c->sum_normalize = 0;
  c->attn_normalize = 1;
}
static void e_softmax_carry(fwp_layer_config* c) {
  c->feature_map = FWP_FEATURE_MAP_SOFTMAX;
  c->update_rule = FWP_UPDATE_SUM;
  c->sum_normalize = 0;
  c->carry_state = 1;
}

static void test_bad_configs(void** state) {
  (void)state;
  fwp_context* ctx = make_context();
  fwp_layer_config cfg;
  small_config(&cfg);
  fwp_layer* layer = (fwp_layer*)&cfg; /* must be reset to NULL on failure */

  EXPECT_ERROR(fwp_layer_create(ctx, &cfg, NULL), FWP_ERR_NULL_POINTER, "out");
  EXPECT_ERROR(fwp_layer_create(NULL, &cfg, &layer), FWP_ERR_NULL_POINTER, "ctx");
  assert_null(layer);
  EXPECT_ERROR(fwp_layer_create(ctx, NULL, &layer), FWP_ERR_NULL_POINTER, "config");

  const struct {
    config_edit edit;
    fwp_status status;
    const char* needle;
  } cases[] = {
      {e_struct0, FWP_ERR_INVALID_ARGUMENT, "struct_size"},
      {e_struct_big, FWP_ERR_INVALID_ARGUMENT, "struct_size"},
      {e_d_model, FWP_ERR_INVALID_ARGUMENT, "d_model"},
      {e_heads, FWP_ERR_INVALID_ARGUMENT, "num_heads"},
      {e_d_head, FWP_ERR_INVALID_ARGUMENT, "d_head"},
      {e_map, FWP_ERR_OUT_OF_RANGE, "feature_map"},
      {e_map_neg, FWP_ERR_OUT_OF_RANGE, "feature_map"},
      {e_rule, FWP_ERR_OUT_OF_RANGE, "update_rule"},
      {e_algo, FWP_ERR_OUT_OF_RANGE, "algorithm"},
      {e_nu, FWP_ERR_INVALID_ARGUMENT, "dpfp_nu"},
      {e_m, FWP_ERR_INVALID_ARGUMENT, "favor_features"},
      {e_chunk, FWP_ERR_INVALID_ARGUMENT, "chunk_size"},
      {e_eps0, FWP_ERR_INVALID_ARGUMENT, "norm_eps"},
      {e_eps_nan, FWP_ERR_INVALID_ARGUMENT, "norm_eps"},
      {e_eps_inf, FWP_ERR_INVALID_ARGUMENT, "norm_eps"},
      {e_std, FWP_ERR_INVALID_ARGUMENT, "init_std"},
      {e_d_dot, FWP_ERR_INVALID_ARGUMENT, "d_dot"},
      {e_huge, FWP_ERR_INVALID_ARGUMENT, "too large"},
      {e_overflow, FWP_ERR_INVALID_ARGUMENT, "too large"},
      {e_flag, FWP_ERR_INVALID_ARGUMENT, "sum_normalize"},
      {e_flag2, FWP_ERR_INVALID_ARGUMENT, "carry_state"},
      {e_softmax_delta, FWP_ERR_INVALID_ARGUMENT, "update_rule"},
      {e_softmax_sumnorm, FWP_ERR_INVALID_ARGUMENT, "sum_normalize"},
      {e_softmax_attn, FWP_ERR_INVALID_ARGUMENT, "attn_normalize"},
      {e_softmax_carry, FWP_ERR_INVALID_ARGUMENT, "carry_state"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    small_config(&cfg);
    cases[i].edit(&cfg);
    layer = (fwp_layer*)&cfg;
    EXPECT_ERROR(fwp_layer_create(ctx, &cfg, &layer), cases[i].status, cases[i].needle);
    assert_null(layer);
    assert_non_null(strstr(fwp_last_error_message(), "fwp_layer_create"));
  }
  fwp_context_destroy(ctx);
}

/* ---- bad calls on a live layer -------------------------------------------------------------- */

static void test_bad_calls_leave_layer_unchanged(void** state) {
  (void)state;
  fwp_context* ctx = make_context();
  fwp_layer_config cfg;
  small_config(&cfg);
  cfg.use_bias = 1;
  fwp_layer* layer = make_layer(ctx, &cfg);
  const int64_t B = 2, T = 5;
  const size_t n = (size_t)(B * T * D_MODEL);
  float* x = random_floats(n, 2);
  float* dy = random_floats(n, 3);
  float* y0 = (float*)calloc(n, sizeof(float));
  float* y = (float*)calloc(n, sizeof(float));
  float* dx = (float*)calloc(n, sizeof(float));

  /* Before any forward. */
  EXPECT_ERROR(fwp_layer_backward(layer, dy, B, T, dx), FWP_ERR_BAD_STATE, "forward");
  EXPECT_ERROR(fwp_layer_get_state_grad(layer, NULL, 0, NULL, 0), FWP_ERR_BAD_STATE, "backward");

  assert_int_equal(fwp_layer_forward(layer, x, B, T, y0), FWP_OK);

  /* NULL pointers. */
  EXPECT_ERROR(fwp_layer_forward(NULL, x, B, T, y), FWP_ERR_NULL_POINTER, "layer");
  EXPECT_ERROR(fwp_layer_forward(layer, NULL, B, T, y), FWP_ERR_NULL_POINTER, "x");
  EXPECT_ERROR(fwp_layer_forward(layer, x, B, T, NULL), FWP_ERR_NULL_POINTER, "y");
  EXPECT_ERROR(fwp_layer_backward(layer, NULL, B, T, dx), FWP_ERR_NULL_POINTER, "dy");
  EXPECT_ERROR(fwp_layer_step(layer, NULL, B, y), FWP_ERR_NULL_POINTER, "x");
  EXPECT_ERROR(fwp_layer_zero_grad(NULL), FWP_ERR_NULL_POINTER, "layer");
  EXPECT_ERROR(fwp_layer_reset_state(NULL), FWP_ERR_NULL_POINTER, "layer");
  EXPECT_ERROR(fwp_layer_set_training(NULL, 1), FWP_ERR_NULL_POINTER, "layer");

  /* Sizes. */
  EXPECT_ERROR(fwp_layer_forward(layer, x, 0, T, y), FWP_ERR_INVALID_ARGUMENT, "batch must be >= 1 (got 0)");
  assert_string_equal(fwp_last_error_message(), "fwp_layer_forward: batch must be >= 1 (got 0)");
  EXPECT_ERROR(fwp_layer_forward(layer, x, B, -4, y), FWP_ERR_INVALID_ARGUMENT, "seq_len");
  EXPECT_ERROR(fwp_layer_forward(layer, x, (int64_t)1 << 40, (int64_t)1 << 40, y), FWP_ERR_INVALID_ARGUMENT,
               "too large");
  EXPECT_ERROR(fwp_layer_forward(layer, x, INT64_MAX, 2, y), FWP_ERR_INVALID_ARGUMENT, "too large");
  EXPECT_ERROR(fwp_layer_step(layer, x, 0, y), FWP_ERR_INVALID_ARGUMENT, "batch");
  EXPECT_ERROR(fwp_layer_state_size(layer, 0, NULL, NULL), FWP_ERR_INVALID_ARGUMENT, "batch");
  EXPECT_ERROR(fwp_layer_set_training(layer, 2), FWP_ERR_INVALID_ARGUMENT, "training");

  /* Shape mismatches with the last forward. */
  EXPECT_ERROR(fwp_layer_backward(layer, dy, B + 1, T, dx), FWP_ERR_SHAPE_MISMATCH, "batch");
  EXPECT_ERROR(fwp_layer_backward(layer, dy, B, T - 1, dx), FWP_ERR_SHAPE_MISMATCH, "seq_len");

  /* Parameters. */
  int64_t count = 0;
  assert_int_equal(fwp_layer_num_params(layer, &count), FWP_OK);
  EXPECT_ERROR(fwp_layer_num_params(layer, NULL), FWP_ERR_NULL_POINTER, "count");
  fwp_param_info info;
  EXPECT_ERROR(fwp_layer_param_info(layer, count, &info), FWP_ERR_OUT_OF_RANGE, "index");
  EXPECT_ERROR(fwp_layer_param_info(layer, -1, &info), FWP_ERR_OUT_OF_RANGE, "index");
  EXPECT_ERROR(fwp_layer_param_info(layer, 0, NULL), FWP_ERR_NULL_POINTER, "info");
  int64_t index = -1;
  EXPECT_ERROR(fwp_layer_param_index(layer, "no_such.weight", &index), FWP_ERR_INVALID_ARGUMENT, "no_such.weight");
  EXPECT_ERROR(fwp_layer_param_index(layer, NULL, &index), FWP_ERR_NULL_POINTER, "name");
  EXPECT_ERROR(fwp_layer_param_index(layer, "q_proj.weight", NULL), FWP_ERR_NULL_POINTER, "index");
  assert_int_equal(fwp_layer_param_index(layer, "q_proj.weight", &index), FWP_OK);
  assert_int_equal(fwp_layer_param_info(layer, index, &info), FWP_OK);
  float* p = (float*)calloc((size_t)info.numel, sizeof(float));
  float* saved = (float*)calloc((size_t)info.numel, sizeof(float));
  assert_int_equal(fwp_layer_get_param(layer, index, saved, info.numel), FWP_OK);
  EXPECT_ERROR(fwp_layer_get_param(layer, index, p, info.numel - 1), FWP_ERR_SHAPE_MISMATCH, "count");
  EXPECT_ERROR(fwp_layer_get_param(layer, index, NULL, info.numel), FWP_ERR_NULL_POINTER, "data");
  EXPECT_ERROR(fwp_layer_get_param(layer, 99, p, info.numel), FWP_ERR_OUT_OF_RANGE, "index");
  EXPECT_ERROR(fwp_layer_get_grad(layer, index, p, info.numel + 1), FWP_ERR_SHAPE_MISMATCH, "count");
  EXPECT_ERROR(fwp_layer_set_param(layer, index, p, 0), FWP_ERR_SHAPE_MISMATCH, "count");
  EXPECT_ERROR(fwp_layer_set_param(layer, index, NULL, info.numel), FWP_ERR_NULL_POINTER, "data");
  /* A non-finite value is rejected and nothing is written. */
  for (int64_t i = 0; i < info.numel; ++i) p[i] = 1.0f;
  p[info.numel / 2] = NAN;
  EXPECT_ERROR(fwp_layer_set_param(layer, index, p, info.numel), FWP_ERR_INVALID_ARGUMENT, "finite");
  p[info.numel / 2] = INFINITY;
  EXPECT_ERROR(fwp_layer_set_param(layer, index, p, info.numel), FWP_ERR_INVALID_ARGUMENT, "finite");
  assert_int_equal(fwp_layer_get_param(layer, index, p, info.numel), FWP_OK);
  assert_floats_equal(p, saved, (size_t)info.numel);

  /* State arguments. */
  int64_t w_count = 0, z_count = 0, batch = -1;
  assert_int_equal(fwp_layer_state_size(layer, B, &w_count, &z_count), FWP_OK);
  float* w = random_floats((size_t)w_count, 4);
  float* z = random_floats((size_t)z_count, 5);
  EXPECT_ERROR(fwp_layer_set_state(layer, B, w, w_count - 1, NULL, 0), FWP_ERR_SHAPE_MISMATCH, "w_count");
  EXPECT_ERROR(fwp_layer_set_state(layer, B, NULL, 0, z, z_count + 1), FWP_ERR_SHAPE_MISMATCH, "z_count");
  EXPECT_ERROR(fwp_layer_set_state(layer, 0, NULL, 0, NULL, 0), FWP_ERR_INVALID_ARGUMENT, "batch");
  EXPECT_ERROR(fwp_layer_set_state(NULL, B, NULL, 0, NULL, 0), FWP_ERR_NULL_POINTER, "layer");
  EXPECT_ERROR(fwp_layer_get_state(layer, NULL, NULL, 0, NULL, 0), FWP_ERR_NULL_POINTER, "batch");
  /* No state is held: batch 0, and arrays must then have size 0. */
  assert_int_equal(fwp_layer_get_state(layer, &batch, NULL, 0, NULL, 0), FWP_OK);
  assert_int_equal(batch, 0);
  EXPECT_ERROR(fwp_layer_get_state(layer, &batch, w, w_count, NULL, 0), FWP_ERR_SHAPE_MISMATCH, "w_count");
  EXPECT_ERROR(fwp_layer_get_state_grad(layer, w, w_count, NULL, 0), FWP_ERR_BAD_STATE, "backward");

  /* After all of that the layer computes exactly what it computed before. */
  assert_int_equal(fwp_layer_forward(layer, x, B, T, y), FWP_OK);
  assert_floats_equal(y, y0, n);
  assert_int_equal(fwp_layer_backward(layer, dy, B, T, dx), FWP_OK);

  /* A state of another batch makes forwards of this batch fail, without harm. */
  assert_int_equal(fwp_layer_set_state(layer, B + 1, NULL, 0, NULL, 0), FWP_OK);
  EXPECT_ERROR(fwp_layer_forward(layer, x, B, T, y), FWP_ERR_SHAPE_MISMATCH, "batch");
  EXPECT_ERROR(fwp_layer_step(layer, x, B, y), FWP_ERR_SHAPE_MISMATCH, "batch");
  assert_int_equal(fwp_layer_backward(layer, dy, B, T, dx), FWP_OK); /* the last forward is still there */
  assert_int_equal(fwp_layer_reset_state(layer), FWP_OK);
  assert_int_equal(fwp_layer_forward(layer, x, B, T, y), FWP_OK);
  assert_floats_equal(y, y0, n);

  free(w);
  free(z);
  free(p);
  free(saved);
  free(x);
  free(dy);
  free(y0);
  free(y);
  free(dx);
  fwp_layer_destroy(layer);
  fwp_context_destroy(ctx);
}

static void test_softmax_state_calls_unsupported(void** state) {
  (void)state;
  fwp_context* ctx = make_context();
  fwp_layer_config cfg;
  small_config(&cfg);
  cfg.feature_map = FWP_FEATURE_MAP_SOFTMAX;
  cfg.update_rule = FWP_UPDATE_SUM;
  cfg.sum_normalize = 0;
  fwp_layer* layer = make_layer(ctx, &cfg);
  int64_t w_count, z_count, batch;
  float buf[4];
  EXPECT_ERROR(fwp_layer_state_size(layer, 1, &w_count, &z_count), FWP_ERR_UNSUPPORTED, "softmax");
  EXPECT_ERROR(fwp_layer_set_state(layer, 1, NULL, 0, NULL, 0), FWP_ERR_UNSUPPORTED, "softmax");
  EXPECT_ERROR(fwp_layer_get_state(layer, &batch, NULL, 0, NULL, 0), FWP_ERR_UNSUPPORTED, "softmax");
  EXPECT_ERROR(fwp_layer_get_state_grad(layer, buf, 4, NULL, 0), FWP_ERR_UNSUPPORTED, "softmax");

  /* Stepping works and equals the forward; reset forgets the cache. */
  const int64_t B = 2, T = 20;
  const size_t n = (size_t)(B * T * D_MODEL);
  float* x = random_floats(n, 6);
  float* y = (float*)calloc(n, sizeof(float));
  assert_int_equal(fwp_layer_forward(layer, x, B, T, y), FWP_OK);
  for (int round = 0; round < 2; ++round) {
    for (int64_t t = 0; t < T; ++t) {
      float xt[B * D_MODEL], yt[B * D_MODEL];
      for (int64_t b = 0; b < B; ++b) memcpy(xt + b * D_MODEL, x + (b * T + t) * D_MODEL, D_MODEL * sizeof(float));
      assert_int_equal(fwp_layer_step(layer, xt, B, yt), FWP_OK);
      for (int64_t b = 0; b < B; ++b)
        assert_true(max_abs_diff(yt + b * D_MODEL, y + (b * T + t) * D_MODEL, D_MODEL) < 1e-5f);
    }
    float x1[3 * D_MODEL] = {0}, y1[3 * D_MODEL];
    EXPECT_ERROR(fwp_layer_step(layer, x1, 3, y1), FWP_ERR_SHAPE_MISMATCH, "batch");
    assert_int_equal(fwp_layer_reset_state(layer), FWP_OK);
  }
  free(x);
  free(y);
  fwp_layer_destroy(layer);
  fwp_context_destroy(ctx);
}

/* ---- parameters ------------------------------------------------------------------------------- */

static void test_param_enumeration(void** state) {
  (void)state;
  fwp_context* ctx = make_context();
  fwp_layer_config cfg;
  small_config(&cfg);
  cfg.feature_map = FWP_FEATURE_MAP_FAVOR;
  cfg.favor_features = 6;
  cfg.use_bias = 1;
  fwp_layer* layer = make_layer(ctx, &cfg);
  const struct {
    const char* name;
    int32_t ndim;
    int64_t shape0, shape1;
    int32_t trainable;
  } expected[] = {
      {"q_proj.weight", 2, HEADS * D_HEAD, D_MODEL, 1}, {"q_proj.bias", 1, HEADS * D_HEAD, 0, 1},
      {"k_proj.weight", 2, HEADS * D_HEAD, D_MODEL, 1}, {"k_proj.bias", 1, HEADS * D_HEAD, 0, 1},
      {"v_proj.weight", 2, HEADS * D_HEAD, D_MODEL, 1}, {"v_proj.bias", 1, HEADS * D_HEAD, 0, 1},
      {"beta_proj.weight", 2, HEADS, D_MODEL, 1},        {"beta_proj.bias", 1, HEADS, 0, 1},
      {"out_proj.weight", 2, D_MODEL, HEADS * D_HEAD, 1}, {"out_proj.bias", 1, D_MODEL, 0, 1},
      {"favor.projection", 2, 6, D_HEAD, 0},
  };
  int64_t count = 0;
  assert_int_equal(fwp_layer_num_params(layer, &count), FWP_OK);
  assert_int_equal(count, sizeof expected / sizeof expected[0]);
  for (int64_t i = 0; i < count; ++i) {
    fwp_param_info info;
    assert_int_equal(fwp_layer_param_info(layer, i, &info), FWP_OK);
    assert_string_equal(info.name, expected[i].name);
    assert_int_equal(info.ndim, expected[i].ndim);
    assert_int_equal(info.shape[0], expected[i].shape0);
    assert_int_equal(info.shape[1], expected[i].shape1);
    assert_int_equal(info.shape[2], 0);
    assert_int_equal(info.shape[3], 0);
    assert_int_equal(info.numel, expected[i].shape0 * (expected[i].ndim == 2 ? expected[i].shape1 : 1));
    assert_int_equal(info.trainable, expected[i].trainable);
    int64_t index = -1;
    assert_int_equal(fwp_layer_param_index(layer, expected[i].name, &index), FWP_OK);
    assert_int_equal(index, i);

    /* set/get round trip; gradients start at zero. */
    float* v = random_floats((size_t)info.numel, (unsigned)(10 + i));
    float* back = (float*)calloc((size_t)info.numel, sizeof(float));
    assert_int_equal(fwp_layer_set_param(layer, i, v, info.numel), FWP_OK);
    assert_int_equal(fwp_layer_get_param(layer, i, back, info.numel), FWP_OK);
    assert_floats_equal(back, v, (size_t)info.numel);
    assert_int_equal(fwp_layer_get_grad(layer, i, back, info.numel), FWP_OK);
    for (int64_t j = 0; j < info.numel; ++j) assert_true(back[j] == 0.0f);
    free(v);
    free(back);
  }
  /* Biases start at zero, weights do not. */
  fwp_layer_destroy(layer);
  layer = make_layer(ctx, &cfg);
  float bias[D_MODEL], weight[D_MODEL * HEADS * D_HEAD];
  int64_t index;
  assert_int_equal(fwp_layer_param_index(layer, "out_proj.bias", &index), FWP_OK);
  assert_int_equal(fwp_layer_get_param(layer, index, bias, D_MODEL), FWP_OK);
  for (int i = 0; i < D_MODEL; ++i) assert_true(bias[i] == 0.0f);
  assert_int_equal(fwp_layer_param_index(layer, "out_proj.weight", &index), FWP_OK);
  assert_int_equal(fwp_layer_get_param(layer, index, weight, D_MODEL * HEADS * D_HEAD), FWP_OK);
  float m = 0;
  for (int i = 0; i < D_MODEL * HEADS * D_HEAD; ++i) m = fmaxf(m, fabsf(weight[i]));
  assert_true(m > 0.0f);
  fwp_layer_destroy(layer);
  fwp_context_destroy(ctx);
}

/* ---- state and stepping ------------------------------------------------------------------------ */

static void test_state_and_steps(void** state) {
  (void)state;
  fwp_context* ctx = make_context();
  fwp_layer_config cfg;
  small_config(&cfg);
  cfg.attn_normalize = 1;
  cfg.carry_state = 1;
  fwp_layer* carried = make_layer(ctx, &cfg);
  fwp_layer* stepper = NULL;
  {
    /* Same parameters through get/set. */
    cfg.carry_state = 0;
    stepper = make_layer(ctx, &cfg);
    int64_t count;
    assert_int_equal(fwp_layer_num_params(carried, &count), FWP_OK);
    for (int64_t i = 0; i < count; ++i) {
      fwp_param_info info;
      assert_int_equal(fwp_layer_param_info(carried, i, &info), FWP_OK);
      float* v = (float*)malloc((size_t)info.numel * sizeof(float));
      assert_int_equal(fwp_layer_get_param(carried, i, v, info.numel), FWP_OK);
      assert_int_equal(fwp_layer_set_param(stepper, i, v, info.numel), FWP_OK);
      free(v);
    }
  }
  const int64_t B = 2, T = 6;
  const size_t n = (size_t)(B * T * D_MODEL);
  float* x = random_floats(n, 7);
  float* y = (float*)calloc(n, sizeof(float));
  assert_int_equal(fwp_layer_forward(carried, x, B, T, y), FWP_OK);
  for (int64_t t = 0; t < T; ++t) {
    float xt[B * D_MODEL], yt[B * D_MODEL];
    for (int64_t b = 0; b < B; ++b) memcpy(xt + b * D_MODEL, x + (b * T + t) * D_MODEL, D_MODEL * sizeof(float));
    assert_int_equal(fwp_layer_step(stepper, xt, B, yt), FWP_OK);
    for (int64_t b = 0; b < B; ++b)
      assert_true(max_abs_diff(yt + b * D_MODEL, y + (b * T + t) * D_MODEL, D_MODEL) < 1e-5f);
  }
  /* Both hold the same final state. */
  int64_t w_count, z_count, b1 = 0, b2 = 0;
  assert_int_equal(fwp_layer_state_size(carried, B, &w_count, &z_count), FWP_OK);
  assert_int_equal(w_count, B * HEADS * D_HEAD * (2 * D_HEAD));
  assert_int_equal(z_count, B * HEADS * (2 * D_HEAD));
  float* w1 = (float*)calloc((size_t)w_count, sizeof(float));
  float* w2 = (float*)calloc((size_t)w_count, sizeof(float));
  float* z1 = (float*)calloc((size_t)z_count, sizeof(float));
  float* z2 = (float*)calloc((size_t)z_count, sizeof(float));
  assert_int_equal(fwp_layer_get_state(carried, &b1, w1, w_count, z1, z_count), FWP_OK);
  assert_int_equal(fwp_layer_get_state(stepper, &b2, w2, w_count, z2, z_count), FWP_OK);
  assert_int_equal(b1, B);
  assert_int_equal(b2, B);
  assert_true(max_abs_diff(w1, w2, (size_t)w_count) < 1e-5f);
  assert_true(max_abs_diff(z1, z2, (size_t)z_count) < 1e-5f);
  float zmax = 0;
  for (int64_t i = 0; i < z_count; ++i) zmax = fmaxf(zmax, z1[i]);
  assert_true(zmax > 0.0f); /* z accumulated phi(k) */

  /* set_state then get_state returns it exactly; reset forgets it. */
  float* w = random_floats((size_t)w_count, 8);
  float* z = random_floats((size_t)z_count, 9);
  assert_int_equal(fwp_layer_set_state(stepper, B, w, w_count, z, z_count), FWP_OK);
  assert_int_equal(fwp_layer_get_state(stepper, &b2, w2, w_count, z2, z_count), FWP_OK);
  assert_floats_equal(w2, w, (size_t)w_count);
  assert_floats_equal(z2, z, (size_t)z_count);
  assert_int_equal(fwp_layer_reset_state(stepper), FWP_OK);
  assert_int_equal(fwp_layer_get_state(stepper, &b2, NULL, 0, NULL, 0), FWP_OK);
  assert_int_equal(b2, 0);

  /* The state gradient after a backward has the forward's batch. */
  assert_int_equal(fwp_layer_backward(carried, y, B, T, NULL), FWP_OK);
  EXPECT_ERROR(fwp_layer_get_state_grad(carried, w1, w_count - 1, NULL, 0), FWP_ERR_SHAPE_MISMATCH, "w_count");
  assert_int_equal(fwp_layer_get_state_grad(carried, w1, w_count, z1, z_count), FWP_OK);
  assert_int_equal(fwp_layer_get_state_grad(carried, NULL, 0, NULL, 0), FWP_OK);

  free(w);
  free(z);
  free(w1);
  free(w2);
  free(z1);
  free(z2);
  free(x);
  free(y);
  fwp_layer_destroy(carried);
  fwp_layer_destroy(stepper);
  fwp_context_destroy(ctx);
}

/* ---- training through the C API ----------------------------------------------------------------- */

static double loss_and_grad(const float* y, const float* target, float* dy, size_t n) {
  double loss = 0;
  for (size_t i = 0; i < n; ++i) {
    const double d = (double)y[i] - (double)target[i];
    loss += 0.5 * d * d / (double)n;
    dy[i] = (float)(d / (double)n);
  }
  return loss;
}

static void test_training_lowers_loss(void** state) {
  (void)state;
  fwp_layer_config cfg;
  small_config(&cfg);
  cfg.use_bias = 1;
  /* Teacher and student: the target is the output of another layer of the same
   * shape (other seed), so it can be fitted. */
  fwp_context_config cc;
  fwp_context_config_init(&cc);
  cc.seed = 99;
  fwp_context* teacher_ctx = NULL;
  assert_int_equal(fwp_context_create(&cc, &teacher_ctx), FWP_OK);
  fwp_layer* teacher = make_layer(teacher_ctx, &cfg);
  fwp_context* ctx = make_context();
  fwp_layer* layer = make_layer(ctx, &cfg);
  const int64_t B = 4, T = 6;
  const size_t n = (size_t)(B * T * D_MODEL);
  float* x = random_floats(n, 20);
  float* target = (float*)calloc(n, sizeof(float));
  assert_int_equal(fwp_layer_forward(teacher, x, B, T, target), FWP_OK);
  fwp_layer_destroy(teacher);
  fwp_context_destroy(teacher_ctx);
  float* y = (float*)calloc(n, sizeof(float));
  float* dy = (float*)calloc(n, sizeof(float));
  int64_t count = 0;
  assert_int_equal(fwp_layer_num_params(layer, &count), FWP_OK);

  double first = 0, last = 0;
  const float lr = 10.0f; /* the loss is a mean over all outputs, so its gradients are small */
  for (int it = 0; it < 150; ++it) {
    assert_int_equal(fwp_layer_zero_grad(layer), FWP_OK);
    assert_int_equal(fwp_layer_forward(layer, x, B, T, y), FWP_OK);
    const double loss = loss_and_grad(y, target, dy, n);
    assert_true(isfinite(loss));
    if (it == 0) first = loss;
    last = loss;
    assert_int_equal(fwp_layer_backward(layer, dy, B, T, NULL), FWP_OK);
    for (int64_t i = 0; i < count; ++i) {
      fwp_param_info info;
      assert_int_equal(fwp_layer_param_info(layer, i, &info), FWP_OK);
      if (!info.trainable) continue;
      float* v = (float*)malloc((size_t)info.numel * sizeof(float));
      float* g = (float*)malloc((size_t)info.numel * sizeof(float));
      assert_int_equal(fwp_layer_get_param(layer, i, v, info.numel), FWP_OK);
      assert_int_equal(fwp_layer_get_grad(layer, i, g, info.numel), FWP_OK);
      for (int64_t j = 0; j < info.numel; ++j) v[j] -= lr * g[j];
      assert_int_equal(fwp_layer_set_param(layer, i, v, info.numel), FWP_OK);
      free(v);
      free(g);
    }
  }
  print_message("training loss %.5f -> %.5f\n", first, last);
  assert_true(last < 0.5 * first);

  free(x);
  free(target);
  free(y);
  free(dy);
  fwp_layer_destroy(layer);
  fwp_context_destroy(ctx);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_config_defaults_and_round_trip),
      cmocka_unit_test(test_lifecycle),
      cmocka_unit_test(test_bad_configs),
      cmocka_unit_test(test_bad_calls_leave_layer_unchanged),
      cmocka_unit_test(test_softmax_state_calls_unsupported),
      cmocka_unit_test(test_param_enumeration),
      cmocka_unit_test(test_state_and_steps),
      cmocka_unit_test(test_training_lowers_loss),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
