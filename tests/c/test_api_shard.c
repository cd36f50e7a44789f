/* C API contract of data-source shards (fwp_data_set_shard(), data.h): for
 * every kind, the N shards of a batch put together are the batch one
 * unsharded source gives, element by element, over several batches and an
 * epoch boundary; bad arguments change nothing; a pair batch with fewer pairs
 * than shards gives empty parts; a checkpoint holds the global position, so a
 * run resumes with another number of shards at the same global batch. */
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

static char dir[] = "/tmp/fwp_c_shard_XXXXXX";
static char text_path[256], ids_path[256], src_path[256], tgt_path[256], pairs_path[256], ckpt_path[256];

/* Token sources: 6 streams of 5 tokens (divisible by 1, 2, 3). */
#define TOKEN_B 6
#define TOKEN_T 5
/* Retrieval: setting 2 with S = 6 keys, global batch 6, evaluation queries Q = 6. */
#define RET_S 6
#define RET_B 6
#define RET_L (2 * RET_S)
#define RET_Q RET_S
/* Pair files: small budget, so many batches hold 1 or 2 pairs (empty parts for 3 shards). */
#define PAIR_LINES 40
#define PAIR_MAX_TOKENS 24

static fwp_tokenizer* train_word(const char** paths, int64_t n) {
  fwp_word_tokenizer_config cfg;
  fwp_word_tokenizer_config_init(&cfg);
  fwp_tokenizer* tok = NULL;
  CHECK_OK(fwp_tokenizer_train_word(paths, n, &cfg, &tok));
  return tok;
}

static int setup(void** state) {
  (void)state;
  if (!mkdtemp(dir)) return -1;
  snprintf(text_path, sizeof text_path, "%s/lm.txt", dir);
  snprintf(ids_path, sizeof ids_path, "%s/lm.ids", dir);
  snprintf(src_path, sizeof src_path, "%s/train.en", dir);
  snprintf(tgt_path, sizeof tgt_path, "%s/train.es", dir);
  snprintf(pairs_path, sizeof pairs_path, "%s/train.pairs", dir);
  snprintf(ckpt_path, sizeof ckpt_path, "%s/c.safetensors", dir);
  /* Words that vary from position to position, so that a row in the wrong place shows. */
  FILE* f = fopen(text_path, "wb");
  if (!f) return -1;
  for (int i = 0; i < 180; ++i) fprintf(f, "w%d%s", (i * 7) % 41, i % 9 == 8 ? "\n" : " ");
  fclose(f);
  FILE* s = fopen(src_path, "wb");
  FILE* t = fopen(tgt_path, "wb");
  if (!s || !t) return -1;
  for (int i = 0; i < PAIR_LINES; ++i) {
    for (int w = 0; w <= i % 9; ++w) fprintf(s, "%ss%d", w ? " " : "", (i + w) % 13);
    fputs("\n", s);
    for (int w = 0; w <= (i * 5) % 11; ++w) fprintf(t, "%st%d", w ? " " : "", (i * 3 + w) % 17);
    fputs("\n", t);
  }
  fclose(s);
  fclose(t);

  const char* lm_paths[] = {text_path};
  fwp_tokenizer* tok = train_word(lm_paths, 1);
  if (fwp_token_file_encode(tok, text_path, ids_path, NULL) != FWP_OK) return -1;
  fwp_tokenizer_destroy(tok);
  const char* pair_paths[] = {src_path, tgt_path};
  tok = train_word(pair_paths, 2);
  fwp_pair_encode_config pc;
  fwp_pair_encode_config_init(&pc);
  if (fwp_pair_file_encode(tok, src_path, tgt_path, pairs_path, &pc, NULL) != FWP_OK) return -1;
  fwp_tokenizer_destroy(tok);
  return 0;
}

