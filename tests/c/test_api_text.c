/* C API contract of tokenizers, token files and the token data source:
 * NULL arguments, struct_size checks, bad fields (status + a message naming
 * the argument), encode/decode buffer protocols, a file round trip, the data
 * source on another kind, and a checkpoint round trip of the data source. */
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

static char dir[] = "/tmp/fwp_c_text_XXXXXX";
static char train_path[256], tok_path[256], ids_path[256], empty_path[256], ckpt_path[256];

static void write_file(const char* path, const char* text) {
  FILE* f = fopen(path, "wb");
  assert_non_null(f);
  fputs(text, f);
  fclose(f);
}

static int setup(void** state) {
  (void)state;
  if (!mkdtemp(dir)) return -1;
  snprintf(train_path, sizeof train_path, "%s/train.txt", dir);
  snprintf(tok_path, sizeof tok_path, "%s/vocab.tok", dir);
  snprintf(ids_path, sizeof ids_path, "%s/train.ids", dir);
  snprintf(empty_path, sizeof empty_path, "%s/empty.txt", dir);
  snprintf(ckpt_path, sizeof ckpt_path, "%s/c.safetensors", dir);
  FILE* f = fopen(train_path, "wb");
  if (!f) return -1;
  for (int i = 0; i < 200; ++i) fputs("the cat sat on the mat .\nthe dog ran\n\n", f);
  fclose(f);
  write_file(empty_path, "");
  return 0;
}

static int teardown(void** state) {
  (void)state;
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return system(cmd) == 0 ? 0 : -1;
}

static fwp_tokenizer* train_word(void) {
  const char* paths[] = {train_path};
  fwp_word_tokenizer_config cfg;
  fwp_word_tokenizer_config_init(&cfg);
  fwp_tokenizer* tok = NULL;
  CHECK_OK(fwp_tokenizer_train_word(paths, 1, &cfg, &tok));
  assert_non_null(tok);
  return tok;
}

/* ---- tokenizers ---------------------------------------------------------------------------------- */

static void test_word_training_arguments(void** state) {
  (void)state;
  const char* paths[] = {train_path};
  const char* null_path[] = {NULL};
  const char* empty_name[] = {""};
  const char* empty_file[] = {empty_path};
  fwp_word_tokenizer_config cfg;
  fwp_word_tokenizer_config_init(&cfg);
  assert_int_equal(cfg.struct_size, sizeof cfg);
  assert_int_equal(cfg.min_count, 1);
  assert_int_equal(cfg.max_size, 0);
  fwp_word_tokenizer_config_init(NULL);
  fwp_tokenizer* tok = (fwp_tokenizer*)&cfg; /* must be reset to NULL on failure */
  EXPECT_ERROR(fwp_tokenizer_train_word(paths, 1, &cfg, NULL), FWP_ERR_NULL_POINTER, "out");
  EXPECT_ERROR(fwp_tokenizer_train_word(NULL, 1, &cfg, &tok), FWP_ERR_NULL_POINTER, "paths");
  assert_null(tok);
  EXPECT_ERROR(fwp_tokenizer_train_word(paths, 0, &cfg, &tok), FWP_ERR_INVALID_ARGUMENT, "num_paths");
  EXPECT_ERROR(fwp_tokenizer_train_word(null_path, 1, &cfg, &tok), FWP_ERR_NULL_POINTER, "paths[0]");
  EXPECT_ERROR(fwp_tokenizer_train_word(empty_name, 1, &cfg, &tok), FWP_ERR_INVALID_ARGUMENT, "paths[0]");
  EXPECT_ERROR(fwp_tokenizer_train_word(paths, 1, NULL, &tok), FWP_ERR_NULL_POINTER, "config");
  fwp_word_tokenizer_config bad = cfg;
  bad.struct_size = 0;
  EXPECT_ERROR(fwp_tokenizer_train_word(paths, 1, &bad, &tok), FWP_ERR_INVALID_ARGUMENT, "struct_size");
  bad.struct_size = sizeof bad + 8;
  EXPECT_ERROR(fwp_tokenizer_train_word(paths, 1, &bad, &tok), FWP_ERR_INVALID_ARGUMENT, "struct_size");
  bad = cfg;
  bad.min_count = 0;
  EXPECT_ERROR(fwp_tokenizer_train_word(paths, 1, &bad, &tok), FWP_ERR_INVALID_ARGUMENT, "min_count");
  bad = cfg;
  bad.max_size = 1;
  EXPECT_ERROR(fwp_tokenizer_train_word(paths, 1, &bad, &tok), FWP_ERR_INVALID_ARGUMENT, "max_size");
  EXPECT_ERROR(fwp_tokenizer_train_word(empty_file, 1, &cfg, &tok), FWP_ERR_INVALID_ARGUMENT, "no words");
  assert_null(tok);
}

