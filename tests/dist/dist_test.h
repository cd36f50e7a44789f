/* Helpers the data-parallel tests share (tests/dist): checks that end the whole
   group on failure (so that no rank waits in a collective for a partner that
   gave up), a small token file, a tiny language model, and parameter and
   gradient snapshots. Each test program includes it once. */
#ifndef FWP_TESTS_DIST_TEST_H
#define FWP_TESTS_DIST_TEST_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fwp/fwp.h"

/* The group to end when a check fails (NULL: just exit), and this process's rank for messages. */
static fwp_dist* g_dist = NULL;
static int g_rank = -1;
static int g_world = 0;

static inline void dist_fail(const char* file, int line, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "rank %d: %s:%d: FAILED: ", g_rank, file, line);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  fflush(stderr);
  fflush(stdout);
  /* MPI_Abort ends every rank; without a group (or with the callback engine) exit ourselves. */
  if (g_dist != NULL) fwp_dist_abort(g_dist, 1);
  exit(1);
}

#define FAIL(...) dist_fail(__FILE__, __LINE__, __VA_ARGS__)
#define REQUIRE(cond, ...)          \
  do {                              \
    if (!(cond)) FAIL(__VA_ARGS__); \
  } while (0)

#define CHECK_OK(call)                                                                                  \
  do {                                                                                                  \
    const fwp_status s_ = (call);                                                                       \
    if (s_ != FWP_OK) FAIL("%s returned %s: %s", #call, fwp_status_string(s_), fwp_last_error_message()); \
  } while (0)

/* A call fails with `want` and a message that mentions `needle`. */
#define EXPECT_STATUS(call, want, needle)                                                                      \
  do {                                                                                                         \
    fwp_clear_error();                                                                                         \
    const fwp_status s_ = (call);                                                                              \
    const char* m_ = fwp_last_error_message();                                                                 \
    if (s_ != (want))                                                                                          \
      FAIL("%s returned %s (%s), expected %s", #call, fwp_status_string(s_), m_ ? m_ : "", fwp_status_string(want)); \
    if (m_ == NULL || strstr(m_, (needle)) == NULL)                                                            \
      FAIL("%s: message '%s' does not mention '%s'", #call, m_ ? m_ : "(null)", (needle));                     \
  } while (0)

static inline double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static inline fwp_context* make_context(uint64_t seed) {
  fwp_context_config cfg;
  fwp_context_config_init(&cfg);
  cfg.num_threads = 1; /* two ranks share two cores */
  cfg.seed = seed;
  fwp_context* ctx = NULL;
  CHECK_OK(fwp_context_create(&cfg, &ctx));
  return ctx;
}

/* Joins the MPI group of a test run with mpirun -np 2: sets g_dist, g_rank and g_world. */
static inline fwp_dist* join_two_ranks(fwp_context* ctx, const fwp_dist_config* cfg) {
  fwp_dist* dist = NULL;
  CHECK_OK(fwp_dist_create(ctx, cfg, &dist));
  g_dist = dist;
  int32_t rank = -1, world = 0;
  CHECK_OK(fwp_dist_get_rank(dist, &rank, &world));
  g_rank = rank;
  g_world = world;
  REQUIRE(world == 2, "run with mpirun -np 2 (world size %d)", world);
  return dist;
}

/* A token data source of batch x length over the file at `path`, giving shard `shard` of `shards`
   (1: whole batches). */
static inline fwp_data* open_token_data(const char* path, int64_t batch, int64_t length, int64_t shard,
                                        int64_t shards) {
  fwp_token_data_config dc;
  fwp_token_data_config_init(&dc);
  dc.batch_size = batch;
  dc.segment_length = length;
  fwp_data* d = NULL;
  CHECK_OK(fwp_token_data_create(path, &dc, &d));
  if (shards > 1) CHECK_OK(fwp_data_set_shard(d, shard, shards));
  return d;
}

/* Writes `dir`/`name`.txt (200 lines of words w0..w9 from a fixed LCG, the same on every call) and encodes
   it with a word tokenizer into `dir`/`name`.tok; returns that path in `path` (size >= 512). The vocabulary
   is the 10 words, <eos> and <unk>: 12 ids. */
static inline void write_token_file(const char* dir, const char* name, char* path, size_t size) {
  char text[512];
  snprintf(text, sizeof text, "%s/%s.txt", dir, name);
  snprintf(path, size, "%s/%s.tok", dir, name);
  FILE* f = fopen(text, "w");
  REQUIRE(f != NULL, "cannot write %s", text);
  uint32_t x = 12345u;
  for (int line = 0; line < 200; ++line) {
    for (int w = 0; w < 10; ++w) {
      x = x * 1664525u + 1013904223u;
      fprintf(f, "%sw%u", w ? " " : "", (x >> 16) % 10u);
    }
    fputc('\n', f);
  }
  REQUIRE(fclose(f) == 0, "cannot write %s", text);
  const char* paths[1] = {text};
  fwp_word_tokenizer_config wc;
  fwp_word_tokenizer_config_init(&wc);
  fwp_tokenizer* tok = NULL;
  CHECK_OK(fwp_tokenizer_train_word(paths, 1, &wc, &tok));
  int64_t n = 0;
  CHECK_OK(fwp_token_file_encode(tok, text, path, &n));
  REQUIRE(n == 200 * 11, "token file of %lld tokens", (long long)n);
  fwp_tokenizer_destroy(tok);
}

#define TEST_VOCAB 12

/* A tiny LM: 2 layers, d_model 16, 2 heads of 8, d_ff 32, no dropout, init_std 0.5. */
static inline void tiny_lm_config(fwp_lm_config* c, fwp_feature_map map, fwp_update_rule rule, uint64_t seed) {
  fwp_lm_config_init(c);
  c->vocab_size = TEST_VOCAB;
  c->num_layers = 2;
  c->attention.d_model = 16;
  c->attention.num_heads = 2;
  c->attention.d_head = 8;
  c->attention.feature_map = map;
  c->attention.update_rule = rule;
  if (map == FWP_FEATURE_MAP_SOFTMAX) c->attention.sum_normalize = 0;
  if (map == FWP_FEATURE_MAP_FAVOR) {
    c->attention.favor_features = 8;
    c->attention.favor_redraw = 1; /* new features at every training forward */
  }
  c->d_ff = 32;
  /* Weights far from 0, so that the attention (and its FAVOR+ draw) moves the loss visibly. */
  c->init_std = 0.5f;
  c->attention.init_std = 0.5f;
  c->dropout = 0.0f;
  c->seed = seed;
}

static inline fwp_model* make_lm(fwp_context* ctx, const fwp_lm_config* c) {
  fwp_model* m = NULL;
  CHECK_OK(fwp_lm_create(ctx, c, &m));
  return m;
}

/* The total number of floats over all parameters. */
static inline int64_t total_numel(const fwp_model* m) {
  int64_t n = 0, total = 0;
  CHECK_OK(fwp_model_num_params(m, &n));
  for (int64_t i = 0; i < n; ++i) {
    fwp_param_info info;
    CHECK_OK(fwp_model_param_info(m, i, &info));
    total += info.numel;
  }
  return total;
}

/* Every parameter (grads = 0) or gradient (grads = 1), concatenated in index order; free() it. */
static inline float* snapshot(const fwp_model* m, int grads, int64_t* count) {
  const int64_t total = total_numel(m);
  float* out = malloc((size_t)(total > 0 ? total : 1) * sizeof(float));
  REQUIRE(out != NULL, "out of memory");
  int64_t n = 0, at = 0;
  CHECK_OK(fwp_model_num_params(m, &n));
  for (int64_t i = 0; i < n; ++i) {
    fwp_param_info info;
    CHECK_OK(fwp_model_param_info(m, i, &info));
    if (grads)
      CHECK_OK(fwp_model_get_grad(m, i, out + at, info.numel));
    else
      CHECK_OK(fwp_model_get_param(m, i, out + at, info.numel));
    at += info.numel;
  }
  if (count) *count = total;
  return out;
}

/* FNV-1a over the bytes of a float array: 32 bits, exact as a double. */
static inline double hash_floats(const float* x, int64_t n) {
  uint32_t h = 2166136261u;
  const unsigned char* p = (const unsigned char*)x;
  for (int64_t i = 0; i < n * (int64_t)sizeof(float); ++i) h = (h ^ p[i]) * 16777619u;
  return (double)h;
}

static inline double param_hash(const fwp_model* m) {
  int64_t n = 0;
  float* p = snapshot(m, 0, &n);
  const double h = hash_floats(p, n);
  free(p);
  return h;
}

/* Every rank's value, through fwp_dist_sum (rank r fills slot r); `out` holds world_size doubles. */
static inline void gather_values(fwp_dist* dist, double mine, double* out, int world) {
  for (int r = 0; r < world; ++r) out[r] = 0.0;
  out[g_rank] = mine;
  CHECK_OK(fwp_dist_sum(dist, out, world));
}

/* Whether `mine` is the same on every rank (a collective). */
static inline int same_on_all_ranks(fwp_dist* dist, double mine, int world) {
  double v[16];
  REQUIRE(world <= 16, "world %d", world);
  gather_values(dist, mine, v, world);
  for (int r = 1; r < world; ++r)
    if (v[r] != v[0]) return 0;
  return 1;
}

#endif
