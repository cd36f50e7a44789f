/* C API contract of run states in checkpoints (fwp_checkpoint_save_with_state /
 * fwp_checkpoint_load_with_state): a carried fast-weight state and a softmax
 * key/value cache come back bit for bit with their positions, so training with
 * memory carried across segments resumes exactly and the next step's output is
 * identical; a file without a state, a state of another model or context, and
 * a failed load leave the state unchanged. */
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

#define VOCAB 13
#define B 2
#define T 5

static fwp_context* make_context(uint64_t seed) {
  fwp_context_config cfg;
  fwp_context_config_init(&cfg);
  cfg.num_threads = 1;
  cfg.seed = seed;
  fwp_context* ctx = NULL;
  CHECK_OK(fwp_context_create(&cfg, &ctx));
  return ctx;
}

static fwp_model* make_lm(fwp_context* ctx, fwp_feature_map map, int64_t layers) {
  fwp_lm_config c;
  fwp_lm_config_init(&c);
  c.vocab_size = VOCAB;
  c.num_layers = layers;
  c.attention.d_model = 8;
  c.attention.num_heads = 2;
  c.attention.d_head = 4;
  c.attention.feature_map = map;
  c.attention.update_rule = map == FWP_FEATURE_MAP_SOFTMAX ? FWP_UPDATE_SUM : FWP_UPDATE_DELTA;
  if (map == FWP_FEATURE_MAP_SOFTMAX) c.attention.sum_normalize = 0;
  c.d_ff = 16;
  c.dropout = 0.0f;
  c.seed = 9;
  fwp_model* m = NULL;
  CHECK_OK(fwp_lm_create(ctx, &c, &m));
  return m;
}

static void tokens(int32_t* in, int32_t* tg, int shift) {
  for (int i = 0; i < B * T; ++i) {
    in[i] = (3 * i + shift) % VOCAB;
    tg[i] = (5 * i + 2 * shift + 1) % VOCAB;
  }
}

/* The bytes of every layer's W and z. */
static float* state_bytes(const fwp_state* s, int64_t* total) {
  int64_t layers = 0, w = 0, z = 0, off = 0;
  CHECK_OK(fwp_state_num_layers(s, &layers));
  *total = 0;
  for (int64_t l = 0; l < layers; ++l) {
    CHECK_OK(fwp_state_size(s, l, &w, &z));
    *total += w + z;
  }
  float* out = malloc((size_t)*total * sizeof(float));
  for (int64_t l = 0; l < layers; ++l) {
    CHECK_OK(fwp_state_size(s, l, &w, &z));
    CHECK_OK(fwp_state_get(s, l, out + off, w, out + off + w, z));
    off += w + z;
  }
  return out;
}

static void temp_path(char* dir, char* path, size_t n, const char* name) {
  assert_non_null(mkdtemp(dir));
  snprintf(path, n, "%s/%s", dir, name);
}

