/* C API contract of parallel text (parallel.h): pair-file encoding with its
 * policies and errors, the file description, the pair data source (peek/next
 * buffer protocol, rows as documented, every pair once per epoch, reset,
 * another kind refused), damaged files (FWP_ERR_FORMAT, never a crash), and a
 * checkpoint round trip of the data source's position. */
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

static char dir[] = "/tmp/fwp_c_parallel_XXXXXX";
static char src_path[256], tgt_path[256], short_path[256], pairs_path[256], bad_path[256], ckpt_path[256];
#define NUM_LINES 60

static void write_file(const char* path, const char* text) {
  FILE* f = fopen(path, "wb");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static int setup(void** state) {
  (void)state;
  if (!mkdtemp(dir)) return -1;
  snprintf(src_path, sizeof src_path, "%s/train.en", dir);
  snprintf(tgt_path, sizeof tgt_path, "%s/train.es", dir);
  snprintf(short_path, sizeof short_path, "%s/short.es", dir);
  snprintf(pairs_path, sizeof pairs_path, "%s/train.pairs", dir);
  snprintf(bad_path, sizeof bad_path, "%s/bad.pairs", dir);
  snprintf(ckpt_path, sizeof ckpt_path, "%s/c.safetensors", dir);
  FILE* s = fopen(src_path, "wb");
  FILE* t = fopen(tgt_path, "wb");
  if (!s || !t) return -1;
  /* Sentences of varied lengths; line 7 has an empty target (skipped by default). */
  const char* words[] = {"the", "cat", "sat", "on", "mat", "a", "dog", "ran"};
  const char* palabras[] = {"el", "gato", "se", "sento", "en", "la", "alfombra", "perro"};
  for (int i = 0; i < NUM_LINES; ++i) {
    for (int w = 0; w <= i % 9; ++w) fprintf(s, "%s%s", w ? " " : "", words[(i + w) % 8]);
    fputs("\n", s);
    if (i != 7) {
      for (int w = 0; w <= (i * 5) % 11; ++w) fprintf(t, "%s%s", w ? " " : "", palabras[(i * 3 + w) % 8]);
    }
    fputs("\n", t);
  }
  fclose(s);
  fclose(t);
  write_file(short_path, "el gato\nla alfombra\n");
  return 0;
}

static int teardown(void** state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static fwp_tokenizer* train_word(void) {
  const char* paths[] = {src_path, tgt_path};
  fwp_word_tokenizer_config cfg;
  fwp_word_tokenizer_config_init(&cfg);
  fwp_tokenizer* tok = NULL;
  CHECK_OK(fwp_tokenizer_train_word(paths, 2, &cfg, &tok));
  return tok;
}

static void test_encode(void** state) {
  (void)state;
  fwp_tokenizer* tok = train_word();
  fwp_pair_encode_config cfg;
  fwp_pair_encode_config_init(&cfg);
  assert_int_equal(cfg.struct_size, sizeof cfg);
  assert_int_equal(cfg.max_source_tokens, 0);
  assert_int_equal(cfg.too_long, FWP_PAIR_SKIP);
  assert_int_equal(cfg.empty_lines, FWP_PAIR_SKIP);
  fwp_pair_encode_config_init(NULL);
  fwp_pair_info info;
  memset(&info, 0, sizeof info);
  info.struct_size = sizeof info;

  EXPECT_ERROR(fwp_pair_file_encode(NULL, src_path, tgt_path, pairs_path, &cfg, &info), FWP_ERR_NULL_POINTER,
               "tokenizer");
  EXPECT_ERROR(fwp_pair_file_encode(tok, NULL, tgt_path, pairs_path, &cfg, &info), FWP_ERR_NULL_POINTER,
               "source_path");
  EXPECT_ERROR(fwp_pair_file_encode(tok, src_path, NULL, pairs_path, &cfg, &info), FWP_ERR_NULL_POINTER,
               "target_path");
  EXPECT_ERROR(fwp_pair_file_encode(tok, src_path, tgt_path, NULL, &cfg, &info), FWP_ERR_NULL_POINTER, "pair_path");
  EXPECT_ERROR(fwp_pair_file_encode(tok, src_path, tgt_path, pairs_path, NULL, &info), FWP_ERR_NULL_POINTER, "config");
  EXPECT_ERROR(fwp_pair_file_encode(tok, src_path, tgt_path, src_path, &cfg, &info), FWP_ERR_INVALID_ARGUMENT,
               "text file");
  EXPECT_ERROR(fwp_pair_file_encode(tok, src_path, short_path, pairs_path, &cfg, &info), FWP_ERR_INVALID_ARGUMENT,
               "has 2");
  fwp_pair_encode_config bad = cfg;
  bad.struct_size = 3;
  EXPECT_ERROR(fwp_pair_file_encode(tok, src_path, tgt_path, pairs_path, &bad, &info), FWP_ERR_INVALID_ARGUMENT,
               "struct_size");
  bad = cfg;
  bad.max_source_tokens = -2;
  EXPECT_ERROR(fwp_pair_file_encode(tok, src_path, tgt_path, pairs_path, &bad, &info), FWP_ERR_INVALID_ARGUMENT,
               "max_source_tokens");
  bad = cfg;
  bad.too_long = (fwp_pair_policy)7;
  EXPECT_ERROR(fwp_pair_file_encode(tok, src_path, tgt_path, pairs_path, &bad, &info), FWP_ERR_INVALID_ARGUMENT,
               "too_long");
  bad = cfg;
  bad.empty_lines = FWP_PAIR_ERROR;
  EXPECT_ERROR(fwp_pair_file_encode(tok, src_path, tgt_path, pairs_path, &bad, &info), FWP_ERR_INVALID_ARGUMENT,
               "line 8");
  assert_int_equal(access(pairs_path, F_OK), -1); /* nothing written by a failed encoding */
  fwp_pair_info wrong = info;
  wrong.struct_size = 8;
  EXPECT_ERROR(fwp_pair_file_encode(tok, src_path, tgt_path, pairs_path, &cfg, &wrong), FWP_ERR_INVALID_ARGUMENT,
               "info");

  /* Too long: source over 6 tokens skipped and counted. */
  cfg.max_source_tokens = 6;
  CHECK_OK(fwp_pair_file_encode(tok, src_path, tgt_path, pairs_path, &cfg, &info));
  assert_int_equal(info.skipped_empty, 1);
  assert_true(info.skipped_too_long > 0);
  assert_int_equal(info.lines, NUM_LINES);
  assert_int_equal(info.num_pairs + info.skipped_empty + info.skipped_too_long, NUM_LINES);
  assert_true(info.longest_source <= 6);
  cfg.too_long = FWP_PAIR_ERROR;
  EXPECT_ERROR(fwp_pair_file_encode(tok, src_path, tgt_path, pairs_path, &cfg, NULL), FWP_ERR_INVALID_ARGUMENT,
               "max_source_tokens = 6");

  /* The default: everything but the empty line, and the word level's added special ids. */
  fwp_pair_encode_config_init(&cfg);
  CHECK_OK(fwp_pair_file_encode(tok, src_path, tgt_path, pairs_path, &cfg, NULL));
  CHECK_OK(fwp_pair_file_info(pairs_path, &info));
  int64_t vocab = 0, model_vocab = 0;
  int32_t pad = -1, bos = -1, eos = -1, unk = -1;
  CHECK_OK(fwp_tokenizer_vocab_size(tok, &vocab));
  CHECK_OK(fwp_pair_special_ids(tok, &model_vocab, &pad, &bos, &eos, &unk));
  CHECK_OK(fwp_pair_special_ids(tok, NULL, NULL, NULL, NULL, NULL));
  EXPECT_ERROR(fwp_pair_special_ids(NULL, &model_vocab, &pad, &bos, &eos, &unk), FWP_ERR_NULL_POINTER, "tokenizer");
  assert_int_equal(model_vocab, vocab + 2);
  assert_int_equal(pad, vocab);
  assert_int_equal(bos, vocab + 1);
  assert_int_equal(eos, 0);
  assert_int_equal(info.vocab_size, model_vocab);
  assert_int_equal(info.tokenizer_vocab_size, vocab);
  assert_int_equal(info.pad_id, pad);
  assert_int_equal(info.bos_id, bos);
  assert_int_equal(info.eos_id, eos);
  assert_int_equal(info.unk_id, unk);
  assert_int_equal(info.num_pairs, NUM_LINES - 1);
  assert_int_equal(info.longest_source, 9);
  assert_int_equal(info.longest_target, 11);
  EXPECT_ERROR(fwp_pair_file_info(NULL, &info), FWP_ERR_NULL_POINTER, "path");
  EXPECT_ERROR(fwp_pair_file_info(pairs_path, NULL), FWP_ERR_NULL_POINTER, "info");
  EXPECT_ERROR(fwp_pair_file_info(pairs_path, &wrong), FWP_ERR_INVALID_ARGUMENT, "struct_size");
  EXPECT_ERROR(fwp_pair_file_info(src_path, &info), FWP_ERR_FORMAT, "magic");
  fwp_tokenizer_destroy(tok);
}

/* Reads the whole pair file into memory. */
static unsigned char* read_all(const char* path, long* size) {
  FILE* f = fopen(path, "rb");
  assert_non_null(f);
  fseek(f, 0, SEEK_END);
  *size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char* bytes = malloc((size_t)*size);
  assert_non_null(bytes);
  assert_int_equal(fread(bytes, 1, (size_t)*size, f), (size_t)*size);
  fclose(f);
  return bytes;
}

static void write_bytes(const char* path, const unsigned char* bytes, long size) {
  FILE* f = fopen(path, "wb");
  assert_non_null(f);
  if (size > 0) assert_int_equal(fwrite(bytes, 1, (size_t)size, f), (size_t)size);
  fclose(f);
}

static void test_damaged_files(void** state) {
  (void)state;
  long size = 0;
  unsigned char* good = read_all(pairs_path, &size);
  fwp_pair_info info;
  info.struct_size = sizeof info;
  fwp_pair_data_config cfg;
  fwp_pair_data_config_init(&cfg);
  /* Truncations and flipped bytes: FWP_ERR_FORMAT from both readers, every time. */
  for (long n = 0; n < size; n += 7) {
    write_bytes(bad_path, good, n);
    assert_int_equal(fwp_pair_file_info(bad_path, &info), FWP_ERR_FORMAT);
    fwp_data* data = (fwp_data*)1;
    assert_int_equal(fwp_pair_data_create(bad_path, &cfg, &data), FWP_ERR_FORMAT);
    assert_null(data);
  }
  for (long i = 0; i < size; i += 5) {
    good[i] ^= 0x10;
    write_bytes(bad_path, good, size);
    assert_int_equal(fwp_pair_file_info(bad_path, &info), FWP_ERR_FORMAT);
    good[i] ^= 0x10;
  }
  free(good);
}

static void test_data_source(void** state) {
  (void)state;
  fwp_pair_data_config cfg;
  fwp_pair_data_config_init(&cfg);
  assert_int_equal(cfg.max_tokens, 4096);
  assert_int_equal(cfg.shuffle, 1);
  fwp_pair_data_config_init(NULL);
  fwp_data* data = NULL;
  EXPECT_ERROR(fwp_pair_data_create(NULL, &cfg, &data), FWP_ERR_NULL_POINTER, "pair_path");
  EXPECT_ERROR(fwp_pair_data_create(pairs_path, NULL, &data), FWP_ERR_NULL_POINTER, "config");
  EXPECT_ERROR(fwp_pair_data_create(pairs_path, &cfg, NULL), FWP_ERR_NULL_POINTER, "out");
  fwp_pair_data_config bad = cfg;
  bad.max_tokens = 0;
  EXPECT_ERROR(fwp_pair_data_create(pairs_path, &bad, &data), FWP_ERR_INVALID_ARGUMENT, "max_tokens");
  bad = cfg;
  bad.max_tokens = 5; /* the longest target needs 12 */
  EXPECT_ERROR(fwp_pair_data_create(pairs_path, &bad, &data), FWP_ERR_INVALID_ARGUMENT, "max_tokens = 5");
  bad = cfg;
  bad.shuffle = 2;
  EXPECT_ERROR(fwp_pair_data_create(pairs_path, &bad, &data), FWP_ERR_INVALID_ARGUMENT, "shuffle");
  bad = cfg;
  bad.max_sentences = -1;
  EXPECT_ERROR(fwp_pair_data_create(pairs_path, &bad, &data), FWP_ERR_INVALID_ARGUMENT, "max_sentences");
  bad = cfg;
  bad.struct_size = 1000;
  EXPECT_ERROR(fwp_pair_data_create(pairs_path, &bad, &data), FWP_ERR_INVALID_ARGUMENT, "struct_size");

  cfg.max_tokens = 40;
  cfg.max_sentences = 5;
  cfg.seed = 99;
  CHECK_OK(fwp_pair_data_create(pairs_path, &cfg, &data));
  fwp_data_kind kind = FWP_DATA_RETRIEVAL;
  CHECK_OK(fwp_data_get_kind(data, &kind));
  assert_int_equal(kind, FWP_DATA_PARALLEL_TEXT);
  fwp_pair_data_config got;
  got.struct_size = sizeof got;
  CHECK_OK(fwp_pair_data_get_config(data, &got));
  assert_int_equal(got.max_tokens, 40);
  assert_int_equal(got.max_sentences, 5);
  assert_int_equal(got.seed, 99);
  assert_int_equal(got.shuffle, 1);
  fwp_pair_info info;
  info.struct_size = sizeof info;
  CHECK_OK(fwp_pair_data_info(data, &info));
  assert_int_equal(info.num_pairs, NUM_LINES - 1);

  int64_t K = 0, maxB = 0, maxS = 0, maxT = 0;
  CHECK_OK(fwp_pair_data_batches_per_epoch(data, &K));
  CHECK_OK(fwp_pair_data_max_shape(data, &maxB, &maxS, &maxT));
  assert_true(maxB <= 5 && maxS == 10 && maxT == 12);
  int32_t* src = malloc(sizeof(int32_t) * (size_t)(maxB * maxS));
  int32_t* tin = malloc(sizeof(int32_t) * (size_t)(maxB * maxT));
  int32_t* tout = malloc(sizeof(int32_t) * (size_t)(maxB * maxT));
  int32_t slen[8], tlen[8];
  int64_t idx[8];
  int seen[NUM_LINES] = {0};
  for (int64_t k = 0; k < K; ++k) {
    int64_t B = 0, S = 0, T = 0, position = -1;
    CHECK_OK(fwp_pair_data_position(data, &position));
    assert_int_equal(position, k);
    CHECK_OK(fwp_pair_data_peek(data, &B, &S, &T));
    assert_true(B * (S > T ? S : T) <= 40 && B <= 5);
    if (k == 0) {
      EXPECT_ERROR(fwp_pair_data_next(data, B, S, T + 1, src, slen, tin, tout, tlen, idx), FWP_ERR_SHAPE_MISMATCH,
                   "fwp_pair_data_peek");
      EXPECT_ERROR(fwp_pair_data_next(data, B, S, T, NULL, slen, tin, tout, tlen, idx), FWP_ERR_NULL_POINTER,
                   "source");
    }
    CHECK_OK(fwp_pair_data_next(data, B, S, T, src, slen, tin, tout, tlen, k % 2 ? idx : NULL));
    if (k % 2 == 0) continue; /* pair indices were not asked for */
    for (int64_t r = 0; r < B; ++r) {
      seen[idx[r]] += 1;
      int32_t pair_src[16], pair_tgt[16];
      int64_t n = 0, m = 0;
      CHECK_OK(fwp_pair_data_get_pair(data, idx[r], pair_src, 16, &n, pair_tgt, 16, &m));
      assert_int_equal(slen[r], n + 1);
      assert_int_equal(tlen[r], m + 1);
      assert_memory_equal(src + r * S, pair_src, sizeof(int32_t) * (size_t)n);
      assert_int_equal(src[r * S + n], info.eos_id);
      for (int64_t s = n + 1; s < S; ++s) assert_int_equal(src[r * S + s], info.pad_id);
      assert_int_equal(tin[r * T], info.bos_id);
      assert_memory_equal(tin + r * T + 1, pair_tgt, sizeof(int32_t) * (size_t)m);
      assert_memory_equal(tout + r * T, pair_tgt, sizeof(int32_t) * (size_t)m);
      assert_int_equal(tout[r * T + m], info.eos_id);
      for (int64_t t = m + 1; t < T; ++t) assert_int_equal(tout[r * T + t], info.pad_id);
    }
  }
  int64_t epoch = 0;
  CHECK_OK(fwp_pair_data_epoch(data, &epoch));
  assert_int_equal(epoch, 1);
  for (int i = 0; i < NUM_LINES; ++i) assert_true(seen[i] <= 1); /* no pair twice in one epoch */

  /* get_pair: the size query, capacities, range. */
  int64_t n = 0, m = 0;
  int32_t one[1];
  CHECK_OK(fwp_pair_data_get_pair(data, 0, NULL, 0, &n, NULL, 0, &m));
  assert_true(n >= 1 && m >= 1);
  EXPECT_ERROR(fwp_pair_data_get_pair(data, NUM_LINES - 1, NULL, 0, &n, NULL, 0, &m), FWP_ERR_OUT_OF_RANGE, "index");
  EXPECT_ERROR(fwp_pair_data_get_pair(data, -1, NULL, 0, &n, NULL, 0, &m), FWP_ERR_OUT_OF_RANGE, "index");
  EXPECT_ERROR(fwp_pair_data_get_pair(data, 8, one, 1, &n, one, 1, &m), FWP_ERR_SHAPE_MISMATCH, "capacities");
  EXPECT_ERROR(fwp_pair_data_get_pair(data, 0, one, -1, &n, one, 1, &m), FWP_ERR_INVALID_ARGUMENT, "capacity");
  EXPECT_ERROR(fwp_pair_data_get_pair(data, 0, NULL, 0, NULL, NULL, 0, &m), FWP_ERR_NULL_POINTER, "source_length");

  /* reset, and the getters' arguments. */
  EXPECT_ERROR(fwp_pair_data_reset(data, -1), FWP_ERR_INVALID_ARGUMENT, "epoch");
  CHECK_OK(fwp_pair_data_reset(data, 0));
  CHECK_OK(fwp_pair_data_epoch(data, &epoch));
  assert_int_equal(epoch, 0);
  EXPECT_ERROR(fwp_pair_data_epoch(data, NULL), FWP_ERR_NULL_POINTER, "epoch");
  EXPECT_ERROR(fwp_pair_data_epoch(NULL, &epoch), FWP_ERR_NULL_POINTER, "data");
  EXPECT_ERROR(fwp_pair_data_peek(data, NULL, &n, &m), FWP_ERR_NULL_POINTER, "batch_size");
  EXPECT_ERROR(fwp_pair_data_info(data, NULL), FWP_ERR_NULL_POINTER, "info");

  /* Another kind is refused, and this kind by the other kinds' functions. */
  fwp_retrieval_data* generator = NULL;
  CHECK_OK(fwp_retrieval_data_create(1, 4, 1, &generator));
  EXPECT_ERROR(fwp_pair_data_epoch(generator, &epoch), FWP_ERR_INVALID_ARGUMENT, "not a pair data source");
  EXPECT_ERROR(fwp_token_data_epoch(data, &epoch), FWP_ERR_INVALID_ARGUMENT, "not a token data source");

  /* A checkpoint stores the position; a fresh source resumes with the same batches. */
  fwp_context_config cc;
  fwp_context_config_init(&cc);
  cc.num_threads = 1;
  fwp_context* ctx = NULL;
  CHECK_OK(fwp_context_create(&cc, &ctx));
  fwp_retrieval_config rc;
  fwp_retrieval_config_init(&rc);
  rc.num_keys = 4;
  rc.d_head = 8;
  fwp_model* model = NULL;
  CHECK_OK(fwp_model_create_retrieval(ctx, &rc, &model));
  for (int64_t k = 0; k < K / 2 + 1; ++k) {
    int64_t B = 0, S = 0, T = 0;
    CHECK_OK(fwp_pair_data_peek(data, &B, &S, &T));
    CHECK_OK(fwp_pair_data_next(data, B, S, T, src, slen, tin, tout, tlen, NULL));
  }
  CHECK_OK(fwp_checkpoint_save(ckpt_path, model, NULL, data, NULL));
  fwp_data* resumed = NULL;
  CHECK_OK(fwp_pair_data_create(pairs_path, &cfg, &resumed));
  CHECK_OK(fwp_checkpoint_load(ckpt_path, model, NULL, resumed));
  int32_t* src2 = malloc(sizeof(int32_t) * (size_t)(maxB * maxS));
  int32_t* tin2 = malloc(sizeof(int32_t) * (size_t)(maxB * maxT));
  int32_t* tout2 = malloc(sizeof(int32_t) * (size_t)(maxB * maxT));
  int32_t slen2[8], tlen2[8];
  for (int64_t k = 0; k < K; ++k) { /* across the epoch boundary */
    int64_t B = 0, S = 0, T = 0, B2 = 0, S2 = 0, T2 = 0;
    CHECK_OK(fwp_pair_data_peek(data, &B, &S, &T));
    CHECK_OK(fwp_pair_data_peek(resumed, &B2, &S2, &T2));
    assert_true(B == B2 && S == S2 && T == T2);
    CHECK_OK(fwp_pair_data_next(data, B, S, T, src, slen, tin, tout, tlen, NULL));
    CHECK_OK(fwp_pair_data_next(resumed, B, S, T, src2, slen2, tin2, tout2, tlen2, NULL));
    assert_memory_equal(src, src2, sizeof(int32_t) * (size_t)(B * S));
    assert_memory_equal(tin, tin2, sizeof(int32_t) * (size_t)(B * T));
    assert_memory_equal(tout, tout2, sizeof(int32_t) * (size_t)(B * T));
    assert_memory_equal(slen, slen2, sizeof(int32_t) * (size_t)B);
    assert_memory_equal(tlen, tlen2, sizeof(int32_t) * (size_t)B);
  }
  /* A source with other settings refuses the stored position. */
  fwp_data* other = NULL;
  cfg.seed = 100;
  CHECK_OK(fwp_pair_data_create(pairs_path, &cfg, &other));
  EXPECT_ERROR(fwp_checkpoint_load(ckpt_path, model, NULL, other), FWP_ERR_FORMAT, "seed");
  EXPECT_ERROR(fwp_checkpoint_load(ckpt_path, model, NULL, generator), FWP_ERR_FORMAT, "parallel_text");

  free(src);
  free(tin);
  free(tout);
  free(src2);
  free(tin2);
  free(tout2);
  fwp_model_destroy(model);
  fwp_context_destroy(ctx);
  fwp_retrieval_data_destroy(generator);
  fwp_data_destroy(other);
  fwp_data_destroy(resumed);
  fwp_data_destroy(data);
}

static void test_evaluation_order(void** state) {
  (void)state;
  fwp_pair_data_config cfg;
  fwp_pair_data_config_init(&cfg);
  cfg.shuffle = 0;
  cfg.max_tokens = 30;
  fwp_data* data = NULL;
  CHECK_OK(fwp_pair_data_create(pairs_path, &cfg, &data));
  int64_t K = 0, expected = 0;
  CHECK_OK(fwp_pair_data_batches_per_epoch(data, &K));
  int32_t src[64], tin[64], tout[64], slen[8], tlen[8];
  int64_t idx[8];
  for (int64_t k = 0; k < K; ++k) {
    int64_t B = 0, S = 0, T = 0;
    CHECK_OK(fwp_pair_data_peek(data, &B, &S, &T));
    assert_true(B * S <= 64 && B * T <= 64 && B <= 8);
    CHECK_OK(fwp_pair_data_next(data, B, S, T, src, slen, tin, tout, tlen, idx));
    for (int64_t r = 0; r < B; ++r) assert_int_equal(idx[r], expected++);
  }
  assert_int_equal(expected, NUM_LINES - 1);
  fwp_data_destroy(data);
}

static void test_sentencepiece_pad_bos(void** state) {
  (void)state;
  fwp_sentencepiece_config cfg;
  fwp_sentencepiece_config_init(&cfg);
  assert_int_equal(cfg.pad_bos, 0);
  const char* paths[] = {src_path, tgt_path};
  fwp_tokenizer* tok = NULL;
  cfg.pad_bos = 2;
  EXPECT_ERROR(fwp_tokenizer_train_sentencepiece(paths, 2, &cfg, &tok), FWP_ERR_INVALID_ARGUMENT, "pad_bos");
  cfg.pad_bos = 1;
  cfg.vocab_size = 4;
  EXPECT_ERROR(fwp_tokenizer_train_sentencepiece(paths, 2, &cfg, &tok), FWP_ERR_INVALID_ARGUMENT, "vocab_size");
  if (!fwp_tokenizer_sentencepiece_available()) return;
  cfg.model_type = FWP_SENTENCEPIECE_BPE;
  cfg.vocab_size = 30;
  CHECK_OK(fwp_tokenizer_train_sentencepiece(paths, 2, &cfg, &tok));
  int64_t vocab = 0, model_vocab = 0;
  int32_t pad = -1, bos = -1, eos = -1, unk = -1;
  CHECK_OK(fwp_tokenizer_vocab_size(tok, &vocab));
  CHECK_OK(fwp_pair_special_ids(tok, &model_vocab, &pad, &bos, &eos, &unk));
  /* The tokenizer's own ids: nothing added. */
  assert_int_equal(model_vocab, vocab);
  assert_int_equal(pad, 2);
  assert_int_equal(bos, 3);
  assert_int_equal(eos, 0);
  assert_int_equal(unk, 1);
  /* Decoding drops them. */
  int32_t ids[16];
  int64_t n = 0;
  ids[0] = bos;
  CHECK_OK(fwp_tokenizer_encode(tok, "el gato", 7, 0, ids + 1, 14, &n));
  ids[n + 1] = pad;
  ids[n + 2] = eos;
  char text[64];
  size_t length = 0;
  CHECK_OK(fwp_tokenizer_decode(tok, ids, n + 3, text, sizeof text, &length));
  assert_string_equal(text, "el gato\n");
  fwp_pair_encode_config pc;
  fwp_pair_encode_config_init(&pc);
  fwp_pair_info info;
  info.struct_size = sizeof info;
  char sp_pairs[300];
  snprintf(sp_pairs, sizeof sp_pairs, "%s/sp.pairs", dir);
  CHECK_OK(fwp_pair_file_encode(tok, src_path, tgt_path, sp_pairs, &pc, &info));
  assert_int_equal(info.vocab_size, vocab);
  assert_int_equal(info.tokenizer_vocab_size, vocab);
  assert_int_equal(info.pad_id, 2);
  assert_int_equal(info.bos_id, 3);
  fwp_tokenizer_destroy(tok);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_encode),
      cmocka_unit_test(test_damaged_files),
      cmocka_unit_test(test_data_source),
      cmocka_unit_test(test_evaluation_order),
      cmocka_unit_test(test_sentencepiece_pad_bos),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
