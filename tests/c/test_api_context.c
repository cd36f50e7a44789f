/* C API contract: versions, status strings, thread-local error messages and
 * contexts (lifecycle, bad configs, CUDA without a GPU, logging). */
/* pthread barriers are POSIX.1-2001; ask for them explicitly under strict C99. */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fwp/fwp.h"
#include "api_test_macros.h"

/* Runs `call`, expects `want` and a non-empty last-error message containing `needle`. */
static void test_version_matches_macros(void** state) {
  (void)state;
  int major = -1, minor = -1, patch = -1;
  fwp_version(&major, &minor, &patch);
  assert_int_equal(major, FWP_VERSION_MAJOR);
  assert_int_equal(minor, FWP_VERSION_MINOR);
  assert_int_equal(patch, FWP_VERSION_PATCH);
  assert_int_equal(major * 10000 + minor * 100 + patch, FWP_VERSION);
  fwp_version(NULL, NULL, NULL); /* every output may be NULL */
  fwp_version(&major, NULL, NULL);
  assert_int_equal(major, FWP_VERSION_MAJOR);

  char expected[64];
  snprintf(expected, sizeof expected, "%d.%d.%d", FWP_VERSION_MAJOR, FWP_VERSION_MINOR, FWP_VERSION_PATCH);
  assert_non_null(fwp_version_string());
  assert_string_equal(fwp_version_string(), expected);
}

static void test_status_strings(void** state) {
  (void)state;
  for (int s = FWP_OK; s <= FWP_ERR_DISTRIBUTED; ++s) {
    const char* text = fwp_status_string((fwp_status)s);
    assert_non_null(text);
    assert_true(strlen(text) > 0);
    assert_string_not_equal(text, "unknown status");
    for (int t = FWP_OK; t < s; ++t) assert_string_not_equal(text, fwp_status_string((fwp_status)t));
  }
  assert_string_equal(fwp_status_string((fwp_status)-1), "unknown status");
  assert_string_equal(fwp_status_string((fwp_status)1000), "unknown status");
}

static void test_last_error_lifecycle(void** state) {
  (void)state;
  fwp_clear_error();
  assert_non_null(fwp_last_error_message());
  assert_string_equal(fwp_last_error_message(), "");

  EXPECT_ERROR(fwp_context_get_device(NULL, NULL), FWP_ERR_NULL_POINTER, "ctx");
  /* The message names the function as well. */
  assert_non_null(strstr(fwp_last_error_message(), "fwp_context_get_device"));

  /* Successful calls do not clear it. */
  fwp_context* ctx = NULL;
  assert_int_equal(fwp_context_create(NULL, &ctx), FWP_OK);
  assert_non_null(strstr(fwp_last_error_message(), "ctx"));
  fwp_context_destroy(ctx);

  fwp_clear_error();
  assert_string_equal(fwp_last_error_message(), "");
}

static void test_context_defaults(void** state) {
  (void)state;
  fwp_context_config cfg;
  memset(&cfg, 0xAB, sizeof cfg);
  fwp_context_config_init(&cfg);
  assert_int_equal(cfg.struct_size, sizeof(fwp_context_config));
  assert_int_equal(cfg.device, FWP_DEVICE_CPU);
  assert_int_equal(cfg.device_index, 0);
  assert_int_equal(cfg.num_threads, 0);
  assert_true(cfg.seed == 42);
  assert_null(cfg.log_callback);
  assert_null(cfg.log_user_data);
  assert_int_equal(cfg.log_level, FWP_LOG_WARN);
  fwp_context_config_init(NULL); /* ignored */

  fwp_context* ctx = NULL;
  assert_int_equal(fwp_context_create(&cfg, &ctx), FWP_OK);
  assert_non_null(ctx);
  fwp_device device = FWP_DEVICE_CUDA;
  assert_int_equal(fwp_context_get_device(ctx, &device), FWP_OK);
  assert_int_equal(device, FWP_DEVICE_CPU);
  int32_t threads = 0;
  assert_int_equal(fwp_context_get_num_threads(ctx, &threads), FWP_OK);
  assert_true(threads >= 1);
  fwp_context_destroy(ctx);

  cfg.num_threads = 3;
  assert_int_equal(fwp_context_create(&cfg, &ctx), FWP_OK);
  assert_int_equal(fwp_context_get_num_threads(ctx, &threads), FWP_OK);
  assert_int_equal(threads, 3);
  EXPECT_ERROR(fwp_context_get_num_threads(ctx, NULL), FWP_ERR_NULL_POINTER, "num_threads");
  EXPECT_ERROR(fwp_context_get_device(ctx, NULL), FWP_ERR_NULL_POINTER, "device");
  EXPECT_ERROR(fwp_context_get_num_threads(NULL, &threads), FWP_ERR_NULL_POINTER, "ctx");
  fwp_context_destroy(ctx);

  /* NULL config means the defaults. */
  assert_int_equal(fwp_context_create(NULL, &ctx), FWP_OK);
  assert_int_equal(fwp_context_get_device(ctx, &device), FWP_OK);
  assert_int_equal(device, FWP_DEVICE_CPU);
  fwp_context_destroy(ctx);
}