static void test_carried_training_resumes_exactly(void** unused) {
  (void)unused;
  char dir[] = "/tmp/fwp_c_state_XXXXXX", path[256];
  temp_path(dir, path, sizeof path, "run.ckpt");
  int32_t in[B * T], tg[B * T];
  double loss_a = 0, loss_b = 0;

  /* Run A: three carried segments; saved after the second. */
  fwp_context* ctx = make_context(4);
  fwp_model* m = make_lm(ctx, FWP_FEATURE_MAP_DPFP, 2);
  fwp_optimizer_config oc;
  fwp_optimizer_config_init(&oc);
  oc.kind = FWP_OPTIMIZER_ADAM;
  oc.learning_rate = 0.01f;
  fwp_optimizer* opt = NULL;
  CHECK_OK(fwp_optimizer_create_for_model(m, &oc, &opt));
  fwp_state* st = NULL;
  CHECK_OK(fwp_state_create(m, B, &st));
  for (int seg = 0; seg < 2; ++seg) {
    tokens(in, tg, seg);
    CHECK_OK(fwp_model_zero_grad(m));
    CHECK_OK(fwp_lm_forward(m, in, tg, B, T, st, &loss_a, NULL));
    CHECK_OK(fwp_model_backward(m));
    CHECK_OK(fwp_optimizer_step(opt, NULL));
  }
  CHECK_OK(fwp_checkpoint_save_with_state(path, m, opt, NULL, st, "carried"));
  int64_t n_saved = 0;
  float* saved = state_bytes(st, &n_saved);
  tokens(in, tg, 2);
  CHECK_OK(fwp_lm_forward(m, in, tg, B, T, st, &loss_a, NULL));

  /* Run B: a fresh process's objects loaded from the file continue identically. */
  fwp_context* ctx2 = make_context(4);
  fwp_model* m2 = make_lm(ctx2, FWP_FEATURE_MAP_DPFP, 2);
  fwp_optimizer* opt2 = NULL;
  CHECK_OK(fwp_optimizer_create_for_model(m2, &oc, &opt2));
  fwp_state* st2 = NULL;
  CHECK_OK(fwp_state_create(m2, 1, &st2)); /* another batch: the file's replaces it */
  CHECK_OK(fwp_checkpoint_load_with_state(path, m2, opt2, NULL, st2));
  int64_t batch = 0, n_loaded = 0;
  CHECK_OK(fwp_state_batch(st2, &batch));
  assert_int_equal(batch, B);
  float* loaded = state_bytes(st2, &n_loaded);
  assert_int_equal(n_saved, n_loaded);
  assert_memory_equal(saved, loaded, (size_t)n_saved * sizeof(float));
  CHECK_OK(fwp_lm_forward(m2, in, tg, B, T, st2, &loss_b, NULL));
  assert_true(loss_a == loss_b); /* positions and memory both restored */

  /* A plain load of the same file ignores the stored state. */
  CHECK_OK(fwp_checkpoint_load(path, m2, opt2, NULL));

  /* Errors leave the state as it was. */
  char plain[300];
  snprintf(plain, sizeof plain, "%s/plain.ckpt", dir);
  CHECK_OK(fwp_checkpoint_save(plain, m2, NULL, NULL, NULL));
  float* before = state_bytes(st2, &n_loaded);
  EXPECT_ERROR(fwp_checkpoint_load_with_state(plain, m2, NULL, NULL, st2), FWP_ERR_FORMAT, "no run state");
  fwp_model* other = make_lm(ctx2, FWP_FEATURE_MAP_ELU, 1);
  fwp_state* other_state = NULL;
  CHECK_OK(fwp_state_create(other, B, &other_state));
  EXPECT_ERROR(fwp_checkpoint_load_with_state(path, m2, NULL, NULL, other_state), FWP_ERR_SHAPE_MISMATCH,
               "not made for this model");
  EXPECT_ERROR(fwp_checkpoint_save_with_state(plain, m2, NULL, NULL, other_state, NULL), FWP_ERR_SHAPE_MISMATCH,
               "not made for this model");
  EXPECT_ERROR(fwp_checkpoint_load_with_state(path, m2, NULL, NULL, st), FWP_ERR_CONTEXT_MISMATCH, "context");
  EXPECT_ERROR(fwp_checkpoint_load_with_state(NULL, m2, NULL, NULL, st2), FWP_ERR_NULL_POINTER, "path");
  float* after = state_bytes(st2, &n_loaded);
  assert_memory_equal(before, after, (size_t)n_loaded * sizeof(float));

  free(saved);
  free(loaded);
  free(before);
  free(after);
  fwp_state_destroy(other_state);
  fwp_model_destroy(other);
  fwp_state_destroy(st2);
  fwp_optimizer_destroy(opt2);
  fwp_model_destroy(m2);
  fwp_context_destroy(ctx2);
  fwp_state_destroy(st);
  fwp_optimizer_destroy(opt);
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
  unlink(plain);
  unlink(path);
  rmdir(dir);
}

/* A softmax model's key/value cache mid-generation: the next step's log-probabilities match. */
static void test_key_value_cache_round_trip(void** unused) {
  (void)unused;
  char dir[] = "/tmp/fwp_c_state_XXXXXX", path[256];
  temp_path(dir, path, sizeof path, "cache.ckpt");
  fwp_context* ctx = make_context(6);
  fwp_model* m = make_lm(ctx, FWP_FEATURE_MAP_SOFTMAX, 2);
  fwp_state* st = NULL;
  CHECK_OK(fwp_state_create(m, B, &st));
  float lp[B * VOCAB], lp2[B * VOCAB];
  int32_t tok[B] = {1, 4};
  for (int i = 0; i < 7; ++i) {
    CHECK_OK(fwp_lm_step(m, st, tok, lp));
    tok[0] = (tok[0] + 3) % VOCAB;
    tok[1] = (tok[1] + 5) % VOCAB;
  }
  CHECK_OK(fwp_checkpoint_save_with_state(path, m, NULL, NULL, st, NULL));
  fwp_model* m2 = NULL;
  CHECK_OK(fwp_model_load(ctx, path, &m2));
  fwp_state* st2 = NULL;
  CHECK_OK(fwp_state_create(m2, 1, &st2));
  CHECK_OK(fwp_checkpoint_load_with_state(path, m2, NULL, NULL, st2));
  int64_t length = 0;
  CHECK_OK(fwp_state_cache_length(st2, 0, &length));
  assert_int_equal(length, 7);
  CHECK_OK(fwp_lm_step(m, st, tok, lp));
  CHECK_OK(fwp_lm_step(m2, st2, tok, lp2));
  assert_memory_equal(lp, lp2, sizeof lp);

  /* An empty state is stored as empty and loads as empty. */
  CHECK_OK(fwp_state_reset(st));
  CHECK_OK(fwp_checkpoint_save_with_state(path, m, NULL, NULL, st, NULL));
  CHECK_OK(fwp_checkpoint_load_with_state(path, m2, NULL, NULL, st2));
  CHECK_OK(fwp_state_cache_length(st2, 1, &length));
  assert_int_equal(length, 0);

  fwp_state_destroy(st2);
  fwp_model_destroy(m2);
  fwp_state_destroy(st);
  fwp_model_destroy(m);
  fwp_context_destroy(ctx);
  unlink(path);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_carried_training_resumes_exactly),
      cmocka_unit_test(test_key_value_cache_round_trip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
