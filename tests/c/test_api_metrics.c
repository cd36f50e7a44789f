/* C API contract of the translation metrics (fwp/metrics.h): the init
 * functions, a perfect and a partial score, and every error path (NULL
 * arrays and strings, counts, struct sizes, enum and option ranges, invalid
 * UTF-8) with its status and a message naming the argument; a failed call
 * leaves the result unchanged. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "fwp/fwp.h"
#include "api_test_macros.h"

static const char* hyps[] = {"the cat sat on the mat", "\xc2\xbf" "D\xc3\xb3nde est\xc3\xa1?"};
static const char* refs0[] = {"the cat sat on the mat", "\xc2\xbf" "D\xc3\xb3nde est\xc3\xa1?"};
static const char* refs1[] = {"a cat is on the mat", "where is it?"};

static void test_inits(void** state) {
  (void)state;
  fwp_bleu_options b;
  memset(&b, 0xab, sizeof b);
  fwp_bleu_options_init(&b);
  assert_int_equal(b.struct_size, sizeof b);
  assert_int_equal(b.tokenize, FWP_BLEU_TOKENIZE_13A);
  assert_int_equal(b.smooth_method, FWP_BLEU_SMOOTH_EXP);
  assert_int_equal(b.max_ngram_order, 4);
  assert_int_equal(b.effective_order, 0);
  fwp_chrf_options c;
  fwp_chrf_options_init(&c);
  assert_int_equal(c.struct_size, sizeof c);
  assert_int_equal(c.char_order, 6);
  assert_int_equal(c.word_order, 0);
  assert_true(c.beta == 2.0);
  fwp_bleu_result br;
  memset(&br, 0xab, sizeof br);
  fwp_bleu_result_init(&br);
  assert_int_equal(br.struct_size, sizeof br);
  assert_true(br.score == 0.0);
  fwp_chrf_result cr;
  fwp_chrf_result_init(&cr);
  assert_int_equal(cr.struct_size, sizeof cr);
  /* NULL is ignored. */
  fwp_bleu_options_init(NULL);
  fwp_bleu_result_init(NULL);
  fwp_chrf_options_init(NULL);
  fwp_chrf_result_init(NULL);
}

static void test_scores(void** state) {
  (void)state;
  const char* const* one[] = {refs0};
  fwp_bleu_result b;
  fwp_bleu_result_init(&b);
  CHECK_OK(fwp_bleu(hyps, 2, one, 1, NULL, &b));
  assert_true(fabs(b.score - 100.0) < 1e-9);
  assert_int_equal(b.hyp_len, 9); /* 6 tokens, then 13a splits off the "?": "¿Dónde", "está", "?" */
  fwp_chrf_result c;
  fwp_chrf_result_init(&c);
  CHECK_OK(fwp_chrf(hyps, 2, one, 1, NULL, &c));
  assert_true(fabs(c.score - 100.0) < 1e-9);

  /* A worse second reference stream never lowers BLEU (n-grams are clipped by the best reference). */
  const char* const* two[] = {refs1, refs0};
  fwp_bleu_result b2;
  fwp_bleu_result_init(&b2);
  CHECK_OK(fwp_bleu(hyps, 2, two, 2, NULL, &b2));
  assert_true(fabs(b2.score - 100.0) < 1e-9);
  const char* const* worse[] = {refs1};
  CHECK_OK(fwp_bleu(hyps, 2, worse, 1, NULL, &b2));
  assert_true(b2.score > 0.0 && b2.score < 100.0);
}