static void test_word_tokenizer_queries(void** state) {
  (void)state;
  fwp_tokenizer* tok = train_word();
  fwp_tokenizer_kind kind = FWP_TOKENIZER_SENTENCEPIECE;
  CHECK_OK(fwp_tokenizer_get_kind(tok, &kind));
  assert_int_equal(kind, FWP_TOKENIZER_WORD);
  int64_t vocab = 0;
  CHECK_OK(fwp_tokenizer_vocab_size(tok, &vocab));
  assert_int_equal(vocab, 10); /* <eos>, 8 words, <unk> */
  int32_t eos = -1, unk = -1, id = -7;
  CHECK_OK(fwp_tokenizer_eos_id(tok, &eos));
  CHECK_OK(fwp_tokenizer_unk_id(tok, &unk));
  assert_int_equal(eos, 0);
  assert_int_equal(unk, 9);
  CHECK_OK(fwp_tokenizer_token_to_id(tok, "the", 3, &id));
  assert_int_equal(id, 1); /* the most frequent word */
  CHECK_OK(fwp_tokenizer_token_to_id(tok, "thezzz", 3, &id)); /* only the first 3 bytes count */
  assert_int_equal(id, 1);
  CHECK_OK(fwp_tokenizer_token_to_id(tok, "zebra", 5, &id));
  assert_int_equal(id, -1);
  CHECK_OK(fwp_tokenizer_token_to_id(tok, NULL, 0, &id));
  assert_int_equal(id, -1);

  char buf[8];
  size_t len = 0;
  CHECK_OK(fwp_tokenizer_id_to_token(tok, 0, buf, sizeof buf, &len));
  assert_string_equal(buf, "<eos>");
  assert_int_equal(len, 5);
  CHECK_OK(fwp_tokenizer_id_to_token(tok, 0, buf, 3, &len)); /* truncated like snprintf */
  assert_string_equal(buf, "<e");
  assert_int_equal(len, 5);
  CHECK_OK(fwp_tokenizer_id_to_token(tok, 0, NULL, 0, &len));
  assert_int_equal(len, 5);

  EXPECT_ERROR(fwp_tokenizer_get_kind(NULL, &kind), FWP_ERR_NULL_POINTER, "tokenizer");
  EXPECT_ERROR(fwp_tokenizer_get_kind(tok, NULL), FWP_ERR_NULL_POINTER, "kind");
  EXPECT_ERROR(fwp_tokenizer_vocab_size(tok, NULL), FWP_ERR_NULL_POINTER, "vocab_size");
  EXPECT_ERROR(fwp_tokenizer_eos_id(NULL, &eos), FWP_ERR_NULL_POINTER, "tokenizer");
  EXPECT_ERROR(fwp_tokenizer_unk_id(tok, NULL), FWP_ERR_NULL_POINTER, "id");
  EXPECT_ERROR(fwp_tokenizer_token_to_id(tok, NULL, 2, &id), FWP_ERR_NULL_POINTER, "token");
  EXPECT_ERROR(fwp_tokenizer_token_to_id(tok, "a", 1, NULL), FWP_ERR_NULL_POINTER, "id");
  EXPECT_ERROR(fwp_tokenizer_id_to_token(tok, 10, buf, sizeof buf, &len), FWP_ERR_OUT_OF_RANGE, "id 10");
  EXPECT_ERROR(fwp_tokenizer_id_to_token(tok, -1, buf, sizeof buf, &len), FWP_ERR_OUT_OF_RANGE, "id -1");
  EXPECT_ERROR(fwp_tokenizer_id_to_token(tok, 0, NULL, 4, &len), FWP_ERR_NULL_POINTER, "buffer");
  EXPECT_ERROR(fwp_tokenizer_id_to_token(tok, 0, buf, sizeof buf, NULL), FWP_ERR_NULL_POINTER, "length");
  fwp_tokenizer_destroy(tok);
  fwp_tokenizer_destroy(NULL);
}

