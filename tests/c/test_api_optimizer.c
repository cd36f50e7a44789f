/* C API contract of the optimizer's learning-rate schedules (fields appended
 * to fwp_optimizer_config in 0.2.0): defaults, every bad field named in the
 * message, the learning rate along each schedule against closed-form doubles,
 * what fwp_optimizer_set_lr means with a schedule, and callers built against
 * the 0.1.0 header (a smaller struct) getting the constant schedule. */
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

/* fwp_optimizer_config exactly as fwp.h 0.1.0 declared it. */
typedef struct optimizer_config_0_1_0 {
  uint32_t struct_size;
  fwp_optimizer_kind kind;
  float learning_rate;
  float beta1;
  float beta2;
  float eps;
  float weight_decay;
  float momentum;
  float clip_grad_norm;
} optimizer_config_0_1_0;

static const double kPi = 3.14159265358979323846;

typedef struct {
  fwp_context* ctx;
  fwp_layer* layer;
} fixture;

static int setup(void** state) {
  fixture* f = (fixture*)calloc(1, sizeof(fixture));
  fwp_context_config cc;
  fwp_context_config_init(&cc);
  cc.num_threads = 1;
  cc.seed = 11;
  if (fwp_context_create(&cc, &f->ctx) != FWP_OK) return -1;
  fwp_layer_config lc;
  fwp_layer_config_init(&lc);
  lc.d_model = 8;
  lc.num_heads = 2;
  lc.d_head = 4;
  if (fwp_layer_create(f->ctx, &lc, &f->layer) != FWP_OK) return -1;
  *state = f;
  return 0;
}

static int teardown(void** state) {
  fixture* f = (fixture*)*state;
  fwp_layer_destroy(f->layer);
  fwp_context_destroy(f->ctx);
  free(f);
  return 0;
}

static float next_lr(const fwp_optimizer* opt) {
  float lr = -1.0f;
  CHECK_OK(fwp_optimizer_get_lr(opt, &lr));
  return lr;
}

/* Steps with the layer's (zero) gradients: only the step count matters here. */
static void take_steps(fwp_optimizer* opt, int n) {
  for (int i = 0; i < n; ++i) CHECK_OK(fwp_optimizer_step(opt, NULL));
}

static void test_schedule_defaults(void** state) {
  (void)state;
  fwp_optimizer_config cfg;
  fwp_optimizer_config_init(&cfg);
  assert_int_equal(cfg.struct_size, sizeof cfg);
  assert_int_equal(cfg.lr_schedule, FWP_LR_CONSTANT);
  assert_int_equal(cfg.warmup_steps, 0);
  assert_int_equal(cfg.total_steps, 0);
  assert_true(cfg.min_learning_rate == 0.0f);
  assert_true(sizeof(optimizer_config_0_1_0) < sizeof(fwp_optimizer_config));
}

static void test_bad_schedule_fields_are_named(void** state) {
  fixture* f = (fixture*)*state;
#define BAD(edit, st, text)                                                     \
  do {                                                                          \
    fwp_optimizer_config c;                                                     \
    fwp_optimizer_config_init(&c);                                              \
    edit;                                                                       \
    fwp_optimizer* o = (fwp_optimizer*)0x1;                                     \
    EXPECT_ERROR(fwp_optimizer_create_for_layer(f->layer, &c, &o), st, text);   \
    assert_null(o);                                                             \
  } while (0)
  BAD(c.lr_schedule = (fwp_lr_schedule)3, FWP_ERR_OUT_OF_RANGE, "config->lr_schedule");
  BAD(c.lr_schedule = (fwp_lr_schedule)-1, FWP_ERR_OUT_OF_RANGE, "config->lr_schedule");
  BAD(c.warmup_steps = -1, FWP_ERR_INVALID_ARGUMENT, "config->warmup_steps");
  BAD(c.warmup_steps = INT64_MAX, FWP_ERR_INVALID_ARGUMENT, "config->warmup_steps");
  BAD(c.total_steps = 10, FWP_ERR_INVALID_ARGUMENT, "config->total_steps");  /* constant: unused */
  BAD(c.min_learning_rate = 1e-5f, FWP_ERR_INVALID_ARGUMENT, "config->min_learning_rate");
  BAD((c.lr_schedule = FWP_LR_WARMUP_COSINE, c.warmup_steps = 10, c.total_steps = 10), FWP_ERR_INVALID_ARGUMENT,
      "config->total_steps");
  BAD((c.lr_schedule = FWP_LR_WARMUP_COSINE, c.total_steps = -5), FWP_ERR_INVALID_ARGUMENT, "config->total_steps");
  BAD((c.lr_schedule = FWP_LR_WARMUP_COSINE, c.total_steps = 100, c.min_learning_rate = NAN),
      FWP_ERR_INVALID_ARGUMENT, "config->min_learning_rate");
  BAD((c.lr_schedule = FWP_LR_WARMUP_COSINE, c.total_steps = 100, c.min_learning_rate = -1e-4f),
      FWP_ERR_INVALID_ARGUMENT, "config->min_learning_rate");
  BAD((c.lr_schedule = FWP_LR_WARMUP_COSINE, c.total_steps = 100, c.min_learning_rate = 2e-3f),
      FWP_ERR_INVALID_ARGUMENT, "config->min_learning_rate"); /* above learning_rate (1e-3) */
  BAD((c.lr_schedule = FWP_LR_INVERSE_SQRT, c.warmup_steps = 0), FWP_ERR_INVALID_ARGUMENT, "config->warmup_steps");
  BAD((c.lr_schedule = FWP_LR_INVERSE_SQRT, c.warmup_steps = 8, c.total_steps = 80), FWP_ERR_INVALID_ARGUMENT,
      "config->total_steps");
#undef BAD
}

