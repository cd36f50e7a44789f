/*
 * Trains a small word-level language model (Schlag, Irie and Schmidhuber,
 * ICML 2021, section 6.3: linear attention with the delta rule) on a text file
 * with the fwp C API, then saves it, loads it back and generates text:
 *
 *   1. a word-level tokenizer is built from the text and the text is encoded
 *      into a token file;
 *   2. a token data source feeds batches of segments to the model, trained
 *      with Adam; the perplexity on the start of the text is measured before
 *      and after (RNN mode: the state carried through the stream);
 *   3. the model (with the data position) and the tokenizer are saved, loaded
 *      into new objects, and the loaded model must score the same;
 *   4. the loaded model continues a prompt, greedily and by sampling.
 *
 *   usage: lm [--steps N] [--out-dir DIR] [--seed S] [--prompt TEXT] [TEXT_FILE]
 *          (defaults: 200 steps, the current directory, seed 1, "the cat")
 *
 * Without TEXT_FILE a small corpus of generated sentences is written to
 * DIR/fwp-lm-example.txt and used. The outputs are DIR/fwp-lm-example.tokens,
 * .fwptok (tokenizer) and .safetensors (checkpoint).
 *
 * Exit status: 0 after generating, 1 if a library call fails or training did
 * not lower the perplexity, 2 for bad arguments.
 */
#include <fwp/fwp.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH_SIZE 8
#define SEGMENT_LENGTH 32
#define EVAL_TOKENS 1000
#define NEW_TOKENS 12
#define MAX_PATH_LENGTH 4096

/* Prints the library's message for a failed call and jumps to cleanup. */
#define CHECK(call)                                                                      \
  do {                                                                                   \
    fwp_status check_status_ = (call);                                                   \
    if (check_status_ != FWP_OK) {                                                       \
      fprintf(stderr, "lm: %s failed: %s (%s)\n", #call, fwp_last_error_message(),        \
              fwp_status_string(check_status_));                                         \
      goto cleanup;                                                                      \
    }                                                                                    \
  } while (0)

/* Parses a decimal integer in [min, max]; returns 0 on failure. */
static int parse_integer(const char* text, long long min, long long max, long long* out) {
  char* end = NULL;
  long long value;
  errno = 0;
  value = strtoll(text, &end, 10);
  if (end == text || *end != '\0' || errno == ERANGE || value < min || value > max) return 0;
  *out = value;
  return 1;
}

/* dir + "/" + name into out (capacity MAX_PATH_LENGTH); 0 if it does not fit. */
static int join_path(char* out, const char* dir, const char* name) {
  int n = snprintf(out, MAX_PATH_LENGTH, "%s/%s", dir, name);
  return n > 0 && n < MAX_PATH_LENGTH;
}

/* Writes sentences drawn by a fixed linear congruential generator: a corpus
 * with enough structure for a small model to learn in a few hundred steps. */
static int write_demo_corpus(const char* path) {
  static const char* const subjects[] = {"the cat", "a dog", "the bird", "my friend"};
  static const char* const verbs[] = {"sat on", "looked at", "ran to"};
  static const char* const objects[] = {"the mat", "a tree", "the house", "the river"};
  uint64_t state = 2021;
  int line, ok;
  FILE* file = fopen(path, "w");
  if (file == NULL) return 0;
  for (line = 0; line < 2000; ++line) {
    size_t pick[3];
    int k;
    for (k = 0; k < 3; ++k) {
      state = state * 6364136223846793005ULL + 1442695040888963407ULL;
      pick[k] = (size_t)(state >> 33);
    }
    fprintf(file, "%s %s %s .\n", subjects[pick[0] % 4], verbs[pick[1] % 3], objects[pick[2] % 4]);
  }
  ok = !ferror(file);
  return fclose(file) == 0 && ok;
}