static void test_errors(void** state) {
  (void)state;
  const char* const* one[] = {refs0};
  fwp_bleu_result b;
  fwp_bleu_result_init(&b);
  b.score = -5.0;
  fwp_chrf_result c;
  fwp_chrf_result_init(&c);
  c.score = -5.0;

  EXPECT_ERROR(fwp_bleu(NULL, 2, one, 1, NULL, &b), FWP_ERR_NULL_POINTER, "hypotheses");
  EXPECT_ERROR(fwp_bleu(hyps, 2, NULL, 1, NULL, &b), FWP_ERR_NULL_POINTER, "references");
  EXPECT_ERROR(fwp_bleu(hyps, 2, one, 1, NULL, NULL), FWP_ERR_NULL_POINTER, "result");
  EXPECT_ERROR(fwp_chrf(NULL, 2, one, 1, NULL, &c), FWP_ERR_NULL_POINTER, "hypotheses");
  EXPECT_ERROR(fwp_chrf(hyps, 2, one, 1, NULL, NULL), FWP_ERR_NULL_POINTER, "result");
  const char* const* null_stream[] = {NULL};
  EXPECT_ERROR(fwp_bleu(hyps, 2, null_stream, 1, NULL, &b), FWP_ERR_NULL_POINTER, "references[0]");
  const char* with_null[] = {"a", NULL};
  const char* const* null_line[] = {with_null};
  EXPECT_ERROR(fwp_chrf(hyps, 2, null_line, 1, NULL, &c), FWP_ERR_NULL_POINTER, "references[0][1]");

  EXPECT_ERROR(fwp_bleu(hyps, 0, one, 1, NULL, &b), FWP_ERR_INVALID_ARGUMENT, "num_sentences");
  EXPECT_ERROR(fwp_bleu(hyps, -3, one, 1, NULL, &b), FWP_ERR_INVALID_ARGUMENT, "num_sentences");
  EXPECT_ERROR(fwp_bleu(hyps, 2, one, 0, NULL, &b), FWP_ERR_INVALID_ARGUMENT, "num_refs");
  EXPECT_ERROR(fwp_chrf(hyps, 2, one, 2000, NULL, &c), FWP_ERR_INVALID_ARGUMENT, "num_refs");

  const char* bad_utf8[] = {"fine", "caf\xc3"};
  EXPECT_ERROR(fwp_bleu(bad_utf8, 2, one, 1, NULL, &b), FWP_ERR_INVALID_ARGUMENT, "hypotheses[1] is not valid UTF-8");
  const char* const* bad_ref[] = {refs0, bad_utf8};
  EXPECT_ERROR(fwp_chrf(hyps, 2, bad_ref, 2, NULL, &c), FWP_ERR_INVALID_ARGUMENT, "references[1][1]");

  fwp_bleu_options bo;
  fwp_bleu_options_init(&bo);
  bo.struct_size = 0;
  EXPECT_ERROR(fwp_bleu(hyps, 2, one, 1, &bo, &b), FWP_ERR_INVALID_ARGUMENT, "options->struct_size");
  fwp_bleu_options_init(&bo);
  bo.tokenize = (fwp_bleu_tokenizer)7;
  EXPECT_ERROR(fwp_bleu(hyps, 2, one, 1, &bo, &b), FWP_ERR_OUT_OF_RANGE, "tokenize");
  fwp_bleu_options_init(&bo);
  bo.smooth_method = (fwp_bleu_smoothing)-1;
  EXPECT_ERROR(fwp_bleu(hyps, 2, one, 1, &bo, &b), FWP_ERR_OUT_OF_RANGE, "smooth_method");
  fwp_bleu_options_init(&bo);
  bo.max_ngram_order = 5;
  EXPECT_ERROR(fwp_bleu(hyps, 2, one, 1, &bo, &b), FWP_ERR_INVALID_ARGUMENT, "max_ngram_order");
  fwp_bleu_options_init(&bo);
  bo.effective_order = 2;
  EXPECT_ERROR(fwp_bleu(hyps, 2, one, 1, &bo, &b), FWP_ERR_INVALID_ARGUMENT, "effective_order");
  fwp_bleu_options_init(&bo);
  bo.smooth_value = NAN;
  EXPECT_ERROR(fwp_bleu(hyps, 2, one, 1, &bo, &b), FWP_ERR_INVALID_ARGUMENT, "smooth_value");
  fwp_bleu_result bad_result;
  fwp_bleu_result_init(&bad_result);
  bad_result.struct_size = 1000;
  EXPECT_ERROR(fwp_bleu(hyps, 2, one, 1, NULL, &bad_result), FWP_ERR_INVALID_ARGUMENT, "result->struct_size");

  fwp_chrf_options co;
  fwp_chrf_options_init(&co);
  co.char_order = 0;
  co.word_order = 0;
  EXPECT_ERROR(fwp_chrf(hyps, 2, one, 1, &co, &c), FWP_ERR_INVALID_ARGUMENT, "char_order + options->word_order");
  fwp_chrf_options_init(&co);
  co.char_order = 33;
  EXPECT_ERROR(fwp_chrf(hyps, 2, one, 1, &co, &c), FWP_ERR_INVALID_ARGUMENT, "char_order");
  fwp_chrf_options_init(&co);
  co.word_order = -1;
  EXPECT_ERROR(fwp_chrf(hyps, 2, one, 1, &co, &c), FWP_ERR_INVALID_ARGUMENT, "word_order");
  fwp_chrf_options_init(&co);
  co.beta = INFINITY;
  EXPECT_ERROR(fwp_chrf(hyps, 2, one, 1, &co, &c), FWP_ERR_INVALID_ARGUMENT, "beta");
  fwp_chrf_options_init(&co);
  co.eps_smoothing = 3;
  EXPECT_ERROR(fwp_chrf(hyps, 2, one, 1, &co, &c), FWP_ERR_INVALID_ARGUMENT, "eps_smoothing");
  fwp_chrf_options_init(&co);
  co.whitespace = -1;
  EXPECT_ERROR(fwp_chrf(hyps, 2, one, 1, &co, &c), FWP_ERR_INVALID_ARGUMENT, "whitespace");

  /* Every failure left the results alone. */
  assert_true(b.score == -5.0);
  assert_true(c.score == -5.0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_inits),
      cmocka_unit_test(test_scores),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