static void test_warmup_cosine_values(void** state) {
  fixture* f = (fixture*)*state;
  const double base = 0.1, floor_lr = 0.01;
  const int64_t warmup = 4, total = 12;
  fwp_optimizer_config cfg;
  fwp_optimizer_config_init(&cfg);
  cfg.learning_rate = (float)base;
  cfg.lr_schedule = FWP_LR_WARMUP_COSINE;
  cfg.warmup_steps = warmup;
  cfg.total_steps = total;
  cfg.min_learning_rate = (float)floor_lr;
  fwp_optimizer* opt = NULL;
  CHECK_OK(fwp_optimizer_create_for_layer(f->layer, &cfg, &opt));
  /* float inputs as the library sees them */
  const double b = (double)(float)base, lo = (double)(float)floor_lr;
  for (int64_t n = 0; n <= total + 3; ++n) {
    double want;
    if (n < warmup) {
      want = b * (double)n / (double)warmup;
    } else if (n < total) {
      const double progress = (double)(n - warmup) / (double)(total - warmup);
      want = lo + (b - lo) * 0.5 * (1.0 + cos(kPi * progress));
    } else {
      want = lo;
    }
    const float got = next_lr(opt);
    if (fabs((double)got - want) > 1e-7 * fmax(1.0, want)) fail_msg("after %d steps: lr %.9g, want %.9g", (int)n, got, want);
    int64_t steps = -1;
    CHECK_OK(fwp_optimizer_get_step(opt, &steps));
    assert_int_equal(steps, n);
    take_steps(opt, 1);
  }
  assert_true(next_lr(opt) == (float)floor_lr);

  /* set_lr sets the peak: the floor still ends the decay; below the floor is refused. */
  EXPECT_ERROR(fwp_optimizer_set_lr(opt, 0.001f), FWP_ERR_INVALID_ARGUMENT, "min_learning_rate");
  assert_true(next_lr(opt) == (float)floor_lr);
  CHECK_OK(fwp_optimizer_set_lr(opt, 0.5f));
  assert_true(next_lr(opt) == (float)floor_lr);
  fwp_optimizer_destroy(opt);

  /* During the warm-up set_lr rescales the ramp. */
  CHECK_OK(fwp_optimizer_create_for_layer(f->layer, &cfg, &opt));
  take_steps(opt, 2);
  CHECK_OK(fwp_optimizer_set_lr(opt, 0.4f));
  assert_true(fabs(next_lr(opt) - 0.4 * 2.0 / 4.0) < 1e-7);
  fwp_optimizer_destroy(opt);
}