static void test_encode_decode_buffers(void** state) {
  (void)state;
  fwp_tokenizer* tok = train_word();
  const char* text = "the  cat zebra\n\nran";
  int64_t count = -1;
  CHECK_OK(fwp_tokenizer_encode(tok, text, strlen(text), 1, NULL, 0, &count)); /* size query */
  assert_int_equal(count, 7); /* the cat <unk> <eos> | <eos> | ran <eos> */
  int32_t ids[8];
  for (int i = 0; i < 8; ++i) ids[i] = -5;
  EXPECT_ERROR(fwp_tokenizer_encode(tok, text, strlen(text), 1, ids, 5, &count), FWP_ERR_SHAPE_MISMATCH,
               "capacity");
  assert_int_equal(count, 7);
  assert_int_equal(ids[0], -5); /* untouched */
  CHECK_OK(fwp_tokenizer_encode(tok, text, strlen(text), 1, ids, 8, &count));
  int32_t the = -1, unk = -1;
  CHECK_OK(fwp_tokenizer_token_to_id(tok, "the", 3, &the));
  CHECK_OK(fwp_tokenizer_unk_id(tok, &unk));
  assert_int_equal(ids[0], the);
  assert_int_equal(ids[2], unk);
  assert_int_equal(ids[3], 0);
  assert_int_equal(ids[4], 0);
  assert_int_equal(ids[5] != 0, 1);
  assert_int_equal(ids[6], 0);
  CHECK_OK(fwp_tokenizer_encode(tok, text, strlen(text), 0, ids, 8, &count));
  assert_int_equal(count, 6); /* no <eos> after the unterminated last line */
  CHECK_OK(fwp_tokenizer_encode(tok, NULL, 0, 1, NULL, 0, &count));
  assert_int_equal(count, 0);

  EXPECT_ERROR(fwp_tokenizer_encode(NULL, text, 3, 1, ids, 8, &count), FWP_ERR_NULL_POINTER, "tokenizer");
  EXPECT_ERROR(fwp_tokenizer_encode(tok, NULL, 3, 1, ids, 8, &count), FWP_ERR_NULL_POINTER, "text");
  EXPECT_ERROR(fwp_tokenizer_encode(tok, text, 3, 1, ids, 8, NULL), FWP_ERR_NULL_POINTER, "count");
  EXPECT_ERROR(fwp_tokenizer_encode(tok, text, 3, 2, ids, 8, &count), FWP_ERR_INVALID_ARGUMENT, "add_eos");
  EXPECT_ERROR(fwp_tokenizer_encode(tok, text, 3, 1, ids, -1, &count), FWP_ERR_INVALID_ARGUMENT, "capacity");
  EXPECT_ERROR(fwp_tokenizer_encode(tok, text, 3, 1, NULL, 8, &count), FWP_ERR_NULL_POINTER, "ids");

  /* decode: the 7 ids of the text with add_eos */
  CHECK_OK(fwp_tokenizer_encode(tok, text, strlen(text), 1, ids, 8, &count));
  size_t len = 0;
  CHECK_OK(fwp_tokenizer_decode(tok, ids, count, NULL, 0, &len));
  const char* expected = "the cat <unk>\n\nran\n";
  assert_int_equal(len, strlen(expected));
  char out[64];
  memset(out, 'x', sizeof out);
  EXPECT_ERROR(fwp_tokenizer_decode(tok, ids, count, out, len, &len), FWP_ERR_SHAPE_MISMATCH, "capacity");
  assert_int_equal(len, strlen(expected));
  assert_int_equal(out[0], 'x'); /* untouched */
  CHECK_OK(fwp_tokenizer_decode(tok, ids, count, out, len + 1, &len));
  assert_string_equal(out, expected);
  int32_t bad[2] = {1, 10};
  EXPECT_ERROR(fwp_tokenizer_decode(tok, bad, 2, out, sizeof out, &len), FWP_ERR_OUT_OF_RANGE, "ids[1]");
  assert_int_equal(len, 0);
  EXPECT_ERROR(fwp_tokenizer_decode(tok, ids, -1, out, sizeof out, &len), FWP_ERR_INVALID_ARGUMENT, "num_ids");
  EXPECT_ERROR(fwp_tokenizer_decode(tok, NULL, 2, out, sizeof out, &len), FWP_ERR_NULL_POINTER, "ids");
  EXPECT_ERROR(fwp_tokenizer_decode(tok, ids, 2, NULL, 5, &len), FWP_ERR_NULL_POINTER, "text");
  EXPECT_ERROR(fwp_tokenizer_decode(tok, ids, 2, out, sizeof out, NULL), FWP_ERR_NULL_POINTER, "length");
  CHECK_OK(fwp_tokenizer_decode(tok, NULL, 0, out, sizeof out, &len));
  assert_string_equal(out, "");
  fwp_tokenizer_destroy(tok);
}