/* Decodes ids to a newly allocated string (free() it); NULL on failure (message printed). */
static char* decode(const fwp_tokenizer* tokenizer, const int32_t* ids, int64_t count) {
  size_t length = 0;
  char* text;
  if (fwp_tokenizer_decode(tokenizer, ids, count, NULL, 0, &length) != FWP_OK) {
    fprintf(stderr, "lm: fwp_tokenizer_decode failed: %s\n", fwp_last_error_message());
    return NULL;
  }
  text = malloc(length + 1);
  if (text == NULL) return NULL;
  if (fwp_tokenizer_decode(tokenizer, ids, count, text, length + 1, &length) != FWP_OK) {
    fprintf(stderr, "lm: fwp_tokenizer_decode failed: %s\n", fwp_last_error_message());
    free(text);
    return NULL;
  }
  return text;
}

/* Prints "label: prompt | continuation" with the continuation's line ends as " / ". */
static int print_continuation(const char* label, const char* prompt, const fwp_tokenizer* tokenizer,
                              const int32_t* ids, int64_t count) {
  char* text = decode(tokenizer, ids, count);
  const char* c;
  if (text == NULL) return 0;
  printf("%s %s | ", label, prompt);
  for (c = text; *c != '\0'; ++c) {
    if (*c == '\n')
      fputs(c[1] == '\0' ? " /" : " / ", stdout);
    else
      putchar(*c);
  }
  putchar('\n');
  free(text);
  return 1;
}