static void test_inverse_sqrt_and_constant_warmup(void** state) {
  fixture* f = (fixture*)*state;
  fwp_optimizer_config cfg;
  fwp_optimizer_config_init(&cfg);
  cfg.learning_rate = 0.5f;
  cfg.lr_schedule = FWP_LR_INVERSE_SQRT;
  cfg.warmup_steps = 3;
  cfg.min_learning_rate = 0.2f;
  fwp_optimizer* opt = NULL;
  CHECK_OK(fwp_optimizer_create_for_layer(f->layer, &cfg, &opt));
  const double b = 0.5, lo = (double)0.2f;
  for (int64_t n = 0; n < 20; ++n) {
    const double want = n < 3 ? b * (double)n / 3.0 : fmax(lo, b * sqrt(3.0 / (double)n));
    const float got = next_lr(opt);
    if (fabs((double)got - want) > 1e-7) fail_msg("inverse_sqrt after %d steps: lr %.9g, want %.9g", (int)n, got, want);
    take_steps(opt, 1);
  }
  fwp_optimizer_destroy(opt);

  fwp_optimizer_config_init(&cfg);
  cfg.learning_rate = 0.3f;
  cfg.warmup_steps = 2;
  CHECK_OK(fwp_optimizer_create_for_layer(f->layer, &cfg, &opt));
  assert_true(next_lr(opt) == 0.0f);
  take_steps(opt, 1);
  assert_true(fabs(next_lr(opt) - 0.15) < 1e-7);
  take_steps(opt, 1);
  assert_true(next_lr(opt) == 0.3f);
  take_steps(opt, 5);
  assert_true(next_lr(opt) == 0.3f);
  fwp_optimizer_destroy(opt);
}

static void test_a_0_1_0_caller_gets_the_constant_schedule(void** state) {
  fixture* f = (fixture*)*state;
  /* Exactly the caller's bytes, as a program built against 0.1.0 would allocate them. */
  optimizer_config_0_1_0* old = (optimizer_config_0_1_0*)malloc(sizeof(optimizer_config_0_1_0));
  old->struct_size = (uint32_t)sizeof(optimizer_config_0_1_0);
  old->kind = FWP_OPTIMIZER_SGD;
  old->learning_rate = 0.25f;
  old->beta1 = 0.9f;
  old->beta2 = 0.999f;
  old->eps = 1e-8f;
  old->weight_decay = 0.0f;
  old->momentum = 0.5f;
  old->clip_grad_norm = 1.0f;
  fwp_optimizer* opt = NULL;
  CHECK_OK(fwp_optimizer_create_for_layer(f->layer, (const fwp_optimizer_config*)old, &opt));
  for (int n = 0; n < 5; ++n) {
    assert_true(next_lr(opt) == 0.25f);
    take_steps(opt, 1);
  }
  CHECK_OK(fwp_optimizer_set_lr(opt, 0.125f));
  assert_true(next_lr(opt) == 0.125f);
  fwp_optimizer_destroy(opt);

  /* The old struct's fields are still validated, and by their names. */
  old->momentum = 1.5f;
  EXPECT_ERROR(fwp_optimizer_create_for_layer(f->layer, (const fwp_optimizer_config*)old, &opt),
               FWP_ERR_INVALID_ARGUMENT, "config->momentum");
  /* A size below the first release is an uninitialised struct. */
  old->momentum = 0.5f;
  old->struct_size = (uint32_t)sizeof(optimizer_config_0_1_0) - 4;
  EXPECT_ERROR(fwp_optimizer_create_for_layer(f->layer, (const fwp_optimizer_config*)old, &opt),
               FWP_ERR_INVALID_ARGUMENT, "struct_size");
  free(old);

  /* A struct larger than this library's (a newer header) is refused. */
  unsigned char* newer = (unsigned char*)calloc(1, sizeof(fwp_optimizer_config) + 8);
  fwp_optimizer_config cfg;
  fwp_optimizer_config_init(&cfg);
  cfg.struct_size = (uint32_t)sizeof(fwp_optimizer_config) + 8;
  memcpy(newer, &cfg, sizeof cfg);
  EXPECT_ERROR(fwp_optimizer_create_for_layer(f->layer, (const fwp_optimizer_config*)newer, &opt),
               FWP_ERR_INVALID_ARGUMENT, "newer");
  free(newer);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_schedule_defaults),
      cmocka_unit_test_setup_teardown(test_bad_schedule_fields_are_named, setup, teardown),
      cmocka_unit_test_setup_teardown(test_warmup_cosine_values, setup, teardown),
      cmocka_unit_test_setup_teardown(test_inverse_sqrt_and_constant_warmup, setup, teardown),
      cmocka_unit_test_setup_teardown(test_a_0_1_0_caller_gets_the_constant_schedule, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