static void test_save_load(void** state) {
  (void)state;
  fwp_tokenizer* tok = train_word();
  CHECK_OK(fwp_tokenizer_save(tok, tok_path));
  EXPECT_ERROR(fwp_tokenizer_save(NULL, tok_path), FWP_ERR_NULL_POINTER, "tokenizer");
  EXPECT_ERROR(fwp_tokenizer_save(tok, NULL), FWP_ERR_NULL_POINTER, "path");
  EXPECT_ERROR(fwp_tokenizer_save(tok, ""), FWP_ERR_INVALID_ARGUMENT, "path");
  fwp_tokenizer* back = (fwp_tokenizer*)tok;
  EXPECT_ERROR(fwp_tokenizer_load(NULL, &back), FWP_ERR_NULL_POINTER, "path");
  assert_null(back);
  EXPECT_ERROR(fwp_tokenizer_load(tok_path, NULL), FWP_ERR_NULL_POINTER, "out");
  EXPECT_ERROR(fwp_tokenizer_load(train_path, &back), FWP_ERR_FORMAT, "not an fwp tokenizer");
  EXPECT_ERROR(fwp_tokenizer_load(ids_path, &back), FWP_ERR_IO, "cannot open");
  CHECK_OK(fwp_tokenizer_load(tok_path, &back));
  int64_t a = 0, b = 0;
  CHECK_OK(fwp_tokenizer_vocab_size(tok, &a));
  CHECK_OK(fwp_tokenizer_vocab_size(back, &b));
  assert_int_equal(a, b);
  fwp_tokenizer_destroy(back);
  fwp_tokenizer_destroy(tok);
}

