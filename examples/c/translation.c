/*
 * Trains a tiny translation model (Schlag, Irie and Schmidhuber, ICML 2021,
 * section 6.2: an encoder-decoder Transformer with linear attention) on a
 * dozen English -> Spanish sentence pairs with the fwp C API, then translates
 * the English sentences and checks the output:
 *
 *   1. the example writes the two sides of its parallel text to DIR, builds
 *      one word-level tokenizer over both (the shared vocabulary) and encodes
 *      them into a pair file;
 *   2. a pair data source feeds shuffled batches to the model, trained with
 *      Adam and the inverse square-root schedule;
 *   3. every English sentence is encoded, translated (greedy and beam 4),
 *      and the output decoded back to text (pad, bos and eos dropped first).
 *
 *   usage: translation [--steps N] [--out-dir DIR] [--seed S]
 *          (defaults: 300 steps, the system's temporary folder, seed 1)
 *
 * Exit status: 0 when every training sentence is translated exactly by both
 * searches, 1 if a library call fails or a translation is wrong, 2 for bad
 * arguments.
 */
#include <fwp/fwp.h>

#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PATH_LENGTH 4096
#define MAX_IDS 64 /* per sentence: far above the longest sentence below */

/* Prints the library's message for a failed call and jumps to cleanup. */
#define CHECK(call)                                                                           \
  do {                                                                                        \
    fwp_status check_status_ = (call);                                                        \
    if (check_status_ != FWP_OK) {                                                            \
      fprintf(stderr, "translation: %s failed: %s (%s)\n", #call, fwp_last_error_message(),   \
              fwp_status_string(check_status_));                                              \
      goto cleanup;                                                                           \
    }                                                                                         \
  } while (0)

static const char* const kEnglish[] = {
    "the cat sleeps",          "the dog eats",          "the cat eats fish",   "the dog drinks water",
    "i see the house",         "you see the dog",       "we eat bread",        "the house is big",
    "the water is cold",       "i drink cold water",    "the big dog sleeps",  "you eat the bread",
};
static const char* const kSpanish[] = {
    "el gato duerme",          "el perro come",         "el gato come pescado", "el perro bebe agua",
    "yo veo la casa",          "tu ves el perro",       "nosotros comemos pan", "la casa es grande",
    "el agua esta fria",       "yo bebo agua fria",     "el perro grande duerme", "tu comes el pan",
};
#define NUM_PAIRS ((int)(sizeof(kEnglish) / sizeof(kEnglish[0])))

static int parse_integer(const char* text, long long min, long long max, long long* out) {
  char* end = NULL;
  long long value;
  errno = 0;
  value = strtoll(text, &end, 10);
  if (end == text || *end != '\0' || errno == ERANGE || value < min || value > max) return 0;
  *out = value;
  return 1;
}

static int join_path(char* out, const char* dir, const char* name) {
  int n = snprintf(out, MAX_PATH_LENGTH, "%s/%s", dir, name);
  return n > 0 && n < MAX_PATH_LENGTH;
}

static int write_lines(const char* path, const char* const* lines, int count) {
  int i, ok;
  FILE* file = fopen(path, "w");
  if (file == NULL) return 0;
  for (i = 0; i < count; ++i) fprintf(file, "%s\n", lines[i]);
  ok = !ferror(file);
  return fclose(file) == 0 && ok;
}

/* Encodes one sentence without eos into ids (capacity MAX_IDS); returns the count or -1. */
static int64_t encode(const fwp_tokenizer* tokenizer, const char* text, int32_t* ids) {
  int64_t count = 0;
  if (fwp_tokenizer_encode(tokenizer, text, strlen(text), 0, ids, MAX_IDS, &count) != FWP_OK) {
    fprintf(stderr, "translation: cannot encode '%s': %s\n", text, fwp_last_error_message());
    return -1;
  }
  return count;
}

/* Decodes ids (pad, bos and eos dropped: the tokenizer refuses the ids added for the model)
 * into text (capacity 1024); 0 on failure. */
static int decode(const fwp_tokenizer* tokenizer, const int32_t* ids, int64_t count, int32_t pad, int32_t bos,
                  int32_t eos, char* text) {
  int32_t kept[MAX_IDS];
  int64_t i, n = 0;
  size_t length = 0;
  for (i = 0; i < count && n < MAX_IDS; ++i)
    if (ids[i] != pad && ids[i] != bos && ids[i] != eos) kept[n++] = ids[i];
  if (fwp_tokenizer_decode(tokenizer, kept, n, text, 1024, &length) != FWP_OK) {
    fprintf(stderr, "translation: fwp_tokenizer_decode failed: %s\n", fwp_last_error_message());
    return 0;
  }
  return 1;
}