int main(int argc, char** argv) {
  long long steps = 200, seed = 1, value = 0;
  const char* out_dir = ".";
  const char* text_arg = NULL;
  const char* prompt_text = "the cat";
  char text_path[MAX_PATH_LENGTH], tokens_path[MAX_PATH_LENGTH], tokenizer_path[MAX_PATH_LENGTH],
      checkpoint_path[MAX_PATH_LENGTH];
  int exit_code = 1, i;

  fwp_context* ctx = NULL;
  fwp_tokenizer* tokenizer = NULL;
  fwp_tokenizer* loaded_tokenizer = NULL;
  fwp_data* data = NULL;
  fwp_model* model = NULL;
  fwp_model* loaded = NULL;
  fwp_optimizer* opt = NULL;
  fwp_state* state = NULL;
  int32_t *inputs = NULL, *targets = NULL, *eval_tokens = NULL, *prompt = NULL;
  int32_t generated_ids[NEW_TOKENS];

  for (i = 1; i < argc; ++i) {
    const char* arg = argv[i];
    int has_value = i + 1 < argc;
    if (strcmp(arg, "--steps") == 0 && has_value && parse_integer(argv[i + 1], 1, 100000000, &value)) {
      steps = value;
      ++i;
    } else if (strcmp(arg, "--seed") == 0 && has_value && parse_integer(argv[i + 1], 0, INT64_MAX, &value)) {
      seed = value;
      ++i;
    } else if (strcmp(arg, "--out-dir") == 0 && has_value) {
      out_dir = argv[++i];
    } else if (strcmp(arg, "--prompt") == 0 && has_value) {
      prompt_text = argv[++i];
    } else if (arg[0] != '-' && text_arg == NULL) {
      text_arg = arg;
    } else {
      fprintf(stderr, "usage: lm [--steps N] [--out-dir DIR] [--seed S] [--prompt TEXT] [TEXT_FILE]\n"
                      "lm: bad argument '%s'\n", arg);
      return 2;
    }
  }
  if (!join_path(tokens_path, out_dir, "fwp-lm-example.tokens") ||
      !join_path(tokenizer_path, out_dir, "fwp-lm-example.fwptok") ||
      !join_path(checkpoint_path, out_dir, "fwp-lm-example.safetensors") ||
      !join_path(text_path, out_dir, "fwp-lm-example.txt")) {
    fprintf(stderr, "lm: --out-dir is too long\n");
    return 2;
  }
  if (text_arg != NULL) {
    if (strlen(text_arg) >= MAX_PATH_LENGTH) {
      fprintf(stderr, "lm: the text file name is too long\n");
      return 2;
    }
    strcpy(text_path, text_arg);
  } else if (!write_demo_corpus(text_path)) {
    fprintf(stderr, "lm: cannot write %s\n", text_path);
    return 1;
  }

  {
    /* 1. Tokenizer and token file. */
    const char* paths[1];
    fwp_word_tokenizer_config word_config;
    int64_t vocab_size = 0, num_tokens = 0, eval_count, prompt_count = 0, generated = 0;
    fwp_context_config ctx_config;
    fwp_lm_config config;
    fwp_token_data_config data_config;
    fwp_optimizer_config opt_config;
    fwp_sampler_config sampler;
    double nll_before = 0, nll_after = 0, nll_loaded = 0, window = 0;
    int64_t scored = 0;
    long long step;

    paths[0] = text_path;
    fwp_word_tokenizer_config_init(&word_config);
    word_config.max_size = 10000;
    CHECK(fwp_tokenizer_train_word(paths, 1, &word_config, &tokenizer));
    CHECK(fwp_tokenizer_vocab_size(tokenizer, &vocab_size));
    CHECK(fwp_token_file_encode(tokenizer, text_path, tokens_path, &num_tokens));
    printf("%s: %lld tokens, vocabulary %lld\n", text_path, (long long)num_tokens, (long long)vocab_size);

    /* 2. A small model: 2 blocks of linear attention (elu + 1) with the delta rule. */
    fwp_context_config_init(&ctx_config);
    ctx_config.seed = (uint64_t)seed;
    CHECK(fwp_context_create(&ctx_config, &ctx));
    fwp_lm_config_init(&config);
    config.vocab_size = vocab_size;
    config.num_layers = 2;
    config.d_ff = 128;
    config.dropout = 0.0f;
    config.attention.d_model = 64;
    config.attention.num_heads = 4;
    config.attention.d_head = 16;
    CHECK(fwp_lm_create(ctx, &config, &model));

    fwp_token_data_config_init(&data_config);
    data_config.batch_size = BATCH_SIZE;
    data_config.segment_length = SEGMENT_LENGTH;
    CHECK(fwp_token_data_create(tokens_path, &data_config, &data));
    inputs = malloc(sizeof(int32_t) * BATCH_SIZE * SEGMENT_LENGTH);
    targets = malloc(sizeof(int32_t) * BATCH_SIZE * SEGMENT_LENGTH);
    eval_count = num_tokens < EVAL_TOKENS ? num_tokens : EVAL_TOKENS;
    eval_tokens = malloc(sizeof(int32_t) * (size_t)eval_count);
    if (inputs == NULL || targets == NULL || eval_tokens == NULL) {
      fprintf(stderr, "lm: out of memory\n");
      goto cleanup;
    }
    CHECK(fwp_token_file_read(tokens_path, 0, eval_tokens, eval_count));
    CHECK(fwp_lm_evaluate(model, eval_tokens, eval_count, FWP_LM_EVAL_CARRY, SEGMENT_LENGTH, &nll_before, &scored));

    fwp_optimizer_config_init(&opt_config);
    opt_config.learning_rate = 3e-3f;
    opt_config.clip_grad_norm = 1.0f;
    CHECK(fwp_optimizer_create_for_model(model, &opt_config, &opt));
    for (step = 1; step <= steps; ++step) {
      double loss = 0;
      CHECK(fwp_token_data_next(data, inputs, targets, BATCH_SIZE * SEGMENT_LENGTH));
      CHECK(fwp_optimizer_zero_grad(opt));
      CHECK(fwp_lm_forward(model, inputs, targets, BATCH_SIZE, SEGMENT_LENGTH, NULL, &loss, NULL));
      CHECK(fwp_model_backward(model));
      CHECK(fwp_optimizer_step(opt, NULL));
      window += loss;
      if (step % 50 == 0 || step == steps) {
        long long n = step % 50 == 0 ? 50 : step % 50;
        printf("step %5lld  train loss %.3f\n", step, window / (double)n);
        window = 0;
      }
    }
    CHECK(fwp_lm_evaluate(model, eval_tokens, eval_count, FWP_LM_EVAL_CARRY, SEGMENT_LENGTH, &nll_after, &scored));
    printf("perplexity on the first %lld tokens: %.2f -> %.2f\n", (long long)eval_count,
           exp(nll_before / (double)scored), exp(nll_after / (double)scored));
    if (!(nll_after < nll_before)) {
      fprintf(stderr, "lm: training did not lower the perplexity\n");
      goto cleanup;
    }

    /* 3. Save the model (with the data position) and the tokenizer; load both back. */
    CHECK(fwp_checkpoint_save(checkpoint_path, model, opt, data, "examples/c/lm.c"));
    CHECK(fwp_tokenizer_save(tokenizer, tokenizer_path));
    CHECK(fwp_model_load(ctx, checkpoint_path, &loaded));
    CHECK(fwp_tokenizer_load(tokenizer_path, &loaded_tokenizer));
    CHECK(fwp_lm_evaluate(loaded, eval_tokens, eval_count, FWP_LM_EVAL_CARRY, SEGMENT_LENGTH, &nll_loaded,
                          &scored));
    if (nll_loaded != nll_after) {
      fprintf(stderr, "lm: the loaded model scores %.9g, the saved one %.9g\n", nll_loaded, nll_after);
      goto cleanup;
    }

    /* 4. Continue the prompt with the loaded model and tokenizer. */
    CHECK(fwp_tokenizer_encode(loaded_tokenizer, prompt_text, strlen(prompt_text), 0, NULL, 0, &prompt_count));
    if (prompt_count == 0) {
      fprintf(stderr, "lm: the prompt has no words\n");
      exit_code = 2;
      goto cleanup;
    }
    prompt = malloc(sizeof(int32_t) * (size_t)prompt_count);
    if (prompt == NULL) goto cleanup;
    CHECK(fwp_tokenizer_encode(loaded_tokenizer, prompt_text, strlen(prompt_text), 0, prompt, prompt_count,
                               &prompt_count));
    CHECK(fwp_state_create(loaded, 1, &state));
    fwp_sampler_config_init(&sampler);
    sampler.temperature = 0.0f; /* greedy */
    CHECK(fwp_lm_generate(loaded, state, prompt, prompt_count, NEW_TOKENS, &sampler, NULL, 0, generated_ids,
                          NEW_TOKENS, &generated));
    if (!print_continuation("greedy: ", prompt_text, loaded_tokenizer, generated_ids, generated)) goto cleanup;
    CHECK(fwp_state_reset(state));
    sampler.temperature = 0.8f;
    sampler.top_k = 10;
    sampler.seed = (uint64_t)seed;
    CHECK(fwp_lm_generate(loaded, state, prompt, prompt_count, NEW_TOKENS, &sampler, NULL, 0, generated_ids,
                          NEW_TOKENS, &generated));
    if (!print_continuation("sampled:", prompt_text, loaded_tokenizer, generated_ids, generated)) goto cleanup;
    printf("saved %s and %s\n", checkpoint_path, tokenizer_path);
    exit_code = 0;
  }

cleanup:
  fwp_state_destroy(state);
  fwp_optimizer_destroy(opt);
  fwp_model_destroy(loaded);
  fwp_model_destroy(model);
  fwp_data_destroy(data);
  fwp_tokenizer_destroy(loaded_tokenizer);
  fwp_tokenizer_destroy(tokenizer);
  fwp_context_destroy(ctx);
  free(inputs);
  free(targets);
  free(eval_tokens);
  free(prompt);
  return exit_code;
}