static void test_sentencepiece(void** state) {
  (void)state;
  const char* paths[] = {train_path};
  fwp_sentencepiece_config cfg;
  fwp_sentencepiece_config_init(&cfg);
  assert_int_equal(cfg.struct_size, sizeof cfg);
  assert_int_equal(cfg.model_type, FWP_SENTENCEPIECE_UNIGRAM);
  fwp_tokenizer* tok = NULL;
  fwp_sentencepiece_config bad = cfg;
  bad.model_type = (fwp_sentencepiece_model)7;
  EXPECT_ERROR(fwp_tokenizer_train_sentencepiece(paths, 1, &bad, &tok), FWP_ERR_OUT_OF_RANGE, "model_type");
  bad = cfg;
  bad.vocab_size = 2;
  EXPECT_ERROR(fwp_tokenizer_train_sentencepiece(paths, 1, &bad, &tok), FWP_ERR_INVALID_ARGUMENT, "vocab_size");
  bad = cfg;
  bad.character_coverage = 0.5f;
  EXPECT_ERROR(fwp_tokenizer_train_sentencepiece(paths, 1, &bad, &tok), FWP_ERR_INVALID_ARGUMENT,
               "character_coverage");
  bad = cfg;
  bad.num_threads = 0;
  EXPECT_ERROR(fwp_tokenizer_train_sentencepiece(paths, 1, &bad, &tok), FWP_ERR_INVALID_ARGUMENT, "num_threads");
  bad = cfg;
  bad.byte_fallback = 2;
  EXPECT_ERROR(fwp_tokenizer_train_sentencepiece(paths, 1, &bad, &tok), FWP_ERR_INVALID_ARGUMENT, "byte_fallback");
  bad = cfg;
  bad.max_sentence_length = 0;
  EXPECT_ERROR(fwp_tokenizer_train_sentencepiece(paths, 1, &bad, &tok), FWP_ERR_INVALID_ARGUMENT,
               "max_sentence_length");
  bad.struct_size = 3;
  EXPECT_ERROR(fwp_tokenizer_train_sentencepiece(paths, 1, &bad, &tok), FWP_ERR_INVALID_ARGUMENT, "struct_size");
  assert_null(tok);

  cfg.vocab_size = 20;
  cfg.model_type = FWP_SENTENCEPIECE_BPE;
  if (!fwp_tokenizer_sentencepiece_available()) {
    EXPECT_ERROR(fwp_tokenizer_train_sentencepiece(paths, 1, &cfg, &tok), FWP_ERR_UNSUPPORTED, "SentencePiece");
    return;
  }
  CHECK_OK(fwp_tokenizer_train_sentencepiece(paths, 1, &cfg, &tok));
  fwp_tokenizer_kind kind = FWP_TOKENIZER_WORD;
  CHECK_OK(fwp_tokenizer_get_kind(tok, &kind));
  assert_int_equal(kind, FWP_TOKENIZER_SENTENCEPIECE);
  const char* text = "the dog sat on the mat .\n";
  int32_t ids[64];
  int64_t count = 0;
  CHECK_OK(fwp_tokenizer_encode(tok, text, strlen(text), 1, ids, 64, &count));
  char out[128];
  size_t len = 0;
  CHECK_OK(fwp_tokenizer_decode(tok, ids, count, out, sizeof out, &len));
  assert_string_equal(out, text);
  fwp_tokenizer_destroy(tok);
}

/* ---- token files and the data source ------------------------------------------------------------- */