static void test_context_bad_configs(void** state) {
  (void)state;
  fwp_context_config cfg;
  fwp_context* ctx = (fwp_context*)&cfg; /* any non-NULL value: must be reset to NULL */

  EXPECT_ERROR(fwp_context_create(NULL, NULL), FWP_ERR_NULL_POINTER, "out");

  fwp_context_config_init(&cfg);
  cfg.struct_size = 0;
  EXPECT_ERROR(fwp_context_create(&cfg, &ctx), FWP_ERR_INVALID_ARGUMENT, "struct_size");
  assert_null(ctx);

  fwp_context_config_init(&cfg);
  cfg.device = (fwp_device)7;
  EXPECT_ERROR(fwp_context_create(&cfg, &ctx), FWP_ERR_OUT_OF_RANGE, "device");
  assert_null(ctx);

  fwp_context_config_init(&cfg);
  cfg.num_threads = -2;
  EXPECT_ERROR(fwp_context_create(&cfg, &ctx), FWP_ERR_INVALID_ARGUMENT, "num_threads");

  fwp_context_config_init(&cfg);
  cfg.log_level = (fwp_log_level)9;
  EXPECT_ERROR(fwp_context_create(&cfg, &ctx), FWP_ERR_OUT_OF_RANGE, "log_level");

  fwp_context_config_init(&cfg);
  cfg.device_index = -1;
  EXPECT_ERROR(fwp_context_create(&cfg, &ctx), FWP_ERR_OUT_OF_RANGE, "device_index");
  assert_null(ctx);
}

static void test_cuda_without_gpu(void** state) {
  (void)state;
  int32_t count = -1;
  assert_int_equal(fwp_cuda_device_count(&count), FWP_OK);
  assert_true(count >= 0);
  if (!fwp_cuda_is_built()) assert_int_equal(count, 0);
  EXPECT_ERROR(fwp_cuda_device_count(NULL), FWP_ERR_NULL_POINTER, "count");

  fwp_context_config cfg;
  fwp_context_config_init(&cfg);
  cfg.device = FWP_DEVICE_CUDA;
  fwp_context* ctx = NULL;
  fwp_clear_error();
  const fwp_status s = fwp_context_create(&cfg, &ctx);
  if (count > 0) {
    /* A machine with a GPU: the context must work. */
    assert_int_equal(s, FWP_OK);
    fwp_device device;
    assert_int_equal(fwp_context_get_device(ctx, &device), FWP_OK);
    assert_int_equal(device, FWP_DEVICE_CUDA);
    fwp_context_destroy(ctx);
    return;
  }
  assert_true(s == (fwp_cuda_is_built() ? FWP_ERR_DEVICE : FWP_ERR_UNSUPPORTED));
  assert_null(ctx);
  assert_true(strlen(fwp_last_error_message()) > 0);
  assert_non_null(strstr(fwp_last_error_message(), "CUDA"));
}

static void test_context_cycles(void** state) {
  (void)state;
  fwp_context_destroy(NULL);
  for (int i = 0; i < 500; ++i) {
    fwp_context* ctx = NULL;
    assert_int_equal(fwp_context_create(NULL, &ctx), FWP_OK);
    fwp_context_destroy(ctx);
  }
}

/* ---- logging ------------------------------------------------------------------------ */

typedef struct {
  int calls;
  int below_threshold;
  fwp_log_level threshold;
} log_record;