int main(int argc, char** argv) {
  long long steps = 300, seed = 1, value = 0;
  const char* out_dir = NULL;
  char english_path[MAX_PATH_LENGTH], spanish_path[MAX_PATH_LENGTH], pair_path[MAX_PATH_LENGTH];
  int exit_code = 1, i;

  fwp_context* ctx = NULL;
  fwp_tokenizer* tokenizer = NULL;
  fwp_data* data = NULL;
  fwp_model* model = NULL;
  fwp_optimizer* opt = NULL;
  int32_t *src = NULL, *src_len = NULL, *tgt_in = NULL, *tgt_out = NULL, *tgt_len = NULL, *output = NULL;
  int64_t* output_lengths = NULL;

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
    } else {
      fprintf(stderr, "usage: translation [--steps N] [--out-dir DIR] [--seed S]\n"
                      "translation: bad argument '%s'\n", arg);
      return 2;
    }
  }
  if (out_dir == NULL) {
    out_dir = getenv("TMPDIR");
    if (out_dir == NULL || out_dir[0] == '\0') out_dir = "/tmp";
  }
  if (!join_path(english_path, out_dir, "fwp-translation-example.en") ||
      !join_path(spanish_path, out_dir, "fwp-translation-example.es") ||
      !join_path(pair_path, out_dir, "fwp-translation-example.pairs")) {
    fprintf(stderr, "translation: --out-dir is too long\n");
    return 2;
  }
  if (!write_lines(english_path, kEnglish, NUM_PAIRS) || !write_lines(spanish_path, kSpanish, NUM_PAIRS)) {
    fprintf(stderr, "translation: cannot write the parallel text to %s\n", out_dir);
    return 1;
  }

  {
    const char* paths[2];
    fwp_word_tokenizer_config word_config;
    fwp_pair_encode_config encode_config;
    fwp_pair_info info;
    fwp_pair_data_config data_config;
    fwp_context_config ctx_config;
    fwp_seq2seq_config config;
    fwp_optimizer_config opt_config;
    fwp_seq2seq_search_config search;
    int64_t vocab_size = 0, max_b = 0, max_s = 0, max_t = 0, capacity, s_len = 0;
    int32_t pad = 0, bos = 0, eos = 0;
    double window_loss = 0;
    int64_t window_tokens = 0;
    long long step;
    int beam, wrong = 0;

    /* 1. One word-level vocabulary for both languages; the pair file. */
    paths[0] = english_path;
    paths[1] = spanish_path;
    fwp_word_tokenizer_config_init(&word_config);
    CHECK(fwp_tokenizer_train_word(paths, 2, &word_config, &tokenizer));
    CHECK(fwp_pair_special_ids(tokenizer, &vocab_size, &pad, &bos, &eos, NULL));
    fwp_pair_encode_config_init(&encode_config);
    memset(&info, 0, sizeof(info));
    info.struct_size = sizeof(info);
    CHECK(fwp_pair_file_encode(tokenizer, english_path, spanish_path, pair_path, &encode_config, &info));
    printf("%lld sentence pairs, vocabulary %lld (pad %d, bos %d, eos %d)\n", (long long)info.num_pairs,
           (long long)vocab_size, pad, bos, eos);

    fwp_pair_data_config_init(&data_config);
    data_config.max_tokens = 64; /* a few pairs a batch */
    data_config.seed = (uint64_t)seed;
    CHECK(fwp_pair_data_create(pair_path, &data_config, &data));
    CHECK(fwp_pair_data_max_shape(data, &max_b, &max_s, &max_t));
    src = malloc(sizeof(int32_t) * (size_t)(max_b * max_s));
    src_len = malloc(sizeof(int32_t) * (size_t)max_b);
    tgt_in = malloc(sizeof(int32_t) * (size_t)(max_b * max_t));
    tgt_out = malloc(sizeof(int32_t) * (size_t)(max_b * max_t));
    tgt_len = malloc(sizeof(int32_t) * (size_t)max_b);
    if (src == NULL || src_len == NULL || tgt_in == NULL || tgt_out == NULL || tgt_len == NULL) {
      fprintf(stderr, "translation: out of memory\n");
      goto cleanup;
    }

    /* 2. A tiny model: 1 + 1 layers, d_model 32, linear attention (elu + 1, sum rule) everywhere. */
    fwp_context_config_init(&ctx_config);
    ctx_config.seed = (uint64_t)seed;
    CHECK(fwp_context_create(&ctx_config, &ctx));
    CHECK(fwp_seq2seq_config_preset("cpu-small", &config));
    config.vocab_size = vocab_size;
    config.pad_id = pad;
    config.bos_id = bos;
    config.eos_id = eos;
    config.encoder_layers = 1;
    config.decoder_layers = 1;
    config.d_ff = 64;
    config.dropout = 0.0f;
    config.label_smoothing = 0.0f;
    /* Larger than the paper's 0.02 (made for d_model 1024): small embeddings would start far
     * below the position encodings. */
    config.init_std = 0.1f;
    config.encoder_attention.d_model = config.decoder_attention.d_model = config.cross_attention.d_model = 32;
    config.encoder_attention.num_heads = config.decoder_attention.num_heads = config.cross_attention.num_heads = 4;
    config.encoder_attention.d_head = config.decoder_attention.d_head = config.cross_attention.d_head = 8;
    config.encoder_attention.init_std = config.decoder_attention.init_std = config.cross_attention.init_std = 0.1f;
    CHECK(fwp_seq2seq_create(ctx, &config, &model));

    fwp_optimizer_config_init(&opt_config);
    opt_config.learning_rate = 1e-2f;
    opt_config.lr_schedule = FWP_LR_INVERSE_SQRT;
    opt_config.warmup_steps = 30;
    opt_config.clip_grad_norm = 1.0f;
    CHECK(fwp_optimizer_create_for_model(model, &opt_config, &opt));
    for (step = 1; step <= steps; ++step) {
      int64_t b = 0, s = 0, t = 0;
      fwp_seq2seq_batch batch;
      fwp_seq2seq_loss loss;
      CHECK(fwp_pair_data_peek(data, &b, &s, &t));
      CHECK(fwp_pair_data_next(data, b, s, t, src, src_len, tgt_in, tgt_out, tgt_len, NULL));
      batch.source = src;
      batch.source_lengths = src_len;
      batch.target_input = tgt_in;
      batch.target_output = tgt_out;
      batch.target_lengths = tgt_len;
      batch.batch = b;
      batch.source_length = s;
      batch.target_length = t;
      CHECK(fwp_optimizer_zero_grad(opt));
      CHECK(fwp_seq2seq_forward(model, &batch, &loss));
      CHECK(fwp_model_backward(model));
      CHECK(fwp_optimizer_step(opt, NULL));
      window_loss += loss.nll_sum;
      window_tokens += loss.tokens;
      if (step % 50 == 0 || step == steps) {
        printf("step %5lld  nll per token %.3f\n", step, window_loss / (double)window_tokens);
        window_loss = 0;
        window_tokens = 0;
      }
    }

    /* 3. Translate every English sentence, one padded batch: x_1..x_n eos, then pad. */
    output = malloc(sizeof(int32_t) * NUM_PAIRS * MAX_IDS);
    output_lengths = malloc(sizeof(int64_t) * NUM_PAIRS);
    free(src);
    free(src_len);
    src = malloc(sizeof(int32_t) * NUM_PAIRS * MAX_IDS);
    src_len = malloc(sizeof(int32_t) * NUM_PAIRS);
    if (output == NULL || output_lengths == NULL || src == NULL || src_len == NULL) {
      fprintf(stderr, "translation: out of memory\n");
      goto cleanup;
    }
    for (i = 0; i < NUM_PAIRS; ++i) {
      int32_t ids[MAX_IDS];
      int64_t n = encode(tokenizer, kEnglish[i], ids);
      if (n < 0 || n + 1 > MAX_IDS) goto cleanup;
      src_len[i] = (int32_t)(n + 1);
      if (n + 1 > s_len) s_len = n + 1;
    }
    for (i = 0; i < NUM_PAIRS; ++i) {
      int32_t ids[MAX_IDS];
      int64_t n = encode(tokenizer, kEnglish[i], ids), k;
      for (k = 0; k < s_len; ++k) src[i * s_len + k] = k < n ? ids[k] : (k == n ? eos : pad);
    }
    fwp_seq2seq_search_config_init(&search);
    /* The library's length limit, computed as it does (in double). */
    capacity = (int64_t)floor((double)search.max_len_a * (double)s_len + (double)search.max_len_b);
    if (capacity > MAX_IDS) {
      fprintf(stderr, "translation: output capacity %lld too large\n", (long long)capacity);
      goto cleanup;
    }
    for (beam = 1; beam <= 4; beam += 3) {
      search.beam_size = beam;
      CHECK(fwp_seq2seq_translate(model, src, src_len, NUM_PAIRS, s_len, &search, output, capacity,
                                  output_lengths, NULL));
      printf("%s:\n", beam == 1 ? "greedy" : "beam 4");
      for (i = 0; i < NUM_PAIRS; ++i) {
        int32_t expected[MAX_IDS];
        int64_t m = encode(tokenizer, kSpanish[i], expected);
        char text[1024];
        int ok;
        if (m < 0 || !decode(tokenizer, output + i * capacity, output_lengths[i], pad, bos, eos, text)) goto cleanup;
        ok = output_lengths[i] == m && memcmp(expected, output + i * capacity, sizeof(int32_t) * (size_t)m) == 0;
        if (!ok) ++wrong;
        if (ok)
          printf("  %-22s -> %s\n", kEnglish[i], text);
        else
          printf("  %-22s -> %s   (expected: %s)\n", kEnglish[i], text, kSpanish[i]);
      }
    }
    if (wrong > 0) {
      fprintf(stderr, "translation: %d of %d translations are wrong after %lld steps\n", wrong, 2 * NUM_PAIRS,
              steps);
      goto cleanup;
    }
    printf("all %d training sentences translated correctly (greedy and beam 4)\n", NUM_PAIRS);
    exit_code = 0;
  }

cleanup:
  fwp_optimizer_destroy(opt);
  fwp_model_destroy(model);
  fwp_data_destroy(data);
  fwp_tokenizer_destroy(tokenizer);
  fwp_context_destroy(ctx);
  free(src);
  free(src_len);
  free(tgt_in);
  free(tgt_out);
  free(tgt_len);
  free(output);
  free(output_lengths);
  remove(english_path);
  remove(spanish_path);
  remove(pair_path);
  return exit_code;
}