static void test_token_files(void** state) {
  (void)state;
  fwp_tokenizer* tok = train_word();
  int64_t n = -1, vocab = -1, n2 = -1;
  EXPECT_ERROR(fwp_token_file_encode(NULL, train_path, ids_path, &n), FWP_ERR_NULL_POINTER, "tokenizer");
  EXPECT_ERROR(fwp_token_file_encode(tok, NULL, ids_path, &n), FWP_ERR_NULL_POINTER, "text_path");
  EXPECT_ERROR(fwp_token_file_encode(tok, train_path, NULL, &n), FWP_ERR_NULL_POINTER, "token_path");
  EXPECT_ERROR(fwp_token_file_encode(tok, empty_path, ids_path, &n), FWP_ERR_INVALID_ARGUMENT, "empty");
  EXPECT_ERROR(fwp_token_file_encode(tok, train_path, train_path, &n), FWP_ERR_INVALID_ARGUMENT, "text file");
  CHECK_OK(fwp_token_file_encode(tok, train_path, ids_path, &n));
  assert_int_equal(n, 200 * (8 + 4 + 1)); /* 7 words + <eos>, 3 + <eos>, <eos> */
  CHECK_OK(fwp_token_file_encode(tok, train_path, ids_path, NULL));
  CHECK_OK(fwp_token_file_info(ids_path, &vocab, &n2));
  assert_int_equal(vocab, 10);
  assert_int_equal(n2, n);
  CHECK_OK(fwp_token_file_info(ids_path, NULL, NULL));
  EXPECT_ERROR(fwp_token_file_info(NULL, &vocab, &n2), FWP_ERR_NULL_POINTER, "path");
  EXPECT_ERROR(fwp_token_file_info(train_path, &vocab, &n2), FWP_ERR_FORMAT, "not an fwp token file");

  int32_t head[9];
  CHECK_OK(fwp_token_file_read(ids_path, 0, head, 9));
  int32_t expected[9];
  int64_t count = 0;
  CHECK_OK(fwp_tokenizer_encode(tok, "the cat sat on the mat .\nthe", 28, 0, expected, 9, &count));
  assert_int_equal(count, 9);
  assert_memory_equal(head, expected, sizeof head);
  EXPECT_ERROR(fwp_token_file_read(ids_path, n - 1, head, 2), FWP_ERR_OUT_OF_RANGE, "outside");
  EXPECT_ERROR(fwp_token_file_read(ids_path, -1, head, 1), FWP_ERR_OUT_OF_RANGE, "outside");
  EXPECT_ERROR(fwp_token_file_read(ids_path, 0, NULL, 1), FWP_ERR_NULL_POINTER, "out");
  EXPECT_ERROR(fwp_token_file_read(NULL, 0, head, 1), FWP_ERR_NULL_POINTER, "path");
  CHECK_OK(fwp_token_file_read(ids_path, n, NULL, 0));
  fwp_tokenizer_destroy(tok);
}

