/* C API contract of fwp_state_* and fwp_layer_*_with_state: every argument
 * check (status + a message naming the argument), reset / copy / reorder
 * semantics, a layer run against an external state equals the layer run
 * against its own, and handles destroyed in any order (layer or model before
 * the optimizer and the state made for it; under ASan a use-after-free would
 * show here). */
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
#define BATCH 3

/* ---- helpers ------------------------------------------------------------------------ */

static fwp_context* make_context(void) {
  fwp_context_config cfg;
  fwp_context_config_init(&cfg);
  cfg.num_threads = 1;
  cfg.seed = 321;
  fwp_context* ctx = NULL;
  CHECK_OK(fwp_context_create(&cfg, &ctx));
  return ctx;
}

/* A delta-rule DPFP layer with attention normalisation (so z matters), or softmax attention. */
static fwp_layer* make_layer(fwp_context* ctx, int softmax, int64_t d_head) {
  fwp_layer_config cfg;
  fwp_layer_config_init(&cfg);
  cfg.d_model = D_MODEL;
  cfg.num_heads = HEADS;
  cfg.d_head = d_head;
  cfg.init_std = 0.3f;
  if (softmax) {
    cfg.feature_map = FWP_FEATURE_MAP_SOFTMAX;
    cfg.update_rule = FWP_UPDATE_SUM;
    cfg.sum_normalize = 0;
  } else {
    cfg.attn_normalize = 1;
  }
  fwp_layer* layer = NULL;
  CHECK_OK(fwp_layer_create(ctx, &cfg, &layer));
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

static float* positive_floats(size_t n, unsigned seed) {
  float* v = random_floats(n, seed);
  for (size_t i = 0; i < n; ++i) v[i] = fabsf(v[i]) + 0.5f;
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

static int all_zero(const float* a, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (a[i] != 0.0f) return 0;
  return 1;
}

/* ---- creation and queries ------------------------------------------------------------ */

static void test_create_and_queries(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_layer* layer = make_layer(ctx, 0, D_HEAD);
  fwp_state* st = (fwp_state*)0x1;

  EXPECT_ERROR(fwp_state_create_for_layer(layer, BATCH, NULL), FWP_ERR_NULL_POINTER, "out");
  EXPECT_ERROR(fwp_state_create_for_layer(NULL, BATCH, &st), FWP_ERR_NULL_POINTER, "layer");
  assert_null(st);
  EXPECT_ERROR(fwp_state_create_for_layer(layer, 0, &st), FWP_ERR_INVALID_ARGUMENT, "batch must be >= 1");
  assert_null(st);
  CHECK_OK(fwp_state_create_for_layer(layer, BATCH, &st));
  assert_non_null(st);

  int64_t n = -1;
  CHECK_OK(fwp_state_batch(st, &n));
  assert_int_equal(n, BATCH);
  CHECK_OK(fwp_state_num_layers(st, &n));
  assert_int_equal(n, 1);
  EXPECT_ERROR(fwp_state_batch(NULL, &n), FWP_ERR_NULL_POINTER, "state");
  EXPECT_ERROR(fwp_state_batch(st, NULL), FWP_ERR_NULL_POINTER, "batch");
  EXPECT_ERROR(fwp_state_num_layers(NULL, &n), FWP_ERR_NULL_POINTER, "state");
  EXPECT_ERROR(fwp_state_num_layers(st, NULL), FWP_ERR_NULL_POINTER, "count");

  int64_t d_dot = 0, nw = 0, nz = 0;
  CHECK_OK(fwp_layer_feature_dim(layer, &d_dot));
  CHECK_OK(fwp_state_size(st, 0, &nw, &nz));
  assert_int_equal(nw, BATCH * HEADS * D_HEAD * d_dot);
  assert_int_equal(nz, BATCH * HEADS * d_dot);
  CHECK_OK(fwp_state_size(st, 0, NULL, NULL));
  EXPECT_ERROR(fwp_state_size(NULL, 0, &nw, &nz), FWP_ERR_NULL_POINTER, "state");
  EXPECT_ERROR(fwp_state_size(st, 1, &nw, &nz), FWP_ERR_OUT_OF_RANGE, "layer must be in [0, 1)");
  EXPECT_ERROR(fwp_state_size(st, -1, &nw, &nz), FWP_ERR_OUT_OF_RANGE, "layer");
  EXPECT_ERROR(fwp_state_cache_length(st, 0, &n), FWP_ERR_UNSUPPORTED, "no key/value cache");

  fwp_state_destroy(st);
  fwp_state_destroy(NULL);
  fwp_layer_destroy(layer);
  fwp_context_destroy(ctx);
}

static void test_model_state_unsupported_for_retrieval(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_retrieval_config cfg;
  fwp_retrieval_config_init(&cfg);
  cfg.num_keys = 4;
  cfg.d_head = 8;
  fwp_model* model = NULL;
  CHECK_OK(fwp_model_create_retrieval(ctx, &cfg, &model));
  fwp_state* st = (fwp_state*)0x1;
  EXPECT_ERROR(fwp_state_create(model, 2, NULL), FWP_ERR_NULL_POINTER, "out");
  EXPECT_ERROR(fwp_state_create(NULL, 2, &st), FWP_ERR_NULL_POINTER, "model");
  assert_null(st);
  EXPECT_ERROR(fwp_state_create(model, 0, &st), FWP_ERR_INVALID_ARGUMENT, "batch");
  EXPECT_ERROR(fwp_state_create(model, 2, &st), FWP_ERR_UNSUPPORTED, "the retrieval model carries no state");
  assert_null(st);
  fwp_model_destroy(model);
  fwp_context_destroy(ctx);
}

/* ---- get / set / reset / copy / reorder ------------------------------------------------ */

static void test_get_set_reset(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_layer* layer = make_layer(ctx, 0, D_HEAD);
  fwp_state* st = NULL;
  CHECK_OK(fwp_state_create_for_layer(layer, BATCH, &st));
  int64_t nw = 0, nz = 0;
  CHECK_OK(fwp_state_size(st, 0, &nw, &nz));
  float* w = random_floats((size_t)nw, 1);
  float* z = positive_floats((size_t)nz, 2);
  float* w2 = (float*)calloc((size_t)nw, sizeof(float));
  float* z2 = (float*)calloc((size_t)nz, sizeof(float));

  /* A new state is zero. */
  CHECK_OK(fwp_state_get(st, 0, w2, nw, z2, nz));
  assert_true(all_zero(w2, (size_t)nw) && all_zero(z2, (size_t)nz));

  CHECK_OK(fwp_state_set(st, 0, w, nw, z, nz));
  CHECK_OK(fwp_state_get(st, 0, w2, nw, z2, nz));
  assert_floats_equal(w, w2, (size_t)nw);
  assert_floats_equal(z, z2, (size_t)nz);
  CHECK_OK(fwp_state_get(st, 0, NULL, 0, z2, nz));

  EXPECT_ERROR(fwp_state_get(NULL, 0, w2, nw, z2, nz), FWP_ERR_NULL_POINTER, "state");
  EXPECT_ERROR(fwp_state_get(st, 2, w2, nw, z2, nz), FWP_ERR_OUT_OF_RANGE, "layer");
  EXPECT_ERROR(fwp_state_get(st, 0, w2, nw - 1, z2, nz), FWP_ERR_SHAPE_MISMATCH, "w_count");
  EXPECT_ERROR(fwp_state_get(st, 0, w2, nw, z2, nz + 1), FWP_ERR_SHAPE_MISMATCH, "z_count");
  EXPECT_ERROR(fwp_state_set(NULL, 0, w, nw, z, nz), FWP_ERR_NULL_POINTER, "state");
  EXPECT_ERROR(fwp_state_set(st, 1, w, nw, z, nz), FWP_ERR_OUT_OF_RANGE, "layer");
  EXPECT_ERROR(fwp_state_set(st, 0, w, nw + 1, z, nz), FWP_ERR_SHAPE_MISMATCH, "w_count");
  EXPECT_ERROR(fwp_state_set(st, 0, w, nw, z, 0), FWP_ERR_SHAPE_MISMATCH, "z_count");
  const float saved = w[5];
  w[5] = NAN;
  EXPECT_ERROR(fwp_state_set(st, 0, w, nw, z, nz), FWP_ERR_INVALID_ARGUMENT, "w[5] is not finite");
  w[5] = saved;
  /* The failed calls left the state as it was. */
  CHECK_OK(fwp_state_get(st, 0, w2, nw, z2, nz));
  assert_floats_equal(w, w2, (size_t)nw);

  /* NULL sets zeros. */
  CHECK_OK(fwp_state_set(st, 0, NULL, 0, z, nz));
  CHECK_OK(fwp_state_get(st, 0, w2, nw, z2, nz));
  assert_true(all_zero(w2, (size_t)nw));
  assert_floats_equal(z, z2, (size_t)nz);

  /* Reset: zeros, batch kept. */
  CHECK_OK(fwp_state_set(st, 0, w, nw, z, nz));
  EXPECT_ERROR(fwp_state_reset(NULL), FWP_ERR_NULL_POINTER, "state");
  CHECK_OK(fwp_state_reset(st));
  int64_t b = 0;
  CHECK_OK(fwp_state_batch(st, &b));
  assert_int_equal(b, BATCH);
  CHECK_OK(fwp_state_get(st, 0, w2, nw, z2, nz));
  assert_true(all_zero(w2, (size_t)nw) && all_zero(z2, (size_t)nz));

  free(w);
  free(z);
  free(w2);
  free(z2);
  fwp_state_destroy(st);
  fwp_layer_destroy(layer);
  fwp_context_destroy(ctx);
}

static void test_copy_and_reorder(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_layer* layer = make_layer(ctx, 0, D_HEAD);
  fwp_layer* other = make_layer(ctx, 0, D_HEAD + 1);
  fwp_state *a = NULL, *b = NULL, *small = NULL, *wrong = NULL;
  CHECK_OK(fwp_state_create_for_layer(layer, BATCH, &a));
  CHECK_OK(fwp_state_create_for_layer(layer, BATCH, &b));
  CHECK_OK(fwp_state_create_for_layer(layer, 1, &small));
  CHECK_OK(fwp_state_create_for_layer(other, BATCH, &wrong));
  int64_t nw = 0, nz = 0;
  CHECK_OK(fwp_state_size(a, 0, &nw, &nz));
  const int64_t rw = nw / BATCH, rz = nz / BATCH; /* one row */
  float* w = random_floats((size_t)nw, 3);
  float* z = positive_floats((size_t)nz, 4);
  CHECK_OK(fwp_state_set(a, 0, w, nw, z, nz));

  /* copy */
  EXPECT_ERROR(fwp_state_copy(NULL, a), FWP_ERR_NULL_POINTER, "state");
  EXPECT_ERROR(fwp_state_copy(b, NULL), FWP_ERR_NULL_POINTER, "src");
  EXPECT_ERROR(fwp_state_copy(small, a), FWP_ERR_SHAPE_MISMATCH, "batch");
  EXPECT_ERROR(fwp_state_copy(wrong, a), FWP_ERR_SHAPE_MISMATCH, "d_head");
  CHECK_OK(fwp_state_copy(a, a));
  CHECK_OK(fwp_state_copy(b, a));
  float* w2 = (float*)calloc((size_t)nw * 2, sizeof(float));
  float* z2 = (float*)calloc((size_t)nz * 2, sizeof(float));
  CHECK_OK(fwp_state_get(b, 0, w2, nw, z2, nz));
  assert_floats_equal(w, w2, (size_t)nw);
  assert_floats_equal(z, z2, (size_t)nz);
  /* The copy is independent of its source. */
  CHECK_OK(fwp_state_reset(a));
  CHECK_OK(fwp_state_get(b, 0, w2, nw, z2, nz));
  assert_floats_equal(w, w2, (size_t)nw);

  /* reorder: bad arguments leave the state unchanged */
  const int64_t bad[2] = {0, BATCH};
  const int64_t negative[1] = {-1};
  EXPECT_ERROR(fwp_state_reorder(NULL, bad, 1), FWP_ERR_NULL_POINTER, "state");
  EXPECT_ERROR(fwp_state_reorder(b, NULL, 1), FWP_ERR_NULL_POINTER, "rows");
  EXPECT_ERROR(fwp_state_reorder(b, bad, 0), FWP_ERR_INVALID_ARGUMENT, "count must be >= 1");
  EXPECT_ERROR(fwp_state_reorder(b, bad, 2), FWP_ERR_OUT_OF_RANGE, "rows[1] must be in [0, 3)");
  EXPECT_ERROR(fwp_state_reorder(b, negative, 1), FWP_ERR_OUT_OF_RANGE, "rows[0]");
  int64_t batch = 0;
  CHECK_OK(fwp_state_batch(b, &batch));
  assert_int_equal(batch, BATCH);

  /* Beam search: rows repeat and the batch changes. */
  const int64_t rows[5] = {2, 2, 0, 1, 2};
  CHECK_OK(fwp_state_reorder(b, rows, 5));
  CHECK_OK(fwp_state_batch(b, &batch));
  assert_int_equal(batch, 5);
  int64_t nw5 = 0, nz5 = 0;
  CHECK_OK(fwp_state_size(b, 0, &nw5, &nz5));
  assert_int_equal(nw5, 5 * rw);
  CHECK_OK(fwp_state_get(b, 0, w2, nw5, z2, nz5));
  for (int r = 0; r < 5; ++r) {
    assert_floats_equal(w2 + r * rw, w + rows[r] * rw, (size_t)rw);
    assert_floats_equal(z2 + r * rz, z + rows[r] * rz, (size_t)rz);
  }

  free(w);
  free(z);
  free(w2);
  free(z2);
  fwp_state_destroy(a);
  fwp_state_destroy(b);
  fwp_state_destroy(small);
  fwp_state_destroy(wrong);
  fwp_layer_destroy(layer);
  fwp_layer_destroy(other);
  fwp_context_destroy(ctx);
}

/* ---- a layer against an external state ------------------------------------------------- */

static void test_with_state_equals_own_state(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_layer* layer = make_layer(ctx, 0, D_HEAD);
  CHECK_OK(fwp_layer_set_training(layer, 0));
  fwp_state* st = NULL;
  CHECK_OK(fwp_state_create_for_layer(layer, BATCH, &st));
  int64_t nw = 0, nz = 0;
  CHECK_OK(fwp_state_size(st, 0, &nw, &nz));
  float* w = random_floats((size_t)nw, 5);
  float* z = positive_floats((size_t)nz, 6);
  CHECK_OK(fwp_state_set(st, 0, w, nw, z, nz));
  CHECK_OK(fwp_layer_set_state(layer, BATCH, w, nw, z, nz));

  const int64_t T = 4;
  float* x = random_floats((size_t)(BATCH * T * D_MODEL), 7);
  float* y_own = (float*)calloc((size_t)(BATCH * T * D_MODEL), sizeof(float));
  float* y_ext = (float*)calloc((size_t)(BATCH * T * D_MODEL), sizeof(float));
  float* w_own = (float*)calloc((size_t)nw, sizeof(float));
  float* w_ext = (float*)calloc((size_t)nw, sizeof(float));
  float* z_own = (float*)calloc((size_t)nz, sizeof(float));
  float* z_ext = (float*)calloc((size_t)nz, sizeof(float));

  /* Steps: the layer's own state and the external one advance alike. */
  for (int64_t t = 0; t < T; ++t) {
    CHECK_OK(fwp_layer_step(layer, x + t * BATCH * D_MODEL, BATCH, y_own + t * BATCH * D_MODEL));
    CHECK_OK(fwp_layer_step_with_state(layer, st, x + t * BATCH * D_MODEL, BATCH, y_ext + t * BATCH * D_MODEL));
  }
  assert_floats_equal(y_own, y_ext, (size_t)(BATCH * T * D_MODEL));
  int64_t b = 0;
  CHECK_OK(fwp_layer_get_state(layer, &b, w_own, nw, z_own, nz));
  CHECK_OK(fwp_state_get(st, 0, w_ext, nw, z_ext, nz));
  assert_floats_equal(w_own, w_ext, (size_t)nw);
  assert_floats_equal(z_own, z_ext, (size_t)nz);
  assert_true(max_abs_diff(w_own, w, (size_t)nw) > 0); /* the steps moved it */

  /* A forward with the state: from the stepped state, the layer's own is left alone. */
  CHECK_OK(fwp_layer_forward_with_state(layer, st, x, BATCH, T, y_ext));
  float* w_after = (float*)calloc((size_t)nw, sizeof(float));
  CHECK_OK(fwp_layer_get_state(layer, &b, w_after, nw, NULL, 0));
  assert_floats_equal(w_own, w_after, (size_t)nw);
  CHECK_OK(fwp_state_get(st, 0, w_after, nw, NULL, 0));
  assert_true(max_abs_diff(w_ext, w_after, (size_t)nw) > 0);
  /* ... and is the forward of a carrying layer from the same state. */
  CHECK_OK(fwp_layer_set_state(layer, BATCH, w_ext, nw, z_ext, nz));
  CHECK_OK(fwp_layer_forward(layer, x, BATCH, T, y_own));
  assert_floats_equal(y_own, y_ext, (size_t)(BATCH * T * D_MODEL));
  /* The backward after a forward with a state works as after any forward. */
  CHECK_OK(fwp_layer_forward_with_state(layer, st, x, BATCH, T, y_ext));
  CHECK_OK(fwp_layer_backward(layer, y_ext, BATCH, T, NULL));

  /* Argument checks. */
  fwp_state *wrong_batch = NULL, *wrong_shape = NULL;
  fwp_layer* other = make_layer(ctx, 0, D_HEAD + 1);
  CHECK_OK(fwp_state_create_for_layer(layer, BATCH + 1, &wrong_batch));
  CHECK_OK(fwp_state_create_for_layer(other, BATCH, &wrong_shape));
  EXPECT_ERROR(fwp_layer_forward_with_state(NULL, st, x, BATCH, T, y_ext), FWP_ERR_NULL_POINTER, "layer");
  EXPECT_ERROR(fwp_layer_forward_with_state(layer, NULL, x, BATCH, T, y_ext), FWP_ERR_NULL_POINTER, "state");
  EXPECT_ERROR(fwp_layer_forward_with_state(layer, st, NULL, BATCH, T, y_ext), FWP_ERR_NULL_POINTER, "x");
  EXPECT_ERROR(fwp_layer_forward_with_state(layer, st, x, BATCH, T, NULL), FWP_ERR_NULL_POINTER, "y");
  EXPECT_ERROR(fwp_layer_forward_with_state(layer, st, x, BATCH, 0, y_ext), FWP_ERR_INVALID_ARGUMENT, "seq_len");
  EXPECT_ERROR(fwp_layer_forward_with_state(layer, wrong_batch, x, BATCH, T, y_ext), FWP_ERR_SHAPE_MISMATCH,
               "batch must equal the batch of the state (4)");
  EXPECT_ERROR(fwp_layer_forward_with_state(layer, wrong_shape, x, BATCH, T, y_ext), FWP_ERR_SHAPE_MISMATCH,
               "d_head = 5");
  EXPECT_ERROR(fwp_layer_step_with_state(NULL, st, x, BATCH, y_ext), FWP_ERR_NULL_POINTER, "layer");
  EXPECT_ERROR(fwp_layer_step_with_state(layer, NULL, x, BATCH, y_ext), FWP_ERR_NULL_POINTER, "state");
  EXPECT_ERROR(fwp_layer_step_with_state(layer, st, NULL, BATCH, y_ext), FWP_ERR_NULL_POINTER, "x");
  EXPECT_ERROR(fwp_layer_step_with_state(layer, st, x, BATCH, NULL), FWP_ERR_NULL_POINTER, "y");
  EXPECT_ERROR(fwp_layer_step_with_state(layer, st, x, 0, y_ext), FWP_ERR_INVALID_ARGUMENT, "batch must be >= 1");
  EXPECT_ERROR(fwp_layer_step_with_state(layer, wrong_batch, x, BATCH, y_ext), FWP_ERR_SHAPE_MISMATCH, "batch");
  EXPECT_ERROR(fwp_layer_step_with_state(layer, wrong_shape, x, BATCH, y_ext), FWP_ERR_SHAPE_MISMATCH, "state");

  free(w);
  free(z);
  free(x);
  free(y_own);
  free(y_ext);
  free(w_own);
  free(w_ext);
  free(z_own);
  free(z_ext);
  free(w_after);
  fwp_state_destroy(st);
  fwp_state_destroy(wrong_batch);
  fwp_state_destroy(wrong_shape);
  fwp_layer_destroy(other);
  fwp_layer_destroy(layer);
  fwp_context_destroy(ctx);
}

static void test_softmax_cache(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_layer* layer = make_layer(ctx, 1, D_HEAD);
  fwp_state* st = NULL;
  CHECK_OK(fwp_state_create_for_layer(layer, BATCH, &st));
  int64_t length = -1;
  CHECK_OK(fwp_state_cache_length(st, 0, &length));
  assert_int_equal(length, 0);
  EXPECT_ERROR(fwp_state_cache_length(st, 0, NULL), FWP_ERR_NULL_POINTER, "length");
  EXPECT_ERROR(fwp_state_cache_length(st, 3, &length), FWP_ERR_OUT_OF_RANGE, "layer");
  int64_t nw = 0;
  EXPECT_ERROR(fwp_state_size(st, 0, &nw, NULL), FWP_ERR_UNSUPPORTED, "key/value cache");
  float dummy[1] = {0};
  EXPECT_ERROR(fwp_state_get(st, 0, dummy, 1, NULL, 0), FWP_ERR_UNSUPPORTED, "softmax");
  EXPECT_ERROR(fwp_state_set(st, 0, dummy, 1, NULL, 0), FWP_ERR_UNSUPPORTED, "softmax");

  /* Prefill with a forward over T tokens, then one step = the last row of a forward over T + 1. */
  const int64_t T = 5;
  float* x = random_floats((size_t)(BATCH * (T + 1) * D_MODEL), 8);
  float* y_full = (float*)calloc((size_t)(BATCH * (T + 1) * D_MODEL), sizeof(float));
  CHECK_OK(fwp_layer_forward(layer, x, BATCH, T + 1, y_full));
  float* x_prefix = (float*)calloc((size_t)(BATCH * T * D_MODEL), sizeof(float));
  float* x_last = (float*)calloc((size_t)(BATCH * D_MODEL), sizeof(float));
  for (int64_t b = 0; b < BATCH; ++b) {
    memcpy(x_prefix + b * T * D_MODEL, x + b * (T + 1) * D_MODEL, (size_t)(T * D_MODEL) * sizeof(float));
    memcpy(x_last + b * D_MODEL, x + (b * (T + 1) + T) * D_MODEL, (size_t)D_MODEL * sizeof(float));
  }
  float* y_prefix = (float*)calloc((size_t)(BATCH * T * D_MODEL), sizeof(float));
  float* y_last = (float*)calloc((size_t)(BATCH * D_MODEL), sizeof(float));
  CHECK_OK(fwp_layer_forward_with_state(layer, st, x_prefix, BATCH, T, y_prefix));
  CHECK_OK(fwp_state_cache_length(st, 0, &length));
  assert_int_equal(length, T);
  /* A second forward cannot continue a non-empty cache. */
  EXPECT_ERROR(fwp_layer_forward_with_state(layer, st, x_prefix, BATCH, T, y_prefix), FWP_ERR_UNSUPPORTED,
               "key/value cache must be empty");
  CHECK_OK(fwp_layer_step_with_state(layer, st, x_last, BATCH, y_last));
  CHECK_OK(fwp_state_cache_length(st, 0, &length));
  assert_int_equal(length, T + 1);
  for (int64_t b = 0; b < BATCH; ++b) {
    const float d = max_abs_diff(y_last + b * D_MODEL, y_full + (b * (T + 1) + T) * D_MODEL, D_MODEL);
    if (d > 1e-5f) fail_msg("row %d: step after prefill differs from the forward by %g", (int)b, (double)d);
  }

  /* Reorder keeps the cache rows; copy and reset. */
  const int64_t rows[2] = {1, 1};
  CHECK_OK(fwp_state_reorder(st, rows, 2));
  CHECK_OK(fwp_state_cache_length(st, 0, &length));
  assert_int_equal(length, T + 1);
  fwp_state* two = NULL;
  CHECK_OK(fwp_state_create_for_layer(layer, 2, &two));
  CHECK_OK(fwp_state_copy(two, st));
  CHECK_OK(fwp_state_cache_length(two, 0, &length));
  assert_int_equal(length, T + 1);
  /* Both rows now continue sequence 1: equal outputs for equal inputs. */
  float x2[2 * D_MODEL], y2[2 * D_MODEL];
  memcpy(x2, x_last, sizeof(float) * D_MODEL);
  memcpy(x2 + D_MODEL, x_last, sizeof(float) * D_MODEL);
  CHECK_OK(fwp_layer_step_with_state(layer, two, x2, 2, y2));
  assert_floats_equal(y2, y2 + D_MODEL, D_MODEL);
  CHECK_OK(fwp_state_reset(st));
  CHECK_OK(fwp_state_cache_length(st, 0, &length));
  assert_int_equal(length, 0);

  free(x);
  free(y_full);
  free(x_prefix);
  free(x_last);
  free(y_prefix);
  free(y_last);
  fwp_state_destroy(two);
  fwp_state_destroy(st);
  fwp_layer_destroy(layer);
  fwp_context_destroy(ctx);
}

/* ---- destroy in any order ------------------------------------------------------------- */

static void test_destroy_layer_first(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_layer* layer = make_layer(ctx, 0, D_HEAD);
  fwp_optimizer_config ocfg;
  fwp_optimizer_config_init(&ocfg);
  fwp_optimizer* opt = NULL;
  CHECK_OK(fwp_optimizer_create_for_layer(layer, &ocfg, &opt));
  fwp_state* st = NULL;
  CHECK_OK(fwp_state_create_for_layer(layer, BATCH, &st));

  /* Give the optimizer gradients to apply. */
  const int64_t T = 3;
  float* x = random_floats((size_t)(BATCH * T * D_MODEL), 9);
  float* y = (float*)calloc((size_t)(BATCH * T * D_MODEL), sizeof(float));
  CHECK_OK(fwp_layer_forward(layer, x, BATCH, T, y));
  CHECK_OK(fwp_layer_backward(layer, x, BATCH, T, NULL));

  fwp_layer_destroy(layer);
  fwp_context_destroy(ctx);
  /* The optimizer and the state still hold what they need. */
  float norm = 0;
  CHECK_OK(fwp_optimizer_step(opt, &norm));
  assert_true(norm > 0);
  CHECK_OK(fwp_optimizer_zero_grad(opt));
  int64_t nw = 0, nz = 0;
  CHECK_OK(fwp_state_size(st, 0, &nw, &nz));
  float* w = random_floats((size_t)nw, 10);
  CHECK_OK(fwp_state_set(st, 0, w, nw, NULL, 0));
  const int64_t rows[1] = {2};
  CHECK_OK(fwp_state_reorder(st, rows, 1));
  CHECK_OK(fwp_state_reset(st));
  fwp_state_destroy(st);
  fwp_optimizer_destroy(opt);
  free(w);
  free(x);
  free(y);
}

static void test_destroy_model_first(void** unused) {
  (void)unused;
  fwp_context* ctx = make_context();
  fwp_retrieval_config cfg;
  fwp_retrieval_config_init(&cfg);
  cfg.num_keys = 4;
  cfg.d_head = 8;
  fwp_model* model = NULL;
  CHECK_OK(fwp_model_create_retrieval(ctx, &cfg, &model));
  fwp_optimizer_config ocfg;
  fwp_optimizer_config_init(&ocfg);
  fwp_optimizer* opt = NULL;
  CHECK_OK(fwp_optimizer_create_for_model(model, &ocfg, &opt));
  fwp_model_destroy(model);
  fwp_context_destroy(ctx);
  float norm = -1;
  CHECK_OK(fwp_optimizer_step(opt, &norm));
  assert_true(norm == 0); /* no gradients were accumulated */
  float lr = 0;
  CHECK_OK(fwp_optimizer_get_lr(opt, &lr));
  fwp_optimizer_destroy(opt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_create_and_queries),
      cmocka_unit_test(test_model_state_unsupported_for_retrieval),
      cmocka_unit_test(test_get_set_reset),
      cmocka_unit_test(test_copy_and_reorder),
      cmocka_unit_test(test_with_state_equals_own_state),
      cmocka_unit_test(test_softmax_cache),
      cmocka_unit_test(test_destroy_layer_first),
      cmocka_unit_test(test_destroy_model_first),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