static void record_log(fwp_log_level level, const char* message, void* user_data) {
  log_record* r = (log_record*)user_data;
  assert_non_null(message);
  r->calls++;
  if (level < r->threshold) r->below_threshold++;
}

static void test_log_level_is_respected(void** state) {
  (void)state;
  fwp_context_config cfg;
  fwp_context* ctx = NULL;

  /* Creating a context logs a debug message: seen at DEBUG ... */
  log_record debug_rec = {0, 0, FWP_LOG_DEBUG};
  fwp_context_config_init(&cfg);
  cfg.log_callback = record_log;
  cfg.log_user_data = &debug_rec;
  cfg.log_level = FWP_LOG_DEBUG;
  assert_int_equal(fwp_context_create(&cfg, &ctx), FWP_OK);
  fwp_context_destroy(ctx);
  assert_true(debug_rec.calls >= 1);

  /* ... and dropped at WARN and OFF. */
  log_record warn_rec = {0, 0, FWP_LOG_WARN};
  cfg.log_user_data = &warn_rec;
  cfg.log_level = FWP_LOG_WARN;
  assert_int_equal(fwp_context_create(&cfg, &ctx), FWP_OK);
  fwp_context_destroy(ctx);
  assert_int_equal(warn_rec.below_threshold, 0);
  assert_int_equal(warn_rec.calls, 0);

  log_record off_rec = {0, 0, FWP_LOG_OFF};
  cfg.log_user_data = &off_rec;
  cfg.log_level = FWP_LOG_OFF;
  assert_int_equal(fwp_context_create(&cfg, &ctx), FWP_OK);
  fwp_context_destroy(ctx);
  assert_int_equal(off_rec.calls, 0);
}

/* ---- thread-local messages ------------------------------------------------------------ */

static pthread_barrier_t g_barrier;

typedef struct {
  int which;
  int ok;
  char message[256];
} thread_result;

static void* fail_in_thread(void* arg) {
  thread_result* r = (thread_result*)arg;
  fwp_status s;
  if (r->which == 0) {
    s = fwp_context_get_device(NULL, NULL); /* names "ctx" */
  } else {
    s = fwp_cuda_device_count(NULL); /* names "count" */
  }
  /* Both threads have failed before either reads its message. */
  pthread_barrier_wait(&g_barrier);
  snprintf(r->message, sizeof r->message, "%s", fwp_last_error_message());
  r->ok = s == FWP_ERR_NULL_POINTER;
  pthread_barrier_wait(&g_barrier);
  return NULL;
}

static void test_thread_local_messages(void** state) {
  (void)state;
  fwp_clear_error();
  EXPECT_ERROR(fwp_layer_create(NULL, NULL, NULL), FWP_ERR_NULL_POINTER, "out");
  char main_message[256];
  snprintf(main_message, sizeof main_message, "%s", fwp_last_error_message());

  assert_int_equal(pthread_barrier_init(&g_barrier, NULL, 2), 0);
  thread_result r0 = {0, 0, ""}, r1 = {1, 0, ""};
  pthread_t t0, t1;
  assert_int_equal(pthread_create(&t0, NULL, fail_in_thread, &r0), 0);
  assert_int_equal(pthread_create(&t1, NULL, fail_in_thread, &r1), 0);
  pthread_join(t0, NULL);
  pthread_join(t1, NULL);
  pthread_barrier_destroy(&g_barrier);

  assert_true(r0.ok);
  assert_true(r1.ok);
  assert_non_null(strstr(r0.message, "fwp_context_get_device"));
  assert_null(strstr(r0.message, "fwp_cuda_device_count"));
  assert_non_null(strstr(r1.message, "fwp_cuda_device_count"));
  assert_null(strstr(r1.message, "fwp_context_get_device"));
  /* This thread's message is its own. */
  assert_string_equal(fwp_last_error_message(), main_message);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_version_matches_macros),
      cmocka_unit_test(test_status_strings),
      cmocka_unit_test(test_last_error_lifecycle),
      cmocka_unit_test(test_context_defaults),
      cmocka_unit_test(test_context_bad_configs),
      cmocka_unit_test(test_cuda_without_gpu),
      cmocka_unit_test(test_context_cycles),
      cmocka_unit_test(test_log_level_is_respected),
      cmocka_unit_test(test_thread_local_messages),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