static void test_token_data(void** state) {
  (void)state;
  fwp_tokenizer* tok = train_word();
  int64_t n = 0;
  CHECK_OK(fwp_token_file_encode(tok, train_path, ids_path, &n));
  fwp_tokenizer_destroy(tok);

  fwp_token_data_config cfg;
  fwp_token_data_config_init(&cfg);
  assert_int_equal(cfg.struct_size, sizeof cfg);
  assert_int_equal(cfg.batch_size, 8);
  assert_int_equal(cfg.segment_length, 256);
  cfg.batch_size = 4;
  cfg.segment_length = 16;
  fwp_data* data = (fwp_data*)&cfg;
  EXPECT_ERROR(fwp_token_data_create(ids_path, &cfg, NULL), FWP_ERR_NULL_POINTER, "out");
  EXPECT_ERROR(fwp_token_data_create(NULL, &cfg, &data), FWP_ERR_NULL_POINTER, "token_path");
  assert_null(data);
  EXPECT_ERROR(fwp_token_data_create(ids_path, NULL, &data), FWP_ERR_NULL_POINTER, "config");
  fwp_token_data_config bad = cfg;
  bad.struct_size = 1;
  EXPECT_ERROR(fwp_token_data_create(ids_path, &bad, &data), FWP_ERR_INVALID_ARGUMENT, "struct_size");
  bad = cfg;
  bad.batch_size = 0;
  EXPECT_ERROR(fwp_token_data_create(ids_path, &bad, &data), FWP_ERR_INVALID_ARGUMENT, "batch_size");
  bad = cfg;
  bad.segment_length = n; /* longer than any stream */
  EXPECT_ERROR(fwp_token_data_create(ids_path, &bad, &data), FWP_ERR_INVALID_ARGUMENT, "too few");
  EXPECT_ERROR(fwp_token_data_create(train_path, &cfg, &data), FWP_ERR_FORMAT, "token file");
  CHECK_OK(fwp_token_data_create(ids_path, &cfg, &data));

  fwp_data_kind kind = FWP_DATA_RETRIEVAL;
  CHECK_OK(fwp_data_get_kind(data, &kind));
  assert_int_equal(kind, FWP_DATA_TOKEN_FILE);
  int64_t epoch = -1, segment = -1, per_epoch = -1, vocab = -1, tokens = -1;
  CHECK_OK(fwp_token_data_epoch(data, &epoch));
  CHECK_OK(fwp_token_data_position(data, &segment));
  CHECK_OK(fwp_token_data_segments_per_epoch(data, &per_epoch));
  CHECK_OK(fwp_token_data_vocab_size(data, &vocab));
  CHECK_OK(fwp_token_data_num_tokens(data, &tokens));
  assert_int_equal(epoch, 0);
  assert_int_equal(segment, 0);
  assert_int_equal(per_epoch, (n / 4 - 1) / 16);
  assert_int_equal(vocab, 10);
  assert_int_equal(tokens, n);
  fwp_token_data_config got;
  got.struct_size = sizeof got;
  CHECK_OK(fwp_token_data_get_config(data, &got));
  assert_int_equal(got.batch_size, 4);
  assert_int_equal(got.segment_length, 16);
  EXPECT_ERROR(fwp_token_data_get_config(data, NULL), FWP_ERR_NULL_POINTER, "config");

  int32_t x[64], y[64];
  EXPECT_ERROR(fwp_token_data_next(data, x, y, 63), FWP_ERR_SHAPE_MISMATCH, "count");
  EXPECT_ERROR(fwp_token_data_next(data, NULL, y, 64), FWP_ERR_NULL_POINTER, "inputs");
  EXPECT_ERROR(fwp_token_data_next(data, x, NULL, 64), FWP_ERR_NULL_POINTER, "targets");
  EXPECT_ERROR(fwp_token_data_next(NULL, x, y, 64), FWP_ERR_NULL_POINTER, "data");
  EXPECT_ERROR(fwp_token_data_epoch(data, NULL), FWP_ERR_NULL_POINTER, "epoch");
  CHECK_OK(fwp_token_data_position(data, &segment));
  assert_int_equal(segment, 0);
  CHECK_OK(fwp_token_data_next(data, x, y, 64));
  for (int t = 0; t < 15; ++t) assert_int_equal(y[t], x[t + 1]); /* next-token targets */
  CHECK_OK(fwp_token_data_position(data, &segment));
  assert_int_equal(segment, 1);

  /* Another kind of source is refused by the token functions, and the other way round. */
  fwp_retrieval_data* generator = NULL;
  CHECK_OK(fwp_retrieval_data_create(1, 4, 1, &generator));
  EXPECT_ERROR(fwp_token_data_next(generator, x, y, 64), FWP_ERR_INVALID_ARGUMENT, "not a token data source");
  EXPECT_ERROR(fwp_token_data_epoch(generator, &epoch), FWP_ERR_INVALID_ARGUMENT, "not a token data source");
  int64_t seq_len = 0;
  EXPECT_ERROR(fwp_retrieval_data_seq_len(data, &seq_len), FWP_ERR_INVALID_ARGUMENT, "not a retrieval generator");

  /* A checkpoint stores the position; a fresh source resumes from it. */
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
  CHECK_OK(fwp_checkpoint_save(ckpt_path, model, NULL, data, NULL));
  int32_t x2[64], y2[64], x3[64], y3[64];
  CHECK_OK(fwp_token_data_next(data, x2, y2, 64));
  fwp_data* resumed = NULL;
  CHECK_OK(fwp_token_data_create(ids_path, &cfg, &resumed));
  CHECK_OK(fwp_checkpoint_load(ckpt_path, model, NULL, resumed));
  CHECK_OK(fwp_token_data_next(resumed, x3, y3, 64));
  assert_memory_equal(x2, x3, sizeof x2);
  assert_memory_equal(y2, y3, sizeof y2);
  EXPECT_ERROR(fwp_checkpoint_load(ckpt_path, model, NULL, generator), FWP_ERR_FORMAT, "token_file");

  fwp_model_destroy(model);
  fwp_context_destroy(ctx);
  fwp_retrieval_data_destroy(generator);
  fwp_data_destroy(resumed);
  fwp_data_destroy(data);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_word_training_arguments), cmocka_unit_test(test_word_tokenizer_queries),
      cmocka_unit_test(test_encode_decode_buffers),   cmocka_unit_test(test_save_load),
      cmocka_unit_test(test_sentencepiece),           cmocka_unit_test(test_token_files),
      cmocka_unit_test(test_token_data),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