static int teardown(void** state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static void expect_shard(const fwp_data* data, int64_t index, int64_t count) {
  int64_t i = -1, c = -1;
  CHECK_OK(fwp_data_get_shard(data, &i, &c));
  assert_int_equal(i, index);
  assert_int_equal(c, count);
}

/* A model to save checkpoints with (the data source's position rides along). */
static fwp_context* ctx;
static fwp_model* model;

static void make_model(void) {
  fwp_context_config cc;
  fwp_context_config_init(&cc);
  cc.num_threads = 1;
  CHECK_OK(fwp_context_create(&cc, &ctx));
  fwp_retrieval_config rc;
  fwp_retrieval_config_init(&rc);
  rc.num_keys = 4;
  rc.d_head = 8;
  CHECK_OK(fwp_model_create_retrieval(ctx, &rc, &model));
}

static void free_model(void) {
  fwp_model_destroy(model);
  fwp_context_destroy(ctx);
  model = NULL;
  ctx = NULL;
}

/* ---- token files ---------------------------------------------------------------------------- */

static fwp_data* token_source(int64_t index, int64_t count) {
  fwp_token_data_config cfg;
  fwp_token_data_config_init(&cfg);
  cfg.batch_size = TOKEN_B;
  cfg.segment_length = TOKEN_T;
  fwp_data* data = NULL;
  CHECK_OK(fwp_token_data_create(ids_path, &cfg, &data));
  CHECK_OK(fwp_data_set_shard(data, index, count));
  return data;
}

/* The next global batch of `whole` against the next batch of each of the n shards. */
static void expect_token_union(fwp_data* whole, fwp_data** shards, int64_t n) {
  int32_t x[TOKEN_B * TOKEN_T], y[TOKEN_B * TOKEN_T], xs[TOKEN_B * TOKEN_T], ys[TOKEN_B * TOKEN_T];
  int64_t epoch = -1, segment = -1, shard_epoch = -2, shard_segment = -2;
  CHECK_OK(fwp_token_data_epoch(whole, &epoch));
  CHECK_OK(fwp_token_data_position(whole, &segment));
  CHECK_OK(fwp_token_data_next(whole, x, y, TOKEN_B * TOKEN_T));
  const int64_t rows = TOKEN_B / n;
  for (int64_t r = 0; r < n; ++r) {
    /* The position is global: every shard stands where the whole source stands. */
    CHECK_OK(fwp_token_data_epoch(shards[r], &shard_epoch));
    CHECK_OK(fwp_token_data_position(shards[r], &shard_segment));
    assert_int_equal(shard_epoch, epoch);
    assert_int_equal(shard_segment, segment);
    memset(xs, 0xff, sizeof xs);
    CHECK_OK(fwp_token_data_next(shards[r], xs, ys, rows * TOKEN_T));
    assert_memory_equal(xs, x + r * rows * TOKEN_T, sizeof(int32_t) * (size_t)(rows * TOKEN_T));
    assert_memory_equal(ys, y + r * rows * TOKEN_T, sizeof(int32_t) * (size_t)(rows * TOKEN_T));
  }
}

static void test_token_shards(void** state) {
  (void)state;
  fwp_data* whole = token_source(0, 1);
  expect_shard(whole, 0, 1);
  int64_t per_epoch = 0;
  CHECK_OK(fwp_token_data_segments_per_epoch(whole, &per_epoch));
  assert_true(per_epoch >= 2 && per_epoch <= 6); /* so that the loop below crosses epochs */
  const int64_t batches = 2 * per_epoch + 1;
  fwp_data_destroy(whole);

  for (int64_t n = 1; n <= 3; ++n) {
    whole = token_source(0, 1);
    fwp_data* shards[3];
    for (int64_t r = 0; r < n; ++r) {
      shards[r] = token_source(r, n);
      expect_shard(shards[r], r, n);
    }
    for (int64_t k = 0; k < batches; ++k) expect_token_union(whole, shards, n);
    int64_t epoch = 0;
    CHECK_OK(fwp_token_data_epoch(shards[0], &epoch));
    assert_int_equal(epoch, 2);
    /* The config still reports the global batch. */
    fwp_token_data_config got;
    got.struct_size = sizeof got;
    CHECK_OK(fwp_token_data_get_config(shards[0], &got));
    assert_int_equal(got.batch_size, TOKEN_B);
    for (int64_t r = 0; r < n; ++r) fwp_data_destroy(shards[r]);
    fwp_data_destroy(whole);
  }

  /* Sharding in the middle of a run: the next global batch, cut. */
  whole = token_source(0, 1);
  fwp_data* late[2] = {token_source(0, 1), token_source(0, 1)};
  int32_t x[TOKEN_B * TOKEN_T], y[TOKEN_B * TOKEN_T];
  for (int k = 0; k < 3; ++k) {
    CHECK_OK(fwp_token_data_next(whole, x, y, TOKEN_B * TOKEN_T));
    CHECK_OK(fwp_token_data_next(late[0], x, y, TOKEN_B * TOKEN_T));
    CHECK_OK(fwp_token_data_next(late[1], x, y, TOKEN_B * TOKEN_T));
  }
  CHECK_OK(fwp_data_set_shard(late[0], 0, 2));
  CHECK_OK(fwp_data_set_shard(late[1], 1, 2));
  expect_token_union(whole, late, 2);
  /* ... and back to whole batches. */
  CHECK_OK(fwp_data_set_shard(late[0], 0, 1));
  expect_token_union(whole, late, 1);

  /* A shard takes B / count streams: the global count is refused. */
  EXPECT_ERROR(fwp_token_data_next(late[1], x, y, TOKEN_B * TOKEN_T), FWP_ERR_SHAPE_MISMATCH, "count");
  fwp_data_destroy(late[0]);
  fwp_data_destroy(late[1]);
  fwp_data_destroy(whole);
}

/* ---- retrieval generator --------------------------------------------------------------------- */

static fwp_data* retrieval_source(int64_t index, int64_t count) {
  fwp_retrieval_data* data = NULL;
  CHECK_OK(fwp_retrieval_data_create(2, RET_S, 77, &data));
  CHECK_OK(fwp_data_set_shard(data, index, count));
  return data;
}

/* One global batch with q queries per sequence from `whole` against each shard's rows. */
static void expect_retrieval_union(fwp_data* whole, fwp_data** shards, int64_t n, int64_t q) {
  int32_t k[RET_B * RET_L], v[RET_B * RET_L], qs[RET_B * RET_Q], ts[RET_B * RET_Q];
  int32_t ks[RET_B * RET_L], vs[RET_B * RET_L], qss[RET_B * RET_Q], tss[RET_B * RET_Q];
  CHECK_OK(fwp_retrieval_data_sample(whole, RET_B, q, k, v, qs, ts));
  const int64_t rows = RET_B / n;
  for (int64_t r = 0; r < n; ++r) {
    memset(ks, 0xff, sizeof ks);
    CHECK_OK(fwp_retrieval_data_sample(shards[r], RET_B, q, ks, vs, qss, tss));
    assert_memory_equal(ks, k + r * rows * RET_L, sizeof(int32_t) * (size_t)(rows * RET_L));
    assert_memory_equal(vs, v + r * rows * RET_L, sizeof(int32_t) * (size_t)(rows * RET_L));
    assert_memory_equal(qss, qs + r * rows * q, sizeof(int32_t) * (size_t)(rows * q));
    assert_memory_equal(tss, ts + r * rows * q, sizeof(int32_t) * (size_t)(rows * q));
  }
}

static void test_retrieval_shards(void** state) {
  (void)state;
  for (int64_t n = 1; n <= 3; ++n) {
    fwp_data* whole = retrieval_source(0, 1);
    fwp_data* shards[3];
    for (int64_t r = 0; r < n; ++r) shards[r] = retrieval_source(r, n);
    /* Training batches (one query, drawn) and evaluation batches (every key, not drawn) in turn. */
    for (int k = 0; k < 6; ++k) expect_retrieval_union(whole, shards, n, k % 3 == 2 ? RET_Q : 1);
    for (int64_t r = 0; r < n; ++r) fwp_data_destroy(shards[r]);
    fwp_data_destroy(whole);
  }
  /* batch_size is the global batch: not a multiple of the count is refused, and nothing is drawn. */
  fwp_data* whole = retrieval_source(0, 1);
  fwp_data* shards[3] = {retrieval_source(0, 3), retrieval_source(1, 3), retrieval_source(2, 3)};
  int32_t k[RET_B * RET_L], v[RET_B * RET_L], q[RET_B], t[RET_B];
  EXPECT_ERROR(fwp_retrieval_data_sample(shards[1], 4, 1, k, v, q, t), FWP_ERR_INVALID_ARGUMENT, "batch_size");
  EXPECT_ERROR(fwp_retrieval_data_sample(shards[1], 7, 1, k, v, q, t), FWP_ERR_INVALID_ARGUMENT, "batch_size");
  expect_retrieval_union(whole, shards, 3, 1);
  /* A smaller global batch, still a multiple: one row each. */
  int32_t k1[RET_L], v1[RET_L], q1[1], t1[1];
  CHECK_OK(fwp_retrieval_data_sample(whole, 3, 1, k, v, q, t));
  for (int64_t r = 0; r < 3; ++r) {
    CHECK_OK(fwp_retrieval_data_sample(shards[r], 3, 1, k1, v1, q1, t1));
    assert_memory_equal(k1, k + r * RET_L, sizeof k1);
    assert_memory_equal(v1, v + r * RET_L, sizeof v1);
    assert_int_equal(q1[0], q[r]);
    assert_int_equal(t1[0], t[r]);
  }
  for (int64_t r = 0; r < 3; ++r) fwp_data_destroy(shards[r]);
  fwp_data_destroy(whole);
}

/* ---- pair files ------------------------------------------------------------------------------ */

static fwp_data* pair_source(int64_t index, int64_t count) {
  fwp_pair_data_config cfg;
  fwp_pair_data_config_init(&cfg);
  cfg.max_tokens = PAIR_MAX_TOKENS;
  cfg.seed = 5;
  fwp_data* data = NULL;
  CHECK_OK(fwp_pair_data_create(pairs_path, &cfg, &data));
  CHECK_OK(fwp_data_set_shard(data, index, count));
  return data;
}

/* One batch's arrays, sized by a source's max_shape(). */
typedef struct batch {
  int64_t B, S, T;
  int32_t *src, *tin, *tout, *slen, *tlen;
  int64_t* idx;
} batch;

static batch batch_alloc(const fwp_data* data) {
  batch b;
  int64_t maxB = 0, maxS = 0, maxT = 0;
  CHECK_OK(fwp_pair_data_max_shape(data, &maxB, &maxS, &maxT));
  maxB = maxB > 0 ? maxB : 1;
  b.B = b.S = b.T = 0;
  b.src = malloc(sizeof(int32_t) * (size_t)(maxB * maxS + 1));
  b.tin = malloc(sizeof(int32_t) * (size_t)(maxB * maxT + 1));
  b.tout = malloc(sizeof(int32_t) * (size_t)(maxB * maxT + 1));
  b.slen = malloc(sizeof(int32_t) * (size_t)maxB);
  b.tlen = malloc(sizeof(int32_t) * (size_t)maxB);
  b.idx = malloc(sizeof(int64_t) * (size_t)maxB);
  assert_true(b.src && b.tin && b.tout && b.slen && b.tlen && b.idx);
  return b;
}

static void batch_free(batch* b) {
  free(b->src);
  free(b->tin);
  free(b->tout);
  free(b->slen);
  free(b->tlen);
  free(b->idx);
}

/* Peeks and takes the next batch (part) of `data`; checks that max_shape bounds it. */
static void batch_next(fwp_data* data, batch* b) {
  int64_t maxB = 0, maxS = 0, maxT = 0;
  CHECK_OK(fwp_pair_data_max_shape(data, &maxB, &maxS, &maxT));
  CHECK_OK(fwp_pair_data_peek(data, &b->B, &b->S, &b->T));
  assert_true(b->B <= maxB && b->S <= maxS && b->T <= maxT);
  if (b->B == 0) {
    assert_int_equal(b->S, 0);
    assert_int_equal(b->T, 0);
    /* An empty part takes no arrays and still moves on. */
    CHECK_OK(fwp_pair_data_next(data, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL));
    return;
  }
  CHECK_OK(fwp_pair_data_next(data, b->B, b->S, b->T, b->src, b->slen, b->tin, b->tout, b->tlen, b->idx));
}

/* The parts of n shards against the whole batch, row by row; returns how many parts were empty. */
static int64_t expect_pair_union(fwp_data* whole, fwp_data** shards, int64_t n, batch* w, batch* parts, int32_t pad) {
  int64_t position = -1, epoch = -1, shard_position = -2, shard_epoch = -2, empty = 0;
  CHECK_OK(fwp_pair_data_position(whole, &position));
  CHECK_OK(fwp_pair_data_epoch(whole, &epoch));
  batch_next(whole, w);
  int64_t rows = 0;
  for (int64_t r = 0; r < n; ++r) {
    CHECK_OK(fwp_pair_data_position(shards[r], &shard_position));
    CHECK_OK(fwp_pair_data_epoch(shards[r], &shard_epoch));
    assert_int_equal(shard_position, position);
    assert_int_equal(shard_epoch, epoch);
    batch* p = &parts[r];
    batch_next(shards[r], p);
    const int64_t lo = r * w->B / n, hi = (r + 1) * w->B / n;
    assert_int_equal(lo, rows);
    assert_int_equal(p->B, hi - lo);
    if (p->B == 0) ++empty;
    int64_t longest_s = 0, longest_t = 0;
    for (int64_t i = 0; i < p->B; ++i) {
      const int64_t row = lo + i;
      assert_int_equal(p->idx[i], w->idx[row]);
      assert_int_equal(p->slen[i], w->slen[row]);
      assert_int_equal(p->tlen[i], w->tlen[row]);
      longest_s = p->slen[i] > longest_s ? p->slen[i] : longest_s;
      longest_t = p->tlen[i] > longest_t ? p->tlen[i] : longest_t;
      /* The part's row is the whole row cut to the part's own S and T; what is cut is padding. */
      assert_memory_equal(p->src + i * p->S, w->src + row * w->S, sizeof(int32_t) * (size_t)p->S);
      assert_memory_equal(p->tin + i * p->T, w->tin + row * w->T, sizeof(int32_t) * (size_t)p->T);
      assert_memory_equal(p->tout + i * p->T, w->tout + row * w->T, sizeof(int32_t) * (size_t)p->T);
      for (int64_t s = p->S; s < w->S; ++s) assert_int_equal(w->src[row * w->S + s], pad);
      for (int64_t t = p->T; t < w->T; ++t) assert_int_equal(w->tout[row * w->T + t], pad);
    }
    /* The part's own longest source and target. */
    assert_int_equal(p->S, longest_s);
    assert_int_equal(p->T, longest_t);
    rows = hi;
  }
  assert_int_equal(rows, w->B);
  return empty;
}

static void test_pair_shards(void** state) {
  (void)state;
  fwp_data* whole = pair_source(0, 1);
  int64_t K = 0;
  CHECK_OK(fwp_pair_data_batches_per_epoch(whole, &K));
  fwp_pair_info info;
  info.struct_size = sizeof info;
  CHECK_OK(fwp_pair_data_info(whole, &info));
  assert_int_equal(info.num_pairs, PAIR_LINES);
  fwp_data_destroy(whole);

  for (int64_t n = 1; n <= 3; ++n) {
    whole = pair_source(0, 1);
    fwp_data* shards[3];
    batch parts[3];
    for (int64_t r = 0; r < n; ++r) {
      shards[r] = pair_source(r, n);
      parts[r] = batch_alloc(shards[r]);
    }
    batch w = batch_alloc(whole);
    if (n == 1) { /* one shard: the whole batches' bound */
      int64_t a[3], b[3];
      CHECK_OK(fwp_pair_data_max_shape(whole, &a[0], &a[1], &a[2]));
      CHECK_OK(fwp_pair_data_max_shape(shards[0], &b[0], &b[1], &b[2]));
      assert_memory_equal(a, b, sizeof a);
    }
    int64_t empty = 0, pairs = 0;
    int seen[PAIR_LINES] = {0};
    for (int64_t k = 0; k < K + 3; ++k) { /* across the epoch boundary */
      empty += expect_pair_union(whole, shards, n, &w, parts, info.pad_id);
      if (k < K) {
        for (int64_t i = 0; i < w.B; ++i) seen[w.idx[i]] += 1;
        pairs += w.B;
      }
    }
    assert_int_equal(pairs, PAIR_LINES);
    for (int i = 0; i < PAIR_LINES; ++i) assert_int_equal(seen[i], 1);
    int64_t epoch = 0;
    CHECK_OK(fwp_pair_data_epoch(shards[n - 1], &epoch));
    assert_int_equal(epoch, 1);
    if (n == 1) assert_int_equal(empty, 0);
    if (n == 3) assert_true(empty > 0); /* the budget makes batches of 1 or 2 pairs */
    for (int64_t r = 0; r < n; ++r) {
      batch_free(&parts[r]);
      fwp_data_destroy(shards[r]);
    }
    batch_free(&w);
    fwp_data_destroy(whole);
  }

  /* The empty part's shape must be the one peek gives; a non-empty part still needs its arrays. */
  fwp_data* shard = pair_source(0, 3);
  batch b = batch_alloc(shard);
  int found_empty = 0, found_full = 0;
  for (int64_t k = 0; k < K && !(found_empty && found_full); ++k) {
    int64_t B = 0, S = 0, T = 0;
    CHECK_OK(fwp_pair_data_peek(shard, &B, &S, &T));
    if (B == 0 && !found_empty) {
      found_empty = 1;
      EXPECT_ERROR(fwp_pair_data_next(shard, 0, 1, 0, NULL, NULL, NULL, NULL, NULL, NULL), FWP_ERR_SHAPE_MISMATCH,
                   "B = 0, S = 0, T = 0");
    } else if (B > 0 && !found_full) {
      found_full = 1;
      EXPECT_ERROR(fwp_pair_data_next(shard, B, S, T, NULL, b.slen, b.tin, b.tout, b.tlen, NULL),
                   FWP_ERR_NULL_POINTER, "source");
      EXPECT_ERROR(fwp_pair_data_next(shard, 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL), FWP_ERR_SHAPE_MISMATCH,
                   "fwp_pair_data_peek");
    }
    int64_t position = -1;
    CHECK_OK(fwp_pair_data_position(shard, &position));
    assert_int_equal(position, k); /* nothing moved on failure */
    batch_next(shard, &b);
  }
  assert_true(found_empty && found_full);
  batch_free(&b);
  fwp_data_destroy(shard);
}

/* ---- arguments ------------------------------------------------------------------------------- */

static void test_arguments(void** state) {
  (void)state;
  fwp_data* whole = token_source(0, 1);
  fwp_data* shards[3] = {token_source(0, 3), token_source(1, 3), token_source(2, 3)};
  fwp_data* data = shards[1];
  int64_t index = 0, count = 0;
  EXPECT_ERROR(fwp_data_set_shard(NULL, 0, 1), FWP_ERR_NULL_POINTER, "data");
  EXPECT_ERROR(fwp_data_get_shard(NULL, &index, &count), FWP_ERR_NULL_POINTER, "data");
  EXPECT_ERROR(fwp_data_get_shard(data, NULL, &count), FWP_ERR_NULL_POINTER, "index");
  EXPECT_ERROR(fwp_data_get_shard(data, &index, NULL), FWP_ERR_NULL_POINTER, "count");
  EXPECT_ERROR(fwp_data_set_shard(data, -1, 3), FWP_ERR_INVALID_ARGUMENT, "index");
  EXPECT_ERROR(fwp_data_set_shard(data, 3, 3), FWP_ERR_INVALID_ARGUMENT, "index");
  EXPECT_ERROR(fwp_data_set_shard(data, 0, 0), FWP_ERR_INVALID_ARGUMENT, "count");
  EXPECT_ERROR(fwp_data_set_shard(data, 0, -2), FWP_ERR_INVALID_ARGUMENT, "count");
  EXPECT_ERROR(fwp_data_set_shard(data, 1, 4), FWP_ERR_INVALID_ARGUMENT, "batch_size 6"); /* 6 streams */
  EXPECT_ERROR(fwp_data_set_shard(data, 0, INT64_MAX), FWP_ERR_INVALID_ARGUMENT, "batch_size");
  /* Nothing changed: the shard, and the batches it gives. */
  expect_shard(data, 1, 3);
  expect_token_union(whole, shards, 3);
  for (int r = 0; r < 3; ++r) fwp_data_destroy(shards[r]);
  fwp_data_destroy(whole);

  /* The same checks for the other kinds, whose counts need not divide anything. */
  fwp_data* sources[2] = {retrieval_source(2, 5), pair_source(2, 5)};
  for (int s = 0; s < 2; ++s) {
    EXPECT_ERROR(fwp_data_set_shard(sources[s], 5, 5), FWP_ERR_INVALID_ARGUMENT, "index");
    EXPECT_ERROR(fwp_data_set_shard(sources[s], -1, 2), FWP_ERR_INVALID_ARGUMENT, "index");
    EXPECT_ERROR(fwp_data_set_shard(sources[s], 0, 0), FWP_ERR_INVALID_ARGUMENT, "count");
    expect_shard(sources[s], 2, 5);
    CHECK_OK(fwp_data_set_shard(sources[s], 6, 7));
    expect_shard(sources[s], 6, 7);
  }
  /* A huge count, and nothing overflows: the last shard takes each batch's last row, the first none. */
  CHECK_OK(fwp_data_set_shard(sources[1], INT64_MAX - 1, INT64_MAX));
  int64_t B = -1, S = -1, T = -1;
  CHECK_OK(fwp_pair_data_peek(sources[1], &B, &S, &T));
  assert_true(B == 1 && S > 0 && T > 0);
  CHECK_OK(fwp_pair_data_max_shape(sources[1], &B, &S, &T));
  assert_int_equal(B, 1);
  CHECK_OK(fwp_data_set_shard(sources[1], 0, INT64_MAX));
  CHECK_OK(fwp_pair_data_peek(sources[1], &B, &S, &T));
  assert_true(B == 0 && S == 0 && T == 0);
  CHECK_OK(fwp_pair_data_max_shape(sources[1], &B, &S, &T));
  assert_true(B == 0 && S == 0 && T == 0);
  CHECK_OK(fwp_pair_data_next(sources[1], 0, 0, 0, NULL, NULL, NULL, NULL, NULL, NULL));
  fwp_data_destroy(sources[0]);
  fwp_data_destroy(sources[1]);
}

/* ---- checkpoints: the global position, resumed with another count ----------------------------- */

static void test_checkpoint_reshard(void** state) {
  (void)state;
  make_model();

  /* Token files: two shards read 3 batches, three shards resume. */
  {
    fwp_data* whole = token_source(0, 1);
    fwp_data* two = token_source(1, 2);
    int32_t x[TOKEN_B * TOKEN_T], y[TOKEN_B * TOKEN_T];
    for (int k = 0; k < 3; ++k) {
      CHECK_OK(fwp_token_data_next(whole, x, y, TOKEN_B * TOKEN_T));
      CHECK_OK(fwp_token_data_next(two, x, y, TOKEN_B / 2 * TOKEN_T));
    }
    CHECK_OK(fwp_checkpoint_save(ckpt_path, model, NULL, two, NULL));
    /* Sharded before the load, after it, and not at all. */
    fwp_data* three[3] = {token_source(0, 3), token_source(0, 1), token_source(2, 3)};
    for (int r = 0; r < 3; ++r) CHECK_OK(fwp_checkpoint_load(ckpt_path, model, NULL, three[r]));
    expect_shard(three[0], 0, 3); /* the checkpoint holds no shard */
    expect_shard(three[1], 0, 1);
    CHECK_OK(fwp_data_set_shard(three[1], 1, 3));
    fwp_data* plain = token_source(0, 1);
    CHECK_OK(fwp_checkpoint_load(ckpt_path, model, NULL, plain));
    expect_shard(plain, 0, 1);
    for (int k = 0; k < 3; ++k) expect_token_union(whole, three, 3);
    /* The unsharded resume gives the whole batch of the saved position. */
    fwp_data* reference = token_source(0, 1);
    for (int k = 0; k < 3; ++k) CHECK_OK(fwp_token_data_next(reference, x, y, TOKEN_B * TOKEN_T));
    fwp_data* ones[1] = {plain};
    expect_token_union(reference, ones, 1);
    for (int r = 0; r < 3; ++r) fwp_data_destroy(three[r]);
    fwp_data_destroy(reference);
    fwp_data_destroy(plain);
    fwp_data_destroy(two);
    fwp_data_destroy(whole);
  }

  /* Retrieval: three shards sample twice, two shards resume. */
  {
    fwp_data* whole = retrieval_source(0, 1);
    fwp_data* three = retrieval_source(2, 3);
    int32_t k[RET_B * RET_L], v[RET_B * RET_L], q[RET_B], t[RET_B];
    for (int b = 0; b < 2; ++b) {
      CHECK_OK(fwp_retrieval_data_sample(whole, RET_B, 1, k, v, q, t));
      CHECK_OK(fwp_retrieval_data_sample(three, RET_B, 1, k, v, q, t));
    }
    CHECK_OK(fwp_checkpoint_save(ckpt_path, model, NULL, three, NULL));
    fwp_data* two[2] = {retrieval_source(0, 2), retrieval_source(0, 1)};
    for (int r = 0; r < 2; ++r) CHECK_OK(fwp_checkpoint_load(ckpt_path, model, NULL, two[r]));
    CHECK_OK(fwp_data_set_shard(two[1], 1, 2));
    for (int b = 0; b < 3; ++b) expect_retrieval_union(whole, two, 2, 1);
    fwp_data_destroy(two[0]);
    fwp_data_destroy(two[1]);
    fwp_data_destroy(three);
    fwp_data_destroy(whole);
  }

  /* Pair files: one shard of three saves near the end of an epoch, two shards resume across it. */
  {
    fwp_data* whole = pair_source(0, 1);
    fwp_data* three = pair_source(1, 3);
    int64_t K = 0;
    CHECK_OK(fwp_pair_data_batches_per_epoch(whole, &K));
    batch w = batch_alloc(whole), p = batch_alloc(three);
    for (int64_t b = 0; b < K - 2; ++b) {
      batch_next(whole, &w);
      batch_next(three, &p);
    }
    CHECK_OK(fwp_checkpoint_save(ckpt_path, model, NULL, three, NULL));
    fwp_pair_info info;
    info.struct_size = sizeof info;
    CHECK_OK(fwp_pair_data_info(whole, &info));
    fwp_data* two[2] = {pair_source(0, 2), pair_source(0, 1)};
    for (int r = 0; r < 2; ++r) CHECK_OK(fwp_checkpoint_load(ckpt_path, model, NULL, two[r]));
    expect_shard(two[0], 0, 2);
    CHECK_OK(fwp_data_set_shard(two[1], 1, 2));
    batch parts[2] = {batch_alloc(two[0]), batch_alloc(two[1])};
    for (int b = 0; b < 5; ++b) (void)expect_pair_union(whole, two, 2, &w, parts, info.pad_id);
    batch_free(&parts[0]);
    batch_free(&parts[1]);
    batch_free(&w);
    batch_free(&p);
    fwp_data_destroy(two[0]);
    fwp_data_destroy(two[1]);
    fwp_data_destroy(three);
    fwp_data_destroy(whole);
  }
  free_model();
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_token_shards),     cmocka_unit_test(test_retrieval_shards),
      cmocka_unit_test(test_pair_shards),      cmocka_unit_test(test_arguments),
      cmocka_unit_test(test_checkpoint_reshard),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
